/* The orchestrator's gRPC calls to modules, over the rpc runtime. Everything a module sends
 * back is untrusted: sizes are bounded by the runtime, strings are copied and bounded here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "callassistant/v1/module.pb-c.h"
#include "daemon/daemon-api.h"
#include "daemon/manager.h"
#include "daemon/module-client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"

#define MAX_ENTITY_TYPES 64
#define MAX_CAPABILITIES 32
#define MAX_STRING 4096
#define MAX_SCHEMA (256 * 1024)

typedef struct CallCtx CallCtx;

typedef struct ModuleClient {
        RpcChannel *channel;
        CallCtx *calls;
} ModuleClient;

struct CallCtx {
        Manager *mgr;
        Module *module;
        module_call_done_t done;
        void *userdata;
        bool notify_on_cancel;   /* tell done if the module goes away first (ApplyConfig) */
        CallCtx *next;
};

static void ctx_unlink_free(CallCtx *c) {
        ModuleClient *mc = c->module->client;

        if (mc)
                for (CallCtx **p = &mc->calls; *p; p = &(*p)->next)
                        if (*p == c) {
                                *p = c->next;
                                break;
                        }
        free(c);
}

static int ctx_new(Manager *mgr, Module *m, module_call_done_t done, void *userdata, CallCtx **ret) {
        ModuleClient *mc = m->client;
        CallCtx *c;

        if (!mc)
                return -ENOTCONN;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (CallCtx){ .mgr = mgr, .module = m, .done = done, .userdata = userdata, .next = mc->calls };
        mc->calls = c;
        *ret = c;
        return 0;
}

/* Make a call to the module on behalf of done/userdata; rpc_cb unpacks the answer. */
static int module_call(Manager *mgr, Module *m, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *type, uint32_t timeout_ms, unsigned flags, rpc_done_t rpc_cb,
                       module_call_done_t done, void *userdata, bool notify_on_cancel) {
        CallCtx *c;
        int r;

        r = ctx_new(mgr, m, done, userdata, &c);
        if (r < 0)
                return r;
        c->notify_on_cancel = notify_on_cancel;
        /* The module's own token: modules accept calls only from the orchestrator. */
        RpcMetadata md = { .key = "x-call-assistant-module-token", .value = m->token };
        r = rpc_channel_call(((ModuleClient *)m->client)->channel, method, req, type, timeout_ms, flags, &md,
                             m->token ? 1 : 0, rpc_cb, c, NULL);
        if (r < 0)
                ctx_unlink_free(c);
        return r;
}

int module_client_connect(Manager *mgr, Module *m) {
        ModuleClient *mc;
        char target[64];
        int r;

        module_client_disconnect(m);
        mc = calloc(1, sizeof(*mc));
        if (!mc)
                return -ENOMEM;
        snprintf(target, sizeof(target), "127.0.0.1:%u", m->port);
        r = rpc_channel_new(&mc->channel, daemon_api_runtime(mgr), target);
        if (r < 0) {
                free(mc);
                return r;
        }
        m->client = mc;
        return 0;
}

void module_client_disconnect(Module *m) {
        ModuleClient *mc = m->client;

        if (!mc)
                return;
        /* Cancelled calls run no callback: free their contexts here, telling the callers that
         * must always hear back (a configuration change waits for its answer). */
        rpc_channel_free(mc->channel);
        m->client = NULL;
        while (mc->calls) {
                CallCtx *c = mc->calls;
                mc->calls = c->next;
                if (c->notify_on_cancel && c->done)
                        c->done(c->mgr, m, RPC_CANCELLED, "the module went away", c->userdata);
                free(c);
        }
        free(mc);
}

static char *bounded_strdup(const char *s, size_t max) {
        return strndup(s ? s : "", max);
}

static const char *module_state_name(Callassistant__V1__ModuleState s) {
        switch (s) {
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_STARTING:
                return "STARTING";
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_WAITING_FOR_CONFIG:
                return "WAITING_FOR_CONFIG";
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_READY:
                return "READY";
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_ERROR:
                return "ERROR";
        default:
                return "STARTING";
        }
}

/* Copy what the module told us, bounded. */
static int take_registration(Module *m, const Callassistant__V1__RegisterModuleResponse *resp) {
        size_t n = MIN(resp->n_entity_types, (size_t)MAX_ENTITY_TYPES);

        module_clear_registration(m);
        m->reg_name = bounded_strdup(resp->name, 64);
        m->reg_version = bounded_strdup(resp->version, 64);
        m->reg_description = bounded_strdup(resp->description, MAX_STRING);
        m->config_schema = bounded_strdup(resp->config_schema, MAX_SCHEMA);
        m->config_required = resp->config_required;
        if (!m->reg_name || !m->reg_version || !m->reg_description || !m->config_schema)
                return -ENOMEM;
        if (n == 0)
                return 0;
        m->entity_types = calloc(n, sizeof(EntityType));
        if (!m->entity_types)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Callassistant__V1__EntityType *t = resp->entity_types[i];
                size_t nc = MIN(t->n_capabilities, (size_t)MAX_CAPABILITIES);
                EntityType *e = &m->entity_types[i];

                m->n_entity_types++;
                e->name = bounded_strdup(t->name, 64);
                e->description = bounded_strdup(t->description, MAX_STRING);
                e->capabilities = calloc(nc + 1, sizeof(char *));
                if (!e->name || !e->description || !e->capabilities)
                        return -ENOMEM;
                for (size_t k = 0; k < nc; k++) {
                        e->capabilities[k] = bounded_strdup(t->capabilities[k], 64);
                        if (!e->capabilities[k])
                                return -ENOMEM;
                }
        }
        return 0;
}

static void on_register_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                             void *userdata) {
        CallCtx *c = userdata;
        Module *m = c->module;
        const char *state = NULL;
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", message ? message : "");
        if (status == RPC_OK) {
                const Callassistant__V1__RegisterModuleResponse *resp =
                        (const Callassistant__V1__RegisterModuleResponse *)response;
                if (take_registration(m, resp) < 0) {
                        status = RPC_RESOURCE_EXHAUSTED;
                        snprintf(msg, sizeof(msg), "out of memory");
                } else
                        state = module_state_name(resp->state);
        }
        module_call_done_t done = c->done;
        void *ud = c->userdata;
        Manager *mgr = c->mgr;
        ctx_unlink_free(c);
        done(mgr, m, status, status == RPC_OK ? state : msg, ud);
}

int module_client_register(Manager *mgr, Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__RegisterModuleRequest req = CALLASSISTANT__V1__REGISTER_MODULE_REQUEST__INIT;

        req.module_id = m->name;
        req.orchestrator_address = mgr->orchestrator_address;
        req.protocol_version = (char *)"v1";
        return module_call(mgr, m, "/callassistant.v1.ModuleService/RegisterModule", &req.base,
                           &callassistant__v1__register_module_response__descriptor, timeout_ms,
                           RPC_CALL_WAIT_FOR_READY, on_register_done, done, userdata, false);
}

static void on_simple_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                           void *userdata) {
        CallCtx *c = userdata;
        module_call_done_t done = c->done;
        void *ud = c->userdata;
        Manager *mgr = c->mgr;
        Module *m = c->module;
        char msg[1024];

        snprintf(msg, sizeof(msg), "%s", message ? message : "");
        ctx_unlink_free(c);
        if (done)
                done(mgr, m, status, msg, ud);
}

int module_client_apply_config(Manager *mgr, Module *m, const char *config_json, uint32_t timeout_ms,
                               module_call_done_t done, void *userdata) {
        Callassistant__V1__ApplyConfigRequest req = CALLASSISTANT__V1__APPLY_CONFIG_REQUEST__INIT;

        req.config_json = (char *)config_json;
        /* A configuration change waits for its answer: tell it if the module goes away. */
        return module_call(mgr, m, "/callassistant.v1.ModuleService/ApplyConfig", &req.base,
                           &callassistant__v1__apply_config_response__descriptor, timeout_ms, 0, on_simple_done, done,
                           userdata, true);
}

static void on_health_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                           void *userdata) {
        CallCtx *c = userdata;
        module_call_done_t done = c->done;
        void *ud = c->userdata;
        Manager *mgr = c->mgr;
        Module *m = c->module;
        const char *s = message;

        if (status == RPC_OK) {
                const Grpc__Health__V1__HealthCheckResponse *resp =
                        (const Grpc__Health__V1__HealthCheckResponse *)response;
                s = resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? "SERVING"
                                                                                                    : "NOT_SERVING";
        }
        ctx_unlink_free(c);
        done(mgr, m, status, s, ud);
}

int module_client_health_check(Manager *mgr, Module *m, uint32_t timeout_ms, module_call_done_t done,
                               void *userdata) {
        Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

        req.service = (char *)"";
        return module_call(mgr, m, "/grpc.health.v1.Health/Check", &req.base,
                           &grpc__health__v1__health_check_response__descriptor, timeout_ms, 0, on_health_done, done,
                           userdata, false);
}

typedef struct ListCtx {
        module_list_done_t done;
        void *userdata;
} ListCtx;

static void on_list_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                         void *userdata) {
        CallCtx *c = userdata;
        ListCtx *l = c->userdata;
        Manager *mgr = c->mgr;
        Module *m = c->module;

        ctx_unlink_free(c);
        l->done(mgr, m, status, message, status == RPC_OK ? response : NULL, l->userdata);
        free(l);
}

/* A ListEntities that never hears back (the module went away) must still answer its caller. */
static void on_list_cancelled(Manager *mgr, Module *m, int status, const char *message, void *userdata) {
        ListCtx *l = userdata;
        l->done(mgr, m, status, message, NULL, l->userdata);
        free(l);
}

int module_client_list_entities(Manager *mgr, Module *m, uint32_t timeout_ms, module_list_done_t done,
                                void *userdata) {
        Callassistant__V1__ListEntitiesRequest req = CALLASSISTANT__V1__LIST_ENTITIES_REQUEST__INIT;
        ListCtx *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        *l = (ListCtx){ .done = done, .userdata = userdata };
        req.type = (char *)"";
        r = module_call(mgr, m, "/callassistant.v1.ModuleService/ListEntities", &req.base,
                        &callassistant__v1__list_entities_response__descriptor, timeout_ms, 0, on_list_done,
                        on_list_cancelled, l, true);
        if (r < 0)
                free(l);
        return r;
}

int module_client_shutdown(Manager *mgr, Module *m, uint32_t deadline_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__ShutdownRequest req = CALLASSISTANT__V1__SHUTDOWN_REQUEST__INIT;

        req.deadline_ms = deadline_ms;
        return module_call(mgr, m, "/callassistant.v1.ModuleService/Shutdown", &req.base,
                           &callassistant__v1__shutdown_response__descriptor, deadline_ms, 0, on_simple_done, done,
                           userdata, false);
}
