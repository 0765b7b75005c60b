/* One module's whole life, on systemd and gRPC (docs/orchestrator.md, "Module states"):
 *
 *   PENDING --start--> STARTING: port, unit properties, StartTransientUnit (module_start)
 *   the unit runs ----> RegisterModule with wait-for-ready (begin_registration)
 *   registered -------> the state the module reports; its stored configuration is applied
 *                       again (manager-config.c); health checks every interval
 *   unit fails --------> FAILED (systemd gave up restarting it)
 *   process restarted -> registered again (a new main PID, or auto-restart)
 *   unhealthy ---------> restarted through systemd
 *   stop --------------> STOPPING: Shutdown RPC with a deadline; the module exits by itself
 *                       or, once the deadline has passed, StopUnit --> STOPPED
 *
 * systemd restarts crashed modules by itself (Restart=on-failure); the orchestrator follows
 * the unit through PropertiesChanged (on_unit_status) and never polls. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/manager-config.h"
#include "daemon/manager-entities.h"
#include "daemon/manager.h"
#include "daemon/module-client.h"
#include "daemon/module-lifecycle.h"
#include "daemon/module-unit.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"

#define SHUTDOWN_RPC_DEADLINE_MS 3000u

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

bool module_unit_is_up(const Module *m) {
        const UnitStatus *s = &m->unit_status;

        return s->loaded && s->active_state[0] && !streq(s->active_state, "inactive") &&
               !streq(s->active_state, "failed");
}

bool module_is_active(const Module *m) {
        return m->start_requested || module_unit_is_up(m) || m->state == MODULE_STOPPING;
}

void module_change_state(Module *m, ModuleState state, const char *fmt, ...) {
        ModuleState before;
        char msg[512] = "";
        bool changed;

        assert(m);
        if (fmt) {
                va_list ap;

                va_start(ap, fmt);
                (void)vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
        }
        changed = m->state != state || !m->state_message != !fmt || (m->state_message && !streq(m->state_message, msg));
        if (!changed)
                return;

        log_full(state == MODULE_ERROR || state == MODULE_FAILED ? LOG_WARNING : LOG_INFO, "Module %s: %s -> %s%s%s",
                 m->name, module_state_to_string(m->state), module_state_to_string(state), fmt ? ": " : "", msg);
        before = m->state;
        if (module_set_state(m, state, fmt ? msg : NULL) < 0)
                (void)log_oom();
        manager_emit(m->manager, MANAGER_EVENT_MODULE_STATE, m, NULL);
        manager_notify_status(m->manager);
        /* Entities are available while the module is READY; flows follow (manager-entities.c). */
        if (before != state)
                manager_entities_module_state_changed(m, before);
}

/* ---- health checks ------------------------------------------------------------------- */

void module_health_stop(Module *m) {
        m->health_timer = sd_event_source_disable_unref(m->health_timer);
        m->health = HEALTH_UNKNOWN;
        m->health_failures = 0;
}

static void on_health_checked(Module *m, const ModuleCallResult *res, void *userdata) {
        Manager *mgr = m->manager;
        HealthState before = m->health;

        m->health_in_flight = false;
        if (!m->registered || m->state == MODULE_STOPPING)
                return;

        if (res->status == RPC_OK && res->health == HEALTH_SERVING) {
                m->health = HEALTH_SERVING;
                m->health_failures = 0;
        } else {
                m->health = HEALTH_NOT_SERVING;
                m->health_failures++;
                log_warning("Module %s: health check failed (%u of %u): %s", m->name, m->health_failures,
                            mgr->config.health_failure_threshold,
                            res->status == RPC_OK                  ? "NOT_SERVING"
                            : res->status == RPC_DEADLINE_EXCEEDED ? "deadline exceeded"
                                                                   : "call failed");
                if (m->health_failures >= mgr->config.health_failure_threshold && !mgr->shutting_down) {
                        log_warning("Module %s: unhealthy, restarting %s through systemd", m->name, m->unit);
                        m->health_failures = 0;
                        (void)unit_manager_restart(mgr->units, m->unit, NULL, NULL);
                }
        }
        if (before != m->health)
                manager_emit(mgr, MANAGER_EVENT_MODULE_STATE, m, NULL);
}

static int on_health_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Module *m = userdata;
        const DaemonConfig *c = &m->manager->config;

        if (!m->health_in_flight && m->registered &&
            module_client_health_check(m, c->health_timeout_ms, on_health_checked, NULL) >= 0)
                m->health_in_flight = true;
        (void)sd_event_source_set_time_relative(s, (uint64_t)c->health_interval_ms * 1000);
        (void)sd_event_source_set_time_accuracy(s, (uint64_t)c->health_interval_ms * 250);
        return 0;
}

/* The health interval is applied here: a check every health_interval_ms while registered. */
static void health_start(Module *m) {
        const DaemonConfig *c = &m->manager->config;
        int r;

        module_health_stop(m);
        /* A quarter of the interval as accuracy lets sd-event wake up once for many modules'
         * checks instead of once each. */
        r = sd_event_add_time_relative(m->manager->event, &m->health_timer, CLOCK_MONOTONIC,
                                       (uint64_t)c->health_interval_ms * 1000, (uint64_t)c->health_interval_ms * 250,
                                       on_health_timer, m);
        if (r < 0) {
                log_warning_errno(r, "Module %s: cannot schedule health checks, ignoring: %m", m->name);
                return;
        }
        (void)sd_event_source_set_enabled(m->health_timer, SD_EVENT_ON);
}

/* ---- registration ------------------------------------------------------------------- */

void module_reset_runtime(Module *m) {
        assert(m);
        module_health_stop(m);
        m->stop_timer = sd_event_source_disable_unref(m->stop_timer);
        module_clear_registration(m);
        module_client_disconnect(m);
        m->registering = false;
}

static void on_registered(Module *m, const ModuleCallResult *res, void *userdata) {
        Manager *mgr = m->manager;
        _cleanup_free_ char *schema_error = NULL;
        int r;

        m->registering = false;
        if (m->stop_requested || mgr->shutting_down)
                return;

        if (res->status != RPC_OK) {
                if (res->status == RPC_DEADLINE_EXCEEDED)
                        module_change_state(
                                m, MODULE_ERROR,
                                "the module did not answer RegisterModule on port %u within %u ms%s%s; unit stopped",
                                m->port, mgr->config.registration_timeout_ms, *res->message ? ": " : "", res->message);
                else
                        module_change_state(m, MODULE_ERROR, "RegisterModule failed (status %d): %s; unit stopped",
                                            res->status, res->message);
                /* The module is broken, not crashed: stop it rather than let it run unmanaged. */
                m->stop_requested = true;
                (void)unit_manager_stop(mgr->units, m->unit, NULL, NULL);
                return;
        }

        m->registered = true;
        m->registered_at_usec = now_usec(CLOCK_REALTIME);
        health_start(m);
        log_info("Module %s: registered on port %u (pid %u, %zu entity types), %.1f ms after the start request",
                 m->name, m->port, m->unit_status.main_pid, m->n_entity_types,
                 m->started_at_usec ? (double)(now_usec(CLOCK_MONOTONIC) - m->started_at_usec) / 1000.0 : 0.0);

        switch (res->reported) {
        case MODULE_READY:
                module_change_state(m, MODULE_READY, NULL);
                break;
        case MODULE_WAITING_FOR_CONFIG:
                module_change_state(m, MODULE_WAITING_FOR_CONFIG, "waiting for configuration");
                break;
        case MODULE_ERROR:
                module_change_state(m, MODULE_ERROR, "module reported ERROR at registration");
                break;
        default:
                module_change_state(m, MODULE_STARTING, "registered, module still starting");
                break;
        }

        r = manager_config_deliver_stored(m, &schema_error);
        if (r > 0)
                return; /* its outcome decides (manager-config.c) */
        if (r < 0) {
                m->schema_refused = true;
                module_change_state(m, MODULE_ERROR, "its configuration schema was refused: %s",
                                    schema_error ? schema_error : strerror(-r));
        }
        manager_start_ready_modules(mgr);
}

static void begin_registration(Module *m) {
        int r;

        if (m->registering || m->registered)
                return;
        m->seen_main_pid = m->unit_status.main_pid;
        r = module_client_connect(m);
        if (r >= 0)
                r = module_client_register(m, m->manager->config.registration_timeout_ms, on_registered, NULL);
        if (r < 0) {
                module_change_state(m, MODULE_ERROR, "cannot call RegisterModule: %s", strerror(-r));
                return;
        }
        m->registering = true;
}

/* ---- following the unit: what happens when it runs, restarts, stops or fails ----------- */

static void on_unit_status(UnitManager *um, const char *unit, const UnitStatus *st, void *userdata) {
        Module *m = userdata;
        Manager *mgr = m->manager;
        bool running;

        m->unit_status = *st;
        if (m->state == MODULE_DISABLED)
                return;

        running = streq(st->active_state, "active") && streq(st->sub_state, "running") && st->main_pid > 0;

        if (streq(st->active_state, "failed")) {
                /* systemd gave up restarting it (start limit), or it had to be killed. */
                module_reset_runtime(m);
                if (m->state != MODULE_ERROR && m->state != MODULE_STOPPED)
                        module_change_state(m, MODULE_FAILED, "unit failed after %u restarts (result: %s)",
                                            st->n_restarts, st->result);
                manager_shutdown_progress(mgr);
                return;
        }

        if (!st->loaded || streq(st->active_state, "inactive")) {
                if (m->start_requested)
                        return; /* the status from before our start job */
                module_reset_runtime(m);
                if (m->state == MODULE_ERROR) {
                        /* keep the reason */
                } else if (m->stop_requested || m->state == MODULE_STOPPING)
                        module_change_state(m, MODULE_STOPPED, NULL);
                else if (m->state != MODULE_PENDING && m->state != MODULE_STOPPED && m->state != MODULE_FAILED) {
                        m->admin_stopped = true;
                        module_change_state(m, MODULE_STOPPED, "unit stopped outside the orchestrator");
                }
                m->stop_requested = false;
                manager_shutdown_progress(mgr);
                return;
        }

        if (m->stop_requested || m->state == MODULE_STOPPING)
                return;

        if (running) {
                if (m->seen_main_pid && m->seen_main_pid != st->main_pid && (m->registered || m->registering)) {
                        /* A new process: systemd restarted it. Register it again. */
                        module_reset_runtime(m);
                        module_change_state(m, MODULE_STARTING, "process restarted (pid %u, %u restarts)",
                                            st->main_pid, st->n_restarts);
                }
                if (!m->registering && !m->registered)
                        begin_registration(m);
        } else if (streq(st->sub_state, "auto-restart") && (m->registered || m->registering)) {
                module_reset_runtime(m);
                module_change_state(m, MODULE_STARTING, "process exited; systemd restarts it");
        }
}

int module_follow_unit(Module *m) {
        assert(m);
        if (m->watch)
                return 0;
        return unit_manager_watch(m->manager->units, m->unit, on_unit_status, m, &m->watch);
}

int module_adopt(Module *m, const UnitStatus *status) {
        int r;

        assert(m);
        assert(status);
        m->unit_status = *status;
        if (module_unit_is_up(m)) {
                /* Still running from before our restart: adopt it, do not restart it. It holds
                 * its remembered port itself. */
                r = module_unit_assign_port(m, true);
                if (r < 0)
                        return log_error_errno(r, "No port for adopted module %s: %m", m->name);
                m->adopted = true;
                module_change_state(m, MODULE_STARTING, "adopted running unit (pid %u)", status->main_pid);
        } else if (streq(status->active_state, "failed"))
                (void)unit_manager_reset_failed(m->manager->units, m->unit);

        r = module_follow_unit(m);
        if (r < 0)
                return log_error_errno(r, "Cannot follow %s: %m", m->unit);
        return m->adopted;
}

/* ---- starting and stopping ---------------------------------------------------------- */

static void on_start_job(UnitManager *um, const char *unit, int error, const char *result, void *userdata) {
        Module *m = userdata;

        m->start_requested = false;
        log_debug("Module %s: start job %s after %.1f ms", m->name, result ? result : "?",
                  (double)(now_usec(CLOCK_MONOTONIC) - m->started_at_usec) / 1000.0);
        if (error < 0) {
                module_change_state(m, MODULE_ERROR, "systemd refused to start %s: %s", unit, result ? result : "");
                manager_shutdown_progress(m->manager);
                return;
        }
        if (!streq(result, "done"))
                log_warning("Module %s: start job for %s finished with '%s'", m->name, unit, result);
        /* The unit watch takes it from here (running → registration; failed → FAILED). */
        if (!module_unit_is_up(m) && !streq(result, "done") && m->state == MODULE_STARTING &&
            !streq(m->unit_status.active_state, "failed"))
                module_change_state(m, MODULE_STARTING, "start job %s; systemd may retry", result);
}

void module_start(Module *m) {
        Manager *mgr = m->manager;
        int r;

        assert(m);
        if (m->state == MODULE_DISABLED || mgr->shutting_down)
                return;
        if (streq(m->unit_status.active_state, "failed"))
                (void)unit_manager_reset_failed(mgr->units, m->unit);

        r = module_follow_unit(m);
        if (r < 0) {
                module_change_state(m, MODULE_ERROR, "cannot follow unit %s: %s", m->unit, strerror(-r));
                return;
        }
        r = module_unit_assign_port(m, false);
        if (r < 0) {
                module_change_state(m, MODULE_ERROR, "no free port in %u-%u: %s", mgr->config.port_min,
                                    mgr->config.port_max, strerror(-r));
                return;
        }
        m->stop_requested = false;
        m->seen_main_pid = 0;
        m->started_at_usec = now_usec(CLOCK_MONOTONIC);
        r = unit_manager_start_transient(mgr->units, m->unit, module_unit_append_properties, m, on_start_job, m);
        if (r < 0) {
                module_change_state(m, MODULE_ERROR, "cannot start unit %s: %s", m->unit, strerror(-r));
                return;
        }
        m->start_requested = true;
        module_change_state(m, MODULE_STARTING, "starting %s on port %u", m->unit, m->port);
}

static void on_stop_job(UnitManager *um, const char *unit, int error, const char *result, void *userdata) {
        Module *m = userdata;

        if (error < 0 && m->state == MODULE_STOPPING) {
                /* Most likely the unit was already gone. */
                m->stop_requested = false;
                module_change_state(m, MODULE_STOPPED, NULL);
        }
        manager_shutdown_progress(m->manager);
}

static void stop_unit_now(Module *m) {
        int r = unit_manager_stop(m->manager->units, m->unit, on_stop_job, m);

        if (r < 0) {
                log_warning_errno(r, "Module %s: cannot stop %s: %m", m->name, m->unit);
                module_change_state(m, MODULE_STOPPED, "stop failed: %s", strerror(-r));
                manager_shutdown_progress(m->manager);
        }
}

static int on_stop_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Module *m = userdata;

        m->stop_timer = sd_event_source_disable_unref(m->stop_timer);
        if (m->state == MODULE_STOPPING) {
                log_info("Module %s: still running %u ms after Shutdown; stopping %s.", m->name,
                         SHUTDOWN_RPC_DEADLINE_MS, m->unit);
                stop_unit_now(m);
        }
        return 0;
}

/* ShutdownRequest.deadline_ms is the time the module has to exit by itself before it gets
 * SIGTERM: a module that took the request is left alone until then (its unit going inactive
 * ends the wait, in on_unit_status()); one that did not answer is stopped at once. Either
 * way systemd makes sure it stops (SIGTERM, then SIGKILL after TimeoutStopSec=). */
static void on_shutdown_answered(Module *m, const ModuleCallResult *res, void *userdata) {
        uint64_t deadline = (uint64_t)SHUTDOWN_RPC_DEADLINE_MS * 1000, elapsed;
        int r;

        if (m->state != MODULE_STOPPING)
                return;
        if (res->status != RPC_OK || !module_unit_is_up(m)) {
                stop_unit_now(m);
                return;
        }
        elapsed = now_usec(CLOCK_MONOTONIC) - m->stop_sent_usec;
        m->stop_timer = sd_event_source_disable_unref(m->stop_timer);
        r = sd_event_add_time_relative(m->manager->event, &m->stop_timer, CLOCK_MONOTONIC,
                                       elapsed < deadline ? deadline - elapsed : 0, 10 * 1000, on_stop_deadline, m);
        if (r < 0)
                stop_unit_now(m);
}

void module_stop(Module *m) {
        assert(m);
        if (m->state == MODULE_STOPPING || m->state == MODULE_DISABLED)
                return;
        module_health_stop(m);
        if (!module_is_active(m)) {
                if (streq(m->unit_status.active_state, "failed"))
                        (void)unit_manager_reset_failed(m->manager->units, m->unit);
                if (m->state != MODULE_ERROR && m->state != MODULE_FAILED)
                        module_change_state(m, MODULE_STOPPED, NULL);
                return;
        }
        m->stop_requested = true;
        module_change_state(m, MODULE_STOPPING, NULL);
        m->stop_sent_usec = now_usec(CLOCK_MONOTONIC);
        if (m->registered &&
            module_client_shutdown(m, SHUTDOWN_RPC_DEADLINE_MS, on_shutdown_answered, NULL) >= 0)
                return;
        stop_unit_now(m);
}

/* ---- requests from the control API ------------------------------------------------- */

int module_start_on_request(Module *m) {
        assert(m);
        if (m->state == MODULE_STOPPING || m->manager->shutting_down)
                return -EBUSY;
        m->admin_stopped = false;
        if (module_is_active(m))
                return 0; /* already running */
        if (!manager_dependencies_ready(m->manager, m)) {
                module_change_state(m, MODULE_PENDING, "waiting for dependencies");
                return 0;
        }
        module_start(m);
        return 0;
}

int module_stop_on_request(Module *m) {
        assert(m);
        m->admin_stopped = true;
        module_stop(m);
        return 0;
}

int module_restart_on_request(Module *m) {
        assert(m);
        if (m->state == MODULE_STOPPING || m->manager->shutting_down)
                return -EBUSY;
        m->admin_stopped = false;
        if (!module_unit_is_up(m))
                return module_start_on_request(m);
        return unit_manager_restart(m->manager->units, m->unit, NULL, NULL);
}

/* ---- what the module says about itself ----------------------------------------------- */

void module_reported_state(Module *m, ModuleState state, const char *message) {
        assert(m);
        if (!m->registered || m->stop_requested)
                return;
        if (state != MODULE_STARTING && state != MODULE_WAITING_FOR_CONFIG && state != MODULE_READY &&
            state != MODULE_ERROR)
                return;
        /* It cannot be configured: what it says of itself does not make it usable (the SDK
         * reports READY right after registering, which raced with the refusal). */
        if (m->schema_refused) {
                log_debug("Module %s: reported %s, kept in ERROR (its configuration schema was refused).", m->name,
                          module_state_to_string(state));
                return;
        }
        if (message && *message)
                module_change_state(m, state, "%s", message);
        else
                module_change_state(m, state, NULL);
        if (state == MODULE_READY)
                manager_start_ready_modules(m->manager);
}

void module_configured(Module *m) {
        assert(m);
        if (m->registered && (m->state == MODULE_WAITING_FOR_CONFIG || m->state == MODULE_STARTING))
                module_change_state(m, MODULE_READY, "configured");
        manager_start_ready_modules(m->manager);
}
