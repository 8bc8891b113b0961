/* src/sched/sched.h - scopes: where a task may run, resolved against a context's processors.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_SCHED_H
#define DAGGER_SRC_SCHED_H

#include <stdint.h>

#include "dagger.h"

#define DAGGER__MAX_THREADS 1024

/* A set of worker threads of the local rank. */
typedef struct dagger__procset {
    uint64_t bits[DAGGER__MAX_THREADS / 64];
} dagger__procset;

static inline int dagger__procset_has(const dagger__procset *s, int t)
{
    return (s->bits[t >> 6] >> (t & 63)) & 1;
}

/* Resolve `s` for rank `rank` of a context with `nthreads` workers per rank and `nranks` ranks.
 * Returns the number of threads in `*out`; when it is 0, `why` (cap bytes) says why. */
int dagger__scope_resolve(const dagger_scope_t *s, int rank, int nranks, int nthreads,
                          dagger__procset *out, char *why, size_t cap);
/* What dagger_task_opts_init puts in opts.scope: "not set", which means any processor. */
const dagger_scope_t *dagger__scope_unset(void);
/* True when the scope allows every thread of every rank (placement may ignore it). */
int dagger__scope_is_any(const dagger_scope_t *s);

#endif /* DAGGER_SRC_SCHED_H */
