/* Transient unit naming and properties for a module (pure: no bus needed). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#define MODULE_UNIT_PREFIX "call-assistant-module@"
/* Dynamic users of modules: "ca-<name>-<hash>", at most 31 characters (systemd's limit). */
#define MODULE_USER_PREFIX "ca-"
#define MODULE_USER_MAX 31

/* A port (range) a unit may bind: SocketBindAllow=. */
typedef struct UnitSocketBind {
        int protocol;                   /* IPPROTO_TCP or IPPROTO_UDP */
        uint16_t port_min, n_ports;     /* n_ports 0: any port of the protocol */
} UnitSocketBind;

typedef struct UnitSpec {
        const char *description;
        const char *command;            /* run as /bin/sh -c "<command>" (exec'd: see unit_exec_script()) */
        const char *working_directory;
        char **environment;             /* "KEY=value", NULL-terminated */
        const char *syslog_identifier;
        const char *module_name;        /* journal field CALL_ASSISTANT_MODULE=; names the state
                                         * directory call-assistant-modules/<module_name> */
        uint64_t restart_usec;
        uint32_t start_limit_burst;
        uint64_t start_limit_interval_usec;
        uint64_t timeout_stop_usec;
        const char *slice;              /* NULL: none */
        const char *user;               /* a static user (units.user); NULL or "": a dynamic one */
        const char *dynamic_user;       /* with DynamicUser=yes: User=<this>, one per module, so
                                         * that every module has a uid of its own */
        bool user_manager;              /* for a user's service manager: it runs units as that
                                         * user and cannot apply the system-only sandboxing */
        const char *token_path;         /* StandardInput=file:<path>: opened by systemd on every
                                         * (re)start before it drops privileges; the module reads
                                         * /proc/self/fd/0. NULL: none */
        char **read_only_paths;         /* BindReadOnlyPaths= (each at its own path), NULL-terminated;
                                         * makes folders under /tmp visible despite PrivateTmp= */
        /* Network (system manager only). */
        const char *const *ip_allow;    /* NULL: no address restriction; else IPAddressDeny=any and
                                         * IPAddressAllow= these: "localhost", "link-local",
                                         * "multicast" or a prefix "10.0.0.0/8", "fc00::/7" */
        const UnitSocketBind *bind_allow; /* SocketBindAllow= these, then SocketBindDeny=any */
        size_t n_bind_allow;            /* 0: no bind restriction */
        bool netlink;                   /* RestrictAddressFamilies= includes AF_NETLINK */
        uint64_t memory_max;            /* MemoryMax= in bytes; 0: none */
} UnitSpec;

/* A module folder (relative to the modules directory) as a unit instance name: letters, digits,
 * ':', '_', '.' and '-' stay, everything else (a '/' of a nested folder, a leading '.') is
 * \xNN, so that the mapping is one-to-one: "onvif-discovery" -> "onvif-discovery",
 * "vendor/cam" -> "vendor\x2fcam". */
int unit_instance_escape(const char *s, char **ret);
int unit_instance_unescape(const char *s, char **ret);
/* call-assistant-module@<instance>.service */
int module_unit_name(const char *dir, char **ret);

/* The dynamic user of a module: "ca-" + the name (sanitized, shortened) + "-" + a hash of the
 * whole name, so that distinct names give distinct users. buf: at least MODULE_USER_MAX + 1. */
void module_user_name(const char *name, unsigned salt, char buf[static MODULE_USER_MAX + 1]);

/* The shell script of a module's ExecStart=/bin/sh -c SCRIPT. A command that is one program
 * with its arguments (words, quotes, variables, redirections, leading VAR=value assignments)
 * becomes "[VAR=value ...] exec PROGRAM ARGS", so that the program itself is the unit's main
 * process: systemd signals it and `systemctl status` shows it (dash would otherwise fork and
 * stay as the main process). Anything else (;, &&, ||, |, &, subshells, `...`, newlines,
 * compound commands) is a script the shell runs as written. */
int unit_exec_script(const char *command, char **ret);

/* StateDirectory= of a module: call-assistant-modules/<name> (/var/lib/call-assistant-modules/<name>
 * for the system manager; the module finds it in $STATE_DIRECTORY). */
#define MODULE_STATE_DIRECTORY_PREFIX "call-assistant-modules/"

/* Standard variables the orchestrator passes on (from its own environment). */
extern const char *const unit_inherited_environment[];

/* Append the properties to an open a(sv) container of StartTransientUnit. */
int unit_spec_append(sd_bus_message *m, const UnitSpec *s);
/* The same properties as "Key=value" strings (for tests and call-assistantctl). */
int unit_spec_to_strings(const UnitSpec *s, char ***ret);
/* Whether e is something IPAddressAllow= takes here: "any", "localhost", "link-local",
 * "multicast" or an address prefix ("192.168.0.0/16", "fd00::/8"). */
int unit_ip_entry_is_valid(const char *e);
