/* Flows on the orchestrator's API (control socket): StartFlow, StopFlow, GetFlow, ListFlows. */
#pragma once

#include "daemon/api.h"

extern const ApiMethod flow_api_methods[];
extern const size_t flow_api_n_methods;
