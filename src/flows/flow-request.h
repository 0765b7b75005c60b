/* A module's request for a flow into one of its own entities (Event.KIND_FLOW_REQUEST, docs/protocol.md
 * "Flows a module requests"): what it must hold before anything is looked up. Pure: no I/O. */
#pragma once

#include <stddef.h>

#define FLOW_REQUEST_ID_MAX 128
#define FLOW_REQUEST_SDP_MAX (64 * 1024)

typedef struct FlowRequestFields {
        const char *reporter;       /* the module the token says is reporting */
        const char *claimed_module; /* Event.module ("" or NULL: none) */
        const char *target_id;      /* Event.entity.id: the reporter's own entity */
        const char *source_module;  /* Event.flow_source */
        const char *source_id;
        const char *request_id;
        const char *media;          /* Event.link: the remote party's offer */
        const char *sdp_type;
        const char *sdp;
} FlowRequestFields;

/* 0 if the request may be looked at further; -EPERM if it names another module's entity as its
 * target; -EINVAL for anything malformed. *ret_problem (static text) says which field and why. */
int flow_request_check(const FlowRequestFields *r, const char **ret_problem);
