/* Reading YAML input within limits (size, file type, nesting depth). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "shared/macro.h"
#include "shared/yaml-input.h"

static const char *file_type_name(mode_t mode) {
        if (S_ISFIFO(mode))
                return "a FIFO";
        if (S_ISSOCK(mode))
                return "a socket";
        if (S_ISCHR(mode))
                return "a character device";
        if (S_ISBLK(mode))
                return "a block device";
        if (S_ISDIR(mode))
                return "a folder";
        return "a special file";
}

static int fail(char **ret_error, int r, const char *format, ...) _printf_(3, 4);
static int fail(char **ret_error, int r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return *ret_error ? r : -ENOMEM;
}

static int open_failed(const char *path, int error, char **ret_error) {
        struct stat st;

        if (error == ELOOP)
                return fail(ret_error, -ELOOP, "is a symlink loop");
        if (error == ENOENT && lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlink(path, target, sizeof(target) - 1);
                target[n > 0 ? n : 0] = 0;
                return fail(ret_error, -ENOENT, "is a dangling symlink to '%s'", target);
        }
        if (error == ENOENT)
                return fail(ret_error, -ENOENT, "does not exist");
        return fail(ret_error, -error, "cannot be read: %s", strerror(error));
}

int yaml_input_read(const char *path, size_t max_size, char **ret_data, size_t *ret_size, char **ret_error) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        struct stat st;

        *ret_error = NULL;
        /* Look before opening: opening a FIFO for reading blocks until a writer comes, and
         * opening a device may act on it. */
        if (stat(path, &st) < 0)
                return open_failed(path, errno, ret_error);
        if (!S_ISREG(st.st_mode))
                return fail(ret_error, -EINVAL, "is %s, not a regular file", file_type_name(st.st_mode));

        /* O_NONBLOCK: should it have become a FIFO since, opening does not block either. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return open_failed(path, errno, ret_error);
        if (fstat(fd, &st) < 0)
                return fail(ret_error, -errno, "cannot be read: %s", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return fail(ret_error, -EINVAL, "is %s, not a regular file", file_type_name(st.st_mode));
        if ((uint64_t)st.st_size > max_size)
                return fail(ret_error, -EFBIG, "is %lld bytes; at most %zu are read", (long long)st.st_size,
                            max_size);

        data = malloc(max_size + 2);
        if (!data)
                return -ENOMEM;
        /* The size may change while we read: never more than max_size + 1 bytes. */
        while (size <= max_size) {
                ssize_t k = read(fd, data + size, max_size + 1 - size);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return fail(ret_error, -errno, "cannot be read: %s", strerror(errno));
                }
                if (k == 0)
                        break;
                size += (size_t)k;
        }
        if (size > max_size)
                return fail(ret_error, -EFBIG, "is more than %zu bytes; at most %zu are read", max_size, max_size);
        data[size] = 0;
        *ret_data = TAKE_PTR(data);
        *ret_size = size;
        return 0;
}

int yaml_input_too_deep(const char *data, size_t size, unsigned max_depth, unsigned *ret_line, unsigned *ret_column) {
        yaml_parser_t parser;
        unsigned depth = 0;
        int r = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *)data, size);
        for (;;) {
                yaml_event_t e;
                bool end;

                if (!yaml_parser_parse(&parser, &e))
                        break; /* the loader reports it, with its own words */
                if (e.type == YAML_SEQUENCE_START_EVENT || e.type == YAML_MAPPING_START_EVENT) {
                        if (++depth > max_depth) {
                                *ret_line = (unsigned)e.start_mark.line + 1;
                                *ret_column = (unsigned)e.start_mark.column + 1;
                                r = 1;
                        }
                } else if (e.type == YAML_SEQUENCE_END_EVENT || e.type == YAML_MAPPING_END_EVENT)
                        depth--;
                end = e.type == YAML_STREAM_END_EVENT || r == 1;
                yaml_event_delete(&e);
                if (end)
                        break;
        }
        yaml_parser_delete(&parser);
        return r;
}
