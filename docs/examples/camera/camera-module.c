/* camera: an example call-assistant module in C, on the module SDK.
 *
 * It provides "video_source" entities: IP cameras reachable over RTSP. Creating one checks
 * its configuration ({"url": "rtsp://host[:port]/path", "transport": "tcp"|"udp"}); the
 * module configuration sets the default transport. Copy this file to start a module. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <call-assistant-module.h>

typedef struct Camera {
        char default_transport[8];
} Camera;

static const char *const capabilities[] = { "rtsp", "snapshot", NULL };

static const CaEntityType entity_types[] = {
        { .name = "video_source", .description = "An IP camera stream (RTSP)", .capabilities = capabilities },
};

static const char config_schema[] =
        "{\"type\": \"object\", \"additionalProperties\": false, \"properties\": {"
        "\"default_transport\": {\"type\": \"string\", \"enum\": [\"tcp\", \"udp\"], \"default\": \"tcp\"}}}";

__attribute__((format(printf, 2, 3)))
static int errorf(char **ret_error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, format);
                if (vasprintf(ret_error, format, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EINVAL;
}

static int apply_config(CaModule *m, const char *config_json, char **ret_error, void *userdata) {
        Camera *cam = userdata;
        json_error_t jerr;
        json_t *root = json_loads(config_json, 0, &jerr), *t;
        int r = 0;

        if (!json_is_object(root)) {
                json_decref(root);
                return errorf(ret_error, "/: %s", root ? "must be an object" : jerr.text);
        }
        t = json_object_get(root, "default_transport");
        if (t && (!json_is_string(t) || (strcmp(json_string_value(t), "tcp") != 0 &&
                                         strcmp(json_string_value(t), "udp") != 0)))
                r = errorf(ret_error, "/default_transport: must be %s", "\"tcp\" or \"udp\"");
        else if (t)
                snprintf(cam->default_transport, sizeof(cam->default_transport), "%s", json_string_value(t));
        json_decref(root);
        return r;
}

/* Validate a video_source configuration: {"url": "rtsp://...", "transport": "tcp"|"udp"}.
 * On success returns the URL and the transport (the module's default if not given). */
static int parse_source(Camera *cam, const char *config_json, char **ret_url, char **ret_transport,
                        char **ret_error) {
        json_error_t jerr;
        json_t *root = json_loads(config_json, 0, &jerr), *url, *tr;
        const char *u = NULL, *transport = cam->default_transport;
        int r = 0;

        if (!json_is_object(root)) {
                json_decref(root);
                return errorf(ret_error, "/: %s", root ? "must be an object" : jerr.text);
        }
        url = json_object_get(root, "url");
        tr = json_object_get(root, "transport");
        if (!json_is_string(url))
                r = errorf(ret_error, "/url: %s", "required, a string");
        else if (strncmp((u = json_string_value(url)), "rtsp://", 7) != 0 || strlen(u) < 8)
                r = errorf(ret_error, "/url: must start with rtsp:// and name a host, got '%s'", u);
        else if (tr && (!json_is_string(tr) || (strcmp(json_string_value(tr), "tcp") != 0 &&
                                               strcmp(json_string_value(tr), "udp") != 0)))
                r = errorf(ret_error, "/transport: must be %s", "\"tcp\" or \"udp\"");
        if (r == 0) {
                if (tr)
                        transport = json_string_value(tr);
                *ret_url = strdup(u);
                *ret_transport = strdup(transport);
                if (!*ret_url || !*ret_transport) {
                        free(*ret_url);
                        free(*ret_transport);
                        r = -ENOMEM;
                }
        }
        json_decref(root);
        return r;
}

/* Point an entity at its stream (attributes shown in ListEntities). */
static int apply_source(CaEntity *e, const char *url, const char *transport) {
        if (ca_entity_set_attribute(e, "stream_url", url) < 0 || ca_entity_set_attribute(e, "transport", transport) < 0)
                return -ENOMEM;
        return 0;
}

static int create_entity(CaModule *m, CaEntity *e, char **ret_error, void *userdata) {
        char *url = NULL, *transport = NULL;
        int r;

        r = parse_source(userdata, e->config_json, &url, &transport, ret_error);
        if (r < 0)
                return r;
        r = apply_source(e, url, transport);
        if (r >= 0 && !(e->state = strdup("idle")))
                r = -ENOMEM;
        free(url);
        free(transport);
        return r;
}

static int configure_entity(CaModule *m, CaEntity *e, const char *json, char **ret_error, void *userdata) {
        char *url = NULL, *transport = NULL;
        int r;

        /* Validate completely before changing anything: a refused change keeps the old one. */
        r = parse_source(userdata, json, &url, &transport, ret_error);
        if (r < 0)
                return r;
        r = apply_source(e, url, transport);
        free(url);
        free(transport);
        return r;
}

static int destroy_entity(CaModule *m, CaEntity *e, char **ret_error, void *userdata) {
        return 0; /* nothing held per camera */
}

int main(void) {
        Camera cam = { .default_transport = "tcp" };
        const CaModuleInfo info = {
                .name = "camera",
                .version = "1.0.0",
                .description = "IP cameras (RTSP) as video sources",
                .entity_types = entity_types,
                .n_entity_types = 1,
                .config_schema = config_schema,
                .config_required = false,
        };
        const CaModuleCallbacks callbacks = {
                .apply_config = apply_config,
                .create_entity = create_entity,
                .configure_entity = configure_entity,
                .destroy_entity = destroy_entity,
        };
        CaModule *m = NULL;
        int r;

        r = ca_module_new(&m, &info, &callbacks, &cam);
        if (r < 0) {
                fprintf(stderr, "Cannot create the module: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        r = ca_module_run(m);
        ca_module_free(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
