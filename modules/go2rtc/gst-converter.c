/* gst-converter: the built-in GStreamer backend (see gst-converter.h). */
#include <errno.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>
#include <nice/agent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gst-converter.h"
#include "shared/log.h"
#include "shared/macro.h"

#define ICE_GATHER_TIMEOUT_USEC (10 * 1000000ULL)

typedef struct Consumer Consumer;

struct Consumer {
        GstConverter *conv;   /* weak: a consumer is removed before its converter goes */
        gint refs;
        bool dead;            /* removed (sd-event thread): late news about it is ignored */
        bool hls;
        bool offerer;
        bool negotiating;
        bool need_keyframe;   /* under conv->lock */
        GstCaps *caps;        /* the caps given to appsrc, under conv->lock */
        char *flow_id;
        GstElement *pipeline, *appsrc, *webrtc;
        gst_converter_sdp_t done;
        void *done_userdata;
        sd_event_source *gather_timer;
};

struct GstConverter {
        gint refs;
        bool dead;
        char *id;
        GstConverterSettings settings;
        gst_converter_state_t on_state;
        gst_converter_ended_t on_ended;
        void *userdata;
        char *url;
        char state[16];
        char *reason;
        GstElement *ingest;
        guint generation;         /* of the ingest pipeline; news from older ones is ignored */
        gint flowing;             /* first frame of this generation seen */
        sd_event_source *retry_timer, *watchdog;
        unsigned retry_ms;
        GMutex lock;              /* consumers, caps and counters, shared with streaming threads */
        Consumer **consumers;
        size_t n_consumers;
        char **hls_flows;
        GstCaps *caps;
        GstConverterStats stats;
        uint64_t last_frame_usec;
};

/* ---- handing news from GStreamer's threads to the sd-event thread ---- */

typedef struct Job {
        void (*fn)(void *obj, intptr_t arg, char *text);
        void *obj;
        void (*unref)(void *obj);
        intptr_t arg;
        char *text;
        struct Job *next;
} Job;

static struct {
        sd_event *event;
        int fd;
        sd_event_source *src;
        GMutex lock;
        Job *head, *tail;
} bridge = { .fd = -1 };

static void bridge_post(void (*fn)(void *, intptr_t, char *), void *obj, void (*unref)(void *), intptr_t arg,
                        const char *text) {
        Job *j = calloc(1, sizeof(*j));
        uint64_t one = 1;

        if (!j) {
                unref(obj);
                return;
        }
        *j = (Job){ .fn = fn, .obj = obj, .unref = unref, .arg = arg, .text = text ? strdup(text) : NULL };
        g_mutex_lock(&bridge.lock);
        if (bridge.tail)
                bridge.tail->next = j;
        else
                bridge.head = j;
        bridge.tail = j;
        g_mutex_unlock(&bridge.lock);
        (void)!write(bridge.fd, &one, sizeof(one));
}

static int on_bridge(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        uint64_t n;
        Job *j;

        (void)!read(fd, &n, sizeof(n));
        g_mutex_lock(&bridge.lock);
        j = bridge.head;
        bridge.head = bridge.tail = NULL;
        g_mutex_unlock(&bridge.lock);
        while (j) {
                Job *next = j->next;
                j->fn(j->obj, j->arg, j->text);
                j->unref(j->obj);
                free(j->text);
                free(j);
                j = next;
        }
        return 0;
}

int gst_converter_init(sd_event *event) {
        GError *err = NULL;

        if (!gst_init_check(NULL, NULL, &err)) {
                log_error("Cannot initialise GStreamer: %s", err ? err->message : "?");
                g_clear_error(&err);
                return -EIO;
        }
        bridge.event = event;
        bridge.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (bridge.fd < 0)
                return -errno;
        return sd_event_add_io(event, &bridge.src, bridge.fd, EPOLLIN, on_bridge, NULL);
}

void gst_converter_deinit(void) {
        Job *j = bridge.head;

        bridge.src = sd_event_source_disable_unref(bridge.src);
        bridge.fd = safe_close(bridge.fd);
        while (j) {
                Job *next = j->next;
                j->unref(j->obj);
                free(j->text);
                free(j);
                j = next;
        }
        bridge.head = bridge.tail = NULL;
}

/* ---- reference counting ---- */

static GstConverter *conv_ref(GstConverter *c) {
        g_atomic_int_inc(&c->refs);
        return c;
}

static void conv_unref(void *p) {
        GstConverter *c = p;

        if (!c || !g_atomic_int_dec_and_test(&c->refs))
                return;
        if (c->url)
                explicit_bzero(c->url, strlen(c->url));
        free(c->url);
        free(c->id);
        free(c->reason);
        g_strfreev(c->hls_flows);
        g_strfreev(c->settings.ice_addresses);
        free((char *)c->settings.hls_dir);
        if (c->caps)
                gst_caps_unref(c->caps);
        free(c->consumers);
        g_mutex_clear(&c->lock);
        free(c);
}

static Consumer *consumer_ref(Consumer *k) {
        g_atomic_int_inc(&k->refs);
        return k;
}

static void consumer_unref(void *p) {
        Consumer *k = p;

        if (!k || !g_atomic_int_dec_and_test(&k->refs))
                return;
        if (k->caps)
                gst_caps_unref(k->caps);
        /* Elements go with the last reference: GStreamer's threads may hold one. */
        if (k->webrtc)
                gst_object_unref(k->webrtc);
        if (k->appsrc)
                gst_object_unref(k->appsrc);
        sd_event_source_disable_unref(k->gather_timer);
        free(k->flow_id);
        free(k);
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

/* Set a pipeline to NULL and drop it without blocking the loop (rtspsrc may take a while). */
static void teardown_async(GstElement *e, gpointer data) {
        gst_element_set_state(e, GST_STATE_NULL);
        gst_object_unref(e);
}

static void pipeline_drop(GstElement *p) {
        if (p)
                gst_element_call_async(p, teardown_async, NULL, NULL);
}

/* ---- state ---- */

static void set_state(GstConverter *c, const char *state, const char *reason) {
        bool same = strcmp(c->state, state) == 0 && !c->reason == !reason && (!reason || strcmp(c->reason, reason) == 0);

        if (same)
                return;
        snprintf(c->state, sizeof(c->state), "%s", state);
        free(c->reason);
        c->reason = reason ? strdup(reason) : NULL;
        if (c->on_state)
                c->on_state(c, state, reason, c->userdata);
}

/* ---- ingest ---- */

static void ingest_start(GstConverter *c);

static void ingest_stop(GstConverter *c) {
        c->generation++;
        if (c->ingest) {
                pipeline_drop(c->ingest);
                c->ingest = NULL;
        }
        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        c->watchdog = sd_event_source_disable_unref(c->watchdog);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        GstConverter *c = userdata;

        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        ingest_start(c);
        return 0;
}

/* The camera went away or misbehaves: keep the consumers, reconnect later (back-off). */
static void ingest_failed(GstConverter *c, const char *why) {
        char reason[512];
        uint64_t now;

        if (c->dead)
                return;
        ingest_stop(c);
        g_mutex_lock(&c->lock);
        c->stats.errors++;
        g_mutex_unlock(&c->lock);
        snprintf(reason, sizeof(reason), "%s; reconnecting in %u ms", why, c->retry_ms);
        log_warning("Converter %s: %s", c->id, reason);
        set_state(c, "degraded", reason);
        (void)sd_event_now(bridge.event, CLOCK_MONOTONIC, &now);
        (void)sd_event_add_time(bridge.event, &c->retry_timer, CLOCK_MONOTONIC, now + (uint64_t)c->retry_ms * 1000, 0,
                                on_retry, c);
        c->retry_ms = MIN(c->retry_ms * 2, c->settings.retry_max_ms);
}

static void job_ingest_failed(void *obj, intptr_t generation, char *text) {
        GstConverter *c = obj;

        if (!c->dead && (guint)generation == c->generation)
                ingest_failed(c, text ? text : "the stream ended");
}

static void job_ingest_flowing(void *obj, intptr_t generation, char *text) {
        GstConverter *c = obj;

        if (c->dead || (guint)generation != c->generation)
                return;
        c->retry_ms = c->settings.retry_min_ms;
        log_info("Converter %s: video is flowing.", c->id);
        set_state(c, "active", NULL);
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        GstConverter *c = userdata;
        uint64_t last, now = now_usec();
        char why[128];

        g_mutex_lock(&c->lock);
        last = c->last_frame_usec;
        g_mutex_unlock(&c->lock);
        if (now - last > (uint64_t)c->settings.stall_timeout_ms * 1000) {
                snprintf(why, sizeof(why), "no video from the camera for %u ms", c->settings.stall_timeout_ms);
                ingest_failed(c, why);
                return 0;
        }
        (void)sd_event_source_set_time_relative(s, 500000);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static GstBusSyncReply on_ingest_bus(GstBus *bus, GstMessage *msg, gpointer data) {
        GstConverter *c = data;
        guint generation = GPOINTER_TO_UINT(g_object_get_data(G_OBJECT(bus), "generation"));
        GError *err = NULL;
        char text[400];

        switch (GST_MESSAGE_TYPE(msg)) {
        case GST_MESSAGE_ERROR:
                gst_message_parse_error(msg, &err, NULL);
                /* The message names the element, never the URL (it may hold a password). */
                snprintf(text, sizeof(text), "%s: %s", GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)),
                         err ? err->message : "error");
                g_clear_error(&err);
                bridge_post(job_ingest_failed, conv_ref(c), conv_unref, generation, text);
                break;
        case GST_MESSAGE_EOS:
                bridge_post(job_ingest_failed, conv_ref(c), conv_unref, generation, "the camera ended the stream");
                break;
        default:
                break;
        }
        return GST_BUS_DROP;
}

static void parse_size(GstCaps *caps, unsigned *w, unsigned *h) {
        const GstStructure *s = gst_caps_get_size(caps) > 0 ? gst_caps_get_structure(caps, 0) : NULL;
        int v;

        if (s && gst_structure_get_int(s, "width", &v))
                *w = (unsigned)v;
        if (s && gst_structure_get_int(s, "height", &v))
                *h = (unsigned)v;
}

/* A frame from the camera (a streaming thread): handed to every consumer as it is. */
static GstFlowReturn on_sample(GstAppSink *sink, gpointer data) {
        GstConverter *c = data;
        GstSample *sample = gst_app_sink_pull_sample(sink);
        guint generation = GPOINTER_TO_UINT(g_object_get_data(G_OBJECT(sink), "generation"));
        GstBuffer *buf;
        GstCaps *caps;
        bool delta;

        if (!sample)
                return GST_FLOW_OK;
        buf = gst_sample_get_buffer(sample);
        caps = gst_sample_get_caps(sample);
        delta = GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DELTA_UNIT);

        g_mutex_lock(&c->lock);
        c->stats.bytes_in += gst_buffer_get_size(buf);
        c->stats.frames_in++;
        c->last_frame_usec = now_usec();
        if (caps && (!c->caps || !gst_caps_is_equal(caps, c->caps))) {
                gst_caps_replace(&c->caps, caps);
                parse_size(caps, &c->stats.width, &c->stats.height);
        }
        for (size_t i = 0; i < c->n_consumers; i++) {
                Consumer *k = c->consumers[i];
                GstBuffer *out;

                if (k->need_keyframe && delta)
                        continue;
                k->need_keyframe = false;
                if (caps && (!k->caps || !gst_caps_is_equal(caps, k->caps))) {
                        gst_caps_replace(&k->caps, caps);
                        gst_app_src_set_caps(GST_APP_SRC(k->appsrc), caps);
                }
                /* Shares the memory; each consumer stamps it with its own clock. */
                out = gst_buffer_copy(buf);
                GST_BUFFER_PTS(out) = GST_BUFFER_DTS(out) = GST_BUFFER_DURATION(out) = GST_CLOCK_TIME_NONE;
                if (gst_app_src_push_buffer(GST_APP_SRC(k->appsrc), out) == GST_FLOW_OK)
                        c->stats.frames_out++;
        }
        g_mutex_unlock(&c->lock);
        gst_sample_unref(sample);

        if (g_atomic_int_compare_and_exchange(&c->flowing, 0, 1))
                bridge_post(job_ingest_flowing, conv_ref(c), conv_unref, generation, NULL);
        return GST_FLOW_OK;
}

static void ingest_start(GstConverter *c) {
        GstAppSinkCallbacks cbs = { .new_sample = on_sample };
        GstElement *p, *src, *sink;
        GError *err = NULL;
        GstBus *bus;
        uint64_t now;

        if (!c->url || c->ingest)
                return;
        ingest_stop(c);
        p = gst_parse_launch("rtspsrc name=src protocols=tcp latency=100 teardown-timeout=100000000 ! "
                             "rtph264depay ! h264parse config-interval=-1 ! "
                             "video/x-h264,stream-format=byte-stream,alignment=au ! "
                             "appsink name=sink sync=false max-buffers=30 drop=true",
                             &err);
        if (!p) {
                ingest_failed(c, err ? err->message : "cannot build the pipeline");
                g_clear_error(&err);
                return;
        }
        g_clear_error(&err);
        src = gst_bin_get_by_name(GST_BIN(p), "src");
        sink = gst_bin_get_by_name(GST_BIN(p), "sink");
        g_object_set(src, "location", c->url, NULL);
        g_object_set_data(G_OBJECT(sink), "generation", GUINT_TO_POINTER(c->generation));
        gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, conv_ref(c), conv_unref);
        bus = gst_element_get_bus(p);
        g_object_set_data(G_OBJECT(bus), "generation", GUINT_TO_POINTER(c->generation));
        gst_bus_set_sync_handler(bus, on_ingest_bus, conv_ref(c), conv_unref);
        gst_object_unref(bus);
        gst_object_unref(src);
        gst_object_unref(sink);
        g_atomic_int_set(&c->flowing, 0);
        g_mutex_lock(&c->lock);
        c->last_frame_usec = now_usec();
        g_mutex_unlock(&c->lock);
        c->ingest = p;
        if (gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
                ingest_failed(c, "the pipeline cannot start");
                return;
        }
        if (strcmp(c->state, "degraded") != 0)
                set_state(c, "connecting", NULL);
        (void)sd_event_now(bridge.event, CLOCK_MONOTONIC, &now);
        (void)sd_event_add_time(bridge.event, &c->watchdog, CLOCK_MONOTONIC, now + 500000, 0, on_watchdog, c);
}

/* ---- the converter ---- */

int gst_converter_new(GstConverter **ret, const char *id, const GstConverterSettings *settings,
                      gst_converter_state_t on_state, gst_converter_ended_t on_ended, void *userdata) {
        GstConverter *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->refs = 1;
        g_mutex_init(&c->lock);
        c->id = strdup(id);
        c->settings = *settings;
        c->settings.ice_addresses = g_strdupv(settings->ice_addresses);
        c->settings.hls_dir = settings->hls_dir ? strdup(settings->hls_dir) : NULL;
        c->retry_ms = settings->retry_min_ms;
        c->on_state = on_state;
        c->on_ended = on_ended;
        c->userdata = userdata;
        snprintf(c->state, sizeof(c->state), "idle");
        if (!c->id) {
                conv_unref(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

static void consumer_drop(GstConverter *c, Consumer *k) {
        g_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n_consumers; i++)
                if (c->consumers[i] == k) {
                        memmove(c->consumers + i, c->consumers + i + 1, (c->n_consumers - i - 1) * sizeof(Consumer *));
                        c->n_consumers--;
                        break;
                }
        if (k->hls)
                c->stats.hls = 0;
        else if (c->stats.peers > 0)
                c->stats.peers--;
        g_mutex_unlock(&c->lock);
        k->dead = true;
        k->gather_timer = sd_event_source_disable_unref(k->gather_timer);
        pipeline_drop(k->pipeline);
        k->pipeline = NULL;
        consumer_unref(k);
}

static Consumer *find_consumer(GstConverter *c, const char *flow_id, bool hls) {
        for (size_t i = 0; i < c->n_consumers; i++)
                if (c->consumers[i]->hls == hls && (hls || strcmp(c->consumers[i]->flow_id, flow_id) == 0))
                        return c->consumers[i];
        return NULL;
}

GstConverter *gst_converter_free(GstConverter *c) {
        if (!c)
                return NULL;
        c->dead = true;
        while (c->n_consumers > 0) {
                Consumer *k = c->consumers[c->n_consumers - 1];
                if (k->done && !k->dead)
                        k->done(-ECANCELED, "the converter is gone", NULL, NULL, k->done_userdata);
                k->done = NULL;
                consumer_drop(c, k);
        }
        ingest_stop(c);
        conv_unref(c);
        return NULL;
}

int gst_converter_set_source(GstConverter *c, const char *url, char **ret_error) {
        if (!url || (strncmp(url, "rtsp://", 7) != 0 && strncmp(url, "rtsps://", 8) != 0)) {
                *ret_error = strdup("input.url: must be an rtsp:// URL");
                return -EINVAL;
        }
        if (c->url && strcmp(c->url, url) == 0)
                return 0;
        if (c->url)
                explicit_bzero(c->url, strlen(c->url));
        free(c->url);
        c->url = strdup(url);
        if (!c->url)
                return -ENOMEM;
        ingest_stop(c);
        c->retry_ms = c->settings.retry_min_ms;
        if (c->n_consumers > 0)
                ingest_start(c);
        return 0;
}

static int add_consumer(GstConverter *c, Consumer *k) {
        Consumer **l;

        /* Under the lock: the streaming thread walks the array. */
        g_mutex_lock(&c->lock);
        l = realloc(c->consumers, (c->n_consumers + 1) * sizeof(Consumer *));
        if (!l) {
                g_mutex_unlock(&c->lock);
                return -ENOMEM;
        }
        c->consumers = l;
        c->consumers[c->n_consumers++] = k;
        if (k->hls)
                c->stats.hls = 1;
        else
                c->stats.peers++;
        g_mutex_unlock(&c->lock);
        if (c->url && !c->ingest && !c->retry_timer)
                ingest_start(c);
        return 0;
}

/* ---- WebRTC consumers ---- */

static void job_sdp_failed(void *obj, intptr_t arg, char *text) {
        Consumer *k = obj;
        gst_converter_sdp_t done = k->done;

        if (k->dead || !done)
                return;
        k->done = NULL;
        k->gather_timer = sd_event_source_disable_unref(k->gather_timer);
        done(-EIO, text ? text : "WebRTC negotiation failed", NULL, NULL, k->done_userdata);
}

/* ICE gathering is complete: the local description is whole, candidates included. */
static void job_gathered(void *obj, intptr_t arg, char *text) {
        Consumer *k = obj;
        GstWebRTCSessionDescription *desc = NULL;
        gst_converter_sdp_t done = k->done;
        gchar *sdp;

        if (k->dead || !done)
                return;
        g_object_get(k->webrtc, "local-description", &desc, NULL);
        if (!desc)
                return; /* gathering finished before the description was set: wait */
        k->done = NULL;
        k->gather_timer = sd_event_source_disable_unref(k->gather_timer);
        sdp = gst_sdp_message_as_text(desc->sdp);
        done(0, NULL, sdp, desc->type == GST_WEBRTC_SDP_TYPE_OFFER ? "offer" : "answer", k->done_userdata);
        g_free(sdp);
        gst_webrtc_session_description_free(desc);
}

static int on_gather_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Consumer *k = userdata;
        gst_converter_sdp_t done = k->done;

        k->gather_timer = sd_event_source_disable_unref(k->gather_timer);
        if (done) {
                k->done = NULL;
                done(-ETIMEDOUT, "ICE gathering did not complete in time", NULL, NULL, k->done_userdata);
        }
        return 0;
}

static void job_peer_ended(void *obj, intptr_t arg, char *text) {
        Consumer *k = obj;
        GstConverter *c = k->conv;
        _cleanup_free_ char *flow = NULL;

        if (k->dead || c->dead)
                return;
        flow = strdup(k->flow_id);
        log_info("Converter %s: the WebRTC peer of flow %s went away.", c->id, k->flow_id);
        consumer_drop(c, k);
        if (c->on_ended && flow)
                c->on_ended(c, flow, "the WebRTC peer went away", c->userdata);
        if (c->n_consumers == 0) {
                ingest_stop(c);
                set_state(c, "idle", NULL);
        }
}

static void on_ice_gathering(GstElement *webrtc, GParamSpec *pspec, gpointer data) {
        Consumer *k = data;
        GstWebRTCICEGatheringState s;

        g_object_get(webrtc, "ice-gathering-state", &s, NULL);
        if (s == GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE)
                bridge_post(job_gathered, consumer_ref(k), consumer_unref, 0, NULL);
}

static void on_connection_state(GstElement *webrtc, GParamSpec *pspec, gpointer data) {
        Consumer *k = data;
        GstWebRTCPeerConnectionState s;

        g_object_get(webrtc, "connection-state", &s, NULL);
        if (s == GST_WEBRTC_PEER_CONNECTION_STATE_FAILED || s == GST_WEBRTC_PEER_CONNECTION_STATE_CLOSED)
                bridge_post(job_peer_ended, consumer_ref(k), consumer_unref, 0, NULL);
}

/* The local description is set: gathering may already be complete (nothing to gather). */
static void on_local_set(GstPromise *promise, gpointer data) {
        Consumer *k = data;

        gst_promise_unref(promise);
        on_ice_gathering(k->webrtc, NULL, k);
}

static void on_local_created(GstPromise *promise, gpointer data) {
        Consumer *k = data;
        const GstStructure *reply = gst_promise_get_reply(promise);
        GstWebRTCSessionDescription *desc = NULL;
        const char *field = k->offerer ? "offer" : "answer";

        if (reply)
                gst_structure_get(reply, field, GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &desc, NULL);
        gst_promise_unref(promise);
        if (!desc) {
                bridge_post(job_sdp_failed, consumer_ref(k), consumer_unref, 0,
                            k->offerer ? "webrtcbin could not make an offer"
                                       : "webrtcbin could not answer the offer (no H.264 video the camera could send?)");
                return;
        }
        g_signal_emit_by_name(k->webrtc, "set-local-description", desc,
                              gst_promise_new_with_change_func(on_local_set, consumer_ref(k), consumer_unref));
        gst_webrtc_session_description_free(desc);
}

static void on_remote_set(GstPromise *promise, gpointer data) {
        Consumer *k = data;
        GstPromiseResult r = gst_promise_wait(promise);

        gst_promise_unref(promise);
        if (r != GST_PROMISE_RESULT_REPLIED) {
                bridge_post(job_sdp_failed, consumer_ref(k), consumer_unref, 0, "webrtcbin refused the offer");
                return;
        }
        if (!k->offerer)
                g_signal_emit_by_name(k->webrtc, "create-answer", NULL,
                                      gst_promise_new_with_change_func(on_local_created, consumer_ref(k), consumer_unref));
}

static void on_negotiation_needed(GstElement *webrtc, gpointer data) {
        Consumer *k = data;

        if (!k->offerer || k->negotiating)
                return;
        k->negotiating = true;
        g_signal_emit_by_name(webrtc, "create-offer", NULL,
                              gst_promise_new_with_change_func(on_local_created, consumer_ref(k), consumer_unref));
}

/* The payload type the offer gives H.264 (packetization-mode 1 preferred), or -1. */
static int offer_h264_pt(const GstSDPMessage *sdp) {
        int best = -1;

        for (guint i = 0; i < gst_sdp_message_medias_len(sdp); i++) {
                const GstSDPMedia *m = gst_sdp_message_get_media(sdp, i);
                if (strcmp(gst_sdp_media_get_media(m), "video") != 0)
                        continue;
                for (guint f = 0; f < gst_sdp_media_formats_len(m); f++) {
                        int pt = atoi(gst_sdp_media_get_format(m, f));
                        GstCaps *caps = gst_sdp_media_get_caps_from_media(m, pt);
                        const GstStructure *s = caps ? gst_caps_get_structure(caps, 0) : NULL;
                        const char *enc = s ? gst_structure_get_string(s, "encoding-name") : NULL;
                        const char *mode = s ? gst_structure_get_string(s, "packetization-mode") : NULL;
                        if (enc && g_ascii_strcasecmp(enc, "H264") == 0) {
                                if (mode && strcmp(mode, "1") == 0) {
                                        gst_caps_unref(caps);
                                        return pt;
                                }
                                if (best < 0)
                                        best = pt;
                        }
                        if (caps)
                                gst_caps_unref(caps);
                }
                break; /* the first video section */
        }
        return best;
}

static void restrict_ice(GstConverter *c, GstElement *webrtc) {
        GObject *ice = NULL;
        NiceAgent *agent = NULL;

        g_object_get(webrtc, "ice-agent", &ice, NULL);
        if (!ice)
                return;
        g_object_set(ice, "ice-tcp", FALSE, NULL);
        if (c->settings.ice_addresses && c->settings.ice_addresses[0]) {
                g_object_get(ice, "agent", &agent, NULL);
                for (char **a = c->settings.ice_addresses; agent && *a; a++) {
                        NiceAddress addr;
                        if (nice_address_set_from_string(&addr, *a))
                                nice_agent_add_local_address(agent, &addr);
                }
                if (agent)
                        g_object_unref(agent);
        }
        g_object_unref(ice);
}

int gst_converter_add_webrtc(GstConverter *c, const char *flow_id, const char *offer, gst_converter_sdp_t done,
                             void *userdata, char **ret_error) {
        GstSDPMessage *sdp = NULL;
        GstElement *p;
        GError *err = NULL;
        Consumer *k, *old;
        char desc[1024];
        uint64_t now;
        int pt = 96, r;

        if (offer) {
                if (gst_sdp_message_new_from_text(offer, &sdp) != GST_SDP_OK || gst_sdp_message_medias_len(sdp) == 0) {
                        if (sdp)
                                gst_sdp_message_free(sdp);
                        *ret_error = strdup("peer.sdp: not an SDP offer");
                        return -EINVAL;
                }
                pt = offer_h264_pt(sdp);
                if (pt < 0) {
                        gst_sdp_message_free(sdp);
                        *ret_error = strdup("peer.sdp: the offer takes no H.264 video (the converter does not transcode)");
                        return -EINVAL;
                }
        }
        old = find_consumer(c, flow_id, false);
        if (old)
                gst_converter_remove(c, flow_id);

        snprintf(desc, sizeof(desc),
                 "appsrc name=src is-live=true do-timestamp=true format=time max-bytes=4000000 leaky-type=upstream ! "
                 "queue max-size-buffers=60 leaky=downstream ! "
                 "rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=%d ! "
                 "application/x-rtp,media=video,encoding-name=H264,payload=%d,clock-rate=90000 ! "
                 "webrtcbin name=webrtc bundle-policy=max-bundle",
                 pt, pt);
        p = gst_parse_launch(desc, &err);
        if (!p) {
                if (sdp)
                        gst_sdp_message_free(sdp);
                r = asprintf(ret_error, "cannot build the WebRTC pipeline: %s", err ? err->message : "?");
                if (r < 0)
                        *ret_error = NULL;
                g_clear_error(&err);
                return -EIO;
        }
        g_clear_error(&err);
        k = calloc(1, sizeof(*k));
        if (!k || !(k->flow_id = strdup(flow_id))) {
                free(k);
                gst_object_unref(p);
                if (sdp)
                        gst_sdp_message_free(sdp);
                return -ENOMEM;
        }
        k->refs = 1;
        k->conv = c;
        k->pipeline = p;
        k->need_keyframe = true;
        k->offerer = !offer;
        k->done = done;
        k->done_userdata = userdata;
        k->appsrc = gst_bin_get_by_name(GST_BIN(p), "src");
        k->webrtc = gst_bin_get_by_name(GST_BIN(p), "webrtc");
        restrict_ice(c, k->webrtc);
        if (k->offerer) {
                GstWebRTCRTPTransceiver *t = NULL;
                g_signal_emit_by_name(k->webrtc, "get-transceiver", 0, &t);
                if (t) {
                        g_object_set(t, "direction", GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY, NULL);
                        gst_object_unref(t);
                }
        }
        g_signal_connect_data(k->webrtc, "notify::ice-gathering-state", G_CALLBACK(on_ice_gathering), consumer_ref(k),
                              (GClosureNotify)(void (*)(void))consumer_unref, 0);
        g_signal_connect_data(k->webrtc, "notify::connection-state", G_CALLBACK(on_connection_state), consumer_ref(k),
                              (GClosureNotify)(void (*)(void))consumer_unref, 0);
        g_signal_connect_data(k->webrtc, "on-negotiation-needed", G_CALLBACK(on_negotiation_needed), consumer_ref(k),
                              (GClosureNotify)(void (*)(void))consumer_unref, 0);

        r = add_consumer(c, k);
        if (r < 0) {
                if (sdp)
                        gst_sdp_message_free(sdp);
                k->done = NULL;
                k->dead = true;
                pipeline_drop(p);
                consumer_unref(k);
                return r;
        }
        if (gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
                if (sdp)
                        gst_sdp_message_free(sdp);
                k->done = NULL;
                consumer_drop(c, k);
                *ret_error = strdup("the WebRTC pipeline cannot start");
                return -EIO;
        }
        (void)sd_event_now(bridge.event, CLOCK_MONOTONIC, &now);
        (void)sd_event_add_time(bridge.event, &k->gather_timer, CLOCK_MONOTONIC, now + ICE_GATHER_TIMEOUT_USEC, 0,
                                on_gather_timeout, k);
        if (offer) {
                GstWebRTCSessionDescription *d = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_OFFER, sdp);
                g_signal_emit_by_name(k->webrtc, "set-remote-description", d,
                                      gst_promise_new_with_change_func(on_remote_set, consumer_ref(k), consumer_unref));
                gst_webrtc_session_description_free(d); /* frees sdp */
        }
        return 0;
}

int gst_converter_set_answer(GstConverter *c, const char *flow_id, const char *answer, char **ret_error) {
        Consumer *k = find_consumer(c, flow_id, false);
        GstSDPMessage *sdp = NULL;
        GstWebRTCSessionDescription *d;

        if (!k || !k->offerer) {
                *ret_error = strdup("peer: this flow has no offer waiting for an answer");
                return -EINVAL;
        }
        if (gst_sdp_message_new_from_text(answer, &sdp) != GST_SDP_OK || gst_sdp_message_medias_len(sdp) == 0) {
                if (sdp)
                        gst_sdp_message_free(sdp);
                *ret_error = strdup("peer.sdp: not an SDP answer");
                return -EINVAL;
        }
        d = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
        g_signal_emit_by_name(k->webrtc, "set-remote-description", d,
                              gst_promise_new_with_change_func(on_remote_set, consumer_ref(k), consumer_unref));
        gst_webrtc_session_description_free(d);
        return 0;
}

void gst_converter_cancel_sdp(GstConverter *c, const char *flow_id) {
        Consumer *k = find_consumer(c, flow_id, false);

        if (k)
                k->done = NULL;
}

/* ---- HLS ---- */

int gst_converter_add_hls(GstConverter *c, const char *flow_id, char **ret_name, char **ret_error) {
        _cleanup_free_ char *dir = NULL, *location = NULL, *playlist = NULL;
        GstElement *p, *hls;
        GError *err = NULL;
        Consumer *k;
        int r;

        if (!c->settings.hls_dir) {
                *ret_error = strdup("output_media: HLS is not enabled in this module's configuration");
                return -EOPNOTSUPP;
        }
        if (asprintf(ret_name, "%s/index.m3u8", c->id) < 0)
                return -ENOMEM;
        if (!g_strv_contains((const char *const *)(c->hls_flows ? c->hls_flows : (char *[]){ NULL }), flow_id)) {
                guint n = c->hls_flows ? g_strv_length(c->hls_flows) : 0;
                c->hls_flows = g_renew(char *, c->hls_flows, n + 2);
                c->hls_flows[n] = g_strdup(flow_id);
                c->hls_flows[n + 1] = NULL;
        }
        if (find_consumer(c, flow_id, true))
                return 0;

        if (asprintf(&dir, "%s/%s", c->settings.hls_dir, c->id) < 0 ||
            asprintf(&location, "%s/segment%%05d.ts", dir) < 0 || asprintf(&playlist, "%s/index.m3u8", dir) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return log_warning_errno(errno, "Cannot create %s: %m", dir);
        /* A playlist left by an earlier HLS output is stale: the URL is given out once this
         * pipeline has written its own (go2rtc-module.c). */
        if (unlink(playlist) < 0 && errno != ENOENT)
                return log_warning_errno(errno, "Cannot remove %s: %m", playlist);
        p = gst_parse_launch("hlssink2 name=hls target-duration=1 max-files=8 playlist-length=5 "
                             "send-keyframe-requests=false "
                             "appsrc name=src is-live=true do-timestamp=true format=time max-bytes=8000000 "
                             "leaky-type=upstream ! h264parse ! hls.video",
                             &err);
        if (!p) {
                r = asprintf(ret_error, "cannot build the HLS pipeline: %s", err ? err->message : "?");
                if (r < 0)
                        *ret_error = NULL;
                g_clear_error(&err);
                return -EIO;
        }
        g_clear_error(&err);
        hls = gst_bin_get_by_name(GST_BIN(p), "hls");
        g_object_set(hls, "location", location, "playlist-location", playlist, NULL);
        gst_object_unref(hls);
        k = calloc(1, sizeof(*k));
        if (!k) {
                gst_object_unref(p);
                return -ENOMEM;
        }
        k->refs = 1;
        k->conv = c;
        k->hls = true;
        k->pipeline = p;
        k->need_keyframe = true;
        k->flow_id = strdup("hls");
        k->appsrc = gst_bin_get_by_name(GST_BIN(p), "src");
        r = add_consumer(c, k);
        if (r < 0) {
                k->dead = true;
                pipeline_drop(p);
                consumer_unref(k);
                return r;
        }
        if (gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
                consumer_drop(c, k);
                *ret_error = strdup("the HLS pipeline cannot start");
                return -EIO;
        }
        return 0;
}

void gst_converter_remove(GstConverter *c, const char *flow_id) {
        Consumer *k = find_consumer(c, flow_id, false);

        if (k) {
                k->done = NULL;
                consumer_drop(c, k);
        }
        if (c->hls_flows) {
                guint n = g_strv_length(c->hls_flows), w = 0;
                for (guint i = 0; i < n; i++)
                        if (strcmp(c->hls_flows[i], flow_id) == 0)
                                g_free(c->hls_flows[i]);
                        else
                                c->hls_flows[w++] = c->hls_flows[i];
                c->hls_flows[w] = NULL;
                if (w == 0 && (k = find_consumer(c, NULL, true)))
                        consumer_drop(c, k);
        }
        if (c->n_consumers == 0 && (c->ingest || c->retry_timer)) {
                ingest_stop(c);
                set_state(c, "idle", NULL);
        }
}

void gst_converter_get_stats(GstConverter *c, GstConverterStats *ret) {
        g_mutex_lock(&c->lock);
        *ret = c->stats;
        g_mutex_unlock(&c->lock);
}

const char *gst_converter_get_state(GstConverter *c) {
        return c->state;
}

const char *gst_converter_get_reason(GstConverter *c) {
        return c->reason;
}
