/* The `network:` key of module.yaml: which addresses a module may talk to, whether it joins
 * multicast groups, and which ports it may bind besides its gRPC port. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/module-network.h"

static const char *const peers_names[_NETWORK_PEERS_MAX] = {
        [NETWORK_PEERS_LOOPBACK] = "loopback",
        [NETWORK_PEERS_LAN] = "lan",
        [NETWORK_PEERS_ANY] = "any",
};

const char *network_peers_to_string(NetworkPeers p) {
        return p >= 0 && p < _NETWORK_PEERS_MAX ? peers_names[p] : "?";
}

static int parse_port(const char *s, const char *end, unsigned *ret) {
        unsigned v = 0;

        if (s == end || end - s > 5)
                return -EINVAL;
        for (const char *p = s; p < end; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned)(*p - '0');
        }
        if (v == 0 || v > 65535)
                return -EINVAL;
        *ret = v;
        return 0;
}

int network_bind_from_string(const char *s, NetworkBind *ret) {
        NetworkBind b = {};
        const char *colon, *dash, *end;
        unsigned lo, hi;

        if (strncmp(s, "tcp", 3) == 0)
                b.protocol = IPPROTO_TCP;
        else if (strncmp(s, "udp", 3) == 0)
                b.protocol = IPPROTO_UDP;
        else
                return -EINVAL;
        if (s[3] == 0) {
                *ret = b; /* any port of that protocol */
                return 0;
        }
        if (s[3] != ':')
                return -EINVAL;
        colon = s + 3;
        end = colon + strlen(colon);
        dash = strchr(colon + 1, '-');
        if (parse_port(colon + 1, dash ? dash : end, &lo) < 0)
                return -EINVAL;
        hi = lo;
        if (dash && (parse_port(dash + 1, end, &hi) < 0 || hi < lo))
                return -EINVAL;
        b.port_min = (uint16_t)lo;
        b.n_ports = (uint16_t)(hi - lo + 1);
        *ret = b;
        return 0;
}

void network_bind_to_string(const NetworkBind *b, char *buf, size_t size) {
        const char *proto = b->protocol == IPPROTO_UDP ? "udp" : "tcp";

        if (b->n_ports == 0)
                snprintf(buf, size, "%s", proto);
        else if (b->n_ports == 1)
                snprintf(buf, size, "%s:%u", proto, b->port_min);
        else
                snprintf(buf, size, "%s:%u-%u", proto, b->port_min, (unsigned)b->port_min + b->n_ports - 1);
}

#define LINE(n) ((unsigned)(n)->start_mark.line + 1)
#define COL(n) ((unsigned)(n)->start_mark.column + 1)

static void error_at(yaml_node_t *n, const char *path, Diagnostics *d, unsigned *n_errors, const char *field,
                     const char *msg) {
        diagnostics_add(d, DIAG_ERROR, path, LINE(n), COL(n), field, "%s", msg);
        (*n_errors)++;
}

static const char *scalar(yaml_node_t *n) {
        return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int module_network_parse(ModuleNetwork *net, yaml_document_t *doc, yaml_node_t *v, const char *path, Diagnostics *d,
                         unsigned *n_errors) {
        *net = (ModuleNetwork){};
        if (v->type != YAML_MAPPING_NODE) {
                error_at(v, path, d, n_errors, "network",
                         "expected a mapping (peers: loopback|lan|any, multicast: true|false, bind: [...])");
                return 0;
        }
        for (yaml_node_pair_t *pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top; pair++) {
                yaml_node_t *k = yaml_document_get_node(doc, pair->key), *val = yaml_document_get_node(doc, pair->value);
                const char *key = scalar(k), *s;
                char msg[256];

                if (!key || !val) {
                        error_at(k ? k : v, path, d, n_errors, "network", "keys must be plain strings");
                        continue;
                }
                if (strcmp(key, "peers") == 0) {
                        NetworkPeers p;

                        s = scalar(val);
                        for (p = 0; p < _NETWORK_PEERS_MAX; p++)
                                if (s && strcmp(s, peers_names[p]) == 0)
                                        break;
                        if (p == _NETWORK_PEERS_MAX) {
                                error_at(val, path, d, n_errors, "network.peers", "must be loopback, lan or any");
                                continue;
                        }
                        net->peers = p;
                } else if (strcmp(key, "multicast") == 0) {
                        s = scalar(val);
                        if (s && (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0))
                                net->multicast = true;
                        else if (s && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0))
                                net->multicast = false;
                        else
                                error_at(val, path, d, n_errors, "network.multicast", "must be true or false");
                } else if (strcmp(key, "bind") == 0) {
                        if (val->type != YAML_SEQUENCE_NODE) {
                                error_at(val, path, d, n_errors, "network.bind",
                                         "expected a list such as [\"tcp:8554\", \"udp:5353\", \"udp\"]");
                                continue;
                        }
                        for (yaml_node_item_t *i = val->data.sequence.items.start; i < val->data.sequence.items.top;
                             i++) {
                                yaml_node_t *e = yaml_document_get_node(doc, *i);
                                NetworkBind b;

                                s = scalar(e);
                                if (!s || network_bind_from_string(s, &b) < 0) {
                                        snprintf(msg, sizeof(msg),
                                                 "'%.40s' is not a port: use tcp:PORT, udp:PORT, PROTO:FIRST-LAST, "
                                                 "or tcp/udp alone for any port",
                                                 s ? s : "");
                                        error_at(e ? e : val, path, d, n_errors, "network.bind", msg);
                                        continue;
                                }
                                if (net->n_binds == NETWORK_MAX_BINDS) {
                                        snprintf(msg, sizeof(msg), "at most %d entries", NETWORK_MAX_BINDS);
                                        error_at(e, path, d, n_errors, "network.bind", msg);
                                        break;
                                }
                                net->binds[net->n_binds++] = b;
                        }
                } else {
                        snprintf(msg, sizeof(msg), "unknown key '%.40s' (known: peers, multicast, bind)", key);
                        error_at(k, path, d, n_errors, "network", msg);
                }
        }
        return 0;
}
