/* src/sched/sched.h - scopes (where a task may run) and placement (where a ready task runs).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_SCHED_H
#define DAGGER_SRC_SCHED_H

#include <stdint.h>

#include "dagger.h"
#include "dagger/chunk.h"
#include "pool/pool.h"

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
/* Whether some rank of the job (`nranks`) has a processor in `s`. Returns the count over every
 * rank (threads of another rank counted as `nthreads` each); 0 with `why` filled. */
int dagger__scope_check(const dagger_scope_t *s, int nranks, int nthreads, char *why, size_t cap);
/* True when the scope allows every thread of every rank (placement may ignore it). */
int dagger__scope_is_any(const dagger_scope_t *s);

/* ---------------------------------------------------------------- placement (place.c) */

/* An executor runs placed jobs on the processors of one kind: the CPU pool, later a device's
 * streams or the MPI progress thread. An executor that finishes work asynchronously completes
 * the task through core's dagger__task_complete. */
typedef struct dagger__executor {
    const char *name;
    void (*submit)(void *ud, struct dagger__job *j, const dagger_proc_t *p);
    void *ud;
} dagger__executor;

/* ctx->exec[] holds one executor per processor kind, then the one that ships a task to
 * another rank (registered by a ranks backend; empty in a single process). */
#define DAGGER__EXEC_REMOTE (DAGGER_PROC_DEVICE + 1)
#define DAGGER__EXEC_COUNT (DAGGER__EXEC_REMOTE + 1)

/* What placement needs to know of a ready task. */
struct dagger__place {
    const dagger_scope_t *scope;  /* NULL: any */
    const dagger_value_t *inputs; /* the values the body will see (dependencies' results in) */
    uint32_t ninputs;
    int nthreads;
    _Atomic uint32_t *rr; /* round robin among several allowed threads */
    int rank, nranks;     /* the local rank and the job's size (0 and 1 in one process) */
};

/* Choose the processor (index -1: any worker thread). Returns 0, or DAGGER_ESCOPE with the
 * reason, naming the scopes, in `why`. */
int dagger__sched_choose(const struct dagger__place *r, dagger_proc_t *out, char *why, size_t cap);
/* Make every chunk input valid in the memory space of `p`. */
int dagger__sched_stage(const struct dagger__place *r, const dagger_proc_t *p, char *why,
                        size_t cap);
/* Choose, stage, and hand `j` to execs[kind]. Returns 0, or an error (then `j` was not
 * submitted) with the reason in `why`. */
int dagger__sched_place(const struct dagger__place *r, struct dagger__job *j,
                        const dagger__executor *execs, char *why, size_t cap);
/* Independent tasks at least this long (dagger_task_opts.expected_time, seconds) are spread over
 * the ranks of a job. */
#define DAGGER__SPREAD_TIME 1e-3
/* The scope for an independent task of a job (no dependencies) that says how long it runs:
 * round robin over the ranks when it is long enough and its arguments can travel (numbers,
 * strings, blobs), so independent long tasks spread over every rank (Dagger.jl once put them
 * all on one worker, its issue 277). Returns: +1 scope, or NULL (stay local). */
dagger_scope_t *dagger__sched_spread(const dagger_value_t *argv, size_t argc, double expected,
                                     int rank, int nranks, _Atomic uint32_t *rr);
/* The CPU executor's submit: pin to the chosen thread (or none), then the pool. */
void dagger__sched_cpu_submit(void *pool, struct dagger__job *j, const dagger_proc_t *p);

#endif /* DAGGER_SRC_SCHED_H */
