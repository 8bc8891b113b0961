/* bench/core/problem.h - the core-runtime benchmarks: sizes, checks and helpers shared by every
 * implementation (dagger.c, omp.c, tbb.cpp, starpu.c).
 *
 * Rows (bench names as printed in RESULT lines):
 *   core.empty      N tasks that do nothing but mark a byte, spawned from inside one root task
 *                   (like `omp single`); waited together.                          ns/task
 *   core.empty_ext  the same, spawned from the main thread (outside every task).    ns/task
 *   core.chain      N tasks, each depends on the one before (value + 1).           ns/task
 *   core.fib        fib(N), one task per call (both recursive calls are tasks).    ns/task
 *   core.fib_cutoff fib(N), tasks only for n > CORE_FIB_CUTOFF, serial below.      ms/run
 *   core.nested     20 outer tasks f(i), each with 6 inner tasks g(f(i), j) that
 *                   depend on it (Dagger.jl's nested-loop example); sums checked.  us/run
 *   core.nested_groups the same loop in oneTBB's form: each outer task computes f(i), then
 *                   spawns its inner tasks and waits for them (dagger: a sync group in the
 *                   outer task, the outer tasks in main's group, results written in place;
 *                   oneTBB: its core.nested code, nested task_group runs).          us/run
 *   core.group_per_task N outer tasks spawned from the main thread, each ending a group of
 *                   6 inner tasks of its own, which write out[6i + j]: the nested loop at
 *                   scale, every outer task waiting for its inner ones (dagger: a sync group in
 *                   each outer task, the outer ones in main's group; oneTBB: a task_group per
 *                   outer task and its wait; OpenMP: a taskgroup per outer task); every value
 *                   is checked.                                                     ns/task
 *   core.tree       binary tree of depth D (2^D - 1 nodes), each node depends on
 *                   its parent (Taskflow's binary_tree).                           ns/task
 *   core.wavefront  N x N grid, cell (i,j) depends on (i-1,j) and (i,j-1)
 *                   (Taskflow's wavefront); values are binomials mod a prime.      ns/task
 *   core.parfor     a flat parallel for of N iterations, one task per iteration, each writing
 *                   out[i] = parfor_f(i): dagger spawns them from one root task into a sync
 *                   group, OpenMP uses `taskloop grainsize(1)`, oneTBB `parallel_for` with a
 *                   simple_partitioner and grain 1 (its idiomatic recursive split); the sum
 *                   of out is checked.                                             ns/iteration
 *   core.parfor_range the same loop and body as core.parfor, written with each runtime's
 *                   range primitive at its default grain: dagger_parallel_for (grain 0:
 *                   automatic), oneTBB `parallel_for` over a blocked_range (auto_partitioner),
 *                   OpenMP `taskloop` (default grainsize; impl "omp") and `parallel for
 *                   schedule(static)` (impl "omp-for"); all called from the main thread; the
 *                   sum of out is checked. A second param, "grain=1", forces leaves of one
 *                   iteration (TBB: simple_partitioner, OpenMP: taskloop grainsize(1); no
 *                   omp-for row): the cost of a leaf.                              ns/iteration
 *   core.round_trip one empty task spawned from the main thread and waited for, then the next
 *                   (dagger_spawn + dagger_fetch; oneTBB task_group run + wait): param
 *                   "phase=start" is the mean over the first CORE_RT_START_MS ms after the
 *                   runtime starts (the first row of a binary; what a short program sees),
 *                   "phase=steady" the median of CORE_RT_STEADY later ones.          us/task
 *   core.nested_wait one task spawns N children one at a time and waits for each
 *                   before it is done (dagger only: its peer is dagger-nocheck, the same
 *                   binary with DAGGER_DEADLOCK_CHECK=0).                          ns/wait
 * Every figure is the best (minimum) of BENCH_REPS repetitions (default per row below); the
 * construction of the graph is inside the timed region, as a spawn is for dagger.
 * The `param` column says the size and the thread count ("n=1000000,t=2"), so rows with the
 * same bench and param are comparable. StarPU runs the SMALL sizes only (it costs microseconds
 * per task); dagger runs both sizes so that it pairs with every peer.
 * Each binary answers `--list` (its row names) and takes `--threads N` (or BENCH_THREADS);
 * BENCH_FILTER=substr runs only rows whose name contains substr (unless the binary name does);
 * several patterns separated by '|', and 'row$' for that row exactly.
 * A wrong result prints "ERROR ..." on stderr and the binary exits 1.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_CORE_PROBLEM_H
#define DAGGER_BENCH_CORE_PROBLEM_H

/* Include this header first: clock_gettime, and pthread rwlocks for StarPU's headers. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- sizes */
#define CORE_EMPTY_N 1000000
#define CORE_EMPTY_N_SMALL 100000
#define CORE_CHAIN_N 100000
#define CORE_CHAIN_N_SMALL 10000
#define CORE_NESTED_WAIT_N 200000
#define CORE_PARFOR_N 1000000
#define CORE_FIB_N 30
#define CORE_FIB_N_SMALL 20
#define CORE_RT_START_MS 50
#define CORE_RT_STEADY 2000
#define CORE_FIB_CUTOFF_N 30
#define CORE_FIB_CUTOFF 20 /* fib(n) for n <= 20 is computed serially inside the task */
#define CORE_NESTED_OUTER 20
#define CORE_NESTED_INNER 6
#define CORE_GROUPS_N 100000 /* core.group_per_task: outer tasks, CORE_NESTED_INNER each */
#define CORE_TREE_DEPTH 18
#define CORE_TREE_DEPTH_SMALL 14
#define CORE_WAVE_N 256
#define CORE_WAVE_N_SMALL 64
#define CORE_WAVE_MOD 1000000007LL

/* Default repetitions per row (BENCH_REPS overrides them all). */
#define CORE_REPS 5
#define CORE_REPS_BIG 3 /* fib with a task per call: the longest row */
/* A run is 140 tasks of a few us: repeat it often (at 50 the best of a process landed in one of
 * two modes, 9 or 13-15 us, for dagger at t=1 and t=2). */
#define CORE_REPS_NESTED 2000
/* core.nested runs for this long (ms) before its timed runs: a runtime whose idle workers sleep
 * has them join the work only after some milliseconds, and the row is about the steady state
 * (oneTBB at t=2: median 3.9 us over a process's first 2000 runs, its worker still asleep,
 * 19-26 us over 20000). */
#define CORE_NESTED_WARM_MS 250

/* ---------------------------------------------------------------- references */

static inline int64_t core_fib_serial(int64_t n)
{
    return n < 2 ? n : core_fib_serial(n - 1) + core_fib_serial(n - 2);
}

/* Number of calls (= tasks) in fib(n) with a task per call: 2 fib(n+1) - 1. */
static inline int64_t core_fib_calls(int64_t n)
{
    int64_t a = 0, b = 1;
    for (int64_t i = 0; i < n + 1; i++) {
        int64_t c = a + b;
        a = b;
        b = c;
    }
    return 2 * a - 1;
}

/* Tasks spawned by fib(n) with the cutoff: calls with n > cutoff, plus their children. */
static inline int64_t core_fib_cutoff_tasks(int64_t n)
{
    if (n <= CORE_FIB_CUTOFF)
        return 1;
    return 1 + core_fib_cutoff_tasks(n - 1) + core_fib_cutoff_tasks(n - 2);
}

/* parfor: out[i] = (i * i) mod 1000003; the sum over 0 <= i < n. */
static inline int64_t core_parfor_f(int64_t i) { return (i * i) % 1000003; }
static inline int64_t core_parfor_expected(int64_t n)
{
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++)
        s += core_parfor_f(i);
    return s;
}

/* nested: f(i) = i*i + 1, g(a, j) = a * j + 1; the sum over all g. */
static inline int64_t core_nested_f(int64_t i) { return i * i + 1; }
static inline int64_t core_nested_g(int64_t a, int64_t j) { return a * j + 1; }
static inline int64_t core_nested_expected(void)
{
    int64_t s = 0;
    for (int64_t i = 0; i < CORE_NESTED_OUTER; i++)
        for (int64_t j = 0; j < CORE_NESTED_INNER; j++)
            s += core_nested_g(core_nested_f(i), j);
    return s;
}

/* tree: node value = depth (root 1); the sum over all nodes of a tree of depth d. */
static inline int64_t core_tree_expected(int depth)
{
    int64_t s = 0;
    for (int d = 1; d <= depth; d++)
        s += (int64_t)d << (d - 1);
    return s;
}

/* wavefront: w(0,0) = 1; w(i,j) = (w(i-1,j) + w(i,j-1)) mod p with missing neighbours 0. */
static inline int64_t core_wave_cell(int64_t up, int64_t left, int has_up, int has_left)
{
    if (!has_up && !has_left)
        return 1;
    return ((has_up ? up : 0) + (has_left ? left : 0)) % CORE_WAVE_MOD;
}
static inline int64_t core_wave_expected(int n)
{
    int64_t *row = (int64_t *)calloc((size_t)n, sizeof *row);
    if (!row)
        return -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            row[j] = core_wave_cell(row[j], j ? row[j - 1] : 0, i > 0, j > 0);
    int64_t r = row[n - 1];
    free(row);
    return r;
}

/* ---------------------------------------------------------------- harness */

static inline double core_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The end of core.nested's warm-up (CORE_NESTED_WARM_MS from now), in core_now_ns's time. */
static inline double core_warm_until(void) { return core_now_ns() + CORE_NESTED_WARM_MS * 1e6; }

/* Record run *r (started at t0, took dt ns) in *best and runs[] (may be NULL); a run started
 * before `warm` (core_warm_until) is a warm-up: not recorded, and *r is run again. */
static inline void core_run_keep(double t0, double dt, double warm, int *r, double *best,
                                 double *runs)
{
    if (t0 < warm) {
        (*r)--;
        return;
    }
    if (dt < *best)
        *best = dt;
    if (runs)
        runs[*r] = dt;
}

static const char *core_impl_ = "?";
static const char *core_prog_ = "";
static int core_failed_ = 0;

/* Parse `--threads N` / `-t N` / `--list`, remember the implementation name.
 * Returns: the thread count asked for (0 = the implementation's default), or -1 after --list
 * (the caller prints its rows with core_list_row and exits). */
static inline int core_init(int argc, char **argv, const char *impl, const char *impl_env)
{
    core_impl_ = impl;
    core_prog_ = argc > 0 ? argv[0] : "";
    const char *slash = strrchr(core_prog_, '/');
    if (slash)
        core_prog_ = slash + 1;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list"))
            return -1;
        if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "-t")) && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (argv[i][0] >= '0' && argv[i][0] <= '9')
            threads = atoi(argv[i]);
    }
    if (threads <= 0 && getenv("BENCH_THREADS"))
        threads = atoi(getenv("BENCH_THREADS"));
    if (threads <= 0 && impl_env && getenv(impl_env))
        threads = atoi(getenv(impl_env));
    return threads > 0 ? threads : 0;
}

/* Whether a row runs: BENCH_FILTER unset or empty, or one of its '|'-separated patterns found
 * in the binary's name or the row's ("core.nested$": that row only, not core.nested_wait). */
static inline int core_want(const char *row)
{
    const char *f = getenv("BENCH_FILTER");
    if (!f || !*f)
        return 1;
    for (;;) {
        const char *bar = strchr(f, '|');
        size_t n = bar ? (size_t)(bar - f) : strlen(f);
        char pat[128];
        if (n > 0 && n < sizeof pat) {
            memcpy(pat, f, n);
            pat[n] = '\0';
            if (pat[n - 1] == '$') {
                if (strncmp(row, pat, n - 1) == 0 && row[n - 1] == '\0')
                    return 1;
            } else if (strstr(core_prog_, pat) != NULL || strstr(row, pat) != NULL) {
                return 1;
            }
        }
        if (!bar)
            return 0;
        f = bar + 1;
    }
}

static inline int core_reps(int dflt)
{
    const char *r = getenv("BENCH_REPS");
    int n = r ? atoi(r) : 0;
    return n > 0 ? n : dflt;
}

static inline void core_result(const char *bench, const char *param, double figure,
                               const char *unit)
{
    printf("RESULT|%s|%s|%s|%.6g|%s\n", bench, core_impl_, param, figure, unit);
    fflush(stdout);
}

/* A row's runs, kept to report their median beside the best (core.nested, core.nested_median):
 * the best is what a run can cost, the median what one usually costs. */
static inline int core_cmp_double_(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static inline void core_result_median(const char *bench, const char *param, double *runs, int n,
                                      double scale, const char *unit)
{
    if (n <= 0)
        return;
    qsort(runs, (size_t)n, sizeof *runs, core_cmp_double_);
    char name[96];
    snprintf(name, sizeof name, "%s_median", bench);
    core_result(name, param, runs[n / 2] * scale, unit);
}

/* Report a wrong result: printed on stderr, the binary exits 1 at the end. */
static inline void core_check_i64(const char *bench, const char *what, int64_t got, int64_t want)
{
    if (got == want)
        return;
    fprintf(stderr, "ERROR %s (%s): %s = %lld, expected %lld\n", bench, core_impl_, what,
            (long long)got, (long long)want);
    core_failed_ = 1;
}

/* parfor: sum out[0..n) and check it against core_parfor_expected(n). */
static inline void core_parfor_check(const char *bench, const int64_t *out, int64_t n)
{
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++)
        s += out[i];
    core_check_i64(bench, "sum of out", s, core_parfor_expected(n));
}

/* The param of a core.parfor_range row: "n=N,t=T", or "n=N,grain=G,t=T" for a forced grain. */
static inline void core_parfor_param(char *buf, size_t cap, long n, int grain, int threads)
{
    if (grain > 0)
        snprintf(buf, cap, "n=%ld,grain=%d,t=%d", n, grain, threads);
    else
        snprintf(buf, cap, "n=%ld,t=%d", n, threads);
}

static inline void core_fail(const char *bench, const char *msg)
{
    fprintf(stderr, "ERROR %s (%s): %s\n", bench, core_impl_, msg);
    core_failed_ = 1;
}

static inline int core_exit_code(void) { return core_failed_ ? 1 : 0; }

/* core.round_trip: `one()` (spawn an empty task from the main thread, wait for it, return 0 on
 * success) for CORE_RT_START_MS ms, then CORE_RT_STEADY times; both figures printed. */
static inline void core_round_trip(int threads, int (*one)(void))
{
    if (!core_want("core.round_trip"))
        return;
    char param[64];
    double t_start = core_now_ns(), sum = 0;
    long n = 0;
    while (core_now_ns() - t_start < CORE_RT_START_MS * 1e6) {
        double t0 = core_now_ns();
        core_check_i64("core.round_trip", "task status", one(), 0);
        sum += core_now_ns() - t0;
        n++;
    }
    snprintf(param, sizeof param, "phase=start,t=%d", threads);
    core_result("core.round_trip", param, sum / (double)n / 1e3, "us/task");
    static double runs[CORE_RT_STEADY];
    for (int r = 0; r < CORE_RT_STEADY; r++) {
        double t0 = core_now_ns();
        core_check_i64("core.round_trip", "task status", one(), 0);
        runs[r] = core_now_ns() - t0;
    }
    qsort(runs, CORE_RT_STEADY, sizeof *runs, core_cmp_double_);
    snprintf(param, sizeof param, "phase=steady,t=%d", threads);
    core_result("core.round_trip", param, runs[CORE_RT_STEADY / 2] / 1e3, "us/task");
}

/* The repetitions of a row of the nested loop: the best and the median of its timed runs. */
struct core_nested_reps {
    double best, warm;
    int nrep;
    double *runs;
};
static inline void core_nested_reps_init(struct core_nested_reps *x)
{
    x->best = 1e300;
    x->nrep = core_reps(CORE_REPS_NESTED);
    x->runs = (double *)malloc((size_t)x->nrep * sizeof(double));
    x->warm = core_warm_until();
}
/* After run *r (started at t0, dt ns): keep its time (core_run_keep), check the sum of b. */
static inline void core_nested_reps_keep(struct core_nested_reps *x, const char *bench, double t0,
                                         double dt, int *r, int64_t (*b)[CORE_NESTED_INNER])
{
    core_run_keep(t0, dt, x->warm, r, &x->best, x->runs);
    int64_t s = 0;
    for (int i = 0; i < CORE_NESTED_OUTER; i++)
        for (int j = 0; j < CORE_NESTED_INNER; j++)
            s += b[i][j];
    core_check_i64(bench, "sum", s, core_nested_expected());
}
/* Print the row (best and median, us/run) and free the runs. */
static inline void core_nested_reps_report(struct core_nested_reps *x, const char *bench,
                                           int threads)
{
    char param[64];
    snprintf(param, sizeof param, "n=%dx%d,t=%d", CORE_NESTED_OUTER, CORE_NESTED_INNER, threads);
    core_result(bench, param, x->best / 1e3, "us/run");
    if (x->runs)
        core_result_median(bench, param, x->runs, x->nrep, 1e-3, "us/run");
    free(x->runs);
    x->runs = NULL;
}

/* core.group_per_task: the value inner task (i, j) writes, and the check of all N x 6. */
static inline int64_t core_groups_value(int64_t i, int64_t j) { return (i * i + 1) * j + 1; }
static inline void core_groups_check(const char *bench, const int64_t *out, long n)
{
    long bad = 0;
    for (long i = 0; i < n; i++)
        for (int j = 0; j < CORE_NESTED_INNER; j++)
            bad += out[i * CORE_NESTED_INNER + j] != core_groups_value(i, j);
    core_check_i64(bench, "wrong values", bad, 0);
}

/* The row names every implementation may print, for --list. */
static inline void core_list_rows(void)
{
    puts("core.empty\ncore.empty_ext\ncore.chain\ncore.fib\ncore.fib_cutoff\ncore.nested\n"
         "core.nested_groups\ncore.group_per_task\ncore.tree\ncore.wavefront\ncore.nested_"
         "wait\ncore.parfor\n"
         "core.parfor_range\ncore.round_trip");
}

#endif /* DAGGER_BENCH_CORE_PROBLEM_H */
