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
 * Thread safety: a region is used by the thread or task that began it.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
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
};

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
                n++;
            }
            continue;
        }
        if (a->access > DAGGER_ACCESS_INOUT)
            return snprintf(err, cap, "argument %zu: unknown access mode %d", i + 1, a->access),
                   DAGGER_EINVAL;
        rc = dagger__ddreg_make(&acc->reg, a->shape, a->ptr, a->bytes, a->rows, a->cols, a->ld,
                                a->elsize, why, sizeof why);
        if (rc < 0)
            return snprintf(err, cap, "argument %zu: %s", i + 1, why), rc;
        dd->argv[i] = dagger_ptr(a->ptr);
        if (rc > 0) {
            acc->read = (a->access & DAGGER_ACCESS_IN) != 0;
            acc->write = (a->access & DAGGER_ACCESS_OUT) != 0;
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
        t = dagger_spawn_impl(dd->ctx, &o, fn, fname, dd->argv, argc);
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
    for (size_t i = 0; i < dd->ntasks; i++)
        dagger_task_release(dd->tasks[i]);
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
