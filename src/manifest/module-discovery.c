/* Discovery: a bounded, loop-safe recursive scan for module.yaml files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "manifest/module-discovery.h"

#define MAX_DEPTH 8

typedef struct Visited {
        dev_t dev;
        ino_t ino;
} Visited;

typedef struct Scan {
        ModuleSet *set;
        Diagnostics *d;
        Visited *visited;
        size_t n_visited;
} Scan;

static bool skip_folder(const char *name) {
        static const char *const skip[] = { "node_modules", "__pycache__", "venv", "target", "dist" };

        if (name[0] == '.')
                return true;
        if (strncmp(name, "build", 5) == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(skip); i++)
                if (strcmp(name, skip[i]) == 0)
                        return true;
        return false;
}

static int add_manifest(Scan *s, Manifest *m) {
        Manifest **items = realloc(s->set->items, (s->set->n + 1) * sizeof(Manifest *));

        if (!items) {
                manifest_free(m);
                return -ENOMEM;
        }
        s->set->items = items;
        s->set->items[s->set->n++] = m;
        return 0;
}

static int scan_dir(Scan *s, const char *path, const char *rel, unsigned depth) {
        _cleanup_free_ char *manifest = NULL;
        struct dirent **entries = NULL;
        struct stat st;
        int n, r = 0;

        if (stat(path, &st) < 0) {
                if (depth == 0)
                        diagnostics_add(s->d, DIAG_ERROR, path, 0, 0, NULL, "cannot read the modules directory: %s",
                                        strerror(errno));
                return 0;
        }
        if (depth == 0 && !S_ISDIR(st.st_mode)) {
                diagnostics_add(s->d, DIAG_ERROR, path, 0, 0, NULL, "the modules directory is not a folder");
                return 0;
        }
        for (size_t i = 0; i < s->n_visited; i++)
                if (s->visited[i].dev == st.st_dev && s->visited[i].ino == st.st_ino)
                        return 0; /* a symlink loop or a second way to the same folder */
        Visited *v = realloc(s->visited, (s->n_visited + 1) * sizeof(Visited));
        if (!v)
                return -ENOMEM;
        s->visited = v;
        s->visited[s->n_visited++] = (Visited){ st.st_dev, st.st_ino };

        if (asprintf(&manifest, "%s/module.yaml", path) < 0)
                return -ENOMEM;
        /* lstat: a module.yaml that is a dangling symlink or a loop makes a module too, which
         * the parser then reports; so does one that is not a regular file. */
        if (depth > 0 && lstat(manifest, &(struct stat){}) == 0) {
                Manifest *m = NULL;
                r = manifest_parse_file(manifest, rel, &m, s->d);
                if (r < 0)
                        return r;
                return add_manifest(s, m);
        }
        if (depth >= MAX_DEPTH)
                return 0;

        n = scandir(path, &entries, NULL, alphasort);
        if (n < 0) {
                if (depth == 0)
                        diagnostics_add(s->d, DIAG_ERROR, path, 0, 0, NULL, "cannot read the modules directory: %s",
                                        strerror(errno));
                return 0;
        }
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *child = NULL, *child_rel = NULL;
                const char *name = entries[i]->d_name;
                struct stat cst;

                if (r < 0 || skip_folder(name))
                        goto next;
                if (asprintf(&child, "%s/%s", path, name) < 0) {
                        child = NULL;
                        r = -ENOMEM;
                        goto next;
                }
                if (stat(child, &cst) < 0) {
                        /* Maybe a module folder reached through a symlink: say why it is not one. */
                        if ((errno == ENOENT || errno == ELOOP) && entries[i]->d_type == DT_LNK)
                                diagnostics_add(s->d, DIAG_WARNING, child, 0, 0, NULL, "%s, skipped",
                                                errno == ELOOP ? "a symlink loop" : "a dangling symlink");
                        goto next;
                }
                if (!S_ISDIR(cst.st_mode))
                        goto next;
                if (depth == 0)
                        child_rel = strdup(name);
                else if (asprintf(&child_rel, "%s/%s", rel, name) < 0)
                        child_rel = NULL;
                r = child_rel ? scan_dir(s, child, child_rel, depth + 1) : -ENOMEM;
        next:
                free(entries[i]);
        }
        free(entries);
        return r;
}

static int by_rel_dir(const void *a, const void *b) {
        const Manifest *x = *(Manifest *const *)a, *y = *(Manifest *const *)b;
        return strcmp(x->rel_dir, y->rel_dir);
}

int discovery_scan(const char *root, ModuleSet *ret, Diagnostics *d) {
        Scan s = { .set = ret, .d = d };
        int r;

        *ret = (ModuleSet){};
        r = scan_dir(&s, root, "", 0);
        free(s.visited);
        if (r < 0) {
                module_set_done(ret);
                return r;
        }
        if (ret->n > 1)
                qsort(ret->items, ret->n, sizeof(Manifest *), by_rel_dir);

        /* Names are unique. */
        for (size_t i = 0; i < ret->n; i++)
                for (size_t j = i + 1; j < ret->n; j++) {
                        Manifest *a = ret->items[i], *b = ret->items[j];
                        if (!a->name || !b->name || strcmp(a->name, b->name) != 0)
                                continue;
                        diagnostics_add(d, DIAG_ERROR, b->path, b->name_line, b->name_column, "name",
                                        "duplicate module name '%s' (also used by %s:%u:%u); both are disabled",
                                        b->name, a->path, a->name_line, a->name_column);
                        (void)manifest_disable(a, "duplicate module name");
                        (void)manifest_disable(b, "duplicate module name");
                }
        return 0;
}

void module_set_done(ModuleSet *s) {
        for (size_t i = 0; i < s->n; i++)
                manifest_free(s->items[i]);
        free(s->items);
        *s = (ModuleSet){};
}

Manifest *module_set_find(const ModuleSet *s, const char *name) {
        for (size_t i = 0; i < s->n; i++)
                if (s->items[i]->name && strcmp(s->items[i]->name, name) == 0)
                        return s->items[i];
        return NULL;
}
