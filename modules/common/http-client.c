/* http-client: libcurl's multi-socket interface driven by sd-event (see http-client.h). */
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http-client.h"

struct HttpClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        HttpRequest *requests;
};

struct HttpRequest {
        HttpClient *client;
        CURL *easy;
        struct curl_slist *headers;
        char *buf;
        size_t len, max;
        bool too_big;
        bool finishing;   /* its callback runs: cancelling it then is a no-op */
        char *username, *password; /* HTTP digest, used once the server answered 401 */
        bool retried;
        http_done_t done;
        void *userdata;
        char errbuf[CURL_ERROR_SIZE];
        HttpRequest *prev, *next;
};

static void request_free(HttpRequest *r) {
        HttpClient *c = r->client;

        curl_multi_remove_handle(c->multi, r->easy);
        curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->headers);
        free(r->buf);
        free(r->username);
        if (r->password)
                explicit_bzero(r->password, strlen(r->password));
        free(r->password);
        if (r->prev)
                r->prev->next = r->next;
        else
                c->requests = r->next;
        if (r->next)
                r->next->prev = r->prev;
        free(r);
}

static int errno_of(CURLcode code, bool too_big) {
        if (too_big)
                return -EMSGSIZE;
        switch (code) {
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
                return -ECONNRESET;
        default:
                return -EIO;
        }
}

static void check_done(HttpClient *c) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(c->multi, &left))) {
                HttpRequest *r = NULL;
                long status = 0;
                int error;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
                if (status == 401 && msg->data.result == CURLE_OK && r->username && !r->retried) {
                        /* The server wants HTTP authentication: once more, with digest (never
                         * Basic: no password in clear because a server asked for it). Asking
                         * only now keeps curl from probing with an empty body first. */
                        CURL *e = r->easy;
                        r->retried = true;
                        r->len = 0;
                        curl_multi_remove_handle(c->multi, e);
                        curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_DIGEST);
                        curl_easy_setopt(e, CURLOPT_USERNAME, r->username);
                        curl_easy_setopt(e, CURLOPT_PASSWORD, r->password ? r->password : "");
                        if (curl_multi_add_handle(c->multi, e) == CURLM_OK)
                                continue;
                }
                error = msg->data.result == CURLE_OK && !r->too_big ? 0 : errno_of(msg->data.result, r->too_big);
                r->finishing = true;
                if (r->done) {
                        char errmsg[CURL_ERROR_SIZE + 64];
                        if (r->too_big)
                                snprintf(errmsg, sizeof(errmsg), "answer bigger than %zu bytes", r->max);
                        else
                                snprintf(errmsg, sizeof(errmsg), "%s",
                                         *r->errbuf ? r->errbuf : curl_easy_strerror(msg->data.result));
                        r->done(r, error, status, r->buf ? r->buf : "", r->len, error ? errmsg : NULL, r->userdata);
                }
                request_free(r);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HttpClient *c = userdata;
        int flags = 0, running;

        if (revents & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(c->multi, fd, flags, &running);
        check_done(c);
        return 0;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        HttpClient *c = userp;
        sd_event_source *s = socketp;
        uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        sd_event_source_disable_unref(s);
                        curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (s)
                return sd_event_source_set_io_events(s, events) < 0 ? -1 : 0;
        if (sd_event_add_io(c->event, &s, fd, events, on_io, c) < 0)
                return -1;
        curl_multi_assign(c->multi, fd, s);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpClient *c = userdata;
        int running;

        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(c);
        return 0;
}

static int on_set_timer(CURLM *multi, long timeout_ms, void *userp) {
        HttpClient *c = userp;
        uint64_t now;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        (void)sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        if (sd_event_source_set_time(c->timer, now + (uint64_t)timeout_ms * 1000) < 0 ||
            sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

int http_client_new(HttpClient **ret, sd_event *event) {
        HttpClient *c;
        int r;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->multi = curl_multi_init();
        if (!c->multi) {
                http_client_free(c);
                return -ENOMEM;
        }
        r = sd_event_add_time(event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_timer, c);
        if (r < 0) {
                http_client_free(c);
                return r;
        }
        (void)sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_set_timer);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        *ret = c;
        return 0;
}

HttpClient *http_client_free(HttpClient *c) {
        if (!c)
                return NULL;
        while (c->requests)
                request_free(c->requests);
        if (c->multi)
                curl_multi_cleanup(c->multi);
        sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        free(c);
        curl_global_cleanup();
        return NULL;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        HttpRequest *r = userdata;
        size_t len = size * n;
        char *b;

        if (r->len + len > r->max) {
                r->too_big = true;
                return 0; /* aborts the transfer */
        }
        b = realloc(r->buf, r->len + len + 1);
        if (!b)
                return 0;
        memcpy(b + r->len, data, len);
        r->buf = b;
        r->len += len;
        b[r->len] = 0;
        return len;
}

int http_request(HttpClient *c, const HttpRequestSpec *spec, http_done_t done, void *userdata, HttpRequest **ret) {
        HttpRequest *r;
        CURL *e;
        char ct[256];

        if (!spec->url || (strncmp(spec->url, "http://", 7) != 0 && strncmp(spec->url, "https://", 8) != 0))
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        e = r->easy = curl_easy_init();
        if (!e) {
                free(r);
                return -ENOMEM;
        }
        r->client = c;
        r->done = done;
        r->userdata = userdata;
        r->max = spec->max_body ? spec->max_body : 1024 * 1024;
        r->next = c->requests;
        if (c->requests)
                c->requests->prev = r;
        c->requests = r;

        curl_easy_setopt(e, CURLOPT_URL, spec->url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(spec->timeout_ms ? spec->timeout_ms : 5000));
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(spec->timeout_ms ? spec->timeout_ms : 5000));
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, spec->method ? spec->method : "GET");
        if (spec->body) {
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(spec->body));
                curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, spec->body);
        }
        if (spec->content_type) {
                snprintf(ct, sizeof(ct), "Content-Type: %s", spec->content_type);
                r->headers = curl_slist_append(r->headers, ct);
        }
        r->headers = curl_slist_append(r->headers, "Expect:");
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
        if (spec->username && *spec->username) {
                r->username = strdup(spec->username);
                r->password = spec->password ? strdup(spec->password) : NULL;
        }
        if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
                request_free(r);
                return -EIO;
        }
        if (ret)
                *ret = r;
        return 0;
}

void http_request_cancel(HttpRequest *r) {
        if (r && !r->finishing)
                request_free(r);
}
