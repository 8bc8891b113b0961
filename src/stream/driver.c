/* src/stream/driver.c - the body of every streaming task: take, run, push, again.
 *
 * Design: the driver runs inside the core task the user holds, so dagger_tc_cancelled,
 * dagger_fail and fetch of the handle work unchanged. Each run takes one value from each input
 * edge (waiting while it is empty), substitutes them in the task's own argument array
 * (dagger__task_args), calls the user's function with the task's own tc and args, pushes the
 * result into every output edge (waiting while one is full) and only then releases the input
 * slots, since the result may point into them. Waiting suspends the task's fiber on a fresh
 * core event (never the worker thread).
 * Wake-ups: a push wakes a waiting consumer at once; a pop wakes a waiting producer only once
 * half the ring is free, so a fast consumer and a slow producer do not trade a switch per value.
 * A driver flushes the producer wake-ups it deferred before it suspends, and an ending node
 * wakes everyone it is connected to, so nobody sleeps with its condition met. Each check
 * after a publication is ordered by seq_cst fences against the other side's recheck (Dekker).
 * Ending: when the loop ends (max_evals, dagger_finish_stream, an input closed and drained,
 * every consumer gone, a stop of the region, a failure, a cancel) the node closes its edges
 * (region.c) and its task completes at once, whatever the other nodes do: a node that a
 * failure stopped (or whose inputs it closed) fails with the origin's error, a source that a
 * teardown stopped is cancelled.
 * Steady state allocates nothing: values of fixed size live in the slots, strings and blobs in
 * a byte area per edge allocated at the first one.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/alloc.h"
#include "stream/stream_int.h"

enum { WAIT_OK = 0, WAIT_END, WAIT_FAIL }; /* WAIT_FAIL: no stack to wait on (recorded) */

/* Producer waiters whose ring has room again: woken before this node suspends, after the
 * releases not yet published are. */
static void flush_inputs(struct node *n)
{
    for (uint32_t k = 0; k < n->nins; k++) {
        struct edge *e = n->ins[k].e;
        if (atomic_load_explicit(&e->tail, memory_order_relaxed) != e->tpos)
            atomic_store_explicit(&e->tail, e->tpos, memory_order_release);
    }
    dagger__fence_seq_cst(); /* the project fence: cheaper on x86, seen by TSan */
    for (uint32_t k = 0; k < n->nins; k++) {
        struct edge *e = n->ins[k].e;
        if (atomic_load_explicit(&e->prod_wait, memory_order_relaxed)) {
            uint64_t h = atomic_load_explicit(&e->head, memory_order_acquire);
            if (h - e->tpos < e->cap)
                dagger__stream_fire(n->r, &e->prod_wait);
        }
    }
}

/* Suspend on `w` until woken; `ready` is rechecked after the event is published. When the task
 * cannot be suspended (out of memory for a stack) the event is taken back and the enclosing
 * function returns WAIT_FAIL (the caller fails the task with the message of the wait). */
#define WAIT_ON(n, w, ready)                                                                       \
    do {                                                                                           \
        struct dagger__event ev_;                                                                  \
        dagger__event_init(&ev_);                                                                  \
        atomic_store_explicit((w), &ev_, memory_order_seq_cst);                                    \
        if (ready) {                                                                               \
            if (atomic_exchange_explicit((w), NULL, memory_order_seq_cst) == &ev_)                 \
                break;                                                                             \
        }                                                                                          \
        if (dagger__event_wait((n)->r->ctx, &ev_, dagger_task_id((n)->task)) < 0) {                \
            /* A waker that already took the event fires it into the void: wait for that. */       \
            if (atomic_exchange_explicit((w), NULL, memory_order_seq_cst) != &ev_)                 \
                while (!dagger__event_fired(&ev_))                                                 \
                    dagger__cpu_relax();                                                           \
            return WAIT_FAIL;                                                                      \
        }                                                                                          \
    } while (0)

static inline int hard_stopped(struct node *n)
{
    return atomic_load_explicit(&n->stop, memory_order_seq_cst) == STOP_HARD;
}

/* Wait until input `e` has a value. WAIT_END: it is closed and drained, or the node must stop. */
static int wait_value(struct node *n, struct edge *e, uint64_t t)
{
    for (;;) {
        if (e->head_cache > t)
            return WAIT_OK;
        e->head_cache = atomic_load_explicit(&e->head, memory_order_acquire);
        if (e->head_cache > t)
            return WAIT_OK;
        if (atomic_load_explicit(&e->closed, memory_order_acquire)) {
            e->head_cache = atomic_load_explicit(&e->head, memory_order_acquire);
            return e->head_cache > t ? WAIT_OK : WAIT_END;
        }
        if (hard_stopped(n))
            return WAIT_END;
        if (n->port && dagger__stream_port_idle(n))
            return WAIT_END;
        flush_inputs(n);
        WAIT_ON(n, &e->cons_wait,
                atomic_load_explicit(&e->head, memory_order_seq_cst) > t ||
                    atomic_load_explicit(&e->closed, memory_order_seq_cst) || hard_stopped(n));
    }
}

/* Wait until output `e` has room. WAIT_END: the node must stop; *dead: the consumer is gone. */
static int wait_room(struct node *n, struct edge *e, uint64_t h, bool *dead)
{
    for (;;) {
        if (h - e->tail_cache < e->cap)
            return WAIT_OK;
        e->tail_cache = atomic_load_explicit(&e->tail, memory_order_acquire);
        if (h - e->tail_cache < e->cap)
            return WAIT_OK;
        if (atomic_load_explicit(&e->dead, memory_order_acquire)) {
            *dead = true;
            return WAIT_OK;
        }
        if (hard_stopped(n))
            return WAIT_END;
        flush_inputs(n);
        WAIT_ON(n, &e->prod_wait,
                h - atomic_load_explicit(&e->tail, memory_order_seq_cst) < e->cap ||
                    atomic_load_explicit(&e->dead, memory_order_seq_cst) || hard_stopped(n));
    }
}

/* Push a copy of `v` into `e`. Returns 0, 1 when the consumer is gone, WAIT_END (as -1) to stop,
 * or a negative error for a value that cannot be streamed. */
static int push(dagger_tc_t *tc, struct node *n, struct edge *e, const dagger_value_t *v)
{
    uint64_t h = atomic_load_explicit(&e->head, memory_order_relaxed);
    bool dead = false;
    int w = wait_room(n, e, h, &dead);
    if (w == WAIT_FAIL)
        return dagger_fail(tc, DAGGER_ENOMEM, "%s", dagger_last_errmsg());
    if (w != WAIT_OK)
        return -1;
    if (dead)
        return 1;
    dagger_value_t *slot = &e->slots[h & e->mask];
    *slot = *v;
    slot->flags = 0;
    if (v->kind == DAGGER_KIND_STR || v->kind == DAGGER_KIND_BLOB) {
        size_t need = (size_t)v->len + (v->kind == DAGGER_KIND_STR);
        if (need > e->slot_bytes)
            return dagger_fail(tc, DAGGER_ERANGE,
                               "a %u-byte %s does not fit the stream's %u-byte value slots "
                               "(raise dagger_stream_opts.max_value_bytes)",
                               v->len, dagger_kind_name(v->kind), e->slot_bytes);
        if (!e->bytes) {
            e->bytes = dagger__malloc((size_t)(e->mask + 1) * e->slot_bytes);
            if (!e->bytes)
                return dagger_fail(tc, DAGGER_ENOMEM,
                                   "out of memory for the %llu x %u-byte "
                                   "value slots of a stream",
                                   (unsigned long long)(e->mask + 1), e->slot_bytes);
        }
        char *dst = e->bytes + (size_t)(h & e->mask) * e->slot_bytes;
        if (v->len)
            memcpy(dst, v->u.p, v->len);
        if (v->kind == DAGGER_KIND_STR)
            dst[v->len] = '\0';
        slot->u.p = dst;
    } else if (v->kind == DAGGER_KIND_TASK) {
        return dagger_fail(tc, DAGGER_ETYPE, "a streaming task cannot stream task handles");
    }
    atomic_store_explicit(&e->head, h + 1, memory_order_release);
    dagger__fence_seq_cst(); /* the project fence: cheaper on x86, seen by TSan */
    dagger__stream_fire(n->r, &e->cons_wait);
    return 0;
}

/* Push `v` to every consumer. Returns 0, -1 to stop (also when every consumer is gone), or an
 * error already recorded on the task. */
static int push_all(dagger_tc_t *tc, struct node *n, const dagger_value_t *v)
{
    uint32_t gone = 0;
    for (uint32_t k = 0; k < n->nouts; k++) {
        int rc = push(tc, n, n->outs[k], v);
        if (rc < -1)
            return rc;
        if (rc == -1)
            return -1;
        gone += rc == 1;
    }
    /* Every consumer gone: with teardown the region stops anyway; without it the producer
     * keeps running until its own end or a cancel, as in Dagger.jl. */
    return n->nouts && gone == n->nouts && n->opts.teardown ? -1 : 0;
}

/* Give the slots of this run back: published every tbatch values (flush_inputs publishes the
 * rest before the node suspends; an ending node marks its inputs dead instead). */
static void release_inputs(struct node *n)
{
    for (uint32_t k = 0; k < n->nins; k++) {
        struct edge *e = n->ins[k].e;
        uint64_t t = ++e->tpos;
        if (t - atomic_load_explicit(&e->tail, memory_order_relaxed) < e->tbatch)
            continue;
        atomic_store_explicit(&e->tail, t, memory_order_release);
        if (e->cap - (e->head_cache - t) >= e->thr) {
            dagger__fence_seq_cst(); /* the project fence: cheaper on x86, seen by TSan */
            dagger__stream_fire(n->r, &e->prod_wait);
        }
    }
}

/* Fetch the non-streaming inputs and syncdeps. Returns 0 or the failure (recorded). */
static int start_inputs(dagger_tc_t *tc, struct node *n, dagger_value_t *args)
{
    for (uint32_t k = 0; k < n->nexts; k++) {
        dagger_value_t v;
        dagger_task_t *d = n->exts[k].t;
        int rc = dagger_fetch(d, &v);
        if (rc)
            return dagger_fail(tc, DAGGER_EUPSTREAM, "input %u (task %llu '%s') failed: %s",
                               n->exts[k].argi, (unsigned long long)dagger_task_id(d),
                               dagger_task_name(d), dagger_task_errmsg(d));
        v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
        args[n->exts[k].argi] = v;
    }
    for (uint32_t k = 0; k < n->nsync; k++) {
        dagger_task_t *d = n->sync[k];
        if (dagger_wait(d) == 0 && dagger_task_error(d))
            return dagger_fail(tc, DAGGER_EUPSTREAM, "syncdep (task %llu '%s') failed: %s",
                               (unsigned long long)dagger_task_id(d), dagger_task_name(d),
                               dagger_task_errmsg(d));
    }
    return 0;
}

int dagger__stream_driver(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_task_t *self = dagger_tc_task(tc);
    /* The reference keeps the region alive across the CAS below: a cancel may end the node
     * (and drop the node's own reference) at any moment before it. */
    bool early;
    struct node *n;
    /* A driver that its bulk block could not hold (out of memory) starts at once, maybe before
     * spawn_node recorded its node: the record follows (then the region is not launched:
     * `early`), or a cancel when recording fails, or (the region gone) the cancel that ended
     * it. */
    while (!(n = dagger__stream_acquire(self, &early)) && !early && !dagger_tc_cancelled(tc))
        dagger__task_yield();
    if (!n) {
        if (early)
            return dagger_fail(tc, DAGGER_ENOMEM,
                               "out of memory holding this streaming task until its region "
                               "started; the region is cancelled");
        return DAGGER_ECANCELED; /* ended by a cancel, its region maybe already gone */
    }
    struct dagger_stream *r = n->r;
    int expect = N_NEW;
    bool won = atomic_compare_exchange_strong(&n->state, &expect, N_RUNNING);
    /* Won: the node's reference is now this driver's, released when it ends. */
    dagger__stream_release(r);
    if (!won)
        return DAGGER_ECANCELED; /* ended by a cancel before it started */
    uint32_t nargs;
    dagger_value_t *args = dagger__task_args(self, &nargs);
    int kind = END_OK, rc = start_inputs(tc, n, args);
    if (rc)
        kind = END_ERROR;
    int64_t evals = 0, max = n->opts.max_evals;
    /* Ended by a stop of the region, not by its own end. Only a source can be torn down: a
     * task with inputs ends when they close, which a teardown of its sources causes. */
    bool stopped = false;
    while (kind == END_OK) {
        int st = atomic_load_explicit(&n->stop, memory_order_acquire);
        if (st == STOP_HARD || (st == STOP_DRAIN && n->nins == 0)) {
            stopped = true;
            break;
        }
        bool end = false;
        for (uint32_t k = 0; k < n->nins && !end; k++) {
            struct edge *e = n->ins[k].e;
            uint64_t t = e->tpos;
            int w = wait_value(n, e, t);
            if (w == WAIT_FAIL) {
                rc = dagger_fail(tc, DAGGER_ENOMEM, "%s", dagger_last_errmsg());
                kind = END_ERROR;
            }
            if (w != WAIT_OK) {
                stopped = hard_stopped(n) && !atomic_load(&e->closed);
                end = true;
                break;
            }
            args[e->argi] = e->slots[t & e->mask];
        }
        if (end)
            break;
        dagger_value_t res = dagger_nil();
        int r0 = n->fn(tc, a, &res);
        int failed = r0 ? r0 : dagger__task_failed(self);
        if (failed) {
            rc = r0;
            kind = END_ERROR;
            break;
        }
        evals++;
        if (n->finish) {
            if (n->last.kind != DAGGER_KIND_NIL) {
                int prc = push_all(tc, n, &n->last);
                if (prc < -1) {
                    rc = prc;
                    kind = END_ERROR;
                }
            }
            break;
        }
        int prc = push_all(tc, n, &res);
        if (prc < -1) {
            rc = prc;
            kind = END_ERROR;
            break;
        }
        release_inputs(n);
        if (prc == -1) { /* a stop, or (with teardown) every consumer gone */
            stopped = true;
            break;
        }
        if (max > 0 && evals >= max)
            break;
        /* A node with neither inputs nor outputs never waits: let the other drivers of its
         * worker run between its runs, or it would starve them (and the region never ends). */
        if (n->nins == 0 && n->nouts == 0)
            dagger__task_yield();
    }
    for (uint32_t k = 0; k < n->nins; k++)
        args[n->ins[k].e->argi] = dagger_nil();
    if (dagger_tc_cancelled(tc) && kind == END_OK)
        kind = END_CANCEL;
    if (n->port) {
        int prc = dagger__stream_port_end(tc, n, &kind);
        if (prc)
            rc = prc;
    }
    atomic_store(&n->state, N_ENDED);
    dagger__stream_node_end(n, kind);

    /* Each task completes when its own loop ends, whatever the others do (Dagger.jl: fetch(A)
     * returns after A's own runs). One that a failure elsewhere stopped, or whose inputs it
     * closed, fails with the origin's error; one that a teardown stopped is cancelled. */
    struct node *origin = atomic_load(&r->err_origin);
    bool own_end = (n->finish && !(n->port && n->port->stopped)) || (max > 0 && evals >= max);
    if (kind != END_ERROR && origin && origin != n && !own_end && !dagger_tc_cancelled(tc)) {
        dagger_task_t *o = origin->task;
        if (dagger_wait(o) != 0) { /* the message below still names the origin */
        }
        rc = dagger_fail(tc, DAGGER_EUPSTREAM, "the streaming region stopped because %s",
                         dagger_task_errmsg(o));
    } else if (kind == END_OK && stopped && !own_end && n->nins == 0) {
        rc = dagger_fail(tc, DAGGER_ECANCELED,
                         "the streaming region was torn down while this task was running");
    } else if (kind == END_OK && n->finish) {
        *out = n->result;
    }
    dagger__stream_release(r);
    return rc;
}

int dagger_finish_stream(dagger_tc_t *tc, dagger_value_t last, dagger_value_t result)
{
    dagger_task_t *self = tc ? dagger_tc_task(tc) : NULL;
    struct node *n = self ? dagger__stream_lookup(self) : NULL;
    DAGGER_CHECK(n && atomic_load(&n->state) == N_RUNNING, DAGGER_ESTATE,
                 "dagger_finish_stream: the calling task is not a running streaming task");
    /* Copies that live until the task ends: the caller's buffers may not outlive the body. */
    if (last.kind == DAGGER_KIND_STR)
        last = dagger_str_copy(tc, last.u.s);
    else if (last.kind == DAGGER_KIND_BLOB)
        last = dagger_blob_copy(tc, last.u.p, last.len);
    if (result.kind == DAGGER_KIND_STR)
        result = dagger_str_copy(tc, result.u.s);
    else if (result.kind == DAGGER_KIND_BLOB)
        result = dagger_blob_copy(tc, result.u.p, result.len);
    n->last = last;
    n->result = result;
    n->finish = true;
    return 0;
}
