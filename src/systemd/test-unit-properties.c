/* Unit tests for unit naming (against systemd-escape's output) and module unit properties. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/macro.h"
#include "systemd/unit-properties.h"

static void test_instance_names(void **state) {
        /* '-' stays (operators type call-assistant-module@onvif-discovery); the rest like
         * systemd-escape; one-to-one, so a nested "a/b" never meets a folder "a-b". */
        static const char *const cases[][2] = {
                { "go2rtc", "go2rtc" },         { "vendor/foo", "vendor\\x2ffoo" },
                { "my-module", "my-module" },   { ".hidden", "\\x2ehidden" },
                { "a-b", "a-b" },               { "a/b", "a\\x2fb" },
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
        assert_int_equal(module_unit_name("onvif-discovery", &unit), 0);
        assert_string_equal(unit, "call-assistant-module@onvif-discovery.service");
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
                .token_path = "/run/call-assistant/credentials/cam.token",
                .read_only_paths = ro,
                .dynamic_user = "ca-cam-123456",
                .ip_allow = (const char *const[]){ "localhost", "192.168.0.0/16", NULL },
                .bind_allow = (const UnitSocketBind[]){ { IPPROTO_TCP, 50100, 1 }, { IPPROTO_UDP, 0, 0 },
                                                        { IPPROTO_UDP, 10000, 101 } },
                .n_bind_allow = 3,
                .memory_max = 1024,
        };
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(unit_spec_to_strings(&s, &l), 0);
        assert_true(has(l, "Description=call-assistant module cam: Camera"));
        assert_true(has(l, "Type=exec"));
        /* exec: the module itself is the unit's main process, not the shell. */
        assert_true(has(l, "ExecStart=/bin/sh -c \"exec ./camera-module --x\""));
        /* The one place a module keeps files across restarts. */
        assert_true(has(l, "StateDirectory=call-assistant-modules/cam"));
        assert_true(has(l, "StateDirectoryMode=0700"));
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
        assert_true(has(l, "User=ca-cam-123456")); /* and a user of its own */
        assert_true(has(l, "NoNewPrivileges=yes"));
        assert_true(has(l, "CPUAccounting=yes"));
        assert_true(has(l, "MemoryAccounting=yes"));
        /* Only the path of the secret, never the secret; no credentials mount. */
        assert_true(has(l, "StandardInputFile=/run/call-assistant/credentials/cam.token"));
        assert_true(has(l, "StandardOutput=journal"));
        assert_true(has(l, "StandardError=journal"));
        assert_true(has(l, "BindReadOnlyPaths=/m/cam /tmp/build"));
        /* Hardening (docs/orchestrator.md, "Module units"). */
        static const char *const hardening[] = {
                "ProtectProc=invisible", "ProcSubset=pid", "PrivateDevices=yes", "PrivateTmp=yes",
                "ProtectSystem=strict", "ProtectHome=tmpfs", "ProtectKernelTunables=yes",
                "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
                "ProtectClock=yes", "ProtectHostname=yes", "RestrictNamespaces=33554432", "LockPersonality=yes",
                "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "SystemCallFilter=@system-service",
                "SystemCallFilter=~@privileged @resources", "SystemCallArchitectures=native",
                "SystemCallErrorNumber=1", "CapabilityBoundingSet=0",
                "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "UMask=0077",
                "IPAddressDeny=any", "IPAddressAllow=localhost 192.168.0.0/16",
                "SocketBindAllow=tcp:50100 udp udp:10000-10100", "SocketBindDeny=any", "MemoryMax=1024",
        };
        for (size_t i = 0; i < ELEMENTSOF(hardening); i++)
                if (!has(l, hardening[i]))
                        fail_msg("missing %s", hardening[i]);
        assert_false(has(l, "LoadCredential=module-token:/run/call-assistant/credentials/cam.token"));

        /* A module that needs interfaces (multicast, LAN) gets AF_NETLINK; one with "any" peers
         * no address restriction. */
        strv_free(l);
        s.netlink = true;
        s.ip_allow = NULL;
        assert_int_equal(unit_spec_to_strings(&s, &l), 0);
        assert_true(has(l, "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"));
        for (char **p = l; *p; p++)
                assert_null(strstr(*p, "IPAddress"));
        s.netlink = false;

        strv_free(l);
        s.user = "camuser";
        assert_int_equal(unit_spec_to_strings(&s, &l), 0);
        assert_true(has(l, "User=camuser"));
        assert_false(has(l, "DynamicUser=yes"));
        assert_false(has(l, "User=ca-cam-123456"));

        /* A user manager runs units as its user and refuses the system-only settings. */
        strv_free(l);
        s.user = NULL;
        s.user_manager = true;
        assert_int_equal(unit_spec_to_strings(&s, &l), 0);
        assert_false(has(l, "DynamicUser=yes"));
        assert_false(has(l, "ProtectSystem=strict"));
        assert_false(has(l, "PrivateTmp=yes"));
        assert_false(has(l, "ProtectProc=invisible"));
        assert_false(has(l, "IPAddressDeny=any"));
        assert_true(has(l, "NoNewPrivileges=yes"));
        assert_true(has(l, "SystemCallFilter=@system-service"));
        assert_true(has(l, "Restart=on-failure"));
        assert_true(has(l, "StandardInputFile=/run/call-assistant/credentials/cam.token"));
}

static void test_module_user_name(void **state) {
        char a[MODULE_USER_MAX + 1], b[MODULE_USER_MAX + 1];

        module_user_name("camera", 0, a);
        assert_true(strncmp(a, "ca-camera-", 10) == 0);
        assert_int_equal(strlen(a), 16);
        /* Long names are shortened, yet distinct names give distinct users. */
        module_user_name("a-very-long-module-name-that-goes-on-1", 0, a);
        module_user_name("a-very-long-module-name-that-goes-on-2", 0, b);
        assert_true(strlen(a) <= MODULE_USER_MAX);
        assert_string_not_equal(a, b);
        assert_true(strncmp(a, "ca-a-very-long-module-n", 23) == 0);
        /* Only characters a user name may have ([a-z0-9_-], starting with a letter). */
        module_user_name("cam.v2", 0, a);
        assert_true(strncmp(a, "ca-cam_v2-", 10) == 0);
        for (const char *p = a; *p; p++)
                assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-');
        /* Another salt, another user (for a clash of hashes). */
        module_user_name("camera", 1, b);
        module_user_name("camera", 0, a);
        assert_string_not_equal(a, b);
}

static void test_ip_entries(void **state) {
        assert_true(unit_ip_entry_is_valid("localhost"));
        assert_true(unit_ip_entry_is_valid("multicast"));
        assert_true(unit_ip_entry_is_valid("10.0.0.0/8"));
        assert_true(unit_ip_entry_is_valid("fc00::/7"));
        assert_false(unit_ip_entry_is_valid("10.0.0.0"));
        assert_false(unit_ip_entry_is_valid("10.0.0.0/33"));
        assert_false(unit_ip_entry_is_valid("lan"));
        assert_false(unit_ip_entry_is_valid("::1/x"));
}

static void check_script(const char *command, const char *expected) {
        _cleanup_free_ char *s = NULL;

        assert_int_equal(unit_exec_script(command, &s), 0);
        if (strcmp(s, expected) != 0)
                fail_msg("'%s' became '%s', expected '%s'", command, s, expected);
}

static void test_exec_script(void **state) {
        /* One program: exec'd, so that it is the unit's main process. */
        check_script("./camera-module", "exec ./camera-module");
        check_script("/usr/bin/python3 chromecast_module.py --debug", "exec /usr/bin/python3 chromecast_module.py --debug");
        check_script("  ./m 'a b' \"c;d\" e\\;f", "  exec ./m 'a b' \"c;d\" e\\;f");
        check_script("LANG=C A='x y' ./m --v", "LANG=C A='x y' exec ./m --v");
        check_script("./m 2>&1 >/dev/null <&0", "exec ./m 2>&1 >/dev/null <&0");
        check_script("./m \"$HOME\" $GRPC_PORT", "exec ./m \"$HOME\" $GRPC_PORT");
        check_script("./m # a comment; with a semicolon", "./m # a comment; with a semicolon");
        /* A script: run as written (exec would cut it short or break it). */
        check_script("cd sub && ./m", "cd sub && ./m");
        check_script("./build; ./m", "./build; ./m");
        check_script("./m | logger", "./m | logger");
        check_script("./m &", "./m &");
        check_script("(cd x; ./m)", "(cd x; ./m)");
        check_script("./m `pwd`", "./m `pwd`");
        check_script("./m \"$(pwd)\"", "./m \"$(pwd)\"");
        check_script("./a\n./b", "./a\n./b");
        check_script("if true; then ./m; fi", "if true; then ./m; fi");
        check_script("exec ./m", "exec ./m");
        check_script("A=1", "A=1");
        check_script("./m 'unclosed", "./m 'unclosed");
        check_script("", "");
}

static void test_append_builds_a_valid_message(void **state) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        char *env[] = { "GRPC_PORT=1", NULL };
        UnitSpec s = { .description = "d", .command = "true", .environment = env, .syslog_identifier = "x",
                       .module_name = "x", .token_path = "/c", .dynamic_user = "ca-x-000000",
                       .ip_allow = (const char *const[]){ "localhost", "fc00::/7", NULL },
                       .bind_allow = (const UnitSocketBind[]){ { IPPROTO_TCP, 50100, 1 } }, .n_bind_allow = 1 };
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
                cmocka_unit_test(test_instance_names),
                cmocka_unit_test(test_properties),
                cmocka_unit_test(test_module_user_name),
                cmocka_unit_test(test_ip_entries),
                cmocka_unit_test(test_exec_script),
                cmocka_unit_test(test_append_builds_a_valid_message),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
