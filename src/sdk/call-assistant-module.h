/* call-assistant-module.h: the C SDK for call-assistant modules.
 *
 * A module is a process the orchestrator starts as the systemd unit
 * call-assistant-module@<dir>.service. With this SDK it describes itself, gives callbacks for
 * configuration and entities, and calls ca_module_run(): the SDK reads GRPC_PORT and the
 * module's credential, serves callassistant.v1.ModuleService and grpc.health.v1.Health on
 * 127.0.0.1:$GRPC_PORT, reports state changes to the orchestrator, and returns when the
 * module is asked to stop (SIGTERM, SIGINT or the Shutdown RPC). See docs/writing-a-module.md.
 *
 * Everything runs on one thread; callbacks must not block. Work that takes time (a
 * ConnectEntity that has to gather ICE candidates) returns CA_PENDING and completes later. */
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

/* Returned by a callback that completes its operation later (see connect_entity). */
#define CA_PENDING 1

typedef struct CaEntityType {
        const char *name;              /* e.g. "video_source" */
        const char *description;
        const char *const *capabilities;  /* NULL-terminated, may be NULL */
        /* Media taken in and given out in flows ("rtsp", "hls", "webrtc"), NULL-terminated,
         * may be NULL: a source gives only, a target takes only, a converter does both. */
        const char *const *media_in;
        const char *const *media_out;
        const char *config_schema;     /* JSON Schema of an entity's config, or NULL */
} CaEntityType;

/* What one entity of a flow hands the next (MediaLink in module.proto). May carry
 * credentials (an RTSP URL with a password): never log it. Unset fields are NULL. */
typedef struct CaMediaLink {
        const char *media;    /* "rtsp", "hls", "webrtc" */
        const char *url;      /* rtsp, hls */
        const char *sdp;      /* webrtc: a complete SDP, ICE candidates included */
        const char *sdp_type; /* "offer" or "answer" */
} CaMediaLink;

/* An entity kept by the SDK. Callbacks may change state and set attributes. */
typedef struct CaEntity {
        char *id;            /* set by create_entity, or "<type>-<n>" by the SDK */
        char *type;
        char *name;
        char *config_json;
        char *state;         /* free-form, e.g. "active" */
        void *data;          /* the module's own per-entity data */
} CaEntity;

/* A ConnectEntity or DisconnectEntity in progress. The SDK owns it; its fields stay valid
 * until the module completes it (ca_flow_op_complete/ca_flow_op_fail), or until
 * ca_module_free() for one never completed. */
typedef struct CaFlowOp {
        CaEntity *entity;          /* NULL once the entity was destroyed */
        const char *flow_id;
        const CaMediaLink *input;  /* connect: what the previous step gives, or NULL */
        const char *output_media;  /* connect: the medium the next step takes, "" for a target */
        const CaMediaLink *peer;   /* connect: a WebRTC offer to answer, or the answer to ours; or NULL */
        void *data;                /* the module's own */
        const char *request_id;    /* connect: for a flow this module requested (ca_module_request_flow()),
                                    * its request id, with the answer to the caller's offer in input; else "" */
} CaFlowOp;

typedef enum CaEntityEvent {
        CA_ENTITY_ADDED = 2,
        CA_ENTITY_CHANGED = 3,
        CA_ENTITY_REMOVED = 4,
} CaEntityEvent;

/* Errors from callbacks: return a negative errno and, optionally, set *ret_error to a
 * malloc()ed message. -EINVAL becomes INVALID_ARGUMENT (for configuration, list every problem
 * as "<json-pointer>: <message>" separated by "; "), -ENOENT NOT_FOUND, -EBUSY
 * FAILED_PRECONDITION, -EEXIST ALREADY_EXISTS, -EHOSTUNREACH/-ENETUNREACH/-ECONNREFUSED/
 * -ECONNRESET UNAVAILABLE, -ETIMEDOUT DEADLINE_EXCEEDED, -EOPNOTSUPP UNIMPLEMENTED, anything
 * else INTERNAL. */
typedef struct CaModuleCallbacks {
        /* Apply a configuration (a JSON object). On success the module becomes READY. */
        int (*apply_config)(CaModule *m, const char *config_json, char **ret_error, void *userdata);
        /* Entity lifecycle; the SDK stores entities and answers ListEntities itself. */
        int (*create_entity)(CaModule *m, CaEntity *e, char **ret_error, void *userdata);
        int (*configure_entity)(CaModule *m, CaEntity *e, const char *new_config_json, char **ret_error,
                                void *userdata);
        int (*destroy_entity)(CaModule *m, CaEntity *e, char **ret_error, void *userdata);
        /* Flows (optional; without them ConnectEntity/DisconnectEntity answer UNIMPLEMENTED).
         * Return 0 when done (for connect, after ca_flow_op_set_output() if there is an
         * output), a negative errno to fail, or CA_PENDING to complete later on the loop with
         * ca_flow_op_complete() or ca_flow_op_fail(). A pending operation whose caller went
         * away is still completed by the module; the SDK then drops the answer. */
        int (*connect_entity)(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata);
        int (*disconnect_entity)(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata);
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
/* The module's token ($CALL_ASSISTANT_TOKEN_FILE, else $CREDENTIALS_DIRECTORY/module-token)
 * is required (metadata x-call-assistant-module-token) on every ModuleService call; calls
 * without it are refused with UNAUTHENTICATED. grpc.health.v1.Health stays open. */

/* Module id and port the orchestrator assigned (valid once ca_module_run started). */
CA_EXPORT const char *ca_module_get_id(CaModule *m);
CA_EXPORT unsigned ca_module_get_port(CaModule *m);
/* The sd_event loop the module runs on (an sd_event *), to add timers and I/O. It is the
 * thread's default loop (sd_event_default()), so a module may also take it with
 * sd_event_default() and add its sources before ca_module_run(). */
CA_EXPORT void *ca_module_get_event(CaModule *m);

/* Set a string attribute of an entity (shown in ListEntities; never a credential). */
CA_EXPORT int ca_entity_set_attribute(CaEntity *e, const char *key, const char *value);
/* Remove an attribute (no error if it is not set). */
CA_EXPORT void ca_entity_unset_attribute(CaEntity *e, const char *key);
/* Replace the entity's free-form state ("active", "unavailable", "degraded", ...). */
CA_EXPORT int ca_entity_set_state(CaEntity *e, const char *state);

/* Entities the module finds by itself (a discovered camera): added to the SDK's store and
 * reported to the orchestrator as KIND_ENTITY_ADDED. type must be one of the module's entity
 * types; id unique (-EEXIST otherwise). *ret (optional) stays valid until removed. */
CA_EXPORT int ca_module_add_entity(CaModule *m, const char *type, const char *id, const char *name,
                                   CaEntity **ret);
/* Reports KIND_ENTITY_REMOVED and frees the entity (no destroy_entity callback). */
CA_EXPORT void ca_module_remove_entity(CaModule *m, CaEntity *e);
/* Reports KIND_ENTITY_CHANGED with the entity as it is now (after changing its state or
 * attributes). */
CA_EXPORT void ca_module_entity_changed(CaModule *m, CaEntity *e);
/* The entity with this id, or NULL. */
CA_EXPORT CaEntity *ca_module_find_entity(CaModule *m, const char *id);
/* Iterate: for (size_t i = 0; (e = ca_module_get_entity(m, i)); i++). */
CA_EXPORT CaEntity *ca_module_get_entity(CaModule *m, size_t i);

/* Metrics (KIND_METRICS): n names and values, about one entity (e) or the whole module (NULL). */
CA_EXPORT int ca_module_report_metrics(CaModule *m, CaEntity *e, const char *const *names, const double *values,
                                       size_t n);
/* The orchestrator's answer to ca_module_request_flow(): error 0 and the new flow's id, or a
 * negative errno (-EPERM not this module's entity, -EINVAL a bad request or no path, -ENOENT an
 * unknown entity, -EBUSY the module is not READY, -EAGAIN too many requested flows, -EIO
 * anything else) with the orchestrator's reason in message. */
typedef void (*ca_flow_request_handler_t)(CaModule *m, int error, const char *flow_id, const char *message,
                                          void *userdata);
/* KIND_FLOW_REQUEST: ask the orchestrator for a flow from source_module/source_entity into
 * entity e of this module, answering a remote party's WebRTC offer (a call to answer; see
 * docs/protocol.md, "Flows a module requests"). request_id (1 to 128 printable characters)
 * names the request: the converter's answer reaches connect_entity with it in
 * op->request_id and the answer in op->input. handler (optional) gets the orchestrator's
 * answer on the module's loop. Returns 0 or a negative errno (-EINVAL, -ENOTCONN when no
 * orchestrator is known). */
CA_EXPORT int ca_module_request_flow(CaModule *m, CaEntity *e, const char *source_module, const char *source_entity,
                                     const char *request_id, const char *offer_sdp,
                                     ca_flow_request_handler_t handler, void *userdata);
/* KIND_FLOW_SIGNAL: entity e has a link for flow_id later than its ConnectEntity answer. */
CA_EXPORT int ca_module_report_flow_signal(CaModule *m, CaEntity *e, const char *flow_id, const CaMediaLink *link);
/* KIND_FLOW_ENDED: entity e stopped serving flow_id by itself; reason is shown to users. */
CA_EXPORT int ca_module_report_flow_ended(CaModule *m, CaEntity *e, const char *flow_id, const char *reason);

/* Flow operations. ca_flow_op_set_output() copies the link; use it before returning 0 from
 * connect_entity. complete/fail end an operation that returned CA_PENDING and free it
 * (output may be NULL: no output). error is a negative errno, mapped like callback errors. */
CA_EXPORT int ca_flow_op_set_output(CaFlowOp *op, const CaMediaLink *output);
CA_EXPORT void ca_flow_op_complete(CaFlowOp *op, const CaMediaLink *output);
CA_EXPORT void ca_flow_op_fail(CaFlowOp *op, int error, const char *message);

#ifdef __cplusplus
}
#endif
