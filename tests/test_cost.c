/* tests/test_cost.c - the cost model alone (src/sched/cost.c): history update, outlier clamp,
 * size buckets, and the choice of a place by estimated finish time. No MPI: the targets are
 * built by hand as a ranks backend would fill them.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>

#include "harness.h"
#include "sched/cost.h"

static int fn_a(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)a, (void)out;
    return 0;
}

static int fn_b(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc, (void)a;
    *out = dagger_i64(1);
    return 0;
}

#define A ((const void *)(uintptr_t)fn_a)
#define B ((const void *)(uintptr_t)fn_b)

TEST(bucket_grows_by_four)
{
    ASSERT_EQ(dagger__cost_bucket(0), 0);
    ASSERT_EQ(dagger__cost_bucket(1), 1);
    ASSERT_EQ(dagger__cost_bucket(3), 1);
    ASSERT_EQ(dagger__cost_bucket(4), 2);
    ASSERT_EQ(dagger__cost_bucket(15), 2);
    ASSERT_EQ(dagger__cost_bucket(16), 3);
    ASSERT_EQ(dagger__cost_bucket(1 << 20), 11);
    ASSERT_EQ(dagger__cost_bucket((1 << 20) + 1), 11);
    ASSERT_EQ(dagger__cost_bucket(SIZE_MAX), 32);
}

TEST(bytes_count_data_only)
{
    char text[] = "hello";
    dagger_value_t v[4] = {dagger_i64(7), dagger_str(text), dagger_blob(text, 3), dagger_f64(1)};
    ASSERT_EQ(dagger__cost_bytes(v, 4), 5 + 3);
    ASSERT_EQ(dagger__cost_bytes(v, 0), 0);
}

/* The first samples keep their shortest (a first run's one-off costs are not the task's);
 * from the warm count on, each moves the mean by a quarter of the difference. */
TEST(history_is_an_ewma)
{
    dagger__cost_reset();
    double e = -1;
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 100, &e), 0);
    ASSERT_NEAR(e, -1, 0); /* untouched when unknown */
    dagger__cost_record(A, DAGGER_PROC_CPU, 100, 0.020);
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 100, &e), 1);
    ASSERT_NEAR(e, 0.020, 1e-12);
    dagger__cost_record(A, DAGGER_PROC_CPU, 100, 0.010);
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 100, &e), 2);
    ASSERT_NEAR(e, 0.010, 1e-12);
    dagger__cost_record(A, DAGGER_PROC_CPU, 100, 0.015);
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 100, &e), 3);
    ASSERT_NEAR(e, 0.010, 1e-12);
    dagger__cost_record(A, DAGGER_PROC_CPU, 100, 0.020);
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 100, &e), 4);
    ASSERT_NEAR(e, 0.0125, 1e-12);
    /* Same bucket (64..255 bytes), same history; another bucket, kind or function: none. */
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 200, &e), 4);
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 1000, &e), 0);
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_DEVICE, 100, &e), 0);
    ASSERT_EQ(dagger__cost_expected(B, DAGGER_PROC_CPU, 100, &e), 0);
    /* Nonsense samples are ignored. */
    dagger__cost_record(A, DAGGER_PROC_CPU, 100, -1.0);
    dagger__cost_record(A, DAGGER_PROC_CPU, 100, NAN);
    dagger__cost_record(NULL, DAGGER_PROC_CPU, 100, 1.0);
    ASSERT_EQ(dagger__cost_expected(A, DAGGER_PROC_CPU, 100, &e), 4);
    ASSERT_NEAR(e, 0.0125, 1e-12);
}

/* Once warm (3 samples), a sample beyond 4x the mean (or under a quarter) counts as 4x. */
TEST(history_clamps_outliers)
{
    dagger__cost_reset();
    double e = 0;
    for (int i = 0; i < 3; i++)
        dagger__cost_record(B, DAGGER_PROC_CPU, 0, 0.001);
    ASSERT_EQ(dagger__cost_expected(B, DAGGER_PROC_CPU, 0, &e), 3);
    ASSERT_NEAR(e, 0.001, 1e-12);
    dagger__cost_record(B, DAGGER_PROC_CPU, 0, 10.0); /* a stall: counts as 0.004 */
    ASSERT_NEAR((dagger__cost_expected(B, DAGGER_PROC_CPU, 0, &e), e), 0.001 + 0.25 * 0.003, 1e-12);
    double before = e;
    dagger__cost_record(B, DAGGER_PROC_CPU, 0, 0.0); /* counts as a quarter of the mean */
    ASSERT_EQ(dagger__cost_expected(B, DAGGER_PROC_CPU, 0, &e), 5);
    ASSERT_NEAR(e, before + 0.25 * (before / 4 - before), 1e-12);
    /* Before warm-up a long first run (an OpenCL build) does not stay in the estimate. */
    dagger__cost_record(A, DAGGER_PROC_DEVICE, 0, 1.0);
    dagger__cost_record(A, DAGGER_PROC_DEVICE, 0, 0.001);
    dagger__cost_record(A, DAGGER_PROC_DEVICE, 0, 0.002);
    ASSERT_NEAR((dagger__cost_expected(A, DAGGER_PROC_DEVICE, 0, &e), e), 0.001, 1e-12);
}

/* The table is fixed-size: past its capacity new keys are not recorded (and nothing breaks);
 * keys already in keep learning. */
TEST(history_table_full_records_nothing_more)
{
    dagger__cost_reset();
    enum { KEYS = 6000 };
    for (uintptr_t i = 0; i < KEYS; i++)
        dagger__cost_record((const void *)(0x10000 + 64 * i), DAGGER_PROC_CPU, 0, 0.001);
    int found = 0;
    double e = 0;
    for (uintptr_t i = 0; i < KEYS; i++)
        found += dagger__cost_expected((const void *)(0x10000 + 64 * i), DAGGER_PROC_CPU, 0, &e);
    ASSERT_TRUE(found > 1000 && found <= 64 * 64);
    for (uintptr_t i = 0; i < KEYS; i++) {
        const void *fn = (const void *)(0x10000 + 64 * i);
        if (dagger__cost_expected(fn, DAGGER_PROC_CPU, 0, &e)) {
            dagger__cost_record(fn, DAGGER_PROC_CPU, 0, 0.0005);
            ASSERT_EQ(dagger__cost_expected(fn, DAGGER_PROC_CPU, 0, &e), 2);
            ASSERT_NEAR(e, 0.0005, 1e-12);
            break;
        }
    }
    dagger__cost_reset();
    ASSERT_EQ(dagger__cost_expected((const void *)0x10000, DAGGER_PROC_CPU, 0, &e), 0);
}

static struct dagger__cost_target target(int ntasks, double backlog, int nthreads)
{
    return (struct dagger__cost_target){.backlog = backlog,
                                        .ntasks = ntasks,
                                        .nthreads = nthreads,
                                        .latency = DAGGER__COST_LATENCY,
                                        .bandwidth = DAGGER__COST_BANDWIDTH,
                                        .allowed = 1};
}

TEST(estimate_waits_only_when_workers_are_full)
{
    struct dagger__cost_target t = target(1, 0.5, 2);
    ASSERT_NEAR(dagger__cost_estimate(&t, 0.1, 0, 1), 0.1, 1e-12); /* a worker is free */
    t = target(4, 0.4, 2);
    ASSERT_NEAR(dagger__cost_estimate(&t, 0.1, 0, 1), 0.2 + 0.1, 1e-12);
    /* A move adds the latency and bytes / bandwidth. */
    ASSERT_NEAR(dagger__cost_estimate(&t, 0.1, 1000000, 0), 0.3 + 100e-6 + 1e-3, 1e-12);
}

TEST(choice_stays_local_unless_clearly_better)
{
    struct dagger__cost_target t[3] = {target(0, 0, 1), target(0, 0, 1), target(0, 0, 1)};
    /* Idle everywhere: stay. Unknown run time: stay, whatever the loads. */
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, 0.010, 0), 0);
    t[0] = target(5, 0.05, 1);
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, -1.0, 0), 0);
    /* Loaded here: the first idle peer in ring order from here. */
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, 0.010, 0), 1);
    ASSERT_EQ(dagger__cost_choose(t, 3, 1, 0.010, 0), 1); /* idle itself: stays */
    t[1] = target(5, 0.05, 1);
    ASSERT_EQ(dagger__cost_choose(t, 3, 1, 0.010, 0), 2);
    t[1] = target(0, 0, 1);
    /* Too many bytes to move: 64 MB at 1 GB/s is 64 ms, more than the 50 ms wait. */
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, 0.010, 64000000), 0);
    /* Better only by less than the margin (10 % of the task, at least 100 us): stay. */
    t[0] = target(1, 0.0009, 1);
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, 0.010, 0), 0);
    t[0] = target(1, 0.0030, 1);
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, 0.010, 0), 1);
    /* A place not allowed (a lost rank) is never chosen; the least loaded allowed one is. */
    t[0] = target(5, 0.05, 1);
    t[1].allowed = 0;
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, 0.010, 0), 2);
    t[2] = target(9, 0.09, 1);
    ASSERT_EQ(dagger__cost_choose(t, 3, 0, 0.010, 0), 0);
    ASSERT_EQ(dagger__cost_choose(t, 1, 0, 0.010, 0), 0);
}

/* Equal tasks placed one after another, each counted where it went: every place gets as many
 * (the spread of independent long tasks, Dagger.jl issue 277). */
TEST(greedy_choice_spreads_evenly)
{
    for (int n = 2; n <= 4; n++) {
        for (int threads = 1; threads <= 2; threads++) {
            struct dagger__cost_target t[4];
            for (int k = 0; k < n; k++)
                t[k] = target(0, 0, threads);
            int per[4] = {0};
            for (int i = 0; i < 4 * n; i++) {
                int k = dagger__cost_choose(t, n, 0, 0.02, 8);
                t[k].ntasks++;
                t[k].backlog += 0.02;
                per[k]++;
            }
            for (int k = 0; k < n; k++)
                ASSERT_EQ(per[k], 4);
        }
    }
}

TEST(link_learns_latency_and_bandwidth)
{
    struct dagger__cost_target t = target(0, 0, 1);
    dagger__cost_link_learn(&t, 100, 200e-6); /* small: latency */
    ASSERT_NEAR(t.latency, 100e-6 + 0.25 * 100e-6, 1e-12);
    ASSERT_NEAR(t.bandwidth, 1e9, 0);
    double lat = t.latency;
    dagger__cost_link_learn(&t, 10000000, 0.02 + lat); /* 10 MB in 20 ms past the latency */
    ASSERT_NEAR(t.bandwidth, 1e9 + 0.25 * (5e8 - 1e9), 1);
    dagger__cost_link_learn(&t, 10000000, 0.0); /* nonsense: ignored */
    ASSERT_NEAR(t.bandwidth, 8.75e8, 1);
    lat = t.latency;
    dagger__cost_link_learn(&t, 8, 1.0); /* one preempted message: counts as 4x */
    ASSERT_NEAR(t.latency, lat + 0.25 * (4 * lat - lat), 1e-12);
}

TEST_LIST(bucket_grows_by_four, bytes_count_data_only, history_is_an_ewma, history_clamps_outliers,
          history_table_full_records_nothing_more, estimate_waits_only_when_workers_are_full,
          choice_stays_local_unless_clearly_better, greedy_choice_spreads_evenly,
          link_learns_latency_and_bandwidth)
