/* The web service's gRPC face (callassistant.web.v1.WebService), thin glue over
 * web-service.h; served on the orchestrator's control endpoint only. */
#pragma once

#include <stddef.h>

#include "rpc/rpc.h"
#include "services/web/web-service.h"

/* Provided by the process that serves the methods: the WebService behind a server's
 * userdata (in-process: the orchestrator's Manager), or NULL if the dashboard is disabled. */
WebService *daemon_web_service(void *server_userdata);

extern const RpcMethod web_service_methods[];
extern const size_t web_service_n_methods;
/* The same methods answering PERMISSION_DENIED (for the module-facing endpoint). */
extern const RpcMethod web_service_denied_methods[];
