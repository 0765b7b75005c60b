/* gst-converter: the built-in backend of the go2rtc module. One RTSP ingest pipeline per
 * converter (rtspsrc -> depay -> h264parse -> appsink, no transcoding) feeds any number of
 * consumers, each a pipeline of its own (appsrc -> rtph264pay -> webrtcbin, or appsrc ->
 * hlssink2), so that a camera that goes away and comes back does not disturb the peers.
 *
 * Every function here is called on the module's sd-event thread, and every callback runs
 * there: GStreamer's threads hand their news over through an eventfd. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct GstConverter GstConverter;

typedef struct GstConverterSettings {
        char **ice_addresses;     /* local addresses for ICE host candidates (NULL: all) */
        const char *hls_dir;      /* where HLS playlists and segments are written */
        unsigned retry_min_ms, retry_max_ms;
        unsigned stall_timeout_ms; /* no frame from the camera for this long: reconnect */
} GstConverterSettings;

typedef struct GstConverterStats {
        uint64_t bytes_in, frames_in, frames_out, errors;
        unsigned peers, hls;
        unsigned width, height;
} GstConverterStats;

/* The converter's state changed: "idle", "connecting", "active" or "degraded" (reason says why). */
typedef void (*gst_converter_state_t)(GstConverter *c, const char *state, const char *reason, void *userdata);
/* A consumer ended by itself (a WebRTC peer that went away). */
typedef void (*gst_converter_ended_t)(GstConverter *c, const char *flow_id, const char *reason, void *userdata);
/* An SDP is ready: the answer to a peer's offer, or the offer we made (error < 0: failed, msg says why). */
typedef void (*gst_converter_sdp_t)(int error, const char *msg, const char *sdp, const char *sdp_type, void *userdata);

int gst_converter_init(sd_event *event);
void gst_converter_deinit(void);

int gst_converter_new(GstConverter **ret, const char *id, const GstConverterSettings *settings,
                      gst_converter_state_t on_state, gst_converter_ended_t on_ended, void *userdata);
GstConverter *gst_converter_free(GstConverter *c);

/* The camera to read (an rtsp:// URL, credentials included: never logged). A new URL
 * reconnects; the same one does nothing. */
int gst_converter_set_source(GstConverter *c, const char *url, char **ret_error);

/* A WebRTC consumer for a flow: with offer, answers it; without, makes an offer (complete
 * the exchange with gst_converter_set_answer()). done runs once, later. Replaces a consumer
 * of the same flow. */
int gst_converter_add_webrtc(GstConverter *c, const char *flow_id, const char *offer, gst_converter_sdp_t done,
                             void *userdata, char **ret_error);
int gst_converter_set_answer(GstConverter *c, const char *flow_id, const char *answer, char **ret_error);
/* An HLS consumer for a flow; *ret_name: "<id>/index.m3u8" below hls_dir. */
int gst_converter_add_hls(GstConverter *c, const char *flow_id, char **ret_name, char **ret_error);
/* Ends the flow's consumer (no-op if there is none); without consumers the camera is let go. */
void gst_converter_remove(GstConverter *c, const char *flow_id);
/* Cancel a pending SDP callback (its done will not run). */
void gst_converter_cancel_sdp(GstConverter *c, const char *flow_id);

void gst_converter_get_stats(GstConverter *c, GstConverterStats *ret);
const char *gst_converter_get_state(GstConverter *c);
/* Why it is in that state ("...; reconnecting in 500 ms"), or NULL. */
const char *gst_converter_get_reason(GstConverter *c);
