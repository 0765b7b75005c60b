/* A module's unit: its gRPC port (kept across restarts) and its transient unit's properties. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "registry/module.h"

/* The module's port: the remembered one if possible; keep_busy for a module that is
 * running already (adopted: it holds its port itself). The port state is written once
 * for all the ports assigned in one event-loop iteration, before anything else runs. */
int module_unit_assign_port(Module *m, bool keep_busy);
/* Write a pending port state now (at exit). */
void manager_ports_flush(Manager *mgr);

/* unit_props_append_t for StartTransientUnit: everything the unit of module m gets. */
int module_unit_append_properties(sd_bus_message *msg, void *userdata);
