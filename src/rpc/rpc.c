/* The gRPC runtime over the C core: a completion-queue thread hands completions to the
 * sd-event thread; servers dispatch by method name; clients make unary and streaming calls. */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>
#include <grpc/support/time.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "rpc/rpc-absl.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"

typedef struct RpcTag RpcTag;
struct RpcTag {
        void (*fn)(RpcTag *tag, bool ok);
};

typedef struct Completion {
        RpcTag *tag;
        bool ok;
} Completion;

struct RpcRuntime {
        sd_event *event;
        sd_event_source *io;
        grpc_completion_queue *cq;
        pthread_t thread;
        bool thread_started;
        int efd;
        pthread_mutex_t lock;
        Completion *queue;
        size_t n_queue, alloc_queue;
        size_t max_message;
        unsigned server_idle_timeout_ms;
        RpcServer *servers;
        RpcChannel *channels;
        size_t n_unary, unary_peak;   /* client unary calls in flight; most since the last trim */
};

struct RpcServer {
        RpcRuntime *rt;
        grpc_server *server;
        const RpcMethod *methods;
        size_t n_methods;
        void *userdata;
        int port;
        /* The pending grpc_server_request_call. */
        RpcTag request_tag;
        grpc_call *new_call;
        grpc_call_details details;
        grpc_metadata_array request_md;
        bool request_pending;
        RpcTag shutdown_tag;
        bool shutdown_done;
        RpcServerCall *calls;
        struct RpcListener *listeners;
        RpcServer *next;
};

/* A unix socket whose connections we accept ourselves, to ask the kernel who connects. */
typedef struct RpcListener {
        RpcServer *server;
        int fd;
        sd_event_source *io;
        char *path;
        ino_t ino;
        rpc_peer_check_t check;
        void *userdata;
        struct RpcListener *next;
} RpcListener;

/* Unpacking with a budget: protobuf-c allocates through this, and fails when it runs out. */
typedef struct Budget {
        ProtobufCAllocator allocator;
        size_t used, max;
        bool exhausted;
} Budget;

typedef struct SendItem {
        grpc_byte_buffer *buf;  /* a message, or NULL for the final status */
        RpcStatus status;
        char *message;
} SendItem;

struct RpcServerCall {
        RpcServer *server;
        grpc_call *call;
        const RpcMethod *method;
        char *method_name;
        grpc_metadata_array md;
        grpc_call_details details;
        unsigned refs;
        bool handler_ref;         /* the handler has not finished the call yet */
        RpcTag recv_tag, close_tag, send_tag;
        grpc_byte_buffer *recv_buf;
        int close_cancelled;
        ProtobufCMessage *request;
        Budget budget;            /* request was unpacked with it, is freed with it */
        void *context;            /* what the authorize hook kept */
        char *peer;
        bool initial_md_sent;
        bool finished;            /* the final status is queued or sent */
        bool cancelled;
        bool sending;
        SendItem *queue;
        size_t n_queue, alloc_queue;
        grpc_byte_buffer *in_flight_buf;
        grpc_slice status_details;
        bool has_status_details;
        void (*cancel_handler)(RpcServerCall *c, void *userdata);
        void *cancel_userdata;
        RpcServerCall *next, *prev;
};

struct RpcChannel {
        RpcRuntime *rt;
        grpc_channel *channel;
        RpcClientCall *calls;
        RpcChannel *next;
};

struct RpcClientCall {
        RpcChannel *channel;
        RpcRuntime *rt;
        grpc_call *call;
        unsigned refs;
        bool streaming;
        bool suppressed;          /* cancelled by the user: no more callbacks */
        bool status_received, recv_ended, done_called;
        bool counted;             /* in rt->n_unary */
        RpcTag main_tag, status_tag, recv_tag;
        grpc_metadata_array initial_md, trailing_md;
        grpc_status_code status;
        grpc_slice status_details;
        grpc_byte_buffer *send_buf, *recv_buf;
        grpc_metadata *md;
        size_t n_md;
        const ProtobufCMessageDescriptor *type;
        rpc_done_t done;
        rpc_message_t on_message;
        void *userdata;
        RpcClientCall *next, *prev;
};

static const char *const status_names[] = {
        "OK",          "CANCELLED",        "UNKNOWN",           "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND",   "ALREADY_EXISTS",   "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",     "OUT_OF_RANGE",     "UNIMPLEMENTED",     "INTERNAL",         "UNAVAILABLE",
        "DATA_LOSS",   "UNAUTHENTICATED",
};

const char *rpc_status_to_string(int status) {
        if (status >= 0 && (size_t)status < ELEMENTSOF(status_names))
                return status_names[status];
        return "UNKNOWN";
}

/* ---- protobuf <-> byte buffers ---- */

static grpc_byte_buffer *pack(const ProtobufCMessage *msg) {
        size_t size = protobuf_c_message_get_packed_size(msg);
        grpc_slice slice = grpc_slice_malloc(size);
        grpc_byte_buffer *buf;

        protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
        buf = grpc_raw_byte_buffer_create(&slice, 1);
        grpc_slice_unref(slice);
        return buf;
}

static void *budget_alloc(void *userdata, size_t size) {
        Budget *b = userdata;
        void *p;

        if (size > b->max - b->used) {
                b->exhausted = true;
                return NULL;
        }
        p = malloc(size);
        if (!p)
                return NULL;
        b->used += malloc_usable_size(p);
        return p;
}

static void budget_free(void *userdata, void *p) {
        Budget *b = userdata;

        if (!p)
                return;
        b->used -= MIN(b->used, malloc_usable_size(p));
        free(p);
}

static void budget_init(Budget *b, size_t packed) {
        *b = (Budget){ .allocator = { .alloc = budget_alloc, .free = budget_free, .allocator_data = b },
                       .max = MIN((size_t)RPC_MAX_UNPACKED, packed * 8 + 65536) };
}

/* No repeated (or map) field anywhere in m has more than max entries. */
static bool repeated_within(const ProtobufCMessage *m, size_t max, unsigned depth) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const char *base = (const char *)m;

        if (depth > 32)
                return false;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];

                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *)(base + f->quantifier_offset);
                        ProtobufCMessage *const *items;

                        if (n > max)
                                return false;
                        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                                continue;
                        items = *(ProtobufCMessage *const *const *)(base + f->offset);
                        for (size_t k = 0; k < n; k++)
                                if (items[k] && !repeated_within(items[k], max, depth + 1))
                                        return false;
                } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                        const ProtobufCMessage *sub;

                        /* A member of a oneof shares its storage: only the chosen one is a message. */
                        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
                                continue;
                        sub = *(ProtobufCMessage *const *)(base + f->offset);
                        if (sub && !repeated_within(sub, max, depth + 1))
                                return false;
                }
        }
        return true;
}

/* Unpack an untrusted message within a budget. On failure *reason says why: -E2BIG (more heap
 * than its budget), -EMSGSIZE (a field with too many entries), -EBADMSG (malformed). */
static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *type, grpc_byte_buffer *buf, Budget *budget,
                                int *reason) {
        grpc_byte_buffer_reader reader;
        ProtobufCMessage *msg;
        grpc_slice slice;

        *reason = -EBADMSG;
        if (!grpc_byte_buffer_reader_init(&reader, buf))
                return NULL;
        slice = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        budget_init(budget, GRPC_SLICE_LENGTH(slice));
        msg = protobuf_c_message_unpack(type, &budget->allocator, GRPC_SLICE_LENGTH(slice),
                                        GRPC_SLICE_START_PTR(slice));
        grpc_slice_unref(slice);
        if (!msg) {
                if (budget->exhausted)
                        *reason = -E2BIG;
                return NULL;
        }
        if (!repeated_within(msg, RPC_MAX_REPEATED, 0)) {
                protobuf_c_message_free_unpacked(msg, &budget->allocator);
                *reason = -EMSGSIZE;
                return NULL;
        }
        return msg;
}

static const char *unpack_error(int reason) {
        return reason == -E2BIG      ? "message too large when unpacked"
               : reason == -EMSGSIZE ? "message has a field with too many entries"
                                     : "malformed message";
}

/* ---- runtime ---- */

static void *cq_thread(void *arg) {
        RpcRuntime *rt = arg;

        for (;;) {
                grpc_event ev = grpc_completion_queue_next(rt->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                        break;
                if (ev.type != GRPC_OP_COMPLETE)
                        continue;

                pthread_mutex_lock(&rt->lock);
                if (rt->n_queue == rt->alloc_queue) {
                        size_t n = rt->alloc_queue ? rt->alloc_queue * 2 : 64;
                        Completion *q = realloc(rt->queue, n * sizeof(Completion));
                        if (!q)
                                abort(); /* cannot drop a completion: its owner would leak or hang */
                        rt->queue = q;
                        rt->alloc_queue = n;
                }
                rt->queue[rt->n_queue++] = (Completion){ .tag = ev.tag, .ok = ev.success != 0 };
                pthread_mutex_unlock(&rt->lock);
                (void)eventfd_write(rt->efd, 1);
        }
        return NULL;
}

/* A burst of calls (the health checks of every module, sent at once each interval) leaves
 * its memory to malloc as free chunks spread over the heap: some 10 kB per call in flight,
 * kept for the next burst. Once the burst is over it goes back to the system; the next one
 * faults its pages in again, which costs far less than the trim itself (a few hundred µs). */
#define TRIM_AFTER_CALLS 16u

static void trim_after_burst(RpcRuntime *rt) {
        if (rt->n_unary > 0 || rt->unary_peak < TRIM_AFTER_CALLS)
                return;
        rt->unary_peak = 0;
        (void)malloc_trim(0);
}

/* Run the handlers of every completion queued so far (on the calling, i.e. sd-event, thread). */
static void dispatch(RpcRuntime *rt) {
        for (;;) {
                Completion *q;
                size_t n;

                pthread_mutex_lock(&rt->lock);
                q = rt->queue;
                n = rt->n_queue;
                rt->queue = NULL;
                rt->n_queue = rt->alloc_queue = 0;
                pthread_mutex_unlock(&rt->lock);
                if (n == 0) {
                        free(q);
                        trim_after_burst(rt);
                        return;
                }
                for (size_t i = 0; i < n; i++)
                        q[i].tag->fn(q[i].tag, q[i].ok);
                free(q);
        }
}

static int on_eventfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        RpcRuntime *rt = userdata;
        eventfd_t v;

        (void)eventfd_read(fd, &v);
        dispatch(rt);
        return 0;
}

/* Block (outside the event loop) until *flag is set, dispatching completions meanwhile. */
static void pump_until(RpcRuntime *rt, const bool *flag, int timeout_ms) {
        struct timespec ts;
        uint64_t deadline, now;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + (uint64_t)timeout_ms;
        while (!*flag) {
                struct pollfd p = { .fd = rt->efd, .events = POLLIN };
                eventfd_t v;

                clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
                if (now >= deadline)
                        return;
                if (poll(&p, 1, (int)(deadline - now)) > 0)
                        (void)eventfd_read(rt->efd, &v);
                dispatch(rt);
        }
}

void rpc_prepare_process(void) {
        const char *old = getenv("GRPC_EXPERIMENTS");
        _cleanup_free_ char *v = NULL;

        /* gRPC 1.51 reads every connection into 8 kB chunks ("tcp_read_chunks", on by
         * default) and keeps the rest of the last chunk for the next read: 8 kB held by every
         * idle connection. Without it, reads are sized by what the connection carries
         * (fill_channel_args()). What the user sets in GRPC_EXPERIMENTS comes after, and wins. */
        if (asprintf(&v, "-tcp_read_chunks%s%s", old && *old ? "," : "", old ? old : "") >= 0)
                (void)setenv("GRPC_EXPERIMENTS", v, 1);
}

static void grpc_settings_once(void) {
        rpc_absl_no_deadlock_detection();
}

int rpc_runtime_new(RpcRuntime **ret, sd_event *event) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        RpcRuntime *rt;
        int r;

        /* Before grpc_init() creates its mutexes. */
        (void)pthread_once(&once, grpc_settings_once);

        rt = calloc(1, sizeof(*rt));
        if (!rt)
                return -ENOMEM;
        rt->efd = -1;
        rt->max_message = RPC_DEFAULT_MAX_MESSAGE;
        rt->server_idle_timeout_ms = RPC_DEFAULT_SERVER_IDLE_TIMEOUT_MS;
        pthread_mutex_init(&rt->lock, NULL);
        rt->event = sd_event_ref(event);

        grpc_init();
        rt->cq = grpc_completion_queue_create_for_next(NULL);

        rt->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (rt->efd < 0) {
                r = -errno;
                rpc_runtime_free(rt);
                return r;
        }
        r = sd_event_add_io(event, &rt->io, rt->efd, EPOLLIN, on_eventfd, rt);
        if (r < 0) {
                rpc_runtime_free(rt);
                return r;
        }
        r = -pthread_create(&rt->thread, NULL, cq_thread, rt);
        if (r < 0) {
                rpc_runtime_free(rt);
                return r;
        }
        rt->thread_started = true;
        *ret = rt;
        return 0;
}

void rpc_runtime_set_max_message(RpcRuntime *rt, size_t bytes) {
        rt->max_message = bytes;
}

void rpc_runtime_set_server_idle_timeout(RpcRuntime *rt, unsigned ms) {
        rt->server_idle_timeout_ms = MIN(ms, (unsigned)INT_MAX);
}

static void fill_channel_args(RpcRuntime *rt, grpc_arg *args, grpc_channel_args *ca, bool client) {
        size_t n = 0;

        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                                .value.integer = (int)rt->max_message };
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                                .value.integer = (int)rt->max_message };
        /* Nothing reads channelz: do not keep its per-channel trace. */
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_ENABLE_CHANNELZ, .value.integer = 0 };
        /* No bandwidth-delay probing: it sizes flow-control windows for long fat links by
         * sending PINGs along with data; on loopback with small messages it only adds frames
         * and wake-ups to every call (a health check every second per module). */
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_HTTP2_BDP_PROBE, .value.integer = 0 };
        /* What an idle connection holds (each module has one to us, we have one to each): a
         * read goes into a buffer sized by what the connection carried lately (a 1 kB start,
         * shrinking to 256 bytes under health checks, growing for big messages up to 16 kB a
         * read), not into gRPC 1.51's fixed 8 kB chunks (off in grpc_settings_once()). The
         * unused end of the last buffer stays for the next read. */
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_TCP_READ_CHUNK_SIZE,
                                .value.integer = 1024 };
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_TCP_MIN_READ_CHUNK_SIZE,
                                .value.integer = 256 };
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE,
                                .value.integer = 16384 };
        /* Zero-copy sending is off (gRPC's default), but each connection still allocates the
         * bookkeeping for 4 zero-copy sends (1.3 kB) unless told it may have none. */
        args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_TCP_TX_ZEROCOPY_MAX_SIMULT_SENDS,
                                .value.integer = 0 };
        if (client) {
                /* Modules are on loopback and come up within milliseconds: retry connecting
                 * every 100 ms (gRPC's floor for both backoffs) instead of its default one
                 * second rising to two minutes. GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is, despite
                 * its name, the time one connection attempt (TCP + HTTP/2 handshake) may take:
                 * keep it generous, or a loaded machine fails every attempt. */
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                                        .value.integer = 100 };
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                                        .value.integer = 5000 };
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                                        .value.integer = 100 };
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_ENABLE_RETRIES,
                                        .value.integer = 0 };
                /* One channel per target, never shared between our channels. */
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                                        .value.integer = 1 };
        } else {
                /* A connection with no call for this long is closed (GOAWAY); the client
                 * reconnects on its next call. Modules call the orchestrator only now and
                 * then: an open connection holds an fd and some 30 kB on both sides. */
                args[n++] = (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                                        .value.integer = (int)rt->server_idle_timeout_ms };
        }
        *ca = (grpc_channel_args){ .num_args = n, .args = args };
}

/* ---- server calls ---- */

static void server_call_unref(RpcServerCall *c);
static void server_call_send_next(RpcServerCall *c);

static void server_call_free(RpcServerCall *c) {
        if (c->server) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        c->server->calls = c->next;
                if (c->next)
                        c->next->prev = c->prev;
        }
        for (size_t i = 0; i < c->n_queue; i++) {
                if (c->queue[i].buf)
                        grpc_byte_buffer_destroy(c->queue[i].buf);
                free(c->queue[i].message);
        }
        free(c->queue);
        if (c->in_flight_buf)
                grpc_byte_buffer_destroy(c->in_flight_buf);
        if (c->recv_buf)
                grpc_byte_buffer_destroy(c->recv_buf);
        if (c->has_status_details)
                grpc_slice_unref(c->status_details);
        if (c->request)
                protobuf_c_message_free_unpacked(c->request, &c->budget.allocator);
        if (c->peer)
                gpr_free(c->peer);
        grpc_metadata_array_destroy(&c->md);
        grpc_call_details_destroy(&c->details);
        free(c->method_name);
        if (c->call)
                grpc_call_unref(c->call);
        free(c);
}

static void server_call_unref(RpcServerCall *c) {
        if (--c->refs == 0)
                server_call_free(c);
}

static void server_call_release_handler(RpcServerCall *c) {
        if (c->handler_ref) {
                c->handler_ref = false;
                server_call_unref(c);
        }
}

static void on_server_send(RpcTag *tag, bool ok) {
        RpcServerCall *c = (RpcServerCall *)((char *)tag - offsetof(RpcServerCall, send_tag));

        c->sending = false;
        if (c->in_flight_buf) {
                grpc_byte_buffer_destroy(c->in_flight_buf);
                c->in_flight_buf = NULL;
        }
        if (!ok)
                c->cancelled = true;
        if (!c->cancelled)
                server_call_send_next(c);
        server_call_unref(c);
}

static void server_call_send_next(RpcServerCall *c) {
        grpc_op ops[3];
        size_t n = 0;
        SendItem item;

        if (c->sending || c->n_queue == 0 || c->cancelled)
                return;
        item = c->queue[0];
        memmove(c->queue, c->queue + 1, (c->n_queue - 1) * sizeof(SendItem));
        c->n_queue--;

        memset(ops, 0, sizeof(ops));
        if (!c->initial_md_sent) {
                ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
                n++;
                c->initial_md_sent = true;
        }
        if (item.buf) {
                ops[n].op = GRPC_OP_SEND_MESSAGE;
                ops[n].data.send_message.send_message = item.buf;
                n++;
                c->in_flight_buf = item.buf;
        } else {
                ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
                ops[n].data.send_status_from_server.status = (grpc_status_code)item.status;
                if (item.message && *item.message) {
                        c->status_details = grpc_slice_from_copied_string(item.message);
                        c->has_status_details = true;
                        ops[n].data.send_status_from_server.status_details = &c->status_details;
                }
                n++;
        }
        free(item.message);

        c->sending = true;
        c->refs++;
        if (grpc_call_start_batch(c->call, ops, n, &c->send_tag, NULL) != GRPC_CALL_OK) {
                /* No completion will come. */
                c->sending = false;
                c->cancelled = true;
                c->refs--;
        }
}

static int server_call_enqueue(RpcServerCall *c, grpc_byte_buffer *buf, RpcStatus status, const char *message) {
        if (c->n_queue == c->alloc_queue) {
                size_t n = c->alloc_queue ? c->alloc_queue * 2 : 4;
                SendItem *q = realloc(c->queue, n * sizeof(SendItem));
                if (!q) {
                        if (buf)
                                grpc_byte_buffer_destroy(buf);
                        return -ENOMEM;
                }
                c->queue = q;
                c->alloc_queue = n;
        }
        c->queue[c->n_queue++] = (SendItem){ .buf = buf, .status = status,
                                             .message = message ? strdup(message) : NULL };
        server_call_send_next(c);
        return 0;
}

int rpc_server_call_write(RpcServerCall *c, const ProtobufCMessage *message) {
        if (c->finished)
                return -ESTALE;
        if (c->cancelled)
                return -ECONNRESET;
        return server_call_enqueue(c, pack(message), RPC_OK, NULL);
}

int rpc_server_call_finish(RpcServerCall *c, RpcStatus status, const char *message) {
        int r = 0;

        if (c->finished)
                return -ESTALE;
        c->finished = true;
        if (!c->cancelled)
                r = server_call_enqueue(c, NULL, status, message);
        server_call_release_handler(c);
        return r;
}

int rpc_server_call_reply(RpcServerCall *c, const ProtobufCMessage *response) {
        int r;

        if (c->finished)
                return -ESTALE;
        if (!c->cancelled) {
                r = server_call_enqueue(c, pack(response), RPC_OK, NULL);
                if (r < 0) {
                        c->finished = true;
                        server_call_release_handler(c);
                        return r;
                }
        }
        return rpc_server_call_finish(c, RPC_OK, NULL);
}

int rpc_server_call_fail(RpcServerCall *c, RpcStatus status, const char *message) {
        return rpc_server_call_finish(c, status, message);
}

void *rpc_server_call_get_userdata(RpcServerCall *c) {
        if (c->method && c->method->userdata)
                return c->method->userdata;
        return c->server ? c->server->userdata : NULL;
}

const char *rpc_server_call_get_method(RpcServerCall *c) {
        return c->method_name;
}

void *rpc_server_call_get_context(RpcServerCall *c) {
        return c->context;
}

void rpc_server_call_set_context(RpcServerCall *c, void *context) {
        c->context = context;
}

const char *rpc_server_call_get_peer(RpcServerCall *c) {
        if (!c->peer && c->call)
                c->peer = grpc_call_get_peer(c->call);
        return c->peer ? c->peer : "?";
}

bool rpc_server_call_is_cancelled(RpcServerCall *c) {
        return c->cancelled;
}

void rpc_server_call_set_cancel_handler(RpcServerCall *c, void (*handler)(RpcServerCall *c, void *userdata),
                                        void *userdata) {
        c->cancel_handler = handler;
        c->cancel_userdata = userdata;
}

int rpc_server_call_get_metadata(RpcServerCall *c, const char *key, char *buf, size_t size) {
        size_t klen = strlen(key);

        for (size_t i = 0; i < c->md.count; i++) {
                const grpc_metadata *m = &c->md.metadata[i];
                size_t vlen;

                if (GRPC_SLICE_LENGTH(m->key) != klen || memcmp(GRPC_SLICE_START_PTR(m->key), key, klen) != 0)
                        continue;
                vlen = GRPC_SLICE_LENGTH(m->value);
                if (vlen + 1 > size)
                        return -ENOBUFS;
                memcpy(buf, GRPC_SLICE_START_PTR(m->value), vlen);
                buf[vlen] = 0;
                return 0;
        }
        return -ENOENT;
}

static void server_call_cancelled(RpcServerCall *c) {
        if (c->cancelled && !c->handler_ref)
                return;
        c->cancelled = true;
        if (c->handler_ref && !c->finished && c->cancel_handler) {
                void (*h)(RpcServerCall *, void *) = c->cancel_handler;
                c->cancel_handler = NULL;
                c->refs++; /* keep it alive while the handler runs */
                h(c, c->cancel_userdata);
                /* The handler must not touch the call after this. */
                c->finished = true;
                server_call_release_handler(c);
                server_call_unref(c);
        }
}

static void on_server_close(RpcTag *tag, bool ok) {
        RpcServerCall *c = (RpcServerCall *)((char *)tag - offsetof(RpcServerCall, close_tag));

        if (!ok || c->close_cancelled)
                server_call_cancelled(c);
        server_call_unref(c);
}

static void on_server_recv(RpcTag *tag, bool ok) {
        RpcServerCall *c = (RpcServerCall *)((char *)tag - offsetof(RpcServerCall, recv_tag));
        int reason;

        if (!ok || !c->recv_buf) {
                /* The client went away or sent no message. */
                if (!c->cancelled)
                        (void)rpc_server_call_fail(c, RPC_INVALID_ARGUMENT, "request message missing");
                else
                        server_call_release_handler(c);
                server_call_unref(c);
                return;
        }
        c->request = unpack(c->method->input, c->recv_buf, &c->budget, &reason);
        grpc_byte_buffer_destroy(c->recv_buf);
        c->recv_buf = NULL;
        if (!c->request) {
                char msg[128];

                /* Refused before any handler sees it; said once here, where it is decided. */
                log_warning("Refused a %s request from %s: %s.", c->method_name, rpc_server_call_get_peer(c),
                            unpack_error(reason));
                snprintf(msg, sizeof(msg), "%s", reason == -EBADMSG ? "malformed request message" : unpack_error(reason));
                (void)rpc_server_call_fail(c, reason == -EBADMSG ? RPC_INVALID_ARGUMENT : RPC_RESOURCE_EXHAUSTED, msg);
                server_call_unref(c);
                return;
        }
        c->method->handler(c, c->request, rpc_server_call_get_userdata(c));
        server_call_unref(c);
}

static void server_request_next(RpcServer *s);

static void on_server_request(RpcTag *tag, bool ok) {
        RpcServer *s = (RpcServer *)((char *)tag - offsetof(RpcServer, request_tag));
        RpcServerCall *c;
        grpc_op op;

        s->request_pending = false;
        if (!ok) {
                /* Server shutting down. */
                grpc_call_details_destroy(&s->details);
                grpc_metadata_array_destroy(&s->request_md);
                return;
        }

        c = calloc(1, sizeof(*c));
        if (!c) {
                grpc_call_cancel_with_status(s->new_call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
                grpc_call_unref(s->new_call);
                grpc_call_details_destroy(&s->details);
                grpc_metadata_array_destroy(&s->request_md);
                server_request_next(s);
                return;
        }
        c->server = s;
        c->call = s->new_call;
        c->details = s->details;
        c->md = s->request_md;
        c->method_name = grpc_slice_to_c_string(s->details.method);
        c->next = s->calls;
        if (s->calls)
                s->calls->prev = c;
        s->calls = c;
        c->recv_tag.fn = on_server_recv;
        c->close_tag.fn = on_server_close;
        c->send_tag.fn = on_server_send;
        c->refs = 1; /* handler ref */
        c->handler_ref = true;
        server_request_next(s);

        /* Learn about cancellation whatever happens. */
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op.data.recv_close_on_server.cancelled = &c->close_cancelled;
        c->refs++;
        if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) != GRPC_CALL_OK)
                c->refs--;

        for (size_t i = 0; i < s->n_methods; i++)
                if (strcmp(s->methods[i].name, c->method_name) == 0) {
                        c->method = &s->methods[i];
                        break;
                }
        if (!c->method) {
                char msg[300];
                snprintf(msg, sizeof(msg), "unknown method %s", c->method_name);
                (void)rpc_server_call_fail(c, RPC_UNIMPLEMENTED, msg);
                return;
        }
        /* Who is calling, from the metadata alone: an unauthorized call's message is never read. */
        if (c->method->authorize && !c->method->authorize(c, rpc_server_call_get_userdata(c))) {
                if (!c->finished)
                        (void)rpc_server_call_fail(c, RPC_UNAUTHENTICATED, "not authorized");
                return;
        }

        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv_buf;
        c->refs++;
        if (grpc_call_start_batch(c->call, &op, 1, &c->recv_tag, NULL) != GRPC_CALL_OK) {
                c->refs--;
                (void)rpc_server_call_fail(c, RPC_INTERNAL, "cannot receive the request");
        }
}

static void server_request_next(RpcServer *s) {
        grpc_call_details_init(&s->details);
        grpc_metadata_array_init(&s->request_md);
        s->new_call = NULL;
        if (grpc_server_request_call(s->server, &s->new_call, &s->details, &s->request_md, s->rt->cq, s->rt->cq,
                                     &s->request_tag) == GRPC_CALL_OK)
                s->request_pending = true;
        else {
                grpc_call_details_destroy(&s->details);
                grpc_metadata_array_destroy(&s->request_md);
        }
}

static void on_server_shutdown(RpcTag *tag, bool ok) {
        RpcServer *s = (RpcServer *)((char *)tag - offsetof(RpcServer, shutdown_tag));
        s->shutdown_done = true;
}

int rpc_server_new(RpcServer **ret, RpcRuntime *rt, const char *address, const RpcMethod *methods,
                   size_t n_methods, void *userdata) {
        grpc_server_credentials *creds;
        grpc_channel_args ca;
        grpc_arg args[16];
        RpcServer *s;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->rt = rt;
        s->methods = methods;
        s->n_methods = n_methods;
        s->userdata = userdata;
        s->request_tag.fn = on_server_request;
        s->shutdown_tag.fn = on_server_shutdown;

        fill_channel_args(rt, args, &ca, false);
        s->server = grpc_server_create(&ca, NULL);
        grpc_server_register_completion_queue(s->server, rt->cq, NULL);
        if (address) {
                creds = grpc_insecure_server_credentials_create();
                s->port = grpc_server_add_http2_port(s->server, address, creds);
                grpc_server_credentials_release(creds);
                if (s->port == 0) {
                        grpc_server_destroy(s->server);
                        free(s);
                        return -EADDRNOTAVAIL;
                }
        }
        grpc_server_start(s->server);
        s->next = rt->servers;
        rt->servers = s;
        server_request_next(s);
        *ret = s;
        return 0;
}


/* ---- connections we accept ourselves ---- */

int rpc_server_add_connection(RpcServer *s, int fd) {
        grpc_server_credentials *creds;

        if (fd < 0)
                return -EBADF;
        creds = grpc_insecure_server_credentials_create();
        /* gRPC takes the fd. */
        grpc_server_add_channel_from_fd(s->server, fd, creds);
        grpc_server_credentials_release(creds);
        return 0;
}

static RpcListener *listener_free(RpcListener *l) {
        struct stat st;

        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->io);
        /* Remove the socket only if it is still ours (not a successor's). */
        if (l->path && lstat(l->path, &st) >= 0 && S_ISSOCK(st.st_mode) && st.st_ino == l->ino)
                (void)unlink(l->path);
        safe_close(l->fd);
        free(l->path);
        free(l);
        return NULL;
}

static void accept_one(RpcListener *l, int fd) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        gid_t groups[64], *g = groups;
        _cleanup_free_ gid_t *big = NULL;
        socklen_t glen = sizeof(groups);
        RpcPeer peer;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_errno(errno, "Cannot tell who connected to %s, closing: %m", l->path);
                safe_close(fd);
                return;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) < 0) {
                if (errno == ERANGE && glen > 0 && (big = malloc(glen)) &&
                    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, big, &glen) >= 0)
                        g = big;
                else
                        glen = 0;
        }
        peer = (RpcPeer){ .pid = cred.pid, .uid = cred.uid, .gid = cred.gid, .groups = g,
                          .n_groups = glen / sizeof(gid_t) };
        if (!l->check || l->check(&peer, l->userdata))
                (void)rpc_server_add_connection(l->server, fd);
        else
                safe_close(fd);
}

static int on_listener(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        RpcListener *l = userdata;

        /* A bounded number per wake-up: a flood of connections cannot starve the loop. */
        for (int i = 0; i < 32; i++) {
                int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (c < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(errno, "Cannot accept a connection on %s, ignoring: %m", l->path);
                        break;
                }
                accept_one(l, c);
        }
        return 0;
}

int rpc_server_listen_unix(RpcServer *s, const char *path, mode_t mode, gid_t gid, rpc_peer_check_t check,
                           void *userdata) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        RpcListener *l;
        struct stat st;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        if (lstat(path, &st) >= 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                (void)unlink(path); /* a stale socket of an earlier run */
        }
        l = new0(RpcListener, 1);
        if (!l)
                return -ENOMEM;
        l->server = s;
        l->check = check;
        l->userdata = userdata;
        l->path = strdup(path);
        l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (!l->path || l->fd < 0) {
                r = l->path ? -errno : -ENOMEM;
                listener_free(l);
                return r;
        }
        /* The socket is created with the process's umask (no one else may connect before the
         * chmod below: connecting needs write permission); no process-wide umask() change,
         * which would race with gRPC's threads. */
        if (bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = -errno;
                free(TAKE_PTR(l->path)); /* not ours: do not unlink */
                listener_free(l);
                return r;
        }
        if (lstat(path, &st) >= 0)
                l->ino = st.st_ino;
        if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) || chmod(path, mode) < 0 ||
            listen(l->fd, SOMAXCONN) < 0) {
                r = -errno;
                listener_free(l);
                return r;
        }
        r = sd_event_add_io(s->rt->event, &l->io, l->fd, EPOLLIN, on_listener, l);
        if (r < 0) {
                listener_free(l);
                return r;
        }
        l->next = s->listeners;
        s->listeners = l;
        return 0;
}

int rpc_server_get_port(RpcServer *s) {
        return s->port;
}

RpcServer *rpc_server_free(RpcServer *s) {
        RpcRuntime *rt;

        if (!s)
                return NULL;
        rt = s->rt;
        /* No new connections first. */
        while (s->listeners) {
                RpcListener *l = s->listeners;
                s->listeners = l->next;
                listener_free(l);
        }
        /* Graceful: no new calls; answers already given (e.g. to a Shutdown request) still go
         * out. Calls that cannot end by themselves (a handler still holds them: hanging or
         * streaming) are ended now: their handlers are told, the clients get CANCELLED. */
        grpc_server_shutdown_and_notify(s->server, rt->cq, &s->shutdown_tag);
        for (RpcServerCall *c = s->calls, *next; c; c = next) {
                c->refs++;
                if (c->handler_ref && !c->finished) {
                        server_call_cancelled(c);
                        if (c->handler_ref) {
                                c->finished = true;
                                server_call_release_handler(c);
                        }
                        grpc_call_cancel(c->call, NULL);
                }
                next = c->next;
                server_call_unref(c);
        }
        pump_until(rt, &s->shutdown_done, 2000);
        if (!s->shutdown_done) {
                grpc_server_cancel_all_calls(s->server);
                pump_until(rt, &s->shutdown_done, 10000);
        }
        if (!s->shutdown_done)
                log_error("gRPC server shutdown did not complete; leaking it.");
        else
                grpc_server_destroy(s->server);
        /* Let the calls' last completions arrive so that they are freed. */
        for (int i = 0; i < 100 && s->calls; i++) {
                bool never = false;
                pump_until(rt, &never, 10);
        }
        for (RpcServerCall *c = s->calls; c; c = c->next)
                c->server = NULL;

        for (RpcServer **p = &rt->servers; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        free(s);
        return NULL;
}

/* ---- client calls ---- */

static void client_call_free(RpcClientCall *c) {
        if (c->counted)
                c->rt->n_unary--;
        if (c->channel) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        c->channel->calls = c->next;
                if (c->next)
                        c->next->prev = c->prev;
        }
        for (size_t i = 0; i < c->n_md; i++) {
                grpc_slice_unref(c->md[i].key);
                grpc_slice_unref(c->md[i].value);
        }
        free(c->md);
        grpc_metadata_array_destroy(&c->initial_md);
        grpc_metadata_array_destroy(&c->trailing_md);
        grpc_slice_unref(c->status_details);
        if (c->send_buf)
                grpc_byte_buffer_destroy(c->send_buf);
        if (c->recv_buf)
                grpc_byte_buffer_destroy(c->recv_buf);
        if (c->call)
                grpc_call_unref(c->call);
        free(c);
}

static void client_call_unref(RpcClientCall *c) {
        if (--c->refs == 0)
                client_call_free(c);
}

static void client_call_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response) {
        if (c->done_called)
                return;
        c->done_called = true;
        if (!c->suppressed && c->done)
                c->done(c, status, message, response, c->userdata);
}

static char *details_string(RpcClientCall *c) {
        return grpc_slice_to_c_string(c->status_details);
}

static void on_client_unary(RpcTag *tag, bool ok) {
        RpcClientCall *c = (RpcClientCall *)((char *)tag - offsetof(RpcClientCall, main_tag));
        ProtobufCMessage *resp = NULL;
        Budget budget;
        char *msg = details_string(c);
        int status = ok ? (int)c->status : RPC_UNAVAILABLE;

        if (status == RPC_OK) {
                int reason = -EBADMSG;

                resp = c->recv_buf ? unpack(c->type, c->recv_buf, &budget, &reason) : NULL;
                if (!resp) {
                        char m[64];

                        status = RPC_INTERNAL;
                        gpr_free(msg);
                        snprintf(m, sizeof(m), "%s", reason == -EBADMSG ? "malformed response message" : unpack_error(reason));
                        msg = gpr_strdup(c->recv_buf ? m : "response message missing");
                }
        }
        client_call_done(c, status, msg, resp);
        if (resp)
                protobuf_c_message_free_unpacked(resp, &budget.allocator);
        gpr_free(msg);
        client_call_unref(c);
}

static void client_stream_maybe_done(RpcClientCall *c) {
        if (c->status_received && c->recv_ended) {
                char *msg = details_string(c);
                client_call_done(c, (int)c->status, msg, NULL);
                gpr_free(msg);
        }
}

static void on_client_stream_start(RpcTag *tag, bool ok) {
        RpcClientCall *c = (RpcClientCall *)((char *)tag - offsetof(RpcClientCall, main_tag));
        client_call_unref(c);
}

static void on_client_stream_status(RpcTag *tag, bool ok) {
        RpcClientCall *c = (RpcClientCall *)((char *)tag - offsetof(RpcClientCall, status_tag));

        c->status_received = true;
        if (!ok)
                c->status = GRPC_STATUS_UNAVAILABLE;
        client_stream_maybe_done(c);
        client_call_unref(c);
}

static void client_stream_recv(RpcClientCall *c);

static void on_client_stream_recv(RpcTag *tag, bool ok) {
        RpcClientCall *c = (RpcClientCall *)((char *)tag - offsetof(RpcClientCall, recv_tag));

        if (!ok || !c->recv_buf) {
                c->recv_ended = true;
                client_stream_maybe_done(c);
                client_call_unref(c);
                return;
        }
        Budget budget;
        int reason;
        ProtobufCMessage *msg = unpack(c->type, c->recv_buf, &budget, &reason);
        grpc_byte_buffer_destroy(c->recv_buf);
        c->recv_buf = NULL;
        if (!msg) {
                /* A peer that sends garbage: give up on the stream. */
                grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, unpack_error(reason), NULL);
                c->recv_ended = true;
                client_stream_maybe_done(c);
                client_call_unref(c);
                return;
        }
        if (!c->suppressed && c->on_message)
                c->on_message(c, msg, c->userdata);
        protobuf_c_message_free_unpacked(msg, &budget.allocator);
        if (c->suppressed)
                c->recv_ended = true;
        if (!c->recv_ended)
                client_stream_recv(c);
        client_stream_maybe_done(c);
        client_call_unref(c);
}

static void client_stream_recv(RpcClientCall *c) {
        grpc_op op;

        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv_buf;
        c->refs++;
        if (grpc_call_start_batch(c->call, &op, 1, &c->recv_tag, NULL) != GRPC_CALL_OK) {
                c->refs--;
                c->recv_ended = true;
        }
}

static int client_call_new(RpcChannel *ch, const char *method, const ProtobufCMessage *request,
                           const ProtobufCMessageDescriptor *type, uint32_t timeout_ms, const RpcMetadata *md,
                           size_t n_md, RpcClientCall **ret) {
        RpcClientCall *c;
        gpr_timespec deadline;
        grpc_slice m;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->rt = ch->rt;
        c->type = type;
        c->status_details = grpc_empty_slice();
        grpc_metadata_array_init(&c->initial_md);
        grpc_metadata_array_init(&c->trailing_md);
        if (n_md > 0) {
                c->md = calloc(n_md, sizeof(grpc_metadata));
                if (!c->md) {
                        client_call_free(c);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n_md; i++) {
                        c->md[i].key = grpc_slice_from_copied_string(md[i].key);
                        c->md[i].value = grpc_slice_from_copied_string(md[i].value);
                }
                c->n_md = n_md;
        }
        deadline = timeout_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                 gpr_time_from_millis((int64_t)timeout_ms, GPR_TIMESPAN))
                                  : gpr_inf_future(GPR_CLOCK_REALTIME);
        m = grpc_slice_from_copied_string(method);
        c->call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, ch->rt->cq, m, NULL, deadline,
                                           NULL);
        grpc_slice_unref(m);
        if (!c->call) {
                client_call_free(c);
                return -EIO;
        }
        c->send_buf = pack(request);
        c->channel = ch;
        c->next = ch->calls;
        if (ch->calls)
                ch->calls->prev = c;
        ch->calls = c;
        *ret = c;
        return 0;
}

/* The ops every call starts with: send metadata, the request and half-close; receive the
 * server's initial metadata. Fills ops[0..3]. */
static void fill_request_ops(RpcClientCall *c, unsigned flags, grpc_op ops[static 4]) {
        memset(ops, 0, 4 * sizeof(grpc_op));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[0].data.send_initial_metadata.count = c->n_md;
        ops[0].data.send_initial_metadata.metadata = c->md;
        if (flags & RPC_CALL_WAIT_FOR_READY)
                ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY |
                               GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = c->send_buf;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
}

int rpc_channel_call(RpcChannel *ch, const char *method, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, uint32_t timeout_ms, unsigned flags,
                     const RpcMetadata *md, size_t n_md, rpc_done_t done, void *userdata, RpcClientCall **ret) {
        RpcClientCall *c;
        grpc_op ops[6];
        int r;

        r = client_call_new(ch, method, request, response_type, timeout_ms, md, n_md, &c);
        if (r < 0)
                return r;
        c->done = done;
        c->userdata = userdata;
        c->main_tag.fn = on_client_unary;

        memset(ops, 0, sizeof(ops));
        fill_request_ops(c, flags, ops);
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &c->recv_buf;
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
        ops[5].data.recv_status_on_client.status = &c->status;
        ops[5].data.recv_status_on_client.status_details = &c->status_details;

        c->refs = 1;
        if (grpc_call_start_batch(c->call, ops, 6, &c->main_tag, NULL) != GRPC_CALL_OK) {
                client_call_free(c);
                return -EIO;
        }
        c->counted = true;
        ch->rt->n_unary++;
        ch->rt->unary_peak = MAX(ch->rt->unary_peak, ch->rt->n_unary);
        if (ret)
                *ret = c;
        return 0;
}

int rpc_channel_call_stream(RpcChannel *ch, const char *method, const ProtobufCMessage *request,
                            const ProtobufCMessageDescriptor *message_type, uint32_t timeout_ms, unsigned flags,
                            const RpcMetadata *md, size_t n_md, rpc_message_t on_message, rpc_done_t done,
                            void *userdata, RpcClientCall **ret) {
        RpcClientCall *c;
        grpc_op ops[4], sop;
        int r;

        r = client_call_new(ch, method, request, message_type, timeout_ms, md, n_md, &c);
        if (r < 0)
                return r;
        c->streaming = true;
        c->done = done;
        c->on_message = on_message;
        c->userdata = userdata;
        c->main_tag.fn = on_client_stream_start;
        c->status_tag.fn = on_client_stream_status;
        c->recv_tag.fn = on_client_stream_recv;

        fill_request_ops(c, flags, ops);

        c->refs = 1;
        if (grpc_call_start_batch(c->call, ops, 4, &c->main_tag, NULL) != GRPC_CALL_OK) {
                client_call_free(c);
                return -EIO;
        }
        memset(&sop, 0, sizeof(sop));
        sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        sop.data.recv_status_on_client.trailing_metadata = &c->trailing_md;
        sop.data.recv_status_on_client.status = &c->status;
        sop.data.recv_status_on_client.status_details = &c->status_details;
        c->refs++;
        if (grpc_call_start_batch(c->call, &sop, 1, &c->status_tag, NULL) != GRPC_CALL_OK) {
                c->refs--;
                c->status_received = true;
                c->status = GRPC_STATUS_INTERNAL;
        }
        client_stream_recv(c);
        if (ret)
                *ret = c;
        return 0;
}

void rpc_client_call_cancel(RpcClientCall *c) {
        if (!c || c->suppressed)
                return;
        c->suppressed = true;
        grpc_call_cancel(c->call, NULL);
}

/* ---- channels ---- */

int rpc_channel_new(RpcChannel **ret, RpcRuntime *rt, const char *target) {
        grpc_channel_credentials *creds;
        grpc_channel_args ca;
        grpc_arg args[16];
        RpcChannel *ch;

        ch = calloc(1, sizeof(*ch));
        if (!ch)
                return -ENOMEM;
        ch->rt = rt;
        fill_channel_args(rt, args, &ca, true);
        creds = grpc_insecure_credentials_create();
        ch->channel = grpc_channel_create(target, creds, &ca);
        grpc_channel_credentials_release(creds);
        if (!ch->channel) {
                free(ch);
                return -EINVAL;
        }
        ch->next = rt->channels;
        rt->channels = ch;
        *ret = ch;
        return 0;
}

int rpc_channel_new_from_fd(RpcChannel **ret, RpcRuntime *rt, const char *target, int fd) {
        grpc_channel_credentials *creds;
        grpc_channel_args ca;
        grpc_arg args[16];
        RpcChannel *ch;

        if (fd < 0)
                return -EBADF;
        ch = calloc(1, sizeof(*ch));
        if (!ch) {
                safe_close(fd);
                return -ENOMEM;
        }
        ch->rt = rt;
        fill_channel_args(rt, args, &ca, true);
        creds = grpc_insecure_credentials_create();
        /* gRPC takes the fd (a direct channel: no resolver, no reconnection). */
        ch->channel = grpc_channel_create_from_fd(target, fd, creds, &ca);
        grpc_channel_credentials_release(creds);
        if (!ch->channel) {
                free(ch);
                return -EINVAL;
        }
        ch->next = rt->channels;
        rt->channels = ch;
        *ret = ch;
        return 0;
}

RpcChannel *rpc_channel_free(RpcChannel *ch) {
        if (!ch)
                return NULL;
        for (RpcClientCall *c = ch->calls; c; c = c->next) {
                rpc_client_call_cancel(c);
                c->channel = NULL; /* freed later, when its completions arrive */
        }
        for (RpcChannel **p = &ch->rt->channels; *p; p = &(*p)->next)
                if (*p == ch) {
                        *p = ch->next;
                        break;
                }
        grpc_channel_destroy(ch->channel);
        free(ch);
        return NULL;
}

RpcRuntime *rpc_runtime_free(RpcRuntime *rt) {
        if (!rt)
                return NULL;
        while (rt->servers)
                rpc_server_free(rt->servers);
        while (rt->channels)
                rpc_channel_free(rt->channels);
        if (rt->cq) {
                grpc_completion_queue_shutdown(rt->cq);
                if (rt->thread_started)
                        pthread_join(rt->thread, NULL);
                /* The thread has queued everything up to GRPC_QUEUE_SHUTDOWN: finish it here. */
                dispatch(rt);
                grpc_completion_queue_destroy(rt->cq);
        }
        sd_event_source_disable_unref(rt->io);
        safe_close(rt->efd);
        free(rt->queue);
        pthread_mutex_destroy(&rt->lock);
        sd_event_unref(rt->event);
        if (rt->cq)
                grpc_shutdown();
        free(rt);
        return NULL;
}

int rpc_wait_for(sd_event *event, const bool *flag, int timeout_ms) {
        struct timespec ts;
        uint64_t deadline, now;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + (uint64_t)timeout_ms;
        while (!*flag) {
                int r;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
                if (now >= deadline)
                        return -ETIME;
                r = sd_event_run(event, (deadline - now) * 1000);
                if (r < 0)
                        return r;
        }
        return 0;
}
