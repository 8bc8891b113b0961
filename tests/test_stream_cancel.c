/* tests/test_stream_cancel.c - cancelling streaming tasks while their drivers start and end.
 *
 * A cancel of a streaming task that has not started ends its node at once and may drop the last
 * reference to its region, while the task's driver is already starting on a worker. These cases
 * repeat that race many times (they are meant for the TSan build, where a driver that reads a
 * freed node is reported) and check every task's outcome: a cancelled task that was still
 * running fails with DAGGER_ECANCELED, the others deliver their exact counts. A last case fails
 * each allocation of recording a region in turn.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <string.h>

#include "harness.h"

#include "dagger/stream.h"

static const int THREADS[] = {1, 4};
enum { ROUNDS = 200 };

struct counter {
    _Atomic int64_t n;
};

static int count_src(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    struct counter *c = dagger_arg_ptr(a, 0);
    *out = dagger_i64(atomic_fetch_add(&c->n, 1));
    return 0;
}

static int sum_sink(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct counter *c = dagger_arg_ptr(a, 0);
    atomic_fetch_add(&c->n, dagger_arg_i64(a, 1));
    return 0;
}

static void assert_cancelled(dagger_task_t *t)
{
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ECANCELED);
    ASSERT_ERR(dagger_task_error(t), DAGGER_ECANCELED);
}

/* An endless source alone in its region, cancelled right after the region starts: its cancel
 * and its driver's start race for the region's last reference. */
TEST(cancel_races_the_start_of_a_lone_source)
{
    for (int ti = 0; ti < 2; ti++) {
        dagger_ctx_t *ctx = test_ctx(THREADS[ti]);
        for (int round = 0; round < ROUNDS; round++) {
            struct counter c = {0};
            dagger_stream_t *s;
            ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
            dagger_task_t *a = dagger_spawn(ctx, count_src, (void *)&c);
            ASSERT_OK(dagger_stream_end(s));
            ASSERT_OK(dagger_cancel(a));
            assert_cancelled(a);
            dagger_task_release(a);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* A source and its consumer, both cancelled at once, in both orders, while a bounded source
 * beside them (no teardown) runs its exact count. */
TEST(cancel_races_the_start_of_a_pipeline)
{
    for (int ti = 0; ti < 2; ti++) {
        dagger_ctx_t *ctx = test_ctx(THREADS[ti]);
        for (int round = 0; round < ROUNDS; round++) {
            struct counter src = {0}, sum = {0}, bounded = {0};
            dagger_stream_opts_t o;
            dagger_stream_opts_init(&o);
            o.teardown = false;
            dagger_stream_t *s;
            ASSERT_OK(dagger_stream_begin(ctx, &o, &s));
            dagger_task_t *x = dagger_spawn(ctx, count_src, (void *)&src);
            dagger_task_t *y = dagger_spawn(ctx, sum_sink, (void *)&sum, x);
            o.max_evals = 3;
            ASSERT_OK(dagger_stream_set_opts(s, &o));
            dagger_task_t *b = dagger_spawn(ctx, count_src, (void *)&bounded);
            ASSERT_OK(dagger_stream_end(s));
            ASSERT_OK(dagger_cancel(round % 2 ? y : x));
            ASSERT_OK(dagger_cancel(round % 2 ? x : y));
            ASSERT_OK(dagger_fetch(b, NULL));
            ASSERT_EQ(atomic_load(&bounded.n), 3);
            assert_cancelled(x);
            /* The consumer is cancelled, or ended first because its cancelled input closed. */
            int yrc = dagger_fetch(y, NULL);
            ASSERT_TRUE(yrc == 0 || yrc == DAGGER_ECANCELED);
            /* Every value the sink took came from x in order: 0 + 1 + ... */
            int64_t got = atomic_load(&sum.n), k = 0, acc = 0;
            while (acc < got)
                acc += k++;
            ASSERT_EQ(acc, got);
            dagger_task_release(x);
            dagger_task_release(y);
            dagger_task_release(b);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

static int add_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

/* Each allocation of recording a region in turn fails (the node, its arguments, the task, the
 * bulk block's hold of it: a driver that starts before its region does): dagger_stream_end and
 * every fetch report an error or the exact result, never a crash, a hang or a freed region. */
TEST(allocation_failures_while_recording_a_region_fail_cleanly)
{
    dagger_ctx_t *ctx = test_ctx(1);
    int failures = 0;
    for (long n = 1; n <= 40; n++) {
        struct counter src = {0}, sum = {0};
        dagger_stream_opts_t o;
        dagger_stream_opts_init(&o);
        o.max_evals = 10;
        dagger_stream_t *s;
        ASSERT_OK(dagger_stream_begin(ctx, &o, &s));
        dagger_fault_alloc(n);
        dagger_task_t *x = dagger_spawn(ctx, count_src, (void *)&src);
        o.max_evals = -1;
        int src_rc = dagger_stream_set_opts(s, &o);
        dagger_task_t *y = dagger_spawn(ctx, add_one, x);
        dagger_task_t *z = dagger_spawn(ctx, sum_sink, (void *)&sum, y);
        int end_rc = dagger_stream_end(s);
        dagger_fault_alloc(0);
        ASSERT_OK(src_rc);
        int zrc = z ? dagger_fetch(z, NULL) : DAGGER_ENOMEM;
        if (end_rc == 0 && x && y && z && zrc == 0) {
            ASSERT_EQ(atomic_load(&sum.n), 55); /* 1 + 2 + ... + 10 */
        } else if (end_rc == 0 && x && y && z) {
            /* The failed allocation was the drivers' own (a stack to wait on): the region
             * failed at run time, and says why. */
            failures++;
            ASSERT_STR_HAS(dagger_task_errmsg(z), "out of memory");
        } else {
            failures++;
            ASSERT_TRUE(end_rc != 0 || zrc != 0);
            if (end_rc)
                ASSERT_TRUE(strlen(dagger_last_errmsg()) > 0);
            if (z)
                ASSERT_TRUE(zrc != 0);
        }
        for (int i = 0; i < 3; i++) {
            dagger_task_t *t = i == 0 ? x : i == 1 ? y : z;
            if (t) {
                dagger_value_t v;
                if (dagger_fetch(t, &v) != 0) { /* completes; the errors were checked above */
                }
                dagger_task_release(t);
            }
        }
    }
    ASSERT_TRUE(failures > 0); /* the sweep reached the region's allocations */
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(cancel_races_the_start_of_a_lone_source, cancel_races_the_start_of_a_pipeline,
          allocation_failures_while_recording_a_region_fail_cleanly)
