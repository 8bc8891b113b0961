/* src/datadeps/region.c - datadeps regions: annotated spawns turned into syncdeps.
 *
 * Design: each annotated spawn is normalised into accesses, run through the tracker (pure
 * analysis, see tracker.c), and spawned with dagger_spawn_impl where opts.syncdeps lists the
 * earlier region tasks it must wait for; annotated arguments are passed as pointer values.
 * The region keeps a reference to each of its tasks and waits for them all at the end.
 * Core hook: each task of an open region carries a wait guard (dagger__task_set_wait_guard)
 * that makes dagger_fetch and dagger_wait refuse it with DAGGER_ESTATE; dagger_datadeps_end
 * removes the guards before it waits. The reference is weak so that this file links before
 * the core provides the hook.
 * Reduction accesses (dagger_redux) never reach the tracker: the task gets a private copy, and
 * the copies of a run of reduction tasks on the same bytes and operator form a group, flushed
 * by one combining task (an InOut of the bytes that also waits for the group's tasks) before
 * any other access that overlaps them, and at the end of the region. Commute accesses are
 * ordered by the tracker like writes except among themselves; a task with one runs through a
 * wrapper that takes the region's lock of each commute region first. The lock suspends a
 * waiting task on an event (never its thread), so commute tasks cannot starve the workers.
 * Thread safety: a region is used by the thread or task that began it; its commute locks and
 * the table of wrapped tasks are shared with the workers (lock order: the table, then a lock's
 * mutex, never both at once).
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dagger.h"
#include "dagger/datadeps.h"
#include "common/alloc.h"
#include "common/common.h"
#include "core/core.h"
#include "datadeps/datadeps_int.h"

#pragma weak dagger__task_set_wait_guard

struct dagger_datadeps {
    dagger_ctx_t *ctx;
    unsigned flags;
    dagger__ddtracker_t tr;
    dagger_task_t **tasks; /* every task of the region in spawn order, +1 each (NULL: OOM) */
    size_t ntasks, captasks;
    uint32_t *deps; /* scratch: the tracker's answer */
    size_t capdeps;
    dagger_task_t **sync; /* scratch: syncdeps handed to the spawn */
    size_t capsync;
    dagger__ddaccess_t *acc; /* scratch: the accesses of one spawn */
    size_t capacc;
    dagger_value_t *argv; /* scratch: the values of one spawn */
    size_t capargv;
    uint64_t annotated, analysis_ns;
    /* The first failure inside the region (0: none) and its message: once set, every later
     * spawn is an already-failed task and dagger_datadeps_end returns it, because a task
     * that could not be recorded or analysed would let later tasks run without their
     * dependencies. */
    int failed;
    char failmsg[256];
    struct rgroup *pending;         /* reduction groups not flushed yet, newest first */
    struct rgroup *groups;          /* flushed groups, freed at the end */
    struct cmx *locks;              /* one per commute region */
    struct dagger__ddchunks chunks; /* whole-chunk accesses (chunks.c) */
};

/* ------------------------------------------------------------------ reduction groups */

struct rgroup {
    struct rgroup *next;
    dagger__ddreg_t reg;
    void *ptr;
    size_t bytes;
    const dagger_redux_op_t *op;
    void **priv; /* private copies, one per task */
    size_t npriv, cappriv;
    dagger_task_t **tasks; /* borrowed from the region's task list */
    size_t ntasks, captasks;
};

static void group_free(struct rgroup *g)
{
    for (size_t i = 0; i < g->npriv; i++)
        dagger__free(g->priv[i]);
    dagger__free(g->priv);
    dagger__free(g->tasks);
    dagger__free(g);
}

/* ------------------------------------------------------------------ commute locks */

/* A lock whose waiters suspend: the holder publishes an event that it fires on release. */
struct cev {
    _Atomic int refs;
    struct dagger__event ev;
};
struct cmx {
    struct cmx *next;
    dagger__ddreg_t reg;
    pthread_mutex_t m;
    bool busy;      /* guarded by m */
    struct cev *ev; /* guarded by m: fired when the holder releases */
};

static void cev_drop(struct cev *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        dagger__free(e);
}

static int cmx_acquire(dagger_ctx_t *ctx, struct cmx *x)
{
    for (;;) {
        pthread_mutex_lock(&x->m);
        if (!x->busy) {
            struct cev *e = dagger__malloc(sizeof *e);
            if (!e) {
                pthread_mutex_unlock(&x->m);
                return DAGGER_ENOMEM;
            }
            atomic_init(&e->refs, 1);
            dagger__event_init(&e->ev);
            x->busy = true;
            x->ev = e;
            pthread_mutex_unlock(&x->m);
            return 0;
        }
        struct cev *e = x->ev;
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        pthread_mutex_unlock(&x->m);
        int rc = dagger__event_wait(ctx, &e->ev, 0);
        cev_drop(e);
        if (rc)
            return rc;
    }
}

static void cmx_release(dagger_ctx_t *ctx, struct cmx *x)
{
    pthread_mutex_lock(&x->m);
    struct cev *e = x->ev;
    x->busy = false;
    x->ev = NULL;
    pthread_mutex_unlock(&x->m);
    dagger__event_fire(&e->ev, ctx);
    cev_drop(e);
}

/* What the wrapper of a commute task needs: the body and its locks in address order. */
struct crec {
    struct crec *next; /* in the table bucket */
    dagger_task_t *task;
    dagger_fn_t fn;
    size_t nlocks;
    struct cmx *locks[];
};

#define CTAB 64
static pthread_mutex_t ctab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct crec *ctab[CTAB]; /* guarded by ctab_lock */

static size_t ctab_slot(const dagger_task_t *t) { return ((uintptr_t)t >> 6) % CTAB; }

static struct crec *ctab_find(const dagger_task_t *t)
{
    pthread_mutex_lock(&ctab_lock);
    struct crec *r = ctab[ctab_slot(t)];
    while (r && r->task != t)
        r = r->next;
    pthread_mutex_unlock(&ctab_lock);
    return r;
}

static void ctab_remove(const dagger_task_t *t)
{
    pthread_mutex_lock(&ctab_lock);
    struct crec **pp = &ctab[ctab_slot(t)];
    while (*pp && (*pp)->task != t)
        pp = &(*pp)->next;
    struct crec *r = *pp;
    if (r)
        *pp = r->next;
    pthread_mutex_unlock(&ctab_lock);
    dagger__free(r);
}

static int commute_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct crec *r = ctab_find(dagger_tc_task(tc));
    if (!r)
        return dagger_fail(tc, DAGGER_ESTATE, "datadeps: commute task without its record");
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    size_t held = 0;
    int rc = 0;
    for (; held < r->nlocks; held++)
        if ((rc = cmx_acquire(ctx, r->locks[held])))
            break;
    if (!rc)
        rc = r->fn(tc, a, out);
    else
        rc = dagger_fail(tc, rc, "datadeps: taking the lock of a commute region failed");
    while (held-- > 0)
        cmx_release(ctx, r->locks[held]);
    return rc;
}

static struct cmx *cmx_get(dagger_datadeps_t *dd, const dagger__ddreg_t *reg)
{
    for (struct cmx *x = dd->locks; x; x = x->next)
        if (dagger__ddreg_equal(&x->reg, reg))
            return x;
    struct cmx *x = dagger__calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->reg = *reg;
    pthread_mutex_init(&x->m, NULL);
    x->next = dd->locks;
    dd->locks = x;
    return x;
}

static bool task_done_ok(void *ud, uint32_t id)
{
    dagger_datadeps_t *dd = ud;
    dagger_task_t *t = dd->tasks[id];
    return !t || (dagger_task_done(t) && dagger_task_error(t) == 0);
}

int dagger_datadeps_begin(dagger_ctx_t *ctx, unsigned flags, dagger_datadeps_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_datadeps_begin: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_datadeps_begin: ctx is NULL");
    DAGGER_CHECK(!(flags & ~(unsigned)DAGGER_DATADEPS_TIMING), DAGGER_EINVAL,
                 "dagger_datadeps_begin: unknown flags 0x%x", flags);
    dagger_datadeps_t *dd = dagger__calloc(1, sizeof *dd);
    DAGGER_CHECK(dd, DAGGER_ENOMEM, "dagger_datadeps_begin: out of memory");
    dd->ctx = ctx;
    dd->flags = flags;
    dagger__ddtracker_init(&dd->tr);
    dd->tr.done_ok = task_done_ok;
    dd->tr.ud = dd;
    *out = dd;
    return 0;
}

dagger_ctx_t *dagger_datadeps_ctx(const dagger_datadeps_t *dd) { return dd ? dd->ctx : NULL; }

void dagger_datadeps_stats(const dagger_datadeps_t *dd, dagger_datadeps_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!dd)
        return;
    out->tasks = dd->ntasks;
    out->annotated = dd->annotated;
    out->edges = dd->tr.edges;
    out->objects = dd->tr.nobjs;
    out->analysis_ns = dd->analysis_ns;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = dagger__realloc(*p, n * elem);
    if (!q)
        return DAGGER_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int refuse_wait(dagger_task_t *t, void *guard)
{
    return dagger__set_errmsg(DAGGER_ESTATE,
                              "task %llu '%s' belongs to an open datadeps region: fetch or wait "
                              "on it after dagger_datadeps_end",
                              (unsigned long long)dagger_task_id(t), dagger_task_name(t));
}

static int fail_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, (int)dagger_arg_i64(a, 0), "%s", dagger_arg_str(a, 1));
}

/* A task of the region that fails with `code` and `msg` without running `fn`. */
static dagger_task_t *spawn_failed(dagger_datadeps_t *dd, const dagger_task_opts_t *opts,
                                   const char *fname, int code, const char *msg)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = opts && opts->name ? opts->name : fname;
    dagger_value_t v[2] = {dagger_i64(code), dagger_str(msg)};
    return dagger_spawn_impl(dd->ctx, &o, fail_body, fname, v, 2);
}

/* The group that a reduction on `reg` with `op` joins: the pending one of the same region and
 * operator, or a new one. NULL when out of memory. */
static struct rgroup *group_for(dagger_datadeps_t *dd, const dagger__ddreg_t *reg,
                                const dagger_ddarg_t *a)
{
    for (struct rgroup *g = dd->pending; g; g = g->next)
        if (g->op == a->value.u.p && dagger__ddreg_equal(&g->reg, reg))
            return g;
    struct rgroup *g = dagger__calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->reg = *reg;
    g->ptr = a->ptr;
    g->bytes = a->bytes;
    g->op = a->value.u.p;
    g->next = dd->pending;
    dd->pending = g;
    return g;
}

/* A reduction argument: a fresh private copy joins the group; the task gets its pointer. */
static int redux_arg(dagger_datadeps_t *dd, const dagger_ddarg_t *a, const dagger__ddreg_t *reg,
                     dagger_value_t *v, char *err, size_t cap, size_t i)
{
    const dagger_redux_op_t *op = a->value.u.p;
    if (a->shape != DAGGER_SHAPE_SPAN || !op || !op->combine)
        return snprintf(err, cap,
                        "argument %zu: a reduction needs a span and an operator with a combine "
                        "function",
                        i + 1),
               DAGGER_EINVAL;
    if (!reg) { /* zero bytes: nothing to reduce */
        *v = dagger_ptr(a->ptr);
        return 0;
    }
    struct rgroup *g = group_for(dd, reg, a);
    void *p = g ? dagger__calloc(1, a->bytes) : NULL;
    /* Room for the copy and for the task (after_prepare must not fail: a task missing from
     * the group would race with the combining task). */
    if (p && (grow((void **)&g->priv, &g->cappriv, g->npriv + 1, sizeof *g->priv) ||
              grow((void **)&g->tasks, &g->captasks, g->npriv + 1, sizeof *g->tasks))) {
        dagger__free(p);
        p = NULL;
    }
    if (!p)
        return snprintf(err, cap, "argument %zu: out of memory for a private copy", i + 1),
               DAGGER_ENOMEM;
    if (op->init)
        op->init(p, a->bytes, op->ud);
    g->priv[g->npriv++] = p;
    *v = dagger_ptr(p);
    return 0;
}

static int combine_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    void *acc = dagger_arg_ptr(a, 0);
    const struct rgroup *g = dagger_arg_ptr(a, 1);
    for (size_t i = 0; i < g->npriv; i++)
        g->op->combine(acc, g->priv[i], g->bytes, g->op->ud);
    return 0;
}

/* Spawn the combining task of pending group `g` and move it to the flushed list. */
static void flush_group(dagger_datadeps_t *dd, struct rgroup *g)
{
    struct rgroup **pp = &dd->pending;
    while (*pp != g)
        pp = &(*pp)->next;
    *pp = g->next;
    g->next = dd->groups;
    dd->groups = g;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "datadeps_redux_combine";
    o.syncdeps = g->tasks;
    o.nsyncdeps = g->ntasks;
    dagger_ddarg_t av[2] = {dagger_inout(g->ptr, g->bytes), dagger_ddval(dagger_ptr(g))};
    dagger_task_release(
        dagger_datadeps_spawn_impl(dd, &o, combine_body, "datadeps_redux_combine", av, 2));
}

/* Flush the pending groups that argument list `argv` touches other than by joining them. */
static void flush_conflicts(dagger_datadeps_t *dd, const dagger_ddarg_t *argv, size_t argc)
{
    for (size_t i = 0; i < argc && dd->pending; i++) {
        const dagger_ddarg_t *a = &argv[i];
        dagger__ddreg_t r;
        char why[160];
        if (a->access == DAGGER_ACCESS_NONE) {
            uintptr_t p = (uintptr_t)a->value.u.p;
            if (a->value.kind != DAGGER_KIND_PTR && a->value.kind != DAGGER_KIND_BLOB &&
                a->value.kind != DAGGER_KIND_STR)
                continue;
            for (struct rgroup *g = dd->pending, *n; g; g = n) {
                n = g->next;
                if (p >= g->reg.lo && p < g->reg.hi)
                    flush_group(dd, g);
            }
            continue;
        }
        if (dagger__ddreg_make(&r, a->shape, a->ptr, a->bytes, a->rows, a->cols, a->ld, a->elsize,
                               why, sizeof why) <= 0)
            continue;
        for (struct rgroup *g = dd->pending, *n; g; g = n) {
            n = g->next;
            bool joins = a->access == DAGGER_ACCESS_REDUX && g->op == a->value.u.p &&
                         dagger__ddreg_equal(&g->reg, &r);
            if (!joins && dagger__ddreg_overlap(&g->reg, &r))
                flush_group(dd, g);
        }
    }
}

/* After the spawn: the task joins the groups of its reduction arguments (redux_arg reserved
 * the room). */
static void after_prepare(dagger_datadeps_t *dd, const dagger_ddarg_t *argv, size_t argc,
                          dagger_task_t *t)
{
    for (size_t i = 0; i < argc; i++) {
        const dagger_ddarg_t *a = &argv[i];
        if (a->access != DAGGER_ACCESS_REDUX)
            continue;
        for (struct rgroup *g = dd->pending; g; g = g->next)
            if (g->op == a->value.u.p && g->ptr == a->ptr && g->bytes == a->bytes) {
                if (g->ntasks < g->captasks)
                    g->tasks[g->ntasks++] = t;
                break;
            }
    }
}

static int cmp_ptr(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t) * (void *const *)x, b = (uintptr_t) * (void *const *)y;
    return a < b ? -1 : a > b;
}

/* The record of a task with commute arguments, or NULL (none, or out of memory: *oom). */
static struct crec *commute_record(dagger_datadeps_t *dd, long nacc, dagger_fn_t fn, bool *oom)
{
    size_t n = 0;
    *oom = false;
    for (long i = 0; i < nacc; i++)
        n += dd->acc[i].commute;
    if (!n)
        return NULL;
    struct crec *r = dagger__calloc(1, sizeof *r + n * sizeof(struct cmx *));
    if (!r) {
        *oom = true;
        return NULL;
    }
    r->fn = fn;
    for (long i = 0; i < nacc; i++) {
        if (!dd->acc[i].commute)
            continue;
        struct cmx *x = cmx_get(dd, &dd->acc[i].reg);
        if (!x) {
            dagger__free(r);
            *oom = true;
            return NULL;
        }
        bool dup = false;
        for (size_t k = 0; k < r->nlocks; k++)
            dup |= r->locks[k] == x;
        if (!dup)
            r->locks[r->nlocks++] = x;
    }
    qsort(r->locks, r->nlocks, sizeof r->locks[0], cmp_ptr);
    return r;
}

/* Turn the arguments into values and accesses. Returns the number of accesses or an error
 * with its message in err. */
static long prepare(dagger_datadeps_t *dd, const dagger_ddarg_t *argv, size_t argc, char *err,
                    size_t cap)
{
    if (grow((void **)&dd->argv, &dd->capargv, argc, sizeof *dd->argv) ||
        grow((void **)&dd->acc, &dd->capacc, argc, sizeof *dd->acc))
        return snprintf(err, cap, "out of memory"), DAGGER_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < argc; i++) {
        const dagger_ddarg_t *a = &argv[i];
        dagger__ddaccess_t *acc = &dd->acc[n];
        char why[160];
        int rc;
        if (a->access == DAGGER_ACCESS_NONE) {
            const dagger_value_t *v = &a->value;
            dd->argv[i] = *v;
            uintptr_t p = (uintptr_t)v->u.p, hi;
            if (v->kind == DAGGER_KIND_PTR && p) {
                /* An unannotated pointer reads the annotated memory it points into. */
                hi = dagger__ddtracker_extent(&dd->tr, p);
                rc = dagger__ddreg_make(&acc->reg, DAGGER_SHAPE_SPAN, v->u.p, hi > p ? hi - p : 1,
                                        0, 0, 0, 0, why, sizeof why);
            } else if ((v->kind == DAGGER_KIND_BLOB || v->kind == DAGGER_KIND_STR) &&
                       (v->flags & DAGGER_VALUE_BORROW) && p) {
                rc = dagger__ddreg_make(&acc->reg, DAGGER_SHAPE_SPAN, v->u.p,
                                        v->len + (v->kind == DAGGER_KIND_STR), 0, 0, 0, 0, why,
                                        sizeof why);
            } else {
                continue;
            }
            if (rc > 0) {
                acc->read = true;
                acc->write = false;
                acc->commute = false;
                n++;
            }
            continue;
        }
        if (a->access > DAGGER_ACCESS_REDUX)
            return snprintf(err, cap, "argument %zu: unknown access mode %d", i + 1, a->access),
                   DAGGER_EINVAL;
        if (a->shape == DAGGER_SHAPE_CHUNK) {
            rc = dagger__dd_chunk_access(a, acc, why, sizeof why);
            if (rc < 0)
                return snprintf(err, cap, "argument %zu: %s", i + 1, why), rc;
            dd->argv[i] = a->value;
            n++;
            continue;
        }
        rc = dagger__ddreg_make(&acc->reg, a->shape, a->ptr, a->bytes, a->rows, a->cols, a->ld,
                                a->elsize, why, sizeof why);
        if (rc < 0)
            return snprintf(err, cap, "argument %zu: %s", i + 1, why), rc;
        dd->argv[i] = dagger_ptr(a->ptr);
        if (a->access == DAGGER_ACCESS_REDUX) {
            rc = redux_arg(dd, a, rc > 0 ? &acc->reg : NULL, &dd->argv[i], err, cap, i);
            if (rc < 0)
                return rc;
            continue;
        }
        if (rc > 0) {
            acc->commute = a->access == DAGGER_ACCESS_COMMUTE;
            acc->read = acc->commute || (a->access & DAGGER_ACCESS_IN) != 0;
            acc->write = !acc->commute && (a->access & DAGGER_ACCESS_OUT) != 0;
            n++;
        }
    }
    return (long)n;
}

/* Remember the region's first failure. */
static void region_fail(dagger_datadeps_t *dd, int code, const char *msg)
{
    if (dd->failed)
        return;
    dd->failed = code;
    snprintf(dd->failmsg, sizeof dd->failmsg, "%s", msg);
}

/* A spawn of a region that already failed, or whose task could not be recorded: an
 * already-failed task that the region does not wait for (it never runs `fn`). */
static dagger_task_t *spawn_poisoned(dagger_datadeps_t *dd, const dagger_task_opts_t *opts,
                                     const char *fname)
{
    char msg[320];
    snprintf(msg, sizeof msg, "the datadeps region failed before this task: %s", dd->failmsg);
    dagger_task_t *t = spawn_failed(dd, opts, fname, dd->failed, msg);
    if (!t)
        dagger__set_errmsg_str(DAGGER_ENOMEM, msg);
    return t;
}

dagger_task_t *dagger_datadeps_spawn_impl(dagger_datadeps_t *dd, const dagger_task_opts_t *opts,
                                          dagger_fn_t fn, const char *fname,
                                          const dagger_ddarg_t *argv, size_t argc)
{
    if (!dd) {
        dagger__set_errmsg(DAGGER_EINVAL, "dagger_datadeps_spawn: no region");
        return NULL;
    }
    if (!dd->failed)
        flush_conflicts(dd, argv, argc); /* may spawn combining tasks first */
    if (!dd->failed && grow((void **)&dd->tasks, &dd->captasks, dd->ntasks + 1, sizeof *dd->tasks))
        region_fail(dd, DAGGER_ENOMEM, "out of memory recording a datadeps task");
    if (dd->failed)
        return spawn_poisoned(dd, opts, fname);
    uint32_t id = (uint32_t)dd->ntasks;
    uint64_t t0 = (dd->flags & DAGGER_DATADEPS_TIMING) ? dagger__now_ns() : 0;
    char err[256];
    dagger_task_t *t = NULL;
    long nacc = fn ? prepare(dd, argv, argc, err, sizeof err)
                   : (snprintf(err, sizeof err, "no task function"), DAGGER_EINVAL);
    long ndeps = nacc < 0 ? nacc
                          : dagger__ddtracker_add(&dd->tr, id, dd->acc, (size_t)nacc, &dd->deps,
                                                  &dd->capdeps);
    if (nacc >= 0 && ndeps < 0)
        snprintf(err, sizeof err, "out of memory in the datadeps analysis");
    size_t nuser = opts ? opts->nsyncdeps : 0;
    if (ndeps >= 0 &&
        grow((void **)&dd->sync, &dd->capsync, (size_t)ndeps + nuser, sizeof *dd->sync)) {
        ndeps = DAGGER_ENOMEM; /* the accesses are recorded: ordering is lost, report it */
        snprintf(err, sizeof err, "out of memory in the datadeps analysis");
    }
    if (dd->flags & DAGGER_DATADEPS_TIMING)
        dd->analysis_ns += dagger__now_ns() - t0;
    if (ndeps < 0) {
        /* A bad argument fails this task only; out of memory loses ordering: the region. */
        if (ndeps == DAGGER_ENOMEM)
            region_fail(dd, DAGGER_ENOMEM, err);
        t = spawn_failed(dd, opts, fname, (int)ndeps, err);
    } else {
        dd->annotated += (uint64_t)nacc;
        dagger_task_opts_t o;
        if (opts)
            o = *opts;
        else
            dagger_task_opts_init(&o);
        for (size_t i = 0; i < nuser; i++)
            dd->sync[i] = opts->syncdeps[i];
        size_t ns = nuser;
        for (long i = 0; i < ndeps; i++)
            dd->sync[ns++] = dd->tasks[dd->deps[i]];
        o.syncdeps = dd->sync;
        o.nsyncdeps = ns;
        int crc = dagger__dd_chunks_place(&dd->chunks, dd->ctx, argv, argc, dd->argv, o.priority,
                                          err, sizeof err);
        if (crc == DAGGER_ENOMEM)
            region_fail(dd, crc, err);
        bool oom = false;
        struct crec *rec = crc ? NULL : commute_record(dd, nacc, fn, &oom);
        if (crc) {
            t = spawn_failed(dd, opts, fname, crc, err);
        } else if (oom) {
            t = spawn_failed(dd, opts, fname, DAGGER_ENOMEM, "out of memory for a commute lock");
        } else if (rec) {
            /* Held in a bulk block until the wrapper can find the record. */
            if (!o.name)
                o.name = fname;
            int qrc = dagger_queue_begin(dd->ctx, DAGGER_QUEUE_BULK);
            t = dagger_spawn_impl(dd->ctx, &o, commute_body, fname, dd->argv, argc);
            if (t) {
                rec->task = t;
                pthread_mutex_lock(&ctab_lock);
                rec->next = ctab[ctab_slot(t)];
                ctab[ctab_slot(t)] = rec;
                pthread_mutex_unlock(&ctab_lock);
            } else {
                dagger__free(rec);
            }
            if (!qrc && dagger_queue_end(dd->ctx) && t && !dagger_task_done(t))
                dagger_cancel(t); /* unreachable in practice: a bulk end only launches */
        } else {
            t = dagger_spawn_impl(dd->ctx, &o, fn, fname, dd->argv, argc);
        }
        if (t) {
            after_prepare(dd, argv, argc, t);
            dagger__dd_chunks_spawned(&dd->chunks, argv, argc, t);
        }
    }
    dd->tasks[dd->ntasks++] = t;
    if (!t) {
        region_fail(dd, DAGGER_ENOMEM, "out of memory spawning a datadeps task");
        dagger__set_errmsg_str(DAGGER_ENOMEM, dd->failmsg);
        return NULL;
    }
    if (dagger__task_set_wait_guard)
        dagger__task_set_wait_guard(t, refuse_wait, dd);
    return dagger_task_retain(t);
}

int dagger_datadeps_end(dagger_datadeps_t *dd)
{
    DAGGER_CHECK(dd, DAGGER_EINVAL, "dagger_datadeps_end: no region");
    while (dd->pending)
        flush_group(dd, dd->pending);
    if (dagger__task_set_wait_guard)
        for (size_t i = 0; i < dd->ntasks; i++)
            if (dd->tasks[i])
                dagger__task_set_wait_guard(dd->tasks[i], NULL, NULL);
    int first = 0;
    char *msg = NULL;
    for (size_t i = 0; i < dd->ntasks; i++) {
        dagger_task_t *t = dd->tasks[i];
        if (!t) {
            if (!first) {
                first = DAGGER_ENOMEM;
                msg = dagger__asprintf("datadeps task %zu could not be allocated", i + 1);
            }
            continue;
        }
        int wrc = dagger_wait(t); /* never reports the task's error; read it below */
        (void)wrc;
        int e = dagger_task_error(t);
        if (e && !first) {
            first = e;
            msg = dagger__strdup(dagger_task_errmsg(t));
        }
    }
    if (dd->failed) {
        /* The region's own failure comes first: it explains the tasks that failed after it. */
        dagger__free(msg);
        first = dd->failed;
        msg = dagger__strdup(dd->failmsg);
    }
    for (size_t i = 0; i < dd->ntasks; i++) {
        if (dd->locks && dd->tasks[i])
            ctab_remove(dd->tasks[i]);
        dagger_task_release(dd->tasks[i]);
    }
    while (dd->groups) {
        struct rgroup *g = dd->groups;
        dd->groups = g->next;
        group_free(g);
    }
    while (dd->locks) {
        struct cmx *x = dd->locks;
        dd->locks = x->next;
        pthread_mutex_destroy(&x->m);
        dagger__free(x);
    }
    dagger__dd_chunks_fini(&dd->chunks);
    dagger__ddtracker_deinit(&dd->tr);
    dagger__free(dd->tasks);
    dagger__free(dd->deps);
    dagger__free(dd->sync);
    dagger__free(dd->acc);
    dagger__free(dd->argv);
    dagger__free(dd);
    if (first) {
        dagger__set_errmsg_str(first, msg ? msg : dagger_strerror(first));
        dagger__free(msg);
    }
    return first;
}

int dagger_datadeps_run(dagger_ctx_t *ctx, unsigned flags,
                        int (*body)(dagger_datadeps_t *dd, void *ud), void *ud)
{
    DAGGER_CHECK(body, DAGGER_EINVAL, "dagger_datadeps_run: body is NULL");
    dagger_datadeps_t *dd;
    int rc = dagger_datadeps_begin(ctx, flags, &dd);
    if (rc)
        return rc;
    int brc = body(dd, ud);
    rc = dagger_datadeps_end(dd);
    if (rc)
        return rc;
    if (brc < 0)
        return dagger__set_errmsg(brc, "datadeps region body returned %s", dagger_err_name(brc));
    return 0;
}
