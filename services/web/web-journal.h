/* The dashboard's view of the journal (sd-journal, on the sd-event thread): new entries of
 * module units as they arrive, and pages of older entries for scrollback. */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct WebJournal WebJournal;

/* Which module a unit belongs to; NULL: not a module unit (the entry is skipped). */
typedef const char *(*web_journal_lookup_t)(const char *unit, void *userdata);
/* A new entry of a module's unit, as JSON (see web_journal_entry_json); borrowed. */
typedef void (*web_journal_entry_t)(const char *module, json_t *entry, void *userdata);

/* directory: a journal directory (e.g. a container's), or NULL for the local journal. */
int web_journal_new(WebJournal **ret, sd_event *event, const char *directory, web_journal_lookup_t lookup,
                    web_journal_entry_t on_entry, void *userdata);
WebJournal *web_journal_free(WebJournal *j);

typedef struct WebLogQuery {
        const char *unit;
        const char *before;     /* cursor: entries older than this one; NULL: the newest */
        unsigned limit;         /* at most this many entries (1..1000) */
        int max_priority;       /* 0..7: only entries at least this important */
        const char *text;       /* only entries whose message contains this (case-insensitive) */
} WebLogQuery;

/* {"entries": [oldest..newest], "before": cursor of the oldest returned or scanned entry
 * (null when there is nothing older), "complete": false if the scan stopped early (a text
 * filter that matched little: ask again with "before")}. */
int web_journal_query(WebJournal *j, const WebLogQuery *q, json_t **ret);

/* Parse a query string (before=&limit=&priority=&q=) into q; strings point into *storage,
 * which the caller frees. -EINVAL on a bad value, with what in *ret_error. */
int web_log_query_parse(const char *query, WebLogQuery *q, char **storage, const char **ret_error);
