/* The C module SDK over real gRPC: a test peer (playing the orchestrator on both sides: it
 * calls the module's ModuleService and serves the OrchestratorService the module reports to)
 * against tests/sdk/flow-module, a module on the SDK. Covers the module token, entity types
 * with media, asynchronous ConnectEntity/DisconnectEntity and the reported events. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
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

#include "callassistant/v1/module.pb-c.h"
#include "callassistant/v1/orchestrator.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/macro.h"

#define MS(m) "/callassistant.v1.ModuleService/" m
#define TOKEN "0123456789abcdef-test-token"

typedef struct Result {
        bool done;
        int status;
        char message[512];
        ProtobufCMessage *response;
        const ProtobufCMessageDescriptor *type;
} Result;

typedef struct Reported {
        int kind;
        char entity_id[64];
        char entity_state[32];
        char flow_id[64];
        char sdp[256];
        char reason[128];
        double bitrate;
        size_t n_metrics;
} Reported;

static sd_event *event;
static RpcRuntime *rt;
static RpcServer *orchestrator;
static RpcChannel *ch;
static pid_t child;
static char token_path[] = "/tmp/ca-test-sdk-XXXXXX";
static Reported reported[256];
static size_t n_reported, n_bad_token, n_states;

static int free_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        port = ntohs(a.sin_port);
        close(fd);
        return port;
}

static bool token_ok(RpcServerCall *call) {
        char buf[128];
        return rpc_server_call_get_metadata(call, "x-call-assistant-module-token", buf, sizeof(buf)) == 0 &&
               strcmp(buf, TOKEN) == 0;
}

static void on_report_state(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__V1__ReportStateResponse resp = CALLASSISTANT__V1__REPORT_STATE_RESPONSE__INIT;

        if (!token_ok(call)) {
                n_bad_token++;
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "bad token");
                return;
        }
        n_states++;
        (void)rpc_server_call_reply(call, &resp.base);
}

static void on_report_event(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__Event *ev = (const Callassistant__V1__Event *)request;
        Callassistant__V1__ReportEventResponse resp = CALLASSISTANT__V1__REPORT_EVENT_RESPONSE__INIT;
        Reported *r;

        if (!token_ok(call)) {
                n_bad_token++;
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "bad token");
                return;
        }
        assert_true(n_reported < ELEMENTSOF(reported));
        r = &reported[n_reported++];
        r->kind = ev->kind;
        if (ev->entity) {
                snprintf(r->entity_id, sizeof(r->entity_id), "%s", ev->entity->id);
                snprintf(r->entity_state, sizeof(r->entity_state), "%s", ev->entity->state);
        }
        snprintf(r->flow_id, sizeof(r->flow_id), "%s", ev->flow_id);
        snprintf(r->reason, sizeof(r->reason), "%s", ev->reason);
        if (ev->kind == CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_REQUEST) {
                /* The source and request id in reason; the first request gets a flow, others
                 * are refused as a module over its limit would be. */
                snprintf(r->reason, sizeof(r->reason), "%s/%s %s %s", ev->flow_source ? ev->flow_source->module : "-",
                         ev->flow_source ? ev->flow_source->id : "-", ev->request_id,
                         ev->link ? ev->link->sdp_type : "-");
                if (ev->link)
                        snprintf(r->sdp, sizeof(r->sdp), "%s", ev->link->sdp);
                if (strcmp(ev->request_id, "call-7") != 0) {
                        (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "too many requested flows");
                        return;
                }
                resp.flow_id = (char *)"flow-0123456789abcdef";
                (void)rpc_server_call_reply(call, &resp.base);
                return;
        }
        if (ev->link)
                snprintf(r->sdp, sizeof(r->sdp), "%s", ev->link->sdp);
        r->n_metrics = ev->n_metrics;
        for (size_t i = 0; i < ev->n_metrics; i++)
                if (strcmp(ev->metrics[i]->key, "bitrate") == 0)
                        r->bitrate = ev->metrics[i]->value;
        (void)rpc_server_call_reply(call, &resp.base);
}

static const RpcMethod orchestrator_methods[] = {
        { "/callassistant.v1.OrchestratorService/ReportState", &callassistant__v1__report_state_request__descriptor,
          on_report_state, false },
        { "/callassistant.v1.OrchestratorService/ReportEvent", &callassistant__v1__event__descriptor,
          on_report_event, false },
};

static void on_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                    void *userdata) {
        Result *r = userdata;
        r->done = true;
        r->status = status;
        snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
        if (response) {
                size_t n = protobuf_c_message_get_packed_size(response);
                uint8_t *buf = malloc(n + 1);
                assert_non_null(buf);
                protobuf_c_message_pack(response, buf);
                r->response = protobuf_c_message_unpack(r->type, NULL, n, buf);
                free(buf);
        }
}

static void start_call(Result *r, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *type, const char *token, uint32_t timeout_ms,
                       unsigned flags) {
        RpcMetadata md = { "x-call-assistant-module-token", token };

        *r = (Result){ .type = type };
        assert_int_equal(rpc_channel_call(ch, method, req, type, timeout_ms, flags, &md, token ? 1 : 0, on_done, r,
                                          NULL),
                         0);
}

static Result call_with(const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *type,
                        const char *token) {
        Result r;
        start_call(&r, method, req, type, token, 10000, RPC_CALL_WAIT_FOR_READY);
        assert_int_equal(rpc_wait_for(event, &r.done, 15000), 0);
        return r;
}

static Result call(const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *type) {
        return call_with(method, req, type, TOKEN);
}

static void done(Result *r) {
        if (r->response)
                protobuf_c_message_free_unpacked(r->response, NULL);
        r->response = NULL;
}

/* Run the loop until the module reported an event of this kind (about this entity and flow,
 * if given), for at most 10 s. */
static const Reported *wait_reported(int kind, const char *entity_id, const char *flow_id) {
        struct timespec t0, t;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                for (size_t i = 0; i < n_reported; i++) {
                        Reported *r = &reported[i];
                        if (r->kind == kind && (!entity_id || strcmp(r->entity_id, entity_id) == 0) &&
                            (!flow_id || strcmp(r->flow_id, flow_id) == 0))
                                return r;
                }
                clock_gettime(CLOCK_MONOTONIC, &t);
                if (t.tv_sec - t0.tv_sec > 10)
                        return NULL;
                (void)sd_event_run(event, 100000);
        }
}

static int setup(void **state) {
        const char *module = getenv("FLOW_MODULE");
        char port[16], orch[64], target[64];
        int fd, oport;

        assert_non_null(module);
        fd = mkstemp(token_path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, TOKEN "\n", strlen(TOKEN) + 1), (ssize_t)strlen(TOKEN) + 1);
        close(fd);

        assert_true(sd_event_new(&event) >= 0);
        assert_int_equal(rpc_runtime_new(&rt, event), 0);
        assert_int_equal(rpc_server_new(&orchestrator, rt, "127.0.0.1:0", orchestrator_methods,
                                         ELEMENTSOF(orchestrator_methods), NULL),
                         0);
        oport = rpc_server_get_port(orchestrator);
        snprintf(port, sizeof(port), "%d", free_port());
        snprintf(orch, sizeof(orch), "127.0.0.1:%d", oport);

        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                setenv("GRPC_PORT", port, 1);
                setenv("CALL_ASSISTANT_ORCHESTRATOR", orch, 1);
                setenv("CALL_ASSISTANT_TOKEN_FILE", token_path, 1);
                unsetenv("CREDENTIALS_DIRECTORY");
                execl(module, module, NULL);
                _exit(127);
        }
        snprintf(target, sizeof(target), "127.0.0.1:%s", port);
        assert_int_equal(rpc_channel_new(&ch, rt, target), 0);
        return 0;
}

static int teardown(void **state) {
        int status = 0;

        rpc_channel_free(ch);
        rpc_server_free(orchestrator);
        rpc_runtime_free(rt);
        sd_event_unref(event);
        if (child > 0) {
                kill(child, SIGTERM);
                waitpid(child, &status, 0);
        }
        unlink(token_path);
        /* The module stops cleanly on SIGTERM (pending operations and all). */
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        return 0;
}

static void test_token_and_types(void **state) {
        Callassistant__V1__RegisterModuleRequest reg = CALLASSISTANT__V1__REGISTER_MODULE_REQUEST__INIT;
        Callassistant__V1__ListEntitiesRequest le = CALLASSISTANT__V1__LIST_ENTITIES_REQUEST__INIT;
        Grpc__Health__V1__HealthCheckRequest hc = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        Callassistant__V1__RegisterModuleResponse *resp;
        Result r;

        /* Health checks stay open. */
        r = call_with("/grpc.health.v1.Health/Check", &hc.base, &grpc__health__v1__health_check_response__descriptor,
                      NULL);
        assert_int_equal(r.status, RPC_OK);
        done(&r);

        r = call_with(MS("RegisterModule"), &reg.base, &callassistant__v1__register_module_response__descriptor, NULL);
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        done(&r);
        r = call_with(MS("RegisterModule"), &reg.base, &callassistant__v1__register_module_response__descriptor,
                      "0123456789abcdef-test-tokem");
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        assert_non_null(strstr(r.message, "wrong module token"));
        done(&r);
        r = call_with(MS("ListEntities"), &le.base, &callassistant__v1__list_entities_response__descriptor, "short");
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        done(&r);

        r = call(MS("RegisterModule"), &reg.base, &callassistant__v1__register_module_response__descriptor);
        assert_int_equal(r.status, RPC_OK);
        resp = (Callassistant__V1__RegisterModuleResponse *)r.response;
        assert_int_equal(resp->n_entity_types, 3);
        assert_string_equal(resp->entity_types[2]->name, "phone");
        assert_int_equal(resp->entity_types[2]->n_media_in, 1);
        assert_string_equal(resp->entity_types[2]->media_in[0], "webrtc");
        assert_string_equal(resp->entity_types[0]->name, "sensor");
        assert_int_equal(resp->entity_types[0]->n_media_in, 0);
        assert_int_equal(resp->entity_types[0]->n_media_out, 1);
        assert_string_equal(resp->entity_types[0]->media_out[0], "rtsp");
        assert_string_equal(resp->entity_types[1]->name, "relay");
        assert_int_equal(resp->entity_types[1]->n_media_in, 1);
        assert_string_equal(resp->entity_types[1]->media_in[0], "rtsp");
        assert_int_equal(resp->entity_types[1]->n_media_out, 2);
        assert_string_equal(resp->entity_types[1]->media_out[0], "webrtc");
        assert_string_equal(resp->entity_types[1]->media_out[1], "hls");
        assert_string_equal(resp->entity_types[1]->config_schema, "{\"type\": \"object\"}");
        done(&r);
}

static void test_discovered_entity(void **state) {
        Callassistant__V1__ListEntitiesRequest le = CALLASSISTANT__V1__LIST_ENTITIES_REQUEST__INIT;
        Callassistant__V1__ListEntitiesResponse *resp;
        Result r;

        /* Added before the loop ran, reported once the module could reach us, with its token. */
        assert_non_null(wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_ADDED, "sensor-1", NULL));
        le.type = (char *)"sensor";
        r = call(MS("ListEntities"), &le.base, &callassistant__v1__list_entities_response__descriptor);
        assert_int_equal(r.status, RPC_OK);
        resp = (Callassistant__V1__ListEntitiesResponse *)r.response;
        assert_int_equal(resp->n_entities, 1);
        assert_string_equal(resp->entities[0]->id, "sensor-1");
        assert_string_equal(resp->entities[0]->name, "hall sensor");
        done(&r);
        assert_true(n_states > 0);
        assert_int_equal(n_bad_token, 0);
}

static char *create_entity(const char *type, const char *name) {
        Callassistant__V1__CreateEntityRequest ce = CALLASSISTANT__V1__CREATE_ENTITY_REQUEST__INIT;
        Result r;
        char *id;

        ce.type = (char *)type;
        ce.name = (char *)name;
        ce.config_json = (char *)"{}";
        r = call(MS("CreateEntity"), &ce.base, &callassistant__v1__entity__descriptor);
        assert_int_equal(r.status, RPC_OK);
        id = strdup(((Callassistant__V1__Entity *)r.response)->id);
        done(&r);
        return id;
}

static char *create_relay(const char *name) {
        return create_entity("relay", name);
}

static Result connect_flow(const char *id, const char *flow, const char *in_media, const char *out_media,
                           const char *offer) {
        Callassistant__V1__ConnectEntityRequest req = CALLASSISTANT__V1__CONNECT_ENTITY_REQUEST__INIT;
        Callassistant__V1__MediaLink in = CALLASSISTANT__V1__MEDIA_LINK__INIT, peer = CALLASSISTANT__V1__MEDIA_LINK__INIT;

        req.id = (char *)id;
        req.flow_id = (char *)flow;
        if (in_media) {
                in.media = (char *)in_media;
                in.url = (char *)"rtsp://admin:secret@192.0.2.5/stream";
                req.input = &in;
        }
        req.output_media = (char *)(out_media ?: "");
        if (offer) {
                peer.media = (char *)"webrtc";
                peer.sdp = (char *)offer;
                peer.sdp_type = (char *)"offer";
                req.peer = &peer;
        }
        return call(MS("ConnectEntity"), &req.base, &callassistant__v1__connect_entity_response__descriptor);
}

static void test_connect_async(void **state) {
        _cleanup_free_ char *id = create_relay("living room");
        Callassistant__V1__ConnectEntityResponse *resp;
        const Reported *ev;
        Result r;

        r = connect_flow(id, "async", "rtsp", "webrtc", "OFFER-SDP");
        assert_int_equal(r.status, RPC_OK);
        resp = (Callassistant__V1__ConnectEntityResponse *)r.response;
        assert_non_null(resp->output);
        assert_string_equal(resp->output->media, "webrtc");
        assert_string_equal(resp->output->sdp_type, "answer");
        assert_string_equal(resp->output->sdp, "v=0 answer-to:OFFER-SDP input:rtsp");
        assert_non_null(resp->entity);
        assert_string_equal(resp->entity->id, id);
        assert_string_equal(resp->entity->state, "active");
        assert_int_equal(resp->entity->n_attributes, 1);
        assert_string_equal(resp->entity->attributes[0]->key, "peers");
        done(&r);

        ev = wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_CHANGED, id, NULL);
        assert_non_null(ev);
        assert_string_equal(ev->entity_state, "active");
        ev = wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_METRICS, id, NULL);
        assert_non_null(ev);
        assert_int_equal(ev->n_metrics, 2);
        assert_float_equal(ev->bitrate, 1500.5, 1e-9);
        ev = wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_SIGNAL, id, "async");
        assert_non_null(ev);
        assert_string_equal(ev->sdp, "v=0 answer-to:OFFER-SDP input:rtsp");
        assert_int_equal(n_bad_token, 0);
}

/* The state the module gave an entity in its latest KIND_ENTITY_CHANGED, once it starts with prefix. */
static const char *wait_entity_state(const char *id, const char *prefix) {
        struct timespec t0, t;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                for (size_t i = n_reported; i-- > 0;)
                        if (reported[i].kind == CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_CHANGED &&
                            strcmp(reported[i].entity_id, id) == 0 &&
                            strncmp(reported[i].entity_state, prefix, strlen(prefix)) == 0)
                                return reported[i].entity_state;
                clock_gettime(CLOCK_MONOTONIC, &t);
                if (t.tv_sec - t0.tv_sec > 10)
                        return NULL;
                (void)sd_event_run(event, 100000);
        }
}

static void test_request_flow(void **state) {
        _cleanup_free_ char *id = create_entity("phone", "front door");
        Callassistant__V1__ConnectEntityRequest req = CALLASSISTANT__V1__CONNECT_ENTITY_REQUEST__INIT;
        Callassistant__V1__MediaLink in = CALLASSISTANT__V1__MEDIA_LINK__INIT;
        Callassistant__V1__ConnectEntityResponse *resp;
        const Reported *ev;
        const char *st;
        Result r;

        /* The module asks for a flow into its entity: the request carries the source, the id
         * and the caller's offer; the orchestrator's answer (a flow id) reaches the module. */
        r = connect_flow(id, "ask", NULL, NULL, NULL);
        assert_int_equal(r.status, RPC_OK);
        done(&r);
        ev = wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_REQUEST, id, NULL);
        assert_non_null(ev);
        assert_string_equal(ev->reason, "cams/cam-1 call-7 offer");
        assert_string_equal(ev->sdp, "v=0 OFFER-OF-THE-CALLER");
        st = wait_entity_state(id, "requested:");
        assert_non_null(st);
        assert_string_equal(st, "requested:flow-0123456789abcdef");

        /* A refusal reaches it as a negative errno (RESOURCE_EXHAUSTED: -EAGAIN). */
        r = connect_flow(id, "ask-again", NULL, NULL, NULL);
        assert_int_equal(r.status, RPC_OK);
        done(&r);
        st = wait_entity_state(id, "refused:");
        assert_non_null(st);
        assert_int_equal(atoi(st + strlen("refused:")), -EAGAIN);

        /* The converter's answer comes back with the request id. */
        req.id = id;
        req.flow_id = (char *)"flow-0123456789abcdef";
        in.media = (char *)"webrtc";
        in.sdp = (char *)"v=0 ANSWER";
        in.sdp_type = (char *)"answer";
        req.input = &in;
        req.output_media = (char *)"";
        req.request_id = (char *)"call-7";
        r = call(MS("ConnectEntity"), &req.base, &callassistant__v1__connect_entity_response__descriptor);
        assert_int_equal(r.status, RPC_OK);
        resp = (Callassistant__V1__ConnectEntityResponse *)r.response;
        assert_non_null(resp->output);
        assert_string_equal(resp->output->sdp, "took call-7: v=0 ANSWER");
        done(&r);
        assert_int_equal(n_bad_token, 0);
}

static void test_connect_variants(void **state) {
        _cleanup_free_ char *id = create_relay("hall");
        Callassistant__V1__ConnectEntityResponse *resp;
        Result r;

        r = connect_flow(id, "sync", "rtsp", "hls", NULL);
        assert_int_equal(r.status, RPC_OK);
        resp = (Callassistant__V1__ConnectEntityResponse *)r.response;
        assert_non_null(resp->output);
        assert_string_equal(resp->output->media, "hls");
        assert_string_equal(resp->output->url, "http://127.0.0.1:1/relay.m3u8");
        done(&r);

        r = connect_flow(id, "inline", "rtsp", "webrtc", NULL);
        assert_int_equal(r.status, RPC_OK);
        assert_null(((Callassistant__V1__ConnectEntityResponse *)r.response)->output);
        done(&r);

        r = connect_flow(id, "fail", "rtsp", "webrtc", NULL);
        assert_int_equal(r.status, RPC_INVALID_ARGUMENT);
        assert_string_equal(r.message, "input.url: the relay cannot reach it");
        done(&r);

        r = connect_flow(id, "fail-now", "rtsp", "webrtc", NULL);
        assert_int_equal(r.status, RPC_FAILED_PRECONDITION);
        assert_string_equal(r.message, "relay is busy");
        done(&r);

        /* What the entity type does not take or give is refused by the SDK. */
        r = connect_flow(id, "sync", "hls", "webrtc", NULL);
        assert_int_equal(r.status, RPC_INVALID_ARGUMENT);
        assert_non_null(strstr(r.message, "input.media"));
        done(&r);
        r = connect_flow(id, "sync", "rtsp", "mpeg-ts", NULL);
        assert_int_equal(r.status, RPC_INVALID_ARGUMENT);
        assert_non_null(strstr(r.message, "output_media"));
        done(&r);
        r = connect_flow(id, "", "rtsp", "webrtc", NULL);
        assert_int_equal(r.status, RPC_INVALID_ARGUMENT);
        done(&r);
        r = connect_flow("no-such-relay", "sync", "rtsp", "webrtc", NULL);
        assert_int_equal(r.status, RPC_NOT_FOUND);
        done(&r);
}

static void test_caller_gone(void **state) {
        Callassistant__V1__ConnectEntityRequest req = CALLASSISTANT__V1__CONNECT_ENTITY_REQUEST__INIT;
        Grpc__Health__V1__HealthCheckRequest hc = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        _cleanup_free_ char *id = create_relay("porch");
        Result r;

        /* The caller gives up before the module completes: the module completes anyway. */
        req.id = id;
        req.flow_id = (char *)"slow";
        req.output_media = (char *)"webrtc";
        start_call(&r, MS("ConnectEntity"), &req.base, &callassistant__v1__connect_entity_response__descriptor, TOKEN,
                   200, 0);
        assert_int_equal(rpc_wait_for(event, &r.done, 5000), 0);
        assert_int_equal(r.status, RPC_DEADLINE_EXCEEDED);
        done(&r);
        assert_non_null(wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_SIGNAL, id, "slow"));

        r = call_with("/grpc.health.v1.Health/Check", &hc.base, &grpc__health__v1__health_check_response__descriptor,
                      NULL);
        assert_int_equal(r.status, RPC_OK);
        done(&r);
}

static void test_destroy_while_pending(void **state) {
        Callassistant__V1__ConnectEntityRequest req = CALLASSISTANT__V1__CONNECT_ENTITY_REQUEST__INIT;
        Callassistant__V1__DestroyEntityRequest de = CALLASSISTANT__V1__DESTROY_ENTITY_REQUEST__INIT;
        Callassistant__V1__ConnectEntityResponse *resp;
        _cleanup_free_ char *id = create_relay("attic");
        Result pending, r;

        req.id = id;
        req.flow_id = (char *)"slow";
        req.output_media = (char *)"webrtc";
        start_call(&pending, MS("ConnectEntity"), &req.base, &callassistant__v1__connect_entity_response__descriptor,
                   TOKEN, 10000, 0);
        de.id = id;
        r = call(MS("DestroyEntity"), &de.base, &callassistant__v1__destroy_entity_response__descriptor);
        assert_int_equal(r.status, RPC_OK);
        done(&r);
        assert_false(pending.done);

        /* The answer still comes, without the entity that is gone. */
        assert_int_equal(rpc_wait_for(event, &pending.done, 5000), 0);
        assert_int_equal(pending.status, RPC_OK);
        resp = (Callassistant__V1__ConnectEntityResponse *)pending.response;
        assert_non_null(resp->output);
        assert_null(resp->entity);
        done(&pending);
}

static void test_disconnect(void **state) {
        Callassistant__V1__DisconnectEntityRequest req = CALLASSISTANT__V1__DISCONNECT_ENTITY_REQUEST__INIT;
        Callassistant__V1__ListEntitiesRequest le = CALLASSISTANT__V1__LIST_ENTITIES_REQUEST__INIT;
        _cleanup_free_ char *id = create_relay("garage");
        const Reported *ev;
        Result r;

        req.id = id;
        req.flow_id = (char *)"f1";
        r = call(MS("DisconnectEntity"), &req.base, &callassistant__v1__disconnect_entity_response__descriptor);
        assert_int_equal(r.status, RPC_OK);
        done(&r);
        ev = wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_ENDED, id, "f1");
        assert_non_null(ev);
        assert_string_equal(ev->reason, "disconnected on request");

        req.flow_id = (char *)"forget-sensor";
        r = call(MS("DisconnectEntity"), &req.base, &callassistant__v1__disconnect_entity_response__descriptor);
        assert_int_equal(r.status, RPC_OK);
        done(&r);
        assert_non_null(wait_reported(CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_REMOVED, "sensor-1", NULL));
        le.type = (char *)"sensor";
        r = call(MS("ListEntities"), &le.base, &callassistant__v1__list_entities_response__descriptor);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(((Callassistant__V1__ListEntitiesResponse *)r.response)->n_entities, 0);
        done(&r);

        req.id = (char *)"sensor-1";
        r = call(MS("DisconnectEntity"), &req.base, &callassistant__v1__disconnect_entity_response__descriptor);
        assert_int_equal(r.status, RPC_NOT_FOUND);
        done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_token_and_types),
                cmocka_unit_test(test_discovered_entity),
                cmocka_unit_test(test_connect_async),
                cmocka_unit_test(test_connect_variants),
                cmocka_unit_test(test_request_flow),
                cmocka_unit_test(test_caller_gone),
                cmocka_unit_test(test_destroy_while_pending),
                cmocka_unit_test(test_disconnect),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, setup, teardown);
}
