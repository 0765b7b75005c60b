/* Durable per-module configuration files under <statedir>/config/.
 *
 * One pretty-printed <module>.json per module, replaced atomically by write_file_atomic():
 * after a crash at any moment the file holds either the old or the new record. A file that
 * does not parse is never overwritten: it is renamed aside so that a human can recover it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "services/config/store.h"
#include "shared/fileio.h"

/* json_decrefp() comes with jansson (2.9+). */
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

#define MODULE_NAME_MAX 64

struct ConfigStore {
        char *dir;
};

bool config_module_name_valid(const char *name) {
        size_t n;

        if (!name || !name[0])
                return false;
        n = strlen(name);
        if (n > MODULE_NAME_MAX)
                return false;
        if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
                return false;
        for (size_t i = 1; i < n; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                      c == '-'))
                        return false;
        }
        return true;
}

ConfigStore *config_store_free(ConfigStore *s) {
        if (!s)
                return NULL;
        free(s->dir);
        free(s);
        return NULL;
}

const char *config_store_get_dir(const ConfigStore *s) {
        return s->dir;
}

/* write_file_atomic() names its temp files "<path>.tmp-<hex>". */
static bool is_temp_name(const char *name) {
        const char *t = strstr(name, ".json.tmp-");

        return t && t != name;
}

int config_store_open(const char *dir, ConfigStore **ret) {
        _cleanup_(config_store_freep) ConfigStore *s = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int r;

        r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->dir = strdup(dir);
        if (!s->dir)
                return -ENOMEM;

        d = opendir(dir);
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (is_temp_name(de->d_name))
                        (void)unlinkat(dirfd(d), de->d_name, 0);

        *ret = TAKE_PTR(s);
        return 0;
}

void config_record_clear(ConfigRecord *r) {
        json_decref(r->config);
        *r = (ConfigRecord){};
}

static char *module_path(const ConfigStore *s, const char *module) {
        char *p;

        if (asprintf(&p, "%s/%s.json", s->dir, module) < 0)
                return NULL;
        return p;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

/* jansson's messages may end in " near '<text>'": drop that, the text may be a secret. */
static void strip_near(char *text) {
        char *n = strstr(text, " near '");

        if (n)
                *n = 0;
}

static int move_aside(const char *path, const char *what, int line, int column,
                      char **ret_problem) {
        _cleanup_free_ char *aside = NULL, *problem = NULL;

        if (asprintf(&aside, "%s.corrupt-%llu", path, (unsigned long long)now_usec()) < 0)
                return -ENOMEM;
        if (rename(path, aside) < 0)
                return -errno;
        if (asprintf(&problem, "%s:%d:%d: %s, kept as %s", path, line, column, what, aside) < 0)
                return -ENOMEM;
        if (ret_problem)
                *ret_problem = TAKE_PTR(problem);
        return CONFIG_STORE_CORRUPT;
}

int config_store_load(ConfigStore *s, const char *module, ConfigRecord *ret_record,
                      char **ret_problem) {
        _cleanup_free_ char *path = NULL;
        _cleanup_(json_decrefp) json_t *root = NULL;
        json_t *rev, *upd, *cfg;
        json_error_t err;

        if (!config_module_name_valid(module))
                return -EINVAL;
        path = module_path(s, module);
        if (!path)
                return -ENOMEM;
        if (access(path, F_OK) < 0) {
                if (errno == ENOENT)
                        return CONFIG_STORE_ABSENT;
                return -errno;
        }

        root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (!root) {
                strip_near(err.text);
                return move_aside(path, err.text, err.line, err.column, ret_problem);
        }
        rev = json_object_get(root, "revision");
        upd = json_object_get(root, "updated_at");
        cfg = json_object_get(root, "config");
        if (!json_is_integer(rev) || json_integer_value(rev) < 0 || !json_is_integer(upd) ||
            json_integer_value(upd) < 0 || !json_is_object(cfg))
                return move_aside(path,
                                  "expected an object with integer \"revision\", "
                                  "integer \"updated_at\" and object \"config\"",
                                  1, 1, ret_problem);

        *ret_record = (ConfigRecord){
                .revision = (uint64_t)json_integer_value(rev),
                .updated_at = (uint64_t)json_integer_value(upd),
                .config = json_incref(cfg),
        };
        return CONFIG_STORE_LOADED;
}

int config_store_save(ConfigStore *s, const char *module, const ConfigRecord *record) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        _cleanup_(json_decrefp) json_t *root = NULL;

        if (!config_module_name_valid(module) || !json_is_object(record->config))
                return -EINVAL;
        path = module_path(s, module);
        if (!path)
                return -ENOMEM;
        root = json_pack("{s:I, s:I, s:O}", "revision", (json_int_t)record->revision,
                         "updated_at", (json_int_t)record->updated_at, "config", record->config);
        if (!root)
                return -ENOMEM;
        text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;
        /* json_dumps() has no trailing newline; a readable file has one. */
        size_t n = strlen(text);
        char *t = realloc(text, n + 2);
        if (!t)
                return -ENOMEM;
        text = t;
        text[n] = '\n';
        text[n + 1] = 0;
        return write_file_atomic(path, text, n + 1, 0600);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int config_store_list(ConfigStore *s, char ***ret_names) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        struct dirent *de;

        d = opendir(s->dir);
        if (!d)
                return -errno;
        names = calloc(1, sizeof(char *));
        if (!names)
                return -ENOMEM;
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                char **nn;
                char *name;

                if (l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0)
                        continue;
                name = strndup(de->d_name, l - 5);
                if (!name)
                        return -ENOMEM;
                if (!config_module_name_valid(name)) {
                        free(name);
                        continue;
                }
                nn = realloc(names, (n + 2) * sizeof(char *));
                if (!nn) {
                        free(name);
                        return -ENOMEM;
                }
                names = nn;
                names[n++] = name;
                names[n] = NULL;
        }
        qsort(names, n, sizeof(char *), cmp_str);
        *ret_names = TAKE_PTR(names);
        return 0;
}
