/* The web service's gRPC face: GetStatus, SetPasswordHash, RevokeSessions. */
#include <errno.h>
#include <string.h>

#include "callassistant/web/v1/web.pb-c.h"
#include "services/web/web-service-grpc.h"
#include "shared/macro.h"

static WebService *service_of(RpcServerCall *call) {
        return rpc_server_call_get_userdata(call);
}

void web_service_not_running(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        (void)rpc_server_call_fail(call, RPC_UNAVAILABLE,
                                   "the web dashboard is not running (disabled, or it could not start: see the journal)");
}

static void on_status(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        Callassistant__Web__V1__GetStatusResponse resp = CALLASSISTANT__WEB__V1__GET_STATUS_RESPONSE__INIT;
        WebService *w = service_of(call);

        resp.url = (char *)web_service_url(w);
        resp.password_set = web_service_password_set(w);
        resp.sessions = web_service_n_sessions(w);
        resp.event_streams = web_service_n_streams(w);
        resp.tls = web_service_tls(w);
        resp.live_views = web_service_n_live_views(w);
        (void)rpc_server_call_reply(call, &resp.base);
}

static void on_password_done(int n, void *userdata) {
        Callassistant__Web__V1__SetPasswordHashResponse resp = CALLASSISTANT__WEB__V1__SET_PASSWORD_HASH_RESPONSE__INIT;
        RpcServerCall *call = userdata;

        /* The hash is stored already; only the count of ended sessions can be missing. */
        resp.sessions_revoked = n > 0 ? (uint32_t)n : 0;
        (void)rpc_server_call_reply(call, &resp.base);
}

static void on_password(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__Web__V1__SetPasswordHashRequest *req = (const void *)request;
        WebService *w = service_of(call);
        int r;

        r = web_service_set_password_hash(w, req->hash, on_password_done, call);
        if (r == -EINVAL)
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT,
                                           "hash: expected a yescrypt ($y$) or sha512-crypt ($6$) hash");
        else if (r < 0)
                (void)rpc_server_call_fail(call, RPC_INTERNAL, "cannot store the password hash (see the journal)");
}

static void on_revoke_done(int n, void *userdata) {
        Callassistant__Web__V1__RevokeSessionsResponse resp = CALLASSISTANT__WEB__V1__REVOKE_SESSIONS_RESPONSE__INIT;
        RpcServerCall *call = userdata;

        if (n < 0) {
                (void)rpc_server_call_fail(call, RPC_UNAVAILABLE, "the web dashboard is shutting down");
                return;
        }
        resp.sessions_revoked = (uint32_t)n;
        (void)rpc_server_call_reply(call, &resp.base);
}

static void on_revoke(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        WebService *w = service_of(call);

        if (web_service_revoke_sessions(w, on_revoke_done, call) < 0)
                (void)rpc_server_call_fail(call, RPC_INTERNAL, "out of memory");
}

#define WS(name) "/callassistant.web.v1.WebService/" name
#define D(t) &callassistant__web__v1__##t##__descriptor

const RpcMethod web_service_methods[] = {
        { WS("GetStatus"), D(get_status_request), on_status, false },
        { WS("SetPasswordHash"), D(set_password_hash_request), on_password, false },
        { WS("RevokeSessions"), D(revoke_sessions_request), on_revoke, false },
};
const size_t web_service_n_methods = ELEMENTSOF(web_service_methods);

