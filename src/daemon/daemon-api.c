/* The orchestrator's gRPC API: the module-facing endpoint (ReportState/ReportEvent, each call
 * authenticated by the module's token) and the control endpoint (a root-only unix socket). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "callassistant/v1/orchestrator.pb-c.h"
#include "daemon/daemon-api.h"
#include "daemon/manager-modules.h"
#include "rpc/rpc.h"
#include "services/config/config-service-grpc.h"
#include "shared/fileio.h"
#include "shared/log.h"
#include "shared/macro.h"

#define TOKEN_KEY "x-call-assistant-module-token"
#define MAX_WATCHERS 64

typedef struct Watcher {
        RpcServerCall *call;
        char *module;   /* filter; NULL: all */
} Watcher;

typedef struct DaemonApi {
        RpcMethod *module_table;     /* module_methods + the config service, denied */
        RpcMethod *control_table;    /* control_methods + the config service */
        RpcRuntime *rt;
        RpcServer *module_server;
        RpcServer *control_server;
        Watcher watchers[MAX_WATCHERS];
        size_t n_watchers;
} DaemonApi;

static DaemonApi *api_of(Manager *mgr) {
        return mgr->rpc;
}

RpcRuntime *daemon_api_runtime(Manager *mgr) {
        return api_of(mgr)->rt;
}

static uint64_t realtime_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- ModuleInfo ---- */

typedef struct InfoBuf {
        Callassistant__V1__ModuleInfo info;
        Callassistant__V1__EntityType *types;
        Callassistant__V1__EntityType **type_ptrs;
} InfoBuf;

static int info_fill(InfoBuf *b, const Module *m) {
        Callassistant__V1__ModuleInfo *i = &b->info;

        *b = (InfoBuf){};
        callassistant__v1__module_info__init(i);
        i->name = m->name;
        i->dir = m->dir;
        i->unit = m->unit ? m->unit : (char *)"";
        i->version = m->version ? m->version : (char *)"";
        i->description = m->description ? m->description : (char *)"";
        i->status = (Callassistant__V1__ModuleStatus)(m->state + 1);
        i->status_message = m->state_message ? m->state_message : (char *)"";
        i->active_state = (char *)(m->unit_status.active_state[0] ? m->unit_status.active_state : "inactive");
        i->sub_state = (char *)(m->unit_status.sub_state[0] ? m->unit_status.sub_state : "dead");
        i->port = m->port;
        i->n_restarts = m->unit_status.n_restarts;
        i->main_pid = m->unit_status.main_pid;
        i->health = m->health == HEALTH_SERVING       ? CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_SERVING
                    : m->health == HEALTH_NOT_SERVING ? CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_NOT_SERVING
                                                      : CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_UNKNOWN;
        i->health_failures = m->health_failures;
        i->registered_at_usec = m->registered ? m->registered_at_usec : 0;
        i->config_required = m->config_required;
        for (char **d = m->dependencies; d && *d; d++)
                i->n_dependencies++;
        i->dependencies = m->dependencies;
        if (m->n_entity_types > 0) {
                b->types = calloc(m->n_entity_types, sizeof(Callassistant__V1__EntityType));
                b->type_ptrs = calloc(m->n_entity_types, sizeof(Callassistant__V1__EntityType *));
                if (!b->types || !b->type_ptrs)
                        return -ENOMEM;
                for (size_t k = 0; k < m->n_entity_types; k++) {
                        Callassistant__V1__EntityType *t = &b->types[k];
                        callassistant__v1__entity_type__init(t);
                        t->name = m->entity_types[k].name;
                        t->description = m->entity_types[k].description;
                        for (char **c = m->entity_types[k].capabilities; c && *c; c++)
                                t->n_capabilities++;
                        t->capabilities = m->entity_types[k].capabilities;
                        b->type_ptrs[k] = t;
                }
                i->n_entity_types = m->n_entity_types;
                i->entity_types = b->type_ptrs;
        }
        return 0;
}

static void info_done(InfoBuf *b) {
        free(b->types);
        free(b->type_ptrs);
}

/* ---- events ---- */

static void watcher_remove(DaemonApi *api, RpcServerCall *call) {
        for (size_t i = 0; i < api->n_watchers; i++)
                if (api->watchers[i].call == call) {
                        free(api->watchers[i].module);
                        api->watchers[i] = api->watchers[--api->n_watchers];
                        return;
                }
}

static void on_watcher_cancelled(RpcServerCall *call, void *userdata) {
        watcher_remove(userdata, call);
}

static void send_module_event(RpcServerCall *call, Module *m) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;
        InfoBuf b;

        if (info_fill(&b, m) < 0) {
                info_done(&b);
                return;
        }
        ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_MODULE_CHANGED;
        ev.module = m->name;
        ev.timestamp_usec = realtime_usec();
        ev.module_info = &b.info;
        (void)rpc_server_call_write(call, &ev.base);
        info_done(&b);
}

static void send_config_event(RpcServerCall *call, Module *m, const ManagerConfigChange *change) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;

        ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_CONFIG_CHANGED;
        ev.module = m->name;
        ev.timestamp_usec = realtime_usec();
        ev.config_json = (char *)change->redacted_json; /* never a secret in clear */
        ev.config_revision = change->revision;
        (void)rpc_server_call_write(call, &ev.base);
}

/* An event a module reported: passed on with its module set from its token, never from what
 * the module claims. */
static void send_module_report(RpcServerCall *call, Module *m, const Callassistant__V1__Event *reported) {
        Callassistant__V1__Event ev = *reported;

        ev.module = m->name;
        ev.timestamp_usec = realtime_usec();
        ev.module_info = NULL;
        ev.config_json = (char *)"";
        ev.config_revision = 0;
        (void)rpc_server_call_write(call, &ev.base);
}

static void on_manager_event(Manager *mgr, ManagerEventKind kind, Module *m, const void *payload, void *userdata) {
        DaemonApi *api = userdata;

        if (!m)
                return;
        if (kind == MANAGER_EVENT_ENTITY) {
                for (size_t i = 0; i < api->n_watchers; i++)
                        if (!api->watchers[i].module || strcmp(api->watchers[i].module, m->name) == 0)
                                send_module_report(api->watchers[i].call, m, payload);
                return;
        }
        for (size_t i = 0; i < api->n_watchers; i++) {
                Watcher *w = &api->watchers[i];
                if (w->module && strcmp(w->module, m->name) != 0)
                        continue;
                if (kind == MANAGER_EVENT_MODULE_STATE)
                        send_module_event(w->call, m);
                else if (kind == MANAGER_EVENT_CONFIG && payload)
                        send_config_event(w->call, m, payload);
        }
}

/* ---- handlers ---- */

static void deny(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        (void)rpc_server_call_fail(call, RPC_PERMISSION_DENIED,
                                   "not available on this endpoint (control methods are served on the control "
                                   "socket only)");
}

/* Who is calling? The token decides; a module can only speak for itself. */
static Module *authenticate(Manager *mgr, RpcServerCall *call) {
        char token[128];
        Module *m;

        if (rpc_server_call_get_metadata(call, TOKEN_KEY, token, sizeof(token)) < 0) {
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "missing " TOKEN_KEY " metadata");
                return NULL;
        }
        m = registry_find_by_token(&mgr->registry, token);
        explicit_bzero(token, sizeof(token));
        if (!m) {
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "unknown module token");
                return NULL;
        }
        return m;
}

static void on_report_state(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ReportStateRequest *req = (const Callassistant__V1__ReportStateRequest *)request;
        Callassistant__V1__ReportStateResponse resp = CALLASSISTANT__V1__REPORT_STATE_RESPONSE__INIT;
        Manager *mgr = userdata;
        ModuleState state;
        char msg[512];
        Module *m;

        m = authenticate(mgr, call);
        if (!m)
                return;
        switch (req->state) {
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_STARTING:
                state = MODULE_STARTING;
                break;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_WAITING_FOR_CONFIG:
                state = MODULE_WAITING_FOR_CONFIG;
                break;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_READY:
                state = MODULE_READY;
                break;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_ERROR:
                state = MODULE_ERROR;
                break;
        default:
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "state: unknown module state");
                return;
        }
        /* Untrusted text: bounded, and only printable characters kept. */
        snprintf(msg, sizeof(msg), "%s", req->message ? req->message : "");
        for (char *p = msg; *p; p++)
                if ((unsigned char)*p < 0x20)
                        *p = ' ';
        manager_module_reported_state(mgr, m, state, msg);
        (void)rpc_server_call_reply(call, &resp.base);
}

static void on_report_event(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__Event *ev = (const Callassistant__V1__Event *)request;
        Callassistant__V1__ReportEventResponse resp = CALLASSISTANT__V1__REPORT_EVENT_RESPONSE__INIT;
        Manager *mgr = userdata;
        Module *m = authenticate(mgr, call);

        if (!m)
                return;
        switch (ev->kind) {
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_ADDED:
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_CHANGED:
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_REMOVED:
                if (!ev->entity) {
                        (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "entity: required for entity events");
                        return;
                }
                break;
        case CALLASSISTANT__V1__EVENT__KIND__KIND_METRICS:
                if (ev->n_metrics > 256) {
                        (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "metrics: at most 256");
                        return;
                }
                break;
        default:
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT,
                                           "kind: modules report entity events and metrics only");
                return;
        }
        manager_emit(mgr, MANAGER_EVENT_ENTITY, m, request);
        (void)rpc_server_call_reply(call, &resp.base);
}

static void on_list_modules(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__V1__ListModulesResponse resp = CALLASSISTANT__V1__LIST_MODULES_RESPONSE__INIT;
        Manager *mgr = userdata;
        size_t n = mgr->registry.n_modules;
        InfoBuf *bufs = calloc(n + 1, sizeof(InfoBuf));
        Callassistant__V1__ModuleInfo **infos = calloc(n + 1, sizeof(void *));

        if (!bufs || !infos) {
                free(bufs);
                free(infos);
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                (void)info_fill(&bufs[i], mgr->registry.modules[i]);
                infos[i] = &bufs[i].info;
        }
        resp.n_modules = n;
        resp.modules = infos;
        (void)rpc_server_call_reply(call, &resp.base);
        for (size_t i = 0; i < n; i++)
                info_done(&bufs[i]);
        free(bufs);
        free(infos);
}

static void on_get_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__GetModuleRequest *req = (const Callassistant__V1__GetModuleRequest *)request;
        Manager *mgr = userdata;
        Module *m = registry_find(&mgr->registry, req->name);
        InfoBuf b;

        if (!m) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                return;
        }
        (void)info_fill(&b, m);
        (void)rpc_server_call_reply(call, &b.info.base);
        info_done(&b);
}

static void module_op(RpcServerCall *call, const ProtobufCMessage *request, Manager *mgr,
                      int (*op)(Manager *, const char *)) {
        const Callassistant__V1__ModuleRequest *req = (const Callassistant__V1__ModuleRequest *)request;
        Callassistant__V1__ModuleResponse resp = CALLASSISTANT__V1__MODULE_RESPONSE__INIT;
        Module *m;
        InfoBuf b;
        int r;

        r = op(mgr, req->name);
        if (r == -ENOENT) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                return;
        }
        if (r == -EPERM) {
                m = registry_find(&mgr->registry, req->name);
                char msg[600];
                snprintf(msg, sizeof(msg), "module is disabled: %s", m && m->state_message ? m->state_message : "");
                (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, msg);
                return;
        }
        if (r == -EBUSY) {
                (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, "module is being stopped");
                return;
        }
        if (r < 0) {
                (void)rpc_server_call_fail(call, RPC_UNAVAILABLE, strerror(-r));
                return;
        }
        m = registry_find(&mgr->registry, req->name);
        (void)info_fill(&b, m);
        resp.module = &b.info;
        (void)rpc_server_call_reply(call, &resp.base);
        info_done(&b);
}

static void on_start_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        module_op(call, request, userdata, manager_start_module);
}
static void on_stop_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        module_op(call, request, userdata, manager_stop_module);
}
static void on_restart_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        module_op(call, request, userdata, manager_restart_module);
}

#define MAX_ENTITIES_PER_MODULE 1024

/* ListEntities asks every module concerned, then answers with all the entities. */
typedef struct EntityFanOut {
        RpcServerCall *call;
        unsigned pending;
        bool failed;
        char failure[600];
        Callassistant__V1__ModuleEntity **items;
        size_t n_items;
} EntityFanOut;

static void fan_out_finish(EntityFanOut *f) {
        Callassistant__V1__ListEntitiesOfModulesResponse resp = CALLASSISTANT__V1__LIST_ENTITIES_OF_MODULES_RESPONSE__INIT;

        if (f->failed)
                (void)rpc_server_call_fail(f->call, RPC_UNAVAILABLE, f->failure);
        else {
                resp.n_entities = f->n_items;
                resp.entities = f->items;
                (void)rpc_server_call_reply(f->call, &resp.base);
        }
        for (size_t i = 0; i < f->n_items; i++) {
                free(f->items[i]->module);
                protobuf_c_message_free_unpacked(&f->items[i]->entity->base, NULL);
                free(f->items[i]);
        }
        free(f->items);
        free(f);
}

/* Keep a copy of an entity a module sent (its reply is freed after the callback). */
static Callassistant__V1__Entity *entity_copy(const Callassistant__V1__Entity *e) {
        size_t n = protobuf_c_message_get_packed_size(&e->base);
        uint8_t *buf = malloc(n ? n : 1);
        Callassistant__V1__Entity *copy;

        if (!buf)
                return NULL;
        protobuf_c_message_pack(&e->base, buf);
        copy = callassistant__v1__entity__unpack(NULL, n, buf);
        free(buf);
        return copy;
}

static void on_module_entities(Manager *mgr, Module *m, int status, const char *message,
                               const ProtobufCMessage *response, void *userdata) {
        EntityFanOut *f = userdata;

        if (status != RPC_OK || !response) {
                if (!f->failed)
                        snprintf(f->failure, sizeof(f->failure), "module %s did not answer ListEntities: %s: %s",
                                 m->name, rpc_status_to_string(status), message ? message : "");
                f->failed = true;
        } else {
                const Callassistant__V1__ListEntitiesResponse *resp = (const void *)response;
                size_t n = MIN(resp->n_entities, (size_t)MAX_ENTITIES_PER_MODULE);
                Callassistant__V1__ModuleEntity **l = realloc(f->items, (f->n_items + n + 1) * sizeof(void *));
                if (l)
                        f->items = l;
                for (size_t i = 0; l && i < n; i++) {
                        Callassistant__V1__ModuleEntity *me = calloc(1, sizeof(*me));
                        if (!me)
                                break;
                        callassistant__v1__module_entity__init(me);
                        me->module = strdup(m->name);
                        me->entity = entity_copy(resp->entities[i]);
                        if (!me->module || !me->entity) {
                                free(me->module);
                                if (me->entity)
                                        protobuf_c_message_free_unpacked(&me->entity->base, NULL);
                                free(me);
                                break;
                        }
                        f->items[f->n_items++] = me;
                }
        }
        if (--f->pending == 0)
                fan_out_finish(f);
}

static void on_list_entities(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ListEntitiesOfModulesRequest *req = (const void *)request;
        Manager *mgr = userdata;
        EntityFanOut *f;
        Module *only = NULL;

        if (req->module && *req->module) {
                only = registry_find(&mgr->registry, req->module);
                if (!only) {
                        (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                        return;
                }
                if (!only->registered || !only->client) {
                        (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, "the module is not running");
                        return;
                }
        }
        f = calloc(1, sizeof(*f));
        if (!f) {
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        f->call = call;
        f->pending = 1; /* ours, released below: no answer before every module was asked */
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];
                if (only ? m != only : (m->state != MODULE_READY || !m->client))
                        continue;
                f->pending++;
                if (module_client_list_entities(mgr, m, 5000, on_module_entities, f) < 0)
                        on_module_entities(mgr, m, RPC_INTERNAL, "cannot call the module", NULL, f);
        }
        if (--f->pending == 0)
                fan_out_finish(f);
}

static void on_watch_events(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__WatchEventsRequest *req = (const Callassistant__V1__WatchEventsRequest *)request;
        Manager *mgr = userdata;
        DaemonApi *api = api_of(mgr);
        Watcher *w;

        if (req->module && *req->module && !registry_find(&mgr->registry, req->module)) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                return;
        }
        if (api->n_watchers >= MAX_WATCHERS) {
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "too many event followers");
                return;
        }
        w = &api->watchers[api->n_watchers++];
        *w = (Watcher){ .call = call, .module = req->module && *req->module ? strdup(req->module) : NULL };
        rpc_server_call_set_cancel_handler(call, on_watcher_cancelled, api);
        if (req->initial_state)
                for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                        Module *m = mgr->registry.modules[i];
                        if (!w->module || strcmp(w->module, m->name) == 0)
                                send_module_event(call, m);
                }
}

#define M(svc, name) "/callassistant.v1." svc "/" name
#define D(type) &callassistant__v1__##type##__descriptor

static const RpcMethod module_methods[] = {
        { M("OrchestratorService", "ReportState"), D(report_state_request), on_report_state, false },
        { M("OrchestratorService", "ReportEvent"), D(event), on_report_event, false },
        { M("OrchestratorService", "ListModules"), D(list_modules_request), deny, false },
        { M("OrchestratorService", "GetModule"), D(get_module_request), deny, false },
        { M("OrchestratorService", "ListEntities"), D(list_entities_of_modules_request), deny, false },
        { M("OrchestratorService", "StartModule"), D(module_request), deny, false },
        { M("OrchestratorService", "StopModule"), D(module_request), deny, false },
        { M("OrchestratorService", "RestartModule"), D(module_request), deny, false },
        { M("OrchestratorService", "WatchEvents"), D(watch_events_request), deny, true },
};

static const RpcMethod control_methods[] = {
        { M("OrchestratorService", "ListModules"), D(list_modules_request), on_list_modules, false },
        { M("OrchestratorService", "GetModule"), D(get_module_request), on_get_module, false },
        { M("OrchestratorService", "ListEntities"), D(list_entities_of_modules_request), on_list_entities, false },
        { M("OrchestratorService", "StartModule"), D(module_request), on_start_module, false },
        { M("OrchestratorService", "StopModule"), D(module_request), on_stop_module, false },
        { M("OrchestratorService", "RestartModule"), D(module_request), on_restart_module, false },
        { M("OrchestratorService", "WatchEvents"), D(watch_events_request), on_watch_events, true },
};

int daemon_api_start(Manager *mgr) {
        DaemonApi *api;
        _cleanup_free_ char *addr = NULL, *dir = NULL;
        const char *slash;
        mode_t old;
        int r;

        api = calloc(1, sizeof(*api));
        if (!api)
                return log_oom();
        mgr->rpc = api;
        r = rpc_runtime_new(&api->rt, mgr->event);
        if (r < 0)
                return log_error_errno(r, "Failed to start the gRPC runtime: %m");

        /* The method tables: ours plus the in-process services'. */
        api->module_table = calloc(ELEMENTSOF(module_methods) + config_service_n_methods, sizeof(RpcMethod));
        api->control_table = calloc(ELEMENTSOF(control_methods) + config_service_n_methods, sizeof(RpcMethod));
        if (!api->module_table || !api->control_table)
                return log_oom();
        memcpy(api->module_table, module_methods, sizeof(module_methods));
        memcpy(api->module_table + ELEMENTSOF(module_methods), config_service_denied_methods,
               config_service_n_methods * sizeof(RpcMethod));
        memcpy(api->control_table, control_methods, sizeof(control_methods));
        memcpy(api->control_table + ELEMENTSOF(control_methods), config_service_methods,
               config_service_n_methods * sizeof(RpcMethod));

        r = rpc_server_new(&api->module_server, api->rt, mgr->config.listen, api->module_table,
                           ELEMENTSOF(module_methods) + config_service_n_methods, mgr);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s (module-facing endpoint): %m", mgr->config.listen);

        /* The control socket: root-only (0600), in a directory we create if needed. */
        slash = strrchr(mgr->config.control_socket, '/');
        if (slash && slash != mgr->config.control_socket) {
                dir = strndup(mgr->config.control_socket, (size_t)(slash - mgr->config.control_socket));
                if (!dir || mkdir_p(dir, 0755) < 0)
                        return log_error_errno(EIO, "Cannot create the directory of %s", mgr->config.control_socket);
        }
        (void)unlink(mgr->config.control_socket);
        if (asprintf(&addr, "unix:%s", mgr->config.control_socket) < 0)
                return log_oom();
        old = umask(0077);
        r = rpc_server_new(&api->control_server, api->rt, addr, api->control_table,
                           ELEMENTSOF(control_methods) + config_service_n_methods, mgr);
        umask(old);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s (control socket): %m", mgr->config.control_socket);

        mgr->event_handler = on_manager_event;
        mgr->event_userdata = api;
        return 0;
}

void daemon_api_stop(Manager *mgr) {
        DaemonApi *api = mgr ? api_of(mgr) : NULL;

        if (!api)
                return;
        mgr->event_handler = NULL;
        /* Modules' channels first: they belong to the runtime. */
        for (size_t i = 0; i < mgr->registry.n_modules; i++)
                module_client_disconnect(mgr->registry.modules[i]);
        for (size_t i = 0; i < api->n_watchers; i++)
                free(api->watchers[i].module);
        api->n_watchers = 0;
        rpc_server_free(api->control_server);
        rpc_server_free(api->module_server);
        rpc_runtime_free(api->rt);
        if (mgr->config.control_socket)
                (void)unlink(mgr->config.control_socket);
        free(api->module_table);
        free(api->control_table);
        free(api);
        mgr->rpc = NULL;
}
