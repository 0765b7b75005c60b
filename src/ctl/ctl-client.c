/* call-assistantctl's client of the control socket: one unary call at a time, gRPC statuses
 * turned into exit codes and messages on stderr; small output helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl/ctl-client.h"
#include "manifest/diagnostics.h"
#include "shared/macro.h"

const char *ctl_socket;

static void on_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                    void *userdata) {
        Call *call = userdata;
        call->done = true;
        call->status = status;
        snprintf(call->message, sizeof(call->message), "%s", message ? message : "");
        if (response) {
                /* Keep a copy: the runtime frees the response after this callback. */
                size_t n = protobuf_c_message_get_packed_size(response);
                uint8_t *buf = malloc(n ? n : 1);
                if (buf) {
                        protobuf_c_message_pack(response, buf);
                        call->response = protobuf_c_message_unpack(call->type, NULL, n, buf);
                        free(buf);
                }
        }
}

int client_open(Client *c) {
        const char *path = ctl_socket ? ctl_socket : getenv("CALL_ASSISTANT_CONTROL_SOCKET");
        char target[4200];
        struct stat st;
        int r;

        if (!path)
                path = "/run/call-assistant/control.sock";
        if (stat(path, &st) < 0 && errno != EACCES) {
                fprintf(stderr, "call-assistant is not running (no control socket %s: %s)\n", path, strerror(errno));
                return -EXIT_UNREACHABLE;
        }
        /* The socket is 0660 root:call-assistant: say who may use it, rather than let the
         * connection fail as an unreachable address. */
        if (access(path, R_OK | W_OK) < 0 && errno == EACCES) {
                fprintf(stderr,
                        "Permission denied: %s: only root and members of the group call-assistant may use it.\n"
                        "Add a user to the group with: usermod -aG call-assistant USER (it applies from the next login).\n",
                        path);
                return -EXIT_FAIL;
        }
        snprintf(target, sizeof(target), "unix:%s", path);
        r = sd_event_new(&c->event);
        if (r >= 0)
                r = rpc_runtime_new(&c->rt, c->event);
        if (r >= 0)
                r = rpc_channel_new(&c->ch, c->rt, target);
        if (r < 0) {
                fprintf(stderr, "Cannot set up a gRPC client: %s\n", strerror(-r));
                return -EXIT_FAIL;
        }
        return 0;
}

void client_close(Client *c) {
        rpc_channel_free(c->ch);
        rpc_runtime_free(c->rt);
        sd_event_unref(c->event);
}

/* A unary call to OrchestratorService; returns an exit code. */
int call_orchestrator(Client *c, const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *type, Call *call) {
        return call_service(c, "callassistant.v1.OrchestratorService", method, req, type, call);
}

int call_service(Client *c, const char *service, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *type, Call *call) {
        char full[160];
        int r;

        memset(call, 0, sizeof(*call));
        call->type = type;
        snprintf(full, sizeof(full), "/%s/%s", service, method);
        r = rpc_channel_call(c->ch, full, req, type, 10000, 0, NULL, 0, on_done, call, NULL);
        if (r >= 0)
                r = rpc_wait_for(c->event, &call->done, 15000);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", method, strerror(-r));
                return EXIT_FAIL;
        }
        switch (call->status) {
        case RPC_OK:
                return EXIT_OK;
        case RPC_NOT_FOUND:
                fprintf(stderr, "%s\n", call->message);
                return EXIT_NO_MODULE;
        case RPC_FAILED_PRECONDITION:
                fprintf(stderr, "%s\n", call->message);
                return EXIT_STATE;
        case RPC_UNAVAILABLE:
                fprintf(stderr, "call-assistant is not reachable: %s\n", call->message);
                return EXIT_UNREACHABLE;
        case RPC_INVALID_ARGUMENT: {
                /* Field errors come as "path: message; path: message". */
                char *save = NULL;
                fprintf(stderr, "%s refused:\n", method);
                for (char *item = strtok_r(call->message, ";", &save); item; item = strtok_r(NULL, ";", &save))
                        fprintf(stderr, "  %s\n", item + strspn(item, " "));
                return EXIT_INVALID;
        }
        case RPC_ABORTED:
                fprintf(stderr, "%s\n", call->message);
                return EXIT_STATE;
        case RPC_PERMISSION_DENIED:
                fprintf(stderr, "Permission denied: %s\n", call->message);
                return EXIT_FAIL;
        default:
                fprintf(stderr, "%s failed: %s: %s\n", method, rpc_status_to_string(call->status), call->message);
                return EXIT_FAIL;
        }
}

const char *status_name(Callassistant__V1__ModuleStatus s) {
        static const char *const names[] = { "UNKNOWN",  "PENDING", "STARTING", "WAITING_FOR_CONFIG", "READY",
                                             "ERROR",    "STOPPING", "STOPPED", "FAILED",             "DISABLED" };
        return (unsigned)s < ELEMENTSOF(names) ? names[s] : "UNKNOWN";
}

const char *health_name(Callassistant__V1__HealthStatus h) {
        return h == CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_SERVING       ? "serving"
               : h == CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_NOT_SERVING ? "not-serving"
                                                                                  : "-";
}

void print_json(json_t *j) {
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(j);
}


const char *ctl_esc(const char *s) {
        static char *ring[8];
        static unsigned k;
        size_t n;
        char *b;

        if (!s)
                return "";
        n = strlen(s) * 4 + 1;
        b = malloc(n);
        if (!b)
                return "?";
        diagnostics_escape(s, b, n);
        free(ring[k % ELEMENTSOF(ring)]);
        ring[k++ % ELEMENTSOF(ring)] = b;
        return b;
}
