/* Module objects and the registry that holds them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "registry/module.h"
#include "shared/macro.h"

static const char *const state_names[_MODULE_STATE_MAX] = {
        [MODULE_PENDING] = "PENDING",
        [MODULE_STARTING] = "STARTING",
        [MODULE_WAITING_FOR_CONFIG] = "WAITING_FOR_CONFIG",
        [MODULE_READY] = "READY",
        [MODULE_ERROR] = "ERROR",
        [MODULE_STOPPING] = "STOPPING",
        [MODULE_STOPPED] = "STOPPED",
        [MODULE_FAILED] = "FAILED",
        [MODULE_DISABLED] = "DISABLED",
};

const char *module_state_to_string(ModuleState s) {
        return s >= 0 && s < _MODULE_STATE_MAX ? state_names[s] : "UNKNOWN";
}

const char *health_state_to_string(HealthState s) {
        switch (s) {
        case HEALTH_SERVING:
                return "SERVING";
        case HEALTH_NOT_SERVING:
                return "NOT_SERVING";
        default:
                return "UNKNOWN";
        }
}

Module *module_new(const char *name, const char *dir, const char *abs_dir) {
        _cleanup_(module_freep) Module *m = calloc(1, sizeof(Module));

        if (!m)
                return NULL;
        m->name = strdup(name);
        m->dir = strdup(dir);
        m->abs_dir = strdup(abs_dir);
        if (!m->name || !m->dir || !m->abs_dir)
                return NULL;
        m->state = MODULE_PENDING;
        m->unit_status.uid = UNIT_UID_INVALID; /* not root: nobody known yet */
        return TAKE_PTR(m);
}

void module_clear_registration(Module *m) {
        for (size_t i = 0; i < m->n_entity_types; i++) {
                free(m->entity_types[i].name);
                free(m->entity_types[i].description);
                strv_free(m->entity_types[i].capabilities);
                strv_free(m->entity_types[i].media_in);
                strv_free(m->entity_types[i].media_out);
        }
        free(m->entity_types);
        m->entity_types = NULL;
        m->n_entity_types = 0;
        free(m->reg_name);
        free(m->reg_version);
        free(m->reg_description);
        free(m->config_schema);
        m->reg_name = m->reg_version = m->reg_description = m->config_schema = NULL;
        m->config_required = false;
        m->schema_refused = false;
        m->registered = false;
}

Module *module_free(Module *m) {
        if (!m)
                return NULL;
        module_clear_registration(m);
        unit_watch_free(m->watch);
        free(m->name);
        free(m->dir);
        free(m->abs_dir);
        free(m->version);
        free(m->description);
        free(m->command);
        free(m->dev_command);
        strv_free(m->dependencies);
        free(m->disabled_reason);
        free(m->unit);
        if (m->token) {
                /* A secret: do not leave it in freed memory. */
                explicit_bzero(m->token, strlen(m->token));
                free(m->token);
        }
        free(m->token_path);
        free(m->user_name);
        free(m->state_message);
        free(m);
        return NULL;
}

int module_set_state(Module *m, ModuleState state, const char *message) {
        char *msg = NULL;

        if (message) {
                msg = strdup(message);
                if (!msg)
                        return -ENOMEM;
        }
        free(m->state_message);
        m->state_message = msg;
        m->state = state;
        return 0;
}

int module_set_dependencies(Module *m, char *const *deps) {
        size_t n = 0;
        char **l;

        while (deps && deps[n])
                n++;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                l[i] = strdup(deps[i]);
                if (!l[i]) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        strv_free(m->dependencies);
        m->dependencies = l;
        return 0;
}

const EntityType *module_find_entity_type(const Module *m, const char *type) {
        for (size_t i = 0; type && i < m->n_entity_types; i++)
                if (strcmp(m->entity_types[i].name, type) == 0)
                        return &m->entity_types[i];
        return NULL;
}

void registry_done(Registry *r) {
        for (size_t i = 0; i < r->n_modules; i++)
                module_free(r->modules[i]);
        free(r->modules);
        *r = (Registry){};
}

int registry_add(Registry *r, Module *m) {
        Module **l = realloc(r->modules, (r->n_modules + 1) * sizeof(Module *));

        if (!l)
                return -ENOMEM;
        r->modules = l;
        r->modules[r->n_modules++] = m;
        return 0;
}

Module *registry_find(const Registry *r, const char *name) {
        for (size_t i = 0; i < r->n_modules; i++)
                if (strcmp(r->modules[i]->name, name) == 0)
                        return r->modules[i];
        return NULL;
}

Module *registry_find_by_unit(const Registry *r, const char *unit) {
        for (size_t i = 0; i < r->n_modules; i++)
                if (r->modules[i]->unit && strcmp(r->modules[i]->unit, unit) == 0)
                        return r->modules[i];
        return NULL;
}

/* Compare without an early exit, so that timing does not tell how much of a token matched. */
static bool token_equal(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        unsigned char diff = la != lb;

        for (size_t i = 0; i < la; i++)
                diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (lb ? lb : 1)];
        return diff == 0;
}

Module *registry_find_by_token(const Registry *r, const char *token) {
        Module *found = NULL;

        if (!token || !*token)
                return NULL;
        for (size_t i = 0; i < r->n_modules; i++)
                if (r->modules[i]->token && token_equal(token, r->modules[i]->token))
                        found = r->modules[i];
        return found;
}
