/* tests/test_mpi_credit.c - back-pressure on mpi:// edges (label mpi): a window of credits per
 * edge bounds what the consumer's rank buffers, and a producer out of credits suspends its task,
 * not its thread. Run under tests/mpi_run.sh on 2 ranks (test_mpi_credit) and 4
 * (test_mpi_credit4).
 *
 * Driver mode: rank 0 consumes; the producer is a task on the last rank, with one worker there,
 * so that another task can run on that rank only if the waiting producer gave the worker up.
 * The buffered count is read from the backend (dagger__mpi_stream_buffered), so this file sees
 * src/.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "dagger/net.h"
#include "harness.h"
#include "mpi_harness.h"
#include "net/mpi/mpi_int.h"

#define WINDOW 8
#define NVALUES 200

static int64_t now_ms(void) { return (int64_t)(dagger__now_ns() / 1000000u); }

/* On the last rank: push 0..n-1 to rank 0 with a window of WINDOW, untimed (the task
 * suspends when out of credits), then end the stream. Returns how often it had to wait. */
static int produce(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    char uri[64];
    snprintf(uri, sizeof uri, "mpi://0/slow?window=%d", WINDOW);
    dagger_edge_t *e;
    int rc = dagger_edge_open(&e, uri, DAGGER_EDGE_PUSH);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    dagger_edge_t *dup;
    rc = dagger_edge_open(&dup, uri, DAGGER_EDGE_PUSH);
    if (rc != DAGGER_EBUSY || !strstr(dagger_last_errmsg(), "already has a producer end")) {
        dagger_edge_close(e);
        return dagger_fail(tc, DAGGER_ETASK, "a second producer end: rc %d, %s", rc,
                           dagger_last_errmsg());
    }
    rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        dagger_value_t v = dagger_i64(i);
        rc = dagger_edge_push(e, &v);
    }
    dagger_edge_stats_t s;
    dagger_edge_stats(e, &s);
    if (rc)
        dagger_fail(tc, rc, "push: %s", dagger_edge_errmsg(e));
    int crc = dagger_edge_close(e);
    *out = dagger_i64((int64_t)s.waits);
    return rc ? rc : crc;
}

static int echo(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

/* A consumer that does not pop: the producer stops at the window, its rank's only worker runs
 * other tasks meanwhile; then a slow consumer gets every value in order, never more than the
 * window buffered here. */
TEST(slow_consumer_bounds_the_buffer)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    int last = dagger_ctx_nranks(ctx) - 1;
    char uri[32];
    snprintf(uri, sizeof uri, "mpi://%d/slow", last);
    dagger_edge_t *in;
    ASSERT_OK(dagger_edge_open(&in, uri, DAGGER_EDGE_POP));
    dagger_task_t *p =
        spawn_on(ctx, last, produce, NULL, (dagger_value_t[]){dagger_i64(NVALUES)}, 1);
    int64_t t0 = now_ms();
    while (dagger__mpi_stream_buffered(last, "slow") < WINDOW && now_ms() - t0 < 10000)
        usleep(1000);
    if (dagger_task_done(p))
        fprintf(stderr, "the producer ended early: %s\n", dagger_task_errmsg(p));
    ASSERT_EQ(dagger__mpi_stream_buffered(last, "slow"), WINDOW);
    usleep(50000); /* the producer is stopped by the window, not late */
    ASSERT_EQ(dagger__mpi_stream_buffered(last, "slow"), WINDOW);
    ASSERT_FALSE(dagger_task_done(p));
    dagger_task_t *e = spawn_on(ctx, last, echo, NULL, (dagger_value_t[]){dagger_i64(41)},
                                1); /* runs only if the producer suspended */
    int64_t r = -1;
    ASSERT_OK(dagger_fetch_i64(e, &r));
    ASSERT_EQ(r, 42);
    dagger_task_release(e);
    size_t most = 0;
    for (int64_t i = 0; i < NVALUES; i++) {
        size_t b = dagger__mpi_stream_buffered(last, "slow");
        ASSERT_TRUE(b <= WINDOW + 1); /* the window, and the end once every value is sent */
        most = b > most ? b : most;
        dagger_value_t v;
        ASSERT_OK(dagger_edge_pop(in, &v, 20000));
        ASSERT_EQ(v.kind, DAGGER_KIND_I64);
        ASSERT_EQ(v.u.i, i);
        if (i % 16 == 0)
            usleep(2000);
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(in, &v, 20000), DAGGER_ECLOSED);
    int64_t waits = -1;
    ASSERT_OK(dagger_fetch_i64(p, &waits));
    ASSERT_TRUE(waits >= 1); /* it did run out of credits */
    dagger_task_release(p);
    ASSERT_OK(dagger_edge_close(in));
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A timed push out of credits times out with a message naming the window; an invalid window
 * is refused at open. */
TEST(timed_push_out_of_credits_and_bad_window)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    int last = dagger_ctx_nranks(ctx) - 1;
    char uri[64];
    dagger_edge_t *out;
    snprintf(uri, sizeof uri, "mpi://%d/w?window=0", last);
    ASSERT_ERR(dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "window");
    snprintf(uri, sizeof uri, "mpi://%d/w?window=2", last); /* nobody pops on the last rank */
    ASSERT_OK(dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH));
    for (int i = 0; i < 2; i++) {
        dagger_value_t v = dagger_i64(i);
        ASSERT_OK(dagger_edge_push_timed(out, &v, 0));
    }
    ASSERT_EQ(dagger_edge_poll(out, 0), 0);
    dagger_value_t v = dagger_i64(2);
    ASSERT_ERR(dagger_edge_push_timed(out, &v, 20), DAGGER_ETIMEDOUT);
    ASSERT_STR_HAS(dagger_edge_errmsg(out), "window=2");
    ASSERT_OK(dagger_edge_close(out));
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* On the last rank: push until the edge refuses; returns how many went, or -1 when the refusal
 * was not the consumer's close. */
static int produce_until_closed(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    dagger_edge_t *e;
    int rc = dagger_edge_open(&e, "mpi://0/gone?window=4", DAGGER_EDGE_PUSH);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    int64_t n = 0;
    for (; n < 100000; n++) {
        dagger_value_t v = dagger_i64(n);
        if ((rc = dagger_edge_push(e, &v)) != 0)
            break;
    }
    bool closed = rc == DAGGER_ECLOSED && strstr(dagger_edge_errmsg(e), "closed its end");
    (void)dagger_edge_close(e);
    *out = dagger_i64(closed ? n : -1);
    return 0;
}

/* A consumer that closes early ends a producer waiting for credits with DAGGER_ECLOSED (as a
 * closed ring does), instead of leaving its task waiting forever. */
TEST(consumer_close_ends_a_waiting_producer)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    int last = dagger_ctx_nranks(ctx) - 1;
    char uri[32];
    snprintf(uri, sizeof uri, "mpi://%d/gone", last);
    dagger_edge_t *in;
    ASSERT_OK(dagger_edge_open(&in, uri, DAGGER_EDGE_POP));
    dagger_task_t *p =
        spawn_on(ctx, last, produce_until_closed, NULL, (dagger_value_t[]){dagger_i64(0)}, 1);
    for (int64_t i = 0; i < 3; i++) {
        dagger_value_t v;
        ASSERT_OK(dagger_edge_pop(in, &v, 20000));
        ASSERT_EQ(v.u.i, i);
    }
    ASSERT_OK(dagger_edge_close(in));
    int64_t n = -2;
    ASSERT_OK(dagger_fetch_i64(p, &n));
    ASSERT_TRUE(n >= 3 && n < 100000);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(slow_consumer_bounds_the_buffer, timed_push_out_of_credits_and_bad_window,
          consumer_close_ends_a_waiting_producer)
