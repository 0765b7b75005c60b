/* The orchestrator's entity registry: every entity of every module, kept when its module goes
 * away (marked unavailable) until the module lists its entities again. Pure data: the daemon
 * keeps it current (daemon/manager-entities.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct EntityRecord {
        char *module;        /* the module's name */
        char *id;            /* unique within the module */
        char *type;          /* one of the module's entity types */
        char *name;
        char *config_json;   /* as the module sent it (its own redaction) */
        char *state;         /* free-form, from the module */
        char **attributes;   /* key, value, key, value, ..., NULL */
        bool available;      /* false while its module is not READY */
} EntityRecord;

typedef struct EntityRegistry {
        EntityRecord **items;
        size_t n;
} EntityRegistry;

void entity_record_free(EntityRecord *e);
/* A deep copy; NULL on ENOMEM. */
EntityRecord *entity_record_copy(const EntityRecord *e);

void entity_registry_done(EntityRegistry *r);
EntityRecord *entity_registry_find(const EntityRegistry *r, const char *module, const char *id);
/* Insert a copy of e, or replace the record with its module and id. */
int entity_registry_put(EntityRegistry *r, const EntityRecord *e);
/* -ENOENT if there was none. */
int entity_registry_remove(EntityRegistry *r, const char *module, const char *id);
/* What a module lists now: these n replace what was known of it; the others are removed. */
int entity_registry_sync_module(EntityRegistry *r, const char *module, const EntityRecord *list, size_t n);
/* Mark every entity of a module (un)available. */
void entity_registry_set_available(EntityRegistry *r, const char *module, bool available);
size_t entity_registry_count_module(const EntityRegistry *r, const char *module);
/* The value of an attribute, or NULL. */
const char *entity_record_attribute(const EntityRecord *e, const char *key);
