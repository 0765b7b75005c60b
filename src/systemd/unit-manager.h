/* The unit manager: starts, stops and follows transient systemd units over sd-bus. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

typedef struct UnitManager UnitManager;
typedef struct UnitWatch UnitWatch;

#define UNIT_UID_INVALID UINT32_MAX

/* What systemd says about a unit, refreshed on every PropertiesChanged signal. */
typedef struct UnitStatus {
        bool loaded;            /* false: systemd does not know the unit (NoSuchUnit / unloaded) */
        char active_state[32];  /* active, activating, deactivating, inactive, failed, ... */
        char sub_state[32];     /* running, auto-restart, dead, failed, start, stop-sigterm, ... */
        char result[32];        /* success, exit-code, signal, core-dump, timeout, start-limit-hit, ... */
        uint32_t main_pid;
        uint32_t uid;           /* the user it runs as (its dynamic user's uid while it runs);
                                 * UNIT_UID_INVALID when systemd does not say */
        uint32_t n_restarts;
        int32_t exec_main_code; /* CLD_EXITED, CLD_KILLED, ... of the last main process */
        int32_t exec_main_status;
        uint64_t state_change_usec; /* monotonic usec of the last state change, from systemd */
} UnitStatus;

/* Called on the sd-event thread with the result of a job ("done", "failed", "canceled",
 * "timeout", "dependency", "skipped") or a negative errno if the call itself failed. */
typedef void (*unit_job_handler_t)(UnitManager *m, const char *unit, int error, const char *result,
                                   void *userdata);
/* Called on the sd-event thread whenever the unit's status may have changed. */
typedef void (*unit_status_handler_t)(UnitManager *m, const char *unit, const UnitStatus *status,
                                      void *userdata);
/* Appends the (sv) properties of a transient unit to an open a(sv) container. */
typedef int (*unit_props_append_t)(sd_bus_message *m, void *userdata);

/* Connect to the system manager (user == false) or the user manager, attach to event and
 * subscribe to systemd's signals. The bus address may be overridden by
 * DBUS_SYSTEM_BUS_ADDRESS / DBUS_SESSION_BUS_ADDRESS, as sd-bus does. If the bus connection
 * is lost later, the event loop is ended with -ENOTCONN. */
int unit_manager_new(UnitManager **ret, sd_event *event, bool user);
UnitManager *unit_manager_free(UnitManager *m);
sd_bus *unit_manager_get_bus(UnitManager *m);

/* StartTransientUnit(unit, "fail", props). The job handler runs when the job is removed. */
int unit_manager_start_transient(UnitManager *m, const char *unit, unit_props_append_t append,
                                 void *append_userdata, unit_job_handler_t handler, void *userdata);
/* StopUnit / RestartUnit with mode "replace"; handler as above (may be NULL). */
int unit_manager_stop(UnitManager *m, const char *unit, unit_job_handler_t handler, void *userdata);
int unit_manager_restart(UnitManager *m, const char *unit, unit_job_handler_t handler, void *userdata);
/* ResetFailedUnit: forget a failed unit's state and start-limit counters. */
int unit_manager_reset_failed(UnitManager *m, const char *unit);

/* Follow a unit: the handler runs once with the current status (also when the unit is not
 * loaded) and again after every change systemd signals. Free the watch to stop. */
int unit_manager_watch(UnitManager *m, const char *unit, unit_status_handler_t handler, void *userdata,
                       UnitWatch **ret);
UnitWatch *unit_watch_free(UnitWatch *w);
/* The last status read for a watched unit. */
const UnitStatus *unit_watch_get_status(UnitWatch *w);

/* Names of the units systemd has loaded that match a glob pattern (one call). */
int unit_manager_list_loaded(UnitManager *m, const char *pattern, char ***ret);

/* If this process is the main process of a unit of this manager (as call-assistant.service
 * runs it) and systemd has a job for that unit: its type ("stop", "restart", ...) in *ret,
 * returns 1. 0 if not run as a unit or no job is pending. Synchronous. */
int unit_manager_own_job_type(UnitManager *m, char **ret);

/* CPU and memory of a unit from systemd's cgroup accounting (CPUUsageNSec, MemoryCurrent);
 * UINT64_MAX where systemd does not know (accounting off, unit not running). */
typedef struct UnitResources {
        uint64_t cpu_usage_nsec;
        uint64_t memory_current;
} UnitResources;
typedef struct UnitResourceQuery UnitResourceQuery;
/* Called once with the figures (or -errno); the query frees itself after the handler. */
typedef void (*unit_resources_handler_t)(UnitManager *m, const char *unit, int error, const UnitResources *res,
                                         void *userdata);
/* Ask for both properties at once; *ret (optional) lets the caller cancel before the answer
 * (unit_resource_query_free: the handler is not called). */
int unit_manager_get_resources(UnitManager *m, const char *unit, unit_resources_handler_t handler, void *userdata,
                               UnitResourceQuery **ret);
UnitResourceQuery *unit_resource_query_free(UnitResourceQuery *q);

/* Synchronous status read (for adoption at startup and for tools). */
int unit_manager_get_status(UnitManager *m, const char *unit, UnitStatus *ret);

static inline void unit_manager_freep(UnitManager **m) {
        unit_manager_free(*m);
}
static inline void unit_watch_freep(UnitWatch **w) {
        unit_watch_free(*w);
}
