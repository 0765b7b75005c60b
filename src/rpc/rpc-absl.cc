/* Settings of Abseil, the C++ library under gRPC's C core, that only C++ can reach (see
 * rpc-absl.h). */
#include <absl/synchronization/mutex.h>

#include "rpc/rpc-absl.h"

/* An Abseil built without NDEBUG (Debian's is) checks the lock order of every absl::Mutex
 * gRPC takes, and keeps a graph of all its mutexes for it, in memory it never returns: some
 * 9 kB for each module connection of the orchestrator, and CPU on every lock. Release builds
 * of Abseil do not check; neither do we. */
void rpc_absl_no_deadlock_detection(void) {
        absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}
