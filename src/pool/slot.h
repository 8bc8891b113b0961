/* src/pool/slot.h - slots: a work-stealing deque for each thread outside the pool that submits.
 *
 * Design: a thread that is not a worker of a pool (the main thread, a user thread, an aux
 * thread) gets a slot of that pool the first time it submits a job that may run on any thread:
 * a Chase-Lev deque it owns, as a worker owns its own. It pushes there with the owner's plain
 * stores and pops the newest job when it waits (at a sync group's end), so small tasks stay
 * on its core; workers steal the oldest jobs from every slot, as from each other. The slot is
 * found through a thread-local lease keyed by the pool's generation (unique per open), so a pool
 * closed and another opened at the same address is never confused with it.
 * Invariants: a slot has at most one owner (slot->owner, changed only under the slot lock);
 * a thread owns at most one slot at a time (its lease): taking a slot of another pool gives its
 * current one up. A slot given up (its thread went to another pool or exited) keeps its jobs;
 * workers steal them and a later thread may adopt it. Slots are registered on a list that only
 * grows while the pool is open (workers walk it without a lock) and are freed at the pool's
 * close, when every job has run; the close clears the lease of a thread that still owns one.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_POOL_SLOT_H
#define DAGGER_SRC_POOL_SLOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/common.h"
#include "pool/deque.h"

struct dagger__slot_lease;

struct dagger__slot {
    struct dagger__deque dq;          /* the owner pushes and pops; workers steal */
    struct dagger__slot *next;        /* the pool's list; immutable once registered */
    struct dagger__slot_lease *owner; /* guarded by the slot lock; NULL: free to adopt */
};

/* A pool's slots. */
struct dagger__slots {
    _Atomic(struct dagger__slot *) head; /* grows under the slot lock; read by workers (acquire) */
    uint64_t gen;                        /* immutable after dagger__slots_init; never 0 */
};

/* A thread's slot: written by the owner under the slot lock, and by a close (also under the
 * lock) that frees the slot; read by the owner without the lock. */
struct dagger__slot_lease {
    _Atomic uint64_t gen;                /* the pool generation of `slot`; 0: none */
    _Atomic(struct dagger__slot *) slot; /* owned by this thread */
    int registered;                      /* owner only: the thread-exit hook is set */
};

extern DAGGER_TLS struct dagger__slot_lease dagger__slot_tls;

/* The calling thread's slot of `r`, or NULL (none yet, or it owns one of another pool). */
static inline struct dagger__slot *dagger__slot_mine(const struct dagger__slots *r)
{
    if (atomic_load_explicit(&dagger__slot_tls.gen, memory_order_relaxed) != r->gen)
        return NULL;
    return atomic_load_explicit(&dagger__slot_tls.slot, memory_order_relaxed);
}

/* Give the calling thread a slot of `r` (a free one, or a new one), giving up the slot it owns
 * in another pool. Returns NULL when out of memory. Thread safety: any thread outside the pool. */
struct dagger__slot *dagger__slot_acquire(struct dagger__slots *r);

/* A fresh generation. */
void dagger__slots_init(struct dagger__slots *r);
/* Free every slot (all empty: the pool's jobs have all run; no worker runs any more). */
void dagger__slots_destroy(struct dagger__slots *r);

#endif /* DAGGER_SRC_POOL_SLOT_H */
