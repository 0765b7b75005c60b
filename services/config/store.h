/* Durable per-module configuration files under <statedir>/config/. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "shared/macro.h"

typedef struct ConfigStore ConfigStore;

/* Positive results of config_store_load(). */
enum {
        CONFIG_STORE_ABSENT = 0,  /* nothing stored for the module */
        CONFIG_STORE_LOADED = 1,  /* *ret_record filled */
        CONFIG_STORE_CORRUPT = 2, /* the file was unreadable or invalid and moved aside */
};

typedef struct ConfigRecord {
        uint64_t revision;
        uint64_t updated_at; /* microseconds since the epoch */
        json_t *config;      /* a JSON object (owned) */
} ConfigRecord;

/* True for [a-z0-9][a-z0-9._-]*, at most 64 characters. */
bool config_module_name_valid(const char *name);

/* Open (creating with mode 0700) the directory; removes temp files left by a crash. */
int config_store_open(const char *dir, ConfigStore **ret);
ConfigStore *config_store_free(ConfigStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ConfigStore *, config_store_free);

const char *config_store_get_dir(const ConfigStore *s);

/* Load <module>.json. Returns CONFIG_STORE_LOADED and fills *ret_record,
 * CONFIG_STORE_ABSENT, or CONFIG_STORE_CORRUPT after renaming the file to
 * <module>.json.corrupt-<usec>; then *ret_problem (if non-NULL) says
 * "FILE:LINE:COLUMN: what; kept as PATH" (no quoted file content).
 * Negative errno on other failures (-EINVAL for a bad module name). */
int config_store_load(ConfigStore *s, const char *module, ConfigRecord *ret_record,
                      char **ret_problem);

/* Write the record atomically (temp file, fsync, rename, fsync dir), mode 0600,
 * pretty-printed JSON {"revision", "updated_at", "config"}. */
int config_store_save(ConfigStore *s, const char *module, const ConfigRecord *record);

/* Names of all modules with a stored file, sorted, NULL-terminated. */
int config_store_list(ConfigStore *s, char ***ret_names);

void config_record_clear(ConfigRecord *r);
