/* module.yaml: parsing and validation of one module's manifest. */
#pragma once

#include <stdbool.h>

#include "manifest/diagnostics.h"
#include "manifest/module-network.h"

/* A manifest is a few lines: anything bigger or deeper is refused before it is parsed. */
#define MANIFEST_MAX_SIZE (64u * 1024u)
#define MANIFEST_MAX_DEPTH 16u

typedef struct Manifest {
        char *path;          /* .../module.yaml, as discovered */
        char *abs_dir;       /* folder holding it, symlinks resolved (what the unit binds and runs in) */
        char *rel_dir;       /* folder relative to the modules root (the unit instance) */
        char *name, *version, *description, *command, *dev_command;
        char **dependencies;          /* NULL-terminated */
        unsigned *dependency_lines;   /* where each dependency was written */
        unsigned *dependency_columns;
        unsigned name_line, name_column;
        ModuleNetwork network;        /* what it may reach and bind (default: loopback only) */
        bool valid;                   /* no errors */
        char *disabled_reason;        /* set when invalid or by the graph */
} Manifest;

/* Names: 1 to 64 characters of [a-z0-9._-], starting with a letter or digit. */
bool manifest_name_is_valid(const char *name);

/* Parse a manifest. Problems go to d; the manifest is returned even when invalid
 * (valid == false, disabled_reason set): a file that is not a regular one (a FIFO is refused
 * without being opened), a dangling symlink or a symlink loop, more than MANIFEST_MAX_SIZE
 * bytes or MANIFEST_MAX_DEPTH levels of nesting, invalid YAML or fields. Negative errno only on
 * out-of-memory. */
int manifest_parse_file(const char *path, const char *rel_dir, Manifest **ret, Diagnostics *d);
Manifest *manifest_free(Manifest *m);
int manifest_disable(Manifest *m, const char *reason);

static inline void manifest_freep(Manifest **m) {
        manifest_free(*m);
}
