/* The dashboard's JSON: modules, entities, field errors and Server-Sent Events, rendered
 * from the orchestrator's protobuf messages. Pure functions, unit-tested. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "callassistant/v1/orchestrator.pb-c.h"

/* "READY", "WAITING_FOR_CONFIG", ...; "UNKNOWN" for anything else. */
const char *web_module_status_name(int status);
const char *web_health_name(int health);

/* A module as the dashboard shows it. cpu_percent < 0: not known (yet). */
json_t *web_module_json(const Callassistant__V1__ModuleInfo *m, double cpu_percent);
json_t *web_entity_json(const char *module, const Callassistant__V1__Entity *e, int available);
json_t *web_entity_type_json(const Callassistant__V1__EntityType *t);

/* Validation errors of the config service ("path: message; path: message") as
 * [{"path": "/a/b", "message": "..."}]; a message without a path gets path "". */
json_t *web_field_errors(const char *message);

/* {"error": message} (+ "fields" if given, stolen), compact, as a malloc'ed string. */
char *web_error_body(const char *message, json_t *fields);

/* HTTP status for a gRPC status code of the orchestrator's or config service's answers. */
int web_http_status_of_rpc(int rpc_status);

/* One Server-Sent Event: "event: NAME\ndata: JSON\n\n". data is compact JSON (no newline). */
char *web_sse_event(const char *name, const json_t *data, size_t *ret_len);

/* Escape a module name or other text for use in a URL path segment or an HTML-free
 * context is the browser's job; here only: is this a valid module name as the config
 * service defines it ([a-z0-9][a-z0-9._-]*, at most 64)? Unit names and manifests allow
 * more, so the dashboard accepts any printable name without '/' up to 255 bytes. */
int web_name_valid(const char *s, size_t len);
