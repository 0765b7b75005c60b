/* The config service's gRPC face (callassistant.config.v1.ConfigService), thin glue over
 * config-service.h; served on the orchestrator's control endpoint only. */
#pragma once

#include <stddef.h>

#include "rpc/rpc.h"
#include "services/config/config-service.h"

/* Provided by the process that serves the methods: the ConfigService behind a server's
 * userdata (in-process: the orchestrator's Manager). */
ConfigService *daemon_config_service(void *server_userdata);

/* Methods of callassistant.config.v1.ConfigService. */
extern const RpcMethod config_service_methods[];
extern const size_t config_service_n_methods;
/* The same methods answering PERMISSION_DENIED (for the module-facing endpoint: modules may
 * not use services). */
extern const RpcMethod config_service_denied_methods[];
