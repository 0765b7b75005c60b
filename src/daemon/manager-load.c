/* Loading the module set: folders, discovery and the dependency graph into the registry,
 * and each module's identity token. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/manager.h"
#include "graph/dep-graph.h"
#include "manifest/module-discovery.h"
#include "ports/port-alloc.h"
#include "shared/fileio.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "systemd/unit-properties.h"

/* The module's secret: kept in the runtime dir (which survives an orchestrator restart), so
 * that adopted modules keep theirs. Never logged. The folder is root-only (0700), which is
 * what keeps the file private: the file itself is 0444, because a module reopens the
 * descriptor systemd gives it (/proc/self/fd/0), and that checks the file's own mode. Nobody
 * but root can reach the file by its path. */
static int ensure_token(Manager *mgr, Module *m) {
        _cleanup_close_ int fd = -1;
        uint8_t raw[32];
        char buf[65];
        ssize_t n;
        int r;

        if (asprintf(&m->token_path, "%s/%s.token", mgr->credentials_dir, m->name) < 0)
                return -ENOMEM;
        fd = open(m->token_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
                n = read(fd, buf, sizeof(buf) - 1);
                if (n == 64 && fchmod(fd, 0444) >= 0) {
                        buf[64] = 0;
                        m->token = strdup(buf);
                        explicit_bzero(buf, sizeof(buf));
                        return m->token ? 0 : -ENOMEM;
                }
                fd = safe_close(fd);
        }

        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                return -EIO;
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(buf + 2 * i, 3, "%02x", raw[i]);
        explicit_bzero(raw, sizeof(raw));
        /* The runtime directory is volatile by design (a reboot restarts every module): no fsync. */
        r = write_file_atomic_volatile(m->token_path, buf, 64, 0444);
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
        m->network = mf->network;
        return module_set_dependencies(m, mf->dependencies);
}

/* Its own dynamic user, distinct from every other module's (names that shorten alike are
 * told apart by the hash; a clash of hashes by another salt). */
static int assign_user_name(Manager *mgr, Module *m) {
        char buf[MODULE_USER_MAX + 1];

        for (unsigned salt = 0; salt < 64; salt++) {
                bool taken = false;

                module_user_name(m->name, salt, buf);
                for (size_t i = 0; i < mgr->registry.n_modules && !taken; i++) {
                        Module *o = mgr->registry.modules[i];
                        taken = o != m && o->user_name && strcmp(o->user_name, buf) == 0;
                }
                if (!taken) {
                        m->user_name = strdup(buf);
                        return m->user_name ? 0 : -ENOMEM;
                }
        }
        return -EEXIST;
}

/* The credentials folder must be ours alone: a real directory (no symlink), ours, and
 * nobody else may enter it (0700, set if it was laxer). */
static int check_private_directory(const char *path) {
        int r = mkdir_p_safe(path, 0700);

        if (r == -EPERM)
                return log_error_errno(r, "%s belongs to another user: refusing to keep module tokens there.", path);
        if (r == -EACCES)
                return log_error_errno(r, "%s is writable by others: refusing to keep module tokens there.", path);
        if (r < 0)
                return log_error_errno(r, "Cannot use %s for module tokens: %m", path);
        if (chmod(path, 0700) < 0)
                return log_error_errno(errno, "Cannot make %s private: %m", path);
        return 0;
}

static int prepare_directories(Manager *mgr) {
        char *abs;
        int r;

        r = mkdir_p(mgr->config.state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create state directory %s: %m", mgr->config.state_dir);
        /* Sockets and tokens live here: nobody else may replace what is in it. */
        r = mkdir_p_safe(mgr->config.runtime_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Runtime directory %s: %s", mgr->config.runtime_dir,
                                       r == -EPERM    ? "it belongs to another user"
                                       : r == -EACCES ? "it is writable by others"
                                                      : strerror(-r));
        r = check_private_directory(mgr->credentials_dir);
        if (r < 0)
                return r;

        /* Units need absolute paths (WorkingDirectory=). */
        abs = realpath(mgr->config.modules_dir, NULL);
        if (!abs)
                return log_error_errno(errno, "Modules directory %s: %m", mgr->config.modules_dir);
        free(mgr->config.modules_dir);
        mgr->config.modules_dir = abs;
        return 0;
}

/* One Module per manifest. A manifest without a usable name is listed by its folder,
 * disabled; of two manifests with the same name, the second is listed by its folder. */
static int add_module(Manager *mgr, const Manifest *mf) {
        const char *name = mf->name && manifest_name_is_valid(mf->name) ? mf->name : NULL;
        _cleanup_(module_freep) Module *m = NULL;
        Module *added;
        int r;

        if (!name || registry_find(&mgr->registry, name))
                name = mf->rel_dir;
        if (registry_find(&mgr->registry, name))
                return 0;
        m = module_new(name, mf->rel_dir, mf->abs_dir);
        if (!m || copy_manifest(m, mf) < 0 || module_unit_name(mf->rel_dir, &m->unit) < 0)
                return log_oom();
        m->manager = mgr;
        if (mf->disabled_reason) {
                m->disabled_reason = strdup(mf->disabled_reason);
                if (!m->disabled_reason || module_set_state(m, MODULE_DISABLED, mf->disabled_reason) < 0)
                        return log_oom();
        }
        if (registry_add(&mgr->registry, m) < 0)
                return log_oom();
        added = TAKE_PTR(m);
        if (added->state == MODULE_DISABLED)
                return 0;
        r = assign_user_name(mgr, added);
        if (r < 0)
                return log_error_errno(r, "Module %s: cannot name its user: %m", added->name);
        r = ensure_token(mgr, added);
        return r < 0 ? log_error_errno(r, "Module %s: cannot create its token: %m", added->name) : 0;
}

int manager_load_modules(Manager *mgr) {
        Diagnostics d = {};
        ModuleSet set = {};
        int r;

        assert(mgr);

        r = prepare_directories(mgr);
        if (r < 0)
                return r;
        r = port_allocator_new(&mgr->ports, mgr->config.state_dir, mgr->config.port_min, mgr->config.port_max, stderr);
        if (r < 0)
                return log_error_errno(r, "Cannot read the port state in %s: %m", mgr->config.state_dir);

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
                r = add_module(mgr, set.items[i]);
                if (r < 0) {
                        module_set_done(&set);
                        return r;
                }
        }
        module_set_done(&set);
        log_info("Found %zu module(s) in %s (%u problem(s)).", mgr->registry.n_modules, mgr->config.modules_dir,
                 mgr->n_problems);
        return 0;
}
