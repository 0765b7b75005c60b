/* Cross-language test: the C gRPC runtime calls every RPC of the Python example module
 * (modules/chromecast, on Debian's python3-grpcio), including the standard health service. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "callassistant/v1/module.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc/rpc.h"
#include "shared/macro.h"

#define MS(m) "/callassistant.v1.ModuleService/" m

typedef struct Result {
        bool done;
        int status;
        char message[512];
        ProtobufCMessage *response;
        const ProtobufCMessageDescriptor *type;
} Result;

static sd_event *event;
static RpcRuntime *rt;
static RpcChannel *ch;
static pid_t child;

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

/* A unary call; the response (if any) is the caller's to free. */
/* The module's token: the module refuses ModuleService calls without it. */
#define TOKEN "xlang-token-4f1c"
static const char *call_token = TOKEN;
static char token_file[] = "/tmp/ca-xlang-token-XXXXXX";

static Result call(const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *type,
                   unsigned flags) {
        Result r = { .type = type };
        RpcMetadata md = { .key = "x-call-assistant-module-token", .value = call_token };
        assert_int_equal(rpc_channel_call(ch, method, req, type, 15000, flags, &md, call_token ? 1 : 0, on_done, &r,
                                          NULL), 0);
        assert_int_equal(rpc_wait_for(event, &r.done, 20000), 0);
        return r;
}

static void done(Result *r) {
        if (r->response)
                protobuf_c_message_free_unpacked(r->response, NULL);
}

static int setup(void **state) {
        const char *build = getenv("CA_BUILD_ROOT");
        char dir[4096], port[16], target[64];
        struct sockaddr_in a = { .sin_family = AF_INET };
        socklen_t len = sizeof(a);
        int fd;

        assert_non_null(build);
        snprintf(dir, sizeof(dir), "%s/modules/chromecast", build);
        /* A free port: let the kernel pick one. */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        close(fd);
        snprintf(port, sizeof(port), "%u", ntohs(a.sin_port));
        fd = mkstemp(token_file);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, TOKEN "\n", strlen(TOKEN) + 1), (ssize_t)strlen(TOKEN) + 1);
        close(fd);

        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                if (chdir(dir) < 0)
                        _exit(127);
                setenv("GRPC_PORT", port, 1);
                unsetenv("CALL_ASSISTANT_ORCHESTRATOR");
                unsetenv("CREDENTIALS_DIRECTORY");
                setenv("CALL_ASSISTANT_TOKEN_FILE", token_file, 1);
                execl("/usr/bin/python3", "python3", "chromecast_module.py", NULL);
                _exit(127);
        }
        assert_true(sd_event_new(&event) >= 0);
        assert_int_equal(rpc_runtime_new(&rt, event), 0);
        snprintf(target, sizeof(target), "127.0.0.1:%s", port);
        assert_int_equal(rpc_channel_new(&ch, rt, target), 0);
        return 0;
}

static int teardown(void **state) {
        rpc_channel_free(ch);
        rpc_runtime_free(rt);
        sd_event_unref(event);
        if (child > 0) {
                kill(child, SIGKILL);
                waitpid(child, NULL, 0);
        }
        (void)unlink(token_file);
        return 0;
}

static void test_every_rpc(void **state) {
        Callassistant__V1__RegisterModuleRequest reg = CALLASSISTANT__V1__REGISTER_MODULE_REQUEST__INIT;
        Callassistant__V1__ApplyConfigRequest cfg = CALLASSISTANT__V1__APPLY_CONFIG_REQUEST__INIT;
        Callassistant__V1__CreateEntityRequest ce = CALLASSISTANT__V1__CREATE_ENTITY_REQUEST__INIT;
        Callassistant__V1__ConfigureEntityRequest ke = CALLASSISTANT__V1__CONFIGURE_ENTITY_REQUEST__INIT;
        Callassistant__V1__ListEntitiesRequest le = CALLASSISTANT__V1__LIST_ENTITIES_REQUEST__INIT;
        Callassistant__V1__DestroyEntityRequest de = CALLASSISTANT__V1__DESTROY_ENTITY_REQUEST__INIT;
        Callassistant__V1__ShutdownRequest sd = CALLASSISTANT__V1__SHUTDOWN_REQUEST__INIT;
        Grpc__Health__V1__HealthCheckRequest hc = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        char id[64];
        Result r;
        int status;

        /* Registration waits for the Python server to come up. */
        reg.module_id = (char *)"chromecast";
        r = call(MS("RegisterModule"), &reg.base, &callassistant__v1__register_module_response__descriptor,
                 RPC_CALL_WAIT_FOR_READY);
        assert_int_equal(r.status, RPC_OK);
        {
                Callassistant__V1__RegisterModuleResponse *resp = (void *)r.response;
                assert_string_equal(resp->name, "chromecast");
                assert_true(resp->config_required);
                assert_int_equal(resp->state, CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_WAITING_FOR_CONFIG);
                assert_int_equal(resp->n_entity_types, 1);
                assert_string_equal(resp->entity_types[0]->name, "cast_target");
                assert_non_null(strstr(resp->config_schema, "\"devices\""));
        }
        done(&r);

        hc.service = (char *)"";
        r = call("/grpc.health.v1.Health/Check", &hc.base, &grpc__health__v1__health_check_response__descriptor, 0);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(((Grpc__Health__V1__HealthCheckResponse *)r.response)->status,
                         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        done(&r);

        /* Entities before configuration: not possible. */
        ce.type = (char *)"cast_target";
        ce.config_json = (char *)"{\"device\": \"tv\"}";
        r = call(MS("CreateEntity"), &ce.base, &callassistant__v1__entity__descriptor, 0);
        assert_int_equal(r.status, RPC_FAILED_PRECONDITION);
        done(&r);

        /* A bad configuration: every problem by JSON pointer. */
        cfg.config_json = (char *)"{\"devices\": [{\"name\": \"tv\", \"host\": \"\", \"port\": 70000}], \"x\": 1}";
        r = call(MS("ApplyConfig"), &cfg.base, &callassistant__v1__apply_config_response__descriptor, 0);
        assert_int_equal(r.status, RPC_INVALID_ARGUMENT);
        assert_non_null(strstr(r.message, "/devices/0/port"));
        assert_non_null(strstr(r.message, "/x"));
        done(&r);

        /* loopback only: the module connects to the devices it is given (nothing listens on port 9) */
        cfg.config_json = (char *)"{\"devices\": [{\"name\": \"tv\", \"host\": \"127.0.0.1\", \"port\": 9}]}";
        r = call(MS("ApplyConfig"), &cfg.base, &callassistant__v1__apply_config_response__descriptor, 0);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(((Callassistant__V1__ApplyConfigResponse *)r.response)->state,
                         CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_READY);
        done(&r);

        /* Entities come from the configuration (and mDNS discovery): "tv" is one. */
        ce.name = (char *)"living room";
        r = call(MS("CreateEntity"), &ce.base, &callassistant__v1__entity__descriptor, 0);
        assert_int_equal(r.status, RPC_FAILED_PRECONDITION);
        done(&r);

        ce.type = (char *)"toaster";
        r = call(MS("CreateEntity"), &ce.base, &callassistant__v1__entity__descriptor, 0);
        assert_int_equal(r.status, RPC_NOT_FOUND);
        done(&r);

        r = call(MS("ListEntities"), &le.base, &callassistant__v1__list_entities_response__descriptor, 0);
        assert_int_equal(r.status, RPC_OK);
        assert_int_equal(((Callassistant__V1__ListEntitiesResponse *)r.response)->n_entities, 1);
        snprintf(id, sizeof(id), "%s", ((Callassistant__V1__ListEntitiesResponse *)r.response)->entities[0]->id);
        assert_string_equal(id, "tv");
        assert_string_equal(((Callassistant__V1__ListEntitiesResponse *)r.response)->entities[0]->type, "cast_target");
        done(&r);

        ke.id = id;
        ke.config_json = (char *)"{\"volume\": 2}";
        r = call(MS("ConfigureEntity"), &ke.base, &callassistant__v1__entity__descriptor, 0);
        assert_int_equal(r.status, RPC_INVALID_ARGUMENT);
        assert_non_null(strstr(r.message, "/volume"));
        done(&r);
        ke.id = (char *)"radio";
        r = call(MS("ConfigureEntity"), &ke.base, &callassistant__v1__entity__descriptor, 0);
        assert_int_equal(r.status, RPC_NOT_FOUND);
        done(&r);

        de.id = id;
        r = call(MS("DestroyEntity"), &de.base, &callassistant__v1__destroy_entity_response__descriptor, 0);
        assert_int_equal(r.status, RPC_FAILED_PRECONDITION);
        done(&r);

        /* Without the module's token, or with another, every ModuleService call is refused. */
        call_token = NULL;
        r = call(MS("ListEntities"), &le.base, &callassistant__v1__list_entities_response__descriptor, 0);
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        done(&r);
        call_token = "not-the-token";
        r = call(MS("ListEntities"), &le.base, &callassistant__v1__list_entities_response__descriptor, 0);
        assert_int_equal(r.status, RPC_UNAUTHENTICATED);
        done(&r);
        call_token = TOKEN;

        /* Shutdown: it answers, then exits cleanly. */
        sd.deadline_ms = 3000;
        r = call(MS("Shutdown"), &sd.base, &callassistant__v1__shutdown_response__descriptor, 0);
        assert_int_equal(r.status, RPC_OK);
        done(&r);
        assert_int_equal(waitpid(child, &status, 0), child);
        child = 0;
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_every_rpc, setup, teardown),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
