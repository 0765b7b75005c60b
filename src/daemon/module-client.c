/* The orchestrator's gRPC calls to modules. Everything a module sends back is untrusted:
 * sizes are bounded by the runtime, strings are copied and bounded here.
 *
 * Who answers on a module's port is checked before anything is sent: the orchestrator dials
 * 127.0.0.1:<port> itself, asks the kernel who owns the socket at the other end of that very
 * connection (socket_peer_owner(), NETLINK_SOCK_DIAG), compares it with the uid systemd runs
 * the module's unit as (each module has its own dynamic user), and only then hands the
 * connection to gRPC (a channel over that fd, which never reconnects by itself). A process
 * that took the port while the module was down, restarting or slow to start gets a closed
 * connection: no RegisterModule, no configuration, no token. Every new connection is dialled
 * and checked again. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "callassistant/v1/module.pb-c.h"
#include "daemon/manager.h"
#include "daemon/module-client.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/socket-peer.h"

#define TOKEN_KEY "x-call-assistant-module-token"
#define MAX_ENTITY_TYPES 64
#define MAX_CAPABILITIES 32
#define MAX_MEDIA 8
#define MAX_STRING 4096
#define MAX_SCHEMA (256 * 1024)
#define DIAL_BACKOFF_MIN_MS 10u
#define DIAL_BACKOFF_MAX_MS 200u

typedef struct CallCtx CallCtx;

/* One verified connection and its channel. Retired when its connection is gone; freed when
 * its last call is done. */
typedef struct Conn {
        RpcChannel *channel;
        unsigned n_calls;
        bool ok;          /* a call succeeded on it: a failure now means it went away */
        bool dead;
        struct Conn *next;
} Conn;

struct ModuleClient {
        Module *module;
        Conn *current;          /* verified; NULL while (re)dialling */
        Conn *retired;
        int dial_fd;            /* connect() in progress */
        sd_event_source *dial_io, *retry_timer, *gc;
        unsigned backoff_ms;
        char last_error[256];   /* why the last dial failed, for the calls that give up */
        bool squat_logged;
        CallCtx *calls;         /* sent, in flight */
        CallCtx *pending;       /* waiting for a verified connection */
};

/* Unpacks a successful reply into the result (and the module); negative errno on failure. */
typedef int (*take_reply_t)(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result);

struct CallCtx {
        Module *module;
        ModuleClient *client;
        Conn *conn;               /* the connection it was sent on */
        take_reply_t take;
        module_call_done_t done;
        void *userdata;
        bool notify_on_cancel;   /* the caller must hear back even if the module goes away */
        bool retry;              /* idempotent: sent again once if its connection had gone */
        const char *method;
        const ProtobufCMessageDescriptor *request_type, *reply_type;
        uint8_t *packed;         /* the request, kept until it is sent on a verified connection */
        size_t packed_size;
        uint64_t deadline;       /* CLOCK_MONOTONIC usec */
        unsigned flags;
        CallCtx *next;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void unlink_call(CallCtx **list, CallCtx *c) {
        for (CallCtx **p = list; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        return;
                }
}

static void call_ctx_free(CallCtx *c) {
        free(c->packed);
        free(c);
}

static Conn *conn_free(Conn *c) {
        if (c) {
                rpc_channel_free(c->channel);
                free(c);
        }
        return NULL;
}

/* Retired connections whose calls are all done are freed here, outside any of their calls'
 * callbacks. */
static int on_gc(sd_event_source *s, void *userdata) {
        ModuleClient *mc = userdata;

        mc->gc = sd_event_source_disable_unref(mc->gc);
        for (Conn **p = &mc->retired; *p;) {
                Conn *c = *p;

                if (c->n_calls == 0) {
                        *p = c->next;
                        conn_free(c);
                } else
                        p = &c->next;
        }
        return 0;
}

static void retire(ModuleClient *mc, Conn *c) {
        if (mc->current == c)
                mc->current = NULL;
        c->dead = true;
        c->next = mc->retired;
        mc->retired = c;
        if (!mc->gc && sd_event_add_defer(mc->module->manager->event, &mc->gc, on_gc, mc) < 0)
                mc->gc = NULL; /* freed with the client */
}

static void dial_start(ModuleClient *mc);

static void finish(CallCtx *c, int status, const char *message, const ProtobufCMessage *reply) {
        Module *m = c->module;
        module_call_done_t done = c->done;
        void *ud = c->userdata;
        ModuleCallResult result = {
                .status = status,
                .message = message ? message : "",
                .reported = MODULE_STARTING,
                .health = HEALTH_UNKNOWN,
                .response = status == RPC_OK ? reply : NULL,
        };

        if (status == RPC_OK && c->take && c->take(m, reply, &result) < 0) {
                result.status = RPC_RESOURCE_EXHAUSTED;
                result.message = "out of memory";
                result.response = NULL;
        }
        call_ctx_free(c);
        if (done)
                done(m, &result, ud);
}

/* The one completion path of every call that was sent. */
static void on_call_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *reply,
                         void *userdata) {
        CallCtx *c = userdata;
        ModuleClient *mc = c->client;
        Conn *conn = c->conn;

        unlink_call(&mc->calls, c);
        conn->n_calls--;
        if (status == RPC_OK)
                conn->ok = true;
        else if (status == RPC_UNAVAILABLE && !conn->dead) {
                /* A channel over one connection: UNAVAILABLE means that connection is gone (the
                 * module restarted, or closed an idle connection). The next call dials again. */
                retire(mc, conn);
                if (c->retry && conn->ok) {
                        c->retry = false;
                        c->conn = NULL;
                        c->next = mc->pending;
                        mc->pending = c;
                        dial_start(mc);
                        return;
                }
        }
        if (conn->dead && conn->n_calls == 0 && !mc->gc)
                (void)sd_event_add_defer(mc->module->manager->event, &mc->gc, on_gc, mc);
        finish(c, status, message, reply);
}

/* Send c on the current connection. On failure c is not sent and stays the caller's, with
 * the status and message to finish it with (finish it only once done with mc: the callback
 * may free the client). */
static int send_call(ModuleClient *mc, CallCtx *c, const char **ret_message) {
        Module *m = mc->module;
        ProtobufCMessage *req;
        uint64_t now = now_usec();
        uint32_t timeout_ms;
        int r;

        if (c->deadline <= now) {
                *ret_message = "deadline exceeded before the module could be reached";
                return RPC_DEADLINE_EXCEEDED;
        }
        timeout_ms = (uint32_t)MAX((c->deadline - now) / 1000, 1u);
        req = protobuf_c_message_unpack(c->request_type, NULL, c->packed_size, c->packed);
        if (!req) {
                *ret_message = "out of memory";
                return RPC_RESOURCE_EXHAUSTED;
        }
        /* The module's own token: modules accept calls only from the orchestrator. It goes only
         * over a connection whose other end was checked to be the module. */
        RpcMetadata md = { .key = TOKEN_KEY, .value = m->token };
        r = rpc_channel_call(mc->current->channel, c->method, req, c->reply_type, timeout_ms, 0, &md, m->token ? 1 : 0,
                             on_call_done, c, NULL);
        protobuf_c_message_free_unpacked(req, NULL);
        if (r < 0) {
                *ret_message = "cannot start the call";
                return RPC_UNAVAILABLE;
        }
        c->conn = mc->current;
        c->conn->n_calls++;
        c->next = mc->calls;
        mc->calls = c;
        return RPC_OK;
}

/* Finish a list of calls that could not be sent; mc may be gone after the first. */
typedef struct Failed {
        CallCtx *call;
        int status;
        const char *message;
} Failed;

static void finish_failed(Failed *f, size_t n) {
        for (size_t i = 0; i < n; i++)
                finish(f[i].call, f[i].status, f[i].message, NULL);
        free(f);
}

/* ---- dialling and checking who answers -------------------------------------------------- */

static void dial_close(ModuleClient *mc) {
        mc->dial_io = sd_event_source_disable_unref(mc->dial_io);
        mc->dial_fd = safe_close(mc->dial_fd);
}

/* The uid the module's unit runs as, as systemd says; (uid_t)-1 when it does not say (the
 * unit is not running). */
static uid_t expected_uid(const Module *m) {
        const Manager *mgr = m->manager;

        if (m->unit_status.uid != UNIT_UID_INVALID)
                return (uid_t)m->unit_status.uid;
        if (mgr->config.user_manager)
                return geteuid(); /* a user manager runs its units as its user */
        return (uid_t)-1;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata);

/* The dial failed (why in mc->last_error): calls that may not wait fail now, the others when
 * their deadline passes; until then it is tried again. */
static void dial_failed(ModuleClient *mc, int status) {
        uint64_t now = now_usec(), next = UINT64_MAX;
        CallCtx *keep = NULL;
        Failed *failed = NULL;
        size_t n_failed = 0, n = 0;
        char *message;

        dial_close(mc);
        for (CallCtx *c = mc->pending; c; c = c->next)
                n++;
        failed = new0(Failed, n + 1);
        message = strdup(mc->last_error);
        while (mc->pending) {
                CallCtx *c = mc->pending;

                mc->pending = c->next;
                if (c->deadline > now && (c->flags & RPC_CALL_WAIT_FOR_READY)) {
                        c->next = keep;
                        keep = c;
                        next = MIN(next, c->deadline);
                } else if (failed)
                        failed[n_failed++] = (Failed){ c, c->deadline <= now ? RPC_DEADLINE_EXCEEDED : status,
                                                       message ? message : "" };
                else
                        call_ctx_free(c); /* out of memory: nothing better to do */
        }
        mc->pending = keep;
        if (keep) {
                mc->backoff_ms = MIN(MAX(mc->backoff_ms * 2, DIAL_BACKOFF_MIN_MS), DIAL_BACKOFF_MAX_MS);
                next = MIN(next, now + (uint64_t)mc->backoff_ms * 1000);
                if (sd_event_add_time(mc->module->manager->event, &mc->retry_timer, CLOCK_MONOTONIC, next, 1000,
                                      on_retry, mc) < 0)
                        mc->retry_timer = NULL;
        }
        if (failed)
                finish_failed(failed, n_failed);
        free(message);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        ModuleClient *mc = userdata;

        mc->retry_timer = sd_event_source_disable_unref(mc->retry_timer);
        dial_start(mc);
        return 0;
}

static void on_connected(ModuleClient *mc) {
        Module *m = mc->module;
        uid_t want = expected_uid(m), got;
        ino_t ino;
        Conn *conn;
        char target[32];
        int fd, r;

        if (want == (uid_t)-1) {
                snprintf(mc->last_error, sizeof(mc->last_error), "its unit is not running (systemd names no user)");
                dial_failed(mc, RPC_UNAVAILABLE);
                return;
        }
        r = socket_peer_owner(mc->dial_fd, &got, &ino);
        if (r < 0) {
                snprintf(mc->last_error, sizeof(mc->last_error), "cannot tell who answers on port %u: %s", m->port,
                         strerror(-r));
                dial_failed(mc, RPC_UNAVAILABLE);
                return;
        }
        if (got != want) {
                snprintf(mc->last_error, sizeof(mc->last_error),
                         "port %u is held by uid %u, not by the module (uid %u): nothing was sent to it", m->port,
                         (unsigned)got, (unsigned)want);
                if (!mc->squat_logged)
                        log_warning("Module %s: port %u answers as uid %u, not as the module's user (uid %u): "
                                    "another process holds its port. Not talking to it; trying again.",
                                    m->name, m->port, (unsigned)got, (unsigned)want);
                mc->squat_logged = true;
                dial_failed(mc, RPC_UNAVAILABLE);
                return;
        }
        mc->squat_logged = false;
        mc->backoff_ms = 0;
        conn = new0(Conn, 1);
        if (!conn) {
                snprintf(mc->last_error, sizeof(mc->last_error), "out of memory");
                dial_failed(mc, RPC_RESOURCE_EXHAUSTED);
                return;
        }
        snprintf(target, sizeof(target), "127.0.0.1:%u", m->port);
        mc->dial_io = sd_event_source_disable_unref(mc->dial_io);
        fd = TAKE_FD(mc->dial_fd);
        r = rpc_channel_new_from_fd(&conn->channel, m->manager->rpc, target, fd);
        if (r < 0) {
                free(conn);
                snprintf(mc->last_error, sizeof(mc->last_error), "cannot make a channel: %s", strerror(-r));
                dial_failed(mc, RPC_UNAVAILABLE);
                return;
        }
        mc->current = conn;
        /* Everything that waited goes out now, in the order it was asked for. */
        CallCtx *list = NULL;
        size_t n = 0, n_failed = 0;
        while (mc->pending) {
                CallCtx *c = mc->pending;
                mc->pending = c->next;
                c->next = list;
                list = c;
                n++;
        }
        Failed *failed = new0(Failed, n + 1);
        while (list) {
                CallCtx *c = list;
                const char *message = NULL;
                int status;

                list = c->next;
                status = send_call(mc, c, &message);
                if (status == RPC_OK)
                        continue;
                if (failed)
                        failed[n_failed++] = (Failed){ c, status, message };
                else
                        call_ctx_free(c);
        }
        if (failed)
                finish_failed(failed, n_failed);
}

static int on_dial_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ModuleClient *mc = userdata;
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        if (err != 0) {
                snprintf(mc->last_error, sizeof(mc->last_error), "nothing answers on port %u (%s)", mc->module->port,
                         strerror(err));
                dial_failed(mc, RPC_UNAVAILABLE);
                return 0;
        }
        on_connected(mc);
        return 0;
}

static void dial_start(ModuleClient *mc) {
        struct sockaddr_in a = { .sin_family = AF_INET };
        int r;

        if (mc->current || mc->dial_fd >= 0 || mc->retry_timer || !mc->pending)
                return;
        a.sin_port = htons(mc->module->port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        mc->dial_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (mc->dial_fd < 0) {
                snprintf(mc->last_error, sizeof(mc->last_error), "cannot make a socket: %s", strerror(errno));
                dial_failed(mc, RPC_UNAVAILABLE);
                return;
        }
        if (connect(mc->dial_fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
                on_connected(mc);
                return;
        }
        if (errno != EINPROGRESS) {
                snprintf(mc->last_error, sizeof(mc->last_error), "nothing answers on port %u (%s)", mc->module->port,
                         strerror(errno));
                dial_failed(mc, RPC_UNAVAILABLE);
                return;
        }
        r = sd_event_add_io(mc->module->manager->event, &mc->dial_io, mc->dial_fd, EPOLLOUT, on_dial_io, mc);
        if (r < 0) {
                snprintf(mc->last_error, sizeof(mc->last_error), "cannot wait for the connection: %s", strerror(-r));
                dial_failed(mc, RPC_UNAVAILABLE);
        }
}

static int module_call(Module *m, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *reply_type, uint32_t timeout_ms, unsigned flags,
                       take_reply_t take, bool notify_on_cancel, bool retry, module_call_done_t done, void *userdata) {
        ModuleClient *mc = m->client;
        CallCtx *c;

        if (!mc)
                return -ENOTCONN;
        c = new0(CallCtx, 1);
        if (!c)
                return -ENOMEM;
        *c = (CallCtx){ .module = m, .client = mc, .take = take, .done = done, .userdata = userdata,
                        .notify_on_cancel = notify_on_cancel, .retry = retry, .method = method,
                        .request_type = request->descriptor, .reply_type = reply_type,
                        .deadline = now_usec() + (uint64_t)timeout_ms * 1000, .flags = flags };
        c->packed_size = protobuf_c_message_get_packed_size(request);
        c->packed = malloc(MAX(c->packed_size, 1u));
        if (!c->packed) {
                free(c);
                return -ENOMEM;
        }
        protobuf_c_message_pack(request, c->packed);
        if (mc->current) {
                const char *message;
                int status = send_call(mc, c, &message);

                if (status != RPC_OK) {
                        call_ctx_free(c);
                        return status == RPC_RESOURCE_EXHAUSTED ? -ENOMEM : -EIO;
                }
                return 0;
        }
        c->next = mc->pending;
        mc->pending = c;
        dial_start(mc);
        return 0;
}

int module_client_connect(Module *m) {
        ModuleClient *mc;

        assert(m);
        assert(m->manager);

        module_client_disconnect(m);
        mc = new0(ModuleClient, 1);
        if (!mc)
                return -ENOMEM;
        mc->module = m;
        mc->dial_fd = -1;
        /* Dialled when the first call needs it. */
        m->client = mc;
        return 0;
}

static void cancel_list(Module *m, CallCtx *list) {
        while (list) {
                CallCtx *c = list;
                ModuleCallResult result = { .status = RPC_CANCELLED, .message = "the module went away" };

                list = c->next;
                if (c->notify_on_cancel && c->done)
                        c->done(m, &result, c->userdata);
                call_ctx_free(c);
        }
}

void module_client_disconnect(Module *m) {
        ModuleClient *mc;
        CallCtx *calls, *pending;

        assert(m);
        mc = TAKE_PTR(m->client);
        if (!mc)
                return;
        dial_close(mc);
        mc->retry_timer = sd_event_source_disable_unref(mc->retry_timer);
        mc->gc = sd_event_source_disable_unref(mc->gc);
        /* Cancelled calls run no callback of the runtime: free their contexts here, telling the
         * callers that must always hear back. */
        conn_free(mc->current);
        while (mc->retired) {
                Conn *c = mc->retired;
                mc->retired = c->next;
                conn_free(c);
        }
        calls = TAKE_PTR(mc->calls);
        pending = TAKE_PTR(mc->pending);
        free(mc);
        cancel_list(m, calls);
        cancel_list(m, pending);
}

static char *bounded_strdup(const char *s, size_t max) {
        return strndup(s ? s : "", max);
}

static ModuleState state_from_proto(Callassistant__V1__ModuleState s) {
        switch (s) {
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_WAITING_FOR_CONFIG:
                return MODULE_WAITING_FOR_CONFIG;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_READY:
                return MODULE_READY;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_ERROR:
                return MODULE_ERROR;
        default:
                return MODULE_STARTING;
        }
}

/* Media tokens: [a-z0-9_]{1,32}; anything else a module declares is ignored. */
static bool media_token_valid(const char *s) {
        size_t n = 0;

        for (; s && *s; s++, n++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return n >= 1 && n <= 32;
}

static int take_media(char ***ret, char *const *media, size_t n_media) {
        size_t n = MIN(n_media, (size_t)MAX_MEDIA), k = 0;
        char **l = new0(char *, n + 1);

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (media_token_valid(media[i]) && !(l[k++] = strdup(media[i]))) {
                        strv_free(l);
                        return -ENOMEM;
                }
        *ret = l;
        return 0;
}

/* Copy what the module told us, bounded. */
static int take_registration(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result) {
        const Callassistant__V1__RegisterModuleResponse *resp = (const void *)reply;
        size_t n = MIN(resp->n_entity_types, (size_t)MAX_ENTITY_TYPES);

        module_clear_registration(m);
        result->reported = state_from_proto(resp->state);
        m->reg_name = bounded_strdup(resp->name, 64);
        m->reg_version = bounded_strdup(resp->version, 64);
        m->reg_description = bounded_strdup(resp->description, MAX_STRING);
        m->config_schema = bounded_strdup(resp->config_schema, MAX_SCHEMA);
        m->config_required = resp->config_required;
        if (!m->reg_name || !m->reg_version || !m->reg_description || !m->config_schema)
                return -ENOMEM;
        if (n == 0)
                return 0;
        m->entity_types = new0(EntityType, n);
        if (!m->entity_types)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const Callassistant__V1__EntityType *t = resp->entity_types[i];
                size_t nc = MIN(t->n_capabilities, (size_t)MAX_CAPABILITIES);
                EntityType *e = &m->entity_types[i];

                m->n_entity_types++;
                e->name = bounded_strdup(t->name, 64);
                e->description = bounded_strdup(t->description, MAX_STRING);
                e->capabilities = new0(char *, nc + 1);
                if (!e->name || !e->description || !e->capabilities)
                        return -ENOMEM;
                for (size_t k = 0; k < nc; k++) {
                        e->capabilities[k] = bounded_strdup(t->capabilities[k], 64);
                        if (!e->capabilities[k])
                                return -ENOMEM;
                }
                if (take_media(&e->media_in, t->media_in, t->n_media_in) < 0 ||
                    take_media(&e->media_out, t->media_out, t->n_media_out) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int module_client_register(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__RegisterModuleRequest req = CALLASSISTANT__V1__REGISTER_MODULE_REQUEST__INIT;

        assert(m);
        req.module_id = m->name;
        req.orchestrator_address = m->manager->orchestrator_address;
        req.protocol_version = (char *)"v1";
        return module_call(m, "/callassistant.v1.ModuleService/RegisterModule", &req.base,
                           &callassistant__v1__register_module_response__descriptor, timeout_ms,
                           RPC_CALL_WAIT_FOR_READY, take_registration, false, true, done, userdata);
}

static int take_applied(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result) {
        result->reported = state_from_proto(((const Callassistant__V1__ApplyConfigResponse *)reply)->state);
        return 0;
}

int module_client_apply_config(Module *m, const char *config_json, uint32_t timeout_ms, module_call_done_t done,
                               void *userdata) {
        Callassistant__V1__ApplyConfigRequest req = CALLASSISTANT__V1__APPLY_CONFIG_REQUEST__INIT;

        assert(m);
        assert(config_json);
        req.config_json = (char *)config_json;
        return module_call(m, "/callassistant.v1.ModuleService/ApplyConfig", &req.base,
                           &callassistant__v1__apply_config_response__descriptor, timeout_ms, 0, take_applied, true,
                           false, done, userdata);
}

static int take_health(Module *m, const ProtobufCMessage *reply, ModuleCallResult *result) {
        const Grpc__Health__V1__HealthCheckResponse *resp = (const void *)reply;

        result->health = resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                                 ? HEALTH_SERVING
                                 : HEALTH_NOT_SERVING;
        return 0;
}

int module_client_health_check(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

        assert(m);
        req.service = (char *)"";
        return module_call(m, "/grpc.health.v1.Health/Check", &req.base,
                           &grpc__health__v1__health_check_response__descriptor, timeout_ms, 0, take_health, false,
                           true, done, userdata);
}

int module_client_list_entities(Module *m, uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__ListEntitiesRequest req = CALLASSISTANT__V1__LIST_ENTITIES_REQUEST__INIT;

        assert(m);
        req.type = (char *)"";
        return module_call(m, "/callassistant.v1.ModuleService/ListEntities", &req.base,
                           &callassistant__v1__list_entities_response__descriptor, timeout_ms, 0, NULL, true, true,
                           done, userdata);
}

/* ---- entities and flows -------------------------------------------------------------- */

#define MAX_LINK_STRING (64 * 1024)

static void wipe_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

void flow_link_done(FlowLink *l) {
        if (!l)
                return;
        wipe_free(l->media);
        wipe_free(l->url);
        wipe_free(l->sdp);
        wipe_free(l->sdp_type);
        *l = (FlowLink){};
}

int flow_link_from_proto(FlowLink *l, const ProtobufCMessage *msg) {
        const Callassistant__V1__MediaLink *p = (const void *)msg;

        flow_link_done(l);
        if (!p || !p->media || !*p->media)
                return 0;
        l->media = bounded_strdup(p->media, 32);
        l->url = bounded_strdup(p->url, 4096);
        l->sdp = bounded_strdup(p->sdp, MAX_LINK_STRING);
        l->sdp_type = bounded_strdup(p->sdp_type, 16);
        if (!l->media || !l->url || !l->sdp || !l->sdp_type) {
                flow_link_done(l);
                return -ENOMEM;
        }
        return 0;
}

static void link_to_proto(const FlowLink *l, Callassistant__V1__MediaLink *p) {
        callassistant__v1__media_link__init(p);
        p->media = l->media ? l->media : (char *)"";
        p->url = l->url ? l->url : (char *)"";
        p->sdp = l->sdp ? l->sdp : (char *)"";
        p->sdp_type = l->sdp_type ? l->sdp_type : (char *)"";
}

int module_client_create_entity(Module *m, const char *type, const char *name, const char *config_json,
                                uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__CreateEntityRequest req = CALLASSISTANT__V1__CREATE_ENTITY_REQUEST__INIT;

        assert(m);
        assert(type);
        req.type = (char *)type;
        req.name = (char *)(name ? name : "");
        req.config_json = (char *)(config_json ? config_json : "{}");
        return module_call(m, "/callassistant.v1.ModuleService/CreateEntity", &req.base,
                           &callassistant__v1__entity__descriptor, timeout_ms, 0, NULL, true, false, done, userdata);
}

int module_client_destroy_entity(Module *m, const char *id, uint32_t timeout_ms, module_call_done_t done,
                                 void *userdata) {
        Callassistant__V1__DestroyEntityRequest req = CALLASSISTANT__V1__DESTROY_ENTITY_REQUEST__INIT;

        assert(m);
        assert(id);
        req.id = (char *)id;
        return module_call(m, "/callassistant.v1.ModuleService/DestroyEntity", &req.base,
                           &callassistant__v1__destroy_entity_response__descriptor, timeout_ms, 0, NULL, true, true, done,
                           userdata);
}

int module_client_connect_entity(Module *m, const char *id, const char *flow_id, const FlowLink *input,
                                 const char *output_media, const FlowLink *peer, const char *request_id,
                                 uint32_t timeout_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__ConnectEntityRequest req = CALLASSISTANT__V1__CONNECT_ENTITY_REQUEST__INIT;
        Callassistant__V1__MediaLink in, pe;

        assert(m);
        assert(id);
        assert(flow_id);
        req.id = (char *)id;
        req.flow_id = (char *)flow_id;
        req.output_media = (char *)(output_media ? output_media : "");
        if (flow_link_is_set(input)) {
                link_to_proto(input, &in);
                req.input = &in;
        }
        if (flow_link_is_set(peer)) {
                link_to_proto(peer, &pe);
                req.peer = &pe;
        }
        if (request_id)
                req.request_id = (char *)request_id;
        return module_call(m, "/callassistant.v1.ModuleService/ConnectEntity", &req.base,
                           &callassistant__v1__connect_entity_response__descriptor, timeout_ms, 0, NULL, true, true, done,
                           userdata);
}

int module_client_disconnect_entity(Module *m, const char *id, const char *flow_id, uint32_t timeout_ms,
                                    module_call_done_t done, void *userdata) {
        Callassistant__V1__DisconnectEntityRequest req = CALLASSISTANT__V1__DISCONNECT_ENTITY_REQUEST__INIT;

        assert(m);
        req.id = (char *)id;
        req.flow_id = (char *)flow_id;
        return module_call(m, "/callassistant.v1.ModuleService/DisconnectEntity", &req.base,
                           &callassistant__v1__disconnect_entity_response__descriptor, timeout_ms, 0, NULL, true,
                           true, done, userdata);
}

int module_client_shutdown(Module *m, uint32_t deadline_ms, module_call_done_t done, void *userdata) {
        Callassistant__V1__ShutdownRequest req = CALLASSISTANT__V1__SHUTDOWN_REQUEST__INIT;

        assert(m);
        req.deadline_ms = deadline_ms;
        return module_call(m, "/callassistant.v1.ModuleService/Shutdown", &req.base,
                           &callassistant__v1__shutdown_response__descriptor, deadline_ms, 0, NULL, false, false,
                           done, userdata);
}
