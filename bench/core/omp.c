/* bench/core/omp.c - the core-runtime rows with OpenMP tasks (libgomp), the first peer.
 *
 * Tasks are created inside `parallel` + `single`; dependencies use `depend` clauses.
 * OpenMP has no spawn from outside a parallel region, so there is no core.empty_ext row.
 * libgomp runs a task inline when the team has one thread, so the t=1 rows measure a function
 * call, not a task: compare the t=2 (t>1) rows.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <omp.h>

static int threads;
static char param[64];

static void set_param(const char *size_key, long long size)
{
    snprintf(param, sizeof param, "%s=%lld,t=%d", size_key, size, threads);
}

/* ---------------------------------------------------------------- empty */

static void row_empty(long n)
{
    if (!core_want("core.empty"))
        return;
    unsigned char *mark = calloc((size_t)n, 1);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(mark, 0, (size_t)n);
        double t0 = core_now_ns();
#pragma omp parallel
#pragma omp single
        for (long i = 0; i < n; i++) {
#pragma omp task firstprivate(i)
            mark[i] = 1;
        }
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        long s = 0;
        for (long i = 0; i < n; i++)
            s += mark[i];
        core_check_i64("core.empty", "tasks run", s, n);
    }
    free(mark);
    set_param("n", n);
    core_result("core.empty", param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- parallel for */

static void row_parfor(long n)
{
    if (!core_want("core.parfor"))
        return;
    int64_t *out = calloc((size_t)n, sizeof *out);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(out, 0, (size_t)n * sizeof *out);
        double t0 = core_now_ns();
#pragma omp parallel
#pragma omp single
#pragma omp taskloop grainsize(1)
        for (long i = 0; i < n; i++)
            out[i] = core_parfor_f(i);
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_parfor_check("core.parfor", out, n);
    }
    free(out);
    set_param("n", n);
    core_result("core.parfor", param, best / (double)n, "ns/iteration");
}

/* The same loop at the default grain: `taskloop` (impl "omp") and `parallel for` with a static
 * schedule (impl "omp-for"); with grain 1: `taskloop grainsize(1)` only. */
static void row_parfor_range(long n, int grain)
{
    if (!core_want("core.parfor_range"))
        return;
    int64_t *out = calloc((size_t)n, sizeof *out);
    for (int kind = 0; kind < (grain > 0 ? 1 : 2); kind++) {
        double best = 1e300;
        for (int r = 0; r < core_reps(CORE_REPS); r++) {
            memset(out, 0, (size_t)n * sizeof *out);
            double t0 = core_now_ns();
            if (kind == 0 && grain > 0) {
#pragma omp parallel
#pragma omp single
#pragma omp taskloop grainsize(grain)
                for (long i = 0; i < n; i++)
                    out[i] = core_parfor_f(i);
            } else if (kind == 0) {
#pragma omp parallel
#pragma omp single
#pragma omp taskloop
                for (long i = 0; i < n; i++)
                    out[i] = core_parfor_f(i);
            } else {
#pragma omp parallel for schedule(static)
                for (long i = 0; i < n; i++)
                    out[i] = core_parfor_f(i);
            }
            double dt = core_now_ns() - t0;
            if (dt < best)
                best = dt;
            core_parfor_check("core.parfor_range", out, n);
        }
        const char *impl = core_impl_;
        core_impl_ = kind == 0 ? impl : "omp-for";
        core_parfor_param(param, sizeof param, n, grain, threads);
        core_result("core.parfor_range", param, best / (double)n, "ns/iteration");
        core_impl_ = impl;
    }
    free(out);
}

/* ---------------------------------------------------------------- chain */

static void row_chain(long n)
{
    if (!core_want("core.chain"))
        return;
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        int64_t x = 0;
        double t0 = core_now_ns();
#pragma omp parallel shared(x)
#pragma omp single
        for (long i = 0; i < n; i++) {
#pragma omp task depend(inout : x) shared(x)
            x++;
        }
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_check_i64("core.chain", "last value", x, n);
    }
    set_param("n", n);
    core_result("core.chain", param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- fib */

static int64_t fib_task(int64_t n)
{
    if (n < 2)
        return n;
    int64_t x, y;
#pragma omp task shared(x)
    x = fib_task(n - 1);
#pragma omp task shared(y)
    y = fib_task(n - 2);
#pragma omp taskwait
    return x + y;
}

static int64_t fib_cutoff(int64_t n)
{
    if (n <= CORE_FIB_CUTOFF)
        return core_fib_serial(n);
    int64_t x, y;
#pragma omp task shared(x)
    x = fib_cutoff(n - 1);
#pragma omp task shared(y)
    y = fib_cutoff(n - 2);
#pragma omp taskwait
    return x + y;
}

static void row_fib(int n, int cutoff)
{
    const char *bench = cutoff ? "core.fib_cutoff" : "core.fib";
    if (!core_want(bench))
        return;
    double best = 1e300;
    int64_t want = core_fib_serial(n);
    for (int r = 0; r < core_reps(cutoff ? CORE_REPS : CORE_REPS_BIG); r++) {
        int64_t v = 0;
        double t0 = core_now_ns();
#pragma omp parallel shared(v)
#pragma omp single
        v = cutoff ? fib_cutoff(n) : fib_task(n);
        double dt = core_now_ns() - t0;
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

/* ---------------------------------------------------------------- nested loops */

static void row_nested(void)
{
    if (!core_want("core.nested"))
        return;
    int64_t a[CORE_NESTED_OUTER];
    int64_t b[CORE_NESTED_OUTER][CORE_NESTED_INNER];
    double best = 1e300;
    int nrep = core_reps(CORE_REPS_NESTED);
    double *runs = malloc((size_t)nrep * sizeof *runs);
    int64_t want = core_nested_expected();
    double warm = core_warm_until();
    for (int r = 0; r < nrep; r++) {
        double t0 = core_now_ns();
#pragma omp parallel shared(a, b)
#pragma omp single
        for (int i = 0; i < CORE_NESTED_OUTER; i++) {
#pragma omp task depend(out : a[i]) firstprivate(i) shared(a)
            a[i] = core_nested_f(i);
            for (int j = 0; j < CORE_NESTED_INNER; j++) {
#pragma omp task depend(in : a[i]) firstprivate(i, j) shared(a, b)
                b[i][j] = core_nested_g(a[i], j);
            }
        }
        double dt = core_now_ns() - t0;
        core_run_keep(t0, dt, warm, &r, &best, runs);
        int64_t s = 0;
        for (int i = 0; i < CORE_NESTED_OUTER; i++)
            for (int j = 0; j < CORE_NESTED_INNER; j++)
                s += b[i][j];
        core_check_i64("core.nested", "sum", s, want);
    }
    snprintf(param, sizeof param, "n=%dx%d,t=%d", CORE_NESTED_OUTER, CORE_NESTED_INNER, threads);
    core_result("core.nested", param, best / 1e3, "us/run");
    if (runs)
        core_result_median("core.nested", param, runs, nrep, 1e-3, "us/run");
    free(runs);
}

/* ---------------------------------------------------------------- a group per task, at scale */

static void row_group_per_task(long n)
{
    const char *bench = "core.group_per_task";
    if (!core_want(bench))
        return;
    int64_t *o = malloc((size_t)n * CORE_NESTED_INNER * sizeof *o);
    if (!o) {
        fprintf(stderr, "ERROR %s: out of memory\n", bench);
        exit(1);
    }
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(o, 0, (size_t)n * CORE_NESTED_INNER * sizeof *o);
        double t0 = core_now_ns();
#pragma omp parallel shared(o)
#pragma omp single
        for (long i = 0; i < n; i++) {
#pragma omp task firstprivate(i) shared(o)
            {
#pragma omp taskgroup
                for (int j = 0; j < CORE_NESTED_INNER; j++) {
#pragma omp task firstprivate(i, j) shared(o)
                    o[i * CORE_NESTED_INNER + j] = core_groups_value(i, j);
                }
            }
        }
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_groups_check(bench, o, n);
    }
    free(o);
    set_param("n", n);
    core_result(bench, param, best / ((double)n * (CORE_NESTED_INNER + 1)), "ns/task");
}

/* ---------------------------------------------------------------- binary tree */

static void row_tree(int depth)
{
    if (!core_want("core.tree"))
        return;
    long nodes = (1L << depth) - 1;
    int64_t *val = calloc((size_t)nodes + 1, sizeof *val); /* heap order, 1-based */
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(val, 0, ((size_t)nodes + 1) * sizeof *val);
        double t0 = core_now_ns();
#pragma omp parallel
#pragma omp single
        {
#pragma omp task depend(out : val[1])
            val[1] = 1;
            for (long i = 2; i <= nodes; i++) {
#pragma omp task depend(in : val[i / 2]) depend(out : val[i]) firstprivate(i)
                val[i] = val[i / 2] + 1;
            }
        }
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        int64_t s = 0;
        for (long i = 1; i <= nodes; i++)
            s += val[i];
        core_check_i64("core.tree", "sum of depths", s, core_tree_expected(depth));
    }
    free(val);
    set_param("depth", depth);
    core_result("core.tree", param, best / (double)nodes, "ns/task");
}

/* ---------------------------------------------------------------- wavefront */

static void row_wavefront(int n)
{
    if (!core_want("core.wavefront"))
        return;
    int64_t *g = calloc((size_t)n * (size_t)n, sizeof *g);
    int64_t dummy = 0; /* the missing neighbour of a border cell: never written */
    double best = 1e300;
    int64_t want = core_wave_expected(n);
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        double t0 = core_now_ns();
#pragma omp parallel shared(g, dummy)
#pragma omp single
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                int64_t *up = i ? &g[(size_t)(i - 1) * n + j] : &dummy;
                int64_t *left = j ? &g[(size_t)i * n + j - 1] : &dummy;
                int64_t *me = &g[(size_t)i * n + j];
#pragma omp task depend(in : up[0], left[0]) depend(out : me[0]) firstprivate(i, j, up, left, me)
                *me = core_wave_cell(*up, *left, i > 0, j > 0);
            }
        }
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_check_i64("core.wavefront", "last cell", g[(size_t)n * n - 1], want);
    }
    free(g);
    set_param("n", (long long)n * n);
    core_result("core.wavefront", param, best / ((double)n * n), "ns/task");
}

int main(int argc, char **argv)
{
    int t = core_init(argc, argv, "omp", "OMP_NUM_THREADS");
    if (t < 0) {
        puts("core.empty\ncore.chain\ncore.fib\ncore.fib_cutoff\ncore.nested\n"
             "core.group_per_task\ncore.tree\n"
             "core.wavefront");
        return 0;
    }
    if (t > 0)
        omp_set_num_threads(t);
    threads = omp_get_max_threads();

    row_empty(CORE_EMPTY_N);
    row_chain(CORE_CHAIN_N);
    row_fib(CORE_FIB_N, 0);
    row_fib(CORE_FIB_CUTOFF_N, 1);
    row_nested();
    row_group_per_task(CORE_GROUPS_N);
    row_tree(CORE_TREE_DEPTH);
    row_wavefront(CORE_WAVE_N);
    row_parfor(CORE_PARFOR_N);
    row_parfor_range(CORE_PARFOR_N, 0);
    row_parfor_range(CORE_PARFOR_N, 1);
    return core_exit_code();
}
