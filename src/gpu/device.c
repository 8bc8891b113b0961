/* src/gpu/device.c - the devices of the process, their memory pools, and the device space ops.
 *
 * Design: backends are probed once, on first use (a GPU scope, dagger_gpu_count); a program
 * that never asks for a device never loads a driver. Each device gets a copy-in, a copy-out
 * and GPU_COMPUTE_STREAMS compute streams. Chunk copies on a device are `struct dbuf` records
 * (the pointer src/mem keeps); their memory comes from a pool that keeps freed blocks for reuse
 * and, when full, evicts the least recently used unpinned copies: clean ones are dropped, the
 * only valid copy of a chunk is written back to its home first. A copy into a device is
 * enqueued on the copy-in stream; its event is kept in the record, and the compute stream of
 * the task that reads it waits for that event.
 * Invariants: dev->used = resident buffers + cached blocks <= dev->limit; a pinned buffer is
 * resident and never evicted.
 * SPDX-License-Identifier: MIT
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "gpu/gpu_int.h"
#include "trace/trace.h"

static const struct dagger__device_ops *backends[] = {
#ifdef DAGGER_HAVE_OPENCL
    &dagger__opencl_ops,
#endif
#ifdef DAGGER_HAVE_CUDA
    &dagger__cuda_ops,
#endif
    NULL,
};

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int probed; /* 0 not yet, 1 done */
static int ndev;           /* written once under probe_lock, before `probed` */
static struct gpu_dev *devs[GPU_MAX_DEVICES];
static bool fake_only; /* dagger__gpu_fake_setup was called */
static bool probe_oom; /* the last probe ran out of memory (probe_lock) */

void dagger__gpu_fake_only(void) { fake_only = true; }

int dagger__gpu_ndev(void) { return ndev; }
struct gpu_dev *dagger__gpu_dev(int i) { return i >= 0 && i < ndev ? devs[i] : NULL; }

dagger_space_t dagger__gpu_space(const struct gpu_dev *d)
{
    dagger_space_t s = {0, DAGGER_SPACE_DEVICE, (int16_t)d->index};
    return s;
}

/* DAGGER_GPU_MEM_LIMIT caps every device pool (k, M, G suffixes). */
static size_t env_limit(void)
{
    size_t v = 0;
    const char *s = getenv("DAGGER_GPU_MEM_LIMIT");
    if (s && *s && dagger__parse_size(s, &v) != 0)
        fprintf(stderr, "dagger: DAGGER_GPU_MEM_LIMIT=%s is not a size (like 48M); ignored\n", s);
    return v;
}

static void close_dev(struct gpu_dev *d)
{
    const struct dagger__device_ops *o = d->ops;
    for (int i = 0; i < GPU_COMPUTE_STREAMS; i++)
        if (d->compute[i])
            o->stream_destroy(d->h, d->compute[i]);
    if (d->copy_in)
        o->stream_destroy(d->h, d->copy_in);
    if (d->copy_out)
        o->stream_destroy(d->h, d->copy_out);
    while (d->cache) {
        struct block *b = d->cache;
        d->cache = b->next;
        o->free(d->h, b->d);
        dagger__free(b);
    }
    o->close(d->h);
    d->h = NULL;
}

static int open_dev(const struct dagger__device_ops *o, int k, struct gpu_dev *d)
{
    size_t total = 0;
    int rc = o->open(k, &d->h, d->name, sizeof d->name, &total);
    if (rc)
        return rc;
    rc = o->stream_create(d->h, &d->copy_in);
    if (!rc)
        rc = o->stream_create(d->h, &d->copy_out);
    for (int i = 0; i < GPU_COMPUTE_STREAMS && !rc; i++)
        rc = o->stream_create(d->h, &d->compute[i]);
    if (rc) {
        close_dev(d);
        return rc;
    }
    size_t cap = env_limit();
    d->limit = cap && (cap < total || !total) ? cap : total;
    return 0;
}

int dagger__gpu_probe(void)
{
    if (atomic_load_explicit(&probed, memory_order_acquire))
        return ndev;
    pthread_mutex_lock(&probe_lock);
    if (!atomic_load_explicit(&probed, memory_order_relaxed)) {
        const struct dagger__device_ops *fake[] = {&dagger__fake_ops, NULL};
        const struct dagger__device_ops *const *list = fake_only ? fake : backends;
        bool oom = false;
        for (int b = 0; list[b] && !oom; b++) {
            char why[256] = "";
            int n = list[b]->probe(why, sizeof why);
            for (int k = 0; k < n && ndev < GPU_MAX_DEVICES; k++) {
                struct gpu_dev *d = dagger__calloc(1, sizeof *d);
                if (!d) {
                    oom = true;
                    break;
                }
                d->index = ndev;
                d->kind = list[b]->kind;
                d->kind_index = k;
                d->ops = list[b];
                pthread_mutex_init(&d->lock, NULL);
                pthread_mutex_init(&d->copy_lock, NULL);
                d->lru.next = d->lru.prev = &d->lru;
                if (open_dev(list[b], k, d) != 0) {
                    pthread_mutex_destroy(&d->lock);
                    pthread_mutex_destroy(&d->copy_lock);
                    dagger__free(d);
                    continue;
                }
                devs[ndev++] = d;
            }
        }
        if (oom) {
            /* Out of memory for a device record: open none rather than some, and probe again
             * on the next use (a device must not vanish for good because of one allocation). */
            for (int i = 0; i < ndev; i++) {
                close_dev(devs[i]);
                pthread_mutex_destroy(&devs[i]->lock);
                pthread_mutex_destroy(&devs[i]->copy_lock);
                dagger__free(devs[i]);
                devs[i] = NULL;
            }
            ndev = 0;
            probe_oom = true;
        } else {
            probe_oom = false;
            if (ndev)
                dagger__gpu_completion_start();
            atomic_store_explicit(&probed, 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&probe_lock);
    return ndev;
}

bool dagger__gpu_probe_oom(void) { return probe_oom; }

/* Devices closed with the last context; their records stay reachable (chunks that outlive the
 * contexts still point at them) and a later probe opens new ones. */
static struct gpu_dev *retired[4 * GPU_MAX_DEVICES];
static int nretired;

void dagger__gpu_close_all(void)
{
    pthread_mutex_lock(&probe_lock);
    if (atomic_load_explicit(&probed, memory_order_relaxed) && ndev) {
        dagger__gpu_completion_stop();
        for (int i = 0; i < ndev; i++) {
            struct gpu_dev *d = devs[i];
            dagger_space_t sp = dagger__gpu_space(d);
            pthread_mutex_lock(&d->lock);
            /* The only valid copy of a chunk goes home first: chunks may outlive the device. */
            for (struct dbuf *b = d->lru.next; b != &d->lru;) {
                struct dbuf *next = b->next;
                if (b->chunk)
                    (void)dagger__mem_evict(b->chunk, &sp);
                if (b->ready)
                    d->ops->event_destroy(b->ready);
                b->ready = NULL;
                d->ops->free(d->h, b->d);
                b->resident = false;
                b->prev = b->next = NULL;
                b = next;
            }
            d->lru.next = d->lru.prev = &d->lru;
            d->used = 0;
            pthread_mutex_unlock(&d->lock);
            close_dev(d);
            if (nretired < (int)(sizeof retired / sizeof retired[0]))
                retired[nretired++] = d;
            devs[i] = NULL;
        }
        ndev = 0;
        atomic_store_explicit(&probed, 0, memory_order_release);
    }
    pthread_mutex_unlock(&probe_lock);
}

/* ---------------------------------------------------------------- the pool */

static void lru_unlink(struct dbuf *b)
{
    b->prev->next = b->next;
    b->next->prev = b->prev;
    b->prev = b->next = NULL;
}

static void lru_push(struct gpu_dev *d, struct dbuf *b) /* most recent at the tail */
{
    b->prev = d->lru.prev;
    b->next = &d->lru;
    d->lru.prev->next = b;
    d->lru.prev = b;
}

/* Give a block back to the pool's cache. */
static void block_put(struct gpu_dev *d, dagger_dptr_t p, size_t n)
{
    struct block *b = dagger__malloc(sizeof *b);
    if (!b) {
        d->ops->free(d->h, p);
        d->used -= n;
        return;
    }
    b->size = n;
    b->d = p;
    b->next = d->cache;
    d->cache = b;
}

/* Make room for `n` more bytes: cached blocks go first, then unpinned copies, least recently
 * used first. Returns 0, DAGGER_EBUSY when the copies left are being staged right now, or
 * DAGGER_ENOMEM when only pinned data is left. */
static int make_room(struct gpu_dev *d, size_t n)
{
    bool busy = false;
    while (d->used + n > d->limit && d->cache) {
        struct block *b = d->cache;
        d->cache = b->next;
        d->ops->free(d->h, b->d);
        d->used -= b->size;
        dagger__free(b);
    }
    struct dbuf *b = d->lru.next;
    while (d->used + n > d->limit && b != &d->lru) {
        struct dbuf *next = b->next;
        if (b->pins == 0 && b->chunk) {
            dagger_space_t sp = dagger__gpu_space(d);
            int rc = dagger__mem_evict(b->chunk, &sp);
            busy |= rc == DAGGER_EBUSY;
            if (rc >= 0) {
                DAGGER__TRACE(dagger__trace_device(GPU_TRACK(d, 1),
                                                   rc == 1 ? DAGGER__TRACE_DEV_WRITEBACK
                                                           : DAGGER__TRACE_DEV_EVICT,
                                                   dagger_chunk_id(b->chunk), b->size));
                d->evictions++;
                d->writebacks += rc == 1;
                lru_unlink(b);
                b->resident = false;
                d->ops->free(d->h, b->d);
                d->used -= b->size;
            }
        }
        b = next;
    }
    if (d->used + n <= d->limit)
        return 0;
    return busy ? DAGGER_EBUSY : DAGGER_ENOMEM;
}

/* Device memory for `b` (dev->lock held). */
static int make_resident(struct gpu_dev *d, struct dbuf *b)
{
    if (b->resident)
        return 0;
    for (struct block **p = &d->cache; *p; p = &(*p)->next) {
        if ((*p)->size == b->size) {
            struct block *k = *p;
            *p = k->next;
            b->d = k->d;
            dagger__free(k);
            goto done;
        }
    }
    size_t n = b->size ? b->size : 1;
    char where[128];
    snprintf(where, sizeof where, "device(%d) (%s)", d->index, d->name);
    if (n > d->limit)
        return dagger__set_errmsg(DAGGER_ENOMEM,
                                  "a %zu-byte copy does not fit in the %zu bytes of %s", n,
                                  d->limit, where);
    int room = make_room(d, n);
    for (int tries = 0; room == DAGGER_EBUSY && tries < 1000; tries++) {
        pthread_mutex_unlock(&d->lock); /* let the stagers of those chunks finish */
        sched_yield();
        pthread_mutex_lock(&d->lock);
        if (b->resident)
            return 0;
        room = make_room(d, n);
    }
    if (room != 0)
        return dagger__set_errmsg(DAGGER_ENOMEM,
                                  "%s is full: %zu of its %zu bytes are pinned by running tasks, "
                                  "%zu more are needed",
                                  where, d->pinned, d->limit, n);
    int rc = d->ops->alloc(d->h, n, &b->d);
    if (rc == DAGGER_ENOMEM) { /* the driver has less than the pool thinks: evict all we can */
        size_t before = d->used;
        make_room(d, d->limit);
        if (d->used < before)
            rc = d->ops->alloc(d->h, n, &b->d);
    }
    if (rc)
        return rc;
    d->used += b->size;
done:
    b->resident = true;
    lru_push(d, b);
    return 0;
}

/* ---------------------------------------------------------------- the device space ops */

static struct gpu_dev *space_dev(const dagger_space_t *s) { return dagger__gpu_dev(s->index); }

/* The chunk being staged by dagger__gpu_stage_pin on this thread (0: another stager). */
static _Thread_local uint64_t tls_cid;

static void *dev_space_alloc(const dagger_space_t *s, size_t n)
{
    struct gpu_dev *d = space_dev(s);
    if (!d)
        return NULL;
    struct dbuf *b = dagger__calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->dev = d;
    b->size = n;
    atomic_init(&b->cid, tls_cid);
    return b;
}

static void dev_space_free(const dagger_space_t *s, void *p, size_t n)
{
    struct dbuf *b = p;
    struct gpu_dev *d = b->dev;
    pthread_mutex_lock(&d->lock);
    if (b->resident) {
        lru_unlink(b);
        block_put(d, b->d, b->size);
    }
    pthread_mutex_unlock(&d->lock);
    if (b->ready && d->h)
        d->ops->event_destroy(b->ready);
    dagger__free(b);
}

/* Wait for the last copy into `b` (a host read, or another device's copy). */
static int ready_sync(struct dbuf *b) { return b->ready ? b->dev->ops->event_sync(b->ready) : 0; }

/* Block until everything enqueued on `s` has finished. */
static int stream_sync(struct gpu_dev *d, void *s)
{
    void *ev = NULL;
    int rc = d->ops->event_record(d->h, s, &ev);
    if (!rc) {
        rc = d->ops->event_sync(ev);
        d->ops->event_destroy(ev);
    }
    return rc;
}

static int set_ready(struct gpu_dev *d, struct dbuf *b, void *s)
{
    void *ev = NULL;
    int rc = d->ops->event_record(d->h, s, &ev);
    if (rc)
        return rc;
    if (b->ready)
        d->ops->event_destroy(b->ready);
    b->ready = ev;
    return 0;
}

static int dev_space_copy(const dagger_space_t *ds, void *dst, const dagger_space_t *ss,
                          const void *src, size_t n)
{
    if (ds->kind == DAGGER_SPACE_HOST) { /* device -> host: blocking */
        struct dbuf *b = (struct dbuf *)src;
        struct gpu_dev *d = b->dev;
        int rc = ready_sync(b);
        if (!rc && n)
            rc = d->ops->copy_d2h(d->h, d->copy_out, dst, b->d, n);
        DAGGER__TRACE(dagger__trace_device(GPU_TRACK(d, 1), DAGGER__TRACE_DEV_D2H,
                                           atomic_load_explicit(&b->cid, memory_order_relaxed), n));
        return rc ? rc : stream_sync(d, d->copy_out);
    }
    struct dbuf *b = dst;
    struct gpu_dev *d = b->dev;
    pthread_mutex_lock(&d->lock);
    int rc = make_resident(d, b);
    if (!rc)
        b->pins++; /* keep it while the copy is enqueued */
    pthread_mutex_unlock(&d->lock);
    if (rc)
        return rc;
    DAGGER__TRACE(dagger__trace_device(GPU_TRACK(d, 0),
                                       ss->kind == DAGGER_SPACE_HOST ? DAGGER__TRACE_DEV_H2D
                                                                     : DAGGER__TRACE_DEV_D2D,
                                       atomic_load_explicit(&b->cid, memory_order_relaxed), n));
    pthread_mutex_lock(&d->copy_lock);
    if (ss->kind == DAGGER_SPACE_HOST) {
        rc = n ? d->ops->copy_h2d(d->h, d->copy_in, b->d, src, n) : 0;
    } else {
        struct dbuf *sb = (struct dbuf *)src;
        rc = ready_sync(sb);
        if (!rc && n && sb->dev->ops == d->ops) {
            rc = d->ops->copy_d2d(d->h, d->copy_in, b->d, sb->dev->h, sb->d, n);
        } else if (!rc && n) { /* different backends: through the host */
            void *tmp = dagger__malloc(n);
            rc = tmp ? dev_space_copy(&(dagger_space_t){0, DAGGER_SPACE_HOST, 0}, tmp, ss, src, n)
                     : DAGGER_ENOMEM;
            if (!rc)
                rc = d->ops->copy_h2d(d->h, d->copy_in, b->d, tmp, n);
            if (!rc)
                rc = stream_sync(d, d->copy_in);
            dagger__free(tmp);
        }
    }
    /* The host source stays alive (the chunk's lock is held by the stager, and a host copy is
     * only freed with the chunk), so the copy may finish later: readers wait for `ready`. */
    if (!rc)
        rc = set_ready(d, b, d->copy_in);
    pthread_mutex_unlock(&d->copy_lock);
    pthread_mutex_lock(&d->lock);
    b->pins--;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static int dev_space_copy2d(const dagger_space_t *ds, void *dst, size_t dpitch,
                            const dagger_space_t *ss, const void *src, size_t spitch, size_t width,
                            size_t rows)
{
    if (ds->kind == DAGGER_SPACE_HOST && ss->kind == DAGGER_SPACE_DEVICE) {
        const struct dbuf *b = src;
        struct gpu_dev *d = b->dev;
        int rc = ready_sync((struct dbuf *)b);
        if (!rc)
            rc = d->ops->copy2d_d2h(d->h, d->copy_out, dst, dpitch, b->d, spitch, width, rows);
        return rc ? rc : stream_sync(d, d->copy_out);
    }
    DAGGER_CHECK(ds->kind == DAGGER_SPACE_DEVICE && ss->kind == DAGGER_SPACE_HOST, DAGGER_ENOSYS,
                 "2-D copies between two devices are not supported");
    struct dbuf *b = dst;
    struct gpu_dev *d = b->dev;
    pthread_mutex_lock(&d->lock);
    int rc = make_resident(d, b);
    if (!rc)
        b->pins++; /* keep it while the copy is enqueued */
    pthread_mutex_unlock(&d->lock);
    if (rc)
        return rc;
    pthread_mutex_lock(&d->copy_lock);
    rc = d->ops->copy2d_h2d(d->h, d->copy_in, b->d, dpitch, src, spitch, width, rows);
    if (!rc)
        rc = set_ready(d, b, d->copy_in);
    pthread_mutex_unlock(&d->copy_lock);
    pthread_mutex_lock(&d->lock);
    b->pins--;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static const struct dagger__space_ops device_space_ops = {"device", dev_space_alloc, dev_space_free,
                                                          dev_space_copy, dev_space_copy2d};

__attribute__((constructor)) static void register_device_space(void)
{
    dagger__mem_register_space(DAGGER_SPACE_DEVICE, &device_space_ops);
}

/* ---------------------------------------------------------------- staging with pins */

/* Under the chunk's lock: whether the last copy into `ptr` failed (its event says so). */
static bool copy_failed(void *ptr, void *ud)
{
    struct dbuf *b = ptr;
    (void)ud;
    return b->ready && b->dev->ops->event_query(b->ready) < 0;
}

int dagger__gpu_stage_pin(struct gpu_dev *d, dagger_chunk_t *c, struct dbuf **out)
{
    dagger_space_t sp = dagger__gpu_space(d);
    for (int attempt = 0; attempt < 64; attempt++) {
        void *p = NULL;
        /* A copy made valid when it was enqueued may have failed since (its reader failed):
         * it is not valid, so it is copied again from a valid copy. A failure of the copy
         * made now reaches this task through the copy's event instead. */
        int rc = dagger__mem_invalidate(c, &sp, copy_failed, NULL);
        if (rc < 0)
            return rc;
        tls_cid = dagger_chunk_id(c); /* names the copies of this staging in the trace */
        rc = dagger__mem_stage(c, &sp, &p);
        tls_cid = 0;
        if (rc)
            return rc;
        struct dbuf *b = p;
        pthread_mutex_lock(&d->lock);
        if (b->resident) { /* not evicted since it was made valid: pin it */
            if (b->pins++ == 0)
                d->pinned += b->size;
            b->chunk = c;
            lru_unlink(b);
            lru_push(d, b);
            pthread_mutex_unlock(&d->lock);
            *out = b;
            return 0;
        }
        pthread_mutex_unlock(&d->lock);
    }
    return dagger__set_errmsg(DAGGER_ENOMEM,
                              "chunk %llu keeps being evicted from device(%d) before it can run",
                              (unsigned long long)dagger_chunk_id(c), d->index);
}

void dagger__gpu_unpin(struct dbuf *b)
{
    struct gpu_dev *d = b->dev;
    pthread_mutex_lock(&d->lock);
    if (--b->pins == 0)
        d->pinned -= b->size;
    pthread_mutex_unlock(&d->lock);
}

/* ---------------------------------------------------------------- public queries */

int dagger_gpu_count(int kind)
{
    int n = dagger__gpu_probe(), k = 0;
    for (int i = 0; i < n; i++)
        k += kind == DAGGER_GPU_ANY || devs[i]->kind == kind;
    return k;
}

int dagger_gpu_mem_info(int dev, size_t *used, size_t *limit)
{
    dagger__gpu_probe();
    struct gpu_dev *d = dagger__gpu_dev(dev);
    DAGGER_CHECK(d, DAGGER_EINVAL, "dagger_gpu_mem_info: device %d does not exist (%d found)", dev,
                 ndev);
    pthread_mutex_lock(&d->lock);
    if (used)
        *used = d->used;
    if (limit)
        *limit = d->limit;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

void *dagger__gpu_device_handle(int dev, int kind)
{
    dagger__gpu_probe();
    struct gpu_dev *d = dagger__gpu_dev(dev);
    return d && d->kind == kind ? d->h : NULL;
}
