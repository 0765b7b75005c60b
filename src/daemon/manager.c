/* The Manager: module lifecycle on systemd — start in dependency order, follow units through
 * signals, register over gRPC, health-check, adopt after a restart, stop in reverse order. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "daemon/manager-modules.h"
#include "daemon/manager.h"
#include "daemon/module-client.h"
#include "shared/log.h"
#include "shared/macro.h"

#define SHUTDOWN_RPC_DEADLINE_MS 3000u
#define APPLY_CONFIG_TIMEOUT_MS 10000u

static void module_start(Manager *mgr, Module *m);
static void module_stop(Manager *mgr, Module *m);
static void start_ready_modules(Manager *mgr);
static void shutdown_progress(Manager *mgr);

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

/* Does systemd currently run (or try to run) this module's unit? */
static bool unit_is_up(const Module *m) {
        const UnitStatus *s = &m->unit_status;

        return s->loaded && !streq(s->active_state, "inactive") && !streq(s->active_state, "failed") &&
               s->active_state[0];
}

static bool module_is_active(const Module *m) {
        return m->start_requested || unit_is_up(m) || m->state == MODULE_STOPPING;
}

void manager_emit(Manager *mgr, ManagerEventKind kind, Module *m, const void *payload) {
        if (mgr->event_handler)
                mgr->event_handler(mgr, kind, m, payload, mgr->event_userdata);
}

void manager_notify_status(Manager *mgr) {
        unsigned counts[_MODULE_STATE_MAX] = {};
        char buf[512];
        size_t n = 0;

        for (size_t i = 0; i < mgr->registry.n_modules; i++)
                counts[mgr->registry.modules[i]->state]++;
        n += (size_t)snprintf(buf, sizeof(buf), "STATUS=%zu modules:", mgr->registry.n_modules);
        for (int s = 0; s < _MODULE_STATE_MAX && n < sizeof(buf); s++)
                if (counts[s])
                        n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %u %s", counts[s],
                                              module_state_to_string(s));
        (void)sd_notify(0, buf);
}

static void set_state(Manager *mgr, Module *m, ModuleState state, const char *fmt, ...) _printf_(4, 5);
static void set_state(Manager *mgr, Module *m, ModuleState state, const char *fmt, ...) {
        char msg[512] = "";
        bool changed;

        if (fmt) {
                va_list ap;
                va_start(ap, fmt);
                (void)vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
        }
        changed = m->state != state || !m->state_message != !fmt ||
                  (m->state_message && !streq(m->state_message, msg));
        if (!changed)
                return;

        if (state == MODULE_ERROR || state == MODULE_FAILED)
                log_warning("Module %s: %s -> %s%s%s", m->name, module_state_to_string(m->state),
                            module_state_to_string(state), fmt ? ": " : "", msg);
        else
                log_info("Module %s: %s -> %s%s%s", m->name, module_state_to_string(m->state),
                         module_state_to_string(state), fmt ? ": " : "", msg);
        if (module_set_state(m, state, fmt ? msg : NULL) < 0)
                (void)log_oom();
        manager_emit(mgr, MANAGER_EVENT_MODULE_STATE, m, NULL);
        manager_notify_status(mgr);
}

/* ---- health checks ------------------------------------------------------------------- */

static void health_stop(Module *m) {
        m->health_timer = sd_event_source_disable_unref(m->health_timer);
        m->health = HEALTH_UNKNOWN;
        m->health_failures = 0;
}

static void on_health_checked(Manager *mgr, Module *m, int status, const char *message, void *userdata) {
        HealthState before = m->health;

        m->health_in_flight = false;
        if (!m->registered || m->state == MODULE_STOPPING)
                return;

        if (status == CA_STATUS_OK && message && streq(message, "SERVING")) {
                m->health = HEALTH_SERVING;
                m->health_failures = 0;
        } else {
                m->health = HEALTH_NOT_SERVING;
                m->health_failures++;
                log_warning("Module %s: health check failed (%u of %u): %s", m->name, m->health_failures,
                            mgr->config.health_failure_threshold,
                            status == CA_STATUS_OK ? (message ? message : "?")
                                                   : (status == CA_STATUS_DEADLINE_EXCEEDED ? "deadline exceeded"
                                                                                            : "call failed"));
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
        Manager *mgr = m->userdata;
        int r;

        if (!m->health_in_flight && m->registered) {
                r = module_client_health_check(mgr, m, mgr->config.health_timeout_ms, on_health_checked, NULL);
                if (r >= 0)
                        m->health_in_flight = true;
        }
        (void)sd_event_source_set_time_relative(s, (uint64_t)mgr->config.health_interval_ms * 1000);
        (void)sd_event_source_set_time_accuracy(s, (uint64_t)mgr->config.health_interval_ms * 250);
        return 0;
}

static void health_start(Manager *mgr, Module *m) {
        sd_event_source *s = NULL;
        int r;

        health_stop(m);
        /* A quarter of the interval as accuracy lets sd-event wake up once for many modules'
         * checks instead of once each. */
        r = sd_event_add_time_relative(mgr->event, &s, CLOCK_MONOTONIC,
                                       (uint64_t)mgr->config.health_interval_ms * 1000,
                                       (uint64_t)mgr->config.health_interval_ms * 250, on_health_timer, m);
        if (r < 0) {
                log_warning_errno(r, "Module %s: cannot schedule health checks, ignoring: %m", m->name);
                return;
        }
        (void)sd_event_source_set_enabled(s, SD_EVENT_ON);
        m->health_timer = s;
}

/* ---- registration ------------------------------------------------------------------- */

static void on_config_applied_after_register(Manager *mgr, Module *m, int status, const char *message,
                                             void *userdata) {
        if (!m->registered || status == CA_STATUS_CANCELLED)
                return;
        if (status == CA_STATUS_OK) {
                if (m->state == MODULE_WAITING_FOR_CONFIG || m->state == MODULE_STARTING)
                        set_state(mgr, m, MODULE_READY, "configured");
                start_ready_modules(mgr);
        } else
                set_state(mgr, m, MODULE_ERROR, "stored configuration was refused: %s", message ? message : "");
}

static void on_registered(Manager *mgr, Module *m, int status, const char *message, void *userdata) {
        int reported, r;

        m->registering = false;
        if (m->stop_requested || mgr->shutting_down)
                return;

        if (status != CA_STATUS_OK) {
                if (status == CA_STATUS_DEADLINE_EXCEEDED)
                        set_state(mgr, m, MODULE_ERROR,
                                  "the module did not answer RegisterModule on port %u within %u ms; unit stopped",
                                  m->port, mgr->config.registration_timeout_ms);
                else
                        set_state(mgr, m, MODULE_ERROR, "RegisterModule failed (status %d): %s; unit stopped",
                                  status, message ? message : "");
                /* The module is broken, not crashed: stop it rather than let it run unmanaged. */
                m->stop_requested = true;
                (void)unit_manager_stop(mgr->units, m->unit, NULL, NULL);
                return;
        }

        m->registered = true;
        m->registered_at_usec = now_usec(CLOCK_REALTIME);
        health_start(mgr, m);
        log_info("Module %s: registered on port %u (pid %u, %zu entity types), %.1f ms after the start request",
                 m->name, m->port, m->unit_status.main_pid, m->n_entity_types,
                 m->started_at_usec ? (double)(now_usec(CLOCK_MONOTONIC) - m->started_at_usec) / 1000.0 : 0.0);

        reported = message ? module_state_from_string(message) : -EINVAL;
        if (reported == MODULE_READY)
                set_state(mgr, m, MODULE_READY, NULL);
        else if (reported == MODULE_WAITING_FOR_CONFIG)
                set_state(mgr, m, MODULE_WAITING_FOR_CONFIG, "waiting for configuration");
        else if (reported == MODULE_ERROR)
                set_state(mgr, m, MODULE_ERROR, "module reported ERROR at registration");
        else
                set_state(mgr, m, MODULE_STARTING, "registered, module still starting");

        /* A stored configuration is (re-)applied after every (re-)registration. */
        r = manager_modules_deliver_stored_config(mgr, m, on_config_applied_after_register);
        if (r > 0)
                return;
        if (r < 0)
                set_state(mgr, m, MODULE_ERROR, "its configuration schema was refused (see the log)");
        start_ready_modules(mgr);
}

static void begin_registration(Manager *mgr, Module *m) {
        int r;

        if (m->registering || m->registered)
                return;
        m->seen_main_pid = m->unit_status.main_pid;
        r = module_client_connect(mgr, m);
        if (r >= 0)
                r = module_client_register(mgr, m, mgr->config.registration_timeout_ms, on_registered, NULL);
        if (r < 0) {
                set_state(mgr, m, MODULE_ERROR, "cannot call RegisterModule: %s", strerror(-r));
                return;
        }
        m->registering = true;
}

/* ---- following the unit -------------------------------------------------------------- */

static void on_unit_status(UnitManager *um, const char *unit, const UnitStatus *st, void *userdata) {
        Module *m = userdata;
        Manager *mgr = m->userdata;
        bool running;

        m->unit_status = *st;
        if (m->state == MODULE_DISABLED)
                return;

        running = streq(st->active_state, "active") && streq(st->sub_state, "running") && st->main_pid > 0;

        if (streq(st->active_state, "failed")) {
                health_stop(m);
                module_clear_registration(m);
                module_client_disconnect(m);
                m->registering = false;
                if (m->state != MODULE_ERROR && m->state != MODULE_STOPPED)
                        set_state(mgr, m, MODULE_FAILED, "unit failed after %u restarts (result: %s)",
                                  st->n_restarts, st->result);
                shutdown_progress(mgr);
                return;
        }

        if (!st->loaded || streq(st->active_state, "inactive")) {
                if (m->start_requested)
                        return; /* the status from before our start job */
                health_stop(m);
                module_clear_registration(m);
                module_client_disconnect(m);
                m->registering = false;
                if (m->state == MODULE_ERROR) {
                        /* keep the reason */
                } else if (m->stop_requested || m->state == MODULE_STOPPING)
                        set_state(mgr, m, MODULE_STOPPED, NULL);
                else if (m->state != MODULE_PENDING && m->state != MODULE_STOPPED && m->state != MODULE_FAILED) {
                        m->admin_stopped = true;
                        set_state(mgr, m, MODULE_STOPPED, "unit stopped outside the orchestrator");
                }
                m->stop_requested = false;
                shutdown_progress(mgr);
                return;
        }

        if (m->stop_requested || m->state == MODULE_STOPPING)
                return;

        if (running) {
                if (m->seen_main_pid && m->seen_main_pid != st->main_pid &&
                    (m->registered || m->registering)) {
                        /* A new process: systemd restarted it. Register it again. */
                        health_stop(m);
                        module_clear_registration(m);
                        module_client_disconnect(m);
                        m->registering = false;
                        set_state(mgr, m, MODULE_STARTING, "process restarted (pid %u, %u restarts)", st->main_pid,
                                  st->n_restarts);
                }
                if (!m->registering && !m->registered)
                        begin_registration(mgr, m);
        } else if (streq(st->sub_state, "auto-restart") && (m->registered || m->registering)) {
                health_stop(m);
                module_clear_registration(m);
                module_client_disconnect(m);
                m->registering = false;
                set_state(mgr, m, MODULE_STARTING, "process exited; systemd restarts it");
        }
}

static int module_watch(Manager *mgr, Module *m) {
        if (m->watch)
                return 0;
        return unit_manager_watch(mgr->units, m->unit, on_unit_status, m, &m->watch);
}

/* ---- starting and stopping ---------------------------------------------------------- */

static void on_start_job(UnitManager *um, const char *unit, int error, const char *result, void *userdata) {
        Module *m = userdata;
        Manager *mgr = m->userdata;

        m->start_requested = false;
        log_debug("Module %s: start job %s after %.1f ms", m->name, result ? result : "?",
                  (double)(now_usec(CLOCK_MONOTONIC) - m->started_at_usec) / 1000.0);
        if (error < 0) {
                set_state(mgr, m, MODULE_ERROR, "systemd refused to start %s: %s", unit, result ? result : "");
                shutdown_progress(mgr);
                return;
        }
        if (!streq(result, "done"))
                log_warning("Module %s: start job for %s finished with '%s'", m->name, unit, result);
        /* The unit watch takes it from here (running → registration; failed → FAILED). */
        if (!unit_is_up(m) && !streq(result, "done") && m->state == MODULE_STARTING &&
            !streq(m->unit_status.active_state, "failed"))
                set_state(mgr, m, MODULE_STARTING, "start job %s; systemd may retry", result);
}

static void module_start(Manager *mgr, Module *m) {
        int r;

        if (m->state == MODULE_DISABLED || mgr->shutting_down)
                return;
        if (streq(m->unit_status.active_state, "failed"))
                (void)unit_manager_reset_failed(mgr->units, m->unit);

        r = module_watch(mgr, m);
        if (r < 0) {
                set_state(mgr, m, MODULE_ERROR, "cannot follow unit %s: %s", m->unit, strerror(-r));
                return;
        }
        r = manager_modules_assign_port(mgr, m, false);
        if (r < 0) {
                set_state(mgr, m, MODULE_ERROR, "no free port in %u-%u: %s", mgr->config.port_min,
                          mgr->config.port_max, strerror(-r));
                return;
        }
        m->stop_requested = false;
        m->seen_main_pid = 0;
        m->started_at_usec = now_usec(CLOCK_MONOTONIC);
        r = unit_manager_start_transient(mgr->units, m->unit, manager_modules_append_unit_props, m, on_start_job, m);
        if (r < 0) {
                set_state(mgr, m, MODULE_ERROR, "cannot start unit %s: %s", m->unit, strerror(-r));
                return;
        }
        m->start_requested = true;
        set_state(mgr, m, MODULE_STARTING, "starting %s on port %u", m->unit, m->port);
}

static bool dependencies_ready(Manager *mgr, Module *m) {
        for (char **d = m->dependencies; d && *d; d++) {
                Module *dep = registry_find(&mgr->registry, *d);
                if (!dep || !module_is_ready(dep))
                        return false;
        }
        return true;
}

static void start_ready_modules(Manager *mgr) {
        if (mgr->shutting_down)
                return;
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];

                if (m->state == MODULE_PENDING && !m->admin_stopped && !module_is_active(m) &&
                    dependencies_ready(mgr, m))
                        module_start(mgr, m);
        }
}

static void on_stop_job(UnitManager *um, const char *unit, int error, const char *result, void *userdata) {
        Module *m = userdata;
        Manager *mgr = m->userdata;

        if (error < 0 && m->state == MODULE_STOPPING) {
                /* Most likely the unit was already gone. */
                m->stop_requested = false;
                set_state(mgr, m, MODULE_STOPPED, NULL);
        }
        shutdown_progress(mgr);
}

static void stop_unit_now(Manager *mgr, Module *m) {
        int r = unit_manager_stop(mgr->units, m->unit, on_stop_job, m);

        if (r < 0) {
                log_warning_errno(r, "Module %s: cannot stop %s: %m", m->name, m->unit);
                set_state(mgr, m, MODULE_STOPPED, "stop failed: %s", strerror(-r));
                shutdown_progress(mgr);
        }
}

static void on_shutdown_rpc_done(Manager *mgr, Module *m, int status, const char *message, void *userdata) {
        /* Whatever the module answered, systemd makes sure it stops (SIGTERM, then SIGKILL). */
        if (m->state == MODULE_STOPPING)
                stop_unit_now(mgr, m);
}

static void module_stop(Manager *mgr, Module *m) {
        if (m->state == MODULE_STOPPING || m->state == MODULE_DISABLED)
                return;
        health_stop(m);
        if (!module_is_active(m)) {
                if (streq(m->unit_status.active_state, "failed"))
                        (void)unit_manager_reset_failed(mgr->units, m->unit);
                if (m->state != MODULE_ERROR && m->state != MODULE_FAILED)
                        set_state(mgr, m, MODULE_STOPPED, NULL);
                return;
        }
        m->stop_requested = true;
        set_state(mgr, m, MODULE_STOPPING, NULL);
        if (m->registered && module_client_shutdown(mgr, m, SHUTDOWN_RPC_DEADLINE_MS, on_shutdown_rpc_done, NULL) >= 0)
                return;
        stop_unit_now(mgr, m);
}

int manager_start_module(Manager *mgr, const char *name) {
        Module *m = registry_find(&mgr->registry, name);

        if (!m)
                return -ENOENT;
        if (m->state == MODULE_DISABLED)
                return -EPERM;
        if (m->state == MODULE_STOPPING || mgr->shutting_down)
                return -EBUSY;
        m->admin_stopped = false;
        if (module_is_active(m))
                return 0; /* already running */
        if (!dependencies_ready(mgr, m)) {
                set_state(mgr, m, MODULE_PENDING, "waiting for dependencies");
                return 0;
        }
        module_start(mgr, m);
        return 0;
}

int manager_stop_module(Manager *mgr, const char *name) {
        Module *m = registry_find(&mgr->registry, name);

        if (!m)
                return -ENOENT;
        if (m->state == MODULE_DISABLED)
                return -EPERM;
        m->admin_stopped = true;
        module_stop(mgr, m);
        return 0;
}

int manager_restart_module(Manager *mgr, const char *name) {
        Module *m = registry_find(&mgr->registry, name);
        int r;

        if (!m)
                return -ENOENT;
        if (m->state == MODULE_DISABLED)
                return -EPERM;
        if (m->state == MODULE_STOPPING || mgr->shutting_down)
                return -EBUSY;
        m->admin_stopped = false;
        if (!unit_is_up(m))
                return manager_start_module(mgr, name);
        r = unit_manager_restart(mgr->units, m->unit, NULL, NULL);
        if (r < 0)
                return r;
        return 0;
}

void manager_module_reported_state(Manager *mgr, Module *m, ModuleState state, const char *message) {
        if (!m->registered || m->stop_requested)
                return;
        if (state != MODULE_STARTING && state != MODULE_WAITING_FOR_CONFIG && state != MODULE_READY &&
            state != MODULE_ERROR)
                return;
        if (message && *message)
                set_state(mgr, m, state, "%s", message);
        else
                set_state(mgr, m, state, NULL);
        if (state == MODULE_READY)
                start_ready_modules(mgr);
}

typedef struct ApplyCtx {
        manager_apply_done_t done;
        void *userdata;
} ApplyCtx;

static void on_apply_done(Manager *mgr, Module *m, int status, const char *message, void *userdata) {
        ApplyCtx *c = userdata;

        if (status == CA_STATUS_OK && m->registered &&
            (m->state == MODULE_WAITING_FOR_CONFIG || m->state == MODULE_STARTING)) {
                set_state(mgr, m, MODULE_READY, "configured");
                start_ready_modules(mgr);
        }
        if (c->done)
                c->done(mgr, m, status, message, c->userdata);
        free(c);
}

int manager_apply_config(Manager *mgr, Module *m, const char *config_json, manager_apply_done_t done,
                         void *userdata) {
        ApplyCtx *c;
        int r;

        if (!m->registered)
                return -EAGAIN;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->done = done;
        c->userdata = userdata;
        r = module_client_apply_config(mgr, m, config_json, APPLY_CONFIG_TIMEOUT_MS, on_apply_done, c);
        if (r < 0)
                free(c);
        return r;
}

/* ---- orchestrator shutdown --------------------------------------------------------- */

static bool has_active_dependents(Manager *mgr, Module *m) {
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *o = mgr->registry.modules[i];
                if (o == m || !module_is_active(o))
                        continue;
                for (char **d = o->dependencies; d && *d; d++)
                        if (streq(*d, m->name))
                                return true;
        }
        return false;
}

static void shutdown_progress(Manager *mgr) {
        bool any_active = false;

        if (!mgr->shutting_down)
                return;
        /* Dependents go first: stop every active module none of whose dependents still run. */
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];

                if (!module_is_active(m))
                        continue;
                any_active = true;
                if (m->state != MODULE_STOPPING && !has_active_dependents(mgr, m))
                        module_stop(mgr, m);
        }
        if (!any_active) {
                log_info("All modules stopped.");
                (void)sd_event_exit(mgr->event, 0);
        }
}

void manager_begin_shutdown(Manager *mgr) {
        if (mgr->shutting_down)
                return;
        mgr->shutting_down = true;
        (void)sd_notify(0, "STOPPING=1\nSTATUS=Stopping modules");
        log_info("Stopping modules in reverse dependency order.");
        for (size_t i = 0; i < mgr->registry.n_modules; i++)
                health_stop(mgr->registry.modules[i]);
        shutdown_progress(mgr);
}

/* ---- setup ------------------------------------------------------------------------ */

int manager_new(Manager **ret, sd_event *event, DaemonConfig *config) {
        Manager *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->config = *config;
        *config = (DaemonConfig){};
        m->orchestrator_address = strdup(m->config.listen);
        if (asprintf(&m->credentials_dir, "%s/credentials", m->config.runtime_dir) < 0)
                m->credentials_dir = NULL;
        if (!m->orchestrator_address || !m->credentials_dir) {
                manager_free(m);
                return -ENOMEM;
        }
        *ret = m;
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->registry.n_modules; i++) {
                health_stop(m->registry.modules[i]);
                module_client_disconnect(m->registry.modules[i]);
                m->registry.modules[i]->watch = unit_watch_free(m->registry.modules[i]->watch);
        }
        registry_done(&m->registry);
        manager_modules_done(m);
        unit_manager_free(m->units);
        daemon_config_done(&m->config);
        free(m->orchestrator_address);
        free(m->credentials_dir);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

static bool strv_contains(char **l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

int manager_startup(Manager *mgr) {
        _cleanup_strv_free_ char **loaded = NULL;
        unsigned adopted = 0;
        int r;

        r = unit_manager_new(&mgr->units, mgr->event, mgr->config.user_manager);
        if (r < 0)
                return r;

        /* Which module units does systemd have already (running ones are adopted)? One call,
         * rather than a status read per module. */
        r = unit_manager_list_loaded(mgr->units, "call-assistant-module@*", &loaded);
        if (r < 0)
                return log_error_errno(r, "Cannot list the module units: %m");

        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];
                UnitStatus st;

                m->userdata = mgr;
                if (m->state == MODULE_DISABLED)
                        continue;

                if (strv_contains(loaded, m->unit)) {
                        r = unit_manager_get_status(mgr->units, m->unit, &st);
                        if (r < 0)
                                return log_error_errno(r, "Cannot read the status of %s: %m", m->unit);
                } else
                        st = (UnitStatus){ .loaded = false };
                m->unit_status = st;
                if (unit_is_up(m)) {
                        /* Still running from before our restart: adopt it, do not restart it.
                         * It holds its remembered port itself. */
                        r = manager_modules_assign_port(mgr, m, true);
                        if (r < 0)
                                return log_error_errno(r, "No port for adopted module %s: %m", m->name);
                        m->adopted = true;
                        adopted++;
                        set_state(mgr, m, MODULE_STARTING, "adopted running unit (pid %u)", st.main_pid);
                } else if (streq(st.active_state, "failed"))
                        (void)unit_manager_reset_failed(mgr->units, m->unit);

                r = module_watch(mgr, m);
                if (r < 0)
                        return log_error_errno(r, "Cannot follow %s: %m", m->unit);
        }
        if (adopted > 0)
                log_info("Adopted %u running module unit(s).", adopted);

        start_ready_modules(mgr);
        manager_notify_status(mgr);
        return 0;
}
