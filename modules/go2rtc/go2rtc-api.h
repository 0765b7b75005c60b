/* go2rtc-api: the go2rtc backend of the go2rtc module. Drives a go2rtc server through its HTTP
 * API (PUT/DELETE /api/streams, POST /api/webrtc, GET /api/stream.m3u8, GET /api/streams),
 * and can run go2rtc itself as a child process. Runs on the module's sd-event loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "http-client.h"

typedef struct Go2rtc Go2rtc;

/* done: error < 0 with msg, or the SDP answer. */
typedef void (*go2rtc_answer_t)(int error, const char *msg, const char *sdp, void *userdata);
/* A stream's figures from GET /api/streams (found false: go2rtc has no such stream). */
typedef struct Go2rtcStreamInfo {
        bool found;
        unsigned producers, consumers;
        uint64_t bytes_recv;
} Go2rtcStreamInfo;
typedef void (*go2rtc_streams_t)(int error, const char *msg, void *userdata);

/* url: the API's base URL, e.g. http://127.0.0.1:1984. binary: a go2rtc program to run as a
 * child (then url names where its API will listen); NULL to use a server that runs already. */
int go2rtc_new(Go2rtc **ret, sd_event *event, HttpClient *http, const char *url, const char *binary,
               const char *runtime_dir);
Go2rtc *go2rtc_free(Go2rtc *g);
const char *go2rtc_url(Go2rtc *g);

/* Make sure go2rtc has stream name reading src (PUT /api/streams), then answer the offer
 * (POST /api/webrtc?src=name). The returned request can be cancelled (no callback then). */
int go2rtc_answer(Go2rtc *g, const char *name, const char *src, const char *offer, go2rtc_answer_t done,
                  void *userdata, void **ret_handle);
/* PUT /api/streams only (for HLS). */
int go2rtc_add_stream(Go2rtc *g, const char *name, const char *src, go2rtc_answer_t done, void *userdata,
                      void **ret_handle);
void go2rtc_cancel(void *handle);
/* DELETE /api/streams?src=name, fire and forget. */
void go2rtc_delete_stream(Go2rtc *g, const char *name);
/* GET /api/streams; then go2rtc_stream_info() tells about each stream until the next poll. */
int go2rtc_poll(Go2rtc *g, go2rtc_streams_t done, void *userdata);
void go2rtc_stream_info(Go2rtc *g, const char *name, Go2rtcStreamInfo *ret);
/* The HLS playlist URL of a stream (malloc()ed). */
char *go2rtc_hls_url(Go2rtc *g, const char *name);
