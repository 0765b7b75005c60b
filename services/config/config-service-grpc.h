/* The config service's gRPC face (callassistant.config.v1.ConfigService), thin glue over
 * config-service.h; served on the orchestrator's control endpoint only. */
#pragma once

#include <stddef.h>

#include "rpc/rpc.h"
#include "services/config/config-service.h"

/* Methods of callassistant.config.v1.ConfigService. The serving process copies them into its
 * server's table with the ConfigService as each method's userdata (RpcMethod.userdata). */
extern const RpcMethod config_service_methods[];
extern const size_t config_service_n_methods;
