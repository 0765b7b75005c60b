/* http-client: non-blocking HTTP requests (libcurl's multi interface) on an sd-event loop, for
 * the camera modules (ONVIF SOAP, the go2rtc API). Callbacks run on the loop. */
#pragma once

#include <stddef.h>
#include <systemd/sd-event.h>

typedef struct HttpClient HttpClient;
typedef struct HttpRequest HttpRequest;

/* error: 0 when an answer came (any HTTP status), else a negative errno (-ETIMEDOUT,
 * -ECONNREFUSED, -EHOSTUNREACH, -EMSGSIZE for an answer bigger than max_body, -EIO) with
 * errmsg saying what happened. body is NUL-terminated and valid during the callback. */
typedef void (*http_done_t)(HttpRequest *req, int error, long status, const char *body, size_t len,
                            const char *errmsg, void *userdata);

typedef struct HttpRequestSpec {
        const char *method;        /* "GET", "POST", "PUT", "DELETE" */
        const char *url;           /* http:// or https:// only */
        const char *content_type;  /* for a body, or NULL */
        const char *body;          /* or NULL */
        const char *username;      /* HTTP digest authentication, if the server asks; or NULL */
        const char *password;
        unsigned timeout_ms;
        size_t max_body;           /* answers bigger than this fail with -EMSGSIZE */
} HttpRequestSpec;

int http_client_new(HttpClient **ret, sd_event *event);
/* Cancels requests in flight (their callbacks do not run). */
HttpClient *http_client_free(HttpClient *c);

int http_request(HttpClient *c, const HttpRequestSpec *spec, http_done_t done, void *userdata, HttpRequest **ret);
/* No callback runs after this (a no-op inside the request's own callback). */
void http_request_cancel(HttpRequest *r);
