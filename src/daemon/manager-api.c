/* The Manager's face on the orchestrator's API (control socket): ListModules, ListEntities,
 * WatchEvents, and the events its followers get (manager_emit()). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/manager-api.h"
#include "daemon/module-api.h"
#include "daemon/module-client.h"
#include "shared/log.h"
#include "shared/macro.h"

#define MAX_ENTITIES_PER_MODULE 1024
#define LIST_ENTITIES_TIMEOUT_MS 5000u

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- events ------------------------------------------------------------------------- */

static void send_module_changed(Api *api, Module *m, RpcServerCall *only) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;
        ModuleInfoBuf b;

        if (module_info_fill(&b, m) >= 0) {
                ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_MODULE_CHANGED;
                ev.module = m->name;
                ev.timestamp_usec = realtime_usec();
                ev.module_info = &b.info;
                if (only)
                        (void)rpc_server_call_write(only, &ev.base);
                else
                        api_broadcast(api, m->name, &ev);
        }
        module_info_done(&b);
}

void manager_emit(Manager *mgr, ManagerEventKind kind, Module *m, const void *payload) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;

        assert(mgr);
        if (!mgr->api || !m)
                return;
        switch (kind) {
        case MANAGER_EVENT_MODULE_STATE:
                send_module_changed(mgr->api, m, NULL);
                return;
        case MANAGER_EVENT_ENTITY:
                /* What a module reported, passed on with its module set from its token, never
                 * from what the module claims. */
                ev = *(const Callassistant__V1__Event *)payload;
                ev.module_info = NULL;
                ev.config_json = (char *)"";
                ev.config_revision = 0;
                break;
        case MANAGER_EVENT_CONFIG: {
                const ManagerConfigChange *change = payload;

                ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_CONFIG_CHANGED;
                ev.config_json = (char *)change->redacted_json; /* never a secret in clear */
                ev.config_revision = change->revision;
                break;
        }
        }
        ev.module = m->name;
        ev.timestamp_usec = realtime_usec();
        api_broadcast(mgr->api, m->name, &ev);
}

static void on_watch_events(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__WatchEventsRequest *req = (const void *)request;
        const char *only = req->module && *req->module ? req->module : NULL;
        Manager *mgr = userdata;

        if (only && !registry_find(&mgr->registry, only)) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                return;
        }
        if (api_add_follower(mgr->api, call, only) < 0) {
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "too many event followers");
                return;
        }
        if (req->initial_state)
                for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                        Module *m = mgr->registry.modules[i];

                        if (!only || strcmp(only, m->name) == 0)
                                send_module_changed(mgr->api, m, call);
                }
}

/* ---- ListModules ------------------------------------------------------------------- */

static void on_list_modules(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__V1__ListModulesResponse resp = CALLASSISTANT__V1__LIST_MODULES_RESPONSE__INIT;
        Manager *mgr = userdata;
        size_t n = mgr->registry.n_modules;
        _cleanup_free_ ModuleInfoBuf *bufs = new0(ModuleInfoBuf, n + 1);
        _cleanup_free_ Callassistant__V1__ModuleInfo **infos = new0(Callassistant__V1__ModuleInfo *, n + 1);
        bool oom = !bufs || !infos;

        for (size_t i = 0; !oom && i < n; i++) {
                oom = module_info_fill(&bufs[i], mgr->registry.modules[i]) < 0;
                infos[i] = &bufs[i].info;
        }
        if (oom)
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        else {
                resp.n_modules = n;
                resp.modules = infos;
                (void)rpc_server_call_reply(call, &resp.base);
        }
        for (size_t i = 0; bufs && i < n; i++)
                module_info_done(&bufs[i]);
}

/* ---- ListEntities: asks every module concerned, then answers with all the entities ---- */

typedef struct EntityFanOut {
        RpcServerCall *call;
        unsigned pending;
        bool failed;
        char failure[600];
        Callassistant__V1__ModuleEntity **items;
        size_t n_items;
} EntityFanOut;

static void fan_out_finish(EntityFanOut *f) {
        Callassistant__V1__ListEntitiesOfModulesResponse resp =
                CALLASSISTANT__V1__LIST_ENTITIES_OF_MODULES_RESPONSE__INIT;

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
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);

        if (!buf)
                return NULL;
        protobuf_c_message_pack(&e->base, buf);
        return callassistant__v1__entity__unpack(NULL, n, buf);
}

static void on_module_entities(Module *m, const ModuleCallResult *res, void *userdata) {
        EntityFanOut *f = userdata;

        if (res->status != RPC_OK || !res->response) {
                if (!f->failed)
                        snprintf(f->failure, sizeof(f->failure), "module %s did not answer ListEntities: %s: %s",
                                 m->name, rpc_status_to_string(res->status), res->message);
                f->failed = true;
        } else {
                const Callassistant__V1__ListEntitiesResponse *resp = (const void *)res->response;
                size_t n = MIN(resp->n_entities, (size_t)MAX_ENTITIES_PER_MODULE);
                Callassistant__V1__ModuleEntity **l = realloc(f->items, (f->n_items + n + 1) * sizeof(void *));

                if (l)
                        f->items = l;
                for (size_t i = 0; l && i < n; i++) {
                        Callassistant__V1__ModuleEntity *me = new0(Callassistant__V1__ModuleEntity, 1);

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
        f = new0(EntityFanOut, 1);
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
                if (module_client_list_entities(m, LIST_ENTITIES_TIMEOUT_MS, on_module_entities, f) < 0) {
                        ModuleCallResult res = { .status = RPC_INTERNAL, .message = "cannot call the module" };
                        on_module_entities(m, &res, f);
                }
        }
        if (--f->pending == 0)
                fan_out_finish(f);
}

#define M(name) "/callassistant.v1.OrchestratorService/" name
#define D(type) &callassistant__v1__##type##__descriptor

const ApiMethod manager_api_methods[] = {
        { { M("ListModules"), D(list_modules_request), on_list_modules, false, NULL }, false },
        { { M("ListEntities"), D(list_entities_of_modules_request), on_list_entities, false, NULL }, false },
        { { M("WatchEvents"), D(watch_events_request), on_watch_events, true, NULL }, false },
};
const size_t manager_api_n_methods = ELEMENTSOF(manager_api_methods);
