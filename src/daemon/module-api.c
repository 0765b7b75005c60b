/* A module's face on the orchestrator's API: ModuleInfo, GetModule, start/stop/restart
 * (control socket), and what a module reports about itself (module-facing endpoint). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/flows.h"
#include "daemon/manager-entities.h"
#include "daemon/module-api.h"
#include "daemon/module-lifecycle.h"
#include "shared/macro.h"

int module_info_fill(ModuleInfoBuf *b, const Module *m) {
        Callassistant__V1__ModuleInfo *i = &b->info;

        assert(b);
        assert(m);
        *b = (ModuleInfoBuf){};
        callassistant__v1__module_info__init(i);
        i->name = m->name;
        i->dir = m->dir;
        i->unit = m->unit ? m->unit : (char *)"";
        i->version = m->version ? m->version : (char *)"";
        i->description = m->description ? m->description : (char *)"";
        i->status = (Callassistant__V1__ModuleStatus)(m->state + 1);
        i->status_message = m->state_message ? m->state_message : (char *)"";
        i->active_state = (char *)(m->unit_status.active_state[0] ? m->unit_status.active_state : "inactive");
        i->sub_state = (char *)(m->unit_status.sub_state[0] ? m->unit_status.sub_state : "dead");
        i->port = m->port;
        i->n_restarts = m->unit_status.n_restarts;
        i->main_pid = m->unit_status.main_pid;
        i->health = m->health == HEALTH_SERVING       ? CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_SERVING
                    : m->health == HEALTH_NOT_SERVING ? CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_NOT_SERVING
                                                      : CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_UNKNOWN;
        i->health_failures = m->health_failures;
        i->registered_at_usec = m->registered ? m->registered_at_usec : 0;
        i->config_required = m->config_required;
        i->has_resources = m->has_resources;
        i->cpu_usage_nsec = m->cpu_usage_nsec;
        i->memory_current_bytes = m->memory_current;
        i->resources_at_usec = m->resources_at_usec;
        for (char **d = m->dependencies; d && *d; d++)
                i->n_dependencies++;
        i->dependencies = m->dependencies;
        if (m->n_entity_types == 0)
                return 0;

        b->types = new0(Callassistant__V1__EntityType, m->n_entity_types);
        b->type_ptrs = new0(Callassistant__V1__EntityType *, m->n_entity_types);
        if (!b->types || !b->type_ptrs)
                return -ENOMEM;
        for (size_t k = 0; k < m->n_entity_types; k++) {
                Callassistant__V1__EntityType *t = &b->types[k];

                callassistant__v1__entity_type__init(t);
                t->name = m->entity_types[k].name;
                t->description = m->entity_types[k].description;
                for (char **c = m->entity_types[k].capabilities; c && *c; c++)
                        t->n_capabilities++;
                t->capabilities = m->entity_types[k].capabilities;
                t->n_media_in = strv_length(m->entity_types[k].media_in);
                t->media_in = m->entity_types[k].media_in;
                t->n_media_out = strv_length(m->entity_types[k].media_out);
                t->media_out = m->entity_types[k].media_out;
                b->type_ptrs[k] = t;
        }
        i->n_entity_types = m->n_entity_types;
        i->entity_types = b->type_ptrs;
        return 0;
}

void module_info_done(ModuleInfoBuf *b) {
        free(b->types);
        free(b->type_ptrs);
}

static void on_resources(UnitManager *u, const char *unit, int error, const UnitResources *res, void *userdata) {
        Module *m = userdata;
        struct timespec ts;

        m->resources_query = NULL;
        m->has_resources = error >= 0 && res->cpu_usage_nsec != UINT64_MAX;
        if (!m->has_resources)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        m->cpu_usage_nsec = res->cpu_usage_nsec;
        m->memory_current = res->memory_current != UINT64_MAX ? res->memory_current : 0;
        m->resources_at_usec = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void module_refresh_resources(Module *m) {
        Manager *mgr = m->manager;
        const char *active = m->unit_status.active_state;

        assert(m);
        if (m->resources_query || !mgr->units || !m->unit)
                return;
        /* Only a running unit has figures; the last ones of a stopped unit are not shown. */
        if (strcmp(active, "active") != 0 && strcmp(active, "reloading") != 0 && strcmp(active, "deactivating") != 0) {
                m->has_resources = false;
                return;
        }
        if (unit_manager_get_resources(mgr->units, m->unit, on_resources, m, &m->resources_query) < 0)
                m->resources_query = NULL;
}

static void reply_info(RpcServerCall *call, const Module *m, bool wrapped) {
        Callassistant__V1__ModuleResponse resp = CALLASSISTANT__V1__MODULE_RESPONSE__INIT;
        ModuleInfoBuf b;

        if (module_info_fill(&b, m) < 0) {
                module_info_done(&b);
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        resp.module = &b.info;
        (void)rpc_server_call_reply(call, wrapped ? &resp.base : &b.info.base);
        module_info_done(&b);
}

/* Find the module a control request names; answers the call and returns NULL if there is none
 * that can be controlled. */
static Module *controllable_module(Manager *mgr, RpcServerCall *call, const char *name) {
        char msg[600];
        Module *m = NULL;
        int r;

        r = manager_get_controllable_module(mgr, name, &m);
        if (r == -ENOENT) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                return NULL;
        }
        if (r == -EPERM) {
                m = registry_find(&mgr->registry, name);
                snprintf(msg, sizeof(msg), "module is disabled: %s", m && m->state_message ? m->state_message : "");
                (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, msg);
                return NULL;
        }
        return m;
}

static void on_get_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__GetModuleRequest *req = (const void *)request;
        Manager *mgr = userdata;
        Module *m = registry_find(&mgr->registry, req->name);

        if (!m) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such module");
                return;
        }
        reply_info(call, m, false);
        if (req->with_resources)
                module_refresh_resources(m);
}

static void module_request(RpcServerCall *call, const ProtobufCMessage *request, Manager *mgr,
                           int (*op)(Module *m)) {
        const Callassistant__V1__ModuleRequest *req = (const void *)request;
        Module *m;
        int r;

        m = controllable_module(mgr, call, req->name);
        if (!m)
                return;
        r = op(m);
        if (r == -EBUSY) {
                (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, "module is being stopped");
                return;
        }
        if (r < 0) {
                (void)rpc_server_call_fail(call, RPC_UNAVAILABLE, strerror(-r));
                return;
        }
        reply_info(call, m, true);
}

static void on_start_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        module_request(call, request, userdata, module_start_on_request);
}

static void on_stop_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        module_request(call, request, userdata, module_stop_on_request);
}

static void on_restart_module(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        module_request(call, request, userdata, module_restart_on_request);
}

/* ---- module-facing: what a module reports about itself ------------------------------- */

static void on_report_state(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__ReportStateRequest *req = (const void *)request;
        Callassistant__V1__ReportStateResponse resp = CALLASSISTANT__V1__REPORT_STATE_RESPONSE__INIT;
        Manager *mgr = userdata;
        ModuleState state;
        char msg[512];
        Module *m;

        m = api_authenticate_module(mgr, call);
        if (!m)
                return;
        switch (req->state) {
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_STARTING:
                state = MODULE_STARTING;
                break;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_WAITING_FOR_CONFIG:
                state = MODULE_WAITING_FOR_CONFIG;
                break;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_READY:
                state = MODULE_READY;
                break;
        case CALLASSISTANT__V1__MODULE_STATE__MODULE_STATE_ERROR:
                state = MODULE_ERROR;
                break;
        default:
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "state: unknown module state");
                return;
        }
        /* Untrusted text: bounded, and only printable characters kept. */
        snprintf(msg, sizeof(msg), "%s", req->message ? req->message : "");
        for (char *p = msg; *p; p++)
                if ((unsigned char)*p < 0x20)
                        *p = ' ';
        module_reported_state(m, state, msg);
        (void)rpc_server_call_reply(call, &resp.base);
}

static bool valid_entity_ref(const Callassistant__V1__Entity *e) {
        return e && e->id && *e->id && strlen(e->id) <= 256;
}

static void on_report_event(RpcServerCall *call, const ProtobufCMessage *request, void *userdata) {
        const Callassistant__V1__Event *ev = (const void *)request;
        Callassistant__V1__ReportEventResponse resp = CALLASSISTANT__V1__REPORT_EVENT_RESPONSE__INIT;
        Manager *mgr = userdata;
        Module *m;

        m = api_authenticate_module(mgr, call);
        if (!m)
                return;
        switch (ev->kind) {
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_ADDED:
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_CHANGED:
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_REMOVED:
                if (!valid_entity_ref(ev->entity)) {
                        (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT,
                                                   "entity: required, with an id of 1 to 256 bytes");
                        return;
                }
                manager_entities_reported(m, ev);
                break;
        case CALLASSISTANT__V1__EVENT__KIND__KIND_METRICS:
                if (ev->n_metrics > 256) {
                        (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "metrics: at most 256");
                        return;
                }
                break;
        case CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_SIGNAL:
        case CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_ENDED:
                if (!valid_entity_ref(ev->entity) || !flow_id_valid(ev->flow_id)) {
                        (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT,
                                                   "flow_id and entity.id: required for flow events");
                        return;
                }
                if (ev->kind == CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_SIGNAL && !ev->link) {
                        (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "link: required for KIND_FLOW_SIGNAL");
                        return;
                }
                /* For the flow's other entities only: links may carry credentials. */
                (void)rpc_server_call_reply(call, &resp.base);
                if (ev->kind == CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_SIGNAL)
                        flows_signal(m, ev);
                else
                        flows_ended(m, ev);
                return;
        case CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_REQUEST:
                /* Checked, answered (with the flow's id) or refused there; never passed on. */
                flows_request(m, call, ev);
                return;
        default:
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT,
                                           "kind: modules report entity, flow and metrics events only");
                return;
        }
        manager_emit(mgr, MANAGER_EVENT_ENTITY, m, request);
        (void)rpc_server_call_reply(call, &resp.base);
}

#define M(name) "/callassistant.v1.OrchestratorService/" name
#define D(type) &callassistant__v1__##type##__descriptor

const ApiMethod module_api_methods[] = {
        { { M("ReportState"), D(report_state_request), on_report_state, false, NULL }, true },
        { { M("ReportEvent"), D(event), on_report_event, false, NULL }, true },
        { { M("GetModule"), D(get_module_request), on_get_module, false, NULL }, false },
        { { M("StartModule"), D(module_request), on_start_module, false, NULL }, false },
        { { M("StopModule"), D(module_request), on_stop_module, false, NULL }, false },
        { { M("RestartModule"), D(module_request), on_restart_module, false, NULL }, false },
};
const size_t module_api_n_methods = ELEMENTSOF(module_api_methods);
