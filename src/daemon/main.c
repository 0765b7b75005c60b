/* call-assistant: the orchestrator daemon's entry point. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "daemon/manager.h"
#include "graph/check.h"
#include "rpc/rpc.h"
#include "shared/log.h"
#include "shared/macro.h"

#define DEFAULT_CONFIG_SYSTEM SYSCONFDIR "/call-assistant/call-assistant.yaml"

static void help(void) {
        printf("call-assistant [OPTIONS]\n\n"
               "The call-assistant orchestrator: runs each module found in the modules directory as a\n"
               "transient systemd unit call-assistant-module@<dir>.service and manages it over gRPC.\n\n"
               "  -h --help                  Show this help\n"
               "     --version              Show the version\n"
               "  -c --config=PATH           Configuration file (default: %s;\n"
               "                             a missing default file means built-in defaults)\n"
               "     --user                 Manage the user's service manager instead of the system's\n"
               "     --dev                  Run each module's dev_command instead of its command\n"
               "     --modules-dir=DIR      Override modules_dir\n"
               "     --state-dir=DIR        Override state_dir\n"
               "     --runtime-dir=DIR      Override runtime_dir (credentials; control socket default)\n"
               "     --listen=HOST:PORT     Override listen (module-facing gRPC endpoint)\n"
               "     --control-socket=PATH  Override control_socket\n"
               "     --read-only-path=DIR   Also bind DIR read-only into module units (repeatable)\n"
               "     --check                Validate manifests and the dependency graph, then exit\n"
               "     --check-config         Validate the configuration file, then exit (status %d if\n"
               "                            it is refused, as the daemon itself would refuse it)\n\n"
               "SIGTERM stops the modules, then the daemon; when systemd restarts call-assistant.service\n"
               "the modules keep running and the next instance adopts them. SIGHUP reloads the\n"
               "configuration file (a bad file is refused; everything keeps running).\n",
               DEFAULT_CONFIG_SYSTEM, EXIT_CONFIG_REFUSED);
}

enum {
        ARG_VERSION = 0x100,
        ARG_USER,
        ARG_DEV,
        ARG_MODULES_DIR,
        ARG_STATE_DIR,
        ARG_RUNTIME_DIR,
        ARG_LISTEN,
        ARG_CONTROL_SOCKET,
        ARG_CHECK,
        ARG_CHECK_CONFIG,
        ARG_READ_ONLY_PATH,
};

typedef struct Args {
        const char *config;
        bool user, dev, check, check_config;
        const char *modules_dir, *state_dir, *runtime_dir, *listen, *control_socket;
        char *read_only_paths[16];
        size_t n_read_only_paths;
} Args;

/* Returns 1 to go on, 0 to exit successfully, negative on error. */
static int parse_argv(int argc, char *argv[], Args *a) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, 'c' },
                { "user", no_argument, NULL, ARG_USER },
                { "dev", no_argument, NULL, ARG_DEV },
                { "modules-dir", required_argument, NULL, ARG_MODULES_DIR },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "runtime-dir", required_argument, NULL, ARG_RUNTIME_DIR },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "control-socket", required_argument, NULL, ARG_CONTROL_SOCKET },
                { "check", no_argument, NULL, ARG_CHECK },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "read-only-path", required_argument, NULL, ARG_READ_ONLY_PATH },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "hc:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("call-assistant %s\n", PACKAGE_VERSION);
                        return 0;
                case 'c':
                        a->config = optarg;
                        break;
                case ARG_USER:
                        a->user = true;
                        break;
                case ARG_DEV:
                        a->dev = true;
                        break;
                case ARG_MODULES_DIR:
                        a->modules_dir = optarg;
                        break;
                case ARG_STATE_DIR:
                        a->state_dir = optarg;
                        break;
                case ARG_RUNTIME_DIR:
                        a->runtime_dir = optarg;
                        break;
                case ARG_LISTEN:
                        a->listen = optarg;
                        break;
                case ARG_CONTROL_SOCKET:
                        a->control_socket = optarg;
                        break;
                case ARG_CHECK:
                        a->check = true;
                        break;
                case ARG_CHECK_CONFIG:
                        a->check_config = true;
                        break;
                case ARG_READ_ONLY_PATH:
                        if (optarg[0] != '/' || a->n_read_only_paths >= ELEMENTSOF(a->read_only_paths)) {
                                log_error("--read-only-path needs an absolute path (at most 16 of them).");
                                return -EINVAL;
                        }
                        a->read_only_paths[a->n_read_only_paths++] = optarg;
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("Unexpected argument: %s", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int override(char **dst, const char *value) {
        char *s;

        if (!value)
                return 0;
        s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

static const char *config_path(const Args *a) {
        return a->config ? a->config : DEFAULT_CONFIG_SYSTEM;
}

/* The configuration: defaults, the file, the command line. -EINVAL if it is refused (said
 * why, with file:line:column), -ENOMEM. At start, at SIGHUP and for --check-config. */
static int load_config(const Args *a, DaemonConfig *c) {
        const char *path = config_path(a);
        bool runtime_overridden = a->runtime_dir && !a->control_socket;
        struct stat st;
        int r;

        r = daemon_config_init(c, a->user);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the default configuration: %m");
        r = daemon_config_load(c, path, stderr);
        if (r == -ENOENT && !a->config)
                log_debug("No configuration file %s, using defaults.", path);
        else if (r == -ENOENT)
                return log_error_errno(EINVAL, "Configuration file %s: %s.", path, strerror(ENOENT));
        else if (r == -EINVAL)
                return log_error_errno(r, "Invalid configuration in %s (see above).", path);
        else if (r < 0)
                return log_error_errno(r, "Cannot read %s: %m", path);

        if (override(&c->modules_dir, a->modules_dir) < 0 || override(&c->state_dir, a->state_dir) < 0 ||
            override(&c->runtime_dir, a->runtime_dir) < 0 || override(&c->listen, a->listen) < 0 ||
            override(&c->control_socket, a->control_socket) < 0)
                return log_oom();
        if (runtime_overridden) {
                c->control_socket = mfree_str(c->control_socket);
                if (asprintf(&c->control_socket, "%s/control.sock", c->runtime_dir) < 0) {
                        c->control_socket = NULL;
                        return log_oom();
                }
        }
        if (a->dev)
                c->dev = true;
        for (size_t i = 0; i < a->n_read_only_paths; i++)
                if (daemon_config_add_read_only_path(c, a->read_only_paths[i]) < 0)
                        return log_oom();
        if (stat(c->modules_dir, &st) < 0) {
                log_error_errno(errno, "modules_dir %s: %m", c->modules_dir);
                return -EINVAL;
        }
        if (!S_ISDIR(st.st_mode)) {
                log_error("modules_dir %s: not a folder.", c->modules_dir);
                return -EINVAL;
        }
        return 0;
}

typedef struct Context {
        Manager *mgr;
        const Args *args;
} Context;

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *mgr = ((Context *)userdata)->mgr;

        if (mgr->shutting_down) {
                log_warning("Received %s again, exiting without waiting for modules.", strsignal((int)si->ssi_signo));
                return sd_event_exit(mgr->event, 0);
        }
        log_info("Received %s, shutting down.", strsignal((int)si->ssi_signo));
        manager_begin_shutdown(mgr);
        return 0;
}

/* SIGHUP (systemctl reload): read the file again; a refused one changes nothing. */
static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Context *ctx = userdata;
        DaemonConfig c = {};
        int r;

        if (ctx->mgr->shutting_down)
                return 0;
        (void)sd_notify(0, "RELOADING=1\nSTATUS=Reloading the configuration");
        log_info("Received %s, reloading %s.", strsignal((int)si->ssi_signo), config_path(ctx->args));
        r = load_config(ctx->args, &c);
        if (r < 0)
                log_error("Reload refused: the running configuration stays and every module keeps running.");
        else
                manager_reload(ctx->mgr, &c);
        daemon_config_done(&c);
        (void)sd_notify(0, "READY=1");
        manager_notify_status(ctx->mgr);
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(manager_freep) Manager *mgr = NULL;
        DaemonConfig config = {};
        Context ctx;
        Args args = {};
        sigset_t mask;
        int r;

        log_setup_from_env();
        r = parse_argv(argc, argv, &args);
        if (r <= 0)
                return r;

        r = load_config(&args, &config);
        if (r < 0) {
                daemon_config_done(&config);
                if (r == -ENOMEM)
                        return r;
                log_error("Configuration refused; nothing was started or stopped.");
                return EXIT_CONFIG_REFUSED;
        }
        if (args.check_config) {
                printf("%s: the configuration is valid\n", config_path(&args));
                daemon_config_done(&config);
                return 0;
        }
        if (args.check) {
                r = modules_check(config.modules_dir, stdout);
                daemon_config_done(&config);
                return r;
        }

        /* Block the signals sd-event handles before gRPC starts its threads. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        (void)signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m");
        (void)sd_event_set_watchdog(event, true);

        r = manager_new(&mgr, event, &config);
        daemon_config_done(&config);
        if (r < 0)
                return log_error_errno(r, "Failed to create the manager: %m");

        ctx = (Context){ .mgr = mgr, .args = &args };
        (void)sd_event_add_signal(event, NULL, SIGTERM, on_signal, &ctx);
        (void)sd_event_add_signal(event, NULL, SIGINT, on_signal, &ctx);
        (void)sd_event_add_signal(event, NULL, SIGHUP, on_reload, &ctx);

        r = manager_startup(mgr);
        if (r < 0)
                return r;

        log_info("call-assistant %s running: %zu modules from %s; modules reach it at %s; control socket %s",
                 PACKAGE_VERSION, mgr->registry.n_modules, mgr->config.modules_dir, mgr->orchestrator_address,
                 mgr->config.control_socket);
        (void)sd_notify(0, "READY=1");
        manager_notify_status(mgr);

        r = sd_event_loop(event);
        if (r < 0 && r != -ENOTCONN) /* -ENOTCONN: the bus went away, said already */
                log_error_errno(r, "Event loop failed: %m");
        return r;
}

int main(int argc, char *argv[]) {
        /* gRPC's threads would each get a malloc arena of their own, each keeping free memory
         * of its own: the daemon's work is on one thread and its gRPC threads mostly wait, so
         * one arena for all keeps its memory small (bench/README.md). */
        (void)mallopt(M_ARENA_MAX, 1);
        rpc_prepare_process();
        int r = run(argc, argv);

        return r < 0 ? EXIT_FAILURE : r; /* r > 0: EXIT_CONFIG_REFUSED */
}
