/* tests/test_mpi_stream_fail.c - failures across an mpi:// edge between a streaming region on
 * rank 0 and a task on rank 1: each side's failure reaches the other, and nothing hangs.
 *
 * Design: run under tests/mpi_run.sh on 2 ranks, driver mode (rank 0 runs the case, rank 1
 * serves). Each case arms alarm(WATCHDOG_S) on every rank, so a hang (the bug these cases were
 * written for: a producer waiting forever for credits from a consumer that failed) kills the
 * process and fails the case instead of blocking the suite. Cases assert the error code and the
 * words of the message that name the failed task, its rank and its own message.
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <unistd.h>

#include "dagger/net.h"
#include "dagger/stream.h"
#include "harness.h"
#include "stream_fail_harness.h"
#include "mpi_harness.h"

/* On rank 1: opens "mpi://0/NAME", pops `n` values, then fails and closes its end. */
static int consumer_fails_after(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    char uri[64];
    snprintf(uri, sizeof uri, "mpi://0/%s", dagger_arg_str(a, 0));
    int64_t n = dagger_arg_i64(a, 1);
    dagger_edge_t *in;
    int rc = dagger_edge_open(&in, uri, DAGGER_EDGE_POP);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    for (int64_t i = 0; i < n; i++) {
        dagger_value_t v;
        rc = dagger_edge_pop(in, &v, -1);
        if (rc) {
            dagger_fail(tc, rc, "pop %lld: %s", (long long)i, dagger_edge_errmsg(in));
            dagger_edge_close(in);
            return rc;
        }
    }
    rc = dagger_fail(tc, DAGGER_ERANGE, "value %lld is out of range", (long long)n);
    dagger_edge_close(in); /* closed by a failed task: aborted, with its message */
    return rc;
}

/* On rank 1: opens "mpi://0/NAME" and pops, untimed, until the edge fails or ends. */
static int consumer_drains(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    char uri[64];
    snprintf(uri, sizeof uri, "mpi://0/%s", dagger_arg_str(a, 0));
    dagger_edge_t *in;
    int rc = dagger_edge_open(&in, uri, DAGGER_EDGE_POP);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    int64_t n = 0;
    dagger_value_t v;
    while ((rc = dagger_edge_pop(in, &v, -1)) == 0)
        n++;
    if (rc != DAGGER_ECLOSED)
        dagger_fail(tc, rc, "after %lld values: %s", (long long)n, dagger_edge_errmsg(in));
    dagger_edge_close(in);
    *out = dagger_i64(n);
    return rc == DAGGER_ECLOSED ? 0 : rc;
}

static int pass(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

/* A region on rank 0: gen -> edge sink(up). Returns the sink; *x gets gen's task. */
static dagger_task_t *run_producer(dagger_ctx_t *ctx, dagger_edge_t *up, struct gen_state *g,
                                   dagger_task_t **x)
{
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    *x = dagger_spawn(ctx, gen, (void *)g);
    dagger_task_t *sink = dagger_stream_spawn_edge_sink(s, up, *x);
    ASSERT_PTR(sink);
    ASSERT_OK(dagger_stream_end(s));
    return sink;
}

/* The consumer's task on rank 1 fails before it opens its end: the producer's region, whose
 * edge watches that task, fails with DAGGER_EPEER naming it, its rank and its message, instead
 * of waiting for credits forever. */
TEST(consumer_fails_before_opening)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_edge_t *up;
    ASSERT_OK(dagger_edge_open(&up, "mpi://1/before", DAGGER_EDGE_PUSH));
    dagger_task_t *m = spawn_on(ctx, 1, unplugged, "unplugged", NULL, 0);
    ASSERT_ERR(dagger_edge_watch(NULL, m), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the edge is NULL");
    ASSERT_ERR(dagger_edge_watch(up, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(up), "the task is NULL");
    ASSERT_OK(dagger_edge_watch(up, m));
    ASSERT_ERR(dagger_edge_watch(up, m), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_edge_errmsg(up), "already watches task");
    struct gen_state g = {0, -1};
    dagger_task_t *x;
    dagger_task_t *sink = run_producer(ctx, up, &g, &x);
    ASSERT_ERR(dagger_fetch(sink, NULL), DAGGER_EPEER);
    const char *msg = dagger_task_errmsg(sink);
    ASSERT_STR_HAS(msg, "mpi://1/before");
    ASSERT_STR_HAS(msg, "the task at the other end failed");
    ASSERT_STR_HAS(msg, "'unplugged' on rank 1: sensor 3 is unplugged");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "the streaming region stopped because");
    ASSERT_STR_HAS(dagger_task_errmsg(x), "sensor 3 is unplugged");
    ASSERT_ERR(dagger_fetch(m, NULL), DAGGER_EIO);
    dagger_task_release(sink);
    dagger_task_release(x);
    dagger_task_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The consumer on rank 1 takes a few values, fails and closes its end: the producer's region
 * fails with DAGGER_EPEER and the consumer's own message (not a clean end of the stream, which
 * would lose the values silently). No watch is needed: the abort travels on the edge. */
TEST(consumer_fails_after_opening)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_edge_t *up;
    ASSERT_OK(dagger_edge_open(&up, "mpi://1/after", DAGGER_EDGE_PUSH));
    dagger_value_t av[2] = {dagger_str("after"), dagger_i64(5)};
    dagger_task_t *m = spawn_on(ctx, 1, consumer_fails_after, "picky", av, 2);
    struct gen_state g = {0, -1};
    dagger_task_t *x;
    dagger_task_t *sink = run_producer(ctx, up, &g, &x);
    ASSERT_ERR(dagger_fetch(sink, NULL), DAGGER_EPEER);
    const char *msg = dagger_task_errmsg(sink);
    ASSERT_STR_HAS(msg, "the consumer on rank 1 failed");
    ASSERT_STR_HAS(msg, "on rank 1, task");
    ASSERT_STR_HAS(msg, "value 5 is out of range");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "value 5 is out of range");
    ASSERT_ERR(dagger_fetch(m, NULL), DAGGER_ERANGE);
    dagger_task_release(sink);
    dagger_task_release(x);
    dagger_task_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The producer's region on rank 0 fails mid-stream: its sink aborts the edge with the failed
 * task's message, and the consumer on rank 1, popping without a timeout, gets DAGGER_EPEER with
 * that message after the values sent, instead of waiting forever. */
TEST(producer_fails_mid_stream)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_edge_t *up;
    ASSERT_OK(dagger_edge_open(&up, "mpi://1/mid", DAGGER_EDGE_PUSH));
    dagger_value_t av[1] = {dagger_str("mid")};
    dagger_task_t *m = spawn_on(ctx, 1, consumer_drains, "drain", av, 1);
    struct gen_state g = {0, 10};
    dagger_task_t *x;
    dagger_task_t *sink = run_producer(ctx, up, &g, &x);
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EIO);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "the generator broke at value 10");
    ASSERT_ERR(dagger_fetch(sink, NULL), DAGGER_EUPSTREAM);
    ASSERT_ERR(dagger_fetch(m, NULL), DAGGER_EPEER);
    const char *msg = dagger_task_errmsg(m);
    ASSERT_STR_HAS(msg, "on rank 1");
    ASSERT_STR_HAS(msg, "the producer failed after"); /* the values sent before the stop */
    ASSERT_STR_HAS(msg, "the producer: on rank 0, task");
    ASSERT_STR_HAS(msg, "the generator broke at value 10");
    dagger_task_release(sink);
    dagger_task_release(x);
    dagger_task_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The other way round: a region on rank 0 reads mpi://1/pre through an edge source whose
 * producer, a task on rank 1, fails before it opens its end; the source watches it and fails
 * with its error instead of waiting for a first value forever. */
TEST(producer_fails_before_opening)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_edge_t *in;
    ASSERT_OK(dagger_edge_open(&in, "mpi://1/pre", DAGGER_EDGE_POP));
    dagger_task_t *p = spawn_on(ctx, 1, unplugged, "camera", NULL, 0);
    ASSERT_OK(dagger_edge_watch(in, p));
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in);
    dagger_task_t *y = dagger_spawn(ctx, pass, src);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(src, NULL), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(src), "mpi://1/pre");
    ASSERT_STR_HAS(dagger_task_errmsg(src), "'camera' on rank 1: sensor 3 is unplugged");
    ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(y), "sensor 3 is unplugged");
    dagger_task_release(src);
    dagger_task_release(y);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* picky(limit, v): passes v on; fails at v == limit. */
static int picky(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t limit = dagger_arg_i64(a, 0), v = dagger_arg_i64(a, 1);
    if (v == limit)
        return dagger_fail(tc, DAGGER_ERANGE, "value %lld is out of range", (long long)v);
    *out = dagger_i64(v);
    return 0;
}

/* On rank 1: a region of its own, edge source(mpi://0/NAME) -> picky(5); answers nothing, the
 * failure of the region is its own. */
static int consumer_region(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    char uri[64];
    snprintf(uri, sizeof uri, "mpi://0/%s", dagger_arg_str(a, 0));
    dagger_edge_t *in;
    int rc = dagger_edge_open(&in, uri, DAGGER_EDGE_POP);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    dagger_stream_t *s;
    if ((rc = dagger_stream_begin(ctx, NULL, &s)) != 0)
        return dagger_fail(tc, rc, "begin: %s", dagger_last_errmsg());
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in);
    dagger_task_t *y = dagger_spawn(ctx, picky, (int64_t)5, src);
    if ((rc = dagger_stream_end(s)) != 0)
        return dagger_fail(tc, rc, "end: %s", dagger_last_errmsg());
    rc = dagger_fetch(y, NULL);
    if (rc)
        dagger_fail(tc, rc, "%s", dagger_task_errmsg(y));
    dagger_task_release(src);
    dagger_task_release(y);
    return rc;
}

/* A consumer region on rank 1 fails at its 6th value: its edge source aborts its end with the
 * failed task's message, and the producer's region on rank 0 fails with it. */
TEST(consumer_region_fails_on_another_rank)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_edge_t *up;
    ASSERT_OK(dagger_edge_open(&up, "mpi://1/region", DAGGER_EDGE_PUSH));
    dagger_value_t av[1] = {dagger_str("region")};
    dagger_task_t *m = spawn_on(ctx, 1, consumer_region, "consumer_region", av, 1);
    struct gen_state g = {0, -1};
    dagger_task_t *x;
    dagger_task_t *sink = run_producer(ctx, up, &g, &x);
    ASSERT_ERR(dagger_fetch(m, NULL), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_task_errmsg(m), "value 5 is out of range");
    ASSERT_ERR(dagger_fetch(sink, NULL), DAGGER_EPEER);
    const char *msg = dagger_task_errmsg(sink);
    ASSERT_STR_HAS(msg, "the consumer on rank 1 failed: on rank 1, task");
    ASSERT_STR_HAS(msg, "value 5 is out of range");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    dagger_task_release(sink);
    dagger_task_release(x);
    dagger_task_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* On rank 1: opens "mpi://0/NAME", pops 3 values, and its process is killed. */
static int consumer_dies(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    char uri[64];
    snprintf(uri, sizeof uri, "mpi://0/%s", dagger_arg_str(a, 0));
    dagger_edge_t *in;
    int rc = dagger_edge_open(&in, uri, DAGGER_EDGE_POP);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    for (int i = 0; i < 3; i++) {
        dagger_value_t v;
        if ((rc = dagger_edge_pop(in, &v, 20000)) != 0)
            return dagger_fail(tc, rc, "pop %d: %s", i, dagger_edge_errmsg(in));
    }
    kill(getpid(), SIGKILL);
    return 0;
}

/* Rank 1 dies while the producer's region on rank 0 streams to it: the sink fails with
 * DAGGER_EPEER naming the rank once the heartbeat times out (DAGGER_PEER_TIMEOUT), and the
 * region's other task with it. */
TEST(consumer_rank_dies_mid_stream)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_edge_t *up;
    ASSERT_OK(dagger_edge_open(&up, "mpi://1/dies", DAGGER_EDGE_PUSH));
    dagger_value_t av[1] = {dagger_str("dies")};
    dagger_task_t *m = spawn_on(ctx, 1, consumer_dies, "consumer_dies", av, 1);
    struct gen_state g = {0, -1};
    dagger_task_t *x;
    dagger_task_t *sink = run_producer(ctx, up, &g, &x);
    ASSERT_ERR(dagger_fetch(sink, NULL), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(sink), "mpi://1/dies");
    ASSERT_STR_HAS(dagger_task_errmsg(sink), "rank 1 was lost");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "rank 1 was lost");
    ASSERT_ERR(dagger_fetch(m, NULL), DAGGER_EPEER);
    dagger_task_release(sink);
    dagger_task_release(x);
    dagger_task_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

TEST_LIST(consumer_fails_before_opening, consumer_fails_after_opening, producer_fails_mid_stream,
          producer_fails_before_opening, consumer_region_fails_on_another_rank,
          consumer_rank_dies_mid_stream)
