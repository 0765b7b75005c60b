/* The config service's business logic, independent of in-process or remote use.
 *
 * Owns each module's schema (given when the module registers) and its durable configuration.
 * SetConfig order: validate -> apply hook (the orchestrator's ApplyConfig to the module) ->
 * only on success persist and bump the revision -> change notification. See
 * docs/config-service.md. Not thread-safe: call from the sd-event thread only. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "shared/macro.h"

typedef struct ConfigService ConfigService;
typedef struct ConfigApply ConfigApply;

/* Outcomes; the gRPC glue maps them 1:1 onto the status codes of the same name
 * (0, 3, 5, 9, 10, 13). */
typedef enum ConfigStatus {
        CONFIG_STATUS_OK = 0,
        CONFIG_STATUS_INVALID_ARGUMENT,    /* bad name, bad JSON, schema violations */
        CONFIG_STATUS_NOT_FOUND,           /* unknown module / no schema registered */
        CONFIG_STATUS_FAILED_PRECONDITION, /* the module refused it or is not running */
        CONFIG_STATUS_ABORTED,             /* revision mismatch or another set in progress */
        CONFIG_STATUS_INTERNAL,            /* could not persist, out of memory */
} ConfigStatus;

const char *config_status_to_string(ConfigStatus s);

/* What GetConfig/ListConfigs return: never contains a secret in clear. */
typedef struct ConfigInfo {
        char *module;
        char *config_json; /* redacted; "{}" if never configured */
        char *schema_json; /* NULL if no schema registered */
        uint64_t revision;
        uint64_t updated_at;
        char *load_error; /* non-NULL if the stored file was corrupt and moved aside */
} ConfigInfo;

void config_info_clear(ConfigInfo *i);
void config_info_array_free(ConfigInfo *a, size_t n);

/* Result of a SetConfig, handed to its completion callback. */
typedef struct ConfigSetResult {
        ConfigStatus status;
        const char *message;     /* for errors; validation errors as "path: msg; ..." */
        uint64_t revision;       /* on success */
        const char *config_json; /* on success: the config in force, redacted */
} ConfigSetResult;

typedef void (*ConfigSetDone)(const ConfigSetResult *result, void *userdata);

/* The orchestrator's ApplyConfig: deliver config_json (complete, WITH secrets, compact) to the
 * running module, then call config_apply_complete(op, ...) exactly once, now or later. */
typedef void (*ConfigApplyHook)(ConfigApply *op, const char *module, const char *config_json,
                                void *userdata);

/* Called after every durable change, with the redacted configuration only. */
typedef void (*ConfigChangeHook)(const char *module, uint64_t revision, const char *redacted_json,
                                 void *userdata);

/* Open <state_dir> (mode 0700) and load every stored file. Corrupt files are moved aside and
 * reported by ConfigInfo.load_error (and config_service_get_load_error()). */
int config_service_new(const char *state_dir, ConfigService **ret);
/* All apply operations must have been completed before. */
ConfigService *config_service_free(ConfigService *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ConfigService *, config_service_free);

void config_service_set_apply_hook(ConfigService *s, ConfigApplyHook hook, void *userdata);
void config_service_set_change_hook(ConfigService *s, ConfigChangeHook hook, void *userdata);

/* A module registered with this JSON Schema (text). -EINVAL if the name or schema is bad;
 * then *ret_error (if non-NULL) says why ("path: msg; ..."). Replaces a previous schema. */
int config_service_register_schema(ConfigService *s, const char *module, const char *schema_json,
                                   char **ret_error);

/* For (re-)applying after a module (re)start: the stored config WITH secrets and defaults,
 * compact JSON. Returns 1 and sets *ret_json if something is stored, 0 if not. Never expose
 * the result to a caller of the API. */
int config_service_get_stored_for_apply(ConfigService *s, const char *module, char **ret_json);

/* GetConfig. Returns 0 and fills *ret, or a ConfigStatus (positive) on failure. */
ConfigStatus config_service_get(ConfigService *s, const char *module, ConfigInfo *ret);
ConfigStatus config_service_get_schema(ConfigService *s, const char *module, char **ret_json);
/* ListConfigs, sorted by module name. */
int config_service_list(ConfigService *s, ConfigInfo **ret, size_t *ret_n);

/* SetConfig. done is called exactly once, possibly before this returns (validation errors,
 * or a synchronous apply hook). expected_revision is checked if has_expected. Returns 0, or
 * -ENOMEM when done could not be called. */
int config_service_set(ConfigService *s, const char *module, const char *config_json,
                       bool has_expected, uint64_t expected_revision, ConfigSetDone done,
                       void *userdata);

/* The orchestrator's answer to an apply hook call: CONFIG_STATUS_OK if the module accepted
 * the config, otherwise (normally CONFIG_STATUS_FAILED_PRECONDITION) with a message that is
 * passed on to the caller. Frees op. */
void config_apply_complete(ConfigApply *op, ConfigStatus status, const char *message);
