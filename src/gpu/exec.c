/* src/gpu/exec.c - the device executor: admission, staging and pinning, the device body, and
 * completion on the device's event.
 *
 * Design: placement hands a task chosen for a device to dev_place, which admits it (its chunk
 * arguments must fit in the device's memory), stages and pins every chunk argument there (the
 * copies are enqueued on the copy-in stream) and sends the task to the CPU pool with its body
 * replaced by `device_body` (or runs that body at once on the placing thread, see start). That
 * body makes a compute stream wait for the copies' events,
 * calls the task's device implementation (which enqueues work and returns), and defers the
 * task: once the body has returned, the backend is asked to call back when the stream's work is
 * done. The callback only pushes the record on an MPSC list; one completion thread per process
 * completes the tasks (dagger__task_complete), so no worker waits on a device and no backend
 * callback calls the backend. A callback waiter on the task unpins its buffers however it ends.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "gpu/gpu_int.h"
#include "sched/cost.h"
#include "sched/sched.h"
#include "trace/trace.h"

#define REC_MAGIC 0x67707521u

struct rarg {
    dagger_chunk_t *c; /* retained by the record; NULL for other kinds */
    struct dbuf *b;    /* pinned once staged */
    bool wrote;        /* dagger_arg_dptr_rw: the device copy becomes the valid one on success */
};

struct rec {
    uint32_t magic;
    uint32_t nargs;
    struct gpu_dev *dev;
    void *stream;
    int track; /* the trace track of that stream */
    dagger_fn_t fn;
    dagger_task_t *task;
    const dagger__executor *execs; /* the context's, for the CPU pool */
    size_t need;                   /* admitted bytes */
    struct rec *wait_next;         /* the device's admission queue; dev->lock */
    struct dagger__task_callback done;
    struct rec *_Atomic qnext; /* the completion list */
    uint64_t t0, t1;           /* when its device body began, when its device work ended */
    size_t cbytes;             /* dagger__cost_bytes of its arguments: the history's size */
    int status;
    int err; /* staging failed after admission: the task fails with this */
    char errmsg[400];
    dagger_value_t result;
    struct dbuf **extra; /* chunks made by the body (dagger_tc_dchunk_create) */
    uint32_t nextra, capextra;
    struct rarg arg[];
};

/* ---------------------------------------------------------------- the completion thread */

/* True on the completion thread: bodies placed from there go to the pool (start). */
static _Thread_local bool on_completion_thread;

static struct {
    struct rec *_Atomic head; /* pushed by backend callbacks */
    _Atomic uint32_t word;    /* bumped on every push and at stop */
    _Atomic int stop;
    pthread_t thread;
    bool running;
} done_q;

static void push_done(struct rec *r)
{
    struct rec *h = atomic_load_explicit(&done_q.head, memory_order_relaxed);
    do
        atomic_store_explicit(&r->qnext, h, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&done_q.head, &h, r, memory_order_release,
                                                  memory_order_relaxed));
    atomic_fetch_add_explicit(&done_q.word, 1, memory_order_release);
    /* A non-empty list has not been taken yet: the thread takes it before it sleeps again. */
    if (!h)
        dagger__futex_wake(&done_q.word, 1);
}

static void finish(struct rec *r)
{
    dagger_task_t *t = r->task;
    DAGGER__TRACE(dagger__trace_device(r->track, DAGGER__TRACE_DEV_TASK_END, dagger_task_id(t), 0));
    if (r->status) {
        char msg[256];
        struct gpu_dev *d = r->dev;
        snprintf(msg, sizeof msg, "device(%d) (%s, %s): the task's device work failed: %s (%d)",
                 d->index, dagger_gpu_kind_name(d->kind), d->name, d->ops->errname(r->status),
                 r->status);
        dagger__task_complete(t, DAGGER_ETASK, NULL, msg);
    } else {
        /* Written arguments: the device copy is the only valid one, now that the work that
         * wrote it has succeeded (earlier, a failed copy-in would have hidden the home copy). */
        dagger_space_t sp = dagger__gpu_space(r->dev);
        for (uint32_t i = 0; i < r->nargs; i++)
            if (r->arg[i].wrote)
                dagger__mem_written(r->arg[i].c, &sp);
        /* The cost model's history (placement weighs it against the CPU body's): the time from
         * the launch, or from the end of the device's previous task when it was still busy
         * then, to the end of this one's device work. Work queued behind other tasks thus
         * counts only its own share. Only the completion thread reads and writes last_done. */
        uint64_t last = atomic_load_explicit(&r->dev->last_done, memory_order_relaxed);
        uint64_t from = r->t0 > last ? r->t0 : last;
        if (r->t0 && r->t1 > from)
            dagger__cost_record((const void *)(uintptr_t)r->fn, DAGGER_PROC_DEVICE, r->cbytes,
                                (double)(r->t1 - from) * 1e-9);
        if (r->t1 > last)
            atomic_store_explicit(&r->dev->last_done, r->t1, memory_order_relaxed);
        dagger_value_t v = r->result;
        dagger__task_complete(t, 0, &v, NULL); /* r is freed by the done waiter in there */
    }
}

static void *completion_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "dagger-gpu-done");
    on_completion_thread = true;
    for (;;) {
        uint32_t w = atomic_load_explicit(&done_q.word, memory_order_acquire);
        struct rec *r = atomic_exchange_explicit(&done_q.head, NULL, memory_order_acquire);
        if (!r) {
            if (atomic_load_explicit(&done_q.stop, memory_order_acquire))
                return NULL;
            dagger__futex_wait(&done_q.word, w, 100 * 1000 * 1000);
            continue;
        }
        struct rec *rev = NULL; /* oldest first */
        while (r) {
            struct rec *n = atomic_load_explicit(&r->qnext, memory_order_relaxed);
            atomic_store_explicit(&r->qnext, rev, memory_order_relaxed);
            rev = r;
            r = n;
        }
        while (rev) {
            struct rec *n = atomic_load_explicit(&rev->qnext, memory_order_relaxed);
            finish(rev);
            rev = n;
        }
    }
}

void dagger__gpu_completion_start(void)
{
    atomic_store(&done_q.stop, 0);
    done_q.running = pthread_create(&done_q.thread, NULL, completion_main, NULL) == 0;
}

void dagger__gpu_completion_stop(void)
{
    if (!done_q.running)
        return;
    atomic_store_explicit(&done_q.stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&done_q.word, 1, memory_order_release);
    dagger__futex_wake(&done_q.word, 1);
    pthread_join(done_q.thread, NULL);
    done_q.running = false;
}

/* ---------------------------------------------------------------- records */

static void start(struct rec *r);

/* Wait for the last copy into each buffer of a failed task. A task that succeeded needs no
 * wait: its compute stream waited for them before its completion event. */
static void wait_copies(struct rec *r)
{
    struct gpu_dev *d = r->dev;
    pthread_mutex_lock(&d->copy_lock); /* another stager may replace `ready` meanwhile */
    for (uint32_t i = 0; i < r->nargs + r->nextra; i++) {
        struct dbuf *b = i < r->nargs ? r->arg[i].b : r->extra[i - r->nargs];
        if (b && b->ready)
            (void)d->ops->event_sync(b->ready);
    }
    pthread_mutex_unlock(&d->copy_lock);
}

static void rec_free(dagger_task_t *t, void *ud)
{
    struct rec *r = ud;
    struct gpu_dev *d = r->dev;
    /* The record holds its own references: the task drops its arguments before this runs. */
    bool failed = dagger_task_error(t) != 0;
    dagger_space_t sp = dagger__gpu_space(d);
    if (failed) /* copies into the task's buffers may still read host memory freed below */
        wait_copies(r);
    for (uint32_t i = 0; i < r->nargs; i++) {
        /* A failed task may have half written its device copy: drop it when a valid copy is
         * left elsewhere (when it was already the only one, there is nothing better to keep). */
        if (failed && r->arg[i].wrote)
            (void)dagger__mem_invalidate(r->arg[i].c, &sp, NULL, NULL);
        if (r->arg[i].b)
            dagger__gpu_unpin(r->arg[i].b);
        dagger_chunk_release(r->arg[i].c);
    }
    for (uint32_t i = 0; i < r->nextra; i++) {
        dagger_chunk_t *c = r->extra[i]->chunk;
        dagger__gpu_unpin(r->extra[i]);
        dagger_chunk_release(c);
    }
    /* Admit the waiting tasks that fit now, in order. */
    struct rec *go = NULL, **tail = &go;
    pthread_mutex_lock(&d->lock);
    d->admitted -= r->need;
    while (d->wait_head && d->admitted + d->wait_head->need <= d->limit) {
        struct rec *w = d->wait_head;
        d->wait_head = w->wait_next;
        d->admitted += w->need;
        w->wait_next = NULL;
        *tail = w;
        tail = &w->wait_next;
    }
    if (!d->wait_head)
        d->wait_tail = NULL;
    pthread_mutex_unlock(&d->lock);
    atomic_fetch_sub_explicit(&d->inflight, 1, memory_order_relaxed);
    dagger__free(r->extra);
    dagger__free(r);
    while (go) {
        struct rec *n = go->wait_next;
        start(go);
        go = n;
    }
}

static struct rec *rec_of(const void *tc)
{
    struct rec *r = tc ? dagger__task_exec_ud(tc) : NULL;
    return r && r->magic == REC_MAGIC ? r : NULL;
}

static void on_event(void *ud, int status)
{
    struct rec *r = ud;
    r->status = status;
    r->t1 = dagger__now_ns(); /* the device said so now; the completion thread may come later */
    push_done(r);
}

/* Block until the stream is idle (a failing body may have enqueued work that reads buffers
 * about to be unpinned). */
static void drain_stream(struct gpu_dev *d, void *s)
{
    void *ev = NULL;
    if (d->ops->event_record(d->h, s, &ev) == 0) {
        (void)d->ops->event_sync(ev);
        d->ops->event_destroy(ev);
    }
}

static void launch(dagger_task_t *t, void *ud)
{
    struct rec *r = ud;
    struct gpu_dev *d = r->dev;
    DAGGER__TRACE(
        dagger__trace_device(r->track, DAGGER__TRACE_DEV_TASK_BEGIN, dagger_task_id(t), 0));
    if (d->ops->notify(d->h, r->stream, on_event, r) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", dagger_last_errmsg());
        drain_stream(d, r->stream); /* the body's work still uses the buffers about to go */
        dagger__task_complete(t, DAGGER_ETASK, NULL, msg);
    }
}

static int device_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct rec *r = rec_of(tc);
    struct gpu_dev *d = r->dev;
    uint32_t k = atomic_fetch_add_explicit(&d->rr, 1, memory_order_relaxed);
    r->stream = d->compute[k % GPU_COMPUTE_STREAMS];
    r->track = GPU_TRACK(d, 2 + (int)(k % GPU_COMPUTE_STREAMS));
    if (d->ops->activate && d->ops->activate(d->h) != 0)
        return dagger_fail(tc, DAGGER_ETASK, "device(%d): %s", d->index, dagger_last_errmsg());
    /* copy_lock: a stager of the same chunk may replace `ready` (a copy into the same buffer). */
    pthread_mutex_lock(&d->copy_lock);
    for (uint32_t i = 0; i < r->nargs; i++) {
        /* A copy that has already finished needs no wait command on the stream (a failed one
         * does: the wait hands its error to the stream). */
        if (r->arg[i].b && r->arg[i].b->ready && d->ops->event_query(r->arg[i].b->ready) != 1) {
            int rc = d->ops->event_wait(d->h, r->stream, r->arg[i].b->ready);
            if (rc) {
                pthread_mutex_unlock(&d->copy_lock);
                return dagger_fail(tc, rc, "device(%d): waiting for the copy of argument %u: %s",
                                   d->index, i, dagger_last_errmsg());
            }
        }
    }
    pthread_mutex_unlock(&d->copy_lock);
    dagger_value_t res = dagger_nil();
    r->t0 = dagger__now_ns();
    if (d->ops->serialize)
        d->ops->serialize(d->h, 1);
    int rc = r->fn(tc, a, &res);
    if (d->ops->serialize)
        d->ops->serialize(d->h, 0);
    if (rc || dagger__task_failed(r->task)) {
        drain_stream(d, r->stream);
        *out = res;
        return rc;
    }
    r->result = res;
    dagger__task_defer(tc, launch, r);
    return 0;
}

/* ---------------------------------------------------------------- placement */

static dagger_fn_t impl_for(const struct dagger__place *p, int kind)
{
    for (uint32_t i = 0; i < p->nimpls; i++)
        if (p->impls[i].kind == kind && p->impls[i].fn)
            return p->impls[i].fn;
    return NULL;
}

static int fail_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct rec *r = rec_of(tc);
    return dagger_fail(tc, r->err, "%s", r->errmsg);
}

/* An admitted task: stage and pin its chunks, then run its body (a staging failure runs a body
 * that fails the task with the reason). A device body only enqueues work and returns, so it
 * runs here, on the placing thread, like a raw enqueue: handing it to a worker costs a thread
 * hop per task, and a worker that then spins for more work takes a CPU from the device
 * runtime's threads (bench/RESULTS.md, 2026-12-01, gpu). It goes to the CPU pool instead on
 * the completion thread (a body that waited for another device task there would wait for
 * itself) and for backends that make the device current on the calling thread or serialise
 * bodies (CUDA: the spawning thread's current device must not change under the caller). */
static void start(struct rec *r)
{
    dagger_fn_t body = device_body;
    for (uint32_t i = 0; i < r->nargs; i++) {
        if (!r->arg[i].c)
            continue;
        int rc = dagger__gpu_stage_pin(r->dev, r->arg[i].c, &r->arg[i].b);
        if (rc) {
            r->err = rc;
            snprintf(r->errmsg, sizeof r->errmsg, "argument %u: %s", i, dagger_last_errmsg());
            body = fail_body;
            break;
        }
    }
    dagger__task_set_body(r->task, body, r);
    if (body == device_body && !on_completion_thread && !r->dev->ops->activate &&
        !r->dev->ops->serialize) {
        dagger__task_run_here(r->task);
        return;
    }
    dagger_proc_t any = {0, DAGGER_PROC_CPU, -1};
    r->execs[DAGGER_PROC_CPU].submit(r->execs[DAGGER_PROC_CPU].ud, (struct dagger__job *)r->task,
                                     &any);
}

static int dev_place(void *ud, const struct dagger__place *p, struct dagger__job *j,
                     const dagger_proc_t *proc, const dagger__executor *execs, char *why,
                     size_t cap)
{
    (void)ud;
    struct gpu_dev *d = dagger__gpu_dev(proc->index);
    dagger_fn_t fn = d ? impl_for(p, d->kind) : NULL;
    if (!fn) {
        snprintf(why, cap, "the task has no implementation for device(%d)", proc->index);
        return DAGGER_ESCOPE;
    }
    /* Admission: every chunk argument (each once) must fit at the same time. */
    size_t need = 0;
    for (uint32_t i = 0; i < p->ninputs; i++) {
        const dagger_value_t *v = &p->inputs[i];
        if (v->kind == DAGGER_KIND_SHARD) {
            snprintf(why, cap, "argument %u: a shard cannot be used on device(%d)", i, d->index);
            return DAGGER_ESCOPE;
        }
        if (v->kind != DAGGER_KIND_CHUNK || !v->u.c)
            continue;
        bool dup = false;
        for (uint32_t k = 0; k < i; k++)
            dup |= p->inputs[k].kind == DAGGER_KIND_CHUNK && p->inputs[k].u.c == v->u.c;
        if (!dup)
            need += dagger_chunk_size(v->u.c);
    }
    if (need > d->limit) {
        snprintf(why, cap,
                 "the task's chunk arguments need %zu bytes on device(%d) (%s), which holds %zu",
                 need, d->index, d->name, d->limit);
        return DAGGER_ENOMEM;
    }
    struct rec *r = dagger__calloc(1, sizeof *r + p->ninputs * sizeof(struct rarg));
    if (!r) {
        snprintf(why, cap, "out of memory for a device launch record");
        return DAGGER_ENOMEM;
    }
    r->magic = REC_MAGIC;
    r->dev = d;
    r->fn = fn;
    r->task = (dagger_task_t *)j;
    r->execs = execs;
    r->need = need;
    r->cbytes = dagger__cost_bytes(p->inputs, p->ninputs);
    r->nargs = p->ninputs;
    for (uint32_t i = 0; i < p->ninputs; i++)
        if (p->inputs[i].kind == DAGGER_KIND_CHUNK && p->inputs[i].u.c)
            r->arg[i].c = dagger_chunk_retain(p->inputs[i].u.c);
    atomic_fetch_add_explicit(&d->inflight, 1, memory_order_relaxed);
    dagger__task_set_external(r->task); /* it completes when the device is done */
    dagger__task_on_done(r->task, &r->done, rec_free, r);
    /* Admitted now, or queued until running tasks release enough of the device. */
    pthread_mutex_lock(&d->lock);
    bool now = !d->wait_head && d->admitted + need <= d->limit;
    if (now) {
        d->admitted += need;
    } else {
        if (d->wait_tail)
            d->wait_tail->wait_next = r;
        else
            d->wait_head = r;
        d->wait_tail = r;
    }
    pthread_mutex_unlock(&d->lock);
    if (now)
        start(r);
    return 0;
}

/* The cost model among allowed devices with an implementation: bytes to move at an assumed
 * 10 GB/s plus, per task queued there and for this one, the run time the history expects of
 * the body on such a device (20 us per queued task while it is not known). */
static int pick(uint64_t allowed, const struct dagger__place *p, struct dagger__dev_estimate *est)
{
    int best = -1;
    double best_cost = 0;
    bool best_known = false;
    size_t cbytes = dagger__cost_bytes(p->inputs, p->ninputs);
    for (int i = 0; i < dagger__gpu_ndev() && i < 64; i++) {
        if (!((allowed >> i) & 1))
            continue;
        struct gpu_dev *d = dagger__gpu_dev(i);
        dagger_fn_t body = impl_for(p, d->kind);
        if (!body)
            continue;
        dagger_space_t sp = dagger__gpu_space(d);
        double bytes = 0;
        for (uint32_t k = 0; k < p->ninputs; k++) {
            const dagger_value_t *v = &p->inputs[k];
            if (v->kind == DAGGER_KIND_CHUNK && v->u.c && !dagger__mem_valid_in(v->u.c, &sp))
                bytes += (double)dagger_chunk_size(v->u.c);
        }
        double expected = 0;
        int queued = atomic_load_explicit(&d->inflight, memory_order_relaxed);
        bool known = dagger__cost_expected((const void *)(uintptr_t)body, DAGGER_PROC_DEVICE,
                                           cbytes, &expected) >= DAGGER__COST_WARM;
        double c = bytes / 1e10 + (known ? expected * (queued + 1) : 20e-6 * queued);
        if (best < 0 || c < best_cost) {
            best = i;
            best_cost = c;
            best_known = known;
        }
    }
    est->cost = best >= 0 && best_known ? best_cost : -1;
    est->bytes = cbytes;
    return best;
}

static int match(int gkind, int index, uint64_t *bits, char *bad, size_t cap)
{
    int n = dagger__gpu_probe(), k = 0, found = 0;
    for (int i = 0; i < n && i < 64; i++) {
        struct gpu_dev *d = dagger__gpu_dev(i);
        if (gkind != DAGGER_GPU_ANY && d->kind != gkind)
            continue;
        if (index < 0 || index == k) {
            *bits |= 1ull << i;
            found++;
        }
        k++;
    }
    if (!found && dagger__gpu_probe_oom())
        snprintf(bad, cap,
                 "out of memory while opening the devices (they are probed again on "
                 "the next use)");
    else if (!found && index < 0)
        snprintf(bad, cap, "no device of kind %s was found", dagger_gpu_kind_name(gkind));
    else if (!found)
        snprintf(bad, cap, "device %d does not exist: %d device%s of kind %s found", index, k,
                 k == 1 ? "" : "s", dagger_gpu_kind_name(gkind));
    return found;
}

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static int nctx;

static void ctx_open(void)
{
    pthread_mutex_lock(&open_lock);
    nctx++;
    pthread_mutex_unlock(&open_lock);
}

static void ctx_close(void)
{
    pthread_mutex_lock(&open_lock);
    if (--nctx == 0)
        dagger__gpu_close_all();
    pthread_mutex_unlock(&open_lock);
}

__attribute__((constructor)) static void register_devices(void)
{
    static const struct dagger__sched_devices hooks = {
        {"device", NULL, NULL, dev_place}, match, pick, ctx_open, ctx_close};
    dagger__sched_register_devices(&hooks);
}

/* ---------------------------------------------------------------- inside a device body */

static dagger_dptr_t arg_dptr(const dagger_args_t *a, size_t i, bool write)
{
    dagger_dptr_t none = {0, 0};
    struct rec *r = rec_of(a);
    if (!r) {
        dagger_fail((dagger_tc_t *)a, DAGGER_ESTATE,
                    "dagger_arg_dptr: argument %zu: the task is not running on a device", i);
        return none;
    }
    if (i >= r->nargs || !r->arg[i].b) {
        dagger_fail((dagger_tc_t *)a, DAGGER_ETYPE,
                    "dagger_arg_dptr: argument %zu is not a chunk (%u arguments)", i, r->nargs);
        return none;
    }
    struct dbuf *b = r->arg[i].b;
    if (write)
        r->arg[i].wrote = true; /* recorded as written when the task succeeds (finish) */
    return b->d;
}

dagger_dptr_t dagger_arg_dptr(const dagger_args_t *a, size_t i) { return arg_dptr(a, i, false); }
dagger_dptr_t dagger_arg_dptr_rw(const dagger_args_t *a, size_t i) { return arg_dptr(a, i, true); }

int dagger_tc_dchunk_create(dagger_tc_t *tc, size_t size, dagger_chunk_t **out, dagger_dptr_t *dp)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_tc_dchunk_create: out is NULL");
    *out = NULL;
    struct rec *r = rec_of(tc);
    DAGGER_CHECK(r, DAGGER_EINVAL, "dagger_tc_dchunk_create: the task is not running on a device");
    struct gpu_dev *d = r->dev;
    if (r->nextra == r->capextra) {
        uint32_t cap = r->capextra ? 2 * r->capextra : 4;
        struct dbuf **n = dagger__realloc(r->extra, cap * sizeof *n);
        DAGGER_CHECK(n, DAGGER_ENOMEM, "dagger_tc_dchunk_create: out of memory");
        r->extra = n;
        r->capextra = cap;
    }
    dagger_chunk_t *c;
    int rc = dagger_chunk_create(dagger__task_ctx(r->task), size, &c);
    if (rc)
        return rc;
    struct dbuf *b;
    rc = dagger__gpu_stage_pin(d, c, &b);
    if (rc) {
        dagger_chunk_release(c);
        return rc;
    }
    r->extra[r->nextra++] = b;
    dagger_chunk_retain(c);
    if (b->ready) { /* the body's work comes after the (zeroing) copy */
        rc = d->ops->event_wait(d->h, r->stream, b->ready);
        if (rc) {
            dagger_chunk_release(c);
            return rc;
        }
    }
    dagger_space_t sp = dagger__gpu_space(d);
    dagger__mem_written(c, &sp);
    if (dp)
        *dp = b->d;
    *out = c;
    return 0;
}

int dagger_tc_device(const dagger_tc_t *tc, int *kind)
{
    struct rec *r = rec_of(tc);
    if (kind)
        *kind = r ? r->dev->kind : DAGGER_GPU_ANY;
    return r ? r->dev->index : -1;
}

void *dagger__gpu_tc_stream(const dagger_tc_t *tc, int kind)
{
    struct rec *r = rec_of(tc);
    if (!r || r->dev->kind != kind || !r->stream)
        return NULL;
    return r->dev->ops->stream_native ? r->dev->ops->stream_native(r->stream) : r->stream;
}

int dagger__gpu_tc_launch(dagger_tc_t *tc, struct gpu_dev **d, void **stream)
{
    struct rec *r = rec_of(tc);
    DAGGER_CHECK(r, DAGGER_ESTATE, "the task is not running on a device");
    *d = r->dev;
    *stream = r->stream;
    return 0;
}
