/* src/core/event.c - one-shot events and the ways to wait on them: a suspended task, a
 * blocked thread. A blocked thread spins briefly, yields the core while its pool lingers
 * (a reply from another rank is due: dagger__pool_linger), then sleeps on a futex.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <sched.h>

#include "core/core_int.h"
#include "trace/trace.h"

struct arm {
    struct dagger__event *ev;
    struct dagger__waiter *node;
    dagger_task_t *task;
};

static void arm_waiter(void *arg)
{
    struct arm *a = arg;
    dagger_task_t *t = a->task;
    /* After a successful push the node belongs to the event: `a` may vanish at any moment. */
    if (!dagger__event_push(a->ev, a->node))
        dagger__pool_submit(t->ctx->pool, &t->job);
}

/* A thread outside the workers (or an aux thread): spin briefly, then sleep. With `poll`, the
 * sleep is cut into slices (POLL_FIRST_NS, doubling up to POLL_MAX_NS) and `poll` runs between
 * them, the node still pushed: the thread ending a sync group takes up the group's tasks that
 * reached a deque after it last looked (event_wait_group). */
#define POLL_FIRST_NS 50000L
#define POLL_MAX_NS 2000000L
/* Where the workers take every core (ctx->wait_yields), the spin yields the core once in this
 * many rounds. A thread outside the pool that waits is then one thread more than the cores, and
 * a `pause` loop kept a worker on its core off it for the whole spin: the second worker of a
 * fan-out from main (core.fib_cutoff at t=2 on 2 cores) took its first job 52-70 us after the
 * first, about the spin's length, and 3 us with the yields (bench/RESULTS.md, 2026-12-06
 * 06:20). With a core free, or with ranks (their progress threads spin), it never yields. */
#define WAIT_YIELD_EVERY 32

static int thread_wait(dagger_ctx_t *ctx, struct dagger__event *ev, int spin, void (*poll)(void *),
                       void *arg)
{
    dagger__group_flush(); /* a worker that blocks (no stack to suspend on) counts first */
    unsigned yield_mask = ctx && ctx->wait_yields ? WAIT_YIELD_EVERY - 1 : UINT_MAX;
    /* Where the workers take every core, the worker that makes the result may share this
     * thread's CPU, and runs only when this thread yields it: from its first yield on, the
     * thread marks its CPU, so that such a worker yields it back at once when it runs dry
     * (dagger__pool_ext_spin). A wait that ends before that yield costs nothing for it. */
    bool marked = false, done = false;
    for (int i = 0; i < spin; i++) { /* ~50 us by default: cheaper than a futex round trip */
        if ((done = dagger__ev_closed(atomic_load_explicit(&ev->head, memory_order_acquire))))
            break;
        if (((unsigned)i & yield_mask) == yield_mask) {
            if (!marked) {
                dagger__pool_ext_spin(ctx->pool, true);
                marked = true;
            }
            sched_yield(); /* see WAIT_YIELD_EVERY and docs/design.md, "Waiting outside a task" */
        } else {
            dagger__cpu_relax();
        }
    }
    if (marked)
        dagger__pool_ext_spin(ctx->pool, false);
    if (done)
        return 0;
    /* Then yield the core rather than sleep, so that the result needs no futex wake-up (60-80
     * us on a virtual machine): while a reply from another rank is due (dagger__pool_linger),
     * and where the workers leave a core free, for ctx->wait_spin_ns more (a result due within
     * about a millisecond: a parallel loop). The latter not for a task that completes from
     * outside the workers (spin 0: a device, another rank), nor with a poll (a group's end). */
    uint64_t until =
        ctx && ctx->wait_spin_ns && spin > 0 && !poll ? dagger__now_ns() + ctx->wait_spin_ns : 0;
    while (ctx) {
        uint64_t now = dagger__now_ns();
        if (now >= until && now >= dagger__pool_linger_until(ctx->pool))
            break;
        if (dagger__ev_closed(atomic_load_explicit(&ev->head, memory_order_acquire)))
            return 0;
        sched_yield();
    }
    _Atomic uint32_t flag = 0;
    struct dagger__waiter node = {.kind = W_THREAD, .target = (void *)&flag};
    if (!dagger__event_push(ev, &node))
        return 0;
    long slice = POLL_FIRST_NS;
    while (!atomic_load_explicit(&flag, memory_order_acquire)) {
        dagger__futex_wait(&flag, 0, poll ? slice : -1);
        if (poll && !atomic_load_explicit(&flag, memory_order_acquire)) {
            poll(arg);
            slice = slice < POLL_MAX_NS / 2 ? slice * 2 : POLL_MAX_NS;
        }
    }
    return 0;
}

int dagger__event_wait(dagger_ctx_t *ctx, struct dagger__event *ev, uint64_t on_id)
{
    return dagger__event_wait_spin(ctx, ev, on_id, DAGGER__WAIT_SPIN);
}

int dagger__event_wait_spin(dagger_ctx_t *ctx, struct dagger__event *ev, uint64_t on_id, int spin)
{
    if (dagger__ev_closed(atomic_load_explicit(&ev->head, memory_order_acquire)))
        return 0;
    dagger__task_bundle_flush(); /* the spawns it holds must not wait for this wait (task.c) */
    dagger_task_t *me = dagger__task_current();
    if (me && dagger__pool_can_suspend(me->ctx->pool)) {
        struct dagger__waiter node = {.kind = W_FIBER, .target = me};
        struct arm a = {ev, &node, me};
        int thread = dagger__pool_self(me->ctx->pool);
        DAGGER__TRACE(dagger__trace_block(me->id, thread, on_id));
        if (dagger__pool_suspend(me->ctx->pool, &me->job, arm_waiter, &a) == 0) {
            dagger__group_flush(); /* what this thread counted before it resumed me */
            dagger__task_set_cur(me);
            me->thread = (int16_t)dagger__pool_self_fresh(me->ctx->pool); /* may be another */
            DAGGER__TRACE(dagger__trace_resume(me->id, me->thread));
            return 0;
        }
        /* No stack to suspend on (out of memory). Blocking this worker instead could deadlock
         * (on one thread the awaited task would never run): the wait fails, and so does the
         * task unless it handles the error. */
        DAGGER__TRACE(dagger__trace_resume(me->id, thread));
        return dagger__set_errmsg(DAGGER_ENOMEM,
                                  "out of memory for a stack to suspend task %llu '%s' on while "
                                  "it waits",
                                  (unsigned long long)me->id, dagger__task_display_name(me));
    }
    return thread_wait(ctx, ev, spin, NULL, NULL);
}

/* A job the ending thread may run for group `g`: one of its tasks, free to run anywhere. */
static bool own_group_task(const struct dagger__job *j, const struct group *g)
{
    const dagger_task_t *t = (const dagger_task_t *)j;
    return t->group == g && dagger__task_runs_anywhere(t);
}

DAGGER_TLS struct dagger__helping dagger__helping_tls;

struct group_help {
    dagger_ctx_t *ctx;
    struct group *g;
    bool slot; /* this thread holds an external slot */
};

/* Its own slot first (pool.h: the group's spawns, newest first, as a worker pops its deque; what
 * it holds that is not for it goes to the workers), then the injection queue, one job at a time,
 * then the tops of the workers' deques, one steal at a time (a worker that took a batch of the
 * slot keeps the rest there: without this, in core.nested, the thread waited idle while a worker
 * ran those tasks one cross-core miss after another: core.nested_median read 22-23 us before,
 * 9-16 with it). One job at a time, never a batch: this thread has no deque workers steal from,
 * so a job it held would wait for it (a batch of 8 cut 14 instructions a task from the nested
 * row, but ran the last long tasks of a group one after the other here while workers idled). The
 * injection queue also reads empty for a moment while a worker takes from it: a few misses in a
 * row, not one, end the help; so does a job from it that is not the group's (it goes back). */
static void help_group(void *arg)
{
    struct group_help *h = arg;
    dagger__pool *pool = h->ctx->pool;
    struct group *g = h->g;
    int64_t target = atomic_load_explicit(&g->target, memory_order_relaxed);
    dagger__helping_tls.g = g; /* the finishes of the tasks run below count here */
    dagger__helping_tls.done = 0;
    /* A task's start right after another's finish here, no user code nor wait between, leans on
     * that finish's stamp (trace.h, dagger__trace_follow). */
    bool ran = false;
    for (int miss = 0; miss < 32;) {
        struct dagger__job *j = h->slot ? dagger__pool_ext_pop(pool) : NULL;
        bool mine = j != NULL;
        if (!j) { /* its own deque is empty: is the group done (its finishes and the others')? */
            if (atomic_load_explicit(&g->drained, memory_order_acquire) +
                    dagger__helping_tls.done ==
                target)
                break;
            if (!(j = dagger__pool_take_injected(pool, 1)) &&
                !(h->slot && (j = dagger__pool_steal_any(pool)))) {
                miss++;
                ran = false;
                dagger__cpu_relax();
                continue;
            }
        }
        miss = 0;
        while (j) { /* a task, then the dependent it made ready, as a worker runs them */
            if (j->fiber || !own_group_task(j, g)) { /* a resumption, or not this group's */
                dagger__pool_hand_off(pool, j);
                if (!mine)
                    miss = 32; /* one from the shared queue: leave the rest to the workers */
                break;
            }
            if (ran)
                DAGGER__TRACE(dagger__trace_follow(((dagger_task_t *)j)->id));
            j = dagger__task_run_outside(j); /* timed when queued to be (task.c) */
            ran = true;
        }
    }
    /* The finishes counted here join the group's count: the one that reaches the target (this
     * addition or a worker's) fires the event. */
    int64_t done = dagger__helping_tls.done;
    dagger__helping_tls.g = NULL;
    dagger__helping_tls.done = 0;
    if (done)
        dagger__queue_group_drain(g, h->ctx, done);
}

int dagger__event_wait_group(dagger_ctx_t *ctx, struct group *g)
{
    /* Only a thread outside every pool and task takes up any of the group's tasks. A task first
     * runs its own children inline (the group's spawns are its children) where it runs on a
     * worker, or on such a thread inside help_group (dagger__task_help_group): no stack switch
     * when none was stolen (tools/icount.c groups: 842-847 -> 791-799 instructions a task); then
     * a task suspends and its worker runs other work; an aux thread waits. */
    dagger_task_t *me = dagger__task_current();
    if (me || dagger__self_tls.pool != NULL) {
        if (me && dagger__task_help_group(me, ctx, &g->ev, g))
            return 0;
        return dagger__event_wait(ctx, &g->ev, 0);
    }
    struct group_help h = {ctx, g, dagger__pool_ext_held(ctx->pool)};
    help_group(&h);
    /* While it sleeps, the group's tasks may still reach a deque it can take from (a worker
     * makes the dependents of a task ready there, then runs a long one): it looks again between
     * slices of its sleep, rather than leave them to a worker that may be busy for long (or wait
     * for them: tests/test_pool_ext.c, the stealing case). */
    return thread_wait(ctx, &g->ev, DAGGER__WAIT_SPIN, help_group, &h);
}

bool dagger__event_fired(struct dagger__event *ev)
{
    return dagger__ev_closed(atomic_load_explicit(&ev->head, memory_order_acquire));
}
