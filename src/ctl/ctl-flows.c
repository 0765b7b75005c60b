/* call-assistantctl entities and call-assistantctl flow start|stop|list|status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/ctl-flows.h"
#include "shared/macro.h"

static json_t *strv_json(char **l, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_string(l[i]));
        return a;
}

static json_t *entity_json(const Callassistant__V1__ModuleEntity *me) {
        const Callassistant__V1__Entity *e = me->entity;
        json_t *attrs = json_object(), *j;

        for (size_t i = 0; i < e->n_attributes; i++)
                json_object_set_new(attrs, e->attributes[i]->key, json_string(e->attributes[i]->value));
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:o}", "module", me->module, "id", e->id, "type", e->type,
                      "name", e->name, "state", e->state, "available", me->available, "attributes", attrs);
        if (me->type) {
                json_object_set_new(j, "media_in", strv_json(me->type->media_in, me->type->n_media_in));
                json_object_set_new(j, "media_out", strv_json(me->type->media_out, me->type->n_media_out));
                json_object_set_new(j, "capabilities", strv_json(me->type->capabilities, me->type->n_capabilities));
        }
        return j;
}

static void join(char *buf, size_t size, char **l, size_t n) {
        size_t o = 0;

        buf[0] = 0;
        for (size_t i = 0; i < n && o < size; i++)
                o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? "," : "", ctl_esc(l[i]));
        if (!buf[0])
                snprintf(buf, size, "-");
}

int cmd_entities(Client *c, const EntityFilter *filter, bool json) {
        Callassistant__V1__ListEntitiesOfModulesRequest req = CALLASSISTANT__V1__LIST_ENTITIES_OF_MODULES_REQUEST__INIT;
        Callassistant__V1__ListEntitiesOfModulesResponse *resp;
        Call call;
        int r;

        req.module = (char *)(filter->module ? filter->module : "");
        req.type = (char *)(filter->type ? filter->type : "");
        req.capability = (char *)(filter->capability ? filter->capability : "");
        req.media = (char *)(filter->media ? filter->media : "");
        r = call_orchestrator(c, "ListEntities", &req.base,
                              &callassistant__v1__list_entities_of_modules_response__descriptor, &call);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__V1__ListEntitiesOfModulesResponse *)call.response;
        if (json) {
                json_t *a = json_array();
                for (size_t i = 0; i < resp->n_entities; i++)
                        json_array_append_new(a, entity_json(resp->entities[i]));
                print_json(a);
        } else {
                printf("%-16s %-24s %-14s %-11s %-12s %-14s %s\n", "MODULE", "ENTITY", "TYPE", "AVAILABLE", "TAKES",
                       "GIVES", "STATE");
                for (size_t i = 0; i < resp->n_entities; i++) {
                        const Callassistant__V1__ModuleEntity *me = resp->entities[i];
                        char in[64] = "-", out[64] = "-";

                        if (me->type) {
                                join(in, sizeof(in), me->type->media_in, me->type->n_media_in);
                                join(out, sizeof(out), me->type->media_out, me->type->n_media_out);
                        }
                        printf("%-16s %-24s %-14s %-11s %-12s %-14s %s\n", ctl_esc(me->module),
                               ctl_esc(me->entity->id), ctl_esc(me->entity->type), me->available ? "yes" : "no", in,
                               out, ctl_esc(me->entity->state));
                }
                printf("\n%zu entit%s.\n", resp->n_entities, resp->n_entities == 1 ? "y" : "ies");
        }
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

static const char *flow_state_name(Callassistant__V1__FlowState s) {
        static const char *const names[] = { "UNKNOWN", "PENDING", "ACTIVE", "DEGRADED", "FAILED", "STOPPED" };
        return (unsigned)s < ELEMENTSOF(names) ? names[s] : "UNKNOWN";
}

static json_t *flow_json(const Callassistant__V1__Flow *f) {
        json_t *steps = json_array(), *j;

        for (size_t i = 0; i < f->n_steps; i++) {
                const Callassistant__V1__FlowStep *s = f->steps[i];
                json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s}", "module", s->module,
                                                       "entity_id", s->entity_id, "entity_type", s->entity_type,
                                                       "created", s->created, "media_in", s->media_in, "media_out",
                                                       s->media_out, "state", s->state, "message", s->message));
        }
        j = json_pack("{s:s, s:{s:s, s:s}, s:s, s:s, s:I, s:I, s:i, s:o}", "id", f->id, "source", "module",
                      f->source->module, "id", f->source->id, "state", flow_state_name(f->state), "state_reason",
                      f->state_reason, "created_at_usec", (json_int_t)f->created_at_usec, "changed_at_usec",
                      (json_int_t)f->changed_at_usec, "heals", (int)f->n_heals, "steps", steps);
        if (f->target)
                json_object_set_new(j, "target", json_pack("{s:s, s:s}", "module", f->target->module, "id",
                                                           f->target->id));
        return j;
}

static void print_flow(const Callassistant__V1__Flow *f) {
        char when[64] = "-";
        time_t t = (time_t)(f->changed_at_usec / 1000000);
        struct tm tm;

        if (localtime_r(&t, &tm))
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        printf("%s\n", ctl_esc(f->id));
        printf("   State: %s (%s) since %s\n", flow_state_name(f->state), ctl_esc(f->state_reason), when);
        printf("  Source: %s/%s\n", ctl_esc(f->source->module), ctl_esc(f->source->id));
        if (f->target)
                printf("  Target: %s/%s\n", ctl_esc(f->target->module), ctl_esc(f->target->id));
        else
                printf("  Target: an external WebRTC peer\n");
        printf("   Heals: %u\n", f->n_heals);
        printf("   Steps:\n");
        for (size_t i = 0; i < f->n_steps; i++) {
                const Callassistant__V1__FlowStep *s = f->steps[i];
                printf("     %zu. %s/%s (%s%s) %s -> %s: %s%s%s\n", i + 1, ctl_esc(s->module),
                       *s->entity_id ? ctl_esc(s->entity_id) : "-", ctl_esc(s->entity_type),
                       s->created ? ", created" : "", *s->media_in ? ctl_esc(s->media_in) : "-",
                       *s->media_out ? ctl_esc(s->media_out) : "-", ctl_esc(s->state), *s->message ? ": " : "",
                       ctl_esc(s->message));
        }
}

/* "MODULE/ENTITY"; the entity id may contain slashes, the module name cannot. *ret_module is
 * allocated, ref points into it and arg. */
static int parse_ref(const char *arg, Callassistant__V1__EntityRef *ref, char **ret_module) {
        const char *slash = strchr(arg, '/');

        if (!slash || slash == arg || !slash[1]) {
                fprintf(stderr, "'%s': expected MODULE/ENTITY\n", arg);
                return -EXIT_USAGE;
        }
        *ret_module = strndup(arg, (size_t)(slash - arg));
        if (!*ret_module)
                return -EXIT_FAIL;
        ref->module = *ret_module;
        ref->id = (char *)(slash + 1);
        return 0;
}

static int flow_call(Client *c, const char *method, const char *id, bool json) {
        Callassistant__V1__FlowRequest req = CALLASSISTANT__V1__FLOW_REQUEST__INIT;
        Call call;
        int r;

        req.id = (char *)id;
        r = call_orchestrator(c, method, &req.base, &callassistant__v1__flow__descriptor, &call);
        if (r != EXIT_OK)
                return r;
        if (json)
                print_json(flow_json((Callassistant__V1__Flow *)call.response));
        else
                print_flow((Callassistant__V1__Flow *)call.response);
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

static int flow_start(Client *c, const char *source, const char *target, bool json) {
        Callassistant__V1__StartFlowRequest req = CALLASSISTANT__V1__START_FLOW_REQUEST__INIT;
        Callassistant__V1__EntityRef src = CALLASSISTANT__V1__ENTITY_REF__INIT, tgt = CALLASSISTANT__V1__ENTITY_REF__INIT;
        Callassistant__V1__StartFlowResponse *resp;
        _cleanup_free_ char *src_module = NULL, *tgt_module = NULL;
        Call call;
        int r;

        r = parse_ref(source, &src, &src_module);
        if (r >= 0)
                r = parse_ref(target, &tgt, &tgt_module);
        if (r < 0)
                return -r;
        req.source = &src;
        req.target = &tgt;
        r = call_orchestrator(c, "StartFlow", &req.base, &callassistant__v1__start_flow_response__descriptor, &call);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__V1__StartFlowResponse *)call.response;
        if (json)
                print_json(flow_json(resp->flow));
        else
                print_flow(resp->flow);
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

static int flow_list(Client *c, bool json) {
        Callassistant__V1__ListFlowsRequest req = CALLASSISTANT__V1__LIST_FLOWS_REQUEST__INIT;
        Callassistant__V1__ListFlowsResponse *resp;
        Call call;
        int r;

        r = call_orchestrator(c, "ListFlows", &req.base, &callassistant__v1__list_flows_response__descriptor, &call);
        if (r != EXIT_OK)
                return r;
        resp = (Callassistant__V1__ListFlowsResponse *)call.response;
        if (json) {
                json_t *a = json_array();
                for (size_t i = 0; i < resp->n_flows; i++)
                        json_array_append_new(a, flow_json(resp->flows[i]));
                print_json(a);
        } else {
                printf("%-22s %-9s %-28s %-28s %-6s %s\n", "FLOW", "STATE", "SOURCE", "TARGET", "HEALS", "PATH");
                for (size_t i = 0; i < resp->n_flows; i++) {
                        const Callassistant__V1__Flow *f = resp->flows[i];
                        char src[128], tgt[128], path[256] = "";
                        size_t o = 0;

                        snprintf(src, sizeof(src), "%s/%s", ctl_esc(f->source->module), ctl_esc(f->source->id));
                        if (f->target)
                                snprintf(tgt, sizeof(tgt), "%s/%s", ctl_esc(f->target->module),
                                         ctl_esc(f->target->id));
                        else
                                snprintf(tgt, sizeof(tgt), "(WebRTC peer)");
                        for (size_t k = 0; k < f->n_steps && o < sizeof(path); k++)
                                if (*f->steps[k]->media_out)
                                        o += (size_t)snprintf(path + o, sizeof(path) - o, "%s%s", o ? ">" : "",
                                                              ctl_esc(f->steps[k]->media_out));
                        printf("%-22s %-9s %-28s %-28s %-6u %s\n", ctl_esc(f->id), flow_state_name(f->state), src, tgt,
                               f->n_heals, path);
                }
                printf("\n%zu flow(s).\n", resp->n_flows);
        }
        protobuf_c_message_free_unpacked(call.response, NULL);
        return EXIT_OK;
}

int cmd_flow(Client *c, int argc, char **argv, bool json) {
        const char *verb = argc > 0 ? argv[0] : NULL;

        if (verb && strcmp(verb, "list") == 0 && argc == 1)
                return flow_list(c, json);
        if (verb && strcmp(verb, "start") == 0 && argc == 3)
                return flow_start(c, argv[1], argv[2], json);
        if (verb && strcmp(verb, "stop") == 0 && argc == 2)
                return flow_call(c, "StopFlow", argv[1], json);
        if (verb && strcmp(verb, "status") == 0 && argc == 2)
                return flow_call(c, "GetFlow", argv[1], json);
        fprintf(stderr, "flow: expected 'start SOURCE TARGET', 'stop ID', 'status ID' or 'list'\n");
        return EXIT_USAGE;
}
