/* onvif-xml: WS-Discovery and ONVIF SOAP messages, built and parsed (libxml2). Pure functions:
 * no I/O, so that every malformed answer can be tested. Parsers return 0, or -EBADMSG with
 * a malloc()ed message in *ret_error saying what was wrong (never the message's secrets). */
#pragma once

#include <stddef.h>
#include <time.h>

/* Answers bigger than this are refused before parsing. */
#define ONVIF_MAX_BODY (512u * 1024u)

typedef enum WsdKind {
        WSD_PROBE_MATCHES,
        WSD_HELLO,
        WSD_BYE,
        WSD_OTHER, /* a Probe from someone else, Resolve, ...: ignored */
} WsdKind;

typedef struct WsdMatch {
        char *endpoint; /* EndpointReference/Address, e.g. urn:uuid:... */
        char *types;
        char *scopes;
        char *xaddrs;   /* space-separated device service URLs */
} WsdMatch;

typedef struct WsdMessage {
        WsdKind kind;
        char *relates_to; /* ProbeMatches: the MessageID of our Probe */
        WsdMatch *matches;
        size_t n_matches;
} WsdMessage;

void wsd_message_clear(WsdMessage *m);
/* A Probe for ONVIF NetworkVideoTransmitters with this MessageID (urn:uuid:...). */
char *wsd_build_probe(const char *message_id);
int wsd_parse(const char *buf, size_t len, WsdMessage *ret, char **ret_error);
/* The first http:// or https:// URL of a space-separated XAddrs list (malloc()ed), or NULL. */
char *wsd_first_xaddr(const char *xaddrs);

/* A SOAP 1.2 request with body_xml inside <s:Body>; with a WS-Security UsernameToken
 * (PasswordDigest) if username is set. nonce: 16 random bytes; created: the time to put in it. */
char *onvif_build_request(const char *body_xml, const char *username, const char *password,
                          const unsigned char nonce[16], time_t created);
/* Base64(SHA1(nonce + created + password)), as the UsernameToken profile defines it. */
char *onvif_password_digest(const unsigned char *nonce, size_t nonce_len, const char *created,
                            const char *password);
/* "&<>\"'" escaped for XML text and attributes. */
char *xml_escape(const char *s);

typedef struct OnvifDeviceInfo {
        char *manufacturer, *model, *firmware, *serial, *hardware;
} OnvifDeviceInfo;

typedef struct OnvifProfile {
        char *token, *name, *encoding;
        unsigned width, height;
} OnvifProfile;

void onvif_device_info_clear(OnvifDeviceInfo *d);
void onvif_profiles_free(OnvifProfile *p, size_t n);

/* Each checks for a SOAP Fault first ("SOAP fault: <reason>"). */
int onvif_parse_device_info(const char *buf, size_t len, OnvifDeviceInfo *ret, char **ret_error);
/* GetCapabilities: the Media service's XAddr. */
int onvif_parse_media_xaddr(const char *buf, size_t len, char **ret, char **ret_error);
int onvif_parse_profiles(const char *buf, size_t len, OnvifProfile **ret, size_t *ret_n, char **ret_error);
int onvif_parse_stream_uri(const char *buf, size_t len, char **ret, char **ret_error);

/* URLs: scheme://[user[:password]@]host... Without the user information (for listings and
 * logs), and with it set (percent-encoded) for the MediaLink. */
char *url_strip_credentials(const char *url);
char *url_with_credentials(const char *url, const char *username, const char *password);
/* The host of an URL (without port or brackets), malloc()ed, or NULL. */
char *url_host(const char *url);
