/* Transient unit naming (systemd-escape compatible) and the properties of a module's unit. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>

#include "shared/macro.h"
#include "systemd/unit-properties.h"

const char *const unit_inherited_environment[] = {
        "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "CALL_ASSISTANT_LOG_LEVEL", NULL,
};

/* Characters a unit instance name may hold as they are ('-' included: systemd allows it in
 * instance names, and operators type "call-assistant-module@onvif-discovery"). */
static bool valid_instance_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
               c == '_' || c == '.' || c == '-';
}

int unit_instance_escape(const char *s, char **ret) {
        char *out, *o;

        out = malloc(strlen(s) * 4 + 1);
        if (!out)
                return -ENOMEM;
        o = out;
        for (const char *p = s; *p; p++) {
                if (valid_instance_char(*p) && !(p == s && *p == '.'))
                        *o++ = *p;
                else
                        o += sprintf(o, "\\x%02x", (unsigned char)*p);
        }
        *o = 0;
        *ret = out;
        return 0;
}

int unit_instance_unescape(const char *s, char **ret) {
        char *out = malloc(strlen(s) + 1), *o = out;

        if (!out)
                return -ENOMEM;
        for (const char *p = s; *p; p++) {
                unsigned x;
                if (p[0] == '\\' && p[1] == 'x' && sscanf(p + 2, "%2x", &x) == 1 && p[2] && p[3]) {
                        *o++ = (char)x;
                        p += 3;
                } else
                        *o++ = *p;
        }
        *o = 0;
        *ret = out;
        return 0;
}

int module_unit_name(const char *dir, char **ret) {
        _cleanup_free_ char *e = NULL;
        int r;

        r = unit_instance_escape(dir, &e);
        if (r < 0)
                return r;
        if (asprintf(ret, MODULE_UNIT_PREFIX "%s.service", e) < 0)
                return -ENOMEM;
        return 0;
}

void module_user_name(const char *name, unsigned salt, char buf[static MODULE_USER_MAX + 1]) {
        uint32_t h = 2166136261u ^ salt; /* FNV-1a of the whole name */
        size_t n = 0, k = strlen(MODULE_USER_PREFIX);

        for (const char *p = name; *p; p++)
                h = (h ^ (uint8_t)*p) * 16777619u;
        memcpy(buf, MODULE_USER_PREFIX, k);
        /* ca- + up to 20 characters + - + 6 hex digits = at most 30. */
        for (const char *p = name; *p && n < 20; p++, n++)
                buf[k + n] = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'
                                     ? *p
                                     : (*p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : '_');
        snprintf(buf + k + n, MODULE_USER_MAX + 1 - k - n, "-%06x", h & 0xffffffu);
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

/* One word of a command line, outside quotes: returns the end of the word starting at p, or
 * NULL if a quote is not closed. */
static const char *word_end(const char *p) {
        char quote = 0;

        for (; *p; p++) {
                if (quote) {
                        if (*p == quote)
                                quote = 0;
                        else if (quote == '"' && *p == '\\' && p[1])
                                p++;
                } else if (*p == '\'' || *p == '"')
                        quote = *p;
                else if (*p == '\\' && p[1])
                        p++;
                else if (is_blank(*p))
                        break;
        }
        return quote ? NULL : p;
}

/* Is the command one simple command: no operator outside quotes? '&' is allowed only in a
 * redirection (2>&1, <&3). */
static bool is_one_command(const char *cmd) {
        char quote = 0;

        for (const char *p = cmd; *p; p++) {
                if (quote) {
                        if (*p == quote)
                                quote = 0;
                        else if (quote == '"' && (*p == '`' || (*p == '$' && p[1] == '(')))
                                return false;
                        else if (quote == '"' && *p == '\\' && p[1])
                                p++;
                        continue;
                }
                if (*p == '\'' || *p == '"')
                        quote = *p;
                else if (*p == '\\' && p[1])
                        p++;
                else if (strchr(";|()`\n\r", *p))
                        return false;
                else if (*p == '&' && !(p > cmd && (p[-1] == '>' || p[-1] == '<')))
                        return false;
        }
        return quote == 0;
}

static bool is_assignment(const char *w, size_t n) {
        size_t i = 0;

        if (n == 0 || !((w[0] >= 'a' && w[0] <= 'z') || (w[0] >= 'A' && w[0] <= 'Z') || w[0] == '_'))
                return false;
        while (i < n && ((w[i] >= 'a' && w[i] <= 'z') || (w[i] >= 'A' && w[i] <= 'Z') ||
                         (w[i] >= '0' && w[i] <= '9') || w[i] == '_'))
                i++;
        return i < n && w[i] == '=';
}

int unit_exec_script(const char *command, char **ret) {
        static const char *const reserved[] = { "if",   "then",  "else", "elif", "fi", "do", "done", "case", "esac",
                                                "while", "until", "for",  "in",   "{",  "}",  "!",    "exec" };
        const char *p = command, *program = NULL;
        char *s;

        if (is_one_command(command))
                for (;;) {
                        const char *end;
                        size_t n;

                        while (is_blank(*p))
                                p++;
                        if (!*p)
                                break;
                        end = word_end(p);
                        if (!end)
                                break;
                        n = (size_t)(end - p);
                        if (is_assignment(p, n)) {
                                p = end;
                                continue;
                        }
                        program = p;
                        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                                if (strlen(reserved[i]) == n && strncmp(p, reserved[i], n) == 0)
                                        program = NULL;
                        break;
                }

        if (!program)
                s = strdup(command);
        else if (asprintf(&s, "%.*sexec %s", (int)(program - command), command, program) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* The properties, described once; both output forms walk this. */
typedef enum Kind {
        K_STR, K_BOOL, K_U32, K_U64, K_I32, K_STRV, K_EXEC, K_FIELDS, K_BINDS,
        K_FILTER,  /* (bas): allow list (u != 0) or deny list of names */
        K_IPACL,   /* a(iayu) from names/prefixes in strv */
        K_SOCKBIND, /* a(iiqq) from bind_allow; NULL: "any" */
        K_OCTAL,   /* u, shown in octal */
        K_STATEDIR, /* as: call-assistant-modules/<s> */
} Kind;

typedef struct Prop {
        const char *name;
        Kind kind;
        const char *s;
        uint64_t u;
        char **strv;
        const UnitSocketBind *binds;
        size_t n_binds;
} Prop;

/* Lists the properties point to (static: build() returns pointers into them). */
static const char *const native_arch[] = { "native", NULL };
static const char *const syscalls_allowed[] = { "@system-service", NULL };
static const char *const syscalls_denied[] = { "@privileged", "@resources", NULL };
static const char *const families[] = { "AF_UNIX", "AF_INET", "AF_INET6", NULL };
static const char *const families_netlink[] = { "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", NULL };
static const char *const ip_any[] = { "any", NULL };
#define STRV(l) ((char **)(l))

static size_t build(const UnitSpec *s, Prop *p) {
        size_t n = 0;
        bool dynamic = !s->user || !*s->user;

        p[n++] = (Prop){ "Description", K_STR, .s = s->description };
        p[n++] = (Prop){ "Type", K_STR, .s = "exec" }; /* a command that cannot run fails the start */
        p[n++] = (Prop){ "ExecStart", K_EXEC, .s = s->command };
        if (s->working_directory)
                p[n++] = (Prop){ "WorkingDirectory", K_STR, .s = s->working_directory };
        p[n++] = (Prop){ "Environment", K_STRV, .strv = s->environment };
        p[n++] = (Prop){ "SyslogIdentifier", K_STR, .s = s->syslog_identifier };
        p[n++] = (Prop){ "LogExtraFields", K_FIELDS, .s = s->module_name };
        p[n++] = (Prop){ "Restart", K_STR, .s = "on-failure" };
        p[n++] = (Prop){ "RestartUSec", K_U64, .u = s->restart_usec };
        p[n++] = (Prop){ "StartLimitBurst", K_U32, .u = s->start_limit_burst };
        p[n++] = (Prop){ "StartLimitIntervalUSec", K_U64, .u = s->start_limit_interval_usec };
        p[n++] = (Prop){ "TimeoutStopUSec", K_U64, .u = s->timeout_stop_usec };
        p[n++] = (Prop){ "KillMode", K_STR, .s = "control-group" };
        p[n++] = (Prop){ "KillSignal", K_I32, .u = SIGTERM };
        p[n++] = (Prop){ "SendSIGKILL", K_BOOL, .u = 1 };
        if (s->slice && *s->slice)
                p[n++] = (Prop){ "Slice", K_STR, .s = s->slice };
        if (s->token_path) {
                /* Opened by systemd on every (re)start, before it drops privileges: no mount,
                 * nothing readable over D-Bus but the path. Output must then be set explicitly,
                 * or it would inherit stdin. */
                p[n++] = (Prop){ "StandardInputFile", K_STR, .s = s->token_path };
                p[n++] = (Prop){ "StandardOutput", K_STR, .s = "journal" };
                p[n++] = (Prop){ "StandardError", K_STR, .s = "journal" };
        }

        /* The one place a module may keep files across restarts (its folder is read-only,
         * /tmp and /var/tmp are private and go with each stop). */
        p[n++] = (Prop){ "StateDirectory", K_STATEDIR, .s = s->module_name };
        p[n++] = (Prop){ "StateDirectoryMode", K_OCTAL, .u = 0700 };
        /* What seccomp and prctl enforce: works under a user's manager too (with NoNewPrivileges). */
        p[n++] = (Prop){ "NoNewPrivileges", K_BOOL, .u = 1 };
        /* CPU and memory figures for the dashboard (CPUUsageNSec, MemoryCurrent). */
        p[n++] = (Prop){ "CPUAccounting", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "MemoryAccounting", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "RestrictSUIDSGID", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "LockPersonality", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "RestrictRealtime", K_BOOL, .u = 1 };
        /* The namespaces allowed: only cgroup. None would be an empty set, which systemd 252
         * writes to the transient unit file as "RestrictNamespaces=" and, after a daemon-reload,
         * reads back as no restriction at all. A cgroup namespace cannot be made without
         * CAP_SYS_ADMIN or a user namespace, and the unit has neither. */
        p[n++] = (Prop){ "RestrictNamespaces", K_U64, .u = CLONE_NEWCGROUP };
        p[n++] = (Prop){ "SystemCallArchitectures", K_STRV, .strv = STRV(native_arch) };
        p[n++] = (Prop){ "SystemCallFilter", K_FILTER, .u = 1, .strv = STRV(syscalls_allowed) };
        p[n++] = (Prop){ "SystemCallFilter", K_FILTER, .u = 0, .strv = STRV(syscalls_denied) };
        /* A refused system call fails with EPERM rather than killing the module. */
        p[n++] = (Prop){ "SystemCallErrorNumber", K_I32, .u = EPERM };
        p[n++] = (Prop){ "RestrictAddressFamilies", K_FILTER, .u = 1,
                         .strv = s->netlink ? STRV(families_netlink) : STRV(families) };
        p[n++] = (Prop){ "UMask", K_OCTAL, .u = 0077 };
        if (s->user_manager)
                return n; /* runs as the user already; no DynamicUser=, mounts, BPF or capabilities */

        if (dynamic) {
                p[n++] = (Prop){ "DynamicUser", K_BOOL, .u = 1 };
                if (s->dynamic_user)
                        p[n++] = (Prop){ "User", K_STR, .s = s->dynamic_user };
        } else
                p[n++] = (Prop){ "User", K_STR, .s = s->user };
        p[n++] = (Prop){ "CapabilityBoundingSet", K_U64, .u = 0 };
        p[n++] = (Prop){ "PrivateTmp", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "PrivateDevices", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectSystem", K_STR, .s = dynamic ? "strict" : "full" };
        /* tmpfs: the module's folder, bound below, may live under /home (a checkout). */
        p[n++] = (Prop){ "ProtectHome", K_STR, .s = "tmpfs" };
        /* Other modules' processes are invisible (they run as other users), and so is the
         * rest of /proc but for processes. */
        p[n++] = (Prop){ "ProtectProc", K_STR, .s = "invisible" };
        p[n++] = (Prop){ "ProcSubset", K_STR, .s = "pid" };
        p[n++] = (Prop){ "ProtectKernelTunables", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectKernelModules", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectKernelLogs", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectControlGroups", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectClock", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectHostname", K_BOOL, .u = 1 };
        if (s->read_only_paths && s->read_only_paths[0])
                p[n++] = (Prop){ "BindReadOnlyPaths", K_BINDS, .strv = s->read_only_paths };
        if (s->ip_allow) {
                p[n++] = (Prop){ "IPAddressDeny", K_IPACL, .strv = STRV(ip_any) };
                p[n++] = (Prop){ "IPAddressAllow", K_IPACL, .strv = (char **)s->ip_allow };
        }
        if (s->n_bind_allow > 0) {
                p[n++] = (Prop){ "SocketBindAllow", K_SOCKBIND, .binds = s->bind_allow, .n_binds = s->n_bind_allow };
                p[n++] = (Prop){ "SocketBindDeny", K_SOCKBIND };
        }
        if (s->memory_max > 0)
                p[n++] = (Prop){ "MemoryMax", K_U64, .u = s->memory_max };
        return n;
}

/* An IPAddressAllow=/Deny= entry: a name systemd knows, or a prefix. Calls add() for each
 * (family, address, prefix length); -EINVAL if it is neither. */
static int ip_entries(const char *e, int (*add)(void *ud, int family, const uint8_t *addr, size_t size, unsigned prefix),
                      void *ud) {
        static const struct {
                const char *name;
                const char *prefixes[2];
        } named[] = {
                { "any", { "0.0.0.0/0", "::/0" } },
                { "localhost", { "127.0.0.0/8", "::1/128" } },
                { "link-local", { "169.254.0.0/16", "fe80::/64" } },
                { "multicast", { "224.0.0.0/4", "ff00::/8" } },
        };
        const char *list[2] = { e, NULL };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(named); i++)
                if (strcmp(e, named[i].name) == 0) {
                        list[0] = named[i].prefixes[0];
                        list[1] = named[i].prefixes[1];
                }
        for (size_t i = 0; i < 2 && list[i]; i++) {
                char host[INET6_ADDRSTRLEN + 1];
                const char *slash = strchr(list[i], '/');
                uint8_t addr[16];
                unsigned prefix;
                int family;
                char *end;

                if (!slash || (size_t)(slash - list[i]) >= sizeof(host))
                        return -EINVAL;
                memcpy(host, list[i], (size_t)(slash - list[i]));
                host[slash - list[i]] = 0;
                family = strchr(host, ':') ? AF_INET6 : AF_INET;
                if (inet_pton(family, host, addr) != 1)
                        return -EINVAL;
                errno = 0;
                prefix = (unsigned)strtoul(slash + 1, &end, 10);
                if (errno || *end || end == slash + 1 || prefix > (family == AF_INET ? 32u : 128u))
                        return -EINVAL;
                r = add(ud, family, addr, family == AF_INET ? 4 : 16, prefix);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int append_ip_entry(void *ud, int family, const uint8_t *addr, size_t size, unsigned prefix) {
        sd_bus_message *m = ud;
        int r;

        r = sd_bus_message_open_container(m, 'r', "iayu");
        if (r >= 0)
                r = sd_bus_message_append(m, "i", family);
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', addr, size);
        if (r >= 0)
                r = sd_bus_message_append(m, "u", (uint32_t)prefix);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int count_ip_entry(void *ud, int family, const uint8_t *addr, size_t size, unsigned prefix) {
        return 0;
}

int unit_ip_entry_is_valid(const char *e) {
        return ip_entries(e, count_ip_entry, NULL) >= 0;
}

#define MAX_PROPS 64

int unit_spec_append(sd_bus_message *m, const UnitSpec *s) {
        Prop p[MAX_PROPS];
        size_t n = build(s, p);
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++) {
                switch (p[i].kind) {
                case K_STR:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "s", p[i].s ? p[i].s : "");
                        break;
                case K_BOOL:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "b", (int)p[i].u);
                        break;
                case K_U32:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "u", (uint32_t)p[i].u);
                        break;
                case K_U64:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "t", p[i].u);
                        break;
                case K_I32:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "i", (int32_t)p[i].u);
                        break;
                case K_STRV:
                        r = sd_bus_message_open_container(m, 'r', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "s", p[i].name);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'v', "as");
                        if (r >= 0)
                                r = sd_bus_message_append_strv(m, p[i].strv);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        break;
                case K_EXEC: {
                        _cleanup_free_ char *script = NULL;
                        r = unit_exec_script(p[i].s, &script);
                        if (r >= 0)
                                r = sd_bus_message_append(m, "(sv)", p[i].name, "a(sasb)", 1, "/bin/sh", 3, "/bin/sh",
                                                          "-c", script, false);
                        break;
                }
                case K_STATEDIR: {
                        _cleanup_free_ char *dir = NULL;
                        if (asprintf(&dir, MODULE_STATE_DIRECTORY_PREFIX "%s", p[i].s) < 0)
                                return -ENOMEM;
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "as", 1, dir);
                        break;
                }
                case K_FIELDS: {
                        _cleanup_free_ char *f = NULL;
                        if (asprintf(&f, "CALL_ASSISTANT_MODULE=%s", p[i].s) < 0)
                                return -ENOMEM;
                        r = sd_bus_message_open_container(m, 'r', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "s", p[i].name);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'v', "aay");
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'a', "ay");
                        if (r >= 0)
                                r = sd_bus_message_append_array(m, 'y', f, strlen(f));
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        break;
                }
                case K_OCTAL:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "u", (uint32_t)p[i].u);
                        break;
                case K_FILTER:
                        r = sd_bus_message_open_container(m, 'r', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "s", p[i].name);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'v', "(bas)");
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'r', "bas");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "b", (int)p[i].u);
                        if (r >= 0)
                                r = sd_bus_message_append_strv(m, p[i].strv);
                        for (int k = 0; k < 3 && r >= 0; k++)
                                r = sd_bus_message_close_container(m);
                        break;
                case K_IPACL:
                        r = sd_bus_message_open_container(m, 'r', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "s", p[i].name);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'v', "a(iayu)");
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'a', "(iayu)");
                        for (char **e = p[i].strv; r >= 0 && e && *e; e++) {
                                r = ip_entries(*e, append_ip_entry, m);
                                if (r == -EINVAL)
                                        return r;
                        }
                        for (int k = 0; k < 3 && r >= 0; k++)
                                r = sd_bus_message_close_container(m);
                        break;
                case K_SOCKBIND:
                        r = sd_bus_message_open_container(m, 'r', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "s", p[i].name);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'v', "a(iiqq)");
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'a', "(iiqq)");
                        /* (address family, protocol, number of ports, first port); zeros: any */
                        if (r >= 0 && !p[i].binds)
                                r = sd_bus_message_append(m, "(iiqq)", AF_UNSPEC, 0, 0, 0);
                        for (size_t k = 0; r >= 0 && p[i].binds && k < p[i].n_binds; k++)
                                r = sd_bus_message_append(m, "(iiqq)", AF_UNSPEC, p[i].binds[k].protocol,
                                                          p[i].binds[k].n_ports, p[i].binds[k].port_min);
                        for (int k = 0; k < 3 && r >= 0; k++)
                                r = sd_bus_message_close_container(m);
                        break;
                case K_BINDS:
                        r = sd_bus_message_open_container(m, 'r', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append(m, "s", p[i].name);
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'v', "a(ssbt)");
                        if (r >= 0)
                                r = sd_bus_message_open_container(m, 'a', "(ssbt)");
                        for (char **b = p[i].strv; r >= 0 && *b; b++)
                                r = sd_bus_message_append(m, "(ssbt)", *b, *b, false, (uint64_t)MS_REC);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                        break;
                }
        }
        return r < 0 ? r : 0;
}

int unit_spec_to_strings(const UnitSpec *s, char ***ret) {
        Prop p[MAX_PROPS];
        size_t n = build(s, p), k = 0;
        char **l = calloc(n + 1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = -1;
                switch (p[i].kind) {
                case K_STR:
                        r = asprintf(&l[k], "%s=%s", p[i].name, p[i].s ? p[i].s : "");
                        break;
                case K_BOOL:
                        r = asprintf(&l[k], "%s=%s", p[i].name, p[i].u ? "yes" : "no");
                        break;
                case K_U32:
                case K_U64:
                case K_I32:
                        r = asprintf(&l[k], "%s=%llu", p[i].name, (unsigned long long)p[i].u);
                        break;
                case K_STRV: {
                        size_t len = 0;
                        FILE *f = open_memstream(&l[k], &len);
                        if (!f)
                                break;
                        fprintf(f, "%s=", p[i].name);
                        for (char **e = p[i].strv; e && *e; e++)
                                fprintf(f, "%s%s", e == p[i].strv ? "" : " ", *e);
                        r = fclose(f) == 0 ? 0 : -1;
                        break;
                }
                case K_EXEC: {
                        _cleanup_free_ char *script = NULL;
                        if (unit_exec_script(p[i].s, &script) >= 0)
                                r = asprintf(&l[k], "%s=/bin/sh -c \"%s\"", p[i].name, script);
                        break;
                }
                case K_STATEDIR:
                        r = asprintf(&l[k], "%s=" MODULE_STATE_DIRECTORY_PREFIX "%s", p[i].name, p[i].s);
                        break;
                case K_FIELDS:
                        r = asprintf(&l[k], "%s=CALL_ASSISTANT_MODULE=%s", p[i].name, p[i].s);
                        break;
                case K_OCTAL:
                        r = asprintf(&l[k], "%s=%04llo", p[i].name, (unsigned long long)p[i].u);
                        break;
                case K_FILTER:
                case K_IPACL:
                case K_SOCKBIND: {
                        size_t len = 0;
                        FILE *f = open_memstream(&l[k], &len);
                        if (!f)
                                break;
                        fprintf(f, "%s=%s", p[i].name, p[i].kind == K_FILTER && !p[i].u ? "~" : "");
                        for (char **e = p[i].strv; p[i].kind != K_SOCKBIND && e && *e; e++)
                                fprintf(f, "%s%s", e == p[i].strv ? "" : " ", *e);
                        if (p[i].kind == K_SOCKBIND && !p[i].binds)
                                fputs("any", f);
                        for (size_t b = 0; p[i].kind == K_SOCKBIND && p[i].binds && b < p[i].n_binds; b++) {
                                const UnitSocketBind *sb = &p[i].binds[b];
                                const char *proto = sb->protocol == IPPROTO_UDP ? "udp" : "tcp";
                                if (sb->n_ports == 0)
                                        fprintf(f, "%s%s", b ? " " : "", proto);
                                else if (sb->n_ports == 1)
                                        fprintf(f, "%s%s:%u", b ? " " : "", proto, sb->port_min);
                                else
                                        fprintf(f, "%s%s:%u-%u", b ? " " : "", proto, sb->port_min,
                                                (unsigned)sb->port_min + sb->n_ports - 1);
                        }
                        r = fclose(f) == 0 ? 0 : -1;
                        break;
                }
                case K_BINDS: {
                        size_t len = 0;
                        FILE *f = open_memstream(&l[k], &len);
                        if (!f)
                                break;
                        fprintf(f, "%s=", p[i].name);
                        for (char **b = p[i].strv; *b; b++)
                                fprintf(f, "%s%s", b == p[i].strv ? "" : " ", *b);
                        r = fclose(f) == 0 ? 0 : -1;
                        break;
                }
                }
                if (r < 0) {
                        l[k] = NULL;
                        strv_free(l);
                        return -ENOMEM;
                }
                k++;
        }
        *ret = l;
        return 0;
}
