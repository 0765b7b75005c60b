/* Flows: connecting a source entity to a target entity through converters (docs/protocol.md,
 * "Entities and flows"): setting them up, tearing them down, following signals and hang-ups,
 * healing them when a module comes back, keeping them durably. */
#pragma once

#include "callassistant/v1/orchestrator.pb-c.h"
#include "daemon/manager.h"
#include "flows/flow-record.h"
#include "rpc/rpc.h"

/* Load the stored flows (<state_dir>/flows); they resume once their modules are READY. */
int flows_init(Manager *mgr);
/* At exit, before the module channels close: flows no longer react or store anything. */
void flows_freeze(Manager *mgr);
void flows_done(Manager *mgr);

/* StartFlow: answers call when the flow is ACTIVE, ringing (PENDING), or failed. */
void flows_start(Manager *mgr, RpcServerCall *call, const Callassistant__V1__StartFlowRequest *req);
/* StopFlow: answers call once it is torn down. */
void flows_stop(Manager *mgr, RpcServerCall *call, const char *id);
Flow *flows_find(Manager *mgr, const char *id);
const FlowRecord *flow_get_record(const Flow *f);

/* What modules report (validated by module-api.c). */
void flows_signal(Module *m, const Callassistant__V1__Event *ev);
void flows_ended(Module *m, const Callassistant__V1__Event *ev);
/* KIND_FLOW_REQUEST: a flow into one of m's own entities, answering a caller's WebRTC offer.
 * Answers call with the flow's id once it is being set up, or refuses (logged, rate-limited). */
void flows_request(Module *m, RpcServerCall *call, const Callassistant__V1__Event *ev);

/* A module became READY with its entities listed / stopped being READY; an entity changed. */
void flows_module_ready(Module *m);
void flows_module_down(Module *m);
void flows_entity_changed(Manager *mgr, const char *module, const char *id);

/* The proto Flow of a record, pointing into it (free with flow_proto_done()). */
typedef struct FlowProto {
        Callassistant__V1__Flow flow;
        Callassistant__V1__EntityRef source, target;
        Callassistant__V1__FlowStep *steps;
        Callassistant__V1__FlowStep **step_ptrs;
} FlowProto;

int flow_proto_fill(FlowProto *p, const FlowRecord *f);
void flow_proto_done(FlowProto *p);
