/* src/core/fetch.c - waiting for tasks: fetch, wait, the typed fetches and the queries of a
 * finished task.
 *
 * Design: a waiting task first runs its own children inline (help), then suspends on the
 * task's event; a thread outside the pool runs the awaited task itself when no worker took it
 * and it is a leaf (run_awaited), else spins briefly, then sleeps.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "core/core_int.h"
#include "trace/trace.h"

/* `me`: the calling task (dagger__task_current), read once by the caller. */
__attribute__((always_inline)) static inline int check_wait(dagger_task_t *me, dagger_task_t *t,
                                                            const char *what)
{
    DAGGER_CHECK(t, DAGGER_EINVAL, "%s: the task handle is NULL", what);
    DAGGER_CHECK(me != t, DAGGER_EDEADLK, "%s: task %llu '%s' waits for itself", what,
                 (unsigned long long)t->id, dagger__task_display_name(t));
    struct task_ext *x = dagger__task_x(t); /* guard and hold live there; NULL: neither */
    if (DAGGER_UNLIKELY(x != NULL)) {
        dagger__wait_guard_fn guard = atomic_load_explicit(&x->guard_fn, memory_order_acquire);
        if (guard) { /* refused whether or not the task is done: no timing-dependent result */
            int rc = guard(t, atomic_load_explicit(&x->guard, memory_order_relaxed));
            if (rc)
                return rc;
        }
        struct frame *held = atomic_load_explicit(&x->held_by, memory_order_relaxed);
        if (held && atomic_load_explicit(&t->state, memory_order_acquire) != T_DONE) {
            for (struct frame *f = *dagger__queue_frames_slot(); f; f = f->up)
                DAGGER_CHECK(f != held, DAGGER_EDEADLK,
                             "%s: task %llu '%s' is held by the open bulk queue of this thread; "
                             "it starts at dagger_queue_end, so wait for it after the block",
                             what, (unsigned long long)t->id, dagger__task_display_name(t));
        }
    }
    /* A task without inputs nor syncdeps is downstream of nothing: no call for the walk. */
    if (me && me->ctx == t->ctx && (__atomic_load_n(&t->flags, __ATOMIC_RELAXED) & TF_HAS_DEPS) &&
        atomic_load_explicit(&t->state, memory_order_acquire) != T_DONE)
        return dagger__task_check_dominated(me, t, what);
    return 0;
}

int dagger__task_check_wait(dagger_task_t *t, const char *what)
{
    return check_wait(dagger__task_current(), t, what);
}

#define HELP_DEPTH_MAX 48

/* Run job `j`, a child of `me` that never ran, on the stack of `me`; the dependent it made
 * ready, if any, goes to this worker's deque. `chained`: the thread ran another child of `me`
 * just before, in the same loop, with no user code since that child's finish: `j`'s start
 * leans on that finish's stamp (trace.h, dagger__trace_follow) where it would read the clock. */
static inline void run_on_stack(dagger_task_t *me, dagger__pool *pool, struct dagger__job *j,
                                bool chained, bool outside)
{
    if (chained)
        DAGGER__TRACE(dagger__trace_follow(((dagger_task_t *)j)->id));
    ((dagger_task_t *)j)->help_depth = (uint16_t)(me->help_depth + 1);
    /* `outside`: on a thread outside the pool, where the run counts for its function's tiny
     * mean (task.c) */
    struct dagger__job *next = outside ? dagger__task_run_outside(j) : dagger__task_run(j, NULL);
    dagger__task_set_cur(me);
    if (next)
        dagger__pool_push_local(pool, next);
}

/* Run the newest job of this worker's deque on the stack of `me` when it is a child of `me`
 * that never ran; false (the job put back) otherwise. */
static inline bool run_child(dagger_task_t *me, dagger__pool *pool, bool chained)
{
    struct dagger__job *j = dagger__pool_pop_local(pool);
    if (!j)
        return false;
    dagger_task_t *c = (dagger_task_t *)j;
    if (j->fiber || c->parent != me) {
        dagger__pool_push_local(pool, j);
        return false;
    }
    run_on_stack(me, pool, j, chained, false);
    return true;
}

bool dagger__task_run_on_stack(dagger_task_t *me, struct dagger__job *j)
{
    if (!me) { /* a thread outside the pool (no task): depth 0; the pool read before j runs */
        dagger__pool *pool = ((dagger_task_t *)j)->ctx->pool;
        dagger__helping_tls.undeferred++;
        struct dagger__job *next = dagger__task_run(j, NULL);
        dagger__helping_tls.undeferred--;
        if (next)
            dagger__pool_push_local(pool, next);
        return true;
    }
    if (me->help_depth >= HELP_DEPTH_MAX)
        return false;
    run_on_stack(me, me->ctx->pool, j, false, false); /* kept tasks: untimed (task.c, keep) */
    return true;
}

/* A task waiting for `t` runs its own children from the bottom of its worker's deque, on its
 * own stack, until `t` is done (fork-join without a stack switch, as Cilk and TBB do). Only
 * children are run this way: running an unrelated task above the waiting one could make the
 * waiter wait for it. Returns when `t` is done or no child is at hand. */
static void help(dagger_task_t *me, dagger_task_t *t)
{
    dagger__pool *pool = me->ctx->pool;
    for (bool ran = false; atomic_load_explicit(&t->state, memory_order_acquire) != T_DONE &&
                           run_child(me, pool, ran);)
        ran = true;
}

/* May `me` run its children inline (help) while it waits in `ctx`: on a worker of its pool, or on
 * a thread outside it that runs `me` with a slot of its own (run_awaited, a group's end). */
static inline bool may_help(dagger_task_t *me, const dagger_ctx_t *ctx)
{
    return me->help_depth < HELP_DEPTH_MAX && me->ctx == ctx &&
           (dagger__pool_self(me->ctx->pool) >= 0 || dagger__pool_ext_held(me->ctx->pool));
}

/* The same as run_child on a thread outside the pool, for its slot, newest first (dq_pop). A
 * job above `me`'s children that is not one of them (a detached spawn of a child that ran
 * inline) goes to the workers (this thread cannot run it above `me`: it might wait for `me`, and
 * a thread outside the pool cannot suspend), and the next is looked at. */
static bool run_child_outside(dagger_task_t *me, dagger__pool *pool, bool chained)
{
    struct dagger__job *j;
    while ((j = dagger__pool_ext_pop(pool)) != NULL) {
        dagger_task_t *c = (dagger_task_t *)j;
        if (!j->fiber && c->parent == me && dagger__task_runs_anywhere(c)) {
            run_on_stack(me, pool, j, chained, true);
            return true;
        }
        dagger__pool_hand_off(pool, j);
    }
    return false;
}

bool dagger__task_help_group(dagger_task_t *me, dagger_ctx_t *ctx, struct dagger__event *ev,
                             struct group *g)
{
    if (me->help_depth >= HELP_DEPTH_MAX || me->ctx != ctx)
        return false;
    dagger__pool *pool = ctx->pool;
    if (dagger__pool_self(pool) >= 0) {
        for (bool ran = false; !dagger__event_fired(ev) && run_child(me, pool, ran);)
            ran = true;
        dagger__group_flush(); /* the finishes of the children run here, counted in a row */
        return dagger__event_fired(ev);
    }
    /* A thread outside the pool, only while it runs `me` for a group it ends itself (help_group
     * in event.c: it works for that group as a worker would), or from its own spawn past its
     * slot's deep mark (dagger__task_run_on_stack: before, such a task waited for a worker to
     * run its group's tasks from this thread's slot, behind the older tasks there; 5 ms at times
     * in a loop of 1e5 such tasks, bench/RESULTS.md 2026-12-06 03:45). A task it runs because it
     * fetches it (run_awaited) leaves its group's tasks to the workers, so that the thread does not
     * become one more than the pool's (tests/test_core_wait.c,
     * sync_end_in_a_task_runs_on_the_workers). */
    if (!dagger__helping_outside(pool))
        return false;
    /* g's own end on its home thread: the finishes here count in home_done (task.c, group_done),
     * added to `drained` once, when the thread stops running g's tasks (a locked addition a task
     * before: 9 % of main's time in core.nested_groups at t=1). */
    bool home = g && g->home == &dagger__helping_tls;
    int64_t target = home ? atomic_load_explicit(&g->target, memory_order_relaxed) : -1;
    if (home)
        g->home_ending = true;
    for (bool ran = false;
         (home ? atomic_load_explicit(&g->drained, memory_order_acquire) + g->home_done != target
               : !dagger__event_fired(ev)) &&
         run_child_outside(me, pool, ran);)
        ran = true;
    if (home) {
        g->home_ending = false;
        int64_t done = g->home_done;
        g->home_done = 0;
        /* The addition that reaches the target ends the group here, where the only thread that
         * waits on its event is this one: no need to fire it (an exchange less a group). */
        if (done &&
            atomic_fetch_add_explicit(&g->drained, done, memory_order_acq_rel) + done == target)
            return true;
    }
    return dagger__event_fired(ev);
}

DAGGER_TLS uint64_t dagger__outside_spawns;
DAGGER_TLS dagger_ctx_t *dagger__awaited_ctx;
static DAGGER_TLS bool awaited_slot; /* run_awaited's task spawned and claimed a slot */

/* The task run_awaited runs spawns (before the spawn's counts and submit): from here the thread
 * holds an external slot, as for a sync group, so the spawns go to its deque. */
void dagger__task_awaited_spawn(dagger_ctx_t *ctx)
{
    dagger__awaited_ctx = NULL;
    awaited_slot = dagger__pool_ext_claim(ctx->pool);
}

/* Functions whose tasks spawned while a thread outside the pool ran them (run_awaited): a
 * direct-mapped cache of function pointers, shared by every context (a function is one
 * process-wide). A collision forgets one: it is learnt again at its next run. */
#define SPAWNERS 64
static void *_Atomic spawners[SPAWNERS];

static inline unsigned spawner_index(dagger_fn_t fn)
{
    uint64_t h = (uint64_t)(uintptr_t)fn * 0x9E3779B97F4A7C15ull;
    return (unsigned)(h >> 58);
}

static inline bool is_spawner(dagger_fn_t fn)
{
    return atomic_load_explicit(&spawners[spawner_index(fn)], memory_order_relaxed) ==
           (void *)(uintptr_t)fn;
}

/* A thread outside the pool and every task (main) waits for `t`, which no worker took yet: when
 * `t` is the next job of the injection queue, it runs `t` itself, as the end of a sync group runs
 * the group's tasks, instead of sleeping while a worker takes `t` on another core (a round trip
 * of one task from main: 1.1 us, against 0.1 run here). Once `t` spawns, the thread holds an
 * external slot (pool.h), so it works as one more worker: `t`'s spawns go to that deque, where
 * the workers steal them, joins inside `t` run its children from there (help), and past the deep
 * mark a spawn runs at once. The slot is claimed at the first spawn, not before `t` runs: a leaf
 * (the common case here) then costs no claim and no release (core.round_trip steady at t=1: 0.089
 * -> 0.082-0.084 us). The job `t` made ready goes to the workers. False: not taken. Only leaves: a
 * task whose function spawned when run here (a root that fans out) is left to the workers from then
 * on, so that main does not become one thread more than the pool's for a whole computation
 * (core.fib_cutoff at t=2 read 0.78 ms against 0.55, three threads on two cores; a flat loop at t=1
 * 116 ns a task against 27, two threads on one deque). */
static bool run_awaited(dagger_task_t *t)
{
    dagger__pool *pool = t->ctx->pool;
    if (atomic_load_explicit(&t->state, memory_order_relaxed) != T_PENDING ||
        !dagger__task_runs_anywhere(t))
        return false;
    /* Read only now: placement (a device body) rewrites the function of a placed task. */
    dagger_fn_t fn = t->fn;
    if (is_spawner(fn) || !dagger__pool_take_injected_if(pool, &t->job))
        return false;
    if (t->job.fiber) { /* started on a worker since, and suspended: it resumes there */
        dagger__pool_hand_off(pool, &t->job);
        return false;
    }
    dagger_ctx_t *ctx = t->ctx;
    uint64_t spawns = dagger__outside_spawns;
    dagger__awaited_ctx = ctx;
    awaited_slot = false;
    struct dagger__job *next = dagger__task_run(&t->job, NULL);
    dagger__awaited_ctx = NULL;
    if (dagger__outside_spawns != spawns)
        atomic_store_explicit(&spawners[spawner_index(fn)], (void *)(uintptr_t)fn,
                              memory_order_relaxed);
    if (next)
        dagger__pool_submit(pool, next);
    if (awaited_slot) {
        awaited_slot = false;
        dagger__ctx_ext_release(ctx);
    }
    return true;
}

int dagger_wait(dagger_task_t *t)
{
    if (t)
        TASK_MISUSE(t, "dagger_wait");
    if (t && atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE &&
        !atomic_load_explicit(&t->x, memory_order_relaxed))
        return 0;
    dagger_task_t *me = dagger__task_current();
    int rc = check_wait(me, t, "dagger_wait");
    if (rc)
        return rc;
    if (me) {
        if (may_help(me, t->ctx)) {
            help(me, t);
            if (atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE)
                return 0;
        }
    } else if (dagger__self_tls.pool == NULL && run_awaited(t) &&
               atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE) {
        return 0;
    }
    int spin = atomic_load_explicit(&t->external, memory_order_relaxed) ? 0 : DAGGER__WAIT_SPIN;
    return dagger__event_wait_spin(t->ctx, &t->waiters, t->id, spin);
}

int dagger_fetch(dagger_task_t *t, dagger_value_t *out)
{
    if (t)
        TASK_MISUSE(t, "dagger_fetch");
    if (DAGGER_UNLIKELY(!t || atomic_load_explicit(&t->state, memory_order_acquire) != T_DONE ||
                        atomic_load_explicit(&t->x, memory_order_relaxed))) {
        int rc = dagger_wait(t);
        if (rc)
            return rc;
    }
    if (DAGGER_UNLIKELY(t->rc)) {
        dagger__task_observe_failure(t);
        dagger_task_t *me = dagger__task_current();
        /* A body fetching a failed child: settle() chains to it (without the memory to
         * record it, the body's failure names no child; its code is the body's either way). */
        struct task_ext *mx = me && me != t ? dagger__task_ext_get(me) : NULL;
        if (mx) {
            dagger_task_release(mx->nested_fail);
            mx->nested_fail = dagger_task_retain(t);
        }
        dagger__set_errmsg_str(t->rc, t->err && t->err->msg ? t->err->msg : dagger_strerror(t->rc));
        return t->rc;
    }
    if (out) {
        *out = t->result;
        out->flags &= (uint8_t)~DAGGER_VALUE_OWNED;
    }
    return 0;
}

/* The typed fetches: a finished task that succeeded and has no extension record (no guard nor
 * hold to check) gives its result inline; anything else goes through dagger_fetch. */
static inline int fetch_value(dagger_task_t *t, dagger_value_t *out)
{
    if (DAGGER_LIKELY(t && atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE &&
                      !atomic_load_explicit(&t->x, memory_order_relaxed) && !t->rc)) {
        TASK_MISUSE(t, "dagger_fetch");
        *out = t->result;
        out->flags &= (uint8_t)~DAGGER_VALUE_OWNED;
        return 0;
    }
    return dagger_fetch(t, out);
}

static int kind_mismatch(dagger_task_t *t, const dagger_value_t *v, const char *want)
{
    return dagger__set_errmsg(DAGGER_ETYPE, "task %llu '%s' returned a %s, not a %s",
                              (unsigned long long)t->id, dagger__task_display_name(t),
                              dagger_kind_name(v->kind), want);
}

int dagger_fetch_f64(dagger_task_t *t, double *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_f64: out is NULL");
    dagger_value_t v;
    int rc = fetch_value(t, &v);
    if (rc)
        return rc;
    if (v.kind == DAGGER_KIND_F64)
        *out = v.u.f;
    else if (v.kind == DAGGER_KIND_I64)
        *out = (double)v.u.i;
    else
        return kind_mismatch(t, &v, "f64");
    return 0;
}

int dagger_fetch_i64(dagger_task_t *t, int64_t *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_i64: out is NULL");
    dagger_value_t v;
    int rc = fetch_value(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_I64)
        return kind_mismatch(t, &v, "i64");
    *out = v.u.i;
    return 0;
}

int dagger_fetch_bool(dagger_task_t *t, bool *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_bool: out is NULL");
    dagger_value_t v;
    int rc = fetch_value(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_BOOL)
        return kind_mismatch(t, &v, "bool");
    *out = v.u.b;
    return 0;
}

int dagger_fetch_str(dagger_task_t *t, const char **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_str: out is NULL");
    dagger_value_t v;
    int rc = fetch_value(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_STR)
        return kind_mismatch(t, &v, "str");
    *out = v.u.s;
    return 0;
}

int dagger_fetch_ptr(dagger_task_t *t, void **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_ptr: out is NULL");
    dagger_value_t v;
    int rc = fetch_value(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_PTR)
        return kind_mismatch(t, &v, "ptr");
    *out = (void *)v.u.p;
    return 0;
}

int dagger_fetch_blob(dagger_task_t *t, const void **out, size_t *len)
{
    DAGGER_CHECK(out && len, DAGGER_EINVAL, "dagger_fetch_blob: out or len is NULL");
    dagger_value_t v;
    int rc = fetch_value(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_BLOB)
        return kind_mismatch(t, &v, "blob");
    *out = v.u.p;
    *len = v.len;
    return 0;
}

bool dagger_task_done(const dagger_task_t *t)
{
    return t && atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE;
}

int dagger_task_error(const dagger_task_t *t)
{
    if (!dagger_task_done(t))
        return 0;
    if (t->rc)
        dagger__task_observe_failure(t);
    return t->rc;
}

const char *dagger_task_errmsg(const dagger_task_t *t)
{
    if (!dagger_task_done(t) || !t->rc)
        return "";
    dagger__task_observe_failure(t);
    return t->err && t->err->msg ? t->err->msg : dagger_strerror(t->rc);
}

uint64_t dagger_task_id(const dagger_task_t *t) { return t ? t->id : 0; }

const char *dagger_task_name(const dagger_task_t *t)
{
    return t ? dagger__task_display_name(t) : "";
}

int dagger_fetch_chunk(dagger_task_t *t, dagger_chunk_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_chunk: out is NULL");
    dagger_value_t v;
    int rc = fetch_value(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_CHUNK)
        return kind_mismatch(t, &v, "chunk");
    *out = v.u.c;
    return 0;
}
