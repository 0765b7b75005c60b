/* How a configuration reaches a module, in one place:
 *
 *   SetConfig (control socket, services/config) --validate--> apply hook (here)
 *     --> ApplyConfig to the running module (module-client.c) --> outcome back to the config
 *     service, which persists only what the module accepted --> change hook (here): event.
 *   (Re-)registration (module-lifecycle.c) --> manager_config_deliver_stored(): the schema is
 *     registered with the config service and the stored configuration applied again.
 *
 * A module that was waiting for its configuration becomes READY when one is accepted. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/manager-config.h"
#include "daemon/manager.h"
#include "daemon/module-lifecycle.h"
#include "rpc/rpc.h"
#include "services/config/config-service.h"
#include "shared/log.h"
#include "shared/macro.h"

#define APPLY_CONFIG_TIMEOUT_MS 10000u

/* SetConfig validated a configuration for a module; its outcome goes back to the service. A
 * module refuses a configuration with INVALID_ARGUMENT and "path: message; ..." (protocol.md):
 * that is the same answer as a refusal by the schema, so the caller sees one kind of refusal
 * (call-assistantctl: exit status 7, every problem listed). Any other failure is the
 * module's, not the configuration's: FAILED_PRECONDITION. */
static void on_applied_for_service(Module *m, const ModuleCallResult *res, void *userdata) {
        ConfigApply *op = userdata;
        char msg[1200];

        if (res->status == RPC_OK) {
                module_configured(m);
                config_apply_complete(op, CONFIG_STATUS_OK, NULL);
                return;
        }
        if (res->status == RPC_INVALID_ARGUMENT) {
                config_apply_complete(op, CONFIG_STATUS_INVALID_ARGUMENT,
                                      *res->message ? res->message : ": refused by the module, no reason given");
                return;
        }
        snprintf(msg, sizeof(msg), "module %s could not apply the configuration (%s): %s", m->name,
                 rpc_status_to_string(res->status), *res->message ? res->message : "no reason given");
        config_apply_complete(op, CONFIG_STATUS_FAILED_PRECONDITION, msg);
}

static void on_config_apply(ConfigApply *op, const char *module, const char *config_json, void *userdata) {
        Manager *mgr = userdata;
        Module *m = registry_find(&mgr->registry, module);
        int r;

        if (!m || !m->registered) {
                config_apply_complete(op, CONFIG_STATUS_FAILED_PRECONDITION,
                                      "the module is not running: start it, then configure it");
                return;
        }
        r = module_client_apply_config(m, config_json, APPLY_CONFIG_TIMEOUT_MS, on_applied_for_service, op);
        if (r < 0)
                config_apply_complete(op, CONFIG_STATUS_FAILED_PRECONDITION, strerror(-r));
}

static void on_config_changed(const char *module, uint64_t revision, const char *redacted_json, void *userdata) {
        Manager *mgr = userdata;
        Module *m = registry_find(&mgr->registry, module);
        ManagerConfigChange change = { .revision = revision, .redacted_json = redacted_json };

        log_info("Module %s: configuration revision %" PRIu64 " applied.", module, revision);
        if (m)
                manager_emit(mgr, MANAGER_EVENT_CONFIG, m, &change);
}

int manager_config_init(Manager *mgr) {
        _cleanup_free_ char *dir = NULL;
        int r;

        assert(mgr);
        if (asprintf(&dir, "%s/config", mgr->config.state_dir) < 0)
                return log_oom();
        r = config_service_new(dir, &mgr->config_service);
        if (r < 0)
                return log_error_errno(r, "Cannot open the configuration store %s: %m", dir);
        config_service_set_apply_hook(mgr->config_service, on_config_apply, mgr);
        config_service_set_change_hook(mgr->config_service, on_config_changed, mgr);
        return 0;
}

static void on_stored_applied(Module *m, const ModuleCallResult *res, void *userdata) {
        if (!m->registered || res->status == RPC_CANCELLED)
                return;
        if (res->status == RPC_OK)
                module_configured(m);
        else
                module_change_state(m, MODULE_ERROR, "stored configuration was refused: %s", res->message);
}

int manager_config_deliver_stored(Module *m, char **ret_error) {
        ConfigService *service = m->manager->config_service;
        _cleanup_free_ char *json = NULL, *error = NULL;
        int r;

        assert(m);
        if (!service || !m->config_schema || !*m->config_schema)
                return 0;
        r = config_service_register_schema(service, m->name, m->config_schema, &error);
        if (r < 0) {
                log_warning_errno(r, "Module %s: its configuration schema was refused: %s", m->name,
                                  error ? error : strerror(-r));
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return r;
        }
        r = config_service_get_stored_for_apply(service, m->name, &json);
        if (r <= 0)
                return r;
        /* The stored configuration is re-applied after every (re-)registration. */
        r = module_client_apply_config(m, json, APPLY_CONFIG_TIMEOUT_MS, on_stored_applied, NULL);
        explicit_bzero(json, strlen(json));
        return r < 0 ? r : 1;
}
