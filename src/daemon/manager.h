/* The orchestrator's Manager: owns all state, lives on the sd-event thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "daemon/daemon-config.h"
#include "registry/module.h"
#include "systemd/unit-manager.h"

typedef struct Manager Manager;
typedef struct PortAllocator PortAllocator;

/* Kinds of event on the event stream. */
typedef enum ManagerEventKind {
        MANAGER_EVENT_MODULE_STATE,    /* a module's state, unit state or health changed */
        MANAGER_EVENT_ENTITY,          /* a module reported an entity change */
        MANAGER_EVENT_CONFIG,          /* a module's configuration changed (redacted) */
} ManagerEventKind;

/* Payload of MANAGER_EVENT_CONFIG. */
typedef struct ManagerConfigChange {
        uint64_t revision;
        const char *redacted_json;
} ManagerConfigChange;

typedef void (*manager_event_handler_t)(Manager *mgr, ManagerEventKind kind, Module *m, const void *payload,
                                        void *userdata);

struct Manager {
        DaemonConfig config;
        sd_event *event;
        UnitManager *units;
        Registry registry;
        PortAllocator *ports;
        sd_event_source *ports_save;  /* deferred write of the port state */
        char *orchestrator_address;   /* what modules get in CALL_ASSISTANT_ORCHESTRATOR */
        char *credentials_dir;        /* <runtime_dir>/credentials, 0700 */
        bool shutting_down;
        bool ready_notified;
        unsigned n_problems;          /* manifest/graph problems found at discovery */
        manager_event_handler_t event_handler;
        void *event_userdata;
        void *rpc;                    /* the daemon's gRPC servers (daemon layer) */
        struct ConfigService *config_service;   /* the in-process config service */
};

int manager_new(Manager **ret, sd_event *event, DaemonConfig *config /* moved into the manager */);
Manager *manager_free(Manager *m);

/* Scan the modules dir, validate manifests and the graph, assign ports. Problems are
 * logged with file:line:column and the affected modules disabled; the rest go on. */
int manager_load_modules(Manager *m);
/* Connect to systemd, adopt running units, start what can start. */
int manager_startup(Manager *m);
/* Stop every module in reverse dependency order, then exit the event loop. */
void manager_begin_shutdown(Manager *m);

/* Operations on one module (control API). Return -ENOENT for an unknown module,
 * -EBUSY if it is in a state the operation cannot start from. */
int manager_start_module(Manager *mgr, const char *name);
int manager_stop_module(Manager *mgr, const char *name);
int manager_restart_module(Manager *mgr, const char *name);

/* Called by the API layer when a module reports its own state (ReportState). */
void manager_module_reported_state(Manager *mgr, Module *m, ModuleState state, const char *message);

/* Configuration delivery: the config service asks the manager to apply a configuration to
 * a running module; done runs with a gRPC status. */
typedef void (*manager_apply_done_t)(Manager *mgr, Module *m, int status, const char *message, void *userdata);
int manager_apply_config(Manager *mgr, Module *m, const char *config_json, manager_apply_done_t done,
                         void *userdata);

void manager_emit(Manager *mgr, ManagerEventKind kind, Module *m, const void *payload);

/* Status line for sd_notify (STATUS=...). */
void manager_notify_status(Manager *m);
