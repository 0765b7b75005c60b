/* The dashboard's HTTP server: h2o (libh2o-evloop) on a thread and loop of its own.
 *
 * The h2o thread owns only what is the web server's own: connections, sessions, the login
 * rate limit, the live event streams, and the latest module snapshot it was handed. It
 * never touches orchestrator state: whatever needs the orchestrator becomes a WebJob handed
 * to the sd-event thread through the submit callback (web-service.c queues it and wakes
 * its loop with an eventfd); the answer comes back with web_server_reply(). In the other
 * direction the sd-event thread publishes immutable, reference-counted blobs (the module
 * list as JSON, pre-rendered events) with h2o's inter-thread queue. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct WebServer WebServer;
typedef struct WebJobLink WebJobLink;

/* Immutable bytes shared between the threads. */
typedef struct WebBlob {
        atomic_uint refs;
        size_t len;
        char data[];
} WebBlob;

WebBlob *web_blob_new(const char *data, size_t len);
/* Takes ownership of a malloc'ed string (NULL in: NULL out). */
WebBlob *web_blob_from_string(char *s, size_t len);
WebBlob *web_blob_ref(WebBlob *b);
WebBlob *web_blob_unref(WebBlob *b);

typedef enum WebJobKind {
        WEB_JOB_MODULE,        /* GET  /api/modules/NAME */
        WEB_JOB_MODULE_OP,     /* POST /api/modules/NAME/{start,stop,restart}; arg: the operation */
        WEB_JOB_CONFIG_GET,    /* GET  /api/modules/NAME/config */
        WEB_JOB_CONFIG_SET,    /* PUT  /api/modules/NAME/config; body: {"config": {...}, "revision": N} */
        WEB_JOB_LOGS,          /* GET  /api/modules/NAME/logs; arg: the query string */
        WEB_JOB_ENTITIES,      /* GET  /api/entities */
        WEB_JOB_STREAMS,       /* no answer: the number of event streams changed */
        WEB_JOB_REVOKED,       /* answer to web_server_revoke_sessions(): count, control */
        WEB_JOB_LIVE_START,    /* POST /api/entities/MODULE/ENTITY/live; arg: the entity id, body: the SDP offer,
                                * session_id and stream_id: the page's session and event stream */
        WEB_JOB_LIVE_STOP,     /* DELETE /api/live/FLOW; arg: the flow id, session_id */
        WEB_JOB_STREAM_ENDED,  /* no answer: the event stream stream_id ended (its live views end with it) */
} WebJobKind;

/* A request for the sd-event thread. The server hands it over with the submit callback;
 * the service gives it back with web_server_reply(), or frees it with web_job_free() when
 * the server is gone. */
typedef struct WebJob {
        struct WebJob *next;     /* the service's queue */
        WebJobKind kind;
        char *module;
        char *arg;
        char *body;
        size_t body_len;
        /* WEB_JOB_REVOKED */
        unsigned count;
        void *control;
        /* WEB_JOB_LIVE_*, WEB_JOB_STREAM_ENDED: who asked (ids the h2o thread gave out) */
        uint64_t session_id;
        uint64_t stream_id;
        /* the server's */
        WebJobLink *link;
} WebJob;

WebJob *web_job_free(WebJob *j);

/* Called on the h2o thread; must be thread-safe and take ownership of the job. */
typedef void (*web_submit_t)(WebJob *job, void *userdata);

typedef struct WebServerOptions {
        const char *listen;          /* "127.0.0.1:8480", "[::1]:0" */
        const char *assets_dir;      /* the static files */
        const char *tls_certificate; /* PEM files; both or neither */
        const char *tls_key;
        size_t max_body;             /* request bodies larger than this get 413 */
        web_submit_t submit;
        void *userdata;
} WebServerOptions;

/* Binds the listening socket and loads the TLS certificate (errors are reported here, on
 * the caller's thread); web_server_start() then runs the loop on its own thread. */
int web_server_new(WebServer **ret, const WebServerOptions *o);
int web_server_start(WebServer *s);
/* Ends the event streams and open requests (503), waits for the connections to close (at
 * most 2 s), joins the thread. Jobs still with the service are the service's to free. */
WebServer *web_server_free(WebServer *s);

/* "http://127.0.0.1:8480/" with the bound port. */
const char *web_server_url(WebServer *s);
bool web_server_tls(WebServer *s);
unsigned web_server_n_sessions(WebServer *s);
unsigned web_server_n_streams(WebServer *s);
/* Whether any open stream follows log lines (so the service can skip rendering them). */
bool web_server_wants_logs(WebServer *s);

/* From the sd-event thread (thread-safe): */
/* Answer a job: status and a JSON body (taken; NULL: a generic error body). */
void web_server_reply(WebServer *s, WebJob *job, int status, char *body);
/* The module list for GET /api/modules and the start of every event stream (ref taken). */
void web_server_publish_modules(WebServer *s, WebBlob *modules_json);
/* Send a pre-rendered event to every stream; log lines (log_module set) only to streams
 * that follow that module's log (ref taken). */
void web_server_broadcast(WebServer *s, WebBlob *event, const char *log_module);
/* The password hash logins are checked against (NULL or "": nobody can log in). */
void web_server_set_password_hash(WebServer *s, const char *hash);
/* End every session and its streams; the count comes back as a WEB_JOB_REVOKED job with
 * this control pointer. */
void web_server_revoke_sessions(WebServer *s, void *control);
