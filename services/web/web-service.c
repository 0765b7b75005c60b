/* The web dashboard service on the sd-event thread: a gRPC client of the orchestrator's
 * control endpoint, the module list the pages show, and the answers to the HTTP API. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "callassistant/config/v1/config.pb-c.h"
#include "callassistant/v1/orchestrator.pb-c.h"
#include "services/web/web-auth.h"
#include "services/web/web-journal.h"
#include "services/web/web-json.h"
#include "services/web/web-server.h"
#include "services/web/web-service.h"
#include "shared/fileio.h"
#include "shared/log.h"
#include "shared/macro.h"

#define ORCH "/callassistant.v1.OrchestratorService/"
#define CFG "/callassistant.config.v1.ConfigService/"
#define CALL_TIMEOUT_MS 15000
#define WATCH_RETRY_USEC 1000000ull
#define DEFAULT_MAX_BODY (256u * 1024)
#define DEFAULT_RESOURCES_MS 2000u
#define LIVE_START_TIMEOUT_MS 30000
#define MAX_LIVE_PER_SESSION 4u

typedef struct ModEntry {
        char *name;
        Callassistant__V1__ModuleInfo *info;
        char *json;
        uint64_t prev_cpu_nsec, prev_sample_usec;   /* the last sample (its time: CLOCK_REALTIME) */
        double cpu_percent;
} ModEntry;

typedef struct JobCall JobCall;
struct JobCall {
        WebService *service;
        WebJob *job;
        RpcClientCall *call;
        JobCall *prev, *next;
};

/* A camera's live view on a page: a flow from the camera to the page's WebRTC peer
 * (StartFlow with peer_offer_sdp), owned by the page's session and event stream. */
typedef struct LiveView LiveView;
struct LiveView {
        WebService *service;
        LiveView *prev, *next;
        uint64_t session_id, stream_id;
        char *module, *entity;
        char *flow_id;          /* NULL while StartFlow runs */
        RpcClientCall *call;    /* StartFlow or StopFlow in flight */
        WebJob *job;            /* the request waiting for that call (POST .../live or DELETE) */
        bool page_gone;         /* its event stream ended: stop the flow once it exists */
        bool stopping;          /* StopFlow was called (or the flow ended by itself) */
};

typedef struct Revocation Revocation;
struct Revocation {
        web_revoke_done_t done;
        void *userdata;
        Revocation *next;
};

struct WebService {
        sd_event *event;
        RpcRuntime *rt;
        RpcChannel *ch;
        WebServer *server;
        WebJournal *journal;
        char *password_path;
        char *password_hash;
        unsigned resources_interval_ms;

        /* jobs from the h2o thread */
        pthread_mutex_t lock;
        WebJob *queue_head, *queue_tail;
        int efd;
        sd_event_source *queue_source;

        /* following the orchestrator */
        RpcClientCall *watch;
        sd_event_source *watch_retry;
        ModEntry *mods;
        size_t n_mods;

        sd_event_source *resources_timer;
        RpcClientCall *resources_call;
        bool resources_sampled;

        JobCall *calls;
        Revocation *revocations;
        LiveView *live_views;
};

/* A copy of a message the runtime will free after the callback. */
static void *message_copy(const ProtobufCMessage *m) {
        size_t n = protobuf_c_message_get_packed_size(m);
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);

        if (!buf)
                return NULL;
        protobuf_c_message_pack(m, buf);
        return protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
}

/* ---- the module list ---- */

static ModEntry *mod_find(WebService *w, const char *name) {
        for (size_t i = 0; i < w->n_mods; i++)
                if (strcmp(w->mods[i].name, name) == 0)
                        return &w->mods[i];
        return NULL;
}

static int mod_render(ModEntry *e) {
        _cleanup_(json_decrefp) json_t *j = web_module_json(e->info, e->cpu_percent);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

        if (!s)
                return -ENOMEM;
        free(e->json);
        e->json = s;
        return 0;
}

/* The list as the pages get it: {"modules": [...]}, built from each module's rendering. */
static void publish_modules(WebService *w) {
        size_t len = strlen("{\"modules\":[]}") + 1;
        char *buf, *p;

        for (size_t i = 0; i < w->n_mods; i++)
                len += strlen(w->mods[i].json) + 1;
        buf = malloc(len);
        if (!buf)
                return;
        p = stpcpy(buf, "{\"modules\":[");
        for (size_t i = 0; i < w->n_mods; i++) {
                if (i > 0)
                        *p++ = ',';
                p = stpcpy(p, w->mods[i].json);
        }
        p = stpcpy(p, "]}");
        WebBlob *b = web_blob_from_string(buf, (size_t)(p - buf));
        if (b) {
                web_server_publish_modules(w->server, b);
                web_blob_unref(b);
        }
}

static void broadcast(WebService *w, const char *event, const json_t *data, const char *log_module) {
        size_t len;
        char *s = web_sse_event(event, data, &len);
        WebBlob *b = web_blob_from_string(s, len);

        if (!b)
                return;
        web_server_broadcast(w->server, b, log_module);
        web_blob_unref(b);
}

static void broadcast_raw_module(WebService *w, const ModEntry *e) {
        _cleanup_free_ char *s = NULL;
        int n = asprintf(&s, "event: module\ndata: %s\n\n", e->json);
        WebBlob *b;

        if (n < 0)
                return;
        b = web_blob_new(s, (size_t)n);
        if (!b)
                return;
        web_server_broadcast(w->server, b, NULL);
        web_blob_unref(b);
}

static void module_changed(WebService *w, const Callassistant__V1__ModuleInfo *info) {
        ModEntry *e;
        Callassistant__V1__ModuleInfo *copy;

        if (!info || !info->name || !*info->name)
                return;
        copy = message_copy(&info->base);
        if (!copy)
                return;
        e = mod_find(w, info->name);
        if (!e) {
                ModEntry *l = realloc(w->mods, (w->n_mods + 1) * sizeof(ModEntry));
                if (!l) {
                        protobuf_c_message_free_unpacked(&copy->base, NULL);
                        return;
                }
                w->mods = l;
                e = &w->mods[w->n_mods];
                *e = (ModEntry){ .name = strdup(info->name), .cpu_percent = -1 };
                if (!e->name) {
                        protobuf_c_message_free_unpacked(&copy->base, NULL);
                        return;
                }
                w->n_mods++;
        } else {
                /* Events carry no resource figures: keep the last sample. */
                copy->has_resources = e->info->has_resources;
                copy->cpu_usage_nsec = e->info->cpu_usage_nsec;
                copy->memory_current_bytes = e->info->memory_current_bytes;
                copy->resources_at_usec = e->info->resources_at_usec;
                if (copy->main_pid != e->info->main_pid) {
                        /* A new process: its CPU time starts again. */
                        e->prev_sample_usec = 0;
                        e->cpu_percent = -1;
                }
                protobuf_c_message_free_unpacked(&e->info->base, NULL);
        }
        e->info = copy;
        if (mod_render(e) < 0)
                return;
        /* The list first, then the event: a page that connects in between gets the new list. */
        publish_modules(w);
        broadcast_raw_module(w, e);
}

static void live_flow_changed(WebService *w, const Callassistant__V1__Flow *flow);

static const char *entity_kind_name(int kind) {
        switch (kind) {
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_ADDED:
                return "added";
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_CHANGED:
                return "changed";
        default:
                return "removed";
        }
}

static void on_watch_event(RpcClientCall *c, const ProtobufCMessage *message, void *userdata) {
        WebService *w = userdata;
        const Callassistant__V1__Event *ev = (const Callassistant__V1__Event *)message;
        _cleanup_(json_decrefp) json_t *j = NULL;

        switch (ev->kind) {
        case CALLASSISTANT__V1__EVENT__KIND__KIND_MODULE_CHANGED:
                module_changed(w, ev->module_info);
                return;
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_ADDED:
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_CHANGED:
        case CALLASSISTANT__V1__EVENT__KIND__KIND_ENTITY_REMOVED:
                if (!ev->entity)
                        return;
                j = json_pack("{s:s, s:s, s:o}", "kind", entity_kind_name(ev->kind), "module", ev->module ? ev->module : "",
                              "entity", web_entity_json(ev->module, ev->entity, -1));
                if (j)
                        broadcast(w, "entity", j, NULL);
                return;
        case CALLASSISTANT__V1__EVENT__KIND__KIND_METRICS: {
                json_t *m = json_object();
                for (size_t i = 0; m && i < ev->n_metrics; i++)
                        json_object_set_new(m, ev->metrics[i]->key, json_real(ev->metrics[i]->value));
                j = json_pack("{s:s, s:o}", "module", ev->module ? ev->module : "", "metrics", m);
                if (j)
                        broadcast(w, "metrics", j, NULL);
                return;
        }
        case CALLASSISTANT__V1__EVENT__KIND__KIND_FLOW_CHANGED:
                live_flow_changed(w, ev->flow);
                return;
        case CALLASSISTANT__V1__EVENT__KIND__KIND_CONFIG_CHANGED:
                j = json_pack("{s:s, s:I}", "module", ev->module ? ev->module : "", "revision",
                              (json_int_t)ev->config_revision);
                if (j)
                        broadcast(w, "config", j, NULL);
                return;
        default:
                return;
        }
}

static int watch_start(WebService *w);

static int on_watch_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        WebService *w = userdata;

        w->watch_retry = sd_event_source_unref(w->watch_retry);
        (void)watch_start(w);
        return 0;
}

static void watch_retry_later(WebService *w) {
        if (w->watch_retry)
                return;
        (void)sd_event_add_time_relative(w->event, &w->watch_retry, CLOCK_MONOTONIC, WATCH_RETRY_USEC, 0,
                                         on_watch_retry, w);
}

static void on_watch_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                          void *userdata) {
        WebService *w = userdata;

        w->watch = NULL;
        log_debug("web: the orchestrator's event stream ended (%s: %s), following it again in 1 s",
                  rpc_status_to_string(status), message ? message : "");
        watch_retry_later(w);
}

static int watch_start(WebService *w) {
        Callassistant__V1__WatchEventsRequest req = CALLASSISTANT__V1__WATCH_EVENTS_REQUEST__INIT;
        int r;

        req.initial_state = true;
        r = rpc_channel_call_stream(w->ch, ORCH "WatchEvents", &req.base, &callassistant__v1__event__descriptor, 0,
                                    RPC_CALL_WAIT_FOR_READY, NULL, 0, on_watch_event, on_watch_done, w, &w->watch);
        if (r < 0) {
                w->watch = NULL;
                watch_retry_later(w);
        }
        return r;
}

/* ---- CPU and memory, while somebody looks ---- */

static void resources_schedule(WebService *w);

static void on_resources(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                         void *userdata) {
        WebService *w = userdata;
        const Callassistant__V1__ListModulesResponse *resp = (const void *)response;
        _cleanup_(json_decrefp) json_t *figures = json_object();
        bool any = false;

        w->resources_call = NULL;
        if (status == RPC_OK && resp && figures) {
                for (size_t i = 0; i < resp->n_modules; i++) {
                        const Callassistant__V1__ModuleInfo *m = resp->modules[i];
                        ModEntry *e = mod_find(w, m->name);
                        if (!e)
                                continue;
                        e->info->has_resources = m->has_resources;
                        e->info->cpu_usage_nsec = m->cpu_usage_nsec;
                        e->info->memory_current_bytes = m->memory_current_bytes;
                        e->info->resources_at_usec = m->resources_at_usec;
                        if (!m->has_resources) {
                                e->cpu_percent = -1;
                                e->prev_sample_usec = 0;
                        } else if (m->resources_at_usec != e->prev_sample_usec) {
                                /* CPU use: two samples of the CPU time, over the time between them. */
                                if (e->prev_sample_usec && m->resources_at_usec > e->prev_sample_usec &&
                                    m->cpu_usage_nsec >= e->prev_cpu_nsec)
                                        e->cpu_percent = (double)(m->cpu_usage_nsec - e->prev_cpu_nsec) /
                                                         (double)((m->resources_at_usec - e->prev_sample_usec) * 1000) * 100.0;
                                e->prev_cpu_nsec = m->cpu_usage_nsec;
                                e->prev_sample_usec = m->resources_at_usec;
                        }
                        (void)mod_render(e);
                        if (m->has_resources) {
                                any = true;
                                json_object_set_new(figures, e->name,
                                                    json_pack("{s:o, s:I}", "cpu_percent",
                                                              e->cpu_percent >= 0 ? json_real(e->cpu_percent) : json_null(),
                                                              "memory_bytes", (json_int_t)m->memory_current_bytes));
                        }
                }
                publish_modules(w);
                if (any) {
                        _cleanup_(json_decrefp) json_t *j = json_pack("{s:O}", "modules", figures);
                        if (j)
                                broadcast(w, "resources", j, NULL);
                }
        }
        resources_schedule(w);
}

static int on_resources_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        WebService *w = userdata;
        Callassistant__V1__ListModulesRequest req = CALLASSISTANT__V1__LIST_MODULES_REQUEST__INIT;

        w->resources_timer = sd_event_source_unref(w->resources_timer);
        if (web_server_n_streams(w->server) == 0 || w->resources_call) {
                w->resources_sampled = false;
                return 0;
        }
        req.with_resources = true;
        if (rpc_channel_call(w->ch, ORCH "ListModules", &req.base, &callassistant__v1__list_modules_response__descriptor,
                             CALL_TIMEOUT_MS, 0, NULL, 0, on_resources, w, &w->resources_call) < 0) {
                w->resources_call = NULL;
                resources_schedule(w);
        }
        return 0;
}

/* Sample while at least one page is open; nothing at all while nobody looks. */
static void resources_schedule(WebService *w) {
        if (w->resources_timer || w->resources_call || web_server_n_streams(w->server) == 0)
                return;
        /* The first page that opens gets figures soon; then one sample per interval. */
        (void)sd_event_add_time_relative(w->event, &w->resources_timer, CLOCK_MONOTONIC,
                                         w->resources_sampled ? (uint64_t)w->resources_interval_ms * 1000 : 100000, 0,
                                         on_resources_timer, w);
        w->resources_sampled = true;
}

/* ---- the journal ---- */

static const char *journal_lookup(const char *unit, void *userdata) {
        WebService *w = userdata;

        for (size_t i = 0; i < w->n_mods; i++)
                if (w->mods[i].info->unit && strcmp(w->mods[i].info->unit, unit) == 0)
                        return w->mods[i].name;
        return NULL;
}

static void journal_entry(const char *module, json_t *entry, void *userdata) {
        WebService *w = userdata;

        if (!web_server_wants_logs(w->server))
                return;
        json_object_set_new(entry, "module", json_string(module));
        broadcast(w, "log", entry, module);
}

/* ---- jobs ---- */

static void job_reply_json(WebService *w, WebJob *job, int status, json_t *body /* stolen */) {
        char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;

        json_decref(body);
        web_server_reply(w->server, job, s ? status : 503, s);
}

static void job_reply_error(WebService *w, WebJob *job, int status, const char *message, json_t *fields) {
        web_server_reply(w->server, job, status, web_error_body(message, fields));
}

static void job_call_remove(WebService *w, JobCall *jc) {
        if (jc->prev)
                jc->prev->next = jc->next;
        else
                w->calls = jc->next;
        if (jc->next)
                jc->next->prev = jc->prev;
}

/* A gRPC call on behalf of a job; done gets the JobCall (to free after use). */
static int job_call(WebService *w, WebJob *job, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *type, rpc_done_t done) {
        JobCall *jc = calloc(1, sizeof(JobCall));
        int r;

        if (!jc)
                return -ENOMEM;
        jc->service = w;
        jc->job = job;
        r = rpc_channel_call(w->ch, method, req, type, CALL_TIMEOUT_MS, 0, NULL, 0, done, jc, &jc->call);
        if (r < 0) {
                free(jc);
                return r;
        }
        jc->next = w->calls;
        if (w->calls)
                w->calls->prev = jc;
        w->calls = jc;
        return 0;
}

/* Take the job from a finished call; NULL (and the call reported) on failure. */
static WebJob *job_call_finish(JobCall *jc, int status, const char *message, bool field_errors) {
        WebService *w = jc->service;
        WebJob *job = jc->job;

        job_call_remove(w, jc);
        free(jc);
        if (status == RPC_OK)
                return job;
        if (field_errors && (status == RPC_INVALID_ARGUMENT || status == RPC_FAILED_PRECONDITION))
                job_reply_error(w, job, web_http_status_of_rpc(status),
                                status == RPC_INVALID_ARGUMENT ? "invalid configuration" : message,
                                web_field_errors(message));
        else
                job_reply_error(w, job, web_http_status_of_rpc(status), message && *message ? message : rpc_status_to_string(status),
                                NULL);
        return NULL;
}

static void on_op_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                       void *userdata) {
        JobCall *jc = userdata;
        WebService *w = jc->service;
        const Callassistant__V1__ModuleResponse *resp = (const void *)response;
        WebJob *job = job_call_finish(jc, status, message, false);

        if (!job)
                return;
        job_reply_json(w, job, 200, json_pack("{s:o}", "module", web_module_json(resp->module, -1)));
}

static void on_config_get_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                               void *userdata) {
        JobCall *jc = userdata;
        WebService *w = jc->service;
        const Callassistant__Config__V1__GetConfigResponse *resp = (const void *)response;
        WebJob *job = job_call_finish(jc, status, message, false);
        json_t *config, *schema;

        if (!job)
                return;
        config = json_loads(resp->config_json, 0, NULL);
        schema = resp->schema_json && *resp->schema_json ? json_loads(resp->schema_json, 0, NULL) : NULL;
        job_reply_json(w, job, 200,
                       json_pack("{s:s, s:o, s:o, s:I, s:I}", "module", resp->module, "config",
                                 config ? config : json_object(), "schema", schema ? schema : json_null(), "revision",
                                 (json_int_t)resp->revision, "updated_at_usec", (json_int_t)resp->updated_at));
}

static void on_config_set_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                               void *userdata) {
        JobCall *jc = userdata;
        WebService *w = jc->service;
        const Callassistant__Config__V1__SetConfigResponse *resp = (const void *)response;
        WebJob *job = job_call_finish(jc, status, message, true);
        json_t *config;

        if (!job)
                return;
        config = json_loads(resp->config_json, 0, NULL);
        job_reply_json(w, job, 200,
                       json_pack("{s:I, s:o}", "revision", (json_int_t)resp->revision, "config",
                                 config ? config : json_object()));
}

static void on_entities_done(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                             void *userdata) {
        JobCall *jc = userdata;
        WebService *w = jc->service;
        const Callassistant__V1__ListEntitiesOfModulesResponse *resp = (const void *)response;
        WebJob *job = job_call_finish(jc, status, message, false);
        json_t *a;

        if (!job)
                return;
        a = json_array();
        for (size_t i = 0; a && i < resp->n_entities; i++) {
                const Callassistant__V1__ModuleEntity *me = resp->entities[i];
                const Callassistant__V1__EntityType *type = me->type;
                ModEntry *mod = mod_find(w, me->module);
                json_t *e;

                if (!me->entity)
                        continue;
                /* The type as the module declared it; from the module list if not given. */
                e = web_entity_json(me->module, me->entity, me->available);
                for (size_t k = 0; !type && mod && k < mod->info->n_entity_types; k++)
                        if (strcmp(mod->info->entity_types[k]->name, me->entity->type) == 0)
                                type = mod->info->entity_types[k];
                if (e && type)
                        json_object_set_new(e, "type_info", web_entity_type_json(type));
                json_array_append_new(a, e);
        }
        job_reply_json(w, job, 200, json_pack("{s:o}", "entities", a));
}

static void job_config_set(WebService *w, WebJob *job) {
        Callassistant__Config__V1__SetConfigRequest req = CALLASSISTANT__CONFIG__V1__SET_CONFIG_REQUEST__INIT;
        _cleanup_(json_decrefp) json_t *j = json_loadb(job->body ? job->body : "", job->body_len, 0, NULL);
        _cleanup_free_ char *config = NULL;
        json_t *rev;
        int r;

        /* The h2o thread checked the shape already; check again, cheaply. */
        if (!j || !json_is_object(json_object_get(j, "config"))) {
                job_reply_error(w, job, 400, "expected {\"config\": {...}, \"revision\": N}", NULL);
                return;
        }
        rev = json_object_get(j, "revision");
        if (rev && !json_is_null(rev) && (!json_is_integer(rev) || json_integer_value(rev) < 0)) {
                job_reply_error(w, job, 400, "revision: expected a non-negative integer", NULL);
                return;
        }
        config = json_dumps(json_object_get(j, "config"), JSON_COMPACT);
        if (!config) {
                job_reply_error(w, job, 503, "out of memory", NULL);
                return;
        }
        req.module = job->module;
        req.config_json = config;
        req.check_revision = rev && json_is_integer(rev);
        req.expected_revision = req.check_revision ? (uint64_t)json_integer_value(rev) : 0;
        r = job_call(w, job, CFG "SetConfig", &req.base, &callassistant__config__v1__set_config_response__descriptor,
                     on_config_set_done);
        explicit_bzero(config, strlen(config));
        if (r < 0)
                job_reply_error(w, job, 503, "cannot reach the config service", NULL);
}

static void job_logs(WebService *w, WebJob *job) {
        ModEntry *e = mod_find(w, job->module);
        _cleanup_free_ char *storage = NULL;
        const char *what = NULL;
        WebLogQuery q = {};
        json_t *res = NULL;
        int r;

        if (!e) {
                job_reply_error(w, job, 404, "no such module", NULL);
                return;
        }
        if (!w->journal) {
                job_reply_error(w, job, 503, "the journal cannot be read", NULL);
                return;
        }
        r = web_log_query_parse(job->arg ? job->arg : "", &q, &storage, &what);
        if (r == -EINVAL) {
                job_reply_error(w, job, 400, what, NULL);
                return;
        }
        if (r < 0) {
                job_reply_error(w, job, 503, "out of memory", NULL);
                return;
        }
        q.unit = e->info->unit;
        r = web_journal_query(w->journal, &q, &res);
        if (r == -EINVAL || r == -EADDRNOTAVAIL) {
                job_reply_error(w, job, 400, "before: not a journal cursor", NULL);
                return;
        }
        if (r < 0) {
                job_reply_error(w, job, 503, "cannot read the journal", NULL);
                return;
        }
        job_reply_json(w, job, 200, res);
}

/* ---- live views ---- */

static const char *flow_state_name(int state) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&callassistant__v1__flow_state__descriptor, state);

        return v && strncmp(v->name, "FLOW_STATE_", 11) == 0 ? v->name + 11 : "UNKNOWN";
}

static LiveView *live_find(WebService *w, const char *flow_id) {
        for (LiveView *v = w->live_views; v; v = v->next)
                if (v->flow_id && strcmp(v->flow_id, flow_id) == 0)
                        return v;
        return NULL;
}

static LiveView *live_free(LiveView *v) {
        WebService *w;

        if (!v)
                return NULL;
        w = v->service;
        if (v->prev)
                v->prev->next = v->next;
        else
                w->live_views = v->next;
        if (v->next)
                v->next->prev = v->prev;
        if (v->call)
                rpc_client_call_cancel(v->call);
        web_job_free(v->job);
        free(v->module);
        free(v->entity);
        free(v->flow_id);
        free(v);
        return NULL;
}

static void on_live_stopped(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                            void *userdata) {
        LiveView *v = userdata;
        WebService *w = v->service;
        const Callassistant__V1__Flow *flow = (const void *)response;
        WebJob *job = TAKE_PTR(v->job);

        v->call = NULL;
        /* NOT_FOUND: it had ended already (the orchestrator ended it, or it failed). */
        if (status == RPC_OK || status == RPC_NOT_FOUND) {
                log_info("web: live view of %s/%s ended (flow %s)", v->module, v->entity, v->flow_id);
                if (job)
                        job_reply_json(w, job, 200,
                                       json_pack("{s:s, s:s}", "flow_id", v->flow_id, "state",
                                                 status == RPC_OK && flow ? flow_state_name(flow->state) : "STOPPED"));
        } else {
                log_warning("web: cannot stop the live view of %s/%s (flow %s): %s: %s", v->module, v->entity, v->flow_id,
                            rpc_status_to_string(status), message ? message : "");
                if (job)
                        job_reply_error(w, job, web_http_status_of_rpc(status),
                                        message && *message ? message : rpc_status_to_string(status), NULL);
        }
        live_free(v);
}

/* StopFlow for a live view; job (taken, may be NULL) is answered once it is done. */
static void live_stop(LiveView *v, WebJob *job) {
        WebService *w = v->service;
        Callassistant__V1__FlowRequest req = CALLASSISTANT__V1__FLOW_REQUEST__INIT;
        int r;

        v->stopping = true;
        v->job = job;
        req.id = v->flow_id;
        r = rpc_channel_call(w->ch, ORCH "StopFlow", &req.base, &callassistant__v1__flow__descriptor, CALL_TIMEOUT_MS, 0,
                             NULL, 0, on_live_stopped, v, &v->call);
        if (r < 0) {
                v->call = NULL;
                log_warning_errno(r, "web: cannot stop the live view of %s/%s (flow %s): %m", v->module, v->entity,
                                  v->flow_id);
                if (job)
                        job_reply_error(w, TAKE_PTR(v->job), 503, "cannot reach the orchestrator", NULL);
                live_free(v);
        }
}

static void on_live_started(RpcClientCall *c, int status, const char *message, const ProtobufCMessage *response,
                            void *userdata) {
        LiveView *v = userdata;
        WebService *w = v->service;
        const Callassistant__V1__StartFlowResponse *resp = (const void *)response;
        WebJob *job = TAKE_PTR(v->job);

        v->call = NULL;
        if (status != RPC_OK) {
                log_info("web: live view of %s/%s refused: %s: %s", v->module, v->entity, rpc_status_to_string(status),
                         message ? message : "");
                job_reply_error(w, job, web_http_status_of_rpc(status),
                                message && *message ? message : rpc_status_to_string(status), NULL);
                live_free(v);
                return;
        }
        if (!resp->flow || !resp->flow->id || !*resp->flow->id || !resp->peer_answer_sdp || !*resp->peer_answer_sdp ||
            !(v->flow_id = strdup(resp->flow->id))) {
                job_reply_error(w, job, 502, "the orchestrator gave no flow or no answer", NULL);
                if (resp->flow && resp->flow->id && *resp->flow->id && (v->flow_id = strdup(resp->flow->id)))
                        live_stop(v, NULL);
                else
                        live_free(v);
                return;
        }
        if (v->page_gone) {
                /* The page went away while the flow was being set up. */
                job_reply_error(w, job, 409, "the page's event stream ended", NULL);
                live_stop(v, NULL);
                return;
        }
        log_info("web: live view of %s/%s started (flow %s)", v->module, v->entity, v->flow_id);
        job_reply_json(w, job, 200,
                       json_pack("{s:s, s:s, s:s, s:s}", "flow_id", v->flow_id, "sdp", resp->peer_answer_sdp, "state",
                                 flow_state_name(resp->flow->state), "state_reason",
                                 resp->flow->state_reason ? resp->flow->state_reason : ""));
}

static void job_live_start(WebService *w, WebJob *job) {
        Callassistant__V1__StartFlowRequest req = CALLASSISTANT__V1__START_FLOW_REQUEST__INIT;
        Callassistant__V1__EntityRef source = CALLASSISTANT__V1__ENTITY_REF__INIT;
        LiveView *v;
        unsigned n = 0;
        int r;

        for (v = w->live_views; v; v = v->next)
                if (v->session_id == job->session_id && !v->stopping && !v->page_gone)
                        n++;
        if (n >= MAX_LIVE_PER_SESSION) {
                job_reply_error(w, job, 429, "too many live views in this session (at most 4): stop one first", NULL);
                return;
        }
        v = calloc(1, sizeof(LiveView));
        if (!v || !(v->module = strdup(job->module)) || !(v->entity = strdup(job->arg))) {
                if (v) {
                        free(v->module);
                        free(v);
                }
                job_reply_error(w, job, 503, "out of memory", NULL);
                return;
        }
        v->service = w;
        v->session_id = job->session_id;
        v->stream_id = job->stream_id;
        v->next = w->live_views;
        if (w->live_views)
                w->live_views->prev = v;
        w->live_views = v;

        source.module = job->module;
        source.id = job->arg;
        req.source = &source;
        req.peer_offer_sdp = job->body;
        r = rpc_channel_call(w->ch, ORCH "StartFlow", &req.base, &callassistant__v1__start_flow_response__descriptor,
                             LIVE_START_TIMEOUT_MS, 0, NULL, 0, on_live_started, v, &v->call);
        if (r < 0) {
                v->call = NULL;
                job_reply_error(w, job, 503, "cannot reach the orchestrator", NULL);
                live_free(v);
                return;
        }
        v->job = job;
}

static void job_live_stop(WebService *w, WebJob *job) {
        LiveView *v = live_find(w, job->arg);

        /* Only the session that started it may stop it; other flows are not the dashboard's. */
        if (!v || v->session_id != job->session_id || v->stopping) {
                job_reply_error(w, job, 404, "no such live view (it ended, or it is not this session's)", NULL);
                return;
        }
        live_stop(v, job);
}

static void live_stream_ended(WebService *w, uint64_t stream_id) {
        for (LiveView *v = w->live_views, *next; v; v = next) {
                next = v->next;
                if (v->stream_id != stream_id || v->page_gone)
                        continue;
                v->page_gone = true;
                /* Still starting: on_live_started stops it. Stopping: on its way already. */
                if (v->flow_id && !v->stopping)
                        live_stop(v, NULL);
        }
}

/* A flow changed: a live view whose flow ended by itself is over; the pages hear of it. */
static void live_flow_changed(WebService *w, const Callassistant__V1__Flow *flow) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        LiveView *v;

        if (!flow || !flow->id || !(v = live_find(w, flow->id)))
                return;
        j = json_pack("{s:s, s:s, s:s}", "id", flow->id, "state", flow_state_name(flow->state), "state_reason",
                      flow->state_reason ? flow->state_reason : "");
        if (j)
                broadcast(w, "flow", j, NULL);
        if ((flow->state == CALLASSISTANT__V1__FLOW_STATE__FLOW_STATE_STOPPED ||
             flow->state == CALLASSISTANT__V1__FLOW_STATE__FLOW_STATE_FAILED) &&
            !v->call) {
                log_info("web: live view of %s/%s ended by the orchestrator (flow %s): %s", v->module, v->entity,
                         v->flow_id, flow->state_reason ? flow->state_reason : "");
                live_free(v);
        }
}

static void job_run(WebService *w, WebJob *job) {
        int r = 0;

        switch (job->kind) {
        case WEB_JOB_MODULE: {
                ModEntry *e = mod_find(w, job->module);
                if (!e)
                        job_reply_error(w, job, 404, "no such module", NULL);
                else
                        web_server_reply(w->server, job, 200, strdup(e->json));
                return;
        }
        case WEB_JOB_MODULE_OP: {
                Callassistant__V1__ModuleRequest req = CALLASSISTANT__V1__MODULE_REQUEST__INIT;
                const char *method = strcmp(job->arg, "start") == 0  ? ORCH "StartModule"
                                     : strcmp(job->arg, "stop") == 0 ? ORCH "StopModule"
                                                                     : ORCH "RestartModule";
                req.name = job->module;
                r = job_call(w, job, method, &req.base, &callassistant__v1__module_response__descriptor, on_op_done);
                break;
        }
        case WEB_JOB_CONFIG_GET: {
                Callassistant__Config__V1__GetConfigRequest req = CALLASSISTANT__CONFIG__V1__GET_CONFIG_REQUEST__INIT;
                if (!mod_find(w, job->module)) {
                        job_reply_error(w, job, 404, "no such module", NULL);
                        return;
                }
                req.module = job->module;
                r = job_call(w, job, CFG "GetConfig", &req.base, &callassistant__config__v1__get_config_response__descriptor,
                             on_config_get_done);
                break;
        }
        case WEB_JOB_CONFIG_SET:
                if (!mod_find(w, job->module)) {
                        job_reply_error(w, job, 404, "no such module", NULL);
                        return;
                }
                job_config_set(w, job);
                return;
        case WEB_JOB_LOGS:
                job_logs(w, job);
                return;
        case WEB_JOB_ENTITIES: {
                Callassistant__V1__ListEntitiesOfModulesRequest req = CALLASSISTANT__V1__LIST_ENTITIES_OF_MODULES_REQUEST__INIT;
                r = job_call(w, job, ORCH "ListEntities", &req.base,
                             &callassistant__v1__list_entities_of_modules_response__descriptor, on_entities_done);
                break;
        }
        case WEB_JOB_STREAMS:
                resources_schedule(w);
                web_job_free(job);
                return;
        case WEB_JOB_STREAM_ENDED:
                live_stream_ended(w, job->stream_id);
                resources_schedule(w);
                web_job_free(job);
                return;
        case WEB_JOB_LIVE_START:
                job_live_start(w, job);
                return;
        case WEB_JOB_LIVE_STOP:
                job_live_stop(w, job);
                return;
        case WEB_JOB_REVOKED: {
                Revocation *rv = job->control;
                /* Answers come back in the order the requests went out. */
                for (Revocation **p = &w->revocations; *p; p = &(*p)->next)
                        if (*p == rv) {
                                *p = rv->next;
                                rv->done((int)job->count, rv->userdata);
                                free(rv);
                                break;
                        }
                web_job_free(job);
                return;
        }
        }
        if (r < 0)
                job_reply_error(w, job, 503, "cannot reach the orchestrator", NULL);
}


/* Called on the h2o thread. */
static void submit(WebJob *job, void *userdata) {
        WebService *w = userdata;
        uint64_t one = 1;

        pthread_mutex_lock(&w->lock);
        job->next = NULL;
        if (w->queue_tail)
                w->queue_tail->next = job;
        else
                w->queue_head = job;
        w->queue_tail = job;
        pthread_mutex_unlock(&w->lock);
        (void)!write(w->efd, &one, sizeof(one));
}

static WebJob *queue_take_all(WebService *w) {
        WebJob *l;

        pthread_mutex_lock(&w->lock);
        l = w->queue_head;
        w->queue_head = w->queue_tail = NULL;
        pthread_mutex_unlock(&w->lock);
        return l;
}

static int on_queue(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WebService *w = userdata;
        uint64_t n;

        (void)!read(w->efd, &n, sizeof(n));
        for (WebJob *j = queue_take_all(w), *next; j; j = next) {
                next = j->next;
                job_run(w, j);
        }
        return 0;
}

/* ---- password and sessions ---- */

static int password_load(WebService *w) {
        _cleanup_free_ char *line = NULL;
        size_t n = 0;
        FILE *f;
        ssize_t len;

        f = fopen(w->password_path, "re");
        if (!f)
                return errno == ENOENT ? 0 : log_error_errno(errno, "web: cannot read %s: %m", w->password_path);
        len = getline(&line, &n, f);
        fclose(f);
        if (len > 0 && line[len - 1] == '\n')
                line[--len] = 0;
        if (len <= 0 || !web_password_hash_valid(line)) {
                log_error("web: %s does not hold a yescrypt or sha512-crypt hash; nobody can log in until a password "
                          "is set with 'call-assistantctl web passwd'", w->password_path);
                return 0;
        }
        w->password_hash = TAKE_PTR(line);
        return 0;
}

bool web_service_password_set(WebService *w) {
        return w->password_hash != NULL;
}

unsigned web_service_n_sessions(WebService *w) {
        return web_server_n_sessions(w->server);
}

unsigned web_service_n_streams(WebService *w) {
        return web_server_n_streams(w->server);
}

unsigned web_service_n_live_views(WebService *w) {
        unsigned n = 0;

        for (LiveView *v = w->live_views; v; v = v->next)
                if (v->flow_id && !v->stopping && !v->page_gone)
                        n++;
        return n;
}

bool web_service_tls(WebService *w) {
        return web_server_tls(w->server);
}

const char *web_service_url(WebService *w) {
        return web_server_url(w->server);
}

int web_service_revoke_sessions(WebService *w, web_revoke_done_t done, void *userdata) {
        Revocation *rv = calloc(1, sizeof(Revocation)), **p;

        if (!rv)
                return -ENOMEM;
        rv->done = done;
        rv->userdata = userdata;
        for (p = &w->revocations; *p; p = &(*p)->next)
                ;
        *p = rv;
        web_server_revoke_sessions(w->server, rv);
        return 0;
}

int web_service_set_password_hash(WebService *w, const char *hash, web_revoke_done_t done, void *userdata) {
        _cleanup_free_ char *dir = NULL, *data = NULL, *copy = NULL;
        char *slash;
        int r;

        if (!web_password_hash_valid(hash))
                return -EINVAL;
        dir = strdup(w->password_path);
        copy = strdup(hash);
        if (!dir || !copy || asprintf(&data, "%s\n", hash) < 0)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash)
                *slash = 0;
        r = mkdir_p(dir, 0700);
        if (r >= 0)
                r = write_file_atomic(w->password_path, data, strlen(data), 0600);
        if (r < 0)
                return log_error_errno(r, "web: cannot store the password hash in %s: %m", w->password_path);
        free(w->password_hash);
        w->password_hash = TAKE_PTR(copy);
        web_server_set_password_hash(w->server, w->password_hash);
        log_info("web: the dashboard password was changed; ending every session");
        return web_service_revoke_sessions(w, done, userdata);
}

/* ---- life cycle ---- */

int web_service_new(WebService **ret, sd_event *event, RpcRuntime *rt, const WebServiceOptions *o) {
        WebService *w;
        WebServerOptions so = {
                .listen = o->listen,
                .assets_dir = o->assets_dir,
                .tls_certificate = o->tls_certificate,
                .tls_key = o->tls_key,
                .max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY,
                .submit = submit,
        };
        int r;

        w = calloc(1, sizeof(WebService));
        if (!w)
                return -ENOMEM;
        w->event = sd_event_ref(event);
        w->rt = rt;
        w->efd = -1;
        w->resources_interval_ms = o->resources_interval_ms ? o->resources_interval_ms : DEFAULT_RESOURCES_MS;
        pthread_mutex_init(&w->lock, NULL);
        so.userdata = w;

        if (asprintf(&w->password_path, "%s/web/password", o->state_dir) < 0) {
                w->password_path = NULL;
                r = -ENOMEM;
                goto fail;
        }
        r = password_load(w);
        if (r < 0)
                goto fail;

        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(event, &w->queue_source, w->efd, EPOLLIN, on_queue, w);
        if (r < 0)
                goto fail;
        r = rpc_channel_new(&w->ch, rt, o->control_address);
        if (r < 0) {
                log_error_errno(r, "web: cannot create a channel to %s: %m", o->control_address);
                goto fail;
        }

        r = web_server_new(&w->server, &so);
        if (r < 0)
                goto fail;
        if (w->password_hash)
                web_server_set_password_hash(w->server, w->password_hash);

        r = web_journal_new(&w->journal, event, o->journal_directory && *o->journal_directory ? o->journal_directory : NULL,
                            journal_lookup, journal_entry, w);
        if (r < 0)
                log_warning("web: the dashboard will show no logs");

        r = web_server_start(w->server);
        if (r < 0) {
                log_error_errno(r, "web: cannot start the HTTP thread: %m");
                goto fail;
        }
        (void)watch_start(w);
        log_info("web: dashboard at %s%s", web_server_url(w->server),
                 w->password_hash ? "" : " (no password set yet: call-assistantctl web passwd)");
        *ret = w;
        return 0;

fail:
        web_service_free(w);
        return r;
}

WebService *web_service_free(WebService *w) {
        if (!w)
                return NULL;

        /* Our calls first: no callback may run once we are gone. */
        if (w->watch)
                rpc_client_call_cancel(w->watch);
        if (w->resources_call)
                rpc_client_call_cancel(w->resources_call);
        while (w->calls) {
                JobCall *jc = w->calls;
                rpc_client_call_cancel(jc->call);
                job_call_remove(w, jc);
                web_job_free(jc->job);
                free(jc);
        }
        /* Live views end with the orchestrator (flows to a peer are not stored). */
        while (w->live_views)
                live_free(w->live_views);
        /* Then the HTTP thread: it answers what still waits with 503 and ends the streams. */
        w->server = web_server_free(w->server);
        for (WebJob *j = queue_take_all(w), *next; j; j = next) {
                next = j->next;
                web_job_free(j);
        }
        while (w->revocations) {
                Revocation *rv = w->revocations;
                w->revocations = rv->next;
                rv->done(-ECANCELED, rv->userdata);
                free(rv);
        }
        rpc_channel_free(w->ch);
        web_journal_free(w->journal);
        sd_event_source_disable_unref(w->watch_retry);
        sd_event_source_disable_unref(w->resources_timer);
        sd_event_source_disable_unref(w->queue_source);
        if (w->efd >= 0)
                close(w->efd);
        for (size_t i = 0; i < w->n_mods; i++) {
                free(w->mods[i].name);
                free(w->mods[i].json);
                if (w->mods[i].info)
                        protobuf_c_message_free_unpacked(&w->mods[i].info->base, NULL);
        }
        free(w->mods);
        if (w->password_hash)
                explicit_bzero(w->password_hash, strlen(w->password_hash));
        free(w->password_hash);
        free(w->password_path);
        pthread_mutex_destroy(&w->lock);
        sd_event_unref(w->event);
        free(w);
        return NULL;
}
