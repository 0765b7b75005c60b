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

void diagnostic_format(const Diagnostic *g, char *buf, size_t size) {
        char where[600];

        if (g->line > 0)
                snprintf(where, sizeof(where), "%s:%u:%u", g->file ? g->file : "?", g->line, g->column);
        else
                snprintf(where, sizeof(where), "%s", g->file ? g->file : "?");
        snprintf(buf, size, "%s: %s: %s%s%s%s", where, g->severity == DIAG_ERROR ? "error" : "warning",
                 g->field ? "field '" : "", g->field ? g->field : "", g->field ? "': " : "",
                 g->message ? g->message : "(out of memory)");
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
