/* The Manager's face on the orchestrator's API: ListModules, ListEntities, WatchEvents, and
 * the events sent to WatchEvents followers (manager_emit()). */
#pragma once

#include "daemon/api.h"

extern const ApiMethod manager_api_methods[];
extern const size_t manager_api_n_methods;
