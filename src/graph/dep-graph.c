/* The dependency graph over manifests, by module name. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "graph/dep-graph.h"

enum { WHITE, GREY, BLACK };

typedef struct Walk {
        ModuleSet *set;
        Diagnostics *d;
        int *color;
        size_t *stack;
        size_t depth;
        bool *on_cycle;
} Walk;

static ssize_t index_of(const ModuleSet *set, const char *name) {
        for (size_t i = 0; i < set->n; i++)
                if (set->items[i]->name && strcmp(set->items[i]->name, name) == 0)
                        return (ssize_t)i;
        return -1;
}

static void report_cycle(Walk *w, size_t from) {
        size_t len = 0, n = w->depth - from, start = 0;
        char path[1024] = "";
        Manifest *first;

        /* Start the path at the smallest name, so a cycle reads the same however it was found. */
        for (size_t k = 1; k < n; k++)
                if (strcmp(w->set->items[w->stack[from + k]]->name, w->set->items[w->stack[from + start]]->name) < 0)
                        start = k;
        first = w->set->items[w->stack[from + start]];
        for (size_t k = 0; k < n; k++) {
                size_t idx = w->stack[from + (start + k) % n];
                len += (size_t)snprintf(path + len, len < sizeof(path) ? sizeof(path) - len : 0, "%s -> ",
                                        w->set->items[idx]->name);
                w->on_cycle[idx] = true;
        }
        len = MIN(len, sizeof(path) - 1);
        snprintf(path + len, sizeof(path) - len, "%s", first->name);
        diagnostics_add(w->d, DIAG_ERROR, first->path, first->name_line, first->name_column, "dependencies",
                        "dependency cycle: %s", path);
}

static void visit(Walk *w, size_t i) {
        Manifest *m = w->set->items[i];

        w->color[i] = GREY;
        w->stack[w->depth++] = i;
        for (char **dep = m->dependencies; dep && *dep; dep++) {
                ssize_t j = index_of(w->set, *dep);
                if (j < 0)
                        continue;
                if (w->color[j] == GREY) {
                        for (size_t k = 0; k < w->depth; k++)
                                if (w->stack[k] == (size_t)j)
                                        report_cycle(w, k);
                } else if (w->color[j] == WHITE)
                        visit(w, (size_t)j);
        }
        w->depth--;
        w->color[i] = BLACK;
}

int graph_resolve(ModuleSet *set, Diagnostics *d) {
        Walk w = { .set = set, .d = d };
        bool changed;
        int r = 0;

        w.color = calloc(set->n + 1, sizeof(int));
        w.stack = calloc(set->n + 1, sizeof(size_t));
        w.on_cycle = calloc(set->n + 1, sizeof(bool));
        if (!w.color || !w.stack || !w.on_cycle) {
                r = -ENOMEM;
                goto finish;
        }

        /* Missing dependencies, at the place they are written. */
        for (size_t i = 0; i < set->n; i++) {
                Manifest *m = set->items[i];
                for (size_t k = 0; m->dependencies && m->dependencies[k]; k++) {
                        char reason[200];
                        if (index_of(set, m->dependencies[k]) >= 0)
                                continue;
                        diagnostics_add(d, DIAG_ERROR, m->path, m->dependency_lines ? m->dependency_lines[k] : 0,
                                        m->dependency_columns ? m->dependency_columns[k] : 0, "dependencies",
                                        "module '%s' depends on '%s', which does not exist", m->name,
                                        m->dependencies[k]);
                        snprintf(reason, sizeof(reason), "missing dependency '%s'", m->dependencies[k]);
                        if (manifest_disable(m, reason) < 0) {
                                r = -ENOMEM;
                                goto finish;
                        }
                }
        }

        /* Cycles. */
        for (size_t i = 0; i < set->n; i++)
                if (w.color[i] == WHITE && set->items[i]->name)
                        visit(&w, i);
        for (size_t i = 0; i < set->n; i++)
                if (w.on_cycle[i] && manifest_disable(set->items[i], "part of a dependency cycle") < 0) {
                        r = -ENOMEM;
                        goto finish;
                }

        /* Whoever depends on a disabled module is disabled too. */
        do {
                changed = false;
                for (size_t i = 0; i < set->n; i++) {
                        Manifest *m = set->items[i];
                        if (m->disabled_reason)
                                continue;
                        for (char **dep = m->dependencies; dep && *dep; dep++) {
                                ssize_t j = index_of(set, *dep);
                                char reason[300];
                                if (j < 0 || !set->items[j]->disabled_reason)
                                        continue;
                                snprintf(reason, sizeof(reason), "dependency '%s' is disabled: %s", *dep,
                                         set->items[j]->disabled_reason);
                                diagnostics_add(d, DIAG_ERROR, m->path, m->name_line, m->name_column, NULL,
                                                "module '%s' is disabled because its %s", m->name, reason);
                                if (manifest_disable(m, reason) < 0) {
                                        r = -ENOMEM;
                                        goto finish;
                                }
                                changed = true;
                                break;
                        }
                }
        } while (changed);

finish:
        free(w.color);
        free(w.stack);
        free(w.on_cycle);
        return r;
}

static int by_name(const void *a, const void *b) {
        const Manifest *x = *(Manifest *const *)a, *y = *(Manifest *const *)b;
        return strcmp(x->name, y->name);
}

int graph_start_order(const ModuleSet *set, Manifest ***ret) {
        Manifest **order, **ready;
        bool *placed;
        size_t n = 0;

        order = calloc(set->n + 1, sizeof(Manifest *));
        ready = calloc(set->n + 1, sizeof(Manifest *));
        placed = calloc(set->n + 1, sizeof(bool));
        if (!order || !ready || !placed) {
                free(order);
                free(ready);
                free(placed);
                return -ENOMEM;
        }
        /* Kahn's algorithm in rounds; each round sorted by name, so the order is stable. */
        for (;;) {
                size_t n_ready = 0;
                for (size_t i = 0; i < set->n; i++) {
                        Manifest *m = set->items[i];
                        bool ok = !placed[i] && !m->disabled_reason && m->name;
                        for (char **dep = m->dependencies; ok && dep && *dep; dep++) {
                                ssize_t j = index_of(set, *dep);
                                ok = j >= 0 && placed[j];
                        }
                        if (ok)
                                ready[n_ready++] = m;
                }
                if (n_ready == 0)
                        break;
                qsort(ready, n_ready, sizeof(Manifest *), by_name);
                for (size_t k = 0; k < n_ready; k++) {
                        order[n++] = ready[k];
                        placed[index_of(set, ready[k]->name)] = true;
                }
        }
        free(ready);
        free(placed);
        *ret = order;
        return 0;
}
