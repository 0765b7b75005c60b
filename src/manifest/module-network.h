/* The network a module declares it needs (the `network:` key of module.yaml). The default is
 * loopback only: its own gRPC port and the orchestrator. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#include "manifest/diagnostics.h"

typedef enum NetworkPeers {
        NETWORK_PEERS_LOOPBACK,  /* 127.0.0.0/8 and ::1 only (the default) */
        NETWORK_PEERS_LAN,       /* also link-local and private ranges: cameras, Chromecasts */
        NETWORK_PEERS_ANY,       /* any address: a Matrix homeserver on the internet */
        _NETWORK_PEERS_MAX,
} NetworkPeers;

/* A port (range) the module may bind besides its gRPC port. */
typedef struct NetworkBind {
        int protocol;       /* IPPROTO_TCP or IPPROTO_UDP */
        uint16_t port_min;  /* 0 with n_ports 0: any port of that protocol */
        uint16_t n_ports;
} NetworkBind;

#define NETWORK_MAX_BINDS 16

typedef struct ModuleNetwork {
        NetworkPeers peers;
        bool multicast;     /* may join multicast groups (mDNS, WS-Discovery, SSDP) */
        NetworkBind binds[NETWORK_MAX_BINDS];
        size_t n_binds;
} ModuleNetwork;

const char *network_peers_to_string(NetworkPeers p);
/* "tcp:8554", "udp:10000-10100", "udp" (any UDP port). 0 or -EINVAL. */
int network_bind_from_string(const char *s, NetworkBind *ret);
/* "tcp:8554" etc., as systemd's SocketBindAllow= writes it. */
void network_bind_to_string(const NetworkBind *b, char *buf, size_t size);

/* Parse the value of the `network:` key. Problems go to d (counted in *n_errors). */
int module_network_parse(ModuleNetwork *net, yaml_document_t *doc, yaml_node_t *v, const char *path, Diagnostics *d,
                         unsigned *n_errors);
