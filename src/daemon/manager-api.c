/* The Manager's face on the orchestrator's API (control socket): ListModules, ListEntities,
 * WatchEvents, and the events its followers get (manager_emit()). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/manager-api.h"
#include "daemon/module-api.h"
#include "shared/log.h"
#include "shared/macro.h"

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
                ev.flow = NULL;
                ev.flow_id = (char *)"";
                ev.link = NULL;
                ev.reason = (char *)"";
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
        if (((const Callassistant__V1__ListModulesRequest *)request)->with_resources)
                for (size_t i = 0; i < n; i++)
                        module_refresh_resources(mgr->registry.modules[i]);
}

/* ---- ListEntities: from the entity registry ------------------------------------------ */

static bool strv_has(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (strcmp(*l, s) == 0)
                        return true;
        return false;
}

static int cmp_entities(const void *a, const void *b) {
        const EntityRecord *x = *(EntityRecord *const *)a, *y = *(EntityRecord *const *)b;
        int c = strcmp(x->module, y->module);

        return c ? c : strcmp(x->id, y->id);
}

typedef struct EntityProto {
        Callassistant__V1__ModuleEntity me;
        Callassistant__V1__Entity entity;
        Callassistant__V1__EntityType type;
        Callassistant__V1__Entity__AttributesEntry *attrs;
        Callassistant__V1__Entity__AttributesEntry **attr_ptrs;
} EntityProto;

static int entity_proto_fill(EntityProto *p, const EntityRecord *e, const EntityType *t) {
        size_t n = strv_length(e->attributes) / 2;

        callassistant__v1__module_entity__init(&p->me);
        callassistant__v1__entity__init(&p->entity);
        p->me.module = e->module;
        p->me.available = e->available;
        p->me.entity = &p->entity;
        p->entity.id = e->id;
        p->entity.type = e->type;
        p->entity.name = e->name;
        p->entity.config_json = e->config_json;
        p->entity.state = e->state;
        if (t) {
                callassistant__v1__entity_type__init(&p->type);
                p->type.name = t->name;
                p->type.description = t->description;
                p->type.n_capabilities = strv_length(t->capabilities);
                p->type.capabilities = t->capabilities;
                p->type.n_media_in = strv_length(t->media_in);
                p->type.media_in = t->media_in;
                p->type.n_media_out = strv_length(t->media_out);
                p->type.media_out = t->media_out;
                p->me.type = &p->type;
        }
        if (n == 0)
                return 0;
        p->attrs = new0(Callassistant__V1__Entity__AttributesEntry, n);
        p->attr_ptrs = new0(Callassistant__V1__Entity__AttributesEntry *, n);
        if (!p->attrs || !p->attr_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                callassistant__v1__entity__attributes_entry__init(&p->attrs[i]);
                p->attrs[i].key = e->attributes[2 * i];
                p->attrs[i].value = e->attributes[2 * i + 1];
                p->attr_ptrs[i] = &p->attrs[i];
        }
        p->entity.n_attributes = n;
        p->entity.attributes = p->attr_ptrs;
        return 0;
}

static void on_list_entities(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ListEntitiesOfModulesRequest *req = (const void *)request;
        Callassistant__V1__ListEntitiesOfModulesResponse resp =
                CALLASSISTANT__V1__LIST_ENTITIES_OF_MODULES_RESPONSE__INIT;
        Manager *mgr = userdata;
        const char *only = req->module && *req->module ? req->module : NULL;
        size_t n = 0, total = mgr->entities.n;
        _cleanup_free_ EntityRecord **matches = new0(EntityRecord *, total + 1);
        _cleanup_free_ EntityProto *protos = NULL;
        _cleanup_free_ Callassistant__V1__ModuleEntity **ptrs = NULL;
        bool oom = !matches;

        if (only && !registry_find(&mgr->registry, only)) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                return;
        }
        for (size_t i = 0; !oom && i < total; i++) {
                EntityRecord *e = mgr->entities.items[i];
                Module *m = registry_find(&mgr->registry, e->module);
                const EntityType *t = m ? module_find_entity_type(m, e->type) : NULL;

                if (only && strcmp(only, e->module) != 0)
                        continue;
                if (req->type && *req->type && strcmp(req->type, e->type) != 0)
                        continue;
                if (req->capability && *req->capability && !(t && strv_has(t->capabilities, req->capability)))
                        continue;
                if (req->media && *req->media &&
                    !(t && (strv_has(t->media_in, req->media) || strv_has(t->media_out, req->media))))
                        continue;
                matches[n++] = e;
        }
        if (n > 1)
                qsort(matches, n, sizeof(*matches), cmp_entities);
        protos = new0(EntityProto, n + 1);
        ptrs = new0(Callassistant__V1__ModuleEntity *, n + 1);
        oom = oom || !protos || !ptrs;
        for (size_t i = 0; !oom && i < n; i++) {
                Module *m = registry_find(&mgr->registry, matches[i]->module);

                oom = entity_proto_fill(&protos[i], matches[i],
                                        m ? module_find_entity_type(m, matches[i]->type) : NULL) < 0;
                ptrs[i] = &protos[i].me;
        }
        if (oom)
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        else {
                resp.n_entities = n;
                resp.entities = ptrs;
                (void)rpc_server_call_reply(call, &resp.base);
        }
        for (size_t i = 0; protos && i < n; i++) {
                free(protos[i].attrs);
                free(protos[i].attr_ptrs);
        }
}

#define M(name) "/callassistant.v1.OrchestratorService/" name
#define D(type) &callassistant__v1__##type##__descriptor

const ApiMethod manager_api_methods[] = {
        { { M("ListModules"), D(list_modules_request), on_list_modules, false, NULL }, false },
        { { M("ListEntities"), D(list_entities_of_modules_request), on_list_entities, false, NULL }, false },
        { { M("WatchEvents"), D(watch_events_request), on_watch_events, true, NULL }, false },
};
const size_t manager_api_n_methods = ELEMENTSOF(manager_api_methods);
