/* src/mem/bufcache.c - a cache of large host buffers: chunk buffers of at least
 * DAGGER__BUFCACHE_MIN bytes freed by chunks are kept for the next chunk of the same size class
 * instead of going back to libc (the way StarPU and PaRSEC keep memory pools).
 *
 * Design: a fresh large buffer costs a page fault and the kernel's zeroing per page on its first
 * touch (a 64 MiB MPI pull pays about 3 ms of its 10 ms for it); a reused one is already mapped.
 * Size classes: a size is rounded up to 8 steps per power of two (a 3 MiB chunk gets a 3 MiB
 * class, 3.1 MiB gets 3.5 MiB): at most 12.5 % more memory than asked for, while chunks of nearly
 * the same size (a darray's edge blocks) still share a class. A fixed 2 MiB rounding would waste
 * up to half of a 1 MiB buffer; exact sizes would never share. The size given to put is the
 * chunk's size, so put recomputes the class and no record outside the buffer is needed: a cached
 * buffer holds its own list node in its first bytes (it is unused while cached), so caching
 * allocates nothing and fault injection (DAGGER_FAULT_ALLOC) counts only real allocations.
 * One LRU list under one mutex (buffers of >= 1 MiB: a few hundred at most). get takes the most
 * recently put buffer of the class (warm in the caches); put appends and frees from the least
 * recently used end while the cache is over its cap. A zeroed get of a cached buffer memsets it.
 * The cap: DAGGER_BUFCACHE_MB (MiB; 0 disables), read when the first context opens, default the
 * smaller of 256 MiB and 1/8 of physical memory. Under a memory limit for out-of-core spill
 * (resident.c) the cache is disabled and emptied: the limit counts chunks' host bytes, and a
 * cache beside it would hold memory the limit means to give back.
 * Lifetime: contexts are counted; the last close frees every cached buffer (so allocation
 * counters balance between jobs), and a buffer put while no context is open is freed at once.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "mem/mem.h"
#include "mem/mem_int.h"

#define DEFAULT_CAP ((size_t)256 << 20)
#define MAX_CAP_MB ((unsigned long long)1 << 30) /* 1 PiB: larger is surely a typo */

struct node { /* lives in the first bytes of a cached buffer */
    struct node *prev, *next;
    size_t cls;
};

static struct {
    pthread_mutex_t lock;
    struct node *head, *tail; /* LRU: head is the least recently put */
    size_t held;              /* bytes of the buffers in the list */
    size_t cap;               /* 0: off */
    int nctx;                 /* open contexts */
    unsigned long long hits, misses;
} B = {.lock = PTHREAD_MUTEX_INITIALIZER};

size_t dagger__bufcache_class(size_t n)
{
    if (n < DAGGER__BUFCACHE_MIN)
        return n;
    int lg = 63 - __builtin_clzll((unsigned long long)n);
    size_t step = (size_t)1 << (lg - 3), cls;
    if (__builtin_add_overflow(n, step - 1, &cls))
        return n; /* no class: never cached */
    return cls & ~(step - 1);
}

static void unlink_locked(struct node *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        B.head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        B.tail = e->prev;
    B.held -= e->cls;
}

/* Free buffers from the LRU end until at most `keep` bytes are held. Returns the list of the
 * buffers taken out, to be freed with no lock held. */
static struct node *trim_locked(size_t keep)
{
    struct node *out = NULL;
    while (B.held > keep && B.head) {
        struct node *e = B.head;
        unlink_locked(e);
        e->next = out;
        out = e;
    }
    return out;
}

static void free_list(struct node *e)
{
    while (e) {
        struct node *next = e->next;
        dagger__free(e);
        e = next;
    }
}

void *dagger__bufcache_get(size_t n, bool zero)
{
    size_t cls = dagger__bufcache_class(n);
    if (cls < DAGGER__BUFCACHE_MIN)
        return zero ? dagger__calloc(1, n ? n : 1) : dagger__malloc(n ? n : 1);
    struct node *e = NULL;
    pthread_mutex_lock(&B.lock);
    for (struct node *k = B.tail; k; k = k->prev) {
        if (k->cls == cls) {
            e = k;
            unlink_locked(e);
            break;
        }
    }
    if (e)
        B.hits++;
    else if (B.cap)
        B.misses++;
    pthread_mutex_unlock(&B.lock);
    if (e) {
        if (zero)
            memset(e, 0, n);
        return e;
    }
    return zero ? dagger__calloc(1, cls) : dagger__malloc(cls);
}

void dagger__bufcache_put(void *p, size_t n)
{
    if (!p)
        return;
    size_t cls = dagger__bufcache_class(n);
    if (cls < DAGGER__BUFCACHE_MIN) {
        dagger__free(p);
        return;
    }
    struct node *gone = NULL;
    pthread_mutex_lock(&B.lock);
    if (B.nctx > 0 && cls <= B.cap && !dagger__res_active()) {
        struct node *e = p;
        e->cls = cls;
        e->next = NULL;
        e->prev = B.tail;
        if (B.tail)
            B.tail->next = e;
        else
            B.head = e;
        B.tail = e;
        B.held += cls;
        gone = trim_locked(B.cap);
        p = NULL;
    }
    pthread_mutex_unlock(&B.lock);
    if (p)
        dagger__free(p);
    free_list(gone);
}

/* The cap from DAGGER_BUFCACHE_MB, or the default (with a warning when the value is bad). */
static size_t read_cap(void)
{
    size_t def = DEFAULT_CAP;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0 && (size_t)pages / 8 < def / (size_t)psize)
        def = (size_t)pages / 8 * (size_t)psize;
    const char *s = getenv("DAGGER_BUFCACHE_MB");
    if (!s || !*s)
        return def;
    char *end = NULL;
    errno = 0;
    unsigned long long mb = strtoull(s, &end, 10);
    if (*s == '-' || errno || *end || mb > MAX_CAP_MB) {
        fprintf(stderr,
                "dagger: DAGGER_BUFCACHE_MB='%s' is invalid (a whole number of MiB, 0 disables "
                "the buffer cache): using the default, %zu MiB\n",
                s, def >> 20);
        return def;
    }
    return (size_t)mb << 20;
}

void dagger__mem_bufcache_open(void)
{
    pthread_mutex_lock(&B.lock);
    if (B.nctx++ == 0) {
        B.cap = read_cap();
        B.hits = B.misses = 0;
    }
    /* A memory limit was just set (dagger__mem_res_open runs before): give the cache back. */
    struct node *gone = dagger__res_active() ? trim_locked(0) : NULL;
    pthread_mutex_unlock(&B.lock);
    free_list(gone);
}

void dagger__mem_bufcache_close(void)
{
    struct node *gone = NULL;
    pthread_mutex_lock(&B.lock);
    if (B.nctx > 0 && --B.nctx == 0)
        gone = trim_locked(0);
    pthread_mutex_unlock(&B.lock);
    free_list(gone);
}

void dagger__mem_bufcache_stats(struct dagger__bufcache_stats *out)
{
    pthread_mutex_lock(&B.lock);
    out->held = B.held;
    out->cap = dagger__res_active() ? 0 : B.cap;
    out->hits = B.hits;
    out->misses = B.misses;
    size_t n = 0;
    for (struct node *e = B.head; e; e = e->next)
        n++;
    out->buffers = n;
    pthread_mutex_unlock(&B.lock);
}
