/* src/mem/resident.c - out-of-core: the memory limit, the LRU list of chunks with host copies,
 * and the spill thread that writes the least recently used unheld chunks to the disk space.
 *
 * Design: one limit per process, set by the context that opens with one (opts.mem_limit or
 * DAGGER_MEM_LIMIT). Chunks made while it is set are tracked (mem_int.h). A thread about to make
 * a host copy waits in dagger__res_wait_room until it fits; the spill thread (an aux thread, never
 * a worker) evicts from the LRU end until the waiters fit or nothing unheld is left, then says so
 * (`stuck_gen`), and the waiter goes ahead over the limit (its task's inputs are held) or fails
 * with DAGGER_ENOSPC when spills failed. The disk I/O runs with no lock of this file held.
 * Invariants: a node is listed iff its chunk has counted host bytes; `resident` is their sum.
 * Lock order: a chunk's lock, then R.lock (dagger__mem_spill runs without R.lock held).
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "mem/mem.h"
#include "mem/mem_int.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;  /* the spill thread waits here */
    pthread_cond_t room;  /* threads waiting for room wait here */
    _Atomic size_t limit; /* 0: off; written under lock */
    const dagger_ctx_t *owner;
    dagger_chunk_t *head, *tail; /* LRU: head is the least recently used */
    size_t resident, peak;
    size_t want;        /* bytes the waiters need */
    uint32_t epoch;     /* bumped by each wait: chunks whose spill failed are tried again */
    bool failed;        /* a spill failed in this epoch */
    uint64_t stuck_gen; /* bumped when a scan found nothing to spill */
    int stuck_err;      /* 0, or DAGGER_ENOSPC when spills failed in that scan's epoch */
    bool running, stop;
    pthread_t thread;
    unsigned long long spilled, reloaded, spills, reloads, failures;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .work = PTHREAD_COND_INITIALIZER,
       .room = PTHREAD_COND_INITIALIZER};

static void (*_Atomic on_close)(void);

void dagger__mem_on_res_close(void (*fn)(void))
{
    atomic_store_explicit(&on_close, fn, memory_order_release);
}

static struct dagger__res_node *node(dagger_chunk_t *c) { return dagger__mem_res_node(c); }

size_t dagger__mem_res_limit(void) { return atomic_load_explicit(&R.limit, memory_order_relaxed); }

bool dagger__res_active(void) { return atomic_load_explicit(&R.limit, memory_order_relaxed) != 0; }

static void unlink_locked(struct dagger__res_node *r)
{
    if (r->prev)
        node(r->prev)->next = r->next;
    else
        R.head = r->next;
    if (r->next)
        node(r->next)->prev = r->prev;
    else
        R.tail = r->prev;
    r->prev = r->next = NULL;
}

static void append_locked(struct dagger__res_node *r)
{
    r->prev = R.tail;
    r->next = NULL;
    if (R.tail)
        node(R.tail)->next = r->self;
    else
        R.head = r->self;
    R.tail = r->self;
}

void dagger__res_add(struct dagger__res_node *r, size_t n)
{
    pthread_mutex_lock(&R.lock);
    if (!r->listed) {
        r->listed = true;
        r->bytes = n;
        R.resident += n;
        if (R.resident > R.peak)
            R.peak = R.resident;
        append_locked(r);
        if (R.limit && R.resident > R.limit)
            pthread_cond_signal(&R.work);
    }
    pthread_mutex_unlock(&R.lock);
}

void dagger__res_sub(struct dagger__res_node *r, bool unlink)
{
    (void)unlink; /* either way the node leaves the list: it is listed only with host bytes */
    pthread_mutex_lock(&R.lock);
    if (r->listed) {
        unlink_locked(r);
        r->listed = false;
        R.resident -= r->bytes;
        r->bytes = 0;
        pthread_cond_broadcast(&R.room);
    }
    pthread_mutex_unlock(&R.lock);
}

void dagger__res_touch(struct dagger__res_node *r)
{
    pthread_mutex_lock(&R.lock);
    if (r->listed && R.tail != r->self) {
        unlink_locked(r);
        append_locked(r);
    }
    pthread_mutex_unlock(&R.lock);
}

void dagger__res_count(bool spill, size_t n)
{
    pthread_mutex_lock(&R.lock);
    if (spill) {
        R.spilled += n;
        R.spills++;
    } else {
        R.reloaded += n;
        R.reloads++;
    }
    pthread_mutex_unlock(&R.lock);
}

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += ms * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

int dagger__res_wait_room(size_t n)
{
    if (!dagger__res_active())
        return 0;
    int rc = 0;
    pthread_mutex_lock(&R.lock);
    R.epoch++;
    R.failed = false;
    R.want += n;
    uint64_t g = R.stuck_gen;
    while (R.limit && R.running && R.resident > 0 && R.resident + n > R.limit && R.stuck_gen == g) {
        pthread_cond_signal(&R.work);
        struct timespec ts;
        deadline_in(&ts, 100);
        pthread_cond_timedwait(&R.room, &R.lock, &ts);
    }
    if (R.stuck_gen != g && R.resident + n > R.limit)
        rc = R.stuck_err;
    R.want -= n;
    pthread_mutex_unlock(&R.lock);
    return rc;
}

/* The least recently used chunk that no one holds and whose spill did not fail in this epoch,
 * with a reference taken; NULL when none. */
static dagger_chunk_t *pick_locked(void)
{
    for (dagger_chunk_t *c = R.head; c; c = node(c)->next) {
        struct dagger__res_node *r = node(c);
        if (r->skip_epoch == R.epoch || atomic_load_explicit(&r->pins, memory_order_acquire) ||
            atomic_load_explicit(&r->upin, memory_order_acquire))
            continue;
        if (dagger__mem_try_retain(c))
            return c;
    }
    return NULL;
}

static void *spill_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "dagger-spill");
    pthread_mutex_lock(&R.lock);
    while (!R.stop) {
        if (R.resident + R.want <= R.limit) {
            pthread_cond_broadcast(&R.room);
            struct timespec ts;
            deadline_in(&ts, 200);
            pthread_cond_timedwait(&R.work, &R.lock, &ts);
            continue;
        }
        dagger_chunk_t *c = pick_locked();
        if (!c) { /* everything is held (or failed): the waiters go ahead or fail */
            R.stuck_gen++;
            R.stuck_err = R.failed ? DAGGER_ENOSPC : 0;
            pthread_cond_broadcast(&R.room);
            struct timespec ts;
            deadline_in(&ts, 50);
            pthread_cond_timedwait(&R.work, &R.lock, &ts);
            continue;
        }
        uint32_t epoch = R.epoch;
        pthread_mutex_unlock(&R.lock);
        int rc = dagger__mem_spill(c);
        pthread_mutex_lock(&R.lock);
        if (rc) {
            node(c)->skip_epoch = epoch; /* held, busy, or the disk failed: not again now */
            if (rc != DAGGER_EBUSY) {
                R.failures++;
                if (epoch == R.epoch)
                    R.failed = true;
            }
        }
        pthread_cond_broadcast(&R.room);
        pthread_mutex_unlock(&R.lock);
        dagger_chunk_release(c); /* may take R.lock to leave the list */
        pthread_mutex_lock(&R.lock);
    }
    pthread_mutex_unlock(&R.lock);
    return NULL;
}

int dagger__mem_res_open(const dagger_ctx_t *ctx, size_t limit)
{
    const char *env = getenv("DAGGER_MEM_LIMIT");
    if (limit == 0 && env && *env) {
        DAGGER_CHECK(dagger__parse_size(env, &limit) == 0, DAGGER_EINVAL,
                     "dagger_ctx_open: DAGGER_MEM_LIMIT=%s is not a size (like 4G, 512M, 65536)",
                     env);
    }
    if (limit == 0)
        return 0;
    pthread_mutex_lock(&R.lock);
    if (R.owner) {
        pthread_mutex_unlock(&R.lock);
        return dagger__set_errmsg(DAGGER_EINVAL, "dagger_ctx_open: another open context already "
                                                 "set a memory limit (one per process)");
    }
    R.owner = ctx;
    R.stop = false;
    R.peak = R.resident;
    R.spilled = R.reloaded = R.spills = R.reloads = R.failures = 0;
    atomic_store_explicit(&R.limit, limit, memory_order_relaxed);
    int rc = pthread_create(&R.thread, NULL, spill_main, NULL);
    R.running = rc == 0;
    if (rc) {
        R.owner = NULL;
        atomic_store_explicit(&R.limit, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(&R.lock);
    DAGGER_CHECK(rc == 0, DAGGER_ENOMEM, "dagger_ctx_open: cannot start the spill thread");
    return 0;
}

void dagger__mem_res_close(const dagger_ctx_t *ctx)
{
    pthread_mutex_lock(&R.lock);
    if (R.owner != ctx || !R.running) {
        pthread_mutex_unlock(&R.lock);
        return;
    }
    R.stop = true;
    pthread_cond_broadcast(&R.work);
    pthread_mutex_unlock(&R.lock);
    pthread_join(R.thread, NULL);
    pthread_mutex_lock(&R.lock);
    R.running = false;
    R.owner = NULL;
    atomic_store_explicit(&R.limit, 0, memory_order_relaxed);
    pthread_cond_broadcast(&R.room);
    pthread_mutex_unlock(&R.lock);
    void (*fn)(void) = atomic_load_explicit(&on_close, memory_order_acquire);
    if (fn)
        fn();
}

void dagger__mem_res_stats(const dagger_ctx_t *ctx, dagger_mem_stats_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&R.lock);
    if (R.owner == ctx) {
        out->limit = R.limit;
        out->resident = R.resident;
        out->peak_resident = R.peak;
        out->spilled = R.spilled;
        out->reloaded = R.reloaded;
        out->spills = R.spills;
        out->reloads = R.reloads;
        out->spill_failures = R.failures;
    }
    pthread_mutex_unlock(&R.lock);
}
