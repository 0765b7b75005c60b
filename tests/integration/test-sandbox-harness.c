/* Integration test of the sandbox harness itself: a transient unit created over sd-bus on
 * the sandbox's bus is active per systemctl inside the sandbox, and its output is in the
 * journal under its syslog identifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <systemd/sd-bus.h>

#include "sandbox/sandbox.h"
#include "shared/macro.h"

#define assert_ok(expr) assert_true((expr) >= 0)

typedef struct JobWait {
        const char *job;   /* object path of the job we wait for */
        char *result;      /* "done", "failed", ... once JobRemoved arrived */
} JobWait;

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        JobWait *w = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;
        if (w->job && strcmp(path, w->job) == 0 && !w->result)
                w->result = strdup(result);
        return 0;
}

/* Wait until the JobRemoved signal for w->job arrived, with a deadline. */
static void wait_job(sd_bus *bus, JobWait *w, int timeout_ms) {
        uint64_t deadline = sandbox_now_ms() + (uint64_t)timeout_ms;

        while (!w->result) {
                int r = sd_bus_process(bus, NULL);
                assert_true(r >= 0);
                if (r > 0)
                        continue;
                assert_true(sandbox_now_ms() < deadline);
                assert_true(sd_bus_wait(bus, (deadline - sandbox_now_ms()) * 1000) >= 0);
        }
}

static void test_transient_unit_active_and_logged(void **state) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char unit[128], ident[64], marker[64], script[256];
        _cleanup_free_ char *out = NULL;
        JobWait w = {};
        const char *job;
        int status;

        assert_true(sandbox_active());
        snprintf(unit, sizeof(unit), "ca-harness-test-%d.service", (int)getpid());
        snprintf(ident, sizeof(ident), "ca-harness-%d", (int)getpid());
        snprintf(marker, sizeof(marker), "harness-marker-%d", (int)getpid());
        snprintf(script, sizeof(script), "echo %s; exec sleep 300", marker);

        assert_int_equal(sandbox_bus_open(&bus), 0);
        assert_int_equal(sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                            "org.freedesktop.systemd1.Manager", "Subscribe", &error, NULL, ""), 1);
        /* The match must exist before the job does, or JobRemoved can be missed. */
        assert_ok(sd_bus_match_signal(bus, &slot, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                             "org.freedesktop.systemd1.Manager", "JobRemoved", on_job_removed, &w));

        assert_ok(sd_bus_message_new_method_call(bus, &m, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                                        "org.freedesktop.systemd1.Manager", "StartTransientUnit"));
        assert_ok(sd_bus_message_append(m, "ss", unit, "fail"));
        assert_ok(sd_bus_message_open_container(m, 'a', "(sv)"));
        assert_ok(sd_bus_message_append(m, "(sv)", "Description", "s", "call-assistant sandbox harness test"));
        assert_ok(sd_bus_message_append(m, "(sv)", "SyslogIdentifier", "s", ident));
        assert_ok(sd_bus_message_append(m, "(sv)", "Type", "s", "exec"));
        assert_ok(sd_bus_message_append(m, "(sv)", "ExecStart", "a(sasb)", 1,
                                               "/bin/sh", 3, "/bin/sh", "-c", script, false));
        assert_ok(sd_bus_message_close_container(m));
        assert_ok(sd_bus_message_append(m, "a(sa(sv))", 0));
        assert_int_equal(sd_bus_call(bus, m, 10 * 1000 * 1000, &error, &reply), 1);
        assert_int_equal(sd_bus_message_read(reply, "o", &job), 1);
        w.job = job;

        wait_job(bus, &w, 10000);
        assert_string_equal(w.result, "done");
        free(w.result);
        w.result = NULL;

        /* systemctl inside the sandbox sees the unit running. */
        char *is_active[] = { "systemctl", "is-active", unit, NULL };
        assert_int_equal(sandbox_exec(is_active, 10000, &status, &out), 0);
        assert_int_equal(status, 0);
        assert_string_equal(out, "active\n");
        out = mfree_str(out);

        /* Its output is in the journal, for the unit and under its syslog identifier. */
        char *by_unit[] = { "journalctl", "--no-pager", "-o", "cat", "-u", unit, NULL };
        assert_int_equal(sandbox_exec_until(by_unit, marker, 10000, NULL), 0);
        char ident_arg[96];
        snprintf(ident_arg, sizeof(ident_arg), "SYSLOG_IDENTIFIER=%s", ident);
        char *by_ident[] = { "journalctl", "--no-pager", "-o", "cat", ident_arg, NULL };
        assert_int_equal(sandbox_exec_until(by_ident, marker, 10000, NULL), 0);

        /* Stop it again, and see it gone. */
        reply = sd_bus_message_unref(reply);
        assert_int_equal(sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                            "org.freedesktop.systemd1.Manager", "StopUnit", &error, &reply,
                                            "ss", unit, "replace"), 1);
        assert_int_equal(sd_bus_message_read(reply, "o", &job), 1);
        w.job = job;
        wait_job(bus, &w, 15000);
        assert_string_equal(w.result, "done");
        free(w.result);

        assert_int_equal(sandbox_exec(is_active, 10000, &status, &out), 0);
        assert_int_not_equal(status, 0);
        sd_bus_error_free(&error);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_transient_unit_active_and_logged),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
