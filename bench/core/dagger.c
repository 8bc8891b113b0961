/* bench/core/dagger.c - the core-runtime rows with dagger, written as a user would write them.
 *
 * Only the public API: dagger_spawn with task handles as arguments (dependencies whose values
 * the function receives), dagger_fetch_*, dagger_sync_begin/end, dagger_parallel_for, nested
 * spawn + fetch inside tasks for fib, dagger_task_release on every handle, dagger_ctx_close at
 * the end. The flat loops (empty, parfor) spawn detached: no handle, as oneTBB's task_group
 * runs and OpenMP tasks.
 * Rows run at the full sizes of problem.h (pairing with omp and tbb) and at the small sizes
 * (pairing with starpu).
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <dagger.h>

static dagger_ctx_t *ctx;
static int threads;
static char param[64];

static void set_param(const char *size_key, long long size)
{
    snprintf(param, sizeof param, "%s=%lld,t=%d", size_key, size, threads);
}

/* A handle dagger could not allocate: the benchmark cannot go on. */
static dagger_task_t *must(dagger_task_t *t, const char *what)
{
    if (!t) {
        fprintf(stderr, "ERROR %s (dagger): dagger_spawn returned NULL\n", what);
        exit(1);
    }
    return t;
}

/* Report a failed call with its code, name and message. */
static void report_rc(const char *bench, const char *call, int rc, const char *msg)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s: %s (%s): %s", call, dagger_err_name(rc), dagger_strerror(rc),
             msg && *msg ? msg : "(no message)");
    core_fail(bench, buf);
}

/* ---------------------------------------------------------------- empty */

static int mark_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    unsigned char *p = dagger_arg_ptr(a, 0);
    *p = 1;
    return 0;
}

/* Spawn n marking tasks and wait for them with a sync group. Detached: no handle, as a
 * task_group's run in oneTBB and an OpenMP task. */
static int spawn_marks(dagger_ctx_t *c, unsigned char *mark, long n)
{
    int rc = dagger_sync_begin(c);
    if (rc != 0)
        return rc;
    for (long i = 0; i < n; i++) {
        if ((rc = dagger_spawn_detached(c, mark_fn, &mark[i])) != 0) {
            int end = dagger_sync_end(c); /* the tasks made so far */
            (void)end;
            return rc;
        }
    }
    return dagger_sync_end(c);
}

/* The root task of core.empty: args (mark, n). */
static int empty_root_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    unsigned char *mark = dagger_arg_ptr(a, 0);
    long n = (long)dagger_arg_i64(a, 1);
    int rc = spawn_marks(dagger_tc_ctx(tc), mark, n);
    if (rc != 0)
        return dagger_fail(tc, rc, "sync group: %s", dagger_last_errmsg());
    return 0;
}

static void row_empty(long n, int ext)
{
    const char *bench = ext ? "core.empty_ext" : "core.empty";
    if (!core_want(bench))
        return;
    unsigned char *mark = calloc((size_t)n, 1);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(mark, 0, (size_t)n);
        double t0 = core_now_ns();
        if (ext) {
            int rc = spawn_marks(ctx, mark, n);
            if (rc != 0)
                report_rc(bench, "dagger_sync_end", rc, dagger_last_errmsg());
        } else {
            dagger_task_t *root = must(dagger_spawn(ctx, empty_root_fn, mark, (int64_t)n), bench);
            int rc = dagger_fetch(root, NULL);
            if (rc != 0)
                report_rc(bench, "dagger_fetch(root)", rc, dagger_task_errmsg(root));
            dagger_task_release(root);
        }
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        long s = 0;
        for (long i = 0; i < n; i++)
            s += mark[i];
        core_check_i64(bench, "tasks run", s, n);
    }
    free(mark);
    set_param("n", n);
    core_result(bench, param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- parallel for */

/* out[i] = parfor_f(i): args (out, i). */
static int parfor_body_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *dst = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    dst[i] = core_parfor_f(i);
    return 0;
}

/* The root task: one task per iteration into a sync group. Args (out, n). */
static int parfor_root_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *dst = dagger_arg_ptr(a, 0);
    int64_t n = dagger_arg_i64(a, 1);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc != 0)
        return dagger_fail(tc, rc, "sync_begin: %s", dagger_last_errmsg());
    for (int64_t i = 0; i < n; i++) {
        rc = dagger_spawn_detached(c, parfor_body_fn, dst, i);
        if (rc != 0) {
            int end = dagger_sync_end(c); /* the tasks made so far */
            (void)end;
            return dagger_fail(tc, rc, "spawn: %s", dagger_last_errmsg());
        }
    }
    rc = dagger_sync_end(c);
    if (rc != 0)
        return dagger_fail(tc, rc, "sync group: %s", dagger_last_errmsg());
    return 0;
}

static void row_parfor(long n)
{
    if (!core_want("core.parfor"))
        return;
    int64_t *dst = calloc((size_t)n, sizeof *dst);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(dst, 0, (size_t)n * sizeof *dst);
        double t0 = core_now_ns();
        dagger_task_t *root =
            must(dagger_spawn(ctx, parfor_root_fn, (void *)dst, (int64_t)n), "core.parfor");
        int rc = dagger_fetch(root, NULL);
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc("core.parfor", "dagger_fetch(root)", rc, dagger_task_errmsg(root));
        dagger_task_release(root);
        if (dt < best)
            best = dt;
        core_parfor_check("core.parfor", dst, n);
    }
    free(dst);
    set_param("n", n);
    core_result("core.parfor", param, best / (double)n, "ns/iteration");
}

/* out[i] = parfor_f(i) over one leaf of dagger_parallel_for. */
static int parfor_range_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    int64_t *dst = ud;
    for (int64_t i = lo; i < hi; i++)
        dst[i] = core_parfor_f(i);
    return 0;
}

/* The same loop with the range primitive, from the main thread, at the automatic grain (0) or
 * with leaves of `grain` iterations. */
static void row_parfor_range(long n, int grain)
{
    if (!core_want("core.parfor_range"))
        return;
    int64_t *dst = calloc((size_t)n, sizeof *dst);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(dst, 0, (size_t)n * sizeof *dst);
        double t0 = core_now_ns();
        int rc = dagger_parallel_for(ctx, 0, n, grain, parfor_range_leaf, dst);
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc("core.parfor_range", "dagger_parallel_for", rc, dagger_last_errmsg());
        if (dt < best)
            best = dt;
        core_parfor_check("core.parfor_range", dst, n);
    }
    free(dst);
    core_parfor_param(param, sizeof param, n, grain, threads);
    core_result("core.parfor_range", param, best / (double)n, "ns/iteration");
}

/* ---------------------------------------------------------------- chain */

/* inc(): 1; inc(x): x + 1. */
static int inc_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t x = dagger_args_count(a) ? dagger_arg_i64(a, 0) : 0;
    *out = dagger_i64(x + 1);
    return 0;
}

static void row_chain(long n)
{
    if (!core_want("core.chain"))
        return;
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        double t0 = core_now_ns();
        dagger_task_t *prev = must(dagger_spawn(ctx, inc_fn), "core.chain");
        for (long i = 1; i < n; i++) {
            dagger_task_t *t = must(dagger_spawn(ctx, inc_fn, prev), "core.chain");
            dagger_task_release(prev);
            prev = t;
        }
        int64_t v = -1;
        int rc = dagger_fetch_i64(prev, &v);
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc("core.chain", "dagger_fetch_i64", rc, dagger_task_errmsg(prev));
        dagger_task_release(prev);
        if (dt < best)
            best = dt;
        core_check_i64("core.chain", "last value", v, n);
    }
    set_param("n", n);
    core_result("core.chain", param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- fib */

/* Fetch both sub-calls of fib(n), release them, and write their sum (or fail the task). */
static int fib_join(dagger_tc_t *tc, int64_t n, dagger_task_t *x, dagger_task_t *y,
                    dagger_value_t *out)
{
    if (!x || !y) {
        dagger_task_release(x);
        dagger_task_release(y);
        return dagger_fail(tc, DAGGER_ENOMEM, "fib(%lld): spawn returned NULL", (long long)n);
    }
    int64_t vx = 0, vy = 0;
    int rc = dagger_fetch_i64(x, &vx);
    int rc2 = dagger_fetch_i64(y, &vy);
    if (rc == 0 && rc2 != 0)
        rc = rc2;
    if (rc != 0) {
        rc = dagger_fail(tc, rc, "fib(%lld): %s", (long long)n,
                         *dagger_task_errmsg(x) ? dagger_task_errmsg(x) : dagger_task_errmsg(y));
    } else {
        *out = dagger_i64(vx + vy);
    }
    dagger_task_release(x);
    dagger_task_release(y);
    return rc;
}

/* fib(n): both recursive calls are tasks, spawned and fetched from inside this task. */
static int fib_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n < 2) {
        *out = dagger_i64(n);
        return 0;
    }
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    dagger_task_t *x = dagger_spawn(c, fib_fn, n - 1);
    dagger_task_t *y = dagger_spawn(c, fib_fn, n - 2);
    return fib_join(tc, n, x, y, out);
}

/* fib_cutoff(n): the same, serial for n <= CORE_FIB_CUTOFF. */
static int fib_cutoff_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n <= CORE_FIB_CUTOFF) {
        *out = dagger_i64(core_fib_serial(n));
        return 0;
    }
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    dagger_task_t *x = dagger_spawn(c, fib_cutoff_fn, n - 1);
    dagger_task_t *y = dagger_spawn(c, fib_cutoff_fn, n - 2);
    return fib_join(tc, n, x, y, out);
}

static void row_fib(int n, int cutoff)
{
    const char *bench = cutoff ? "core.fib_cutoff" : "core.fib";
    if (!core_want(bench))
        return;
    double best = 1e300;
    int64_t want = core_fib_serial(n);
    for (int r = 0; r < core_reps(cutoff ? CORE_REPS : CORE_REPS_BIG); r++) {
        int64_t v = -1;
        double t0 = core_now_ns();
        dagger_task_t *root = cutoff ? dagger_spawn(ctx, fib_cutoff_fn, (int64_t)n)
                                     : dagger_spawn(ctx, fib_fn, (int64_t)n);
        must(root, bench);
        int rc = dagger_fetch_i64(root, &v);
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc(bench, "dagger_fetch_i64", rc, dagger_task_errmsg(root));
        dagger_task_release(root);
        if (dt < best)
            best = dt;
        core_check_i64(bench, "fib", v, want);
    }
    set_param("n", n);
    if (cutoff)
        core_result(bench, param, best / 1e6, "ms/run");
    else
        core_result(bench, param, best / (double)core_fib_calls(n), "ns/task");
}

/* ---------------------------------------------------------------- nested wait */

/* A root task that spawns a child and waits for it, n times: the child is not done when the
 * wait starts, so each wait runs the check for waits on downstream tasks, the common case of
 * a wait for a task that is not downstream. The root has a dependent (spawned by main). With
 * `in`, each child also takes a finished task as input (a dagger_task_t * in argument 1),
 * which makes the check walk the root's dependents; without, the child has no input. */
static int nested_wait_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0), sum = 0;
    dagger_task_t *in = dagger_arg_ptr(a, 1);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    for (int64_t i = 0; i < n; i++) {
        dagger_task_t *k = in ? dagger_spawn(c, inc_fn, in) : dagger_spawn(c, inc_fn, i);
        int64_t v = 0;
        int rc = k ? dagger_fetch_i64(k, &v) : DAGGER_ENOMEM;
        dagger_task_release(k);
        if (rc)
            return dagger_fail(tc, rc, "nested_wait: child %lld failed", (long long)i);
        sum += v;
    }
    *out = dagger_i64(sum);
    return 0;
}

static void row_nested_wait(long n, int with_input)
{
    const char *bench = "core.nested_wait";
    if (!core_want(bench))
        return;
    double best = 1e300;
    dagger_task_t *in = with_input ? must(dagger_spawn(ctx, inc_fn, (int64_t)-1), bench) : NULL;
    if (in && dagger_wait(in) != 0)
        report_rc(bench, "dagger_wait", DAGGER_EDEADLK, dagger_last_errmsg());
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        double t0 = core_now_ns();
        dagger_task_t *root =
            must(dagger_spawn(ctx, nested_wait_root, (int64_t)n, (void *)in), bench);
        dagger_task_t *dep = must(dagger_spawn(ctx, inc_fn, root), bench);
        int64_t v = -1;
        int rc = dagger_fetch_i64(dep, &v);
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc(bench, "dagger_fetch_i64", rc, dagger_task_errmsg(dep));
        dagger_task_release(root);
        dagger_task_release(dep);
        if (dt < best)
            best = dt;
        core_check_i64(bench, "sum", v, in ? (int64_t)n + 1 : (int64_t)n * (n + 1) / 2 + 1);
    }
    dagger_task_release(in);
    if (with_input)
        snprintf(param, sizeof param, "n=%ld,in=1,t=%d", n, threads);
    else
        set_param("n", n);
    core_result(bench, param, best / (double)n, "ns/wait");
}

/* ---------------------------------------------------------------- nested loops */

static int nested_f_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(core_nested_f(dagger_arg_i64(a, 0)));
    return 0;
}

static int nested_g_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(core_nested_g(dagger_arg_i64(a, 0), dagger_arg_i64(a, 1)));
    return 0;
}

static void row_nested(void)
{
    if (!core_want("core.nested"))
        return;
    dagger_task_t *b[CORE_NESTED_OUTER][CORE_NESTED_INNER];
    double best = 1e300;
    int nrep = core_reps(CORE_REPS_NESTED);
    double *runs = malloc((size_t)nrep * sizeof *runs);
    int64_t want = core_nested_expected();
    double warm = core_warm_until();
    for (int r = 0; r < nrep; r++) {
        double t0 = core_now_ns();
        int rc = dagger_sync_begin(ctx);
        if (rc != 0) {
            report_rc("core.nested", "dagger_sync_begin", rc, dagger_last_errmsg());
            return;
        }
        for (int i = 0; i < CORE_NESTED_OUTER; i++) {
            dagger_task_t *a = must(dagger_spawn(ctx, nested_f_fn, i), "core.nested");
            for (int j = 0; j < CORE_NESTED_INNER; j++)
                b[i][j] = must(dagger_spawn(ctx, nested_g_fn, a, j), "core.nested");
            dagger_task_release(a);
        }
        rc = dagger_sync_end(ctx);
        int64_t s = 0;
        for (int i = 0; i < CORE_NESTED_OUTER; i++) {
            for (int j = 0; j < CORE_NESTED_INNER; j++) {
                int64_t v = 0;
                int frc = dagger_fetch_i64(b[i][j], &v);
                if (frc != 0 && rc == 0)
                    report_rc("core.nested", "dagger_fetch_i64", frc, dagger_task_errmsg(b[i][j]));
                s += v;
                dagger_task_release(b[i][j]);
            }
        }
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc("core.nested", "dagger_sync_end", rc, dagger_last_errmsg());
        core_run_keep(t0, dt, warm, &r, &best, runs);
        core_check_i64("core.nested", "sum", s, want);
    }
    snprintf(param, sizeof param, "n=%dx%d,t=%d", CORE_NESTED_OUTER, CORE_NESTED_INNER, threads);
    core_result("core.nested", param, best / 1e3, "us/run");
    if (runs)
        core_result_median("core.nested", param, runs, nrep, 1e-3, "us/run");
    free(runs);
}

/* ---------------------------------------------------------------- nested loops, oneTBB's form */

/* inner(b, i, j, a): b[i][j] = g(a, j). */
static int nested_inner_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t(*b)[CORE_NESTED_INNER] = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    b[i][dagger_arg_i64(a, 2)] = core_nested_g(dagger_arg_i64(a, 3), dagger_arg_i64(a, 2));
    return 0;
}

/* outer(b, i): a = f(i), then its inner tasks in a sync group of its own. */
static int nested_outer_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    void *b = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    int64_t f = core_nested_f(i);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc != 0)
        return dagger_fail(tc, rc, "sync_begin: %s", dagger_last_errmsg());
    for (int64_t j = 0; j < CORE_NESTED_INNER && rc == 0; j++)
        rc = dagger_spawn_detached(c, nested_inner_fn, b, i, j, f);
    int end = dagger_sync_end(c); /* the tasks made so far */
    if (rc != 0 || end != 0)
        return dagger_fail(tc, rc ? rc : end, "inner tasks: %s", dagger_last_errmsg());
    return 0;
}

/* The loop as oneTBB's row writes it (each outer task runs f, then spawns its inner tasks, all
 * waited for): main's sync group holds the outer tasks, each outer task's own group its inner
 * ones; no handles, results written in place. */
static void row_nested_groups(void)
{
    const char *bench = "core.nested_groups";
    if (!core_want(bench))
        return;
    static int64_t b[CORE_NESTED_OUTER][CORE_NESTED_INNER];
    struct core_nested_reps x;
    core_nested_reps_init(&x);
    for (int r = 0; r < x.nrep; r++) {
        memset(b, 0, sizeof b);
        double t0 = core_now_ns();
        int rc = dagger_sync_begin(ctx);
        if (rc != 0) {
            report_rc(bench, "dagger_sync_begin", rc, dagger_last_errmsg());
            free(x.runs);
            return;
        }
        for (int64_t i = 0; i < CORE_NESTED_OUTER && rc == 0; i++)
            rc = dagger_spawn_detached(ctx, nested_outer_fn, (void *)b, i);
        int end = dagger_sync_end(ctx); /* the tasks made so far */
        double dt = core_now_ns() - t0;
        if (rc != 0 || end != 0) {
            report_rc(bench, rc ? "dagger_spawn_detached" : "dagger_sync_end", rc ? rc : end,
                      dagger_last_errmsg());
            free(x.runs);
            return;
        }
        core_nested_reps_keep(&x, bench, t0, dt, &r, b);
    }
    core_nested_reps_report(&x, bench, threads);
}

/* ---------------------------------------------------------------- a group per task, at scale */

/* The outer tasks are core.nested_groups' (nested_outer_fn): inner task (i, j) writes
 * core_nested_g(core_nested_f(i), j) = core_groups_value(i, j) at out[6i + j]. */
static void row_group_per_task(long n)
{
    const char *bench = "core.group_per_task";
    if (!core_want(bench))
        return;
    int64_t *o = malloc((size_t)n * CORE_NESTED_INNER * sizeof *o);
    if (!o) {
        report_rc(bench, "malloc", DAGGER_ENOMEM, "out of memory");
        return;
    }
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(o, 0, (size_t)n * CORE_NESTED_INNER * sizeof *o);
        double t0 = core_now_ns();
        int rc = dagger_sync_begin(ctx);
        for (int64_t i = 0; i < n && rc == 0; i++)
            rc = dagger_spawn_detached(ctx, nested_outer_fn, (void *)o, i);
        int end = rc == 0 || rc == DAGGER_ENOMEM ? dagger_sync_end(ctx) : 0;
        double dt = core_now_ns() - t0;
        if (rc != 0 || end != 0) {
            report_rc(bench, rc ? "dagger_spawn_detached" : "dagger_sync_end", rc ? rc : end,
                      dagger_last_errmsg());
            break;
        }
        if (dt < best)
            best = dt;
        core_groups_check(bench, o, n);
    }
    free(o);
    set_param("n", n);
    core_result(bench, param, best / ((double)n * (CORE_NESTED_INNER + 1)), "ns/task");
}

/* ---------------------------------------------------------------- binary tree */

/* node(val, i[, parent]): val[i] = parent + 1 (root: 1); returns val[i]. */
static int tree_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *val = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    int64_t v = dagger_args_count(a) > 2 ? dagger_arg_i64(a, 2) + 1 : 1;
    val[i] = v;
    *out = dagger_i64(v);
    return 0;
}

static void row_tree(int depth)
{
    if (!core_want("core.tree"))
        return;
    long nodes = (1L << depth) - 1;
    int64_t *val = calloc((size_t)nodes + 1, sizeof *val); /* heap order, 1-based */
    dagger_task_t **level = calloc((size_t)1 << (depth - 1), sizeof *level);
    dagger_task_t **next = calloc((size_t)1 << (depth - 1), sizeof *next);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(val, 0, ((size_t)nodes + 1) * sizeof *val);
        double t0 = core_now_ns();
        int rc = dagger_sync_begin(ctx);
        if (rc != 0) {
            report_rc("core.tree", "dagger_sync_begin", rc, dagger_last_errmsg());
            break;
        }
        level[0] = must(dagger_spawn(ctx, tree_fn, val, (int64_t)1), "core.tree");
        for (int d = 1; d < depth; d++) {
            long first = 1L << d, width = 1L << d; /* heap indices first .. 2*first-1 */
            for (long k = 0; k < width; k++)
                next[k] = must(dagger_spawn(ctx, tree_fn, val, (int64_t)(first + k), level[k / 2]),
                               "core.tree");
            for (long k = 0; k < width / 2; k++)
                dagger_task_release(level[k]);
            dagger_task_t **tmp = level;
            level = next;
            next = tmp;
        }
        for (long k = 0; k < 1L << (depth - 1); k++)
            dagger_task_release(level[k]);
        rc = dagger_sync_end(ctx);
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc("core.tree", "dagger_sync_end", rc, dagger_last_errmsg());
        if (dt < best)
            best = dt;
        int64_t s = 0;
        for (long i = 1; i <= nodes; i++)
            s += val[i];
        core_check_i64("core.tree", "sum of depths", s, core_tree_expected(depth));
    }
    free(next);
    free(level);
    free(val);
    set_param("depth", depth);
    core_result("core.tree", param, best / (double)nodes, "ns/task");
}

/* ---------------------------------------------------------------- wavefront */

/* cell(): 1; cell(x) = x; cell(up, left) = (up + left) mod p. */
static int cell_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = dagger_args_count(a);
    int64_t x = n > 0 ? dagger_arg_i64(a, 0) : 0;
    int64_t y = n > 1 ? dagger_arg_i64(a, 1) : 0;
    *out = dagger_i64(core_wave_cell(x, y, n > 0, n > 1));
    return 0;
}

static void row_wavefront(int n)
{
    if (!core_want("core.wavefront"))
        return;
    dagger_task_t **prev = calloc((size_t)n, sizeof *prev);
    dagger_task_t **cur = calloc((size_t)n, sizeof *cur);
    double best = 1e300;
    int64_t want = core_wave_expected(n);
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        double t0 = core_now_ns();
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                dagger_task_t *t;
                if (i && j)
                    t = dagger_spawn(ctx, cell_fn, prev[j], cur[j - 1]);
                else if (i)
                    t = dagger_spawn(ctx, cell_fn, prev[j]);
                else if (j)
                    t = dagger_spawn(ctx, cell_fn, cur[j - 1]);
                else
                    t = dagger_spawn(ctx, cell_fn);
                cur[j] = must(t, "core.wavefront");
            }
            if (i)
                for (int j = 0; j < n; j++)
                    dagger_task_release(prev[j]);
            dagger_task_t **tmp = prev;
            prev = cur;
            cur = tmp;
        }
        int64_t v = -1;
        int rc = dagger_fetch_i64(prev[n - 1], &v);
        double dt = core_now_ns() - t0;
        if (rc != 0)
            report_rc("core.wavefront", "dagger_fetch_i64", rc, dagger_task_errmsg(prev[n - 1]));
        for (int j = 0; j < n; j++)
            dagger_task_release(prev[j]);
        if (dt < best)
            best = dt;
        core_check_i64("core.wavefront", "last cell", v, want);
    }
    free(cur);
    free(prev);
    set_param("n", (long long)n * n);
    core_result("core.wavefront", param, best / ((double)n * n), "ns/task");
}

/* ---------------------------------------------------------------- round trip */

/* inc() (the chain's first task, 1) spawned from main and fetched. */
static int round_trip_one(void)
{
    dagger_task_t *t = must(dagger_spawn(ctx, inc_fn), "core.round_trip");
    int64_t v = 0;
    int rc = dagger_fetch_i64(t, &v);
    dagger_task_release(t);
    return rc != 0 ? rc : v == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    /* DAGGER_DEADLOCK_CHECK=0 runs without the check for waits on downstream tasks: the
     * rows then pair with the default ones as a peer, "dagger-nocheck". */
    const char *chk = getenv("DAGGER_DEADLOCK_CHECK");
    const char *impl = chk && !strcmp(chk, "0") ? "dagger-nocheck" : "dagger";
    int t = core_init(argc, argv, impl, "DAGGER_NUM_THREADS");
    if (t < 0) {
        core_list_rows();
        return 0;
    }
    dagger_opts_t opts;
    dagger_opts_init(&opts);
    opts.num_threads = t;
    int rc = dagger_ctx_open(&ctx, &opts);
    if (rc != 0) {
        fprintf(stderr, "ERROR dagger_ctx_open: %s: %s\n", dagger_err_name(rc),
                dagger_last_errmsg());
        return 1;
    }
    threads = dagger_ctx_num_threads(ctx);

    core_round_trip(threads, round_trip_one); /* first: its phase=start is the process's start */
    /* Full sizes: pair with omp and tbb. */
    row_empty(CORE_EMPTY_N, 0);
    row_empty(CORE_EMPTY_N, 1);
    row_chain(CORE_CHAIN_N);
    row_fib(CORE_FIB_N, 0);
    row_fib(CORE_FIB_CUTOFF_N, 1);
    row_nested();
    row_nested_groups();
    row_group_per_task(CORE_GROUPS_N);
    row_tree(CORE_TREE_DEPTH);
    row_wavefront(CORE_WAVE_N);
    row_nested_wait(CORE_NESTED_WAIT_N, 0);
    row_nested_wait(CORE_NESTED_WAIT_N, 1);
    row_parfor(CORE_PARFOR_N);
    row_parfor_range(CORE_PARFOR_N, 0);
    row_parfor_range(CORE_PARFOR_N, 1);
    /* Small sizes: pair with starpu (fib_cutoff and nested have one size). */
    row_empty(CORE_EMPTY_N_SMALL, 0);
    row_empty(CORE_EMPTY_N_SMALL, 1);
    row_chain(CORE_CHAIN_N_SMALL);
    row_fib(CORE_FIB_N_SMALL, 0);
    row_tree(CORE_TREE_DEPTH_SMALL);
    row_wavefront(CORE_WAVE_N_SMALL);

    rc = dagger_ctx_close(ctx);
    if (rc != 0) {
        fprintf(stderr, "ERROR dagger_ctx_close: %s: %s\n", dagger_err_name(rc),
                dagger_last_errmsg());
        return 1;
    }
    return core_exit_code();
}
