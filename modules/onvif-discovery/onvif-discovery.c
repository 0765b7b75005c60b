/* onvif-discovery: finds ONVIF IP cameras (WS-Discovery over UDP multicast on one configured
 * interface), asks each for its device information, profiles and stream URI (ONVIF Device and
 * Media services over HTTP, WS-UsernameToken digest when credentials are configured), and
 * provides them as "camera" entities that give "rtsp" in flows. Cameras can also be configured
 * by hand (an RTSP URL). Credentials go out only in ConnectEntity's MediaLink. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include <call-assistant-module.h>

#include "http-client.h"
#include "onvif-xml.h"
#include "shared/log.h"
#include "shared/macro.h"

#define WSD_ADDRESS "239.255.255.250"
#define WSD_PORT 3702
#define MAX_CAMERAS 256

typedef struct Credentials {
        char *host, *username, *password;
} Credentials;

typedef struct ManualCamera {
        char *id, *name, *url;
} ManualCamera;

typedef struct Config {
        char *interface;
        unsigned scan_interval_s;
        unsigned request_timeout_ms;
        char *username, *password;
        Credentials *creds;
        size_t n_creds;
        ManualCamera *manual;
        size_t n_manual;
} Config;

typedef struct Discovery Discovery;

typedef enum Step {
        STEP_DEVICE_INFO,
        STEP_CAPABILITIES,
        STEP_PROFILES,
        STEP_STREAM_URI,
        STEP_DONE,
} Step;

typedef struct Camera {
        Discovery *d;
        CaEntity *entity;
        bool manual;
        char *endpoint;     /* WS-Discovery endpoint (urn:uuid:...) */
        char *xaddr;        /* device service URL */
        char *media_xaddr;
        char *stream_uri;   /* as the camera gave it, or as configured (may hold credentials) */
        OnvifDeviceInfo info;
        OnvifProfile *profiles;
        size_t n_profiles;
        Step step;
        HttpRequest *req;
        bool available;
} Camera;

struct Discovery {
        CaModule *m;
        sd_event *event;
        Config cfg;
        bool configured;
        HttpClient *http;
        int probe_fd, listen_fd;
        sd_event_source *probe_src, *listen_src, *scan_timer;
        char probe_id[64];
        Camera **cameras;
        size_t n_cameras;
};

static const char *const media_rtsp[] = { "rtsp", NULL };
static const char *const caps_camera[] = { "rtsp", "onvif", NULL };

static const CaEntityType entity_types[] = {
        { .name = "camera", .description = "An IP camera (found by ONVIF WS-Discovery, or configured)",
          .capabilities = caps_camera, .media_out = media_rtsp },
};

static const char config_schema[] =
        "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"interface\"], \"properties\": {"
        "\"interface\": {\"type\": \"string\", \"description\": \"network interface to discover cameras on "
        "(WS-Discovery multicast is sent only there)\"},"
        "\"scan_interval_s\": {\"type\": \"integer\", \"minimum\": 2, \"maximum\": 86400, \"default\": 60},"
        "\"request_timeout_ms\": {\"type\": \"integer\", \"minimum\": 100, \"maximum\": 60000, \"default\": 5000},"
        "\"username\": {\"type\": \"string\", \"description\": \"default ONVIF/RTSP user\"},"
        "\"password\": {\"type\": \"string\", \"writeOnly\": true},"
        "\"cameras\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"additionalProperties\": false,"
        " \"required\": [\"host\"], \"properties\": {\"host\": {\"type\": \"string\"},"
        " \"username\": {\"type\": \"string\"}, \"password\": {\"type\": \"string\", \"writeOnly\": true}}}},"
        "\"manual\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"additionalProperties\": false,"
        " \"required\": [\"id\", \"url\"], \"properties\": {\"id\": {\"type\": \"string\"},"
        " \"name\": {\"type\": \"string\"}, \"url\": {\"type\": \"string\", \"writeOnly\": true}}}}}}";

/* ---- configuration ---- */

static void config_clear(Config *c) {
        free(c->interface);
        free(c->username);
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        for (size_t i = 0; i < c->n_creds; i++) {
                free(c->creds[i].host);
                free(c->creds[i].username);
                if (c->creds[i].password)
                        explicit_bzero(c->creds[i].password, strlen(c->creds[i].password));
                free(c->creds[i].password);
        }
        free(c->creds);
        for (size_t i = 0; i < c->n_manual; i++) {
                free(c->manual[i].id);
                free(c->manual[i].name);
                if (c->manual[i].url)
                        explicit_bzero(c->manual[i].url, strlen(c->manual[i].url));
                free(c->manual[i].url);
        }
        free(c->manual);
        *c = (Config){};
}

/* Problems are collected as "<json-pointer>: <message>; ..." */
typedef struct Problems {
        char *text;
} Problems;

static void problem(Problems *p, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void problem(Problems *p, const char *format, ...) {
        char *item = NULL, *joined;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&item, format, ap) < 0)
                item = NULL;
        va_end(ap);
        if (!item)
                return;
        if (!p->text) {
                p->text = item;
                return;
        }
        if (asprintf(&joined, "%s; %s", p->text, item) >= 0) {
                free(p->text);
                p->text = joined;
        }
        free(item);
}

static char *get_string(json_t *o, const char *key, const char *path, bool required, Problems *p) {
        json_t *v = json_object_get(o, key);

        if (!v) {
                if (required)
                        problem(p, "%s/%s: required", path, key);
                return NULL;
        }
        if (!json_is_string(v)) {
                problem(p, "%s/%s: must be a string", path, key);
                return NULL;
        }
        return strdup(json_string_value(v));
}

static unsigned get_uint(json_t *o, const char *key, unsigned def, unsigned min, unsigned max, Problems *p) {
        json_t *v = json_object_get(o, key);

        if (!v)
                return def;
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
                problem(p, "/%s: must be an integer from %u to %u", key, min, max);
                return def;
        }
        return (unsigned)json_integer_value(v);
}

static bool valid_id(const char *s) {
        if (!s || !*s || strlen(s) > 64)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
                        return false;
        return true;
}

static bool known_key(const char *key) {
        static const char *const keys[] = { "interface", "scan_interval_s", "request_timeout_ms", "username",
                                            "password", "cameras", "manual" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (strcmp(keys[i], key) == 0)
                        return true;
        return false;
}

static int config_parse(const char *json, Config *ret, char **ret_error) {
        json_error_t jerr;
        json_t *root = json_loads(json, 0, &jerr), *a, *v;
        Problems p = {};
        Config c = {};
        const char *key;
        size_t i;

        if (!json_is_object(root)) {
                json_decref(root);
                if (asprintf(ret_error, "/: %s", root ? "must be an object" : jerr.text) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        json_object_foreach(root, key, v)
                if (!known_key(key))
                        problem(&p, "/%s: unknown setting", key);
        c.interface = get_string(root, "interface", "", true, &p);
        if (c.interface && (!*c.interface || strlen(c.interface) >= IF_NAMESIZE))
                problem(&p, "/interface: must be a network interface name");
        c.scan_interval_s = get_uint(root, "scan_interval_s", 60, 2, 86400, &p);
        c.request_timeout_ms = get_uint(root, "request_timeout_ms", 5000, 100, 60000, &p);
        c.username = get_string(root, "username", "", false, &p);
        c.password = get_string(root, "password", "", false, &p);

        a = json_object_get(root, "cameras");
        if (a && !json_is_array(a))
                problem(&p, "/cameras: must be an array");
        else if (a) {
                c.creds = calloc(json_array_size(a) + 1, sizeof(Credentials));
                json_array_foreach(a, i, v) {
                        char path[32];
                        snprintf(path, sizeof(path), "/cameras/%zu", i);
                        if (!json_is_object(v)) {
                                problem(&p, "%s: must be an object", path);
                                continue;
                        }
                        if (!c.creds)
                                break;
                        c.creds[c.n_creds++] = (Credentials){
                                .host = get_string(v, "host", path, true, &p),
                                .username = get_string(v, "username", path, false, &p),
                                .password = get_string(v, "password", path, false, &p),
                        };
                }
        }
        a = json_object_get(root, "manual");
        if (a && !json_is_array(a))
                problem(&p, "/manual: must be an array");
        else if (a) {
                c.manual = calloc(json_array_size(a) + 1, sizeof(ManualCamera));
                json_array_foreach(a, i, v) {
                        char path[32];
                        ManualCamera *mc;
                        snprintf(path, sizeof(path), "/manual/%zu", i);
                        if (!json_is_object(v)) {
                                problem(&p, "%s: must be an object", path);
                                continue;
                        }
                        if (!c.manual)
                                break;
                        mc = &c.manual[c.n_manual++];
                        mc->id = get_string(v, "id", path, true, &p);
                        mc->name = get_string(v, "name", path, false, &p);
                        mc->url = get_string(v, "url", path, true, &p);
                        if (mc->id && !valid_id(mc->id))
                                problem(&p, "%s/id: must be 1 to 64 of [a-z0-9_-]", path);
                        if (mc->url && strncmp(mc->url, "rtsp://", 7) != 0 && strncmp(mc->url, "rtsps://", 8) != 0)
                                problem(&p, "%s/url: must be an rtsp:// URL", path); /* never quote it */
                        for (size_t k = 0; mc->id && k + 1 < c.n_manual; k++)
                                if (c.manual[k].id && strcmp(c.manual[k].id, mc->id) == 0)
                                        problem(&p, "%s/id: used twice", path);
                }
        }
        json_decref(root);
        if (p.text) {
                config_clear(&c);
                *ret_error = p.text;
                return -EINVAL;
        }
        *ret = c;
        return 0;
}

/* ---- cameras ---- */

static void camera_query(Camera *c);

static void camera_free(Camera *c) {
        if (!c)
                return;
        http_request_cancel(c->req);
        free(c->endpoint);
        free(c->xaddr);
        free(c->media_xaddr);
        if (c->stream_uri)
                explicit_bzero(c->stream_uri, strlen(c->stream_uri));
        free(c->stream_uri);
        onvif_device_info_clear(&c->info);
        onvif_profiles_free(c->profiles, c->n_profiles);
        free(c);
}

/* Remove the camera and its entity (reported as removed). */
static void camera_remove(Discovery *d, Camera *c) {
        for (size_t i = 0; i < d->n_cameras; i++)
                if (d->cameras[i] == c) {
                        d->cameras[i] = d->cameras[--d->n_cameras];
                        break;
                }
        log_info("Camera %s is gone.", c->entity->id);
        ca_module_remove_entity(d->m, c->entity);
        camera_free(c);
}

static Camera *camera_by_entity(Discovery *d, CaEntity *e) {
        for (size_t i = 0; i < d->n_cameras; i++)
                if (d->cameras[i]->entity == e)
                        return d->cameras[i];
        return NULL;
}

static Camera *camera_by_endpoint(Discovery *d, const char *endpoint) {
        for (size_t i = 0; i < d->n_cameras; i++)
                if (d->cameras[i]->endpoint && strcmp(d->cameras[i]->endpoint, endpoint) == 0)
                        return d->cameras[i];
        return NULL;
}

/* The credentials for a URL's host: the per-camera entry, else the default. */
static void credentials_for(Discovery *d, const char *url, const char **ret_user, const char **ret_password) {
        _cleanup_free_ char *host = url ? url_host(url) : NULL;

        *ret_user = d->cfg.username;
        *ret_password = d->cfg.password;
        for (size_t i = 0; host && i < d->cfg.n_creds; i++)
                if (d->cfg.creds[i].host && strcmp(d->cfg.creds[i].host, host) == 0) {
                        *ret_user = d->cfg.creds[i].username;
                        *ret_password = d->cfg.creds[i].password;
                        return;
                }
}

/* An entity id from a WS-Discovery endpoint: "onvif-" and its [a-z0-9-], at most 64 long. */
static void endpoint_to_id(const char *endpoint, char *buf, size_t size) {
        const char *p = endpoint;
        size_t n;

        if (strncmp(p, "urn:uuid:", 9) == 0)
                p += 9;
        n = (size_t)snprintf(buf, size, "onvif-");
        for (; *p && n + 1 < size && n < 64; p++) {
                char ch = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
                if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')
                        buf[n++] = ch;
        }
        buf[n] = 0;
}

static void set_attr(CaEntity *e, const char *key, const char *value) {
        if (value && *value)
                (void)ca_entity_set_attribute(e, key, value);
        else
                ca_entity_unset_attribute(e, key);
}

/* Attributes as users see them: never a credential. */
static void camera_publish(Camera *c) {
        _cleanup_free_ char *uri = c->stream_uri ? url_strip_credentials(c->stream_uri) : NULL;
        _cleanup_free_ char *addr = c->xaddr ? url_strip_credentials(c->xaddr) : NULL;
        char profiles[1024] = "";
        size_t n = 0;

        for (size_t i = 0; i < c->n_profiles && n < sizeof(profiles); i++)
                n += (size_t)snprintf(profiles + n, sizeof(profiles) - n, "%s%s (%s %ux%u)", i ? ", " : "",
                                      c->profiles[i].name ? c->profiles[i].name : c->profiles[i].token,
                                      c->profiles[i].encoding ? c->profiles[i].encoding : "?", c->profiles[i].width,
                                      c->profiles[i].height);
        set_attr(c->entity, "source", c->manual ? "manual" : "onvif");
        set_attr(c->entity, "address", addr);
        set_attr(c->entity, "manufacturer", c->info.manufacturer);
        set_attr(c->entity, "model", c->info.model);
        set_attr(c->entity, "firmware", c->info.firmware);
        set_attr(c->entity, "serial", c->info.serial);
        set_attr(c->entity, "profiles", profiles);
        set_attr(c->entity, "stream_uri", uri);
}

static void camera_set_available(Camera *c, bool available, const char *error) {
        bool changed = c->available != available || !c->entity->state ||
                       strcmp(c->entity->state, available ? "available" : "unavailable") != 0;

        c->available = available;
        (void)ca_entity_set_state(c->entity, available ? "available" : "unavailable");
        set_attr(c->entity, "last_error", error);
        camera_publish(c);
        if (changed || error)
                ca_module_entity_changed(c->d->m, c->entity);
}

static const char *step_name(Step s) {
        static const char *const names[] = { "GetDeviceInformation", "GetCapabilities", "GetProfiles",
                                             "GetStreamUri", "done" };
        return names[s];
}

/* A camera answered badly or not at all: reported on the camera, nothing else stops. */
static void camera_failed(Camera *c, const char *what) {
        char msg[512];
        _cleanup_free_ char *addr = c->xaddr ? url_strip_credentials(c->xaddr) : NULL;

        snprintf(msg, sizeof(msg), "%s: %s", step_name(c->step), what);
        if (c->available || !c->entity->state || strcmp(c->entity->state, "unavailable") != 0)
                log_warning("Camera %s (%s): %s", c->entity->id, addr ? addr : "?", msg);
        camera_set_available(c, false, msg);
}

static void on_soap_answer(HttpRequest *req, int error, long status, const char *body, size_t len,
                           const char *errmsg, void *userdata) {
        Camera *c = userdata;
        _cleanup_free_ char *perr = NULL;
        int r = 0;

        c->req = NULL;
        if (error < 0) {
                camera_failed(c, errmsg ? errmsg : "request failed");
                return;
        }
        if (status == 401 || status == 403) {
                camera_failed(c, "HTTP 401: the camera refused the credentials (or none are configured)");
                return;
        }
        switch (c->step) {
        case STEP_DEVICE_INFO:
                onvif_device_info_clear(&c->info);
                r = onvif_parse_device_info(body, len, &c->info, &perr);
                break;
        case STEP_CAPABILITIES:
                free(c->media_xaddr);
                c->media_xaddr = NULL;
                r = onvif_parse_media_xaddr(body, len, &c->media_xaddr, &perr);
                break;
        case STEP_PROFILES:
                onvif_profiles_free(c->profiles, c->n_profiles);
                c->profiles = NULL;
                c->n_profiles = 0;
                r = onvif_parse_profiles(body, len, &c->profiles, &c->n_profiles, &perr);
                break;
        case STEP_STREAM_URI: {
                char *uri = NULL;
                r = onvif_parse_stream_uri(body, len, &uri, &perr);
                if (r >= 0) {
                        free(c->stream_uri);
                        c->stream_uri = uri;
                }
                break;
        }
        case STEP_DONE:
                return;
        }
        if (r < 0) {
                char msg[400];
                if (status != 200 && !(perr && strncmp(perr, "SOAP fault", 10) == 0))
                        snprintf(msg, sizeof(msg), "HTTP %ld", status);
                else
                        snprintf(msg, sizeof(msg), "%s", perr ? perr : "bad answer");
                camera_failed(c, msg);
                return;
        }
        c->step++;
        if (c->step == STEP_DONE) {
                if (!c->available)
                        log_info("Camera %s: %s %s, %zu profile(s).", c->entity->id, c->info.manufacturer,
                                 c->info.model, c->n_profiles);
                camera_set_available(c, true, NULL);
                return;
        }
        camera_query(c);
}

/* The body of the current step's request. */
static char *step_body(Camera *c) {
        const OnvifProfile *p = NULL;
        _cleanup_free_ char *token = NULL;
        char *s = NULL;

        switch (c->step) {
        case STEP_DEVICE_INFO:
                return strdup("<tds:GetDeviceInformation/>");
        case STEP_CAPABILITIES:
                return strdup("<tds:GetCapabilities><tds:Category>Media</tds:Category></tds:GetCapabilities>");
        case STEP_PROFILES:
                return strdup("<trt:GetProfiles/>");
        case STEP_STREAM_URI:
                /* The first H.264 profile (the converter forwards it without transcoding). */
                for (size_t i = 0; i < c->n_profiles && !p; i++)
                        if (c->profiles[i].encoding && strcasecmp(c->profiles[i].encoding, "H264") == 0)
                                p = &c->profiles[i];
                if (!p)
                        p = &c->profiles[0];
                token = xml_escape(p->token);
                if (!token || asprintf(&s,
                                       "<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream>"
                                       "<tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport>"
                                       "</trt:StreamSetup><trt:ProfileToken>%s</trt:ProfileToken></trt:GetStreamUri>",
                                       token) < 0)
                        return NULL;
                return s;
        case STEP_DONE:
                break;
        }
        return NULL;
}

static void camera_query(Camera *c) {
        Discovery *d = c->d;
        const char *user, *password;
        _cleanup_free_ char *body = step_body(c), *envelope = NULL;
        unsigned char nonce[16];
        HttpRequestSpec spec;
        int r;

        if (!body) {
                camera_failed(c, "out of memory");
                return;
        }
        credentials_for(d, c->xaddr, &user, &password);
        if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce)) {
                camera_failed(c, "no random bytes for the nonce");
                return;
        }
        envelope = onvif_build_request(body, user, password, nonce, time(NULL));
        if (!envelope) {
                camera_failed(c, "out of memory");
                return;
        }
        spec = (HttpRequestSpec){
                .method = "POST",
                .url = c->step >= STEP_PROFILES ? c->media_xaddr : c->xaddr,
                .content_type = "application/soap+xml; charset=utf-8",
                .body = envelope,
                .username = user,
                .password = password,
                .timeout_ms = d->cfg.request_timeout_ms,
                .max_body = ONVIF_MAX_BODY,
        };
        r = http_request(d->http, &spec, on_soap_answer, c, &c->req);
        if (r < 0)
                camera_failed(c, r == -EINVAL ? "not an http:// service address" : "cannot start the request");
}

/* Ask the camera everything again (first sight, rescans, a new address). */
static void camera_refresh(Camera *c) {
        if (c->manual || c->req)
                return;
        c->step = STEP_DEVICE_INFO;
        camera_query(c);
}

static Camera *camera_new(Discovery *d, const char *id, const char *name, bool manual) {
        Camera *c, **l;
        int r;

        if (d->n_cameras >= MAX_CAMERAS) {
                log_warning("More than %d cameras, ignoring %s.", MAX_CAMERAS, id);
                return NULL;
        }
        l = realloc(d->cameras, (d->n_cameras + 1) * sizeof(Camera *));
        if (!l)
                return NULL;
        d->cameras = l;
        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->d = d;
        c->manual = manual;
        r = ca_module_add_entity(d->m, "camera", id, name, &c->entity);
        if (r < 0) {
                log_warning_errno(r, "Cannot add camera %s: %m", id);
                free(c);
                return NULL;
        }
        d->cameras[d->n_cameras++] = c;
        return c;
}

/* A camera announced itself (ProbeMatch or Hello). */
static void camera_seen(Discovery *d, const WsdMatch *m) {
        _cleanup_free_ char *xaddr = wsd_first_xaddr(m->xaddrs);
        Camera *c = camera_by_endpoint(d, m->endpoint);
        char id[80];

        if (!xaddr) {
                log_warning("Camera %s announced no http:// service address, ignoring.", m->endpoint);
                return;
        }
        if (!c) {
                endpoint_to_id(m->endpoint, id, sizeof(id));
                if (strlen(id) <= 6) {
                        log_warning("Camera endpoint %.100s gives no usable id, ignoring.", m->endpoint);
                        return;
                }
                c = camera_new(d, id, id, false);
                if (!c)
                        return;
                c->endpoint = strdup(m->endpoint);
                (void)ca_entity_set_state(c->entity, "probing");
                log_info("Found camera %s.", id);
        }
        if (!c->xaddr || strcmp(c->xaddr, xaddr) != 0) {
                free(c->xaddr);
                c->xaddr = TAKE_PTR(xaddr);
                http_request_cancel(c->req);
                c->req = NULL;
        }
        camera_refresh(c);
}

/* ---- WS-Discovery ---- */

static void on_datagram(Discovery *d, int fd) {
        char buf[65536], from[INET_ADDRSTRLEN] = "?";
        struct sockaddr_in sa;
        socklen_t salen = sizeof(sa);
        _cleanup_free_ char *error = NULL;
        WsdMessage msg = {};
        ssize_t n;

        n = recvfrom(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&sa, &salen);
        if (n < 0)
                return;
        inet_ntop(AF_INET, &sa.sin_addr, from, sizeof(from));
        if ((size_t)n >= sizeof(buf) - 1) {
                log_warning("WS-Discovery message from %s too big (%zd bytes), ignoring.", from, n);
                return;
        }
        if (wsd_parse(buf, (size_t)n, &msg, &error) < 0) {
                log_warning("Malformed WS-Discovery message from %s: %s, ignoring.", from, error ? error : "?");
                return;
        }
        switch (msg.kind) {
        case WSD_PROBE_MATCHES:
                if (!msg.relates_to || strcmp(msg.relates_to, d->probe_id) != 0) {
                        log_debug("ProbeMatches from %s for another probe, ignoring.", from);
                        break;
                }
                for (size_t i = 0; i < msg.n_matches; i++)
                        camera_seen(d, &msg.matches[i]);
                break;
        case WSD_HELLO:
                if (!msg.matches[0].types || !strstr(msg.matches[0].types, "NetworkVideoTransmitter"))
                        break;
                if (msg.matches[0].xaddrs && *msg.matches[0].xaddrs)
                        camera_seen(d, &msg.matches[0]);
                break;
        case WSD_BYE: {
                Camera *c = camera_by_endpoint(d, msg.matches[0].endpoint);
                if (c)
                        camera_remove(d, c);
                break;
        }
        case WSD_OTHER:
                break;
        }
        wsd_message_clear(&msg);
}

static int on_probe_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        on_datagram(userdata, fd);
        return 0;
}

static void send_probe(Discovery *d) {
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(WSD_PORT) };
        unsigned char r[16];
        _cleanup_free_ char *probe = NULL;

        if (d->probe_fd < 0 || getrandom(r, sizeof(r), 0) != sizeof(r))
                return;
        r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
        r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
        snprintf(d->probe_id, sizeof(d->probe_id),
                 "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
                 r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
        probe = wsd_build_probe(d->probe_id);
        if (!probe)
                return;
        inet_pton(AF_INET, WSD_ADDRESS, &to.sin_addr);
        /* Sent twice, as SOAP-over-UDP recommends for multicast. */
        for (int i = 0; i < 2; i++)
                if (sendto(d->probe_fd, probe, strlen(probe), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
                        log_warning_errno(errno, "Cannot send a WS-Discovery probe on %s: %m", d->cfg.interface);
}

static void scan(Discovery *d) {
        send_probe(d);
        for (size_t i = 0; i < d->n_cameras; i++)
                camera_refresh(d->cameras[i]);
}

static int on_scan_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Discovery *d = userdata;

        scan(d);
        (void)sd_event_source_set_time_relative(s, (uint64_t)d->cfg.scan_interval_s * 1000000);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static void close_sockets(Discovery *d) {
        d->probe_src = sd_event_source_disable_unref(d->probe_src);
        d->listen_src = sd_event_source_disable_unref(d->listen_src);
        d->probe_fd = safe_close(d->probe_fd);
        d->listen_fd = safe_close(d->listen_fd);
}

/* Two sockets on the configured interface: one sends probes and gets the (unicast)
 * ProbeMatches, one is in the multicast group for Hello and Bye. Multicast leaves only
 * through that interface, with TTL 1. */
static int open_sockets(Discovery *d) {
        struct ip_mreqn mreq = {};
        struct sockaddr_in any = { .sin_family = AF_INET };
        unsigned ifindex = if_nametoindex(d->cfg.interface);
        int ttl = 1, loop = 0, one = 1, r;

        if (ifindex == 0)
                return log_error_errno(errno, "Network interface %s: %m", d->cfg.interface);
        mreq.imr_ifindex = (int)ifindex;
        inet_pton(AF_INET, WSD_ADDRESS, &mreq.imr_multiaddr);

        d->probe_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (d->probe_fd < 0)
                return log_error_errno(errno, "Cannot create a UDP socket: %m");
        if (setsockopt(d->probe_fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof(mreq)) < 0 ||
            setsockopt(d->probe_fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl)) < 0 ||
            setsockopt(d->probe_fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop)) < 0 ||
            bind(d->probe_fd, (struct sockaddr *)&any, sizeof(any)) < 0)
                return log_error_errno(errno, "Cannot set up multicast on %s: %m", d->cfg.interface);
        r = sd_event_add_io(d->event, &d->probe_src, d->probe_fd, EPOLLIN, on_probe_fd, d);
        if (r < 0)
                return r;

        /* Hello/Bye: optional (another WS-Discovery client may hold the port without
         * SO_REUSEADDR); probing works without it. */
        d->listen_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        any.sin_port = htons(WSD_PORT);
        inet_pton(AF_INET, WSD_ADDRESS, &any.sin_addr);
        if (d->listen_fd < 0 || setsockopt(d->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(d->listen_fd, (struct sockaddr *)&any, sizeof(any)) < 0 ||
            setsockopt(d->listen_fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0) {
                log_warning_errno(errno, "Cannot listen for WS-Discovery Hello/Bye on %s: %m, relying on probes.",
                                  d->cfg.interface);
                d->listen_fd = safe_close(d->listen_fd);
                return 0;
        }
        return sd_event_add_io(d->event, &d->listen_src, d->listen_fd, EPOLLIN, on_probe_fd, d);
}

/* ---- the module ---- */

static void sync_manual(Discovery *d) {
        /* Manual cameras no longer configured go; new ones come; changed URLs are taken. */
        for (size_t i = 0; i < d->n_cameras;) {
                Camera *c = d->cameras[i];
                bool keep = false;
                if (!c->manual) {
                        i++;
                        continue;
                }
                for (size_t k = 0; k < d->cfg.n_manual && !keep; k++)
                        keep = strcmp(c->entity->id + strlen("manual-"), d->cfg.manual[k].id) == 0;
                if (keep)
                        i++;
                else
                        camera_remove(d, c);
        }
        for (size_t k = 0; k < d->cfg.n_manual; k++) {
                ManualCamera *mc = &d->cfg.manual[k];
                char id[80];
                CaEntity *e;
                Camera *c;

                snprintf(id, sizeof(id), "manual-%s", mc->id);
                e = ca_module_find_entity(d->m, id);
                c = e ? camera_by_entity(d, e) : camera_new(d, id, mc->name ? mc->name : mc->id, true);
                if (!c)
                        continue;
                free(c->stream_uri);
                c->stream_uri = strdup(mc->url);
                camera_set_available(c, true, NULL);
        }
}

static int apply_config(CaModule *m, const char *json, char **ret_error, void *userdata) {
        Discovery *d = userdata;
        bool new_interface;
        Config c;
        int r;

        r = config_parse(json, &c, ret_error);
        if (r < 0)
                return r;
        if (if_nametoindex(c.interface) == 0) {
                if (asprintf(ret_error, "/interface: no network interface %s", c.interface) < 0)
                        *ret_error = NULL;
                config_clear(&c);
                return -EINVAL;
        }
        new_interface = !d->configured || strcmp(c.interface, d->cfg.interface) != 0;
        config_clear(&d->cfg);
        d->cfg = c;
        d->configured = true;
        if (new_interface) {
                close_sockets(d);
                r = open_sockets(d);
                if (r < 0) {
                        close_sockets(d);
                        if (asprintf(ret_error, "/interface: cannot send multicast on %s: %s", d->cfg.interface,
                                     strerror(-r)) < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
        }
        sync_manual(d);
        log_info("Discovering cameras on %s every %u s.", d->cfg.interface, d->cfg.scan_interval_s);
        /* Scan now, then every interval. */
        (void)sd_event_source_set_time_relative(d->scan_timer, 0);
        (void)sd_event_source_set_enabled(d->scan_timer, SD_EVENT_ONESHOT);
        return 0;
}

static int connect_entity(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata) {
        Discovery *d = userdata;
        Camera *c = camera_by_entity(d, op->entity);
        const char *user, *password;
        _cleanup_free_ char *url = NULL;
        CaMediaLink out = { .media = "rtsp" };
        int r;

        if (!c)
                return -ENOENT;
        if (!c->available || !c->stream_uri) {
                if (asprintf(ret_error, "camera %s is unavailable%s", c->entity->id,
                             c->entity->state && strcmp(c->entity->state, "probing") == 0 ? " (still probing)" : "") < 0)
                        *ret_error = NULL;
                return -EHOSTUNREACH;
        }
        if (c->manual)
                url = strdup(c->stream_uri); /* as configured, credentials included */
        else {
                credentials_for(d, c->xaddr, &user, &password);
                url = url_with_credentials(c->stream_uri, user, password);
        }
        if (!url)
                return -ENOMEM;
        out.url = url;
        r = ca_flow_op_set_output(op, &out);
        explicit_bzero(url, strlen(url));
        return r;
}

static int disconnect_entity(CaModule *m, CaFlowOp *op, char **ret_error, void *userdata) {
        return 0; /* a camera keeps nothing per flow */
}

int main(int argc, char *argv[]) {
        const CaModuleInfo info = {
                .name = "onvif-discovery",
                .version = "1.0.0",
                .description = "Finds ONVIF IP cameras (WS-Discovery) and provides them as camera entities",
                .entity_types = entity_types,
                .n_entity_types = ELEMENTSOF(entity_types),
                .config_schema = config_schema,
                .config_required = true,
        };
        const CaModuleCallbacks cb = {
                .apply_config = apply_config,
                .connect_entity = connect_entity,
                .disconnect_entity = disconnect_entity,
        };
        Discovery d = { .probe_fd = -1, .listen_fd = -1 };
        CaModule *m = NULL;
        int r;

        log_setup_from_env();
        r = sd_event_default(&d.event);
        if (r < 0)
                return EXIT_FAILURE;
        r = ca_module_new(&m, &info, &cb, &d);
        if (r >= 0)
                r = http_client_new(&d.http, d.event);
        if (r >= 0)
                r = sd_event_add_time(d.event, &d.scan_timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_scan_timer, &d);
        if (r >= 0) {
                (void)sd_event_source_set_enabled(d.scan_timer, SD_EVENT_OFF);
                d.m = m;
                r = ca_module_run(m);
        }
        for (size_t i = 0; i < d.n_cameras; i++)
                camera_free(d.cameras[i]);
        free(d.cameras);
        close_sockets(&d);
        sd_event_source_disable_unref(d.scan_timer);
        http_client_free(d.http);
        config_clear(&d.cfg);
        ca_module_free(m);
        sd_event_unref(d.event);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
