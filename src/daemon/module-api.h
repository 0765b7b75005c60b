/* A module's face on the orchestrator's API: ModuleInfo, GetModule, start/stop/restart,
 * and what a module reports about itself (ReportState, ReportEvent). */
#pragma once

#include "callassistant/v1/orchestrator.pb-c.h"
#include "daemon/api.h"

/* A ModuleInfo pointing into a Module; valid while the module is unchanged. */
typedef struct ModuleInfoBuf {
        Callassistant__V1__ModuleInfo info;
        Callassistant__V1__EntityType *types;
        Callassistant__V1__EntityType **type_ptrs;
} ModuleInfoBuf;

int module_info_fill(ModuleInfoBuf *b, const Module *m);
void module_info_done(ModuleInfoBuf *b);
/* Ask systemd for the module's CPU and memory figures again (module_info_fill gives the
 * last ones); the answer is kept for the next request. */
void module_refresh_resources(Module *m);

extern const ApiMethod module_api_methods[];
extern const size_t module_api_n_methods;
