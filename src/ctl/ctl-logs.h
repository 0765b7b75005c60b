/* call-assistantctl logs: a module's journal entries. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

typedef struct LogsOptions {
        const char *unit;        /* call-assistant-module@<escaped dir>.service */
        const char *directory;   /* journal directory (NULL: the local system journal) */
        unsigned lines;          /* how many recent entries to show first (0: all) */
        bool follow;
        bool json;
        int follow_timeout_ms;   /* for tests: stop following after this long (0: forever) */
} LogsOptions;

/* Print the unit's entries to out. Returns 0, or a negative errno. */
int ctl_logs(const LogsOptions *o, FILE *out);
