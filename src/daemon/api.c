/* The orchestrator's gRPC endpoints:
 *  - the module-facing endpoint (a unix socket in the root-owned runtime dir by default, or TCP
 *    on loopback): ReportState/ReportEvent, each call authenticated by the module's token
 *    before its message is read; on the unix socket only processes of module units (and
 *    root) may connect at all;
 *  - the control endpoint (a unix socket): everything else, the config service's methods
 *    included; only root and members of the "call-assistant" group may connect (SO_PEERCRED).
 * One method table is built for both; a method answers PERMISSION_DENIED on the endpoint it
 * does not belong to. Also the followers of WatchEvents. */
#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/api.h"
#include "daemon/flow-api.h"
#include "daemon/manager-api.h"
#include "daemon/module-api.h"
#include "services/config/config-service-grpc.h"
#include "services/web/web-service-grpc.h"
#include "shared/fileio.h"
#include "shared/log.h"
#include "shared/macro.h"

#define TOKEN_KEY "x-call-assistant-module-token"
#define MAX_FOLLOWERS 64
#define ADMIN_GROUP "call-assistant"

/* Refusals are logged, but a flood of them must not flood the journal: at most BURST lines a
 * window, then one line saying how many were not logged. */
typedef struct RateLimit {
        uint64_t window_start;
        unsigned n, suppressed;
} RateLimit;

#define RATELIMIT_BURST 10
#define RATELIMIT_WINDOW_USEC (10ULL * 1000000)

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
        gid_t admin_gid;           /* of the call-assistant group, or (gid_t)-1 */
        RateLimit refusals;
        Follower followers[MAX_FOLLOWERS];
        size_t n_followers;
};

static bool ratelimit_pass(RateLimit *rl) {
        struct timespec ts;
        uint64_t now;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        if (now - rl->window_start > RATELIMIT_WINDOW_USEC) {
                if (rl->suppressed > 0)
                        log_warning("%u more refusal(s) were not logged.", rl->suppressed);
                *rl = (RateLimit){ .window_start = now };
        }
        if (rl->n < RATELIMIT_BURST) {
                rl->n++;
                return true;
        }
        rl->suppressed++;
        return false;
}

void api_log_refusal(Api *api, const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        if (api && !ratelimit_pass(&api->refusals))
                return;
        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_warning("%s", msg);
}

static void on_denied(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        (void)rpc_server_call_fail(call, RPC_PERMISSION_DENIED,
                                   "not available on this endpoint: modules may only report about themselves, "
                                   "control methods and services are served on the control socket only");
}

static Module *find_module_by_token(Manager *mgr, RpcServerCall *call) {
        char token[128];
        Module *m;

        if (rpc_server_call_get_metadata(call, TOKEN_KEY, token, sizeof(token)) < 0) {
                if (ratelimit_pass(&mgr->api->refusals))
                        log_warning("Refused %s from %s: no module token.", rpc_server_call_get_method(call),
                                    rpc_server_call_get_peer(call));
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "missing " TOKEN_KEY " metadata");
                return NULL;
        }
        m = registry_find_by_token(&mgr->registry, token);
        explicit_bzero(token, sizeof(token));
        if (!m) {
                if (ratelimit_pass(&mgr->api->refusals))
                        log_warning("Refused %s from %s: unknown module token.", rpc_server_call_get_method(call),
                                    rpc_server_call_get_peer(call));
                (void)rpc_server_call_fail(call, RPC_UNAUTHENTICATED, "unknown module token");
                return NULL;
        }
        return m;
}

/* The authorize hook of module-facing methods: from the metadata alone, before the message is
 * received, so that an unknown caller costs nothing but this. */
static bool authorize_module(RpcServerCall *call, void *userdata) {
        Module *m = find_module_by_token(userdata, call);

        if (!m)
                return false;
        rpc_server_call_set_context(call, m);
        return true;
}

Module *api_authenticate_module(Manager *mgr, RpcServerCall *call) {
        Module *m;

        assert(mgr);
        assert(call);
        m = rpc_server_call_get_context(call);
        return m ? m : find_module_by_token(mgr, call);
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
        size_t n = config_service_n_methods + web_service_n_methods, k = 0;

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
                        if (a->module_facing) {
                                api->control_table[k].handler = on_denied;
                                api->module_table[k].authorize = authorize_module;
                        } else
                                api->module_table[k].handler = on_denied;
                }
        /* Services are for operators: control socket only. Their handlers get the service. */
        for (size_t i = 0; i < config_service_n_methods; i++, k++) {
                api->module_table[k] = api->control_table[k] = config_service_methods[i];
                api->control_table[k].userdata = api->manager->config_service;
                api->module_table[k].handler = on_denied;
        }
        for (size_t i = 0; i < web_service_n_methods; i++, k++) {
                api->module_table[k] = api->control_table[k] = web_service_methods[i];
                api->control_table[k].userdata = api->manager->web_service;
                if (!api->manager->web_service)
                        api->control_table[k].handler = web_service_not_running;
                api->module_table[k].handler = on_denied;
        }
        api->n_methods = k;
        return 0;
}

/* The unit a process runs in, from its cgroup (the last path component). */
static Module *module_of_pid(Manager *mgr, pid_t pid) {
        char path[64], line[1024];
        Module *m = NULL;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return NULL;
        while (!m && fgets(line, sizeof(line), f)) {
                char *unit;

                line[strcspn(line, "\n")] = 0;
                unit = strrchr(line, '/');
                if (unit && strncmp(unit + 1, "call-assistant-module@", 22) == 0)
                        m = registry_find_by_unit(&mgr->registry, unit + 1);
        }
        fclose(f);
        return m;
}

/* Who may connect to the module-facing socket: the processes of module units, and root. */
static bool check_module_peer(const RpcPeer *peer, void *userdata) {
        Api *api = userdata;

        if (peer->uid == 0 || peer->uid == geteuid() || module_of_pid(api->manager, peer->pid))
                return true;
        if (ratelimit_pass(&api->refusals))
                log_warning("Refused a connection to the module endpoint from pid %d (uid %u): not a module's process.",
                            (int)peer->pid, (unsigned)peer->uid);
        return false;
}

/* Who may connect to the control socket: root, our own user, members of the admin group. */
static bool check_control_peer(const RpcPeer *peer, void *userdata) {
        Api *api = userdata;

        if (peer->uid == 0 || peer->uid == geteuid())
                return true;
        if (api->admin_gid != (gid_t)-1) {
                if (peer->gid == api->admin_gid)
                        return true;
                for (size_t i = 0; i < peer->n_groups; i++)
                        if (peer->groups[i] == api->admin_gid)
                                return true;
        }
        if (ratelimit_pass(&api->refusals))
                log_warning("Refused a connection to the control socket from pid %d (uid %u): not root, not in group "
                            ADMIN_GROUP ".", (int)peer->pid, (unsigned)peer->uid);
        return false;
}

/* The directory of a socket path: created if missing, and it must be ours and writable by
 * nobody else (whoever may write there could replace the socket). */
static int socket_directory(const char *socket_path, const char *what) {
        _cleanup_free_ char *dir = NULL;
        const char *slash = strrchr(socket_path, '/');
        int r;

        if (!slash || socket_path[0] != '/')
                return log_error_errno(EINVAL, "The %s %s is not an absolute path.", what, socket_path);
        if (slash == socket_path)
                return 0; /* "/" */
        dir = strndup(socket_path, (size_t)(slash - socket_path));
        if (!dir)
                return log_oom();
        r = mkdir_p_safe(dir, 0755);
        if (r == -EPERM)
                return log_error_errno(r, "The folder of the %s, %s, belongs to another user: refusing it.", what, dir);
        if (r == -EACCES)
                return log_error_errno(r, "The folder of the %s, %s, is writable by others: refusing it.", what, dir);
        if (r < 0)
                return log_error_errno(r, "Cannot use %s for the %s: %m", dir, what);
        return 0;
}

static int listen_control_socket(Api *api) {
        const DaemonConfig *c = &api->manager->config;
        int r;

        r = socket_directory(c->control_socket, "control socket");
        if (r < 0)
                return r;
        r = rpc_server_new(&api->control_server, api->manager->rpc, NULL, api->control_table, api->n_methods,
                           api->manager);
        if (r < 0)
                return log_error_errno(r, "Cannot create the control server: %m");
        /* Readable by the admin group if there is one; root only otherwise. SO_PEERCRED decides
         * anyway: the mode only keeps others from connecting at all. */
        r = rpc_server_listen_unix(api->control_server, c->control_socket, api->admin_gid != (gid_t)-1 ? 0660 : 0600,
                                   api->admin_gid, check_control_peer, api);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s (control socket): %m", c->control_socket);
        return 0;
}

/* TCP only on loopback: the module-facing endpoint has no TLS, tokens would cross the network
 * in clear text. */
static bool address_is_loopback(const char *address) {
        static const char *const prefixes[] = { "127.", "[::1]:", "localhost:", "ipv4:127.", "ipv6:[::1]:" };

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(address, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

static int listen_module_endpoint(Api *api) {
        Manager *mgr = api->manager;
        const char *address = mgr->orchestrator_address;
        int r;

        if (strncmp(address, "unix:", 5) == 0) {
                const char *path = address + 5;

                r = socket_directory(path, "module endpoint");
                if (r < 0)
                        return r;
                r = rpc_server_new(&api->module_server, mgr->rpc, NULL, api->module_table, api->n_methods, mgr);
                if (r >= 0)
                        /* Any module's user must be able to connect; who did is checked. */
                        r = rpc_server_listen_unix(api->module_server, path, 0666, (gid_t)-1, check_module_peer, api);
        } else {
                if (!address_is_loopback(address))
                        return log_error_errno(EINVAL,
                                               "listen: %s is not a loopback address. The module endpoint has no TLS: "
                                               "module tokens would cross the network in clear text. Use a unix: path "
                                               "(the default) or 127.0.0.1/[::1].",
                                               address);
                r = rpc_server_new(&api->module_server, mgr->rpc, address, api->module_table, api->n_methods, mgr);
        }
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s (module endpoint): %m", address);
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
        api->admin_gid = (gid_t)-1;
        if (!mgr->config.user_manager) {
                struct group *g = getgrnam(ADMIN_GROUP);
                if (g)
                        api->admin_gid = g->gr_gid;
        }
        r = build_tables(api);
        if (r < 0)
                return log_oom();
        r = listen_module_endpoint(api);
        if (r >= 0)
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
        /* Their sockets go with them. */
        rpc_server_free(api->control_server);
        rpc_server_free(api->module_server);
        free(api->module_table);
        free(api->control_table);
        free(api);
        return NULL;
}
