/* Reading YAML input within limits: never blocks on a FIFO, never loads a huge or deeply nested
 * file (libyaml's loader takes time quadratic in the nesting depth: 400 KB of "[[[[..." took
 * 99 s). */
#pragma once

#include <stddef.h>

/* Read path whole for parsing. It must be a regular file (symlinks to one are followed) of at
 * most max_size bytes; a FIFO, socket, device or folder is refused without being opened. On
 * failure returns a negative errno and sets *ret_error to what is wrong, for the user:
 *   -ENOENT "does not exist" or "is a dangling symlink to 'TARGET'", -ELOOP "is a symlink loop",
 *   -EINVAL "is a FIFO, not a regular file" (socket, device, folder), -EFBIG "is N bytes; at most
 *   M are read", or "cannot be read: <strerror>". */
int yaml_input_read(const char *path, size_t max_size, char **ret_data, size_t *ret_size, char **ret_error);

/* Walk the events of a YAML text and tell whether collections nest deeper than max_depth,
 * stopping right there: returns 1 and the 1-based line and column of the collection that is
 * one too deep, else 0 (a syntax error is left for the loader to report). */
int yaml_input_too_deep(const char *data, size_t size, unsigned max_depth, unsigned *ret_line, unsigned *ret_column);
