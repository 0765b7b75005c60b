/* A flow as it is stored durably (<state_dir>/flows/<id>.json) and shown: its ends, its steps
 * and its state. Never holds a MediaLink (they may carry credentials). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/macro.h"

typedef enum FlowState {
        FLOW_PENDING,    /* being set up, or ringing */
        FLOW_ACTIVE,
        FLOW_DEGRADED,   /* a step was lost; being re-created */
        FLOW_FAILED,     /* could not be set up or healed; nothing of it runs */
        FLOW_STOPPED,    /* stopped on request or ended by a party */
        _FLOW_STATE_MAX,
} FlowState;

typedef struct FlowStepRecord {
        char *module;
        char *entity_id;      /* "" until a created entity exists */
        char *entity_type;
        bool created;         /* created by the flow: destroyed when it ends */
        char *media_in;       /* "" for the source */
        char *media_out;      /* "" for the target */
        char *state;          /* "pending", "connected", "ringing", "lost", "ended" */
        char *message;
} FlowStepRecord;

typedef struct FlowRecord {
        char *id;             /* "flow-" and 16 hex digits */
        char *source_module, *source_entity;
        char *target_module, *target_entity;   /* NULL for a flow to an external WebRTC peer */
        FlowState state;
        char *reason;
        FlowStepRecord *steps;
        size_t n_steps;
        uint64_t created_usec, changed_usec;   /* CLOCK_REALTIME */
        uint32_t n_heals;
} FlowRecord;

const char *flow_state_to_string(FlowState s);
bool flow_id_valid(const char *id);
/* A fresh random id. */
int flow_id_new(char **ret);

FlowRecord *flow_record_free(FlowRecord *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(FlowRecord *, flow_record_free);
void flow_step_record_done(FlowStepRecord *s);
/* Set a string field (copies; NULL becomes ""). */
int flow_set_string(char **field, const char *value);

/* JSON, as stored. from_json validates everything; on failure *ret_error says what and where
 * ("line L, column C: ..." or "field 'steps[2].module': ..."). */
int flow_record_to_json(const FlowRecord *f, char **ret);
int flow_record_from_json(const char *text, FlowRecord **ret, char **ret_error);

/* The store: one file per flow, written atomically and durably (mode 0600). */
int flow_store_save(const char *dir, const FlowRecord *f);
int flow_store_remove(const char *dir, const char *id);
/* Every stored flow. A file that cannot be read or parsed is moved aside to
 * <file>.corrupt and reported through report (path, problem); the others are loaded. */
int flow_store_load_all(const char *dir, FlowRecord ***ret, size_t *ret_n,
                        void (*report)(const char *path, const char *problem, void *userdata), void *userdata);
