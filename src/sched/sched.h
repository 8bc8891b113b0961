/* src/sched/sched.h - scopes (where a task may run) and placement (where a ready task runs).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_SCHED_H
#define DAGGER_SRC_SCHED_H

#include <stdint.h>

#include "dagger.h"
#include "dagger/chunk.h"
#include "dagger/gpu.h"
#include "pool/pool.h"

#define DAGGER__MAX_THREADS 1024

#define DAGGER__MAX_DEVICES 64

/* A set of worker threads and devices of the local rank. */
typedef struct dagger__procset {
    uint64_t bits[DAGGER__MAX_THREADS / 64];
    uint64_t dev; /* device indices (src/gpu) */
} dagger__procset;

static inline int dagger__procset_has(const dagger__procset *s, int t)
{
    return (s->bits[t >> 6] >> (t & 63)) & 1;
}

/* The bits set in `x`, inline: without -mpopcnt __builtin_popcountll is a libgcc call of about
 * 20 instructions (17 of them were 1800 instructions per remote spawn, callgrind). */
static inline int dagger__popcount64(uint64_t x)
{
    x -= (x >> 1) & 0x5555555555555555ull;
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (int)((x * 0x0101010101010101ull) >> 56);
}

/* The threads in `s` (devices not counted). Empty words are skipped: a set holds a few threads
 * of 1024. */
static inline int dagger__procset_threads(const dagger__procset *s)
{
    int n = 0;
    for (size_t i = 0; i < sizeof s->bits / sizeof s->bits[0]; i++)
        if (s->bits[i])
            n += dagger__popcount64(s->bits[i]);
    return n;
}

/* Resolve `s` for rank `rank` of a context with `nthreads` workers per rank and `nranks` ranks.
 * Returns the number of threads and devices in `*out`; when it is 0, `why` (cap bytes) says
 * why. */
int dagger__scope_resolve(const dagger_scope_t *s, int rank, int nranks, int nthreads,
                          dagger__procset *out, char *why, size_t cap);
/* What dagger_task_opts_init puts in opts.scope: "not set", which means any processor. */
const dagger_scope_t *dagger__scope_unset(void);
/* Whether some rank of the job (`nranks`) has a processor in `s`. Returns the count over every
 * rank (threads of another rank counted as `nthreads` each); 0 with `why` filled. */
int dagger__scope_check(const dagger_scope_t *s, int nranks, int nthreads, char *why, size_t cap);
/* True when the scope allows every thread of every rank (placement may ignore it). */
int dagger__scope_is_any(const dagger_scope_t *s);

/* ---------------------------------------------------------------- placement (place.c) */

/* An executor runs placed jobs on the processors of one kind: the CPU pool, later a device's
 * streams or the MPI progress thread. An executor that finishes work asynchronously completes
 * the task through core's dagger__task_complete. */
struct dagger__place;
typedef struct dagger__executor {
    const char *name;
    void (*submit)(void *ud, struct dagger__job *j, const dagger_proc_t *p);
    void *ud;
    /* Optional: stage and submit in one step (a device admits, pins and stages its inputs
     * itself); `execs` are the context's executors. Returns 0 or an error with `why`. */
    int (*place)(void *ud, const struct dagger__place *r, struct dagger__job *j,
                 const dagger_proc_t *p, const struct dagger__executor *execs, char *why,
                 size_t cap);
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
    dagger_task_t *task;  /* the task placed (out-of-core: holds its chunks until done) */
    const struct dagger_impl *impls; /* implementations per processor kind (dagger/gpu.h) */
    uint32_t nimpls;
    int rank, nranks; /* the local rank and the job's size (0 and 1 in one process) */
    double expected;  /* dagger_task_opts.expected_time (seconds; 0 unknown) */
};

/* What the cost model expects of a task on the device placement picked. */
struct dagger__dev_estimate {
    double cost;  /* seconds until it would be done there: its moves, the tasks queued there
                     and its own run; -1 while its body's history there is not warm */
    size_t bytes; /* dagger__cost_bytes of its inputs: the history's size bucket */
};

/* ---------------------------------------------------------------- devices (registered by gpu/)
 * A device backend registers its executor and how scopes see its devices; sched and core never
 * include a backend. Without a registration there are no devices. */
struct dagger__sched_devices {
    dagger__executor exec; /* copied into every context's exec[DAGGER_PROC_DEVICE] */
    /* Set `*bits` to the devices of backend kind `gkind` (DAGGER_GPU_*) and `index` (-1: all
     * of that kind). Returns their number; 0 with the reason in `bad`. */
    int (*match)(int gkind, int index, uint64_t *bits, char *bad, size_t cap);
    /* Among `allowed`, the device that should run a task with these inputs and
     * implementations (the cost model); -1 when none of them has an implementation. Fills
     * *est for the device chosen. */
    int (*pick)(uint64_t allowed, const struct dagger__place *r, struct dagger__dev_estimate *est);
    void (*ctx_open)(void);
    void (*ctx_close)(void);
};
void dagger__sched_register_devices(const struct dagger__sched_devices *d);
const struct dagger__sched_devices *dagger__sched_devices_get(void);
/* Context open and close: fill / drop execs[DAGGER_PROC_DEVICE]. */
void dagger__sched_exec_open(dagger__executor *execs);
void dagger__sched_exec_close(dagger__executor *execs);

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
/* Independent tasks at least this long (dagger_task_opts.expected_time or the cost model's
 * history, seconds) may run on any rank of a job: shorter ones cost less here than a move. */
#define DAGGER__SPREAD_TIME 1e-3
/* Spawning in a job (several ranks): whether the task may run on any rank, decided by the cost
 * model when it is ready (and open to stealing): its scope is dagger_scope_any() (said
 * explicitly, unlike the default scope), or it is independent (`ndeps` 0), its arguments can
 * travel (numbers, strings, blobs) and it runs at least DAGGER__SPREAD_TIME (opts or history),
 * so independent long tasks spread over every rank (Dagger.jl once put them all on one worker,
 * its issue 277). Returns dagger_scope_any() (static), or NULL (the task stays local). */
dagger_scope_t *dagger__sched_spread(dagger_fn_t fn, const dagger_task_opts_t *o,
                                     const dagger_value_t *argv, size_t argc, size_t ndeps);
/* Whether a ready task may run on another rank: a job, the explicit any scope, no input
 * pinned here, every input able to travel. */
bool dagger__sched_movable(const struct dagger__place *r);
/* The CPU executor's submit: pin to the chosen thread (or none), then the pool. */
void dagger__sched_cpu_submit(void *pool, struct dagger__job *j, const dagger_proc_t *p);

#endif /* DAGGER_SRC_SCHED_H */
