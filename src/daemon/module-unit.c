/* A module's unit: its gRPC port (kept across restarts) and its transient unit's properties. */
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/manager.h"
#include "daemon/module-unit.h"
#include "ports/port-alloc.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "systemd/unit-properties.h"

/* MemoryMax= of a module unit: a runaway module is stopped before it takes the machine. */
#define MODULE_MEMORY_MAX (1024ULL * 1024 * 1024)

static int save_ports(sd_event_source *s, void *userdata) {
        Manager *mgr = userdata;
        _cleanup_free_ char **names = NULL;
        int r;

        mgr->ports_save = sd_event_source_disable_unref(mgr->ports_save);
        names = new0(char *, mgr->registry.n_modules + 1);
        if (!names)
                return log_oom();
        for (size_t i = 0; i < mgr->registry.n_modules; i++)
                names[i] = mgr->registry.modules[i]->name;
        r = port_allocator_save(mgr->ports, names);
        if (r < 0)
                log_warning_errno(r, "Cannot save the port state, ignoring: %m");
        return 0;
}

void manager_ports_flush(Manager *mgr) {
        assert(mgr);
        if (mgr->ports_save)
                (void)save_ports(NULL, mgr);
}

int module_unit_assign_port(Module *m, bool keep_busy) {
        Manager *mgr = m->manager;
        uint16_t before = m->port;
        int r;

        assert(mgr);
        r = port_allocator_get(mgr->ports, m->name, keep_busy, &m->port);
        if (r < 0)
                return r;
        /* One (fsync'ed) write for all the ports assigned in this loop iteration, before
         * anything else runs: the units starting now will find their ports on disk. */
        if (m->port != before && !mgr->ports_save) {
                r = sd_event_add_defer(mgr->event, &mgr->ports_save, save_ports, mgr);
                if (r < 0)
                        return save_ports(NULL, mgr);
                (void)sd_event_source_set_priority(mgr->ports_save, SD_EVENT_PRIORITY_IMPORTANT);
        }
        return 0;
}

/* What a module's manifest network maps to: the addresses it may exchange packets with. */
static const char *const *ip_allow_list(const ModuleNetwork *net) {
        static const char *const loopback[] = { "localhost", NULL };
        static const char *const loopback_mc[] = { "localhost", "multicast", NULL };
        static const char *const lan[] = { "localhost", "link-local", "10.0.0.0/8", "172.16.0.0/12",
                                           "192.168.0.0/16", "fc00::/7", NULL };
        static const char *const lan_mc[] = { "localhost", "link-local", "10.0.0.0/8", "172.16.0.0/12",
                                              "192.168.0.0/16", "fc00::/7", "multicast", NULL };

        switch (net->peers) {
        case NETWORK_PEERS_ANY:
                return NULL; /* no address restriction */
        case NETWORK_PEERS_LAN:
                return net->multicast ? lan_mc : lan;
        default:
                return net->multicast ? loopback_mc : loopback;
        }
}

int module_unit_append_properties(sd_bus_message *msg, void *userdata) {
        Module *m = userdata;
        Manager *mgr = m->manager;
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *desc = NULL;
        _cleanup_free_ char **ro = NULL;
        _cleanup_free_ char *socket_dir = NULL;
        UnitSocketBind binds[1 + NETWORK_MAX_BINDS];
        size_t n = 0, n_ro = 0, n_binds = 0;
        UnitSpec s;

        assert(msg);
        assert(mgr);

        for (const char *const *v = unit_inherited_environment; *v; v++)
                n++;
        env = new0(char *, n + 8);
        if (!env)
                return -ENOMEM;
        n = 0;
        for (const char *const *v = unit_inherited_environment; *v; v++) {
                const char *val = getenv(*v);
                if (val && asprintf(&env[n++], "%s=%s", *v, val) < 0)
                        return -ENOMEM;
        }
        if (((mgr->config.user && *mgr->config.user) || mgr->config.user_manager) && getenv("HOME") &&
            asprintf(&env[n++], "HOME=%s", getenv("HOME")) < 0)
                return -ENOMEM;
        if (asprintf(&env[n++], "GRPC_PORT=%u", m->port) < 0 ||
            asprintf(&env[n++], "CALL_ASSISTANT_MODULE_ID=%s", m->name) < 0 ||
            asprintf(&env[n++], "CALL_ASSISTANT_ORCHESTRATOR=%s", mgr->orchestrator_address) < 0)
                return -ENOMEM;
#if defined(__SANITIZE_ADDRESS__)
        /* A sanitized orchestrator (tools/test's second stage) runs sanitized C modules.
         * LeakSanitizer stops its process with ptrace() at exit, which SystemCallFilter= of a
         * module unit refuses: the module would end with an error every time it stops. In
         * units, ASan and UBSan check everything else; the SDK's leaks are checked by its own
         * tests outside units. */
        if (asprintf(&env[n++], "ASAN_OPTIONS=%s%sdetect_leaks=0", getenv("ASAN_OPTIONS") ?: "",
                     getenv("ASAN_OPTIONS") && *getenv("ASAN_OPTIONS") ? ":" : "") < 0)
                return -ENOMEM;
        if (getenv("UBSAN_OPTIONS") && asprintf(&env[n++], "UBSAN_OPTIONS=%s", getenv("UBSAN_OPTIONS")) < 0)
                return -ENOMEM;
#endif
        /* systemd opens the token file as the unit's stdin (StandardInputFile=). */
        if (m->token_path && !(env[n++] = strdup("CALL_ASSISTANT_TOKEN_FILE=/proc/self/fd/0")))
                return -ENOMEM;
        if (asprintf(&desc, "call-assistant module %s: %s", m->name, m->description ? m->description : "") < 0)
                return -ENOMEM;

        /* The module's folder and the configured folders, bound read-only at their own paths:
         * PrivateTmp= (implied by DynamicUser=) would hide them if they live under /tmp. */
        for (char **p = mgr->config.read_only_paths; p && *p; p++)
                n_ro++;
        ro = new0(char *, n_ro + 3);
        if (!ro)
                return -ENOMEM;
        ro[0] = m->abs_dir;
        for (size_t i = 0; i < n_ro; i++)
                ro[i + 1] = mgr->config.read_only_paths[i];
        /* The folder of the orchestrator's socket (the root-owned runtime dir): under /tmp or
         * /home, PrivateTmp= or ProtectHome= would hide it. The folder, not the socket: a
         * restarted orchestrator makes a new socket there. */
        if (strncmp(mgr->orchestrator_address, "unix:", 5) == 0) {
                const char *path = mgr->orchestrator_address + 5, *slash = strrchr(path, '/');

                if (slash && slash != path && !(socket_dir = strndup(path, (size_t)(slash - path))))
                        return -ENOMEM;
                ro[n_ro + 1] = socket_dir;
        }

        /* Its gRPC port and what its manifest asks for; nothing else. */
        binds[n_binds++] = (UnitSocketBind){ .protocol = IPPROTO_TCP, .port_min = m->port, .n_ports = 1 };
        for (size_t i = 0; i < m->network.n_binds; i++)
                binds[n_binds++] = (UnitSocketBind){ .protocol = m->network.binds[i].protocol,
                                                     .port_min = m->network.binds[i].port_min,
                                                     .n_ports = m->network.binds[i].n_ports };

        s = (UnitSpec){
                .description = desc,
                .command = mgr->config.dev && m->dev_command ? m->dev_command : m->command,
                .working_directory = m->abs_dir,
                .environment = env,
                .syslog_identifier = m->name,
                .module_name = m->name,
                .restart_usec = (uint64_t)mgr->config.restart_sec_ms * 1000,
                .start_limit_burst = mgr->config.start_limit_burst,
                .start_limit_interval_usec = (uint64_t)mgr->config.start_limit_interval_sec * 1000000,
                .timeout_stop_usec = (uint64_t)mgr->config.stop_timeout_sec * 1000000,
                .slice = mgr->config.slice,
                .user = mgr->config.user,
                .dynamic_user = m->user_name,
                .token_path = m->token_path,
                .read_only_paths = ro,
                .user_manager = mgr->config.user_manager,
                .ip_allow = ip_allow_list(&m->network),
                .bind_allow = binds,
                .n_bind_allow = n_binds,
                .netlink = m->network.peers != NETWORK_PEERS_LOOPBACK || m->network.multicast,
                .memory_max = MODULE_MEMORY_MAX,
        };
        return unit_spec_append(msg, &s);
}
