/* Test-side helpers for the systemd sandbox booted by tests/sandbox/ca-sandbox. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* True when running under "ca-sandbox run" (CA_SANDBOX_BUS and CA_SANDBOX_LEADER set). */
bool sandbox_active(void);

/* Open a connection to the sandbox's system bus (the container's systemd). */
int sandbox_bus_open(sd_bus **ret);

/* Run argv inside the sandbox (systemctl, journalctl, ...), with a timeout in milliseconds.
 * On success returns 0, the command's exit status in *ret_status (-1 if killed by a signal)
 * and its standard output (NUL-terminated, owned by the caller) in *ret_stdout if non-NULL. */
int sandbox_exec(char *const argv[], int timeout_ms, int *ret_status, char **ret_stdout);

/* Run argv inside the sandbox until its standard output contains needle, or timeout_ms passes.
 * Returns 0 when found (and the last output in *ret_stdout if non-NULL), -ETIME otherwise. */
int sandbox_exec_until(char *const argv[], const char *needle, int timeout_ms, char **ret_stdout);

/* Monotonic clock in milliseconds. */
uint64_t sandbox_now_ms(void);
