/* The entity registry kept current: from each module's ListEntities when it becomes READY and
 * from the entity events it reports; its entities marked unavailable while it is not READY. */
#pragma once

#include "callassistant/v1/orchestrator.pb-c.h"
#include "daemon/manager.h"

/* A module's state changed from before to its current one (module-lifecycle.c). */
void manager_entities_module_state_changed(Module *m, ModuleState before);
/* A module reported KIND_ENTITY_ADDED/CHANGED/REMOVED (already validated). */
void manager_entities_reported(Module *m, const Callassistant__V1__Event *ev);

/* Copy an Entity a module sent into a record (bounded); -ENOMEM. */
int entity_record_from_proto(EntityRecord *r, const char *module, const Callassistant__V1__Entity *e, bool available);
void entity_record_clear(EntityRecord *r);
