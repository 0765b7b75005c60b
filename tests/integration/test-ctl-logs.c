/* Integration test of call-assistantctl's journal reader against the sandbox's journald:
 * a unit's output is found by unit name, limited to the last N lines, as JSON, and followed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ctl/ctl-logs.h"
#include "sandbox/sandbox.h"
#include "shared/macro.h"
#include "systemd/unit-manager.h"

static bool job_finished;

static int append_props(sd_bus_message *m, void *userdata) {
        const char *script = userdata;
        int r = sd_bus_message_append(m, "(sv)", "SyslogIdentifier", "s", "ctl-logs-test");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "ExecStart", "a(sasb)", 1, "/bin/sh", 3, "/bin/sh", "-c",
                                          script, false);
        return r;
}

static void on_job(UnitManager *m, const char *unit, int error, const char *result, void *userdata) {
        job_finished = true;
}

/* Read the unit's logs into a string. */
static char *logs(const LogsOptions *o) {
        char *buf = NULL;
        size_t size;
        FILE *f = open_memstream(&buf, &size);

        assert_non_null(f);
        assert_int_equal(ctl_logs(o, f), 0);
        fclose(f);
        return buf;
}

static void test_logs(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        UnitManager *um = NULL;
        char unit[64];
        const char *script = "for i in 1 2 3 4 5; do echo line-$i; done; sleep 1; echo late-line; sleep 60";
        LogsOptions o = { .unit = unit, .directory = getenv("CA_SANDBOX_JOURNAL") };
        uint64_t deadline;

        assert_true(sandbox_active());
        snprintf(unit, sizeof(unit), "ctl-logs-%d.service", (int)getpid());
        assert_true(sd_event_new(&event) >= 0);
        assert_int_equal(unit_manager_new(&um, event, false), 0);
        assert_int_equal(unit_manager_start_transient(um, unit, append_props, (void *)script, on_job, NULL), 0);
        deadline = sandbox_now_ms() + 10000;
        while (!job_finished && sandbox_now_ms() < deadline)
                assert_true(sd_event_run(event, 100000) >= 0);
        assert_true(job_finished);

        /* Wait (with a deadline) until journald has written all five lines. */
        for (;;) {
                _cleanup_free_ char *out = logs(&o);
                if (strstr(out, "line-5"))
                        break;
                assert_true(sandbox_now_ms() < deadline);
                usleep(20000);
        }

        _cleanup_free_ char *all = logs(&o);
        assert_non_null(strstr(all, "ctl-logs-test["));
        assert_non_null(strstr(all, ": line-1\n"));
        assert_non_null(strstr(all, ": line-5\n"));

        /* The last two entries only. systemd's own "Started" line counts as an entry too, and
         * journald may get it before, between or after the script's lines (PID 1 and the
         * unit's stdout reach it on different sockets): whatever the two are, they are two,
         * and none of the first three lines is among them. */
        o.lines = 2;
        _cleanup_free_ char *tail = logs(&o);
        size_t n_lines = 0;
        for (const char *p = tail; (p = strchr(p, '\n')); p++)
                n_lines++;
        assert_int_equal(n_lines, 2);
        assert_null(strstr(tail, ": line-1\n"));
        assert_null(strstr(tail, ": line-2\n"));
        assert_null(strstr(tail, ": line-3\n"));
        if (!strstr(tail, "late-line"))
                assert_non_null(strstr(tail, ": line-5\n"));

        /* JSON lines. */
        o.lines = 0;
        o.json = true;
        _cleanup_free_ char *json = logs(&o);
        assert_non_null(strstr(json, "\"message\": \"line-1\"") ? strstr(json, "\"message\": \"line-1\"")
                                                                 : strstr(json, "\"message\":\"line-1\""));
        assert_non_null(strstr(json, "\"identifier\":\"ctl-logs-test\""));

        /* Following shows what is written later. */
        o.json = false;
        o.lines = 1;
        o.follow = true;
        o.follow_timeout_ms = 3000;
        _cleanup_free_ char *followed = logs(&o);
        assert_non_null(strstr(followed, "late-line"));

        assert_int_equal(unit_manager_stop(um, unit, NULL, NULL), 0);
        unit_manager_free(um);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_logs),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
