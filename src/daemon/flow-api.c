/* Flows on the orchestrator's API (control socket): StartFlow, StopFlow, GetFlow, ListFlows.
 * What they do is in flows.c. */
#include <stdlib.h>

#include "daemon/flow-api.h"
#include "daemon/flows.h"
#include "shared/macro.h"

static void on_start_flow(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        flows_start(userdata, call, (const Callassistant__V1__StartFlowRequest *)request);
}

static void on_stop_flow(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        flows_stop(userdata, call, ((const Callassistant__V1__FlowRequest *)request)->id);
}

static void on_get_flow(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Flow *f = flows_find(userdata, ((const Callassistant__V1__FlowRequest *)request)->id);
        FlowProto p;

        if (!f) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such flow");
                return;
        }
        if (flow_proto_fill(&p, flow_get_record(f)) < 0)
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        else
                (void)rpc_server_call_reply(call, &p.flow.base);
        flow_proto_done(&p);
}

static void on_list_flows(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__V1__ListFlowsResponse resp = CALLASSISTANT__V1__LIST_FLOWS_RESPONSE__INIT;
        Manager *mgr = userdata;
        size_t n = mgr->n_flows;
        _cleanup_free_ FlowProto *protos = new0(FlowProto, n + 1);
        _cleanup_free_ Callassistant__V1__Flow **ptrs = new0(Callassistant__V1__Flow *, n + 1);
        bool oom = !protos || !ptrs;

        for (size_t i = 0; !oom && i < n; i++) {
                oom = flow_proto_fill(&protos[i], flow_get_record(mgr->flows[i])) < 0;
                ptrs[i] = &protos[i].flow;
        }
        if (oom)
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        else {
                resp.n_flows = n;
                resp.flows = ptrs;
                (void)rpc_server_call_reply(call, &resp.base);
        }
        for (size_t i = 0; protos && i < n; i++)
                flow_proto_done(&protos[i]);
}

#define M(name) "/callassistant.v1.OrchestratorService/" name
#define D(type) &callassistant__v1__##type##__descriptor

const ApiMethod flow_api_methods[] = {
        { { M("StartFlow"), D(start_flow_request), on_start_flow, false, NULL }, false },
        { { M("StopFlow"), D(flow_request), on_stop_flow, false, NULL }, false },
        { { M("GetFlow"), D(flow_request), on_get_flow, false, NULL }, false },
        { { M("ListFlows"), D(list_flows_request), on_list_flows, false, NULL }, false },
};
const size_t flow_api_n_methods = ELEMENTSOF(flow_api_methods);
