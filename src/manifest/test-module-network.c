/* Unit tests for the `network:` key of module.yaml: what a module may reach and bind, and the
 * errors (file, line, column, field) for what is not understood. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "manifest/module-manifest.h"

static Manifest *parse(const char *network_yaml, Diagnostics *d) {
        char path[] = "/tmp/ca-network-test-XXXXXX";
        Manifest *m = NULL;
        int fd = mkstemp(path);
        FILE *f;

        assert_true(fd >= 0);
        f = fdopen(fd, "w");
        fprintf(f, "name: cam\nversion: \"1\"\ncommand: ./run\n%s", network_yaml);
        fclose(f);
        assert_int_equal(manifest_parse_file(path, "cam", &m, d), 0);
        unlink(path);
        return m;
}

static char *render(const Diagnostics *d) {
        char *buf = NULL;
        size_t size;
        FILE *f = open_memstream(&buf, &size);
        diagnostics_print(d, f);
        fclose(f);
        return buf;
}

static void test_default_is_loopback(void **state) {
        Diagnostics d = {};
        Manifest *m = parse("", &d);

        assert_true(m->valid);
        assert_int_equal(m->network.peers, NETWORK_PEERS_LOOPBACK);
        assert_false(m->network.multicast);
        assert_int_equal(m->network.n_binds, 0);
        manifest_free(m);
        diagnostics_done(&d);
}

static void test_declared_network(void **state) {
        Diagnostics d = {};
        /* What the go2rtc bridge declares: cameras on the LAN, WebRTC over UDP, an HLS port. */
        Manifest *m = parse("network:\n  peers: lan\n  multicast: true\n  bind: [\"udp\", \"tcp:8554\", "
                            "\"udp:10000-10100\"]\n",
                            &d);
        char buf[32];

        assert_true(m->valid);
        assert_int_equal(d.n, 0);
        assert_int_equal(m->network.peers, NETWORK_PEERS_LAN);
        assert_true(m->network.multicast);
        assert_int_equal(m->network.n_binds, 3);
        assert_int_equal(m->network.binds[0].protocol, IPPROTO_UDP);
        assert_int_equal(m->network.binds[0].n_ports, 0);
        assert_int_equal(m->network.binds[1].protocol, IPPROTO_TCP);
        assert_int_equal(m->network.binds[1].port_min, 8554);
        assert_int_equal(m->network.binds[1].n_ports, 1);
        network_bind_to_string(&m->network.binds[2], buf, sizeof(buf));
        assert_string_equal(buf, "udp:10000-10100");
        manifest_free(m);

        m = parse("network:\n  peers: any\n", &d);
        assert_true(m->valid);
        assert_int_equal(m->network.peers, NETWORK_PEERS_ANY);
        manifest_free(m);
        diagnostics_done(&d);
}

static void test_errors(void **state) {
        static const struct {
                const char *yaml, *expect;
        } cases[] = {
                { "network: lan\n", ":4:10: error: field 'network': expected a mapping" },
                { "network:\n  peers: internet\n", ":5:10: error: field 'network.peers': must be loopback, lan or any" },
                { "network:\n  multicast: maybe\n", ":5:14: error: field 'network.multicast': must be true or false" },
                { "network:\n  bind: tcp:80\n", ":5:9: error: field 'network.bind': expected a list" },
                { "network:\n  bind: [\"tcp:0\"]\n", ":5:10: error: field 'network.bind': 'tcp:0' is not a port" },
                { "network:\n  bind: [\"sctp:9\"]\n", "'sctp:9' is not a port" },
                { "network:\n  bind: [\"udp:20-10\"]\n", "'udp:20-10' is not a port" },
                { "network:\n  bind: [\"tcp:70000\"]\n", "'tcp:70000' is not a port" },
                { "network:\n  peer: any\n", ":5:3: error: field 'network': unknown key 'peer'" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                Diagnostics d = {};
                Manifest *m = parse(cases[i].yaml, &d);
                char *out = render(&d);

                if (!strstr(out, cases[i].expect))
                        fail_msg("case %zu: expected '%s' in:\n%s", i, cases[i].expect, out);
                /* A module whose network is not understood does not run. */
                assert_false(m->valid);
                free(out);
                manifest_free(m);
                diagnostics_done(&d);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_default_is_loopback),
                cmocka_unit_test(test_declared_network),
                cmocka_unit_test(test_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
