/* module.yaml parsing with libyaml's document API: every problem with file, line, column. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "manifest/module-manifest.h"
#include "shared/yaml-input.h"

bool manifest_name_is_valid(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > 64)
                return false;
        if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

Manifest *manifest_free(Manifest *m) {
        if (!m)
                return NULL;
        free(m->path);
        free(m->abs_dir);
        free(m->rel_dir);
        free(m->name);
        free(m->version);
        free(m->description);
        free(m->command);
        free(m->dev_command);
        strv_free(m->dependencies);
        free(m->dependency_lines);
        free(m->dependency_columns);
        free(m->disabled_reason);
        free(m);
        return NULL;
}

int manifest_disable(Manifest *m, const char *reason) {
        m->valid = false;
        if (m->disabled_reason)
                return 0; /* the first reason is the one that matters */
        m->disabled_reason = strdup(reason);
        return m->disabled_reason ? 0 : -ENOMEM;
}

typedef struct Parser {
        const char *path;
        yaml_document_t *doc;
        Diagnostics *d;
        unsigned n_errors;
} Parser;

#define LINE(n) ((unsigned)(n)->start_mark.line + 1)
#define COL(n) ((unsigned)(n)->start_mark.column + 1)

static void error_at(Parser *p, yaml_node_t *n, const char *field, const char *msg) {
        diagnostics_add(p->d, DIAG_ERROR, p->path, n ? LINE(n) : 0, n ? COL(n) : 0, field, "%s", msg);
        p->n_errors++;
}

static const char *node_type_name(yaml_node_t *n) {
        switch (n->type) {
        case YAML_SCALAR_NODE:
                return "a scalar";
        case YAML_SEQUENCE_NODE:
                return "a list";
        case YAML_MAPPING_NODE:
                return "a mapping";
        default:
                return "nothing";
        }
}

/* YAML's null: "~", "null", "Null", "NULL", nothing at all, or an explicit !!null. */
static bool is_null(const yaml_node_t *v) {
        const char *s;

        if (v->type != YAML_SCALAR_NODE)
                return false;
        s = (const char *)v->data.scalar.value;
        if (v->tag && strcmp((const char *)v->tag, YAML_NULL_TAG) == 0)
                return true;
        return v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
               (s[0] == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
                strcmp(s, "NULL") == 0);
}

/* A string field: must be a scalar. required: may not be null nor empty; an optional field
 * that is null is left unset. */
static int get_string(Parser *p, yaml_node_t *v, const char *field, bool required, char **dst) {
        char msg[128];

        if (is_null(v) && required && v->data.scalar.length > 0) {
                snprintf(msg, sizeof(msg), "expected a string, got null ('%s'); quote it if it is meant",
                         (const char *)v->data.scalar.value);
                error_at(p, v, field, msg);
                return 0;
        }
        if (is_null(v) && !required)
                return 0;
        if (v->type != YAML_SCALAR_NODE) {
                snprintf(msg, sizeof(msg), "expected a string, got %s", node_type_name(v));
                error_at(p, v, field, msg);
                return 0;
        }
        if (required && v->data.scalar.length == 0) {
                error_at(p, v, field, "must not be empty");
                return 0;
        }
        if (strlen((const char *)v->data.scalar.value) != v->data.scalar.length) {
                error_at(p, v, field, "must not contain NUL characters");
                return 0;
        }
        free(*dst);
        *dst = strdup((const char *)v->data.scalar.value);
        return *dst ? 0 : -ENOMEM;
}

static int get_dependencies(Parser *p, Manifest *m, yaml_node_t *v) {
        size_t n, k = 0;

        if (is_null(v))
                return 0; /* "dependencies:" with nothing, or ~: none */
        if (v->type != YAML_SEQUENCE_NODE) {
                char msg[128];
                snprintf(msg, sizeof(msg), "expected a list of module names, got %s", node_type_name(v));
                error_at(p, v, "dependencies", msg);
                return 0;
        }
        n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        m->dependencies = calloc(n + 1, sizeof(char *));
        m->dependency_lines = calloc(n + 1, sizeof(unsigned));
        m->dependency_columns = calloc(n + 1, sizeof(unsigned));
        if (!m->dependencies || !m->dependency_lines || !m->dependency_columns)
                return -ENOMEM;

        for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                yaml_node_t *e = yaml_document_get_node(p->doc, *i);
                const char *dep;
                bool dup = false;
                char msg[256];

                if (!e || e->type != YAML_SCALAR_NODE) {
                        error_at(p, e ? e : v, "dependencies", "each dependency must be a module name");
                        continue;
                }
                dep = (const char *)e->data.scalar.value;
                if (!manifest_name_is_valid(dep)) {
                        snprintf(msg, sizeof(msg), "'%.64s' is not a valid module name", dep);
                        error_at(p, e, "dependencies", msg);
                        continue;
                }
                if (m->name && strcmp(dep, m->name) == 0) {
                        error_at(p, e, "dependencies", "a module cannot depend on itself");
                        continue;
                }
                for (size_t j = 0; j < k; j++)
                        if (strcmp(m->dependencies[j], dep) == 0)
                                dup = true;
                if (dup) {
                        snprintf(msg, sizeof(msg), "'%s' is listed twice", dep);
                        error_at(p, e, "dependencies", msg);
                        continue;
                }
                m->dependencies[k] = strdup(dep);
                if (!m->dependencies[k])
                        return -ENOMEM;
                m->dependency_lines[k] = LINE(e);
                m->dependency_columns[k] = COL(e);
                k++;
        }
        return 0;
}

static int parse_root(Parser *p, Manifest *m, yaml_node_t *root) {
        static const char *const known[] = { "name", "version", "description", "command", "dev_command",
                                             "dependencies", "network" };
        yaml_node_t *seen[ELEMENTSOF(known)] = {};
        yaml_node_t *deps = NULL;
        int r;

        if (root->type != YAML_MAPPING_NODE) {
                char msg[128];
                snprintf(msg, sizeof(msg), "the manifest must be a mapping of keys to values, got %s",
                         node_type_name(root));
                error_at(p, root, NULL, msg);
                return 0;
        }

        for (yaml_node_pair_t *pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
                yaml_node_t *v = yaml_document_get_node(p->doc, pair->value);
                const char *key;
                size_t idx;
                char msg[256];

                if (!k || !v)
                        continue;
                if (k->type != YAML_SCALAR_NODE) {
                        error_at(p, k, NULL, "keys must be plain strings");
                        continue;
                }
                key = (const char *)k->data.scalar.value;
                for (idx = 0; idx < ELEMENTSOF(known); idx++)
                        if (strcmp(key, known[idx]) == 0)
                                break;
                if (idx == ELEMENTSOF(known)) {
                        diagnostics_add(p->d, DIAG_WARNING, p->path, LINE(k), COL(k), key,
                                        "unknown key, ignored");
                        continue;
                }
                if (seen[idx]) {
                        snprintf(msg, sizeof(msg), "duplicate key (first at line %u)", LINE(seen[idx]));
                        error_at(p, k, key, msg);
                        continue;
                }
                seen[idx] = k;

                if (strcmp(key, "name") == 0) {
                        r = get_string(p, v, "name", true, &m->name);
                        if (r < 0)
                                return r;
                        m->name_line = LINE(v);
                        m->name_column = COL(v);
                        if (m->name && !manifest_name_is_valid(m->name)) {
                                snprintf(msg, sizeof(msg),
                                         "'%.64s' is not a valid name: use 1-64 characters of a-z, 0-9, '.', '_' "
                                         "and '-', starting with a letter or digit",
                                         m->name);
                                error_at(p, v, "name", msg);
                        }
                } else if (strcmp(key, "version") == 0)
                        r = get_string(p, v, "version", true, &m->version);
                else if (strcmp(key, "description") == 0)
                        r = get_string(p, v, "description", false, &m->description);
                else if (strcmp(key, "command") == 0)
                        r = get_string(p, v, "command", true, &m->command);
                else if (strcmp(key, "dev_command") == 0)
                        r = get_string(p, v, "dev_command", false, &m->dev_command);
                else if (strcmp(key, "network") == 0)
                        r = module_network_parse(&m->network, p->doc, v, p->path, p->d, &p->n_errors);
                else {
                        deps = v;
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        /* After the name is known, so that self-dependencies can be seen. */
        if (deps) {
                r = get_dependencies(p, m, deps);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < ELEMENTSOF(known); i++) {
                char msg[64];
                if (seen[i] || strcmp(known[i], "dev_command") == 0 || strcmp(known[i], "dependencies") == 0 ||
                    strcmp(known[i], "description") == 0 || strcmp(known[i], "network") == 0)
                        continue;
                snprintf(msg, sizeof(msg), "missing (required)");
                diagnostics_add(p->d, DIAG_ERROR, p->path, LINE(root), COL(root), known[i], "%s", msg);
                p->n_errors++;
        }
        return 0;
}

/* The folder holding the manifest, with symlinks resolved: the unit binds it and runs there, so
 * that the module's relative paths (libraries, data) work inside the unit too. */
static int resolve_dir(const char *path, char **ret) {
        _cleanup_free_ char *dir = NULL;
        const char *slash = strrchr(path, '/');
        char *real;

        dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        if (!dir)
                return -ENOMEM;
        real = realpath(dir, NULL);
        if (!real) {
                if (errno == ENOMEM)
                        return -ENOMEM;
                *ret = TAKE_PTR(dir); /* gone meanwhile: the unit will say so */
                return 0;
        }
        *ret = real;
        return 0;
}

int manifest_parse_file(const char *path, const char *rel_dir, Manifest **ret, Diagnostics *d) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_free_ char *text = NULL, *error = NULL;
        yaml_parser_t parser;
        yaml_document_t doc;
        Parser p = { .path = path, .d = d };
        unsigned line, column;
        size_t size;
        int r = 0;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->path = strdup(path);
        m->rel_dir = strdup(rel_dir);
        if (!m->path || !m->rel_dir || resolve_dir(path, &m->abs_dir) < 0)
                return -ENOMEM;

        r = yaml_input_read(path, MANIFEST_MAX_SIZE, &text, &size, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                diagnostics_add(d, DIAG_ERROR, path, 0, 0, NULL, "the manifest %s", error);
                r = manifest_disable(m, "manifest cannot be read");
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(m);
                return 0;
        }
        r = yaml_input_too_deep(text, size, MANIFEST_MAX_DEPTH, &line, &column);
        if (r < 0)
                return r;
        if (r > 0) {
                diagnostics_add(d, DIAG_ERROR, path, line, column, NULL,
                                "nested deeper than %u levels; a manifest needs 3", MANIFEST_MAX_DEPTH);
                p.n_errors++;
                r = 0;
                goto done;
        }

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, size);

        if (!yaml_parser_load(&parser, &doc)) {
                diagnostics_add(d, DIAG_ERROR, path, (unsigned)parser.problem_mark.line + 1,
                                (unsigned)parser.problem_mark.column + 1, NULL, "invalid YAML: %s%s%s",
                                parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                                parser.context ? parser.context : "");
                p.n_errors++;
        } else {
                yaml_node_t *root = yaml_document_get_root_node(&doc);
                p.doc = &doc;
                if (!root) {
                        diagnostics_add(d, DIAG_ERROR, path, 1, 1, NULL, "the manifest is empty");
                        p.n_errors++;
                } else
                        r = parse_root(&p, m, root);
                yaml_document_delete(&doc);

                /* Exactly one document per manifest. */
                if (r >= 0 && p.n_errors == 0) {
                        yaml_document_t extra;
                        if (yaml_parser_load(&parser, &extra)) {
                                yaml_node_t *x = yaml_document_get_root_node(&extra);
                                if (x) {
                                        diagnostics_add(d, DIAG_ERROR, path, LINE(x), COL(x), NULL,
                                                        "more than one YAML document; a manifest has exactly one");
                                        p.n_errors++;
                                }
                                yaml_document_delete(&extra);
                        }
                }
        }
        yaml_parser_delete(&parser);
        if (r < 0)
                return r;

done:
        m->valid = p.n_errors == 0;
        if (!m->valid) {
                char reason[160];
                snprintf(reason, sizeof(reason), "invalid manifest %s (%u error%s)", path, p.n_errors,
                         p.n_errors == 1 ? "" : "s");
                r = manifest_disable(m, reason);
                if (r < 0)
                        return r;
        }
        if (!m->dependencies) {
                m->dependencies = calloc(1, sizeof(char *));
                if (!m->dependencies)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(m);
        return 0;
}
