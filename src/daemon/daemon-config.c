/* The orchestrator's configuration file (YAML), parsed with libyaml's document API. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "config.h"
#include "daemon/daemon-config.h"
#include "shared/macro.h"
#include "shared/yaml-input.h"

static int set_str(char **dst, const char *src) {
        char *s = strdup(src);

        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

int daemon_config_init(DaemonConfig *c, bool user_manager) {
        const char *xdg;
        int r = 0;

        *c = (DaemonConfig){
                .port_min = 50100,
                .port_max = 50999,
                .health_interval_ms = 5000,
                .health_timeout_ms = 2000,
                .health_failure_threshold = 3,
                .registration_timeout_ms = 30000,
                .restart_sec_ms = 1000,
                .start_limit_burst = 5,
                .start_limit_interval_sec = 60,
                .stop_timeout_sec = 10,
                .user_manager = user_manager,
                .web_enabled = true,
        };
        r = set_str(&c->modules_dir, MODULESDIR);
        if (r >= 0)
                r = set_str(&c->listen, ""); /* "": unix:<runtime_dir>/modules.sock */
        if (r >= 0)
                r = set_str(&c->slice, "callassistant.slice"); /* a dash would nest it under call.slice */
        if (r >= 0)
                r = set_str(&c->user, "");
        if (r >= 0)
                r = set_str(&c->web_listen, "127.0.0.1:8480");
        if (r >= 0)
                r = set_str(&c->web_assets_dir, WEBASSETSDIR);
        if (r >= 0)
                r = set_str(&c->web_tls_certificate, "");
        if (r >= 0)
                r = set_str(&c->web_tls_key, "");
        if (r >= 0)
                r = set_str(&c->web_journal_directory, "");
        if (r < 0)
                return r;

        if (!user_manager) {
                r = set_str(&c->state_dir, "/var/lib/call-assistant");
                if (r >= 0)
                        r = set_str(&c->runtime_dir, "/run/call-assistant");
                if (r >= 0)
                        r = set_str(&c->control_socket, "/run/call-assistant/control.sock");
                return r;
        }

        /* The user manager: XDG directories. */
        _cleanup_free_ char *state = NULL, *runtime = NULL, *sock = NULL;
        xdg = getenv("XDG_STATE_HOME");
        if (xdg && *xdg)
                r = asprintf(&state, "%s/call-assistant", xdg);
        else
                r = asprintf(&state, "%s/.local/state/call-assistant", getenv("HOME") ? getenv("HOME") : "/");
        if (r < 0)
                return -ENOMEM;
        xdg = getenv("XDG_RUNTIME_DIR");
        if (!xdg || !*xdg)
                return -ENXIO;
        if (asprintf(&runtime, "%s/call-assistant", xdg) < 0 ||
            asprintf(&sock, "%s/call-assistant/control.sock", xdg) < 0)
                return -ENOMEM;
        c->state_dir = TAKE_PTR(state);
        c->runtime_dir = TAKE_PTR(runtime);
        c->control_socket = TAKE_PTR(sock);
        return 0;
}

void daemon_config_done(DaemonConfig *c) {
        free(c->modules_dir);
        free(c->state_dir);
        free(c->runtime_dir);
        free(c->listen);
        free(c->control_socket);
        free(c->slice);
        free(c->user);
        free(c->web_listen);
        free(c->web_assets_dir);
        free(c->web_tls_certificate);
        free(c->web_tls_key);
        free(c->web_journal_directory);
        strv_free(c->read_only_paths);
        *c = (DaemonConfig){};
}

int daemon_config_add_read_only_path(DaemonConfig *c, const char *path) {
        size_t n = 0;
        char **l;

        while (c->read_only_paths && c->read_only_paths[n])
                n++;
        l = realloc(c->read_only_paths, (n + 2) * sizeof(char *));
        if (!l)
                return -ENOMEM;
        c->read_only_paths = l;
        l[n] = strdup(path);
        l[n + 1] = NULL;
        return l[n] ? 0 : -ENOMEM;
}

typedef struct Loader {
        yaml_document_t *doc;
        const char *path;
        FILE *err;
        unsigned n_errors;
} Loader;

static void report(Loader *l, yaml_node_t *node, const char *field, const char *message) {
        fprintf(l->err, "%s:%zu:%zu: error: field '%s': %s\n", l->path, node->start_mark.line + 1,
                node->start_mark.column + 1, field, message);
        l->n_errors++;
}

static const char *scalar(yaml_node_t *n) {
        return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int load_string(Loader *l, yaml_node_t *v, const char *field, char **dst) {
        const char *s = scalar(v);

        if (!s) {
                report(l, v, field, "expected a string");
                return 0;
        }
        return set_str(dst, s);
}

static void load_uint(Loader *l, yaml_node_t *v, const char *field, uint32_t min, uint32_t max, uint32_t *dst) {
        const char *s = scalar(v);
        unsigned long long x;
        char *end;

        if (!s || !*s) {
                report(l, v, field, "expected a number");
                return;
        }
        errno = 0;
        x = strtoull(s, &end, 10);
        if (errno || *end || s[0] == '-' || x < min || x > max) {
                char msg[80];
                snprintf(msg, sizeof(msg), "expected a whole number in %u..%u", min, max);
                report(l, v, field, msg);
                return;
        }
        *dst = (uint32_t)x;
}

static void load_bool(Loader *l, yaml_node_t *v, const char *field, bool *dst) {
        const char *s = scalar(v);

        if (s && (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0))
                *dst = true;
        else if (s && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0))
                *dst = false;
        else
                report(l, v, field, "expected true or false");
}

typedef int (*section_fn)(Loader *l, const char *key, const char *field, yaml_node_t *v, DaemonConfig *c);

static int walk_mapping(Loader *l, yaml_node_t *map, const char *prefix, section_fn fn, DaemonConfig *c) {
        if (map->type != YAML_MAPPING_NODE) {
                report(l, map, prefix[0] ? prefix : "(top level)", "expected a mapping");
                return 0;
        }
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
                yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
                const char *key = k ? scalar(k) : NULL;
                char field[128];
                int r;

                if (!key || !v) {
                        report(l, k ? k : map, prefix, "expected a plain key");
                        continue;
                }
                snprintf(field, sizeof(field), "%s%s%s", prefix, prefix[0] ? "." : "", key);
                r = fn(l, key, field, v, c);
                if (r < 0)
                        return r;
                if (r == 0)
                        report(l, k, field, "unknown key");
        }
        return 0;
}

static int section_ports(Loader *l, const char *key, const char *field, yaml_node_t *v, DaemonConfig *c) {
        uint32_t x;

        if (strcmp(key, "min") == 0 || strcmp(key, "max") == 0) {
                x = strcmp(key, "min") == 0 ? c->port_min : c->port_max;
                load_uint(l, v, field, 1024, 65535, &x);
                if (strcmp(key, "min") == 0)
                        c->port_min = (uint16_t)x;
                else
                        c->port_max = (uint16_t)x;
                return 1;
        }
        return 0;
}

static int section_health(Loader *l, const char *key, const char *field, yaml_node_t *v, DaemonConfig *c) {
        if (strcmp(key, "interval_ms") == 0)
                load_uint(l, v, field, 100, 3600000, &c->health_interval_ms);
        else if (strcmp(key, "timeout_ms") == 0)
                load_uint(l, v, field, 10, 600000, &c->health_timeout_ms);
        else if (strcmp(key, "failure_threshold") == 0)
                load_uint(l, v, field, 1, 1000, &c->health_failure_threshold);
        else
                return 0;
        return 1;
}

static int section_units(Loader *l, const char *key, const char *field, yaml_node_t *v, DaemonConfig *c) {
        if (strcmp(key, "restart_sec_ms") == 0)
                load_uint(l, v, field, 0, 3600000, &c->restart_sec_ms);
        else if (strcmp(key, "start_limit_burst") == 0)
                load_uint(l, v, field, 0, 1000, &c->start_limit_burst);
        else if (strcmp(key, "start_limit_interval_sec") == 0)
                load_uint(l, v, field, 0, 86400, &c->start_limit_interval_sec);
        else if (strcmp(key, "stop_timeout_sec") == 0)
                load_uint(l, v, field, 1, 3600, &c->stop_timeout_sec);
        else if (strcmp(key, "slice") == 0)
                return load_string(l, v, field, &c->slice) < 0 ? -ENOMEM : 1;
        else if (strcmp(key, "user") == 0)
                return load_string(l, v, field, &c->user) < 0 ? -ENOMEM : 1;
        else if (strcmp(key, "read_only_paths") == 0) {
                if (v->type != YAML_SEQUENCE_NODE) {
                        report(l, v, field, "expected a list of absolute paths");
                        return 1;
                }
                for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
                        yaml_node_t *e = yaml_document_get_node(l->doc, *i);
                        const char *path = e ? scalar(e) : NULL;
                        if (!path || path[0] != '/') {
                                report(l, e ? e : v, field, "expected an absolute path");
                                continue;
                        }
                        if (daemon_config_add_read_only_path(c, path) < 0)
                                return -ENOMEM;
                }
                return 1;
        }
        else
                return 0;
        return 1;
}

static int section_web(Loader *l, const char *key, const char *field, yaml_node_t *v, DaemonConfig *c) {
        static const struct {
                const char *key;
                size_t offset;
        } strings[] = {
                { "listen", offsetof(DaemonConfig, web_listen) },
                { "assets_dir", offsetof(DaemonConfig, web_assets_dir) },
                { "tls_certificate", offsetof(DaemonConfig, web_tls_certificate) },
                { "tls_key", offsetof(DaemonConfig, web_tls_key) },
                { "journal_directory", offsetof(DaemonConfig, web_journal_directory) },
        };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (strcmp(key, strings[i].key) == 0)
                        return load_string(l, v, field, (char **)((char *)c + strings[i].offset)) < 0 ? -ENOMEM : 1;
        if (strcmp(key, "enabled") == 0) {
                load_bool(l, v, field, &c->web_enabled);
                return 1;
        }
        return 0;
}

static int section_top(Loader *l, const char *key, const char *field, yaml_node_t *v, DaemonConfig *c) {
        static const struct {
                const char *key;
                size_t offset;
        } strings[] = {
                { "modules_dir", offsetof(DaemonConfig, modules_dir) },
                { "state_dir", offsetof(DaemonConfig, state_dir) },
                { "runtime_dir", offsetof(DaemonConfig, runtime_dir) },
                { "listen", offsetof(DaemonConfig, listen) },
                { "control_socket", offsetof(DaemonConfig, control_socket) },
        };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (strcmp(key, strings[i].key) == 0)
                        return load_string(l, v, field, (char **)((char *)c + strings[i].offset)) < 0 ? -ENOMEM : 1;
        if (strcmp(key, "registration_timeout_ms") == 0) {
                load_uint(l, v, field, 100, 3600000, &c->registration_timeout_ms);
                return 1;
        }
        if (strcmp(key, "dev") == 0) {
                load_bool(l, v, field, &c->dev);
                return 1;
        }
        if (strcmp(key, "ports") == 0)
                return walk_mapping(l, v, "ports", section_ports, c) < 0 ? -ENOMEM : 1;
        if (strcmp(key, "health") == 0)
                return walk_mapping(l, v, "health", section_health, c) < 0 ? -ENOMEM : 1;
        if (strcmp(key, "units") == 0)
                return walk_mapping(l, v, "units", section_units, c) < 0 ? -ENOMEM : 1;
        if (strcmp(key, "web") == 0)
                return walk_mapping(l, v, "web", section_web, c) < 0 ? -ENOMEM : 1;
        return 0;
}

int daemon_config_load(DaemonConfig *c, const char *path, FILE *err) {
        _cleanup_free_ char *text = NULL, *why = NULL;
        yaml_parser_t parser;
        yaml_document_t doc;
        yaml_node_t *root;
        unsigned line, column;
        size_t size;
        int r = 0;

        r = yaml_input_read(path, DAEMON_CONFIG_MAX_SIZE, &text, &size, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                struct stat st;

                if (r == -ENOENT && lstat(path, &st) < 0)
                        return -ENOENT; /* not there at all (a dangling symlink is): for the caller */
                fprintf(err, "%s: error: the configuration file %s\n", path, why);
                return -EINVAL;
        }
        r = yaml_input_too_deep(text, size, DAEMON_CONFIG_MAX_DEPTH, &line, &column);
        if (r < 0)
                return r;
        if (r > 0) {
                fprintf(err, "%s:%u:%u: error: nested deeper than %u levels; the configuration needs 3\n", path,
                        line, column, DAEMON_CONFIG_MAX_DEPTH);
                return -EINVAL;
        }

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, size);
        if (!yaml_parser_load(&parser, &doc)) {
                fprintf(err, "%s:%zu:%zu: error: %s%s%s\n", path, parser.problem_mark.line + 1,
                        parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML",
                        parser.context ? " " : "", parser.context ? parser.context : "");
                yaml_parser_delete(&parser);
                return -EINVAL;
        }

        root = yaml_document_get_root_node(&doc);
        r = 0;
        if (root) { /* an empty file keeps every default */
                Loader l = { .doc = &doc, .path = path, .err = err };
                r = walk_mapping(&l, root, "", section_top, c);
                if (r >= 0 && c->port_min > c->port_max) {
                        fprintf(err, "%s: error: field 'ports': min (%u) is above max (%u)\n", path, c->port_min,
                                c->port_max);
                        l.n_errors++;
                }
                if (r >= 0 && (!*c->web_tls_certificate) != (!*c->web_tls_key)) {
                        fprintf(err, "%s: error: field 'web': tls_certificate and tls_key go together\n", path);
                        l.n_errors++;
                }
                if (r >= 0 && l.n_errors > 0)
                        r = -EINVAL;
        }

        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        return r;
}
