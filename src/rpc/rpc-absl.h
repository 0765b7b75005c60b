/* Settings of Abseil, the C++ library under gRPC's C core, that only C++ can reach. */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* Turn off absl::Mutex deadlock detection, process-wide. */
void rpc_absl_no_deadlock_detection(void);

#ifdef __cplusplus
}
#endif
