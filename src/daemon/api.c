/* The orchestrator's gRPC endpoints:
 *  - the module-facing endpoint (TCP, loopback by default): ReportState/ReportEvent, each call
 *    authenticated by the module's token;
 *  - the control endpoint (a root-only unix socket): everything else, the config service's
 *    methods included.
 * One method table is built for both; a method answers PERMISSION_DENIED on the endpoint it
 * does not belong to. Also the followers of WatchEvents. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/api.h"
#include "daemon/flow-api.h"
#include "daemon/manager-api.h"
#include "daemon/module-api.h"
#include "services/config/config-service-grpc.h"
#include "shared/fileio.h"
#include "shared/log.h"
#include "shared/macro.h"

#define TOKEN_KEY "x-call-assistant-module-token"
#define MAX_FOLLOWERS 64

typedef struct Follower {
        RpcServerCall *call;
        char *module;   /* filter; NULL: all */
} Follower;

struct Api {
        Manager *manager;
        RpcMethod *module_table;
        RpcMethod *control_table;
        size_t n_methods;
        RpcServer *module_server;
        RpcServer *control_server;
        Follower followers[MAX_FOLLOWERS];
        size_t n_followers;
};

static void on_denied(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        (void)rpc_server_call_fail(call, RPC_PERMISSION_DENIED,
                                   "not available on this endpoint: modules may only report about themselves, "
                                   "control methods and services are served on the control socket only");
}

Module *api_authenticate_module(Manager *mgr, RpcServerCall *call) {
        char token[128];
        Module *m;

        assert(mgr);
        assert(call);
        if (rpc_server_call_get_metadata(call, TOKEN_KEY, token, sizeof(token)) < 0) {
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "missing " TOKEN_KEY " metadata");
                return NULL;
        }
        m = registry_find_by_token(&mgr->registry, token);
        explicit_bzero(token, sizeof(token));
        if (!m) {
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "unknown module token");
                return NULL;
        }
        return m;
}

/* ---- followers of WatchEvents ------------------------------------------------------- */

static void on_follower_gone(RpcServerCall *call, void *userdata) {
        Api *api = userdata;

        for (size_t i = 0; i < api->n_followers; i++)
                if (api->followers[i].call == call) {
                        free(api->followers[i].module);
                        api->followers[i] = api->followers[--api->n_followers];
                        return;
                }
}

int api_add_follower(Api *api, RpcServerCall *call, const char *module) {
        Follower *f;
        char *filter = NULL;

        assert(api);
        assert(call);
        if (api->n_followers >= MAX_FOLLOWERS)
                return -EUSERS;
        if (module && !(filter = strdup(module)))
                return -ENOMEM;
        f = &api->followers[api->n_followers++];
        *f = (Follower){ .call = call, .module = filter };
        rpc_server_call_set_cancel_handler(call, on_follower_gone, api);
        return 0;
}

void api_broadcast(Api *api, const char *module, const Callassistant__V1__Event *ev) {
        assert(api);
        assert(ev);
        for (size_t i = 0; i < api->n_followers; i++) {
                Follower *f = &api->followers[i];

                if (!f->module || (module && strcmp(f->module, module) == 0))
                        (void)rpc_server_call_write(f->call, &ev->base);
        }
}

void api_broadcast_modules(Api *api, const char *const *modules, size_t n, const Callassistant__V1__Event *ev) {
        assert(api);
        assert(ev);
        for (size_t i = 0; i < api->n_followers; i++) {
                Follower *f = &api->followers[i];
                bool wanted = !f->module;

                for (size_t k = 0; k < n && !wanted; k++)
                        wanted = strcmp(f->module, modules[k]) == 0;
                if (wanted)
                        (void)rpc_server_call_write(f->call, &ev->base);
        }
}

/* ---- servers ------------------------------------------------------------------------ */

/* Both endpoints' tables from the API faces' methods and the in-process services'. */
static int build_tables(Api *api) {
        const struct {
                const ApiMethod *methods;
                size_t n;
        } faces[] = {
                { module_api_methods, module_api_n_methods },
                { manager_api_methods, manager_api_n_methods },
                { flow_api_methods, flow_api_n_methods },
        };
        size_t n = config_service_n_methods, k = 0;

        for (size_t f = 0; f < ELEMENTSOF(faces); f++)
                n += faces[f].n;
        api->module_table = new0(RpcMethod, n);
        api->control_table = new0(RpcMethod, n);
        if (!api->module_table || !api->control_table)
                return -ENOMEM;

        for (size_t f = 0; f < ELEMENTSOF(faces); f++)
                for (size_t i = 0; i < faces[f].n; i++, k++) {
                        const ApiMethod *a = &faces[f].methods[i];

                        api->module_table[k] = api->control_table[k] = a->method;
                        if (a->module_facing)
                                api->control_table[k].handler = on_denied;
                        else
                                api->module_table[k].handler = on_denied;
                }
        /* Services are for operators: control socket only. Their handlers get the service. */
        for (size_t i = 0; i < config_service_n_methods; i++, k++) {
                api->module_table[k] = api->control_table[k] = config_service_methods[i];
                api->control_table[k].userdata = api->manager->config_service;
                api->module_table[k].handler = on_denied;
        }
        api->n_methods = k;
        return 0;
}

static int listen_control_socket(Api *api) {
        const DaemonConfig *c = &api->manager->config;
        _cleanup_free_ char *addr = NULL, *dir = NULL;
        const char *slash;
        mode_t old;
        int r;

        /* Root-only (0600), in a directory we create if needed. */
        slash = strrchr(c->control_socket, '/');
        if (slash && slash != c->control_socket) {
                dir = strndup(c->control_socket, (size_t)(slash - c->control_socket));
                if (!dir)
                        return log_oom();
                r = mkdir_p(dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "Cannot create the directory of %s: %m", c->control_socket);
        }
        (void)unlink(c->control_socket);
        if (asprintf(&addr, "unix:%s", c->control_socket) < 0)
                return log_oom();
        old = umask(0077);
        r = rpc_server_new(&api->control_server, api->manager->rpc, addr, api->control_table, api->n_methods,
                           api->manager);
        umask(old);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s (control socket): %m", c->control_socket);
        return 0;
}

int api_new(Api **ret, Manager *mgr) {
        _cleanup_(api_freep) Api *api = NULL;
        int r;

        assert(ret);
        assert(mgr);
        assert(mgr->rpc);

        api = new0(Api, 1);
        if (!api)
                return log_oom();
        api->manager = mgr;
        r = build_tables(api);
        if (r < 0)
                return log_oom();
        r = rpc_server_new(&api->module_server, mgr->rpc, mgr->config.listen, api->module_table, api->n_methods, mgr);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s (module-facing endpoint): %m", mgr->config.listen);
        r = listen_control_socket(api);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(api);
        return 0;
}

Api *api_free(Api *api) {
        if (!api)
                return NULL;
        for (size_t i = 0; i < api->n_followers; i++)
                free(api->followers[i].module);
        api->n_followers = 0;
        rpc_server_free(api->control_server);
        rpc_server_free(api->module_server);
        if (api->control_server && api->manager->config.control_socket)
                (void)unlink(api->manager->config.control_socket);
        free(api->module_table);
        free(api->control_table);
        free(api);
        return NULL;
}
