/* Who owns the other end of a TCP connection on this host: the kernel's socket table
 * (NETLINK_SOCK_DIAG, inet_diag), for a connection we dialled ourselves. */
#pragma once

#include <sys/types.h>

/* fd: a connected TCP socket (IPv4 or IPv6) whose peer is on this host (loopback). Finds the
 * socket with the same four-tuple seen from the other side and returns the uid that owns it
 * (for an accepted connection: the uid of the process that opened the listening socket) and
 * its inode (0 while it waits in the accept queue). -ENOENT if there is no such socket. */
int socket_peer_owner(int fd, uid_t *ret_uid, ino_t *ret_inode);
