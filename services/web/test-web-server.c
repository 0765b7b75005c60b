/* Tests of the dashboard's HTTP server on its own (h2o thread, no orchestrator): routing,
 * login and sessions, CSRF, bad requests, static files and path traversal, event streams,
 * and a clean stop with connections open. Jobs are answered by a stand-in for the service. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "services/web/web-auth.h"
#include "services/web/web-server.h"
#include "shared/macro.h"

static WebServer *server;
static char assets[] = "/tmp/test-web-server-XXXXXX";
static int port;
static char *password_hash;
static _Atomic uint64_t stream_ended;

/* The service's part: answer every job at once (on the h2o thread; reply is thread-safe). */
static void submit(WebJob *job, void *userdata) {
        char *body = NULL;

        switch (job->kind) {
        case WEB_JOB_MODULE:
                if (strcmp(job->module, "camera") == 0)
                        (void)!asprintf(&body, "{\"name\":\"camera\"}");
                web_server_reply(server, job, body ? 200 : 404, body ? body : strdup("{\"error\":\"no such module\"}"));
                return;
        case WEB_JOB_CONFIG_SET:
                (void)!asprintf(&body, "{\"echo\":%.*s}", (int)job->body_len, job->body);
                web_server_reply(server, job, 200, body);
                return;
        case WEB_JOB_LIVE_START:
                (void)!asprintf(&body, "{\"module\":\"%s\",\"entity\":\"%s\",\"stream\":%" PRIu64 ",\"sdp_len\":%zu}",
                                job->module, job->arg, job->stream_id, job->body_len);
                web_server_reply(server, job, 200, body);
                return;
        case WEB_JOB_LIVE_STOP:
                (void)!asprintf(&body, "{\"flow\":\"%s\"}", job->arg);
                web_server_reply(server, job, 200, body);
                return;
        case WEB_JOB_STREAM_ENDED:
                atomic_store(&stream_ended, job->stream_id);
                web_job_free(job);
                return;
        case WEB_JOB_STREAMS:
        case WEB_JOB_REVOKED:
                web_job_free(job);
                return;
        default:
                web_server_reply(server, job, 200, strdup("{}"));
                return;
        }
}

static void write_file(const char *name, const char *text) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", assets, name);
        f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

/* One HTTP/1.1 request on a new connection; returns the whole response (headers + body). */
static char *http(const char *method, const char *path, const char *headers, const char *body) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        char *req = NULL, *resp = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&resp, &size);
        char buf[4096];
        ssize_t n;
        int fd;

        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_true(asprintf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
                             method, path, port, headers ? headers : "", body ? strlen(body) : 0, body ? body : "") > 0);
        assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                fwrite(buf, 1, (size_t)n, out);
        fclose(out);
        close(fd);
        free(req);
        return resp;
}

static int status_of(const char *resp) {
        int s = 0;

        assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &s), 1);
        return s;
}

static const char *body_of(const char *resp) {
        const char *b = strstr(resp, "\r\n\r\n");

        assert_non_null(b);
        return b + 4;
}

static int setup(void **state) {
        WebServerOptions o = { .listen = "127.0.0.1:0", .max_body = 1024, .submit = submit };
        const char *url;

        /* As in the daemon: a write to a connection the client closed fails, it kills nobody. */
        (void)signal(SIGPIPE, SIG_IGN);
        assert_non_null(mkdtemp(assets));
        write_file("index.html", "<!doctype html><title>overview</title>");
        write_file("login.html", "<!doctype html><title>login</title>");
        write_file(".hidden", "secret");
        o.assets_dir = assets;
        assert_int_equal(web_server_new(&server, &o), 0);
        url = web_server_url(server);
        assert_true(sscanf(url, "http://127.0.0.1:%d/", &port) == 1);
        assert_int_equal(web_password_hash("test-password", &password_hash), 0);
        web_server_set_password_hash(server, password_hash);
        assert_int_equal(web_server_start(server), 0);
        return 0;
}

static int teardown(void **state) {
        char cmd[300];

        server = web_server_free(server);
        free(password_hash);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", assets);
        (void)!system(cmd);
        return 0;
}

/* Log in; returns "Cookie: ...\r\nX-CSRF-Token: ...\r\n" for later requests, and the
 * cookie line alone in *ret_cookie. */
static char *login(char **ret_cookie) {
        char *r = http("POST", "/api/login", "Content-Type: application/json\r\n",
                                      "{\"password\":\"test-password\"}");
        const char *c, *t;
        char *headers = NULL;

        assert_int_equal(status_of(r), 200);
        assert_true(asprintf(ret_cookie, "Cookie: %.*s\r\n", (int)strcspn(strcasestr(r, "ca_session="), ";"),
                             strcasestr(r, "ca_session=")) > 0);
        c = strcasestr(r, "set-cookie: ca_session=");
        assert_non_null(c);
        assert_non_null(strstr(c, "HttpOnly"));
        assert_non_null(strstr(c, "SameSite=Strict"));
        c += strlen("set-cookie: ");
        t = strstr(body_of(r), "\"csrf\":\"");
        assert_non_null(t);
        t += 8;
        assert_true(asprintf(&headers, "Cookie: %.*s\r\nX-CSRF-Token: %.*s\r\n", (int)strcspn(c, ";"), c,
                             (int)strcspn(t, "\""), t) > 0);
        free(r);
        return headers;
}

static void test_needs_login(void **state) {
        char *r;

        r = http("GET", "/api/modules", NULL, NULL);
        assert_int_equal(status_of(r), 401);
        assert_non_null(strstr(body_of(r), "\"error\":\"not logged in\""));
        assert_non_null(strcasestr(r, "content-type: application/json"));
        free(r);
        r = http("GET", "/", NULL, NULL);
        assert_int_equal(status_of(r), 303);
        assert_non_null(strcasestr(r, "location: /login.html"));
        free(r);
        r = http("GET", "/login.html", NULL, NULL);
        assert_int_equal(status_of(r), 200);
        assert_non_null(strstr(r, "<title>login</title>"));
        assert_non_null(strcasestr(r, "x-frame-options: DENY"));
        assert_non_null(strcasestr(r, "content-security-policy: default-src 'self'"));
        free(r);
        /* A forged cookie is no session. */
        r = http("GET", "/api/session", "Cookie: ca_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", NULL);
        assert_int_equal(status_of(r), 401);
        free(r);
}

static void test_login_and_bad_input(void **state) {
        char *r, *h = NULL, *cookie_only = NULL;

        r = http("POST", "/api/login", "Content-Type: application/json\r\n", "{\"password\":\"nope\"}");
        assert_int_equal(status_of(r), 401);
        free(r);
        r = http("POST", "/api/login", "Content-Type: application/json\r\n", "{\"password\":");
        assert_int_equal(status_of(r), 400);
        assert_non_null(strstr(body_of(r), "malformed JSON"));
        free(r);
        r = http("POST", "/api/login", "Content-Type: text/plain\r\n", "{\"password\":\"x\"}");
        assert_int_equal(status_of(r), 415);
        free(r);
        r = http("GET", "/api/login", NULL, NULL);
        assert_int_equal(status_of(r), 405);
        assert_non_null(strcasestr(r, "allow: POST"));
        free(r);

        h = login(&cookie_only);
        r = http("GET", "/api/session", h, NULL);
        assert_int_equal(status_of(r), 200);
        free(r);
        r = http("GET", "/", h, NULL);
        assert_int_equal(status_of(r), 200);
        assert_non_null(strstr(r, "<title>overview</title>"));
        free(r);
        r = http("GET", "/api/modules/camera", h, NULL);
        assert_int_equal(status_of(r), 200);
        assert_string_equal(body_of(r), "{\"name\":\"camera\"}");
        free(r);
        r = http("GET", "/api/modules/ghost", h, NULL);
        assert_int_equal(status_of(r), 404);
        free(r);
        r = http("GET", "/api/nothing-here", h, NULL);
        assert_int_equal(status_of(r), 404);
        assert_non_null(strstr(body_of(r), "\"error\""));
        free(r);
        r = http("DELETE", "/api/modules/camera", h, NULL);
        assert_int_equal(status_of(r), 405);
        free(r);
        r = http("POST", "/api/modules/camera/explode", h, NULL);
        assert_int_equal(status_of(r), 404);
        free(r);
        /* The module list is not known before the service published one. */
        r = http("GET", "/api/modules", h, NULL);
        assert_int_equal(status_of(r), 503);
        free(r);
        WebBlob *b = web_blob_new("{\"modules\":[]}", 14);
        web_server_publish_modules(server, b);
        web_blob_unref(b);
        for (int i = 0; i < 100; i++) { /* the h2o thread takes it over asynchronously */
                r = http("GET", "/api/modules", h, NULL);
                if (status_of(r) == 200)
                        break;
                free(r);
                r = NULL;
                usleep(10000);
        }
        assert_non_null(r);
        assert_string_equal(body_of(r), "{\"modules\":[]}");
        free(r);

        /* Config: the JSON is checked before it goes anywhere; size is limited. */
        char *hj = NULL;
        assert_true(asprintf(&hj, "%sContent-Type: application/json\r\n", h) > 0);
        r = http("PUT", "/api/modules/camera/config", hj, "{\"config\": {\"a\": 1}}");
        assert_int_equal(status_of(r), 200);
        assert_string_equal(body_of(r), "{\"echo\":{\"config\": {\"a\": 1}}}");
        free(r);
        r = http("PUT", "/api/modules/camera/config", hj, "{\"config\": [1, 2");
        assert_int_equal(status_of(r), 400);
        assert_non_null(strstr(body_of(r), "malformed JSON at line 1"));
        free(r);
        r = http("PUT", "/api/modules/camera/config", hj, "[1]");
        assert_int_equal(status_of(r), 400);
        free(r);
        {
                char big[2000];
                memset(big, 'x', sizeof(big) - 1);
                big[sizeof(big) - 1] = 0;
                r = http("PUT", "/api/modules/camera/config", hj, big);
                assert_int_equal(status_of(r), 413);
                assert_non_null(strstr(body_of(r), "\"error\":\"request body too large\""));
                free(r);
        }
        /* CSRF: without the token, or with another origin, nothing changes. */
        {
                char *hx = NULL;
                r = http("POST", "/api/modules/camera/restart", cookie_only, NULL);
                assert_int_equal(status_of(r), 403);
                free(r);
                assert_true(asprintf(&hx, "%sOrigin: http://evil.example\r\n", h) > 0);
                r = http("POST", "/api/modules/camera/restart", hx, NULL);
                assert_int_equal(status_of(r), 403);
                free(r);
                free(hx);
                assert_true(asprintf(&hx, "%sOrigin: http://127.0.0.1:%d\r\n", h, port) > 0);
                r = http("POST", "/api/modules/camera/restart", hx, NULL);
                assert_int_equal(status_of(r), 200);
                free(r);
                free(hx);
                free(cookie_only);
        }
        free(hj);

        /* Static files: no way out of the assets folder, no hidden files. */
        const char *bad[] = { "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                              "/.hidden", "/nothing.html", "/index.html%00.png" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                r = http("GET", bad[i], h, NULL);
                assert_true(status_of(r) == 404 || status_of(r) == 400);
                assert_null(strstr(r, "root:"));
                assert_null(strstr(r, "secret"));
                free(r);
        }
        r = http("POST", "/index.html", h, NULL);
        assert_int_equal(status_of(r), 405);
        assert_non_null(strstr(body_of(r), "\"error\""));
        free(r);

        /* Logout ends the session. */
        r = http("POST", "/api/logout", h, NULL);
        assert_int_equal(status_of(r), 200);
        free(r);
        r = http("GET", "/api/session", h, NULL);
        assert_int_equal(status_of(r), 401);
        free(r);
        free(h);
}

static void test_rate_limit(void **state) {
        int limited = 0;

        /* The first few wrong attempts are answered, then 429 with Retry-After. */
        for (int i = 0; i < 8; i++) {
                char *r = http("POST", "/api/login", "Content-Type: application/json\r\n", "{\"password\":\"guess\"}");
                if (status_of(r) == 429) {
                        assert_non_null(strcasestr(r, "retry-after: "));
                        limited++;
                } else
                        assert_int_equal(status_of(r), 401);
                free(r);
        }
        assert_true(limited >= 3);
}

/* Read from fd until text appears (or 5 s pass). */
static bool read_until(int fd, const char *text, char *buf, size_t size) {
        size_t have = 0;
        struct timeval tv = { .tv_sec = 5 };

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        buf[0] = 0;
        while (!strstr(buf, text) && have + 1 < size) {
                ssize_t n = read(fd, buf + have, size - have - 1);
                if (n <= 0)
                        return false;
                have += (size_t)n;
                buf[have] = 0;
        }
        return strstr(buf, text) != NULL;
}

static int open_stream(const char *headers, const char *query) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        char req[1024];
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        snprintf(req, sizeof(req), "GET /api/events%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n", query, port, headers);
        assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        return fd;
}

static void test_events(void **state) {
        char *cookie = NULL, *h, buf[65536];
        int all, logs;
        WebBlob *b;

        h = login(&cookie);
        all = open_stream(cookie, "");
        logs = open_stream(cookie, "?logs=camera");
        assert_true(read_until(all, "event: modules\ndata: {\"modules\":[]}", buf, sizeof(buf)));
        assert_non_null(strcasestr(buf, "content-type: text/event-stream"));
        assert_true(read_until(logs, "event: modules", buf, sizeof(buf)));
        while (web_server_n_streams(server) != 2)
                usleep(1000);
        assert_true(web_server_wants_logs(server));

        /* A module event reaches both; a log line only the stream that follows that log. */
        b = web_blob_new("event: log\ndata: {\"module\":\"other\"}\n\n", strlen("event: log\ndata: {\"module\":\"other\"}\n\n"));
        web_server_broadcast(server, b, "other");
        web_blob_unref(b);
        b = web_blob_new("event: log\ndata: {\"module\":\"camera\"}\n\n", strlen("event: log\ndata: {\"module\":\"camera\"}\n\n"));
        web_server_broadcast(server, b, "camera");
        web_blob_unref(b);
        b = web_blob_new("event: module\ndata: {\"name\":\"camera\"}\n\n", strlen("event: module\ndata: {\"name\":\"camera\"}\n\n"));
        web_server_broadcast(server, b, NULL);
        web_blob_unref(b);
        assert_true(read_until(all, "event: module\ndata: {\"name\":\"camera\"}", buf, sizeof(buf)));
        assert_null(strstr(buf, "event: log"));
        assert_true(read_until(logs, "event: module\ndata: {\"name\":\"camera\"}", buf, sizeof(buf)));
        assert_non_null(strstr(buf, "{\"module\":\"camera\"}"));
        assert_null(strstr(buf, "{\"module\":\"other\"}"));

        /* Revoking the sessions ends their streams with a logout event, also while an event
         * is still being written (the logout then goes with the final send). */
        b = web_blob_new("event: module\ndata: {\"name\":\"last\"}\n\n",
                         strlen("event: module\ndata: {\"name\":\"last\"}\n\n"));
        web_server_broadcast(server, b, NULL);
        web_blob_unref(b);
        web_server_revoke_sessions(server, NULL);
        assert_true(read_until(all, "event: logout", buf, sizeof(buf)));
        assert_non_null(strstr(buf, "{\"name\":\"last\"}"));
        close(all);
        /* The other stays open over the server's stop (teardown), and so does an idle
         * keep-alive connection: the stop ends both cleanly. */
        (void)logs;
        {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
                char req[256];
                int idle = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
                assert_int_equal(connect(idle, (struct sockaddr *)&sa, sizeof(sa)), 0);
                snprintf(req, sizeof(req), "GET /login.html HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
                assert_int_equal(write(idle, req, strlen(req)), (ssize_t)strlen(req));
                assert_true(read_until(idle, "<title>login</title>", buf, sizeof(buf)));
        }
        free(cookie);
        free(h);
}

/* The live view's routes: CSRF, the offer's shape, the page's stream; the stream's end is
 * handed to the service (which ends the flows). */
static void test_live_view(void **state) {
        static const char offer[] = "v=0\\r\\no=- 1 1 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96\\r\\n";
        char *cookie = NULL, *h, *r, *body = NULL, buf[65536], path[] = "/api/entities/cam/front%20door/live";
        const char *json = "Content-Type: application/json\r\n";
        char *hj = NULL, *cj = NULL;
        unsigned long long id;
        const char *p;
        int fd;

        h = login(&cookie);
        assert_true(asprintf(&hj, "%s%s", h, json) > 0);
        assert_true(asprintf(&cj, "%s%s", cookie, json) > 0);
        fd = open_stream(cookie, "");
        assert_true(read_until(fd, "event: stream\ndata: {\"id\":\"", buf, sizeof(buf)));
        p = strstr(buf, "event: stream\ndata: {\"id\":\"") + strlen("event: stream\ndata: {\"id\":\"");
        assert_int_equal(sscanf(p, "%llu", &id), 1);
        assert_true(id > 0);

        assert_true(asprintf(&body, "{\"sdp\":\"%s\",\"stream\":\"%llu\"}", offer, id) > 0);
        r = http("POST", path, cj, body); /* no CSRF token */
        assert_int_equal(status_of(r), 403);
        free(r);
        r = http("GET", path, cookie, NULL);
        assert_int_equal(status_of(r), 405);
        assert_non_null(strcasestr(r, "allow: POST"));
        free(r);
        r = http("POST", "/api/entities/cam/door/look", hj, body);
        assert_int_equal(status_of(r), 404);
        free(r);
        r = http("POST", path, hj, "{\"sdp\": ");
        assert_int_equal(status_of(r), 400);
        assert_non_null(strstr(body_of(r), "malformed JSON"));
        free(r);
        r = http("POST", path, hj, "{\"sdp\":\"hello\",\"stream\":\"1\"}");
        assert_int_equal(status_of(r), 400);
        assert_non_null(strstr(body_of(r), "sdp: "));
        free(r);
        free(body);
        assert_true(asprintf(&body, "{\"sdp\":\"%s\"}", offer) > 0);
        r = http("POST", path, hj, body);
        assert_int_equal(status_of(r), 400);
        assert_non_null(strstr(body_of(r), "stream: "));
        free(r);
        free(body);
        assert_true(asprintf(&body, "{\"sdp\":\"%s\",\"stream\":\"%llu\"}", offer, id + 1000) > 0);
        r = http("POST", path, hj, body);
        assert_int_equal(status_of(r), 409);
        free(r);
        free(body);

        assert_true(asprintf(&body, "{\"sdp\":\"%s\",\"stream\":\"%llu\"}", offer, id) > 0);
        r = http("POST", path, hj, body);
        assert_int_equal(status_of(r), 200);
        snprintf(buf, sizeof(buf), "{\"module\":\"cam\",\"entity\":\"front door\",\"stream\":%llu,\"sdp_len\":%zu}", id,
                 strlen(offer) - 5 * 2);
        assert_string_equal(body_of(r), buf);
        free(r);

        r = http("DELETE", "/api/live/flow-0123456789abcdef", cookie, NULL);
        assert_int_equal(status_of(r), 403);
        free(r);
        r = http("DELETE", "/api/live/flow-0123456789abcdef", h, NULL);
        assert_int_equal(status_of(r), 200);
        assert_string_equal(body_of(r), "{\"flow\":\"flow-0123456789abcdef\"}");
        free(r);

        /* The page goes: the service hears which stream ended (the stream owns a live view
         * now, so it is pinged often: the failed write tells). */
        close(fd);
        for (int i = 0; i < 10000 && atomic_load(&stream_ended) != id; i++)
                usleep(1000);
        assert_int_equal(atomic_load(&stream_ended), id);
        free(body);
        free(hj);
        free(cj);
        free(cookie);
        free(h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_needs_login),
                cmocka_unit_test(test_login_and_bad_input),
                cmocka_unit_test(test_events),
                cmocka_unit_test(test_live_view),
                cmocka_unit_test(test_rate_limit),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
