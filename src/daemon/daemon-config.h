/* The orchestrator's configuration: defaults, overridden by a YAML file and the command line. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct DaemonConfig {
        char *modules_dir;        /* scanned for module.yaml */
        char *state_dir;          /* ports, config store */
        char *runtime_dir;        /* module credentials (root-only), control socket */
        char *listen;             /* module-facing gRPC endpoint: "unix:/path" or a loopback host:port;
                                   * "": unix:<runtime_dir>/modules.sock */
        char *control_socket;     /* control endpoint (unix socket path, mode 0600) */
        uint16_t port_min, port_max;
        uint32_t health_interval_ms, health_timeout_ms, health_failure_threshold;
        uint32_t registration_timeout_ms;
        uint32_t restart_sec_ms, start_limit_burst, start_limit_interval_sec, stop_timeout_sec;
        char *slice;              /* slice of the module units */
        char *user;               /* run modules as this user; "": a dynamic unprivileged user */
        char **read_only_paths;   /* extra folders bound read-only into module units */
        bool user_manager;        /* manage the user's systemd instead of the system manager */
        bool dev;                 /* run dev_command instead of command */
        /* the web dashboard (services/web) */
        bool web_enabled;
        char *web_listen;         /* host:port (loopback by default) */
        char *web_assets_dir;     /* the pages */
        char *web_tls_certificate; /* PEM; "" for plain HTTP */
        char *web_tls_key;
        char *web_journal_directory; /* "" for the local journal */
} DaemonConfig;

/* Fill in the built-in defaults (system or user manager). */
int daemon_config_init(DaemonConfig *c, bool user_manager);
void daemon_config_done(DaemonConfig *c);

/* A configuration file is small: anything bigger or deeper is refused before it is parsed. */
#define DAEMON_CONFIG_MAX_SIZE (64u * 1024u)
#define DAEMON_CONFIG_MAX_DEPTH 16u

/* The daemon's exit status when its configuration is refused (EX_CONFIG from sysexits.h):
 * call-assistant.service has RestartPreventExitStatus= for it, so that a bad file fails the
 * service once instead of restarting it over and over. */
#define EXIT_CONFIG_REFUSED 78

/* Read a YAML config file over the current values (load into a fresh daemon_config_init()
 * to keep a running configuration intact). Every problem is printed to err as
 * "FILE:LINE:COLUMN: error: field 'x': message"; returns -EINVAL if there was any (also for a
 * file that is not a regular one, too big or too deeply nested, or unreadable), -ENOENT if
 * there is no file at all (for the caller to decide). */
int daemon_config_load(DaemonConfig *c, const char *path, FILE *err);
int daemon_config_add_read_only_path(DaemonConfig *c, const char *path);
