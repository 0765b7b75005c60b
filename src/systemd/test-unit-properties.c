/* Unit tests for unit naming (against systemd-escape's output) and module unit properties. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/macro.h"
#include "systemd/unit-properties.h"

static void test_escape_like_systemd_escape(void **state) {
        /* Expected values printed by systemd-escape (systemd 252). */
        static const char *const cases[][2] = {
                { "go2rtc", "go2rtc" },         { "vendor/foo", "vendor-foo" },
                { "my-module", "my\\x2dmodule" }, { ".hidden", "\\x2ehidden" },
                { "a b", "a\\x20b" },           { "\xc3\xbcn\xc3\xaf", "\\xc3\\xbcn\\xc3\\xaf" },
                { "x_y.z:1", "x_y.z:1" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *e = NULL, *u = NULL;
                assert_int_equal(unit_instance_escape(cases[i][0], &e), 0);
                assert_string_equal(e, cases[i][1]);
                assert_int_equal(unit_instance_unescape(e, &u), 0);
                assert_string_equal(u, cases[i][0]);
        }
        _cleanup_free_ char *unit = NULL;
        assert_int_equal(module_unit_name("my-cam", &unit), 0);
        assert_string_equal(unit, "call-assistant-module@my\\x2dcam.service");
}

static bool has(char **l, const char *s) {
        for (; l && *l; l++)
                if (strcmp(*l, s) == 0)
                        return true;
        return false;
}

static void test_properties(void **state) {
        char *env[] = { "PATH=/usr/bin", "GRPC_PORT=50100", NULL };
        char *ro[] = { "/m/cam", "/tmp/build", NULL };
        UnitSpec s = {
                .description = "call-assistant module cam: Camera",
                .command = "./camera-module --x",
                .working_directory = "/m/cam",
                .environment = env,
                .syslog_identifier = "cam",
                .module_name = "cam",
                .restart_usec = 1000000,
                .start_limit_burst = 5,
                .start_limit_interval_usec = 60000000,
                .timeout_stop_usec = 10000000,
                .slice = "call-assistant.slice",
                .credential_path = "/run/call-assistant/credentials/cam.token",
                .read_only_paths = ro,
        };
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(unit_spec_to_strings(&s, &l), 0);
        assert_true(has(l, "Description=call-assistant module cam: Camera"));
        assert_true(has(l, "Type=exec"));
        assert_true(has(l, "ExecStart=/bin/sh -c \"./camera-module --x\""));
        assert_true(has(l, "WorkingDirectory=/m/cam"));
        assert_true(has(l, "Environment=PATH=/usr/bin GRPC_PORT=50100"));
        assert_true(has(l, "SyslogIdentifier=cam"));
        assert_true(has(l, "LogExtraFields=CALL_ASSISTANT_MODULE=cam"));
        assert_true(has(l, "Restart=on-failure"));
        assert_true(has(l, "RestartUSec=1000000"));
        assert_true(has(l, "StartLimitBurst=5"));
        assert_true(has(l, "StartLimitIntervalUSec=60000000"));
        assert_true(has(l, "TimeoutStopUSec=10000000"));
        assert_true(has(l, "SendSIGKILL=yes"));
        assert_true(has(l, "KillSignal=15"));
        assert_true(has(l, "Slice=call-assistant.slice"));
        assert_true(has(l, "DynamicUser=yes")); /* unprivileged by default */
        assert_true(has(l, "NoNewPrivileges=yes"));
        /* Only the path of the secret, never the secret. */
        assert_true(has(l, "LoadCredential=module-token:/run/call-assistant/credentials/cam.token"));
        assert_true(has(l, "BindReadOnlyPaths=/m/cam /tmp/build"));

        strv_free(l);
        s.user = "camuser";
        assert_int_equal(unit_spec_to_strings(&s, &l), 0);
        assert_true(has(l, "User=camuser"));
        assert_false(has(l, "DynamicUser=yes"));

        /* A user manager runs units as its user and refuses the system-only settings. */
        strv_free(l);
        s.user = NULL;
        s.user_manager = true;
        assert_int_equal(unit_spec_to_strings(&s, &l), 0);
        assert_false(has(l, "DynamicUser=yes"));
        assert_false(has(l, "ProtectSystem=strict"));
        assert_false(has(l, "PrivateTmp=yes"));
        assert_true(has(l, "NoNewPrivileges=yes"));
        assert_true(has(l, "Restart=on-failure"));
        assert_true(has(l, "LoadCredential=module-token:/run/call-assistant/credentials/cam.token"));
}

static void test_append_builds_a_valid_message(void **state) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        char *env[] = { "GRPC_PORT=1", NULL };
        UnitSpec s = { .description = "d", .command = "true", .environment = env, .syslog_identifier = "x",
                       .module_name = "x", .credential_path = "/c" };
        const char *name;
        unsigned n = 0;

        int sv[2];

        /* A bus on one end of a socketpair: enough to build (not send) messages. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_true(sd_bus_new(&bus) >= 0);
        assert_true(sd_bus_set_fd(bus, sv[0], sv[0]) >= 0);
        assert_true(sd_bus_start(bus) >= 0);
        assert_true(sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                                   "org.freedesktop.systemd1.Manager", "StartTransientUnit") >= 0);
        assert_true(sd_bus_message_open_container(m, 'a', "(sv)") >= 0);
        assert_int_equal(unit_spec_append(m, &s), 0);
        assert_true(sd_bus_message_close_container(m) >= 0);
        assert_true(sd_bus_message_seal(m, 1, 0) >= 0);

        assert_true(sd_bus_message_rewind(m, true) >= 0);
        assert_true(sd_bus_message_enter_container(m, 'a', "(sv)") >= 0);
        while (sd_bus_message_enter_container(m, 'r', "sv") > 0) {
                assert_true(sd_bus_message_read(m, "s", &name) >= 0);
                if (strcmp(name, "LogExtraFields") == 0) {
                        const void *p;
                        size_t size;
                        assert_true(sd_bus_message_enter_container(m, 'v', "aay") >= 0);
                        assert_true(sd_bus_message_enter_container(m, 'a', "ay") >= 0);
                        assert_true(sd_bus_message_read_array(m, 'y', &p, &size) >= 0);
                        assert_memory_equal(p, "CALL_ASSISTANT_MODULE=x", size);
                        assert_true(sd_bus_message_exit_container(m) >= 0);
                        assert_true(sd_bus_message_exit_container(m) >= 0);
                } else
                        assert_true(sd_bus_message_skip(m, "v") >= 0);
                assert_true(sd_bus_message_exit_container(m) >= 0);
                n++;
        }
        assert_true(n >= 20);
        close(sv[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_escape_like_systemd_escape),
                cmocka_unit_test(test_properties),
                cmocka_unit_test(test_append_builds_a_valid_message),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
