/* A module's request for a flow into one of its own entities: the checks that need nothing but
 * the request (src/daemon/flows.c looks the entities up and finds the path). */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "flows/flow-request.h"

static bool empty(const char *s) {
        return !s || !*s;
}

/* 1 to FLOW_REQUEST_ID_MAX printable ASCII characters: it is logged and sent back to the module. */
static bool request_id_valid(const char *s) {
        size_t n = 0;

        for (; s && *s; s++, n++)
                if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || n >= FLOW_REQUEST_ID_MAX)
                        return false;
        return n > 0;
}

int flow_request_check(const FlowRequestFields *r, const char **ret_problem) {
        const char *problem = NULL;
        int ret = -EINVAL;

        if (!empty(r->claimed_module) && (empty(r->reporter) || strcmp(r->claimed_module, r->reporter) != 0)) {
                problem = "module: a module can request flows into its own entities only";
                ret = -EPERM;
        } else if (empty(r->target_id) || strlen(r->target_id) > 256)
                problem = "entity.id: the target, one of the reporting module's entities, is required";
        else if (empty(r->source_module) || empty(r->source_id) || strlen(r->source_id) > 256)
                problem = "flow_source: a module and an entity id are required";
        else if (!empty(r->reporter) && strcmp(r->source_module, r->reporter) == 0 &&
                 strcmp(r->source_id, r->target_id) == 0)
                problem = "flow_source: the same entity as the target";
        else if (!request_id_valid(r->request_id))
                problem = "request_id: 1 to 128 printable characters without spaces are required";
        else if (empty(r->media) || strcmp(r->media, "webrtc") != 0 || empty(r->sdp_type) ||
                 strcmp(r->sdp_type, "offer") != 0)
                problem = "link: the remote party's WebRTC offer is required (media \"webrtc\", sdp_type \"offer\")";
        else if (empty(r->sdp) || strncmp(r->sdp, "v=0", 3) != 0 || !strstr(r->sdp, "\nm="))
                problem = "link.sdp: not an SDP offer (must start with v=0 and have a media section)";
        else if (strlen(r->sdp) > FLOW_REQUEST_SDP_MAX)
                problem = "link.sdp: longer than 64 KiB";
        else
                ret = 0;
        if (ret_problem)
                *ret_problem = problem;
        return ret;
}
