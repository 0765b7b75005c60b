/* Starting the web dashboard (services/web) with the orchestrator's configuration. It talks
 * to the orchestrator like any other client: over the control socket, on our gRPC runtime. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/manager.h"
#include "services/web/web-service.h"
#include "shared/log.h"
#include "shared/macro.h"

void manager_web_start(Manager *m) {
        _cleanup_free_ char *control = NULL;
        WebServiceOptions o;
        int r;

        assert(m);
        if (!m->config.web_enabled) {
                log_info("web: the dashboard is disabled (web.enabled: false).");
                return;
        }
        if (asprintf(&control, "unix:%s", m->config.control_socket) < 0) {
                log_oom();
                return;
        }
        o = (WebServiceOptions){
                .listen = m->config.web_listen,
                .assets_dir = m->config.web_assets_dir,
                .tls_certificate = m->config.web_tls_certificate,
                .tls_key = m->config.web_tls_key,
                .state_dir = m->config.state_dir,
                .journal_directory = m->config.web_journal_directory,
                .control_address = control,
        };
        r = web_service_new(&m->web_service, m->event, m->rpc, &o);
        if (r < 0)
                log_error_errno(r, "web: the dashboard could not start, going on without it: %m");
}
