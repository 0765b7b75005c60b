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

CA_EXPORT CaModule *ca_module_free(CaModule *m) {
        if (!m)
                return NULL;
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
        default:
                return RPC_INTERNAL;
        }
}

static void fail_with(RpcServerCall *call, int r, char *error) {
        (void)rpc_server_call_fail(call, status_of(r), error ? error : strerror(-r));
        free(error);
}

static void on_register(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        CaModule *m = userdata;
        Callassistant__V1__RegisterModuleResponse resp = CALLASSISTANT__V1__REGISTER_MODULE_RESPONSE__INIT;
        Callassistant__V1__EntityType *types = NULL, **ptrs = NULL;
        size_t n = m->info.n_entity_types;

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
                for (const char *const *c = m->info.entity_types[i].capabilities; c && *c; c++)
                        types[i].n_capabilities++;
                types[i].capabilities = (char **)m->info.entity_types[i].capabilities;
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

static bool has_type(CaModule *m, const char *type) {
        for (size_t i = 0; i < m->info.n_entity_types; i++)
                if (strcmp(m->info.entity_types[i].name, type) == 0)
                        return true;
        return false;
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
        l = realloc(m->entities, (m->n_entities + 1) * sizeof(Entity *));
        if (!e->pub.id || !l || find_entity(m, e->pub.id)) {
                if (l)
                        m->entities = l;
                if (m->cb.destroy_entity)
                        (void)m->cb.destroy_entity(m, &e->pub, NULL, m->userdata);
                entity_free(e);
                (void)rpc_server_call_fail(call, l ? RPC_ALREADY_EXISTS : RPC_RESOURCE_EXHAUSTED,
                                           l ? "entity id already exists" : "out of memory");
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
                entity_free(e);
                m->entities[i] = m->entities[--m->n_entities];
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

static int on_exit_deferred(sd_event_source *s, void *userdata) {
        CaModule *m = userdata;
        (void)sd_event_exit(m->event, 0);
        return 0;
}

static void on_shutdown(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__V1__ShutdownResponse resp = CALLASSISTANT__V1__SHUTDOWN_RESPONSE__INIT;
        CaModule *m = userdata;

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
        { MS("Shutdown"), D(shutdown_request), on_shutdown, false },
        { "/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor, on_health_check, false },
};

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        CaModule *m = userdata;

        log_info("Received %s, stopping.", strsignal((int)si->ssi_signo));
        ca_module_stop(m);
        return 0;
}

/* Read $CREDENTIALS_DIRECTORY/module-token (the orchestrator hands it over with LoadCredential=). */
static char *read_token(void) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        char path[4096], buf[129];
        FILE *f;
        size_t n;

        if (!dir)
                return NULL;
        snprintf(path, sizeof(path), "%s/module-token", dir);
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
        if (orch && *orch) {
                m->orchestrator_address = strdup(orch);
                if (!m->orchestrator_address)
                        return -ENOMEM;
                if (!m->token)
                        log_warning("No module token in $CREDENTIALS_DIRECTORY/module-token: state changes will not "
                                    "be reported to the orchestrator.");
        }

        if (!m->info.no_signal_handling) {
                sigemptyset(&mask);
                sigaddset(&mask, SIGTERM);
                sigaddset(&mask, SIGINT);
                if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                        return -errno;
        }
        (void)signal(SIGPIPE, SIG_IGN);

        r = sd_event_new(&m->event);
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
