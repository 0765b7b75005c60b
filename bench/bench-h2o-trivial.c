/* The baseline for the dashboard benchmark: the most trivial h2o handler (a fixed 2-byte JSON
 * body), on one thread with its own loop, as the dashboard's server runs. Prints its port,
 * serves until killed. Usage: bench-h2o-trivial [PORT] */
#include <arpa/inet.h>
#include <h2o.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
        req->res.status = 200;
        req->res.reason = "OK";
        req->res.content_length = 2;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        h2o_send_inline(req, H2O_STRLIT("{}"));
        return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err) {
        h2o_socket_t *sock;

        if (err)
                return;
        sock = h2o_evloop_socket_accept(listener);
        if (sock)
                h2o_accept(&accept_ctx, sock);
}

int main(int argc, char *argv[]) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        h2o_hostconf_t *host;
        h2o_pathconf_t *path;
        h2o_socket_t *listener;
        int fd, one = 1;

        signal(SIGPIPE, SIG_IGN);
        sa.sin_port = htons((uint16_t)(argc > 1 ? atoi(argv[1]) : 0));
        h2o_config_init(&config);
        host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
        path = h2o_config_register_path(host, "/", 0);
        h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_req;
        h2o_context_init(&ctx, h2o_evloop_create(), &config);
        accept_ctx.ctx = &ctx;
        accept_ctx.hosts = config.hosts;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
                perror("bench-h2o-trivial: listen");
                return 1;
        }
        printf("port=%d\n", ntohs(sa.sin_port));
        fflush(stdout);
        listener = h2o_evloop_socket_create(ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
        h2o_socket_read_start(listener, on_accept);
        while (h2o_evloop_run(ctx.loop, INT32_MAX) == 0)
                ;
        return 0;
}
