/* src/gpu/fake.c - the test-only fake device: host memory behind poisoned addresses, one thread
 * per stream, and injected failures (allocation, copy, launch, slow operations).
 *
 * Design: a stream is a thread that runs its operations in order; an event is a reference-
 * counted flag with a status. A failed operation latches an error in its stream, which the next
 * event recorded or notification reports (then the stream is clean again); a stream that waits
 * for a failed event takes its error. Device pointers are host addresses XOR a poison, so a
 * body that dereferences one crashes at once instead of reading host memory by accident.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/common.h"
#include "gpu/gpu_int.h"

#define POISON 0xfa4e000000000000ull

enum { FAKE_COPY_FAILED = -1001, FAKE_LAUNCH_FAILED = -1002, FAKE_ALLOC_FAILED = -1003 };

static struct {
    int ndev;
    size_t mem;
    struct dagger__fake_faults f;
    _Atomic int nalloc, ncopy, nlaunch;
    pthread_mutex_t log_lock;
    char log[4096];
    size_t loglen;
} fk = {.log_lock = PTHREAD_MUTEX_INITIALIZER};

struct fdev {
    int index;
    pthread_mutex_t lock;
    size_t used;
};

struct fevent {
    _Atomic int refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
};

enum { OP_COPY, OP_COPY2D, OP_WAIT, OP_RECORD, OP_LAUNCH, OP_NOTIFY, OP_STOP };

struct op {
    struct op *next;
    int kind;
    char tag;
    void *dst;
    const void *src;
    size_t n, dpitch, spitch, rows;
    struct fevent *ev;
    void (*fn)(void *ud);
    dagger__device_cb cb;
    void *ud;
};

struct fstream {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct op *head, *tail;
    int err; /* the stream thread only */
};

void dagger__gpu_fake_setup(int ndev, size_t mem, const struct dagger__fake_faults *f)
{
    fk.ndev = ndev;
    fk.mem = mem;
    if (f)
        fk.f = *f;
    dagger__gpu_fake_only();
}

void *dagger__gpu_fake_host(dagger_dptr_t p)
{
    return p.handle ? (char *)(uintptr_t)(p.handle ^ POISON) + p.offset : NULL;
}

static void log_op(char c)
{
    pthread_mutex_lock(&fk.log_lock);
    if (fk.loglen + 1 < sizeof fk.log)
        fk.log[fk.loglen++] = c;
    pthread_mutex_unlock(&fk.log_lock);
}

size_t dagger__gpu_fake_log(char *buf, size_t cap)
{
    pthread_mutex_lock(&fk.log_lock);
    size_t n = fk.loglen < cap - 1 ? fk.loglen : cap - 1;
    memcpy(buf, fk.log, n);
    buf[n] = '\0';
    pthread_mutex_unlock(&fk.log_lock);
    return n;
}

/* ---------------------------------------------------------------- events */

static struct fevent *ev_new(void)
{
    struct fevent *e = dagger__calloc(1, sizeof *e);
    if (!e)
        return NULL;
    atomic_init(&e->refs, 1);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    return e;
}

static void ev_put(struct fevent *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->cond);
        dagger__free(e);
    }
}

static void ev_fire(struct fevent *e, int status)
{
    pthread_mutex_lock(&e->lock);
    e->done = true;
    e->status = status;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static int ev_wait(struct fevent *e)
{
    pthread_mutex_lock(&e->lock);
    while (!e->done)
        pthread_cond_wait(&e->cond, &e->lock);
    int st = e->status;
    pthread_mutex_unlock(&e->lock);
    return st;
}

/* ---------------------------------------------------------------- streams */

static void run_op(struct fstream *s, struct op *o)
{
    if (fk.f.slow_us && o->kind != OP_WAIT) {
        struct timespec ts = {0, (long)fk.f.slow_us * 1000};
        nanosleep(&ts, NULL);
    }
    switch (o->kind) {
    case OP_COPY:
    case OP_COPY2D:
        if (s->err)
            break;
        if (fk.f.fail_copy && atomic_fetch_add(&fk.ncopy, 1) + 1 == fk.f.fail_copy) {
            s->err = FAKE_COPY_FAILED;
            break;
        }
        if (o->kind == OP_COPY)
            memcpy(o->dst, o->src, o->n);
        else
            for (size_t r = 0; r < o->rows; r++)
                memcpy((char *)o->dst + r * o->dpitch, (const char *)o->src + r * o->spitch, o->n);
        log_op(o->tag);
        break;
    case OP_WAIT: {
        int st = ev_wait(o->ev);
        if (st && !s->err)
            s->err = st;
        ev_put(o->ev);
        break;
    }
    case OP_RECORD:
        ev_fire(o->ev, s->err);
        ev_put(o->ev);
        s->err = 0;
        break;
    case OP_LAUNCH:
        if (s->err)
            break;
        if (fk.f.fail_launch && atomic_fetch_add(&fk.nlaunch, 1) + 1 == fk.f.fail_launch) {
            s->err = FAKE_LAUNCH_FAILED;
            break;
        }
        log_op('K');
        o->fn(o->ud);
        break;
    case OP_NOTIFY: {
        int st = s->err;
        s->err = 0;
        o->cb(o->ud, st);
        break;
    }
    }
}

static void *stream_main(void *arg)
{
    struct fstream *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->head)
            pthread_cond_wait(&s->cond, &s->lock);
        struct op *o = s->head;
        s->head = o->next;
        if (!s->head)
            s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        if (o->kind == OP_STOP) {
            dagger__free(o);
            return NULL;
        }
        run_op(s, o);
        dagger__free(o);
    }
}

static int enqueue(struct fstream *s, struct op *o)
{
    o->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = o;
    else
        s->head = o;
    s->tail = o;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static struct op *op_new(int kind)
{
    struct op *o = dagger__calloc(1, sizeof *o);
    if (o)
        o->kind = kind;
    return o;
}

#define NEW_OP(o, kind)                                                                            \
    struct op *o = op_new(kind);                                                                   \
    DAGGER_CHECK(o, DAGGER_ENOMEM, "fake device: out of memory for a stream operation")

/* ---------------------------------------------------------------- the ops table */

static int f_probe(char *why, size_t cap)
{
    if (!fk.ndev)
        snprintf(why, cap, "no fake device was set up");
    return fk.ndev;
}

static int f_open(int index, void **dev, char *name, size_t namecap, size_t *total)
{
    struct fdev *d = dagger__calloc(1, sizeof *d);
    DAGGER_CHECK(d, DAGGER_ENOMEM, "fake device: out of memory");
    d->index = index;
    pthread_mutex_init(&d->lock, NULL);
    snprintf(name, namecap, "fake%d", index);
    *total = fk.mem;
    *dev = d;
    return 0;
}

static void f_close(void *dev)
{
    struct fdev *d = dev;
    pthread_mutex_destroy(&d->lock);
    dagger__free(d);
}

static int f_mem_info(void *dev, size_t *free_bytes, size_t *total)
{
    struct fdev *d = dev;
    pthread_mutex_lock(&d->lock);
    *free_bytes = fk.mem - d->used;
    *total = fk.mem;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static int f_alloc(void *dev, size_t n, dagger_dptr_t *out)
{
    struct fdev *d = dev;
    if (fk.f.fail_alloc && atomic_fetch_add(&fk.nalloc, 1) + 1 == fk.f.fail_alloc)
        return dagger__set_errmsg(DAGGER_ENOMEM,
                                  "fake device %d: FAKE_ALLOC_FAILED (injected) for %zu bytes",
                                  d->index, n);
    pthread_mutex_lock(&d->lock);
    bool fits = d->used + n <= fk.mem;
    if (fits)
        d->used += n;
    pthread_mutex_unlock(&d->lock);
    DAGGER_CHECK(fits, DAGGER_ENOMEM, "fake device %d: out of device memory for %zu bytes",
                 d->index, n);
    /* Room for the size in front, so free knows it. */
    size_t *p = dagger__malloc(n + sizeof(size_t));
    if (!p) {
        pthread_mutex_lock(&d->lock);
        d->used -= n;
        pthread_mutex_unlock(&d->lock);
        return dagger__set_errmsg(DAGGER_ENOMEM, "fake device: out of host memory");
    }
    p[0] = n;
    out->handle = (uintptr_t)(p + 1) ^ POISON;
    out->offset = 0;
    return 0;
}

static void f_free(void *dev, dagger_dptr_t p)
{
    struct fdev *d = dev;
    size_t *h = (size_t *)(uintptr_t)(p.handle ^ POISON) - 1;
    pthread_mutex_lock(&d->lock);
    d->used -= h[0];
    pthread_mutex_unlock(&d->lock);
    dagger__free(h);
}

static void *f_host_alloc(void *dev, size_t n) { return dagger__malloc(n ? n : 1); }
static void f_host_free(void *dev, void *p, size_t n) { dagger__free(p); }

static int f_stream_create(void *dev, void **out)
{
    struct fstream *s = dagger__calloc(1, sizeof *s);
    DAGGER_CHECK(s, DAGGER_ENOMEM, "fake device: out of memory for a stream");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (pthread_create(&s->thread, NULL, stream_main, s) != 0) {
        dagger__free(s);
        return dagger__set_errmsg(DAGGER_ENOMEM, "fake device: cannot start a stream thread");
    }
    *out = s;
    return 0;
}

static void f_stream_destroy(void *dev, void *sp)
{
    struct fstream *s = sp;
    struct op *o = op_new(OP_STOP);
    if (o)
        enqueue(s, o);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    dagger__free(s);
}

static int f_copy_h2d(void *dev, void *s, dagger_dptr_t dst, const void *src, size_t n)
{
    NEW_OP(o, OP_COPY);
    o->dst = dagger__gpu_fake_host(dst);
    o->src = src;
    o->n = n;
    o->tag = 'C';
    return enqueue(s, o);
}

static int f_copy_d2h(void *dev, void *s, void *dst, dagger_dptr_t src, size_t n)
{
    NEW_OP(o, OP_COPY);
    o->dst = dst;
    o->src = dagger__gpu_fake_host(src);
    o->n = n;
    o->tag = 'D';
    return enqueue(s, o);
}

static int f_copy_d2d(void *dev, void *s, dagger_dptr_t dst, void *sdev, dagger_dptr_t src,
                      size_t n)
{
    NEW_OP(o, OP_COPY);
    o->dst = dagger__gpu_fake_host(dst);
    o->src = dagger__gpu_fake_host(src);
    o->n = n;
    o->tag = 'P';
    return enqueue(s, o);
}

static int f_copy2d_h2d(void *dev, void *s, dagger_dptr_t dst, size_t dpitch, const void *src,
                        size_t spitch, size_t width, size_t rows)
{
    NEW_OP(o, OP_COPY2D);
    o->dst = dagger__gpu_fake_host(dst);
    o->src = src;
    o->n = width;
    o->dpitch = dpitch;
    o->spitch = spitch;
    o->rows = rows;
    o->tag = 'C';
    return enqueue(s, o);
}

static int f_copy2d_d2h(void *dev, void *s, void *dst, size_t dpitch, dagger_dptr_t src,
                        size_t spitch, size_t width, size_t rows)
{
    NEW_OP(o, OP_COPY2D);
    o->dst = dst;
    o->src = dagger__gpu_fake_host(src);
    o->n = width;
    o->dpitch = dpitch;
    o->spitch = spitch;
    o->rows = rows;
    o->tag = 'D';
    return enqueue(s, o);
}

static int f_event_record(void *dev, void *s, void **out)
{
    struct fevent *e = ev_new();
    DAGGER_CHECK(e, DAGGER_ENOMEM, "fake device: out of memory for an event");
    struct op *o = op_new(OP_RECORD);
    if (!o) {
        ev_put(e);
        return dagger__set_errmsg(DAGGER_ENOMEM, "fake device: out of memory");
    }
    atomic_fetch_add(&e->refs, 1);
    o->ev = e;
    enqueue(s, o);
    *out = e;
    return 0;
}

static int f_event_query(void *ev)
{
    struct fevent *e = ev;
    pthread_mutex_lock(&e->lock);
    int r = e->done ? (e->status ? -1 : 1) : 0;
    pthread_mutex_unlock(&e->lock);
    return r;
}

static int f_event_wait(void *dev, void *s, void *ev)
{
    NEW_OP(o, OP_WAIT);
    struct fevent *e = ev;
    atomic_fetch_add(&e->refs, 1);
    o->ev = e;
    return enqueue(s, o);
}

static const char *f_errname(int st)
{
    switch (st) {
    case FAKE_COPY_FAILED:
        return "FAKE_COPY_FAILED";
    case FAKE_LAUNCH_FAILED:
        return "FAKE_LAUNCH_FAILED";
    case FAKE_ALLOC_FAILED:
        return "FAKE_ALLOC_FAILED";
    }
    return "FAKE_OK";
}

static int f_event_sync(void *ev)
{
    int st = ev_wait(ev);
    DAGGER_CHECK(st == 0, DAGGER_ETASK, "fake device: %s (%d)", f_errname(st), st);
    return 0;
}

static void f_event_destroy(void *ev) { ev_put(ev); }

static int f_notify(void *dev, void *s, dagger__device_cb cb, void *ud)
{
    NEW_OP(o, OP_NOTIFY);
    o->cb = cb;
    o->ud = ud;
    return enqueue(s, o);
}

const struct dagger__device_ops dagger__fake_ops = {
    .name = "fake",
    .kind = DAGGER_GPU_FAKE,
    .probe = f_probe,
    .open = f_open,
    .close = f_close,
    .mem_info = f_mem_info,
    .alloc = f_alloc,
    .free = f_free,
    .host_alloc = f_host_alloc,
    .host_free = f_host_free,
    .stream_create = f_stream_create,
    .stream_destroy = f_stream_destroy,
    .copy_h2d = f_copy_h2d,
    .copy_d2h = f_copy_d2h,
    .copy_d2d = f_copy_d2d,
    .copy2d_h2d = f_copy2d_h2d,
    .copy2d_d2h = f_copy2d_d2h,
    .event_record = f_event_record,
    .event_query = f_event_query,
    .event_wait = f_event_wait,
    .event_sync = f_event_sync,
    .event_destroy = f_event_destroy,
    .notify = f_notify,
    .errname = f_errname,
    .stream_native = NULL,
};

int dagger__gpu_fake_launch(dagger_tc_t *tc, void (*fn)(void *ud), void *ud)
{
    struct gpu_dev *d;
    void *s;
    int rc = dagger__gpu_tc_launch(tc, &d, &s);
    if (rc)
        return rc;
    DAGGER_CHECK(d->kind == DAGGER_GPU_FAKE, DAGGER_EINVAL, "the task's device is not fake");
    NEW_OP(o, OP_LAUNCH);
    o->fn = fn;
    o->ud = ud;
    return enqueue(s, o);
}
