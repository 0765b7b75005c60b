/* Benchmark: systemd's own floor. Starts N transient units straight through StartTransientUnit
 * with the same properties the orchestrator gives module units (src/systemd/unit-properties.c),
 * each running PROGRAM with GRPC_PORT set, and waits until every port accepts a TCP connection.
 * Prints "floor N=<n> seconds=<s>". Usage: bench-floor N PORT_BASE PROGRAM [WORKDIR [RO_PATH]] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ports/port-alloc.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "systemd/unit-manager.h"
#include "systemd/unit-properties.h"

typedef struct Unit {
        char name[64];
        char env[32];
        char user[MODULE_USER_MAX + 1];
        UnitSocketBind bind;
        uint16_t port;
        const char *program;
        const char *workdir;
        const char *ro_path;
        int done; /* 1 ok, -1 failed */
} Unit;

static uint64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int append(sd_bus_message *m, void *userdata) {
        Unit *u = userdata;
        char *env[] = { u->env, (char *)"CALL_ASSISTANT_TOKEN_FILE=/proc/self/fd/0", NULL };
        static const char *const localhost[] = { "localhost", NULL };
        char *ro[] = { (char *)(u->workdir ? u->workdir : "/"), (char *)u->ro_path, NULL };
        UnitSpec s = {
                .description = "bench floor unit",
                .command = u->program,
                .working_directory = u->workdir,
                .environment = env,
                .syslog_identifier = u->name,
                .module_name = u->name,
                .restart_usec = 1000000,
                .start_limit_burst = 5,
                .start_limit_interval_usec = 60000000,
                .timeout_stop_usec = 10000000,
                .slice = "callassistant.slice",
                .read_only_paths = ro,
                /* Like a module unit: a user of its own, its token on stdin, loopback only,
                 * only its port to bind. */
                .dynamic_user = u->user,
                .token_path = getenv("BENCH_TOKEN"),
                .ip_allow = localhost,
                .bind_allow = &u->bind,
                .n_bind_allow = 1,
                .memory_max = 1024ULL * 1024 * 1024,
        };
        if (!s.token_path)
                env[1] = NULL;
        return unit_spec_append(m, &s);
}

static void on_job(UnitManager *um, const char *unit, int error, const char *result, void *userdata) {
        Unit *u = userdata;
        u->done = (error >= 0 && strcmp(result, "done") == 0) ? 1 : -1;
}

static unsigned stopped;

static void on_stopped(UnitManager *um, const char *unit, int error, const char *result, void *userdata) {
        stopped++;
}

static bool port_answers(uint16_t port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        UnitManager *um = NULL;
        unsigned n, base, n_up = 0;
        uint64_t t0, t1, deadline;
        Unit *units;
        bool *up;

        if (argc < 4) {
                fprintf(stderr, "usage: %s N PORT_BASE PROGRAM [WORKDIR]\n", argv[0]);
                return 2;
        }
        n = (unsigned)atoi(argv[1]);
        base = (unsigned)atoi(argv[2]);
        units = calloc(n, sizeof(Unit));
        up = calloc(n, sizeof(bool));
        if (!units || !up || sd_event_new(&event) < 0 || unit_manager_new(&um, event, false) < 0)
                return 1;

        /* Ports first (free ones from PORT_BASE on, as the orchestrator picks them: inside the
         * kernel's ephemeral range a port may be some outgoing connection's), so that the
         * timing covers systemd's work only. */
        for (unsigned i = 0, port = base; i < n; i++, port++) {
                while (port < 65535 && port_in_use_by_bind((uint16_t)port, NULL))
                        port++;
                if (port >= 65535)
                        return 1;
                units[i].port = (uint16_t)port;
        }
        t0 = now_us();
        for (unsigned i = 0; i < n; i++) {
                snprintf(units[i].name, sizeof(units[i].name), "bench-floor-%u-%d.service", i, (int)getpid());
                snprintf(units[i].env, sizeof(units[i].env), "GRPC_PORT=%u", units[i].port);
                module_user_name(units[i].name, 0, units[i].user);
                units[i].bind = (UnitSocketBind){ .protocol = IPPROTO_TCP, .port_min = units[i].port, .n_ports = 1 };
                units[i].program = argv[3];
                units[i].workdir = argc > 4 ? argv[4] : NULL;
                units[i].ro_path = argc > 5 ? argv[5] : NULL;
                if (unit_manager_start_transient(um, units[i].name, append, &units[i], on_job, &units[i]) < 0)
                        return 1;
        }
        deadline = t0 + 120ULL * 1000000;
        while (n_up < n) {
                if (now_us() > deadline) {
                        fprintf(stderr, "bench-floor: only %u of %u ports answered within 120 s; missing:", n_up, n);
                        for (unsigned i = 0; i < n; i++)
                                if (!up[i])
                                        fprintf(stderr, " %s (port %u, start job %s)", units[i].name, units[i].port,
                                                units[i].done == 1 ? "done" : units[i].done < 0 ? "failed" : "pending");
                        fprintf(stderr, "\n");
                        return 1;
                }
                (void)sd_event_run(event, 1000);
                for (unsigned i = 0; i < n; i++)
                        if (!up[i] && units[i].done == 1 && port_answers(units[i].port)) {
                                up[i] = true;
                                n_up++;
                        }
        }
        t1 = now_us();
        printf("floor N=%u seconds=%.3f\n", n, (double)(t1 - t0) / 1e6);
        fflush(stdout);

        /* Stop them again, and wait until every stop job is done (bounded). */
        stopped = 0;
        for (unsigned i = 0; i < n; i++)
                if (unit_manager_stop(um, units[i].name, on_stopped, NULL) < 0)
                        stopped++;
        deadline = now_us() + 120ULL * 1000000;
        while (stopped < n && now_us() < deadline)
                (void)sd_event_run(event, 100000);
        unit_manager_free(um);
        free(units);
        free(up);
        return 0;
}
