/* The manager's module set: discovery into the registry, identity tokens, ports, unit specs. */
#pragma once

#include <stdio.h>
#include <systemd/sd-bus.h>

#include "daemon/manager.h"
#include "daemon/module-client.h"

/* Validate the manifests and the graph of a modules dir without starting anything; print
 * every problem. Returns 0 if there is none, -EINVAL otherwise. */
int manager_modules_check(const char *modules_dir, FILE *out);

/* Port of a module: the remembered one; keep_busy for a module that is already running. */
int manager_modules_assign_port(Manager *mgr, Module *m, bool keep_busy);

/* unit_props_append_t for a Module. */
int manager_modules_append_unit_props(sd_bus_message *msg, void *userdata);

/* After (re-)registration: register the module's configuration schema with the config
 * service and deliver its stored configuration, if any. Returns 1 if a delivery started
 * (done runs later), 0 if there is nothing to deliver, negative if the schema was refused. */
int manager_modules_deliver_stored_config(Manager *mgr, Module *m, module_call_done_t done);

/* Open the configuration store and hook the config service to the lifecycle. */
int manager_modules_config_init(Manager *mgr);

void manager_modules_done(Manager *mgr);
