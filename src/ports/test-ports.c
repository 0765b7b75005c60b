/* Unit tests for port allocation: unique ports, busy ports skipped, kept across restarts
 * (the state file), corrupt state kept aside, file written with mode 0600. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "ports/port-alloc.h"

static char dir[128];
static uint16_t busy_port;

static bool fake_in_use(uint16_t port, void *userdata) {
        return port == busy_port;
}

static int setup(void **state) {
        snprintf(dir, sizeof(dir), "/tmp/ca-ports-test-XXXXXX");
        assert_non_null(mkdtemp(dir));
        busy_port = 0;
        return 0;
}

static int teardown(void **state) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
        return 0;
}

static PortAllocator *open_pa(uint16_t min, uint16_t max) {
        PortAllocator *pa = NULL;
        assert_int_equal(port_allocator_new(&pa, dir, min, max, stderr), 0);
        port_allocator_set_in_use_check(pa, fake_in_use, NULL);
        return pa;
}

static void test_unique_and_busy_skipped(void **state) {
        PortAllocator *pa = open_pa(40000, 40003);
        uint16_t a, b, c, d, e;

        busy_port = 40001;
        assert_int_equal(port_allocator_get(pa, "a", false, &a), 0);
        assert_int_equal(port_allocator_get(pa, "b", false, &b), 0);
        assert_int_equal(port_allocator_get(pa, "c", false, &c), 0);
        assert_int_equal(a, 40000);
        assert_int_equal(b, 40002); /* 40001 is someone else's */
        assert_int_equal(c, 40003);
        assert_int_equal(port_allocator_get(pa, "d", false, &d), -EADDRINUSE);
        assert_int_equal(port_allocator_get(pa, "a", false, &e), 0);
        assert_int_equal(e, 40000); /* same module, same port */
        port_allocator_free(pa);
}

static void test_kept_across_restarts(void **state) {
        char *names[] = { "a", "b", NULL }, *fewer[] = { "b", NULL };
        PortAllocator *pa = open_pa(40000, 40010);
        uint16_t a, b, x;
        struct stat st;
        char path[200];

        assert_int_equal(port_allocator_get(pa, "a", false, &a), 0);
        assert_int_equal(port_allocator_get(pa, "b", false, &b), 0);
        assert_int_equal(port_allocator_save(pa, names), 0);
        port_allocator_free(pa);
        snprintf(path, sizeof(path), "%s/ports", dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        /* Restart: b asks first, still gets its own port. */
        pa = open_pa(40000, 40010);
        assert_int_equal(port_allocator_get(pa, "b", false, &x), 0);
        assert_int_equal(x, b);
        /* a's port is now busy: a running a keeps it (keep_busy), otherwise it moves. */
        busy_port = a;
        assert_int_equal(port_allocator_get(pa, "a", true, &x), 0);
        assert_int_equal(x, a);
        assert_int_equal(port_allocator_get(pa, "a", false, &x), 0);
        assert_int_not_equal(x, a);
        assert_int_not_equal(x, b);
        /* a is removed from the modules dir: forgotten. */
        assert_int_equal(port_allocator_save(pa, fewer), 0);
        port_allocator_free(pa);
        busy_port = 0;
        pa = open_pa(40000, 40010);
        assert_int_equal(port_allocator_get(pa, "new", false, &x), 0);
        assert_int_equal(x, 40000);
        port_allocator_free(pa);
}

static void test_corrupt_file_kept_aside(void **state) {
        char path[200], *err = NULL;
        size_t size;
        FILE *f, *e;
        PortAllocator *pa = NULL;
        uint16_t x;
        char cmd[300];

        snprintf(path, sizeof(path), "%s/ports", dir);
        f = fopen(path, "w");
        fputs("a 40005\nb not-a-port\n", f);
        fclose(f);
        e = open_memstream(&err, &size);
        assert_int_equal(port_allocator_new(&pa, dir, 40000, 40010, e), 0);
        fclose(e);
        assert_non_null(strstr(err, "/ports:2: error: expected \"<module> <port>\""));
        free(err);
        assert_int_not_equal(access(path, F_OK), 0); /* moved, not overwritten */
        snprintf(cmd, sizeof(cmd), "ls %s/ports.corrupt-* >/dev/null", dir);
        assert_int_equal(system(cmd), 0);
        port_allocator_set_in_use_check(pa, fake_in_use, NULL);
        assert_int_equal(port_allocator_get(pa, "a", false, &x), 0);
        assert_int_equal(x, 40000);
        port_allocator_free(pa);
}

static void test_bind_check_sees_a_listener(void **state) {
        /* The real check: a port somebody listens on is in use; once closed, it is free. */
        struct sockaddr_in a = { .sin_family = AF_INET };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        uint16_t port;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(fd, 1), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        port = ntohs(a.sin_port);
        assert_true(port_in_use_by_bind(port, NULL));
        close(fd);
        assert_false(port_in_use_by_bind(port, NULL));
}

static int listener(uint16_t port, bool reuse_port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
        int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_true(fd >= 0);
        /* As gRPC servers do (C core and Python's grpcio). */
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
        if (reuse_port)
                assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(fd, 4), 0);
        return fd;
}

static void test_time_wait_is_not_in_use(void **state) {
        /* A module that stopped leaves its port's closed connections in TIME_WAIT (the server
         * closed first). Its next start binds the port again (SO_REUSEADDR), so the port is
         * free for it: taking another one moved modules to new ports on every stop/start. */
        struct sockaddr_in a = { .sin_family = AF_INET };
        socklen_t len = sizeof(a);
        int srv, cli, conn;
        uint16_t port;

        srv = listener(0, true);
        assert_int_equal(getsockname(srv, (struct sockaddr *)&a, &len), 0);
        port = ntohs(a.sin_port);
        assert_true(port_in_use_by_bind(port, NULL)); /* listening, even with SO_REUSEPORT */

        cli = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(cli >= 0);
        assert_int_equal(connect(cli, (struct sockaddr *)&a, sizeof(a)), 0);
        conn = accept(srv, NULL, NULL);
        assert_true(conn >= 0);
        close(conn); /* the server side closes first: TIME_WAIT on 127.0.0.1:port */
        close(srv);
        char c;
        assert_int_equal(read(cli, &c, 1), 0); /* FIN seen */
        close(cli);

        assert_false(port_in_use_by_bind(port, NULL));
        /* And the module can indeed listen there again. */
        srv = listener(port, true);
        close(srv);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_unique_and_busy_skipped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kept_across_restarts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_file_kept_aside, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bind_check_sees_a_listener, setup, teardown),
                cmocka_unit_test_setup_teardown(test_time_wait_is_not_in_use, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
