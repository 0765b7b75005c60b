/* The dependency graph: missing dependencies, cycles, disablement and start order. */
#pragma once

#include "manifest/diagnostics.h"
#include "manifest/module-discovery.h"

/* Checks every manifest's dependencies: a dependency on an unknown module and every module
 * on a cycle (reported with the full path, "a -> b -> a") are errors; a module whose
 * dependency is disabled is disabled too, saying why. Returns 0 or -ENOMEM. */
int graph_resolve(ModuleSet *set, Diagnostics *d);

/* A start order of the enabled modules: dependencies before dependents, ties by name.
 * ret is a NULL-terminated array of borrowed pointers (free the array only). */
int graph_start_order(const ModuleSet *set, Manifest ***ret);
