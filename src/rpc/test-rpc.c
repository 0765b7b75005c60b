/* Unit tests of the gRPC runtime, over loopback in one process (plus one child process for
 * the peer that disappears): unary and streaming calls, metadata, malformed and oversize
 * messages, deadlines, client cancellation, a peer killed mid-call, shutdown with calls in
 * flight. Uses grpc.health.v1 messages. */
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/macro.h"

#define CHECK "/grpc.health.v1.Health/Check"
#define WATCH "/grpc.health.v1.Health/Watch"
#define HANG "/test.Hang/Hang"
#define BYE "/test.Bye/Bye"

typedef Grpc__Health__V1__HealthCheckRequest Req;
typedef Grpc__Health__V1__HealthCheckResponse Resp;

static bool bye_replied;

typedef struct Server {
        RpcServerCall *held;        /* a call the "hang" handler keeps */
        bool hang_cancelled;
        RpcServerCall *stream;      /* the Watch call, for streaming tests */
        bool stream_cancelled;
        char token[64];
        void *userdata_seen;        /* what the last Check or Bye handler got */
} Server;

static Server srv;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void on_check(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Req *req = (const Req *)request;
        Resp resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

        srv.token[0] = 0;
        srv.userdata_seen = userdata;
        assert_ptr_equal(rpc_server_call_get_userdata(call), userdata);
        (void)rpc_server_call_get_metadata(call, "x-token", srv.token, sizeof(srv.token));
        if (strcmp(req->service, "") == 0 || strcmp(req->service, "svc") == 0) {
                resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
                assert_int_equal(rpc_server_call_reply(call, &resp.base), 0);
        } else
                assert_int_equal(rpc_server_call_fail(call, RPC_NOT_FOUND, "unknown service"), 0);
}

static void on_hang_cancel(RpcServerCall *call, void *userdata) {
        srv.hang_cancelled = true;
        srv.held = NULL;
}

static void on_hang(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        srv.held = call; /* never answered */
        srv.hang_cancelled = false;
        rpc_server_call_set_cancel_handler(call, on_hang_cancel, NULL);
}

static void on_stream_cancel(RpcServerCall *call, void *userdata) {
        srv.stream_cancelled = true;
        srv.stream = NULL;
}

static void on_watch(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Req *req = (const Req *)request;
        Resp resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        for (int i = 0; i < 3; i++)
                assert_int_equal(rpc_server_call_write(call, &resp.base), 0);
        if (strcmp(req->service, "forever") == 0) {
                /* Keep the stream open until the client cancels. */
                srv.stream = call;
                srv.stream_cancelled = false;
                rpc_server_call_set_cancel_handler(call, on_stream_cancel, NULL);
                return;
        }
        assert_int_equal(rpc_server_call_finish(call, RPC_OK, NULL), 0);
}

static void on_bye(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Resp resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        srv.userdata_seen = userdata;
        assert_int_equal(rpc_server_call_reply(call, &resp.base), 0);
        bye_replied = true;
}

static const RpcMethod methods[] = {
        { BYE, &grpc__health__v1__health_check_request__descriptor, on_bye, false },
        { CHECK, &grpc__health__v1__health_check_request__descriptor, on_check, false },
        { WATCH, &grpc__health__v1__health_check_request__descriptor, on_watch, true },
        { HANG, &grpc__health__v1__health_check_request__descriptor, on_hang, false },
};

typedef struct Result {
        bool done;
        int status;
        char message[256];
        int serving;
        unsigned n_messages;
} Result;

static void on_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                    void *userdata) {
        Result *r = userdata;

        r->done = true;
        r->status = status;
        snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
        if (response)
                r->serving = ((const Resp *)response)->status;
}

static void on_message(RpcClientCall *call, const ProtobufCMessage *message, void *userdata) {
        Result *r = userdata;
        r->n_messages++;
}

typedef struct Env {
        sd_event *event;
        RpcRuntime *rt;
        RpcServer *server;
        RpcChannel *channel;
} Env;

/* max_message, idle_timeout_ms: 0 for the runtime's defaults */
static void env_setup_full(Env *e, size_t max_message, unsigned idle_timeout_ms) {
        char target[64];

        memset(&srv, 0, sizeof(srv));
        assert_true(sd_event_new(&e->event) >= 0);
        assert_int_equal(rpc_runtime_new(&e->rt, e->event), 0);
        if (max_message)
                rpc_runtime_set_max_message(e->rt, max_message);
        if (idle_timeout_ms)
                rpc_runtime_set_server_idle_timeout(e->rt, idle_timeout_ms);
        assert_int_equal(rpc_server_new(&e->server, e->rt, "127.0.0.1:0", methods, ELEMENTSOF(methods), NULL), 0);
        assert_true(rpc_server_get_port(e->server) > 0);
        snprintf(target, sizeof(target), "127.0.0.1:%d", rpc_server_get_port(e->server));
        assert_int_equal(rpc_channel_new(&e->channel, e->rt, target), 0);
}

static void env_setup(Env *e, size_t max_message) {
        env_setup_full(e, max_message, 0);
}

static void env_teardown(Env *e) {
        rpc_channel_free(e->channel);
        rpc_runtime_free(e->rt); /* frees the server too */
        sd_event_unref(e->event);
}

static void call_check(Env *e, const char *service, uint32_t timeout_ms, const RpcMetadata *md, size_t n_md,
                       Result *r) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

        memset(r, 0, sizeof(*r));
        req.service = (char *)service;
        assert_int_equal(rpc_channel_call(e->channel, CHECK, &req.base,
                                          &grpc__health__v1__health_check_response__descriptor, timeout_ms, 0, md,
                                          n_md, on_done, r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e->event, &r->done, 10000), 0);
}

static void test_unary_and_metadata(void **state) {
        RpcMetadata md[] = { { "x-token", "secret-1" } };
        Result r;
        Env e;

        env_setup(&e, 0);
        call_check(&e, "", 5000, md, 1, &r);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(r.serving, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        assert_string_equal(srv.token, "secret-1");

        call_check(&e, "nope", 5000, NULL, 0, &r);
        assert_int_equal(r.status, RPC_NOT_FOUND);
        assert_string_equal(r.message, "unknown service");
        assert_string_equal(srv.token, "");

        /* Many calls in a row on one channel. */
        for (int i = 0; i < 50; i++) {
                call_check(&e, "svc", 5000, NULL, 0, &r);
                assert_int_equal(r.status, RPC_OK);
        }
        env_teardown(&e);
}

/* A method's own userdata wins over the server's; methods without one get the server's. */
static void test_method_userdata(void **state) {
        static int server_ud, method_ud;
        RpcMethod table[] = {
                { CHECK, &grpc__health__v1__health_check_request__descriptor, on_check, false, &method_ud },
                { BYE, &grpc__health__v1__health_check_request__descriptor, on_bye, false, NULL },
        };
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        RpcServer *server;
        char target[64];
        Result r;
        Env e;

        env_setup(&e, 0);
        assert_int_equal(rpc_server_new(&server, e.rt, "127.0.0.1:0", table, ELEMENTSOF(table), &server_ud), 0);
        snprintf(target, sizeof(target), "127.0.0.1:%d", rpc_server_get_port(server));
        e.channel = rpc_channel_free(e.channel);
        assert_int_equal(rpc_channel_new(&e.channel, e.rt, target), 0);

        call_check(&e, "", 5000, NULL, 0, &r);
        assert_int_equal(r.status, RPC_OK);
        assert_ptr_equal(srv.userdata_seen, &method_ud);

        memset(&r, 0, sizeof(r));
        assert_int_equal(rpc_channel_call(e.channel, BYE, &req.base, &grpc__health__v1__health_check_response__descriptor,
                                          5000, 0, NULL, 0, on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_OK);
        assert_ptr_equal(srv.userdata_seen, &server_ud);

        rpc_server_free(server);
        env_teardown(&e);
}

static void test_unknown_method(void **state) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        Result r = {};
        Env e;

        env_setup(&e, 0);
        assert_int_equal(rpc_channel_call(e.channel, "/no.Such/Method", &req.base,
                                          &grpc__health__v1__health_check_response__descriptor, 5000, 0, NULL, 0,
                                          on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_UNIMPLEMENTED);
        env_teardown(&e);
}

static void test_malformed_request(void **state) {
        /* A HealthCheckResponse (field 1 as a varint) where a HealthCheckRequest (field 1 a
         * string) is expected: the wire types disagree, so unpacking fails. */
        Resp wrong = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        Result r = {};
        Env e;

        wrong.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        env_setup(&e, 0);
        assert_int_equal(rpc_channel_call(e.channel, CHECK, &wrong.base,
                                          &grpc__health__v1__health_check_response__descriptor, 5000, 0, NULL, 0,
                                          on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_INVALID_ARGUMENT);
        assert_string_equal(r.message, "malformed request message");

        /* And the server still serves. */
        call_check(&e, "", 5000, NULL, 0, &r);
        assert_int_equal(r.status, RPC_OK);
        env_teardown(&e);
}

static void test_malformed_response(void **state) {
        /* The client expects a HealthCheckRequest back but gets a HealthCheckResponse. */
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        Result r = {};
        Env e;

        env_setup(&e, 0);
        assert_int_equal(rpc_channel_call(e.channel, CHECK, &req.base,
                                          &grpc__health__v1__health_check_request__descriptor, 5000, 0, NULL, 0,
                                          on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_INTERNAL);
        assert_string_equal(r.message, "malformed response message");
        env_teardown(&e);
}

static void test_oversize_message(void **state) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        char big[4096];
        Result r = {};
        Env e;

        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        req.service = big;
        env_setup(&e, 1024);
        assert_int_equal(rpc_channel_call(e.channel, CHECK, &req.base,
                                          &grpc__health__v1__health_check_response__descriptor, 5000, 0, NULL, 0,
                                          on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_RESOURCE_EXHAUSTED);

        call_check(&e, "", 5000, NULL, 0, &r);
        assert_int_equal(r.status, RPC_OK);
        env_teardown(&e);
}

static void test_deadline_exceeded(void **state) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        Result r = {};
        Env e;

        env_setup(&e, 0);
        assert_int_equal(rpc_channel_call(e.channel, HANG, &req.base,
                                          &grpc__health__v1__health_check_response__descriptor, 200, 0, NULL, 0,
                                          on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_DEADLINE_EXCEEDED);
        /* The server learns the client is gone. */
        assert_int_equal(rpc_wait_for(e.event, &srv.hang_cancelled, 10000), 0);
        assert_null(srv.held);
        env_teardown(&e);
}

static void test_streaming(void **state) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        RpcClientCall *call = NULL;
        Result r = {};
        Env e;

        env_setup(&e, 0);
        assert_int_equal(rpc_channel_call_stream(e.channel, WATCH, &req.base,
                                                 &grpc__health__v1__health_check_response__descriptor, 5000, 0, NULL,
                                                 0, on_message, on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(r.n_messages, 3);

        /* A stream the client cancels: the server's cancel handler runs; no client callback. */
        memset(&r, 0, sizeof(r));
        req.service = (char *)"forever";
        assert_int_equal(rpc_channel_call_stream(e.channel, WATCH, &req.base,
                                                 &grpc__health__v1__health_check_response__descriptor, 0, 0, NULL, 0,
                                                 on_message, on_done, &r, &call),
                         0);
        while (r.n_messages < 3)
                assert_int_equal(sd_event_run(e.event, 5 * 1000 * 1000) >= 0, 1);
        assert_non_null(srv.stream);
        rpc_client_call_cancel(call);
        assert_int_equal(rpc_wait_for(e.event, &srv.stream_cancelled, 10000), 0);
        assert_false(r.done);
        env_teardown(&e);
}

static void test_shutdown_with_calls_in_flight(void **state) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        Result r1 = {}, r2 = {};
        Env e;

        env_setup(&e, 0);
        assert_int_equal(rpc_channel_call(e.channel, HANG, &req.base,
                                          &grpc__health__v1__health_check_response__descriptor, 0, 0, NULL, 0,
                                          on_done, &r1, NULL),
                         0);
        req.service = (char *)"forever";
        assert_int_equal(rpc_channel_call_stream(e.channel, WATCH, &req.base,
                                                 &grpc__health__v1__health_check_response__descriptor, 0, 0, NULL, 0,
                                                 on_message, on_done, &r2, NULL),
                         0);
        while (!srv.held || !srv.stream)
                assert_int_equal(sd_event_run(e.event, 5 * 1000 * 1000) >= 0, 1);

        /* Server goes away first: handlers are told, clients see the calls end. */
        rpc_server_free(e.server);
        assert_true(srv.hang_cancelled);
        assert_true(srv.stream_cancelled);
        assert_int_equal(rpc_wait_for(e.event, &r1.done, 10000), 0);
        assert_int_equal(rpc_wait_for(e.event, &r2.done, 10000), 0);
        assert_int_not_equal(r1.status, RPC_OK);
        assert_int_not_equal(r2.status, RPC_OK);

        /* Then a call in flight on a channel while the whole runtime shuts down: no callback. */
        Result r3 = {};
        assert_int_equal(rpc_channel_call(e.channel, CHECK, &req.base,
                                          &grpc__health__v1__health_check_response__descriptor, 0,
                                          RPC_CALL_WAIT_FOR_READY, NULL, 0, on_done, &r3, NULL),
                         0);
        env_teardown(&e);
        assert_false(r3.done);
}

/* A reply given just before the server goes away still reaches the client (a module
 * answering Shutdown and then exiting). */
static void test_reply_flushed_before_server_free(void **state) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        Result r = {};
        Env e;

        env_setup(&e, 0);
        bye_replied = false;
        assert_int_equal(rpc_channel_call(e.channel, BYE, &req.base, &grpc__health__v1__health_check_response__descriptor,
                                          5000, 0, NULL, 0, on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &bye_replied, 10000), 0);
        rpc_server_free(e.server); /* at once, before the reply's completion was processed */
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(r.serving, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        env_teardown(&e);
}

/* A TCP proxy that holds every new connection for a while before forwarding it: a peer
 * whose handshake is slow (a loaded machine, valgrind). */
typedef struct SlowProxy {
        int listen_fd;
        int stop_pipe[2];
        int upstream_port;
        int delay_ms;
        unsigned n_accepted;        /* read with __atomic_load_n: the proxy thread writes them */
        unsigned n_closed;
        pthread_t thread;
} SlowProxy;

static int tcp_connect_loopback(int port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -1;
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Forwards between a and b until either side closes or the proxy is stopped. */
static void proxy_pump(SlowProxy *p, int a, int b) {
        char buf[16384];

        for (;;) {
                struct pollfd pfd[3] = { { a, POLLIN, 0 }, { b, POLLIN, 0 }, { p->stop_pipe[0], POLLIN, 0 } };

                if (poll(pfd, 3, -1) < 0 || pfd[2].revents)
                        return;
                for (int i = 0; i < 2; i++) {
                        if (!pfd[i].revents)
                                continue;
                        ssize_t n = read(pfd[i].fd, buf, sizeof(buf));
                        if (n <= 0 || write(pfd[1 - i].fd, buf, n) != n)
                                return;
                }
        }
}

static void *proxy_main(void *userdata) {
        SlowProxy *p = userdata;

        for (;;) {
                struct pollfd pfd[2] = { { p->listen_fd, POLLIN, 0 }, { p->stop_pipe[0], POLLIN, 0 } };

                if (poll(pfd, 2, -1) < 0 || pfd[1].revents)
                        return NULL;
                int client = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (client < 0)
                        continue;
                __atomic_add_fetch(&p->n_accepted, 1, __ATOMIC_SEQ_CST);
                /* Hold the connection: nothing passes during the delay. */
                if (poll(&pfd[1], 1, p->delay_ms) != 0) {
                        close(client);
                        return NULL;
                }
                int upstream = tcp_connect_loopback(p->upstream_port);
                if (upstream >= 0) {
                        proxy_pump(p, client, upstream);
                        close(upstream);
                }
                close(client);
                __atomic_add_fetch(&p->n_closed, 1, __ATOMIC_SEQ_CST);
        }
}

static int slow_proxy_start(SlowProxy *p, int upstream_port, int delay_ms) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);

        *p = (SlowProxy){ .upstream_port = upstream_port, .delay_ms = delay_ms };
        p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(p->listen_fd >= 0);
        assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(p->listen_fd, 16), 0);
        assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&a, &len), 0);
        assert_int_equal(pipe2(p->stop_pipe, O_CLOEXEC), 0);
        assert_int_equal(pthread_create(&p->thread, NULL, proxy_main, p), 0);
        return ntohs(a.sin_port);
}

static void slow_proxy_stop(SlowProxy *p) {
        assert_int_equal(write(p->stop_pipe[1], "x", 1), 1);
        assert_int_equal(pthread_join(p->thread, NULL), 0);
        close(p->listen_fd);
        close(p->stop_pipe[0]);
        close(p->stop_pipe[1]);
}

/* A peer whose connection handshake takes longer than gRPC's 100 ms floor is still reached:
 * a loaded machine must not fail every connection attempt (it did, when the attempt timeout
 * was left at that floor). */
static void test_slow_handshake(void **state) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        RpcChannel *slow = NULL;
        SlowProxy proxy;
        char target[64];
        Result r = {};
        Env e;

        env_setup(&e, 0);
        snprintf(target, sizeof(target), "127.0.0.1:%d",
                 slow_proxy_start(&proxy, rpc_server_get_port(e.server), 400));
        assert_int_equal(rpc_channel_new(&slow, e.rt, target), 0);
        assert_int_equal(rpc_channel_call(slow, CHECK, &req.base, &grpc__health__v1__health_check_response__descriptor,
                                          5000, 0, NULL, 0, on_done, &r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e.event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(r.serving, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        rpc_channel_free(slow);
        env_teardown(&e);
        slow_proxy_stop(&proxy);
        /* One connection was enough: the first attempt was not given up on. */
        assert_int_equal(proxy.n_accepted, 1);
}

/* A server closes a connection that has had no call for its idle timeout; the client's
 * next call opens a new one and succeeds. */
static void test_idle_connection_closed(void **state) {
        SlowProxy proxy;
        char target[64];
        Result r;
        Env e;

        env_setup_full(&e, 0, 300);
        /* Through a proxy that holds nothing back, which counts the connections. */
        snprintf(target, sizeof(target), "127.0.0.1:%d", slow_proxy_start(&proxy, rpc_server_get_port(e.server), 0));
        rpc_channel_free(e.channel);
        assert_int_equal(rpc_channel_new(&e.channel, e.rt, target), 0);

        call_check(&e, "", 5000, NULL, 0, &r);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(__atomic_load_n(&proxy.n_accepted, __ATOMIC_SEQ_CST), 1);

        /* The server closes the idle connection (the proxy sees it go). */
        uint64_t deadline = now_usec() + 10 * 1000 * 1000;
        while (__atomic_load_n(&proxy.n_closed, __ATOMIC_SEQ_CST) < 1) {
                assert_true(now_usec() < deadline);
                assert_true(sd_event_run(e.event, 50 * 1000) >= 0);
        }

        call_check(&e, "", 5000, NULL, 0, &r);
        assert_int_equal(r.status, RPC_OK);
        env_teardown(&e);
        slow_proxy_stop(&proxy);
        assert_int_equal(proxy.n_accepted, 2);
}

/* Our own executable, resolved before any exec: under valgrind /proc/self/exe is valgrind's
 * tool, while readlink() on it answers the client program. */
static char self_exe[PATH_MAX];

/* The peer that disappears: a child process serving Hang, killed while our call waits. */
static int child_main(void) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        RpcRuntime *rt = NULL;
        RpcServer *s = NULL;
        bool never = false;

        if (sd_event_new(&event) < 0 || rpc_runtime_new(&rt, event) < 0 ||
            rpc_server_new(&s, rt, "127.0.0.1:0", methods, ELEMENTSOF(methods), NULL) < 0)
                return 1;
        printf("%d\n", rpc_server_get_port(s));
        fflush(stdout);
        (void)rpc_wait_for(event, &never, 60000);
        return 0;
}

static void test_peer_disappears(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        RpcRuntime *rt = NULL;
        RpcChannel *ch = NULL;
        char target[64], line[32] = "";
        Result r = {};
        int pipefd[2];
        FILE *f;
        pid_t pid;

        assert_int_equal(pipe(pipefd), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* exec ourselves, so that the child initializes gRPC from scratch */
                dup2(pipefd[1], STDOUT_FILENO);
                execl(self_exe, "test-rpc", "--child", NULL);
                _exit(127);
        }
        close(pipefd[1]);
        f = fdopen(pipefd[0], "r");
        assert_non_null(fgets(line, sizeof(line), f));
        fclose(f);

        assert_true(sd_event_new(&event) >= 0);
        assert_int_equal(rpc_runtime_new(&rt, event), 0);
        snprintf(target, sizeof(target), "127.0.0.1:%d", atoi(line));
        assert_int_equal(rpc_channel_new(&ch, rt, target), 0);
        assert_int_equal(rpc_channel_call(ch, HANG, &req.base, &grpc__health__v1__health_check_response__descriptor,
                                          20000, RPC_CALL_WAIT_FOR_READY, NULL, 0, on_done, &r, NULL),
                         0);
        /* Give the call time to reach the child: it then waits in the handler forever. */
        (void)rpc_wait_for(event, &r.done, 300);
        assert_false(r.done);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        assert_int_equal(rpc_wait_for(event, &r.done, 10000), 0);
        assert_int_equal(r.status, RPC_UNAVAILABLE);
        rpc_channel_free(ch);
        rpc_runtime_free(rt);
}

int main(int argc, char *argv[]) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unary_and_metadata),
                cmocka_unit_test(test_method_userdata),
                cmocka_unit_test(test_unknown_method),
                cmocka_unit_test(test_malformed_request),
                cmocka_unit_test(test_malformed_response),
                cmocka_unit_test(test_oversize_message),
                cmocka_unit_test(test_deadline_exceeded),
                cmocka_unit_test(test_streaming),
                cmocka_unit_test(test_shutdown_with_calls_in_flight),
                cmocka_unit_test(test_reply_flushed_before_server_free),
                cmocka_unit_test(test_peer_disappears),
                cmocka_unit_test(test_slow_handshake),
                cmocka_unit_test(test_idle_connection_closed),
        };

        if (argc > 1 && strcmp(argv[1], "--child") == 0)
                return child_main();
        ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
        if (n <= 0)
                return EXIT_FAILURE;
        self_exe[n] = 0;
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
