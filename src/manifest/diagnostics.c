/* Diagnostics: collected problems, printed GCC-style so editors can jump to them. */
#include <stdlib.h>
#include <string.h>

#include "manifest/diagnostics.h"

void diagnostics_add(Diagnostics *d, DiagnosticSeverity severity, const char *file, unsigned line, unsigned column,
                     const char *field, const char *format, ...) {
        Diagnostic *items, *g;
        va_list ap;

        items = realloc(d->items, (d->n + 1) * sizeof(Diagnostic));
        if (!items)
                return; /* out of memory: the problem is lost, but nothing is corrupted */
        d->items = items;
        g = &d->items[d->n];
        *g = (Diagnostic){ .severity = severity, .line = line, .column = column };
        g->file = file ? strdup(file) : NULL;
        g->field = field ? strdup(field) : NULL;
        va_start(ap, format);
        if (vasprintf(&g->message, format, ap) < 0)
                g->message = NULL;
        va_end(ap);
        d->n++;
        if (severity == DIAG_ERROR)
                d->n_errors++;
        else
                d->n_warnings++;
}

void diagnostics_escape(const char *s, char *buf, size_t size) {
        size_t k = 0;

        if (size == 0)
                return;
        for (; *s && k + 1 < size; s++) {
                unsigned char c = (unsigned char)*s;
                if (c < 0x20 || c == 0x7f) {
                        if (k + 5 > size)
                                break;
                        k += (size_t)snprintf(buf + k, size - k, "\\x%02x", c);
                } else
                        buf[k++] = (char)c;
        }
        buf[k] = 0;
}

void diagnostic_format(const Diagnostic *g, char *buf, size_t size) {
        char file[600], field[200], message[1200];

        /* File and folder names and values from the files may hold control characters: shown
         * escaped, never sent raw to a terminal. */
        diagnostics_escape(g->file ? g->file : "?", file, sizeof(file));
        diagnostics_escape(g->field ? g->field : "", field, sizeof(field));
        diagnostics_escape(g->message ? g->message : "(out of memory)", message, sizeof(message));
        if (g->line > 0)
                snprintf(buf, size, "%s:%u:%u: %s: %s%s%s%s", file, g->line, g->column,
                         g->severity == DIAG_ERROR ? "error" : "warning", g->field ? "field '" : "", field,
                         g->field ? "': " : "", message);
        else
                snprintf(buf, size, "%s: %s: %s%s%s%s", file, g->severity == DIAG_ERROR ? "error" : "warning",
                         g->field ? "field '" : "", field, g->field ? "': " : "", message);
}

void diagnostics_print(const Diagnostics *d, FILE *f) {
        char buf[2048];

        for (size_t i = 0; i < d->n; i++) {
                diagnostic_format(&d->items[i], buf, sizeof(buf));
                fprintf(f, "%s\n", buf);
        }
}

void diagnostics_done(Diagnostics *d) {
        for (size_t i = 0; i < d->n; i++) {
                free(d->items[i].file);
                free(d->items[i].field);
                free(d->items[i].message);
        }
        free(d->items);
        *d = (Diagnostics){};
}
