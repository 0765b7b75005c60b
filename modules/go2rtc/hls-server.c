/* hls-server: a small HTTP/1.1 file server for HLS (see hls-server.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hls-server.h"
#include "shared/log.h"
#include "shared/macro.h"

#define MAX_REQUEST 4096
#define MAX_CONNECTIONS 64
#define MAX_FILE (64u * 1024 * 1024)

typedef struct Connection Connection;

struct HlsServer {
        sd_event *event;
        int fd;
        unsigned port;
        char *dir;
        sd_event_source *src;
        Connection *connections;
        unsigned n_connections;
};

struct Connection {
        HlsServer *server;
        int fd;
        sd_event_source *src, *timeout;
        char req[MAX_REQUEST + 1];
        size_t req_len;
        char *out;
        size_t out_len, out_sent;
        Connection *prev, *next;
};

static void connection_free(Connection *c) {
        HlsServer *s = c->server;

        sd_event_source_disable_unref(c->src);
        sd_event_source_disable_unref(c->timeout);
        safe_close(c->fd);
        free(c->out);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_connections--;
        free(c);
}

static bool safe_name(const char *p, size_t n) {
        if (n == 0 || n > 128 || p[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') ||
                      p[i] == '.' || p[i] == '_' || p[i] == '-'))
                        return false;
        return true;
}

static void respond_status(Connection *c, int code, const char *text) {
        free(c->out);
        c->out = NULL;
        if (asprintf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                              "Connection: close\r\n\r\n%s\n",
                     code, text, strlen(text) + 1, text) < 0)
                c->out = NULL;
        c->out_len = c->out ? strlen(c->out) : 0;
}

/* Build the answer to the request in c->req. */
static void handle(Connection *c) {
        char *method = c->req, *path, *end, *slash, full[4096];
        const char *type;
        struct stat st;
        char header[256];
        size_t hlen;
        ssize_t n;
        int fd;

        end = strstr(c->req, "\r\n");
        if (!end) {
                respond_status(c, 400, "Bad Request");
                return;
        }
        *end = 0;
        path = strchr(method, ' ');
        if (!path) {
                respond_status(c, 400, "Bad Request");
                return;
        }
        *path++ = 0;
        end = strchr(path, ' ');
        if (end)
                *end = 0;
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
                respond_status(c, 405, "Method Not Allowed");
                return;
        }
        path[strcspn(path, "?#")] = 0;
        if (path[0] != '/' || !(slash = strchr(path + 1, '/')) || !safe_name(path + 1, (size_t)(slash - path - 1)) ||
            !safe_name(slash + 1, strlen(slash + 1))) {
                respond_status(c, 404, "Not Found");
                return;
        }
        if (strlen(slash + 1) > 5 && strcmp(slash + strlen(slash) - 5, ".m3u8") == 0)
                type = "application/vnd.apple.mpegurl";
        else if (strlen(slash + 1) > 3 && strcmp(slash + strlen(slash) - 3, ".ts") == 0)
                type = "video/mp2t";
        else {
                respond_status(c, 404, "Not Found");
                return;
        }
        snprintf(full, sizeof(full), "%s%s", c->server->dir, path);
        fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_FILE) {
                safe_close(fd);
                respond_status(c, 404, "Not Found");
                return;
        }
        hlen = (size_t)snprintf(header, sizeof(header),
                                "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n"
                                "Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
                                type, (long long)st.st_size);
        free(c->out);
        c->out = malloc(hlen + (size_t)st.st_size);
        if (!c->out) {
                safe_close(fd);
                respond_status(c, 500, "Internal Server Error");
                return;
        }
        memcpy(c->out, header, hlen);
        c->out_len = hlen;
        if (strcmp(method, "GET") == 0)
                while (c->out_len < hlen + (size_t)st.st_size &&
                       (n = read(fd, c->out + c->out_len, hlen + (size_t)st.st_size - c->out_len)) > 0)
                        c->out_len += (size_t)n;
        safe_close(fd);
}

static int on_connection(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Connection *c = userdata;
        ssize_t n;

        if (revents & (EPOLLERR | EPOLLHUP)) {
                connection_free(c);
                return 0;
        }
        if (!c->out) {
                n = read(fd, c->req + c->req_len, MAX_REQUEST - c->req_len);
                if (n <= 0) {
                        if (n == 0 || (errno != EAGAIN && errno != EINTR))
                                connection_free(c);
                        return 0;
                }
                c->req_len += (size_t)n;
                c->req[c->req_len] = 0;
                if (!strstr(c->req, "\r\n\r\n")) {
                        if (c->req_len >= MAX_REQUEST) {
                                respond_status(c, 431, "Request Header Fields Too Large");
                                (void)sd_event_source_set_io_events(src, EPOLLOUT);
                        }
                        return 0;
                }
                handle(c);
                if (!c->out) {
                        connection_free(c);
                        return 0;
                }
                (void)sd_event_source_set_io_events(src, EPOLLOUT);
                return 0;
        }
        n = write(fd, c->out + c->out_sent, c->out_len - c->out_sent);
        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        connection_free(c);
                return 0;
        }
        c->out_sent += (size_t)n;
        if (c->out_sent >= c->out_len)
                connection_free(c);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        connection_free(userdata);
        return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HlsServer *s = userdata;
        Connection *c;
        uint64_t now;
        int cfd;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        if (s->n_connections >= MAX_CONNECTIONS || !(c = calloc(1, sizeof(*c)))) {
                safe_close(cfd);
                return 0;
        }
        c->server = s;
        c->fd = cfd;
        c->next = s->connections;
        if (s->connections)
                s->connections->prev = c;
        s->connections = c;
        s->n_connections++;
        (void)sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (sd_event_add_io(s->event, &c->src, cfd, EPOLLIN, on_connection, c) < 0 ||
            sd_event_add_time(s->event, &c->timeout, CLOCK_MONOTONIC, now + 30 * 1000000ULL, 0, on_timeout, c) < 0)
                connection_free(c);
        return 0;
}

int hls_server_new(HlsServer **ret, sd_event *event, const char *address, unsigned port, const char *dir) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        socklen_t len = sizeof(sa);
        HlsServer *s;
        int one = 1, r;

        if (inet_pton(AF_INET, address, &sa.sin_addr) != 1)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->dir = strdup(dir);
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!s->dir || s->fd < 0 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->fd, 64) < 0 ||
            getsockname(s->fd, (struct sockaddr *)&sa, &len) < 0) {
                r = s->dir ? -errno : -ENOMEM;
                hls_server_free(s);
                return r;
        }
        s->port = ntohs(sa.sin_port);
        r = sd_event_add_io(event, &s->src, s->fd, EPOLLIN, on_accept, s);
        if (r < 0) {
                hls_server_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

HlsServer *hls_server_free(HlsServer *s) {
        if (!s)
                return NULL;
        while (s->connections)
                connection_free(s->connections);
        sd_event_source_disable_unref(s->src);
        safe_close(s->fd);
        sd_event_unref(s->event);
        free(s->dir);
        free(s);
        return NULL;
}

unsigned hls_server_get_port(HlsServer *s) {
        return s->port;
}
