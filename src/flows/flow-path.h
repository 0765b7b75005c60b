/* Path finding for flows: the shortest chain of converter types from what a source gives to
 * what a target takes. Pure: no I/O. */
#pragma once

#include <stddef.h>

/* A converter entity type some module offers. */
typedef struct PathConverter {
        const char *module;
        const char *type;
        char *const *media_in;    /* NULL-terminated */
        char *const *media_out;
} PathConverter;

typedef struct PathStep {
        size_t converter;         /* index into the converters given */
        const char *media_in;     /* borrowed from the converters/source/target lists */
        const char *media_out;
} PathStep;

typedef struct FlowPath {
        const char *source_media; /* what the source gives */
        const char *target_media; /* what the target takes */
        PathStep *steps;          /* converters in order, source to target */
        size_t n_steps;
} FlowPath;

/* Breadth-first over media: the first path found with the fewest converters (none at all if
 * the source gives something the target takes). Ties go to the source's media order, then to
 * the converters' order as given (callers sort them by module and type), then to each
 * converter's output order. Cycles in the type graph are fine. -ENOENT: no path within
 * max_steps converters; -ENOMEM. */
int flow_path_find(char *const *source_out, char *const *target_in, const PathConverter *converters,
                   size_t n_converters, size_t max_steps, FlowPath *ret);
void flow_path_done(FlowPath *p);
