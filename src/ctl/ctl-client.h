/* call-assistantctl's client of the control socket and its output helpers. */
#pragma once

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "callassistant/v1/orchestrator.pb-c.h"
#include "rpc/rpc.h"

/* Exit codes: 0 ok; 1 failure; 2 usage; 3 not running/unreachable; 4 no such module;
 * 5 the operation is not possible in the module's state; 6 check found problems. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_NO_MODULE = 4, EXIT_STATE = 5,
       EXIT_PROBLEMS = 6, EXIT_INVALID = 7 };

/* --socket: the control socket (default $CALL_ASSISTANT_CONTROL_SOCKET or
 * /run/call-assistant/control.sock). */
extern const char *ctl_socket;

typedef struct Call {
        bool done;
        int status;
        char message[512];
        ProtobufCMessage *response;
        const ProtobufCMessageDescriptor *type;
} Call;

typedef struct Client {
        sd_event *event;
        RpcRuntime *rt;
        RpcChannel *ch;
} Client;

/* Returns 0, or a negative exit code (the problem is printed). */
int client_open(Client *c);
void client_close(Client *c);

/* A unary call; returns an exit code (problems printed). On EXIT_OK call->response holds a
 * copy of the answer (free with protobuf_c_message_free_unpacked()). */
int call_service(Client *c, const char *service, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *type, Call *call);
int call_orchestrator(Client *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *type, Call *call);

const char *status_name(Callassistant__V1__ModuleStatus s);
const char *health_name(Callassistant__V1__HealthStatus h);
/* Print and free. */
void print_json(json_t *j);
/* Text from modules (entity ids, states, messages) and manifests (descriptions, folders) is
 * untrusted: control characters come back as \xNN, never sent raw to the terminal. The result
 * stays valid for the next few calls (enough for one printf()). */
const char *ctl_esc(const char *s);
