/* The whole offline check of a modules directory: manifests and the dependency graph. */
#pragma once

#include <stdio.h>

/* Validate the manifests and the graph of a modules dir without starting anything; print
 * every problem and the start order to out. Returns 0 if there is no error, -EINVAL if there
 * is one, another negative errno if the directory cannot be scanned. */
int modules_check(const char *modules_dir, FILE *out);
