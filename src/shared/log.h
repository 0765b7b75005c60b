/* Logging: to stderr (journald picks it up with priority prefixes when run as a unit). */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "shared/macro.h"

/* Set the maximum priority that is printed (LOG_DEBUG .. LOG_ERR); default LOG_INFO. */
void log_set_max_level(int level);
int log_get_max_level(void);
/* Prefix lines with "<N>" so that journald assigns priorities (set when JOURNAL_STREAM is set). */
void log_set_kernel_prefix(int enable);
void log_setup_from_env(void);

/* Log a message; returns -abs(error) if error != 0, else 0, so error paths are one line:
 *     return log_error_errno(r, "Failed to parse %s: %m", path);
 * "%m" expands to strerror(abs(error)). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) (void)log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, (error), __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, (error), __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, (error), __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
