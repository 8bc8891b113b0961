/* src/core/parfor.c - dagger_parallel_for: a range of indices split recursively in halves into
 * tasks, each leaf a plain call of the user's function over a sub-range.
 *
 * Design: a range task splits its range while its split budget lasts (and, with an explicit
 * grain, while it is larger than the grain): it spawns the upper half as a child task and keeps
 * the lower half, then handles what is left and joins its children, newest first. With the
 * automatic grain what is left is one leaf. With an explicit grain the task halves it down to
 * the grain itself and runs the leaves in index order, the upper halves pending on a small
 * stack; before each leaf, if its worker's deque is empty (the pool is "hungry": a thief took
 * everything, or nothing was there), the largest pending range becomes a child task (the lazy
 * binary splitting of Tzannes et al.). The leaves are those of the full halving, whoever runs
 * them, but a grain-1 loop of 1e6 indices makes tens of tasks, not 1e6 (a task per leaf cost
 * about 60 ns an index, 10x a leaf call and a look at the deque). The join is dagger_wait, which
 * first pops the task's own children from the bottom of its worker's deque and runs them inline
 * (the fork-join of Cilk and TBB); a child stolen by another worker is awaited by suspending the
 * task, never the thread. The budget starts at ceil(log2(workers)) + 2 halvings (about 4 tasks per
 * worker); with the automatic grain, a range task that runs on another thread than the one that
 * spawned it was stolen, so a worker ran out of work: its budget is topped up to
 * ceil(log2(workers)) + 1, so that the stolen range splits again for the next thief (the
 * demand-driven split of TBB's auto_partitioner); with an explicit grain the lazy splits do that.
 * The caller joins the root task (inside a task: it suspends; elsewhere: it sleeps). The root
 * is spawned outside the caller's open task-queue blocks and spawn hooks: a parallel_for is a
 * complete wait by itself, so a BULK block must not hold its root until the block ends.
 * Errors: the first leaf to fail claims the run's error (code, "parallel_for [lo, hi): text");
 * from then on no range splits further and leaves that have not started are skipped. A cancel
 * of the calling task (dagger_cancel) stops the run the same way, with DAGGER_ECANCELED, as
 * soon as a range task sees it (before it splits and before its leaf runs). Its task
 * fails with the same message (a trace shows it); every child failure is read by its parent's
 * join, so none counts as unfetched.
 * A range task's one argument points to its range in the frame of its spawner (a spawn with
 * one pointer costs about half of one with the five values it needs).
 * Invariants: the run's state lives in the caller's frame and each range in its spawner's, and
 * both outlive the tasks that read them: each task joins its children before it returns and the
 * caller joins the root. A child that cannot be allocated leaves its half to the task that would
 * have spawned it (no index lost).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"

/* One call of dagger_parallel_for. */
struct pf {
    dagger_range_fn_t fn;
    void *ud;
    int64_t grain;        /* > 0: split while larger; 0: split while the budget lasts */
    int refill;           /* automatic grain: the budget a stolen range is topped up to */
    dagger_task_t *owner; /* the task that called dagger_parallel_for, or NULL (main) */
    _Atomic int failed;   /* set once, by the first failure (a leaf, or a child that never ran) */
    int rc; /* written once by whoever set failed; read by the caller after the join */
    char msg[512];
};

/* A range task's one argument: its range, read once when it starts. It lives in the frame of
 * the task that spawned it (or of the caller, for the root), which joins it before returning. */
struct node {
    struct pf *st;
    int64_t lo, hi;
    int32_t budget; /* automatic grain: halvings left */
    int32_t from;   /* the worker that spawned it; FROM_CALLER for the root */
};
#define FROM_CALLER (-2) /* the root: not stolen */
/* Children per range task. A task that has split MAX_KIDS times hands the rest of its range to
 * a fresh task instead of running it, so every frame stays small: joins run children inline,
 * one frame above the other, maybe on a fiber's stack. */
#define MAX_KIDS 16
/* Spin rounds (about 25 ns each) of a caller outside the pool before it sleeps. */
#define OUTSIDE_SPIN 100

/* Spawn a range task for `n` (copied by the task when it starts; `n` must outlive it). */
static dagger_task_t *spawn_range(dagger_ctx_t *ctx, struct node *n);

/* Wait until `t` is done. A wait inside a task fails only when no stack is free to suspend on:
 * the state must outlive `t`, so let others run and try again (as dagger_queue_end does). */
static void join(dagger_task_t *t)
{
    while (dagger_wait(t) != 0)
        dagger__task_yield();
}

/* Record the run's first failure; later ones are dropped. Returns whether this one won. */
static bool claim(struct pf *st, int code, int64_t lo, int64_t hi, const char *text)
{
    if (atomic_exchange_explicit(&st->failed, 1, memory_order_relaxed))
        return false;
    st->rc = code;
    snprintf(st->msg, sizeof st->msg, "parallel_for [%lld, %lld): %s", (long long)lo, (long long)hi,
             text);
    return true;
}

/* Whether the run must stop: a leaf failed, or the calling task was cancelled (the first range
 * task to see the cancel claims DAGGER_ECANCELED for its range). */
DAGGER_NOINLINE static bool cancelled(struct pf *st, int64_t lo, int64_t hi)
{
    char text[96];
    snprintf(text, sizeof text, "the calling task %llu was cancelled",
             (unsigned long long)st->owner->id);
    claim(st, DAGGER_ECANCELED, lo, hi, text);
    return true;
}

/* Inline: run_leaves asks before every leaf (a call there cost 5-20 % of a leaf of one index,
 * depending on where the code lay). */
static inline bool stopped(struct pf *st, int64_t lo, int64_t hi)
{
    if (atomic_load_explicit(&st->failed, memory_order_relaxed))
        return true;
    if (!st->owner || !atomic_load_explicit(&st->owner->cancel, memory_order_acquire))
        return false;
    return cancelled(st, lo, hi);
}

/* The leaf [lo, hi) of task `t` returned `r` (or called dagger_fail): claim the run's error and
 * fail the task with the same message. Returns the task's code. */
static int leaf_failed(dagger_task_t *t, struct pf *st, int64_t lo, int64_t hi, int r)
{
    char text[400];
    int code = r;
    if (t->err) { /* dagger_fail: its text, without the "task N 'name': " prefix */
        code = t->err->code;
        snprintf(text, sizeof text, "%s",
                 t->err->root && t->err->root->text ? t->err->root->text
                 : t->err->msg                      ? t->err->msg
                                                    : dagger_strerror(code));
    } else {
        if (r > 0 || strcmp(dagger_err_name(r), "DAGGER_E?") == 0)
            code = DAGGER_ETASK;
        const struct task_ext *x = dagger__task_x(t);
        if (x && x->nested_fail) /* a fetch inside the leaf failed: its message says why */
            snprintf(text, sizeof text, "%s", dagger_task_errmsg(x->nested_fail));
        else if (code == r)
            snprintf(text, sizeof text, "the leaf returned %s (%s)", dagger_err_name(r),
                     dagger_strerror(r));
        else
            snprintf(text, sizeof text, "the leaf returned %d", r);
    }
    claim(st, code, lo, hi, text);
    if (!t->err)
        dagger__task_failf(t, code, "parallel_for [%lld, %lld): %s", (long long)lo, (long long)hi,
                           text);
    return code;
}

/* Join the children kid[0..nk), newest first (the bottom of this worker's deque), reading each
 * one's failure so that none is left unfetched. */
struct kid {
    dagger_task_t *t;
    struct node n;
};

static void join_kids(struct pf *st, struct kid *kid, int nk)
{
    while (nk > 0) {
        nk--;
        join(kid[nk].t);
        int krc = dagger_task_error(kid[nk].t);
        if (krc) /* a no-op unless the child failed before its leaf ran (its range is lost) */
            claim(st, krc, kid[nk].n.lo, kid[nk].n.hi, dagger_task_errmsg(kid[nk].t));
        dagger_task_release(kid[nk].t);
    }
}

/* The leaves of [lo, hi) at an explicit grain, on task `me`: the range is halved down to the
 * grain as the eager split would, the lower half first, with the upper halves waiting in
 * `up` (split points, the newest last: pending range k is [up[k], k ? up[k - 1] : hi)). Before
 * each leaf, if the pool is hungry (this worker's deque is empty), the oldest pending range,
 * the largest, becomes a child task (kid[*nk]); the 17th goes with everything left, and this
 * task stops. Returns the leaves' code (0, or the first failure's). */
static int run_leaves(dagger_task_t *me, struct pf *st, int64_t lo, int64_t hi, struct kid *kid,
                      int *nk, int self)
{
    dagger_tc_t *tc = (dagger_tc_t *)me;
    dagger__pool *pool = me->ctx->pool;
    uint64_t grain = (uint64_t)st->grain;
    int64_t up[64]; /* each split at least halves a range of at most 2^64 - 1 indices */
    int nup = 0;
    int64_t x = lo, e = hi;
    for (;;) {
        if (stopped(st, x, e))
            return 0;
        while ((uint64_t)e - (uint64_t)x > grain) { /* the eager split's halving, kept here */
            e = (int64_t)((uint64_t)x + ((uint64_t)e - (uint64_t)x) / 2);
            up[nup++] = e;
        }
        if (nup > 0 && dagger__pool_hungry(pool)) {
            struct node *n = &kid[*nk].n;
            if (*nk < MAX_KIDS) { /* the oldest pending range: [up[0], hi) */
                *n = (struct node){st, up[0], hi, 0, self};
                kid[*nk].t = spawn_range(me->ctx, n);
                if (kid[*nk].t) {
                    (*nk)++;
                    hi = up[0];
                    nup--;
                    memmove(up, up + 1, (size_t)nup * sizeof *up);
                }
            } else { /* the 17th: everything left goes, this leaf included */
                *n = (struct node){st, x, hi, 0, self};
                kid[*nk].t = spawn_range(me->ctx, n);
                if (kid[*nk].t) {
                    (*nk)++;
                    return 0;
                }
            }
        }
        int r = st->fn(tc, x, e, st->ud);
        if (r != 0 || me->err)
            return leaf_failed(me, st, x, e, r);
        if (nup == 0)
            return 0;
        x = e;
        nup--;
        e = nup ? up[nup - 1] : hi;
    }
}

static int range_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    dagger_task_t *me = (dagger_task_t *)tc;
    uint32_t nargs = 0;
    const struct node *in = dagger__task_args(me, &nargs)[0].u.p;
    struct pf *st = in->st;
    int64_t lo = in->lo, hi = in->hi;
    int32_t budget = in->budget;
    int self = dagger_tc_thread(tc);
    if (budget < st->refill && in->from != FROM_CALLER && in->from != self)
        budget = st->refill; /* stolen: split again for the next thief */
    struct kid kid[MAX_KIDS + 1];
    int nk = 0;
    bool handed = false; /* the rest went to a fresh task: no leaf here */
    for (;;) {
        uint64_t size = (uint64_t)hi - (uint64_t)lo; /* no overflow for any int64 pair */
        if (size < 2 || stopped(st, lo, hi))
            break;
        if ((st->grain > 0 && size <= (uint64_t)st->grain) || budget <= 0)
            break;
        struct node *n = &kid[nk].n;
        *n = (struct node){st, lo, hi, budget, self};
        if (nk < MAX_KIDS) {
            n->lo = (int64_t)((uint64_t)lo + size / 2);
            n->budget = budget - 1;
        }
        kid[nk].t = spawn_range(me->ctx, n);
        if (!kid[nk].t) /* out of memory: this task keeps the whole rest */
            break;
        if (nk++ == MAX_KIDS) {
            handed = true;
            break;
        }
        hi = n->lo;
        budget--;
    }
    int rc = 0;
    if (!handed && st->grain > 0) {
        rc = run_leaves(me, st, lo, hi, kid, &nk, self);
    } else if (!handed && !stopped(st, lo, hi)) {
        int r = st->fn(tc, lo, hi, st->ud);
        if (r != 0 || me->err)
            rc = leaf_failed(me, st, lo, hi, r);
    }
    join_kids(st, kid, nk);
    return rc;
}

static dagger_task_t *spawn_range(dagger_ctx_t *ctx, struct node *n)
{
    dagger_value_t arg = dagger_ptr(n);
    return dagger__task_spawn_nohook(ctx, NULL, range_fn, "parallel_for", &arg, 1);
}

int dagger_parallel_for(dagger_ctx_t *ctx, int64_t begin, int64_t end, int64_t grain,
                        dagger_range_fn_t fn, void *ud)
{
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_parallel_for: the context is NULL");
    DAGGER_CHECK(fn, DAGGER_EINVAL, "dagger_parallel_for: fn is NULL");
    DAGGER_CHECK(end >= begin, DAGGER_EINVAL,
                 "dagger_parallel_for: end %lld is before begin %lld (an empty range has end == "
                 "begin)",
                 (long long)end, (long long)begin);
    if (begin == end)
        return 0;
    struct pf st;
    memset(&st, 0, sizeof st);
    st.fn = fn;
    st.ud = ud;
    st.owner = dagger__task_current();
    st.grain = grain > 0 ? grain : 0;
    atomic_init(&st.failed, 0);
    int lg = 0;
    while ((1 << lg) < ctx->nthreads && lg < 30)
        lg++;
    st.refill = grain > 0 ? 0 : lg + 1;
    struct node n = {&st, begin, end, lg + 2, FROM_CALLER};
    /* Outside the caller's blocks: none may hold, chain or count the root (see the top). */
    struct frame **slot = dagger__queue_frames_slot();
    struct frame *open = *slot;
    *slot = NULL;
    dagger_task_t *root = spawn_range(ctx, &n);
    *slot = open;
    DAGGER_CHECK(root, DAGGER_ENOMEM, "dagger_parallel_for: out of memory for the root task");
    if (dagger__task_current()) {
        join(root);
    } else {
        /* A thread outside the pool: a loop outlasts a futex wake-up, and spinning here would
         * take a core from the workers that run it (on 2 cores a 50 us spin delayed the root's
         * start by as much), so spin only briefly. Such a wait cannot fail. */
        int wrc = dagger__event_wait_spin(ctx, &root->waiters, root->id, OUTSIDE_SPIN);
        DAGGER_ASSERT(wrc == 0);
        (void)wrc;
    }
    int rrc = dagger_task_error(root);
    if (rrc)
        claim(&st, rrc, begin, end, dagger_task_errmsg(root));
    dagger_task_release(root);
    if (atomic_load_explicit(&st.failed, memory_order_relaxed))
        return dagger__set_errmsg_str(st.rc, st.msg);
    return 0;
}
