/* The orchestrator's gRPC calls to modules. Everything a module sends back is untrusted:
 * sizes are bounded by the runtime, strings are copied and bounded here. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "callassistant/v1/module.pb-c.h"
#include "daemon/manager.h"
#include "daemon/module-client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"

#define TOKEN_KEY "x-call-assistant-module-token"
#define MAX_ENTITY_TYPES 64
#define MAX_CAPABILITIES 32
#define MAX_MEDIA 8
#define MAX_STRING 4096
#define MAX_SCHEMA (256 * 1024)

typedef struct CallCtx CallCtx;

struct ModuleClient {
        RpcChannel *channel;
        CallCtx *calls;        /* in flight, for cancellation */
};

/* Unpacks a successful reply into the result (and the module); negative errno on failure. */
typedef int (*take_reply_t)(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result);

struct CallCtx {
        Module *module;
        take_reply_t take;
        module_call_done_t done;
        void *userdata;
        bool notify_on_cancel;   /* the caller must hear back even if the module goes away */
        CallCtx *next;
};

static void call_ctx_unlink_free(CallCtx *c) {
        ModuleClient *mc = c->module->client;

        if (mc)
                for (CallCtx **p = &mc->calls; *p; p = &(*p)->next)
                        if (*p == c) {
                                *p = c->next;
                                break;
                        }
        free(c);
}

/* The one completion path of every call. */
static void on_call_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *reply,
                         void *userdata) {
        CallCtx *c = userdata;
        Module *m = c->module;
        module_call_done_t done = c->done;
        void *ud = c->userdata;
        ModuleCallResult result = {
                .status = status,
                .message = message ? message : "",
                .reported = MODULE_STARTING,
                .health = HEALTH_UNKNOWN,
                .response = status == RPC_OK ? reply : NULL,
        };

        if (status == RPC_OK && c->take && c->take(m, reply, &result) < 0) {
                result.status = RPC_RESOURCE_EXHAUSTED;
                result.message = "out of memory";
                result.response = NULL;
        }
        call_ctx_unlink_free(c);
        if (done)
                done(m, &result, ud);
}

static int module_call(Module *m, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *reply_type, uint32_t timeout_ms, unsigned flags,
                       take_reply_t take, bool notify_on_cancel, module_call_done_t done, void *userdata) {
        ModuleClient *mc = m->client;
        CallCtx *c;
        int r;

        if (!mc)
                return -ENOTCONN;
        c = new0(CallCtx, 1);
        if (!c)
                return -ENOMEM;
        *c = (CallCtx){ .module = m, .take = take, .done = done, .userdata = userdata,
                        .notify_on_cancel = notify_on_cancel, .next = mc->calls };
        mc->calls = c;

        /* The module's own token: modules accept calls only from the orchestrator. */
        RpcMetadata md = { .key = TOKEN_KEY, .value = m->token };
        r = rpc_channel_call(mc->channel, method, request, reply_type, timeout_ms, flags, &md, m->token ? 1 : 0,
                             on_call_done, c, NULL);
        if (r < 0)
                call_ctx_unlink_free(c);
        return r;
}

int module_client_connect(Module *m) {
        _cleanup_free_ ModuleClient *mc = NULL;
        char target[64];
        int r;

        assert(m);
        assert(m->manager);

        module_client_disconnect(m);
        mc = new0(ModuleClient, 1);
        if (!mc)
                return -ENOMEM;
        snprintf(target, sizeof(target), "127.0.0.1:%u", m->port);
        r = rpc_channel_new(&mc->channel, m->manager->rpc, target);
        if (r < 0)
                return r;
        m->client = TAKE_PTR(mc);
        return 0;
}

void module_client_disconnect(Module *m) {
        ModuleClient *mc;

        assert(m);
        mc = TAKE_PTR(m->client);
        if (!mc)
                return;
        /* Cancelled calls run no callback of the runtime: free their contexts here, telling the
         * callers that must always hear back. */
        rpc_channel_free(mc->channel);
        while (mc->calls) {
                CallCtx *c = mc->calls;
                ModuleCallResult result = { .status = RPC_CANCELLED, .message = "the module went away" };

                mc->calls = c->next;
                if (c->notify_on_cancel && c->done)
                        c->done(m, &result, c->userdata);
                free(c);
        }
        free(mc);
}

static char *bounded_strdup(const char *s, size_t max) {
        return strndup(s ? s : "", max);
}

static ModuleState state_from_proto(Callassistant__V1__ModuleState s) {
        switch (s) {
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_WAITING_FOR_CONFIG:
                return MODULE_WAITING_FOR_CONFIG;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_READY:
                return MODULE_READY;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_ERROR:
                return MODULE_ERROR;
        default:
                return MODULE_STARTING;
        }
}

/* Media tokens: [a-z0-9_]{1,32}; anything else a module declares is ignored. */
static bool media_token_valid(const char *s) {
        size_t n = 0;

        for (; s && *s; s++, n++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return n >= 1 && n <= 32;
}

static int take_media(char ***ret, char *const *media, size_t n_media) {
        size_t n = MIN(n_media, (size_t)MAX_MEDIA), k = 0;
        char **l = new0(char *, n + 1);

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (media_token_valid(media[i]) && !(l[k++] = strdup(media[i]))) {
                        strv_free(l);
                        return -ENOMEM;
                }
        *ret = l;
        return 0;
}

/* Copy what the module told us, bounded. */
static int take_registration(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result) {
        const Callassistant__V1__RegisterModuleResponse *resp = (const void *)reply;
        size_t n = MIN(resp->n_entity_types, (size_t)MAX_ENTITY_TYPES);

        module_clear_registration(m);
        result->reported = state_from_proto(resp->state);
        m->reg_name = bounded_strdup(resp->name, 64);
        m->reg_version = bounded_strdup(resp->version, 64);
        m->reg_description = bounded_strdup(resp->description, MAX_STRING);
        m->config_schema = bounded_strdup(resp->config_schema, MAX_SCHEMA);
        m->config_required = resp->config_required;
        if (!m->reg_name || !m->reg_version || !m->reg_description || !m->config_schema)
                return -ENOMEM;
        if (n == 0)
                return 0;
        m->entity_types = new0(EntityType, n);
        if (!m->entity_types)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Callassistant__V1__EntityType *t = resp->entity_types[i];
                size_t nc = MIN(t->n_capabilities, (size_t)MAX_CAPABILITIES);
                EntityType *e = &m->entity_types[i];

                m->n_entity_types++;
                e->name = bounded_strdup(t->name, 64);
                e->description = bounded_strdup(t->description, MAX_STRING);
                e->capabilities = new0(char *, nc + 1);
                if (!e->name || !e->description || !e->capabilities)
                        return -ENOMEM;
                for (size_t k = 0; k < nc; k++) {
                        e->capabilities[k] = bounded_strdup(t->capabilities[k], 64);
                        if (!e->capabilities[k])
                                return -ENOMEM;
                }
                if (take_media(&e->media_in, t->media_in, t->n_media_in) < 0 ||
                    take_media(&e->media_out, t->media_out, t->n_media_out) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int module_client_register(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__RegisterModuleRequest req = CALLASSISTANT__V1__REGISTER_MODULE_REQUEST__INIT;

        assert(m);
        req.module_id = m->name;
        req.orchestrator_address = m->manager->orchestrator_address;
        req.protocol_version = (char *)"v1";
        return module_call(m, "/callassistant.v1.ModuleService/RegisterModule", &req.base,
                           &callassistant__v1__register_module_response__descriptor, timeout_ms,
                           RPC_CALL_WAIT_FOR_READY, take_registration, false, done, userdata);
}

static int take_applied(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result) {
        result->reported = state_from_proto(((const Callassistant__V1__ApplyConfigResponse *)reply)->state);
        return 0;
}

int module_client_apply_config(Module *m, const char *config_json, uint32_t timeout_ms, module_call_done_t done,
                               void *userdata) {
        Callassistant__V1__ApplyConfigRequest req = CALLASSISTANT__V1__APPLY_CONFIG_REQUEST__INIT;

        assert(m);
        assert(config_json);
        req.config_json = (char *)config_json;
        return module_call(m, "/callassistant.v1.ModuleService/ApplyConfig", &req.base,
                           &callassistant__v1__apply_config_response__descriptor, timeout_ms, 0, take_applied, true,
                           done, userdata);
}

static int take_health(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result) {
        const Grpc__Health__V1__HealthCheckResponse *resp = (const void *)reply;

        result->health = resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                                 ? HEALTH_SERVING
                                 : HEALTH_NOT_SERVING;
        return 0;
}

int module_client_health_check(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

        assert(m);
        req.service = (char *)"";
        return module_call(m, "/grpc.health.v1.Health/Check", &req.base,
                           &grpc__health__v1__health_check_response__descriptor, timeout_ms, 0, take_health, false,
                           done, userdata);
}

int module_client_list_entities(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__ListEntitiesRequest req = CALLASSISTANT__V1__LIST_ENTITIES_REQUEST__INIT;

        assert(m);
        req.type = (char *)"";
        return module_call(m, "/callassistant.v1.ModuleService/ListEntities", &req.base,
                           &callassistant__v1__list_entities_response__descriptor, timeout_ms, 0, NULL, true, done,
                           userdata);
}

/* ---- entities and flows -------------------------------------------------------------- */

#define MAX_LINK_STRING (64 * 1024)

static void wipe_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

void flow_link_done(FlowLink *l) {
        if (!l)
                return;
        wipe_free(l->media);
        wipe_free(l->url);
        wipe_free(l->sdp);
        wipe_free(l->sdp_type);
        *l = (FlowLink){};
}

int flow_link_from_proto(FlowLink *l, const ProtobufCMessage *msg) {
        const Callassistant__V1__MediaLink *p = (const void *)msg;

        flow_link_done(l);
        if (!p || !p->media || !*p->media)
                return 0;
        l->media = bounded_strdup(p->media, 32);
        l->url = bounded_strdup(p->url, 4096);
        l->sdp = bounded_strdup(p->sdp, MAX_LINK_STRING);
        l->sdp_type = bounded_strdup(p->sdp_type, 16);
        if (!l->media || !l->url || !l->sdp || !l->sdp_type) {
                flow_link_done(l);
                return -ENOMEM;
        }
        return 0;
}

static void link_to_proto(const FlowLink *l, Callassistant__V1__MediaLink *p) {
        callassistant__v1__media_link__init(p);
        p->media = l->media ? l->media : (char *)"";
        p->url = l->url ? l->url : (char *)"";
        p->sdp = l->sdp ? l->sdp : (char *)"";
        p->sdp_type = l->sdp_type ? l->sdp_type : (char *)"";
}

int module_client_create_entity(Module *m, const char *type, const char *name, const char *config_json,
                                uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__CreateEntityRequest req = CALLASSISTANT__V1__CREATE_ENTITY_REQUEST__INIT;

        assert(m);
        assert(type);
        req.type = (char *)type;
        req.name = (char *)(name ? name : "");
        req.config_json = (char *)(config_json ? config_json : "{}");
        return module_call(m, "/callassistant.v1.ModuleService/CreateEntity", &req.base,
                           &callassistant__v1__entity__descriptor, timeout_ms, 0, NULL, true, done, userdata);
}

int module_client_destroy_entity(Module *m, const char *id, uint32_t timeout_ms, module_call_done_t done,
                                 void *userdata) {
        Callassistant__V1__DestroyEntityRequest req = CALLASSISTANT__V1__DESTROY_ENTITY_REQUEST__INIT;

        assert(m);
        assert(id);
        req.id = (char *)id;
        return module_call(m, "/callassistant.v1.ModuleService/DestroyEntity", &req.base,
                           &callassistant__v1__destroy_entity_response__descriptor, timeout_ms, 0, NULL, true, done,
                           userdata);
}

int module_client_connect_entity(Module *m, const char *id, const char *flow_id, const FlowLink *input,
                                 const char *output_media, const FlowLink *peer, uint32_t timeout_ms,
                                 module_call_done_t done, void *userdata) {
        Callassistant__V1__ConnectEntityRequest req = CALLASSISTANT__V1__CONNECT_ENTITY_REQUEST__INIT;
        Callassistant__V1__MediaLink in, pe;

        assert(m);
        assert(id);
        assert(flow_id);
        req.id = (char *)id;
        req.flow_id = (char *)flow_id;
        req.output_media = (char *)(output_media ? output_media : "");
        if (flow_link_is_set(input)) {
                link_to_proto(input, &in);
                req.input = &in;
        }
        if (flow_link_is_set(peer)) {
                link_to_proto(peer, &pe);
                req.peer = &pe;
        }
        return module_call(m, "/callassistant.v1.ModuleService/ConnectEntity", &req.base,
                           &callassistant__v1__connect_entity_response__descriptor, timeout_ms, 0, NULL, true, done,
                           userdata);
}

int module_client_disconnect_entity(Module *m, const char *id, const char *flow_id, uint32_t timeout_ms,
                                    module_call_done_t done, void *userdata) {
        Callassistant__V1__DisconnectEntityRequest req = CALLASSISTANT__V1__DISCONNECT_ENTITY_REQUEST__INIT;

        assert(m);
        req.id = (char *)id;
        req.flow_id = (char *)flow_id;
        return module_call(m, "/callassistant.v1.ModuleService/DisconnectEntity", &req.base,
                           &callassistant__v1__disconnect_entity_response__descriptor, timeout_ms, 0, NULL, true,
                           done, userdata);
}

int module_client_shutdown(Module *m, uint32_t deadline_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__ShutdownRequest req = CALLASSISTANT__V1__SHUTDOWN_REQUEST__INIT;

        assert(m);
        req.deadline_ms = deadline_ms;
        return module_call(m, "/callassistant.v1.ModuleService/Shutdown", &req.base,
                           &callassistant__v1__shutdown_response__descriptor, deadline_ms, 0, NULL, false, done,
                           userdata);
}
