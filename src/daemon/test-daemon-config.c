/* Unit tests for the orchestrator's YAML configuration file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/daemon-config.h"
#include "shared/macro.h"

static char *write_tmp(const char *text) {
        char *path = strdup("/tmp/ca-config-test-XXXXXX");
        int fd;

        assert_non_null(path);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        return path;
}

/* Load text; returns the return value, with the error output in *ret_err. */
static int load(DaemonConfig *c, const char *text, char **ret_err) {
        _cleanup_free_ char *path = write_tmp(text);
        size_t size;
        FILE *err = open_memstream(ret_err, &size);
        int r;

        assert_non_null(err);
        r = daemon_config_load(c, path, err);
        fclose(err);
        unlink(path);
        return r;
}

static void test_defaults(void **state) {
        DaemonConfig c;

        assert_int_equal(daemon_config_init(&c, false), 0);
        assert_string_equal(c.listen, ""); /* a unix socket in the runtime dir unless configured */
        assert_string_equal(c.control_socket, "/run/call-assistant/control.sock");
        assert_int_equal(c.port_min, 50100);
        assert_int_equal(c.port_max, 50999);
        assert_int_equal(c.health_failure_threshold, 3);
        assert_false(c.dev);
        assert_true(c.web_enabled);
        assert_string_equal(c.web_listen, "127.0.0.1:8480"); /* the dashboard: loopback too */
        assert_string_equal(c.web_tls_certificate, "");
        daemon_config_done(&c);
}

static void test_full_file(void **state) {
        _cleanup_free_ char *err = NULL;
        DaemonConfig c;

        assert_int_equal(daemon_config_init(&c, false), 0);
        assert_int_equal(load(&c,
                              "modules_dir: /srv/modules\n"
                              "state_dir: /srv/state\n"
                              "listen: 127.0.0.1:6000\n"
                              "ports:\n  min: 40000\n  max: 40010\n"
                              "health:\n  interval_ms: 1000\n  timeout_ms: 500\n  failure_threshold: 2\n"
                              "registration_timeout_ms: 4000\n"
                              "units:\n  restart_sec_ms: 200\n  start_limit_burst: 3\n  slice: x.slice\n"
                              "  read_only_paths: [/srv/a, /srv/b]\n"
                              "dev: yes\n"
                              "web:\n  listen: '[::1]:9000'\n  assets_dir: /srv/web\n  tls_certificate: /etc/c.pem\n"
                              "  tls_key: /etc/k.pem\n  journal_directory: /srv/journal\n  enabled: false\n",
                              &err),
                         0);
        assert_string_equal(err, "");
        assert_string_equal(c.modules_dir, "/srv/modules");
        assert_string_equal(c.state_dir, "/srv/state");
        assert_string_equal(c.listen, "127.0.0.1:6000");
        assert_int_equal(c.port_min, 40000);
        assert_int_equal(c.port_max, 40010);
        assert_int_equal(c.health_interval_ms, 1000);
        assert_int_equal(c.health_timeout_ms, 500);
        assert_int_equal(c.health_failure_threshold, 2);
        assert_int_equal(c.registration_timeout_ms, 4000);
        assert_int_equal(c.restart_sec_ms, 200);
        assert_int_equal(c.start_limit_burst, 3);
        assert_string_equal(c.slice, "x.slice");
        assert_string_equal(c.read_only_paths[0], "/srv/a");
        assert_string_equal(c.read_only_paths[1], "/srv/b");
        assert_null(c.read_only_paths[2]);
        assert_true(c.dev);
        assert_false(c.web_enabled);
        assert_string_equal(c.web_listen, "[::1]:9000");
        assert_string_equal(c.web_assets_dir, "/srv/web");
        assert_string_equal(c.web_tls_certificate, "/etc/c.pem");
        assert_string_equal(c.web_tls_key, "/etc/k.pem");
        assert_string_equal(c.web_journal_directory, "/srv/journal");
        daemon_config_done(&c);
}

static void test_errors_name_line_column_field(void **state) {
        _cleanup_free_ char *err = NULL;
        DaemonConfig c;

        assert_int_equal(daemon_config_init(&c, false), 0);
        assert_int_equal(load(&c,
                              "listen: 127.0.0.1:6000\n"
                              "ports:\n  min: 80\n  max: lots\n"
                              "helth: {}\n"
                              "dev: maybe\n",
                              &err),
                         -EINVAL);
        assert_non_null(strstr(err, ":3:8: error: field 'ports.min': expected a whole number in 1024..65535"));
        assert_non_null(strstr(err, ":4:8: error: field 'ports.max': expected a whole number in 1024..65535"));
        assert_non_null(strstr(err, ":5:1: error: field 'helth': unknown key"));
        assert_non_null(strstr(err, ":6:6: error: field 'dev': expected true or false"));
        /* Values that were fine still apply; bad ones leave the default. */
        assert_string_equal(c.listen, "127.0.0.1:6000");
        assert_int_equal(c.port_min, 50100);
        daemon_config_done(&c);
}

static void test_bad_yaml_and_types(void **state) {
        _cleanup_free_ char *err1 = NULL, *err2 = NULL, *err3 = NULL;
        DaemonConfig c;

        assert_int_equal(daemon_config_init(&c, false), 0);
        assert_int_equal(load(&c, "listen: [unclosed\n", &err1), -EINVAL);
        assert_non_null(strstr(err1, ":2:1: error: "));
        assert_int_equal(load(&c, "- a\n- b\n", &err2), -EINVAL);
        assert_non_null(strstr(err2, ":1:1: error: field '(top level)': expected a mapping"));
        assert_int_equal(load(&c, "ports:\n  min: 50000\n  max: 40000\n", &err3), -EINVAL);
        assert_non_null(strstr(err3, "min (50000) is above max (40000)"));
        _cleanup_free_ char *err4 = NULL, *err5 = NULL;
        assert_int_equal(load(&c, "web:\n  tls_certificate: /etc/c.pem\n", &err4), -EINVAL);
        assert_non_null(strstr(err4, "field 'web': tls_certificate and tls_key go together"));
        assert_int_equal(load(&c, "web:\n  tls_certificate: ''\n  port: 80\n", &err5), -EINVAL);
        assert_non_null(strstr(err5, ":3:3: error: field 'web.port': unknown key"));
        daemon_config_done(&c);
}

static void test_empty_file_and_missing_file(void **state) {
        _cleanup_free_ char *err = NULL;
        DaemonConfig c;

        assert_int_equal(daemon_config_init(&c, false), 0);
        assert_int_equal(load(&c, "", &err), 0);
        assert_int_equal(c.port_min, 50100);
        assert_int_equal(daemon_config_load(&c, "/nonexistent/call-assistant.yaml", stderr), -ENOENT);
        daemon_config_done(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_full_file),
                cmocka_unit_test(test_errors_name_line_column_field),
                cmocka_unit_test(test_bad_yaml_and_types),
                cmocka_unit_test(test_empty_file_and_missing_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
