/* A module on the C SDK for the SDK's own tests: a discovered "sensor" source, and
 * "relay" converters whose ConnectEntity completes asynchronously. What it does depends on the
 * flow id the test peer sends:
 *   async      completes after 50 ms with an SDP answer, reports metrics and a flow signal
 *   sync       completes in the callback (ca_flow_op_set_output, return 0)
 *   inline     completes in the callback with ca_flow_op_complete, then returns CA_PENDING
 *   fail       fails after 50 ms with -EINVAL and a message
 *   fail-now   fails at once with -EBUSY
 *   slow       completes after 1 s (the caller may be gone by then)
 *   ask        (on a "phone") asks the orchestrator for a flow from cams/cam-1 into this entity
 *              (ca_module_request_flow, request "call-7"; flow "ask-again": "call-8") and
 *              completes at once; the answer shows as the entity's state, "requested:<flow
 *              id>" or "refused:<errno>"
 * A ConnectEntity carrying a request id completes at once with "took <request id>: <the
 * answer in input>" as its SDP.
 * DisconnectEntity reports KIND_FLOW_ENDED; disconnecting flow "forget-sensor" removes the
 * discovered sensor (KIND_ENTITY_REMOVED). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include <call-assistant-module.h>

static int create_entity(CaModule *m, CaEntity *e, char **ret_error, void *userdata) {
        return ca_entity_set_state(e, "idle");
}

static void finish(CaModule *m, CaFlowOp *op) {
        char sdp[512];
        CaMediaLink out = { .media = "webrtc", .sdp = sdp, .sdp_type = "answer" };

        if (strcmp(op->flow_id, "fail") == 0) {
                ca_flow_op_fail(op, -EINVAL, "input.url: the relay cannot reach it");
                return;
        }
        /* The answer quotes the offer and the input's medium (never its URL: it may carry a
         * password), so the test sees both were passed through. */
        snprintf(sdp, sizeof(sdp), "v=0 answer-to:%s input:%s", op->peer && op->peer->sdp ? op->peer->sdp : "-",
                 op->input ? op->input->media : "-");
        if (op->entity) {
                static const char *const names[] = { "bitrate", "frames" };
                static const double values[] = { 1500.5, 42 };
                (void)ca_entity_set_state(op->entity, "active");
                (void)ca_entity_set_attribute(op->entity, "peers", "1");
                ca_module_entity_changed(m, op->entity);
                (void)ca_module_report_metrics(m, op->entity, names, values, 2);
                (void)ca_module_report_flow_signal(m, op->entity, op->flow_id, &out);
        }
        ca_flow_op_complete(op, &out);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CaFlowOp *op = userdata;
        finish(op->data, op);
        return 0;
}

static void on_requested(CaModule *m, int error, const char *flow_id, const char *message, void *userdata) {
        CaEntity *e = ca_module_find_entity(m, userdata);
        char state[96];

        if (error < 0)
                snprintf(state, sizeof(state), "refused:%d", error);
        else
                snprintf(state, sizeof(state), "requested:%s", flow_id);
        if (e) {
                (void)ca_entity_set_state(e, state);
                ca_module_entity_changed(m, e);
        }
        free(userdata);
}

static int connect_entity(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata) {
        sd_event *ev = ca_module_get_event(m);
        uint64_t now, delay = 50000;

        if (op->request_id && *op->request_id) {
                char sdp[512];
                CaMediaLink out = { .media = "webrtc", .sdp = sdp, .sdp_type = "answer" };

                snprintf(sdp, sizeof(sdp), "took %s: %s", op->request_id,
                         op->input && op->input->sdp ? op->input->sdp : "-");
                return ca_flow_op_set_output(op, &out);
        }
        if (strcmp(op->flow_id, "ask") == 0 || strcmp(op->flow_id, "ask-again") == 0) {
                char *id = strdup(op->entity->id);
                int r;

                if (!id)
                        return -ENOMEM;
                r = ca_module_request_flow(m, op->entity, "cams", "cam-1",
                                           strcmp(op->flow_id, "ask") == 0 ? "call-7" : "call-8",
                                           "v=0 OFFER-OF-THE-CALLER", on_requested, id);
                if (r < 0) {
                        free(id);
                        return r;
                }
                return ca_flow_op_set_output(op, NULL);
        }

        if (strcmp(op->flow_id, "sync") == 0) {
                CaMediaLink out = { .media = "hls", .url = "http://127.0.0.1:1/relay.m3u8" };
                return ca_flow_op_set_output(op, &out);
        }
        if (strcmp(op->flow_id, "inline") == 0) {
                ca_flow_op_complete(op, NULL);
                return CA_PENDING;
        }
        if (strcmp(op->flow_id, "fail-now") == 0) {
                *ret_error = strdup("relay is busy");
                return -EBUSY;
        }
        if (strcmp(op->flow_id, "slow") == 0)
                delay = 1000000;
        op->data = m;
        (void)sd_event_now(ev, CLOCK_MONOTONIC, &now);
        if (sd_event_add_time(ev, NULL, CLOCK_MONOTONIC, now + delay, 0, on_timer, op) < 0)
                return -ENOMEM;
        return CA_PENDING;
}

static int disconnect_entity(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata) {
        if (strcmp(op->flow_id, "forget-sensor") == 0)
                ca_module_remove_entity(m, ca_module_find_entity(m, "sensor-1"));
        return ca_module_report_flow_ended(m, op->entity, op->flow_id, "disconnected on request");
}

int main(void) {
        static const char *const rtsp[] = { "rtsp", NULL };
        static const char *const outs[] = { "webrtc", "hls", NULL };
        static const char *const webrtc[] = { "webrtc", NULL };
        static const CaEntityType types[] = {
                { .name = "sensor", .description = "a discovered source", .media_out = rtsp },
                { .name = "relay", .description = "a converter", .media_in = rtsp, .media_out = outs,
                  .config_schema = "{\"type\": \"object\"}" },
                { .name = "phone", .description = "a call target that answers calls", .media_in = webrtc },
        };
        const CaModuleInfo info = { .name = "flow-test", .version = "1", .entity_types = types, .n_entity_types = 3 };
        const CaModuleCallbacks cb = { .create_entity = create_entity, .connect_entity = connect_entity,
                                       .disconnect_entity = disconnect_entity };
        CaModule *m = NULL;
        CaEntity *sensor;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        r = ca_module_new(&m, &info, &cb, NULL);
        /* Found before the loop runs: the SDK reports it once it can reach the orchestrator. */
        if (r >= 0)
                r = ca_module_add_entity(m, "sensor", "sensor-1", "hall sensor", &sensor);
        if (r >= 0)
                r = ca_module_add_entity(m, "sensor", "sensor-1", "again", NULL) == -EEXIST ? 0 : -EIO;
        if (r >= 0)
                r = ca_module_run(m);
        ca_module_free(m);
        return r < 0 ? 1 : 0;
}
