/* JSON Schema subset for module configuration: compile, validate, defaults, secrets. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "shared/macro.h"

typedef struct Schema Schema;

/* One problem, located by a JSON pointer (RFC 6901): into the document for validation
 * errors, into the schema for compile errors. "" is the root. */
typedef struct SchemaError {
        char *path;
        char *message;
} SchemaError;

typedef struct SchemaErrors {
        SchemaError *items;
        size_t n;
} SchemaErrors;

/* The placeholder that replaces secret values in everything shown to a caller. */
#define SCHEMA_SECRET_PLACEHOLDER "********"

/* Compile a schema. Returns 0 and sets *ret on success; returns -EINVAL and fills *errors
 * (every unsupported keyword, bad keyword value and invalid pattern, with its path in the
 * schema) if the schema is not acceptable; -ENOMEM on allocation failure. */
int schema_compile(json_t *json, Schema **ret, SchemaErrors *errors);
Schema *schema_free(Schema *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Schema *, schema_free);

/* The schema's JSON as given to schema_compile() (borrowed). */
json_t *schema_get_json(const Schema *s);

/* Validate doc. Returns 0 if valid, a positive count of errors appended to *errors if not,
 * -ENOMEM on allocation failure. */
int schema_validate(const Schema *s, json_t *doc, SchemaErrors *errors);

/* A deep copy of doc with missing properties filled from "default" (recursively through
 * properties that are present and through array items). NULL on allocation failure. */
json_t *schema_apply_defaults(const Schema *s, json_t *doc);

/* True if the schema itself marks a secret ("writeOnly": true or "format": "password"). */
bool schema_is_secret(const Schema *s);
/* True if any property anywhere below s is secret. */
bool schema_has_secrets(const Schema *s);

/* A deep copy of doc where every present secret value is replaced by
 * SCHEMA_SECRET_PLACEHOLDER. NULL on allocation failure. */
json_t *schema_redact(const Schema *s, json_t *doc);

/* A deep copy of new_doc where each secret that is missing or equal to the placeholder takes
 * its value from old_doc (objects matched by property name, arrays by index). A placeholder
 * with nothing stored behind it is removed, so that "required" reports it. NULL on OOM. */
json_t *schema_merge_secrets(const Schema *s, json_t *old_doc, json_t *new_doc);

void schema_errors_clear(SchemaErrors *e);
/* Append an error; path and message are copied. -ENOMEM on failure. */
int schema_errors_add(SchemaErrors *e, const char *path, const char *fmt, ...) _printf_(3, 4);
/* "path: message; path: message" (the format documented in config.proto). NULL on OOM. */
char *schema_errors_format(const SchemaErrors *e);
