/* Test-side helpers for the systemd sandbox: its bus, and commands run inside it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/macro.h"
#include "sandbox.h"

uint64_t sandbox_now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool sandbox_active(void) {
        return getenv("CA_SANDBOX_BUS") && getenv("CA_SANDBOX_LEADER") && getenv("CA_SANDBOX_EXEC");
}

int sandbox_bus_open(sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        const char *address = getenv("CA_SANDBOX_BUS");
        int r;

        if (!address)
                return log_error_errno(ENXIO, "CA_SANDBOX_BUS is not set: run under tests/sandbox/ca-sandbox.");

        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, 1);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the sandbox bus %s: %m", address);

        *ret = TAKE_PTR(bus);
        return 0;
}

int sandbox_exec(char *const argv[], int timeout_ms, int *ret_status, char **ret_stdout) {
        const char *exec = getenv("CA_SANDBOX_EXEC");
        _cleanup_close_ int rfd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, alloc = 0;
        uint64_t deadline;
        int pipefd[2], status;
        size_t n = 0;
        pid_t pid;

        if (!exec)
                return log_error_errno(ENXIO, "CA_SANDBOX_EXEC is not set: run under tests/sandbox/ca-sandbox.");

        while (argv[n])
                n++;
        _cleanup_free_ char **args = calloc(n + 3, sizeof(char *));
        if (!args)
                return -ENOMEM;
        args[0] = (char *)exec;
        args[1] = (char *)"exec";
        memcpy(args + 2, argv, n * sizeof(char *));

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return negative_errno();
        rfd = pipefd[0];

        pid = fork();
        if (pid < 0) {
                safe_close(pipefd[1]);
                return negative_errno();
        }
        if (pid == 0) {
                if (dup2(pipefd[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execv(exec, args);
                _exit(127);
        }
        safe_close(pipefd[1]);

        deadline = sandbox_now_ms() + (uint64_t)timeout_ms;
        for (;;) {
                struct pollfd p = { .fd = rfd, .events = POLLIN };
                uint64_t now = sandbox_now_ms();
                ssize_t k;
                int r;

                if (now >= deadline) {
                        (void)kill(pid, SIGKILL);
                        (void)waitpid(pid, NULL, 0);
                        return log_error_errno(ETIME, "Command '%s' inside the sandbox timed out.", argv[0]);
                }
                r = poll(&p, 1, (int)(deadline - now));
                if (r < 0 && errno != EINTR)
                        return negative_errno();
                if (r <= 0)
                        continue;
                if (alloc - size < 4096) {
                        char *nb = realloc(buf, alloc + 65536);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        alloc += 65536;
                }
                k = read(rfd, buf + size, alloc - size - 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                size += (size_t)k;
        }

        if (waitpid(pid, &status, 0) < 0)
                return negative_errno();

        if (ret_status)
                *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (ret_stdout) {
                if (!buf) {
                        buf = strdup("");
                        if (!buf)
                                return -ENOMEM;
                } else
                        buf[size] = 0;
                *ret_stdout = TAKE_PTR(buf);
        }
        return 0;
}

int sandbox_exec_until(char *const argv[], const char *needle, int timeout_ms, char **ret_stdout) {
        uint64_t deadline = sandbox_now_ms() + (uint64_t)timeout_ms;
        unsigned delay_ms = 10;

        for (;;) {
                _cleanup_free_ char *out = NULL;
                int r, status;

                r = sandbox_exec(argv, timeout_ms, &status, &out);
                if (r < 0)
                        return r;
                if (strstr(out, needle)) {
                        if (ret_stdout)
                                *ret_stdout = TAKE_PTR(out);
                        return 0;
                }
                if (sandbox_now_ms() + delay_ms >= deadline)
                        return -ETIME;
                /* Re-run with backoff: journald and systemd publish asynchronously. */
                (void)usleep(delay_ms * 1000);
                delay_ms = MIN(delay_ms * 2, 200u);
        }
}
