/* The orchestrator's entity registry (see entity-registry.h). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "registry/entity-registry.h"
#include "shared/macro.h"

void entity_record_free(EntityRecord *e) {
        if (!e)
                return;
        free(e->module);
        free(e->id);
        free(e->type);
        free(e->name);
        free(e->config_json);
        free(e->state);
        strv_free(e->attributes);
        free(e);
}

static char *strdup_or_empty(const char *s) {
        return strdup(s ? s : "");
}

EntityRecord *entity_record_copy(const EntityRecord *e) {
        EntityRecord *c;
        size_t n = strv_length(e->attributes);

        assert(e);
        c = new0(EntityRecord, 1);
        if (!c)
                return NULL;
        c->module = strdup_or_empty(e->module);
        c->id = strdup_or_empty(e->id);
        c->type = strdup_or_empty(e->type);
        c->name = strdup_or_empty(e->name);
        c->config_json = strdup_or_empty(e->config_json);
        c->state = strdup_or_empty(e->state);
        c->attributes = new0(char *, n + 1);
        c->available = e->available;
        if (!c->module || !c->id || !c->type || !c->name || !c->config_json || !c->state || !c->attributes)
                goto oom;
        for (size_t i = 0; i < n; i++)
                if (!(c->attributes[i] = strdup(e->attributes[i])))
                        goto oom;
        return c;
oom:
        entity_record_free(c);
        return NULL;
}

void entity_registry_done(EntityRegistry *r) {
        for (size_t i = 0; i < r->n; i++)
                entity_record_free(r->items[i]);
        free(r->items);
        *r = (EntityRegistry){};
}

static ssize_t find_index(const EntityRegistry *r, const char *module, const char *id) {
        for (size_t i = 0; i < r->n; i++)
                if (strcmp(r->items[i]->module, module) == 0 && strcmp(r->items[i]->id, id) == 0)
                        return (ssize_t)i;
        return -1;
}

EntityRecord *entity_registry_find(const EntityRegistry *r, const char *module, const char *id) {
        ssize_t i;

        assert(r);
        if (!module || !id)
                return NULL;
        i = find_index(r, module, id);
        return i < 0 ? NULL : r->items[i];
}

int entity_registry_put(EntityRegistry *r, const EntityRecord *e) {
        EntityRecord *c, **l;
        ssize_t i;

        assert(r);
        assert(e && e->module && e->id);
        c = entity_record_copy(e);
        if (!c)
                return -ENOMEM;
        i = find_index(r, e->module, e->id);
        if (i >= 0) {
                entity_record_free(r->items[i]);
                r->items[i] = c;
                return 0;
        }
        l = realloc(r->items, (r->n + 1) * sizeof(*l));
        if (!l) {
                entity_record_free(c);
                return -ENOMEM;
        }
        r->items = l;
        r->items[r->n++] = c;
        return 0;
}

static void remove_at(EntityRegistry *r, size_t i) {
        entity_record_free(r->items[i]);
        memmove(r->items + i, r->items + i + 1, (r->n - i - 1) * sizeof(*r->items));
        r->n--;
}

int entity_registry_remove(EntityRegistry *r, const char *module, const char *id) {
        ssize_t i;

        assert(r);
        i = module && id ? find_index(r, module, id) : -1;
        if (i < 0)
                return -ENOENT;
        remove_at(r, (size_t)i);
        return 0;
}

int entity_registry_sync_module(EntityRegistry *r, const char *module, const EntityRecord *list, size_t n) {
        int r_put;

        assert(r);
        assert(module);
        /* Forget what the module does not list any more (keeping order for the rest). */
        for (size_t i = r->n; i > 0; i--) {
                EntityRecord *e = r->items[i - 1];
                bool listed = false;

                if (strcmp(e->module, module) != 0)
                        continue;
                for (size_t k = 0; k < n && !listed; k++)
                        listed = strcmp(list[k].id, e->id) == 0;
                if (!listed)
                        remove_at(r, i - 1);
        }
        for (size_t k = 0; k < n; k++) {
                r_put = entity_registry_put(r, &list[k]);
                if (r_put < 0)
                        return r_put;
        }
        return 0;
}

void entity_registry_set_available(EntityRegistry *r, const char *module, bool available) {
        assert(r);
        for (size_t i = 0; i < r->n; i++)
                if (strcmp(r->items[i]->module, module) == 0)
                        r->items[i]->available = available;
}

size_t entity_registry_count_module(const EntityRegistry *r, const char *module) {
        size_t n = 0;

        for (size_t i = 0; i < r->n; i++)
                n += strcmp(r->items[i]->module, module) == 0;
        return n;
}

const char *entity_record_attribute(const EntityRecord *e, const char *key) {
        for (char **a = e->attributes; a && a[0] && a[1]; a += 2)
                if (strcmp(a[0], key) == 0)
                        return a[1];
        return NULL;
}
