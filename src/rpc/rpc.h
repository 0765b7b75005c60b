/* The gRPC runtime: gRPC C core + protobuf-c, with every callback on the sd-event thread.
 *
 * One thread blocks in grpc_completion_queue_next() and hands completions to the sd-event
 * thread through an eventfd; all state is touched on the sd-event thread only.
 * Call rpc_runtime_new() after blocking the signals sd-event should handle: gRPC starts
 * threads that inherit the signal mask. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

typedef struct RpcRuntime RpcRuntime;
typedef struct RpcServer RpcServer;
typedef struct RpcServerCall RpcServerCall;
typedef struct RpcChannel RpcChannel;
typedef struct RpcClientCall RpcClientCall;

/* gRPC status codes (the values of grpc_status_code). */
typedef enum RpcStatus {
        RPC_OK = 0,
        RPC_CANCELLED = 1,
        RPC_UNKNOWN = 2,
        RPC_INVALID_ARGUMENT = 3,
        RPC_DEADLINE_EXCEEDED = 4,
        RPC_NOT_FOUND = 5,
        RPC_ALREADY_EXISTS = 6,
        RPC_PERMISSION_DENIED = 7,
        RPC_RESOURCE_EXHAUSTED = 8,
        RPC_FAILED_PRECONDITION = 9,
        RPC_ABORTED = 10,
        RPC_OUT_OF_RANGE = 11,
        RPC_UNIMPLEMENTED = 12,
        RPC_INTERNAL = 13,
        RPC_UNAVAILABLE = 14,
        RPC_DATA_LOSS = 15,
        RPC_UNAUTHENTICATED = 16,
} RpcStatus;

const char *rpc_status_to_string(int status);

#define RPC_DEFAULT_MAX_MESSAGE (4u * 1024 * 1024)
/* Untrusted messages are unpacked with a budget: at most this many bytes of heap per message
 * (and at most 8 times its packed size plus 64 kB), and at most this many entries in any
 * repeated or map field, at any depth. A message over either is refused, not unpacked. */
#define RPC_MAX_UNPACKED (16u * 1024 * 1024)
#define RPC_MAX_REPEATED 4096u
#define RPC_DEFAULT_SERVER_IDLE_TIMEOUT_MS 30000u

/* ---- runtime ---- */

/* For a process that holds many connections (the orchestrator: one to and one from each
 * module): gRPC settings that only the environment reaches (GRPC_EXPERIMENTS), so that an idle
 * connection holds no fixed read buffer. Call first thing in main(), while the process has one
 * thread: setenv() is not safe once threads may read the environment. */
void rpc_prepare_process(void);

int rpc_runtime_new(RpcRuntime **ret, sd_event *event);
/* Shuts down in the strict order gRPC needs: servers first (rpc_server_free), then the
 * completion queue is shut down and drained, then grpc_shutdown(). Calls still in flight
 * are cancelled; their callbacks do not run. */
RpcRuntime *rpc_runtime_free(RpcRuntime *rt);
/* Message size limit for servers and channels created afterwards (default 4 MiB). */
void rpc_runtime_set_max_message(RpcRuntime *rt, size_t bytes);
/* Servers created afterwards close a connection that had no call for this long (default
 * 30 s; gRPC 1.51 checks at that interval, so a connection goes after one to two times it);
 * its client reconnects on its next call. An idle connection holds an fd and buffers on
 * both ends. */
void rpc_runtime_set_server_idle_timeout(RpcRuntime *rt, unsigned ms);

/* ---- server ---- */

/* A unary handler answers with rpc_server_call_reply() or rpc_server_call_fail(), now or
 * later; a streaming handler writes with rpc_server_call_write() and ends with
 * rpc_server_call_finish(). request is owned by the call (valid until it ends). */
typedef void (*rpc_handler_t)(RpcServerCall *call, const ProtobufCMessage *request, void *userdata);
/* Runs when a call arrives, with its metadata, before its message is received or unpacked:
 * returns true to go on; false after answering the call (rpc_server_call_fail), and then the
 * message is never read. May keep what it learnt with rpc_server_call_set_context(). */
typedef bool (*rpc_authorize_t)(RpcServerCall *call, void *userdata);

typedef struct RpcMethod {
        const char *name;                         /* "/package.Service/Method" */
        const ProtobufCMessageDescriptor *input;  /* request type */
        rpc_handler_t handler;
        bool server_streaming;
        void *userdata;                           /* for the handler; NULL: the server's */
        rpc_authorize_t authorize;                /* NULL: anyone who reaches the server */
} RpcMethod;

/* address: "127.0.0.1:50050", "[::1]:0", "unix:/path", or NULL for a server without an
 * address of its own, whose connections are handed over (rpc_server_add_connection() or
 * rpc_server_listen_unix()). methods must stay valid. */
int rpc_server_new(RpcServer **ret, RpcRuntime *rt, const char *address, const RpcMethod *methods,
                   size_t n_methods, void *userdata);
/* Serve a connected stream socket (takes the fd, whatever happens). */
int rpc_server_add_connection(RpcServer *s, int fd);

/* Who is connecting to a unix socket (SO_PEERCRED, SO_PEERGROUPS). */
typedef struct RpcPeer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        const gid_t *groups;  /* supplementary groups */
        size_t n_groups;
} RpcPeer;
/* Returns true to serve the connection; false to close it unserved (the checker logs why). */
typedef bool (*rpc_peer_check_t)(const RpcPeer *peer, void *userdata);

/* Listen on a unix socket at path and serve every connection check() accepts: the kernel says
 * who connects, before a byte is read. The socket gets mode (and group gid, unless it is
 * (gid_t)-1); a stale socket at path is replaced, anything else there is an error (-EEXIST).
 * The folder must exist; it decides who may reach the path. Stops with the server. */
int rpc_server_listen_unix(RpcServer *s, const char *path, mode_t mode, gid_t gid, rpc_peer_check_t check,
                           void *userdata);
/* The bound TCP port (useful with port 0). */
int rpc_server_get_port(RpcServer *s);
/* Shuts the server down: cancels calls in flight, waits for gRPC's shutdown notification. */
RpcServer *rpc_server_free(RpcServer *s);

/* What the authorize hook kept about the caller (NULL if nothing). */
void *rpc_server_call_get_context(RpcServerCall *c);
void rpc_server_call_set_context(RpcServerCall *c, void *context);
/* The peer as gRPC names it ("ipv4:127.0.0.1:4711", "unix:...", "fd:12"), for logs. */
const char *rpc_server_call_get_peer(RpcServerCall *c);

/* The userdata the handler got: its method's, or else the server's. */
void *rpc_server_call_get_userdata(RpcServerCall *c);
const char *rpc_server_call_get_method(RpcServerCall *c);
/* Value of a request metadata key (lower case), copied into buf; -ENOENT if absent. */
int rpc_server_call_get_metadata(RpcServerCall *c, const char *key, char *buf, size_t size);
bool rpc_server_call_is_cancelled(RpcServerCall *c);
/* Called once if the client goes away (cancels, disconnects, deadline) before the end. */
void rpc_server_call_set_cancel_handler(RpcServerCall *c, void (*handler)(RpcServerCall *c, void *userdata),
                                        void *userdata);

int rpc_server_call_reply(RpcServerCall *c, const ProtobufCMessage *response);
int rpc_server_call_fail(RpcServerCall *c, RpcStatus status, const char *message);
int rpc_server_call_write(RpcServerCall *c, const ProtobufCMessage *message);
int rpc_server_call_finish(RpcServerCall *c, RpcStatus status, const char *message);

/* ---- client ---- */

typedef struct RpcMetadata {
        const char *key;
        const char *value;
} RpcMetadata;

#define RPC_CALL_WAIT_FOR_READY 0x1u  /* wait for the server to come up, until the deadline */

/* response is owned by the runtime and freed after the callback returns (NULL unless OK). */
typedef void (*rpc_done_t)(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                           void *userdata);
typedef void (*rpc_message_t)(RpcClientCall *call, const ProtobufCMessage *message, void *userdata);

/* target: "127.0.0.1:50051" or "unix:/path". */
int rpc_channel_new(RpcChannel **ret, RpcRuntime *rt, const char *target);
/* A channel over a connected stream socket (takes the fd, whatever happens): gRPC never
 * reconnects it. When the connection goes, its calls fail with UNAVAILABLE; the owner dials
 * again (and checks again who answers) and makes a new channel. */
int rpc_channel_new_from_fd(RpcChannel **ret, RpcRuntime *rt, const char *target, int fd);
/* Cancels the channel's calls in flight; their callbacks do not run. */
RpcChannel *rpc_channel_free(RpcChannel *ch);

int rpc_channel_call(RpcChannel *ch, const char *method, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, uint32_t timeout_ms, unsigned flags,
                     const RpcMetadata *md, size_t n_md, rpc_done_t done, void *userdata, RpcClientCall **ret);
/* Server streaming: on_message for each message, then done (response NULL). timeout_ms 0: none. */
int rpc_channel_call_stream(RpcChannel *ch, const char *method, const ProtobufCMessage *request,
                            const ProtobufCMessageDescriptor *message_type, uint32_t timeout_ms, unsigned flags,
                            const RpcMetadata *md, size_t n_md, rpc_message_t on_message, rpc_done_t done,
                            void *userdata, RpcClientCall **ret);
/* Cancel a call: no callback runs after this. */
void rpc_client_call_cancel(RpcClientCall *c);

/* Run the event loop until *flag becomes true or timeout_ms passes (for tools and tests).
 * Returns 0, or -ETIME. */
int rpc_wait_for(sd_event *event, const bool *flag, int timeout_ms);
