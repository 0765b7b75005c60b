/* call-assistant-module.h: the C SDK for call-assistant modules.
 *
 * A module is a process the orchestrator starts as the systemd unit
 * call-assistant-module@<dir>.service. With this SDK it describes itself, gives callbacks for
 * configuration and entities, and calls ca_module_run(): the SDK reads GRPC_PORT and the
 * module's credential, serves callassistant.v1.ModuleService and grpc.health.v1.Health on
 * 127.0.0.1:$GRPC_PORT, reports state changes to the orchestrator, and returns when the
 * module is asked to stop (SIGTERM, SIGINT or the Shutdown RPC). See docs/writing-a-module.md.
 *
 * Everything runs on one thread; callbacks must not block. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CA_EXPORT __attribute__((visibility("default")))

typedef struct CaModule CaModule;

typedef enum CaModuleState {
        CA_MODULE_STARTING = 1,
        CA_MODULE_WAITING_FOR_CONFIG = 2,
        CA_MODULE_READY = 3,
        CA_MODULE_ERROR = 4,
} CaModuleState;

typedef struct CaEntityType {
        const char *name;              /* e.g. "video_source" */
        const char *description;
        const char *const *capabilities;  /* NULL-terminated, may be NULL */
} CaEntityType;

/* An entity kept by the SDK. Callbacks may change state and set attributes. */
typedef struct CaEntity {
        char *id;            /* set by create_entity, or "<type>-<n>" by the SDK */
        char *type;
        char *name;
        char *config_json;
        char *state;         /* free-form, e.g. "active" */
        void *data;          /* the module's own per-entity data */
} CaEntity;

/* Errors from callbacks: return a negative errno and, optionally, set *ret_error to a
 * malloc()ed message. -EINVAL becomes INVALID_ARGUMENT (for configuration, list every problem
 * as "<json-pointer>: <message>" separated by "; "), -ENOENT NOT_FOUND, -EBUSY
 * FAILED_PRECONDITION, anything else INTERNAL. */
typedef struct CaModuleCallbacks {
        /* Apply a configuration (a JSON object). On success the module becomes READY. */
        int (*apply_config)(CaModule *m, const char *config_json, char **ret_error, void *userdata);
        /* Entity lifecycle; the SDK stores entities and answers ListEntities itself. */
        int (*create_entity)(CaModule *m, CaEntity *e, char **ret_error, void *userdata);
        int (*configure_entity)(CaModule *m, CaEntity *e, const char *new_config_json, char **ret_error,
                                void *userdata);
        int (*destroy_entity)(CaModule *m, CaEntity *e, char **ret_error, void *userdata);
        /* Optional: called before RegisterModule is answered, and for each health check
         * (return false for NOT_SERVING). */
        void (*on_register)(CaModule *m, void *userdata);
        bool (*health)(CaModule *m, void *userdata);
} CaModuleCallbacks;

typedef struct CaModuleInfo {
        const char *name;
        const char *version;
        const char *description;
        const CaEntityType *entity_types;
        size_t n_entity_types;
        const char *config_schema;     /* JSON Schema of the configuration, or NULL */
        bool config_required;          /* WAITING_FOR_CONFIG until apply_config succeeded */
        bool no_signal_handling;       /* do not handle SIGTERM/SIGINT (tests) */
} CaModuleInfo;

CA_EXPORT int ca_module_new(CaModule **ret, const CaModuleInfo *info, const CaModuleCallbacks *callbacks,
                            void *userdata);
CA_EXPORT CaModule *ca_module_free(CaModule *m);

/* Serve until asked to stop. Returns 0 on a clean stop, a negative errno otherwise (for
 * example -EINVAL if GRPC_PORT is missing, -EADDRINUSE if the port is taken). */
CA_EXPORT int ca_module_run(CaModule *m);
/* Ask ca_module_run() to return. */
CA_EXPORT void ca_module_stop(CaModule *m);

/* Change state and report it to the orchestrator (message: why; required for ERROR). */
CA_EXPORT void ca_module_set_state(CaModule *m, CaModuleState state, const char *message);
CA_EXPORT CaModuleState ca_module_get_state(CaModule *m);
/* Module id and port the orchestrator assigned (valid once ca_module_run started). */
CA_EXPORT const char *ca_module_get_id(CaModule *m);
CA_EXPORT unsigned ca_module_get_port(CaModule *m);
/* The sd_event loop the module runs on (an sd_event *), to add timers and I/O. */
CA_EXPORT void *ca_module_get_event(CaModule *m);

/* Set a string attribute of an entity (shown in ListEntities). */
CA_EXPORT int ca_entity_set_attribute(CaEntity *e, const char *key, const char *value);

#ifdef __cplusplus
}
#endif
