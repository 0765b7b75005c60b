/* go2rtc-api: the go2rtc HTTP API backend (see go2rtc-api.h). */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "go2rtc-api.h"
#include "shared/log.h"
#include "shared/macro.h"

extern char **environ;

struct Go2rtc {
        sd_event *event;
        HttpClient *http;
        char *url;
        char *binary, *config_path;
        pid_t child;
        sd_event_source *child_src, *restart_timer;
        unsigned restart_ms;
        json_t *streams; /* the last GET /api/streams */
        bool polling;
};

typedef struct Call {
        Go2rtc *g;
        char *name, *offer;
        go2rtc_answer_t done;
        void *userdata;
        HttpRequest *req;
} Call;

static char *escape(const char *s) {
        char *e = curl_easy_escape(NULL, s, 0), *r = e ? strdup(e) : NULL;
        curl_free(e);
        return r;
}

static void call_free(Call *c) {
        if (!c)
                return;
        free(c->name);
        free(c->offer);
        free(c);
}

void go2rtc_cancel(void *handle) {
        Call *c = handle;

        if (!c)
                return;
        http_request_cancel(c->req);
        call_free(c);
}

static void finish(Call *c, int error, const char *msg, const char *sdp) {
        go2rtc_answer_t done = c->done;
        void *ud = c->userdata;

        call_free(c);
        done(error, msg, sdp, ud);
}

static void on_webrtc(HttpRequest *req, int error, long status, const char *body, size_t len, const char *errmsg,
                      void *userdata) {
        Call *c = userdata;
        char msg[256];
        json_t *j;

        c->req = NULL;
        if (error < 0) {
                snprintf(msg, sizeof(msg), "go2rtc: %s", errmsg ? errmsg : "request failed");
                finish(c, error, msg, NULL);
                return;
        }
        if (status != 200 && status != 201) {
                snprintf(msg, sizeof(msg), "go2rtc refused the WebRTC offer: HTTP %ld", status);
                finish(c, -EIO, msg, NULL);
                return;
        }
        /* The answer is the raw SDP, or {"type": "answer", "sdp": ...}. */
        j = body[0] == '{' ? json_loads(body, 0, NULL) : NULL;
        if (j) {
                const char *sdp = json_string_value(json_object_get(j, "sdp"));
                if (sdp && strncmp(sdp, "v=0", 3) == 0)
                        finish(c, 0, NULL, sdp);
                else
                        finish(c, -EBADMSG, "go2rtc answered without an SDP", NULL);
                json_decref(j);
                return;
        }
        if (strncmp(body, "v=0", 3) != 0) {
                finish(c, -EBADMSG, "go2rtc answered something that is not an SDP", NULL);
                return;
        }
        finish(c, 0, NULL, body);
}

static void on_stream_added(HttpRequest *req, int error, long status, const char *body, size_t len,
                            const char *errmsg, void *userdata) {
        Call *c = userdata;
        _cleanup_free_ char *name = NULL, *url = NULL;
        HttpRequestSpec spec;
        char msg[256];
        int r;

        c->req = NULL;
        if (error < 0 || (status != 200 && status != 201)) {
                if (error < 0)
                        snprintf(msg, sizeof(msg), "go2rtc: %s", errmsg ? errmsg : "request failed");
                else
                        snprintf(msg, sizeof(msg), "go2rtc refused the stream: HTTP %ld", status);
                finish(c, error < 0 ? error : -EIO, msg, NULL);
                return;
        }
        if (!c->offer) {
                finish(c, 0, NULL, NULL);
                return;
        }
        name = escape(c->name);
        if (!name || asprintf(&url, "%s/api/webrtc?src=%s", c->g->url, name) < 0) {
                finish(c, -ENOMEM, "out of memory", NULL);
                return;
        }
        spec = (HttpRequestSpec){ .method = "POST", .url = url, .content_type = "application/sdp",
                                  .body = c->offer, .timeout_ms = 15000, .max_body = 256 * 1024 };
        r = http_request(c->g->http, &spec, on_webrtc, c, &c->req);
        if (r < 0)
                finish(c, r, "go2rtc: cannot send the offer", NULL);
}

static int start(Go2rtc *g, const char *name, const char *src, const char *offer, go2rtc_answer_t done,
                 void *userdata, void **ret_handle) {
        _cleanup_free_ char *n = escape(name), *s = escape(src), *url = NULL;
        HttpRequestSpec spec;
        Call *c;
        int r;

        if (!n || !s || asprintf(&url, "%s/api/streams?name=%s&src=%s", g->url, n, s) < 0)
                return -ENOMEM;
        c = calloc(1, sizeof(*c));
        if (!c || !(c->name = strdup(name)) || (offer && !(c->offer = strdup(offer)))) {
                call_free(c);
                return -ENOMEM;
        }
        c->g = g;
        c->done = done;
        c->userdata = userdata;
        spec = (HttpRequestSpec){ .method = "PUT", .url = url, .timeout_ms = 5000, .max_body = 64 * 1024 };
        r = http_request(g->http, &spec, on_stream_added, c, &c->req);
        explicit_bzero(url, strlen(url));
        if (r < 0) {
                call_free(c);
                return r;
        }
        if (ret_handle)
                *ret_handle = c;
        return 0;
}

int go2rtc_answer(Go2rtc *g, const char *name, const char *src, const char *offer, go2rtc_answer_t done,
                  void *userdata, void **ret_handle) {
        return start(g, name, src, offer, done, userdata, ret_handle);
}

int go2rtc_add_stream(Go2rtc *g, const char *name, const char *src, go2rtc_answer_t done, void *userdata,
                      void **ret_handle) {
        return start(g, name, src, NULL, done, userdata, ret_handle);
}

void go2rtc_delete_stream(Go2rtc *g, const char *name) {
        _cleanup_free_ char *n = escape(name), *url = NULL;
        HttpRequestSpec spec;

        if (!n || asprintf(&url, "%s/api/streams?src=%s", g->url, n) < 0)
                return;
        spec = (HttpRequestSpec){ .method = "DELETE", .url = url, .timeout_ms = 5000, .max_body = 64 * 1024 };
        (void)http_request(g->http, &spec, NULL, NULL, NULL);
}

char *go2rtc_hls_url(Go2rtc *g, const char *name) {
        _cleanup_free_ char *n = escape(name);
        char *s;

        if (!n || asprintf(&s, "%s/api/stream.m3u8?src=%s", g->url, n) < 0)
                return NULL;
        return s;
}

typedef struct Poll {
        Go2rtc *g;
        go2rtc_streams_t done;
        void *userdata;
} Poll;

static void on_streams(HttpRequest *req, int error, long status, const char *body, size_t len, const char *errmsg,
                       void *userdata) {
        Poll *p = userdata;
        Go2rtc *g = p->g;
        json_t *j = NULL;
        char msg[256];

        g->polling = false;
        if (error < 0)
                snprintf(msg, sizeof(msg), "go2rtc: %s", errmsg ? errmsg : "request failed");
        else if (status != 200)
                snprintf(msg, sizeof(msg), "go2rtc: GET /api/streams: HTTP %ld", status);
        else if (!(j = json_loads(body, 0, NULL)) || !json_is_object(j))
                snprintf(msg, sizeof(msg), "go2rtc: GET /api/streams: not a JSON object");
        json_decref(g->streams);
        g->streams = json_is_object(j) ? j : NULL;
        if (j && !json_is_object(j))
                json_decref(j);
        if (p->done)
                p->done(g->streams ? 0 : error < 0 ? error : -EBADMSG, g->streams ? NULL : msg, p->userdata);
        free(p);
}

int go2rtc_poll(Go2rtc *g, go2rtc_streams_t done, void *userdata) {
        _cleanup_free_ char *url = NULL;
        HttpRequestSpec spec;
        Poll *p;
        int r;

        if (g->polling)
                return 0;
        if (asprintf(&url, "%s/api/streams", g->url) < 0 || !(p = calloc(1, sizeof(*p))))
                return -ENOMEM;
        *p = (Poll){ .g = g, .done = done, .userdata = userdata };
        spec = (HttpRequestSpec){ .method = "GET", .url = url, .timeout_ms = 5000, .max_body = 4 * 1024 * 1024 };
        r = http_request(g->http, &spec, on_streams, p, NULL);
        if (r < 0) {
                free(p);
                return r;
        }
        g->polling = true;
        return 0;
}

static uint64_t number(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

void go2rtc_stream_info(Go2rtc *g, const char *name, Go2rtcStreamInfo *ret) {
        json_t *s = g->streams ? json_object_get(g->streams, name) : NULL, *producers, *v;
        size_t i;

        *ret = (Go2rtcStreamInfo){};
        if (!json_is_object(s))
                return;
        ret->found = true;
        producers = json_object_get(s, "producers");
        ret->consumers = (unsigned)json_array_size(json_object_get(s, "consumers"));
        json_array_foreach(producers, i, v) {
                uint64_t b = number(v, "bytes_recv") + number(v, "recv");
                ret->bytes_recv += b;
                /* A producer that is configured but not connected has no receivers/medias. */
                if (b > 0 || json_object_get(v, "medias") || json_object_get(v, "receivers"))
                        ret->producers++;
        }
}

const char *go2rtc_url(Go2rtc *g) {
        return g->url;
}

/* ---- go2rtc as a child process ---- */

static int spawn_child(Go2rtc *g);

static int on_restart(sd_event_source *s, uint64_t usec, void *userdata) {
        Go2rtc *g = userdata;

        g->restart_timer = sd_event_source_disable_unref(g->restart_timer);
        (void)spawn_child(g);
        return 0;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Go2rtc *g = userdata;
        uint64_t now;

        log_warning("go2rtc (pid %d) exited with status %d; restarting in %u ms.", (int)si->si_pid, si->si_status,
                    g->restart_ms);
        g->child_src = sd_event_source_disable_unref(g->child_src);
        g->child = 0;
        (void)sd_event_now(g->event, CLOCK_MONOTONIC, &now);
        (void)sd_event_add_time(g->event, &g->restart_timer, CLOCK_MONOTONIC, now + (uint64_t)g->restart_ms * 1000,
                                0, on_restart, g);
        g->restart_ms = MIN(g->restart_ms * 2, 30000u);
        return 0;
}

static int spawn_child(Go2rtc *g) {
        char *argv[] = { g->binary, (char *)"-config", g->config_path, NULL };
        posix_spawnattr_t attr;
        sigset_t none;
        int r;

        sigemptyset(&none);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        r = posix_spawn(&g->child, g->binary, NULL, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        if (r != 0)
                return log_error_errno(r, "Cannot run %s: %m", g->binary);
        log_info("Started go2rtc (pid %d), API on %s.", (int)g->child, g->url);
        return sd_event_add_child(g->event, &g->child_src, g->child, WEXITED, on_child, g);
}

/* go2rtc's own configuration: its API on the module's loopback address only, no RTSP server. */
static int write_child_config(Go2rtc *g, const char *runtime_dir) {
        const char *hostport = strstr(g->url, "://");
        _cleanup_free_ char *text = NULL;
        FILE *f;

        if (!hostport || asprintf(&g->config_path, "%s/go2rtc.yaml", runtime_dir) < 0)
                return -ENOMEM;
        if (asprintf(&text, "api:\n  listen: \"%s\"\nrtsp:\n  listen: \"\"\nlog:\n  level: info\n", hostport + 3) < 0)
                return -ENOMEM;
        f = fopen(g->config_path, "we");
        if (!f)
                return log_error_errno(errno, "Cannot write %s: %m", g->config_path);
        fputs(text, f);
        return fclose(f) == 0 ? 0 : -errno;
}

int go2rtc_new(Go2rtc **ret, sd_event *event, HttpClient *http, const char *url, const char *binary,
               const char *runtime_dir) {
        Go2rtc *g = calloc(1, sizeof(*g));
        size_t n;
        int r;

        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(event);
        g->http = http;
        g->url = strdup(url);
        g->restart_ms = 500;
        if (!g->url) {
                go2rtc_free(g);
                return -ENOMEM;
        }
        n = strlen(g->url);
        while (n > 0 && g->url[n - 1] == '/')
                g->url[--n] = 0;
        if (binary) {
                g->binary = strdup(binary);
                r = g->binary ? write_child_config(g, runtime_dir) : -ENOMEM;
                if (r >= 0)
                        r = spawn_child(g);
                if (r < 0) {
                        go2rtc_free(g);
                        return r;
                }
        }
        *ret = g;
        return 0;
}

Go2rtc *go2rtc_free(Go2rtc *g) {
        if (!g)
                return NULL;
        g->child_src = sd_event_source_disable_unref(g->child_src);
        g->restart_timer = sd_event_source_disable_unref(g->restart_timer);
        if (g->child > 0) {
                (void)kill(g->child, SIGTERM);
                (void)waitpid(g->child, NULL, 0);
        }
        json_decref(g->streams);
        free(g->url);
        free(g->binary);
        free(g->config_path);
        sd_event_unref(g->event);
        free(g);
        return NULL;
}
