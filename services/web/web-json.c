/* The dashboard's JSON renderings. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"
#include "services/web/web-json.h"
#include "shared/macro.h"

const char *web_module_status_name(int status) {
        static const char *const names[] = { "UNKNOWN",  "PENDING",  "STARTING", "WAITING_FOR_CONFIG", "READY",
                                             "ERROR",    "STOPPING", "STOPPED",  "FAILED",             "DISABLED" };
        return status >= 0 && (size_t)status < ELEMENTSOF(names) ? names[status] : "UNKNOWN";
}

const char *web_health_name(int health) {
        return health == CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_SERVING       ? "serving"
               : health == CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_NOT_SERVING ? "not-serving"
                                                                                       : "unknown";
}

static json_t *strv_json(char **v, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(v[i] ? v[i] : ""));
        return a;
}

static const char *s(const char *x) {
        return x ? x : "";
}

json_t *web_entity_type_json(const Callassistant__V1__EntityType *t) {
        return json_pack("{s:s, s:s, s:o, s:o, s:o, s:b}", "name", s(t->name), "description", s(t->description),
                         "capabilities", strv_json(t->capabilities, t->n_capabilities), "media_in",
                         strv_json(t->media_in, t->n_media_in), "media_out", strv_json(t->media_out, t->n_media_out),
                         "has_config_schema", t->config_schema && *t->config_schema);
}

json_t *web_module_json(const Callassistant__V1__ModuleInfo *m, double cpu_percent) {
        json_t *types = json_array(), *j;

        for (size_t i = 0; types && i < m->n_entity_types; i++)
                json_array_append_new(types, web_entity_type_json(m->entity_types[i]));
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:i, s:I, s:b, s:o, s:o}",
                      "name", s(m->name), "dir", s(m->dir), "unit", s(m->unit), "version", s(m->version),
                      "description", s(m->description), "state", web_module_status_name(m->status), "state_message",
                      s(m->status_message), "active_state", s(m->active_state), "sub_state", s(m->sub_state),
                      "port", (int)m->port, "restarts", (int)m->n_restarts, "main_pid", (int)m->main_pid, "health",
                      web_health_name(m->health), "health_failures", (int)m->health_failures, "registered_at_usec",
                      (json_int_t)m->registered_at_usec, "config_required", m->config_required, "dependencies",
                      strv_json(m->dependencies, m->n_dependencies), "entity_types", types);
        if (!j)
                return NULL;
        if (m->has_resources) {
                json_object_set_new(j, "cpu_usage_nsec", json_integer((json_int_t)m->cpu_usage_nsec));
                json_object_set_new(j, "memory_bytes", json_integer((json_int_t)m->memory_current_bytes));
                json_object_set_new(j, "cpu_percent", cpu_percent >= 0 ? json_real(cpu_percent) : json_null());
        } else {
                json_object_set_new(j, "cpu_usage_nsec", json_null());
                json_object_set_new(j, "memory_bytes", json_null());
                json_object_set_new(j, "cpu_percent", json_null());
        }
        return j;
}

json_t *web_entity_json(const char *module, const Callassistant__V1__Entity *e, int available) {
        json_t *attrs = json_object(), *j;

        for (size_t i = 0; attrs && i < e->n_attributes; i++)
                json_object_set_new(attrs, s(e->attributes[i]->key), json_string(s(e->attributes[i]->value)));
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "module", s(module), "id", s(e->id), "type", s(e->type),
                      "name", s(e->name), "state", s(e->state), "attributes", attrs);
        if (j && available >= 0)
                json_object_set_new(j, "available", json_boolean(available));
        return j;
}

json_t *web_field_errors(const char *message) {
        json_t *a = json_array();
        const char *p = message ? message : "";

        while (a && *p) {
                const char *end = strstr(p, "; "), *sep;
                size_t n = end ? (size_t)(end - p) : strlen(p);
                _cleanup_free_ char *item = strndup(p, n);

                if (!item)
                        break;
                /* The path is a JSON pointer: empty or starting with '/', up to ": ". A module's
                 * refusal comes as "module X refused the configuration: /path: message". */
                sep = strstr(item, ": ");
                if (sep && item[0] != '/' && sep != item) {
                        const char *inner = strstr(item, ": /");
                        if (inner && strstr(inner + 2, ": ")) {
                                memmove(item, inner + 2, strlen(inner + 2) + 1);
                                sep = strstr(item, ": ");
                        }
                }
                if (sep && (item[0] == '/' || sep == item))
                        json_array_append_new(a, json_pack("{s:s%, s:s}", "path", item, (size_t)(sep - item),
                                                           "message", sep + 2));
                else
                        json_array_append_new(a, json_pack("{s:s, s:s}", "path", "", "message", item));
                p = end ? end + 2 : p + n;
        }
        return a;
}

char *web_error_body(const char *message, json_t *fields) {
        json_t *j = json_pack("{s:s}", "error", message ? message : "error");
        char *out;

        if (!j) {
                json_decref(fields);
                return NULL;
        }
        if (fields)
                json_object_set_new(j, "fields", fields);
        out = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return out;
}

int web_http_status_of_rpc(int rpc_status) {
        switch (rpc_status) {
        case RPC_OK:
                return 200;
        case RPC_INVALID_ARGUMENT:
        case RPC_OUT_OF_RANGE:
                return 422;
        case RPC_NOT_FOUND:
                return 404;
        case RPC_ALREADY_EXISTS:
        case RPC_FAILED_PRECONDITION:
        case RPC_ABORTED:
                return 409;
        case RPC_PERMISSION_DENIED:
                return 403;
        case RPC_RESOURCE_EXHAUSTED:
                return 429;
        case RPC_DEADLINE_EXCEEDED:
                return 504;
        case RPC_UNAVAILABLE:
                return 503;
        default:
                return 502;
        }
}

char *web_sse_event(const char *name, const json_t *data, size_t *ret_len) {
        _cleanup_free_ char *d = json_dumps(data, JSON_COMPACT);
        char *out;
        int n;

        /* json_dumps escapes control characters inside strings, so compact JSON is one line. */
        if (!d)
                return NULL;
        n = asprintf(&out, "event: %s\ndata: %s\n\n", name, d);
        if (n < 0)
                return NULL;
        if (ret_len)
                *ret_len = (size_t)n;
        return out;
}

int web_name_valid(const char *x, size_t len) {
        if (len == 0 || len > 255)
                return 0;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)x[i] < 0x20 || x[i] == '/' || x[i] == 0x7f)
                        return 0;
        return !(len <= 2 && x[0] == '.' && (len == 1 || x[1] == '.'));
}
