/* The whole offline check of a modules directory (call-assistantctl check, call-assistant --check). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "graph/check.h"
#include "graph/dep-graph.h"
#include "shared/log.h"

int modules_check(const char *modules_dir, FILE *out) {
        Diagnostics d = {};
        ModuleSet set = {};
        Manifest **order = NULL;
        int r;

        assert(modules_dir);
        assert(out);

        r = discovery_scan(modules_dir, &set, &d);
        if (r >= 0)
                r = graph_resolve(&set, &d);
        if (r < 0) {
                diagnostics_done(&d);
                module_set_done(&set);
                return log_error_errno(r, "Failed to check %s: %m", modules_dir);
        }
        diagnostics_print(&d, out);
        if (graph_start_order(&set, &order) >= 0) {
                /* Names, folders and reasons come from the files: never raw to a terminal. */
                char dir[1024], name[300], rel[1024], reason[1024];

                diagnostics_escape(modules_dir, dir, sizeof(dir));
                fprintf(out, "%zu module(s) in %s; start order:", set.n, dir);
                for (Manifest **o = order; *o; o++) {
                        diagnostics_escape((*o)->name, name, sizeof(name));
                        fprintf(out, " %s", name);
                }
                fprintf(out, "\n");
                for (size_t i = 0; i < set.n; i++)
                        if (set.items[i]->disabled_reason) {
                                diagnostics_escape(set.items[i]->name ? set.items[i]->name : "?", name, sizeof(name));
                                diagnostics_escape(set.items[i]->rel_dir, rel, sizeof(rel));
                                diagnostics_escape(set.items[i]->disabled_reason, reason, sizeof(reason));
                                fprintf(out, "disabled: %s (%s): %s\n", name, rel, reason);
                        }
                free(order);
        }
        r = d.n_errors > 0 ? -EINVAL : 0;
        fprintf(out, "%u error(s), %u warning(s)\n", d.n_errors, d.n_warnings);
        diagnostics_done(&d);
        module_set_done(&set);
        return r;
}
