/* Integration test of src/systemd/unit-manager against the sandbox's real systemd: start a
 * transient unit, follow it through signals, see systemd restart it after kill -9, stop it,
 * see a crash loop end in "failed", and a command that cannot be executed fail its start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/sandbox.h"
#include "shared/macro.h"
#include "systemd/unit-manager.h"

typedef struct Ctx {
        sd_event *event;
        UnitManager *manager;
        char unit[96];
        int job_error;
        char job_result[64];
        bool job_done;
        UnitStatus status;
        unsigned n_status;
} Ctx;

typedef struct Spec {
        const char *script;
        const char *path;          /* executable; default /bin/sh */
        uint32_t burst;
} Spec;

static int append_props(sd_bus_message *m, void *userdata) {
        const Spec *s = userdata;
        const char *path = s->path ? s->path : "/bin/sh";
        int r;

        r = sd_bus_message_append(m, "(sv)", "Description", "s", "unit manager test");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Type", "s", "exec");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Restart", "s", "on-failure");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "RestartUSec", "t", (uint64_t)100000);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "StartLimitBurst", "u", s->burst ? s->burst : 5);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "StartLimitIntervalUSec", "t", (uint64_t)60 * 1000000);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "ExecStart", "a(sasb)", 1, path, 3, path, "-c", s->script,
                                          false);
        return r;
}

static void on_job(UnitManager *m, const char *unit, int error, const char *result, void *userdata) {
        Ctx *c = userdata;

        c->job_done = true;
        c->job_error = error;
        snprintf(c->job_result, sizeof(c->job_result), "%s", result);
}

static void on_status(UnitManager *m, const char *unit, const UnitStatus *status, void *userdata) {
        Ctx *c = userdata;

        c->status = *status;
        c->n_status++;
}

/* Run the event loop until cond(c) holds or timeout_ms passes. */
static bool run_until(Ctx *c, bool (*cond)(Ctx *c), int timeout_ms) {
        uint64_t deadline = sandbox_now_ms() + (uint64_t)timeout_ms;

        while (!cond(c)) {
                uint64_t now = sandbox_now_ms();
                if (now >= deadline)
                        return false;
                assert_true(sd_event_run(c->event, (deadline - now) * 1000) >= 0);
        }
        return true;
}

static bool job_done(Ctx *c) {
        return c->job_done;
}
static bool running(Ctx *c) {
        return strcmp(c->status.active_state, "active") == 0 && strcmp(c->status.sub_state, "running") == 0 &&
               c->status.main_pid > 0;
}
static bool restarted_once(Ctx *c) {
        return running(c) && c->status.n_restarts == 1;
}
static bool gone(Ctx *c) {
        return !c->status.loaded || strcmp(c->status.active_state, "inactive") == 0;
}
static bool failed(Ctx *c) {
        return strcmp(c->status.active_state, "failed") == 0;
}

static void ctx_setup(Ctx *c, const char *tag) {
        memset(c, 0, sizeof(*c));
        assert_true(sandbox_active());
        assert_true(sd_event_new(&c->event) >= 0);
        assert_int_equal(unit_manager_new(&c->manager, c->event, false), 0);
        snprintf(c->unit, sizeof(c->unit), "ca-um-%s-%d.service", tag, (int)getpid());
}

static void ctx_teardown(Ctx *c) {
        unit_manager_free(c->manager);
        sd_event_unref(c->event);
}

static void start(Ctx *c, Spec *spec) {
        c->job_done = false;
        assert_int_equal(unit_manager_start_transient(c->manager, c->unit, append_props, spec, on_job, c), 0);
        assert_true(run_until(c, job_done, 15000));
}

static void test_start_crash_restart_stop(void **state) {
        Spec spec = { .script = "exec sleep 300" };
        UnitWatch *w = NULL;
        uint32_t old_pid;
        char pid[16];
        Ctx c;

        ctx_setup(&c, "crash");
        assert_int_equal(unit_manager_watch(c.manager, c.unit, on_status, &c, &w), 0);
        assert_true(run_until(&c, gone, 5000)); /* first report: not loaded */
        assert_false(c.status.loaded);

        start(&c, &spec);
        assert_int_equal(c.job_error, 0);
        assert_string_equal(c.job_result, "done");
        assert_true(run_until(&c, running, 10000));
        old_pid = c.status.main_pid;
        assert_int_equal(c.status.n_restarts, 0);

        /* A crash from outside: systemd restarts it, and we learn of it through signals. */
        snprintf(pid, sizeof(pid), "%u", old_pid);
        char *kill9[] = { "kill", "-9", pid, NULL };
        int status;
        assert_int_equal(sandbox_exec(kill9, 10000, &status, NULL), 0);
        assert_int_equal(status, 0);
        assert_true(run_until(&c, restarted_once, 10000));
        assert_int_not_equal(c.status.main_pid, old_pid);

        c.job_done = false;
        assert_int_equal(unit_manager_stop(c.manager, c.unit, on_job, &c), 0);
        assert_true(run_until(&c, job_done, 15000));
        assert_string_equal(c.job_result, "done");
        assert_true(run_until(&c, gone, 10000));
        unit_watch_free(w);
        ctx_teardown(&c);
}

static void test_crash_loop_fails(void **state) {
        Spec spec = { .script = "echo crashing; exit 3", .burst = 3 };
        UnitStatus st;
        Ctx c;

        ctx_setup(&c, "loop");
        assert_int_equal(unit_manager_watch(c.manager, c.unit, on_status, &c, NULL), 0);
        start(&c, &spec);
        /* systemd 252 keeps Result=exit-code when the start limit is hit: "gave up" is
         * ActiveState=failed after the allowed restarts. */
        assert_true(run_until(&c, failed, 15000));
        assert_string_equal(c.status.result, "exit-code");
        assert_int_equal(c.status.n_restarts, 3);

        assert_int_equal(unit_manager_get_status(c.manager, c.unit, &st), 0);
        assert_true(st.loaded);
        assert_string_equal(st.active_state, "failed");
        assert_int_equal(unit_manager_reset_failed(c.manager, c.unit), 0);
        assert_true(run_until(&c, gone, 10000));
        ctx_teardown(&c);
}

static void test_not_executable_fails_start(void **state) {
        Spec spec = { .script = "true", .path = "/nonexistent/program", .burst = 1 };
        Ctx c;

        ctx_setup(&c, "noexec");
        start(&c, &spec);
        assert_int_equal(c.job_error, 0);
        assert_string_equal(c.job_result, "failed"); /* Type=exec: exec failure fails the start */
        (void)unit_manager_reset_failed(c.manager, c.unit);
        ctx_teardown(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_start_crash_restart_stop),
                cmocka_unit_test(test_crash_loop_fails),
                cmocka_unit_test(test_not_executable_fails_start),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
