/* The dashboard's HTTP server on h2o: routing, login and sessions, static files, event
 * streams. Everything here runs on the h2o thread, except the functions documented in
 * web-server.h as callable from the sd-event thread (they only post messages). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "services/web/web-auth.h"
#include "services/web/web-json.h"
#include "services/web/web-server.h"
#include "shared/log.h"
#include "shared/macro.h"

#define COOKIE_NAME "ca_session"
#define SESSION_CAPACITY 64
#define SESSION_IDLE_USEC (24ull * 3600 * 1000000)         /* a day without any request */
#define SESSION_MAX_AGE_USEC (30ull * 24 * 3600 * 1000000) /* a month after login */
#define STREAM_MAX_PENDING (4u * 1024 * 1024)              /* a stream that falls this far behind is ended */
#define STREAM_KEEPALIVE_MS 25000
/* h2o reads nothing from an HTTP/1 connection while it answers, so a page that went away is
 * noticed only when a write to its stream fails: streams that own live views get a comment
 * this often, and their flows end within a few seconds of the page. */
#define STREAM_LIVE_PING_MS 1000
#define STOP_GRACE_MS 2000
#define MAX_PASSWORD_LEN 1024
#define MAX_SDP_LEN (64u * 1024)
#define MAX_ENTITY_ID_LEN 256

/* ---- blobs ---- */

WebBlob *web_blob_new(const char *data, size_t len) {
        WebBlob *b = malloc(sizeof(WebBlob) + len + 1);

        if (!b)
                return NULL;
        atomic_init(&b->refs, 1);
        b->len = len;
        memcpy(b->data, data, len);
        b->data[len] = 0;
        return b;
}

WebBlob *web_blob_from_string(char *str, size_t len) {
        WebBlob *b;

        if (!str)
                return NULL;
        b = web_blob_new(str, len);
        free(str);
        return b;
}

WebBlob *web_blob_ref(WebBlob *b) {
        if (b)
                atomic_fetch_add(&b->refs, 1);
        return b;
}

WebBlob *web_blob_unref(WebBlob *b) {
        if (b && atomic_fetch_sub(&b->refs, 1) == 1)
                free(b);
        return NULL;
}

/* ---- jobs and their link to a request ---- */

/* Shared by a job (or a login check) and the guard in its request's memory pool: whichever
 * lets go last frees it. req is cleared when the request goes away first. */
struct WebJobLink {
        atomic_uint refs;
        h2o_req_t *req;
        h2o_linklist_t pending;   /* WebServer.pending, while req is set */
};

typedef struct LinkGuard {
        WebJobLink *link;
} LinkGuard;

static void link_unref(WebJobLink *l) {
        if (l && atomic_fetch_sub(&l->refs, 1) == 1)
                free(l);
}

static void link_detach(WebJobLink *l) {
        l->req = NULL;
        if (h2o_linklist_is_linked(&l->pending))
                h2o_linklist_unlink(&l->pending);
}

static void on_guard_dispose(void *p) {
        LinkGuard *g = p;

        link_detach(g->link);
        link_unref(g->link);
}

WebJob *web_job_free(WebJob *j) {
        if (!j)
                return NULL;
        free(j->module);
        free(j->arg);
        if (j->body)
                explicit_bzero(j->body, j->body_len);
        free(j->body);
        link_unref(j->link);
        free(j);
        return NULL;
}

/* ---- the server ---- */

typedef struct Handler {
        h2o_handler_t super;
        WebServer *server;
} Handler;

typedef struct Stream Stream;

typedef enum MessageKind {
        MSG_REPLY,
        MSG_MODULES,
        MSG_BROADCAST,
        MSG_PASSWORD,
        MSG_REVOKE,
        MSG_LOGIN_DONE,
        MSG_STOP,
} MessageKind;

typedef struct LoginCheck LoginCheck;

typedef struct Message {
        h2o_multithread_message_t super;
        MessageKind kind;
        WebJob *job;
        int status;
        char *body;
        WebBlob *blob;
        char *text;          /* log module, password hash */
        void *control;
        LoginCheck *login;
} Message;

struct LoginCheck {
        LoginCheck *next;
        WebJobLink *link;
        char *hash;
        char *password;
        int result;
};

struct WebServer {
        WebServerOptions o;
        char *listen, *assets_dir;
        char url[128];
        bool tls;
        int listen_fd;

        h2o_globalconf_t config;
        h2o_context_t ctx;
        h2o_accept_ctx_t accept_ctx;
        h2o_evloop_t *loop;
        h2o_socket_t *listener;
        SSL_CTX *ssl;
        h2o_multithread_receiver_t receiver;
        bool context_ready;

        pthread_t thread;
        bool thread_running;
        bool stopping;       /* h2o thread */
        atomic_bool stopped; /* no more messages are taken */

        /* h2o thread only */
        WebSessions sessions;
        WebRateLimit rate;
        char *password_hash;
        WebBlob *modules;
        h2o_linklist_t streams;
        uint64_t next_stream_id;
        h2o_linklist_t pending;
        unsigned n_log_streams;
        h2o_timeout_t keepalive;
        h2o_timeout_entry_t keepalive_entry;
        h2o_timeout_t live_ping;
        h2o_timeout_entry_t live_ping_entry;

        atomic_uint n_sessions_pub, n_streams_pub, n_log_streams_pub;

        /* the password checker thread */
        pthread_t crypt_thread;
        bool crypt_running;
        pthread_mutex_t crypt_lock;
        pthread_cond_t crypt_cond;
        LoginCheck *crypt_queue;
        bool crypt_stop;
};

struct Stream {
        h2o_generator_t generator;
        WebServer *server;
        h2o_req_t *req;
        h2o_linklist_t link;
        uint64_t id;         /* given to the page in its first event; names it in live view requests */
        uint64_t session_id;
        char *logs_module;   /* NULL: no log lines; "*": every module's */
        char *pending;
        size_t pending_len, pending_cap;
        char *inflight;
        bool sending, finished;
        bool live;           /* a live view was started on it (pinged often) */
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void publish_counts(WebServer *s) {
        size_t n = 0;

        for (h2o_linklist_t *l = s->streams.next; l != &s->streams; l = l->next)
                n++;
        atomic_store(&s->n_streams_pub, (unsigned)n);
        atomic_store(&s->n_sessions_pub, (unsigned)s->sessions.n_sessions);
        atomic_store(&s->n_log_streams_pub, s->n_log_streams);
}

static void post(WebServer *s, Message *m) {
        h2o_multithread_send_message(&s->receiver, &m->super);
}

static Message *message_new(MessageKind kind) {
        Message *m = calloc(1, sizeof(Message));

        if (m)
                m->kind = kind;
        return m;
}

static void message_free(Message *m) {
        if (!m)
                return;
        web_job_free(m->job);
        free(m->body);
        web_blob_unref(m->blob);
        free(m->text);
        free(m);
}

/* ---- responses ---- */

static const char *reason_of(int status) {
        switch (status) {
        case 200: return "OK";
        case 202: return "Accepted";
        case 303: return "See Other";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 409: return "Conflict";
        case 413: return "Payload Too Large";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Entity";
        case 429: return "Too Many Requests";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return status < 400 ? "OK" : "Error";
        }
}

static void respond(h2o_req_t *req, int status, const char *body, size_t len) {
        req->res.status = status;
        req->res.content_length = len;
        req->res.reason = reason_of(status);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json; charset=utf-8"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        h2o_send_inline(req, body, len);
}

static void respond_error(h2o_req_t *req, int status, const char *message) {
        _cleanup_free_ char *body = web_error_body(message, NULL);

        if (!body)
                respond(req, 500, H2O_STRLIT("{\"error\":\"out of memory\"}"));
        else
                respond(req, status, body, strlen(body));
}

static void respond_405(h2o_req_t *req, const char *allow) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
        respond_error(req, 405, "method not allowed");
}

/* ---- request helpers ---- */

static bool method_is(h2o_req_t *req, const char *m) {
        return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static h2o_iovec_t header_value(h2o_req_t *req, const h2o_token_t *token) {
        ssize_t i = h2o_find_header(&req->headers, token, -1);

        return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

static h2o_iovec_t header_value_by_name(h2o_req_t *req, const char *name) {
        ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);

        return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

static void peer_address(h2o_req_t *req, char *buf, size_t size) {
        struct sockaddr_storage ss;
        socklen_t n = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
        char host[NI_MAXHOST];
        size_t len;

        snprintf(buf, size, "?");
        if (n == 0)
                return;
        len = h2o_socket_getnumerichost((struct sockaddr *)&ss, n, host);
        if (len != SIZE_MAX)
                snprintf(buf, size, "%.*s", (int)len, host);
}

static const WebSession *session_of(WebServer *s, h2o_req_t *req) {
        h2o_iovec_t cookie = header_value(req, H2O_TOKEN_COOKIE);
        const char *v;
        size_t len;

        /* A request may carry several Cookie headers (HTTP/2 splits them). */
        for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) >= 0;) {
                cookie = req->headers.entries[i].value;
                v = web_cookie_find(cookie.base, cookie.len, COOKIE_NAME, &len);
                if (v)
                        return web_sessions_find(&s->sessions, v, len, now_usec());
        }
        return NULL;
}

/* A state-changing request must come from our own pages: the session's CSRF token in
 * X-CSRF-Token, and an Origin (if the browser sent one) equal to our own. */
static bool origin_ok(h2o_req_t *req) {
        h2o_iovec_t origin = header_value_by_name(req, "origin");
        char expect[512];
        int n;

        if (!origin.base)
                return true;
        n = snprintf(expect, sizeof(expect), "%.*s://%.*s", (int)req->scheme->name.len, req->scheme->name.base,
                     (int)req->authority.len, req->authority.base);
        return n > 0 && (size_t)n == origin.len && strncasecmp(expect, origin.base, origin.len) == 0;
}

static bool csrf_ok(h2o_req_t *req, const WebSession *session) {
        h2o_iovec_t token = header_value_by_name(req, "x-csrf-token");

        return token.base && web_token_equal(token.base, token.len, session->csrf, strlen(session->csrf)) &&
               origin_ok(req);
}

static bool content_type_is_json(h2o_req_t *req) {
        h2o_iovec_t ct = header_value(req, H2O_TOKEN_CONTENT_TYPE);

        return ct.base && ct.len >= 16 && strncasecmp(ct.base, "application/json", 16) == 0 &&
               (ct.len == 16 || ct.base[16] == ';' || ct.base[16] == ' ');
}

/* Percent-decode a path segment into a new string; NULL if it is malformed. */
static char *segment_decode(const char *p, size_t len) {
        char *out = malloc(len + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (p[i] == '%') {
                        unsigned v;
                        char hex[3] = {};
                        if (i + 2 >= len) {
                                free(out);
                                return NULL;
                        }
                        hex[0] = p[i + 1];
                        hex[1] = p[i + 2];
                        if (sscanf(hex, "%2x", &v) != 1 || v == 0) {
                                free(out);
                                return NULL;
                        }
                        *o++ = (char)v;
                        i += 2;
                } else
                        *o++ = p[i];
        }
        *o = 0;
        return out;
}

/* ---- jobs ---- */

/* Hand a job (taken) over to the service, linked to its request. */
static void submit_prepared(WebServer *s, h2o_req_t *req, WebJob *j) {
        WebJobLink *l = calloc(1, sizeof(WebJobLink));
        LinkGuard *g;

        if (!l) {
                web_job_free(j);
                respond_error(req, 503, "out of memory");
                return;
        }
        atomic_init(&l->refs, 2);
        l->req = req;
        h2o_linklist_insert(&s->pending, &l->pending);
        g = h2o_mem_alloc_shared(&req->pool, sizeof(LinkGuard), on_guard_dispose);
        g->link = l;
        j->link = l;
        s->o.submit(j, s->o.userdata);
}

static void submit_job(WebServer *s, h2o_req_t *req, WebJobKind kind, const char *module, const char *arg,
                       size_t arg_len) {
        WebJob *j = calloc(1, sizeof(WebJob));

        if (!j) {
                respond_error(req, 503, "out of memory");
                return;
        }
        j->kind = kind;
        j->module = module ? strdup(module) : NULL;
        j->arg = arg ? strndup(arg, arg_len) : NULL;
        if (req->entity.len > 0) {
                j->body = strndup(req->entity.base, req->entity.len);
                j->body_len = req->entity.len;
        }
        if ((module && !j->module) || (arg && !j->arg) || (req->entity.len > 0 && !j->body)) {
                web_job_free(j);
                respond_error(req, 503, "out of memory");
                return;
        }
        submit_prepared(s, req, j);
}

void web_server_reply(WebServer *s, WebJob *job, int status, char *body) {
        Message *m;

        if (atomic_load(&s->stopped) || !(m = message_new(MSG_REPLY))) {
                free(body);
                web_job_free(job);
                return;
        }
        m->job = job;
        m->status = status;
        m->body = body;
        post(s, m);
}

static void on_reply(WebServer *s, Message *m) {
        WebJobLink *l = m->job->link;
        h2o_req_t *req = l ? l->req : NULL;

        if (!req)
                return; /* the client went away */
        link_detach(l);
        if (m->body)
                respond(req, m->status, m->body, strlen(m->body));
        else
                respond_error(req, m->status, reason_of(m->status));
}

static void submit_control(WebServer *s, WebJobKind kind, unsigned count, void *control) {
        WebJob *j = calloc(1, sizeof(WebJob));

        if (!j)
                return;
        j->kind = kind;
        j->count = count;
        j->control = control;
        s->o.submit(j, s->o.userdata);
}

static void submit_stream_ended(WebServer *s, uint64_t stream_id) {
        WebJob *j = calloc(1, sizeof(WebJob));

        /* Without memory the live views of the stream stay until the orchestrator ends them. */
        if (!j)
                return;
        j->kind = WEB_JOB_STREAM_ENDED;
        j->stream_id = stream_id;
        s->o.submit(j, s->o.userdata);
}

/* ---- event streams ---- */

static void stream_send(Stream *st);

/* The stream is over, whichever way it ended: the service hears of it (its live views end). */
static void stream_detach(Stream *st) {
        WebServer *s = st->server;

        st->finished = true;
        if (st->logs_module)
                s->n_log_streams--;
        h2o_linklist_unlink(&st->link);
        publish_counts(s);
        submit_stream_ended(s, st->id);
}

static void stream_finish(Stream *st) {
        if (st->finished)
                return;
        stream_detach(st);
        /* The connection goes with the stream: no idle keep-alive connection is left behind
         * (the page opens a new one when it reconnects). */
        st->req->http1_is_persistent = 0;
        if (!st->sending)
                h2o_send(st->req, NULL, 0, H2O_SEND_STATE_FINAL);
        /* else: the final send happens once the current one is done (on_stream_proceed). */
}

static void on_stream_proceed(h2o_generator_t *g, h2o_req_t *req) {
        Stream *st = (Stream *)g;
        h2o_iovec_t buf;

        free(st->inflight);
        st->inflight = NULL;
        st->sending = false;
        if (!st->finished) {
                stream_send(st);
                return;
        }
        /* Finished while a write was out: what was queued meanwhile (the logout event of a
         * revoked session) goes with the final send, not lost. */
        if (st->pending_len == 0) {
                h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
                return;
        }
        st->inflight = st->pending;
        buf = h2o_iovec_init(st->inflight, st->pending_len);
        st->pending = NULL;
        st->pending_len = st->pending_cap = 0;
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

static void on_stream_stop(h2o_generator_t *g, h2o_req_t *req) {
        Stream *st = (Stream *)g;

        /* The client went away: h2o will not call proceed again. */
        st->sending = false;
        if (!st->finished)
                stream_detach(st);
}

static void on_stream_dispose(void *p) {
        Stream *st = p;

        if (!st->finished)
                stream_detach(st);
        free(st->pending);
        free(st->inflight);
        free(st->logs_module);
}

static void stream_send(Stream *st) {
        h2o_iovec_t buf;

        if (st->sending || st->finished || st->pending_len == 0)
                return;
        st->inflight = st->pending;
        buf = h2o_iovec_init(st->inflight, st->pending_len);
        st->pending = NULL;
        st->pending_len = st->pending_cap = 0;
        st->sending = true;
        h2o_send(st->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static int stream_append(Stream *st, const char *data, size_t len) {
        if (st->pending_len + len > STREAM_MAX_PENDING)
                return -ENOBUFS;
        if (st->pending_len + len > st->pending_cap) {
                size_t cap = MAX(st->pending_cap * 2, st->pending_len + len + 4096);
                char *p = realloc(st->pending, cap);
                if (!p)
                        return -ENOMEM;
                st->pending = p;
                st->pending_cap = cap;
        }
        memcpy(st->pending + st->pending_len, data, len);
        st->pending_len += len;
        return 0;
}

static void stream_push(Stream *st, const char *data, size_t len) {
        if (st->finished)
                return;
        if (stream_append(st, data, len) < 0) {
                /* Too far behind (or out of memory): end it; the page reconnects and starts over
                 * from a fresh snapshot. */
                stream_finish(st);
                return;
        }
        stream_send(st);
}

static void streams_broadcast(WebServer *s, const char *data, size_t len, const char *log_module) {
        h2o_linklist_t *l, *next;

        for (l = s->streams.next; l != &s->streams; l = next) {
                Stream *st = H2O_STRUCT_FROM_MEMBER(Stream, link, l);
                next = l->next;
                if (log_module &&
                    (!st->logs_module || (strcmp(st->logs_module, "*") != 0 && strcmp(st->logs_module, log_module) != 0)))
                        continue;
                stream_push(st, data, len);
        }
}

static void streams_end_dead_sessions(WebServer *s) {
        h2o_linklist_t *l, *next;

        for (l = s->streams.next; l != &s->streams; l = next) {
                Stream *st = H2O_STRUCT_FROM_MEMBER(Stream, link, l);
                next = l->next;
                if (!web_sessions_alive(&s->sessions, st->session_id)) {
                        static const char bye[] = "event: logout\ndata: {}\n\n";
                        (void)stream_append(st, bye, sizeof(bye) - 1);
                        stream_send(st);
                        stream_finish(st);
                }
        }
}

static void on_keepalive(h2o_timeout_entry_t *entry) {
        WebServer *s = H2O_STRUCT_FROM_MEMBER(WebServer, keepalive_entry, entry);
        uint64_t now = now_usec();
        h2o_linklist_t *l;

        /* An open page counts as use of its session (a wall display logs in once). */
        for (l = s->streams.next; l != &s->streams; l = l->next) {
                Stream *st = H2O_STRUCT_FROM_MEMBER(Stream, link, l);
                for (size_t i = 0; i < s->sessions.n_sessions; i++)
                        if (s->sessions.sessions[i].id == st->session_id)
                                s->sessions.sessions[i].last_used_usec = now;
        }
        (void)web_sessions_expire(&s->sessions, now);
        streams_end_dead_sessions(s);
        streams_broadcast(s, H2O_STRLIT(":\n\n"), NULL);
        publish_counts(s);
        h2o_timeout_link(s->ctx.loop, &s->keepalive, &s->keepalive_entry);
}

static void handle_events(WebServer *s, h2o_req_t *req, const WebSession *session) {
        static const char hello[] = "retry: 2000\n\n";
        Stream *st;
        char *logs = NULL;

        if (req->query_at != SIZE_MAX) {
                const char *q = req->path.base + req->query_at + 1;
                size_t qlen = req->path.len - req->query_at - 1;
                for (const char *p = q; p < q + qlen;) {
                        const char *amp = memchr(p, '&', (size_t)(q + qlen - p));
                        size_t n = amp ? (size_t)(amp - p) : (size_t)(q + qlen - p);
                        if (n > 5 && memcmp(p, "logs=", 5) == 0) {
                                free(logs);
                                logs = segment_decode(p + 5, n - 5);
                                if (!logs || !web_name_valid(logs, strlen(logs))) {
                                        free(logs);
                                        respond_error(req, 400, "logs: not a module name");
                                        return;
                                }
                        }
                        p += n + 1;
                }
        }
        st = h2o_mem_alloc_shared(&req->pool, sizeof(Stream), on_stream_dispose);
        *st = (Stream){ .generator = { on_stream_proceed, on_stream_stop }, .server = s, .req = req,
                        .id = ++s->next_stream_id, .session_id = session->id, .logs_module = logs };
        h2o_linklist_insert(&s->streams, &st->link);
        if (logs)
                s->n_log_streams++;
        publish_counts(s);
        submit_control(s, WEB_JOB_STREAMS, 0, NULL);

        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        h2o_start_response(req, &st->generator);

        (void)stream_append(st, hello, sizeof(hello) - 1);
        {
                char ev[96];
                int n = snprintf(ev, sizeof(ev), "event: stream\ndata: {\"id\":\"%" PRIu64 "\"}\n\n", st->id);
                (void)stream_append(st, ev, (size_t)n);
        }
        if (s->modules) {
                (void)stream_append(st, H2O_STRLIT("event: modules\ndata: "));
                (void)stream_append(st, s->modules->data, s->modules->len);
                (void)stream_append(st, H2O_STRLIT("\n\n"));
        }
        stream_send(st);
}

/* ---- login ---- */

static void *crypt_main(void *userdata) {
        WebServer *s = userdata;

        for (;;) {
                LoginCheck *c;
                Message *m;

                pthread_mutex_lock(&s->crypt_lock);
                while (!s->crypt_queue && !s->crypt_stop)
                        pthread_cond_wait(&s->crypt_cond, &s->crypt_lock);
                if (s->crypt_stop) {
                        pthread_mutex_unlock(&s->crypt_lock);
                        return NULL;
                }
                c = s->crypt_queue;
                s->crypt_queue = c->next;
                pthread_mutex_unlock(&s->crypt_lock);

                c->result = web_password_check(c->hash, c->password);
                explicit_bzero(c->password, strlen(c->password));
                m = message_new(MSG_LOGIN_DONE);
                if (!m) {
                        link_unref(c->link);
                        free(c->hash);
                        free(c->password);
                        free(c);
                        continue;
                }
                m->login = c;
                post(s, m);
        }
}

static void login_check_free(LoginCheck *c) {
        if (!c)
                return;
        link_unref(c->link);
        free(c->hash);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        free(c);
}

static void set_session_cookie(WebServer *s, h2o_req_t *req, const char *token, bool clear) {
        char cookie[256];
        int n = snprintf(cookie, sizeof(cookie), COOKIE_NAME "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%llu%s",
                         clear ? "" : token, clear ? 0ull : (unsigned long long)(SESSION_MAX_AGE_USEC / 1000000),
                         s->tls ? "; Secure" : "");
        h2o_iovec_t v = h2o_strdup(&req->pool, cookie, (size_t)n);

        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, v.base, v.len);
}

static void respond_session(h2o_req_t *req, const WebSession *x) {
        _cleanup_(json_decrefp) json_t *j = json_pack("{s:s}", "csrf", x->csrf);
        _cleanup_free_ char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;

        if (!body)
                respond_error(req, 503, "out of memory");
        else
                respond(req, 200, body, strlen(body));
}

static void on_login_done(WebServer *s, Message *m) {
        LoginCheck *c = TAKE_PTR(m->login);
        h2o_req_t *req = c->link->req;
        const WebSession *x;
        char addr[64];

        if (req) {
                link_detach(c->link);
                peer_address(req, addr, sizeof(addr));
                if (c->result < 0) {
                        log_error_errno(c->result, "web: the stored dashboard password hash cannot be used: %m");
                        respond_error(req, 503, "the stored password hash cannot be used; set a new password with "
                                                "call-assistantctl web passwd");
                } else if (c->result == 0) {
                        log_notice("web: failed login from %s", addr);
                        respond_error(req, 401, "wrong password");
                } else if (web_sessions_create(&s->sessions, now_usec(), &x) < 0)
                        respond_error(req, 503, "cannot create a session");
                else {
                        web_rate_limit_refund(&s->rate, addr);
                        log_info("web: login from %s", addr);
                        set_session_cookie(s, req, x->token, false);
                        respond_session(req, x);
                        publish_counts(s);
                }
        }
        login_check_free(c);
}

static void handle_login(WebServer *s, h2o_req_t *req) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        json_t *pw;
        LoginCheck *c;
        WebJobLink *l;
        LinkGuard *g;
        uint64_t retry;
        char addr[64];
        json_error_t e;

        if (!origin_ok(req)) {
                respond_error(req, 403, "cross-origin request refused");
                return;
        }
        if (!content_type_is_json(req)) {
                respond_error(req, 415, "expected Content-Type: application/json");
                return;
        }
        j = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &e);
        if (!j || !json_is_object(j)) {
                respond_error(req, 400, j ? "expected a JSON object" : "malformed JSON");
                return;
        }
        pw = json_object_get(j, "password");
        if (!json_is_string(pw) || json_string_length(pw) > MAX_PASSWORD_LEN) {
                respond_error(req, 400, "password: expected a string of at most 1024 bytes");
                return;
        }
        peer_address(req, addr, sizeof(addr));
        if (web_rate_limit_take(&s->rate, addr, now_usec(), &retry) < 0) {
                char secs[32];
                int n = snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(retry + 999999) / 1000000);
                h2o_iovec_t v = h2o_strdup(&req->pool, secs, (size_t)n);
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v.base, v.len);
                log_notice("web: login from %s refused: too many attempts", addr);
                respond_error(req, 429, "too many login attempts; try again later");
                return;
        }
        if (!s->password_hash) {
                respond_error(req, 403, "no dashboard password is set: run 'call-assistantctl web passwd' on the host");
                return;
        }

        c = calloc(1, sizeof(LoginCheck));
        l = calloc(1, sizeof(WebJobLink));
        if (!c || !l || !(c->hash = strdup(s->password_hash)) || !(c->password = strdup(json_string_value(pw)))) {
                free(l);
                login_check_free(c);
                respond_error(req, 503, "out of memory");
                return;
        }
        json_string_setn(pw, "", 0);
        atomic_init(&l->refs, 2);
        l->req = req;
        h2o_linklist_insert(&s->pending, &l->pending);
        g = h2o_mem_alloc_shared(&req->pool, sizeof(LinkGuard), on_guard_dispose);
        g->link = l;
        c->link = l;

        pthread_mutex_lock(&s->crypt_lock);
        c->next = s->crypt_queue;
        s->crypt_queue = c;
        pthread_cond_signal(&s->crypt_cond);
        pthread_mutex_unlock(&s->crypt_lock);
}

static void handle_logout(WebServer *s, h2o_req_t *req, const WebSession *x) {
        (void)web_sessions_remove(&s->sessions, x->id);
        streams_end_dead_sessions(s);
        publish_counts(s);
        set_session_cookie(s, req, "", true);
        respond(req, 200, H2O_STRLIT("{}"));
}

/* ---- the module list ---- */

typedef struct BlobGuard {
        WebBlob *blob;
} BlobGuard;

static void on_blob_guard_dispose(void *p) {
        web_blob_unref(((BlobGuard *)p)->blob);
}

static void handle_modules(WebServer *s, h2o_req_t *req) {
        static h2o_generator_t generator = { NULL, NULL };
        BlobGuard *g;
        h2o_iovec_t body;

        if (!s->modules) {
                respond_error(req, 503, "the module list is not known yet");
                return;
        }
        /* Zero-copy: the pre-rendered list stays alive with the request's memory pool. */
        g = h2o_mem_alloc_shared(&req->pool, sizeof(BlobGuard), on_blob_guard_dispose);
        g->blob = web_blob_ref(s->modules);
        req->res.status = 200;
        req->res.reason = "OK";
        req->res.content_length = g->blob->len;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json; charset=utf-8"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        h2o_start_response(req, &generator);
        body = h2o_iovec_init(g->blob->data, g->blob->len);
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

/* ---- live views ---- */

static Stream *stream_find(WebServer *s, uint64_t id, uint64_t session_id) {
        for (h2o_linklist_t *l = s->streams.next; l != &s->streams; l = l->next) {
                Stream *st = H2O_STRUCT_FROM_MEMBER(Stream, link, l);
                if (st->id == id && st->session_id == session_id && !st->finished)
                        return st;
        }
        return NULL;
}

/* POST /api/entities/MODULE/ENTITY/live {"sdp": offer, "stream": id}: the offer goes to the
 * service with the page's session and event stream, whose end ends the flow. */
static void handle_live_start(WebServer *s, h2o_req_t *req, const WebSession *session, const char *module,
                              const char *entity) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        const char *sdp, *stream_s;
        Stream *st;
        WebJob *job;
        json_error_t e;
        char *end;
        uint64_t stream_id;

        j = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &e);
        if (!j) {
                char msg[256];
                snprintf(msg, sizeof(msg), "malformed JSON at line %d, column %d", e.line, e.column);
                respond_error(req, 400, msg);
                return;
        }
        if (!json_is_object(j)) {
                respond_error(req, 400, "expected {\"sdp\": \"<SDP offer>\", \"stream\": \"<event stream id>\"}");
                return;
        }
        sdp = json_string_value(json_object_get(j, "sdp"));
        if (!sdp || json_string_length(json_object_get(j, "sdp")) > MAX_SDP_LEN || strlen(sdp) < 4 ||
            (strncmp(sdp, "v=0\r\n", 5) != 0 && strncmp(sdp, "v=0\n", 4) != 0) || !strstr(sdp, "\nm=video ")) {
                respond_error(req, 400, "sdp: expected a WebRTC SDP offer with a video section (a string starting with "
                                        "\"v=0\", at most 64 KiB)");
                return;
        }
        stream_s = json_string_value(json_object_get(j, "stream"));
        errno = 0;
        stream_id = stream_s && *stream_s >= '1' && *stream_s <= '9' ? strtoull(stream_s, &end, 10) : 0;
        if (stream_id == 0 || errno != 0 || *end) {
                respond_error(req, 400, "stream: expected the id of the page's event stream (its first event, "
                                        "\"stream\", gives it)");
                return;
        }
        st = stream_find(s, stream_id, session->id);
        if (!st) {
                respond_error(req, 409, "stream: this session has no open event stream with that id (a live view "
                                        "lasts as long as its page's event stream)");
                return;
        }
        job = calloc(1, sizeof(WebJob));
        if (!job || !(job->module = strdup(module)) || !(job->arg = strdup(entity)) || !(job->body = strdup(sdp))) {
                web_job_free(job);
                respond_error(req, 503, "out of memory");
                return;
        }
        job->kind = WEB_JOB_LIVE_START;
        job->body_len = strlen(sdp);
        job->session_id = session->id;
        job->stream_id = st->id;
        st->live = true;
        if (!h2o_timeout_is_linked(&s->live_ping_entry))
                h2o_timeout_link(s->ctx.loop, &s->live_ping, &s->live_ping_entry);
        submit_prepared(s, req, job);
}

static void on_live_ping(h2o_timeout_entry_t *entry) {
        WebServer *s = H2O_STRUCT_FROM_MEMBER(WebServer, live_ping_entry, entry);
        h2o_linklist_t *l, *next;
        bool any = false;

        for (l = s->streams.next; l != &s->streams; l = next) {
                Stream *st = H2O_STRUCT_FROM_MEMBER(Stream, link, l);
                next = l->next;
                if (!st->live)
                        continue;
                any = true;
                stream_push(st, H2O_STRLIT(":\n\n"));
        }
        if (any)
                h2o_timeout_link(s->ctx.loop, &s->live_ping, &s->live_ping_entry);
}

/* ---- the API router ---- */

static bool path_is(h2o_iovec_t p, const char *s) {
        return h2o_memis(p.base, p.len, s, strlen(s));
}

static int on_api(h2o_handler_t *self, h2o_req_t *req) {
        WebServer *s = ((Handler *)self)->server;
        h2o_iovec_t path = req->path_normalized;
        const WebSession *session;
        _cleanup_free_ char *name = NULL, *entity = NULL, *flow = NULL;
        const char *rest = NULL, *allow;
        size_t rest_len = 0;
        WebJobKind kind;
        bool is_get = method_is(req, "GET");

        if (s->stopping) {
                respond_error(req, 503, "shutting down");
                return 0;
        }

        /* Routes without a session. */
        if (path_is(path, "/api/login")) {
                if (!method_is(req, "POST"))
                        respond_405(req, "POST");
                else if (req->entity.len > s->o.max_body)
                        respond_error(req, 413, "request body too large");
                else
                        handle_login(s, req);
                return 0;
        }

        /* Which route, and which methods it takes, before anything else. */
        if (path_is(path, "/api/session") || path_is(path, "/api/modules") || path_is(path, "/api/events") ||
            path_is(path, "/api/entities"))
                allow = "GET";
        else if (path_is(path, "/api/logout"))
                allow = "POST";
        else if (path.len > strlen("/api/modules/") && memcmp(path.base, "/api/modules/", 13) == 0) {
                const char *p = path.base + 13, *slash = memchr(p, '/', (size_t)(path.base + path.len - p));
                size_t n = slash ? (size_t)(slash - p) : (size_t)(path.base + path.len - p);
                name = segment_decode(p, n);
                if (!name || !web_name_valid(name, strlen(name))) {
                        respond_error(req, 404, "no such module");
                        return 0;
                }
                if (slash) {
                        rest = slash + 1;
                        rest_len = (size_t)(path.base + path.len - rest);
                }
                if (!rest)
                        allow = "GET";
                else if (h2o_memis(rest, rest_len, H2O_STRLIT("start")) || h2o_memis(rest, rest_len, H2O_STRLIT("stop")) ||
                         h2o_memis(rest, rest_len, H2O_STRLIT("restart")))
                        allow = "POST";
                else if (h2o_memis(rest, rest_len, H2O_STRLIT("config")))
                        allow = "GET, PUT";
                else if (h2o_memis(rest, rest_len, H2O_STRLIT("logs")))
                        allow = "GET";
                else {
                        respond_error(req, 404, "no such API endpoint");
                        return 0;
                }
        } else if (path.len > 14 && memcmp(path.base, "/api/entities/", 14) == 0) {
                /* /api/entities/MODULE/ENTITY/live */
                const char *p = path.base + 14, *e = path.base + path.len;
                const char *s1 = memchr(p, '/', (size_t)(e - p)), *s2 = s1 ? memchr(s1 + 1, '/', (size_t)(e - s1 - 1)) : NULL;
                if (!s2 || !h2o_memis(s2 + 1, (size_t)(e - s2 - 1), H2O_STRLIT("live"))) {
                        respond_error(req, 404, "no such API endpoint");
                        return 0;
                }
                name = segment_decode(p, (size_t)(s1 - p));
                entity = segment_decode(s1 + 1, (size_t)(s2 - s1 - 1));
                if (!name || !web_name_valid(name, strlen(name))) {
                        respond_error(req, 404, "no such module");
                        return 0;
                }
                if (!entity || !web_name_valid(entity, strlen(entity)) || strlen(entity) > MAX_ENTITY_ID_LEN) {
                        respond_error(req, 404, "no such entity");
                        return 0;
                }
                allow = "POST";
        } else if (path.len > 10 && memcmp(path.base, "/api/live/", 10) == 0) {
                flow = segment_decode(path.base + 10, path.len - 10);
                if (!flow || !web_name_valid(flow, strlen(flow))) {
                        respond_error(req, 404, "no such live view");
                        return 0;
                }
                allow = "DELETE";
        } else {
                respond_error(req, 404, "no such API endpoint");
                return 0;
        }

        session = session_of(s, req);
        if (!session) {
                respond_error(req, 401, "not logged in");
                return 0;
        }
        if (!(is_get && strstr(allow, "GET")) && !(method_is(req, "PUT") && strstr(allow, "PUT")) &&
            !(method_is(req, "POST") && strstr(allow, "POST")) && !(method_is(req, "DELETE") && strstr(allow, "DELETE"))) {
                respond_405(req, allow);
                return 0;
        }
        if (!is_get) {
                if (!csrf_ok(req, session)) {
                        respond_error(req, 403, "missing or wrong X-CSRF-Token (or a cross-origin request)");
                        return 0;
                }
                if (req->entity.len > s->o.max_body) {
                        respond_error(req, 413, "request body too large");
                        return 0;
                }
                if (req->entity.len > 0 && !content_type_is_json(req)) {
                        respond_error(req, 415, "expected Content-Type: application/json");
                        return 0;
                }
        }

        if (path_is(path, "/api/session"))
                respond_session(req, session);
        else if (path_is(path, "/api/logout"))
                handle_logout(s, req, session);
        else if (path_is(path, "/api/modules"))
                handle_modules(s, req);
        else if (path_is(path, "/api/events"))
                handle_events(s, req, session);
        else if (path_is(path, "/api/entities"))
                submit_job(s, req, WEB_JOB_ENTITIES, NULL, NULL, 0);
        else if (entity)
                handle_live_start(s, req, session, name, entity);
        else if (flow) {
                WebJob *j = calloc(1, sizeof(WebJob));
                if (!j || !(j->arg = strdup(flow))) {
                        web_job_free(j);
                        respond_error(req, 503, "out of memory");
                        return 0;
                }
                j->kind = WEB_JOB_LIVE_STOP;
                j->session_id = session->id;
                submit_prepared(s, req, j);
        } else {
                const char *arg = NULL;
                size_t arg_len = 0;
                if (!rest)
                        kind = WEB_JOB_MODULE;
                else if (h2o_memis(rest, rest_len, H2O_STRLIT("config")))
                        kind = is_get ? WEB_JOB_CONFIG_GET : WEB_JOB_CONFIG_SET;
                else if (h2o_memis(rest, rest_len, H2O_STRLIT("logs"))) {
                        kind = WEB_JOB_LOGS;
                        if (req->query_at != SIZE_MAX) {
                                arg = req->path.base + req->query_at + 1;
                                arg_len = req->path.len - req->query_at - 1;
                        } else
                                arg = "";
                } else {
                        kind = WEB_JOB_MODULE_OP;
                        arg = rest;
                        arg_len = rest_len;
                }
                if (kind == WEB_JOB_CONFIG_SET) {
                        _cleanup_(json_decrefp) json_t *j = NULL;
                        json_error_t e;
                        j = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &e);
                        if (!j) {
                                char msg[256];
                                snprintf(msg, sizeof(msg), "malformed JSON at line %d, column %d", e.line, e.column);
                                respond_error(req, 400, msg);
                                return 0;
                        }
                        if (!json_is_object(j) || !json_is_object(json_object_get(j, "config"))) {
                                respond_error(req, 400, "expected {\"config\": {...}, \"revision\": N}");
                                return 0;
                        }
                }
                submit_job(s, req, kind, name, arg, arg_len);
        }
        return 0;
}

/* ---- static files ---- */

static bool is_public(h2o_iovec_t path) {
        static const char *const public_paths[] = { "/login.html", "/login.js", "/style.css", "/favicon.svg" };

        for (size_t i = 0; i < ELEMENTSOF(public_paths); i++)
                if (path_is(path, public_paths[i]))
                        return true;
        return false;
}

/* In front of h2o's file handler: only GET/HEAD, only plain names inside the assets
 * folder (no dot segments, no encoded characters, no hidden files), a session for
 * everything but the login page; the file handler then serves what is left. */
static int on_static(h2o_handler_t *self, h2o_req_t *req) {
        WebServer *s = ((Handler *)self)->server;
        h2o_iovec_t path = req->path_normalized;
        char rel[512];
        struct stat st;

        if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
                respond_405(req, "GET, HEAD");
                return 0;
        }
        if (!path.base || path.len == 0 || path.base[0] != '/' || path.len >= sizeof(rel) - 16 ||
            memchr(path.base, '%', path.len) || memchr(path.base, '\\', path.len) || memmem(path.base, path.len, "/.", 2) ||
            memchr(path.base, 0, path.len)) {
                respond_error(req, 404, "not found");
                return 0;
        }
        if (!is_public(path) && !session_of(s, req)) {
                static const char to[] = "/login.html";
                req->res.status = 303;
                req->res.reason = "See Other";
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, to, sizeof(to) - 1);
                h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
                h2o_send_inline(req, NULL, 0);
                return 0;
        }
        snprintf(rel, sizeof(rel), "%s/%.*s%s", s->assets_dir, (int)path.len - 1, path.base + 1,
                 path.base[path.len - 1] == '/' ? "index.html" : "");
        if (stat(rel, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
                respond_error(req, 404, "not found");
                return 0;
        }
        return -1; /* on to the file handler */
}

/* ---- messages from other threads ---- */

static void server_begin_stop(WebServer *s);

static void on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
        WebServer *s = H2O_STRUCT_FROM_MEMBER(WebServer, receiver, receiver);

        while (!h2o_linklist_is_empty(messages)) {
                Message *m = H2O_STRUCT_FROM_MEMBER(Message, super.link, messages->next);
                h2o_linklist_unlink(&m->super.link);
                switch (m->kind) {
                case MSG_REPLY:
                        on_reply(s, m);
                        break;
                case MSG_MODULES:
                        web_blob_unref(s->modules);
                        s->modules = TAKE_PTR(m->blob);
                        break;
                case MSG_BROADCAST:
                        streams_broadcast(s, m->blob->data, m->blob->len, m->text);
                        break;
                case MSG_PASSWORD:
                        free(s->password_hash);
                        s->password_hash = TAKE_PTR(m->text);
                        break;
                case MSG_REVOKE: {
                        unsigned n = (unsigned)web_sessions_revoke_all(&s->sessions);
                        streams_end_dead_sessions(s);
                        publish_counts(s);
                        submit_control(s, WEB_JOB_REVOKED, n, m->control);
                        break;
                }
                case MSG_LOGIN_DONE:
                        on_login_done(s, m);
                        break;
                case MSG_STOP:
                        server_begin_stop(s);
                        break;
                }
                message_free(m);
        }
}

void web_server_publish_modules(WebServer *s, WebBlob *modules_json) {
        Message *m;

        if (atomic_load(&s->stopped) || !(m = message_new(MSG_MODULES)))
                return;
        m->blob = web_blob_ref(modules_json);
        post(s, m);
}

void web_server_broadcast(WebServer *s, WebBlob *event, const char *log_module) {
        Message *m;

        if (atomic_load(&s->stopped) || !(m = message_new(MSG_BROADCAST)))
                return;
        m->blob = web_blob_ref(event);
        if (log_module && !(m->text = strdup(log_module))) {
                message_free(m);
                return;
        }
        post(s, m);
}

void web_server_set_password_hash(WebServer *s, const char *hash) {
        Message *m;

        if (atomic_load(&s->stopped) || !(m = message_new(MSG_PASSWORD)))
                return;
        if (hash && *hash && !(m->text = strdup(hash))) {
                message_free(m);
                return;
        }
        post(s, m);
}

void web_server_revoke_sessions(WebServer *s, void *control) {
        Message *m;

        if (atomic_load(&s->stopped) || !(m = message_new(MSG_REVOKE)))
                return;
        m->control = control;
        post(s, m);
}

const char *web_server_url(WebServer *s) {
        return s->url;
}

bool web_server_tls(WebServer *s) {
        return s->tls;
}

unsigned web_server_n_sessions(WebServer *s) {
        return atomic_load(&s->n_sessions_pub);
}

unsigned web_server_n_streams(WebServer *s) {
        return atomic_load(&s->n_streams_pub);
}

bool web_server_wants_logs(WebServer *s) {
        return atomic_load(&s->n_log_streams_pub) > 0;
}

/* ---- set-up ---- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len) {
        _cleanup_free_ char *host = NULL;
        const char *colon, *port_s;
        char *end;
        unsigned long port;

        if (listen[0] == '[') {
                const char *close = strchr(listen, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                host = strndup(listen + 1, (size_t)(close - listen - 1));
                port_s = close + 2;
        } else {
                colon = strrchr(listen, ':');
                if (!colon)
                        return -EINVAL;
                host = strndup(listen, (size_t)(colon - listen));
                port_s = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (errno || *end || end == port_s || port > 65535)
                return -EINVAL;
        memset(ss, 0, sizeof(*ss));
        if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
                ((struct sockaddr_in *)ss)->sin_family = AF_INET;
                ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
                *len = sizeof(struct sockaddr_in);
        } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
                ((struct sockaddr_in6 *)ss)->sin6_family = AF_INET6;
                ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
                *len = sizeof(struct sockaddr_in6);
        } else
                return -EINVAL;
        return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err) {
        WebServer *s = listener->data;
        h2o_socket_t *sock;

        if (err)
                return;
        sock = h2o_evloop_socket_accept(listener);
        if (sock)
                h2o_accept(&s->accept_ctx, sock);
}

static int setup_tls(WebServer *s) {
        SSL_CTX *ctx;

        ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx)
                return -ENOMEM;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
        if (SSL_CTX_use_certificate_chain_file(ctx, s->o.tls_certificate) != 1) {
                log_error("web: cannot load the TLS certificate %s: %s", s->o.tls_certificate,
                          ERR_reason_error_string(ERR_get_error()));
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, s->o.tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
                log_error("web: cannot load the TLS key %s (or it does not match the certificate): %s", s->o.tls_key,
                          ERR_reason_error_string(ERR_get_error()));
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
        s->ssl = ctx;
        return 0;
}

static h2o_iovec_t hdr_csp = { H2O_STRLIT("content-security-policy") };
static h2o_iovec_t hdr_nosniff = { H2O_STRLIT("x-content-type-options") };
static h2o_iovec_t hdr_frame = { H2O_STRLIT("x-frame-options") };
static h2o_iovec_t hdr_referrer = { H2O_STRLIT("referrer-policy") };

static void add_security_headers(h2o_pathconf_t *pc) {
        static h2o_headers_command_t cmds[] = {
                { H2O_HEADERS_CMD_SET, &hdr_csp,
                  { H2O_STRLIT("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'") } },
                { H2O_HEADERS_CMD_SET, &hdr_nosniff, { H2O_STRLIT("nosniff") } },
                { H2O_HEADERS_CMD_SET, &hdr_frame, { H2O_STRLIT("DENY") } },
                { H2O_HEADERS_CMD_SET, &hdr_referrer, { H2O_STRLIT("no-referrer") } },
                { H2O_HEADERS_CMD_NULL, NULL, { NULL, 0 } },
        };
        h2o_headers_register(pc, cmds);
}

int web_server_new(WebServer **ret, const WebServerOptions *o) {
        _cleanup_free_ WebServer *s = NULL;
        struct sockaddr_storage ss;
        socklen_t len;
        h2o_hostconf_t *host;
        h2o_pathconf_t *pc;
        Handler *h;
        int r, one = 1;
        static const char *index_files[] = { "index.html", NULL };

        s = calloc(1, sizeof(WebServer));
        if (!s)
                return -ENOMEM;
        s->o = *o;
        s->listen_fd = -1;
        s->tls = o->tls_certificate && *o->tls_certificate;
        h2o_linklist_init_anchor(&s->streams);
        h2o_linklist_init_anchor(&s->pending);
        pthread_mutex_init(&s->crypt_lock, NULL);
        pthread_cond_init(&s->crypt_cond, NULL);
        /* A few tries at once, then one every 10 s per address; 30 a minute in all. */
        web_rate_limit_init(&s->rate, 5, 0.1, 30, 0.5);
        r = web_sessions_init(&s->sessions, SESSION_CAPACITY, SESSION_IDLE_USEC, SESSION_MAX_AGE_USEC);
        if (r < 0)
                return r;
        s->listen = strdup(o->listen);
        s->assets_dir = strdup(o->assets_dir);
        if (!s->listen || !s->assets_dir)
                goto fail_nomem;

        r = parse_listen(o->listen, &ss, &len);
        if (r < 0) {
                log_error("web: listen: '%s' is not an address:port (e.g. 127.0.0.1:8480 or [::1]:8480)", o->listen);
                goto fail;
        }
        s->listen_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->listen_fd < 0 || setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(s->listen_fd, (struct sockaddr *)&ss, len) < 0 || listen(s->listen_fd, SOMAXCONN) < 0) {
                r = log_error_errno(errno, "web: cannot listen on %s: %m", o->listen);
                goto fail;
        }
        len = sizeof(ss);
        if (getsockname(s->listen_fd, (struct sockaddr *)&ss, &len) < 0) {
                r = -errno;
                goto fail;
        }
        {
                char host_s[INET6_ADDRSTRLEN] = "";
                int port = h2o_socket_getport((struct sockaddr *)&ss);
                if (ss.ss_family == AF_INET6) {
                        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host_s, sizeof(host_s));
                        snprintf(s->url, sizeof(s->url), "%s://[%s]:%d/", s->tls ? "https" : "http", host_s, port);
                } else {
                        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host_s, sizeof(host_s));
                        snprintf(s->url, sizeof(s->url), "%s://%s:%d/", s->tls ? "https" : "http", host_s, port);
                }
        }
        if (s->tls) {
                if (!o->tls_key || !*o->tls_key) {
                        log_error("web: tls_certificate is set but tls_key is not");
                        r = -EINVAL;
                        goto fail;
                }
                r = setup_tls(s);
                if (r < 0)
                        goto fail;
        }

        h2o_config_init(&s->config);
        s->config.server_name = h2o_iovec_init(H2O_STRLIT("call-assistant"));
        /* h2o's own hard limit (its 413 is plain text); ours, with a JSON answer, is max_body. */
        s->config.max_request_entity_size = o->max_body * 4 + 4096;
        host = h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
        /* The first matching path prefix wins: /api/ before /. */
        pc = h2o_config_register_path(host, "/api/", 0);
        h = (Handler *)h2o_create_handler(pc, sizeof(Handler));
        h->super.on_req = on_api;
        h->server = s;
        add_security_headers(pc);
        pc = h2o_config_register_path(host, "/", 0);
        h = (Handler *)h2o_create_handler(pc, sizeof(Handler));
        h->super.on_req = on_static;
        h->server = s;
        h2o_file_register(pc, s->assets_dir, index_files, NULL, 0);
        add_security_headers(pc);

        s->loop = h2o_evloop_create();
        h2o_context_init(&s->ctx, s->loop, &s->config);
        s->context_ready = true;
        h2o_multithread_register_receiver(s->ctx.queue, &s->receiver, on_messages);
        s->accept_ctx.ctx = &s->ctx;
        s->accept_ctx.hosts = s->config.hosts;
        s->accept_ctx.ssl_ctx = s->ssl;
        h2o_timeout_init(s->loop, &s->keepalive, STREAM_KEEPALIVE_MS);
        s->keepalive_entry.cb = on_keepalive;
        h2o_timeout_link(s->loop, &s->keepalive, &s->keepalive_entry);
        h2o_timeout_init(s->loop, &s->live_ping, STREAM_LIVE_PING_MS);
        s->live_ping_entry.cb = on_live_ping;

        s->listener = h2o_evloop_socket_create(s->loop, s->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
        s->listen_fd = -1; /* the socket owns it now */
        s->listener->data = s;
        h2o_socket_read_start(s->listener, on_accept);

        *ret = TAKE_PTR(s);
        return 0;

fail_nomem:
        r = -ENOMEM;
fail:
        web_server_free(TAKE_PTR(s));
        return r;
}

static bool connections_left(WebServer *s) {
        return !h2o_linklist_is_empty(&s->ctx.http1._conns) || !h2o_linklist_is_empty(&s->ctx.http2._conns);
}

/* On the h2o thread: stop taking requests, answer what waits, end every stream. */
static void server_begin_stop(WebServer *s) {
        h2o_linklist_t *l, *next;

        if (s->stopping)
                return;
        s->stopping = true;
        if (s->listener) {
                h2o_socket_read_stop(s->listener);
                h2o_socket_close(s->listener);
                s->listener = NULL;
        }
        while (!h2o_linklist_is_empty(&s->pending)) {
                WebJobLink *link = H2O_STRUCT_FROM_MEMBER(WebJobLink, pending, s->pending.next);
                h2o_req_t *req = link->req;
                link_detach(link);
                respond_error(req, 503, "shutting down");
        }
        for (l = s->streams.next; l != &s->streams; l = next) {
                next = l->next;
                stream_finish(H2O_STRUCT_FROM_MEMBER(Stream, link, l));
        }
        h2o_context_request_shutdown(&s->ctx);
        /* h2o 2.2.5 closes an idle keep-alive HTTP/1 connection only when its request timeout
         * runs out (HTTP/2: its idle timeout): let those run out now. */
        s->ctx.http1.req_timeout.timeout = 0;
        s->ctx.http2.idle_timeout.timeout = 0;
}

static void *server_main(void *userdata) {
        WebServer *s = userdata;
        struct timespec ts;
        uint64_t deadline;

        while (!s->stopping)
                h2o_evloop_run(s->loop, INT32_MAX);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + STOP_GRACE_MS;
        while (connections_left(s)) {
                clock_gettime(CLOCK_MONOTONIC, &ts);
                if ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 >= deadline)
                        break;
                h2o_evloop_run(s->loop, 50);
        }
        /* Socket buffers h2o keeps for reuse live in this thread's storage: give them back
         * before the thread goes. */
        while (h2o_socket_buffer_prototype.allocator.cnt > 0)
                free(h2o_mem_alloc_recycle(&h2o_socket_buffer_prototype.allocator, 1));
        return NULL;
}

int web_server_start(WebServer *s) {
        int r;

        r = pthread_create(&s->crypt_thread, NULL, crypt_main, s);
        if (r != 0)
                return -r;
        s->crypt_running = true;
        r = pthread_create(&s->thread, NULL, server_main, s);
        if (r != 0)
                return -r;
        s->thread_running = true;
        return 0;
}

WebServer *web_server_free(WebServer *s) {
        if (!s)
                return NULL;

        /* The password checker first: its results would come back as messages. */
        if (s->crypt_running) {
                pthread_mutex_lock(&s->crypt_lock);
                s->crypt_stop = true;
                pthread_cond_signal(&s->crypt_cond);
                pthread_mutex_unlock(&s->crypt_lock);
                pthread_join(s->crypt_thread, NULL);
        }
        while (s->crypt_queue) {
                LoginCheck *c = s->crypt_queue;
                s->crypt_queue = c->next;
                login_check_free(c);
        }

        if (s->thread_running) {
                Message *m = message_new(MSG_STOP);
                if (m)
                        post(s, m);
                else
                        s->stopping = true; /* the loop wakes up for the keep-alive timer at the latest */
                pthread_join(s->thread, NULL);
        }
        atomic_store(&s->stopped, true);

        if (s->context_ready) {
                /* Messages that came after the loop stopped. */
                while (!h2o_linklist_is_empty(&s->receiver._messages)) {
                        Message *m = H2O_STRUCT_FROM_MEMBER(Message, super.link, s->receiver._messages.next);
                        h2o_linklist_unlink(&m->super.link);
                        if (m->kind == MSG_LOGIN_DONE)
                                login_check_free(TAKE_PTR(m->login));
                        message_free(m);
                }
                if (!s->thread_running)
                        server_begin_stop(s);
                if (h2o_timeout_is_linked(&s->keepalive_entry))
                        h2o_timeout_unlink(&s->keepalive_entry);
                if (h2o_timeout_is_linked(&s->live_ping_entry))
                        h2o_timeout_unlink(&s->live_ping_entry);
                if (connections_left(s))
                        log_warning("web: some connections were still open at shutdown");
                else {
                        h2o_multithread_unregister_receiver(s->ctx.queue, &s->receiver);
                        h2o_timeout_dispose(s->loop, &s->keepalive);
                        h2o_timeout_dispose(s->loop, &s->live_ping);
                        /* h2o's graceful shutdown leaves its once-a-second check for idle
                         * connections linked; with no connection left it has nothing to do. */
                        while (!h2o_linklist_is_empty(&s->ctx.one_sec_timeout._entries))
                                h2o_timeout_unlink(H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link,
                                                                          s->ctx.one_sec_timeout._entries.next));
                        h2o_context_dispose(&s->ctx);
                        h2o_evloop_destroy(s->loop);
                        h2o_config_dispose(&s->config);
                }
        }
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        if (s->ssl)
                SSL_CTX_free(s->ssl);
        web_blob_unref(s->modules);
        web_sessions_done(&s->sessions);
        if (s->password_hash)
                explicit_bzero(s->password_hash, strlen(s->password_hash));
        free(s->password_hash);
        free(s->listen);
        free(s->assets_dir);
        pthread_mutex_destroy(&s->crypt_lock);
        pthread_cond_destroy(&s->crypt_cond);
        free(s);
        return NULL;
}
