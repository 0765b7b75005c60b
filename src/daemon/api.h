/* The orchestrator's gRPC endpoints: their servers, one method table, module authentication
 * and the followers of the event stream. The handlers are the API faces of the Manager
 * (manager-api.c) and of a module (module-api.c). */
#pragma once

#include <stdbool.h>

#include "callassistant/v1/orchestrator.pb-c.h"
#include "daemon/manager.h"
#include "rpc/rpc.h"

/* A method and where it is served: the module-facing endpoint (modules report about
 * themselves) or the control socket (call-assistantctl, the web UI). On the other endpoint
 * the same method answers PERMISSION_DENIED. */
typedef struct ApiMethod {
        RpcMethod method;
        bool module_facing;
} ApiMethod;

int api_new(Api **ret, Manager *mgr);
Api *api_free(Api *api);
DEFINE_TRIVIAL_CLEANUP_FUNC(Api *, api_free);

/* Who is calling on the module-facing endpoint? The token decides; a module can only speak
 * for itself. On failure the call is answered (UNAUTHENTICATED) and NULL returned. */
Module *api_authenticate_module(Manager *mgr, RpcServerCall *call);
/* Log a refusal of what a module sent (a warning), rate-limited with every other refusal. */
void api_log_refusal(Api *api, const char *fmt, ...) _printf_(2, 3);

/* WatchEvents: add a follower (module: a filter, NULL for all). -EUSERS when there are too many. */
int api_add_follower(Api *api, RpcServerCall *call, const char *module);
/* Send an event to every follower interested in module. */
void api_broadcast(Api *api, const char *module, const Callassistant__V1__Event *ev);
/* The same for an event about several modules (a flow): each follower gets it once. */
void api_broadcast_modules(Api *api, const char *const *modules, size_t n, const Callassistant__V1__Event *ev);
