/* hls-server: serves the HLS playlists and segments the converters write (GET only, one
 * request per connection) on the sd-event loop. Paths are "/<converter-id>/<file>" with
 * [A-Za-z0-9._-] names only; nothing outside the HLS directory can be reached. */
#pragma once

#include <systemd/sd-event.h>

typedef struct HlsServer HlsServer;

/* address: an IPv4 address ("127.0.0.1" by default in the module's config); port 0 picks one. */
int hls_server_new(HlsServer **ret, sd_event *event, const char *address, unsigned port, const char *dir);
HlsServer *hls_server_free(HlsServer *s);
unsigned hls_server_get_port(HlsServer *s);
