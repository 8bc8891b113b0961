/* src/pool/deque.h - Chase-Lev work-stealing deque, one per worker.
 *
 * Design: the owner pushes and pops at the bottom; thieves CAS the top (Le, Pop, Cohen,
 * Zappa Nardelli, PPoPP 2013), one entry at a time (dq_steal) or half of a deep deque at once
 * (dq_steal_half, for flat loops of spawns: one CAS for up to DQ_HALF_MAX entries). The same
 * deque is a worker's and the slot of a thread outside the pool (pool.h). The fences
 * of the paper are folded into seq_cst operations so that ThreadSanitizer, which does not model
 * fences, sees every happens-before edge.
 * Invariants: top <= bottom + 1; only the owner grows the buffer; retired buffers are kept
 * until the deque is destroyed, since a thief may still read one.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_POOL_DEQUE_H
#define DAGGER_SRC_POOL_DEQUE_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"

struct dq_buf {
    int64_t mask;
    struct dq_buf *retired; /* older buffer, freed with the deque */
    _Atomic(void *) slot[];
};
_Static_assert(sizeof(_Atomic(void *)) == sizeof(void *), "dq_make_room copies slots as bytes");

struct dagger__deque {
    _Atomic int64_t top;     /* any thread: thieves CAS it */
    _Atomic int32_t halving; /* thieves inside dq_steal_half (on top's line: read with it) */
    char pad0[64 - sizeof(_Atomic int64_t) - sizeof(_Atomic int32_t)];
    _Atomic int64_t bottom;       /* written by the owner only */
    _Atomic(struct dq_buf *) buf; /* owner grows it */
    int64_t top_seen;             /* owner only: a past value of top (<= top) */
    _Atomic int32_t keeps; /* an external slot: its owner ran a job past the deep mark (pool.c) */
    char pad1[64 - 2 * sizeof(int64_t) - sizeof(void *) - sizeof(int32_t)];
};

#define DQ_EMPTY ((void *)0)
#define DQ_ABORT ((void *)1)

static inline struct dq_buf *dq_buf_new(int64_t cap)
{
    /* Zeroed, every slot NULL: a large buffer comes as fresh pages, no store per slot. */
    struct dq_buf *b = dagger__calloc(1, sizeof *b + (size_t)cap * sizeof(void *));
    if (!b)
        return NULL;
    b->mask = cap - 1;
    return b;
}

static inline int dq_init(struct dagger__deque *d, int64_t cap)
{
    atomic_init(&d->top, 0);
    atomic_init(&d->halving, 0);
    atomic_init(&d->bottom, 0);
    d->top_seen = 0;
    atomic_init(&d->keeps, 0);
    struct dq_buf *b = dq_buf_new(cap);
    atomic_init(&d->buf, b);
    return b ? 0 : -1;
}

static inline void dq_destroy(struct dagger__deque *d)
{
    struct dq_buf *b = atomic_load_explicit(&d->buf, memory_order_relaxed);
    while (b) {
        struct dq_buf *r = b->retired;
        dagger__free(b);
        b = r;
    }
}

/* Owner only: the buffer of `d` looks full by top_seen. Reads `top`; when the buffer is full,
 * moves the entries top..b-1 to one twice the size. Returns the buffer to push to, or NULL when
 * it could not grow. Out of line: a push saves no registers for it. */
__attribute__((noinline, unused)) static struct dq_buf *dq_make_room(struct dagger__deque *d,
                                                                     struct dq_buf *a, int64_t b)
{
    int64_t t = d->top_seen = atomic_load_explicit(&d->top, memory_order_acquire);
    if (b - t <= a->mask)
        return a;
    struct dq_buf *n = dq_buf_new((a->mask + 1) * 2);
    if (!n)
        return NULL;
    /* Whole runs that wrap in neither buffer, copied at once: the owner wrote every entry, a
     * thief only reads them, and the new buffer is published below with a release store. */
    for (int64_t i = t, k; i < b; i += k) {
        int64_t ia = i & a->mask, in = i & n->mask;
        k = b - i;
        k = k < a->mask + 1 - ia ? k : a->mask + 1 - ia;
        k = k < n->mask + 1 - in ? k : n->mask + 1 - in;
        memcpy((void *)&n->slot[in], (const void *)&a->slot[ia], (size_t)k * sizeof(void *));
    }
    n->retired = a;
    atomic_store_explicit(&d->buf, n, memory_order_release);
    return n;
}

/* Owner only. Returns 0, or -1 when the buffer could not grow.
 * The owner reads the contended `top` only when the buffer looks full by its last reading of
 * it: top only grows, so an old value overestimates the fill, never the free room. */
static inline int dq_push(struct dagger__deque *d, void *x)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    struct dq_buf *a = atomic_load_explicit(&d->buf, memory_order_relaxed);
    if (__builtin_expect(b - d->top_seen > a->mask, 0) && !(a = dq_make_room(d, a, b)))
        return -1;
    atomic_store_explicit(&a->slot[b & a->mask], x, memory_order_relaxed);
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    return 0;
}

/* Owner only: dq_push while the deque holds fewer than `limit` entries by top_seen (an
 * overestimate of the fill: thieves may have taken some), without reading `top` or growing.
 * `limit` must not exceed the buffer's capacity. Returns 0, or -1 (nothing pushed) when it
 * looks that deep: the caller then calls dq_push. */
static inline int dq_push_room(struct dagger__deque *d, void *x, int64_t limit)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    struct dq_buf *a = atomic_load_explicit(&d->buf, memory_order_relaxed);
    if (__builtin_expect(b - d->top_seen >= limit, 0))
        return -1;
    atomic_store_explicit(&a->slot[b & a->mask], x, memory_order_relaxed);
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    return 0;
}

/* A thief in dq_steal_half takes at most this many entries (and never all it sees). */
#define DQ_HALF_MAX 32

/* Any thread. Returns an item, DQ_EMPTY, or DQ_ABORT (lost a race: try again). */
static inline void *dq_steal(struct dagger__deque *d);

/* Owner only. Takes the bottom entry, except in one rare case: within DQ_HALF_MAX of the top
 * while a thief is inside dq_steal_half, where it takes the top entry as a thief does (see
 * there). */
static inline void *dq_pop(struct dagger__deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
    struct dq_buf *a = atomic_load_explicit(&d->buf, memory_order_relaxed);
    atomic_store_explicit(&d->bottom, b, memory_order_seq_cst);
    int32_t halving = atomic_load_explicit(&d->halving, memory_order_seq_cst); /* top's line */
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    d->top_seen = t;
    void *x = DQ_EMPTY;
    if (t <= b) {
        x = atomic_load_explicit(&a->slot[b & a->mask], memory_order_relaxed);
        if (t == b) {
            if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                         memory_order_relaxed))
                x = DQ_EMPTY;
            atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
        } else if (__builtin_expect(halving != 0 && b - t < DQ_HALF_MAX, 0)) {
            atomic_store_explicit(&d->bottom, b + 1, memory_order_seq_cst);
            while ((x = dq_steal(d)) == DQ_ABORT)
                ;
        }
    } else {
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    }
    return x;
}

/* Any thread. Returns an item, DQ_EMPTY, or DQ_ABORT (lost a race: try again). */
static inline void *dq_steal(struct dagger__deque *d)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
    if (t >= b)
        return DQ_EMPTY;
    struct dq_buf *a = atomic_load_explicit(&d->buf, memory_order_acquire);
    void *x = atomic_load_explicit(&a->slot[t & a->mask], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return DQ_ABORT;
    return x;
}

/* The `k` entries from `t` (read top = t), then one CAS of top past them: k, or -1 when the CAS
 * failed (another thief or the owner took one). */
static inline int dq_take_top(struct dagger__deque *d, int64_t t, int64_t k, void **out)
{
    struct dq_buf *a = atomic_load_explicit(&d->buf, memory_order_acquire);
    for (int64_t i = 0; i < k; i++)
        out[i] = atomic_load_explicit(&a->slot[(t + i) & a->mask], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + k, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return -1;
    return (int)k;
}

/* Any thread: from a deque whose owner pops with dq_pop, up to `max` (<= DQ_HALF_MAX) entries,
 * half of what it sees, with one CAS of top, when it sees `min` (>= 2) or more; 0 when it sees
 * fewer, -1 when it lost a race. Writes them to out[], oldest first.
 * Why dq_pop stays safe without a CAS of its own (every access below is seq_cst): an owner's pop
 * that takes entry b without one stored bottom = b, read `halving`, then read top = t < b, and
 * either b - t >= DQ_HALF_MAX or `halving` was 0. A thief (increment, read top = t', read
 * bottom = b', CAS, decrement) whose CAS succeeds after the owner's read of top took
 * [t', t' + k). If its read of bottom came before the owner's store, the owner read the same
 * top (t = t': nothing moved it between the thief's read and its CAS), and its read of
 * `halving` came after the thief's increment and before its decrement (which follows the CAS):
 * it saw it, so b - t >= DQ_HALF_MAX >= k, the entries apart. If it came after, b' <= b (or b'
 * counts an entry pushed since, which the thief reads after bottom) and k <= (b' - t') / 2 <
 * b' - t', so the thief's entries end below b. A CAS before the owner's read of top shows in
 * it. The entries are read before the CAS, which fails if anybody took one through top. */
static inline int dq_steal_half(struct dagger__deque *d, void **out, int max, int64_t min)
{
    atomic_fetch_add_explicit(&d->halving, 1, memory_order_seq_cst);
    int64_t t = atomic_load_explicit(&d->top, memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_seq_cst);
    int k = 0;
    if (b - t >= min)
        k = dq_take_top(d, t, (b - t) / 2 < max ? (b - t) / 2 : max, out);
    atomic_fetch_sub_explicit(&d->halving, 1, memory_order_release);
    return k;
}

static inline int64_t dq_size(struct dagger__deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    return b - t;
}

#endif /* DAGGER_SRC_POOL_DEQUE_H */
