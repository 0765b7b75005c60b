/* The config service's business logic, independent of in-process or remote use.
 *
 * Secrets: full configurations (with secrets) exist only in memory, in the store files
 * (mode 0600) and in the apply hook's argument. Everything returned, notified or logged is
 * either redacted by schema_redact() or does not contain values at all. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/config/config-service.h"
#include "services/config/schema.h"
#include "services/config/store.h"
#include "shared/log.h"

/* json_decrefp() comes with jansson (2.9+). */

typedef struct ConfigEntry {
        char *module;
        Schema *schema;
        ConfigRecord record; /* record.config NULL: nothing stored */
        char *load_error;
        bool busy; /* an apply is in flight */
} ConfigEntry;

struct ConfigService {
        ConfigStore *store;
        ConfigEntry *entries;
        size_t n_entries;
        ConfigApplyHook apply_hook;
        void *apply_userdata;
        ConfigChangeHook change_hook;
        void *change_userdata;
        unsigned n_pending;
};

struct ConfigApply {
        ConfigService *service;
        char *module;
        json_t *config; /* complete, with secrets and defaults */
        ConfigSetDone done;
        void *userdata;
};

const char *config_status_to_string(ConfigStatus s) {
        static const char *const names[] = {
                [CONFIG_STATUS_OK] = "OK",
                [CONFIG_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
                [CONFIG_STATUS_NOT_FOUND] = "NOT_FOUND",
                [CONFIG_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
                [CONFIG_STATUS_ABORTED] = "ABORTED",
                [CONFIG_STATUS_INTERNAL] = "INTERNAL",
        };
        return (unsigned)s < ELEMENTSOF(names) ? names[s] : "UNKNOWN";
}

void config_info_clear(ConfigInfo *i) {
        free(i->module);
        free(i->config_json);
        free(i->schema_json);
        free(i->load_error);
        *i = (ConfigInfo){};
}

void config_info_array_free(ConfigInfo *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                config_info_clear(&a[i]);
        free(a);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

static ConfigEntry *entry_find(ConfigService *s, const char *module) {
        for (size_t i = 0; i < s->n_entries; i++)
                if (strcmp(s->entries[i].module, module) == 0)
                        return &s->entries[i];
        return NULL;
}

static ConfigEntry *entry_get_or_add(ConfigService *s, const char *module) {
        ConfigEntry *e = entry_find(s, module), *n;
        char *name;

        if (e)
                return e;
        name = strdup(module);
        if (!name)
                return NULL;
        n = realloc(s->entries, (s->n_entries + 1) * sizeof(*n));
        if (!n) {
                free(name);
                return NULL;
        }
        s->entries = n;
        e = &s->entries[s->n_entries++];
        *e = (ConfigEntry){ .module = name };
        return e;
}

static int entry_cmp(const void *a, const void *b) {
        return strcmp(((const ConfigEntry *)a)->module, ((const ConfigEntry *)b)->module);
}

ConfigService *config_service_free(ConfigService *s) {
        if (!s)
                return NULL;
        /* Pending ops point at us; freeing under them would be a use-after-free. */
        if (s->n_pending > 0)
                abort();
        for (size_t i = 0; i < s->n_entries; i++) {
                free(s->entries[i].module);
                schema_free(s->entries[i].schema);
                config_record_clear(&s->entries[i].record);
                free(s->entries[i].load_error);
        }
        free(s->entries);
        config_store_free(s->store);
        free(s);
        return NULL;
}

int config_service_new(const char *state_dir, ConfigService **ret) {
        _cleanup_(config_service_freep) ConfigService *s = NULL;
        _cleanup_strv_free_ char **names = NULL;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = config_store_open(state_dir, &s->store);
        if (r < 0)
                return r;
        r = config_store_list(s->store, &names);
        if (r < 0)
                return r;
        for (char **n = names; *n; n++) {
                ConfigEntry *e = entry_get_or_add(s, *n);
                char *problem = NULL;

                if (!e)
                        return -ENOMEM;
                r = config_store_load(s->store, *n, &e->record, &problem);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        /* One unreadable module must not keep the others from starting. */
                        log_warning_errno(r, "Failed to load stored configuration of module %s, "
                                          "treating it as unconfigured: %m", *n);
                        if (asprintf(&e->load_error, "failed to load: %s", strerror(-r)) < 0)
                                return -ENOMEM;
                } else if (r == CONFIG_STORE_CORRUPT) {
                        /* The module counts as unconfigured; the problem stays visible. */
                        e->load_error = problem;
                        log_warning("Stored configuration of module %s is corrupt (%s), "
                                    "treating it as unconfigured.",
                                    *n, problem ? problem : "?");
                }
        }
        *ret = TAKE_PTR(s);
        return 0;
}

void config_service_set_apply_hook(ConfigService *s, ConfigApplyHook hook, void *userdata) {
        s->apply_hook = hook;
        s->apply_userdata = userdata;
}

void config_service_set_change_hook(ConfigService *s, ConfigChangeHook hook, void *userdata) {
        s->change_hook = hook;
        s->change_userdata = userdata;
}

/* "invalid JSON at line L column C: text", without jansson's quote of the input. */
static char *json_error_message(json_error_t *err) {
        char *m, *near = strstr(err->text, " near '");

        if (near)
                *near = 0;
        if (asprintf(&m, ": invalid JSON at line %d column %d: %s", err->line, err->column,
                     err->text) < 0)
                return NULL;
        for (char *c = m; *c; c++)
                if (*c == ';')
                        *c = ',';
        return m;
}

int config_service_register_schema(ConfigService *s, const char *module, const char *schema_json,
                                   char **ret_error) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_(schema_freep) Schema *schema = NULL;
        _cleanup_(schema_errors_clear) SchemaErrors errors = {};
        ConfigEntry *e;
        json_error_t err;
        int r;

        if (!config_module_name_valid(module))
                return -EINVAL;
        j = json_loads(schema_json, 0, &err);
        if (!j) {
                if (ret_error) {
                        *ret_error = json_error_message(&err);
                        if (!*ret_error)
                                return -ENOMEM;
                }
                return -EINVAL;
        }
        r = schema_compile(j, &schema, &errors);
        if (r == -EINVAL && ret_error) {
                *ret_error = schema_errors_format(&errors);
                if (!*ret_error)
                        return -ENOMEM;
        }
        if (r < 0)
                return r;
        e = entry_get_or_add(s, module);
        if (!e)
                return -ENOMEM;
        schema_free(e->schema);
        e->schema = TAKE_PTR(schema);
        return 0;
}

int config_service_get_stored_for_apply(ConfigService *s, const char *module, char **ret_json) {
        _cleanup_(json_decrefp) json_t *full = NULL;
        ConfigEntry *e = entry_find(s, module);
        char *text;

        if (!e || !e->record.config)
                return 0;
        full = e->schema ? schema_apply_defaults(e->schema, e->record.config)
                         : json_incref(e->record.config);
        if (!full)
                return -ENOMEM;
        text = json_dumps(full, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        *ret_json = text;
        return 1;
}

/* The redacted text of config (which may be NULL: "{}"). Without a schema we cannot know
 * what is secret, so nothing is shown but the keys. */
static char *redacted_text(const Schema *schema, json_t *config) {
        _cleanup_(json_decrefp) json_t *red = NULL;

        if (!config)
                return strdup("{}");
        if (schema)
                red = schema_redact(schema, config);
        else {
                const char *k;
                json_t *v;

                red = json_object();
                if (red)
                        json_object_foreach(config, k, v)
                                if (json_object_set_new(red, k,
                                                        json_string(SCHEMA_SECRET_PLACEHOLDER)) < 0)
                                        return NULL;
        }
        if (!red)
                return NULL;
        return json_dumps(red, JSON_COMPACT | JSON_SORT_KEYS);
}

static int entry_info(const ConfigEntry *e, ConfigInfo *ret) {
        ConfigInfo i = {
                .revision = e->record.revision,
                .updated_at = e->record.updated_at,
        };

        i.module = strdup(e->module);
        i.config_json = redacted_text(e->schema, e->record.config);
        if (e->schema)
                i.schema_json = json_dumps(schema_get_json(e->schema), JSON_COMPACT);
        if (e->load_error)
                i.load_error = strdup(e->load_error);
        if (!i.module || !i.config_json || (e->schema && !i.schema_json) ||
            (e->load_error && !i.load_error)) {
                config_info_clear(&i);
                return -ENOMEM;
        }
        *ret = i;
        return 0;
}

ConfigStatus config_service_get(ConfigService *s, const char *module, ConfigInfo *ret) {
        ConfigEntry *e;

        if (!config_module_name_valid(module))
                return CONFIG_STATUS_INVALID_ARGUMENT;
        e = entry_find(s, module);
        if (!e)
                return CONFIG_STATUS_NOT_FOUND;
        return entry_info(e, ret) < 0 ? CONFIG_STATUS_INTERNAL : CONFIG_STATUS_OK;
}

ConfigStatus config_service_get_schema(ConfigService *s, const char *module, char **ret_json) {
        ConfigEntry *e;
        char *t;

        if (!config_module_name_valid(module))
                return CONFIG_STATUS_INVALID_ARGUMENT;
        e = entry_find(s, module);
        if (!e || !e->schema)
                return CONFIG_STATUS_NOT_FOUND;
        t = json_dumps(schema_get_json(e->schema), JSON_COMPACT);
        if (!t)
                return CONFIG_STATUS_INTERNAL;
        *ret_json = t;
        return CONFIG_STATUS_OK;
}

int config_service_list(ConfigService *s, ConfigInfo **ret, size_t *ret_n) {
        ConfigInfo *a;

        qsort(s->entries, s->n_entries, sizeof(ConfigEntry), entry_cmp);
        a = calloc(s->n_entries + 1, sizeof(ConfigInfo));
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_entries; i++)
                if (entry_info(&s->entries[i], &a[i]) < 0) {
                        config_info_array_free(a, i);
                        return -ENOMEM;
                }
        *ret = a;
        *ret_n = s->n_entries;
        return 0;
}

static void finish(ConfigSetDone done, void *userdata, ConfigStatus status, const char *message) {
        ConfigSetResult r = { .status = status, .message = message };

        done(&r, userdata);
}

static ConfigApply *apply_free(ConfigApply *op) {
        if (!op)
                return NULL;
        free(op->module);
        json_decref(op->config);
        free(op);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(ConfigApply *, apply_free);

int config_service_set(ConfigService *s, const char *module, const char *config_json,
                       bool has_expected, uint64_t expected_revision, ConfigSetDone done,
                       void *userdata) {
        _cleanup_(json_decrefp) json_t *doc = NULL, *merged = NULL, *full = NULL;
        _cleanup_(schema_errors_clear) SchemaErrors errors = {};
        _cleanup_(apply_freep) ConfigApply *op = NULL;
        _cleanup_free_ char *msg = NULL, *text = NULL;
        json_error_t err;
        ConfigEntry *e;
        int r;

        if (!config_module_name_valid(module)) {
                finish(done, userdata, CONFIG_STATUS_INVALID_ARGUMENT, "invalid module name");
                return 0;
        }
        e = entry_find(s, module);
        if (!e || !e->schema) {
                finish(done, userdata, CONFIG_STATUS_NOT_FOUND,
                       "module has not registered a configuration schema");
                return 0;
        }
        if (e->busy) {
                finish(done, userdata, CONFIG_STATUS_ABORTED,
                       "another configuration change of this module is in progress");
                return 0;
        }
        if (has_expected && expected_revision != e->record.revision) {
                if (asprintf(&msg, "expected revision %llu, current revision is %llu",
                             (unsigned long long)expected_revision,
                             (unsigned long long)e->record.revision) < 0)
                        return -ENOMEM;
                finish(done, userdata, CONFIG_STATUS_ABORTED, msg);
                return 0;
        }

        doc = json_loads(config_json ? config_json : "", JSON_REJECT_DUPLICATES, &err);
        if (!doc) {
                msg = json_error_message(&err);
                if (!msg)
                        return -ENOMEM;
                finish(done, userdata, CONFIG_STATUS_INVALID_ARGUMENT, msg);
                return 0;
        }
        if (!json_is_object(doc)) {
                finish(done, userdata, CONFIG_STATUS_INVALID_ARGUMENT,
                       ": configuration must be a JSON object");
                return 0;
        }

        merged = schema_merge_secrets(e->schema, e->record.config, doc);
        if (!merged)
                return -ENOMEM;
        full = schema_apply_defaults(e->schema, merged);
        if (!full)
                return -ENOMEM;
        r = schema_validate(e->schema, full, &errors);
        if (r < 0)
                return r;
        if (r > 0) {
                msg = schema_errors_format(&errors);
                if (!msg)
                        return -ENOMEM;
                log_debug("Configuration for module %s rejected: %zu schema violation(s).",
                          module, errors.n);
                finish(done, userdata, CONFIG_STATUS_INVALID_ARGUMENT, msg);
                return 0;
        }

        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->module = strdup(module);
        if (!op->module)
                return -ENOMEM;
        op->service = s;
        op->config = TAKE_PTR(full);
        op->done = done;
        op->userdata = userdata;

        if (!s->apply_hook) {
                /* Nobody to deliver to (tests, or a module not managed): accept. */
                config_apply_complete(TAKE_PTR(op), CONFIG_STATUS_OK, NULL);
                return 0;
        }
        text = json_dumps(op->config, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        e->busy = true;
        s->n_pending++;
        log_debug("Applying configuration revision %llu candidate to module %s.",
                  (unsigned long long)e->record.revision + 1, module);
        s->apply_hook(TAKE_PTR(op), module, text, s->apply_userdata);
        return 0;
}

void config_apply_complete(ConfigApply *op, ConfigStatus status, const char *message) {
        _cleanup_(apply_freep) ConfigApply *o = op;
        _cleanup_free_ char *red = NULL, *msg = NULL;
        ConfigService *s = o->service;
        ConfigEntry *e = entry_find(s, o->module);
        ConfigRecord rec;
        int r;

        /* An op that went through the hook counted as pending. */
        if (e && e->busy) {
                e->busy = false;
                s->n_pending--;
        }
        if (!e) {
                finish(o->done, o->userdata, CONFIG_STATUS_INTERNAL, "module vanished");
                return;
        }
        if (status != CONFIG_STATUS_OK) {
                log_info("Module %s refused its new configuration, keeping revision %llu.",
                         o->module, (unsigned long long)e->record.revision);
                finish(o->done, o->userdata, status,
                       message ? message : "the module refused the configuration");
                return;
        }

        /* The module accepted it: only now make it durable. */
        rec = (ConfigRecord){
                .revision = e->record.revision + 1,
                .updated_at = now_usec(),
                .config = o->config,
        };
        r = config_store_save(s->store, o->module, &rec);
        if (r < 0) {
                log_error_errno(r, "Failed to store configuration of module %s: %m", o->module);
                if (asprintf(&msg, "failed to store the configuration: %s", strerror(-r)) < 0)
                        msg = NULL;
                finish(o->done, o->userdata, CONFIG_STATUS_INTERNAL,
                       msg ? msg : "failed to store the configuration");
                return;
        }
        red = redacted_text(e->schema, o->config);

        json_decref(e->record.config);
        e->record = rec;
        e->record.config = TAKE_PTR(o->config);
        e->load_error = mfree_str(e->load_error);
        log_info("Configuration of module %s is now at revision %llu.", o->module,
                 (unsigned long long)rec.revision);

        if (s->change_hook && red)
                s->change_hook(o->module, rec.revision, red, s->change_userdata);
        ConfigSetResult res = {
                .status = red ? CONFIG_STATUS_OK : CONFIG_STATUS_INTERNAL,
                .message = red ? NULL : "out of memory",
                .revision = rec.revision,
                .config_json = red,
        };
        o->done(&res, o->userdata);
}
