/* src/core/core.h - what the core exposes to the layers above it (datadeps, stream, darray, io).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_CORE_H
#define DAGGER_SRC_CORE_H

#include "dagger.h"

/* Make `v` own its bytes (copy a str/blob that is not owned yet). Returns 0 or DAGGER_ENOMEM. */
int dagger__value_own(dagger_value_t *v);
/* Free what an owned value holds and reset it to nil. */
void dagger__value_drop(dagger_value_t *v);

/* The task running on the calling thread, or NULL. */
dagger_task_t *dagger__cur_task(void);

/* A hook consulted by fetch and wait: `t` may carry a guard set by a feature (a datadeps
 * region) that refuses waits from inside it. Returns 0 or an error (message already set). */
typedef int (*dagger__wait_guard_fn)(dagger_task_t *t, void *guard);
void dagger__task_set_wait_guard(dagger_task_t *t, dagger__wait_guard_fn fn, void *guard);

#endif /* DAGGER_SRC_CORE_H */
