/* Unit tests for reading YAML within limits: special files are refused without blocking,
 * symlink problems are named, size and nesting depth are capped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "shared/macro.h"
#include "shared/yaml-input.h"

static char dir[64];

static int setup(void **state) {
        snprintf(dir, sizeof(dir), "/tmp/ca-yaml-input-XXXXXX");
        assert_non_null(mkdtemp(dir));
        return 0;
}

static int teardown(void **state) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
        return 0;
}

static char *path_of(const char *name) {
        static char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, name);
        return p;
}

static void write_text(const char *name, const char *text) {
        FILE *f = fopen(path_of(name), "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

/* Read name; expect r and, on failure, the message. */
static void expect(const char *name, size_t max, int r, const char *message) {
        _cleanup_free_ char *data = NULL, *error = NULL;
        size_t size = 0;

        assert_int_equal(yaml_input_read(path_of(name), max, &data, &size, &error), r);
        if (r == 0) {
                assert_non_null(data);
                assert_null(error);
                assert_int_equal(strlen(data), size);
        } else {
                assert_null(data);
                assert_non_null(error);
                if (!strstr(error, message))
                        fail_msg("%s: '%s', expected '%s'", name, error, message);
        }
}

static void test_files(void **state) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        write_text("ok.yaml", "name: a\n");
        expect("ok.yaml", 100, 0, NULL);
        assert_int_equal(symlink("ok.yaml", path_of("link.yaml")), 0);
        expect("link.yaml", 100, 0, NULL); /* a symlink to a regular file is fine */

        /* A FIFO with no writer: refused at once (opening it would block forever). The alarm
         * turns a regression into a failure instead of a hang. */
        assert_int_equal(mkfifo(path_of("fifo.yaml"), 0600), 0);
        alarm(10);
        expect("fifo.yaml", 100, -EINVAL, "is a FIFO, not a regular file");
        alarm(0);

        assert_true(strlen(path_of("sock.yaml")) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path_of("sock.yaml"), strlen(path_of("sock.yaml")) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        expect("sock.yaml", 100, -EINVAL, "is a socket, not a regular file");
        close(fd);
        assert_int_equal(symlink("/dev/null", path_of("dev.yaml")), 0);
        expect("dev.yaml", 100, -EINVAL, "is a character device, not a regular file");
        assert_int_equal(mkdir(path_of("dir.yaml"), 0755), 0);
        expect("dir.yaml", 100, -EINVAL, "is a folder, not a regular file");

        assert_int_equal(symlink("nowhere.yaml", path_of("dangling.yaml")), 0);
        expect("dangling.yaml", 100, -ENOENT, "is a dangling symlink to 'nowhere.yaml'");
        assert_int_equal(symlink("loop-b.yaml", path_of("loop-a.yaml")), 0);
        assert_int_equal(symlink("loop-a.yaml", path_of("loop-b.yaml")), 0);
        expect("loop-a.yaml", 100, -ELOOP, "is a symlink loop");
        expect("missing.yaml", 100, -ENOENT, "does not exist");

        write_text("big.yaml", "0123456789");
        expect("big.yaml", 10, 0, NULL);
        expect("big.yaml", 9, -EFBIG, "is 10 bytes; at most 9 are read");
}

static void test_depth(void **state) {
        const size_t n = 200000; /* 400 KB: libyaml's loader needed 99 s for this */
        _cleanup_free_ char *deep = malloc(2 * n + 1);
        unsigned line = 0, column = 0;

        assert_int_equal(yaml_input_too_deep("a: {b: [c]}\n", 12, 3, &line, &column), 0);
        assert_int_equal(yaml_input_too_deep("a: {b: [c]}\n", 12, 2, &line, &column), 1);
        assert_int_equal(line, 1);
        assert_int_equal(column, 8);

        const char *block = "a:\n  b:\n    c:\n      d: 1\n";
        assert_int_equal(yaml_input_too_deep(block, strlen(block), 4, &line, &column), 0);
        assert_int_equal(yaml_input_too_deep(block, strlen(block), 3, &line, &column), 1);
        assert_int_equal(line, 4);
        assert_int_equal(column, 7);

        assert_non_null(deep);
        memset(deep, '[', n);
        memset(deep + n, ']', n);
        deep[2 * n] = 0;
        assert_int_equal(yaml_input_too_deep(deep, 2 * n, 16, &line, &column), 1);
        assert_int_equal(line, 1);
        assert_int_equal(column, 17);

        /* A syntax error is not this function's business. */
        assert_int_equal(yaml_input_too_deep("a: [", 4, 16, &line, &column), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_files, setup, teardown),
                cmocka_unit_test(test_depth),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
