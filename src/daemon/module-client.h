/* The orchestrator's gRPC calls to a module (ModuleService and grpc.health.v1), as callbacks
 * on the sd-event thread. Implemented over the rpc runtime in module-client.c. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "registry/module.h"

typedef struct Manager Manager;

/* gRPC status codes used here (same values as grpc_status_code). */
enum {
        CA_STATUS_OK = 0,
        CA_STATUS_CANCELLED = 1,
        CA_STATUS_UNKNOWN = 2,
        CA_STATUS_INVALID_ARGUMENT = 3,
        CA_STATUS_DEADLINE_EXCEEDED = 4,
        CA_STATUS_NOT_FOUND = 5,
        CA_STATUS_PERMISSION_DENIED = 7,
        CA_STATUS_FAILED_PRECONDITION = 9,
        CA_STATUS_INTERNAL = 13,
        CA_STATUS_UNAVAILABLE = 14,
        CA_STATUS_UNAUTHENTICATED = 16,
};

/* status: a gRPC status code, or -errno if the call could not be made. */
typedef void (*module_call_done_t)(Manager *mgr, Module *m, int status, const char *message, void *userdata);

/* Open (or re-open) the channel to 127.0.0.1:<m->port>. */
int module_client_connect(Manager *mgr, Module *m);
void module_client_disconnect(Module *m);

/* RegisterModule, waiting for the module's server to come up (wait-for-ready) until timeout_ms.
 * On success the registration fields of m are filled in before done runs; the state the
 * module reported is passed as the message ("STARTING", "WAITING_FOR_CONFIG", "READY", ...). */
int module_client_register(Manager *mgr, Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata);
/* ApplyConfig(config_json). INVALID_ARGUMENT carries the module's field errors in message. */
int module_client_apply_config(Manager *mgr, Module *m, const char *config_json, uint32_t timeout_ms,
                               module_call_done_t done, void *userdata);
/* grpc.health.v1.Health/Check(""). message is "SERVING", "NOT_SERVING", ... on OK. */
int module_client_health_check(Manager *mgr, Module *m, uint32_t timeout_ms, module_call_done_t done,
                               void *userdata);
/* ListEntities(""): response is the module's ListEntitiesResponse (NULL unless OK), valid
 * during the callback only. */
typedef void (*module_list_done_t)(Manager *mgr, Module *m, int status, const char *message,
                                   const ProtobufCMessage *response, void *userdata);
int module_client_list_entities(Manager *mgr, Module *m, uint32_t timeout_ms, module_list_done_t done, void *userdata);

/* Shutdown(deadline_ms). */
int module_client_shutdown(Manager *mgr, Module *m, uint32_t deadline_ms, module_call_done_t done, void *userdata);
