/* src/core/deadlock.c - refusing waits that can never end: a task waiting for a task that
 * depends on it (Dagger.jl's "cannot fetch result of dominated thunk").
 *
 * Design: a wait from inside task `me` for an unfinished task `t` deadlocks exactly when `t`
 * depends on `me` through inputs and syncdeps. The walk goes downstream from `me` along its
 * waiter list (the dependents that registered on it) rather than upstream from `t`: every task
 * met this way waits for `me`, which is running, so none of them can start, finish or free its
 * records while the walk reads them; an upstream walk would meet tasks finishing concurrently.
 * Two loads end the common cases: an awaited task without inputs or syncdeps (a flag fixed at
 * spawn), a waiter that nothing depends on. The walk visits at most WALK_MAX tasks; past that
 * it cannot tell and lets the wait go.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"

#define WALK_MAX 4096
#define WALK_INLINE 16

/* Small walks (the common case) stay on the stack and find duplicates by a scan; past
 * WALK_INLINE tasks the walk moves to the heap with a hash set. */
struct walk {
    dagger_task_t **task; /* visited tasks in visit order */
    int32_t *from;        /* index of the task whose waiter list led here, -1 for `me` */
    dagger_task_t **set;  /* open-addressing set of visited tasks; NULL while inline */
    uint32_t n, cap, setcap;
};

static int check_enabled(void)
{
    static _Atomic int enabled = -1;
    int e = atomic_load_explicit(&enabled, memory_order_relaxed);
    if (DAGGER_UNLIKELY(e < 0)) {
        const char *v = getenv("DAGGER_DEADLOCK_CHECK");
        e = !(v && strcmp(v, "0") == 0);
        atomic_store_explicit(&enabled, e, memory_order_relaxed);
    }
    return e;
}

static uint32_t slot_of(const dagger_task_t *t, uint32_t setcap)
{
    uint64_t h = (uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & (setcap - 1);
}

/* Insert `t`; false when it was already there. */
static bool set_add(dagger_task_t **set, uint32_t setcap, dagger_task_t *t)
{
    for (uint32_t i = slot_of(t, setcap);; i = (i + 1) & (setcap - 1)) {
        if (set[i] == t)
            return false;
        if (!set[i]) {
            set[i] = t;
            return true;
        }
    }
}

/* Move to heap arrays of WALK_MAX entries. Returns false when out of memory. */
static bool grow(struct walk *w)
{
    uint32_t setcap = 2 * WALK_MAX;
    dagger_task_t **task = dagger__malloc(WALK_MAX * sizeof *task);
    int32_t *from = dagger__malloc(WALK_MAX * sizeof *from);
    dagger_task_t **set = dagger__calloc(setcap, sizeof *set);
    if (!task || !from || !set) {
        dagger__free(task);
        dagger__free(from);
        dagger__free(set);
        return false;
    }
    memcpy(task, w->task, w->n * sizeof *task);
    memcpy(from, w->from, w->n * sizeof *from);
    for (uint32_t i = 0; i < w->n; i++)
        set_add(set, setcap, task[i]);
    w->task = task;
    w->from = from;
    w->set = set;
    w->cap = WALK_MAX;
    w->setcap = setcap;
    return true;
}

/* Record `d` as seen; false when it was seen before. */
static bool seen_add(struct walk *w, dagger_task_t *d)
{
    if (w->set)
        return set_add(w->set, w->setcap, d);
    for (uint32_t i = 0; i < w->n; i++)
        if (w->task[i] == d)
            return false;
    return true;
}

static void append(char *buf, size_t cap, const char *s)
{
    size_t used = strlen(buf);
    if (used + 1 < cap)
        snprintf(buf + used, cap - used, "%s", s);
}

static int report(const struct walk *w, dagger_task_t *me, dagger_task_t *t, uint32_t at,
                  const char *what)
{
    char chain[192] = "";
    int hops = 0;
    for (int32_t i = (int32_t)at; i >= 0; i = w->from[i], hops++) {
        if (hops == 8) { /* long chains: the first hops, then the last one */
            append(chain, sizeof chain, "... <- ");
            while (w->from[i] >= 0)
                i = w->from[i];
        }
        char id[32];
        snprintf(id, sizeof id, "%llu <- ", (unsigned long long)w->task[i]->id);
        append(chain, sizeof chain, id);
    }
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)me->id);
    append(chain, sizeof chain, id);
    return dagger__set_errmsg(DAGGER_EDEADLK,
                              "%s: task %llu '%s' depends on the waiting task %llu '%s' (chain: "
                              "%s), so the wait could never end",
                              what, (unsigned long long)t->id, dagger__task_display_name(t),
                              (unsigned long long)me->id, dagger__task_display_name(me), chain);
}

int dagger__task_check_dominated(dagger_task_t *me, dagger_task_t *t, const char *what)
{
    /* no inputs nor syncdeps: downstream of nothing (an atomic load: the progress thread may set
     * TF_DEFERRED in the same word while this thread waits, dagger__task_begin_elsewhere) */
    if (!(__atomic_load_n(&t->flags, __ATOMIC_RELAXED) & TF_HAS_DEPS))
        return 0;
    struct dagger__waiter *head = atomic_load_explicit(&me->waiters.head, memory_order_acquire);
    if (DAGGER_LIKELY(dagger__ev_closed(head) || !dagger__ev_list(head)))
        return 0;
    if (!check_enabled())
        return 0;
    dagger_task_t *task0[WALK_INLINE];
    int32_t from0[WALK_INLINE];
    struct walk w = {task0, from0, NULL, 0, WALK_INLINE, 0};
    int rc = 0;
    bool full = false;
    /* Breadth first: w.task is the queue; entry -1 stands for `me`. */
    for (int32_t cur = -1; cur < (int32_t)w.n && !rc && !full; cur++) {
        dagger_task_t *src = cur < 0 ? me : w.task[cur];
        struct dagger__waiter *node =
            atomic_load_explicit(&src->waiters.head, memory_order_acquire);
        if (dagger__ev_closed(node))
            continue; /* done: its waiters were served */
        for (node = dagger__ev_list(node); node; node = node->next) {
            if (node->kind != W_DEP && node->kind != W_DEP_LAZY)
                continue; /* a fetcher or a callback: nothing downstream */
            dagger_task_t *d = node->target;
            if (!seen_add(&w, d))
                continue;
            if (w.n == w.cap) {
                if (w.set || !grow(&w)) {
                    full = true; /* the bound: cannot tell, let the wait go */
                    break;
                }
                set_add(w.set, w.setcap, d);
            }
            w.task[w.n] = d;
            w.from[w.n] = cur;
            if (d == t) {
                rc = report(&w, me, t, w.n, what);
                break;
            }
            w.n++;
        }
    }
    if (w.set) {
        dagger__free(w.task);
        dagger__free(w.from);
        dagger__free(w.set);
    }
    return rc;
}
