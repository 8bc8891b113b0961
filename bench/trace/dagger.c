/* bench/trace/dagger.c - what tracing costs: the same workloads with tracing off and on.
 *
 * Rows: fib(n) with one task per call (nested spawn + fetch inside tasks), n = 25..28 (29, 30
 * with --full), 1e6 empty tasks spawned from the main thread, 1e5 outer tasks in a group of the
 * main thread, each ending a group of 6 inner tasks (core.nested_groups' form; 7e5 tasks), and
 * 2e4 tasks of 10 us each (a
 * busy wait on the clock, spawned by a root task so that only the workers run them: the issue
 * 17 target, <= 1.02x, is for such tasks). Each row runs with
 * tracing off, then on (best of BENCH_REPS, default 3), and prints
 *   RESULT|trace_overhead|dagger|<row>,off|<ns>|ns/task
 *   RESULT|trace_overhead|dagger|<row>,on|<ns>|ns/task
 *   RESULT|trace_overhead|dagger|<row>,ratio|<on/off>|x
 *   RESULT|trace_overhead|dagger|<row>,on_first|<ns>|ns/task  (the row's first traced run)
 *   RESULT|trace_overhead|dagger|<row>,ratio_first|<on_first/off>|x
 * A row's first traced run writes into trace memory that no run before it touched, past what the
 * rows before it used: it pays the pages' first faults, as a program's one recording does.
 * Usage: bench_trace_dagger [--threads N] [--full]. The trace limit is raised so that nothing
 * is dropped (a dropped count is printed if it happens anyway). The off and on runs of a row
 * alternate, so that a change of the machine's load hits both. BENCH_CLOCK=cpu times the runs
 * with the process's CPU time instead of the wall clock: on a loaded machine it leaves out the
 * time the process waited for a core (meaningful at t=1; at t=2 it counts idle workers' spins).
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dagger.h>
#include <dagger/trace.h>

static dagger_ctx_t *ctx;
static int threads;
static clockid_t run_clock = CLOCK_MONOTONIC; /* what the rows are timed with (BENCH_CLOCK) */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double run_s(void)
{
    struct timespec t;
    clock_gettime(run_clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int fib(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n < 2) {
        *out = dagger_i64(n);
        return 0;
    }
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    dagger_task_t *x = dagger_spawn(c, fib, n - 1);
    dagger_task_t *y = dagger_spawn(c, fib, n - 2);
    int64_t rx = 0, ry = 0;
    int rc = dagger_fetch_i64(x, &rx);
    if (!rc)
        rc = dagger_fetch_i64(y, &ry);
    dagger_task_release(x);
    dagger_task_release(y);
    if (rc)
        return rc;
    *out = dagger_i64(rx + ry);
    return 0;
}

static int empty(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out) { return 0; }

/* A task of 10 us: a busy wait on the clock, so that its length does not depend on tracing. */
static int work10us(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double end = now_s() + 10e-6;
    while (now_s() < end)
        ;
    return 0;
}

static int64_t fib_ref(int n) { return n < 2 ? n : fib_ref(n - 1) + fib_ref(n - 2); }
static uint64_t fib_calls(int n) { return n < 2 ? 1 : 1 + fib_calls(n - 1) + fib_calls(n - 2); }

static void die(const char *what, int rc)
{
    fprintf(stderr, "ERROR trace_overhead (dagger): %s: %s: %s\n", what, dagger_err_name(rc),
            dagger_last_errmsg());
    exit(1);
}

/* One run of a row; returns seconds. */
static double run_fib(int n)
{
    double t0 = run_s();
    dagger_task_t *t = dagger_spawn(ctx, fib, n);
    int64_t r = 0;
    int rc = dagger_fetch_i64(t, &r);
    double dt = run_s() - t0;
    dagger_task_release(t);
    if (rc)
        die("fib", rc);
    if (r != fib_ref(n)) {
        fprintf(stderr, "ERROR trace_overhead (dagger): fib(%d) = %lld\n", n, (long long)r);
        exit(1);
    }
    return dt;
}

static double run_flat(long n, dagger_fn_t fn)
{
    double t0 = run_s();
    int rc = dagger_sync_begin(ctx);
    if (rc)
        die("sync_begin", rc);
    for (long i = 0; i < n; i++) {
        dagger_task_t *t = dagger_spawn(ctx, fn);
        if (!t)
            die("spawn", DAGGER_ENOMEM);
        dagger_task_release(t);
    }
    rc = dagger_sync_end(ctx);
    if (rc)
        die("sync_end", rc);
    return run_s() - t0;
}

static double run_empty(long n) { return run_flat(n, empty); }

/* The groups shape (core.nested_groups' form): the main thread's group holds n outer tasks,
 * each of which ends a group of 6 inner tasks of its own; inner (i, j) writes j + 1 to
 * group_out[6 i + j]. */
static int64_t *group_out;
static int group_inner(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t j = dagger_arg_i64(a, 1);
    group_out[6 * dagger_arg_i64(a, 0) + j] = j + 1;
    return 0;
}

static int group_outer(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int64_t i = dagger_arg_i64(a, 0);
    int rc = dagger_sync_begin(c);
    for (int64_t j = 0; j < 6 && rc == 0; j++)
        rc = dagger_spawn_detached(c, group_inner, i, j);
    int erc = dagger_sync_end(c);
    return rc ? rc : erc;
}

static double run_groups(long n)
{
    free(group_out);
    group_out = calloc((size_t)n * 6, sizeof *group_out);
    if (!group_out)
        die("groups", DAGGER_ENOMEM);
    double t0 = run_s();
    int rc = dagger_sync_begin(ctx);
    for (long i = 0; i < n && rc == 0; i++)
        rc = dagger_spawn_detached(ctx, group_outer, (int64_t)i);
    int erc = dagger_sync_end(ctx);
    double dt = run_s() - t0;
    if (rc || erc)
        die("groups", rc ? rc : erc);
    for (long k = 0; k < n * 6; k++)
        if (group_out[k] != k % 6 + 1) {
            fprintf(stderr, "ERROR trace_overhead (dagger): groups: out[%ld] = %lld, not %ld\n", k,
                    (long long)group_out[k], k % 6 + 1);
            exit(1);
        }
    return dt;
}

/* The 10 us tasks, spawned by a root task into a sync group: only the T workers run them. From
 * main, the main thread would run some too while it ends the group (as many as a worker on 2
 * cores), and how many it takes depends on whether a core is free: the off/on ratio measured
 * that, not tracing. The root has a scope for the same reason (run_10us). */
static int root10us(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    long n = (long)dagger_arg_i64(a, 0);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    for (long i = 0; i < n; i++) {
        dagger_task_t *t = dagger_spawn(c, work10us);
        if (!t) {
            rc = DAGGER_ENOMEM;
            break;
        }
        dagger_task_release(t);
    }
    int erc = dagger_sync_end(c);
    return rc ? rc : erc;
}

static double run_10us(long n)
{
    /* A scope keeps the root on the workers (a task with none may run on the main thread
     * while it waits, which then ends the group and runs some of the 10 us tasks too). */
    static dagger_scope_t *workers;
    if (!workers && !(workers = dagger_scope_worker(0)))
        die("scope", DAGGER_ENOMEM);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = workers;
    double t0 = run_s();
    dagger_task_t *root = dagger_spawn_opts(ctx, &o, root10us, (int64_t)n);
    int rc = dagger_fetch(root, NULL);
    double dt = run_s() - t0;
    dagger_task_release(root);
    if (rc)
        die("task10us", rc);
    return dt;
}

static void row(const char *name, double (*fn)(long), long arg, uint64_t tasks, int reps)
{
    double best[2] = {1e30, 1e30}, first_on = 0;
    uint64_t dropped = 0;
    for (int r = 0; r < reps; r++) {
        for (int mode = 0; mode < 2; mode++) {
            if (mode) {
                dagger_trace_opts_t o;
                dagger_trace_opts_init(&o);
                o.max_events = 1ull << 26; /* 64M events, 2 GiB at most */
                int rc = dagger_trace_start_opts(ctx, &o);
                if (rc)
                    die("trace_start", rc);
            }
            double dt = fn(arg);
            if (mode) {
                int rc = dagger_trace_stop(ctx);
                if (rc)
                    die("trace_stop", rc);
                dropped += dagger_trace_dropped(ctx);
            }
            if (dt < best[mode])
                best[mode] = dt;
            if (mode && r == 0)
                first_on = dt;
        }
    }
    double off = best[0] * 1e9 / (double)tasks, on = best[1] * 1e9 / (double)tasks;
    printf("RESULT|trace_overhead|dagger|%s,t=%d,off|%.1f|ns/task\n", name, threads, off);
    printf("RESULT|trace_overhead|dagger|%s,t=%d,on|%.1f|ns/task\n", name, threads, on);
    printf("RESULT|trace_overhead|dagger|%s,t=%d,ratio|%.3f|x\n", name, threads, on / off);
    /* The row's first traced run: the trace memory it needs past the rows before it is fresh
     * (the later runs reuse it), as in a program's one recording. */
    double first = first_on * 1e9 / (double)tasks;
    printf("RESULT|trace_overhead|dagger|%s,t=%d,on_first|%.1f|ns/task\n", name, threads, first);
    printf("RESULT|trace_overhead|dagger|%s,t=%d,ratio_first|%.3f|x\n", name, threads, first / off);
    if (dropped)
        printf("# %s: %llu events dropped\n", name, (unsigned long long)dropped);
    fflush(stdout);
}

static double fib_l(long n) { return run_fib((int)n); }

int main(int argc, char **argv)
{
    int full = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "-t")) && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--full"))
            full = 1;
        else if (!strcmp(argv[i], "--list")) {
            puts("fib\nempty\ngroups\ntask10us");
            return 0;
        }
    }
    const char *c = getenv("BENCH_CLOCK");
    if (c && !strcmp(c, "cpu"))
        run_clock = CLOCK_PROCESS_CPUTIME_ID;
    else if (c && *c && strcmp(c, "wall")) {
        fprintf(stderr, "ERROR trace_overhead (dagger): BENCH_CLOCK=%s: use cpu or wall\n", c);
        return 2;
    }
    const char *r = getenv("BENCH_REPS");
    int reps = r && atoi(r) > 0 ? atoi(r) : 3;
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    int rc = dagger_ctx_open(&ctx, &o);
    if (rc)
        die("ctx_open", rc);
    threads = dagger_ctx_num_threads(ctx);
    char name[32];
    for (int n = 25; n <= (full ? 30 : 28); n++) {
        snprintf(name, sizeof name, "fib=%d", n);
        row(name, fib_l, n, fib_calls(n), reps);
    }
    row("empty=1e6", run_empty, 1000000, 1000000, reps);
    row("groups=1e5x6", run_groups, 100000, 700000, reps);
    row("task10us=2e4", run_10us, 20000, 20000, reps);
    free(group_out);
    rc = dagger_ctx_close(ctx);
    if (rc)
        die("ctx_close", rc);
    return 0;
}
