/* Discovery: find every module.yaml below a modules directory. */
#pragma once

#include "manifest/diagnostics.h"
#include "manifest/module-manifest.h"

typedef struct ModuleSet {
        Manifest **items;   /* sorted by rel_dir */
        size_t n;
} ModuleSet;

/* Scan root recursively. Skipped: hidden folders (".*"), node_modules, __pycache__, venv,
 * build*, target, dist; folders below one that holds a module.yaml (a module's own
 * subfolders are not modules); symlinked folders already visited; deeper than 8 levels.
 * Duplicate names are errors naming both files; both modules are disabled. */
int discovery_scan(const char *root, ModuleSet *ret, Diagnostics *d);
void module_set_done(ModuleSet *s);
Manifest *module_set_find(const ModuleSet *s, const char *name);
