/* The orchestrator's gRPC endpoints (module-facing and control). */
#pragma once

#include "daemon/manager.h"
#include "rpc/rpc.h"

int daemon_api_start(Manager *mgr);
void daemon_api_stop(Manager *mgr);
RpcRuntime *daemon_api_runtime(Manager *mgr);
