/* A module as the orchestrator sees it: manifest facts, unit, port, identity and state. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "manifest/module-network.h"
#include "systemd/unit-manager.h"

/* Owned by the daemon layer (src/daemon); declared here so that a Module carries real types. */
typedef struct Manager Manager;
typedef struct ModuleClient ModuleClient;

typedef enum ModuleState {
        MODULE_PENDING,             /* waiting for its dependencies to be READY */
        MODULE_STARTING,            /* unit starting, or waiting for registration */
        MODULE_WAITING_FOR_CONFIG,  /* registered, needs configuration */
        MODULE_READY,               /* registered and configured */
        MODULE_ERROR,               /* registration or configuration failed, or module said so */
        MODULE_STOPPING,            /* being stopped by the orchestrator */
        MODULE_STOPPED,             /* not running, by request */
        MODULE_FAILED,              /* systemd gave up restarting it */
        MODULE_DISABLED,            /* bad manifest or dependency problem: never started */
        _MODULE_STATE_MAX,
} ModuleState;

typedef enum HealthState {
        HEALTH_UNKNOWN,
        HEALTH_SERVING,
        HEALTH_NOT_SERVING,
} HealthState;

typedef struct EntityType {
        char *name;
        char *description;
        char **capabilities;  /* NULL-terminated */
        char **media_in;      /* media taken in flows, NULL-terminated ("rtsp", "webrtc", ...) */
        char **media_out;     /* media given */
} EntityType;

typedef struct Module Module;

struct Module {
        /* From the manifest. */
        char *name;
        char *dir;            /* relative to the modules dir: the unit instance */
        char *abs_dir;
        char *version;
        char *description;
        char *command;
        char *dev_command;
        char **dependencies;  /* NULL-terminated module names */
        char *disabled_reason;
        ModuleNetwork network;    /* addresses it may reach, ports it may bind (manifest) */

        /* Runtime. */
        char *unit;           /* call-assistant-module@<escaped dir>.service */
        char *token;          /* secret identity (hex); never logged */
        char *token_path;     /* in a root-only folder; systemd opens it as the unit's stdin */
        char *user_name;      /* its own dynamic user (DynamicUser=yes, User=<this>) */
        uint16_t port;
        ModuleState state;
        char *state_message;
        UnitStatus unit_status;
        UnitWatch *watch;
        UnitResourceQuery *resources_query; /* asking systemd for CPU and memory */
        bool has_resources;
        uint64_t cpu_usage_nsec, memory_current, resources_at_usec; /* the last answer (CLOCK_REALTIME) */
        uint32_t seen_main_pid;     /* main PID we registered; a new PID means a new process */
        bool start_requested;       /* a start job is under way */
        bool stop_requested;        /* the orchestrator is stopping it */
        bool admin_stopped;         /* stopped on request: do not start it automatically */
        bool adopted;               /* found running at orchestrator start */
        bool registering;           /* a RegisterModule call is in flight */
        bool registered;
        bool entities_synced;       /* the entity registry has its ListEntities since it became READY */
        bool schema_refused;        /* its configuration schema was refused: ERROR until it registers again */
        uint64_t registered_at_usec;   /* CLOCK_REALTIME */
        uint64_t started_at_usec;      /* CLOCK_MONOTONIC, when we asked systemd to start it */
        uint64_t stop_sent_usec;       /* CLOCK_MONOTONIC, when we sent it Shutdown */
        sd_event_source *stop_timer;   /* after Shutdown: StopUnit when its deadline has passed */

        /* What it told us at registration. */
        char *reg_name, *reg_version, *reg_description;
        EntityType *entity_types;
        size_t n_entity_types;
        char *config_schema;
        bool config_required;

        /* Health checking. */
        HealthState health;
        uint32_t health_failures;
        bool health_in_flight;
        sd_event_source *health_timer;

        ModuleClient *client;   /* gRPC channel to the module (daemon/module-client.c) */
        Manager *manager;       /* the daemon's Manager that runs it */
};

const char *module_state_to_string(ModuleState s);
const char *health_state_to_string(HealthState s);

const EntityType *module_find_entity_type(const Module *m, const char *type);

/* A module is "up" for its dependents only when READY. */
static inline bool module_is_ready(const Module *m) {
        return m->state == MODULE_READY;
}

Module *module_new(const char *name, const char *dir, const char *abs_dir);
Module *module_free(Module *m);
void module_clear_registration(Module *m);
int module_set_state(Module *m, ModuleState state, const char *message);
int module_set_dependencies(Module *m, char *const *deps);

static inline void module_freep(Module **m) {
        module_free(*m);
}

/* The collection of modules, by name. */
typedef struct Registry {
        Module **modules;
        size_t n_modules;
} Registry;

void registry_done(Registry *r);
int registry_add(Registry *r, Module *m);  /* takes ownership */
Module *registry_find(const Registry *r, const char *name);
Module *registry_find_by_unit(const Registry *r, const char *unit);
/* Constant-time comparison of the presented token against each module's. */
Module *registry_find_by_token(const Registry *r, const char *token);
