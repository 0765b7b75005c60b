/* The dashboard's journal reader: follows new entries of module units, answers scrollback
 * queries. Both sd_journal objects stay on the sd-event thread. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>

#include "services/web/web-journal.h"
#include "shared/log.h"
#include "shared/macro.h"

#define MAX_MESSAGE 8192
#define MAX_SCAN 20000   /* entries looked at per query with a text filter */

struct WebJournal {
        sd_event *event;
        char *directory;
        sd_journal *follow;
        sd_journal *query;
        sd_event_source *io;
        web_journal_lookup_t lookup;
        web_journal_entry_t on_entry;
        void *userdata;
};

static int journal_open(const char *directory, sd_journal **ret) {
        if (directory)
                return sd_journal_open_directory(ret, directory, 0);
        return sd_journal_open(ret, SD_JOURNAL_LOCAL_ONLY);
}

/* A field's value without "NAME=", NUL-terminated; NULL if absent. */
static char *field(sd_journal *j, const char *name, size_t max) {
        const void *data;
        size_t len, n = strlen(name);

        if (sd_journal_get_data(j, name, &data, &len) < 0 || len <= n)
                return NULL;
        len -= n + 1;
        return strndup((const char *)data + n + 1, MIN(len, max));
}

/* Journal messages are bytes: keep valid UTF-8, replace the rest with U+FFFD. */
static char *utf8_sanitize(const char *s) {
        size_t n = strlen(s);
        char *out = malloc(n * 3 + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char)s[i];
                size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
                bool ok = len > 0 && i + len <= n;
                for (size_t k = 1; ok && k < len; k++)
                        ok = ((unsigned char)s[i + k] >> 6) == 2;
                if (ok && len == 2 && c < 0xc2)
                        ok = false; /* overlong */
                if (ok) {
                        memcpy(o, s + i, len);
                        o += len;
                        i += len;
                } else {
                        memcpy(o, "\xef\xbf\xbd", 3);
                        o += 3;
                        i++;
                }
        }
        *o = 0;
        return out;
}

static json_t *entry_json(sd_journal *j) {
        _cleanup_free_ char *raw = field(j, "MESSAGE", MAX_MESSAGE), *msg = NULL, *ident = field(j, "SYSLOG_IDENTIFIER", 256),
                            *pid = field(j, "_PID", 32), *prio = field(j, "PRIORITY", 8), *cursor = NULL;
        uint64_t usec = 0;
        json_t *e;

        if (sd_journal_get_cursor(j, &cursor) < 0)
                return NULL;
        (void)sd_journal_get_realtime_usec(j, &usec);
        msg = utf8_sanitize(raw ? raw : "");
        if (!msg)
                return NULL;
        e = json_pack("{s:s, s:I, s:i, s:s, s:s, s:i}", "cursor", cursor, "usec", (json_int_t)usec, "priority",
                      prio ? atoi(prio) : 6, "message", msg, "identifier", ident ? ident : "", "pid",
                      pid ? atoi(pid) : 0);
        return e;
}

/* The unit an entry is about: its own output (_SYSTEMD_UNIT) or what systemd said about it
 * (UNIT, from PID 1). */
static char *entry_unit(sd_journal *j) {
        char *u = field(j, "_SYSTEMD_UNIT", 256);

        return u ? u : field(j, "UNIT", 256);
}

static int on_journal(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        WebJournal *w = userdata;
        int r;

        r = sd_journal_process(w->follow);
        if (r < 0)
                return log_warning_errno(r, "web: cannot process journal changes, ignoring: %m"), 0;
        for (;;) {
                _cleanup_free_ char *unit = NULL;
                const char *module;
                json_t *e;

                r = sd_journal_next(w->follow);
                if (r <= 0)
                        break;
                unit = entry_unit(w->follow);
                module = unit ? w->lookup(unit, w->userdata) : NULL;
                if (!module)
                        continue;
                e = entry_json(w->follow);
                if (!e)
                        continue;
                w->on_entry(module, e, w->userdata);
                json_decref(e);
        }
        return 0;
}

int web_journal_new(WebJournal **ret, sd_event *event, const char *directory, web_journal_lookup_t lookup,
                    web_journal_entry_t on_entry, void *userdata) {
        WebJournal *w;
        int r, fd, events;

        w = calloc(1, sizeof(WebJournal));
        if (!w)
                return -ENOMEM;
        w->event = sd_event_ref(event);
        w->lookup = lookup;
        w->on_entry = on_entry;
        w->userdata = userdata;
        if (directory && !(w->directory = strdup(directory))) {
                web_journal_free(w);
                return -ENOMEM;
        }
        r = journal_open(w->directory, &w->follow);
        if (r >= 0)
                r = journal_open(w->directory, &w->query);
        if (r < 0) {
                log_error_errno(r, "web: cannot open the journal%s%s: %m", directory ? " in " : "", directory ? directory : "");
                web_journal_free(w);
                return r;
        }
        /* Follow from the end: scrollback comes from queries. */
        r = sd_journal_seek_tail(w->follow);
        if (r >= 0)
                r = sd_journal_previous(w->follow);
        fd = sd_journal_get_fd(w->follow);
        events = sd_journal_get_events(w->follow);
        if (r < 0 || fd < 0 || events < 0) {
                r = r < 0 ? r : fd < 0 ? fd : events;
                log_error_errno(r, "web: cannot follow the journal: %m");
                web_journal_free(w);
                return r;
        }
        r = sd_event_add_io(event, &w->io, fd, (uint32_t)events, on_journal, w);
        if (r < 0) {
                web_journal_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

WebJournal *web_journal_free(WebJournal *w) {
        if (!w)
                return NULL;
        sd_event_source_disable_unref(w->io);
        sd_journal_close(w->follow);
        sd_journal_close(w->query);
        sd_event_unref(w->event);
        free(w->directory);
        free(w);
        return NULL;
}

static bool contains_ci(const char *hay, const char *needle) {
        return !needle || !*needle || strcasestr(hay, needle);
}

int web_journal_query(WebJournal *w, const WebLogQuery *q, json_t **ret) {
        _cleanup_free_ char *m1 = NULL, *m2 = NULL;
        _cleanup_(json_decrefp) json_t *entries = json_array(), *res = NULL;
        _cleanup_free_ char *oldest = NULL;
        sd_journal *j = w->query;
        unsigned scanned = 0;
        bool complete = true, more = false;
        int r;

        if (!entries)
                return -ENOMEM;
        sd_journal_flush_matches(j);
        if (asprintf(&m1, "_SYSTEMD_UNIT=%s", q->unit) < 0 || asprintf(&m2, "UNIT=%s", q->unit) < 0)
                return -ENOMEM;
        r = sd_journal_add_match(j, m1, 0);
        if (r >= 0)
                r = sd_journal_add_disjunction(j);
        if (r >= 0)
                r = sd_journal_add_match(j, m2, 0);
        if (r >= 0 && q->max_priority < 7) {
                r = sd_journal_add_conjunction(j);
                for (int p = 0; r >= 0 && p <= q->max_priority; p++) {
                        char m[32];
                        snprintf(m, sizeof(m), "PRIORITY=%d", p);
                        r = sd_journal_add_match(j, m, 0);
                }
        }
        if (r < 0)
                return r;

        if (q->before) {
                r = sd_journal_seek_cursor(j, q->before);
                if (r < 0)
                        return r;
                /* Onto the entry of the cursor (or the nearest), then one before it. */
                r = sd_journal_previous(j);
                if (r > 0 && sd_journal_test_cursor(j, q->before) > 0)
                        r = sd_journal_previous(j);
        } else {
                r = sd_journal_seek_tail(j);
                if (r >= 0)
                        r = sd_journal_previous(j);
        }
        if (r < 0)
                return r;

        while (r > 0) {
                _cleanup_free_ char *msg = NULL;
                json_t *e;

                if (json_array_size(entries) >= q->limit) {
                        more = true;
                        break;
                }
                if (++scanned > MAX_SCAN) {
                        complete = false;
                        more = true;
                        break;
                }
                free(oldest);
                oldest = NULL;
                (void)sd_journal_get_cursor(j, &oldest);
                if (q->text && *q->text) {
                        msg = field(j, "MESSAGE", MAX_MESSAGE);
                        if (!msg || !contains_ci(msg, q->text)) {
                                r = sd_journal_previous(j);
                                continue;
                        }
                }
                e = entry_json(j);
                if (e && json_array_insert_new(entries, 0, e) < 0)
                        return -ENOMEM;
                r = sd_journal_previous(j);
        }
        if (r < 0)
                return r;
        res = json_pack("{s:O, s:s?, s:b}", "entries", entries, "before", more ? oldest : NULL, "complete", complete);
        if (!res)
                return -ENOMEM;
        *ret = TAKE_PTR(res);
        return 0;
}

static char *query_decode(const char *p, size_t len) {
        char *out = malloc(len + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (p[i] == '+')
                        *o++ = ' ';
                else if (p[i] == '%' && i + 2 < len) {
                        char hex[3] = { p[i + 1], p[i + 2], 0 };
                        char *end;
                        unsigned long v = strtoul(hex, &end, 16);
                        if (*end || v == 0) {
                                free(out);
                                return NULL;
                        }
                        *o++ = (char)v;
                        i += 2;
                } else if (p[i] == '%') {
                        free(out);
                        return NULL;
                } else
                        *o++ = p[i];
        }
        *o = 0;
        return out;
}

int web_log_query_parse(const char *query, WebLogQuery *q, char **storage, const char **ret_error) {
        /* Decoded values are kept one after another in one allocation. */
        size_t n = strlen(query), used = 0;
        char *buf = malloc(n + 4);
        const char *p = query;

        if (!buf)
                return -ENOMEM;
        q->limit = 200;
        q->max_priority = 7;
        *storage = buf;
        while (*p) {
                const char *amp = strchr(p, '&'), *eq;
                size_t len = amp ? (size_t)(amp - p) : strlen(p);
                _cleanup_free_ char *value = NULL;

                eq = memchr(p, '=', len);
                if (!eq) {
                        p += len + (amp ? 1 : 0);
                        continue;
                }
                value = query_decode(eq + 1, len - (size_t)(eq + 1 - p));
                if (!value) {
                        *ret_error = "malformed percent-encoding in the query";
                        return -EINVAL;
                }
#define KEY(k) ((size_t)(eq - p) == strlen(k) && memcmp(p, k, strlen(k)) == 0)
                if (KEY("before") || KEY("q")) {
                        size_t vl = strlen(value);
                        if (used + vl + 1 > n + 4) {
                                *ret_error = "query too long";
                                return -EINVAL;
                        }
                        memcpy(buf + used, value, vl + 1);
                        if (KEY("before"))
                                q->before = *value ? buf + used : NULL;
                        else
                                q->text = buf + used;
                        used += vl + 1;
                } else if (KEY("limit")) {
                        char *end;
                        unsigned long v = strtoul(value, &end, 10);
                        if (*end || !*value || v < 1 || v > 1000) {
                                *ret_error = "limit: expected 1..1000";
                                return -EINVAL;
                        }
                        q->limit = (unsigned)v;
                } else if (KEY("priority")) {
                        if (strlen(value) != 1 || value[0] < '0' || value[0] > '7') {
                                *ret_error = "priority: expected 0..7";
                                return -EINVAL;
                        }
                        q->max_priority = value[0] - '0';
                }
#undef KEY
                p += len + (amp ? 1 : 0);
        }
        return 0;
}
