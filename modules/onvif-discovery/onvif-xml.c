/* onvif-xml: WS-Discovery and ONVIF SOAP messages (see onvif-xml.h). Elements are matched by
 * local name and, where it matters, namespace, since cameras choose their own prefixes. */
#include <errno.h>
#include <glib.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onvif-xml.h"

#define NS_SOAP "http://www.w3.org/2003/05/soap-envelope"
#define NS_WSA "http://schemas.xmlsoap.org/ws/2004/08/addressing"
#define NS_WSD "http://schemas.xmlsoap.org/ws/2005/04/discovery"

static int failf(char **ret_error, const char *format, ...) __attribute__((format(printf, 2, 3)));
static int failf(char **ret_error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, format);
                if (vasprintf(ret_error, format, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EBADMSG;
}

static bool is(const xmlNode *n, const char *name) {
        return n && n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

/* The first element named name below n (depth first, n excluded), or NULL. */
static xmlNode *find(xmlNode *n, const char *name) {
        for (xmlNode *c = n ? n->children : NULL; c; c = c->next) {
                xmlNode *f;
                if (c->type != XML_ELEMENT_NODE)
                        continue;
                if (is(c, name))
                        return c;
                f = find(c, name);
                if (f)
                        return f;
        }
        return NULL;
}

static xmlNode *child(xmlNode *n, const char *name) {
        for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
                if (is(c, name))
                        return c;
        return NULL;
}

/* The trimmed text of n, malloc()ed ("" for an empty element, NULL for no element). */
static char *text(xmlNode *n) {
        xmlChar *t;
        char *s, *b, *e;

        if (!n)
                return NULL;
        t = xmlNodeGetContent(n);
        b = (char *)(t ? t : (xmlChar *)"");
        while (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r')
                b++;
        e = b + strlen(b);
        while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
                e--;
        s = strndup(b, (size_t)(e - b));
        xmlFree(t);
        return s;
}

static xmlDoc *parse(const char *buf, size_t len, char **ret_error) {
        xmlDoc *doc;

        if (len > ONVIF_MAX_BODY) {
                (void)failf(ret_error, "answer too big (%zu bytes, at most %u)", len, ONVIF_MAX_BODY);
                return NULL;
        }
        /* No network, no entity substitution, no DTD loading: the answer is untrusted. */
        doc = xmlReadMemory(buf, (int)len, "answer.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
        if (!doc) {
                const xmlError *err = xmlGetLastError();
                (void)failf(ret_error, "malformed XML%s%.*s (line %d)", err && err->message ? ": " : "",
                            err && err->message ? (int)strcspn(err->message, "\n") : 0,
                            err && err->message ? err->message : "", err ? err->line : 0);
                return NULL;
        }
        return doc;
}

static xmlNode *soap_body(xmlDoc *doc, char **ret_error) {
        xmlNode *root = xmlDocGetRootElement(doc), *body;

        if (!is(root, "Envelope")) {
                (void)failf(ret_error, "not a SOAP envelope (root element <%s>)", root ? (const char *)root->name : "");
                return NULL;
        }
        body = child(root, "Body");
        if (!body)
                (void)failf(ret_error, "SOAP envelope without a Body");
        return body;
}

/* 0, or -EBADMSG if the body is a SOAP Fault (its reason in the message). */
static int check_fault(xmlNode *body, char **ret_error) {
        xmlNode *fault = child(body, "Fault");
        char *reason, *code;
        int r;

        if (!fault)
                return 0;
        reason = text(find(fault, "Text"));
        if (!reason || !*reason) {
                free(reason);
                reason = text(find(fault, "faultstring")); /* SOAP 1.1 */
        }
        code = text(find(find(fault, "Subcode"), "Value"));
        if (!code)
                code = text(find(find(fault, "Code"), "Value"));
        r = failf(ret_error, "SOAP fault%s%.64s: %.200s", code ? " " : "", code ? code : "",
                  reason && *reason ? reason : "(no reason given)");
        free(reason);
        free(code);
        return r;
}

/* ---- WS-Discovery ---- */

void wsd_message_clear(WsdMessage *m) {
        for (size_t i = 0; i < m->n_matches; i++) {
                free(m->matches[i].endpoint);
                free(m->matches[i].types);
                free(m->matches[i].scopes);
                free(m->matches[i].xaddrs);
        }
        free(m->matches);
        free(m->relates_to);
        *m = (WsdMessage){};
}

char *wsd_build_probe(const char *message_id) {
        char *s;

        if (asprintf(&s,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                     "<s:Envelope xmlns:s=\"" NS_SOAP "\" xmlns:a=\"" NS_WSA "\" xmlns:d=\"" NS_WSD "\""
                     " xmlns:dn=\"http://www.onvif.org/ver10/network/wsdl\">"
                     "<s:Header>"
                     "<a:Action s:mustUnderstand=\"1\">" NS_WSD "/Probe</a:Action>"
                     "<a:MessageID>%s</a:MessageID>"
                     "<a:ReplyTo><a:Address>" NS_WSA "/role/anonymous</a:Address></a:ReplyTo>"
                     "<a:To s:mustUnderstand=\"1\">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>"
                     "</s:Header>"
                     "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
                     "</s:Envelope>",
                     message_id) < 0)
                return NULL;
        return s;
}

static int parse_match(xmlNode *n, WsdMatch *m, bool need_xaddrs, char **ret_error) {
        m->endpoint = text(find(child(n, "EndpointReference"), "Address"));
        if (!m->endpoint || !*m->endpoint)
                return failf(ret_error, "%s without EndpointReference/Address", (const char *)n->name);
        m->types = text(child(n, "Types"));
        m->scopes = text(child(n, "Scopes"));
        m->xaddrs = text(child(n, "XAddrs"));
        if (need_xaddrs && (!m->xaddrs || !*m->xaddrs))
                return failf(ret_error, "%s of %.200s without XAddrs", (const char *)n->name, m->endpoint);
        return 0;
}

int wsd_parse(const char *buf, size_t len, WsdMessage *ret, char **ret_error) {
        xmlDoc *doc;
        xmlNode *body, *header, *n;
        WsdMessage m = {};
        int r = 0;

        doc = parse(buf, len, ret_error);
        if (!doc)
                return -EBADMSG;
        body = soap_body(doc, ret_error);
        if (!body) {
                xmlFreeDoc(doc);
                return -EBADMSG;
        }
        header = child(xmlDocGetRootElement(doc), "Header");
        m.relates_to = text(child(header, "RelatesTo"));

        if ((n = child(body, "ProbeMatches"))) {
                m.kind = WSD_PROBE_MATCHES;
                for (xmlNode *c = n->children; c && r >= 0; c = c->next) {
                        WsdMatch *l;
                        if (!is(c, "ProbeMatch"))
                                continue;
                        l = realloc(m.matches, (m.n_matches + 1) * sizeof(*l));
                        if (!l) {
                                r = -ENOMEM;
                                break;
                        }
                        m.matches = l;
                        m.matches[m.n_matches] = (WsdMatch){};
                        r = parse_match(c, &m.matches[m.n_matches++], true, ret_error);
                }
        } else if ((n = child(body, "Hello")) || (n = child(body, "Bye"))) {
                m.kind = is(n, "Hello") ? WSD_HELLO : WSD_BYE;
                m.matches = calloc(1, sizeof(WsdMatch));
                if (!m.matches)
                        r = -ENOMEM;
                else {
                        m.n_matches = 1;
                        r = parse_match(n, &m.matches[0], false, ret_error);
                }
        } else
                m.kind = WSD_OTHER;
        xmlFreeDoc(doc);
        if (r < 0) {
                wsd_message_clear(&m);
                return r;
        }
        *ret = m;
        return 0;
}

char *wsd_first_xaddr(const char *xaddrs) {
        const char *p = xaddrs;

        while (p && *p) {
                size_t n;
                p += strspn(p, " \t\r\n");
                n = strcspn(p, " \t\r\n");
                if (n == 0)
                        break;
                if ((n > 7 && strncmp(p, "http://", 7) == 0) || (n > 8 && strncmp(p, "https://", 8) == 0))
                        return strndup(p, n);
                p += n;
        }
        return NULL;
}

/* ---- ONVIF SOAP ---- */

char *xml_escape(const char *s) {
        size_t n = 0;
        char *out, *o;

        for (const char *p = s; *p; p++)
                n += *p == '&' ? 5 : *p == '<' || *p == '>' ? 4 : *p == '"' || *p == '\'' ? 6 : 1;
        out = o = malloc(n + 1);
        if (!out)
                return NULL;
        for (const char *p = s; *p; p++)
                switch (*p) {
                case '&': o = stpcpy(o, "&amp;"); break;
                case '<': o = stpcpy(o, "&lt;"); break;
                case '>': o = stpcpy(o, "&gt;"); break;
                case '"': o = stpcpy(o, "&quot;"); break;
                case '\'': o = stpcpy(o, "&apos;"); break;
                default: *o++ = *p;
                }
        *o = 0;
        return out;
}

char *onvif_password_digest(const unsigned char *nonce, size_t nonce_len, const char *created,
                            const char *password) {
        GChecksum *c = g_checksum_new(G_CHECKSUM_SHA1);
        guint8 digest[20];
        gsize n = sizeof(digest);
        gchar *b64;
        char *s;

        g_checksum_update(c, nonce, (gssize)nonce_len);
        g_checksum_update(c, (const guchar *)created, (gssize)strlen(created));
        g_checksum_update(c, (const guchar *)password, (gssize)strlen(password));
        g_checksum_get_digest(c, digest, &n);
        g_checksum_free(c);
        b64 = g_base64_encode(digest, n);
        s = strdup(b64);
        g_free(b64);
        return s;
}

char *onvif_build_request(const char *body_xml, const char *username, const char *password,
                          const unsigned char nonce[16], time_t created) {
        char *s = NULL, *security = NULL, *user = NULL, *digest = NULL, when[32];
        gchar *nonce64 = NULL;
        struct tm tm;

        if (username && *username) {
                gmtime_r(&created, &tm);
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
                user = xml_escape(username);
                digest = onvif_password_digest(nonce, 16, when, password ? password : "");
                nonce64 = g_base64_encode(nonce, 16);
                if (!user || !digest ||
                    asprintf(&security,
                             "<s:Header><wsse:Security s:mustUnderstand=\"1\""
                             " xmlns:wsse=\"http://docs.oasis-open.org/wss/2004/01/"
                             "oasis-200401-wss-wssecurity-secext-1.0.xsd\""
                             " xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/"
                             "oasis-200401-wss-wssecurity-utility-1.0.xsd\">"
                             "<wsse:UsernameToken><wsse:Username>%s</wsse:Username>"
                             "<wsse:Password Type=\"http://docs.oasis-open.org/wss/2004/01/"
                             "oasis-200401-wss-username-token-profile-1.0#PasswordDigest\">%s</wsse:Password>"
                             "<wsse:Nonce EncodingType=\"http://docs.oasis-open.org/wss/2004/01/"
                             "oasis-200401-wss-soap-message-security-1.0#Base64Binary\">%s</wsse:Nonce>"
                             "<wsu:Created>%s</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>",
                             user, digest, nonce64, when) < 0)
                        security = NULL;
                if (!security)
                        goto finish;
        }
        if (asprintf(&s,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                     "<s:Envelope xmlns:s=\"" NS_SOAP "\" xmlns:tds=\"http://www.onvif.org/ver10/device/wsdl\""
                     " xmlns:trt=\"http://www.onvif.org/ver10/media/wsdl\""
                     " xmlns:tt=\"http://www.onvif.org/ver10/schema\">%s<s:Body>%s</s:Body></s:Envelope>",
                     security ? security : "", body_xml) < 0)
                s = NULL;
finish:
        free(user);
        if (digest)
                explicit_bzero(digest, strlen(digest));
        free(digest);
        g_free(nonce64);
        free(security);
        return s;
}

void onvif_device_info_clear(OnvifDeviceInfo *d) {
        free(d->manufacturer);
        free(d->model);
        free(d->firmware);
        free(d->serial);
        free(d->hardware);
        *d = (OnvifDeviceInfo){};
}

void onvif_profiles_free(OnvifProfile *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(p[i].token);
                free(p[i].name);
                free(p[i].encoding);
        }
        free(p);
}

/* Parse, find the body, check for a fault, and find the response element. */
static xmlNode *response(const char *buf, size_t len, const char *name, xmlDoc **ret_doc, char **ret_error) {
        xmlDoc *doc = parse(buf, len, ret_error);
        xmlNode *body, *n;

        if (!doc)
                return NULL;
        body = soap_body(doc, ret_error);
        if (!body || check_fault(body, ret_error) < 0) {
                xmlFreeDoc(doc);
                return NULL;
        }
        n = child(body, name);
        if (!n) {
                (void)failf(ret_error, "no %s in the answer", name);
                xmlFreeDoc(doc);
                return NULL;
        }
        *ret_doc = doc;
        return n;
}

int onvif_parse_device_info(const char *buf, size_t len, OnvifDeviceInfo *ret, char **ret_error) {
        xmlDoc *doc = NULL;
        xmlNode *n = response(buf, len, "GetDeviceInformationResponse", &doc, ret_error);

        if (!n)
                return -EBADMSG;
        *ret = (OnvifDeviceInfo){
                .manufacturer = text(child(n, "Manufacturer")),
                .model = text(child(n, "Model")),
                .firmware = text(child(n, "FirmwareVersion")),
                .serial = text(child(n, "SerialNumber")),
                .hardware = text(child(n, "HardwareId")),
        };
        xmlFreeDoc(doc);
        if (!ret->manufacturer || !ret->model) {
                onvif_device_info_clear(ret);
                return failf(ret_error, "GetDeviceInformationResponse without Manufacturer or Model");
        }
        return 0;
}

int onvif_parse_media_xaddr(const char *buf, size_t len, char **ret, char **ret_error) {
        xmlDoc *doc = NULL;
        xmlNode *n = response(buf, len, "GetCapabilitiesResponse", &doc, ret_error);
        char *x;

        if (!n)
                return -EBADMSG;
        x = text(child(find(n, "Media"), "XAddr"));
        xmlFreeDoc(doc);
        if (!x || (strncmp(x, "http://", 7) != 0 && strncmp(x, "https://", 8) != 0)) {
                free(x);
                return failf(ret_error, "GetCapabilitiesResponse without a Media XAddr (http URL)");
        }
        *ret = x;
        return 0;
}

static unsigned uint_of(xmlNode *n) {
        char *t = text(n);
        unsigned long v = t ? strtoul(t, NULL, 10) : 0;
        free(t);
        return v > 100000 ? 0 : (unsigned)v;
}

int onvif_parse_profiles(const char *buf, size_t len, OnvifProfile **ret, size_t *ret_n, char **ret_error) {
        xmlDoc *doc = NULL;
        xmlNode *n = response(buf, len, "GetProfilesResponse", &doc, ret_error);
        OnvifProfile *l = NULL;
        size_t k = 0;

        if (!n)
                return -EBADMSG;
        for (xmlNode *c = n->children; c; c = c->next) {
                OnvifProfile *nl, *p;
                xmlChar *token;
                xmlNode *vec;

                if (!is(c, "Profiles"))
                        continue;
                token = xmlGetProp(c, (const xmlChar *)"token");
                if (!token || !*token) {
                        xmlFree(token);
                        onvif_profiles_free(l, k);
                        xmlFreeDoc(doc);
                        return failf(ret_error, "GetProfilesResponse: profile %zu without a token", k);
                }
                nl = realloc(l, (k + 1) * sizeof(*l));
                if (!nl) {
                        xmlFree(token);
                        onvif_profiles_free(l, k);
                        xmlFreeDoc(doc);
                        return -ENOMEM;
                }
                l = nl;
                p = &l[k++];
                vec = child(c, "VideoEncoderConfiguration");
                *p = (OnvifProfile){
                        .token = strdup((const char *)token),
                        .name = text(child(c, "Name")),
                        .encoding = text(child(vec, "Encoding")),
                        .width = uint_of(child(child(vec, "Resolution"), "Width")),
                        .height = uint_of(child(child(vec, "Resolution"), "Height")),
                };
                xmlFree(token);
                if (k >= 32) /* enough for any camera */
                        break;
        }
        xmlFreeDoc(doc);
        if (k == 0)
                return failf(ret_error, "GetProfilesResponse without any profile");
        *ret = l;
        *ret_n = k;
        return 0;
}

int onvif_parse_stream_uri(const char *buf, size_t len, char **ret, char **ret_error) {
        xmlDoc *doc = NULL;
        xmlNode *n = response(buf, len, "GetStreamUriResponse", &doc, ret_error);
        char *uri;

        if (!n)
                return -EBADMSG;
        uri = text(child(child(n, "MediaUri"), "Uri"));
        xmlFreeDoc(doc);
        if (!uri || (strncmp(uri, "rtsp://", 7) != 0 && strncmp(uri, "rtsps://", 8) != 0)) {
                free(uri);
                return failf(ret_error, "GetStreamUriResponse without an rtsp:// MediaUri/Uri");
        }
        *ret = uri;
        return 0;
}

/* ---- URLs ---- */

/* Where the authority starts (after "://") and ends. */
static bool authority(const char *url, const char **ret_begin, const char **ret_end) {
        const char *b = strstr(url, "://");

        if (!b)
                return false;
        b += 3;
        *ret_begin = b;
        *ret_end = b + strcspn(b, "/?#");
        return true;
}

char *url_strip_credentials(const char *url) {
        const char *b, *e, *at = NULL;
        char *s;

        if (!authority(url, &b, &e))
                return strdup(url);
        for (const char *p = b; p < e; p++)
                if (*p == '@')
                        at = p;
        if (!at)
                return strdup(url);
        s = malloc(strlen(url) + 1);
        if (!s)
                return NULL;
        memcpy(s, url, (size_t)(b - url));
        strcpy(s + (b - url), at + 1);
        return s;
}

static char *percent_encode(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *o = out;

        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-._~", *p))
                        *o++ = (char)*p;
                else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        *o = 0;
        return out;
}

char *url_with_credentials(const char *url, const char *username, const char *password) {
        char *bare = url_strip_credentials(url), *u = NULL, *p = NULL, *s = NULL;
        const char *b, *e;

        if (!bare)
                return NULL;
        if (!username || !*username || !authority(bare, &b, &e))
                return bare;
        u = percent_encode(username);
        p = percent_encode(password ? password : "");
        if (u && p && asprintf(&s, "%.*s%s%s%s@%s", (int)(b - bare), bare, u, *p ? ":" : "", p, b) < 0)
                s = NULL;
        free(u);
        if (p)
                explicit_bzero(p, strlen(p));
        free(p);
        free(bare);
        return s;
}

char *url_host(const char *url) {
        const char *b, *e, *h;

        if (!authority(url, &b, &e))
                return NULL;
        h = b;
        for (const char *p = b; p < e; p++)
                if (*p == '@')
                        h = p + 1;
        if (*h == '[') {
                const char *close = memchr(h, ']', (size_t)(e - h));
                return close ? strndup(h + 1, (size_t)(close - h - 1)) : NULL;
        }
        return strndup(h, strcspn(h, ":/?#"));
}
