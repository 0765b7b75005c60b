/* Who owns the other end of a local TCP connection, from the kernel's socket table. */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/macro.h"
#include "shared/socket-peer.h"

int socket_peer_owner(int fd, uid_t *ret_uid, ino_t *ret_inode) {
        struct sockaddr_storage local, remote;
        socklen_t llen = sizeof(local), rlen = sizeof(remote);
        _cleanup_close_ int nl = -1;
        struct {
                struct nlmsghdr nh;
                struct inet_diag_req_v2 req;
        } q = {};
        union {
                struct nlmsghdr nh;
                char buf[8192];
        } a;
        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        struct inet_diag_msg *d;
        struct timeval tv = { .tv_sec = 1 };
        ssize_t n;

        if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0 ||
            getpeername(fd, (struct sockaddr *)&remote, &rlen) < 0)
                return -errno;
        if (local.ss_family != remote.ss_family || (local.ss_family != AF_INET && local.ss_family != AF_INET6))
                return -EAFNOSUPPORT;

        /* Seen from the other side: its source is our peer, its destination is us. */
        q.nh = (struct nlmsghdr){ .nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                                  .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 1 };
        q.req.sdiag_family = (uint8_t)local.ss_family;
        q.req.sdiag_protocol = IPPROTO_TCP;
        q.req.idiag_states = ~0u;
        q.req.id.idiag_cookie[0] = q.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
        if (local.ss_family == AF_INET) {
                const struct sockaddr_in *l = (const void *)&local, *r = (const void *)&remote;

                q.req.id.idiag_sport = r->sin_port;
                q.req.id.idiag_dport = l->sin_port;
                memcpy(q.req.id.idiag_src, &r->sin_addr, 4);
                memcpy(q.req.id.idiag_dst, &l->sin_addr, 4);
        } else {
                const struct sockaddr_in6 *l = (const void *)&local, *r = (const void *)&remote;

                q.req.id.idiag_sport = r->sin6_port;
                q.req.id.idiag_dport = l->sin6_port;
                memcpy(q.req.id.idiag_src, &r->sin6_addr, 16);
                memcpy(q.req.id.idiag_dst, &l->sin6_addr, 16);
        }

        nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (nl < 0)
                return -errno;
        (void)setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (sendto(nl, &q, sizeof(q), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
                return -errno;
        n = recv(nl, &a, sizeof(a), 0);
        if (n < 0)
                return -errno;
        if (!NLMSG_OK(&a.nh, (size_t)n))
                return -EBADMSG;
        if (a.nh.nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(&a.nh);
                return e->error < 0 ? e->error : -ENOENT;
        }
        if (a.nh.nlmsg_type != SOCK_DIAG_BY_FAMILY || a.nh.nlmsg_len < NLMSG_LENGTH(sizeof(*d)))
                return -EBADMSG;
        d = NLMSG_DATA(&a.nh);
        if (ret_uid)
                *ret_uid = d->idiag_uid;
        if (ret_inode)
                *ret_inode = d->idiag_inode;
        return 0;
}
