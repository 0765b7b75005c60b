/* The C module SDK: serves ModuleService and Health for a module, reports its state. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "callassistant/v1/module.pb-c.h"
#include "callassistant/v1/orchestrator.pb-c.h"
#include "call-assistant-module.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"

#define TOKEN_KEY "x-call-assistant-module-token"
#define MAX_ENTITIES 1024

typedef struct Entity {
        CaEntity pub;
        char **attr_keys;
        char **attr_values;
        size_t n_attrs;
} Entity;

/* A MediaLink copied out of a request (the request goes when its call ends). */
typedef struct LinkCopy {
        CaMediaLink pub;
        char *media, *url, *sdp, *sdp_type;
} LinkCopy;

/* A ConnectEntity/DisconnectEntity in progress. */
typedef struct FlowOp {
        CaFlowOp pub;
        CaModule *module;
        RpcServerCall *call;  /* NULL once the caller went away */
        bool connect;
        bool in_callback;     /* completed inside the callback: finish after it returns */
        bool done;
        int error;
        char *error_message;
        char *flow_id, *output_media, *request_id;
        LinkCopy input, peer, output;
        bool has_output;
        struct FlowOp *prev, *next;
} FlowOp;

struct CaModule {
        CaModuleInfo info;
        CaModuleCallbacks cb;
        void *userdata;
        sd_event *event;
        RpcRuntime *rt;
        RpcServer *server;
        RpcChannel *orchestrator;
        char *id;
        char *orchestrator_address;
        char *token;
        unsigned port;
        CaModuleState state;
        char *state_message;
        bool configured;
        bool stopping;
        Entity **entities;
        size_t n_entities;
        unsigned next_entity;
        FlowOp *ops;          /* pending flow operations */
        struct FlowRequest *requests; /* ca_module_request_flow() calls waiting for their answer */
};

static const char *state_name(CaModuleState s) {
        switch (s) {
        case CA_MODULE_STARTING:
                return "STARTING";
        case CA_MODULE_WAITING_FOR_CONFIG:
                return "WAITING_FOR_CONFIG";
        case CA_MODULE_READY:
                return "READY";
        case CA_MODULE_ERROR:
                return "ERROR";
        }
        return "?";
}

CA_EXPORT int ca_module_new(CaModule **ret, const CaModuleInfo *info, const CaModuleCallbacks *callbacks,
                            void *userdata) {
        CaModule *m;

        if (!ret || !info || !info->name)
                return -EINVAL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->info = *info;
        if (callbacks)
                m->cb = *callbacks;
        m->userdata = userdata;
        m->state = CA_MODULE_STARTING;
        *ret = m;
        return 0;
}

static void entity_free(Entity *e) {
        if (!e)
                return;
        free(e->pub.id);
        free(e->pub.type);
        free(e->pub.name);
        free(e->pub.config_json);
        free(e->pub.state);
        for (size_t i = 0; i < e->n_attrs; i++) {
                free(e->attr_keys[i]);
                free(e->attr_values[i]);
        }
        free(e->attr_keys);
        free(e->attr_values);
        free(e);
}

static void link_clear(LinkCopy *l) {
        free(l->media);
        /* An URL may carry a password: wipe it. */
        if (l->url)
                explicit_bzero(l->url, strlen(l->url));
        free(l->url);
        free(l->sdp);
        free(l->sdp_type);
        *l = (LinkCopy){};
}

static int link_copy(LinkCopy *l, const char *media, const char *url, const char *sdp, const char *sdp_type) {
        link_clear(l);
        if ((media && !(l->media = strdup(media))) || (url && *url && !(l->url = strdup(url))) ||
            (sdp && *sdp && !(l->sdp = strdup(sdp))) || (sdp_type && *sdp_type && !(l->sdp_type = strdup(sdp_type)))) {
                link_clear(l);
                return -ENOMEM;
        }
        l->pub = (CaMediaLink){ .media = l->media, .url = l->url, .sdp = l->sdp, .sdp_type = l->sdp_type };
        return 0;
}

static void flow_op_free(FlowOp *op) {
        CaModule *m = op->module;

        if (op->prev)
                op->prev->next = op->next;
        else if (m->ops == op)
                m->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        link_clear(&op->input);
        link_clear(&op->peer);
        link_clear(&op->output);
        free(op->flow_id);
        free(op->output_media);
        free(op->request_id);
        free(op->error_message);
        free(op);
}

static void flow_request_free(struct FlowRequest *fr);

CA_EXPORT CaModule *ca_module_free(CaModule *m) {
        if (!m)
                return NULL;
        while (m->ops)
                flow_op_free(m->ops);
        while (m->requests)
                flow_request_free(m->requests);
        for (size_t i = 0; i < m->n_entities; i++)
                entity_free(m->entities[i]);
        free(m->entities);
        free(m->id);
        free(m->orchestrator_address);
        if (m->token) {
                explicit_bzero(m->token, strlen(m->token));
                free(m->token);
        }
        free(m->state_message);
        free(m);
        return NULL;
}

CA_EXPORT int ca_entity_set_attribute(CaEntity *pub, const char *key, const char *value) {
        Entity *e = (Entity *)pub;
        char **k, **v;

        for (size_t i = 0; i < e->n_attrs; i++)
                if (strcmp(e->attr_keys[i], key) == 0) {
                        char *nv = strdup(value);
                        if (!nv)
                                return -ENOMEM;
                        free(e->attr_values[i]);
                        e->attr_values[i] = nv;
                        return 0;
                }
        k = realloc(e->attr_keys, (e->n_attrs + 1) * sizeof(char *));
        if (!k)
                return -ENOMEM;
        e->attr_keys = k;
        v = realloc(e->attr_values, (e->n_attrs + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        e->attr_values = v;
        e->attr_keys[e->n_attrs] = strdup(key);
        e->attr_values[e->n_attrs] = strdup(value);
        if (!e->attr_keys[e->n_attrs] || !e->attr_values[e->n_attrs]) {
                free(e->attr_keys[e->n_attrs]);
                free(e->attr_values[e->n_attrs]);
                return -ENOMEM;
        }
        e->n_attrs++;
        return 0;
}

CA_EXPORT void ca_entity_unset_attribute(CaEntity *pub, const char *key) {
        Entity *e = (Entity *)pub;

        for (size_t i = 0; i < e->n_attrs; i++)
                if (strcmp(e->attr_keys[i], key) == 0) {
                        free(e->attr_keys[i]);
                        free(e->attr_values[i]);
                        e->n_attrs--;
                        e->attr_keys[i] = e->attr_keys[e->n_attrs];
                        e->attr_values[i] = e->attr_values[e->n_attrs];
                        return;
                }
}

CA_EXPORT int ca_entity_set_state(CaEntity *e, const char *state) {
        char *s = strdup(state ? state : "");

        if (!s)
                return -ENOMEM;
        free(e->state);
        e->state = s;
        return 0;
}

/* ---- reporting to the orchestrator ---- */

static void on_reported(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                        void *userdata) {
        if (status != RPC_OK)
                log_warning("ReportState failed: %s: %s", rpc_status_to_string(status), message ? message : "");
}

static void report_state(CaModule *m) {
        Callassistant__V1__ReportStateRequest req = CALLASSISTANT__V1__REPORT_STATE_REQUEST__INIT;
        RpcMetadata md = { TOKEN_KEY, m->token };

        if (!m->orchestrator || !m->token)
                return;
        req.state = (Callassistant__V1__ModuleState)m->state;
        req.message = m->state_message ? m->state_message : (char *)"";
        (void)rpc_channel_call(m->orchestrator, "/callassistant.v1.OrchestratorService/ReportState", &req.base,
                               &callassistant__v1__report_state_response__descriptor, 5000, 0, &md, 1, on_reported,
                               m, NULL);
}

static void on_event_reported(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                              void *userdata) {
        if (status != RPC_OK)
                log_warning("ReportEvent failed: %s: %s", rpc_status_to_string(status), message ? message : "");
}

static void entity_to_proto(Entity *e, Callassistant__V1__Entity *p, Callassistant__V1__Entity__AttributesEntry *attrs,
                            Callassistant__V1__Entity__AttributesEntry **attr_ptrs);

/* Send an event about entity e (may be NULL). Returns 0 also when there is no orchestrator
 * to report to (a module run by hand). */
static int report_event(CaModule *m, Callassistant__V1__Event *ev, Entity *e) {
        Callassistant__V1__Entity p;
        _cleanup_free_ Callassistant__V1__Entity__AttributesEntry *attrs = NULL;
        _cleanup_free_ Callassistant__V1__Entity__AttributesEntry **ptrs = NULL;
        RpcMetadata md = { TOKEN_KEY, m->token };

        if (!m->orchestrator || !m->token)
                return 0;
        if (e) {
                attrs = calloc(e->n_attrs + 1, sizeof(*attrs));
                ptrs = calloc(e->n_attrs + 1, sizeof(*ptrs));
                if (!attrs || !ptrs)
                        return -ENOMEM;
                entity_to_proto(e, &p, attrs, ptrs);
                ev->entity = &p;
        }
        ev->module = m->id;
        return rpc_channel_call(m->orchestrator, "/callassistant.v1.OrchestratorService/ReportEvent", &ev->base,
                                &callassistant__v1__report_event_response__descriptor, 5000, 0, &md, 1,
                                on_event_reported, m, NULL);
}

static Entity *find_entity(CaModule *m, const char *id);
static bool has_type(CaModule *m, const char *type);

CA_EXPORT CaEntity *ca_module_find_entity(CaModule *m, const char *id) {
        Entity *e = find_entity(m, id);
        return e ? &e->pub : NULL;
}

CA_EXPORT CaEntity *ca_module_get_entity(CaModule *m, size_t i) {
        return i < m->n_entities ? &m->entities[i]->pub : NULL;
}

static void report_entity(CaModule *m, Entity *e, CaEntityEvent kind) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;
        int r;

        ev.kind = (Callassistant__V1__Event__Kind)kind;
        r = report_event(m, &ev, e);
        if (r < 0)
                log_warning_errno(r, "Cannot report entity %s: %m", e->pub.id);
}

CA_EXPORT int ca_module_add_entity(CaModule *m, const char *type, const char *id, const char *name,
                                   CaEntity **ret) {
        Entity *e, **l;

        if (!type || !id || !*id || !has_type(m, type))
                return -EINVAL;
        if (find_entity(m, id))
                return -EEXIST;
        if (m->n_entities >= MAX_ENTITIES)
                return -ENOSPC;
        l = realloc(m->entities, (m->n_entities + 1) * sizeof(Entity *));
        if (!l)
                return -ENOMEM;
        m->entities = l;
        e = calloc(1, sizeof(*e));
        if (!e || !(e->pub.id = strdup(id)) || !(e->pub.type = strdup(type)) ||
            !(e->pub.name = strdup(name ? name : id)) || !(e->pub.config_json = strdup("{}"))) {
                entity_free(e);
                return -ENOMEM;
        }
        m->entities[m->n_entities++] = e;
        report_entity(m, e, CA_ENTITY_ADDED);
        if (ret)
                *ret = &e->pub;
        return 0;
}

/* The entity goes: pending flow operations lose it (their module completes them still). */
static void forget_entity(CaModule *m, Entity *e) {
        for (FlowOp *op = m->ops; op; op = op->next)
                if (op->pub.entity == &e->pub)
                        op->pub.entity = NULL;
        for (size_t i = 0; i < m->n_entities; i++)
                if (m->entities[i] == e) {
                        m->entities[i] = m->entities[--m->n_entities];
                        break;
                }
        entity_free(e);
}

CA_EXPORT void ca_module_remove_entity(CaModule *m, CaEntity *pub) {
        Entity *e = (Entity *)pub;

        if (!e)
                return;
        report_entity(m, e, CA_ENTITY_REMOVED);
        forget_entity(m, e);
}

CA_EXPORT void ca_module_entity_changed(CaModule *m, CaEntity *pub) {
        report_entity(m, (Entity *)pub, CA_ENTITY_CHANGED);
}

CA_EXPORT int ca_module_report_metrics(CaModule *m, CaEntity *pub, const char *const *names, const double *values,
                                       size_t n) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;
        _cleanup_free_ Callassistant__V1__Event__MetricsEntry *entries = calloc(n + 1, sizeof(*entries));
        _cleanup_free_ Callassistant__V1__Event__MetricsEntry **ptrs = calloc(n + 1, sizeof(*ptrs));

        if (!entries || !ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                callassistant__v1__event__metrics_entry__init(&entries[i]);
                entries[i].key = (char *)names[i];
                entries[i].value = values[i];
                ptrs[i] = &entries[i];
        }
        ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_METRICS;
        ev.n_metrics = n;
        ev.metrics = ptrs;
        return report_event(m, &ev, (Entity *)pub);
}

static void link_to_proto(const CaMediaLink *l, Callassistant__V1__MediaLink *p) {
        callassistant__v1__media_link__init(p);
        p->media = (char *)(l->media ?: "");
        p->url = (char *)(l->url ?: "");
        p->sdp = (char *)(l->sdp ?: "");
        p->sdp_type = (char *)(l->sdp_type ?: "");
}

CA_EXPORT int ca_module_report_flow_signal(CaModule *m, CaEntity *pub, const char *flow_id, const CaMediaLink *link) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;
        Callassistant__V1__MediaLink l;

        if (!pub || !flow_id || !link)
                return -EINVAL;
        link_to_proto(link, &l);
        ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_SIGNAL;
        ev.flow_id = (char *)flow_id;
        ev.link = &l;
        return report_event(m, &ev, (Entity *)pub);
}

typedef struct FlowRequest {
        CaModule *module;
        ca_flow_request_handler_t handler;
        void *userdata;
        struct FlowRequest *prev, *next;
} FlowRequest;

static void flow_request_free(struct FlowRequest *fr) {
        if (fr->prev)
                fr->prev->next = fr->next;
        else if (fr->module->requests == fr)
                fr->module->requests = fr->next;
        if (fr->next)
                fr->next->prev = fr->prev;
        free(fr);
}

static int errno_of(int status) {
        switch (status) {
        case RPC_PERMISSION_DENIED:
                return -EPERM;
        case RPC_INVALID_ARGUMENT:
                return -EINVAL;
        case RPC_NOT_FOUND:
                return -ENOENT;
        case RPC_FAILED_PRECONDITION:
                return -EBUSY;
        case RPC_RESOURCE_EXHAUSTED:
                return -EAGAIN;
        default:
                return -EIO;
        }
}

static void on_flow_requested(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                              void *userdata) {
        FlowRequest *fr = userdata;
        const Callassistant__V1__ReportEventResponse *resp = (const void *)response;

        if (status != RPC_OK)
                log_warning("Flow request refused: %s: %s", rpc_status_to_string(status), message ? message : "");
        if (fr->handler)
                fr->handler(fr->module, status == RPC_OK ? 0 : errno_of(status),
                            status == RPC_OK && resp ? resp->flow_id : "", message ? message : "", fr->userdata);
        flow_request_free(fr);
}

CA_EXPORT int ca_module_request_flow(CaModule *m, CaEntity *pub, const char *source_module, const char *source_entity,
                                     const char *request_id, const char *offer_sdp,
                                     ca_flow_request_handler_t handler, void *userdata) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;
        Callassistant__V1__EntityRef src = CALLASSISTANT__V1__ENTITY_REF__INIT;
        Callassistant__V1__Entity target = CALLASSISTANT__V1__ENTITY__INIT;
        Callassistant__V1__MediaLink l;
        const CaMediaLink link = { .media = "webrtc", .sdp = offer_sdp, .sdp_type = "offer" };
        RpcMetadata md = { TOKEN_KEY, m ? m->token : NULL };
        FlowRequest *fr;
        int r;

        if (!m || !pub || !source_module || !*source_module || !source_entity || !*source_entity || !request_id ||
            !*request_id || !offer_sdp || !*offer_sdp)
                return -EINVAL;
        if (!m->orchestrator || !m->token)
                return -ENOTCONN;
        fr = calloc(1, sizeof(*fr));
        if (!fr)
                return -ENOMEM;
        *fr = (FlowRequest){ .module = m, .handler = handler, .userdata = userdata };
        src.module = (char *)source_module;
        src.id = (char *)source_entity;
        target.id = (char *)pub->id;
        link_to_proto(&link, &l);
        ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_REQUEST;
        ev.module = m->id;
        ev.entity = &target;
        ev.flow_source = &src;
        ev.request_id = (char *)request_id;
        ev.link = &l;
        r = rpc_channel_call(m->orchestrator, "/callassistant.v1.OrchestratorService/ReportEvent", &ev.base,
                             &callassistant__v1__report_event_response__descriptor, 20000, 0, &md, 1,
                             on_flow_requested, fr, NULL);
        if (r < 0) {
                free(fr);
                return r;
        }
        /* Listed until answered: a call still out when the module ends gets no answer. */
        fr->next = m->requests;
        if (m->requests)
                m->requests->prev = fr;
        m->requests = fr;
        return 0;
}

CA_EXPORT int ca_module_report_flow_ended(CaModule *m, CaEntity *pub, const char *flow_id, const char *reason) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;

        if (!pub || !flow_id)
                return -EINVAL;
        ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_ENDED;
        ev.flow_id = (char *)flow_id;
        ev.reason = (char *)(reason ?: "");
        return report_event(m, &ev, (Entity *)pub);
}

CA_EXPORT void ca_module_set_state(CaModule *m, CaModuleState state, const char *message) {
        char *msg = message ? strdup(message) : NULL;

        if (m->state == state && !m->state_message == !msg &&
            (!msg || strcmp(msg, m->state_message) == 0)) {
                free(msg);
                return;
        }
        free(m->state_message);
        m->state_message = msg;
        m->state = state;
        log_info("State %s%s%s", state_name(state), msg ? ": " : "", msg ? msg : "");
        report_state(m);
}

CA_EXPORT CaModuleState ca_module_get_state(CaModule *m) {
        return m->state;
}

CA_EXPORT const char *ca_module_get_id(CaModule *m) {
        return m->id;
}

CA_EXPORT unsigned ca_module_get_port(CaModule *m) {
        return m->port;
}

CA_EXPORT void *ca_module_get_event(CaModule *m) {
        return m->event;
}

CA_EXPORT void ca_module_stop(CaModule *m) {
        m->stopping = true;
        if (m->event)
                (void)sd_event_exit(m->event, 0);
}

/* ---- ModuleService ---- */

static RpcStatus status_of(int r) {
        switch (-r) {
        case EINVAL:
                return RPC_INVALID_ARGUMENT;
        case ENOENT:
                return RPC_NOT_FOUND;
        case EBUSY:
                return RPC_FAILED_PRECONDITION;
        case EEXIST:
                return RPC_ALREADY_EXISTS;
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ECONNREFUSED:
        case ECONNRESET:
                return RPC_UNAVAILABLE;
        case ETIMEDOUT:
                return RPC_DEADLINE_EXCEEDED;
        case EOPNOTSUPP:
                return RPC_UNIMPLEMENTED;
        default:
                return RPC_INTERNAL;
        }
}

static void fail_with(RpcServerCall *call, int r, char *error) {
        (void)rpc_server_call_fail(call, status_of(r), error ? error : strerror(-r));
        free(error);
}

/* Only the orchestrator may call: it sends the module's own token with every call. */
static bool authorized(CaModule *m, RpcServerCall *call) {
        char token[256];
        size_t n;
        unsigned char diff = 0;

        if (!m->token) {
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED,
                                           "this module has no token: it accepts calls only from the orchestrator");
                return false;
        }
        if (rpc_server_call_get_metadata(call, TOKEN_KEY, token, sizeof(token)) < 0) {
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "missing " TOKEN_KEY " metadata");
                return false;
        }
        n = strlen(m->token);
        if (strlen(token) != n)
                diff = 1;
        else
                for (size_t i = 0; i < n; i++) /* constant time */
                        diff |= (unsigned char)(token[i] ^ m->token[i]);
        explicit_bzero(token, sizeof(token));
        if (diff) {
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "wrong module token");
                return false;
        }
        return true;
}

static bool strv_contains(const char *const *l, const char *s) {
        for (; l && *l; l++)
                if (strcmp(*l, s) == 0)
                        return true;
        return false;
}

static void on_register(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        CaModule *m = userdata;
        Callassistant__V1__RegisterModuleResponse resp = CALLASSISTANT__V1__REGISTER_MODULE_RESPONSE__INIT;
        Callassistant__V1__EntityType *types = NULL, **ptrs = NULL;
        size_t n = m->info.n_entity_types;

        if (!authorized(m, call))
                return;
        if (m->cb.on_register)
                m->cb.on_register(m, m->userdata);
        if (n > 0) {
                types = calloc(n, sizeof(*types));
                ptrs = calloc(n, sizeof(*ptrs));
                if (!types || !ptrs) {
                        free(types);
                        free(ptrs);
                        (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                        return;
                }
        }
        for (size_t i = 0; i < n; i++) {
                callassistant__v1__entity_type__init(&types[i]);
                types[i].name = (char *)m->info.entity_types[i].name;
                types[i].description = (char *)(m->info.entity_types[i].description ?: "");
                const CaEntityType *t = &m->info.entity_types[i];
                types[i].n_capabilities = strv_length((char *const *)t->capabilities);
                types[i].capabilities = (char **)t->capabilities;
                types[i].n_media_in = strv_length((char *const *)t->media_in);
                types[i].media_in = (char **)t->media_in;
                types[i].n_media_out = strv_length((char *const *)t->media_out);
                types[i].media_out = (char **)t->media_out;
                types[i].config_schema = (char *)(t->config_schema ?: "");
                ptrs[i] = &types[i];
        }
        resp.name = (char *)m->info.name;
        resp.version = (char *)(m->info.version ?: "");
        resp.description = (char *)(m->info.description ?: "");
        resp.n_entity_types = n;
        resp.entity_types = ptrs;
        resp.config_schema = (char *)(m->info.config_schema ?: "");
        resp.config_required = m->info.config_required;
        resp.state = (Callassistant__V1__ModuleState)m->state;
        resp.state_message = m->state_message ? m->state_message : (char *)"";
        (void)rpc_server_call_reply(call, &resp.base);
        free(types);
        free(ptrs);
}

static void on_apply_config(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ApplyConfigRequest *req = (const Callassistant__V1__ApplyConfigRequest *)request;
        Callassistant__V1__ApplyConfigResponse resp = CALLASSISTANT__V1__APPLY_CONFIG_RESPONSE__INIT;
        CaModule *m = userdata;
        char *error = NULL;
        int r;

        if (!authorized(m, call))
                return;

        if (!m->cb.apply_config) {
                (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, "this module takes no configuration");
                return;
        }
        r = m->cb.apply_config(m, req->config_json, &error, m->userdata);
        if (r < 0) {
                /* The previous configuration stays in force. */
                fail_with(call, r, error);
                return;
        }
        free(error);
        m->configured = true;
        if (m->state == CA_MODULE_WAITING_FOR_CONFIG || m->state == CA_MODULE_STARTING)
                ca_module_set_state(m, CA_MODULE_READY, NULL);
        resp.state = (Callassistant__V1__ModuleState)m->state;
        (void)rpc_server_call_reply(call, &resp.base);
}

static Entity *find_entity(CaModule *m, const char *id) {
        for (size_t i = 0; i < m->n_entities; i++)
                if (strcmp(m->entities[i]->pub.id, id) == 0)
                        return m->entities[i];
        return NULL;
}

static const CaEntityType *type_of(CaModule *m, const char *type) {
        for (size_t i = 0; i < m->info.n_entity_types; i++)
                if (strcmp(m->info.entity_types[i].name, type) == 0)
                        return &m->info.entity_types[i];
        return NULL;
}

static bool has_type(CaModule *m, const char *type) {
        return type_of(m, type) != NULL;
}

static void entity_to_proto(Entity *e, Callassistant__V1__Entity *p, Callassistant__V1__Entity__AttributesEntry *attrs,
                            Callassistant__V1__Entity__AttributesEntry **attr_ptrs) {
        callassistant__v1__entity__init(p);
        p->id = e->pub.id;
        p->type = e->pub.type;
        p->name = e->pub.name ? e->pub.name : (char *)"";
        p->config_json = e->pub.config_json ? e->pub.config_json : (char *)"{}";
        p->state = e->pub.state ? e->pub.state : (char *)"";
        for (size_t i = 0; i < e->n_attrs; i++) {
                callassistant__v1__entity__attributes_entry__init(&attrs[i]);
                attrs[i].key = e->attr_keys[i];
                attrs[i].value = e->attr_values[i];
                attr_ptrs[i] = &attrs[i];
        }
        p->n_attributes = e->n_attrs;
        p->attributes = attr_ptrs;
}

static void reply_entity(RpcServerCall *call, Entity *e) {
        Callassistant__V1__Entity p;
        Callassistant__V1__Entity__AttributesEntry *attrs = calloc(e->n_attrs + 1, sizeof(*attrs));
        Callassistant__V1__Entity__AttributesEntry **ptrs = calloc(e->n_attrs + 1, sizeof(*ptrs));

        if (!attrs || !ptrs) {
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        } else {
                entity_to_proto(e, &p, attrs, ptrs);
                (void)rpc_server_call_reply(call, &p.base);
        }
        free(attrs);
        free(ptrs);
}

static void on_create_entity(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__CreateEntityRequest *req = (const Callassistant__V1__CreateEntityRequest *)request;
        CaModule *m = userdata;
        char *error = NULL;
        Entity *e, **l;
        int r;

        if (!authorized(m, call))
                return;

        if (!m->cb.create_entity || !has_type(m, req->type)) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "unknown entity type");
                return;
        }
        if (m->state != CA_MODULE_READY) {
                (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, "module is not READY");
                return;
        }
        if (m->n_entities >= MAX_ENTITIES) {
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "too many entities");
                return;
        }
        e = calloc(1, sizeof(*e));
        if (!e || !(e->pub.type = strdup(req->type)) || !(e->pub.name = strdup(req->name)) ||
            !(e->pub.config_json = strdup(*req->config_json ? req->config_json : "{}"))) {
                entity_free(e);
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        r = m->cb.create_entity(m, &e->pub, &error, m->userdata);
        if (r < 0) {
                entity_free(e);
                fail_with(call, r, error);
                return;
        }
        free(error);
        if (!e->pub.id && asprintf(&e->pub.id, "%s-%u", req->type, ++m->next_entity) < 0)
                e->pub.id = NULL;
        /* Look for a duplicate id before realloc() may move the array. */
        if (!e->pub.id || find_entity(m, e->pub.id) ||
            !(l = realloc(m->entities, (m->n_entities + 1) * sizeof(Entity *)))) {
                bool dup = e->pub.id && find_entity(m, e->pub.id);
                if (m->cb.destroy_entity)
                        (void)m->cb.destroy_entity(m, &e->pub, NULL, m->userdata);
                entity_free(e);
                (void)rpc_server_call_fail(call, dup ? RPC_ALREADY_EXISTS : RPC_RESOURCE_EXHAUSTED,
                                           dup ? "entity id already exists" : "out of memory");
                return;
        }
        m->entities = l;
        m->entities[m->n_entities++] = e;
        reply_entity(call, e);
}

static void on_configure_entity(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ConfigureEntityRequest *req =
                (const Callassistant__V1__ConfigureEntityRequest *)request;
        CaModule *m = userdata;
        Entity *e = find_entity(m, req->id);
        char *error = NULL, *json;
        int r;

        if (!authorized(m, call))
                return;

        if (!e) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such entity");
                return;
        }
        if (!m->cb.configure_entity) {
                (void)rpc_server_call_fail(call, RPC_UNIMPLEMENTED, "entities of this module cannot be reconfigured");
                return;
        }
        r = m->cb.configure_entity(m, &e->pub, req->config_json, &error, m->userdata);
        if (r < 0) {
                fail_with(call, r, error);
                return;
        }
        free(error);
        json = strdup(req->config_json);
        if (json) {
                free(e->pub.config_json);
                e->pub.config_json = json;
        }
        reply_entity(call, e);
}

static void on_destroy_entity(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__DestroyEntityRequest *req = (const Callassistant__V1__DestroyEntityRequest *)request;
        Callassistant__V1__DestroyEntityResponse resp = CALLASSISTANT__V1__DESTROY_ENTITY_RESPONSE__INIT;
        CaModule *m = userdata;
        char *error = NULL;
        int r;

        if (!authorized(m, call))
                return;

        for (size_t i = 0; i < m->n_entities; i++) {
                Entity *e = m->entities[i];
                if (strcmp(e->pub.id, req->id) != 0)
                        continue;
                if (m->cb.destroy_entity) {
                        r = m->cb.destroy_entity(m, &e->pub, &error, m->userdata);
                        if (r < 0) {
                                fail_with(call, r, error);
                                return;
                        }
                        free(error);
                }
                forget_entity(m, e);
                (void)rpc_server_call_reply(call, &resp.base);
                return;
        }
        (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such entity");
}

static void on_list_entities(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ListEntitiesRequest *req = (const Callassistant__V1__ListEntitiesRequest *)request;
        Callassistant__V1__ListEntitiesResponse resp = CALLASSISTANT__V1__LIST_ENTITIES_RESPONSE__INIT;
        CaModule *m = userdata;
        size_t n = 0, n_attrs = 0, k = 0;
        Callassistant__V1__Entity *ents, **ptrs;
        Callassistant__V1__Entity__AttributesEntry *attrs, **attr_ptrs;

        if (!authorized(m, call))
                return;

        for (size_t i = 0; i < m->n_entities; i++)
                n_attrs += m->entities[i]->n_attrs;
        ents = calloc(m->n_entities + 1, sizeof(*ents));
        ptrs = calloc(m->n_entities + 1, sizeof(*ptrs));
        attrs = calloc(n_attrs + 1, sizeof(*attrs));
        attr_ptrs = calloc(n_attrs + 1, sizeof(*attr_ptrs));
        if (ents && ptrs && attrs && attr_ptrs) {
                for (size_t i = 0; i < m->n_entities; i++) {
                        Entity *e = m->entities[i];
                        if (*req->type && strcmp(req->type, e->pub.type) != 0)
                                continue;
                        entity_to_proto(e, &ents[n], attrs + k, attr_ptrs + k);
                        k += e->n_attrs;
                        ptrs[n] = &ents[n];
                        n++;
                }
                resp.n_entities = n;
                resp.entities = ptrs;
                (void)rpc_server_call_reply(call, &resp.base);
        } else
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        free(ents);
        free(ptrs);
        free(attrs);
        free(attr_ptrs);
}

/* ---- flows: ConnectEntity / DisconnectEntity ---- */

static void reply_connect(FlowOp *op) {
        Callassistant__V1__ConnectEntityResponse resp = CALLASSISTANT__V1__CONNECT_ENTITY_RESPONSE__INIT;
        Callassistant__V1__MediaLink out;
        Callassistant__V1__Entity p;
        _cleanup_free_ Callassistant__V1__Entity__AttributesEntry *attrs = NULL;
        _cleanup_free_ Callassistant__V1__Entity__AttributesEntry **ptrs = NULL;
        Entity *e = (Entity *)op->pub.entity;

        if (op->has_output) {
                link_to_proto(&op->output.pub, &out);
                resp.output = &out;
        }
        if (e) {
                attrs = calloc(e->n_attrs + 1, sizeof(*attrs));
                ptrs = calloc(e->n_attrs + 1, sizeof(*ptrs));
                if (!attrs || !ptrs) {
                        (void)rpc_server_call_fail(op->call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                        return;
                }
                entity_to_proto(e, &p, attrs, ptrs);
                resp.entity = &p;
        }
        (void)rpc_server_call_reply(op->call, &resp.base);
}

/* Answer the caller (if it is still there) and free the operation. */
static void flow_op_finish(FlowOp *op) {
        if (op->call) {
                if (op->error < 0)
                        fail_with(op->call, op->error, TAKE_PTR(op->error_message));
                else if (op->connect)
                        reply_connect(op);
                else {
                        Callassistant__V1__DisconnectEntityResponse resp =
                                CALLASSISTANT__V1__DISCONNECT_ENTITY_RESPONSE__INIT;
                        (void)rpc_server_call_reply(op->call, &resp.base);
                }
        }
        flow_op_free(op);
}

static void on_op_cancelled(RpcServerCall *call, void *userdata) {
        FlowOp *op = userdata;
        op->call = NULL; /* the module still completes it; nobody hears the answer */
}

CA_EXPORT int ca_flow_op_set_output(CaFlowOp *pub, const CaMediaLink *output) {
        FlowOp *op = (FlowOp *)pub;
        int r;

        if (!output) {
                link_clear(&op->output);
                op->has_output = false;
                return 0;
        }
        r = link_copy(&op->output, output->media, output->url, output->sdp, output->sdp_type);
        op->has_output = r >= 0;
        return r;
}

CA_EXPORT void ca_flow_op_complete(CaFlowOp *pub, const CaMediaLink *output) {
        FlowOp *op = (FlowOp *)pub;

        if (op->done)
                return;
        if (output && ca_flow_op_set_output(pub, output) < 0) {
                op->error = -ENOMEM;
                op->error_message = strdup("out of memory");
        }
        op->done = true;
        if (!op->in_callback)
                flow_op_finish(op);
}

CA_EXPORT void ca_flow_op_fail(CaFlowOp *pub, int error, const char *message) {
        FlowOp *op = (FlowOp *)pub;

        if (op->done)
                return;
        op->error = error < 0 ? error : -EIO;
        free(op->error_message);
        op->error_message = message ? strdup(message) : NULL;
        op->done = true;
        if (!op->in_callback)
                flow_op_finish(op);
}

static int link_from_proto(LinkCopy *l, const Callassistant__V1__MediaLink *p) {
        return link_copy(l, p->media, p->url, p->sdp, p->sdp_type);
}

static void start_flow_op(RpcServerCall *call, CaModule *m, bool connect, const char *id, const char *flow_id,
                          const Callassistant__V1__MediaLink *input, const char *output_media,
                          const Callassistant__V1__MediaLink *peer, const char *request_id) {
        int (*cb)(CaModule *, CaFlowOp *, char **, void *) = connect ? m->cb.connect_entity
                                                                      : m->cb.disconnect_entity;
        Entity *e = find_entity(m, id);
        const CaEntityType *t;
        char *error = NULL;
        FlowOp *op;
        int r;

        if (!e) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such entity");
                return;
        }
        if (!cb) {
                (void)rpc_server_call_fail(call, RPC_UNIMPLEMENTED, "entities of this module take no part in flows");
                return;
        }
        if (!*flow_id) {
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "flow_id: required");
                return;
        }
        t = type_of(m, e->pub.type);
        if (connect && input && *input->media && !strv_contains(t ? t->media_in : NULL, input->media)) {
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "input.media: this entity does not take it");
                return;
        }
        if (connect && *output_media && !strv_contains(t ? t->media_out : NULL, output_media)) {
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "output_media: this entity does not give it");
                return;
        }

        op = calloc(1, sizeof(*op));
        if (!op) {
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        op->module = m;
        op->call = call;
        op->connect = connect;
        op->next = m->ops;
        if (m->ops)
                m->ops->prev = op;
        m->ops = op;
        if (!(op->flow_id = strdup(flow_id)) || !(op->output_media = strdup(output_media ?: "")) ||
            !(op->request_id = strdup(request_id ?: "")) ||
            (input && link_from_proto(&op->input, input) < 0) || (peer && link_from_proto(&op->peer, peer) < 0)) {
                op->error = -ENOMEM;
                flow_op_finish(op);
                return;
        }
        op->pub = (CaFlowOp){
                .entity = &e->pub,
                .flow_id = op->flow_id,
                .input = input ? &op->input.pub : NULL,
                .output_media = op->output_media,
                .peer = peer ? &op->peer.pub : NULL,
                .request_id = op->request_id,
        };
        rpc_server_call_set_cancel_handler(call, on_op_cancelled, op);

        op->in_callback = true;
        r = cb(m, &op->pub, &error, m->userdata);
        op->in_callback = false;
        if (op->done) {
                /* Completed inside the callback. */
                free(error);
                flow_op_finish(op);
        } else if (r == CA_PENDING) {
                free(error);
        } else {
                if (r < 0) {
                        op->error = r;
                        op->error_message = error;
                } else
                        free(error);
                flow_op_finish(op);
        }
}

static void on_connect_entity(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ConnectEntityRequest *req = (const Callassistant__V1__ConnectEntityRequest *)request;
        CaModule *m = userdata;

        if (!authorized(m, call))
                return;
        start_flow_op(call, m, true, req->id, req->flow_id, req->input, req->output_media, req->peer, req->request_id);
}

static void on_disconnect_entity(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__DisconnectEntityRequest *req =
                (const Callassistant__V1__DisconnectEntityRequest *)request;
        CaModule *m = userdata;

        if (!authorized(m, call))
                return;
        start_flow_op(call, m, false, req->id, req->flow_id, NULL, NULL, NULL, NULL);
}

static int on_exit_deferred(sd_event_source *s, void *userdata) {
        CaModule *m = userdata;
        (void)sd_event_exit(m->event, 0);
        return 0;
}

static void on_shutdown(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__V1__ShutdownResponse resp = CALLASSISTANT__V1__SHUTDOWN_RESPONSE__INIT;
        CaModule *m = userdata;

        if (!authorized(m, call))
                return;

        log_info("Shutdown requested by the orchestrator.");
        m->stopping = true;
        (void)rpc_server_call_reply(call, &resp.base);
        /* Exit after the reply went out (the next loop iteration). */
        (void)sd_event_add_defer(m->event, NULL, on_exit_deferred, m);
}

static void on_health_check(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Grpc__Health__V1__HealthCheckRequest *req = (const Grpc__Health__V1__HealthCheckRequest *)request;
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        CaModule *m = userdata;
        bool serving;

        if (*req->service && strcmp(req->service, "callassistant.v1.ModuleService") != 0) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "unknown service");
                return;
        }
        serving = m->state != CA_MODULE_ERROR && !m->stopping;
        if (serving && m->cb.health)
                serving = m->cb.health(m, m->userdata);
        resp.status = serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                              : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
        (void)rpc_server_call_reply(call, &resp.base);
}

#define MS(name) "/callassistant.v1.ModuleService/" name
#define D(t) &callassistant__v1__##t##__descriptor

static const RpcMethod methods[] = {
        { MS("RegisterModule"), D(register_module_request), on_register, false },
        { MS("ApplyConfig"), D(apply_config_request), on_apply_config, false },
        { MS("CreateEntity"), D(create_entity_request), on_create_entity, false },
        { MS("ConfigureEntity"), D(configure_entity_request), on_configure_entity, false },
        { MS("DestroyEntity"), D(destroy_entity_request), on_destroy_entity, false },
        { MS("ListEntities"), D(list_entities_request), on_list_entities, false },
        { MS("ConnectEntity"), D(connect_entity_request), on_connect_entity, false },
        { MS("DisconnectEntity"), D(disconnect_entity_request), on_disconnect_entity, false },
        { MS("Shutdown"), D(shutdown_request), on_shutdown, false },
        { "/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor, on_health_check, false },
};

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        CaModule *m = userdata;

        log_info("Received %s, stopping.", strsignal((int)si->ssi_signo));
        ca_module_stop(m);
        return 0;
}

/* Read $CALL_ASSISTANT_TOKEN_FILE, else $CREDENTIALS_DIRECTORY/module-token (the orchestrator
 * hands it over with LoadCredential=). */
static char *read_token(void) {
        const char *file = getenv("CALL_ASSISTANT_TOKEN_FILE"), *dir = getenv("CREDENTIALS_DIRECTORY");
        char path[4096], buf[129];
        FILE *f;
        size_t n;

        if (file && *file)
                snprintf(path, sizeof(path), "%s", file);
        else if (dir && *dir)
                snprintf(path, sizeof(path), "%s/module-token", dir);
        else
                return NULL;
        f = fopen(path, "re");
        if (!f)
                return NULL;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                n--;
        buf[n] = 0;
        char *t = n > 0 ? strdup(buf) : NULL;
        explicit_bzero(buf, sizeof(buf));
        return t;
}

CA_EXPORT int ca_module_run(CaModule *m) {
        const char *port = getenv("GRPC_PORT"), *id = getenv("CALL_ASSISTANT_MODULE_ID"),
                   *orch = getenv("CALL_ASSISTANT_ORCHESTRATOR");
        char address[64], *end;
        unsigned long p;
        sigset_t mask;
        int r;

        log_setup_from_env();
        if (!port || !*port)
                return log_error_errno(EINVAL, "GRPC_PORT is not set: modules are started by call-assistant.");
        errno = 0;
        p = strtoul(port, &end, 10);
        if (errno || *end || p == 0 || p > 65535)
                return log_error_errno(EINVAL, "GRPC_PORT=%s is not a port number.", port);
        m->port = (unsigned)p;
        m->id = strdup(id ? id : m->info.name);
        if (!m->id)
                return -ENOMEM;
        m->token = read_token();
        if (!m->token)
                log_warning("No module token ($CALL_ASSISTANT_TOKEN_FILE or $CREDENTIALS_DIRECTORY/module-token): "
                            "every ModuleService call will be refused and nothing reported.");
        if (orch && *orch) {
                m->orchestrator_address = strdup(orch);
                if (!m->orchestrator_address)
                        return -ENOMEM;
        }

        if (!m->info.no_signal_handling) {
                sigemptyset(&mask);
                sigaddset(&mask, SIGTERM);
                sigaddset(&mask, SIGINT);
                if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                        return -errno;
        }
        (void)signal(SIGPIPE, SIG_IGN);

        /* The thread's default loop: the module may add its sources before ca_module_run(). */
        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        if (!m->info.no_signal_handling) {
                (void)sd_event_add_signal(m->event, NULL, SIGTERM, on_signal, m);
                (void)sd_event_add_signal(m->event, NULL, SIGINT, on_signal, m);
        }
        r = rpc_runtime_new(&m->rt, m->event);
        if (r < 0)
                goto finish;
        snprintf(address, sizeof(address), "127.0.0.1:%u", m->port);
        r = rpc_server_new(&m->server, m->rt, address, methods, ELEMENTSOF(methods), m);
        if (r < 0) {
                log_error_errno(r, "Cannot listen on %s: %m", address);
                r = -EADDRINUSE;
                goto finish;
        }
        if (m->orchestrator_address && m->token) {
                r = rpc_channel_new(&m->orchestrator, m->rt, m->orchestrator_address);
                if (r < 0)
                        goto finish;
        }
        log_info("%s %s serving on %s", m->info.name, m->info.version ? m->info.version : "", address);
        /* Entities the module added before the loop ran are reported now. */
        for (size_t i = 0; i < m->n_entities; i++)
                report_entity(m, m->entities[i], CA_ENTITY_ADDED);

        if (m->info.config_required && !m->configured)
                ca_module_set_state(m, CA_MODULE_WAITING_FOR_CONFIG, "waiting for configuration");
        else if (m->state == CA_MODULE_STARTING)
                ca_module_set_state(m, CA_MODULE_READY, NULL);

        if (!m->stopping)
                r = sd_event_loop(m->event);
        else
                r = 0;
        if (r > 0)
                r = 0;
finish:
        m->orchestrator = rpc_channel_free(m->orchestrator);
        m->server = rpc_server_free(m->server);
        m->rt = rpc_runtime_free(m->rt);
        m->event = sd_event_unref(m->event);
        return r;
}
