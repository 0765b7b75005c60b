/* The Manager: owns the orchestrator's state and the order of things across modules —
 * startup (load, listen, adopt, start in dependency order) and shutdown (reverse order).
 * One module's own life is in module-lifecycle.c. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "daemon/api.h"
#include "daemon/flows.h"
#include "daemon/manager-config.h"
#include "daemon/manager.h"
#include "daemon/module-client.h"
#include "daemon/module-lifecycle.h"
#include "daemon/module-unit.h"
#include "ports/port-alloc.h"
#include "rpc/rpc.h"
#include "services/config/config-service.h"
#include "services/web/web-service.h"
#include "shared/log.h"
#include "shared/macro.h"

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

int manager_get_controllable_module(Manager *mgr, const char *name, Module **ret) {
        Module *m;

        assert(mgr);
        assert(ret);
        m = name ? registry_find(&mgr->registry, name) : NULL;
        if (!m)
                return -ENOENT;
        if (m->state == MODULE_DISABLED)
                return -EPERM;
        *ret = m;
        return 0;
}

/* ---- dependency order ------------------------------------------------------------ */

bool manager_dependencies_ready(Manager *mgr, const Module *m) {
        for (char **d = m->dependencies; d && *d; d++) {
                Module *dep = registry_find(&mgr->registry, *d);
                if (!dep || !module_is_ready(dep))
                        return false;
        }
        return true;
}

void manager_start_ready_modules(Manager *mgr) {
        assert(mgr);
        if (mgr->shutting_down)
                return;
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];

                if (m->state == MODULE_PENDING && !m->admin_stopped && !module_is_active(m) &&
                    manager_dependencies_ready(mgr, m))
                        module_start(m);
        }
}

static bool has_active_dependents(Manager *mgr, const Module *m) {
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *o = mgr->registry.modules[i];

                if (o == m || !module_is_active(o))
                        continue;
                for (char **d = o->dependencies; d && *d; d++)
                        if (strcmp(*d, m->name) == 0)
                                return true;
        }
        return false;
}

void manager_shutdown_progress(Manager *mgr) {
        bool any_active = false;

        assert(mgr);
        if (!mgr->shutting_down)
                return;
        /* Dependents go first: stop every active module none of whose dependents still run. */
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];

                if (!module_is_active(m))
                        continue;
                any_active = true;
                if (m->state != MODULE_STOPPING && !has_active_dependents(mgr, m))
                        module_stop(m);
        }
        if (!any_active) {
                log_info("All modules stopped.");
                (void)sd_event_exit(mgr->event, 0);
        }
}

/* Is systemd restarting our own unit (systemctl restart, a package upgrade's postinst)? Then
 * the SIGTERM is the first half of a restart: the modules stay, the next instance adopts
 * them (same processes, ports and configuration). A stop (systemctl stop, apt remove,
 * shutdown of the system) stops them. */
static bool restart_pending(Manager *mgr) {
        _cleanup_free_ char *type = NULL;
        int r;

        if (!mgr->units)
                return false;
        r = unit_manager_own_job_type(mgr->units, &type);
        if (r < 0)
                log_warning_errno(r, "Cannot read our own unit's job, stopping the modules: %m");
        return r > 0 && (strcmp(type, "restart") == 0 || strcmp(type, "try-restart") == 0 ||
                         strcmp(type, "reload-or-restart") == 0);
}

void manager_begin_shutdown(Manager *mgr) {
        assert(mgr);
        if (mgr->shutting_down)
                return;
        mgr->shutting_down = true;
        if (restart_pending(mgr)) {
                (void)sd_notify(0, "STOPPING=1\nSTATUS=Restarting; the modules keep running");
                log_info("Our unit is being restarted: leaving the modules running for the next instance to adopt.");
                for (size_t i = 0; i < mgr->registry.n_modules; i++)
                        module_reset_runtime(mgr->registry.modules[i]);
                manager_ports_flush(mgr);
                (void)sd_event_exit(mgr->event, 0);
                return;
        }
        (void)sd_notify(0, "STOPPING=1\nSTATUS=Stopping modules");
        log_info("Stopping modules in reverse dependency order.");
        for (size_t i = 0; i < mgr->registry.n_modules; i++)
                module_health_stop(mgr->registry.modules[i]);
        manager_shutdown_progress(mgr);
}

/* ---- reload ------------------------------------------------------------------------ */

static bool str_differs(const char *a, const char *b) {
        return strcmp(a ? a : "", b ? b : "") != 0;
}

static bool strv_differs(char **a, char **b) {
        for (; a && *a && b && *b; a++, b++)
                if (strcmp(*a, *b) != 0)
                        return true;
        return (a && *a) || (b && *b);
}

static void swap_str(char **a, char **b) {
        char *t = *a;
        *a = *b;
        *b = t;
}

void manager_reload(Manager *mgr, DaemonConfig *c) {
        DaemonConfig *o = &mgr->config;
        unsigned kept = 0, changed = 0;

        assert(mgr);
        assert(c);

        /* What the daemon was started with (its endpoints, folders and port range): taking
         * it now would mean closing sockets under clients or moving state; it applies at the
         * next restart, which keeps the modules running. */
#define KEEP_STR(field, key)                                                                             \
        if (str_differs(o->field, c->field)) {                                                           \
                log_warning("Reload: %s changed ('%s' -> '%s'); it applies at the next restart "         \
                            "(systemctl restart call-assistant: the modules keep running).", key,        \
                            o->field ? o->field : "", c->field ? c->field : "");                         \
                kept++;                                                                                  \
        }
        KEEP_STR(modules_dir, "modules_dir");
        KEEP_STR(state_dir, "state_dir");
        KEEP_STR(runtime_dir, "runtime_dir");
        KEEP_STR(listen, "listen");
        KEEP_STR(control_socket, "control_socket");
#undef KEEP_STR
        if (o->port_min != c->port_min || o->port_max != c->port_max) {
                log_warning("Reload: ports changed (%u-%u -> %u-%u); it applies at the next restart "
                            "(systemctl restart call-assistant: the modules keep running).",
                            o->port_min, o->port_max, c->port_min, c->port_max);
                kept++;
        }

        /* Everything else is read where it is used: health checks from their next round on,
         * registration timeouts from the next registration, unit settings (restart delay, start
         * limits, stop timeout, slice, user, read-only paths, dev) for units started from now on. */
#define TAKE_NUM(field)                          \
        if (o->field != c->field) {              \
                o->field = c->field;             \
                changed++;                       \
        }
        TAKE_NUM(health_interval_ms);
        TAKE_NUM(health_timeout_ms);
        TAKE_NUM(health_failure_threshold);
        TAKE_NUM(registration_timeout_ms);
        TAKE_NUM(restart_sec_ms);
        TAKE_NUM(start_limit_burst);
        TAKE_NUM(start_limit_interval_sec);
        TAKE_NUM(stop_timeout_sec);
        TAKE_NUM(dev);
#undef TAKE_NUM
        if (str_differs(o->slice, c->slice)) {
                swap_str(&o->slice, &c->slice);
                changed++;
        }
        if (str_differs(o->user, c->user)) {
                swap_str(&o->user, &c->user);
                changed++;
        }
        if (strv_differs(o->read_only_paths, c->read_only_paths)) {
                char **t = o->read_only_paths;
                o->read_only_paths = c->read_only_paths;
                c->read_only_paths = t;
                changed++;
        }
        log_info("Reloaded the configuration: %u setting(s) changed and applied (unit settings to modules "
                 "started from now on), %u kept until the next restart.", changed, kept);
}

/* ---- setup and teardown ---------------------------------------------------------- */

int manager_new(Manager **ret, sd_event *event, DaemonConfig *config) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        assert(ret);
        assert(event);
        assert(config);

        m = new0(Manager, 1);
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->config = *config;
        *config = (DaemonConfig){};
        /* By default modules reach us on a unix socket in the runtime dir: a root-owned folder,
         * so no other process can take the address while we are down. */
        if (m->config.listen && *m->config.listen)
                m->orchestrator_address = strdup(m->config.listen);
        else if (asprintf(&m->orchestrator_address, "unix:%s/modules.sock", m->config.runtime_dir) < 0)
                m->orchestrator_address = NULL;
        if (!m->orchestrator_address || asprintf(&m->credentials_dir, "%s/credentials", m->config.runtime_dir) < 0)
                return -ENOMEM;
        r = rpc_runtime_new(&m->rpc, event);
        if (r < 0)
                return log_error_errno(r, "Failed to start the gRPC runtime: %m");
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* The dashboard first: it is a client of our control socket on our gRPC runtime. */
        m->web_service = web_service_free(m->web_service);
        /* Module channels first: their cancelled calls may still answer calls of the API's
         * servers (a SetConfig waiting for its module); flows no longer react to them. Then
         * the servers, then the runtime. */
        flows_freeze(m);
        for (size_t i = 0; i < m->registry.n_modules; i++)
                module_reset_runtime(m->registry.modules[i]);
        flows_done(m);
        m->api = api_free(m->api);
        m->rpc = rpc_runtime_free(m->rpc);
        for (size_t i = 0; i < m->registry.n_modules; i++) {
                m->registry.modules[i]->watch = unit_watch_free(m->registry.modules[i]->watch);
                m->registry.modules[i]->resources_query = unit_resource_query_free(m->registry.modules[i]->resources_query);
        }
        registry_done(&m->registry);
        entity_registry_done(&m->entities);
        manager_ports_flush(m);
        port_allocator_free(m->ports);
        config_service_free(m->config_service);
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
                if (strcmp(*l, s) == 0)
                        return true;
        return false;
}

/* Modules whose units still run (after an orchestrator restart or upgrade) are adopted. */
static int adopt_running_units(Manager *mgr) {
        _cleanup_strv_free_ char **loaded = NULL;
        unsigned adopted = 0;
        int r;

        /* Which module units does systemd have already? One call, rather than a status read
         * per module. */
        r = unit_manager_list_loaded(mgr->units, "call-assistant-module@*", &loaded);
        if (r < 0)
                return log_error_errno(r, "Cannot list the module units: %m");

        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];
                UnitStatus st = { .loaded = false, .uid = UNIT_UID_INVALID };

                if (m->state == MODULE_DISABLED)
                        continue;
                if (strv_contains(loaded, m->unit)) {
                        r = unit_manager_get_status(mgr->units, m->unit, &st);
                        if (r < 0)
                                return log_error_errno(r, "Cannot read the status of %s: %m", m->unit);
                }
                r = module_adopt(m, &st);
                if (r < 0)
                        return r;
                adopted += r;
        }
        if (adopted > 0)
                log_info("Adopted %u running module unit(s).", adopted);
        return 0;
}

int manager_startup(Manager *mgr) {
        int r;

        assert(mgr);
        r = manager_load_modules(mgr);
        if (r < 0)
                return r;
        r = manager_config_init(mgr);
        if (r < 0)
                return r;
        r = flows_init(mgr);
        if (r < 0)
                return r;
        manager_web_start(mgr);
        r = api_new(&mgr->api, mgr);
        if (r < 0)
                return r;
        r = unit_manager_new(&mgr->units, mgr->event, mgr->config.user_manager);
        if (r < 0)
                return r; /* logged */
        r = adopt_running_units(mgr);
        if (r < 0)
                return r;
        manager_start_ready_modules(mgr);
        manager_notify_status(mgr);
        return 0;
}
