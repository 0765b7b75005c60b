/* JSON Schema subset for module configuration: compile, validate, defaults, secrets.
 *
 * Unsupported keywords are compile errors, never silently ignored: a schema that says more
 * than we can check must not be believed to be checked. "pattern" is ECMA-262, translated
 * exactly to a POSIX ERE or refused with the reason (services/config/pattern.c). */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/config/pattern.h"
#include "services/config/schema.h"

/* json_decrefp() comes with jansson (2.9+). */

enum {
        TYPE_NULL = 1 << 0,
        TYPE_BOOLEAN = 1 << 1,
        TYPE_OBJECT = 1 << 2,
        TYPE_ARRAY = 1 << 3,
        TYPE_NUMBER = 1 << 4,
        TYPE_INTEGER = 1 << 5,
        TYPE_STRING = 1 << 6,
};

static const struct {
        const char *name;
        unsigned bit;
} type_names[] = {
        { "null", TYPE_NULL },       { "boolean", TYPE_BOOLEAN }, { "object", TYPE_OBJECT },
        { "array", TYPE_ARRAY },     { "number", TYPE_NUMBER },   { "integer", TYPE_INTEGER },
        { "string", TYPE_STRING },
};

typedef struct SchemaProp {
        char *name;
        Schema *schema;
} SchemaProp;

struct Schema {
        json_t *json; /* owned reference; the borrowed pointers below point into it */
        unsigned types; /* 0: any */
        SchemaProp *props;
        size_t n_props;
        json_t *required;
        bool additional_forbidden;
        Schema *additional;
        json_t *enum_values;
        json_t *const_value;
        bool has_minimum, has_maximum, has_xminimum, has_xmaximum;
        double minimum, maximum, xminimum, xmaximum;
        bool has_min_length, has_max_length, has_min_items, has_max_items;
        size_t min_length, max_length, min_items, max_items;
        bool has_pattern;
        regex_t pattern;
        Schema *items;
        json_t *default_value;
        bool secret;
        bool has_secrets;
};

/* Keywords that only annotate and never change what is valid. */
static const char *const annotation_keywords[] = {
        "title", "description", "$schema", "$id", "$comment", "examples", "readOnly",
};

/* ---- errors ---- */

void schema_errors_clear(SchemaErrors *e) {
        for (size_t i = 0; i < e->n; i++) {
                free(e->items[i].path);
                free(e->items[i].message);
        }
        free(e->items);
        e->items = NULL;
        e->n = 0;
}

int schema_errors_add(SchemaErrors *e, const char *path, const char *fmt, ...) {
        _cleanup_free_ char *p = NULL, *m = NULL;
        SchemaError *n;
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        /* Keep the "path: message; ..." format splittable. */
        for (char *c = m; *c; c++)
                if (*c == ';')
                        *c = ',';
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        n = realloc(e->items, (e->n + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        e->items = n;
        e->items[e->n++] = (SchemaError){ .path = TAKE_PTR(p), .message = TAKE_PTR(m) };
        return 0;
}

char *schema_errors_format(const SchemaErrors *e) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (size_t i = 0; i < e->n; i++)
                fprintf(f, "%s%s: %s", i > 0 ? "; " : "", e->items[i].path, e->items[i].message);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* base + "/" + token, with "~" and "/" escaped as RFC 6901 says. */
static char *path_join(const char *base, const char *token) {
        size_t bl = strlen(base), n = bl + 2;
        char *p, *o;

        for (const char *c = token; *c; c++)
                n += (*c == '~' || *c == '/') ? 2 : 1;
        p = malloc(n);
        if (!p)
                return NULL;
        memcpy(p, base, bl);
        o = p + bl;
        *o++ = '/';
        for (const char *c = token; *c; c++) {
                if (*c == '~' || *c == '/') {
                        *o++ = '~';
                        *o++ = *c == '~' ? '0' : '1';
                } else
                        *o++ = *c;
        }
        *o = 0;
        return p;
}

static char *path_join_index(const char *base, size_t i) {
        char buf[32];

        snprintf(buf, sizeof(buf), "%zu", i);
        return path_join(base, buf);
}

/* ---- compile ---- */

Schema *schema_free(Schema *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_props; i++) {
                free(s->props[i].name);
                schema_free(s->props[i].schema);
        }
        free(s->props);
        schema_free(s->additional);
        schema_free(s->items);
        if (s->has_pattern)
                regfree(&s->pattern);
        json_decref(s->json);
        free(s);
        return NULL;
}

json_t *schema_get_json(const Schema *s) {
        return s->json;
}

bool schema_is_secret(const Schema *s) {
        return s && s->secret;
}

bool schema_has_secrets(const Schema *s) {
        return s && s->has_secrets;
}

static int compile_node(json_t *j, const char *path, Schema **ret, SchemaErrors *errors);

/* Adds an error at path/keyword; returns 0 or -ENOMEM. */
static int keyword_error(SchemaErrors *errors, const char *path, const char *keyword,
                         const char *message) {
        _cleanup_free_ char *p = path_join(path, keyword);

        if (!p)
                return -ENOMEM;
        return schema_errors_add(errors, p, "%s", message);
}

static int parse_types(Schema *s, json_t *v, const char *path, SchemaErrors *errors) {
        json_t *list = v, *e;
        size_t i;

        if (json_is_string(v)) {
                list = json_array();
                if (!list || json_array_append(list, v) < 0) {
                        json_decref(list);
                        return -ENOMEM;
                }
        } else if (!json_is_array(v) || json_array_size(v) == 0)
                return keyword_error(errors, path, "type",
                                     "must be a type name or a non-empty array of type names");
        else
                json_incref(list);

        _cleanup_(json_decrefp) json_t *owned = list;
        json_array_foreach(list, i, e) {
                const char *name = json_string_value(e);
                bool found = false;

                for (size_t k = 0; name && k < ELEMENTSOF(type_names); k++)
                        if (strcmp(name, type_names[k].name) == 0) {
                                s->types |= type_names[k].bit;
                                found = true;
                        }
                if (!found)
                        return keyword_error(errors, path, "type", "unknown type name");
        }
        return 0;
}

static int parse_number(json_t *v, const char *path, const char *keyword, bool *has,
                        double *out, SchemaErrors *errors) {
        if (!json_is_number(v))
                return keyword_error(errors, path, keyword, "must be a number");
        *has = true;
        *out = json_number_value(v);
        return 0;
}

static int parse_count(json_t *v, const char *path, const char *keyword, bool *has,
                       size_t *out, SchemaErrors *errors) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return keyword_error(errors, path, keyword, "must be a non-negative integer");
        *has = true;
        *out = (size_t)json_integer_value(v);
        return 0;
}

static int compile_properties(Schema *s, json_t *v, const char *path, SchemaErrors *errors) {
        _cleanup_free_ char *ppath = NULL;
        const char *name;
        json_t *sub;
        int r;

        if (!json_is_object(v))
                return keyword_error(errors, path, "properties", "must be an object");
        ppath = path_join(path, "properties");
        if (!ppath)
                return -ENOMEM;
        s->props = calloc(json_object_size(v) + 1, sizeof(SchemaProp));
        if (!s->props)
                return -ENOMEM;
        json_object_foreach(v, name, sub) {
                _cleanup_free_ char *sp = path_join(ppath, name);
                SchemaProp *p = &s->props[s->n_props];

                if (!sp)
                        return -ENOMEM;
                p->name = strdup(name);
                if (!p->name)
                        return -ENOMEM;
                s->n_props++;
                r = compile_node(sub, sp, &p->schema, errors);
                if (r == -ENOMEM)
                        return r;
                if (p->schema && p->schema->has_secrets)
                        s->has_secrets = true;
        }
        return 0;
}

static int compile_keyword(Schema *s, const char *key, json_t *v, const char *path,
                           SchemaErrors *errors) {
        int r;

        for (size_t i = 0; i < ELEMENTSOF(annotation_keywords); i++)
                if (strcmp(key, annotation_keywords[i]) == 0)
                        return 0;

        if (strcmp(key, "type") == 0)
                return parse_types(s, v, path, errors);
        if (strcmp(key, "properties") == 0)
                return compile_properties(s, v, path, errors);
        if (strcmp(key, "required") == 0) {
                json_t *e;
                size_t i;

                if (!json_is_array(v))
                        return keyword_error(errors, path, key, "must be an array of strings");
                json_array_foreach(v, i, e)
                        if (!json_is_string(e))
                                return keyword_error(errors, path, key,
                                                     "must be an array of strings");
                s->required = v;
                return 0;
        }
        if (strcmp(key, "additionalProperties") == 0) {
                _cleanup_free_ char *sp = NULL;

                if (json_is_boolean(v)) {
                        s->additional_forbidden = json_is_false(v);
                        return 0;
                }
                sp = path_join(path, key);
                if (!sp)
                        return -ENOMEM;
                r = compile_node(v, sp, &s->additional, errors);
                if (r == -ENOMEM)
                        return r;
                if (s->additional && s->additional->has_secrets)
                        s->has_secrets = true;
                return 0;
        }
        if (strcmp(key, "items") == 0) {
                _cleanup_free_ char *sp = NULL;

                if (!json_is_object(v))
                        return keyword_error(errors, path, key,
                                             "must be a schema object (tuple form unsupported)");
                sp = path_join(path, key);
                if (!sp)
                        return -ENOMEM;
                r = compile_node(v, sp, &s->items, errors);
                if (r == -ENOMEM)
                        return r;
                if (s->items && s->items->has_secrets)
                        s->has_secrets = true;
                return 0;
        }
        if (strcmp(key, "enum") == 0) {
                if (!json_is_array(v) || json_array_size(v) == 0)
                        return keyword_error(errors, path, key, "must be a non-empty array");
                s->enum_values = v;
                return 0;
        }
        if (strcmp(key, "const") == 0) {
                s->const_value = v;
                return 0;
        }
        if (strcmp(key, "default") == 0) {
                s->default_value = v;
                return 0;
        }
        if (strcmp(key, "minimum") == 0)
                return parse_number(v, path, key, &s->has_minimum, &s->minimum, errors);
        if (strcmp(key, "maximum") == 0)
                return parse_number(v, path, key, &s->has_maximum, &s->maximum, errors);
        if (strcmp(key, "exclusiveMinimum") == 0)
                return parse_number(v, path, key, &s->has_xminimum, &s->xminimum, errors);
        if (strcmp(key, "exclusiveMaximum") == 0)
                return parse_number(v, path, key, &s->has_xmaximum, &s->xmaximum, errors);
        if (strcmp(key, "minLength") == 0)
                return parse_count(v, path, key, &s->has_min_length, &s->min_length, errors);
        if (strcmp(key, "maxLength") == 0)
                return parse_count(v, path, key, &s->has_max_length, &s->max_length, errors);
        if (strcmp(key, "minItems") == 0)
                return parse_count(v, path, key, &s->has_min_items, &s->min_items, errors);
        if (strcmp(key, "maxItems") == 0)
                return parse_count(v, path, key, &s->has_max_items, &s->max_items, errors);
        if (strcmp(key, "pattern") == 0) {
                if (!json_is_string(v))
                        return keyword_error(errors, path, key, "must be a string");
                _cleanup_free_ char *why = NULL;
                int k = pattern_compile(json_string_value(v), &s->pattern, &why);
                if (k == -ENOMEM)
                        return k;
                if (k < 0)
                        return keyword_error(errors, path, key, why);
                s->has_pattern = true;
                return 0;
        }
        if (strcmp(key, "writeOnly") == 0) {
                if (!json_is_boolean(v))
                        return keyword_error(errors, path, key, "must be a boolean");
                if (json_is_true(v))
                        s->secret = s->has_secrets = true;
                return 0;
        }
        if (strcmp(key, "format") == 0) {
                /* An annotation only (not checked), except "password" which marks a secret. */
                if (!json_is_string(v))
                        return keyword_error(errors, path, key, "must be a string");
                if (strcmp(json_string_value(v), "password") == 0)
                        s->secret = s->has_secrets = true;
                return 0;
        }
        return keyword_error(errors, path, key, "unsupported keyword");
}

static int compile_node(json_t *j, const char *path, Schema **ret, SchemaErrors *errors) {
        _cleanup_(schema_freep) Schema *s = NULL;
        size_t before = errors->n;
        const char *key;
        json_t *v;
        int r;

        if (!json_is_object(j))
                return schema_errors_add(errors, path, "a schema must be a JSON object") < 0
                               ? -ENOMEM
                               : -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->json = json_incref(j);
        json_object_foreach(j, key, v) {
                r = compile_keyword(s, key, v, path, errors);
                if (r < 0)
                        return r;
        }
        if (errors->n > before)
                return -EINVAL;
        *ret = TAKE_PTR(s);
        return 0;
}

int schema_compile(json_t *json, Schema **ret, SchemaErrors *errors) {
        Schema *s = NULL;
        int r;

        r = compile_node(json, "", &s, errors);
        if (r < 0) {
                schema_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

/* ---- validate ---- */

static bool is_integral(json_t *v) {
        double d;

        if (json_is_integer(v))
                return true;
        if (!json_is_real(v))
                return false;
        d = json_real_value(v);
        /* No libm: within +-2^53 an integral double survives the round trip. */
        return d > -9007199254740992.0 && d < 9007199254740992.0 && (double)(long long)d == d;
}

static unsigned type_of(json_t *v) {
        switch (json_typeof(v)) {
        case JSON_NULL:
                return TYPE_NULL;
        case JSON_TRUE:
        case JSON_FALSE:
                return TYPE_BOOLEAN;
        case JSON_OBJECT:
                return TYPE_OBJECT;
        case JSON_ARRAY:
                return TYPE_ARRAY;
        case JSON_STRING:
                return TYPE_STRING;
        case JSON_INTEGER:
        case JSON_REAL:
                return is_integral(v) ? TYPE_INTEGER | TYPE_NUMBER : TYPE_NUMBER;
        }
        return 0;
}

static const char *type_name_of(json_t *v) {
        switch (json_typeof(v)) {
        case JSON_NULL:
                return "null";
        case JSON_TRUE:
        case JSON_FALSE:
                return "boolean";
        case JSON_OBJECT:
                return "object";
        case JSON_ARRAY:
                return "array";
        case JSON_STRING:
                return "string";
        case JSON_INTEGER:
                return "integer";
        case JSON_REAL:
                return "number";
        }
        return "unknown";
}

static char *types_to_string(unsigned types) {
        char *buf = NULL;
        size_t size = 0;
        bool first = true;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (size_t k = 0; k < ELEMENTSOF(type_names); k++)
                if (types & type_names[k].bit) {
                        fprintf(f, "%s%s", first ? "" : " or ", type_names[k].name);
                        first = false;
                }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

/* Schema numbers shown in messages: integers without exponent. */
static void format_number(char *buf, size_t size, double d) {
        if (d > -9007199254740992.0 && d < 9007199254740992.0 && (double)(long long)d == d)
                snprintf(buf, size, "%lld", (long long)d);
        else
                snprintf(buf, size, "%.17g", d);
}

static size_t utf8_length(const char *s, size_t bytes) {
        size_t n = 0;

        for (size_t i = 0; i < bytes; i++)
                if (((unsigned char)s[i] & 0xC0) != 0x80)
                        n++;
        return n;
}

static const Schema *property_schema(const Schema *s, const char *name, bool *ret_declared) {
        for (size_t i = 0; i < s->n_props; i++)
                if (strcmp(s->props[i].name, name) == 0) {
                        if (ret_declared)
                                *ret_declared = true;
                        return s->props[i].schema;
                }
        if (ret_declared)
                *ret_declared = false;
        return s->additional;
}

/* Messages never quote the document's values: they may be secrets. */
static int validate_node(const Schema *s, json_t *v, const char *path, SchemaErrors *errors);

static int validate_number(const Schema *s, json_t *v, const char *path, SchemaErrors *errors) {
        double d = json_number_value(v);
        char num[64];
        int n = 0;

        if (s->has_minimum && d < s->minimum) {
                format_number(num, sizeof(num), s->minimum);
                if (schema_errors_add(errors, path, "must be >= %s", num) < 0)
                        return -ENOMEM;
                n++;
        }
        if (s->has_maximum && d > s->maximum) {
                format_number(num, sizeof(num), s->maximum);
                if (schema_errors_add(errors, path, "must be <= %s", num) < 0)
                        return -ENOMEM;
                n++;
        }
        if (s->has_xminimum && d <= s->xminimum) {
                format_number(num, sizeof(num), s->xminimum);
                if (schema_errors_add(errors, path, "must be > %s", num) < 0)
                        return -ENOMEM;
                n++;
        }
        if (s->has_xmaximum && d >= s->xmaximum) {
                format_number(num, sizeof(num), s->xmaximum);
                if (schema_errors_add(errors, path, "must be < %s", num) < 0)
                        return -ENOMEM;
                n++;
        }
        return n;
}

static int validate_string(const Schema *s, json_t *v, const char *path, SchemaErrors *errors) {
        size_t len = utf8_length(json_string_value(v), json_string_length(v));
        int n = 0;

        if (s->has_min_length && len < s->min_length) {
                if (schema_errors_add(errors, path, "must be at least %zu characters long",
                                      s->min_length) < 0)
                        return -ENOMEM;
                n++;
        }
        if (s->has_max_length && len > s->max_length) {
                if (schema_errors_add(errors, path, "must be at most %zu characters long",
                                      s->max_length) < 0)
                        return -ENOMEM;
                n++;
        }
        if (s->has_pattern && !pattern_match(&s->pattern, json_string_value(v))) {
                if (schema_errors_add(errors, path, "does not match pattern %s",
                                      json_string_value(json_object_get(s->json, "pattern"))) < 0)
                        return -ENOMEM;
                n++;
        }
        return n;
}

static int validate_object(const Schema *s, json_t *v, const char *path, SchemaErrors *errors) {
        const char *name;
        json_t *e;
        size_t i;
        int n = 0, r;

        if (s->required)
                json_array_foreach(s->required, i, e) {
                        _cleanup_free_ char *p = NULL;

                        if (json_object_get(v, json_string_value(e)))
                                continue;
                        p = path_join(path, json_string_value(e));
                        if (!p || schema_errors_add(errors, p, "required property missing") < 0)
                                return -ENOMEM;
                        n++;
                }
        json_object_foreach(v, name, e) {
                _cleanup_free_ char *p = path_join(path, name);
                const Schema *sub;
                bool declared;

                if (!p)
                        return -ENOMEM;
                sub = property_schema(s, name, &declared);
                if (!declared && s->additional_forbidden) {
                        if (schema_errors_add(errors, p, "additional property not allowed") < 0)
                                return -ENOMEM;
                        n++;
                        continue;
                }
                if (!sub)
                        continue;
                r = validate_node(sub, e, p, errors);
                if (r < 0)
                        return r;
                n += r;
        }
        return n;
}

static int validate_array(const Schema *s, json_t *v, const char *path, SchemaErrors *errors) {
        size_t size = json_array_size(v), i;
        json_t *e;
        int n = 0, r;

        if (s->has_min_items && size < s->min_items) {
                if (schema_errors_add(errors, path, "must have at least %zu items",
                                      s->min_items) < 0)
                        return -ENOMEM;
                n++;
        }
        if (s->has_max_items && size > s->max_items) {
                if (schema_errors_add(errors, path, "must have at most %zu items",
                                      s->max_items) < 0)
                        return -ENOMEM;
                n++;
        }
        if (s->items)
                json_array_foreach(v, i, e) {
                        _cleanup_free_ char *p = path_join_index(path, i);

                        if (!p)
                                return -ENOMEM;
                        r = validate_node(s->items, e, p, errors);
                        if (r < 0)
                                return r;
                        n += r;
                }
        return n;
}

static int validate_node(const Schema *s, json_t *v, const char *path, SchemaErrors *errors) {
        unsigned t = type_of(v);
        int n = 0, r;

        if (s->types && !(s->types & t)) {
                _cleanup_free_ char *want = types_to_string(s->types);

                if (!want || schema_errors_add(errors, path, "expected type %s, got %s", want,
                                               type_name_of(v)) < 0)
                        return -ENOMEM;
                return 1; /* the other keywords would only repeat the same problem */
        }
        if (s->enum_values) {
                json_t *e;
                size_t i;
                bool found = false;

                json_array_foreach(s->enum_values, i, e)
                        if (json_equal(e, v))
                                found = true;
                if (!found) {
                        _cleanup_free_ char *allowed =
                                json_dumps(s->enum_values, JSON_COMPACT | JSON_ENCODE_ANY);

                        if (!allowed || schema_errors_add(errors, path, "must be one of %s",
                                                          allowed) < 0)
                                return -ENOMEM;
                        n++;
                }
        }
        if (s->const_value && !json_equal(s->const_value, v)) {
                _cleanup_free_ char *c = json_dumps(s->const_value, JSON_COMPACT | JSON_ENCODE_ANY);

                if (!c || schema_errors_add(errors, path, "must be equal to %s", c) < 0)
                        return -ENOMEM;
                n++;
        }
        if (t & TYPE_NUMBER)
                r = validate_number(s, v, path, errors);
        else if (t & TYPE_STRING)
                r = validate_string(s, v, path, errors);
        else if (t & TYPE_OBJECT)
                r = validate_object(s, v, path, errors);
        else if (t & TYPE_ARRAY)
                r = validate_array(s, v, path, errors);
        else
                r = 0;
        if (r < 0)
                return r;
        return n + r;
}

int schema_validate(const Schema *s, json_t *doc, SchemaErrors *errors) {
        return validate_node(s, doc, "", errors);
}

/* ---- defaults, redaction, secret merge: all work in place on a private deep copy ---- */

static int fill_defaults(const Schema *s, json_t *v) {
        if (!s)
                return 0;
        if (json_is_object(v)) {
                const char *name;
                json_t *e;

                for (size_t i = 0; i < s->n_props; i++) {
                        const Schema *sub = s->props[i].schema;

                        if (!json_object_get(v, s->props[i].name) && sub->default_value &&
                            json_object_set_new(v, s->props[i].name,
                                                json_deep_copy(sub->default_value)) < 0)
                                return -ENOMEM;
                }
                json_object_foreach(v, name, e)
                        if (fill_defaults(property_schema(s, name, NULL), e) < 0)
                                return -ENOMEM;
        } else if (json_is_array(v) && s->items) {
                json_t *e;
                size_t i;

                json_array_foreach(v, i, e)
                        if (fill_defaults(s->items, e) < 0)
                                return -ENOMEM;
        }
        return 0;
}

json_t *schema_apply_defaults(const Schema *s, json_t *doc) {
        _cleanup_(json_decrefp) json_t *copy = json_deep_copy(doc);

        if (!copy || fill_defaults(s, copy) < 0)
                return NULL;
        return TAKE_PTR(copy);
}

static int redact(const Schema *s, json_t *v) {
        if (!s || !s->has_secrets)
                return 0;
        if (json_is_object(v)) {
                for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
                        const Schema *sub = property_schema(s, json_object_iter_key(it), NULL);

                        if (!sub)
                                continue;
                        if (sub->secret) {
                                if (json_object_iter_set_new(
                                            v, it, json_string(SCHEMA_SECRET_PLACEHOLDER)) < 0)
                                        return -ENOMEM;
                        } else if (redact(sub, json_object_iter_value(it)) < 0)
                                return -ENOMEM;
                }
        } else if (json_is_array(v) && s->items) {
                json_t *e;
                size_t i;

                json_array_foreach(v, i, e) {
                        if (s->items->secret) {
                                if (json_array_set_new(v, i,
                                                       json_string(SCHEMA_SECRET_PLACEHOLDER)) < 0)
                                        return -ENOMEM;
                        } else if (redact(s->items, e) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}

json_t *schema_redact(const Schema *s, json_t *doc) {
        _cleanup_(json_decrefp) json_t *copy = json_deep_copy(doc);

        if (!copy || redact(s, copy) < 0)
                return NULL;
        /* A secret at the root itself. */
        if (s->secret) {
                json_decref(copy);
                return json_string(SCHEMA_SECRET_PLACEHOLDER);
        }
        return TAKE_PTR(copy);
}

static bool is_placeholder(json_t *v) {
        return json_is_string(v) && strcmp(json_string_value(v), SCHEMA_SECRET_PLACEHOLDER) == 0;
}

static int merge(const Schema *s, json_t *old, json_t *v) {
        if (!s || !s->has_secrets)
                return 0;
        if (json_is_object(v)) {
                /* Declared secret properties may be omitted to keep them. */
                for (size_t i = 0; i < s->n_props; i++) {
                        const char *name = s->props[i].name;
                        const Schema *sub = s->props[i].schema;
                        json_t *nv = json_object_get(v, name);
                        json_t *ov = json_is_object(old) ? json_object_get(old, name) : NULL;

                        if (!sub->secret || (nv && !is_placeholder(nv)))
                                continue;
                        if (ov) {
                                if (json_object_set_new(v, name, json_deep_copy(ov)) < 0)
                                        return -ENOMEM;
                        } else if (nv)
                                (void)json_object_del(v, name);
                }
                for (void *it = json_object_iter(v); it;) {
                        const char *name = json_object_iter_key(it);
                        const Schema *sub = property_schema(s, name, NULL);
                        json_t *ov = json_is_object(old) ? json_object_get(old, name) : NULL;
                        json_t *nv = json_object_iter_value(it);

                        it = json_object_iter_next(v, it);
                        if (!sub)
                                continue;
                        if (sub->secret && is_placeholder(nv)) {
                                /* Undeclared (additionalProperties) secret placeholder. */
                                if (ov) {
                                        if (json_object_set_new(v, name, json_deep_copy(ov)) < 0)
                                                return -ENOMEM;
                                } else
                                        (void)json_object_del(v, name);
                        } else if (!sub->secret && merge(sub, ov, nv) < 0)
                                return -ENOMEM;
                }
        } else if (json_is_array(v) && s->items) {
                json_t *e;
                size_t i;

                json_array_foreach(v, i, e) {
                        json_t *ov = json_is_array(old) ? json_array_get(old, i) : NULL;

                        if (s->items->secret) {
                                if (is_placeholder(e) && ov &&
                                    json_array_set_new(v, i, json_deep_copy(ov)) < 0)
                                        return -ENOMEM;
                        } else if (merge(s->items, ov, e) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}

json_t *schema_merge_secrets(const Schema *s, json_t *old_doc, json_t *new_doc) {
        _cleanup_(json_decrefp) json_t *copy = json_deep_copy(new_doc);

        if (!copy || merge(s, old_doc, copy) < 0)
                return NULL;
        return TAKE_PTR(copy);
}
