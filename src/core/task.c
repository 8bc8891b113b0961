/* src/core/task.c - tasks: spawn, dependencies, run, completion, fetch, errors, cancellation.
 *
 * Design: a task's argument that is a task becomes a dependency: the dependent puts a waiter
 * node (embedded in its own record) on the dependency's waiter list, and whoever finishes the
 * last dependency submits the dependent. Completion closes the waiter word (core_int.h) and
 * walks its list: dependents are counted down (the first one that becomes ready runs next on
 * the same worker, without a trip through the deque), suspended fetchers are resumed, and
 * threads blocked in fetch are woken. A handle released before the end marks the word; a task
 * that ends with handles held and nobody waiting closes it with one compare-and-swap and leaves
 * the runtime's reference to the handles (complete, dagger_task_release; docs/design.md). A failed
 * dependency makes the dependent fail with DAGGER_EUPSTREAM without running it; the failure's root
 * is shared by every task it reaches. Task records come from the object pools, so spawning
 * allocates nothing in the steady state, whatever the number of tasks spawned and released.
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "mem/mem.h"
#include "core/core_int.h"
#include "sched/cost.h"
#include "sched/sched.h"
#include "trace/trace.h"

/* ---------------------------------------------------------------- thread-local state */

static DAGGER_TLS dagger_task_t *tls_task;
static DAGGER_TLS struct frame *tls_frames;
static DAGGER_TLS struct {
    uint64_t gen, next, end;
} tls_ids;

/* Out of line: a task may resume on another thread, so never reuse a TLS address. */
DAGGER_NOINLINE dagger_task_t *dagger__task_current(void) { return tls_task; }
DAGGER_NOINLINE void dagger__task_set_cur(dagger_task_t *t) { tls_task = t; }

DAGGER_NOINLINE struct frame **dagger__queue_frames_slot(void)
{
    dagger_task_t *t = tls_task;
    return t ? &t->frames : &tls_frames;
}

static uint64_t next_id(dagger_ctx_t *ctx)
{
    if (DAGGER_UNLIKELY(tls_ids.gen != ctx->gen || tls_ids.next == tls_ids.end)) {
        uint64_t base = atomic_fetch_add_explicit(&ctx->next_id, 256, memory_order_relaxed);
        tls_ids.gen = ctx->gen;
        tls_ids.next = base;
        tls_ids.end = base + 256;
    }
    return tls_ids.next++;
}

/* ---------------------------------------------------------------- tiny functions */

/* A thread outside the pool (main) that runs a task for a group it ends itself, or past its
 * slot's deep mark (as dagger__task_help_group: not a task a fetch runs there, run_awaited),
 * runs that task's plain spawns of a tiny function at once, before dagger_spawn returns
 * (run_undeferred, as a spawn past the deep mark): no push to its slot, no pop and its locked
 * operation at the task's group end, where the thread would run them anyway unless a worker
 * stole them meanwhile, which tasks of a few hundred ns do not pay for (pool.c, "Holding back":
 * a task of 165 ns that a worker steals from main costs it 310; one of 290 gains). Tiny: the
 * function's runs on such a thread average under TINY_NS; they are timed where the thread runs
 * them at a group's end (dagger__task_run_outside), one spawn in DAGGER__TINY_EVERY of those it
 * would keep being queued to be timed (by task id), so that a function is learnt, and one whose
 * timed run takes TINY_LONG_NS or more stops being tiny at once: the runs a changed function
 * makes before its next timed one are what a wrong guess costs. Only a group's first
 * DAGGER__TINY_GROUP_MAX spawns (a large one keeps its course). The thread's own spawns (no task
 * runs: main's code) likewise, in a group known small: the last group opened at the same call
 * site had at most DAGGER__TINY_GROUP_MAX spawns (queue.c). Not in a group of a site of large
 * ones: where it spawns a graph that a worker runs as it is made (core.tree: 2^18 tasks, each the
 * input of two), tasks it ran at once made the later ones ready at their spawn, in its slot, and
 * the worker took them from there (21-37 % slower at t=1 and t=2). A task whose inputs are all
 * done at its spawn is ready then and goes the same way (ready_at_spawn: the seed's nested loop,
 * an outer task run at once, then its dependents). core.nested at t=1: 5.2 -> 4.15 us a run,
 * core.nested_groups 4.5 -> 3.9 (bench/RESULTS.md, 2026-12-06 09:10-09:50). Functions go by a
 * direct-mapped table shared by every context (a function is one process-wide), one word an
 * entry: the tag of the function's hash (32 bits), the timed runs (8, saturating) and their
 * moving mean in ns (24, saturating), so a racy update by two threads keeps one of them whole.
 * The scheduler's cost model (sched/cost.c) keeps a history per function too, under locks, for
 * placing tasks on ranks; a spawn reads this one without any. */
#define TINY_NS 200
#define TINY_LONG_NS 2000
#define TINY_FNS 512
#define TINY_MEAN_MAX ((1u << 24) - 1)
uint32_t dagger__tiny_ns = TINY_NS;
static _Atomic uint64_t tiny_fns[TINY_FNS];

static inline uint64_t tiny_hash(dagger_fn_t fn)
{
    return (uint64_t)(uintptr_t)fn * 0x9E3779B97F4A7C15ull;
}

static inline bool tiny_fn(dagger_fn_t fn)
{
    uint64_t h = tiny_hash(fn);
    uint64_t e = atomic_load_explicit(&tiny_fns[h >> 55], memory_order_relaxed);
    return (uint32_t)(e >> 32) == ((uint32_t)h | 1) && ((e >> 24) & 0xff) >= 2 &&
           (e & TINY_MEAN_MAX) < dagger__tiny_ns;
}

static void tiny_note(dagger_fn_t fn, uint64_t ns)
{
    uint64_t h = tiny_hash(fn);
    uint32_t tag = (uint32_t)h | 1;
    _Atomic uint64_t *slot = &tiny_fns[h >> 55];
    uint64_t e = atomic_load_explicit(slot, memory_order_relaxed);
    uint64_t n = 0, mean = 0;
    if ((uint32_t)(e >> 32) == tag) {
        n = (e >> 24) & 0xff;
        mean = e & TINY_MEAN_MAX;
    }
    if (ns >= TINY_LONG_NS && ns >= dagger__tiny_ns)
        mean = TINY_MEAN_MAX; /* long once: not tiny until short runs bring the mean down */
    else
        mean = n ? (3 * mean + ns) / 4 : ns;
    if (mean > TINY_MEAN_MAX)
        mean = TINY_MEAN_MAX;
    n += n < 0xff;
    atomic_store_explicit(slot, (uint64_t)tag << 32 | n << 24 | mean, memory_order_relaxed);
}

struct dagger__job *dagger__task_run_timed(struct dagger__job *j)
{
    const dagger_task_t *t = (const dagger_task_t *)j;
    dagger_fn_t fn = t->fn; /* t may be gone after its run */
    uint64_t t0 = dagger__now_ns();
    struct dagger__job *next = dagger__task_run(j, NULL);
    tiny_note(fn, dagger__now_ns() - t0);
    return next;
}

/* A plain ready task that a thread outside the pool spawns in a group whose tasks it may keep
 * (struct group, `keep`): true when it runs at once (run_undeferred), its function being tiny
 * (above). */
DAGGER_NOINLINE static bool keep_tiny(dagger_task_t *t)
{
    if (t->group->spawned > DAGGER__TINY_GROUP_MAX ||
        atomic_load_explicit(&t->place, memory_order_relaxed))
        return false;
    /* One in DAGGER__TINY_EVERY is queued after all, marked: the thread times it where it runs
     * it (the group's end, dagger__task_run_outside), so that the function is learnt, and one
     * whose tasks became longer stops being kept, without a test in the run of every task (the
     * record is still the spawner's here). */
    if ((t->id & (DAGGER__TINY_EVERY - 1)) == 0) {
        t->flags |= TF_TINY_TIMED;
        return false;
    }
    return tiny_fn(t->fn); /* the slot held: the group's `keep` says so (queue.c) */
}

/* ---------------------------------------------------------------- the task value kind */

static int task_own(dagger_value_t *v)
{
    dagger_task_retain(v->u.t);
    v->flags |= DAGGER_VALUE_OWNED;
    return 0;
}

static void task_drop(dagger_value_t *v) { dagger_task_release(v->u.t); }

static void task_ref(const dagger_value_t *v, uint64_t *id, uint32_t *rank)
{
    *id = v->u.t->id;
    *rank = 0;
}

__attribute__((constructor)) static void register_task_kind(void)
{
    static const struct dagger__kind_ops ops = {"task", task_own, task_drop, task_ref};
    dagger__value_register_kind(DAGGER_KIND_TASK, &ops);
}

/* ---------------------------------------------------------------- records */

/* Zero the fields of `t` from `first` to just before `end`, adjacent in the record: a wide
 * store or two where a field at a time takes one each (the atomics among them: the record is not
 * shared yet). task_alloc sets the fields that are not zero after every run is cleared. */
#define TASK_ZERO(t, first, end)                                                                   \
    do {                                                                                           \
        _Static_assert(offsetof(dagger_task_t, end) > offsetof(dagger_task_t, first) &&            \
                           offsetof(dagger_task_t, end) - offsetof(dagger_task_t, first) <= 64,    \
                       "TASK_ZERO: " #first ".." #end " is not a short run of the record");        \
        memset((void *)&(t)->first, 0,                                                             \
               offsetof(dagger_task_t, end) - offsetof(dagger_task_t, first));                     \
    } while (0)

__attribute__((always_inline)) static inline dagger_task_t *task_alloc(dagger_ctx_t *ctx)
{
    dagger_task_t *t = dagger__obj_alloc(sizeof *t);
    if (!t)
        return NULL;
    TASK_ZERO(t, state, ctx);    /* state (T_PENDING), cancel, place, rc, waiters */
    TASK_ZERO(t, group, result); /* group, err, x, argerr, flags, nargs, ndeps */
    TASK_ZERO(t, result, deps);  /* result (nil), unseen, external, help_depth */
    t->frames = NULL;
    atomic_init(&t->job.next, NULL); /* recycled records kept their last values: all set here */
    t->job.fiber = NULL;
    t->job.prio = 0;
    t->job.pin = -1;
    t->job.occupancy = 1.0f;
    t->job.seq = 0;
    atomic_init(&t->refs, 2); /* the caller's handle and the runtime's */
    atomic_init(&t->pending, 1);
    t->thread = -1;
    t->id = next_id(ctx);
    t->ctx = ctx;
    t->parent = NULL;
    t->fn = NULL;
    t->name = NULL;
    t->args = t->inl.v;
    t->deps = t->inl.d;
    return t; /* counted alive by spawn, with the task in flight (dagger__ctx_count_spawn) */
}

struct task_ext *dagger__task_ext_get(dagger_task_t *t)
{
    struct task_ext *x = dagger__task_x(t);
    if (x)
        return x;
    struct task_ext *fresh = dagger__obj_alloc(sizeof *fresh);
    if (!fresh)
        return NULL;
    memset(fresh, 0, sizeof *fresh);
    atomic_init(&fresh->guard_fn, NULL);
    atomic_init(&fresh->guard, NULL);
    atomic_init(&fresh->held_by, NULL);
    if (atomic_compare_exchange_strong_explicit(&t->x, &x, fresh, memory_order_acq_rel,
                                                memory_order_acquire))
        return fresh;
    dagger__obj_free(fresh, sizeof *fresh); /* another thread published one first */
    return x;
}

/* A hook of a feature could not be recorded: the task fails (cancelled, with its own message)
 * rather than running without it. Safe from any thread, like a cancel request. */
static void ext_lost(dagger_task_t *t)
{
    atomic_store_explicit(&t->cancel, CANCEL_NOMEM, memory_order_release);
}

/* Fail a task whose `cancel` is set; `when`: "before it ran" or "while running". */
static int fail_cancelled(dagger_task_t *t, const char *when)
{
    if (atomic_load_explicit(&t->cancel, memory_order_acquire) == CANCEL_NOMEM)
        return dagger__task_failf(t, DAGGER_ENOMEM,
                                  "out of memory recording a runtime hook of the task (its "
                                  "extension record); it failed %s",
                                  when);
    return dagger__task_failf(t, DAGGER_ECANCELED, "cancelled %s", when);
}

/* Free the argument storage of a finished (or never started) task; drops its dependencies. */
static void drop_args_slow(dagger_task_t *t, struct task_ext *x)
{
    for (uint32_t i = 0; i < t->nargs; i++)
        dagger__value_drop(&t->args[i]);
    if (!(t->flags & TF_LAZY_DEPS)) /* else no reference was taken yet */
        for (uint32_t i = 0; i < t->ndeps; i++)
            dagger_task_release(t->deps[i].task);
    if (x->capargs)
        dagger__obj_free(t->args, x->capargs * sizeof(dagger_value_t));
    if (x->capdeps)
        dagger__obj_free(t->deps, x->capdeps * sizeof(struct dep));
    x->capargs = x->capdeps = 0;
    while (x->scratch) {
        struct scratch *s = x->scratch;
        x->scratch = s->next;
        if (s->size == SCRATCH_CHUNK) { /* dagger_chunk_give: the body's reference */
            dagger_chunk_t *c;
            memcpy(&c, s->bytes, sizeof c);
            dagger_chunk_release(c);
            dagger__obj_free(s, sizeof *s + sizeof c);
            continue;
        }
        dagger__obj_free(s, sizeof *s + s->size);
    }
    t->args = t->inl.v;
    t->deps = t->inl.d;
    t->nargs = t->ndeps = 0;
}

static inline void drop_args(dagger_task_t *t)
{
    struct task_ext *x = dagger__task_x(t); /* acquire: a hook may have made it on another thread */
    if (DAGGER_LIKELY(!x)) {
        /* the common case: inline storage, no scratch copies; only owned values (when spawn
         * made any) and dependencies to drop */
        if (t->flags & TF_OWNED_ARGS)
            for (uint32_t i = 0; i < t->nargs; i++)
                if (t->args[i].flags & DAGGER_VALUE_OWNED)
                    dagger__value_drop(&t->args[i]);
        if (!(t->flags & TF_LAZY_DEPS)) /* else no reference was taken yet */
            for (uint32_t i = 0; i < t->ndeps; i++)
                dagger_task_release(t->deps[i].task);
        t->nargs = t->ndeps = 0;
        return;
    }
    drop_args_slow(t, x);
}

static DAGGER_TLS dagger_task_t *tls_free_list;
static DAGGER_TLS int tls_freeing;

#ifndef NDEBUG
/* Debug builds keep the last released task records (refs = REFS_DEAD) a while before they go
 * back to the pool, so that a release or a fetch of a handle after its last release is caught
 * with a message (DAGGER_MISUSE) instead of touching recycled memory. */
#define TASK_GRAVES 256
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static dagger_task_t *graves[TASK_GRAVES]; /* guarded by grave_lock */
static unsigned grave_next;                /* guarded by grave_lock */

static void bury(dagger_task_t *t)
{
    atomic_store_explicit(&t->refs, REFS_DEAD, memory_order_relaxed);
    pthread_mutex_lock(&grave_lock);
    dagger_task_t *old = graves[grave_next % TASK_GRAVES];
    graves[grave_next++ % TASK_GRAVES] = t;
    pthread_mutex_unlock(&grave_lock);
    if (old)
        dagger__obj_free(old, sizeof *old);
}
#endif

/* What a few records hold when they go: an owned result, an error, an extension record, an
 * owned name. */
DAGGER_NOINLINE static void task_free_parts(dagger_task_t *t)
{
    if (t->result.flags & DAGGER_VALUE_OWNED)
        dagger__value_drop(&t->result);
    if (DAGGER_UNLIKELY(t->err != NULL))
        dagger__task_err_free(t->err);
    struct task_ext *x = atomic_load_explicit(&t->x, memory_order_relaxed);
    if (DAGGER_UNLIKELY(x != NULL)) {
        if (x->scope)
            dagger_scope_release(x->scope);
        dagger_task_release(x->nested_fail); /* NULL unless a path left one (queued to free) */
        atomic_store_explicit(&t->x, NULL, memory_order_relaxed);
        dagger__obj_free(x, sizeof *x);
    }
    if (DAGGER_UNLIKELY(t->flags & TF_NAME_OWNED)) {
        dagger__obj_free((void *)t->name, strlen(t->name) + 1);
        t->name = "(released)";
        t->flags &= ~TF_NAME_OWNED;
    }
}

/* Whether the record holds parts that task_free_parts frees: only those can release other
 * records (a result or a failure that holds a task) while it goes. */
static inline bool task_has_parts(const dagger_task_t *t)
{
    return (t->result.flags & DAGGER_VALUE_OWNED) || t->err != NULL ||
           atomic_load_explicit(&t->x, memory_order_relaxed) != NULL || (t->flags & TF_NAME_OWNED);
}

/* The record's memory goes, uncounted (its parts went first, if it had any). */
__attribute__((always_inline)) static inline void task_free_mem(dagger_task_t *t)
{
    /* complete() dropped the arguments: the runtime's reference goes only at completion. */
    DAGGER_ASSERT(t->nargs == 0 && t->ndeps == 0);
#ifndef NDEBUG
    bury(t);
#else
    dagger__obj_free(t, sizeof *t);
#endif
}

/* The record itself goes (its parts went first, if it had any), counted. */
__attribute__((always_inline)) static inline void task_free_bare(dagger_task_t *t)
{
    dagger_ctx_t *ctx = t->ctx;
    task_free_mem(t);
    dagger__ctx_count_w(ctx, dagger__pool_self(ctx->pool), CNT_LIVE, -1);
}

__attribute__((always_inline)) static inline void task_free_one(dagger_task_t *t)
{
    if (DAGGER_UNLIKELY(task_has_parts(t)))
        task_free_parts(t);
    task_free_bare(t);
}

static void task_free(dagger_task_t *t);

dagger_task_t *dagger_task_retain(dagger_task_t *t)
{
    if (t) {
        TASK_MISUSE(t, "dagger_task_retain");
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    }
    return t;
}

/* A release that finds EV_MARK_MAX marks on the waiter word `h` (65535 handles released before
 * the task's completion): it folds them, with its own, into refs, and marks the word folded so
 * that the completion checks even its choice that nobody holds the task (complete). */
DAGGER_NOINLINE static void release_fold(dagger_task_t *t, struct dagger__waiter *h)
{
    for (;;) {
        if (dagger__ev_closed(h)) { /* done meanwhile: an ordinary release */
            dagger_task_release(t);
            return;
        }
        if (dagger__ev_marks(h) < EV_MARK_MAX) {
            if (atomic_compare_exchange_weak_explicit(
                    &t->waiters.head, &h, (struct dagger__waiter *)((uintptr_t)h + EV_MARK_ONE),
                    memory_order_acq_rel, memory_order_acquire))
                return;
            continue;
        }
        struct dagger__waiter *nw =
            (struct dagger__waiter *)(((uintptr_t)h & EV_LIST_MASK) | EV_FOLDED);
        if (atomic_compare_exchange_weak_explicit(&t->waiters.head, &h, nw, memory_order_acq_rel,
                                                  memory_order_acquire))
            break;
    }
    uint32_t n = atomic_fetch_sub_explicit(&t->refs, EV_MARK_MAX + 1, memory_order_acq_rel) -
                 (EV_MARK_MAX + 1);
    /* The completion may have closed the word between the fold and the subtraction: then this
     * subtraction may be the one that leaves nothing held. */
    h = atomic_load_explicit(&t->waiters.head, memory_order_acquire);
    if (dagger__ev_closed(h) &&
        ((uintptr_t)h & EV_ABANDONED ? n == dagger__ev_marks(h) + 1 : n == 0))
        task_free(t);
}

/* A release of a record whose last handle went already (debug builds; t is still readable). */
#define RELEASE_CHECK(c)                                                                           \
    DAGGER_MISUSE(c,                                                                               \
                  "dagger_task_release: task %llu '%s' was released once more than it was "        \
                  "retained (its last handle was already released)",                               \
                  (unsigned long long)t->id, dagger__task_display_name(t))

void dagger_task_release(dagger_task_t *t)
{
    if (!t)
        return;
    struct dagger__waiter *h = atomic_load_explicit(&t->waiters.head, memory_order_acquire);
    while (!dagger__ev_closed(h)) {
        /* Not done: a mark on the waiter word instead of a decrement of refs, so that the
         * completion, which reads both, sees this release in the word it closes (complete). */
        RELEASE_CHECK(atomic_load_explicit(&t->refs, memory_order_relaxed) != REFS_DEAD);
        if (DAGGER_UNLIKELY(dagger__ev_marks(h) == EV_MARK_MAX)) {
            release_fold(t, h);
            return;
        }
        if (atomic_compare_exchange_weak_explicit(
                &t->waiters.head, &h, (struct dagger__waiter *)((uintptr_t)h + EV_MARK_ONE),
                memory_order_acq_rel, memory_order_acquire))
            return;
    }
    /* Done. The only reference left is the caller's (the runtime's went at the completion):
     * nobody else can take one (a retain needs a reference), so no locked operation (the acquire
     * pairs with the others' releases). With the runtime's reference abandoned (complete), the
     * record goes when refs falls to the word's marks + 1: the same with the caller's handle the
     * only one. */
    uint32_t last = (uintptr_t)h & EV_ABANDONED ? dagger__ev_marks(h) + 2 : 1;
    uint32_t r = atomic_load_explicit(&t->refs, memory_order_acquire);
    RELEASE_CHECK(r != REFS_DEAD && r != 0);
    if (r == last) {
        atomic_store_explicit(&t->refs, 0, memory_order_relaxed);
        task_free(t);
        return;
    }
    uint32_t prev = atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel);
    RELEASE_CHECK(prev != 0 && prev != REFS_DEAD);
    if (prev == last)
        task_free(t);
}

/* The records queued by frees inside task_free_one (see task_free), out of line. */
DAGGER_NOINLINE static void task_free_queued(void)
{
    while (tls_free_list) {
        dagger_task_t *f = tls_free_list;
        tls_free_list = (dagger_task_t *)atomic_load_explicit(&f->job.next, memory_order_relaxed);
        task_free_one(f);
    }
}

/* The last reference is gone. Freeing can release other tasks (a result that is a task): free
 * iteratively so that long chains never recurse. */
static void task_free(dagger_task_t *t)
{
    /* A bare record releases nothing else: it goes at once, even inside another free (the
     * common case skips the guard's thread-local stores). */
    if (DAGGER_LIKELY(!task_has_parts(t))) {
        task_free_bare(t);
        return;
    }
    if (DAGGER_UNLIKELY(tls_freeing)) { /* inside a free up the stack: it frees this one */
        atomic_store_explicit(&t->job.next, (struct dagger__job *)tls_free_list,
                              memory_order_relaxed);
        tls_free_list = t;
        return;
    }
    tls_freeing = 1;
    task_free_parts(t); /* what they release up to here is queued, and freed below */
    task_free_bare(t);
    if (DAGGER_UNLIKELY(tls_free_list != NULL))
        task_free_queued();
    tls_freeing = 0;
}

static void place_slow(dagger_task_t *t);

/* A ready task goes to its executor: straight to the pool unless placement must decide.
 * `plain`: spawned without options, so its job has occupancy 1, no pin and no priority; then
 * true may come back when `may_keep` (a task spawns it: `me` set), the task NOT submitted, when
 * the calling thread's deque is deep (dagger__pool_submit_plain): the caller runs it or submits
 * it. */
static inline bool submit_ready_as(dagger_task_t *t, bool plain, bool may_keep)
{
    if (DAGGER_LIKELY(!atomic_load_explicit(&t->place, memory_order_relaxed))) {
        if (plain)
            return dagger__pool_submit_plain(t->ctx->pool, &t->job, may_keep);
        dagger__pool_submit(t->ctx->pool, &t->job);
    } else {
        place_slow(t);
    }
    return false;
}

static inline void submit_ready(dagger_task_t *t) { (void)submit_ready_as(t, false, false); }

/* A plain ready task `t` spawned by `me` on a worker whose deque is deep (or by a thread outside
 * the pool whose group's slot is deep, `me` NULL): it runs now on this stack, never queued
 * (docs/core.md, "Nested tasks"); past the nesting bound, or for a spawn inside ordering
 * blocks, it is queued after all. */
DAGGER_NOINLINE static void run_undeferred(dagger_task_t *me, dagger_task_t *t, bool plain,
                                           bool tracing)
{
    if (plain && !(me && me->ctx != t->ctx)) {
        /* `tracing`, off any task: the spawn read the clock, and its start comes next on this
         * thread, so that start reads none (trace.h). Inside a task the spawn leaned on an
         * older stamp: the start, nested in `me`'s run, reads the clock. */
        if (DAGGER_UNLIKELY(tracing) && !me)
            dagger__trace_follow(t->id);
        /* The spawn's handle, if any (refs 2: it and the runtime's), is the only one, and it
         * stays in this call until the run is over: nobody else can wait on the task, mark it
         * or retain it meanwhile unless its body hands out a reference of its own (refs more
         * than 2 at its end), so its completion closes the waiter word with a store (complete). */
        if (atomic_load_explicit(&t->refs, memory_order_relaxed) == 2)
            t->flags |= TF_AT_SPAWN;
        if (dagger__task_run_on_stack(me, &t->job))
            return;
        t->flags &= ~(uint32_t)TF_AT_SPAWN;
        if (DAGGER_UNLIKELY(tracing) && !me)
            dagger__trace_follow(0); /* queued: it may start after user code */
    }
    dagger__pool_submit(t->ctx->pool, &t->job);
}

static void make_ready(dagger_task_t *t)
{
    DAGGER__TRACE(dagger__trace_ready(t->id, dagger__pool_self(t->ctx->pool)));
    submit_ready(t);
}

/* A task made ready by its own spawn (its inputs done by then) inside `me`: run at once as a
 * ready spawn of a tiny function is, where its group keeps them (spawn, below), else submitted.
 * `plain`: no options nor ordering blocks. Out of line, with the test: the spawn inlined in each
 * public entry keeps its shape (core.empty's flat loop on a worker read 2-7 % slower with the
 * test inline there, where it never runs). */
DAGGER_NOINLINE static void ready_at_spawn(dagger_task_t *me, dagger_task_t *t, bool plain)
{
    struct group *g = t->group;
    if (plain && g && g->keep && keep_tiny(t)) {
        DAGGER__TRACE(dagger__trace_ready(t->id, -1));
        run_undeferred(me, t, true, atomic_load_explicit(&dagger__trace_on, memory_order_relaxed));
        return;
    }
    make_ready(t);
}

static bool plain_job(dagger_task_t *t)
{
    return t->job.pin < 0 && t->job.prio == 0 && t->job.occupancy >= 1.0f &&
           !atomic_load_explicit(&t->place, memory_order_relaxed);
}

/* Placement of a task with a scope or data inputs: the values its body will see (its
 * dependencies' results substituted) decide with its scope where it runs (src/sched/place.c).
 * A failure is recorded on the task, which then fails at its start without running. */
DAGGER_NOINLINE static void place_slow(dagger_task_t *t)
{
    dagger_ctx_t *ctx = t->ctx;
    if (DAGGER_UNLIKELY(t->flags & TF_EARLY)) { /* sent already: its rank completes it */
        bool failed = false;
        for (uint32_t i = 0; i < t->ndeps; i++) /* task NULL: taken by value, it succeeded */
            failed |= t->deps[i].task && t->deps[i].task->rc != 0;
        /* With `failed`, the backend hands it back (dagger__task_early_failed) once its thread
         * no longer reads the task's arguments: then it fails upstream at its start. */
        ctx->early_ready(ctx->ranks, t, dagger__task_x(t)->early_rec, failed);
        return;
    }
    for (uint32_t i = 0; i < t->ndeps; i++) {
        if (t->deps[i].task && t->deps[i].task->rc) { /* it fails upstream at its start */
            dagger__pool_submit(ctx->pool, &t->job);
            return;
        }
    }
    dagger_value_t small[8];
    dagger_value_t *in = t->nargs <= 8 ? small : dagger__malloc(t->nargs * sizeof *in);
    char why[640];
    int rc;
    if (!in) {
        rc = DAGGER_ENOMEM;
        snprintf(why, sizeof why, "out of memory placing a task of %u arguments", t->nargs);
    } else {
        memcpy(in, t->args, t->nargs * sizeof *in);
        for (uint32_t i = 0; i < t->ndeps; i++)
            if (t->deps[i].node.argi >= 0 && t->deps[i].task) /* else in args already */
                in[t->deps[i].node.argi] = t->deps[i].task->result;
        const struct task_ext *x = dagger__task_x(t);
        struct dagger__place r = {.scope = x ? x->scope : NULL,
                                  .inputs = in,
                                  .ninputs = t->nargs,
                                  .nthreads = ctx->nthreads,
                                  .rr = &ctx->rr,
                                  .task = t,
                                  .impls = x ? x->impls : NULL,
                                  .nimpls = x ? x->nimpls : 0,
                                  .rank = ctx->rank,
                                  .nranks = ctx->nranks,
                                  .expected = x ? x->expected : 0.0f};
        rc = dagger__sched_place(&r, &t->job, ctx->exec, why, sizeof why);
        if (in != small)
            dagger__free(in);
    }
    if (rc) {
        dagger__task_fail(t, rc, why);
        t->job.pin = -1;
        dagger__pool_submit(ctx->pool, &t->job);
    }
}

/* Whether a dependent spawned without a reference on `src` (W_DEP_LAZY) takes its result by
 * value, now, instead of a reference kept until it completes: a successful result of a plain
 * kind, in a single process (the ranks backend reads a task's dependencies as tasks). Then its
 * struct dep has task NULL and its argument holds the value: no locked addition when `src` serves
 * it and none at its own completion (core.nested: 120 of a run's 660 locked operations). */
static inline bool result_by_value(const dagger_ctx_t *ctx, const dagger_task_t *src)
{
    uint8_t k = src->result.kind;
    return src->rc == 0 && src->err == NULL && (k <= DAGGER_KIND_F64 || k == DAGGER_KIND_PTR) &&
           ctx->nranks <= 1 && ctx->early == NULL;
}

/* The input of dep `d` of `t` is done with a result result_by_value takes. */
static inline void take_by_value(dagger_task_t *t, struct dep *d, const dagger_task_t *src)
{
    if (d->node.argi >= 0) {
        dagger_value_t v = src->result;
        v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
        t->args[d->node.argi] = v;
    }
    d->task = NULL;
}

/* Serve the waiters `w` of a closed event (the list its close took). With `cont`, the first
 * plain dependent that becomes ready is returned instead of submitted. Nodes are read before
 * they are signalled: a signalled waiter may return and free its node at once. For a task's
 * event, `src` is the task, `marks` the marks its close took and `alone` says that no handle
 * holds it (complete). */
DAGGER_NOINLINE static dagger_task_t *serve(struct dagger__waiter *w, dagger_ctx_t *ctx,
                                            bool want_cont, bool data_result, dagger_task_t *src,
                                            bool *gave_ref, uint32_t marks, bool alone)
{
    dagger_task_t *cont = NULL;
    bool by_value = src && !data_result && result_by_value(ctx, src);
    if (src && !by_value) {
        /* The references of the dependents that hold none yet, in one addition, which also
         * hands over the runtime's reference (*gave_ref: the caller no longer holds it nor
         * reads src): before any dependent is ready, so none can drop the last one while this
         * runs. One dependent: no locked operation at all, where an addition and the release
         * were two (core.chain, a task's input and its one dependent). The same addition takes
         * the close's `marks` (handles released before it) from refs: what stays is the handles
         * still held and the dependents' references, at least one. */
        uint32_t lazy = 0;
        for (struct dagger__waiter *x = w; x; x = x->next)
            lazy += x->kind == W_DEP_LAZY;
        if (lazy) {
            uint32_t add = lazy - 1 - marks; /* modulo 2^32: a subtraction where marks >= lazy */
            if (alone) /* nobody else holds src: a store (chain's tasks, released before the end) */
                atomic_store_explicit(&src->refs, lazy, memory_order_release);
            else if (add) /* release: the last one's holder frees what the caller wrote */
                atomic_fetch_add_explicit(&src->refs, add, memory_order_release);
            *gave_ref = true;
        }
    }
    while (w) {
        struct dagger__waiter *next = w->next;
        switch (w->kind) {
        case W_DEP:
        case W_DEP_LAZY: {
            dagger_task_t *d = w->target;
            /* Written before the decrement below publishes it to whoever runs d. */
            if (by_value && w->kind == W_DEP_LAZY)
                take_by_value(d, DAGGER_CONTAINER_OF(w, struct dep, node), src);
            if (DAGGER_UNLIKELY(data_result)) /* its input is data: placement decides */
                atomic_fetch_or_explicit(&d->place, 1, memory_order_relaxed);
            /* pending counts the decrements still to come, each party's once: reading 1 before
             * its own, this input is the last (a stale read is higher and takes the RMW) */
            if (atomic_load_explicit(&d->pending, memory_order_acquire) == 1
                    ? (atomic_store_explicit(&d->pending, 0, memory_order_relaxed), true)
                    : atomic_fetch_sub_explicit(&d->pending, 1, memory_order_acq_rel) == 1) {
                if (want_cont && !cont && plain_job(d)) {
                    DAGGER__TRACE(dagger__trace_ready(d->id, dagger__pool_self(ctx->pool)));
                    cont = d;
                } else {
                    make_ready(d);
                }
            }
            break;
        }
        case W_FIBER: {
            dagger_task_t *s = w->target;
            dagger__pool_submit(s->ctx->pool, &s->job);
            break;
        }
        case W_THREAD: {
            _Atomic uint32_t *flag = w->target;
            atomic_store_explicit(flag, 1, memory_order_release);
            dagger__futex_wake(flag, 1);
            break;
        }
        case W_CALL: {
            struct dagger__call_waiter *c = (struct dagger__call_waiter *)w;
            c->fn(c, ctx);
            break;
        }
        default:
            dagger__panic("corrupt waiter kind %u", w->kind);
        }
        w = next;
    }
    return cont;
}

/* Close `ev`, an event other than a task's (one exchange), and serve its waiters, if any. */
void dagger__event_fire(struct dagger__event *ev, dagger_ctx_t *ctx)
{
    struct dagger__waiter *w =
        dagger__ev_list(atomic_exchange_explicit(&ev->head, EV_CLOSED, memory_order_acq_rel));
    if (w)
        (void)serve(w, ctx, false, false, NULL, NULL, 0, false); /* no W_DEP_LAZY */
}

/* ---------------------------------------------------------------- completion */

static int settle_slow(dagger_task_t *t, int r, dagger_value_t *out);

/* The common outcome inline: success, a scalar result, nothing recorded, no options. */
static inline int settle(dagger_task_t *t, int r, dagger_value_t *out)
{
    if (DAGGER_LIKELY(r == 0 && !t->argerr && !t->err && out->kind < DAGGER_KIND_STR &&
                      !(t->flags & (TF_CHUNK_RESULT | TF_MUTABLE_RESULT)) &&
                      !atomic_load_explicit(&t->cancel, memory_order_acquire))) {
        dagger__value_copy_fresh(&t->result, out);
        return 0;
    }
    return settle_slow(t, r, out);
}

/* The failure of a completing task: its group (which reports its first error) or the count of
 * errors nobody read, and the trace. After its arguments were dropped. */
DAGGER_NOINLINE static void complete_failed(dagger_task_t *t, int rc)
{
    struct group *g = t->group;
    if (g) {
        dagger_task_t *expect = NULL;
        dagger_task_retain(t);
        if (!atomic_compare_exchange_strong(&g->first_err, &expect, t))
            dagger_task_release(t);
    } else { /* a group's end reports its failures; others wait for a fetch */
        atomic_store_explicit(&t->unseen, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->ctx->unfetched, 1, memory_order_relaxed);
    }
    DAGGER__TRACE(
        dagger__trace_error(t->id, t->err && t->err->msg ? t->err->msg : dagger_strerror(rc)));
}

/* A finished task of group g, on worker w (-1: another thread): the thread ending g while it
 * runs g's tasks counts it for itself (dagger__helping_tls), and so does g's home thread (a
 * thread outside every pool that opened it) with a plain add: until it ends the group (the end
 * takes home_done, after it set the target), and while it runs g's tasks at the end (a task main
 * runs waits for a group of its own: core.nested_groups; fetch.c adds home_done to the drained
 * count when it stops). Other finishes of the home thread after the target take one addition to
 * the drained count. The shared slot's way takes three locked operations (main running a flat
 * loop's spawns past the deep mark: core.empty_ext); its `active` count keeps the end from
 * freeing the group under a finisher, and the home is the thread that ends it. Inlined in every
 * build: link-time optimisation (src/CMakeLists.txt, DAGGER_LTO) put it, and register_inputs
 * below, out of line, at 3-4 % of core.nested. */
__attribute__((always_inline)) static inline void group_done(struct group *g, dagger_ctx_t *ctx,
                                                             int w)
{
    if (DAGGER_UNLIKELY(w < 0)) {
        if (dagger__helping_tls.g == g) {
            dagger__helping_tls.done++;
            return;
        }
        if (g->home == &dagger__helping_tls) {
            /* target: this thread's own store */
            if (g->home_ending || atomic_load_explicit(&g->target, memory_order_relaxed) < 0)
                g->home_done++;
            else
                dagger__queue_group_drain(g, ctx, 1);
            return;
        }
        dagger__queue_group_done(g, ctx, w, 1);
        return;
    }
    struct dagger__gcount *c = &dagger__gcount_tls;
    if (DAGGER_UNLIKELY(c->g != g)) {
        dagger__group_flush();
        c->g = g;
        c->ctx = ctx;
        c->w = w;
    }
    c->n++;
}

DAGGER_TLS struct dagger__gcount dagger__gcount_tls;

void dagger__group_flush_dry(void)
{
    dagger__task_bundle_flush(); /* nobody on this thread appends to it any more */
    dagger__group_flush();
}

DAGGER_NOINLINE void dagger__group_flush_slow(void)
{
    struct dagger__gcount *c = &dagger__gcount_tls;
    struct group *g = c->g;
    int64_t n = c->n;
    c->g = NULL;
    c->n = 0;
    dagger__queue_group_done(g, c->ctx, c->w, n);
}

/* The end of a task that nobody holds nor waits for, in group g, on worker w (-1: another
 * thread): the record goes without a locked operation. */
__attribute__((always_inline)) static inline void end_alone(dagger_task_t *t, dagger_ctx_t *ctx,
                                                            struct group *g, int w)
{
    if (g)
        group_done(g, ctx, w);
    atomic_store_explicit(&t->refs, 0, memory_order_relaxed);
    /* A bare record on a worker or on a thread that holds a slot (credits of its own): both
     * counts in one look at the credit line. */
    int cw = DAGGER_LIKELY(w >= 0) ? w : dagger__pool_ext_counter(ctx->pool);
    if (DAGGER_LIKELY(cw >= 0 && !task_has_parts(t))) {
        task_free_mem(t);
        dagger__ctx_count_both_w(ctx, cw, -1);
        return;
    }
    task_free(t);
    dagger__ctx_count_w(ctx, w, CNT_INFLIGHT, -1);
}

/* The waiter word of a task done while handles hold it and nobody waits (complete, and the in-line
 * end of dagger__task_run): closed, with the runtime's reference left to the handles (abandoned:
 * the last one drops it), the marks of `h` kept. */
static inline struct dagger__waiter *abandoned_word(const struct dagger__waiter *h)
{
    return (struct dagger__waiter *)(((uintptr_t)h & ~EV_LIST_MASK) | 1 | EV_ABANDONED);
}

/* A finished task's counts, on worker w (-1: another thread), where its record is not freed with
 * them (end_alone does both): its group's, and the in-flight count. */
__attribute__((always_inline)) static inline void count_finished(struct group *g, dagger_ctx_t *ctx,
                                                                 int w)
{
    if (g)
        group_done(g, ctx, w);
    dagger__ctx_count_w(ctx, w, CNT_INFLIGHT, -1);
}

/* Out of line: it runs after the task body, which may have moved the task to another worker, and
 * it reads the worker's thread-locals. */
DAGGER_NOINLINE static dagger_task_t *complete(dagger_task_t *t, int rc, bool want_cont)
{
    dagger_ctx_t *ctx = t->ctx;
    if (DAGGER_UNLIKELY(rc)) { /* t->rc is 0 from task_alloc otherwise */
        if (!t->err)
            dagger__task_fail(t, rc, dagger_strerror(rc));
        t->rc = rc;
    }
    drop_args(t);
    if (DAGGER_UNLIKELY(rc))
        complete_failed(t, rc);
    struct group *g = t->group;
    /* Logged before the task is seen done, so a trace stopped right after a fetch has it. */
    DAGGER__TRACE(dagger__trace_finish(t->id, t->thread, rc));
    int w = want_cont ? dagger__pool_self(ctx->pool) : -1;
    /* What the handles hold: refs less the marks of the waiter word (handles released before
     * this close). The word is read first: a mark that comes after it makes refs - m look larger,
     * never smaller (a release marks after any retain it made), and the choice below is then
     * checked by the compare-and-swap that closes the word. */
    struct dagger__waiter *h = atomic_load_explicit(&t->waiters.head, memory_order_acquire);
    uint32_t held = atomic_load_explicit(&t->refs, memory_order_acquire);
    /* The common flat case first: no handle, no waiter, no mark (a detached spawn). */
    if (DAGGER_LIKELY(held == 1 && h == NULL))
        goto free_alone;
    uint32_t m = dagger__ev_marks(h);
    held -= m;
    dagger_task_t *cont = NULL;
    for (;;) {
        DAGGER_MISUSE((int32_t)held > 0,
                      "task %llu '%s' was released once more than it was retained (its last "
                      "handle was released before it finished)",
                      (unsigned long long)t->id, dagger__task_display_name(t));
        if (held == 1) {
            /* Only the runtime's reference is left: no handle remains through which a waiter or
             * a mark could come (a folded word is closed by a compare-and-swap all the same). */
            if (DAGGER_LIKELY(!((uintptr_t)h & EV_FOLDED)) ||
                atomic_compare_exchange_weak_explicit(&t->waiters.head, &h, EV_CLOSED,
                                                      memory_order_acq_rel, memory_order_acquire))
                break;
        } else if (!dagger__ev_list(h)) {
            /* Handles remain and nobody waits: one compare-and-swap closes the word and leaves the
             * runtime's reference to the handles (abandoned: the last one drops it), where an
             * exchange and a decrement of refs were two locked operations (core.fib, core.nested's
             * inner tasks). t is not read after it: a handle may free it at once. */
            atomic_store_explicit(&t->state, T_DONE, memory_order_release);
            struct dagger__waiter *done = abandoned_word(h);
            if ((t->flags & TF_AT_SPAWN) && held == 2) {
                /* Run by its spawn, whose handle is the only one (run_undeferred): no other
                 * thread can reach the word, a store closes it (the CAS drained a store buffer
                 * full of the task's writes: 60 % of complete's samples in core.nested). */
                atomic_store_explicit(&t->waiters.head, done, memory_order_release);
                goto finished;
            }
            if (atomic_compare_exchange_weak_explicit(&t->waiters.head, &h, done,
                                                      memory_order_acq_rel, memory_order_acquire))
                goto finished;
        } else {
            /* Waiters and handles: an exchange takes the list and the marks as they are by then
             * (never retried, where a compare-and-swap lost to the spawner's registrations and
             * releases on a busy input: core.tree), and the marks go with the reference below. */
            atomic_store_explicit(&t->state, T_DONE, memory_order_release);
            h = atomic_exchange_explicit(&t->waiters.head, EV_CLOSED, memory_order_acq_rel);
            m = dagger__ev_marks(h);
            break;
        }
        /* a waiter or a mark came in, or a spurious failure: h is the word now */
        m = dagger__ev_marks(h);
        held = atomic_load_explicit(&t->refs, memory_order_acquire) - m;
    }
    bool alone = held == 1;
    if (alone && !dagger__ev_list(h)) {
    free_alone:
        /* Nobody waits either: the record goes without a locked operation (a task spawned and
         * released at once, the common flat case). */
        end_alone(t, ctx, g, w);
        return NULL;
    }
    if (alone) {
        /* Dependents registered before the last handle went (core.nested's outer tasks): the
         * word closes with a store. */
        atomic_store_explicit(&t->state, T_DONE, memory_order_release);
        atomic_store_explicit(&t->waiters.head, EV_CLOSED, memory_order_release);
    }
    bool data = t->result.kind == DAGGER_KIND_CHUNK || t->result.kind == DAGGER_KIND_SHARD;
    bool gave_ref = false; /* t is not read after serve once its reference went to dependents */
    cont = serve(dagger__ev_list(h), ctx, want_cont, data, t, &gave_ref, m, alone);
    /* The runtime's reference and the marks, in one subtraction; alone, nobody else holds one. */
    if (!gave_ref &&
        (alone || atomic_fetch_sub_explicit(&t->refs, m + 1, memory_order_acq_rel) == m + 1)) {
        atomic_store_explicit(&t->refs, 0, memory_order_relaxed);
        task_free(t);
    }
finished:
    count_finished(g, ctx, w);
    return cont;
}

/* DAGGER_TASK_CHUNK_RESULT / _MUTABLE_RESULT: the result becomes a chunk made where the task
 * ran (mutable data of that thread for the latter). */
static int keep_as_chunk(dagger_task_t *t)
{
    int th = dagger__pool_self_fresh(t->ctx->pool);
    dagger_proc_t p = {0, th >= 0 ? DAGGER_PROC_CPU : DAGGER_PROC_AUX, (int16_t)th};
    char why[256];
    int rc = dagger__mem_result_chunk(t->ctx, &t->result, &p, (t->flags & TF_MUTABLE_RESULT) != 0,
                                      why, sizeof why);
    if (rc) {
        dagger__value_drop(&t->result);
        return dagger__task_fail(t, rc, why);
    }
    return 0;
}

/* Turn the body's outcome into the task's code; keeps the result owned by the task. */
DAGGER_NOINLINE static int settle_slow(dagger_task_t *t, int r, dagger_value_t *out)
{
    if (t->argerr)
        return t->argerr;
    if (t->err)
        return t->err->code;
    if (r != 0) {
        int code = r;
        if (r > 0 || strcmp(dagger_err_name(r), "DAGGER_E?") == 0)
            code = DAGGER_ETASK;
        const struct task_ext *x = dagger__task_x(t);
        if (x && x->nested_fail) /* most likely the code of that fetch: keep the child's root */
            return dagger__task_fail_chain(t, x->nested_fail, "nested fetch", code);
        if (code == r)
            return dagger__task_failf(t, code, "the task body returned %s (%s)", dagger_err_name(r),
                                      dagger_strerror(r));
        return dagger__task_failf(t, code, "the task body returned %d", r);
    }
    if (atomic_load_explicit(&t->cancel, memory_order_acquire))
        return fail_cancelled(t, "while running");
    if (DAGGER_UNLIKELY(out->flags & DAGGER_VALUE_TOOBIG)) {
        *out = dagger_nil();
        return dagger__task_failf(t, DAGGER_E2BIG,
                                  "the result is a str/blob of 4 GiB or more (values hold at most "
                                  "4 GiB - 1 bytes)");
    }
    t->result = *out;
    if (out->kind >= DAGGER_KIND_COUNT_) {
        t->result = dagger_nil();
        return dagger__task_failf(t, DAGGER_EINVAL,
                                  "the task body returned a value of unknown kind %u", out->kind);
    }
    if (dagger__value_holds(out->kind) && dagger__value_own(&t->result) != 0) {
        t->result = dagger_nil();
        return dagger__task_failf(t, DAGGER_ENOMEM, "out of memory copying the %u-byte result",
                                  out->len);
    }
    if (DAGGER_UNLIKELY(t->flags & (TF_CHUNK_RESULT | TF_MUTABLE_RESULT)))
        return keep_as_chunk(t);
    return 0;
}

struct dagger__job *dagger__task_run(struct dagger__job *j, void *ud)
{
    (void)ud;
    dagger_task_t *t = (dagger_task_t *)j;
    int rc = 0;
    if (DAGGER_UNLIKELY(dagger__gcount_tls.g != t->group))
        dagger__group_flush(); /* its body may wait for the end of the group counted so far */
    t->thread = dagger__pool_self(t->ctx->pool);
    dagger__self_tls.runs++;               /* the pool's hold-back judges its steals by it */
    if (DAGGER_UNLIKELY(t->err != NULL)) { /* placement failed */
        rc = t->err->code;
    } else if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
        rc = fail_cancelled(t, "before it ran");
    } else {
        /* One pass: a failed input fails the task; otherwise its result becomes the argument
         * (borrowed from the dependency, which the task holds until it completes). */
        for (uint32_t i = 0; i < t->ndeps; i++) {
            const struct dep *d = &t->deps[i];
            if (!d->task) /* taken by value: in its argument already */
                continue;
            if (d->task->rc) {
                rc = dagger__task_fail_upstream(t, d);
                break;
            }
            if (d->node.argi >= 0) {
                dagger_value_t v = d->task->result;
                v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
                t->args[d->node.argi] = v;
            }
        }
    }
    if (!rc) {
        atomic_store_explicit(&t->state, T_RUNNING, memory_order_relaxed);
        /* tls_task: the task whose run encloses this one (a fetch, a wait or a group's end in
         * its body ran this task at once), else NULL. */
        DAGGER__TRACE(dagger__trace_start(t->id, t->thread, tls_task != NULL));
        tls_task = t; /* a direct store: nothing since this job started can have suspended */
        dagger_value_t out = dagger_nil();
        int r = 0;
        /* Run times feed the cost model's history in a job, and for a body that placement
         * weighs against device bodies (opts.impls); else no clock is read. A device body that
         * runs here (exec_ud) is timed by its executor, from launch to the device's end. */
        struct task_ext *x = dagger__task_x(t);
        uint64_t t0 = 0;
        if (DAGGER_UNLIKELY(t->flags & TF_TIMED) && !(x && x->exec_ud))
            t0 = dagger__now_ns();
        if (DAGGER_LIKELY(!x || !x->restore) || !dagger__task_restore(t, &out))
            r = t->fn((dagger_tc_t *)t, (const dagger_args_t *)t, &out);
        if (DAGGER_UNLIKELY(t0 != 0) && r == 0) {
            float ran = (float)((double)(dagger__now_ns() - t0) * 1e-9);
            struct task_ext *rx = dagger__task_ext_get(t); /* NULL: out of memory, not kept */
            if (rx)
                rx->ran = ran;
            dagger__cost_record((const void *)(uintptr_t)t->fn, DAGGER_PROC_CPU,
                                dagger__cost_bytes(t->args, t->nargs), (double)ran);
        }
        dagger__task_set_cur(NULL);
        x = dagger__task_x(t); /* the body may have made it (defer, scratch, nested_fail) */
        if (DAGGER_UNLIKELY(t->flags & TF_DEFERRED) && r == 0 && !dagger__task_failed(t)) {
            dagger_task_release(x->nested_fail); /* the body handled it */
            x->nested_fail = NULL;
            x->launch(t, x->launch_ud); /* an executor completes it; t is theirs now */
            return NULL;
        }
        rc = settle(t, r, &out);
        if (DAGGER_UNLIKELY(x != NULL) && x->nested_fail) {
            dagger_task_release(x->nested_fail);
            x->nested_fail = NULL;
        }
        if (DAGGER_UNLIKELY(x != NULL) && x->checkpoint && !rc)
            dagger__task_checkpoint(t);
        /* The common flat case ends here, without the call: a task that succeeded with nothing to
         * drop (no extension record, no owned argument, no input), untraced, that nobody holds
         * nor waits for (complete's first case). The body may have moved the task to another
         * worker: the pool is asked again. */
        uint32_t refs = atomic_load_explicit(&t->refs, memory_order_acquire);
        if ((refs == 1 || (refs == 2 && (t->flags & TF_AT_SPAWN))) &&
            atomic_load_explicit(&t->waiters.head, memory_order_acquire) == NULL && rc == 0 &&
            x == NULL && t->ndeps == 0 && !(t->flags & TF_OWNED_ARGS) &&
            !atomic_load_explicit(&dagger__trace_on, memory_order_relaxed)) {
            dagger_ctx_t *ctx = t->ctx;
            struct group *g = t->group;
            int w = dagger__pool_self(ctx->pool);
            t->nargs = 0;
            if (refs == 1) {
                end_alone(t, ctx, g, w);
                return NULL;
            }
            /* Run by its spawn, whose handle is the only one (run_undeferred, TF_AT_SPAWN):
             * complete's case of handles held and nobody waiting, in line (core.nested: all its
             * tasks). The word closes with a store, the runtime's reference left to the handle. */
            atomic_store_explicit(&t->state, T_DONE, memory_order_release);
            atomic_store_explicit(&t->waiters.head, abandoned_word(NULL), memory_order_release);
            count_finished(g, ctx, w);
            return NULL;
        }
    }
    dagger_task_t *cont = complete(t, rc, true);
    return cont ? &cont->job : NULL;
}

void dagger__task_defer(dagger_tc_t *tc, void (*launch)(dagger_task_t *t, void *ud), void *ud)
{
    dagger_task_t *t = (dagger_task_t *)tc;
    struct task_ext *x = dagger__task_ext_get(t);
    if (!x) { /* not deferred: the task fails when its body returns (fail_cancelled) */
        ext_lost(t);
        return;
    }
    __atomic_fetch_or(&t->flags, TF_DEFERRED, __ATOMIC_RELAXED); /* waiters read the word */
    x->launch = launch;
    x->launch_ud = ud;
}

void dagger__task_set_body(dagger_task_t *t, dagger_fn_t fn, void *ud)
{
    struct task_ext *x = ud ? dagger__task_ext_get(t) : dagger__task_x(t);
    if (ud && !x) { /* the task fails at its start (fail_cancelled) without running either body */
        ext_lost(t);
        return;
    }
    t->fn = fn;
    if (x)
        x->exec_ud = ud;
}

void *dagger__task_exec_ud(const dagger_tc_t *tc)
{
    const struct task_ext *x = dagger__task_x((const dagger_task_t *)tc);
    return x ? x->exec_ud : NULL;
}

void dagger__task_run_here(dagger_task_t *t)
{
    dagger_task_t *me = dagger__task_current();
    struct dagger__job *next = dagger__task_run(&t->job, NULL);
    dagger__task_set_cur(me);
    if (next)
        dagger__pool_submit(t->ctx->pool, next);
}

void dagger__task_set_external(dagger_task_t *t)
{
    atomic_store_explicit(&t->external, 1, memory_order_relaxed);
}

void dagger__task_complete(dagger_task_t *t, int rc, const dagger_value_t *result, const char *msg)
{
    dagger_value_t out = result ? *result : dagger_nil();
    if (rc) {
        if (rc > 0)
            rc = DAGGER_ETASK;
        dagger__task_fail(t, rc, msg ? msg : dagger_strerror(rc));
    } else {
        rc = settle(t, 0, &out);
    }
    complete(t, rc, false);
}

void dagger__task_complete_owned(dagger_task_t *t, const dagger_value_t *result)
{
    dagger_value_t out = *result;
    out.flags &= (uint8_t) ~(DAGGER_VALUE_BORROW | DAGGER_VALUE_OWNED);
    if (out.kind != DAGGER_KIND_STR && out.kind != DAGGER_KIND_BLOB) {
        dagger__task_complete(t, 0, &out, NULL);
        return;
    }
    int rc = 0;
    if (!t->err && !t->argerr && !(out.flags & DAGGER_VALUE_TOOBIG) &&
        !(t->flags & (TF_CHUNK_RESULT | TF_MUTABLE_RESULT)) &&
        !atomic_load_explicit(&t->cancel, memory_order_acquire)) {
        out.flags |= DAGGER_VALUE_OWNED; /* adopted: no copy */
        t->result = out;
    } else {
        dagger_value_t held = out;
        held.flags |= DAGGER_VALUE_OWNED;
        rc = settle(t, 0, &out); /* copies (or fails); the bytes handed over are freed */
        dagger__value_drop(&held);
    }
    complete(t, rc, false);
}

static void call_task_callback(struct dagger__call_waiter *w, dagger_ctx_t *ctx)
{
    (void)ctx;
    struct dagger__task_callback *cb = (struct dagger__task_callback *)w;
    cb->fn(cb->task, cb->ud);
}

dagger_fn_t dagger__task_fn(const dagger_task_t *t) { return t->fn; }
const char *dagger__task_name_given(const dagger_task_t *t) { return t->name; }
double dagger__task_ran(const dagger_task_t *t)
{
    const struct task_ext *x = dagger__task_x(t);
    return x ? x->ran : 0.0;
}
void dagger__task_drop_result(dagger_task_t *t)
{
    DAGGER_ASSERT(atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE);
    dagger__value_drop(&t->result); /* nil after: the record's free finds nothing owned */
}

double dagger__task_expected(const dagger_task_t *t)
{
    const struct task_ext *x = dagger__task_x(t);
    return x ? x->expected : 0.0;
}
/* Bits set at spawn, read with an atomic load: the task may be another rank's proxy whose
 * progress thread sets TF_DEFERRED in the same word meanwhile (dagger__task_begin_elsewhere). */
static inline uint32_t spawn_flags(const dagger_task_t *t)
{
    return __atomic_load_n(&t->flags, __ATOMIC_RELAXED);
}
bool dagger__task_mutable_result(const dagger_task_t *t)
{
    return (spawn_flags(t) & TF_MUTABLE_RESULT) != 0;
}
bool dagger__task_result_home(const dagger_task_t *t)
{
    return (spawn_flags(t) & TF_RESULT_HOME) != 0;
}
bool dagger__task_result_there(const dagger_task_t *t)
{
    return (spawn_flags(t) & TF_RESULT_THERE) != 0;
}

void dagger__task_begin_elsewhere(dagger_task_t *t)
{
    for (uint32_t i = 0; i < t->ndeps; i++) {
        const struct dep *d = &t->deps[i];
        if (d->node.argi >= 0 && d->task) {
            dagger_value_t v = d->task->result;
            v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
            t->args[d->node.argi] = v;
        }
    }
    /* atomic: a thread waiting on the task reads TF_HAS_DEPS of the same word meanwhile */
    __atomic_fetch_or(&t->flags, TF_DEFERRED, __ATOMIC_RELAXED);
    atomic_store_explicit(&t->state, T_RUNNING, memory_order_relaxed);
}

void dagger__task_early_failed(dagger_task_t *t) { dagger__pool_submit(t->ctx->pool, &t->job); }

void dagger__task_set_elsewhere(dagger_task_t *t, int rank)
{
    struct task_ext *x = dagger__task_ext_get(t);
    if (x) /* out of memory: unknown, so no dependent is sent early */
        atomic_store_explicit(&x->elsewhere, rank + 1, memory_order_release);
}

int dagger__task_elsewhere(const dagger_task_t *t)
{
    const struct task_ext *x = dagger__task_x(t);
    return x ? atomic_load_explicit(&((struct task_ext *)x)->elsewhere, memory_order_acquire) - 1
             : -1;
}

uint32_t dagger__task_ndeps(const dagger_task_t *t) { return t->ndeps; }

dagger_task_t *dagger__task_dep(const dagger_task_t *t, uint32_t i, int *argi)
{
    *argi = t->deps[i].node.argi;
    return t->deps[i].task;
}

const dagger_scope_t *dagger__task_scope(const dagger_task_t *t)
{
    const struct task_ext *x = dagger__task_x(t);
    return x ? x->scope : NULL;
}

void dagger__task_on_done(dagger_task_t *t, struct dagger__task_callback *cb,
                          void (*fn)(dagger_task_t *t, void *ud), void *ud)
{
    cb->w.node.kind = W_CALL;
    cb->w.node.target = NULL;
    cb->w.fn = call_task_callback;
    cb->task = t;
    cb->fn = fn;
    cb->ud = ud;
    if (!dagger__event_push(&t->waiters, &cb->w.node))
        fn(t, ud);
}

/* ---------------------------------------------------------------- spawn */

#define MAX_SEQ 8
#define TASK_FLAGS                                                                                 \
    (DAGGER_TASK_CHUNK_RESULT | DAGGER_TASK_MUTABLE_RESULT | DAGGER__TASK_RESULT_HOME |            \
     DAGGER__TASK_RESULT_THERE)

/* A chunk or shard argument: a live handle of this context; placement decides where it runs. */
static int check_data_arg(dagger_task_t *t, const dagger_task_opts_t *o, const dagger_value_t *v,
                          size_t i)
{
    const char *what = dagger_kind_name(v->kind);
    DAGGER_CHECK(!(v->flags & DAGGER_VALUE_REMOTE), DAGGER_EINVAL,
                 "argument %zu is a remote %s reference, which has no local handle", i, what);
    DAGGER_CHECK(v->u.p, DAGGER_EINVAL, "argument %zu is a NULL %s handle", i, what);
    const dagger_ctx_t *owner = v->kind == DAGGER_KIND_CHUNK ? dagger__mem_chunk_ctx(v->u.c)
                                                             : dagger__mem_shard_ctx(v->u.sh);
    DAGGER_CHECK(owner == t->ctx, DAGGER_EINVAL, "argument %zu is a %s of another context", i,
                 what);
    if (v->kind == DAGGER_KIND_SHARD && dagger__mem_shard_per_thread(v->u.sh))
        DAGGER_CHECK(!o || o->occupancy >= 1.0, DAGGER_EINVAL,
                     "argument %zu is a per-thread shard, but occupancy %g runs the task beside "
                     "the worker threads, where no piece exists",
                     i, o ? o->occupancy : 1.0);
    atomic_store_explicit(&t->place, 1, memory_order_relaxed);
    return 0;
}

/* The arguments and inputs of the common spawn in one pass: each argument is checked, copied and
 * (a task) retained as an input in the same loop. The inputs follow the arguments in the inline
 * area. Only what needs no message is taken here: a value that is invalid, oversize, a chunk or
 * shard, a copy that fails, or more than fits inline makes it drop what it took and return
 * false, and the general path below checks and takes everything again in its own order, so
 * errors and their messages are the same. */
__attribute__((always_inline)) static inline bool take_args_fast(dagger_task_t *t,
                                                                 const dagger_value_t *argv,
                                                                 size_t argc, dagger_task_t **seq,
                                                                 int nseq, size_t *nomem_at)
{
    if (argc == 0 && nseq == 0)
        return true; /* nothing to take: args and deps stay at the inline area (task_alloc) */
    size_t room = INLINE_BYTES - (size_t)nseq * sizeof(struct dep);
    size_t argb = argc * sizeof(dagger_value_t);
    if (DAGGER_UNLIKELY(nseq > INLINE_BYTES / (int)sizeof(struct dep) || argb > room))
        return false;
    t->deps = (struct dep *)((char *)&t->inl + argb);
    room -= argb;
    dagger_ctx_t *ctx = t->ctx;
    /* The counts are kept here and stored once: argument i goes to t->args[i], and the general
     * exit stores how many were taken, for drop_args. */
    uint32_t nd = 0;
    size_t i = 0;
    /* Each value is copied whole into t->args[i], then its flags byte is patched there: a copy
     * on the stack patched and copied again made the 16-byte load span the byte store, a
     * store-forwarding stall per argument (perf put a fifth of core.nested's spawn on it). */
    for (; i < argc; i++) {
        dagger_value_t *d = &t->args[i];
        *d = argv[i];
        uint8_t kind = argv[i].kind, flags = argv[i].flags;
        if (kind == DAGGER_KIND_TASK) {
            dagger_task_t *dt = argv[i].u.t;
            if (DAGGER_UNLIKELY((flags & DAGGER_VALUE_REMOTE) || !dt || dt->ctx != ctx))
                goto general;
            /* An input done by now with a result taken by value (result_by_value) is that value
             * at once: no input to register, and the task is ready at its spawn like one
             * without inputs (the seed's nested loop: its inner tasks' input ran at its spawn).
             * Its state is stored, with a release, after its result and code. Not while tracing:
             * the trace keeps the edge (register_inputs). */
            if (nseq == 0 && atomic_load_explicit(&dt->state, memory_order_acquire) == T_DONE &&
                result_by_value(ctx, dt) &&
                !atomic_load_explicit(&dagger__trace_on, memory_order_relaxed)) {
                *d = dt->result; /* whole, then its flags patched in place (as below) */
                d->flags &= (uint8_t)~DAGGER_VALUE_OWNED;
                continue;
            }
            if (DAGGER_UNLIKELY(room < sizeof(struct dep)))
                goto general;
            room -= sizeof(struct dep);
            /* no reference yet without ordering inputs (TF_LAZY_DEPS): register_inputs */
            t->deps[nd].task = nseq == 0 ? dt : dagger_task_retain(dt);
            t->deps[nd].node.argi = (int32_t)i;
            nd++;
            d->flags = flags & (uint8_t)~DAGGER_VALUE_OWNED;
        } else if (DAGGER_UNLIKELY(kind > DAGGER_KIND_TASK || (flags & DAGGER_VALUE_TOOBIG))) {
            goto general;
        } else if (dagger__value_holds(kind) && !(flags & DAGGER_VALUE_BORROW)) {
            if (DAGGER_UNLIKELY(dagger__value_own(d) != 0)) {
                *nomem_at = i; /* reported there, unless an argument is invalid: no retry */
                goto general;
            }
            t->flags |= TF_OWNED_ARGS;
        } else {
            d->flags = flags & (uint8_t)~DAGGER_VALUE_OWNED;
        }
    }
    for (int k = 0; k < nseq; k++) {
        t->deps[nd].task = dagger_task_retain(seq[k]);
        t->deps[nd].node.argi = -1;
        nd++;
    }
    t->nargs = (uint32_t)argc;
    t->ndeps = nd;
    if (nd && nseq == 0)
        t->flags |= TF_LAZY_DEPS;
    return true;
general:
    t->nargs = (uint32_t)i;
    t->ndeps = nd;
    if (nseq == 0)
        t->flags |= TF_LAZY_DEPS; /* the inputs met so far hold no reference */
    drop_args(t);
    t->flags &= ~(uint32_t)TF_LAZY_DEPS;
    return false;
}

/* The general path: every argument and syncdep checked first (the first problem is the error),
 * then the storage chosen (inline, or heap arrays for what does not fit) and everything taken.
 * `nomem_at`: the argument whose copy already failed in take_args_fast (SIZE_MAX: none). */
DAGGER_NOINLINE static int take_args(dagger_task_t *t, const dagger_task_opts_t *o,
                                     const dagger_value_t *argv, size_t argc, dagger_task_t **seq,
                                     int nseq, size_t nomem_at)
{
    dagger_ctx_t *ctx = t->ctx;
    size_t nsync = o ? o->nsyncdeps : 0;
    size_t ndeps = nsync + (size_t)nseq;
    for (size_t i = 0; i < argc; i++) {
        const dagger_value_t *v = &argv[i];
        DAGGER_CHECK(v->kind < DAGGER_KIND_COUNT_, DAGGER_EINVAL,
                     "argument %zu has an unknown kind (%u)", i, v->kind);
        if (v->kind == DAGGER_KIND_TASK) {
            DAGGER_CHECK(!(v->flags & DAGGER_VALUE_REMOTE), DAGGER_EINVAL,
                         "argument %zu is a remote task reference, which has no local handle", i);
            DAGGER_CHECK(v->u.t, DAGGER_EINVAL, "argument %zu is a NULL task handle", i);
            DAGGER_CHECK(v->u.t->ctx == ctx, DAGGER_EINVAL,
                         "argument %zu is a task of another context", i);
            ndeps++;
        } else if (DAGGER_UNLIKELY(v->kind >= DAGGER_KIND_CHUNK)) { /* chunk, shard */
            int rc = check_data_arg(t, o, v, i);
            if (rc)
                return rc;
        }
    }
    for (size_t i = 0; i < nsync; i++) {
        DAGGER_CHECK(o->syncdeps[i], DAGGER_EINVAL, "syncdeps[%zu] is NULL", i);
        DAGGER_CHECK(o->syncdeps[i]->ctx == ctx, DAGGER_EINVAL,
                     "syncdeps[%zu] is a task of another context", i);
    }
    /* Inline: the arguments from the front of t->inl, the inputs from its back. What does not
     * fit goes to the heap, the inputs first (each takes two values' room). */
    size_t argb = argc * sizeof(dagger_value_t), depb = ndeps * sizeof(struct dep);
    if (DAGGER_LIKELY(argb + depb <= INLINE_BYTES)) {
        t->deps = (struct dep *)((char *)&t->inl + INLINE_BYTES - depb);
    } else {
        struct task_ext *x = dagger__task_ext_get(t);
        if (!x)
            return dagger__set_errmsg(DAGGER_ENOMEM,
                                      "out of memory for the storage of %zu arguments", argc);
        bool deps_heap = depb > INLINE_BYTES || argb <= INLINE_BYTES;
        if (deps_heap) {
            t->deps = dagger__obj_alloc(depb);
            if (!t->deps) {
                t->deps = t->inl.d;
                return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for %zu dependencies",
                                          ndeps);
            }
            x->capdeps = (uint32_t)ndeps;
        } else {
            t->deps = (struct dep *)((char *)&t->inl + INLINE_BYTES - depb);
        }
        if (argb > (deps_heap ? INLINE_BYTES : INLINE_BYTES - depb)) {
            t->args = dagger__obj_alloc(argb);
            if (!t->args) {
                t->args = t->inl.v;
                return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for %zu arguments", argc);
            }
            x->capargs = (uint32_t)argc;
        }
    }
    /* From here drop_args() can clean up: counts grow as entries become valid. */
    t->nargs = 0;
    t->ndeps = 0;
    uint32_t nd = 0;
    for (size_t i = 0; i < argc; i++) {
        dagger_value_t v = argv[i];
        if (v.kind == DAGGER_KIND_TASK) {
            t->deps[nd].task = dagger_task_retain(v.u.t);
            t->deps[nd].node.argi = (int32_t)i;
            t->ndeps = ++nd;
            v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
            t->args[t->nargs++] = v;
            continue;
        }
        if (DAGGER_UNLIKELY(v.flags & DAGGER_VALUE_TOOBIG))
            return dagger__set_errmsg(DAGGER_E2BIG,
                                      "argument %zu is a %s of 4 GiB or more (values hold at most "
                                      "4 GiB - 1 bytes); pass a pointer instead",
                                      i + 1, dagger_kind_name(v.kind));
        if (dagger__value_holds(v.kind) &&
            (!(v.flags & DAGGER_VALUE_BORROW) || dagger__value_is_handle(v.kind))) {
            if (i == nomem_at || dagger__value_own(&v) != 0)
                return dagger__set_errmsg(
                    DAGGER_ENOMEM, "out of memory copying argument %zu (%u bytes)", i, argv[i].len);
            t->flags |= TF_OWNED_ARGS;
        } else {
            v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
        }
        t->args[t->nargs++] = v;
    }
    for (size_t i = 0; i < nsync; i++) {
        t->deps[nd].task = dagger_task_retain(o->syncdeps[i]);
        t->deps[nd].node.argi = -1;
        t->ndeps = ++nd;
    }
    for (int i = 0; i < nseq; i++) {
        t->deps[nd].task = dagger_task_retain(seq[i]);
        t->deps[nd].node.argi = -1;
        t->ndeps = ++nd;
    }
    return 0;
}

/* The options that make placement decide (a scope, implementations) and a job's spread over
 * the ranks; out of line, with its message buffer, since a plain spawn has none of them. */
DAGGER_NOINLINE static int take_placement(dagger_task_t *t, const dagger_task_opts_t *o,
                                          const dagger_value_t *argv, size_t argc, uint32_t nd)
{
    dagger_ctx_t *ctx = t->ctx;
    if (ctx->nranks > 1)
        t->flags |= TF_TIMED; /* in a job every run feeds the history */
    if (o && o->scope && !dagger__scope_is_any(o->scope)) {
        /* A scope that no processor satisfies fails now; the choice among those it allows is
         * placement's, when the task is ready. */
        dagger__procset set;
        char why[512];
        int n = ctx->nranks > 1
                    ? dagger__scope_check(o->scope, ctx->nranks, ctx->nthreads, why, sizeof why)
                    : dagger__scope_resolve(o->scope, 0, 1, ctx->nthreads, &set, why, sizeof why);
        if (n == 0)
            return dagger__set_errmsg_str(DAGGER_ESCOPE, why);
        struct task_ext *x = dagger__task_ext_get(t);
        if (!x)
            return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for the task's scope");
        x->scope = dagger_scope_retain((dagger_scope_t *)o->scope);
        atomic_store_explicit(&t->place, 1, memory_order_relaxed);
        /* a pinned remote task reports it there; placement weighs it against device bodies */
        x->expected = o->expected_time > 0 ? (float)o->expected_time : 0.0f;
    } else if (DAGGER_UNLIKELY(ctx->nranks > 1)) {
        /* a job: a task that may run on any rank (its scope says so, or it is independent and
         * long) is placed by the cost model (src/sched/cost.c) and may be stolen */
        struct task_ext *x = dagger__task_ext_get(t);
        if (!x)
            return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for the task's placement");
        x->expected = o && o->expected_time > 0 ? (float)o->expected_time : 0.0f;
        x->scope = dagger__sched_spread(t->fn, o, argv, argc, nd);
        if (x->scope)
            atomic_store_explicit(&t->place, 1, memory_order_relaxed);
    }
    if (o && o->nimpls) { /* implementations of other kinds: placement picks one */
        DAGGER_CHECK(o->impls && o->nimpls <= 16, DAGGER_EINVAL,
                     "opts.impls: %zu implementations announced (at most 16, impls not NULL)",
                     o->nimpls);
        struct task_ext *x = dagger__task_ext_get(t);
        if (!x)
            return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for the task's impls");
        x->impls = o->impls;
        x->nimpls = (uint32_t)o->nimpls;
        t->flags |= TF_TIMED;
        atomic_store_explicit(&t->place, 1, memory_order_relaxed);
    }
    return 0;
}

__attribute__((always_inline)) static inline int
spawn_setup(dagger_task_t *t, const dagger_task_opts_t *o, const dagger_value_t *argv, size_t argc,
            dagger_task_t **seq, int nseq, int *ndeps_out)
{
    dagger_ctx_t *ctx = t->ctx;
    DAGGER_CHECK(t->fn, DAGGER_EINVAL, "the task function is NULL");
    DAGGER_CHECK(!o || o->scope, DAGGER_EINVAL,
                 "opts.scope is NULL (did a scope constructor fail?); use dagger_scope_any() for "
                 "any processor");
    DAGGER_CHECK(argc == 0 || argv, DAGGER_EINVAL, "%zu arguments announced but argv is NULL",
                 argc);
    DAGGER_CHECK(argc <= UINT32_MAX / 2, DAGGER_EINVAL, "%zu arguments is too many", argc);
    size_t nsync = o ? o->nsyncdeps : 0;
    DAGGER_CHECK(nsync == 0 || o->syncdeps, DAGGER_EINVAL,
                 "%zu syncdeps announced but the syncdeps array is NULL", nsync);
    if (o) {
        DAGGER_CHECK(o->occupancy >= 0.0 && o->occupancy <= 1.0, DAGGER_EINVAL,
                     "occupancy %g is out of range: it must be within 0..1", o->occupancy);
        t->job.occupancy = (float)o->occupancy;
        t->job.prio = o->priority;
        DAGGER_CHECK((o->flags & ~(unsigned)TASK_FLAGS) == 0, DAGGER_EINVAL,
                     "unknown task option flags 0x%x", o->flags & ~(unsigned)TASK_FLAGS);
        if (o->flags & DAGGER_TASK_MUTABLE_RESULT) {
            DAGGER_CHECK(o->occupancy >= 1.0, DAGGER_EINVAL,
                         "DAGGER_TASK_MUTABLE_RESULT needs occupancy 1: mutable data belongs to "
                         "a worker thread, and occupancy %g runs beside the workers",
                         o->occupancy);
            t->flags |= TF_MUTABLE_RESULT;
        } else if (o->flags & DAGGER_TASK_CHUNK_RESULT) {
            t->flags |= TF_CHUNK_RESULT;
        }
        if (o->flags & DAGGER__TASK_RESULT_HOME)
            t->flags |= TF_RESULT_HOME;
        if (o->flags & DAGGER__TASK_RESULT_THERE)
            t->flags |= TF_RESULT_THERE;
        if (o->userdata || o->restore || o->checkpoint) {
            struct task_ext *x = dagger__task_ext_get(t);
            if (!x)
                return dagger__set_errmsg(DAGGER_ENOMEM,
                                          "out of memory for the task's userdata and hooks");
            x->ud = o->userdata;
            x->restore = o->restore;
            x->checkpoint = o->checkpoint;
        }
    }
    size_t nomem_at = SIZE_MAX;
    if (!DAGGER_LIKELY(nsync == 0 && take_args_fast(t, argv, argc, seq, nseq, &nomem_at))) {
        int rc = take_args(t, o, argv, argc, seq, nseq, nomem_at);
        if (rc)
            return rc;
    }
    uint32_t nd = t->ndeps;
    if (DAGGER_UNLIKELY(o != NULL || ctx->nranks > 1)) {
        int rc = take_placement(t, o, argv, argc, nd);
        if (rc)
            return rc;
    }
    *ndeps_out = (int)nd;
    return 0;
}

static void set_name(dagger_task_t *t, const dagger_task_opts_t *o, const char *fname)
{
    if (o && o->name) {
        size_t n = strlen(o->name) + 1;
        char *copy = dagger__obj_alloc(n);
        if (copy) {
            memcpy(copy, o->name, n);
            t->name = copy;
            t->flags |= TF_NAME_OWNED;
            return;
        }
    }
    t->name = fname;
}

static dagger_task_t *spawn_general(dagger_ctx_t *ctx, dagger_task_t *me, struct frame *top,
                                    const dagger_task_opts_t *o, dagger_fn_t fn, const char *fname,
                                    const dagger_value_t *argv, size_t argc);
struct bundle;
static inline dagger_task_t *spawn(dagger_ctx_t *ctx, dagger_task_t *me, struct frame *top,
                                   bool plain, bool detached, struct group *g,
                                   const dagger_task_opts_t *o, dagger_fn_t fn, const char *fname,
                                   const dagger_value_t *argv, size_t argc,
                                   const struct bundle *replay);

static dagger_task_t *bundle_hook(void *ud, dagger_ctx_t *ctx, const dagger_task_opts_t *o,
                                  dagger_fn_t fn, const char *fname, const dagger_value_t *argv,
                                  size_t argc);
DAGGER_NOINLINE static dagger_task_t *bundle_spawn(dagger_ctx_t *ctx, struct frame *top,
                                                   dagger_fn_t fn, const char *fname,
                                                   const dagger_value_t *argv, size_t argc);

/* The blocks open at `top` in ctx: false when one is SEQUENTIAL or BULK (apply_frames then
 * applies them); otherwise true, with the innermost WAITALL block's group (or NULL) in *g. */
static inline bool frames_plain(dagger_ctx_t *ctx, struct frame *top, struct group **g)
{
    struct group *group = NULL;
    for (struct frame *f = top; f; f = f->up) {
        if (f->ctx != ctx)
            continue;
        if (f->mode & (DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_BULK))
            return false;
        if ((f->mode & DAGGER_QUEUE_WAITALL) && !group)
            group = &f->group;
    }
    *g = group;
    return true;
}

/* The dispatch of both public spawns: a feature region's hook, the inline plain path, or the
 * general one. `detached`: no handle for the caller (the plain path makes the record with the
 * runtime's reference alone; the others release the handle here); then only whether the result
 * is NULL (out of memory, the message set) may be used. */
__attribute__((always_inline)) static inline dagger_task_t *
spawn_entry(dagger_ctx_t *ctx, const dagger_task_opts_t *o, dagger_fn_t fn, const char *fname,
            const dagger_value_t *argv, size_t argc, bool detached)
{
    /* Direct thread-local reads: nothing on the spawn path can suspend. */
    dagger_task_t *me = tls_task;
    struct frame *top = me ? me->frames : tls_frames;
    dagger_task_t *t;
    struct group *g;
    if (DAGGER_UNLIKELY(top && top->hook && top->ctx == ctx)) {
        /* A bundle armed on the group (task.c, "Bundles"): a detached plain spawn goes into it,
         * or it is published and the spawn goes on below. */
        if (top->hook == bundle_hook && detached && o == NULL)
            return bundle_spawn(ctx, top, fn, fname, argv, argc);
        t = top->hook(top->hook_ud, ctx, o, fn, fname, argv, argc);
    } else if (DAGGER_LIKELY(o == NULL && frames_plain(ctx, top, &g)))
        /* spawn inline, its option and ordering branches folded away. Detached, no handle is
         * released after the task is published, so the spawner issues no locked operation on
         * a record whose lines a thief may be reading (the release's wait on them was 98 % of
         * its samples in a flat loop at t=2). */
        return spawn(ctx, me, top, true, detached, g, NULL, fn, fname, argv, argc, NULL);
    else
        t = spawn_general(ctx, me, top, o, fn, fname, argv, argc);
    if (detached && t)
        dagger_task_release(t);
    return t;
}

dagger_task_t *dagger_spawn_impl(dagger_ctx_t *ctx, const dagger_task_opts_t *o, dagger_fn_t fn,
                                 const char *fname, const dagger_value_t *argv, size_t argc)
{
    if (!ctx) {
        dagger__set_errmsg(DAGGER_EINVAL, "dagger_spawn: the context is NULL");
        return NULL;
    }
    DAGGER_MISUSE(ctx->magic == CTX_MAGIC, "dagger_spawn: the context is closed");
    return spawn_entry(ctx, o, fn, fname, argv, argc, false);
}

int dagger_spawn_detached_impl(dagger_ctx_t *ctx, const dagger_task_opts_t *o, dagger_fn_t fn,
                               const char *fname, const dagger_value_t *argv, size_t argc)
{
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_spawn_detached: the context is NULL");
    DAGGER_MISUSE(ctx->magic == CTX_MAGIC, "dagger_spawn_detached: the context is closed");
    /* NULL only without a record: out of memory, the message set */
    return spawn_entry(ctx, o, fn, fname, argv, argc, true) ? 0 : DAGGER_ENOMEM;
}

dagger_task_t *dagger__task_spawn_nohook(dagger_ctx_t *ctx, const dagger_task_opts_t *o,
                                         dagger_fn_t fn, const char *fname,
                                         const dagger_value_t *argv, size_t argc)
{
    DAGGER_MISUSE(ctx->magic == CTX_MAGIC, "dagger_spawn: the context is closed");
    dagger_task_t *me = tls_task;
    return spawn_general(ctx, me, me ? me->frames : tls_frames, o, fn, fname, argv, argc);
}

/* Apply the queue blocks of this thread or task: the innermost WAITALL counts the task, every
 * SEQUENTIAL block chains it, the innermost BULK block holds it. A BULK block inside a
 * SEQUENTIAL one is one unit of it: its tasks follow the unit before and not each other, and
 * the block's end makes the whole group the unit after (unit_end in queue.c). */
__attribute__((always_inline)) static inline struct frame *
apply_frames(dagger_ctx_t *ctx, dagger_task_t *t, struct frame *top, dagger_task_t **seq, int *nseq,
             bool *ordered)
{
    struct frame *bulk = NULL;
    struct group *group = NULL;
    for (struct frame *f = top; f; f = f->up) {
        if (f->ctx != ctx)
            continue;
        unsigned mode = f->mode;
        if ((mode & DAGGER_QUEUE_WAITALL) && !group)
            group = &f->group;
        if (DAGGER_LIKELY(!(mode & (DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_BULK))))
            continue; /* a WAITALL block alone, the common one */
        *ordered = true;
        if ((mode & DAGGER_QUEUE_BULK) && !bulk)
            bulk = f;
        if ((mode & DAGGER_QUEUE_SEQUENTIAL) && f->last && *nseq < MAX_SEQ) {
            bool dup = false;
            for (int i = 0; i < *nseq; i++)
                dup |= seq[i] == f->last;
            if (!dup)
                seq[(*nseq)++] = f->last;
        }
    }
    if (group) {
        t->group = group;
        group->spawned++;
    }
    return bulk;
}

/* After a successful setup: become the last task of SEQUENTIAL blocks up to the innermost
 * BULK block (outer ones see the bulk group as a unit), be held by BULK. Called only when
 * apply_frames saw such a block of this context (`ordered`): a WAITALL block alone needs
 * nothing more. */
static uint32_t enter_frames(dagger_ctx_t *ctx, dagger_task_t *t, struct frame *top,
                             struct frame *bulk)
{
    for (struct frame *f = top; f; f = f->up) {
        if (f->ctx == ctx && (f->mode & DAGGER_QUEUE_SEQUENTIAL)) {
            dagger_task_release(f->last);
            f->last = dagger_task_retain(t);
        }
        if (f->ctx == ctx && (f->mode & DAGGER_QUEUE_BULK))
            break;
    }
    if (!bulk)
        return 0;
    if (bulk->nheld == bulk->capheld) {
        size_t cap = bulk->capheld ? bulk->capheld * 2 : 16;
        dagger_task_t **h = dagger__realloc(bulk->held, cap * sizeof *h);
        if (h) {
            bulk->held = h;
            bulk->capheld = cap;
        }
    }
    if (bulk->nheld == bulk->capheld)
        return 0; /* out of memory to hold it: it starts at once rather than being lost */
    struct task_ext *x = dagger__task_ext_get(t);
    if (!x)
        return 0; /* the same: it starts at once */
    bulk->held[bulk->nheld++] = dagger_task_retain(t);
    atomic_store_explicit(&x->held_by, bulk, memory_order_relaxed);
    return 1;
}

/* Put t on the waiters of each of its nd inputs; returns how many were done already (those
 * t's pending count still holds). While it loops, the inputs not yet registered (or the spawn's
 * hold) keep t from being ready; after its last push, t may be ready and run at once. */
__attribute__((always_inline)) static inline uint32_t register_inputs(dagger_task_t *t, int nd)
{
    uint32_t done = 0;
    /* Inputs taken without a reference (take_args_fast): from here each has one, taken by its
     * completion when it serves the node, or below when it is done already. */
    bool lazy = (t->flags & TF_LAZY_DEPS) != 0;
    t->flags &= ~(uint32_t)TF_LAZY_DEPS;
    for (int i = 0; i < nd; i++) {
        struct dep *d = &t->deps[i];
        d->node.kind = lazy ? W_DEP_LAZY : W_DEP;
        d->node.target = t;
        DAGGER__TRACE(dagger__trace_edge(d->task->id, t->id));
        if (!dagger__event_push(&d->task->waiters, &d->node)) {
            done++;
            int k = d->task->result.kind; /* done already: its result is known */
            if (DAGGER_UNLIKELY(k == DAGGER_KIND_CHUNK || k == DAGGER_KIND_SHARD))
                atomic_store_explicit(&t->place, 1, memory_order_relaxed);
            if (lazy && result_by_value(t->ctx, d->task))
                take_by_value(t, d, d->task);
            else if (lazy)
                dagger_task_retain(d->task);
        }
    }
    return done;
}

/* ---------------------------------------------------------------- bundles */

/* A flat loop of detached spawns on a worker (a sync group's tasks, one per iteration) runs on
 * that worker alone once its deque is deep: each spawn past the deep mark runs at once on the
 * spawner's stack, and a thief holds back from its queued records, since moving a record of a
 * task of a few ns across cores costs more than running it (pool.c, "Holding back"; a thief that
 * took every such steal: 145-160 ns an iteration, bench/RESULTS.md 2026-12-05). A bundle moves
 * the spawns instead of their records: while another worker is idle, the spawner writes the next
 * BUNDLE_CAP spawns of the same function into one block (the function once, each spawn's
 * arguments: 16 bytes a value, no record), and the block travels as one job through the
 * injection queue. The worker that takes it replays the spawns on its own core (bundle_fn):
 * records from its own pools, at once or into its own deque, where other thieves reach them.
 * The spawner writes an argument list where a spawn made a record and ran the task, so the loop
 * is shared between the cores.
 *
 * Which spawns: detached ones without options, inside a sync group (the group counts them at
 * the spawn, the replay counts them finished), from a task on a worker whose deque is deep, of
 * scalar arguments only (nil, bool, i64, f64, ptr: nothing to own), untraced, in one process.
 * A bundle is armed where a spawn finds the deque deep by its top (a streak's start, where the
 * pool calls dagger__task_deep: dagger__pool_set_deep), another worker is idle or took the last
 * full bundle, and at most one of this thread's bundles waits to be taken;
 * armed, the spawns of the same task, group, function and arity go into it. The arming is marked
 * by the group's frame, whose hook slot holds bundle_hook meanwhile: spawn_entry reads that slot
 * anyway, so a spawn pays nothing for bundles otherwise (a test of a thread-local flag before
 * the record's allocation made core.empty and core.parfor 4-5 % slower at t=1). It is published
 * when full, and before anything that could make its spawns wait for a thread that no longer
 * looks at it (bundle_flush): a spawn of another kind, the end of a group, a wait, a yield, and
 * the worker running dry (a task whose body returned with its group open and a bundle armed:
 * nobody waits for that group, and the bundle goes out when the thread next runs dry, before the
 * context drains, since its job counts as a task in flight). A replay whose record cannot be
 * allocated fails the bundle's job with DAGGER_ENOMEM, which the group reports, and counts the
 * lost spawn finished, so the group's end never waits for it.
 * The spawner's code may also wait for its spawns with no call into the runtime at all (a spin
 * on a counter its tasks raise): it never publishes its open bundle then. So the open bundle is
 * visible through the spawner's slot (dagger__pool_bundle_slot: a state of a generation and
 * open, closed or idle, the count of spawns written, the count a thief took), and a worker about
 * to park closes one whose count has not moved for BUNDLE_STALE_NS and hands its job to the pool
 * (dagger__task_bundle_stale). The close is a CAS of the state, which the spawner's publication
 * races; then the thief makes every running thread execute a full barrier (membarrier,
 * dagger__pool_barrier) and reads the count. A spawn writes its arguments, then the count, then
 * reads the state: either the thief's read follows that spawn's count, or the spawner's read
 * follows the close; in the second case the spawner waits for the count the thief took
 * (bundle_closed), and a spawn past it goes the usual way. A bundle closed by a thief has two
 * owners, its spawner (which may still write past the count) and its replay; the last to let
 * go frees it. A first bundle wakes a sleeping worker when it opens (a later one of a loop has
 * the taker of the one before, which looks at it when it runs dry). */
#define BUNDLE_CAP 256
#define BUNDLE_ARGS_MAX 6

struct bundle {
    dagger_task_t *task; /* the job that carries it: its body (bundle_fn) replays the spawns */
    dagger_task_t *parent;
    struct group *g;
    dagger_ctx_t *ctx;
    dagger_fn_t fn;
    const char *fname;
    _Atomic uint32_t *taken; /* the spawner's count of bundles taken (dagger__pool_bundle_taken) */
    uint32_t argc;
    uint32_t count; /* the spawns its job replays: set by whoever hands it to the pool */
    /* Closed by a thief (bundle_stale): 2 owners, the spawner and the replay, and the last to let
     * go frees it (the spawner may be writing past `count` meanwhile); else 0, the replay's. */
    _Atomic int owners;
    dagger_value_t args[]; /* n spawns, argc values each */
};

/* A worker's bundling state (its count of bundles taken is the pool's, on a line of its own:
 * dagger__pool_bundle_taken). */
struct bundler {
    struct frame *frame;   /* armed: the group's frame, its hook bundle_hook (NULL: not armed) */
    dagger_task_t *parent; /* the spawns this bundle takes */
    struct group *g;
    dagger_fn_t fn;
    size_t argc;
    struct bundle *open; /* its block, once a spawn went in */
    bool streak;         /* the last one was published full: a loop still feeds its takers */
    bool fence;          /* the pool has no asymmetric fence: each spawn in takes a full one */
    uint32_t published;
    struct dagger__bundle_slot *slot; /* the open one as thieves see it (bundle_stale) */
};
static DAGGER_TLS struct bundler bundler_tls;
static _Atomic uint64_t bundles_made, bundled_spawns; /* for tests: dagger__task_bundle_counts */
static _Atomic bool bundle_eager;                     /* for tests: dagger__task_bundle_eager */
static _Atomic uint32_t bundle_lose;                  /* for tests: dagger__task_bundle_lose */

void dagger__task_bundle_eager(bool on)
{
    atomic_store_explicit(&bundle_eager, on, memory_order_relaxed);
}

void dagger__task_bundle_lose(uint32_t k)
{
    atomic_store_explicit(&bundle_lose, k, memory_order_relaxed);
}

void dagger__task_bundle_counts(uint64_t *bundles, uint64_t *spawns)
{
    *bundles = atomic_load_explicit(&bundles_made, memory_order_relaxed);
    *spawns = atomic_load_explicit(&bundled_spawns, memory_order_relaxed);
}

static bool bundle_args_plain(const dagger_value_t *argv, size_t argc)
{
    for (size_t i = 0; i < argc; i++) {
        uint8_t k = argv[i].kind;
        if (k == DAGGER_KIND_STR || k == DAGGER_KIND_BLOB || k > DAGGER_KIND_PTR ||
            (argv[i].flags & DAGGER_VALUE_TOOBIG))
            return false;
    }
    return true;
}

/* A bundle's job ran, or its spawner saw that a thief closed it: the last owner frees it. */
static void bundle_let_go(struct bundle *b)
{
    if (atomic_load_explicit(&b->owners, memory_order_acquire) == 0 ||
        atomic_fetch_sub_explicit(&b->owners, 1, memory_order_acq_rel) == 1)
        dagger__free(b);
}

/* The spawner found its open bundle closed by a thief (bundle_stale): it waits for the count the
 * thief took (known a few instructions after the close), lets the bundle go and disarms. Returns
 * that count: the spawns from it on are not the bundle's. */
DAGGER_NOINLINE static uint32_t bundle_closed(struct bundler *z)
{
    struct dagger__bundle_slot *sl = z->slot;
    uint32_t fin;
    while ((fin = atomic_load_explicit(&sl->n_final, memory_order_acquire)) == 0)
        dagger__cpu_relax();
    uint64_t st = atomic_load_explicit(&sl->state, memory_order_relaxed);
    atomic_store_explicit(&sl->state, (st & ~(uint64_t)3) | DAGGER__BS_IDLE, memory_order_relaxed);
    struct bundle *b = z->open;
    if (z->frame)
        z->frame->hook = NULL;
    z->frame = NULL;
    z->open = NULL;
    z->streak = false;
    z->published++; /* its replay counts it taken */
    bundle_let_go(b);
    return fin - 1;
}

/* Publish the thread's open bundle (if any) and disarm. */
static void bundle_flush_here(struct bundler *z)
{
    struct bundle *b = z->open;
    if (b) {
        /* Not if a thief closed it meanwhile: then every spawn in it is the thief's (each saw
         * the bundle open after it went in: bundle_add). */
        uint64_t st = atomic_load_explicit(&z->slot->state, memory_order_relaxed);
        if ((st & 3) != DAGGER__BS_OPEN ||
            !atomic_compare_exchange_strong_explicit(&z->slot->state, &st,
                                                     (st & ~(uint64_t)3) | DAGGER__BS_IDLE,
                                                     memory_order_relaxed, memory_order_relaxed)) {
            uint32_t n = atomic_load_explicit(&z->slot->n_pub, memory_order_relaxed);
            uint32_t fin = bundle_closed(z);
            DAGGER_ASSERT(fin == n);
            (void)fin;
            (void)n;
            return;
        }
        atomic_fetch_sub_explicit(dagger__pool_bundles_open(b->ctx->pool), 1, memory_order_relaxed);
    }
    if (z->frame)
        z->frame->hook = NULL;
    z->frame = NULL;
    z->open = NULL;
    uint32_t n = b ? atomic_load_explicit(&z->slot->n_pub, memory_order_relaxed) : 0;
    z->streak = n == BUNDLE_CAP;
    if (b) {
        z->published++;
        b->count = n;
        atomic_fetch_add_explicit(&bundles_made, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bundled_spawns, n, memory_order_relaxed);
        dagger__pool_hand_off(b->ctx->pool, &b->task->job); /* the injection queue */
    }
}

void dagger__task_bundle_flush(void)
{
    struct bundler *z = &bundler_tls;
    if (DAGGER_UNLIKELY(z->frame != NULL))
        bundle_flush_here(z);
}

/* The hook of an armed group's frame, for the spawns that are not the bundle's (with a handle,
 * or options): the bundle is published and the spawn goes the general way. Detached plain spawns
 * never reach it (spawn_entry: bundle_add). */
static dagger_task_t *bundle_hook(void *ud, dagger_ctx_t *ctx, const dagger_task_opts_t *o,
                                  dagger_fn_t fn, const char *fname, const dagger_value_t *argv,
                                  size_t argc)
{
    (void)ud;
    dagger__task_bundle_flush();
    return dagger__task_spawn_nohook(ctx, o, fn, fname, argv, argc);
}

static int bundle_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out);

/* The block and the job of a bundle for the armed spawns; NULL when out of memory (the spawn then
 * goes the usual way). The job is the group's task like those it carries, counted at once. */
static struct bundle *bundle_open(struct bundler *z, dagger_ctx_t *ctx, const char *fname, int w)
{
    size_t bytes = sizeof(struct bundle) + (size_t)BUNDLE_CAP * z->argc * sizeof(dagger_value_t);
    struct bundle *b = dagger__malloc(bytes);
    if (!b)
        return NULL;
    dagger_task_t *t = task_alloc(ctx);
    if (!t) {
        dagger__free(b);
        return NULL;
    }
    atomic_init(&t->refs, 1); /* detached: the runtime's reference only */
    t->fn = bundle_fn;
    t->name = "dagger_bundle";
    t->parent = z->parent;
    t->group = z->g;
    z->g->spawned++;
    dagger__ctx_count_spawn(ctx, w);
    t->args[0] = dagger_ptr(b);
    t->nargs = 1;
    b->task = t;
    b->parent = z->parent;
    b->g = z->g;
    b->ctx = ctx;
    b->fn = z->fn;
    b->fname = fname;
    b->taken = dagger__pool_bundle_taken(ctx->pool, w);
    b->argc = (uint32_t)z->argc;
    b->count = 0;
    atomic_init(&b->owners, 0);
    /* Open to thieves (bundle_stale), and a sleeping worker woken unless the thread's last
     * bundle went out full just before (its taker looks at this one when it runs dry): a
     * spawner whose code then waits for these spawns without a call into the runtime never
     * publishes them itself. */
    struct dagger__bundle_slot *sl = z->slot = dagger__pool_bundle_slot(ctx->pool, w);
    z->fence = !dagger__pool_asym(ctx->pool);
    atomic_store_explicit(&sl->b, b, memory_order_relaxed);
    atomic_store_explicit(&sl->n_pub, 0, memory_order_relaxed);
    atomic_store_explicit(&sl->n_final, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(dagger__pool_bundles_open(ctx->pool), 1, memory_order_relaxed);
    uint64_t st = atomic_load_explicit(&sl->state, memory_order_relaxed);
    atomic_store_explicit(&sl->state, ((st >> 2) + 1) << 2 | DAGGER__BS_OPEN, memory_order_release);
    if (!z->streak)
        dagger__pool_wake_one(ctx->pool);
    return b;
}

/* A spawn while a bundle is armed on this thread: into the bundle when it is of the armed kind
 * (returns the bundle's job, not to be used), else the bundle is published and NULL returned
 * (the spawn goes the usual way). */
__attribute__((always_inline)) static inline dagger_task_t *
bundle_add(dagger_ctx_t *ctx, struct frame *top, int w, dagger_fn_t fn, const char *fname,
           const dagger_value_t *argv, size_t argc)
{
    struct bundler *z = &bundler_tls;
    if (z->frame != top || z->fn != fn || z->argc != argc || !bundle_args_plain(argv, argc)) {
        bundle_flush_here(z);
        return NULL;
    }
    struct bundle *b = z->open;
    if (!b && !(b = z->open = bundle_open(z, ctx, fname, w))) {
        bundle_flush_here(z); /* disarms */
        return NULL;
    }
    /* The count lives on the slot's line only (the spawner's own, which thieves read before
     * they park): one line written a spawn, as before the slot. */
    struct dagger__bundle_slot *sl = z->slot;
    uint32_t n = atomic_load_explicit(&sl->n_pub, memory_order_relaxed);
    dagger_value_t *d = b->args + (size_t)n * argc;
    for (size_t i = 0; i < argc; i++) /* a few values: no call to memcpy */
        d[i] = argv[i];
    n++;
    dagger_task_t *bt = b->task;
    /* Published to thieves, then the state read: a thief that closes the bundle makes every
     * running thread execute a full barrier before it reads n_pub (bundle_stale), so either it
     * sees this spawn, or this load sees the close (a full fence here without that barrier). */
    atomic_store_explicit(&sl->n_pub, n, memory_order_release);
    if (DAGGER_UNLIKELY(z->fence))
        dagger__fence_seq_cst();
    else
        atomic_signal_fence(memory_order_seq_cst);
    if (DAGGER_UNLIKELY((atomic_load_explicit(&sl->state, memory_order_relaxed) & 3) ==
                        DAGGER__BS_CLOSED) &&
        bundle_closed(z) < n)
        return NULL; /* this spawn is not the thief's: it goes the usual way */
    z->g->spawned++;
    if (n == BUNDLE_CAP && z->open)
        bundle_flush_here(z);
    return bt;
}

/* A spawn found the deque deep by its top (a streak starts): arm a bundle for the spawns like it
 * when at most one bundle of this thread waits to be taken, and another worker is idle or took
 * the last full one (the loop feeds it: one bundle waits while it replays the other). */
DAGGER_NOINLINE static void bundle_arm(dagger_ctx_t *ctx, dagger_task_t *me, struct frame *top,
                                       struct group *g, int w, dagger_fn_t fn,
                                       const dagger_value_t *argv, size_t argc)
{
    struct bundler *z = &bundler_tls;
    /* The group's frame must be the innermost, without a hook: its hook slot marks the arming,
     * so that a spawn pays nothing for bundles unless its frame has a hook (spawn_entry). */
    if (z->frame || !top || top->hook || top->ctx != ctx || &top->group != g)
        return;
    uint32_t waiting = z->published - atomic_load_explicit(dagger__pool_bundle_taken(ctx->pool, w),
                                                           memory_order_relaxed);
    if (argc > BUNDLE_ARGS_MAX || ctx->nranks > 1 || waiting > 1 ||
        !bundle_args_plain(argv, argc) ||
        !((z->streak && waiting == 0) || dagger__pool_idle_hint(ctx->pool) ||
          atomic_load_explicit(&bundle_eager, memory_order_relaxed)))
        return;
    z->parent = me;
    z->g = g;
    z->fn = fn;
    z->argc = argc;
    z->frame = top;
    top->hook = bundle_hook;
}

/* The pool's call where a spawn on a worker found its deque deep by its top (a streak starts,
 * dagger__pool_set_deep): the job kept to run at once is the spawn's task. A detached one (the
 * runtime's reference only) of a task, in a group, untraced: the spawns like it may go into a
 * bundle from now on. Called only there, once a streak: a test in each spawn made the flat loops
 * 5-12 % slower at t=1 (code layout). */
void dagger__task_deep(struct dagger__job *j)
{
    dagger_task_t *t = (dagger_task_t *)j;
    dagger_task_t *me = tls_task;
    if (me && t->group && t->parent == me &&
        atomic_load_explicit(&t->refs, memory_order_relaxed) == 1 &&
        !atomic_load_explicit(&dagger__trace_on, memory_order_relaxed))
        bundle_arm(t->ctx, me, me->frames, t->group, dagger__pool_self(t->ctx->pool), t->fn,
                   t->args, t->nargs);
}

/* Inline: dagger_spawn_impl takes a copy for a spawn without options nor ordering blocks
 * (`plain`: frames_plain found at most the group `g`); the general one applies the frames.
 * `replay`: a spawn of that bundle, made again where it is taken (counted in the group already,
 * and its parent the bundle's spawner). */
__attribute__((always_inline)) static inline dagger_task_t *
spawn(dagger_ctx_t *ctx, dagger_task_t *me, struct frame *top, bool plain, bool detached,
      struct group *g, const dagger_task_opts_t *o, dagger_fn_t fn, const char *fname,
      const dagger_value_t *argv, size_t argc, const struct bundle *replay)
{
    int w = dagger__pool_self(ctx->pool);
    dagger_task_t *t = task_alloc(ctx);
    if (!t) {
        dagger__set_errmsg(DAGGER_ENOMEM, "%s: out of memory for a task record",
                           detached ? "dagger_spawn_detached" : "dagger_spawn");
        return NULL;
    }
    if (detached) /* no handle: the runtime's reference only (returned t is not to be used) */
        atomic_init(&t->refs, 1);
    t->fn = fn;
    t->parent = replay ? replay->parent : me;
    if (DAGGER_UNLIKELY(o != NULL))
        set_name(t, o, fname);
    else
        t->name = fname;
    bool tracing = atomic_load_explicit(&dagger__trace_on, memory_order_relaxed);
    if (DAGGER_UNLIKELY(tracing) && !t->name)
        t->name = dagger__task_display_name(t); /* resolve the symbol once, not at every export */
    struct frame *bulk = NULL;
    dagger_task_t *seq[MAX_SEQ];
    int nseq = 0;
    bool ordered = false; /* a SEQUENTIAL or BULK block of ctx is open */
    if (plain) {
        /* frames_plain saw no such block: at most a group to count the task in */
        if (g) {
            t->group = g;
            if (!replay)
                g->spawned++;
        }
    } else if (top) {
        bulk = apply_frames(ctx, t, top, seq, &nseq, &ordered);
    }
    /* A task that a thread outside the pool runs because it fetches it spawns: the thread
     * takes an external slot first (fetch.c, run_awaited). Only a task on such a thread. */
    if (DAGGER_UNLIKELY(w < 0) && me && DAGGER_UNLIKELY(dagger__awaited_ctx == ctx))
        dagger__task_awaited_spawn(ctx);
    dagger__ctx_count_spawn(ctx, w);

    int nd = 0;
    int rc = spawn_setup(t, o, argv, argc, seq, nseq, &nd);
    if (DAGGER_UNLIKELY(rc)) {
        if (!fn && !(t->flags & TF_NAME_OWNED))
            t->name = NULL; /* the spawn macro's `#f` of NULL is "((void *)0)", not a name */
        if (DAGGER_UNLIKELY(tracing))
            dagger__trace_spawn(t->id, t->name, !(t->flags & TF_NAME_OWNED), w, me != NULL);
        dagger__task_fail(t, rc, dagger_last_errmsg());
        complete(t, rc, false);
        return t;
    }
    if (nd)
        t->flags |= TF_HAS_DEPS; /* read by the deadlock check (deadlock.c) */
    uint32_t holds = 1 + (ordered ? enter_frames(ctx, t, top, bulk) : 0);
    if (nd == 0 && holds == 1) { /* nobody else can see the task yet: no atomics needed */
        /* One event: spawned and ready at once. Only set_name (options) owns a name, so the
         * plain path tests none. */
        if (DAGGER_UNLIKELY(tracing))
            dagger__trace_spawn_ready(t->id, t->name, o == NULL || !(t->flags & TF_NAME_OWNED), w,
                                      me != NULL);
        /* A worker's deque deep with ready tasks: this child runs now, on the spawner's stack
         * (an undeferred task, as libgomp does past 64 queued tasks per thread). Thieves have
         * plenty left, and a flat loop of spawns keeps a bounded set of task records, hot in
         * cache, instead of one record per iteration (core.empty: 1e3 tasks 40 ns each, 1e6
         * tasks 67 ns). Only plain spawns (no priority, scope nor ordering) from a task, or
         * from a thread outside the pool that holds its group's slot: that thread runs the
         * task itself (thread -1), as at the group's end (core.empty_ext: 104-112 -> 42-50
         * ns a task; without, a million records waited in the slot or crossed to the
         * worker). */
        if (DAGGER_UNLIKELY(w < 0) && g && g->keep && plain && o == NULL && keep_tiny(t)) {
            run_undeferred(me, t, plain, tracing);
            return t;
        }
        if (DAGGER_UNLIKELY(submit_ready_as(t, o == NULL, me != NULL || w < 0)))
            run_undeferred(me, t, plain, tracing);
        return t;
    }
    if (DAGGER_UNLIKELY(tracing))
        dagger__trace_spawn(t->id, t->name, o == NULL || !(t->flags & TF_NAME_OWNED), w,
                            me != NULL);
    /* The spawn's hold keeps the task from being ready while the spawner still works on it
     * after registering its inputs (a bulk block's hold, an early offer to another rank). A
     * spawn with neither takes no hold: each input's completion takes one count, the spawner
     * takes those of inputs found done, and after its last registration it no longer reads the
     * task (a detached one may be gone by then). That saves a locked operation a spawn. */
    bool hold = holds > 1 || DAGGER_UNLIKELY(ctx->early != NULL);
    atomic_store_explicit(&t->pending, (hold ? holds : 0) + (uint32_t)nd, memory_order_relaxed);
    uint32_t done = register_inputs(t, nd);
    if (!hold) {
        /* every input done: nobody else counts; else the inputs found done are ours to count */
        if (done == (uint32_t)nd ||
            (done && atomic_fetch_sub_explicit(&t->pending, done, memory_order_acq_rel) == done))
            ready_at_spawn(me, t, plain && o == NULL);
        return t;
    }
    /* In a job, a task pinned to another rank whose inputs are still being made may be sent to
     * its rank now (src/net/mpi/remote.c), while the spawn's hold keeps it from being ready. */
    if (DAGGER_UNLIKELY(ctx->early != NULL) && done < (uint32_t)nd && dagger__task_x(t) &&
        atomic_load_explicit(&t->place, memory_order_relaxed)) {
        /* Marked before the offer: once the backend posted the task, its progress thread reads
         * the flags. Nobody else does before the spawn's hold below is released. */
        void *rec;
        t->flags |= TF_EARLY;
        if (ctx->early(ctx->ranks, t, &rec))
            dagger__task_x(t)->early_rec = rec; /* read once the task is ready (place_slow) */
        else
            t->flags &= ~(uint32_t)TF_EARLY;
    }
    if (atomic_fetch_sub_explicit(&t->pending, 1 + done, memory_order_acq_rel) == 1 + done)
        make_ready(t);
    return t;
}

/* Every spawn with options, and those of feature regions (dagger__task_spawn_nohook). */
DAGGER_NOINLINE static dagger_task_t *spawn_general(dagger_ctx_t *ctx, dagger_task_t *me,
                                                    struct frame *top, const dagger_task_opts_t *o,
                                                    dagger_fn_t fn, const char *fname,
                                                    const dagger_value_t *argv, size_t argc)
{
    return spawn(ctx, me, top, false, false, NULL, o, fn, fname, argv, argc, NULL);
}

/* A detached plain spawn into the armed group `top` (spawn_entry): into its bundle, else (another
 * function, arity or argument kind, or out of memory) the bundle is published and the spawn goes
 * the way of the other spawns of an armed group (bundle_hook), once: the group is disarmed. */
DAGGER_NOINLINE static dagger_task_t *bundle_spawn(dagger_ctx_t *ctx, struct frame *top,
                                                   dagger_fn_t fn, const char *fname,
                                                   const dagger_value_t *argv, size_t argc)
{
    int w = dagger__pool_self(ctx->pool);
    dagger_task_t *t = w >= 0 ? bundle_add(ctx, top, w, fn, fname, argv, argc) : NULL;
    if (t)
        return t;
    t = bundle_hook(NULL, ctx, NULL, fn, fname, argv, argc);
    if (t)
        dagger_task_release(t); /* detached */
    return t;
}

/* A bundle's job: its spawns again, here (see "Bundles"). */
static int bundle_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct bundle *b = dagger_arg_ptr(a, 0);
    /* taken: the spawner may arm its next bundle */
    atomic_fetch_add_explicit(b->taken, 1, memory_order_relaxed);
    dagger_task_t *me = (dagger_task_t *)tc;
    uint32_t lost = 0, lose = 0; /* lose: a test's spawn to drop (dagger__task_bundle_lose) */
    if (DAGGER_UNLIKELY(atomic_load_explicit(&bundle_lose, memory_order_relaxed) != 0))
        lose = atomic_exchange_explicit(&bundle_lose, 0, memory_order_relaxed);
    for (uint32_t i = 0; i < b->count; i++) {
        if (i + 1 == lose || !spawn(b->ctx, me, NULL, true, true, b->g, NULL, b->fn, b->fname,
                                    b->args + (size_t)i * b->argc, b->argc, b)) {
            lost++; /* counted in the group at its spawn: counted finished, and the job fails */
            group_done(b->g, b->ctx, dagger__pool_self(b->ctx->pool));
        }
    }
    int rc = 0;
    if (lost)
        rc = dagger_fail(tc, DAGGER_ENOMEM,
                         "out of memory for the records of %u of %u tasks of %s spawned in a "
                         "bundle by task %llu",
                         lost, b->count, b->fname ? b->fname : "(unnamed)",
                         (unsigned long long)b->parent->id);
    bundle_let_go(b);
    return rc;
}

/* Spawns left in another worker's open bundle (see "Bundles"), asked by a worker about to park
 * (dagger__stale_fn): a bundle whose published count has not moved for BUNDLE_STALE_NS is closed
 * (a CAS of its state, which the spawner's publication races), the barrier taken, the count read
 * and its job handed to the pool: the spawner may be running code that waits for those spawns
 * without a call into the runtime, where it would never publish them. Nothing is read while no
 * bundle is open on the pool (dagger__pool_bundles_open).
 * The first sight of a count is kept on the slot itself (its `seen`: the state's generation and
 * the count, and the time in units of 1024 ns), written by the worker that saw it, so that every
 * worker ages a bundle alike however many are open: a table per worker indexed by the spawner's
 * index modulo its size let two spawners stuck at once on one entry reset it in turn, and neither
 * bundle ever aged. A new count is written only when the slot's last sight is older than half
 * of BUNDLE_STALE_NS (the bundle was filling then), so that many idle workers do not each write
 * the spawner's line at each look; a bundle that stopped is written at the next look after that,
 * and taken BUNDLE_STALE_NS later. A race of two writers only moves the first sight by the time
 * between their looks; a close too early or too late costs time, never a spawn (the close is a
 * CAS that the spawner's publication races). */
#define BUNDLE_STALE_NS 50000
#define SEEN_KEY(st, n) (((st) >> 2 & 0xffffu) << 48 | (uint64_t)((n)&0xffffu) << 32)
#define SEEN_MASK (~(uint64_t)0xffffffffu)

long dagger__task_bundle_stale(dagger__pool *p, int self)
{
    _Atomic uint32_t *open = dagger__pool_bundles_open(p);
    if (atomic_load_explicit(open, memory_order_relaxed) == 0)
        return 0;
    int nw = dagger__pool_size(p);
    long wait = 0;
    uint32_t now = 0; /* in units of 1024 ns, modulo 2^32 */
    for (int k = 0; k < nw; k++) {
        if (k == self)
            continue;
        struct dagger__bundle_slot *sl = dagger__pool_bundle_slot(p, k);
        uint64_t st = atomic_load_explicit(&sl->state, memory_order_acquire);
        if ((st & 3) != DAGGER__BS_OPEN)
            continue;
        uint32_t n = atomic_load_explicit(&sl->n_pub, memory_order_relaxed);
        if (n == 0) { /* just opened */
            if (!wait || BUNDLE_STALE_NS < wait)
                wait = BUNDLE_STALE_NS;
            continue;
        }
        if (!now)
            now = (uint32_t)(dagger__now_ns() >> 10) | 1;
        uint64_t key = SEEN_KEY(st, n);
        uint64_t seen = atomic_load_explicit(&sl->seen, memory_order_relaxed);
        uint64_t age = (uint64_t)(uint32_t)(now - (uint32_t)seen) << 10;
        if ((seen & SEEN_MASK) != key) {
            if (seen == 0 || age >= BUNDLE_STALE_NS / 2) /* first seen now */
                atomic_store_explicit(&sl->seen, key | now, memory_order_relaxed);
            age = 0;
        }
        if (age < BUNDLE_STALE_NS) {
            long left = (long)(BUNDLE_STALE_NS - age);
            if (!wait || left < wait)
                wait = left;
            continue;
        }
        uint64_t closed = (st & ~(uint64_t)3) | DAGGER__BS_CLOSED;
        if (!atomic_compare_exchange_strong_explicit(&sl->state, &st, closed, memory_order_acquire,
                                                     memory_order_relaxed))
            continue; /* published by its spawner meanwhile */
        atomic_fetch_sub_explicit(open, 1, memory_order_relaxed);
        struct bundle *b = atomic_load_explicit(&sl->b, memory_order_relaxed);
        dagger__pool_barrier(p);
        uint32_t fin = atomic_load_explicit(&sl->n_pub, memory_order_acquire);
        b->count = fin;
        atomic_store_explicit(&b->owners, 2, memory_order_relaxed);
        atomic_fetch_add_explicit(&bundles_made, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bundled_spawns, fin, memory_order_relaxed);
        atomic_store_explicit(&sl->n_final, fin + 1, memory_order_release);
        dagger__pool_hand_off(p, &b->task->job);
        return -1;
    }
    return wait;
}

void dagger__task_unhold(dagger_task_t *t)
{
    atomic_store_explicit(&dagger__task_x(t)->held_by, NULL, memory_order_relaxed);
    if (atomic_fetch_sub_explicit(&t->pending, 1, memory_order_acq_rel) == 1)
        make_ready(t);
}

void dagger_task_opts_init(dagger_task_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->occupancy = 1.0;
    o->scope = dagger__scope_unset();
}

int dagger_cancel(dagger_task_t *t)
{
    DAGGER_CHECK(t, DAGGER_EINVAL, "dagger_cancel: the task handle is NULL");
    atomic_store_explicit(&t->cancel, CANCEL_REQ, memory_order_release);
    const struct task_ext *x = dagger__task_x(t);
    if (x && x->cancel_fn)
        x->cancel_fn(t, x->cancel_ud);
    return 0;
}

void dagger__task_set_cancel_hook(dagger_task_t *t, dagger__cancel_hook_fn fn, void *ud)
{
    struct task_ext *x = fn ? dagger__task_ext_get(t) : dagger__task_x(t);
    if (!x) {
        if (fn) /* it fails at its start rather than run without the hook */
            ext_lost(t);
        return;
    }
    x->cancel_ud = ud;
    x->cancel_fn = fn;
}

dagger_ctx_t *dagger__task_ctx(const dagger_task_t *t) { return t->ctx; }

void dagger__task_set_wait_guard(dagger_task_t *t, dagger__wait_guard_fn fn, void *guard)
{
    struct task_ext *x = fn ? dagger__task_ext_get(t) : dagger__task_x(t);
    if (!x) {
        if (fn) /* it fails at its start rather than let a wait through that must be refused */
            ext_lost(t);
        return;
    }
    atomic_store_explicit(&x->guard, guard, memory_order_relaxed);
    atomic_store_explicit(&x->guard_fn, fn, memory_order_release);
}

static void yield_arm(void *arg)
{
    dagger_task_t *t = arg;
    dagger__pool_submit(t->ctx->pool, &t->job);
}

void dagger__task_yield(void)
{
    dagger__task_bundle_flush(); /* the task may resume on another thread */
    dagger_task_t *me = dagger__task_current();
    if (!me || !dagger__pool_can_suspend(me->ctx->pool))
        return;
    if (dagger__pool_suspend(me->ctx->pool, &me->job, yield_arm, me) == 0) {
        dagger__group_flush(); /* what this thread counted before it resumed me */
        dagger__task_set_cur(me);
        me->thread = (int16_t)dagger__pool_self_fresh(me->ctx->pool); /* may be another */
    }
}
