/* tests/test_harden.c - hardening: out-of-memory paths, misuse, oversized values (issue 16).
 *
 * Out-of-memory cases sweep DAGGER_FAULT_ALLOC over every allocation of a small program (through
 * dagger_fault_alloc) and check that each run either gives the right answer or a clean
 * DAGGER_ENOMEM: never an abort, never a wrong result reported as success.
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dagger/datadeps.h"
#include "dagger/net.h"
#include "dagger/stream.h"
#include "dagger/trace.h"
#include "harness.h"

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static dagger_ctx_t *open_ctx(int threads)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    dagger_ctx_t *ctx;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    return ctx;
}

/* Wait at most `ms` for `t` to finish; fail naming what was awaited (never hang). */
static void wait_done(dagger_task_t *t, int ms, const char *what)
{
    for (int i = 0; i < ms && !dagger_task_done(t); i++)
        nap_ms(1);
    if (!dagger_task_done(t))
        fail_msg("%s did not finish within %d ms", what, ms);
}

/* ------------------------------------------------------------------ 1: datadeps out of memory */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int sort_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)out;
    double *x = dagger_arg_ptr(a, 0);
    nap_ms(2);
    qsort(x, (size_t)dagger_arg_i64(a, 1), sizeof *x, cmp_double);
    return 0;
}

static int copy_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)out;
    memcpy(dagger_arg_ptr(a, 0), dagger_arg_ptr(a, 1), (size_t)dagger_arg_i64(a, 2) * 8);
    return 0;
}

static int touch(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)out;
    int *p = dagger_arg_ptr(a, 0);
    (*p)++;
    return 0;
}

static void drop(dagger_task_t *t) { dagger_task_release(t); }

/* Sixteen unrelated tasks fill the region's first task table, so the sort is the spawn that
 * grows it; then the copy reads what the sort wrote. */
TEST(datadeps_oom_fails_the_region)
{
    dagger_ctx_t *ctx = open_ctx(2);
    enum { N = 256 };
    static double X[N], C[N];
    static int filler[16];
    int failures = 0;
    for (long n = 1; n <= 80; n++) {
        for (int i = 0; i < N; i++)
            X[i] = (double)((i * 7919) % N), C[i] = -1;
        dagger_datadeps_t *dd;
        dagger_fault_alloc(n);
        int rc = dagger_datadeps_begin(ctx, 0, &dd);
        if (rc) {
            dagger_fault_alloc(0);
            ASSERT_ERR(rc, DAGGER_ENOMEM);
            failures++;
            continue;
        }
        for (int i = 0; i < 16; i++)
            drop(dagger_datadeps_spawn(dd, touch, dagger_inout(&filler[i], sizeof filler[i])));
        drop(dagger_datadeps_spawn(dd, sort_vec, dagger_inout(X, sizeof X), N));
        drop(dagger_datadeps_spawn(dd, copy_vec, dagger_out(C, sizeof C), dagger_in(X, sizeof X),
                                   N));
        rc = dagger_datadeps_end(dd);
        dagger_fault_alloc(0);
        if (rc == 0) {
            for (int i = 1; i < N; i++)
                if (C[i - 1] > C[i])
                    fail_msg("fault at allocation %ld: the region ended with 0 but the copy "
                             "read unsorted data",
                             n);
        } else {
            ASSERT_ERR(rc, DAGGER_ENOMEM);
            ASSERT_TRUE(dagger_last_errmsg()[0] != '\0');
            failures++;
        }
    }
    ASSERT_TRUE(failures > 0); /* the sweep reached the region's allocations */
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ 2: fiber stacks */

static _Atomic int started;

static int slow_value(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)a;
    atomic_store(&started, 1);
    nap_ms(5);
    *out = dagger_i64(41);
    return 0;
}

static int fetch_plus_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_task_t *b = dagger_arg_ptr(a, 0);
    int64_t v;
    int rc = dagger_fetch_i64(b, &v);
    if (rc)
        return dagger_fail(tc, rc, "fetch: %s", dagger_task_errmsg(b));
    *out = dagger_i64(v + 1);
    return 0;
}

/* A task that suspends (its input runs on the other worker) while every allocation in turn
 * fails: the result is right or the error is DAGGER_ENOMEM; the process never aborts. */
TEST(fiber_oom_never_aborts)
{
    int failures = 0;
    for (long n = 1; n <= 60; n++) {
        dagger_opts_t o;
        dagger_opts_init(&o);
        o.num_threads = 2;
        dagger_ctx_t *ctx;
        dagger_fault_alloc(n);
        int rc = dagger_ctx_open(&ctx, &o);
        if (rc) {
            dagger_fault_alloc(0);
            ASSERT_ERR(rc, DAGGER_ENOMEM);
            ASSERT_TRUE(dagger_last_errmsg()[0] != '\0');
            failures++;
            continue;
        }
        atomic_store(&started, 0);
        dagger_task_t *b = dagger_spawn(ctx, slow_value);
        for (int i = 0; b && i < 2000 && !atomic_load(&started) && !dagger_task_done(b); i++)
            nap_ms(1);
        dagger_task_t *a = b ? dagger_spawn(ctx, fetch_plus_one, dagger_ptr(b)) : NULL;
        int64_t v = 0;
        rc = a ? dagger_fetch_i64(a, &v) : DAGGER_ENOMEM;
        dagger_fault_alloc(0);
        if (rc == 0)
            ASSERT_EQ(v, 42);
        else
            failures++;
        drop(a);
        drop(b);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
    ASSERT_TRUE(failures > 0);
}

/* ------------------------------------------------------------------ 12: force close */

static int forty_two(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)a;
    *out = dagger_str("forty-two");
    return 0;
}

/* Handles held across a forced close stay valid to read and release (ASan checks the memory). */
TEST(release_after_force_close)
{
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_task_t *t = dagger_spawn(ctx, forty_two);
    dagger_task_t *u = dagger_spawn(ctx, forty_two);
    ASSERT_OK(dagger_wait(t));
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    ASSERT_OK(dagger_ctx_close_ex(ctx, DAGGER_CLOSE_FORCE));
    dagger_value_t v;
    ASSERT_OK(dagger_fetch(t, &v));
    ASSERT_STR_EQ(v.u.s, "forty-two");
    dagger_task_release(t);
    dagger_task_release(u);
}

/* ------------------------------------------------------------------ 13: values over 4 GiB - 1 */

static int big_result(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_blob(dagger_arg_ptr(a, 0), (size_t)5 << 30);
    return 0;
}

static int never_runs(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a, (void)out;
    return dagger_fail(tc, DAGGER_ETASK, "this body must not run");
}

TEST(values_over_4gib_are_refused)
{
    static char small[16];
    dagger_value_t big = dagger_blob(small, (size_t)5 << 30);
    ASSERT_ERR(dagger_value_encode(&big, NULL, 0), DAGGER_E2BIG);
    ASSERT_STR_HAS(dagger_last_errmsg(), "4 GiB");
    dagger_value_t ok = dagger_blob(small, sizeof small);
    ASSERT_EQ(dagger_value_encode(&ok, NULL, 0), 8 + (long)sizeof small);

    dagger_ctx_t *ctx = open_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, never_runs, big);
    dagger_value_t v;
    ASSERT_ERR(dagger_fetch(t, &v), DAGGER_E2BIG);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 1");
    dagger_task_t *r = dagger_spawn(ctx, big_result, dagger_ptr(small));
    ASSERT_ERR(dagger_fetch(r, &v), DAGGER_E2BIG);
    ASSERT_STR_HAS(dagger_task_errmsg(r), "result");
    dagger_task_release(t);
    dagger_task_release(r);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ 9: streaming */

static int spin_forever(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)out;
    _Atomic long *runs = dagger_arg_ptr(a, 0);
    atomic_fetch_add(runs, 1);
    return 0;
}

static int ten_values(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *next = dagger_arg_ptr(a, 0);
    *out = dagger_i64((*next)++);
    if (*next == 10)
        return dagger_finish_stream(tc, *out, dagger_i64(10));
    return 0;
}

static int sum_values(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)out;
    int64_t *sum = dagger_arg_ptr(a, 0);
    *sum += dagger_arg_i64(a, 1);
    return 0;
}

/* On one worker, a streaming task with no inputs and no outputs shares the worker with the
 * pipeline beside it, whose end stops the region (teardown). */
TEST(stream_task_without_outputs_yields)
{
    dagger_ctx_t *ctx = open_ctx(1);
    static _Atomic long runs;
    int64_t next = 0, sum = 0;
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *x = dagger_spawn(ctx, spin_forever, (void *)&runs);
    dagger_task_t *y = dagger_spawn(ctx, ten_values, (void *)&next);
    dagger_task_t *A = dagger_spawn(ctx, sum_values, (void *)&sum, y);
    ASSERT_OK(dagger_stream_end(s));
    wait_done(A, 10000, "the consumer beside a task without outputs");
    wait_done(x, 10000, "the task without outputs, after teardown");
    ASSERT_OK(dagger_wait(A));
    ASSERT_EQ(sum, 45);
    ASSERT_TRUE(atomic_load(&runs) > 0);
    dagger_task_release(x);
    dagger_task_release(y);
    dagger_task_release(A);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The consumer's spawn fails (out of memory): dagger_stream_end reports it and the producer,
 * left without a consumer, is cancelled instead of spinning forever. */
TEST(stream_failed_spawn_fails_the_region)
{
    dagger_ctx_t *ctx = open_ctx(1);
    static _Atomic long runs;
    int64_t sum = 0;
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *x = dagger_spawn(ctx, spin_forever, (void *)&runs);
    dagger_fault_alloc(1);
    dagger_task_t *A = dagger_spawn(ctx, sum_values, (void *)&sum, x);
    dagger_fault_alloc(0);
    ASSERT_NULL(A);
    ASSERT_ERR(dagger_stream_end(s), DAGGER_ENOMEM);
    ASSERT_STR_HAS(dagger_last_errmsg(), "cancelled");
    wait_done(x, 10000, "the producer of a region whose consumer could not be spawned");
    ASSERT_ERR(dagger_wait(x) ? DAGGER_EINVAL : dagger_task_error(x), DAGGER_ECANCELED);
    dagger_task_release(x);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ 15: the sink names the cause
 */

TEST(edge_sink_names_the_failed_spawn_of_its_input)
{
    dagger_ctx_t *ctx = open_ctx(1);
    static _Atomic long runs;
    dagger_edge_t *e;
    ASSERT_OK(dagger_edge_open(&e, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_PUSH));
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_fault_alloc(1);
    dagger_task_t *x = dagger_spawn(ctx, spin_forever, (void *)&runs);
    dagger_fault_alloc(0);
    ASSERT_NULL(x);
    dagger_task_t *k = dagger_stream_spawn_edge_sink(s, e, x); /* consumes the edge */
    ASSERT_NULL(k);
    ASSERT_STR_HAS(dagger_last_errmsg(), "its spawn failed");
    ASSERT_STR_HAS(dagger_last_errmsg(), "out of memory");
    ASSERT_ERR(dagger_stream_end(s), DAGGER_ENOMEM);
    ASSERT_STR_HAS(dagger_last_errmsg(), "out of memory");
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ 14: misuse in debug builds */

enum { MISUSE_DOUBLE_RELEASE, MISUSE_FETCH_RELEASED, MISUSE_SPAWN_CLOSED };

#ifndef NDEBUG
static void misuse(int what)
{
    dagger_ctx_t *ctx = open_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, forty_two);
    if (dagger_wait(t)) {
    }
    /* After the close only the test holds `t`: its releases are the only ones. */
    if (what != MISUSE_SPAWN_CLOSED && dagger_ctx_close_ex(ctx, DAGGER_CLOSE_FORCE)) {
    }
    switch (what) {
    case MISUSE_DOUBLE_RELEASE:
        dagger_task_release(t);
        dagger_task_release(t);
        break;
    case MISUSE_FETCH_RELEASED: {
        dagger_task_release(t);
        dagger_value_t v;
        if (dagger_fetch(t, &v)) {
        }
        break;
    }
    case MISUSE_SPAWN_CLOSED:
        dagger_task_release(t);
        if (dagger_ctx_close(ctx)) {
        }
        dagger_task_release(dagger_spawn(ctx, forty_two));
        break;
    }
    _exit(0); /* not caught */
}
#endif

/* Run misuse(what) in a child (bounded by alarm); return what it wrote on stderr, and check
 * that it aborted. */
static void expect_misuse(int what, const char *msg)
{
#ifdef NDEBUG
    (void)what, (void)msg;
    SKIP("misuse checks are compiled into debug builds only (make test-asan runs this case)");
#else
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        alarm(20);
        dup2(p[1], 2);
        close(p[0]);
        misuse(what);
    }
    close(p[1]);
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
        fail_msg("the misuse was not caught (status %d): %s", st, buf);
    ASSERT_STR_HAS(buf, "dagger: API misuse: ");
    ASSERT_STR_HAS(buf, msg);
#endif
}

TEST(misuse_is_caught_in_debug_builds)
{
    expect_misuse(MISUSE_DOUBLE_RELEASE, "released once more than it was retained");
    expect_misuse(MISUSE_FETCH_RELEASED, "dagger_fetch: task");
    expect_misuse(MISUSE_SPAWN_CLOSED, "dagger_spawn: the context is closed");
}

/* ------------------------------------------------------------------ 8: hostile .dtrace files */

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A 56-byte header: t0 = 0, t1 = `t1`, no strings, no events. */
static void write_dtrace(const char *path, int64_t t0, int64_t t1)
{
    unsigned char h[56] = {0};
    memcpy(h, "DAGTRACE", 8);
    put_le(h + 8, 1, 4);
    put_le(h + 12, 1, 4);
    put_le(h + 16, (uint64_t)t0, 8);
    put_le(h + 24, (uint64_t)t1, 8);
    FILE *f = fopen(path, "wb");
    ASSERT_PTR(f);
    ASSERT_EQ(fwrite(h, sizeof h, 1, f), 1);
    ASSERT_EQ(fclose(f), 0);
}

/* Convert in a child bounded by alarm(): a loop that writes forever must fail the case, not
 * fill the disk. Returns the child's exit code (the conversion's rc negated). */
static int convert_bounded(const char *in, const char *out)
{
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        alarm(20);
        _exit(-dagger_trace_convert(in, out) & 0xff);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (!WIFEXITED(st))
        fail_msg("converting %s to %s did not finish (signal %d)", in, out, WTERMSIG(st));
    return WEXITSTATUS(st);
}

TEST(dtrace_extreme_times_are_refused)
{
    char dir[] = "/tmp/dagger-harden-XXXXXX";
    ASSERT_PTR(mkdtemp(dir));
    char in[96], out[96];
    snprintf(in, sizeof in, "%s/t.dtrace", dir);
    snprintf(out, sizeof out, "%s/t.html", dir);
    write_dtrace(in, 0, INT64_MAX);
    ASSERT_EQ(convert_bounded(in, out), -DAGGER_EINVAL & 0xff);
    ASSERT_ERR(dagger_trace_convert(in, out), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "out of range");
    write_dtrace(in, 5, 4); /* ends before it starts */
    ASSERT_ERR(dagger_trace_convert(in, out), DAGGER_EINVAL);
    write_dtrace(in, 0, 1000); /* a valid empty trace converts */
    ASSERT_OK(dagger_trace_convert(in, out));
    unlink(in);
    unlink(out);
    rmdir(dir);
}

TEST_LIST(datadeps_oom_fails_the_region, fiber_oom_never_aborts, release_after_force_close,
          values_over_4gib_are_refused, stream_task_without_outputs_yields,
          stream_failed_spawn_fails_the_region, dtrace_extreme_times_are_refused,
          edge_sink_names_the_failed_spawn_of_its_input, misuse_is_caught_in_debug_builds)
