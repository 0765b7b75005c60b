/* The orchestrator's Manager: owns all state (the module registry, systemd's bus, the gRPC
 * runtime and endpoints, the config service) and lives on the sd-event thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "daemon/daemon-config.h"
#include "registry/entity-registry.h"
#include "registry/module.h"
#include "shared/macro.h"
#include "systemd/unit-manager.h"

typedef struct Api Api;
typedef struct ConfigService ConfigService;
typedef struct Flow Flow;
typedef struct PortAllocator PortAllocator;
typedef struct RpcRuntime RpcRuntime;
typedef struct WebService WebService;

/* What changed, for the event stream (WatchEvents). */
typedef enum ManagerEventKind {
        MANAGER_EVENT_MODULE_STATE,    /* a module's state, unit state or health changed */
        MANAGER_EVENT_ENTITY,          /* a module reported an entity change (payload: its Event) */
        MANAGER_EVENT_CONFIG,          /* a module's configuration changed (payload: ManagerConfigChange) */
} ManagerEventKind;

typedef struct ManagerConfigChange {
        uint64_t revision;
        const char *redacted_json;
} ManagerConfigChange;

struct Manager {
        DaemonConfig config;
        sd_event *event;
        UnitManager *units;              /* systemd, over sd-bus */
        RpcRuntime *rpc;                 /* gRPC: the endpoints' servers and the modules' channels */
        Api *api;                        /* the gRPC endpoints (daemon/api.c) */
        ConfigService *config_service;   /* the in-process config service */
        WebService *web_service;         /* the in-process web dashboard; NULL if off or failed */
        Registry registry;
        EntityRegistry entities;         /* every module's entities (manager-entities.c) */
        Flow **flows;                    /* flows.c */
        size_t n_flows;
        char *flows_dir;                 /* <state_dir>/flows */
        bool flows_frozen;               /* exiting: flows no longer react */
        sd_event_source *orphan_sweep;   /* retry of a DestroyEntity that failed (flows.c) */
        unsigned orphan_sweep_ms;        /* its back-off */
        PortAllocator *ports;
        sd_event_source *ports_save;     /* deferred write of the port state */
        char *orchestrator_address;      /* what modules get in CALL_ASSISTANT_ORCHESTRATOR */
        char *credentials_dir;           /* <runtime_dir>/credentials, 0700 */
        unsigned n_problems;             /* manifest/graph problems found at discovery */
        bool shutting_down;
};

/* Call after blocking the signals sd-event handles: the gRPC runtime starts threads. */
int manager_new(Manager **ret, sd_event *event, DaemonConfig *config /* moved into the manager */);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Load the modules, open the config store, listen, connect to systemd, adopt running units
 * and start what can start. */
int manager_startup(Manager *m);
/* SIGTERM: stop every module in reverse dependency order, then exit the event loop; but when
 * systemd is restarting our unit, exit at once and leave the modules running (the next
 * instance adopts them). */
void manager_begin_shutdown(Manager *m);
/* SIGHUP with a valid configuration c: apply what can change while running (health checks,
 * timeouts, unit settings for the units started from now on); what the daemon was started
 * with (endpoints, folders, port range) is kept, with a warning, until the next restart. */
void manager_reload(Manager *m, DaemonConfig *c);

/* Scan the modules dir, validate manifests and the graph, create the tokens (manager-load.c).
 * Problems are logged with file:line:column and the affected modules disabled. */
int manager_load_modules(Manager *m);

/* Dependency order: start every PENDING module whose dependencies are READY. */
void manager_start_ready_modules(Manager *m);
bool manager_dependencies_ready(Manager *mgr, const Module *m);
/* Reverse dependency order during shutdown: stop what no running module depends on. */
void manager_shutdown_progress(Manager *m);

/* The module named so, for a control request: -ENOENT if there is none, -EPERM if it is
 * DISABLED (never started: bad manifest or dependency problem). */
int manager_get_controllable_module(Manager *mgr, const char *name, Module **ret);

/* Start the web dashboard (manager-web.c), before the API: its methods on the control
 * socket need it. A dashboard that cannot start is logged and left out; the modules go on. */
void manager_web_start(Manager *m);

/* Announce a change to the event stream's followers (manager-api.c). */
void manager_emit(Manager *mgr, ManagerEventKind kind, Module *m, const void *payload);
/* Status line for sd_notify (STATUS=...). */
void manager_notify_status(Manager *m);
