/* One module's whole life: start, following its unit, registration, health checks, restarts,
 * stop. Everything here runs on the sd-event thread. */
#pragma once

#include <stdbool.h>

#include "registry/module.h"
#include "shared/macro.h"

/* Does systemd currently run (or try to run) the module's unit? */
bool module_unit_is_up(const Module *m);
/* Running, starting or being stopped: a start job, a live unit or STOPPING. */
bool module_is_active(const Module *m);

/* Change the module's state: logged, announced (events, sd_notify STATUS). fmt may be NULL. */
void module_change_state(Module *m, ModuleState state, const char *fmt, ...) _printf_(3, 4);

/* Follow the module's unit (PropertiesChanged). At startup: adopt a unit that still runs. */
int module_follow_unit(Module *m);
int module_adopt(Module *m, const UnitStatus *status);

/* Start the unit (port, properties, StartTransientUnit), or stop it (Shutdown RPC, then
 * StopUnit). Used for dependency order, shutdown and requests. */
void module_start(Module *m);
void module_stop(Module *m);

/* Requests from the control API. -EBUSY if the module is being stopped or the orchestrator
 * is shutting down. */
int module_start_on_request(Module *m);
int module_stop_on_request(Module *m);
int module_restart_on_request(Module *m);

/* The module reported a state itself (ReportState). */
void module_reported_state(Module *m, ModuleState state, const char *message);
/* A configuration was accepted: a module that waited for it becomes READY. */
void module_configured(Module *m);

/* Forget everything about the running process: registration, health checks, the channel. */
void module_reset_runtime(Module *m);
/* Stop health checking (at shutdown). */
void module_health_stop(Module *m);
