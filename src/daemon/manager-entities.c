/* The entity registry kept current (see manager-entities.h). Everything a module sends is
 * bounded: at most MAX_ENTITIES_PER_MODULE entities, MAX_ATTRIBUTES attributes, strings cut. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "callassistant/v1/module.pb-c.h"
#include "daemon/flows.h"
#include "daemon/manager-entities.h"
#include "daemon/module-client.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"

#define MAX_ENTITIES_PER_MODULE 1024
#define MAX_ATTRIBUTES 64
#define LIST_ENTITIES_TIMEOUT_MS 5000u

void entity_record_clear(EntityRecord *r) {
        free(r->module);
        free(r->id);
        free(r->type);
        free(r->name);
        free(r->config_json);
        free(r->state);
        strv_free(r->attributes);
        *r = (EntityRecord){};
}

int entity_record_from_proto(EntityRecord *r, const char *module, const Callassistant__V1__Entity *e, bool available) {
        size_t n = MIN(e->n_attributes, (size_t)MAX_ATTRIBUTES);

        *r = (EntityRecord){ .available = available };
        r->module = strdup(module);
        r->id = strndup(e->id ? e->id : "", 256);
        r->type = strndup(e->type ? e->type : "", 64);
        r->name = strndup(e->name ? e->name : "", 256);
        r->config_json = strndup(e->config_json ? e->config_json : "", 64 * 1024);
        r->state = strndup(e->state ? e->state : "", 64);
        r->attributes = new0(char *, 2 * n + 1);
        if (!r->module || !r->id || !r->type || !r->name || !r->config_json || !r->state || !r->attributes)
                goto oom;
        for (size_t i = 0; i < n; i++) {
                r->attributes[2 * i] = strndup(e->attributes[i]->key ? e->attributes[i]->key : "", 64);
                r->attributes[2 * i + 1] = strndup(e->attributes[i]->value ? e->attributes[i]->value : "", 4096);
                if (!r->attributes[2 * i] || !r->attributes[2 * i + 1])
                        goto oom;
        }
        return 0;
oom:
        entity_record_clear(r);
        return -ENOMEM;
}

static void on_listed(Module *m, const ModuleCallResult *res, void *userdata) {
        Manager *mgr = m->manager;
        const Callassistant__V1__ListEntitiesResponse *resp = (const void *)res->response;
        _cleanup_free_ EntityRecord *list = NULL;
        size_t n = 0;
        int r;

        if (m->state != MODULE_READY)
                return; /* gone again; the next READY asks again */
        if (res->status != RPC_OK) {
                /* Without its list, keep what we knew, available: its events still come. */
                log_warning("Module %s: ListEntities failed (%s: %s), keeping its last known entities.", m->name,
                            rpc_status_to_string(res->status), res->message);
                entity_registry_set_available(&mgr->entities, m->name, true);
                m->entities_synced = true;
                flows_module_ready(m);
                return;
        }
        n = MIN(resp->n_entities, (size_t)MAX_ENTITIES_PER_MODULE);
        if (resp->n_entities > n)
                log_warning("Module %s listed %zu entities; only the first %zu are kept.", m->name,
                            resp->n_entities, n);
        list = new0(EntityRecord, n + 1);
        if (!list) {
                (void)log_oom();
                return;
        }
        r = 0;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = entity_record_from_proto(&list[i], m->name, resp->entities[i], true);
        if (r >= 0)
                r = entity_registry_sync_module(&mgr->entities, m->name, list, n);
        for (size_t i = 0; i < n; i++)
                entity_record_clear(&list[i]);
        if (r < 0) {
                (void)log_oom();
                return;
        }
        m->entities_synced = true;
        log_debug("Module %s: %zu entities.", m->name, n);
        flows_module_ready(m);
}

void manager_entities_module_state_changed(Module *m, ModuleState before) {
        Manager *mgr = m->manager;
        int r;

        assert(m);
        if (before != MODULE_READY && m->state == MODULE_READY) {
                m->entities_synced = false;
                r = module_client_list_entities(m, LIST_ENTITIES_TIMEOUT_MS, on_listed, NULL);
                if (r < 0) {
                        ModuleCallResult res = { .status = RPC_UNAVAILABLE, .message = strerror(-r) };
                        on_listed(m, &res, NULL);
                }
        } else if (m->state != MODULE_READY) {
                /* Left READY, or went from bad to worse (STARTING -> FAILED: gone for good). */
                m->entities_synced = false;
                if (before == MODULE_READY)
                        entity_registry_set_available(&mgr->entities, m->name, false);
                flows_module_down(m);
        }
}

void manager_entities_reported(Module *m, const Callassistant__V1__Event *ev) {
        Manager *mgr = m->manager;
        EntityRecord rec;
        int r;

        assert(m);
        assert(ev && ev->entity);
        if (ev->kind == CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_REMOVED) {
                (void)entity_registry_remove(&mgr->entities, m->name, ev->entity->id);
                flows_entity_changed(mgr, m->name, ev->entity->id);
                return;
        }
        /* A change to an entity we do not know is stale: the module reported it before the
         * entity was destroyed or removed, and it came in after (events and answers travel on
         * different connections). Taking it would bring a destroyed converter back. Only
         * KIND_ENTITY_ADDED, CreateEntity and ListEntities add entities. */
        if (ev->kind == CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_CHANGED &&
            !entity_registry_find(&mgr->entities, m->name, ev->entity->id)) {
                log_debug("Module %s: change of unknown entity %s ignored.", m->name, ev->entity->id);
                return;
        }
        if (!entity_registry_find(&mgr->entities, m->name, ev->entity->id) &&
            entity_registry_count_module(&mgr->entities, m->name) >= MAX_ENTITIES_PER_MODULE) {
                log_warning("Module %s: more than %d entities, ignoring entity %s.", m->name,
                            MAX_ENTITIES_PER_MODULE, ev->entity->id);
                return;
        }
        r = entity_record_from_proto(&rec, m->name, ev->entity, m->state == MODULE_READY);
        if (r >= 0) {
                r = entity_registry_put(&mgr->entities, &rec);
                entity_record_clear(&rec);
        }
        if (r < 0) {
                (void)log_oom();
                return;
        }
        flows_entity_changed(mgr, m->name, ev->entity->id);
}
