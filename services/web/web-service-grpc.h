/* The web service's gRPC face (callassistant.web.v1.WebService), thin glue over
 * web-service.h; served on the orchestrator's control endpoint only. */
#pragma once

#include <stddef.h>

#include "rpc/rpc.h"
#include "services/web/web-service.h"

/* Methods of callassistant.web.v1.WebService. The serving process copies them into its
 * server's table with the WebService as each method's userdata (RpcMethod.userdata). */
extern const RpcMethod web_service_methods[];
extern const size_t web_service_n_methods;
/* The handler to put in their place when there is no WebService (the dashboard is disabled or
 * could not start): answers UNAVAILABLE. */
void web_service_not_running(RpcServerCall *call, const ProtobufCMessage *request, void *userdata);
