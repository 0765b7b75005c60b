/* Logging implementation: one line per message on stderr, thread-safe. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"

static int max_level = LOG_INFO;
static int kernel_prefix;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_kernel_prefix(int enable) {
        kernel_prefix = !!enable;
}

void log_setup_from_env(void) {
        const char *e = getenv("CALL_ASSISTANT_LOG_LEVEL");

        if (e) {
                static const char *const names[] = { "emerg", "alert", "crit", "err",
                                                      "warning", "notice", "info", "debug" };
                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        if (strcmp(e, names[i]) == 0)
                                max_level = (int)i;
        }
        /* journald sets JOURNAL_STREAM for services whose stderr it reads. */
        if (getenv("JOURNAL_STREAM"))
                kernel_prefix = 1;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) {
        char buf[2048];
        int saved_errno = errno;
        va_list ap;

        if (error < 0)
                error = -error;

        if (level > max_level)
                return -error;

        /* Expand %m ourselves, to the error we were given rather than errno. */
        errno = error;
        va_start(ap, format);
        (void)vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        pthread_mutex_lock(&log_lock);
        if (kernel_prefix)
                fprintf(stderr, "<%d>%s\n", level, buf);
        else if (max_level >= LOG_DEBUG)
                fprintf(stderr, "%s:%d %s: %s\n", file, line, func, buf);
        else
                fprintf(stderr, "%s\n", buf);
        fflush(stderr);
        pthread_mutex_unlock(&log_lock);

        errno = saved_errno;
        return -error;
}
