/* call-assistantctl entities and call-assistantctl flow start|stop|list|status. */
#pragma once

#include <stdbool.h>

#include "ctl/ctl-client.h"

typedef struct EntityFilter {
        const char *module, *type, *capability, *media;
} EntityFilter;

int cmd_entities(Client *c, const EntityFilter *filter, bool json);
/* argv: what follows "flow". */
int cmd_flow(Client *c, int argc, char **argv, bool json);
