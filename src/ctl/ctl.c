/* call-assistantctl: look at and control the orchestrator and its modules. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <time.h>

#include "callassistant/config/v1/config.pb-c.h"
#include "callassistant/v1/orchestrator.pb-c.h"
#include "callassistant/web/v1/web.pb-c.h"
#include "config.h"
#include "ctl/ctl-client.h"
#include "ctl/ctl-flows.h"
#include "ctl/ctl-logs.h"
#include "graph/check.h"
#include "manifest/diagnostics.h"
#include "rpc/rpc.h"
#include "services/web/web-auth.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "systemd/unit-properties.h"

static bool arg_json;
static bool arg_follow;
static unsigned arg_lines = 50;
static const char *arg_journal_dir;

static json_t *info_json(const Callassistant__V1__ModuleInfo *i) {
        json_t *deps = json_array(), *types = json_array();

        for (size_t k = 0; k < i->n_dependencies; k++)
                json_array_append_new(deps, json_string(i->dependencies[k]));
        for (size_t k = 0; k < i->n_entity_types; k++) {
                json_t *caps = json_array();
                for (size_t j = 0; j < i->entity_types[k]->n_capabilities; j++)
                        json_array_append_new(caps, json_string(i->entity_types[k]->capabilities[j]));
                json_array_append_new(types, json_pack("{s:s, s:s, s:o}", "name", i->entity_types[k]->name,
                                                       "description", i->entity_types[k]->description,
                                                       "capabilities", caps));
        }
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:i, s:I, s:b, s:o, s:o}",
                         "name", i->name, "dir", i->dir, "unit", i->unit, "version", i->version, "description",
                         i->description, "state", status_name(i->status), "state_message", i->status_message,
                         "active_state", i->active_state, "sub_state", i->sub_state, "port", (int)i->port,
                         "restarts", (int)i->n_restarts, "main_pid", (int)i->main_pid, "health",
                         health_name(i->health), "health_failures", (int)i->health_failures, "registered_at_usec",
                         (json_int_t)i->registered_at_usec, "config_required", i->config_required, "dependencies",
                         deps, "entity_types", types);
}

#define ESC(s) ctl_esc(s)

static int cmd_list(Client *c) {
        Callassistant__V1__ListModulesRequest req = CALLASSISTANT__V1__LIST_MODULES_REQUEST__INIT;
        Callassistant__V1__ListModulesResponse *resp;
        Call call;
        int r;

        r = call_orchestrator(c, "ListModules", &req.base, &callassistant__v1__list_modules_response__descriptor,
                              &call);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__V1__ListModulesResponse *)call.response;
        if (arg_json) {
                json_t *a = json_array();
                for (size_t i = 0; i < resp->n_modules; i++)
                        json_array_append_new(a, info_json(resp->modules[i]));
                print_json(a);
        } else {
                printf("%-20s %-19s %-22s %-6s %-8s %-11s\n", "MODULE", "STATE", "UNIT STATE", "PORT", "RESTARTS",
                       "HEALTH");
                for (size_t i = 0; i < resp->n_modules; i++) {
                        const Callassistant__V1__ModuleInfo *m = resp->modules[i];
                        char unit_state[64];
                        snprintf(unit_state, sizeof(unit_state), "%s/%s", m->active_state, m->sub_state);
                        printf("%-20s %-19s %-22s %-6u %-8u %-11s\n", ESC(m->name), status_name(m->status), ESC(unit_state),
                               m->port, m->n_restarts, health_name(m->health));
                }
                printf("\n%zu module(s).\n", resp->n_modules);
        }
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}


static int cmd_status(Client *c, const char *name) {
        Callassistant__V1__GetModuleRequest req = CALLASSISTANT__V1__GET_MODULE_REQUEST__INIT;
        Callassistant__V1__ModuleInfo *m;
        Call call;
        int r;

        req.name = (char *)name;
        r = call_orchestrator(c, "GetModule", &req.base, &callassistant__v1__module_info__descriptor, &call);
        if (r != EXIT_OK)
                return r;
        m = (Callassistant__V1__ModuleInfo *)call.response;
        if (arg_json)
                print_json(info_json(m));
        else {
                char when[64] = "-";
                if (m->registered_at_usec) {
                        time_t t = (time_t)(m->registered_at_usec / 1000000);
                        struct tm tm;
                        if (localtime_r(&t, &tm))
                                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
                }
                printf("%s - %s\n", ESC(m->name), ESC(m->description));
                if (*m->status_message)
                        printf("       State: %s (%s)\n", status_name(m->status), ESC(m->status_message));
                else
                        printf("       State: %s\n", status_name(m->status));
                printf("        Unit: %s (%s/%s)\n", ESC(m->unit), ESC(m->active_state), ESC(m->sub_state));
                printf("      Folder: %s\n", ESC(m->dir));
                printf("     Version: %s\n", ESC(m->version));
                printf("        Port: %u\n", m->port);
                printf("    Main PID: %u\n", m->main_pid);
                printf("    Restarts: %u\n", m->n_restarts);
                printf("      Health: %s (%u consecutive failures)\n", health_name(m->health), m->health_failures);
                printf("  Registered: %s\n", when);
                printf("Dependencies:");
                for (size_t k = 0; k < m->n_dependencies; k++)
                        printf(" %s", ESC(m->dependencies[k]));
                printf("%s\n", m->n_dependencies ? "" : " -");
                for (size_t k = 0; k < m->n_entity_types; k++)
                        printf(" Entity type: %s - %s\n", ESC(m->entity_types[k]->name),
                               ESC(m->entity_types[k]->description));
        }
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

static int cmd_op(Client *c, const char *method, const char *name) {
        Callassistant__V1__ModuleRequest req = CALLASSISTANT__V1__MODULE_REQUEST__INIT;
        Callassistant__V1__ModuleResponse *resp;
        Call call;
        int r;

        req.name = (char *)name;
        r = call_orchestrator(c, method, &req.base, &callassistant__v1__module_response__descriptor, &call);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__V1__ModuleResponse *)call.response;
        if (arg_json)
                print_json(info_json(resp->module));
        else
                printf("%s: %s\n", name, status_name(resp->module->status));
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

static int cmd_logs(const char *name) {
        _cleanup_free_ char *unit = NULL;
        LogsOptions o = {
                .directory = arg_journal_dir ? arg_journal_dir : getenv("CALL_ASSISTANT_JOURNAL_DIRECTORY"),
                .lines = arg_follow && arg_lines == 50 ? 10 : arg_lines,
                .follow = arg_follow,
                .json = arg_json,
        };
        Client c = {};

        /* The unit of a module is named after its folder: ask the orchestrator when it runs,
         * otherwise take the name as the folder. */
        if (client_open(&c) == 0) {
                Callassistant__V1__GetModuleRequest req = CALLASSISTANT__V1__GET_MODULE_REQUEST__INIT;
                Call call;
                req.name = (char *)name;
                if (call_orchestrator(&c, "GetModule", &req.base, &callassistant__v1__module_info__descriptor,
                                      &call) == EXIT_OK) {
                        unit = strdup(((Callassistant__V1__ModuleInfo *)call.response)->unit);
                        protobuf_c_message_free_unpacked(call.response, NULL);
                }
                client_close(&c);
        }
        if (!unit && module_unit_name(name, &unit) < 0)
                return EXIT_FAIL;
        o.unit = unit;
        return ctl_logs(&o, stdout) < 0 ? EXIT_FAIL : EXIT_OK;
}

#define CFG "callassistant.config.v1.ConfigService"

static char *read_all(FILE *f) {
        char *buf = NULL;
        size_t size = 0, n;
        char chunk[4096];
        FILE *out = open_memstream(&buf, &size);

        if (!out)
                return NULL;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                fwrite(chunk, 1, n, out);
        fclose(out);
        return buf;
}

/* JSON from an argument: inline, @FILE, or - for standard input. */
static char *json_argument(const char *arg) {
        FILE *f;
        char *s;

        if (strcmp(arg, "-") == 0)
                return read_all(stdin);
        if (arg[0] != '@')
                return strdup(arg);
        f = fopen(arg + 1, "re");
        if (!f) {
                fprintf(stderr, "Cannot read %s: %s\n", arg + 1, strerror(errno));
                return NULL;
        }
        s = read_all(f);
        fclose(f);
        return s;
}

static void print_pretty(const char *json) {
        json_error_t e;
        json_t *j = json_loads(json, 0, &e);

        if (j)
                print_json(j);
        else
                printf("%s\n", json);
}

static int config_get(Client *c, const char *name, uint64_t *ret_revision, char **ret_json) {
        Callassistant__Config__V1__GetConfigRequest req = CALLASSISTANT__CONFIG__V1__GET_CONFIG_REQUEST__INIT;
        Callassistant__Config__V1__GetConfigResponse *resp;
        Call call;
        int r;

        req.module = (char *)name;
        r = call_service(c, CFG, "GetConfig", &req.base, &callassistant__config__v1__get_config_response__descriptor,
                         &call);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__Config__V1__GetConfigResponse *)call.response;
        *ret_revision = resp->revision;
        *ret_json = strdup(resp->config_json);
        protobuf_c_message_free_unpacked(call.response, NULL);
        return *ret_json ? EXIT_OK : EXIT_FAIL;
}

static int config_set(Client *c, const char *name, const char *json, bool check, uint64_t revision) {
        Callassistant__Config__V1__SetConfigRequest req = CALLASSISTANT__CONFIG__V1__SET_CONFIG_REQUEST__INIT;
        Callassistant__Config__V1__SetConfigResponse *resp;
        Call call;
        int r;

        req.module = (char *)name;
        req.config_json = (char *)json;
        req.check_revision = check;
        req.expected_revision = revision;
        r = call_service(c, CFG, "SetConfig", &req.base, &callassistant__config__v1__set_config_response__descriptor,
                         &call);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__Config__V1__SetConfigResponse *)call.response;
        if (arg_json)
                print_json(json_pack("{s:s, s:I, s:o}", "module", name, "revision", (json_int_t)resp->revision,
                                     "config", json_loads(resp->config_json, 0, NULL) ?: json_null()));
        else
                printf("%s: configuration revision %llu applied.\n", name, (unsigned long long)resp->revision);
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

static int cmd_config(Client *c, int argc, char **argv) {
        const char *sub = argc > 0 ? argv[0] : NULL, *name = argc > 1 ? argv[1] : NULL;
        _cleanup_free_ char *json = NULL;
        uint64_t revision = 0;
        int r;

        if (sub && strcmp(sub, "list") == 0) {
                Callassistant__Config__V1__ListConfigsRequest req = CALLASSISTANT__CONFIG__V1__LIST_CONFIGS_REQUEST__INIT;
                Callassistant__Config__V1__ListConfigsResponse *resp;
                Call call;
                r = call_service(c, CFG, "ListConfigs", &req.base,
                                 &callassistant__config__v1__list_configs_response__descriptor, &call);
                if (r != EXIT_OK)
                        return r;
                resp = (Callassistant__Config__V1__ListConfigsResponse *)call.response;
                printf("%-20s %-9s %-7s %s\n", "MODULE", "REVISION", "SCHEMA", "PROBLEM");
                for (size_t i = 0; i < resp->n_configs; i++)
                        printf("%-20s %-9llu %-7s %s\n", resp->configs[i]->module,
                               (unsigned long long)resp->configs[i]->revision, resp->configs[i]->has_schema ? "yes" : "no",
                               resp->configs[i]->load_error);
                protobuf_c_message_free_unpacked(call.response, NULL);
                return EXIT_OK;
        }
        if (!sub || !name) {
                fprintf(stderr, "config: usage: config list | get MODULE | set MODULE JSON|@FILE|- | edit MODULE\n");
                return EXIT_USAGE;
        }
        if (strcmp(sub, "get") == 0) {
                r = config_get(c, name, &revision, &json);
                if (r != EXIT_OK)
                        return r;
                if (arg_json)
                        print_json(json_pack("{s:s, s:I, s:o}", "module", name, "revision", (json_int_t)revision,
                                             "config", json_loads(json, 0, NULL) ?: json_null()));
                else {
                        print_pretty(json);
                        fprintf(stderr, "# %s, revision %llu; secrets are shown as \"********\"\n", name,
                                (unsigned long long)revision);
                }
                return EXIT_OK;
        }
        if (strcmp(sub, "set") == 0) {
                if (argc < 3) {
                        fprintf(stderr, "config set: which configuration? (JSON, @FILE or -)\n");
                        return EXIT_USAGE;
                }
                json = json_argument(argv[2]);
                if (!json)
                        return EXIT_FAIL;
                return config_set(c, name, json, false, 0);
        }
        if (strcmp(sub, "edit") == 0) {
                char path[] = "/tmp/call-assistant-config-XXXXXX.json", cmd[4400];
                const char *editor = getenv("VISUAL") ? getenv("VISUAL") : getenv("EDITOR") ? getenv("EDITOR") : "vi";
                _cleanup_free_ char *edited = NULL;
                FILE *f;
                int fd;

                r = config_get(c, name, &revision, &json);
                if (r != EXIT_OK)
                        return r;
                fd = mkstemps(path, 5);
                if (fd < 0 || !(f = fdopen(fd, "w")))
                        return EXIT_FAIL;
                json_t *j = json_loads(json, 0, NULL);
                if (j) {
                        json_dumpf(j, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                        json_decref(j);
                } else
                        fputs(json, f);
                fputc('\n', f);
                fclose(f);
                snprintf(cmd, sizeof(cmd), "%s '%s'", editor, path);
                if (system(cmd) != 0) {
                        unlink(path);
                        fprintf(stderr, "The editor failed; nothing changed.\n");
                        return EXIT_FAIL;
                }
                f = fopen(path, "re");
                edited = f ? read_all(f) : NULL;
                if (f)
                        fclose(f);
                unlink(path);
                if (!edited)
                        return EXIT_FAIL;
                /* Secrets left as "********" keep their stored value; the revision check
                 * refuses the change if somebody else changed the configuration meanwhile. */
                return config_set(c, name, edited, true, revision);
        }
        fprintf(stderr, "config: unknown subcommand '%s'\n", sub);
        return EXIT_USAGE;
}

#define WEB "callassistant.web.v1.WebService"
#define MIN_PASSWORD 8

/* One line from f without its newline; NULL at EOF. */
static char *read_line(FILE *f) {
        char *line = NULL;
        size_t n = 0;
        ssize_t len = getline(&line, &n, f);

        if (len < 0) {
                free(line);
                return NULL;
        }
        if (len > 0 && line[len - 1] == '\n')
                line[--len] = 0;
        return line;
}

/* Ask on the terminal without echo; NULL if there is no terminal or input ended. */
static char *ask_password(const char *prompt) {
        FILE *tty = fopen("/dev/tty", "r+e");
        struct termios old, quiet;
        char *line;

        if (!tty)
                return NULL;
        fputs(prompt, tty);
        fflush(tty);
        if (tcgetattr(fileno(tty), &old) < 0) {
                fclose(tty);
                return NULL;
        }
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        (void)tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
        line = read_line(tty);
        (void)tcsetattr(fileno(tty), TCSAFLUSH, &old);
        fputc('\n', tty);
        fclose(tty);
        return line;
}

static void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

static int web_passwd(Client *c) {
        Callassistant__Web__V1__SetPasswordHashRequest req = CALLASSISTANT__WEB__V1__SET_PASSWORD_HASH_REQUEST__INIT;
        Callassistant__Web__V1__SetPasswordHashResponse *resp;
        char *password, *again = NULL, *hash = NULL;
        Call call;
        int r;

        /* From the terminal (asked twice), or one line from standard input for scripts. */
        if (isatty(STDIN_FILENO)) {
                password = ask_password("New dashboard password: ");
                if (password)
                        again = ask_password("Again: ");
                if (password && (!again || strcmp(password, again) != 0)) {
                        fprintf(stderr, "The passwords differ; nothing changed.\n");
                        free_secret(password);
                        free_secret(again);
                        return EXIT_INVALID;
                }
                free_secret(again);
        } else
                password = read_line(stdin);
        if (!password) {
                fprintf(stderr, "web passwd: no password given.\n");
                return EXIT_INVALID;
        }
        if (strlen(password) < MIN_PASSWORD) {
                fprintf(stderr, "web passwd: the password needs at least %d characters; nothing changed.\n",
                        MIN_PASSWORD);
                free_secret(password);
                return EXIT_INVALID;
        }
        /* Only the hash leaves this process. */
        r = web_password_hash(password, &hash);
        free_secret(password);
        if (r < 0) {
                fprintf(stderr, "web passwd: cannot hash the password: %s\n", strerror(-r));
                return EXIT_FAIL;
        }
        req.hash = hash;
        r = call_service(c, WEB, "SetPasswordHash", &req.base,
                         &callassistant__web__v1__set_password_hash_response__descriptor, &call);
        free(hash);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__Web__V1__SetPasswordHashResponse *)call.response;
        printf("Dashboard password changed; %u session(s) ended.\n", resp->sessions_revoked);
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

static int cmd_web(Client *c, const char *sub) {
        Call call;
        int r;

        if (sub && strcmp(sub, "passwd") == 0)
                return web_passwd(c);
        if (sub && strcmp(sub, "logout-all") == 0) {
                Callassistant__Web__V1__RevokeSessionsRequest req = CALLASSISTANT__WEB__V1__REVOKE_SESSIONS_REQUEST__INIT;
                r = call_service(c, WEB, "RevokeSessions", &req.base,
                                 &callassistant__web__v1__revoke_sessions_response__descriptor, &call);
                if (r != EXIT_OK)
                        return r;
                printf("%u session(s) ended.\n",
                       ((Callassistant__Web__V1__RevokeSessionsResponse *)call.response)->sessions_revoked);
                protobuf_c_message_free_unpacked(call.response, NULL);
                return EXIT_OK;
        }
        if (!sub || strcmp(sub, "status") == 0) {
                Callassistant__Web__V1__GetStatusRequest req = CALLASSISTANT__WEB__V1__GET_STATUS_REQUEST__INIT;
                Callassistant__Web__V1__GetStatusResponse *resp;
                r = call_service(c, WEB, "GetStatus", &req.base, &callassistant__web__v1__get_status_response__descriptor,
                                 &call);
                if (r != EXIT_OK)
                        return r;
                resp = (Callassistant__Web__V1__GetStatusResponse *)call.response;
                if (arg_json)
                        print_json(json_pack("{s:s, s:b, s:i, s:i, s:b, s:i}", "url", resp->url, "password_set",
                                             resp->password_set, "sessions", (int)resp->sessions, "event_streams",
                                             (int)resp->event_streams, "tls", resp->tls, "live_views",
                                             (int)resp->live_views));
                else {
                        printf("Dashboard: %s\n", resp->url);
                        printf(" Password: %s\n", resp->password_set ? "set" : "not set (call-assistantctl web passwd)");
                        printf(" Sessions: %u logged in, %u live page(s)\n", resp->sessions, resp->event_streams);
                        printf("   Camera live views: %u\n", resp->live_views);
                }
                protobuf_c_message_free_unpacked(call.response, NULL);
                return EXIT_OK;
        }
        fprintf(stderr, "web: usage: web [status] | web passwd | web logout-all\n");
        return EXIT_USAGE;
}

static void help(void) {
        printf("call-assistantctl [OPTIONS] COMMAND ...\n\n"
               "Look at and control call-assistant and its modules.\n\n"
               "Commands:\n"
               "  list                 Modules with state, unit state, port, restarts and health\n"
               "  status MODULE        One module in detail\n"
               "  start MODULE         Start a module (and let it start its dependents)\n"
               "  stop MODULE          Stop a module (Shutdown RPC, then systemd stops the unit)\n"
               "  restart MODULE       Restart a module's unit\n"
               "  logs MODULE [-f]     The module's journal entries\n"
               "  check [DIR]          Validate every manifest and the dependency graph; starts nothing\n"
               "  config list          Stored configurations\n"
               "  config get MODULE    A module's configuration (secrets redacted)\n"
               "  config set MODULE JSON|@FILE|-\n"
               "                       Validate and apply a configuration (keeps it only if the module\n"
               "                       accepted it)\n"
               "  config edit MODULE   Edit the configuration in $EDITOR, then set it\n"
               "  entities [MODULE]    Entities from every module (or one), available or not;\n"
               "                       --type, --capability, --media filter them\n"
               "  flow start MODULE/ENTITY MODULE/ENTITY\n"
               "                       Connect a source entity to a target entity (through the\n"
               "                       converters it takes); prints the flow\n"
               "  flow stop ID         Tear a flow down (destroys what it created)\n"
               "  flow list            Flows with state, ends and path\n"
               "  flow status ID       One flow with its steps\n"
               "  web [status]         The dashboard's address, password and sessions\n"
               "  web passwd           Set the dashboard password (asked twice on a terminal, else one\n"
               "                       line from standard input); only its hash is sent and stored;\n"
               "                       every session ends\n"
               "  web logout-all       End every dashboard session\n\n"
               "Options:\n"
               "  -h --help            Show this help\n"
               "     --version        Show the version\n"
               "     --json           JSON output (list, status, start, stop, restart, logs, entities,\n"
               "                      flow)\n"
               "     --type=T --capability=C --media=M\n"
               "                      entities: only those of type T, with capability C, taking or\n"
               "                      giving medium M\n"
               "  -f --follow          logs: keep printing new entries\n"
               "  -n --lines=N         logs: show the last N entries first (default 50; 0: all)\n"
               "     --socket=PATH    Control socket (default $CALL_ASSISTANT_CONTROL_SOCKET or\n"
               "                      /run/call-assistant/control.sock)\n"
               "  -D --directory=DIR   logs: read the journal in DIR (default\n"
               "                      $CALL_ASSISTANT_JOURNAL_DIRECTORY or the system journal)\n\n"
               "Exit codes: 0 ok, 1 failure, 2 usage, 3 orchestrator not reachable, 4 no such module\n"
               "(or flow, or entity),\n"
               "5 not possible in the module's state, 6 check found problems, 7 invalid input\n"
               "(e.g. a configuration, with every problem listed by field path).\n");
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_JSON, ARG_SOCKET, ARG_TYPE, ARG_CAPABILITY, ARG_MEDIA };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "json", no_argument, NULL, ARG_JSON },
                { "follow", no_argument, NULL, 'f' },
                { "lines", required_argument, NULL, 'n' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "directory", required_argument, NULL, 'D' },
                { "type", required_argument, NULL, ARG_TYPE },
                { "capability", required_argument, NULL, ARG_CAPABILITY },
                { "media", required_argument, NULL, ARG_MEDIA },
                {},
        };
        EntityFilter filter = {};
        const char *verb;
        Client c = {};
        int opt, r;

        log_set_max_level(LOG_WARNING);
        signal(SIGPIPE, SIG_IGN);
        while ((opt = getopt_long(argc, argv, "hfn:D:", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_OK;
                case ARG_VERSION:
                        printf("call-assistantctl %s\n", PACKAGE_VERSION);
                        return EXIT_OK;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case 'f':
                        arg_follow = true;
                        break;
                case 'n':
                        arg_lines = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case ARG_SOCKET:
                        ctl_socket = optarg;
                        break;
                case 'D':
                        arg_journal_dir = optarg;
                        break;
                case ARG_TYPE:
                        filter.type = optarg;
                        break;
                case ARG_CAPABILITY:
                        filter.capability = optarg;
                        break;
                case ARG_MEDIA:
                        filter.media = optarg;
                        break;
                default:
                        return EXIT_USAGE;
                }
        if (optind >= argc) {
                help();
                return EXIT_USAGE;
        }
        verb = argv[optind];
        const char *arg = optind + 1 < argc ? argv[optind + 1] : NULL;

        if (strcmp(verb, "check") == 0)
                return modules_check(arg ? arg : MODULESDIR, stdout) < 0 ? EXIT_PROBLEMS : EXIT_OK;
        if (strcmp(verb, "logs") == 0) {
                if (!arg) {
                        fprintf(stderr, "logs: which module?\n");
                        return EXIT_USAGE;
                }
                return cmd_logs(arg);
        }
        if (strcmp(verb, "config") == 0 || strcmp(verb, "flow") == 0 || strcmp(verb, "entities") == 0 ||
            strcmp(verb, "web") == 0) {
                r = client_open(&c);
                if (r < 0)
                        return -r;
                if (strcmp(verb, "config") == 0)
                        r = cmd_config(&c, argc - optind - 1, argv + optind + 1);
                else if (strcmp(verb, "flow") == 0)
                        r = cmd_flow(&c, argc - optind - 1, argv + optind + 1, arg_json);
                else if (strcmp(verb, "web") == 0)
                        r = cmd_web(&c, arg);
                else {
                        filter.module = arg;
                        r = cmd_entities(&c, &filter, arg_json);
                }
                client_close(&c);
                return r;
        }
        if (strcmp(verb, "list") != 0 && strcmp(verb, "status") != 0 && strcmp(verb, "start") != 0 &&
            strcmp(verb, "stop") != 0 && strcmp(verb, "restart") != 0) {
                fprintf(stderr, "Unknown command '%s' (see --help).\n", verb);
                return EXIT_USAGE;
        }
        if (strcmp(verb, "list") != 0 && !arg) {
                fprintf(stderr, "%s: which module?\n", verb);
                return EXIT_USAGE;
        }

        r = client_open(&c);
        if (r < 0)
                return -r;
        if (strcmp(verb, "list") == 0)
                r = cmd_list(&c);
        else if (strcmp(verb, "status") == 0)
                r = cmd_status(&c, arg);
        else if (strcmp(verb, "start") == 0)
                r = cmd_op(&c, "StartModule", arg);
        else if (strcmp(verb, "stop") == 0)
                r = cmd_op(&c, "StopModule", arg);
        else
                r = cmd_op(&c, "RestartModule", arg);
        client_close(&c);
        return r;
}
