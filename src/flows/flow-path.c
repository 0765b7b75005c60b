/* Path finding for flows (see flow-path.h). */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "flows/flow-path.h"
#include "shared/macro.h"

/* A medium reached, and how. */
typedef struct Node {
        const char *media;
        ssize_t parent;         /* index of the node it was reached from; -1 for the source's */
        size_t converter;       /* the converter that made it (if parent >= 0) */
        size_t depth;
} Node;

static bool strv_has(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (strcmp(*l, s) == 0)
                        return true;
        return false;
}

static bool reached(const Node *nodes, size_t n, const char *media) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(nodes[i].media, media) == 0)
                        return true;
        return false;
}

static int build(const Node *nodes, size_t goal, FlowPath *ret) {
        size_t n = nodes[goal].depth, k = n;
        size_t i = goal;

        *ret = (FlowPath){ .target_media = nodes[goal].media, .n_steps = n };
        if (n > 0) {
                ret->steps = new0(PathStep, n);
                if (!ret->steps)
                        return -ENOMEM;
        }
        while (nodes[i].parent >= 0) {
                const Node *p = &nodes[nodes[i].parent];

                ret->steps[--k] = (PathStep){ .converter = nodes[i].converter, .media_in = p->media,
                                               .media_out = nodes[i].media };
                i = (size_t)nodes[i].parent;
        }
        ret->source_media = nodes[i].media;
        return 0;
}

int flow_path_find(char *const *source_out, char *const *target_in, const PathConverter *converters,
                   size_t n_converters, size_t max_steps, FlowPath *ret) {
        _cleanup_free_ Node *nodes = NULL;
        size_t n = 0, cap = 0, head = 0;

        assert(ret);
        /* Every node is a distinct medium: at most the source's plus every output. */
        cap = strv_length(source_out);
        for (size_t c = 0; c < n_converters; c++)
                cap += strv_length(converters[c].media_out);
        nodes = new0(Node, cap + 1);
        if (!nodes)
                return -ENOMEM;

        for (char *const *m = source_out; m && *m; m++)
                if (!reached(nodes, n, *m))
                        nodes[n++] = (Node){ .media = *m, .parent = -1 };
        for (size_t i = 0; i < n; i++)
                if (strv_has(target_in, nodes[i].media))
                        return build(nodes, i, ret);

        for (; head < n; head++) {
                const Node *from = &nodes[head];

                if (from->depth >= max_steps)
                        continue;
                for (size_t c = 0; c < n_converters; c++) {
                        if (!strv_has(converters[c].media_in, from->media))
                                continue;
                        for (char *const *o = converters[c].media_out; o && *o; o++) {
                                if (reached(nodes, n, *o))
                                        continue;
                                nodes[n] = (Node){ .media = *o, .parent = (ssize_t)head, .converter = c,
                                                   .depth = from->depth + 1 };
                                if (strv_has(target_in, *o))
                                        return build(nodes, n, ret);
                                n++;
                        }
                }
        }
        return -ENOENT;
}

void flow_path_done(FlowPath *p) {
        free(p->steps);
        *p = (FlowPath){};
}
