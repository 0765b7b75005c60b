/* The web dashboard service: process-agnostic logic on the sd-event thread.
 *
 * It is a client of the orchestrator like call-assistantctl: it reaches OrchestratorService
 * and ConfigService over gRPC at control_address (in-process: the daemon's own control
 * socket, through the daemon's RpcRuntime), follows WatchEvents and the journal, keeps the
 * module list the pages show, and answers the HTTP API's jobs that the h2o thread
 * (web-server.c) hands over. It never looks at the orchestrator's internals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "rpc/rpc.h"

typedef struct WebService WebService;

typedef struct WebServiceOptions {
        const char *listen;             /* "127.0.0.1:8480" */
        const char *assets_dir;         /* the pages */
        const char *tls_certificate;    /* PEM; "" or NULL: plain HTTP */
        const char *tls_key;
        const char *state_dir;          /* the password hash: <state_dir>/web/password (0600) */
        const char *journal_directory;  /* NULL or "": the local journal */
        const char *control_address;    /* gRPC target of the orchestrator's control endpoint */
        size_t max_body;                /* 0: 256 KiB */
        unsigned resources_interval_ms; /* CPU/memory refresh while a page is open; 0: 2000 */
} WebServiceOptions;

/* Loads the password hash, binds the HTTP socket, starts the h2o thread, and starts
 * following the orchestrator (retrying until its control endpoint answers). */
int web_service_new(WebService **ret, sd_event *event, RpcRuntime *rt, const WebServiceOptions *o);
/* Before the RpcRuntime goes: cancels its calls, stops the h2o thread. */
WebService *web_service_free(WebService *w);

const char *web_service_url(WebService *w);

/* ---- for the gRPC glue (web-service-grpc.c) ---- */

bool web_service_password_set(WebService *w);
unsigned web_service_n_sessions(WebService *w);
unsigned web_service_n_streams(WebService *w);
unsigned web_service_n_live_views(WebService *w);
bool web_service_tls(WebService *w);
/* Store a new password hash durably, then end every session; done runs with the number
 * of sessions ended (or a negative errno: -EINVAL for a hash we do not take). */
typedef void (*web_revoke_done_t)(int sessions_or_error, void *userdata);
int web_service_set_password_hash(WebService *w, const char *hash, web_revoke_done_t done, void *userdata);
int web_service_revoke_sessions(WebService *w, web_revoke_done_t done, void *userdata);
