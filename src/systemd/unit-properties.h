/* Transient unit naming and properties for a module (pure: no bus needed). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#define MODULE_UNIT_PREFIX "call-assistant-module@"

typedef struct UnitSpec {
        const char *description;
        const char *command;            /* run as /bin/sh -c "<command>" */
        const char *working_directory;
        char **environment;             /* "KEY=value", NULL-terminated */
        const char *syslog_identifier;
        const char *module_name;        /* journal field CALL_ASSISTANT_MODULE= */
        uint64_t restart_usec;
        uint32_t start_limit_burst;
        uint64_t start_limit_interval_usec;
        uint64_t timeout_stop_usec;
        const char *slice;              /* NULL: none */
        const char *user;               /* NULL or "": DynamicUser=yes (system manager only) */
        bool user_manager;              /* for a user's service manager: it runs units as that
                                         * user and cannot apply the system-only sandboxing */
        const char *credential_path;    /* LoadCredential=module-token:<path>; NULL: none */
        char **read_only_paths;         /* BindReadOnlyPaths= (each at its own path), NULL-terminated;
                                         * makes folders under /tmp visible despite PrivateTmp= */
} UnitSpec;

/* Escape a string the way systemd-escape does for unit instance names. */
int unit_instance_escape(const char *s, char **ret);
int unit_instance_unescape(const char *s, char **ret);
/* call-assistant-module@<escaped dir>.service */
int module_unit_name(const char *dir, char **ret);

/* Standard variables the orchestrator passes on (from its own environment). */
extern const char *const unit_inherited_environment[];

/* Append the properties to an open a(sv) container of StartTransientUnit. */
int unit_spec_append(sd_bus_message *m, const UnitSpec *s);
/* The same properties as "Key=value" strings (for tests and call-assistantctl). */
int unit_spec_to_strings(const UnitSpec *s, char ***ret);
