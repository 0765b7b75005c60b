/* go2rtc: converter entities that take an RTSP stream and give WebRTC (to a peer whose offer
 * comes through the control plane, or as an offer of their own) and HLS. Two backends behind
 * the one entity type: go2rtc through its HTTP API (a server URL, or a go2rtc binary run as a
 * child), and the built-in GStreamer pipeline (the default): no transcoding for H.264. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <call-assistant-module.h>

#include "go2rtc-api.h"
#include "gst-converter.h"
#include "hls-server.h"
#include "http-client.h"
#include "shared/log.h"
#include "shared/macro.h"

typedef struct Settings {
        bool use_go2rtc;
        char *go2rtc_url, *go2rtc_binary;
        char *hls_address;
        unsigned hls_port;
        char **ice_addresses;
        unsigned retry_min_ms, retry_max_ms, stall_timeout_ms, metrics_interval_s;
} Settings;

typedef struct Module Module;

typedef struct Converter {
        Module *mod;
        CaEntity *entity;
        GstConverter *gst;
        char *source;           /* go2rtc backend: the RTSP URL given (secret) */
        uint64_t last_bytes;    /* for the bitrate */
        uint64_t last_frames;
        bool go2rtc_flowing;
} Converter;

/* A ConnectEntity waiting for an SDP, or (built-in HLS) for the first playlist. */
typedef struct Pending {
        Converter *conv;
        CaFlowOp *op;
        void *handle;           /* go2rtc backend: the HTTP call */
        sd_event_source *hls_poll;
        char *hls_playlist;     /* the file that must exist ... */
        char *hls_url;          /* ... before this URL is given out */
        uint64_t hls_deadline;  /* CLOCK_MONOTONIC, usec */
        struct Pending *next;
} Pending;

#define HLS_POLL_USEC (50 * 1000)
/* The first segment ends at a keyframe at least a target duration (1 s) after the first one:
 * allow a few keyframe intervals beyond the stall timeout. */
#define HLS_FIRST_SEGMENT_MS 5000u

struct Module {
        CaModule *m;
        sd_event *event;
        Settings s;
        HttpClient *http;
        Go2rtc *go2rtc;
        HlsServer *hls;
        char *hls_dir;
        char *runtime_dir;
        sd_event_source *metrics_timer;
        Converter **convs;
        size_t n_convs;
        Pending *pending;
};

static const char *const media_in[] = { "rtsp", NULL };
static const char *const media_out[] = { "webrtc", "hls", NULL };
static const char *const caps_converter[] = { "webrtc", "hls", "rtsp", NULL };

static const CaEntityType entity_types[] = {
        { .name = "converter", .description = "RTSP to WebRTC and HLS, without transcoding H.264",
          .capabilities = caps_converter, .media_in = media_in, .media_out = media_out,
          .config_schema = "{\"type\": \"object\", \"additionalProperties\": false}" },
};

static const char config_schema[] =
        "{\"type\": \"object\", \"additionalProperties\": false, \"properties\": {"
        "\"backend\": {\"type\": \"string\", \"enum\": [\"builtin\", \"go2rtc\"]},"
        "\"go2rtc_url\": {\"type\": \"string\", \"description\": \"go2rtc API base URL\"},"
        "\"go2rtc_binary\": {\"type\": \"string\", \"description\": \"run this go2rtc as a child\"},"
        "\"hls_address\": {\"type\": \"string\", \"default\": \"127.0.0.1\"},"
        "\"hls_port\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 65535, \"default\": 8890},"
        "\"ice_addresses\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
        "\"retry_min_ms\": {\"type\": \"integer\", \"minimum\": 50, \"maximum\": 60000, \"default\": 500},"
        "\"retry_max_ms\": {\"type\": \"integer\", \"minimum\": 100, \"maximum\": 600000, \"default\": 30000},"
        "\"stall_timeout_ms\": {\"type\": \"integer\", \"minimum\": 500, \"maximum\": 600000, \"default\": 5000},"
        "\"metrics_interval_s\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 3600, \"default\": 5}}}";

/* ---- settings ---- */

static void settings_clear(Settings *s) {
        free(s->go2rtc_url);
        free(s->go2rtc_binary);
        free(s->hls_address);
        strv_free(s->ice_addresses);
        *s = (Settings){};
}

static void settings_default(Settings *s) {
        *s = (Settings){ .hls_address = strdup("127.0.0.1"), .hls_port = 8890, .retry_min_ms = 500,
                         .retry_max_ms = 30000, .stall_timeout_ms = 5000, .metrics_interval_s = 5 };
}

static void add_problem(char **list, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void add_problem(char **list, const char *format, ...) {
        char *item = NULL, *joined = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&item, format, ap) < 0)
                item = NULL;
        va_end(ap);
        if (!item)
                return;
        if (*list && asprintf(&joined, "%s; %s", *list, item) >= 0) {
                free(*list);
                *list = joined;
                free(item);
        } else if (!*list)
                *list = item;
        else
                free(item);
}

static unsigned uint_setting(json_t *o, const char *key, unsigned def, unsigned min, unsigned max, char **problems) {
        json_t *v = json_object_get(o, key);

        if (!v)
                return def;
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
                add_problem(problems, "/%s: must be an integer from %u to %u", key, min, max);
                return def;
        }
        return (unsigned)json_integer_value(v);
}

static char *string_setting(json_t *o, const char *key, const char *def, char **problems) {
        json_t *v = json_object_get(o, key);

        if (!v)
                return def ? strdup(def) : NULL;
        if (!json_is_string(v) || !*json_string_value(v)) {
                add_problem(problems, "/%s: must be a non-empty string", key);
                return def ? strdup(def) : NULL;
        }
        return strdup(json_string_value(v));
}

static int settings_parse(const char *json, Settings *ret, char **ret_error) {
        static const char *const known[] = { "backend", "go2rtc_url", "go2rtc_binary", "hls_address", "hls_port",
                                             "ice_addresses", "retry_min_ms", "retry_max_ms", "stall_timeout_ms",
                                             "metrics_interval_s" };
        json_error_t jerr;
        json_t *root = json_loads(json, 0, &jerr), *v;
        char *problems = NULL, *backend;
        const char *key;
        Settings s = {};

        if (!json_is_object(root)) {
                json_decref(root);
                if (asprintf(ret_error, "/: %s", root ? "must be an object" : jerr.text) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        json_object_foreach(root, key, v) {
                bool ok = false;
                for (size_t i = 0; i < ELEMENTSOF(known) && !ok; i++)
                        ok = strcmp(known[i], key) == 0;
                if (!ok)
                        add_problem(&problems, "/%s: unknown setting", key);
        }
        s.go2rtc_url = string_setting(root, "go2rtc_url", NULL, &problems);
        s.go2rtc_binary = string_setting(root, "go2rtc_binary", NULL, &problems);
        backend = string_setting(root, "backend", NULL, &problems);
        if (backend && strcmp(backend, "builtin") != 0 && strcmp(backend, "go2rtc") != 0)
                add_problem(&problems, "/backend: must be \"builtin\" or \"go2rtc\"");
        s.use_go2rtc = backend ? strcmp(backend, "go2rtc") == 0 : (s.go2rtc_url || s.go2rtc_binary);
        free(backend);
        if (s.use_go2rtc && !s.go2rtc_url && !s.go2rtc_binary)
                add_problem(&problems, "/go2rtc_url: required for the go2rtc backend (or go2rtc_binary)");
        if (s.go2rtc_url && strncmp(s.go2rtc_url, "http://", 7) != 0 && strncmp(s.go2rtc_url, "https://", 8) != 0)
                add_problem(&problems, "/go2rtc_url: must be an http:// URL");
        if (s.go2rtc_binary && s.go2rtc_binary[0] != '/')
                add_problem(&problems, "/go2rtc_binary: must be an absolute path");
        if (s.go2rtc_binary && !s.go2rtc_url)
                s.go2rtc_url = strdup("http://127.0.0.1:1984");
        s.hls_address = string_setting(root, "hls_address", "127.0.0.1", &problems);
        s.hls_port = uint_setting(root, "hls_port", 8890, 0, 65535, &problems);
        s.retry_min_ms = uint_setting(root, "retry_min_ms", 500, 50, 60000, &problems);
        s.retry_max_ms = uint_setting(root, "retry_max_ms", 30000, 100, 600000, &problems);
        s.stall_timeout_ms = uint_setting(root, "stall_timeout_ms", 5000, 500, 600000, &problems);
        s.metrics_interval_s = uint_setting(root, "metrics_interval_s", 5, 1, 3600, &problems);
        v = json_object_get(root, "ice_addresses");
        if (v && !json_is_array(v))
                add_problem(&problems, "/ice_addresses: must be an array of addresses");
        else if (v) {
                size_t i;
                json_t *a;
                s.ice_addresses = calloc(json_array_size(v) + 1, sizeof(char *));
                json_array_foreach(v, i, a) {
                        if (!json_is_string(a))
                                add_problem(&problems, "/ice_addresses/%zu: must be a string", i);
                        else if (s.ice_addresses)
                                s.ice_addresses[i] = strdup(json_string_value(a));
                }
        }
        json_decref(root);
        if (problems) {
                settings_clear(&s);
                *ret_error = problems;
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

/* ---- converters ---- */

static Converter *converter_of(Module *mod, CaEntity *e) {
        for (size_t i = 0; i < mod->n_convs; i++)
                if (mod->convs[i]->entity == e)
                        return mod->convs[i];
        return NULL;
}

static void on_gst_state(GstConverter *g, const char *state, const char *reason, void *userdata) {
        Converter *c = userdata;

        (void)ca_entity_set_state(c->entity, state);
        if (reason)
                (void)ca_entity_set_attribute(c->entity, "reason", reason);
        else
                ca_entity_unset_attribute(c->entity, "reason");
        ca_module_entity_changed(c->mod->m, c->entity);
}

static void on_gst_ended(GstConverter *g, const char *flow_id, const char *reason, void *userdata) {
        Converter *c = userdata;
        (void)ca_module_report_flow_ended(c->mod->m, c->entity, flow_id, reason);
}

static void pending_remove(Module *mod, Pending *p) {
        for (Pending **i = &mod->pending; *i; i = &(*i)->next)
                if (*i == p) {
                        *i = p->next;
                        break;
                }
        sd_event_source_disable_unref(p->hls_poll);
        free(p->hls_playlist);
        free(p->hls_url);
        free(p);
}

/* Fail the pending ConnectEntity calls of a converter (all, or one flow's; c NULL: every
 * converter's), after telling the backend not to call back. */
static void pending_fail(Module *mod, Converter *c, const char *flow_id, const char *why) {
        for (Pending *p = mod->pending, *next; p; p = next) {
                next = p->next;
                if ((c && p->conv != c) || (flow_id && strcmp(p->op->flow_id, flow_id) != 0))
                        continue;
                if (p->handle)
                        go2rtc_cancel(p->handle);
                if (p->conv->gst)
                        gst_converter_cancel_sdp(p->conv->gst, p->op->flow_id);
                ca_flow_op_fail(p->op, -ECANCELED, why);
                pending_remove(mod, p);
        }
}

static void pending_fail_all(Module *mod, Converter *c, const char *why) {
        pending_fail(mod, c, NULL, why);
}

static int create_entity(CaModule *m, CaEntity *e, char **ret_error, void *userdata) {
        Module *mod = userdata;
        Converter *c, **l;
        json_t *cfg = json_loads(e->config_json, 0, NULL);
        bool empty = json_is_object(cfg) && json_object_size(cfg) == 0;
        static unsigned next;
        char id[32];
        int r;

        json_decref(cfg);
        if (!empty) {
                *ret_error = strdup("/: a converter takes no settings (its input comes with ConnectEntity)");
                return -EINVAL;
        }
        l = realloc(mod->convs, (mod->n_convs + 1) * sizeof(Converter *));
        if (!l)
                return -ENOMEM;
        mod->convs = l;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->mod = mod;
        c->entity = e;
        snprintf(id, sizeof(id), "converter-%u", ++next);
        e->id = strdup(id);
        if (!e->id) {
                free(c);
                return -ENOMEM;
        }
        if (!mod->s.use_go2rtc) {
                GstConverterSettings gs = {
                        .ice_addresses = mod->s.ice_addresses,
                        .hls_dir = mod->hls_dir,
                        .retry_min_ms = mod->s.retry_min_ms,
                        .retry_max_ms = mod->s.retry_max_ms,
                        .stall_timeout_ms = mod->s.stall_timeout_ms,
                };
                r = gst_converter_new(&c->gst, id, &gs, on_gst_state, on_gst_ended, c);
                if (r < 0) {
                        free(c);
                        return r;
                }
        }
        (void)ca_entity_set_state(e, "idle");
        (void)ca_entity_set_attribute(e, "backend", mod->s.use_go2rtc ? "go2rtc" : "builtin");
        mod->convs[mod->n_convs++] = c;
        return 0;
}

static void converter_free(Module *mod, Converter *c) {
        pending_fail_all(mod, c, "the converter was destroyed");
        if (c->gst)
                gst_converter_free(c->gst);
        if (mod->go2rtc && c->source)
                go2rtc_delete_stream(mod->go2rtc, c->entity->id);
        if (c->source)
                explicit_bzero(c->source, strlen(c->source));
        free(c->source);
        for (size_t i = 0; i < mod->n_convs; i++)
                if (mod->convs[i] == c) {
                        mod->convs[i] = mod->convs[--mod->n_convs];
                        break;
                }
        free(c);
}

static int destroy_entity(CaModule *m, CaEntity *e, char **ret_error, void *userdata) {
        Module *mod = userdata;
        Converter *c = converter_of(mod, e);

        if (c)
                converter_free(mod, c);
        return 0;
}

/* The built-in backend's SDP (answer or offer) is ready. */
static void on_gst_sdp(int error, const char *msg, const char *sdp, const char *sdp_type, void *userdata) {
        Pending *p = userdata;
        Module *mod = p->conv->mod;
        CaMediaLink out = { .media = "webrtc", .sdp = sdp, .sdp_type = sdp_type };

        if (error < 0)
                ca_flow_op_fail(p->op, error, msg);
        else
                ca_flow_op_complete(p->op, &out);
        pending_remove(mod, p);
}

static void on_go2rtc_answer(int error, const char *msg, const char *sdp, void *userdata) {
        Pending *p = userdata;
        Module *mod = p->conv->mod;
        CaMediaLink out = { .media = "webrtc", .sdp = sdp, .sdp_type = "answer" };

        p->handle = NULL;
        if (error < 0)
                ca_flow_op_fail(p->op, error == -ECONNREFUSED ? -ECONNREFUSED : error, msg);
        else
                ca_flow_op_complete(p->op, &out);
        pending_remove(mod, p);
}

static void on_go2rtc_stream(int error, const char *msg, const char *sdp, void *userdata) {
        Pending *p = userdata;
        Module *mod = p->conv->mod;
        _cleanup_free_ char *url = go2rtc_hls_url(mod->go2rtc, p->conv->entity->id);
        CaMediaLink out = { .media = "hls", .url = url };

        p->handle = NULL;
        if (error < 0)
                ca_flow_op_fail(p->op, error, msg);
        else
                ca_flow_op_complete(p->op, &out);
        pending_remove(mod, p);
}

static int ensure_hls_server(Module *mod, char **ret_error) {
        int r;

        if (mod->hls)
                return 0;
        r = hls_server_new(&mod->hls, mod->event, mod->s.hls_address, mod->s.hls_port, mod->hls_dir);
        if (r < 0) {
                if (asprintf(ret_error, "cannot serve HLS on %s:%u: %s", mod->s.hls_address, mod->s.hls_port,
                             strerror(-r)) < 0)
                        *ret_error = NULL;
                return -EIO;
        }
        log_info("Serving HLS on http://%s:%u/", mod->s.hls_address, hls_server_get_port(mod->hls));
        return 0;
}

/* The HLS URL is given out once its playlist exists: a player that fetched it earlier would get
 * a 404 and give up (a Chromecast does). hlssink2 writes the playlist when the first segment is
 * complete, about a second after the first keyframe. */
static int on_hls_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Pending *p = userdata;
        Module *mod = p->conv->mod;
        CaMediaLink out = { .media = "hls", .url = p->hls_url };

        if (access(p->hls_playlist, F_OK) == 0)
                ca_flow_op_complete(p->op, &out);
        else if (usec >= p->hls_deadline) {
                _cleanup_free_ char *msg = NULL;
                const char *reason = gst_converter_get_reason(p->conv->gst);

                /* Nothing of this output stays: no URL, no HLS pipeline for the flow. */
                if (asprintf(&msg, "no HLS segment within %u ms: no video from the camera (the converter is %s%s%s)",
                             mod->s.stall_timeout_ms + HLS_FIRST_SEGMENT_MS, gst_converter_get_state(p->conv->gst),
                             reason ? ": " : "", reason ? reason : "") < 0)
                        msg = NULL;
                gst_converter_remove(p->conv->gst, p->op->flow_id);
                ca_flow_op_fail(p->op, -EHOSTUNREACH, msg ? msg : "no HLS segment: no video from the camera");
        } else {
                int r = sd_event_source_set_time(s, usec + HLS_POLL_USEC);
                return r < 0 ? r : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        pending_remove(mod, p);
        return 0;
}

static int connect_entity(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata) {
        Module *mod = userdata;
        Converter *c = converter_of(mod, op->entity);
        const char *out = op->output_media;
        const char *peer_sdp = op->peer && op->peer->sdp ? op->peer->sdp : NULL;
        bool peer_is_answer = peer_sdp && op->peer->sdp_type && strcmp(op->peer->sdp_type, "answer") == 0;
        Pending *p;
        int r;

        if (!c)
                return -ENOENT;
        /* The answer to the offer this converter made earlier for the flow. */
        if (peer_is_answer) {
                if (!c->gst) {
                        *ret_error = strdup("peer: the go2rtc backend makes no offers, so it takes no answers");
                        return -EINVAL;
                }
                return gst_converter_set_answer(c->gst, op->flow_id, peer_sdp, ret_error);
        }
        if (!op->input || !op->input->url) {
                *ret_error = strdup("input: an rtsp MediaLink with a URL is required");
                return -EINVAL;
        }
        if (strcmp(out, "webrtc") != 0 && strcmp(out, "hls") != 0) {
                *ret_error = strdup("output_media: must be \"webrtc\" or \"hls\"");
                return -EINVAL;
        }
        /* A new ConnectEntity for a flow replaces what was set: an earlier one still
         * waiting is answered now. */
        pending_fail(mod, c, op->flow_id, "replaced by a newer ConnectEntity for the same flow");
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->conv = c;
        p->op = op;

        if (c->gst) {
                r = gst_converter_set_source(c->gst, op->input->url, ret_error);
                if (r < 0) {
                        free(p);
                        return r;
                }
                if (strcmp(out, "hls") == 0) {
                        _cleanup_free_ char *name = NULL;
                        uint64_t now;

                        r = ensure_hls_server(mod, ret_error);
                        if (r >= 0)
                                r = gst_converter_add_hls(c->gst, op->flow_id, &name, ret_error);
                        if (r >= 0 && (asprintf(&p->hls_url, "http://%s:%u/%s", mod->s.hls_address,
                                                hls_server_get_port(mod->hls), name) < 0 ||
                                       asprintf(&p->hls_playlist, "%s/%s", mod->hls_dir, name) < 0))
                                r = -ENOMEM;
                        if (r >= 0)
                                r = sd_event_now(mod->event, CLOCK_MONOTONIC, &now);
                        if (r >= 0) {
                                p->hls_deadline = now + (uint64_t)(mod->s.stall_timeout_ms + HLS_FIRST_SEGMENT_MS) * 1000;
                                r = sd_event_add_time(mod->event, &p->hls_poll, CLOCK_MONOTONIC, now, 0,
                                                      on_hls_poll, p);
                        }
                        p->next = mod->pending;
                        mod->pending = p;
                        if (r < 0) {
                                pending_remove(mod, p);
                                return r;
                        }
                        return CA_PENDING;
                }
                p->next = mod->pending;
                mod->pending = p;
                r = gst_converter_add_webrtc(c->gst, op->flow_id, peer_sdp, on_gst_sdp, p, ret_error);
                if (r < 0) {
                        pending_remove(mod, p);
                        return r;
                }
                return CA_PENDING;
        }

        /* go2rtc backend */
        if (strcmp(out, "webrtc") == 0 && !peer_sdp) {
                free(p);
                *ret_error = strdup("peer: the go2rtc backend answers WebRTC offers; it makes none");
                return -EOPNOTSUPP;
        }
        free(c->source);
        c->source = strdup(op->input->url);
        if (strcmp(out, "hls") == 0)
                r = go2rtc_add_stream(mod->go2rtc, c->entity->id, op->input->url, on_go2rtc_stream, p, &p->handle);
        else
                r = go2rtc_answer(mod->go2rtc, c->entity->id, op->input->url, peer_sdp, on_go2rtc_answer, p,
                                  &p->handle);
        if (r < 0) {
                free(p);
                return r;
        }
        p->next = mod->pending;
        mod->pending = p;
        (void)ca_entity_set_state(c->entity, "connecting");
        ca_module_entity_changed(m, c->entity);
        return CA_PENDING;
}

static int disconnect_entity(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata) {
        Module *mod = userdata;
        Converter *c = converter_of(mod, op->entity);

        if (!c)
                return 0;
        pending_fail(mod, c, op->flow_id, "the flow was disconnected");
        if (c->gst)
                gst_converter_remove(c->gst, op->flow_id);
        return 0;
}

/* ---- metrics ---- */

static void on_go2rtc_polled(int error, const char *msg, void *userdata) {
        Module *mod = userdata;

        for (size_t i = 0; i < mod->n_convs; i++) {
                Converter *c = mod->convs[i];
                Go2rtcStreamInfo info;
                const char *state;

                if (!c->source)
                        continue;
                go2rtc_stream_info(mod->go2rtc, c->entity->id, &info);
                state = error < 0 ? "degraded"
                        : info.producers > 0 && info.bytes_recv > c->last_bytes ? "active"
                        : info.consumers == 0 ? "idle"
                                              : "degraded";
                if (!c->entity->state || strcmp(c->entity->state, state) != 0) {
                        (void)ca_entity_set_state(c->entity, state);
                        if (error < 0 && msg)
                                (void)ca_entity_set_attribute(c->entity, "reason", msg);
                        else
                                ca_entity_unset_attribute(c->entity, "reason");
                        ca_module_entity_changed(mod->m, c->entity);
                }
                {
                        static const char *const names[] = { "bitrate_kbps", "peers", "bytes_in" };
                        double v[3];
                        uint64_t db = info.bytes_recv > c->last_bytes ? info.bytes_recv - c->last_bytes : 0;
                        v[0] = (double)db * 8 / 1000 / mod->s.metrics_interval_s;
                        v[1] = info.consumers;
                        v[2] = (double)info.bytes_recv;
                        c->last_bytes = info.bytes_recv;
                        (void)ca_module_report_metrics(mod->m, c->entity, names, v, ELEMENTSOF(names));
                }
        }
}

static int on_metrics(sd_event_source *s, uint64_t usec, void *userdata) {
        Module *mod = userdata;

        if (mod->go2rtc)
                (void)go2rtc_poll(mod->go2rtc, on_go2rtc_polled, mod);
        for (size_t i = 0; i < mod->n_convs; i++) {
                static const char *const names[] = { "bitrate_kbps", "frames", "fps", "frames_out", "peers", "hls",
                                                     "errors", "width", "height" };
                Converter *c = mod->convs[i];
                GstConverterStats st;
                double v[ELEMENTSOF(names)];

                if (!c->gst)
                        continue;
                gst_converter_get_stats(c->gst, &st);
                v[0] = (double)(st.bytes_in - MIN(st.bytes_in, c->last_bytes)) * 8 / 1000 / mod->s.metrics_interval_s;
                v[1] = (double)st.frames_in;
                v[2] = (double)(st.frames_in - MIN(st.frames_in, c->last_frames)) / mod->s.metrics_interval_s;
                v[3] = (double)st.frames_out;
                v[4] = st.peers;
                v[5] = st.hls;
                v[6] = (double)st.errors;
                v[7] = st.width;
                v[8] = st.height;
                c->last_bytes = st.bytes_in;
                c->last_frames = st.frames_in;
                (void)ca_module_report_metrics(mod->m, c->entity, names, v, ELEMENTSOF(names));
        }
        (void)sd_event_source_set_time_relative(s, (uint64_t)mod->s.metrics_interval_s * 1000000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* ---- configuration ---- */

static int apply_settings(Module *mod, Settings *s, char **ret_error) {
        int r;

        if (mod->n_convs > 0 && s->use_go2rtc != mod->s.use_go2rtc) {
                *ret_error = strdup("/backend: cannot change while converters exist");
                return -EINVAL;
        }
        if (s->use_go2rtc) {
                Go2rtc *g = NULL;
                r = go2rtc_new(&g, mod->event, mod->http, s->go2rtc_url, s->go2rtc_binary, mod->runtime_dir);
                if (r < 0) {
                        if (asprintf(ret_error, "/go2rtc_binary: cannot run it: %s", strerror(-r)) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                go2rtc_free(mod->go2rtc);
                mod->go2rtc = g;
        } else
                mod->go2rtc = go2rtc_free(mod->go2rtc);
        /* The HLS server keeps serving (the URLs given out stay valid) unless its address
         * changed; it is then started again on its next use. The orchestrator re-applies the
         * configuration whenever it registers the module again (after its own restart too). */
        if (!s->hls_address || !mod->s.hls_address || strcmp(s->hls_address, mod->s.hls_address) != 0 ||
            s->hls_port != mod->s.hls_port)
                mod->hls = hls_server_free(mod->hls);
        settings_clear(&mod->s);
        mod->s = *s;
        *s = (Settings){};
        log_info("Backend: %s%s%s.", mod->s.use_go2rtc ? "go2rtc at " : "built-in GStreamer",
                 mod->s.use_go2rtc ? mod->s.go2rtc_url : "", "");
        (void)sd_event_source_set_time_relative(mod->metrics_timer, (uint64_t)mod->s.metrics_interval_s * 1000000);
        return 0;
}

static int apply_config(CaModule *m, const char *json, char **ret_error, void *userdata) {
        Module *mod = userdata;
        Settings s;
        int r;

        r = settings_parse(json, &s, ret_error);
        if (r < 0)
                return r;
        r = apply_settings(mod, &s, ret_error);
        settings_clear(&s);
        return r;
}

/* GStreamer keeps a registry cache: in a sandboxed unit (ProtectSystem=strict, DynamicUser)
 * the only writable places are the unit's runtime/state/cache directories and /tmp. */
static char *setup_dirs(void) {
        const char *base = getenv("RUNTIME_DIRECTORY");
        char *dir = NULL, *reg = NULL;

        if (base && *base)
                dir = strndup(base, strcspn(base, ":"));
        else if (asprintf(&dir, "%s/call-assistant-go2rtc-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                          (int)getpid()) < 0)
                dir = NULL;
        if (!dir)
                return NULL;
        (void)mkdir(dir, 0700);
        if (!getenv("GST_REGISTRY") && asprintf(&reg, "%s/gst-registry.bin", dir) >= 0) {
                setenv("GST_REGISTRY", reg, 1);
                free(reg);
        }
        return dir;
}

static void remove_tree(const char *dir) {
        _cleanup_free_ char *cmd = NULL;
        /* Only our own HLS directory (converter ids and segment names are [a-z0-9.-]). */
        if (dir && asprintf(&cmd, "rm -rf -- '%s'", dir) >= 0 && !strchr(dir, '\''))
                (void)!system(cmd);
}

int main(int argc, char *argv[]) {
        const CaModuleInfo info = {
                .name = "go2rtc",
                .version = "1.0.0",
                .description = "RTSP to WebRTC and HLS converters (go2rtc, or built-in GStreamer)",
                .entity_types = entity_types,
                .n_entity_types = ELEMENTSOF(entity_types),
                .config_schema = config_schema,
        };
        const CaModuleCallbacks cb = {
                .apply_config = apply_config,
                .create_entity = create_entity,
                .destroy_entity = destroy_entity,
                .connect_entity = connect_entity,
                .disconnect_entity = disconnect_entity,
        };
        Module mod = {};
        sigset_t mask;
        int r;

        log_setup_from_env();
        /* Before any thread starts: SIGCHLD for a go2rtc child, SIGTERM/SIGINT for the SDK. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        mod.runtime_dir = setup_dirs();
        if (!mod.runtime_dir || asprintf(&mod.hls_dir, "%s/hls", mod.runtime_dir) < 0)
                return EXIT_FAILURE;
        (void)mkdir(mod.hls_dir, 0755);
        settings_default(&mod.s);

        r = sd_event_default(&mod.event);
        if (r >= 0)
                r = gst_converter_init(mod.event);
        if (r >= 0)
                r = http_client_new(&mod.http, mod.event);
        if (r >= 0)
                r = ca_module_new(&mod.m, &info, &cb, &mod);
        if (r >= 0)
                r = sd_event_add_time_relative(mod.event, &mod.metrics_timer, CLOCK_MONOTONIC,
                                               (uint64_t)mod.s.metrics_interval_s * 1000000, 0, on_metrics, &mod);
        if (r >= 0)
                r = ca_module_run(mod.m);
        else
                log_error_errno(r, "Cannot start: %m");

        pending_fail_all(&mod, NULL, "the module is stopping");
        while (mod.n_convs > 0)
                converter_free(&mod, mod.convs[mod.n_convs - 1]);
        free(mod.convs);
        sd_event_source_disable_unref(mod.metrics_timer);
        hls_server_free(mod.hls);
        go2rtc_free(mod.go2rtc);
        http_client_free(mod.http);
        gst_converter_deinit();
        ca_module_free(mod.m);
        sd_event_unref(mod.event);
        remove_tree(mod.hls_dir);
        if (!getenv("RUNTIME_DIRECTORY"))
                remove_tree(mod.runtime_dir);
        free(mod.hls_dir);
        free(mod.runtime_dir);
        settings_clear(&mod.s);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
