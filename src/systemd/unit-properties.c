/* Transient unit naming (systemd-escape compatible) and the properties of a module's unit. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "shared/macro.h"
#include "systemd/unit-properties.h"

const char *const unit_inherited_environment[] = {
        "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "CALL_ASSISTANT_LOG_LEVEL", NULL,
};

static bool valid_instance_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
               c == '_' || c == '.';
}

int unit_instance_escape(const char *s, char **ret) {
        char *out, *o;

        out = malloc(strlen(s) * 4 + 1);
        if (!out)
                return -ENOMEM;
        o = out;
        for (const char *p = s; *p; p++) {
                if (*p == '/')
                        *o++ = '-';
                else if (valid_instance_char(*p) && !(p == s && *p == '.'))
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
                if (*p == '-')
                        *o++ = '/';
                else if (p[0] == '\\' && p[1] == 'x' && sscanf(p + 2, "%2x", &x) == 1 && p[2] && p[3]) {
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

/* The properties, described once; both output forms walk this. */
typedef enum Kind { K_STR, K_BOOL, K_U32, K_U64, K_I32, K_STRV, K_EXEC, K_FIELDS, K_CRED, K_BINDS } Kind;

typedef struct Prop {
        const char *name;
        Kind kind;
        const char *s;
        uint64_t u;
        char **strv;
} Prop;

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
        p[n++] = (Prop){ "NoNewPrivileges", K_BOOL, .u = 1 };
        if (s->credential_path)
                p[n++] = (Prop){ "LoadCredential", K_CRED, .s = s->credential_path };
        if (s->user_manager)
                return n; /* runs as the user already; no DynamicUser=, mounts or namespaces */
        if (dynamic)
                p[n++] = (Prop){ "DynamicUser", K_BOOL, .u = 1 };
        else
                p[n++] = (Prop){ "User", K_STR, .s = s->user };
        p[n++] = (Prop){ "PrivateTmp", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectSystem", K_STR, .s = dynamic ? "strict" : "full" };
        p[n++] = (Prop){ "ProtectHome", K_STR, .s = "read-only" };
        p[n++] = (Prop){ "ProtectKernelTunables", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "ProtectControlGroups", K_BOOL, .u = 1 };
        p[n++] = (Prop){ "RestrictSUIDSGID", K_BOOL, .u = 1 };
        if (s->read_only_paths && s->read_only_paths[0])
                p[n++] = (Prop){ "BindReadOnlyPaths", K_BINDS, .strv = s->read_only_paths };
        return n;
}

#define MAX_PROPS 40

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
                case K_EXEC:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "a(sasb)", 1, "/bin/sh", 3, "/bin/sh", "-c",
                                                  p[i].s, false);
                        break;
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
                case K_CRED:
                        r = sd_bus_message_append(m, "(sv)", p[i].name, "a(ss)", 1, "module-token", p[i].s);
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
                case K_EXEC:
                        r = asprintf(&l[k], "%s=/bin/sh -c \"%s\"", p[i].name, p[i].s);
                        break;
                case K_FIELDS:
                        r = asprintf(&l[k], "%s=CALL_ASSISTANT_MODULE=%s", p[i].name, p[i].s);
                        break;
                case K_CRED:
                        r = asprintf(&l[k], "%s=module-token:%s", p[i].name, p[i].s);
                        break;
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
