/* Unit tests of what the gRPC runtime does before it trusts a peer: the authorize hook runs on
 * the metadata and an unauthorized message is never read; untrusted messages are unpacked
 * within a budget and with bounded entry counts (the amplifying message of issue 9); unix
 * sockets whose peers the kernel names (SO_PEERCRED); channels over a socket we connected. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "callassistant/v1/orchestrator.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/macro.h"

#define EVENT "/test.Events/Report"
#define CHECK "/grpc.health.v1.Health/Check"

typedef Grpc__Health__V1__HealthCheckRequest Req;
typedef Grpc__Health__V1__HealthCheckResponse Resp;

static struct {
        unsigned handled, authorized, refused;
        size_t n_metrics;
        void *context_seen;
        bool allow_peer;
        uid_t peer_uid;
        unsigned peers_seen;
} t;

static int marker;

static bool authorize(RpcServerCall *call, void *userdata) {
        char token[32];

        if (rpc_server_call_get_metadata(call, "x-token", token, sizeof(token)) < 0 || strcmp(token, "good") != 0) {
                t.refused++;
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "who are you?");
                return false;
        }
        t.authorized++;
        rpc_server_call_set_context(call, &marker);
        return true;
}

static void on_event(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__Event *ev = (const void *)request;
        Resp resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

        t.handled++;
        t.n_metrics = ev->n_metrics;
        t.context_seen = rpc_server_call_get_context(call);
        assert_int_equal(rpc_server_call_reply(call, &resp.base), 0);
}

static void on_check(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Resp resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

        t.handled++;
        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        assert_int_equal(rpc_server_call_reply(call, &resp.base), 0);
}

static const RpcMethod methods[] = {
        { EVENT, &callassistant__v1__event__descriptor, on_event, false, NULL, authorize },
        { CHECK, &grpc__health__v1__health_check_request__descriptor, on_check, false, NULL, NULL },
};

typedef struct Result {
        bool done;
        int status;
        char message[256];
} Result;

static void on_done(RpcClientCall *call, int status, const char *message, const ProtobufCMessage *response,
                    void *userdata) {
        Result *r = userdata;

        r->done = true;
        r->status = status;
        snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
}

typedef struct Env {
        sd_event *event;
        RpcRuntime *rt;
        RpcServer *server;
        RpcChannel *channel;
} Env;

static void env_setup(Env *e) {
        char target[64];

        memset(&t, 0, sizeof(t));
        assert_true(sd_event_new(&e->event) >= 0);
        assert_int_equal(rpc_runtime_new(&e->rt, e->event), 0);
        assert_int_equal(rpc_server_new(&e->server, e->rt, "127.0.0.1:0", methods, ELEMENTSOF(methods), NULL), 0);
        snprintf(target, sizeof(target), "127.0.0.1:%d", rpc_server_get_port(e->server));
        assert_int_equal(rpc_channel_new(&e->channel, e->rt, target), 0);
}

static void env_teardown(Env *e) {
        rpc_channel_free(e->channel);
        rpc_runtime_free(e->rt);
        sd_event_unref(e->event);
}

/* Send raw Event wire data: a HealthCheckRequest with no fields of its own, whose unknown
 * fields protobuf-c packs as they are. n entries of metrics (field 6, a map), each with a key
 * of key_len bytes (0: an empty entry, 2 bytes on the wire). */
static void send_metrics(Env *e, size_t n, size_t key_len, const char *token, Result *r) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        ProtobufCMessageUnknownField *u = calloc(n, sizeof(*u));
        uint8_t *entry = malloc(key_len + 3);
        RpcMetadata md = { "x-token", token };

        assert_non_null(u);
        assert_non_null(entry);
        assert_true(key_len < 126);
        /* protobuf-c packs an unknown field as its tag and then its data, which holds the length
         * prefix: entry = length, then the map entry (a message: field 1, the key string). */
        entry[0] = (uint8_t)(key_len ? key_len + 2 : 0);
        entry[1] = 0x0a;
        entry[2] = (uint8_t)key_len;
        memset(entry + 3, 'k', key_len);
        for (size_t i = 0; i < n; i++)
                u[i] = (ProtobufCMessageUnknownField){ .tag = 6, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                                       .len = key_len ? key_len + 3 : 1, .data = entry };
        req.base.n_unknown_fields = (unsigned)n;
        req.base.unknown_fields = u;
        req.service = (char *)"";
        memset(r, 0, sizeof(*r));
        assert_int_equal(rpc_channel_call(e->channel, EVENT, &req.base, &grpc__health__v1__health_check_response__descriptor,
                                          30000, 0, &md, token ? 1 : 0, on_done, r, NULL),
                         0);
        free(u); /* packed already */
        assert_int_equal(rpc_wait_for(e->event, &r->done, 30000), 0);
        free(entry);
}

static void test_authorize_before_receive(void **state) {
        Result r;
        Env e;

        env_setup(&e);
        send_metrics(&e, 3, 4, "good", &r);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(t.handled, 1);
        assert_int_equal(t.n_metrics, 3);
        assert_ptr_equal(t.context_seen, &marker);

        /* No token, or a wrong one: refused by the hook, the handler never runs. */
        send_metrics(&e, 3, 4, NULL, &r);
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        assert_string_equal(r.message, "who are you?");
        send_metrics(&e, 3, 4, "bad", &r);
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        assert_int_equal(t.handled, 1);
        assert_int_equal(t.refused, 2);

        /* An amplifying message without a token: refused for who sent it, not for what it is
         * (it is never unpacked, so never refused as too large). */
        send_metrics(&e, 1000000, 0, "bad", &r);
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        assert_int_equal(t.handled, 1);

        /* Methods without a hook are open. */
        env_teardown(&e);
}

static void test_amplifying_message_refused(void **state) {
        Result r;
        Env e;

        env_setup(&e);
        /* 2 MB of empty map entries: a million entries, some 56 MB once unpacked. Refused. */
        send_metrics(&e, 1000000, 0, "good", &r);
        assert_int_equal(r.status, RPC_RESOURCE_EXHAUSTED);
        assert_string_equal(r.message, "message too large when unpacked");
        assert_int_equal(t.handled, 0);

        /* Within the byte budget but with more entries than any field may have. */
        send_metrics(&e, RPC_MAX_REPEATED + 1, 40, "good", &r);
        assert_int_equal(r.status, RPC_RESOURCE_EXHAUSTED);
        assert_string_equal(r.message, "message has a field with too many entries");
        assert_int_equal(t.handled, 0);

        /* As many as allowed: served. */
        send_metrics(&e, RPC_MAX_REPEATED, 40, "good", &r);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(t.n_metrics, RPC_MAX_REPEATED);
        env_teardown(&e);
}

static bool check_peer(const RpcPeer *peer, void *userdata) {
        t.peers_seen++;
        t.peer_uid = peer->uid;
        return t.allow_peer;
}

static void call_check(Env *e, RpcChannel *ch, Result *r) {
        Req req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

        memset(r, 0, sizeof(*r));
        req.service = (char *)"";
        assert_int_equal(rpc_channel_call(ch, CHECK, &req.base, &grpc__health__v1__health_check_response__descriptor, 5000,
                                          0, NULL, 0, on_done, r, NULL),
                         0);
        assert_int_equal(rpc_wait_for(e->event, &r->done, 10000), 0);
}

static void test_unix_listener_checks_peers(void **state) {
        char dir[] = "/tmp/ca-rpc-trust-XXXXXX", path[128], target[140];
        RpcServer *server;
        RpcChannel *ch;
        struct stat st;
        Result r;
        Env e;

        env_setup(&e);
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/s.sock", dir);
        snprintf(target, sizeof(target), "unix:%s", path);
        assert_int_equal(rpc_server_new(&server, e.rt, NULL, methods, ELEMENTSOF(methods), NULL), 0);
        assert_int_equal(rpc_server_listen_unix(server, path, 0660, (gid_t)-1, check_peer, NULL), 0);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0660);

        /* Refused by the check: the connection is closed before gRPC reads anything. */
        assert_int_equal(rpc_channel_new(&ch, e.rt, target), 0);
        call_check(&e, ch, &r);
        assert_int_equal(r.status, RPC_UNAVAILABLE);
        assert_true(t.peers_seen >= 1);
        assert_int_equal(t.peer_uid, getuid());
        assert_int_equal(t.handled, 0);
        rpc_channel_free(ch);

        t.allow_peer = true;
        assert_int_equal(rpc_channel_new(&ch, e.rt, target), 0);
        call_check(&e, ch, &r);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(t.handled, 1);
        rpc_channel_free(ch);

        /* Something that is not a socket at the path is never replaced. */
        rpc_server_free(server);
        assert_int_equal(access(path, F_OK), -1); /* removed with the server */
        FILE *f = fopen(path, "w");
        fclose(f);
        assert_int_equal(rpc_server_new(&server, e.rt, NULL, methods, ELEMENTSOF(methods), NULL), 0);
        assert_int_equal(rpc_server_listen_unix(server, path, 0600, (gid_t)-1, check_peer, NULL), -EEXIST);
        rpc_server_free(server);
        unlink(path);
        rmdir(dir);
        env_teardown(&e);
}

static void test_channel_from_fd(void **state) {
        struct sockaddr_in a = { .sin_family = AF_INET };
        RpcChannel *ch;
        Result r;
        Env e;
        int fd;

        env_setup(&e);
        a.sin_port = htons((uint16_t)rpc_server_get_port(e.server));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(rpc_channel_new_from_fd(&ch, e.rt, "127.0.0.1", fd), 0);
        for (int i = 0; i < 3; i++) {
                call_check(&e, ch, &r);
                assert_int_equal(r.status, RPC_OK);
        }
        /* The server goes: the channel does not come back by itself. */
        e.server = rpc_server_free(e.server);
        call_check(&e, ch, &r);
        assert_int_equal(r.status, RPC_UNAVAILABLE);
        rpc_channel_free(ch);
        env_teardown(&e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_authorize_before_receive),
                cmocka_unit_test(test_amplifying_message_refused),
                cmocka_unit_test(test_unix_listener_checks_peers),
                cmocka_unit_test(test_channel_from_fd),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
