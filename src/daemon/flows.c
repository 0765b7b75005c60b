/* Flows: a source entity connected to a target entity through converters.
 *
 *   StartFlow --> path over the converter types of READY modules (src/flows/flow-path.c)
 *             --> SETUP: ConnectEntity(source); for each converter CreateEntity + ConnectEntity;
 *                 ConnectEntity(target); a WebRTC answer handed back to the offering converter
 *             --> ACTIVE, or PENDING while a call rings (the answer comes as KIND_FLOW_SIGNAL)
 *   a step fails while setting up --> TEARDOWN of what was done; the start fails
 *   a module of the flow stops being READY --> DEGRADED; once it is READY again with its
 *                 entities listed --> SETUP again (a heal), retried with back-off
 *   a module of the flow is gone for good (FAILED, DISABLED, removed) --> FAILED
 *   StopFlow or KIND_FLOW_ENDED --> TEARDOWN: DisconnectEntity in reverse order,
 *                 DestroyEntity for what the flow created --> STOPPED
 *   KIND_FLOW_REQUEST (a module asks for a flow into its own entity, with a caller's WebRTC
 *                 offer) --> SETUP with the offer going to the last converter, whose answer
 *                 goes to the target (ConnectEntity with the request's id) --> ACTIVE; failing
 *                 there --> TEARDOWN --> FAILED (the target turns the call away). Once ACTIVE
 *                 it is an ordinary flow: a heal sets it up like a started one (the converter
 *                 offers, the target places a new call), since the caller's offer was spent.
 *
 * Every change is stored (<state_dir>/flows/<id>.json, without the links, which may carry
 * credentials) and announced (KIND_FLOW_CHANGED). After an orchestrator restart the stored
 * flows are checked once their modules are READY: still complete, they resume as they were;
 * otherwise they are healed. One operation at a time per flow; module calls always complete
 * (RPC_CANCELLED when their module goes away), so a flow is freed only between operations. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callassistant/v1/module.pb-c.h"
#include "daemon/api.h"
#include "daemon/flows.h"
#include "daemon/manager-entities.h"
#include "daemon/module-client.h"
#include "flows/flow-path.h"
#include "flows/flow-request.h"
#include "shared/fileio.h"
#include "shared/log.h"
#include "shared/macro.h"

#define CONNECT_TIMEOUT_MS 20000u
#define CREATE_TIMEOUT_MS 10000u
#define TEARDOWN_TIMEOUT_MS 5000u
#define MAX_FLOWS 1024
#define MAX_CONVERTERS 6
#define MAX_REQUESTED_PER_MODULE 16
#define HEAL_RETRY_MIN_MS 500u
#define HEAL_RETRY_MAX_MS 30000u

typedef enum FlowOp {
        OP_NONE,
        OP_SETUP,      /* op_step, op_phase: PHASE_CREATE or PHASE_CONNECT */
        OP_ANSWER,     /* a WebRTC answer to the converter at op_step */
        OP_TEARDOWN,   /* op_step counts down; PHASE_DISCONNECT or PHASE_DESTROY */
} FlowOp;

enum { PHASE_CREATE, PHASE_CONNECT, PHASE_DISCONNECT, PHASE_DESTROY, PHASE_DONE };

struct Flow {
        Manager *manager;
        FlowRecord *rec;
        bool stored;                /* kept on disk (not a flow to an external peer) */
        char *peer_offer;           /* the external peer's SDP offer, or a requested flow's caller's */
        char *request_id;           /* a requested flow: the request's id, for its target */
        bool requested;             /* requested by its target's module (KIND_FLOW_REQUEST) */
        bool answering;             /* ... and the caller's offer is being answered */
        FlowLink *outputs;          /* what each step gave; in memory only */
        FlowLink signal;            /* an answer that arrived during another operation */
        size_t signal_step;         /* the step it is for */
        bool resuming;              /* loaded at startup: check its entities first */
        FlowState resume_state;     /* its state before the restart */

        FlowOp op;
        size_t op_step;
        int op_phase;
        bool op_heal;               /* SETUP of a heal (failure: DEGRADED and retry) */
        bool stop_requested;        /* StopFlow or KIND_FLOW_ENDED during another operation */
        FlowState end_state;        /* TEARDOWN ends in this state ... */
        char *end_reason;           /* ... for this reason */
        bool forget_after;          /* ... and the flow is removed (stopped, or a failed start) */
        RpcServerCall *start_call;  /* StartFlow waiting for the outcome */
        RpcServerCall *stop_call;   /* StopFlow waiting for the teardown */
        int start_status;           /* why a start failed (answered after its rollback) */
        char *start_error;
        sd_event_source *retry;
        unsigned retry_ms;
};

static void setup_next(Flow *f);
static void teardown_next(Flow *f);
static void try_heal(Flow *f);

static uint64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool streq(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

static bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

/* Replace control characters of untrusted text before it is logged. */
static void printable(char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
                        *s = '?';
}

const FlowRecord *flow_get_record(const Flow *f) {
        return f->rec;
}

static bool flow_is_live(const Flow *f) {
        return f->rec->state != FLOW_FAILED && f->rec->state != FLOW_STOPPED;
}

static Module *step_module(Flow *f, size_t i) {
        return registry_find(&f->manager->registry, f->rec->steps[i].module);
}

static bool module_usable(const Module *m) {
        return m && m->state == MODULE_READY && m->client;
}

/* Gone for good: it will not come back by itself. */
static bool module_gone(const Module *m) {
        return !m || m->state == MODULE_FAILED || m->state == MODULE_DISABLED;
}

/* Is e, the registry's entity with the id of created step i, the one this flow created? A flow
 * names what it creates "<flow id> step <n>" (collect_orphans() relies on it too). A module
 * that lost its entities in a restart gives new ones the old ids ("converter-1" again: the C
 * SDK counts from 1 in each process), so an id alone may name another flow's entity. A module
 * that does not keep the names it is given is trusted by the id. */
static bool created_entity_ours(const Flow *f, size_t i, const EntityRecord *e) {
        char want[64], flow_id[22];
        unsigned step;

        (void)snprintf(want, sizeof(want), "%s step %zu", f->rec->id, i + 1);
        if (streq(e->name, want))
                return true;
        return !(e->name && sscanf(e->name, "%21s step %u", flow_id, &step) == 2 && flow_id_valid(flow_id));
}

/* The entity step i names, if the registry has it (and, for one the flow created, it is its). */
static EntityRecord *step_entity(Flow *f, size_t i) {
        const FlowStepRecord *s = &f->rec->steps[i];
        EntityRecord *e;

        if (!*s->entity_id)
                return NULL;
        e = entity_registry_find(&f->manager->entities, s->module, s->entity_id);
        return e && (!s->created || created_entity_ours(f, i, e)) ? e : NULL;
}

/* The step an external WebRTC offer goes to: the last one of a flow to an external peer; the
 * converter before the target of a requested flow. */
static size_t offer_step(const Flow *f) {
        return f->rec->n_steps - (f->rec->target_module ? 2 : 1);
}

static Flow *flow_free(Flow *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; f->outputs && i < f->rec->n_steps; i++)
                flow_link_done(&f->outputs[i]);
        free(f->outputs);
        flow_link_done(&f->signal);
        flow_record_free(f->rec);
        if (f->peer_offer) {
                explicit_bzero(f->peer_offer, strlen(f->peer_offer));
                free(f->peer_offer);
        }
        free(f->request_id);
        free(f->end_reason);
        free(f->start_error);
        sd_event_source_disable_unref(f->retry);
        free(f);
        return NULL;
}

/* ---- the flow's face: proto, events, storage ----------------------------------------- */

int flow_proto_fill(FlowProto *p, const FlowRecord *f) {
        Callassistant__V1__Flow *fl = &p->flow;

        *p = (FlowProto){};
        callassistant__v1__flow__init(fl);
        callassistant__v1__entity_ref__init(&p->source);
        callassistant__v1__entity_ref__init(&p->target);
        fl->id = f->id;
        p->source.module = f->source_module;
        p->source.id = f->source_entity;
        fl->source = &p->source;
        if (f->target_module) {
                p->target.module = f->target_module;
                p->target.id = f->target_entity;
                fl->target = &p->target;
        }
        fl->state = (Callassistant__V1__FlowState)(f->state + 1);
        fl->state_reason = f->reason ? f->reason : (char *)"";
        fl->created_at_usec = f->created_usec;
        fl->changed_at_usec = f->changed_usec;
        fl->n_heals = f->n_heals;
        p->steps = new0(Callassistant__V1__FlowStep, f->n_steps + 1);
        p->step_ptrs = new0(Callassistant__V1__FlowStep *, f->n_steps + 1);
        if (!p->steps || !p->step_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < f->n_steps; i++) {
                const FlowStepRecord *s = &f->steps[i];
                Callassistant__V1__FlowStep *ps = &p->steps[i];

                callassistant__v1__flow_step__init(ps);
                ps->module = s->module;
                ps->entity_id = s->entity_id;
                ps->entity_type = s->entity_type;
                ps->created = s->created;
                ps->media_in = s->media_in;
                ps->media_out = s->media_out;
                ps->state = s->state;
                ps->message = s->message;
                p->step_ptrs[i] = ps;
        }
        fl->n_steps = f->n_steps;
        fl->steps = p->step_ptrs;
        return 0;
}

void flow_proto_done(FlowProto *p) {
        free(p->steps);
        free(p->step_ptrs);
}

static void flow_emit(Flow *f) {
        Callassistant__V1__Event ev = CALLASSISTANT__V1__EVENT__INIT;
        const char *modules[16];
        size_t n = 0;
        FlowProto p;

        if (!f->manager->api)
                return;
        if (flow_proto_fill(&p, f->rec) >= 0) {
                for (size_t i = 0; i < f->rec->n_steps && n < ELEMENTSOF(modules); i++)
                        modules[n++] = f->rec->steps[i].module;
                ev.kind = CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_CHANGED;
                ev.timestamp_usec = realtime_usec();
                ev.flow = &p.flow;
                api_broadcast_modules(f->manager->api, modules, n, &ev);
        }
        flow_proto_done(&p);
}

/* Announce and store what changed. A flow being started is stored once it is set up: until
 * then its caller waits, and a crash in between leaves at most a converter, which
 * collect_orphans() destroys when its module is READY again. */
static void flow_changed(Flow *f) {
        int r;

        f->rec->changed_usec = realtime_usec();
        if (f->stored && !f->start_call && !f->answering) {
                r = flow_store_save(f->manager->flows_dir, f->rec);
                if (r < 0)
                        log_warning_errno(r, "Flow %s: cannot store it, ignoring: %m", f->rec->id);
        }
        flow_emit(f);
}

static void set_state(Flow *f, FlowState state, const char *fmt, ...) _printf_(3, 4);
static void set_state(Flow *f, FlowState state, const char *fmt, ...) {
        char msg[600];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (f->rec->state != state)
                log_full(state == FLOW_FAILED || state == FLOW_DEGRADED ? LOG_WARNING : LOG_INFO,
                         "Flow %s: %s -> %s: %s", f->rec->id, flow_state_to_string(f->rec->state),
                         flow_state_to_string(state), msg);
        f->rec->state = state;
        if (flow_set_string(&f->rec->reason, msg) < 0)
                (void)log_oom();
        flow_changed(f);
}

static void set_step(Flow *f, size_t i, const char *state, const char *message) {
        FlowStepRecord *s = &f->rec->steps[i];

        if (flow_set_string(&s->state, state) < 0 || flow_set_string(&s->message, message) < 0)
                (void)log_oom();
}

static void remove_flow(Flow *f) {
        Manager *mgr = f->manager;

        if (f->stored)
                (void)flow_store_remove(mgr->flows_dir, f->rec->id);
        for (size_t i = 0; i < mgr->n_flows; i++)
                if (mgr->flows[i] == f) {
                        mgr->flows[i] = mgr->flows[--mgr->n_flows];
                        break;
                }
        flow_free(f);
}

static void reply_flow(RpcServerCall *call, Flow *f, bool start) {
        Callassistant__V1__StartFlowResponse resp = CALLASSISTANT__V1__START_FLOW_RESPONSE__INIT;
        const FlowLink *last = &f->outputs[f->rec->n_steps - 1];
        FlowProto p;

        if (flow_proto_fill(&p, f->rec) < 0) {
                (void)rpc_server_call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
                flow_proto_done(&p);
                return;
        }
        resp.flow = &p.flow;
        if (f->peer_offer && last->sdp)
                resp.peer_answer_sdp = last->sdp;
        (void)rpc_server_call_reply(call, start ? &resp.base : &p.flow.base);
        flow_proto_done(&p);
}

/* ---- heal retries ------------------------------------------------------------------- */

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Flow *f = userdata;

        f->retry = sd_event_source_disable_unref(f->retry);
        try_heal(f);
        return 0;
}

static void schedule_retry(Flow *f) {
        int r;

        f->retry_ms = f->retry_ms ? MIN(f->retry_ms * 2, HEAL_RETRY_MAX_MS) : HEAL_RETRY_MIN_MS;
        f->retry = sd_event_source_disable_unref(f->retry);
        r = sd_event_add_time_relative(f->manager->event, &f->retry, CLOCK_MONOTONIC, (uint64_t)f->retry_ms * 1000,
                                       0, on_retry, f);
        if (r < 0)
                log_warning_errno(r, "Flow %s: cannot schedule a retry, ignoring: %m", f->rec->id);
}

/* ---- entities left behind ----------------------------------------------------------- */

static void collect_orphans(Module *m);

static int on_orphan_sweep(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *mgr = userdata;

        mgr->orphan_sweep = sd_event_source_disable_unref(mgr->orphan_sweep);
        if (mgr->flows_frozen)
                return 0;
        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];

                if (m->registered && m->client)
                        collect_orphans(m);
        }
        return 0;
}

/* A DestroyEntity failed (a timeout, a module busy): the entity is an orphan now (no flow
 * claims it), destroyed by a sweep of every module a while later, again with back-off until
 * its module takes it or says it is gone. A module restart sweeps it anyway. */
static void schedule_orphan_sweep(Manager *mgr) {
        int r;

        if (mgr->orphan_sweep || mgr->flows_frozen)
                return;
        mgr->orphan_sweep_ms = mgr->orphan_sweep_ms ? MIN(mgr->orphan_sweep_ms * 2, HEAL_RETRY_MAX_MS)
                                                    : HEAL_RETRY_MIN_MS;
        r = sd_event_add_time_relative(mgr->event, &mgr->orphan_sweep, CLOCK_MONOTONIC,
                                       (uint64_t)mgr->orphan_sweep_ms * 1000, 0, on_orphan_sweep, mgr);
        if (r < 0)
                log_warning_errno(r, "Cannot schedule the destruction of entities left behind, ignoring: %m");
}

/* ---- teardown ----------------------------------------------------------------------- */

static void begin_teardown(Flow *f, FlowState end_state, bool forget, const char *fmt, ...) _printf_(4, 5);
static void begin_teardown(Flow *f, FlowState end_state, bool forget, const char *fmt, ...) {
        char msg[600];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        free(f->end_reason);
        f->end_reason = strdup(msg);
        f->end_state = end_state;
        f->forget_after = forget;
        f->stop_requested = false;
        f->retry = sd_event_source_disable_unref(f->retry);
        f->op = OP_TEARDOWN;
        f->op_step = f->rec->n_steps;
        f->op_phase = PHASE_DISCONNECT;
        teardown_next(f);
}

static void finish_teardown(Flow *f) {
        RpcServerCall *start = TAKE_PTR(f->start_call), *stop = TAKE_PTR(f->stop_call);

        f->op = OP_NONE;
        for (size_t i = 0; i < f->rec->n_steps; i++)
                flow_link_done(&f->outputs[i]);
        if (f->end_state == FLOW_DEGRADED) {
                /* A heal failed: what it did is undone; try again later. */
                set_state(f, FLOW_DEGRADED, "%s; retrying", f->end_reason ? f->end_reason : "");
                schedule_retry(f);
                return;
        }
        for (size_t i = 0; i < f->rec->n_steps; i++)
                set_step(f, i, "ended", "");
        set_state(f, f->end_state, "%s", f->end_reason ? f->end_reason : "");
        if (start)
                (void)rpc_server_call_fail(start, f->start_status ? f->start_status : RPC_UNAVAILABLE,
                                           f->start_error ? f->start_error : f->end_reason);
        if (stop)
                reply_flow(stop, f, false);
        if (f->forget_after)
                remove_flow(f);
}

static void on_torn(Module *m, const ModuleCallResult *res, void *userdata) {
        Flow *f = userdata;
        FlowStepRecord *s = &f->rec->steps[f->op_step - 1];
        bool destroyed = f->op_phase == PHASE_DONE;

        if (f->manager->flows_frozen)
                return;
        if (res->status != RPC_OK)
                log_warning("Flow %s: %s %s on %s failed, ignoring: %s: %s", f->rec->id,
                            destroyed ? "DestroyEntity" : "DisconnectEntity", s->entity_id, s->module,
                            rpc_status_to_string(res->status), res->message);
        if (destroyed && (res->status == RPC_OK || res->status == RPC_NOT_FOUND)) {
                (void)entity_registry_remove(&f->manager->entities, s->module, s->entity_id);
                (void)flow_set_string(&s->entity_id, "");
        } else if (destroyed) {
                /* Not ours any more: an orphan, destroyed by a later sweep. */
                (void)flow_set_string(&s->entity_id, "");
                schedule_orphan_sweep(f->manager);
        }
        teardown_next(f);
}

/* Reverse order: DisconnectEntity, then DestroyEntity for what the flow created. op_step is
 * the current step + 1; op_phase what comes next for it. Steps whose module cannot be called
 * are skipped (their entities went with the process, or are destroyed by a later teardown). */
static void teardown_next(Flow *f) {
        while (f->op_step > 0) {
                size_t i = f->op_step - 1;
                FlowStepRecord *s = &f->rec->steps[i];
                Module *m = step_module(f, i);
                EntityRecord *e = *s->entity_id ? entity_registry_find(&f->manager->entities, s->module,
                                                                      s->entity_id) : NULL;
                /* Never another flow's entity that has the id this one's had (forget_lost_entities()). */
                bool callable = m && m->registered && m->client && *s->entity_id &&
                                !(s->created && e && !created_entity_ours(f, i, e));

                if (f->op_phase == PHASE_DISCONNECT) {
                        f->op_phase = PHASE_DESTROY;
                        if (callable && !streq(s->state, "ended") &&
                            module_client_disconnect_entity(m, s->entity_id, f->rec->id, TEARDOWN_TIMEOUT_MS, on_torn,
                                                            f) >= 0)
                                return;
                }
                if (f->op_phase == PHASE_DESTROY) {
                        f->op_phase = PHASE_DONE;
                        if (callable && s->created &&
                            module_client_destroy_entity(m, s->entity_id, TEARDOWN_TIMEOUT_MS, on_torn, f) >= 0)
                                return;
                }
                f->op_phase = PHASE_DISCONNECT;
                f->op_step = i;
        }
        finish_teardown(f);
}

/* ---- setup -------------------------------------------------------------------------- */

/* A step failed while setting up: undo what was done. */
static void setup_failed(Flow *f, int status, const char *fmt, ...) _printf_(3, 4);
static void setup_failed(Flow *f, int status, const char *fmt, ...) {
        char msg[800];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (f->op_step < f->rec->n_steps)
                set_step(f, f->op_step, "failed", msg);
        if (f->stop_requested) {
                begin_teardown(f, FLOW_STOPPED, true, "stopped on request");
                return;
        }
        if (f->start_call || f->answering) {
                /* A start, or the answer to a module's request: nothing half-created stays; the
                 * caller hears why (the requesting module's entity is disconnected: it turns
                 * the call away). */
                f->start_status = status > 0 ? status : RPC_UNAVAILABLE;
                free(f->start_error);
                f->start_error = strdup(msg);
                begin_teardown(f, FLOW_FAILED, true, "%s", msg);
                return;
        }
        if (!f->stored) {
                /* A flow to an external peer cannot be healed: the peer must offer again. */
                begin_teardown(f, FLOW_FAILED, false, "%s", msg);
                return;
        }
        for (size_t i = 0; i < f->rec->n_steps; i++)
                if (module_gone(step_module(f, i))) {
                        begin_teardown(f, FLOW_FAILED, false, "module %s is gone: %s", f->rec->steps[i].module, msg);
                        return;
                }
        begin_teardown(f, FLOW_DEGRADED, false, "%s", msg);
}

static void activate(Flow *f, const char *why) {
        RpcServerCall *start = TAKE_PTR(f->start_call);
        bool healed = f->op_heal;

        f->op = OP_NONE;
        f->retry_ms = 0;
        if (healed)
                f->rec->n_heals++;
        if (f->answering) {
                /* Answered: from now on an ordinary flow, stored; a heal cannot use the offer again. */
                f->answering = false;
                explicit_bzero(f->peer_offer, strlen(f->peer_offer));
                f->peer_offer = mfree_str(f->peer_offer);
        }
        set_state(f, FLOW_ACTIVE, "%s%s", healed ? "healed: " : "", why);
        if (start)
                reply_flow(start, f, true);
        if (f->stop_requested)
                begin_teardown(f, FLOW_STOPPED, true, "stopped on request");
}

static void on_answered(Module *m, const ModuleCallResult *res, void *userdata) {
        Flow *f = userdata;
        size_t conv = f->op_step;

        if (f->manager->flows_frozen)
                return;
        if (res->status != RPC_OK) {
                f->op_step = conv + 1;
                setup_failed(f, res->status, "step %zu (%s on %s): the WebRTC answer was refused: %s: %s", conv + 1,
                             f->rec->steps[conv].entity_type, f->rec->steps[conv].module,
                             rpc_status_to_string(res->status), res->message);
                return;
        }
        set_step(f, conv + 1, "connected", "answered");
        activate(f, "the call was answered");
}

/* Hand a WebRTC answer from step i to the converter before it (i - 1). */
static void deliver_answer(Flow *f, size_t i, const FlowLink *answer) {
        Module *m = step_module(f, i - 1);
        int r;

        f->op = OP_ANSWER;
        f->op_step = i - 1;
        if (!module_usable(m)) {
                f->op_step = i - 1;
                setup_failed(f, RPC_FAILED_PRECONDITION, "step %zu: module %s is not READY", i,
                             f->rec->steps[i - 1].module);
                return;
        }
        r = module_client_connect_entity(m, f->rec->steps[i - 1].entity_id, f->rec->id, NULL, NULL, answer, NULL,
                                         CONNECT_TIMEOUT_MS, on_answered, f);
        if (r < 0)
                setup_failed(f, RPC_INTERNAL, "step %zu: cannot call module %s: %s", i, m->name, strerror(-r));
}

static bool is_offer(const FlowLink *l) {
        return flow_link_is_set(l) && streq(l->media, "webrtc") && streq(l->sdp_type, "offer");
}

static bool is_answer(const FlowLink *l) {
        return flow_link_is_set(l) && streq(l->media, "webrtc") && streq(l->sdp_type, "answer") && l->sdp && *l->sdp;
}

/* Every step is connected: route a WebRTC answer, or wait for the call to be picked up. */
static void setup_complete(Flow *f) {
        size_t n = f->rec->n_steps;
        RpcServerCall *start;

        if (f->stop_requested) {
                begin_teardown(f, FLOW_STOPPED, true, "stopped on request");
                return;
        }
        if (f->answering) {
                activate(f, "the caller's offer was answered");
                return;
        }
        if (f->peer_offer) {
                if (!is_answer(&f->outputs[n - 1])) {
                        setup_failed(f, RPC_INTERNAL, "step %zu (%s on %s) gave no WebRTC answer to the peer's offer",
                                     n, f->rec->steps[n - 1].entity_type, f->rec->steps[n - 1].module);
                        return;
                }
                activate(f, "the peer's offer was answered");
                return;
        }
        if (n < 2 || !is_offer(&f->outputs[n - 2])) {
                activate(f, "every step is connected");
                return;
        }
        if (is_answer(&f->outputs[n - 1])) {
                deliver_answer(f, n - 1, &f->outputs[n - 1]);
                return;
        }
        if (flow_link_is_set(&f->signal) && f->signal_step == n - 1) {
                /* The answer came while the target was still being connected. */
                FlowLink answer = f->signal;

                f->signal = (FlowLink){};
                deliver_answer(f, n - 1, &answer);
                flow_link_done(&answer);
                return;
        }
        /* The target places a call; the answer comes with KIND_FLOW_SIGNAL. */
        f->op = OP_NONE;
        start = TAKE_PTR(f->start_call);
        set_step(f, n - 1, "ringing", "waiting for the remote party to answer");
        set_state(f, FLOW_PENDING, "ringing: waiting for %s to answer", f->rec->target_entity);
        if (start)
                reply_flow(start, f, true);
}

static void on_connected(Module *m, const ModuleCallResult *res, void *userdata) {
        Flow *f = userdata;
        size_t i = f->op_step;
        const Callassistant__V1__ConnectEntityResponse *resp = (const void *)res->response;
        EntityRecord rec;

        if (f->manager->flows_frozen)
                return;
        if (res->status != RPC_OK) {
                setup_failed(f, res->status, "step %zu (%s %s on %s): ConnectEntity failed: %s: %s", i + 1,
                             f->rec->steps[i].entity_type, f->rec->steps[i].entity_id, f->rec->steps[i].module,
                             rpc_status_to_string(res->status), res->message);
                return;
        }
        if (flow_link_from_proto(&f->outputs[i], resp->output ? &resp->output->base : NULL) < 0) {
                setup_failed(f, RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        if (i + 1 < f->rec->n_steps && !flow_link_is_set(&f->outputs[i])) {
                setup_failed(f, RPC_INTERNAL, "step %zu (%s on %s) gave no output for the next step", i + 1,
                             f->rec->steps[i].entity_type, f->rec->steps[i].module);
                return;
        }
        if (resp->entity && resp->entity->id && streq(resp->entity->id, f->rec->steps[i].entity_id) &&
            entity_record_from_proto(&rec, m->name, resp->entity, true) >= 0) {
                (void)entity_registry_put(&f->manager->entities, &rec);
                entity_record_clear(&rec);
        }
        set_step(f, i, "connected", "");
        f->op_step++;
        f->op_phase = PHASE_CREATE;
        setup_next(f);
}

static void on_created(Module *m, const ModuleCallResult *res, void *userdata) {
        Flow *f = userdata;
        size_t i = f->op_step;
        const Callassistant__V1__Entity *e = (const void *)res->response;
        EntityRecord rec;

        if (f->manager->flows_frozen)
                return;
        if (res->status != RPC_OK) {
                setup_failed(f, res->status, "step %zu (%s on %s): CreateEntity failed: %s: %s", i + 1,
                             f->rec->steps[i].entity_type, f->rec->steps[i].module, rpc_status_to_string(res->status),
                             res->message);
                return;
        }
        if (!e->id || !*e->id || strlen(e->id) > 256) {
                setup_failed(f, RPC_INTERNAL, "step %zu (%s on %s): CreateEntity gave no usable id", i + 1,
                             f->rec->steps[i].entity_type, m->name);
                return;
        }
        if (flow_set_string(&f->rec->steps[i].entity_id, e->id) < 0 ||
            entity_record_from_proto(&rec, m->name, e, true) < 0) {
                setup_failed(f, RPC_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        /* Known at once: a heal must not create it a second time. */
        (void)entity_registry_put(&f->manager->entities, &rec);
        entity_record_clear(&rec);
        set_step(f, i, "pending", "created");
        flow_changed(f);
        f->op_phase = PHASE_CONNECT;
        setup_next(f);
}

static void setup_next(Flow *f) {
        size_t n = f->rec->n_steps;
        int r;

        if (f->stop_requested) {
                begin_teardown(f, FLOW_STOPPED, true, "stopped on request");
                return;
        }
        while (f->op_step < n) {
                size_t i = f->op_step;
                FlowStepRecord *s = &f->rec->steps[i];
                Module *m = step_module(f, i);
                FlowLink peer = {};

                if (!module_usable(m)) {
                        setup_failed(f, RPC_FAILED_PRECONDITION, "step %zu: module %s is not READY", i + 1, s->module);
                        return;
                }
                if (f->op_phase == PHASE_CREATE) {
                        f->op_phase = PHASE_CONNECT;
                        if (s->created && !step_entity(f, i)) {
                                _cleanup_free_ char *name = NULL;

                                if (asprintf(&name, "%s step %zu", f->rec->id, i + 1) < 0) {
                                        setup_failed(f, RPC_RESOURCE_EXHAUSTED, "out of memory");
                                        return;
                                }
                                f->op_phase = PHASE_CREATE;
                                r = module_client_create_entity(m, s->entity_type, name, "{}", CREATE_TIMEOUT_MS,
                                                                on_created, f);
                                if (r < 0)
                                        setup_failed(f, RPC_INTERNAL, "step %zu: cannot call module %s: %s", i + 1,
                                                     m->name, strerror(-r));
                                return;
                        }
                }
                /* PHASE_CONNECT: the previous step's output in, the next step's medium out; an
                 * external peer's offer goes to the last step, a requested flow's caller's to the
                 * converter before its target, and the target gets that converter's answer. */
                if (f->peer_offer && i == offer_step(f))
                        peer = (FlowLink){ .media = (char *)"webrtc", .sdp = f->peer_offer, .sdp_type = (char *)"offer" };
                if (f->answering && i == n - 1 && !is_answer(&f->outputs[i - 1])) {
                        setup_failed(f, RPC_INTERNAL, "step %zu (%s on %s) gave no WebRTC answer to the caller's offer",
                                     i, f->rec->steps[i - 1].entity_type, f->rec->steps[i - 1].module);
                        return;
                }
                r = module_client_connect_entity(m, s->entity_id, f->rec->id, i > 0 ? &f->outputs[i - 1] : NULL,
                                                 s->media_out, f->peer_offer && i == offer_step(f) ? &peer : NULL,
                                                 f->answering && i == n - 1 ? f->request_id : NULL,
                                                 CONNECT_TIMEOUT_MS, on_connected, f);
                if (r < 0)
                        setup_failed(f, RPC_INTERNAL, "step %zu: cannot call module %s: %s", i + 1, m->name,
                                     strerror(-r));
                return;
        }
        setup_complete(f);
}

static void begin_setup(Flow *f, bool heal) {
        f->op = OP_SETUP;
        f->op_heal = heal;
        f->op_step = 0;
        f->op_phase = PHASE_CREATE;
        for (size_t i = 0; i < f->rec->n_steps; i++) {
                flow_link_done(&f->outputs[i]);
                set_step(f, i, "pending", "");
        }
        setup_next(f);
}

/* ---- healing and resuming --------------------------------------------------------- */

/* Are the flow's modules READY with their entities listed, and its ends available? */
static bool ready_to_heal(Flow *f, const char **ret_waiting) {
        Manager *mgr = f->manager;

        for (size_t i = 0; i < f->rec->n_steps; i++) {
                Module *m = step_module(f, i);

                if (!module_usable(m) || !m->entities_synced) {
                        *ret_waiting = f->rec->steps[i].module;
                        return false;
                }
                if (!f->rec->steps[i].created) {
                        EntityRecord *e = entity_registry_find(&mgr->entities, m->name, f->rec->steps[i].entity_id);

                        if (!e || !e->available) {
                                *ret_waiting = f->rec->steps[i].entity_id;
                                return false;
                        }
                }
        }
        return true;
}

static void try_heal(Flow *f) {
        const char *waiting = NULL;

        if (f->op != OP_NONE || !flow_is_live(f) || (f->rec->state != FLOW_DEGRADED && !f->resuming) ||
            f->manager->shutting_down)
                return;
        for (size_t i = 0; i < f->rec->n_steps; i++)
                if (module_gone(step_module(f, i))) {
                        f->resuming = false;
                        begin_teardown(f, FLOW_FAILED, false, "module %s is gone", f->rec->steps[i].module);
                        return;
                }
        if (!ready_to_heal(f, &waiting))
                return;
        if (f->resuming) {
                bool complete = true;

                f->resuming = false;
                for (size_t i = 0; i < f->rec->n_steps && complete; i++)
                        complete = step_entity(f, i);
                if (complete && f->resume_state != FLOW_DEGRADED) {
                        for (size_t i = 0; i < f->rec->n_steps; i++)
                                if (!streq(f->rec->steps[i].state, "ringing"))
                                        set_step(f, i, "connected", "");
                        set_state(f, f->resume_state, "resumed after an orchestrator restart: every entity is there");
                        return;
                }
        }
        begin_setup(f, true);
}

/* Loops over the flows go backwards: a flow that ends is swapped out with the last one. */
static void on_orphan_destroyed(Module *m, const ModuleCallResult *res, void *userdata) {
        char *id = userdata;

        if (res->status == RPC_OK || res->status == RPC_NOT_FOUND) {
                log_info("Module %s: destroyed entity %s, left over by a flow that no longer exists.", m->name, id);
                if (!m->manager->flows_frozen) {
                        (void)entity_registry_remove(&m->manager->entities, m->name, id);
                        m->manager->orphan_sweep_ms = 0;
                }
        } else {
                log_warning("Module %s: DestroyEntity %s, left over by a flow, failed (%s: %s); trying again later.",
                            m->name, id, rpc_status_to_string(res->status), res->message);
                schedule_orphan_sweep(m->manager);
        }
        free(id);
}

/* Entities a flow created are named "<flow id> step <n>". One whose flow does not know it any
 * more (the orchestrator died while setting it up or healing it, or it served a flow to an
 * external peer) is destroyed. */
static void collect_orphans(Module *m) {
        Manager *mgr = m->manager;

        for (size_t i = 0; i < mgr->entities.n; i++) {
                EntityRecord *e = mgr->entities.items[i];
                char flow_id[22];
                unsigned step;
                Flow *f;
                char *id;

                if (!streq(e->module, m->name) || sscanf(e->name, "%21s step %u", flow_id, &step) != 2 ||
                    !flow_id_valid(flow_id))
                        continue;
                f = flows_find(mgr, flow_id);
                if (f && step >= 1 && step <= f->rec->n_steps) {
                        if (streq(f->rec->steps[step - 1].entity_id, e->id))
                                continue;
                        if (f->op != OP_NONE) {
                                /* Its flow is busy (setting up, healing, tearing down): look again later. */
                                schedule_orphan_sweep(mgr);
                                continue;
                        }
                }
                id = strdup(e->id);
                if (!id || module_client_destroy_entity(m, id, TEARDOWN_TIMEOUT_MS, on_orphan_destroyed, id) < 0)
                        free(id);
        }
}

/* Module m listed its entities (it is READY again): an entity a flow created there that is
 * not listed, or listed as another flow's (its id was given again after a restart), went
 * with the module. Forget its id before any heal creates new entities there, so that neither
 * a heal, a resume nor a teardown of the flow can take another flow's entity for its own. */
static void forget_lost_entities(Flow *f, Module *m) {
        for (size_t i = 0; i < f->rec->n_steps; i++) {
                FlowStepRecord *s = &f->rec->steps[i];

                if (!s->created || !*s->entity_id || !streq(s->module, m->name) || step_entity(f, i))
                        continue;
                log_debug("Flow %s: entity %s of step %zu went with a restart of module %s.", f->rec->id,
                          s->entity_id, i + 1, m->name);
                if (flow_set_string(&s->entity_id, "") < 0)
                        (void)log_oom();
        }
}

void flows_module_ready(Module *m) {
        Manager *mgr = m->manager;

        for (size_t i = 0; i < mgr->n_flows; i++)
                forget_lost_entities(mgr->flows[i], m);
        collect_orphans(m);
        for (size_t i = mgr->n_flows; i-- > 0;) {
                Flow *f = mgr->flows[i];

                for (size_t k = 0; k < f->rec->n_steps; k++)
                        if (streq(f->rec->steps[k].module, m->name)) {
                                try_heal(f);
                                break;
                        }
        }
}

void flows_module_down(Module *m) {
        Manager *mgr = m->manager;

        /* At shutdown the modules are stopped on purpose: the flows stay stored as they are and
         * are healed at the next start. */
        if (mgr->shutting_down || mgr->flows_frozen)
                return;
        for (size_t i = mgr->n_flows; i-- > 0;) {
                Flow *f = mgr->flows[i];
                bool involved = false;

                if (!flow_is_live(f) || f->op == OP_TEARDOWN)
                        continue;
                for (size_t k = 0; k < f->rec->n_steps; k++)
                        if (streq(f->rec->steps[k].module, m->name)) {
                                involved = true;
                                set_step(f, k, "lost", module_state_to_string(m->state));
                        }
                if (!involved || f->op != OP_NONE)
                        continue; /* an operation in flight fails by itself and decides */
                if (!f->stored) {
                        begin_teardown(f, FLOW_FAILED, false, "module %s is %s: start the live view again", m->name,
                                       module_state_to_string(m->state));
                        continue;
                }
                if (module_gone(m)) {
                        begin_teardown(f, FLOW_FAILED, false, "module %s is %s: %s", m->name,
                                       module_state_to_string(m->state), m->state_message ? m->state_message : "");
                        continue;
                }
                set_state(f, FLOW_DEGRADED, "module %s is %s%s%s", m->name, module_state_to_string(m->state),
                          m->state_message ? ": " : "", m->state_message ? m->state_message : "");
        }
}

void flows_entity_changed(Manager *mgr, const char *module, const char *id) {
        for (size_t i = mgr->n_flows; i-- > 0;) {
                Flow *f = mgr->flows[i];
                const FlowRecord *r = f->rec;
                EntityRecord *e;

                if (!((streq(r->source_module, module) && streq(r->source_entity, id)) ||
                      (streq(r->target_module, module) && streq(r->target_entity, id))))
                        continue;
                e = entity_registry_find(&mgr->entities, module, id);
                if (e && e->available)
                        try_heal(f);
                else if (f->op == OP_NONE && flow_is_live(f) && f->rec->state != FLOW_DEGRADED && !mgr->shutting_down)
                        set_state(f, FLOW_DEGRADED, "entity %s of module %s is %s", id, module,
                                  e ? "unavailable" : "gone");
        }
}

/* ---- what modules report ------------------------------------------------------------ */

/* The step of flow f that module m's entity id serves, or -1. */
static ssize_t find_step(Flow *f, const Module *m, const char *id) {
        for (size_t i = 0; i < f->rec->n_steps; i++)
                if (streq(f->rec->steps[i].module, m->name) && streq(f->rec->steps[i].entity_id, id))
                        return (ssize_t)i;
        return -1;
}

static Flow *flow_of_report(Module *m, const Callassistant__V1__Event *ev, ssize_t *ret_step) {
        Flow *f = flows_find(m->manager, ev->flow_id);
        ssize_t i = f ? find_step(f, m, ev->entity->id) : -1;

        if (i < 0) {
                log_warning("Module %s reported about flow %s and entity %s, which it does not serve; ignoring.",
                            m->name, ev->flow_id, ev->entity->id);
                return NULL;
        }
        *ret_step = i;
        return f;
}

void flows_signal(Module *m, const Callassistant__V1__Event *ev) {
        FlowLink link = {};
        ssize_t i;
        Flow *f;

        f = flow_of_report(m, ev, &i);
        if (!f || !flow_is_live(f))
                return;
        if (i == 0 || flow_link_from_proto(&link, ev->link ? &ev->link->base : NULL) < 0 || !is_answer(&link) ||
            !(is_offer(&f->outputs[i - 1]) ||
              (!flow_link_is_set(&f->outputs[i - 1]) && streq(f->rec->steps[i - 1].media_out, "webrtc")))) {
                log_warning("Flow %s: module %s signalled something other than a WebRTC answer to the offer "
                            "of the step before it; ignoring.", f->rec->id, m->name);
                flow_link_done(&link);
                return;
        }
        if (f->op != OP_NONE) {
                /* Delivered once the operation in flight is over. */
                flow_link_done(&f->signal);
                f->signal = link;
                f->signal_step = (size_t)i;
                return;
        }
        deliver_answer(f, (size_t)i, &link);
        flow_link_done(&link);
}

void flows_ended(Module *m, const Callassistant__V1__Event *ev) {
        char reason[600];
        ssize_t i;
        Flow *f;

        f = flow_of_report(m, ev, &i);
        if (!f || !flow_is_live(f))
                return;
        snprintf(reason, sizeof(reason), "ended by %s (%s): %s", m->name, ev->entity->id,
                 ev->reason && *ev->reason ? ev->reason : "no reason given");
        set_step(f, (size_t)i, "ended", ev->reason);
        if (f->op != OP_NONE) {
                f->stop_requested = true;
                return;
        }
        begin_teardown(f, FLOW_STOPPED, true, "%s", reason);
}

/* ---- StartFlow / StopFlow ---------------------------------------------------------- */

Flow *flows_find(Manager *mgr, const char *id) {
        for (size_t i = 0; id && i < mgr->n_flows; i++)
                if (streq(mgr->flows[i]->rec->id, id))
                        return mgr->flows[i];
        return NULL;
}

/* An end of a flow: its module READY, its entity known and available. 0 and *ret the entity's
 * type; or the RPC status to fail with, and msg says why. */
static int resolve_end(Manager *mgr, const char *what, const char *module, const char *id, const EntityType **ret,
                       char *msg, size_t size) {
        const EntityType *t;
        EntityRecord *e;
        Module *m;

        if (!module || !*module || !id || !*id) {
                snprintf(msg, size, "%s: a module and an entity id are required", what);
                return RPC_INVALID_ARGUMENT;
        }
        m = registry_find(&mgr->registry, module);
        e = m ? entity_registry_find(&mgr->entities, m->name, id) : NULL;
        if (!m || !e) {
                snprintf(msg, size, m ? "%s: module %s has no entity %.256s" : "%s: no such module %s%.0s", what,
                         module, id);
                return RPC_NOT_FOUND;
        }
        if (m->state != MODULE_READY || !e->available) {
                snprintf(msg, size, "%s: module %s is %s%s", what, m->name, module_state_to_string(m->state),
                         m->state == MODULE_READY ? ", entity not available" : "");
                return RPC_FAILED_PRECONDITION;
        }
        t = module_find_entity_type(m, e->type);
        if (!t) {
                snprintf(msg, size, "%s: entity %.256s has type %s, which module %s did not declare", what, e->id,
                         e->type, m->name);
                return RPC_FAILED_PRECONDITION;
        }
        *ret = t;
        return 0;
}

static int cmp_converters(const void *a, const void *b) {
        const PathConverter *x = a, *y = b;
        int c = strcmp(x->module, y->module);

        return c ? c : strcmp(x->type, y->type);
}

/* Converter types of READY modules, sorted by module and type. */
static int collect_converters(Manager *mgr, PathConverter **ret, size_t *ret_n) {
        PathConverter *l = NULL;
        size_t n = 0, cap = 0;

        for (size_t i = 0; i < mgr->registry.n_modules; i++) {
                Module *m = mgr->registry.modules[i];

                if (m->state != MODULE_READY)
                        continue;
                for (size_t k = 0; k < m->n_entity_types; k++) {
                        const EntityType *t = &m->entity_types[k];

                        if (strv_length(t->media_in) == 0 || strv_length(t->media_out) == 0)
                                continue;
                        if (n == cap) {
                                PathConverter *nl = realloc(l, (cap = cap ? 2 * cap : 8) * sizeof(*l));
                                if (!nl) {
                                        free(l);
                                        return -ENOMEM;
                                }
                                l = nl;
                        }
                        l[n++] = (PathConverter){ m->name, t->name, t->media_in, t->media_out };
                }
        }
        if (n > 1)
                qsort(l, n, sizeof(*l), cmp_converters);
        *ret = l;
        *ret_n = n;
        return 0;
}

static void join_media(char *buf, size_t size, char *const *l) {
        size_t o = 0;

        buf[0] = 0;
        for (; l && *l && o < size; l++)
                o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? ", " : "", *l);
        if (!buf[0])
                snprintf(buf, size, "nothing");
}

static int step_init(FlowStepRecord *s, const char *module, const char *entity_id, const char *type, bool created,
                     const char *media_in, const char *media_out) {
        if (flow_set_string(&s->module, module) < 0 || flow_set_string(&s->entity_id, entity_id) < 0 ||
            flow_set_string(&s->entity_type, type) < 0 || flow_set_string(&s->media_in, media_in) < 0 ||
            flow_set_string(&s->media_out, media_out) < 0 || flow_set_string(&s->state, "pending") < 0 ||
            flow_set_string(&s->message, "") < 0)
                return -ENOMEM;
        s->created = created;
        return 0;
}

/* What a flow is asked to connect: StartFlow's request, or a module's KIND_FLOW_REQUEST. */
typedef struct FlowEnds {
        const char *source_module, *source_id;
        const char *target_module, *target_id;  /* NULL: an external WebRTC peer */
        const char *offer;                      /* the peer's or the caller's WebRTC offer */
        const char *request_id;                 /* a module's request */
} FlowEnds;

/* The flow object for a path: source, converters, target (none for an external peer). */
static int flow_new(Manager *mgr, const FlowEnds *ends, const EntityType *src_type, const EntityType *tgt_type,
                    const FlowPath *path, const PathConverter *conv, Flow **ret) {
        bool peer = !tgt_type;
        size_t n = path->n_steps + (peer ? 1 : 2), k = 0;
        Flow *f;
        int r;

        f = new0(Flow, 1);
        if (!f)
                return -ENOMEM;
        f->manager = mgr;
        f->stored = !peer;
        f->rec = new0(FlowRecord, 1);
        if (!f->rec)
                goto oom;
        f->rec->steps = new0(FlowStepRecord, n);
        f->outputs = new0(FlowLink, n);
        if (!f->rec->steps || !f->outputs)
                goto oom;
        f->rec->n_steps = n;
        r = flow_id_new(&f->rec->id);
        if (r < 0) {
                flow_free(f);
                return r;
        }
        if (flow_set_string(&f->rec->source_module, ends->source_module) < 0 ||
            flow_set_string(&f->rec->source_entity, ends->source_id) < 0 ||
            flow_set_string(&f->rec->reason, ends->request_id ? "answering a call" : "setting up") < 0)
                goto oom;
        if (!peer && (flow_set_string(&f->rec->target_module, ends->target_module) < 0 ||
                      flow_set_string(&f->rec->target_entity, ends->target_id) < 0))
                goto oom;
        if (ends->offer && !(f->peer_offer = strndup(ends->offer, 64 * 1024)))
                goto oom;
        if (ends->request_id) {
                f->request_id = strdup(ends->request_id);
                if (!f->request_id)
                        goto oom;
                f->requested = f->answering = true;
        }
        f->rec->state = FLOW_PENDING;
        f->rec->created_usec = f->rec->changed_usec = realtime_usec();

        if (step_init(&f->rec->steps[k++], ends->source_module, ends->source_id, src_type->name, false, "",
                      path->source_media) < 0)
                goto oom;
        for (size_t i = 0; i < path->n_steps; i++) {
                const PathConverter *c = &conv[path->steps[i].converter];

                if (step_init(&f->rec->steps[k++], c->module, "", c->type, true, path->steps[i].media_in,
                              path->steps[i].media_out) < 0)
                        goto oom;
        }
        if (!peer && step_init(&f->rec->steps[k++], ends->target_module, ends->target_id, tgt_type->name, false,
                               path->target_media, "") < 0)
                goto oom;
        *ret = f;
        return 0;
oom:
        flow_free(f);
        return -ENOMEM;
}

/* Find the path and make the flow (added to the manager's, not set up yet). 0, or the RPC
 * status to fail with and msg says why. */
static int flow_create(Manager *mgr, const FlowEnds *ends, Flow **ret, char *msg, size_t size) {
        static char *const webrtc[] = { (char *)"webrtc", NULL };
        _cleanup_free_ PathConverter *conv = NULL;
        const EntityType *src, *tgt = NULL;
        bool peer = !ends->target_module;
        char from[200], to[200];
        char *const *want;
        FlowPath path = {};
        size_t n_conv = 0;
        Flow *f, **l;
        int r;

        if (mgr->shutting_down) {
                snprintf(msg, size, "the orchestrator is shutting down");
                return RPC_UNAVAILABLE;
        }
        if (mgr->n_flows >= MAX_FLOWS) {
                snprintf(msg, size, "too many flows");
                return RPC_RESOURCE_EXHAUSTED;
        }
        r = resolve_end(mgr, "source", ends->source_module, ends->source_id, &src, msg, size);
        if (r != 0)
                return r;
        if (!peer) {
                if (streq(ends->source_module, ends->target_module) && streq(ends->source_id, ends->target_id)) {
                        snprintf(msg, size, "target: the same entity as the source");
                        return RPC_INVALID_ARGUMENT;
                }
                r = resolve_end(mgr, "target", ends->target_module, ends->target_id, &tgt, msg, size);
                if (r != 0)
                        return r;
        }
        /* An offer, the peer's or a caller's, is answered by a converter that gives WebRTC. */
        want = peer ? webrtc : tgt->media_in;
        if (ends->offer && !peer) {
                if (!strv_contains(tgt->media_in, "webrtc")) {
                        snprintf(msg, size, "target: %s takes no webrtc, so it cannot be given the answer to a "
                                 "WebRTC offer", tgt->name);
                        return RPC_INVALID_ARGUMENT;
                }
                want = webrtc;
        }
        if (collect_converters(mgr, &conv, &n_conv) < 0) {
                snprintf(msg, size, "out of memory");
                return RPC_RESOURCE_EXHAUSTED;
        }
        r = flow_path_find(src->media_out, want, conv, n_conv, MAX_CONVERTERS, &path);
        if (r == -ENOENT || (r >= 0 && ends->offer && path.n_steps == 0)) {
                join_media(from, sizeof(from), src->media_out);
                join_media(to, sizeof(to), want);
                snprintf(msg, size,
                         "no path: the source (%s) gives %s, the %s takes %s, and no chain of converters of READY "
                         "modules (%zu converter types) leads from one to the other%s",
                         src->name, from, peer ? "peer" : "target", to, n_conv,
                         ends->offer && !peer ? " (one converter at least, to answer the offer)" : "");
                flow_path_done(&path);
                return RPC_INVALID_ARGUMENT;
        }
        if (r < 0 || flow_new(mgr, ends, src, tgt, &path, conv, &f) < 0) {
                flow_path_done(&path);
                snprintf(msg, size, "out of memory");
                return RPC_RESOURCE_EXHAUSTED;
        }
        flow_path_done(&path);
        l = realloc(mgr->flows, (mgr->n_flows + 1) * sizeof(*l));
        if (!l) {
                flow_free(f);
                snprintf(msg, size, "out of memory");
                return RPC_RESOURCE_EXHAUSTED;
        }
        mgr->flows = l;
        mgr->flows[mgr->n_flows++] = f;
        *ret = f;
        return 0;
}

void flows_start(Manager *mgr, RpcServerCall *call, const Callassistant__V1__StartFlowRequest *req) {
        bool peer = req->peer_offer_sdp && *req->peer_offer_sdp;
        FlowEnds ends = {};
        char msg[800];
        Flow *f;
        int r;

        if (peer == (req->target && req->target->module && *req->target->module)) {
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT,
                                           "target: give either a target entity or a peer's WebRTC offer");
                return;
        }
        if (peer && strlen(req->peer_offer_sdp) > 64 * 1024) {
                (void)rpc_server_call_fail(call, RPC_INVALID_ARGUMENT, "peer_offer_sdp: longer than 64 KiB");
                return;
        }
        if (req->source) {
                ends.source_module = req->source->module;
                ends.source_id = req->source->id;
        }
        if (peer)
                ends.offer = req->peer_offer_sdp;
        else {
                ends.target_module = req->target->module;
                ends.target_id = req->target->id ? req->target->id : "";
        }
        r = flow_create(mgr, &ends, &f, msg, sizeof(msg));
        if (r != 0) {
                (void)rpc_server_call_fail(call, r, msg);
                return;
        }
        log_info("Flow %s: %s/%s -> %s%s%s through %zu converter(s).", f->rec->id, f->rec->source_module,
                 f->rec->source_entity, peer ? "an external WebRTC peer" : f->rec->target_module, peer ? "" : "/",
                 peer ? "" : f->rec->target_entity, f->rec->n_steps - (peer ? 1 : 2));
        f->start_call = call;
        flow_changed(f);
        begin_setup(f, false);
}

/* Live flows module m requested. */
static size_t n_requested(Manager *mgr, const Module *m) {
        size_t n = 0;

        for (size_t i = 0; i < mgr->n_flows; i++)
                n += mgr->flows[i]->requested && flow_is_live(mgr->flows[i]) &&
                     streq(mgr->flows[i]->rec->target_module, m->name);
        return n;
}

void flows_request(Module *m, RpcServerCall *call, const Callassistant__V1__Event *ev) {
        Callassistant__V1__ReportEventResponse resp = CALLASSISTANT__V1__REPORT_EVENT_RESPONSE__INIT;
        Manager *mgr = m->manager;
        const char *problem = NULL;
        FlowRequestFields fields = {
                .reporter = m->name,
                .claimed_module = ev->module,
                .target_id = ev->entity ? ev->entity->id : NULL,
                .source_module = ev->flow_source ? ev->flow_source->module : NULL,
                .source_id = ev->flow_source ? ev->flow_source->id : NULL,
                .request_id = ev->request_id,
                .media = ev->link ? ev->link->media : NULL,
                .sdp_type = ev->link ? ev->link->sdp_type : NULL,
                .sdp = ev->link ? ev->link->sdp : NULL,
        };
        FlowEnds ends;
        char msg[800];
        Flow *f;
        int r;

        r = flow_request_check(&fields, &problem);
        if (r < 0) {
                snprintf(msg, sizeof(msg), "%s", problem);
                r = r == -EPERM ? RPC_PERMISSION_DENIED : RPC_INVALID_ARGUMENT;
        } else if (n_requested(mgr, m) >= MAX_REQUESTED_PER_MODULE) {
                snprintf(msg, sizeof(msg), "module %s has %d requested flows already", m->name,
                         MAX_REQUESTED_PER_MODULE);
                r = RPC_RESOURCE_EXHAUSTED;
        } else {
                ends = (FlowEnds){ fields.source_module, fields.source_id, m->name, fields.target_id, fields.sdp,
                                   fields.request_id };
                r = flow_create(mgr, &ends, &f, msg, sizeof(msg));
        }
        if (r != 0) {
                char target[65];

                /* Untrusted text: bounded, control characters replaced. */
                snprintf(target, sizeof(target), "%s", fields.target_id ? fields.target_id : "");
                printable(target);
                printable(msg);
                api_log_refusal(mgr->api, "Refused a flow request of module %s into its entity %s: %s", m->name,
                                target, msg);
                (void)rpc_server_call_fail(call, r, msg);
                return;
        }
        log_info("Flow %s: %s/%s -> %s/%s through %zu converter(s), requested by module %s to answer a call "
                 "(request %s).", f->rec->id, f->rec->source_module, f->rec->source_entity, f->rec->target_module,
                 f->rec->target_entity, f->rec->n_steps - 2, m->name, f->request_id);
        resp.flow_id = f->rec->id;
        (void)rpc_server_call_reply(call, &resp.base);
        flow_changed(f);
        begin_setup(f, false);
}

void flows_stop(Manager *mgr, RpcServerCall *call, const char *id) {
        Flow *f = flows_find(mgr, id);

        if (!f) {
                (void)rpc_server_call_fail(call, RPC_NOT_FOUND, "no such flow");
                return;
        }
        if (f->stop_call || (f->op == OP_TEARDOWN && f->end_state != FLOW_DEGRADED)) {
                (void)rpc_server_call_fail(call, RPC_FAILED_PRECONDITION, "the flow is being torn down already");
                return;
        }
        if (f->op == OP_TEARDOWN) {
                /* Rolling back a failed heal: end it for good instead of retrying. */
                f->stop_call = call;
                f->end_state = FLOW_STOPPED;
                f->forget_after = true;
                free(f->end_reason);
                f->end_reason = strdup("stopped on request");
                return;
        }
        f->stop_call = call;
        if (f->op != OP_NONE) {
                f->stop_requested = true; /* after the operation in flight */
                return;
        }
        begin_teardown(f, FLOW_STOPPED, true, "stopped on request");
}

/* ---- startup and exit --------------------------------------------------------------- */

static void on_corrupt(const char *path, const char *problem, void *userdata) {
        log_error("%s: %s", path, problem);
}

int flows_init(Manager *mgr) {
        FlowRecord **recs = NULL;
        size_t n = 0;
        int r;

        if (asprintf(&mgr->flows_dir, "%s/flows", mgr->config.state_dir) < 0)
                return log_oom();
        r = mkdir_p(mgr->flows_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", mgr->flows_dir);
        r = flow_store_load_all(mgr->flows_dir, &recs, &n, on_corrupt, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot read the stored flows in %s: %m", mgr->flows_dir);
        mgr->flows = new0(Flow *, n + 1);
        if (!mgr->flows && n > 0)
                goto oom;
        for (size_t i = 0; i < n; i++) {
                Flow *f = new0(Flow, 1);

                if (!f)
                        goto oom;
                f->manager = mgr;
                f->rec = TAKE_PTR(recs[i]);
                f->stored = true;
                f->outputs = new0(FlowLink, f->rec->n_steps);
                mgr->flows[mgr->n_flows++] = f;
                if (!f->outputs)
                        goto oom;
                if (f->rec->state == FLOW_STOPPED) {
                        remove_flow(f);
                        continue;
                }
                if (f->rec->state == FLOW_FAILED)
                        continue;
                /* Checked once its modules are READY: resumed as it was, or healed. */
                f->resuming = true;
                f->resume_state = f->rec->state;
                f->rec->state = FLOW_DEGRADED;
                (void)flow_set_string(&f->rec->reason, "the orchestrator restarted: checking the flow's entities");
        }
        free(recs);
        if (mgr->n_flows > 0)
                log_info("Loaded %zu stored flow(s).", mgr->n_flows);
        return 0;
oom:
        for (size_t i = 0; i < n; i++)
                flow_record_free(recs[i]);
        free(recs);
        return log_oom();
}

void flows_freeze(Manager *mgr) {
        mgr->flows_frozen = true;
}

void flows_done(Manager *mgr) {
        mgr->orphan_sweep = sd_event_source_disable_unref(mgr->orphan_sweep);
        for (size_t i = 0; i < mgr->n_flows; i++) {
                Flow *f = mgr->flows[i];

                /* Callers still waiting get an answer; nothing more is stored. */
                if (f->start_call)
                        (void)rpc_server_call_fail(f->start_call, RPC_UNAVAILABLE, "the orchestrator is exiting");
                if (f->stop_call)
                        (void)rpc_server_call_fail(f->stop_call, RPC_UNAVAILABLE, "the orchestrator is exiting");
                flow_free(f);
        }
        free(mgr->flows);
        mgr->flows = NULL;
        mgr->n_flows = 0;
        free(mgr->flows_dir);
        mgr->flows_dir = NULL;
}
