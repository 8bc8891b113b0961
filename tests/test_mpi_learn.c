/* tests/test_mpi_learn.c - what a rank learns from the others without asking (label mpi): run
 * times of its tasks that ran elsewhere, the others' load in heartbeats, and round trips while
 * idle threads linger. Run under tests/mpi_run.sh on 2 ranks (test_mpi_learn) and 4
 * (test_mpi_learn4).
 *
 * Driver mode: rank 0 runs the case; the other ranks serve inside dagger_ctx_open. The cases
 * read the backend's own state (the cost model's history, the loads reported to rank 0), so
 * this file sees src/.
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>
#include <unistd.h>

#include "common/common.h"
#include "harness.h"
#include "mpi_harness.h"
#include "net/mpi/mpi_int.h"
#include "sched/cost.h"

static int64_t now_ms(void) { return (int64_t)(dagger__now_ns() / 1000000u); }

static int far_work(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    usleep(20000);
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

/* A function that only ever ran on another rank is known here: its run time came back with
 * each result, so tasks of it spread over every rank without dagger_task_opts.expected_time
 * (as they would once it ran here), evenly. */
TEST(remote_run_times_feed_the_placing_rank)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int n = dagger_ctx_nranks(ctx), last = n - 1, per[8] = {0};
    double mean = 0.0;
    ASSERT_EQ(dagger__cost_expected((const void *)(uintptr_t)far_work, DAGGER_PROC_CPU, 0, &mean),
              0);
    dagger_scope_t *far = dagger_scope_worker(last);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = far;
    for (int i = 0; i < 3; i++) {
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, far_work, i);
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(t, &r));
        ASSERT_EQ(r, last);
        dagger_task_release(t);
    }
    dagger_scope_release(far);
    /* three samples of about 20 ms, measured on rank `last` around the body only */
    ASSERT_EQ(dagger__cost_expected((const void *)(uintptr_t)far_work, DAGGER_PROC_CPU, 0, &mean),
              3);
    ASSERT_TRUE(mean >= 0.019 && mean < 1.0);
    dagger_task_t *t[32];
    for (int i = 0; i < 4 * n; i++)
        t[i] = dagger_spawn(ctx, far_work, i);
    for (int i = 0; i < 4 * n; i++) {
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(t[i], &r));
        ASSERT_TRUE(r >= 0 && r < n);
        per[r]++;
        dagger_task_release(t[i]);
    }
    for (int r = 0; r < n; r++)
        ASSERT_EQ(per[r], 4);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int nap(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep((useconds_t)dagger_arg_i64(a, 0) * 1000u);
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

/* Wait (up to 5 s) until rank `r`'s load as reported here satisfies busy (>= 2 tasks and the
 * 2 s of expected_time they came with) or idle (< 2 tasks); returns whether it did. */
static bool reported(dagger_ctx_t *ctx, int r, bool busy)
{
    for (int64_t t0 = now_ms(); now_ms() - t0 < 5000; usleep(1000)) {
        int n = -1;
        double backlog = -1.0;
        ASSERT_OK(dagger__mpi_peer_load(ctx, r, &n, &backlog));
        ASSERT_TRUE(backlog >= 0.0);
        if (busy ? n >= 2 && backlog > 1.99 && backlog < 2.01 : n < 2)
            return true;
    }
    return false;
}

/* A rank whose workers are all taken tells the others in a load beat, and again once they are
 * free: rank 0 keeps its own workers busy, so it never asks for work (no steal round trip
 * brings the load), and still sees rank `last` busy, then idle. */
TEST(busy_rank_is_told_in_load_beats)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int last = dagger_ctx_nranks(ctx) - 1;
    int n = -1;
    double backlog = -1.0;
    ASSERT_ERR(dagger__mpi_peer_load(ctx, last + 1, &n, &backlog), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "is not in 0..");
    dagger_scope_t *s0 = dagger_scope_worker(0), *s1 = dagger_scope_worker(last);
    dagger_task_opts_t here, there;
    dagger_task_opts_init(&here);
    dagger_task_opts_init(&there);
    here.scope = s0;
    there.scope = s1;
    there.expected_time = 1.0; /* travels with the task: rank `last` reports it as its backlog */
    dagger_task_t *mine[2], *far[2];
    for (int i = 0; i < 2; i++)
        mine[i] = dagger_spawn_opts(ctx, &here, nap, 3000);
    for (int i = 0; i < 2; i++)
        far[i] = dagger_spawn_opts(ctx, &there, nap, 1000);
    ASSERT_TRUE(reported(ctx, last, true));
    for (int i = 0; i < 2; i++) {
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(far[i], &r));
        ASSERT_EQ(r, last);
        dagger_task_release(far[i]);
    }
    ASSERT_TRUE(reported(ctx, last, false));
    for (int i = 0; i < 2; i++) {
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(mine[i], &r));
        ASSERT_EQ(r, 0);
        dagger_task_release(mine[i]);
    }
    dagger_scope_release(s0);
    dagger_scope_release(s1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int echo(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) * 3 + 1);
    return 0;
}

/* With lingering forced on (DAGGER_MPI_LINGER_US, set on every rank before the open), round
 * trips still compute right and close normally; an invalid value falls back to the default. */
TEST(round_trips_with_lingering_threads)
{
    setenv("DAGGER_MPI_LINGER_US", "2000", 1);
    dagger_ctx_t *ctx = open_job(1);
    unsetenv("DAGGER_MPI_LINGER_US");
    if (!ctx)
        return;
    const struct mpi_state *st = dagger__ctx_ranks(ctx);
    ASSERT_EQ((int64_t)st->linger_ns, 2000000);
    dagger_scope_t *far = dagger_scope_worker(dagger_ctx_nranks(ctx) - 1);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = far;
    for (int i = 0; i < 300; i++) {
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, echo, i);
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(t, &r));
        ASSERT_EQ(r, 3 * i + 1);
        dagger_task_release(t);
    }
    dagger_scope_release(far);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(invalid_linger_falls_back_to_the_default)
{
    setenv("DAGGER_MPI_LINGER_US", "soon", 1);
    dagger_ctx_t *ctx = open_job(1);
    unsetenv("DAGGER_MPI_LINGER_US");
    if (!ctx)
        return;
    const struct mpi_state *st = dagger__ctx_ranks(ctx);
    ASSERT_TRUE(st->linger_ns == 0 || st->linger_ns == MPI__LINGER_NS);
    dagger_task_t *t = dagger_spawn(ctx, echo, 5);
    int64_t r = -1;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 16);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(remote_run_times_feed_the_placing_rank, busy_rank_is_told_in_load_beats,
          round_trips_with_lingering_threads, invalid_linger_falls_back_to_the_default)
