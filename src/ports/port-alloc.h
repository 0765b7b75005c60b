/* gRPC port allocation: a port per module from a range, kept across restarts on disk. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct PortAllocator PortAllocator;

/* Is the port taken by someone else? (Default: try to bind 127.0.0.1:port.) */
typedef bool (*port_in_use_t)(uint16_t port, void *userdata);

/* Load <state_dir>/ports ("name port" lines). A corrupt file is reported on err with
 * file:line and moved aside to ports.corrupt-<time>, never silently overwritten. */
int port_allocator_new(PortAllocator **ret, const char *state_dir, uint16_t min, uint16_t max, FILE *err);
PortAllocator *port_allocator_free(PortAllocator *pa);
void port_allocator_set_in_use_check(PortAllocator *pa, port_in_use_t check, void *userdata);

/* The module's port: the remembered one if still free (or if keep_busy, e.g. for a module
 * that is still running and so holds it itself), otherwise a new free one. -EADDRINUSE
 * if the range is exhausted. */
int port_allocator_get(PortAllocator *pa, const char *name, bool keep_busy, uint16_t *ret);
/* Forget modules that are gone (names: NULL-terminated list of current modules) and write
 * the file atomically (temp file, fsync, rename, fsync of the directory; mode 0600). */
int port_allocator_save(PortAllocator *pa, char *const *names);

/* Does binding 127.0.0.1:port with SO_REUSEADDR (as gRPC servers do) fail? */
bool port_in_use_by_bind(uint16_t port, void *userdata);
