/* Diagnostics: problems found in input files, each with file, line, column and field. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "shared/macro.h"

typedef enum DiagnosticSeverity {
        DIAG_WARNING,
        DIAG_ERROR,
} DiagnosticSeverity;

typedef struct Diagnostic {
        DiagnosticSeverity severity;
        char *file;
        unsigned line, column;   /* 1-based; 0 when unknown */
        char *field;             /* may be NULL */
        char *message;
} Diagnostic;

typedef struct Diagnostics {
        Diagnostic *items;
        size_t n;
        unsigned n_errors, n_warnings;
} Diagnostics;

void diagnostics_add(Diagnostics *d, DiagnosticSeverity severity, const char *file, unsigned line, unsigned column,
                     const char *field, const char *format, ...) _printf_(7, 8);
/* "FILE:LINE:COLUMN: error: field 'name': message", one per line, in order. */
void diagnostics_print(const Diagnostics *d, FILE *f);
/* One diagnostic as that line; control characters in it appear as \xNN. */
void diagnostic_format(const Diagnostic *g, char *buf, size_t size);
/* Copy s to buf with control characters (0x00-0x1f, 0x7f) written as \xNN: for names and
 * values from files and modules shown on a terminal. */
void diagnostics_escape(const char *s, char *buf, size_t size);
void diagnostics_done(Diagnostics *d);
