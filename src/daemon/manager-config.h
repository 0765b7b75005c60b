/* How a configuration reaches a module: the in-process config service and its delivery. */
#pragma once

#include "daemon/module-client.h"

/* Open the configuration store (<state_dir>/config) and hook the config service up. */
int manager_config_init(Manager *mgr);

/* After every (re-)registration: register the module's configuration schema with the config
 * service and deliver its stored configuration, if any. Returns 1 if a delivery started
 * (the module's state follows its outcome), 0 if there is nothing to deliver, -EINVAL if the
 * schema was refused (the reason is logged and in *ret_error), another negative errno on
 * failure. */
int manager_config_deliver_stored(Module *m, char **ret_error);
