/* The config service's gRPC face: unpacks requests, calls config-service.c, maps statuses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "callassistant/config/v1/config.pb-c.h"
#include "services/config/config-service-grpc.h"

/* The ConfigService of a call: the serving process sets it as the methods' userdata. */
static ConfigService *service_of(RpcServerCall *call) {
        return rpc_server_call_get_userdata(call);
}

static RpcStatus status_of(ConfigStatus s) {
        switch (s) {
        case CONFIG_STATUS_OK:
                return RPC_OK;
        case CONFIG_STATUS_INVALID_ARGUMENT:
                return RPC_INVALID_ARGUMENT;
        case CONFIG_STATUS_NOT_FOUND:
                return RPC_NOT_FOUND;
        case CONFIG_STATUS_FAILED_PRECONDITION:
                return RPC_FAILED_PRECONDITION;
        case CONFIG_STATUS_ABORTED:
                return RPC_ABORTED;
        default:
                return RPC_INTERNAL;
        }
}

static void on_get(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__Config__V1__GetConfigRequest *req = (const void *)request;
        Callassistant__Config__V1__GetConfigResponse resp = CALLASSISTANT__CONFIG__V1__GET_CONFIG_RESPONSE__INIT;
        ConfigInfo info = {};
        ConfigStatus s;

        s = config_service_get(service_of(call), req->module, &info);
        if (s != CONFIG_STATUS_OK) {
                (void)rpc_server_call_fail(call, status_of(s), config_status_to_string(s));
                return;
        }
        resp.module = info.module;
        resp.config_json = info.config_json;
        resp.schema_json = info.schema_json ? info.schema_json : (char *)"";
        resp.revision = info.revision;
        resp.updated_at = info.updated_at;
        (void)rpc_server_call_reply(call, &resp.base);
        config_info_clear(&info);
}

static void on_schema(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__Config__V1__GetSchemaRequest *req = (const void *)request;
        Callassistant__Config__V1__GetSchemaResponse resp = CALLASSISTANT__CONFIG__V1__GET_SCHEMA_RESPONSE__INIT;
        char *schema = NULL;
        ConfigStatus s;

        s = config_service_get_schema(service_of(call), req->module, &schema);
        if (s != CONFIG_STATUS_OK) {
                (void)rpc_server_call_fail(call, status_of(s), "no schema registered for this module");
                return;
        }
        resp.module = req->module;
        resp.schema_json = schema;
        (void)rpc_server_call_reply(call, &resp.base);
        free(schema);
}

static void on_list(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__Config__V1__ListConfigsResponse resp = CALLASSISTANT__CONFIG__V1__LIST_CONFIGS_RESPONSE__INIT;
        Callassistant__Config__V1__ConfigSummary *sums = NULL, **ptrs = NULL;
        ConfigInfo *infos = NULL;
        size_t n = 0;

        if (config_service_list(service_of(call), &infos, &n) < 0 ||
            !(sums = calloc(n + 1, sizeof(*sums))) || !(ptrs = calloc(n + 1, sizeof(*ptrs)))) {
                (void)rpc_server_call_fail(call, RPC_INTERNAL, "cannot list configurations");
                goto finish;
        }
        for (size_t i = 0; i < n; i++) {
                callassistant__config__v1__config_summary__init(&sums[i]);
                sums[i].module = infos[i].module;
                sums[i].revision = infos[i].revision;
                sums[i].updated_at = infos[i].updated_at;
                sums[i].has_schema = infos[i].schema_json != NULL;
                sums[i].load_error = infos[i].load_error ? infos[i].load_error : (char *)"";
                ptrs[i] = &sums[i];
        }
        resp.n_configs = n;
        resp.configs = ptrs;
        (void)rpc_server_call_reply(call, &resp.base);
finish:
        free(sums);
        free(ptrs);
        config_info_array_free(infos, n);
}

static void on_set_done(const ConfigSetResult *result, void *userdata) {
        RpcServerCall *call = userdata;
        Callassistant__Config__V1__SetConfigResponse resp = CALLASSISTANT__CONFIG__V1__SET_CONFIG_RESPONSE__INIT;

        if (result->status != CONFIG_STATUS_OK) {
                (void)rpc_server_call_fail(call, status_of(result->status), result->message);
                return;
        }
        resp.revision = result->revision;
        resp.config_json = (char *)(result->config_json ? result->config_json : "{}");
        (void)rpc_server_call_reply(call, &resp.base);
}

static void on_set(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__Config__V1__SetConfigRequest *req = (const void *)request;

        if (config_service_set(service_of(call), req->module, req->config_json, req->check_revision,
                               req->expected_revision, on_set_done, call) < 0)
                (void)rpc_server_call_fail(call, RPC_INTERNAL, "out of memory");
}

#define CS(name) "/callassistant.config.v1.ConfigService/" name
#define D(t) &callassistant__config__v1__##t##__descriptor

const RpcMethod config_service_methods[] = {
        { CS("GetConfig"), D(get_config_request), on_get, false },
        { CS("SetConfig"), D(set_config_request), on_set, false },
        { CS("ListConfigs"), D(list_configs_request), on_list, false },
        { CS("GetSchema"), D(get_schema_request), on_schema, false },
};
const size_t config_service_n_methods = ELEMENTSOF(config_service_methods);
