/* The orchestrator's gRPC calls to one module, over the Manager's rpc runtime. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "registry/module.h"

/* What a call to a module came to; valid during the completion callback only. */
typedef struct ModuleCallResult {
        int status;                        /* an RpcStatus; RPC_CANCELLED if the module went away */
        const char *message;               /* never NULL */
        ModuleState reported;              /* RegisterModule, ApplyConfig: the state the module reported */
        HealthState health;                /* Health/Check */
        const ProtobufCMessage *response;  /* the reply (NULL unless status is RPC_OK) */
} ModuleCallResult;

typedef void (*module_call_done_t)(Module *m, const ModuleCallResult *result, void *userdata);

/* Open (or re-open) the channel to 127.0.0.1:<m->port>; calls in flight on the old one are
 * cancelled (see module_client_disconnect()). */
int module_client_connect(Module *m);
/* Close the channel. Calls in flight are cancelled: ApplyConfig and ListEntities calls still
 * complete, with RPC_CANCELLED (their callers always hear back); the others run no callback. */
void module_client_disconnect(Module *m);

/* RegisterModule, waiting for the module's server to come up (wait-for-ready) until timeout_ms.
 * On success the registration fields of m are filled in before done runs. */
int module_client_register(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata);
/* ApplyConfig(config_json). INVALID_ARGUMENT carries the module's field errors in message. */
int module_client_apply_config(Module *m, const char *config_json, uint32_t timeout_ms, module_call_done_t done,
                               void *userdata);
/* grpc.health.v1.Health/Check(""): result->health. */
int module_client_health_check(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata);
/* ListEntities(""): result->response is the module's ListEntitiesResponse. */
int module_client_list_entities(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata);
/* What one step of a flow hands the next (proto MediaLink), owned strings; may carry
 * credentials: never logged, wiped when freed. */
typedef struct FlowLink {
        char *media;
        char *url;
        char *sdp;
        char *sdp_type;
} FlowLink;

void flow_link_done(FlowLink *l);
/* Copy from the proto message (bounded); an unset or empty message gives an empty link. */
int flow_link_from_proto(FlowLink *l, const ProtobufCMessage *media_link);
static inline bool flow_link_is_set(const FlowLink *l) {
        return l && l->media && *l->media;
}

/* Entities and flows; these calls always complete (RPC_CANCELLED if the module goes away).
 * CreateEntity: result->response is the Entity; ConnectEntity: a ConnectEntityResponse. */
int module_client_create_entity(Module *m, const char *type, const char *name, const char *config_json,
                                uint32_t timeout_ms, module_call_done_t done, void *userdata);
int module_client_destroy_entity(Module *m, const char *id, uint32_t timeout_ms, module_call_done_t done,
                                 void *userdata);
/* request_id: for the target of a flow its module requested (KIND_FLOW_REQUEST), else NULL. */
int module_client_connect_entity(Module *m, const char *id, const char *flow_id, const FlowLink *input,
                                 const char *output_media, const FlowLink *peer, const char *request_id,
                                 uint32_t timeout_ms, module_call_done_t done, void *userdata);
int module_client_disconnect_entity(Module *m, const char *id, const char *flow_id, uint32_t timeout_ms,
                                    module_call_done_t done, void *userdata);

/* Shutdown(deadline_ms). */
int module_client_shutdown(Module *m, uint32_t deadline_ms, module_call_done_t done, void *userdata);
