/* src/common/objpool.c - size-class object pools with per-thread caches.
 *
 * Hand-written because spawning must allocate nothing in steady state and malloc's arenas
 * count as allocations: task records, dependency nodes and argument arrays come from here.
 * Design: each thread keeps a free list per size class; frees go to the freeing thread's list
 * (tasks are often freed by another thread than the one that made them); a list that grows
 * past its keep (dagger__obj_keep: 4*BATCH, 2*BATCH above 512 bytes) hands BATCH objects to a
 * global stack of batches under a mutex, and an empty list takes a batch back (or carves a fresh
 * slab of 64 KiB, the only counted allocation). A batch is a chain through its objects, and the
 * objects were freed on another core: taking them one after the other made each allocation wait for
 * the line of the next object (a flat loop of spawns whose tasks a thief runs and frees: 64-72 % of
 * the spawner's samples at t=2). So the thread that hands a batch over lists its other objects in
 * the first one (as 4-byte distances: a task record lists all 63 others), and the taking thread
 * prefetches their lines all at once (bench/RESULTS.md, 2026-12-02 19:35); the chain is then walked
 * on lines that have arrived. Classes are powers of two from 32 bytes, and 320 for the task record
 * (alloc.h). A thread's cache is handed back to the global stacks when the thread exits. The common
 * alloc and free of a size known at compile time (a record of a fixed type) are inline in
 * alloc.h: they touch only the thread's list, and call here when it is empty or long.
 * Invariants: an object sits in exactly one list; slabs are never returned to the system
 * (they stay reachable from `g.slabs`, so leak checkers do not report them).
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"

#if defined(DAGGER_ASAN)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)0)
#define UNPOISON(p, n) ((void)0)
#endif

#define NCLASS DAGGER__OBJ_NCLASS
#define BATCH DAGGER__OBJ_BATCH
#define SLAB (64 * 1024)

struct obj {
    void *next;        /* next free object in a list (a void *: alloc.h's inline paths) */
    struct obj *batch; /* in the global stack: the next batch (first object only) */
    uint32_t n;        /* in the global stack: objects in the batch (first object only) */
    uint32_t npf;      /* entries of pf (first object only) */
    int32_t pf[];      /* the batch's next objects, to prefetch (first object only): their
                        * distances from this one in units of PF_UNIT bytes */
};

/* Lines of each object prefetched when a batch is taken: a task record spans five. */
#define PF_LINES 5

static struct {
    pthread_mutex_t lock;
    struct obj *batches[NCLASS]; /* guarded by lock */
    void **slabs;                /* guarded by lock */
    size_t nslabs, capslabs;     /* guarded by lock */
    pthread_key_t key;
    pthread_once_t once;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

DAGGER_TLS struct dagger__obj_cache dagger__obj_tc;

static inline int class_of(size_t n) { return dagger__obj_class(n); }

static inline size_t class_size(int c) { return dagger__obj_class_size(c); }

/* Entries of pf that fit in an object of class `c`. */
static inline uint32_t pf_cap(int c)
{
    return (uint32_t)((class_size(c) - sizeof(struct obj)) / sizeof(int32_t));
}

/* Objects start on multiples of 32 bytes (every class is one; slabs start on a line): pf holds
 * distances in those units, 4 bytes an entry, so that a task record (320 bytes) lists the 63
 * others of its batch, where pointers (8 bytes) fitted 37 and the taker waited for the line of
 * each unlisted object in turn (core.empty_ext at t=1: 38 -> 47 ns a task with the 320 class,
 * 38 again with the list). Objects farther apart than 64 GiB (slabs come from one heap) end the
 * list. */
#define PF_SHIFT 5
#define PF_UNIT (1 << PF_SHIFT)

/* Walk the `n` objects chained from `first` once: list the ones after it in first->pf (as many
 * as fit; none under ASan, whose poisoned bodies it would write) and return the n-th. */
static struct obj *list_batch(int c, struct obj *first, uint32_t n)
{
    uint32_t cap = pf_cap(c), k = 0;
    struct obj *last = first;
    for (uint32_t i = 1; i < n; i++) {
        last = last->next;
#if !defined(DAGGER_ASAN)
        intptr_t d = ((intptr_t)last - (intptr_t)first) >> PF_SHIFT; /* exact: 32-byte steps */
        if (k < cap && (int32_t)d == d)
            first->pf[k++] = (int32_t)d;
        else
            cap = 0; /* the list ends at the first object it cannot name */
#endif
    }
    (void)cap;
    first->npf = k;
    return last;
}

/* Hand the batch of `n` objects chained from `first` (listed by list_batch) to the global
 * stack. */
static void push_batch(int c, struct obj *first, uint32_t n)
{
    first->n = n;
    pthread_mutex_lock(&g.lock);
    first->batch = g.batches[c];
    g.batches[c] = first;
    pthread_mutex_unlock(&g.lock);
}

static void flush_thread(void *arg)
{
    struct dagger__obj_cache *t = arg;
    for (int c = 0; c < NCLASS; c++) {
        if (t->head[c]) {
            UNPOISON(t->head[c], sizeof(struct obj));
            (void)list_batch(c, t->head[c], t->count[c]);
            push_batch(c, t->head[c], t->count[c]);
        }
        t->head[c] = NULL;
        t->count[c] = 0;
    }
}

static void make_key(void) { pthread_key_create(&g.key, flush_thread); }

__attribute__((noinline)) static int refill(int c)
{
    if (!dagger__obj_tc.registered) {
        pthread_once(&g.once, make_key);
        pthread_setspecific(g.key, &dagger__obj_tc);
        dagger__obj_tc.registered = 1;
    }
    pthread_mutex_lock(&g.lock);
    struct obj *b = g.batches[c];
    if (b) {
        UNPOISON(b, sizeof(struct obj));
        g.batches[c] = b->batch;
        pthread_mutex_unlock(&g.lock);
        /* The count comes with the batch: walking the list here would take one cache miss
         * per object, in a chain, on objects that another thread freed (about a quarter of
         * the cost of a task spawned from outside the pool that way). Their lines are asked
         * for at once instead, and arrive while the first allocations run. */
#if defined(DAGGER_ASAN)
        for (struct obj *o = b; o->next; o = o->next)
            UNPOISON(o->next, sizeof(struct obj));
#else
        uint32_t lines = class_size(c) >= PF_LINES * DAGGER_CACHELINE ? PF_LINES : 1;
        for (uint32_t i = 0; i < b->npf; i++)
            for (uint32_t l = 0; l < lines; l++)
                __builtin_prefetch((char *)b + (ptrdiff_t)b->pf[i] * PF_UNIT + l * DAGGER_CACHELINE,
                                   1, 3);
#endif
        dagger__obj_tc.head[c] = b;
        dagger__obj_tc.count[c] = (uint32_t)b->n;
        return 1;
    }
    if (g.nslabs == g.capslabs) {
        size_t cap = g.capslabs ? g.capslabs * 2 : 64;
        void **s = dagger__realloc(g.slabs, cap * sizeof *s);
        if (!s) {
            pthread_mutex_unlock(&g.lock);
            return 0;
        }
        g.slabs = s;
        g.capslabs = cap;
    }
    char *raw = dagger__malloc(SLAB + DAGGER_CACHELINE);
    if (!raw) {
        pthread_mutex_unlock(&g.lock);
        return 0;
    }
    g.slabs[g.nslabs++] = raw;
    /* Objects of 64 bytes and more start on a cache line (per-worker counters rely on it). */
    char *slab =
        (char *)(((uintptr_t)raw + DAGGER_CACHELINE - 1) & ~(uintptr_t)(DAGGER_CACHELINE - 1));
    pthread_mutex_unlock(&g.lock);
    size_t sz = class_size(c), n = SLAB / sz;
    struct obj *head = NULL;
    for (size_t i = n; i-- > 0;) {
        struct obj *o = (struct obj *)(slab + i * sz);
        o->next = head;
        head = o;
    }
    dagger__obj_tc.head[c] = head;
    dagger__obj_tc.count[c] = (uint32_t)n;
    return 1;
}

void *dagger__obj_alloc_any(size_t n)
{
    if (DAGGER_UNLIKELY(n > DAGGER__OBJ_MAX))
        return dagger__malloc(n);
    int c = class_of(n);
    if (DAGGER_UNLIKELY(!dagger__obj_tc.head[c]) && !refill(c))
        return NULL;
    struct obj *o = dagger__obj_tc.head[c];
    UNPOISON(o, class_size(c));
    dagger__obj_tc.head[c] = o->next;
    dagger__obj_tc.count[c]--;
    return o;
}

/* The thread's list of class `c` is long: hand its first BATCH objects to the global stack. */
void dagger__obj_spill(int c)
{
    if (!dagger__obj_tc.registered) {
        pthread_once(&g.once, make_key);
        pthread_setspecific(g.key, &dagger__obj_tc);
        dagger__obj_tc.registered = 1;
    }
    struct obj *first = dagger__obj_tc.head[c], *last = list_batch(c, first, BATCH);
    dagger__obj_tc.head[c] = last->next;
    last->next = NULL;
    dagger__obj_tc.count[c] -= BATCH;
    push_batch(c, first, BATCH);
}

void dagger__obj_free_any(void *p, size_t n)
{
    if (!p)
        return;
    if (DAGGER_UNLIKELY(n > DAGGER__OBJ_MAX)) {
        dagger__free(p);
        return;
    }
    int c = class_of(n);
    struct obj *o = p;
    o->next = dagger__obj_tc.head[c];
    dagger__obj_tc.head[c] = o;
    POISON((char *)o + sizeof(struct obj), class_size(c) - sizeof(struct obj));
    if (DAGGER_UNLIKELY(++dagger__obj_tc.count[c] > dagger__obj_keep(c)))
        dagger__obj_spill(c);
}
