/* The manager's module set: discovery into the registry, identity tokens, ports, unit specs. */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/manager-modules.h"
#include "graph/dep-graph.h"
#include "services/config/config-service-grpc.h"
#include "manifest/module-discovery.h"
#include "ports/port-alloc.h"
#include "shared/fileio.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "systemd/unit-properties.h"

int manager_modules_check(const char *modules_dir, FILE *out) {
        Diagnostics d = {};
        ModuleSet set = {};
        Manifest **order = NULL;
        int r;

        r = discovery_scan(modules_dir, &set, &d);
        if (r >= 0)
                r = graph_resolve(&set, &d);
        if (r < 0) {
                diagnostics_done(&d);
                module_set_done(&set);
                return log_error_errno(r, "Failed to check %s: %m", modules_dir);
        }
        diagnostics_print(&d, out);
        if (graph_start_order(&set, &order) >= 0) {
                fprintf(out, "%zu module(s) in %s; start order:", set.n, modules_dir);
                for (Manifest **o = order; *o; o++)
                        fprintf(out, " %s", (*o)->name);
                fprintf(out, "\n");
                for (size_t i = 0; i < set.n; i++)
                        if (set.items[i]->disabled_reason)
                                fprintf(out, "disabled: %s (%s): %s\n",
                                        set.items[i]->name ? set.items[i]->name : "?", set.items[i]->rel_dir,
                                        set.items[i]->disabled_reason);
                free(order);
        }
        r = d.n_errors > 0 ? -EINVAL : 0;
        fprintf(out, "%u error(s), %u warning(s)\n", d.n_errors, d.n_warnings);
        diagnostics_done(&d);
        module_set_done(&set);
        return r;
}

/* The module's secret: kept in a root-only file in the runtime dir (which survives an
 * orchestrator restart), so that adopted modules keep theirs. Never logged. */
static int ensure_token(Manager *mgr, Module *m) {
        _cleanup_close_ int fd = -1;
        char buf[65];
        ssize_t n;

        if (asprintf(&m->token_path, "%s/%s.token", mgr->credentials_dir, m->name) < 0)
                return -ENOMEM;
        fd = open(m->token_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
                n = read(fd, buf, sizeof(buf) - 1);
                if (n == 64) {
                        buf[64] = 0;
                        m->token = strdup(buf);
                        explicit_bzero(buf, sizeof(buf));
                        return m->token ? 0 : -ENOMEM;
                }
                fd = safe_close(fd);
        }

        uint8_t raw[32];
        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                return -EIO;
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(buf + 2 * i, 3, "%02x", raw[i]);
        explicit_bzero(raw, sizeof(raw));
        /* The runtime directory is volatile by design (a reboot restarts every module): no fsync. */
        int r = write_file_atomic_volatile(m->token_path, buf, 64, 0400);
        if (r < 0) {
                explicit_bzero(buf, sizeof(buf));
                return log_error_errno(r, "Cannot write %s: %m", m->token_path);
        }
        m->token = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
        return m->token ? 0 : -ENOMEM;
}

static int copy_manifest(Module *m, const Manifest *mf) {
        if ((mf->version && !(m->version = strdup(mf->version))) ||
            (mf->description && !(m->description = strdup(mf->description))) ||
            (mf->command && !(m->command = strdup(mf->command))) ||
            (mf->dev_command && !(m->dev_command = strdup(mf->dev_command))))
                return -ENOMEM;
        return module_set_dependencies(m, mf->dependencies);
}

int manager_load_modules(Manager *mgr) {
        Diagnostics d = {};
        ModuleSet set = {};
        int r;

        r = mkdir_p(mgr->config.state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create state directory %s: %m", mgr->config.state_dir);
        r = mkdir_p(mgr->config.runtime_dir, 0755);
        if (r >= 0)
                r = mkdir_p(mgr->credentials_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create runtime directory %s: %m", mgr->config.runtime_dir);
        (void)chmod(mgr->credentials_dir, 0700);

        r = port_allocator_new(&mgr->ports, mgr->config.state_dir, mgr->config.port_min, mgr->config.port_max, stderr);
        if (r < 0)
                return log_error_errno(r, "Cannot read the port state in %s: %m", mgr->config.state_dir);

        /* Units need absolute paths (WorkingDirectory=). */
        char *abs = realpath(mgr->config.modules_dir, NULL);
        if (!abs)
                return log_error_errno(errno, "Modules directory %s: %m", mgr->config.modules_dir);
        free(mgr->config.modules_dir);
        mgr->config.modules_dir = abs;

        r = discovery_scan(mgr->config.modules_dir, &set, &d);
        if (r >= 0)
                r = graph_resolve(&set, &d);
        if (r < 0) {
                diagnostics_done(&d);
                module_set_done(&set);
                return log_error_errno(r, "Module discovery failed: %m");
        }
        for (size_t i = 0; i < d.n; i++) {
                char line[2048];
                diagnostic_format(&d.items[i], line, sizeof(line));
                if (d.items[i].severity == DIAG_ERROR)
                        log_error("%s", line);
                else
                        log_warning("%s", line);
        }
        mgr->n_problems = d.n_errors;
        diagnostics_done(&d);

        for (size_t i = 0; i < set.n; i++) {
                Manifest *mf = set.items[i];
                const char *name = mf->name && manifest_name_is_valid(mf->name) ? mf->name : NULL;
                Module *m;

                /* A manifest without a usable name is listed by its folder, disabled. Two
                 * manifests with the same name: the second is listed by its folder. */
                if (!name || registry_find(&mgr->registry, name))
                        name = mf->rel_dir;
                if (registry_find(&mgr->registry, name))
                        continue;
                m = module_new(name, mf->rel_dir, mf->abs_dir);
                if (!m)
                        goto oom;
                m->userdata = mgr;
                if (registry_add(&mgr->registry, m) < 0) {
                        module_free(m);
                        goto oom;
                }
                if (copy_manifest(m, mf) < 0 || module_unit_name(mf->rel_dir, &m->unit) < 0)
                        goto oom;
                if (mf->disabled_reason) {
                        m->disabled_reason = strdup(mf->disabled_reason);
                        (void)module_set_state(m, MODULE_DISABLED, mf->disabled_reason);
                        continue;
                }
                r = ensure_token(mgr, m);
                if (r < 0) {
                        module_set_done(&set);
                        return r;
                }
        }
        module_set_done(&set);
        log_info("Found %zu module(s) in %s (%u problem(s)).", mgr->registry.n_modules, mgr->config.modules_dir,
                 mgr->n_problems);
        return 0;
oom:
        module_set_done(&set);
        return log_oom();
}

static int save_ports(sd_event_source *s, void *userdata) {
        Manager *mgr = userdata;
        _cleanup_free_ char **names = NULL;
        int r;

        mgr->ports_save = sd_event_source_disable_unref(mgr->ports_save);
        names = calloc(mgr->registry.n_modules + 1, sizeof(char *));
        if (!names)
                return log_oom();
        for (size_t i = 0; i < mgr->registry.n_modules; i++)
                names[i] = mgr->registry.modules[i]->name;
        r = port_allocator_save(mgr->ports, names);
        if (r < 0)
                log_warning_errno(r, "Cannot save the port state, ignoring: %m");
        return 0;
}

int manager_modules_assign_port(Manager *mgr, Module *m, bool keep_busy) {
        uint16_t before = m->port;
        int r;

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

int manager_modules_append_unit_props(sd_bus_message *msg, void *userdata) {
        Module *m = userdata;
        Manager *mgr = m->userdata;
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *desc = NULL;
        size_t n = 0;
        UnitSpec s;

        for (const char *const *v = unit_inherited_environment; *v; v++)
                n++;
        env = calloc(n + 5, sizeof(char *));
        n = 0;
        if (!env)
                return -ENOMEM;
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
        if (asprintf(&desc, "call-assistant module %s: %s", m->name, m->description ? m->description : "") < 0)
                return -ENOMEM;

        /* The module's folder and the configured folders, bound read-only at their own paths:
         * PrivateTmp= (implied by DynamicUser=) would hide them if they live under /tmp. */
        size_t n_ro = 0;
        for (char **p = mgr->config.read_only_paths; p && *p; p++)
                n_ro++;
        _cleanup_free_ char **ro = calloc(n_ro + 2, sizeof(char *));
        if (!ro)
                return -ENOMEM;
        ro[0] = m->abs_dir;
        for (size_t i = 0; i < n_ro; i++)
                ro[i + 1] = mgr->config.read_only_paths[i];

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
                .credential_path = m->token_path,
                .read_only_paths = ro,
                .user_manager = mgr->config.user_manager,
        };
        return unit_spec_append(msg, &s);
}

ConfigService *daemon_config_service(void *server_userdata) {
        Manager *mgr = server_userdata;
        return mgr->config_service;
}

static void on_apply_for_service(Manager *mgr, Module *m, int status, const char *message, void *userdata) {
        ConfigApply *op = userdata;
        char msg[1200];

        if (status == CA_STATUS_OK) {
                config_apply_complete(op, CONFIG_STATUS_OK, NULL);
                return;
        }
        snprintf(msg, sizeof(msg), "module %s refused the configuration: %s", m->name,
                 message && *message ? message : "no reason given");
        config_apply_complete(op, CONFIG_STATUS_FAILED_PRECONDITION, msg);
}

/* SetConfig validated the configuration; deliver it to the running module. */
static void on_config_apply(ConfigApply *op, const char *module, const char *config_json, void *userdata) {
        Manager *mgr = userdata;
        Module *m = registry_find(&mgr->registry, module);
        int r;

        if (!m || !m->registered) {
                config_apply_complete(op, CONFIG_STATUS_FAILED_PRECONDITION,
                                      "the module is not running: start it, then configure it");
                return;
        }
        r = manager_apply_config(mgr, m, config_json, on_apply_for_service, op);
        if (r < 0)
                config_apply_complete(op, CONFIG_STATUS_FAILED_PRECONDITION, strerror(-r));
}

static void on_config_changed(const char *module, uint64_t revision, const char *redacted_json, void *userdata) {
        Manager *mgr = userdata;
        Module *m = registry_find(&mgr->registry, module);
        ManagerConfigChange change = { .revision = revision, .redacted_json = redacted_json };

        log_info("Module %s: configuration revision %" PRIu64 " applied.", module, revision);
        if (m)
                manager_emit(mgr, MANAGER_EVENT_CONFIG, m, &change);
}

int manager_modules_config_init(Manager *mgr) {
        _cleanup_free_ char *dir = NULL;
        int r;

        if (asprintf(&dir, "%s/config", mgr->config.state_dir) < 0)
                return log_oom();
        r = config_service_new(dir, &mgr->config_service);
        if (r < 0)
                return log_error_errno(r, "Cannot open the configuration store %s: %m", dir);
        config_service_set_apply_hook(mgr->config_service, on_config_apply, mgr);
        config_service_set_change_hook(mgr->config_service, on_config_changed, mgr);
        return 0;
}

int manager_modules_deliver_stored_config(Manager *mgr, Module *m, module_call_done_t done) {
        _cleanup_free_ char *json = NULL, *error = NULL;
        int r;

        if (!mgr->config_service || !m->config_schema || !*m->config_schema)
                return 0;
        r = config_service_register_schema(mgr->config_service, m->name, m->config_schema, &error);
        if (r < 0)
                return log_warning_errno(r, "Module %s: its configuration schema was refused: %s", m->name,
                                         error ? error : strerror(-r));
        r = config_service_get_stored_for_apply(mgr->config_service, m->name, &json);
        if (r <= 0)
                return 0;
        /* The stored configuration is re-applied after every (re-)registration. */
        r = manager_apply_config(mgr, m, json, (manager_apply_done_t)done, NULL);
        explicit_bzero(json, strlen(json));
        return r < 0 ? r : 1;
}

void manager_modules_done(Manager *mgr) {
        if (mgr->ports_save)
                (void)save_ports(NULL, mgr);
        mgr->ports = port_allocator_free(mgr->ports);
        mgr->config_service = config_service_free(mgr->config_service);
}
