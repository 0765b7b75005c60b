/* call-assistantctl logs: reads a module unit's entries from the journal with sd-journal. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "ctl/ctl-logs.h"
#include "shared/log.h"
#include "shared/macro.h"


/* Get a field's value (after "NAME=") as a NUL-terminated copy, or NULL. */
static char *field(sd_journal *j, const char *name) {
        const void *data;
        size_t len, n = strlen(name);

        if (sd_journal_get_data(j, name, &data, &len) < 0 || len <= n)
                return NULL;
        return strndup((const char *)data + n + 1, len - n - 1);
}

static int print_entry(sd_journal *j, const LogsOptions *o, FILE *out) {
        _cleanup_free_ char *msg = field(j, "MESSAGE"), *ident = field(j, "SYSLOG_IDENTIFIER"),
                            *pid = field(j, "_PID"), *prio = field(j, "PRIORITY");
        uint64_t usec = 0;
        char when[64] = "";
        time_t t;
        struct tm tm;

        (void)sd_journal_get_realtime_usec(j, &usec);
        if (o->json) {
                _cleanup_(json_decrefp) json_t *e = json_pack("{s:I, s:s?, s:s?, s:s?, s:s?}",
                                                              "realtime_usec", (json_int_t)usec,
                                                              "identifier", ident, "pid", pid,
                                                              "priority", prio, "message", msg);
                if (!e)
                        return -ENOMEM;
                if (json_dumpf(e, out, JSON_COMPACT) < 0)
                        return -EIO;
                fputc('\n', out);
                return 0;
        }
        t = (time_t)(usec / 1000000);
        if (localtime_r(&t, &tm))
                strftime(when, sizeof(when), "%b %d %H:%M:%S", &tm);
        fprintf(out, "%s %s%s%s%s: %s\n", when, ident ? ident : "?", pid ? "[" : "", pid ? pid : "",
                pid ? "]" : "", msg ? msg : "");
        return 0;
}

static volatile sig_atomic_t stop_following;
static void on_stop(int sig) {
        stop_following = 1;
}

int ctl_logs(const LogsOptions *o, FILE *out) {
        _cleanup_(sd_journal_closep) sd_journal *j = NULL;
        _cleanup_free_ char *m1 = NULL, *m2 = NULL;
        uint64_t deadline = 0;
        int r;

        if (o->directory)
                r = sd_journal_open_directory(&j, o->directory, 0);
        else
                r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0)
                return log_error_errno(r, "Failed to open the journal%s%s: %m", o->directory ? " in " : "",
                                       o->directory ? o->directory : "");

        /* The unit's own output, and what systemd logged about the unit. */
        if (asprintf(&m1, "_SYSTEMD_UNIT=%s", o->unit) < 0 || asprintf(&m2, "UNIT=%s", o->unit) < 0)
                return -ENOMEM;
        r = sd_journal_add_match(j, m1, 0);
        if (r >= 0)
                r = sd_journal_add_disjunction(j);
        if (r >= 0)
                r = sd_journal_add_match(j, m2, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the journal match: %m");

        if (o->lines > 0) {
                r = sd_journal_seek_tail(j);
                if (r >= 0)
                        r = sd_journal_previous_skip(j, o->lines);
                if (r < 0)
                        return r;
                /* previous_skip leaves us on the oldest of the last N; step back before it. */
                if (r > 0)
                        (void)sd_journal_previous(j);
        } else {
                r = sd_journal_seek_head(j);
                if (r < 0)
                        return r;
        }

        if (o->follow) {
                signal(SIGINT, on_stop);
                signal(SIGTERM, on_stop);
                if (o->follow_timeout_ms > 0) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 +
                                   (uint64_t)o->follow_timeout_ms;
                }
        }

        for (;;) {
                r = sd_journal_next(j);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the journal: %m");
                if (r > 0) {
                        r = print_entry(j, o, out);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!o->follow || stop_following)
                        break;
                fflush(out);
                uint64_t wait = (uint64_t)-1;
                if (deadline) {
                        struct timespec ts;
                        uint64_t now;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
                        if (now >= deadline)
                                break;
                        wait = (deadline - now) * 1000;
                }
                r = sd_journal_wait(j, wait);
                if (r < 0 && r != -EINTR)
                        return log_error_errno(r, "Failed to wait for the journal: %m");
                if (stop_following)
                        break;
        }
        fflush(out);
        return 0;
}
