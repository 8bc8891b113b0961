/* src/core/task.c - tasks: spawn, dependencies, run, completion, fetch, errors, cancellation.
 *
 * Design: a task's argument that is a task becomes a dependency: the dependent puts a waiter
 * node (embedded in its own record) on the dependency's waiter list, and whoever finishes the
 * last dependency submits the dependent. Completion closes the waiter list with one exchange
 * and walks it: dependents are counted down (the first one that becomes ready runs next on
 * the same worker, without a trip through the deque), suspended fetchers are resumed, and
 * threads blocked in fetch are woken. A failed dependency makes the dependent fail with
 * DAGGER_EUPSTREAM without running it; the failure's root is shared by every task it reaches.
 * Records come from the object pools, so steady-state spawning allocates nothing.
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"
#include "sched/sched.h"
#include "trace/trace.h"

/* ---------------------------------------------------------------- thread-local state */

static DAGGER_TLS dagger_task_t *tls_task;
static DAGGER_TLS struct frame *tls_frames;
static DAGGER_TLS struct {
    uint64_t gen, next, end;
} tls_ids;

/* Out of line: a task may resume on another thread, so never reuse a TLS address. */
DAGGER_NOINLINE dagger_task_t *dagger__cur_task(void) { return tls_task; }
DAGGER_NOINLINE static void set_cur_task(dagger_task_t *t) { tls_task = t; }

DAGGER_NOINLINE struct frame **dagger__frames_slot(void)
{
    dagger_task_t *t = tls_task;
    return t ? &t->frames : &tls_frames;
}

static uint64_t next_id(dagger_ctx_t *ctx)
{
    if (DAGGER_UNLIKELY(tls_ids.gen != ctx->gen || tls_ids.next == tls_ids.end)) {
        uint64_t base = atomic_fetch_add_explicit(&ctx->next_id, 256, memory_order_relaxed);
        tls_ids.gen = ctx->gen;
        tls_ids.next = base;
        tls_ids.end = base + 256;
    }
    return tls_ids.next++;
}

/* ---------------------------------------------------------------- counters */

static void global_add(dagger_ctx_t *ctx, int which, int64_t delta)
{
    int64_t before = atomic_fetch_add_explicit(&ctx->count[which], delta, memory_order_acq_rel);
    if (which == CNT_INFLIGHT && before + delta == 0) {
        atomic_fetch_add_explicit(&ctx->drain_word, 1, memory_order_release);
        dagger__futex_wake(&ctx->drain_word, INT_MAX);
    } else if (which == CNT_LIVE && before + delta == 0 && atomic_load(&ctx->zombie)) {
        dagger__ctx_reap(ctx); /* the last record of a force-closed context */
    }
}

static inline void count_w(dagger_ctx_t *ctx, int w, int which, int64_t delta)
{
    if (w < 0) {
        global_add(ctx, which, delta);
        return;
    }
    int64_t *c = &ctx->credit[w].n[which];
    if (delta > 0) {
        if (DAGGER_UNLIKELY(*c < delta)) {
            global_add(ctx, which, CREDIT_BATCH + delta);
            *c += CREDIT_BATCH + delta;
        }
        *c -= delta;
    } else {
        *c -= delta;
        if (DAGGER_UNLIKELY(*c > 4 * CREDIT_BATCH)) {
            int64_t give = *c - CREDIT_BATCH;
            *c = CREDIT_BATCH;
            global_add(ctx, which, -give);
        }
    }
}

void dagger__count(dagger_ctx_t *ctx, int which, int64_t delta)
{
    count_w(ctx, dagger__pool_self(ctx->pool), which, delta);
}

void dagger__count_idle(dagger_ctx_t *ctx, int worker)
{
    /* Records first: once the in-flight count reads 0, close may read the record count. */
    for (int which = CNT_LIVE; which >= CNT_INFLIGHT; which--) {
        int64_t *c = &ctx->credit[worker].n[which];
        if (*c) {
            int64_t give = *c;
            *c = 0;
            global_add(ctx, which, -give);
        }
    }
}

/* ---------------------------------------------------------------- names and messages */

static const char *display_name(const dagger_task_t *t)
{
    if (t->name)
        return t->name;
    Dl_info info;
    if (dladdr((void *)(uintptr_t)t->fn, &info) && info.dli_sname)
        return info.dli_sname;
    return "task";
}

static void root_release(struct root *r)
{
    if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        dagger__free(r->name);
        dagger__free(r->text);
        dagger__free(r);
    }
}

static void err_free(struct err *e)
{
    if (!e)
        return;
    root_release(e->root);
    dagger__free(e->msg);
    dagger__free(e->chain);
    dagger__free(e);
}

/* Record a failure that starts at `t` (it is the root). Keeps the first one recorded. */
static int fail_root(dagger_task_t *t, int code, const char *text)
{
    if (t->err)
        return t->err->code;
    struct err *e = dagger__calloc(1, sizeof *e);
    struct root *r = dagger__calloc(1, sizeof *r);
    const char *name = display_name(t);
    if (e && r) {
        atomic_init(&r->refs, 1);
        r->code = code;
        r->id = t->id;
        r->thread = t->thread;
        r->name = dagger__strdup(name);
        r->text = dagger__strdup(text);
        e->code = code;
        e->root = r;
        e->msg = dagger__asprintf("task %llu '%s': %s", (unsigned long long)t->id, name, text);
        e->chain = dagger__asprintf("%llu", (unsigned long long)t->id);
        t->err = e;
    } else {
        dagger__free(e);
        dagger__free(r);
    }
    return code;
}

static int fail_rootf(dagger_task_t *t, int code, const char *fmt, ...) DAGGER_PRINTF(3, 4);
static int fail_rootf(dagger_task_t *t, int code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return fail_root(t, code, buf);
}

/* `t` fails because its input `d` (argument `argi`, or a syncdep when < 0) failed. */
static int fail_upstream(dagger_task_t *t, const struct dep *d)
{
    const dagger_task_t *up = d->task;
    const struct err *ue = up->err;
    const char *name = display_name(t);
    char input[64];
    if (d->argi >= 0)
        snprintf(input, sizeof input, "input %d", d->argi);
    else
        snprintf(input, sizeof input, "syncdep");
    struct err *e = dagger__calloc(1, sizeof *e);
    if (!e)
        return DAGGER_EUPSTREAM;
    e->code = DAGGER_EUPSTREAM;
    if (ue && ue->root) {
        struct root *r = ue->root;
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
        e->root = r;
        if (r->id == up->id) {
            e->msg = dagger__asprintf("task %llu '%s': %s (task %llu '%s') failed: %s",
                                      (unsigned long long)t->id, name, input,
                                      (unsigned long long)up->id, r->name, r->text);
        } else {
            e->msg = dagger__asprintf(
                "task %llu '%s': %s (task %llu '%s') failed; root cause: task %llu '%s': %s "
                "(chain: %llu <- %s)",
                (unsigned long long)t->id, name, input, (unsigned long long)up->id,
                display_name(up), (unsigned long long)r->id, r->name, r->text,
                (unsigned long long)t->id, ue->chain ? ue->chain : "?");
        }
        const char *uc = ue->chain ? ue->chain : "?";
        if (strlen(uc) < 96) {
            e->chain = dagger__asprintf("%llu <- %s", (unsigned long long)t->id, uc);
        } else {
            e->chain = dagger__asprintf("%llu <- %llu <- ... <- %llu", (unsigned long long)t->id,
                                        (unsigned long long)up->id, (unsigned long long)r->id);
        }
    } else {
        e->msg =
            dagger__asprintf("task %llu '%s': %s (task %llu) failed: %s", (unsigned long long)t->id,
                             name, input, (unsigned long long)up->id, dagger_strerror(up->rc));
    }
    t->err = e;
    return DAGGER_EUPSTREAM;
}

/* ---------------------------------------------------------------- records */

static dagger_task_t *task_alloc(dagger_ctx_t *ctx, int w)
{
    dagger_task_t *t = dagger__obj_alloc(sizeof *t);
    if (!t)
        return NULL;
    atomic_init(&t->job.next, NULL);
    t->job.fiber = NULL;
    t->job.prio = 0;
    t->job.pin = -1;
    t->job.occupancy = 1.0f;
    t->job.seq = 0;
    atomic_init(&t->refs, 2); /* the caller's handle and the runtime's */
    atomic_init(&t->pending, 1);
    atomic_init(&t->state, T_PENDING);
    atomic_init(&t->cancel, 0);
    atomic_init(&t->waiters.head, NULL);
    t->rc = 0;
    t->argerr = 0;
    t->thread = -1;
    t->flags = 0;
    t->nargs = t->ndeps = 0;
    t->capargs = t->capdeps = 0;
    t->scratch = NULL;
    t->id = next_id(ctx);
    t->ctx = ctx;
    t->parent = NULL;
    t->help_depth = 0;
    t->fn = NULL;
    t->name = NULL;
    t->args = t->inline_args;
    t->deps = t->inline_deps;
    t->group = NULL;
    t->held_by = NULL;
    t->frames = NULL;
    t->err = NULL;
    atomic_init(&t->guard_fn, NULL);
    atomic_init(&t->guard, NULL);
    t->cancel_fn = NULL;
    t->cancel_ud = NULL;
    t->result = dagger_nil();
    count_w(ctx, w, CNT_LIVE, 1);
    return t;
}

/* Free the argument storage of a finished (or never started) task; drops its dependencies. */
static void drop_args_slow(dagger_task_t *t)
{
    for (uint32_t i = 0; i < t->nargs; i++)
        dagger__value_drop(&t->args[i]);
    for (uint32_t i = 0; i < t->ndeps; i++)
        dagger_task_release(t->deps[i].task);
    if (t->args != t->inline_args)
        dagger__obj_free(t->args, t->capargs * sizeof(dagger_value_t));
    if (t->deps != t->inline_deps)
        dagger__obj_free(t->deps, t->capdeps * sizeof(struct dep));
    while (t->scratch) {
        struct scratch *s = t->scratch;
        t->scratch = s->next;
        dagger__obj_free(s, sizeof *s + s->size);
    }
    t->args = t->inline_args;
    t->deps = t->inline_deps;
    t->nargs = t->ndeps = 0;
}

static inline void drop_args(dagger_task_t *t)
{
    if (DAGGER_LIKELY(t->args == t->inline_args && t->deps == t->inline_deps && !t->scratch)) {
        /* the common case: inline storage; only owned values and dependencies to drop */
        for (uint32_t i = 0; i < t->nargs; i++)
            if (t->args[i].flags & DAGGER_VALUE_OWNED)
                dagger__value_drop(&t->args[i]);
        for (uint32_t i = 0; i < t->ndeps; i++)
            dagger_task_release(t->deps[i].task);
        t->nargs = t->ndeps = 0;
        return;
    }
    drop_args_slow(t);
}

static DAGGER_TLS dagger_task_t *tls_free_list;
static DAGGER_TLS int tls_freeing;

#ifndef NDEBUG
/* Debug builds keep the last released task records (refs = REFS_DEAD) a while before they go
 * back to the pool, so that a release or a fetch of a handle after its last release is caught
 * with a message (DAGGER_MISUSE) instead of touching recycled memory. */
#define TASK_GRAVES 256
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static dagger_task_t *graves[TASK_GRAVES]; /* guarded by grave_lock */
static unsigned grave_next;                /* guarded by grave_lock */

static void bury(dagger_task_t *t)
{
    atomic_store_explicit(&t->refs, REFS_DEAD, memory_order_relaxed);
    pthread_mutex_lock(&grave_lock);
    dagger_task_t *old = graves[grave_next % TASK_GRAVES];
    graves[grave_next++ % TASK_GRAVES] = t;
    pthread_mutex_unlock(&grave_lock);
    if (old)
        dagger__obj_free(old, sizeof *old);
}
#define TASK_MISUSE(t, what)                                                                       \
    DAGGER_MISUSE(atomic_load_explicit(&(t)->refs, memory_order_relaxed) != REFS_DEAD,             \
                  "%s: task %llu '%s' was used after its last handle was released", (what),        \
                  (unsigned long long)(t)->id, display_name(t))
#else
#define TASK_MISUSE(t, what) ((void)0)
#endif

static void task_free_one(dagger_task_t *t)
{
    dagger_ctx_t *ctx = t->ctx;
    drop_args(t);
    if (t->result.flags & DAGGER_VALUE_OWNED)
        dagger__value_drop(&t->result);
    if (DAGGER_UNLIKELY(t->err != NULL))
        err_free(t->err);
    if (DAGGER_UNLIKELY(t->flags & TF_NAME_OWNED)) {
        dagger__obj_free((void *)t->name, strlen(t->name) + 1);
        t->name = "(released)";
        t->flags &= ~TF_NAME_OWNED;
    }
#ifndef NDEBUG
    bury(t);
#else
    dagger__obj_free(t, sizeof *t);
#endif
    count_w(ctx, dagger__pool_self(ctx->pool), CNT_LIVE, -1);
}

dagger_task_t *dagger_task_retain(dagger_task_t *t)
{
    if (t) {
        TASK_MISUSE(t, "dagger_task_retain");
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    }
    return t;
}

void dagger_task_release(dagger_task_t *t)
{
    if (!t)
        return;
    uint32_t prev = atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel);
    DAGGER_MISUSE(prev != 0 && prev != REFS_DEAD,
                  "dagger_task_release: task %llu '%s' was released once more than it was "
                  "retained (its last handle was already released)",
                  (unsigned long long)t->id, display_name(t));
    if (prev != 1)
        return;
    /* Freeing can release other tasks (a result that is a task): free iteratively so that
     * long chains never recurse. */
    atomic_store_explicit(&t->job.next, (struct dagger__job *)tls_free_list, memory_order_relaxed);
    tls_free_list = t;
    if (tls_freeing)
        return;
    tls_freeing = 1;
    while (tls_free_list) {
        dagger_task_t *f = tls_free_list;
        tls_free_list = (dagger_task_t *)atomic_load_explicit(&f->job.next, memory_order_relaxed);
        task_free_one(f);
    }
    tls_freeing = 0;
}

/* ---------------------------------------------------------------- events */

static bool event_push(struct dagger__event *ev, struct dagger__waiter *w)
{
    struct dagger__waiter *head = atomic_load_explicit(&ev->head, memory_order_acquire);
    do {
        if (head == EV_CLOSED)
            return false;
        w->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&ev->head, &head, w, memory_order_acq_rel,
                                                    memory_order_acquire));
    return true;
}

static void make_ready(dagger_task_t *t)
{
    DAGGER__TRACE(dagger__trace_ready(t->id, dagger__pool_self(t->ctx->pool)));
    dagger__pool_submit(t->ctx->pool, &t->job);
}

static bool plain_job(const dagger_task_t *t)
{
    return t->job.pin < 0 && t->job.prio == 0 && t->job.occupancy >= 1.0f;
}

/* Close `ev` and serve its waiters. With `cont`, the first plain dependent that becomes ready
 * is returned instead of submitted. Nodes are read before they are signalled: a signalled
 * waiter may return and free its node at once. */
static dagger_task_t *fire(struct dagger__event *ev, dagger_ctx_t *ctx, bool want_cont)
{
    struct dagger__waiter *w = atomic_exchange_explicit(&ev->head, EV_CLOSED, memory_order_acq_rel);
    dagger_task_t *cont = NULL;
    while (w && w != EV_CLOSED) {
        struct dagger__waiter *next = w->next;
        switch (w->kind) {
        case W_DEP: {
            dagger_task_t *d = w->target;
            if (atomic_fetch_sub_explicit(&d->pending, 1, memory_order_acq_rel) == 1) {
                if (want_cont && !cont && plain_job(d)) {
                    DAGGER__TRACE(dagger__trace_ready(d->id, dagger__pool_self(ctx->pool)));
                    cont = d;
                } else {
                    make_ready(d);
                }
            }
            break;
        }
        case W_FIBER: {
            dagger_task_t *s = w->target;
            dagger__pool_submit(s->ctx->pool, &s->job);
            break;
        }
        case W_THREAD: {
            _Atomic uint32_t *flag = w->target;
            atomic_store_explicit(flag, 1, memory_order_release);
            dagger__futex_wake(flag, 1);
            break;
        }
        default:
            dagger__panic("corrupt waiter kind %u", w->kind);
        }
        w = next;
    }
    return cont;
}

void dagger__event_fire(struct dagger__event *ev, dagger_ctx_t *ctx)
{
    dagger_task_t *c = fire(ev, ctx, false);
    (void)c;
}

struct arm {
    struct dagger__event *ev;
    struct dagger__waiter *node;
    dagger_task_t *task;
};

static void arm_waiter(void *arg)
{
    struct arm *a = arg;
    dagger_task_t *t = a->task;
    /* After a successful push the node belongs to the event: `a` may vanish at any moment. */
    if (!event_push(a->ev, a->node))
        dagger__pool_submit(t->ctx->pool, &t->job);
}

int dagger__event_wait(dagger_ctx_t *ctx, struct dagger__event *ev, uint64_t on_id)
{
    if (atomic_load_explicit(&ev->head, memory_order_acquire) == EV_CLOSED)
        return 0;
    dagger_task_t *me = dagger__cur_task();
    if (me && dagger__pool_can_suspend(me->ctx->pool)) {
        struct dagger__waiter node = {NULL, W_FIBER, me};
        struct arm a = {ev, &node, me};
        int thread = dagger__pool_self(me->ctx->pool);
        DAGGER__TRACE(dagger__trace_block(me->id, thread, on_id));
        if (dagger__pool_suspend(me->ctx->pool, &me->job, arm_waiter, &a) == 0) {
            set_cur_task(me);
            me->thread = (int16_t)dagger__pool_self_fresh(me->ctx->pool); /* may be another */
            DAGGER__TRACE(dagger__trace_resume(me->id, me->thread));
            return 0;
        }
        /* No stack to suspend on (out of memory). Blocking this worker instead could deadlock
         * (on one thread the awaited task would never run): the wait fails, and so does the
         * task unless it handles the error. */
        DAGGER__TRACE(dagger__trace_resume(me->id, thread));
        return dagger__set_errmsg(DAGGER_ENOMEM,
                                  "out of memory for a stack to suspend task %llu '%s' on while "
                                  "it waits",
                                  (unsigned long long)me->id, display_name(me));
    }
    (void)ctx;
    /* A thread outside the workers (or an aux thread): spin briefly, then sleep. */
    for (int i = 0; i < 2000; i++) { /* ~50 us: cheaper than a futex round trip */
        if (atomic_load_explicit(&ev->head, memory_order_acquire) == EV_CLOSED)
            return 0;
        dagger__cpu_relax();
    }
    _Atomic uint32_t flag = 0;
    struct dagger__waiter node = {NULL, W_THREAD, (void *)&flag};
    if (!event_push(ev, &node))
        return 0;
    while (!atomic_load_explicit(&flag, memory_order_acquire))
        dagger__futex_wait(&flag, 0, -1);
    return 0;
}

/* ---------------------------------------------------------------- groups */

int64_t dagger__group_sum(struct group *g)
{
    int64_t sum = 0;
    for (int i = 0; i < g->nslots; i++)
        sum += atomic_load_explicit(&g->slots[i].done, memory_order_acquire);
    return sum;
}

/* Count a finished task of `g` on worker `w` (-1: not a worker of this context). */
static void group_done(struct group *g, dagger_ctx_t *ctx, int w)
{
    struct gslot *s;
    if (w >= 0 && w < g->nslots - 1) {
        s = &g->slots[w];
        atomic_store_explicit(&s->active, 1, memory_order_relaxed);
        atomic_store_explicit(&s->done, atomic_load_explicit(&s->done, memory_order_relaxed) + 1,
                              memory_order_release);
    } else {
        s = &g->slots[g->nslots - 1];
        atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->done, 1, memory_order_release);
    }
    dagger__fence_seq_cst(); /* pairs with the owner's fence after it publishes the target */
    int64_t target = atomic_load_explicit(&g->target, memory_order_relaxed);
    if (target >= 0 && dagger__group_sum(g) == target)
        dagger__event_fire(&g->ev, ctx);
    if (s == &g->slots[g->nslots - 1])
        atomic_fetch_sub_explicit(&s->active, 1, memory_order_release);
    else
        atomic_store_explicit(&s->active, 0, memory_order_release);
}

/* ---------------------------------------------------------------- completion */

/* Out of line: it runs after the task body, which may have moved the task to another worker, and
 * it reads the worker's thread-locals. */
DAGGER_NOINLINE static dagger_task_t *complete(dagger_task_t *t, int rc, bool want_cont)
{
    dagger_ctx_t *ctx = t->ctx;
    if (rc && !t->err)
        fail_root(t, rc, dagger_strerror(rc));
    t->rc = rc;
    drop_args(t);
    struct group *g = t->group;
    if (g && rc) {
        dagger_task_t *expect = NULL;
        dagger_task_retain(t);
        if (!atomic_compare_exchange_strong(&g->first_err, &expect, t))
            dagger_task_release(t);
    }
    if (rc)
        DAGGER__TRACE(
            dagger__trace_error(t->id, t->err && t->err->msg ? t->err->msg : dagger_strerror(rc)));
    /* Logged before the task is seen done, so a trace stopped right after a fetch has it. */
    DAGGER__TRACE(dagger__trace_finish(t->id, t->thread, rc));
    atomic_store_explicit(&t->state, T_DONE, memory_order_release);
    dagger_task_t *cont = fire(&t->waiters, ctx, want_cont);
    int w = want_cont ? dagger__pool_self(ctx->pool) : -1;
    if (g)
        group_done(g, ctx, w);
    dagger_task_release(t);
    count_w(ctx, w, CNT_INFLIGHT, -1);
    return cont;
}

/* Turn the body's outcome into the task's code; keeps the result owned by the task. */
static int settle(dagger_task_t *t, int r, dagger_value_t *out)
{
    if (t->argerr)
        return t->argerr;
    if (t->err)
        return t->err->code;
    if (r != 0) {
        int code = r;
        if (r > 0 || strcmp(dagger_err_name(r), "DAGGER_E?") == 0)
            code = DAGGER_ETASK;
        if (code == r)
            return fail_rootf(t, code, "the task body returned %s (%s)", dagger_err_name(r),
                              dagger_strerror(r));
        return fail_rootf(t, code, "the task body returned %d", r);
    }
    if (atomic_load_explicit(&t->cancel, memory_order_acquire))
        return fail_root(t, DAGGER_ECANCELED, "cancelled while running");
    if (DAGGER_UNLIKELY(out->flags & DAGGER_VALUE_TOOBIG)) {
        *out = dagger_nil();
        return fail_rootf(t, DAGGER_E2BIG,
                          "the result is a str/blob of 4 GiB or more (values hold at most 4 GiB - "
                          "1 bytes)");
    }
    t->result = *out;
    if (out->kind >= DAGGER_KIND_STR && out->kind != DAGGER_KIND_PTR &&
        dagger__value_own(&t->result) != 0) {
        t->result = dagger_nil();
        return fail_rootf(t, DAGGER_ENOMEM, "out of memory copying the %u-byte result", out->len);
    }
    return 0;
}

struct dagger__job *dagger__task_run(struct dagger__job *j, void *ud)
{
    (void)ud;
    dagger_task_t *t = (dagger_task_t *)j;
    int rc = 0;
    t->thread = dagger__pool_self(t->ctx->pool);
    if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
        rc = fail_root(t, DAGGER_ECANCELED, "cancelled before it ran");
    } else {
        /* One pass: a failed input fails the task; otherwise its result becomes the argument
         * (borrowed from the dependency, which the task holds until it completes). */
        for (uint32_t i = 0; i < t->ndeps; i++) {
            const struct dep *d = &t->deps[i];
            if (d->task->rc) {
                rc = fail_upstream(t, d);
                break;
            }
            if (d->argi >= 0) {
                dagger_value_t v = d->task->result;
                v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
                t->args[d->argi] = v;
            }
        }
    }
    if (!rc) {
        atomic_store_explicit(&t->state, T_RUNNING, memory_order_relaxed);
        DAGGER__TRACE(dagger__trace_start(t->id, t->thread));
        set_cur_task(t);
        dagger_value_t out = dagger_nil();
        int r = t->fn((dagger_tc_t *)t, (const dagger_args_t *)t, &out);
        set_cur_task(NULL);
        rc = settle(t, r, &out);
    }
    dagger_task_t *cont = complete(t, rc, true);
    return cont ? &cont->job : NULL;
}

/* ---------------------------------------------------------------- spawn */

#define MAX_SEQ 8

static int spawn_setup(dagger_task_t *t, const dagger_task_opts_t *o, const dagger_value_t *argv,
                       size_t argc, dagger_task_t **seq, int nseq, int *ndeps_out)
{
    dagger_ctx_t *ctx = t->ctx;
    DAGGER_CHECK(t->fn, DAGGER_EINVAL, "the task function is NULL");
    DAGGER_CHECK(argc == 0 || argv, DAGGER_EINVAL, "%zu arguments announced but argv is NULL",
                 argc);
    DAGGER_CHECK(argc <= UINT32_MAX / 2, DAGGER_EINVAL, "%zu arguments is too many", argc);
    size_t nsync = o ? o->nsyncdeps : 0;
    DAGGER_CHECK(nsync == 0 || o->syncdeps, DAGGER_EINVAL,
                 "%zu syncdeps announced but the syncdeps array is NULL", nsync);
    if (o) {
        DAGGER_CHECK(o->occupancy >= 0.0 && o->occupancy <= 1.0, DAGGER_EINVAL,
                     "occupancy %g is out of range: it must be within 0..1", o->occupancy);
        t->job.occupancy = (float)o->occupancy;
        t->job.prio = o->priority;
    }
    size_t ndeps = nsync + (size_t)nseq;
    for (size_t i = 0; i < argc; i++) {
        const dagger_value_t *v = &argv[i];
        DAGGER_CHECK(v->kind < DAGGER_KIND_COUNT_, DAGGER_EINVAL,
                     "argument %zu has an unknown kind (%u)", i, v->kind);
        if (v->kind == DAGGER_KIND_TASK) {
            DAGGER_CHECK(!(v->flags & DAGGER_VALUE_REMOTE), DAGGER_EINVAL,
                         "argument %zu is a remote task reference, which has no local handle", i);
            DAGGER_CHECK(v->u.t, DAGGER_EINVAL, "argument %zu is a NULL task handle", i);
            DAGGER_CHECK(v->u.t->ctx == ctx, DAGGER_EINVAL,
                         "argument %zu is a task of another context", i);
            ndeps++;
        }
    }
    for (size_t i = 0; i < nsync; i++) {
        DAGGER_CHECK(o->syncdeps[i], DAGGER_EINVAL, "syncdeps[%zu] is NULL", i);
        DAGGER_CHECK(o->syncdeps[i]->ctx == ctx, DAGGER_EINVAL,
                     "syncdeps[%zu] is a task of another context", i);
    }
    if (argc > INLINE_ARGS) {
        t->args = dagger__obj_alloc(argc * sizeof(dagger_value_t));
        if (!t->args) {
            t->args = t->inline_args;
            return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for %zu arguments", argc);
        }
        t->capargs = (uint32_t)argc;
    }
    if (ndeps > INLINE_DEPS) {
        t->deps = dagger__obj_alloc(ndeps * sizeof(struct dep));
        if (!t->deps) {
            t->deps = t->inline_deps;
            return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for %zu dependencies", ndeps);
        }
        t->capdeps = (uint32_t)ndeps;
    }
    /* From here drop_args() can clean up: counts grow as entries become valid. */
    t->nargs = 0;
    t->ndeps = 0;
    uint32_t nd = 0;
    for (size_t i = 0; i < argc; i++) {
        dagger_value_t v = argv[i];
        if (v.kind == DAGGER_KIND_TASK) {
            t->deps[nd].task = dagger_task_retain(v.u.t);
            t->deps[nd].argi = (int32_t)i;
            t->ndeps = ++nd;
            v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
            t->args[t->nargs++] = v;
            continue;
        }
        if (DAGGER_UNLIKELY(v.flags & DAGGER_VALUE_TOOBIG))
            return dagger__set_errmsg(DAGGER_E2BIG,
                                      "argument %zu is a %s of 4 GiB or more (values hold at most "
                                      "4 GiB - 1 bytes); pass a pointer instead",
                                      i + 1, dagger_kind_name(v.kind));
        if ((v.kind == DAGGER_KIND_STR || v.kind == DAGGER_KIND_BLOB) &&
            !(v.flags & DAGGER_VALUE_BORROW)) {
            if (dagger__value_own(&v) != 0)
                return dagger__set_errmsg(
                    DAGGER_ENOMEM, "out of memory copying argument %zu (%u bytes)", i, argv[i].len);
        } else {
            v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
        }
        t->args[t->nargs++] = v;
    }
    for (size_t i = 0; i < nsync; i++) {
        t->deps[nd].task = dagger_task_retain(o->syncdeps[i]);
        t->deps[nd].argi = -1;
        t->ndeps = ++nd;
    }
    for (int i = 0; i < nseq; i++) {
        t->deps[nd].task = dagger_task_retain(seq[i]);
        t->deps[nd].argi = -1;
        t->ndeps = ++nd;
    }
    if (o && o->scope && !dagger__scope_is_any(o->scope)) {
        dagger__procset set;
        char why[512];
        int n = dagger__scope_resolve(o->scope, 0, 1, ctx->nthreads, &set, why, sizeof why);
        if (n == 0)
            return dagger__set_errmsg_str(DAGGER_ESCOPE, why);
        if (n < ctx->nthreads) {
            int k =
                (int)(atomic_fetch_add_explicit(&ctx->rr, 1, memory_order_relaxed) % (uint32_t)n);
            for (int th = 0; th < ctx->nthreads; th++) {
                if (dagger__procset_has(&set, th) && k-- == 0) {
                    t->job.pin = th;
                    break;
                }
            }
        }
    }
    *ndeps_out = (int)nd;
    return 0;
}

static void set_name(dagger_task_t *t, const dagger_task_opts_t *o, const char *fname)
{
    if (o && o->name) {
        size_t n = strlen(o->name) + 1;
        char *copy = dagger__obj_alloc(n);
        if (copy) {
            memcpy(copy, o->name, n);
            t->name = copy;
            t->flags |= TF_NAME_OWNED;
            return;
        }
    }
    t->name = fname;
}

static dagger_task_t *spawn(dagger_ctx_t *ctx, dagger_task_t *me, struct frame *top,
                            const dagger_task_opts_t *o, dagger_fn_t fn, const char *fname,
                            const dagger_value_t *argv, size_t argc);

dagger_task_t *dagger_spawn_impl(dagger_ctx_t *ctx, const dagger_task_opts_t *o, dagger_fn_t fn,
                                 const char *fname, const dagger_value_t *argv, size_t argc)
{
    if (!ctx) {
        dagger__set_errmsg(DAGGER_EINVAL, "dagger_spawn: the context is NULL");
        return NULL;
    }
    DAGGER_MISUSE(ctx->magic == CTX_MAGIC, "dagger_spawn: the context is closed");
    /* Direct thread-local reads: nothing on the spawn path can suspend. */
    dagger_task_t *me = tls_task;
    struct frame *top = me ? me->frames : tls_frames;
    if (DAGGER_UNLIKELY(top && top->hook && top->ctx == ctx))
        return top->hook(top->hook_ud, ctx, o, fn, fname, argv, argc);
    return spawn(ctx, me, top, o, fn, fname, argv, argc);
}

dagger_task_t *dagger__spawn_nohook(dagger_ctx_t *ctx, const dagger_task_opts_t *o, dagger_fn_t fn,
                                    const char *fname, const dagger_value_t *argv, size_t argc)
{
    DAGGER_MISUSE(ctx->magic == CTX_MAGIC, "dagger_spawn: the context is closed");
    dagger_task_t *me = tls_task;
    return spawn(ctx, me, me ? me->frames : tls_frames, o, fn, fname, argv, argc);
}

/* Apply the queue blocks of this thread or task: the innermost WAITALL counts the task, every
 * SEQUENTIAL block chains it, the innermost BULK block holds it. */
static struct frame *apply_frames(dagger_ctx_t *ctx, dagger_task_t *t, struct frame *top,
                                  dagger_task_t **seq, int *nseq)
{
    struct frame *bulk = NULL;
    for (struct frame *f = top; f; f = f->up) {
        if (f->ctx != ctx)
            continue;
        if ((f->mode & DAGGER_QUEUE_WAITALL) && !t->group)
            t->group = &f->group;
        if ((f->mode & DAGGER_QUEUE_BULK) && !bulk)
            bulk = f;
        if ((f->mode & DAGGER_QUEUE_SEQUENTIAL) && f->last && *nseq < MAX_SEQ) {
            bool dup = false;
            for (int i = 0; i < *nseq; i++)
                dup |= seq[i] == f->last;
            if (!dup)
                seq[(*nseq)++] = f->last;
        }
    }
    if (t->group)
        t->group->spawned++;
    return bulk;
}

/* After a successful setup: become the last task of SEQUENTIAL blocks, be held by BULK. */
static uint32_t enter_frames(dagger_ctx_t *ctx, dagger_task_t *t, struct frame *top,
                             struct frame *bulk)
{
    for (struct frame *f = top; f; f = f->up) {
        if (f->ctx == ctx && (f->mode & DAGGER_QUEUE_SEQUENTIAL)) {
            dagger_task_release(f->last);
            f->last = dagger_task_retain(t);
        }
    }
    if (!bulk)
        return 0;
    if (bulk->nheld == bulk->capheld) {
        size_t cap = bulk->capheld ? bulk->capheld * 2 : 16;
        dagger_task_t **h = dagger__realloc(bulk->held, cap * sizeof *h);
        if (h) {
            bulk->held = h;
            bulk->capheld = cap;
        }
    }
    if (bulk->nheld == bulk->capheld)
        return 0; /* out of memory to hold it: it starts at once rather than being lost */
    bulk->held[bulk->nheld++] = dagger_task_retain(t);
    t->held_by = bulk;
    return 1;
}

static dagger_task_t *spawn(dagger_ctx_t *ctx, dagger_task_t *me, struct frame *top,
                            const dagger_task_opts_t *o, dagger_fn_t fn, const char *fname,
                            const dagger_value_t *argv, size_t argc)
{
    int w = dagger__pool_self(ctx->pool);
    dagger_task_t *t = task_alloc(ctx, w);
    if (!t) {
        dagger__set_errmsg(DAGGER_ENOMEM, "dagger_spawn: out of memory for a task record");
        return NULL;
    }
    t->fn = fn;
    t->parent = me;
    if (DAGGER_UNLIKELY(o != NULL))
        set_name(t, o, fname);
    else
        t->name = fname;
    bool tracing = atomic_load_explicit(&dagger__trace_on, memory_order_relaxed);
    if (DAGGER_UNLIKELY(tracing) && !t->name)
        t->name = display_name(t); /* resolve the symbol once, not at every export */
    struct frame *bulk = NULL;
    dagger_task_t *seq[MAX_SEQ];
    int nseq = 0;
    if (top)
        bulk = apply_frames(ctx, t, top, seq, &nseq);
    count_w(ctx, w, CNT_INFLIGHT, 1);

    int nd = 0;
    int rc = spawn_setup(t, o, argv, argc, seq, nseq, &nd);
    if (DAGGER_UNLIKELY(rc)) {
        if (DAGGER_UNLIKELY(tracing))
            dagger__trace_spawn(t->id, t->name, !(t->flags & TF_NAME_OWNED), w);
        fail_root(t, rc, dagger_last_errmsg());
        complete(t, rc, false);
        return t;
    }
    uint32_t holds = 1 + (top ? enter_frames(ctx, t, top, bulk) : 0);
    if (nd == 0 && holds == 1) {      /* nobody else can see the task yet: no atomics needed */
        if (DAGGER_UNLIKELY(tracing)) /* one event: spawned and ready at once */
            dagger__trace_spawn_ready(t->id, t->name, !(t->flags & TF_NAME_OWNED), w);
        dagger__pool_submit(ctx->pool, &t->job);
        return t;
    }
    if (DAGGER_UNLIKELY(tracing))
        dagger__trace_spawn(t->id, t->name, !(t->flags & TF_NAME_OWNED), w);
    atomic_store_explicit(&t->pending, holds + (uint32_t)nd, memory_order_relaxed);
    uint32_t done = 0;
    for (int i = 0; i < nd; i++) {
        struct dep *d = &t->deps[i];
        d->node.kind = W_DEP;
        d->node.target = t;
        DAGGER__TRACE(dagger__trace_edge(d->task->id, t->id));
        if (!event_push(&d->task->waiters, &d->node))
            done++;
    }
    if (atomic_fetch_sub_explicit(&t->pending, 1 + done, memory_order_acq_rel) == 1 + done)
        make_ready(t);
    return t;
}

void dagger__task_unhold(dagger_task_t *t)
{
    t->held_by = NULL;
    if (atomic_fetch_sub_explicit(&t->pending, 1, memory_order_acq_rel) == 1)
        make_ready(t);
}

void dagger_task_opts_init(dagger_task_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->occupancy = 1.0;
}

/* ---------------------------------------------------------------- fetch and friends */

static int check_wait(dagger_task_t *t, const char *what)
{
    DAGGER_CHECK(t, DAGGER_EINVAL, "%s: the task handle is NULL", what);
    dagger_task_t *me = dagger__cur_task();
    DAGGER_CHECK(me != t, DAGGER_EDEADLK, "%s: task %llu '%s' waits for itself", what,
                 (unsigned long long)t->id, display_name(t));
    dagger__wait_guard_fn guard = atomic_load_explicit(&t->guard_fn, memory_order_acquire);
    if (guard) { /* refused whether or not the task is done: no timing-dependent result */
        int rc = guard(t, atomic_load_explicit(&t->guard, memory_order_relaxed));
        if (rc)
            return rc;
    }
    struct frame *held = t->held_by;
    if (held && atomic_load_explicit(&t->state, memory_order_acquire) != T_DONE) {
        for (struct frame *f = *dagger__frames_slot(); f; f = f->up)
            DAGGER_CHECK(f != held, DAGGER_EDEADLK,
                         "%s: task %llu '%s' is held by the open bulk queue of this thread; it "
                         "starts at dagger_queue_end, so wait for it after the block",
                         what, (unsigned long long)t->id, display_name(t));
    }
    return 0;
}

#define HELP_DEPTH_MAX 48

/* A task waiting for `t` runs its own children from the bottom of its worker's deque, on its
 * own stack, until `t` is done (fork-join without a stack switch, as Cilk and TBB do). Only
 * children are run this way: running an unrelated task above the waiting one could make the
 * waiter wait for it. Returns when `t` is done or no child is at hand. */
static void help(dagger_task_t *me, dagger_task_t *t)
{
    dagger__pool *pool = me->ctx->pool;
    while (atomic_load_explicit(&t->state, memory_order_acquire) != T_DONE) {
        struct dagger__job *j = dagger__pool_pop_local(pool);
        if (!j)
            return;
        dagger_task_t *c = (dagger_task_t *)j;
        if (j->fiber || c->parent != me) {
            dagger__pool_push_local(pool, j);
            return;
        }
        c->help_depth = (uint16_t)(me->help_depth + 1);
        struct dagger__job *next = dagger__task_run(j, NULL);
        set_cur_task(me);
        if (next)
            dagger__pool_push_local(pool, next);
    }
}

int dagger_wait(dagger_task_t *t)
{
    if (t)
        TASK_MISUSE(t, "dagger_wait");
    if (t && atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE &&
        !atomic_load_explicit(&t->guard_fn, memory_order_relaxed))
        return 0;
    int rc = check_wait(t, "dagger_wait");
    if (rc)
        return rc;
    dagger_task_t *me = dagger__cur_task();
    if (me && me->help_depth < HELP_DEPTH_MAX && me->ctx == t->ctx &&
        dagger__pool_can_suspend(me->ctx->pool)) {
        help(me, t);
        if (atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE)
            return 0;
    }
    return dagger__event_wait(t->ctx, &t->waiters, t->id);
}

int dagger_fetch(dagger_task_t *t, dagger_value_t *out)
{
    if (t)
        TASK_MISUSE(t, "dagger_fetch");
    if (DAGGER_UNLIKELY(!t || atomic_load_explicit(&t->state, memory_order_acquire) != T_DONE ||
                        atomic_load_explicit(&t->guard_fn, memory_order_relaxed))) {
        int rc = dagger_wait(t);
        if (rc)
            return rc;
    }
    if (DAGGER_UNLIKELY(t->rc)) {
        dagger__set_errmsg_str(t->rc, t->err && t->err->msg ? t->err->msg : dagger_strerror(t->rc));
        return t->rc;
    }
    if (out) {
        *out = t->result;
        out->flags &= (uint8_t)~DAGGER_VALUE_OWNED;
    }
    return 0;
}

static int kind_mismatch(dagger_task_t *t, const dagger_value_t *v, const char *want)
{
    return dagger__set_errmsg(DAGGER_ETYPE, "task %llu '%s' returned a %s, not a %s",
                              (unsigned long long)t->id, display_name(t), dagger_kind_name(v->kind),
                              want);
}

int dagger_fetch_f64(dagger_task_t *t, double *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_f64: out is NULL");
    dagger_value_t v;
    int rc = dagger_fetch(t, &v);
    if (rc)
        return rc;
    if (v.kind == DAGGER_KIND_F64)
        *out = v.u.f;
    else if (v.kind == DAGGER_KIND_I64)
        *out = (double)v.u.i;
    else
        return kind_mismatch(t, &v, "f64");
    return 0;
}

int dagger_fetch_i64(dagger_task_t *t, int64_t *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_i64: out is NULL");
    dagger_value_t v;
    int rc = dagger_fetch(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_I64)
        return kind_mismatch(t, &v, "i64");
    *out = v.u.i;
    return 0;
}

int dagger_fetch_bool(dagger_task_t *t, bool *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_bool: out is NULL");
    dagger_value_t v;
    int rc = dagger_fetch(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_BOOL)
        return kind_mismatch(t, &v, "bool");
    *out = v.u.b;
    return 0;
}

int dagger_fetch_str(dagger_task_t *t, const char **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_str: out is NULL");
    dagger_value_t v;
    int rc = dagger_fetch(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_STR)
        return kind_mismatch(t, &v, "str");
    *out = v.u.s;
    return 0;
}

int dagger_fetch_ptr(dagger_task_t *t, void **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_fetch_ptr: out is NULL");
    dagger_value_t v;
    int rc = dagger_fetch(t, &v);
    if (rc)
        return rc;
    if (v.kind != DAGGER_KIND_PTR)
        return kind_mismatch(t, &v, "ptr");
    *out = (void *)v.u.p;
    return 0;
}

bool dagger_task_done(const dagger_task_t *t)
{
    return t && atomic_load_explicit(&t->state, memory_order_acquire) == T_DONE;
}

int dagger_task_error(const dagger_task_t *t) { return dagger_task_done(t) ? t->rc : 0; }

const char *dagger_task_errmsg(const dagger_task_t *t)
{
    if (!dagger_task_done(t) || !t->rc)
        return "";
    return t->err && t->err->msg ? t->err->msg : dagger_strerror(t->rc);
}

uint64_t dagger_task_id(const dagger_task_t *t) { return t ? t->id : 0; }

const char *dagger_task_name(const dagger_task_t *t) { return t ? display_name(t) : ""; }

int dagger_cancel(dagger_task_t *t)
{
    DAGGER_CHECK(t, DAGGER_EINVAL, "dagger_cancel: the task handle is NULL");
    atomic_store_explicit(&t->cancel, 1, memory_order_release);
    if (t->cancel_fn)
        t->cancel_fn(t, t->cancel_ud);
    return 0;
}

void dagger__task_set_cancel_hook(dagger_task_t *t, dagger__cancel_hook_fn fn, void *ud)
{
    t->cancel_ud = ud;
    t->cancel_fn = fn;
}

dagger_ctx_t *dagger__task_ctx(const dagger_task_t *t) { return t->ctx; }

bool dagger__event_fired(struct dagger__event *ev)
{
    return atomic_load_explicit(&ev->head, memory_order_acquire) == EV_CLOSED;
}

void dagger__task_set_wait_guard(dagger_task_t *t, dagger__wait_guard_fn fn, void *guard)
{
    atomic_store_explicit(&t->guard, guard, memory_order_relaxed);
    atomic_store_explicit(&t->guard_fn, fn, memory_order_release);
}

/* ---------------------------------------------------------------- inside a task */

int dagger_fail(dagger_tc_t *tc, int code, const char *fmt, ...)
{
    dagger_task_t *t = (dagger_task_t *)tc;
    if (code >= 0)
        code = DAGGER_ETASK;
    if (!t)
        return code;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt ? fmt : "failed", ap);
    va_end(ap);
    return fail_root(t, code, buf);
}

static dagger_value_t scratch_copy(dagger_tc_t *tc, const void *p, size_t n, int kind)
{
    dagger_task_t *t = (dagger_task_t *)tc;
    size_t extra = kind == DAGGER_KIND_STR ? 1 : 0;
    struct scratch *s = t ? dagger__obj_alloc(sizeof *s + n + extra) : NULL;
    if (!s) {
        if (t && !t->argerr)
            t->argerr = fail_rootf(t, DAGGER_ENOMEM, "out of memory copying a %zu-byte %s", n,
                                   dagger_kind_name(kind));
        return dagger_nil();
    }
    s->size = n + extra;
    if (n)
        memcpy(s->bytes, p, n);
    if (extra)
        s->bytes[n] = '\0';
    s->next = t->scratch;
    t->scratch = s;
    return kind == DAGGER_KIND_STR ? dagger_str(s->bytes) : dagger_blob(s->bytes, n);
}

dagger_value_t dagger_str_copy(dagger_tc_t *tc, const char *s)
{
    return scratch_copy(tc, s ? s : "", s ? strlen(s) : 0, DAGGER_KIND_STR);
}

dagger_value_t dagger_blob_copy(dagger_tc_t *tc, const void *p, size_t n)
{
    return scratch_copy(tc, p, n, DAGGER_KIND_BLOB);
}

dagger_task_t *dagger_tc_task(dagger_tc_t *tc) { return (dagger_task_t *)tc; }
uint64_t dagger_tc_id(const dagger_tc_t *tc) { return ((const dagger_task_t *)tc)->id; }
const char *dagger_tc_name(const dagger_tc_t *tc)
{
    return display_name((const dagger_task_t *)tc);
}
dagger_ctx_t *dagger_tc_ctx(dagger_tc_t *tc) { return ((dagger_task_t *)tc)->ctx; }
int dagger_tc_thread(const dagger_tc_t *tc)
{
    const dagger_task_t *t = (const dagger_task_t *)tc;
    return dagger__pool_self(t->ctx->pool);
}
bool dagger_tc_cancelled(const dagger_tc_t *tc)
{
    return atomic_load_explicit(&((const dagger_task_t *)tc)->cancel, memory_order_acquire) != 0;
}

/* ---------------------------------------------------------------- argument accessors */

static const dagger_value_t *arg_at(const dagger_args_t *a, size_t i, int kind, int alt)
{
    dagger_task_t *t = (dagger_task_t *)a;
    if (i >= t->nargs) {
        if (!t->argerr)
            t->argerr = fail_rootf(t, DAGGER_ETYPE,
                                   "argument %zu requested as %s, but the task has %u argument%s",
                                   i, dagger_kind_name(kind), t->nargs, t->nargs == 1 ? "" : "s");
        return NULL;
    }
    const dagger_value_t *v = &t->args[i];
    if (v->kind != kind && v->kind != alt) {
        if (!t->argerr)
            t->argerr = fail_rootf(t, DAGGER_ETYPE, "argument %zu is a %s, not a %s", i,
                                   dagger_kind_name(v->kind), dagger_kind_name(kind));
        return NULL;
    }
    return v;
}

size_t dagger_args_count(const dagger_args_t *a) { return ((const dagger_task_t *)a)->nargs; }

const dagger_value_t *dagger_arg(const dagger_args_t *a, size_t i)
{
    const dagger_task_t *t = (const dagger_task_t *)a;
    return i < t->nargs ? &t->args[i] : NULL;
}

bool dagger_arg_bool(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_BOOL, -1);
    return v ? v->u.b : false;
}

int64_t dagger_arg_i64(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_I64, -1);
    return v ? v->u.i : 0;
}

double dagger_arg_f64(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_F64, DAGGER_KIND_I64);
    if (!v)
        return 0.0;
    return v->kind == DAGGER_KIND_F64 ? v->u.f : (double)v->u.i;
}

const char *dagger_arg_str(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_STR, -1);
    return v ? v->u.s : NULL;
}

const void *dagger_arg_blob(const dagger_args_t *a, size_t i, size_t *len)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_BLOB, -1);
    if (len)
        *len = v ? v->len : 0;
    return v ? v->u.p : NULL;
}

void *dagger_arg_ptr(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_PTR, -1);
    return v ? (void *)v->u.p : NULL;
}

/* ---------------------------------------------------------------- for feature layers */

/* The argument array of a running task and its count: the streaming layer runs a body again and
 * again and substitutes the values of its input streams between runs (src/stream). */
dagger_value_t *dagger__task_args(dagger_task_t *t, uint32_t *n)
{
    *n = t->nargs;
    return t->args;
}

/* The code of a failure already recorded on a running task (dagger_fail, a failing argument
 * accessor), or 0: a body that returned 0 may still have failed. */
int dagger__task_failed(const dagger_task_t *t)
{
    if (t->argerr)
        return t->argerr;
    return t->err ? t->err->code : 0;
}

static void yield_arm(void *arg)
{
    dagger_task_t *t = arg;
    dagger__pool_submit(t->ctx->pool, &t->job);
}

void dagger__task_yield(void)
{
    dagger_task_t *me = dagger__cur_task();
    if (!me || !dagger__pool_can_suspend(me->ctx->pool))
        return;
    if (dagger__pool_suspend(me->ctx->pool, &me->job, yield_arm, me) == 0) {
        set_cur_task(me);
        me->thread = (int16_t)dagger__pool_self_fresh(me->ctx->pool); /* may be another */
    }
}
