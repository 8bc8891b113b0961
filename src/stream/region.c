/* src/stream/region.c - streaming regions: recording spawns, wiring edges, ending nodes.
 *
 * Design: dagger_stream_begin opens a bulk queue block and, inside it, a spawn-hook block
 * (core.h), so dagger_spawn in the region calls spawn_hook: it records a node and spawns its
 * driver task with dagger__task_spawn_nohook, which the bulk block holds. Task arguments that are
 * streaming tasks of the region become input edges and other task arguments are fetched by the
 * driver when it starts: neither is passed to the core as a dependency (a consumer must start
 * before its producer ends). dagger_stream_end closes the hook block, allocates every edge and
 * closes the bulk block, which starts all drivers together.
 * A registry of live regions (reg_lock) maps a task to its node for the rare calls that only
 * have the task: a driver starting, dagger_finish_stream, the cancel hook. The cancel hook looks
 * the task up instead of trusting a pointer, because a user may cancel a handle long after its
 * region is gone. A driver starting takes a reference with its lookup (dagger__stream_acquire),
 * under reg_lock: a cancel that ends its node before the driver's state CAS may drop the node's
 * own reference, and the region then lives until the driver lets go of it.
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "stream/stream_int.h"
#include "trace/trace.h"

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dagger_stream *reg_head; /* guarded by reg_lock */

void dagger_stream_opts_init(dagger_stream_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->buffer = 1;
    o->max_evals = -1;
    o->teardown = true;
    o->max_value_bytes = 4096;
}

static int check_opts(const dagger_stream_opts_t *o, const char *what)
{
    DAGGER_CHECK(o->buffer > 0, DAGGER_EINVAL,
                 "%s: buffer %ld is invalid: a stream buffer needs at least 1 slot", what,
                 o->buffer);
    DAGGER_CHECK(o->buffer <= (1L << 24), DAGGER_EINVAL,
                 "%s: buffer %ld is too large (at most 16777216 slots)", what, o->buffer);
    DAGGER_CHECK(o->max_evals != 0, DAGGER_EINVAL,
                 "%s: max_evals 0 is invalid: give a count >= 1, or < 0 for no limit", what);
    return 0;
}

/* ---------------------------------------------------------------- registry */

static struct node *lookup_locked(const dagger_task_t *t)
{
    for (struct dagger_stream *r = reg_head; r; r = r->next)
        for (uint32_t i = 0; i < r->nnodes; i++)
            if (r->nodes[i]->task == t)
                return r->nodes[i];
    return NULL;
}

struct node *dagger__stream_lookup(const dagger_task_t *t)
{
    pthread_mutex_lock(&reg_lock);
    struct node *n = lookup_locked(t);
    pthread_mutex_unlock(&reg_lock);
    return n;
}

struct node *dagger__stream_acquire(const dagger_task_t *t, bool *early)
{
    *early = false;
    pthread_mutex_lock(&reg_lock);
    struct node *n = lookup_locked(t);
    if (n && !n->r->launched) {
        /* Started before its region: the bulk block had no memory to hold it. The region
         * fails at its end (dagger_stream_end cancels it); the node stays N_NEW for that. */
        if (!n->r->early_err)
            n->r->early_err = DAGGER_ENOMEM;
        *early = true;
        n = NULL;
    } else if (n) {
        /* A region whose count reached zero is being freed (region_free has not unlinked it
         * yet): it may not be revived. */
        uint32_t refs = atomic_load_explicit(&n->r->refs, memory_order_relaxed);
        do {
            if (refs == 0) {
                n = NULL;
                break;
            }
        } while (!atomic_compare_exchange_weak_explicit(
            &n->r->refs, &refs, refs + 1, memory_order_acquire, memory_order_relaxed));
    }
    pthread_mutex_unlock(&reg_lock);
    return n;
}

bool dagger_task_is_streaming(const dagger_task_t *t)
{
    return t && dagger__stream_lookup(t) != NULL;
}

static void region_free(struct dagger_stream *r)
{
    pthread_mutex_lock(&reg_lock);
    if (r->prev)
        r->prev->next = r->next;
    else if (reg_head == r)
        reg_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    pthread_mutex_unlock(&reg_lock);
    for (uint32_t i = 0; i < r->nnodes; i++) {
        struct node *n = r->nodes[i];
        for (uint32_t k = 0; k < n->nins; k++) {
            struct edge *e = n->ins[k].e;
            if (!e)
                continue;
            dagger__free(e->slots);
            dagger__free(e->bytes);
            dagger__free(e);
        }
        for (uint32_t k = 0; k < n->nexts; k++)
            dagger_task_release(n->exts[k].t);
        for (uint32_t k = 0; k < n->nsync; k++)
            dagger_task_release(n->sync[k]);
        dagger__free(n->ins);
        dagger__free(n->exts);
        dagger__free(n->sync);
        dagger__free(n->outs);
        dagger__stream_port_free(n->port);
        dagger_task_release(n->task);
        dagger__free(n);
    }
    dagger__free(r->nodes);
    dagger__free(r);
}

void dagger__stream_release(struct dagger_stream *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        region_free(r);
}

/* ---------------------------------------------------------------- ending */

/* Wake `n` wherever it waits: it rechecks its flags. */
void dagger__stream_wake(struct node *n)
{
    dagger__fence_seq_cst(); /* the project fence: cheaper on x86, seen by TSan */
    for (uint32_t k = 0; k < n->nins; k++)
        if (n->ins[k].e)
            dagger__stream_fire(n->r, &n->ins[k].e->cons_wait);
    for (uint32_t k = 0; k < n->nouts; k++)
        dagger__stream_fire(n->r, &n->outs[k]->prod_wait);
}

static void stop_node(struct node *n, int level)
{
    int cur = atomic_load_explicit(&n->stop, memory_order_relaxed);
    while (cur < level && !atomic_compare_exchange_weak_explicit(
                              &n->stop, &cur, level, memory_order_seq_cst, memory_order_relaxed))
        ;
    dagger__stream_wake(n);
}

/* `n` left its loop (or never ran): close its outputs, drop its inputs, stop the region if
 * asked, and count it out. Called once per node, after the region launched. */
void dagger__stream_node_end(struct node *n, int kind)
{
    struct dagger_stream *r = n->r;
    n->end_kind = kind;
    if (kind == END_ERROR) { /* before the outputs close: a consumer that sees them closed
                              * completes on its own and must find the failure */
        struct node *expect = NULL;
        atomic_compare_exchange_strong(&r->err_origin, &expect, n);
    }
    for (uint32_t k = 0; k < n->nouts; k++) {
        struct edge *e = n->outs[k];
        atomic_store_explicit(&e->closed, 1, memory_order_seq_cst);
        dagger__stream_fire(r, &e->cons_wait);
    }
    for (uint32_t k = 0; k < n->nins; k++) {
        struct edge *e = n->ins[k].e;
        atomic_store_explicit(&e->dead, 1, memory_order_seq_cst);
        dagger__stream_fire(r, &e->prod_wait);
    }
    if (kind == END_ERROR) {
        for (uint32_t i = 0; i < r->nnodes; i++)
            if (r->nodes[i] != n)
                stop_node(r->nodes[i], STOP_HARD);
    } else if (n->opts.teardown) {
        for (uint32_t i = 0; i < r->nnodes; i++)
            if (r->nodes[i] != n)
                stop_node(r->nodes[i], STOP_DRAIN);
    }
    if (atomic_fetch_sub_explicit(&r->running, 1, memory_order_acq_rel) == 1)
        dagger__event_fire(&r->all_ended, r->ctx);
}

/* dagger_cancel on a streaming task: stop it; one that never started ends here. */
static void cancel_hook(dagger_task_t *t, void *ud)
{
    (void)ud;
    struct dagger_stream *drop = NULL;
    pthread_mutex_lock(&reg_lock);
    struct node *n = lookup_locked(t);
    if (n) {
        int expect = N_NEW;
        if (atomic_compare_exchange_strong(&n->state, &expect, N_ENDED)) {
            atomic_store(&n->stop, STOP_HARD);
            if (n->r->launched) {
                dagger__stream_node_end(n, END_CANCEL);
                drop = n->r;
            }
        } else {
            stop_node(n, STOP_HARD);
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (drop)
        dagger__stream_release(drop);
}

/* ---------------------------------------------------------------- recording spawns */

static struct node *find_node(struct dagger_stream *r, const dagger_task_t *t)
{
    for (uint32_t i = 0; i < r->nnodes; i++)
        if (r->nodes[i]->task == t)
            return r->nodes[i];
    return NULL;
}

static void node_free_unregistered(struct node *n)
{
    dagger__stream_port_free(n->port);
    for (uint32_t k = 0; k < n->nexts; k++)
        dagger_task_release(n->exts[k].t);
    for (uint32_t k = 0; k < n->nsync; k++)
        dagger_task_release(n->sync[k]);
    dagger__free(n->ins);
    dagger__free(n->exts);
    dagger__free(n->sync);
    dagger__free(n);
}

void dagger__stream_spawn_failed(struct dagger_stream *r, int code, const char *what)
{
    if (!r->spawn_err) {
        r->spawn_err = code;
        snprintf(r->spawn_msg, sizeof r->spawn_msg, "%s", what);
    }
}

/* A spawn of `r` returned no task: remember it (the first one) for dagger_stream_end. */
static void spawn_failed(struct dagger_stream *r, const char *what)
{
    dagger__stream_spawn_failed(r, DAGGER_ENOMEM, what);
    dagger__set_errmsg(DAGGER_ENOMEM, "dagger_spawn: %s", what);
}

static dagger_task_t *spawn_node(struct dagger_stream *r, dagger_ctx_t *ctx,
                                 const dagger_task_opts_t *o, dagger_fn_t fn, const char *fname,
                                 const dagger_value_t *argv, size_t argc, struct port *port)
{
    dagger_task_opts_t opts;
    if (o)
        opts = *o;
    else
        dagger_task_opts_init(&opts);
    /* Malformed input is left to the core, which fails the task: it then ends the region. */
    bool plain = argc > UINT32_MAX / 2 || (argc && !argv) || (opts.nsyncdeps && !opts.syncdeps);
    struct node *n = dagger__calloc(1, sizeof *n);
    dagger_value_t *vals = argc ? dagger__malloc(argc * sizeof *vals) : NULL;
    if (!n || (argc && !vals)) {
        dagger__free(n);
        dagger__free(vals);
        dagger__stream_port_free(port);
        spawn_failed(r, "out of memory for a streaming task");
        return NULL;
    }
    n->r = r;
    n->fn = fn;
    n->opts = r->opts;
    n->port = port;
    if (port)
        port->n = n;
    atomic_init(&n->state, N_NEW);
    atomic_init(&n->stop, STOP_NONE);
    n->last = dagger_nil();
    n->result = dagger_nil();
    bool oom = false;
    if (!plain) {
        size_t ntask = 0;
        for (size_t i = 0; i < argc; i++)
            ntask += argv[i].kind == DAGGER_KIND_TASK && argv[i].u.t &&
                     !(argv[i].flags & DAGGER_VALUE_REMOTE);
        if (ntask) {
            n->ins = dagger__calloc(ntask, sizeof *n->ins);
            n->exts = dagger__calloc(ntask, sizeof *n->exts);
            oom |= !n->ins || !n->exts;
        }
        if (opts.nsyncdeps) {
            n->sync = dagger__calloc(opts.nsyncdeps, sizeof *n->sync);
            oom |= !n->sync;
        }
    }
    if (oom) {
        node_free_unregistered(n);
        dagger__free(vals);
        spawn_failed(r, "out of memory for a streaming task");
        return NULL;
    }
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < argc; i++) {
        vals[i] = argv[i];
        const dagger_value_t *v = &argv[i];
        if (plain || v->kind != DAGGER_KIND_TASK || !v->u.t || (v->flags & DAGGER_VALUE_REMOTE) ||
            dagger__task_ctx(v->u.t) != ctx)
            continue;
        struct node *src = find_node(r, v->u.t);
        if (src) {
            n->ins[n->nins].argi = (uint32_t)i;
            n->ins[n->nins].src = src->idx;
            n->nins++;
        } else {
            n->exts[n->nexts].argi = (uint32_t)i;
            n->exts[n->nexts].t = dagger_task_retain(v->u.t);
            n->nexts++;
        }
        vals[i] = dagger_nil();
    }
    pthread_mutex_unlock(&reg_lock);
    if (!plain) {
        for (size_t i = 0; i < opts.nsyncdeps; i++)
            if (opts.syncdeps[i] && dagger__task_ctx(opts.syncdeps[i]) == ctx)
                n->sync[n->nsync++] = dagger_task_retain(opts.syncdeps[i]);
        opts.syncdeps = NULL;
        opts.nsyncdeps = 0;
    }
    /* Streaming tasks take turns: a woken driver goes behind the other ready drivers (the
     * pool keeps equal priorities in FIFO order) instead of on top of its worker's deque,
     * where two drivers feeding each other would starve the rest of the region on one thread.
     * They also run after ordinary ready tasks. */
    if (opts.priority == 0)
        opts.priority = -1;
    Dl_info info; /* the driver runs under the user's function name */
    if (!opts.name && !fname && dladdr((void *)(uintptr_t)fn, &info) && info.dli_sname)
        fname = info.dli_sname;
    dagger_task_t *t =
        dagger__task_spawn_nohook(ctx, &opts, dagger__stream_driver, fname, vals, argc);
    dagger__free(vals);
    if (!t) {
        node_free_unregistered(n);
        spawn_failed(r, "out of memory for a streaming task's record");
        return NULL;
    }
    pthread_mutex_lock(&reg_lock);
    if (r->nnodes == r->capnodes) {
        uint32_t cap = r->capnodes ? r->capnodes * 2 : 8;
        struct node **p = dagger__realloc(r->nodes, cap * sizeof *p);
        if (p) {
            r->nodes = p;
            r->capnodes = cap;
        }
    }
    if (r->nnodes == r->capnodes) {
        pthread_mutex_unlock(&reg_lock);
        node_free_unregistered(n);
        dagger_cancel(t); /* held: never runs its body */
        spawn_failed(r, "out of memory recording a streaming task in its region");
        return t;
    }
    n->idx = r->nnodes;
    n->task = dagger_task_retain(t);
    r->nodes[r->nnodes++] = n;
    /* Streams are not core dependencies, so the trace learns of them here: one edge per input
     * stream and per outside task the node reads. */
    for (uint32_t i = 0; i < n->nins; i++)
        DAGGER__TRACE(
            dagger__trace_edge(dagger_task_id(r->nodes[n->ins[i].src]->task), dagger_task_id(t)));
    for (uint32_t i = 0; i < n->nexts; i++)
        DAGGER__TRACE(dagger__trace_edge(dagger_task_id(n->exts[i].t), dagger_task_id(t)));
    pthread_mutex_unlock(&reg_lock);
    dagger__task_set_cancel_hook(t, cancel_hook, NULL);
    return t;
}

static dagger_task_t *spawn_hook(void *ud, dagger_ctx_t *ctx, const dagger_task_opts_t *o,
                                 dagger_fn_t fn, const char *fname, const dagger_value_t *argv,
                                 size_t argc)
{
    return spawn_node(ud, ctx, o, fn, fname, argv, argc, NULL);
}

dagger_task_t *dagger__stream_spawn_node(struct dagger_stream *r, const dagger_task_opts_t *o,
                                         dagger_fn_t fn, const char *fname,
                                         const dagger_value_t *argv, size_t argc, struct port *p)
{
    return spawn_node(r, r->ctx, o, fn, fname, argv, argc, p);
}

/* ---------------------------------------------------------------- the region */

int dagger_stream_begin(dagger_ctx_t *ctx, const dagger_stream_opts_t *opts, dagger_stream_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_stream_begin: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_stream_begin: ctx is NULL");
    dagger_stream_opts_t o;
    if (opts)
        o = *opts;
    else
        dagger_stream_opts_init(&o);
    int rc = check_opts(&o, "dagger_stream_begin");
    if (rc)
        return rc;
    struct dagger_stream *r = dagger__calloc(1, sizeof *r);
    DAGGER_CHECK(r, DAGGER_ENOMEM, "dagger_stream_begin: out of memory");
    r->ctx = ctx;
    r->opts = o;
    atomic_init(&r->refs, 1);
    atomic_init(&r->running, 0);
    atomic_init(&r->err_origin, NULL);
    dagger__event_init(&r->all_ended);
    rc = dagger_queue_begin(ctx, DAGGER_QUEUE_BULK);
    if (rc) {
        dagger__free(r);
        return rc;
    }
    rc = dagger__queue_hook_begin(ctx, spawn_hook, r);
    if (rc) {
        if (dagger_queue_end(ctx) != 0) { /* an empty bulk block: nothing to report */
        }
        dagger__free(r);
        return rc;
    }
    r->open = true;
    pthread_mutex_lock(&reg_lock);
    r->next = reg_head;
    if (reg_head)
        reg_head->prev = r;
    reg_head = r;
    pthread_mutex_unlock(&reg_lock);
    *out = r;
    return 0;
}

int dagger_stream_set_opts(dagger_stream_t *s, const dagger_stream_opts_t *opts)
{
    DAGGER_CHECK(s && opts, DAGGER_EINVAL, "dagger_stream_set_opts: NULL argument");
    DAGGER_CHECK(s->open, DAGGER_ESTATE, "dagger_stream_set_opts: the region is closed");
    int rc = check_opts(opts, "dagger_stream_set_opts");
    if (rc)
        return rc;
    s->opts = *opts;
    return 0;
}

static uint64_t pow2_at_least(uint64_t x)
{
    uint64_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

/* Allocate the edges of every node. Returns 0 or DAGGER_ENOMEM. */
static int wire(struct dagger_stream *r)
{
    for (uint32_t i = 0; i < r->nnodes; i++) {
        struct node *n = r->nodes[i];
        for (uint32_t k = 0; k < n->nins; k++) {
            struct node *src = r->nodes[n->ins[k].src];
            struct edge *e = dagger__malloc(sizeof *e);
            if (!e)
                return DAGGER_ENOMEM;
            memset(e, 0, sizeof *e);
            uint64_t cap = (uint64_t)n->opts.buffer;
            /* An edge into a sink or out of a source feeds or drains a transport that buffers
             * far more than this already; a deeper ring there changes no result but lets the
             * thread beside the workers and the workers hand values over in batches. */
            if ((n->port || src->port) && cap < DAGGER__STREAM_PORT_BUFFER)
                cap = DAGGER__STREAM_PORT_BUFFER;
            e->cap = cap;
            e->mask = pow2_at_least(cap) - 1;
            e->thr = (cap + 1) / 2;
            e->tbatch = cap >= 256 ? 32 : cap >= 8 ? cap / 8 : 1;
            e->slot_bytes = src->opts.max_value_bytes;
            e->argi = n->ins[k].argi;
            e->src = src;
            e->dst = n;
            e->slots = dagger__calloc(e->mask + 1, sizeof *e->slots);
            n->ins[k].e = e;
            if (!e->slots)
                return DAGGER_ENOMEM;
            if (src->nouts == src->capouts) {
                uint32_t cap2 = src->capouts ? src->capouts * 2 : 2;
                struct edge **p = dagger__realloc(src->outs, cap2 * sizeof *p);
                if (!p)
                    return DAGGER_ENOMEM;
                src->outs = p;
                src->capouts = cap2;
            }
            src->outs[src->nouts++] = e;
        }
    }
    return 0;
}

int dagger_stream_end(dagger_stream_t *r)
{
    DAGGER_CHECK(r, DAGGER_EINVAL, "dagger_stream_end: the region is NULL");
    DAGGER_CHECK(r->open, DAGGER_ESTATE, "dagger_stream_end: the region is already closed");
    int rc = dagger__queue_hook_end(r->ctx, r);
    if (rc)
        return rc;
    r->open = false;
    int wrc = wire(r);
    const char *why = "out of memory for the stream buffers";
    if (!wrc && r->spawn_err) {
        /* A task missing from the region would leave its producers spinning or its consumers
         * waiting forever: the whole region is cancelled instead. */
        wrc = r->spawn_err;
        why = r->spawn_msg;
    }
    /* Edges that could not be allocated leave holes: stop every node before it runs. */
    if (wrc) {
        for (uint32_t i = 0; i < r->nnodes; i++)
            for (uint32_t k = 0; k < r->nodes[i]->nins; k++)
                if (!r->nodes[i]->ins[k].e)
                    r->nodes[i]->nins = k;
    }
    atomic_store(&r->running, r->nnodes);
    atomic_fetch_add(&r->refs, r->nnodes);
    uint32_t nended = 0;
    dagger_task_t *spawn_bad = NULL; /* the first task that failed at spawn */
    pthread_mutex_lock(&reg_lock);
    r->launched = true;
    if (!wrc && r->early_err) {
        wrc = r->early_err;
        why = "out of memory holding a streaming task until its region started";
    }
    for (uint32_t i = 0; i < r->nnodes; i++) {
        struct node *n = r->nodes[i];
        int expect = N_NEW, kind;
        if (wrc) {
            /* Never runs its body: the cancel flag makes the core fail it. A node that a
             * cancel ended before the launch is ended here too. */
            if (!atomic_compare_exchange_strong(&n->state, &expect, N_ENDED) && expect != N_ENDED)
                continue;
            atomic_store(&n->stop, STOP_HARD);
            kind = END_CANCEL;
        } else if (dagger_task_done(n->task) &&
                   atomic_compare_exchange_strong(&n->state, &expect, N_ENDED)) {
            kind = END_ERROR; /* failed at spawn (bad scope, bad argument) */
            if (!spawn_bad)
                spawn_bad = n->task;
        } else if (atomic_load(&n->state) == N_ENDED) {
            kind = END_CANCEL; /* cancelled before the region started */
        } else {
            continue;
        }
        dagger__stream_node_end(n, kind);
        nended++;
    }
    pthread_mutex_unlock(&reg_lock);
    if (wrc) {
        for (uint32_t i = 0; i < r->nnodes; i++)
            dagger_cancel(r->nodes[i]->task);
        dagger__set_errmsg(wrc, "dagger_stream_end: %s; the region's tasks are cancelled", why);
    }
    int brc = 0;
    if (!wrc && spawn_bad) {
        brc = dagger_task_error(spawn_bad);
        dagger__set_errmsg(brc, "dagger_stream_end: task %llu '%s' failed at spawn: %s",
                           (unsigned long long)dagger_task_id(spawn_bad),
                           dagger_task_name(spawn_bad), dagger_task_errmsg(spawn_bad));
    }
    rc = dagger_queue_end(r->ctx); /* starts every driver */
    for (uint32_t i = 0; i < nended; i++)
        dagger__stream_release(r);
    dagger__stream_release(r);
    return wrc ? wrc : brc ? brc : rc;
}

int dagger_stream_run(dagger_ctx_t *ctx, const dagger_stream_opts_t *opts,
                      void (*body)(dagger_stream_t *s, void *ud), void *ud)
{
    DAGGER_CHECK(body, DAGGER_EINVAL, "dagger_stream_run: body is NULL");
    dagger_stream_t *s;
    int rc = dagger_stream_begin(ctx, opts, &s);
    if (rc)
        return rc;
    body(s, ud);
    return dagger_stream_end(s);
}
