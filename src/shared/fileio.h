/* File helpers. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Replace path with data atomically: a temporary file in the same directory, written,
 * fsync()ed, renamed over path, then the directory fsync()ed. A crash at any moment
 * leaves either the old or the new content. */
int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode);
/* The same without fsync(): still never a torn file for readers, but not durable across a
 * power loss; for files in volatile directories (/run). */
int write_file_atomic_volatile(const char *path, const void *data, size_t size, mode_t mode);

/* mkdir -p with the given mode for the directories it creates. */
int mkdir_p(const char *path, mode_t mode);
/* mkdir -p, then make sure the directory is safe to keep sockets or secrets in: a real
 * directory (not a symlink), ours (owned by our effective uid), and writable by nobody else
 * (no group or other write bit). -ENOTDIR, -EPERM (someone else's) or -EACCES (writable by
 * others) if not; an existing directory is never changed. */
int mkdir_p_safe(const char *path, mode_t mode);
