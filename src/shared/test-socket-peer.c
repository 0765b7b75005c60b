/* Unit test of socket_peer_owner(): the uid and inode of the socket at the other end of a
 * loopback connection, for a listener of ours and (as root) one of another user. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "shared/macro.h"
#include "shared/socket-peer.h"

static int listener(struct sockaddr_in *a) {
        socklen_t len = sizeof(*a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        *a = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
        assert_int_equal(listen(fd, 4), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)a, &len), 0);
        return fd;
}

static int dial(const struct sockaddr_in *a) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (const struct sockaddr *)a, sizeof(*a)), 0);
        return fd;
}

static void test_own_listener(void **state) {
        struct sockaddr_in a;
        _cleanup_close_ int l = listener(&a), c = dial(&a), s = -1;
        struct stat st;
        uid_t uid = 12345;
        ino_t ino = 1;

        /* Not accepted yet: it waits in the accept queue, owned like the listener, no inode. */
        assert_int_equal(socket_peer_owner(c, &uid, &ino), 0);
        assert_int_equal(uid, geteuid());
        assert_int_equal(ino, 0);
        s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        assert_true(s >= 0);
        assert_int_equal(socket_peer_owner(c, &uid, &ino), 0);
        assert_int_equal(fstat(s, &st), 0);
        assert_int_equal(ino, st.st_ino);
        /* And from the other side: our dialling socket. */
        assert_int_equal(socket_peer_owner(s, &uid, &ino), 0);
        assert_int_equal(fstat(c, &st), 0);
        assert_int_equal(ino, st.st_ino);
}

static void test_other_users_listener(void **state) {
        struct sockaddr_in a;
        int pipefd[2], hold[2];
        pid_t pid;
        uid_t uid;
        _cleanup_close_ int c = -1;

        if (geteuid() != 0) {
                /* Only root can make a socket of another user; the tests run as root in CI. */
                skip();
        }
        assert_int_equal(pipe(pipefd), 0);
        assert_int_equal(pipe(hold), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int l;
                char x;

                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(1);
                l = listener(&a);
                (void)!write(pipefd[1], &a, sizeof(a));
                close(hold[1]);
                (void)!read(hold[0], &x, 1); /* until the parent closes its end */
                close(l);
                _exit(0);
        }
        assert_int_equal(read(pipefd[0], &a, sizeof(a)), (ssize_t)sizeof(a));
        c = dial(&a);
        assert_int_equal(socket_peer_owner(c, &uid, NULL), 0);
        assert_int_equal(uid, 65534);
        close(pipefd[1]);
        close(pipefd[0]);
        close(hold[1]);
        close(hold[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_own_listener),
                cmocka_unit_test(test_other_users_listener),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
