/* tests/test_mpi_place.c - placement by the cost model and stealing across ranks (label mpi),
 * run under tests/mpi_run.sh on 2 ranks (test_mpi_place) and 4 (test_mpi_place4).
 *
 * Driver mode: rank 0 runs the case; the other ranks serve inside dagger_ctx_open. A task
 * counts its runs in a per-process table, and the driver gathers every rank's table with a
 * task pinned there, so a task that ran twice (or never) anywhere is seen.
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "harness.h"
#include "mpi_harness.h"

#define NTASKS 64

static _Atomic int runs[NTASKS]; /* this process's runs of each task id */

/* Sleeps (so 4 ranks on 2 cores still overlap), counts its run, returns its rank. */
static int work(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t id = dagger_arg_i64(a, 0);
    if (id >= 0 && id < NTASKS)
        atomic_fetch_add(&runs[id], 1);
    usleep(5000);
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

/* The same with a pointer argument: it cannot travel, so it never moves. */
static int work_ptr(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)dagger_arg_ptr(a, 0);
    usleep(1000);
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

static int report_runs(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    int32_t copy[NTASKS];
    for (int i = 0; i < NTASKS; i++)
        copy[i] = atomic_load(&runs[i]);
    *out = dagger_blob_copy(tc, copy, sizeof copy);
    return 0;
}

/* Sum every rank's run table into `total`. */
static void gather_runs(dagger_ctx_t *ctx, int32_t *total)
{
    for (int i = 0; i < NTASKS; i++)
        total[i] = atomic_load(&runs[i]);
    for (int k = 1; k < dagger_ctx_nranks(ctx); k++) {
        dagger_scope_t *s = dagger_scope_worker(k);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.scope = s;
        dagger_task_t *t = dagger_spawnv_opts(ctx, &o, report_runs, NULL, 0);
        dagger_value_t v;
        ASSERT_OK(dagger_fetch(t, &v));
        ASSERT_EQ(v.kind, DAGGER_KIND_BLOB);
        ASSERT_EQ(v.len, NTASKS * sizeof(int32_t));
        const int32_t *r = v.u.p;
        for (int i = 0; i < NTASKS; i++)
            total[i] += r[i];
        dagger_task_release(t);
        dagger_scope_release(s);
    }
}

/* Many tasks of unknown cost spawned on rank 0 with a scope allowing any rank: the model keeps
 * them here (unknown), the idle ranks steal from the reserve, and every task runs exactly once
 * across the job. Tasks that cannot travel (a pointer argument) stay on rank 0. */
TEST(stolen_tasks_run_exactly_once)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int n = dagger_ctx_nranks(ctx), per[8] = {0};
    ASSERT_TRUE(n >= 2 && n <= 8);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = dagger_scope_any();
    dagger_task_t *t[NTASKS], *p[8];
    int x = 0;
    for (int i = 0; i < NTASKS; i++) {
        t[i] = dagger_spawn_opts(ctx, &o, work, i);
        if (i % 8 == 0)
            p[i / 8] = dagger_spawn_opts(ctx, &o, work_ptr, &x);
    }
    for (int i = 0; i < NTASKS; i++) {
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(t[i], &r));
        ASSERT_TRUE(r >= 0 && r < n);
        per[r]++;
        dagger_task_release(t[i]);
    }
    for (int i = 0; i < NTASKS / 8; i++) {
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(p[i], &r));
        ASSERT_EQ(r, 0);
        dagger_task_release(p[i]);
    }
    int32_t total[NTASKS];
    gather_runs(ctx, total);
    for (int i = 0; i < NTASKS; i++)
        ASSERT_EQ(total[i], 1);
    ASSERT_TRUE(per[0] > 0);
    ASSERT_TRUE(per[0] < NTASKS); /* idle ranks stole some: 320 ms of work on 2 workers */
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int learn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    usleep(20000);
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

/* The history feeds the model: a function seen to run 20 ms (here, while its cost was
 * unknown) is spread over every rank without dagger_task_opts.expected_time, evenly. */
TEST(history_spreads_tasks_without_expected_time)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int n = dagger_ctx_nranks(ctx), per[8] = {0};
    for (int i = 0; i < 3; i++) { /* unknown: stays here, and is measured */
        dagger_task_t *t = dagger_spawn(ctx, learn, i);
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(t, &r));
        ASSERT_EQ(r, 0);
        dagger_task_release(t);
    }
    dagger_task_t *t[32];
    for (int i = 0; i < 4 * n; i++)
        t[i] = dagger_spawn(ctx, learn, i);
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

/* A task that depends on another and allows any rank is placed when ready, with its input's
 * value: the chain computes the same as on one rank, wherever each step ran. */
static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    usleep(2000);
    *out = dagger_i64(dagger_arg_i64(a, 0) + dagger_arg_i64(a, 1));
    return 0;
}

TEST(dependent_any_rank_tasks_compute_right)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = dagger_scope_any();
    o.expected_time = 0.002;
    dagger_task_t *leaf[16], *sum[8];
    for (int i = 0; i < 16; i++)
        leaf[i] = dagger_spawn_opts(ctx, &o, add, i, 1000);
    for (int i = 0; i < 8; i++)
        sum[i] = dagger_spawn_opts(ctx, &o, add, leaf[2 * i], leaf[2 * i + 1]);
    for (int i = 0; i < 8; i++) {
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(sum[i], &r));
        ASSERT_EQ(r, (2 * i + 1000) + (2 * i + 1 + 1000));
        dagger_task_release(sum[i]);
    }
    for (int i = 0; i < 16; i++)
        dagger_task_release(leaf[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* On rank 0 a short sleep; on any other rank (so only a stolen task) the process dies. */
static int work_or_die(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    int rank = dagger_ctx_rank(dagger_tc_ctx(tc));
    usleep(rank == 0 ? 10000 : 20000);
    if (rank != 0)
        kill(getpid(), SIGKILL);
    *out = dagger_i64(rank);
    return 0;
}

/* Thieves are killed by the first task they steal: each task then either ran on rank 0 or
 * fails with DAGGER_EPEER naming the lost rank (none is lost, none hangs), later tasks are
 * never placed on a lost rank, and close returns. */
TEST(lost_thief_fails_its_grants_with_epeer)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = dagger_scope_any();
    enum { N = 48 };
    dagger_task_t *t[N];
    for (int i = 0; i < N; i++)
        t[i] = dagger_spawn_opts(ctx, &o, work_or_die, i);
    int lost = 0;
    for (int i = 0; i < N; i++) {
        int64_t r = -1;
        int rc = dagger_fetch_i64(t[i], &r);
        if (rc == 0) {
            ASSERT_EQ(r, 0);
        } else {
            ASSERT_ERR(rc, DAGGER_EPEER);
            ASSERT_STR_HAS(dagger_task_errmsg(t[i]), " was lost");
            ASSERT_STR_HAS(dagger_task_errmsg(t[i]), "'work_or_die'");
            lost++;
        }
        dagger_task_release(t[i]);
    }
    ASSERT_TRUE(lost > 0); /* 480 ms of work on 2 workers: the idle ranks stole */
    /* Every other rank is gone: long tasks the model would spread stay here now. */
    o.expected_time = 0.05;
    for (int i = 0; i < 4; i++) {
        dagger_task_t *u = dagger_spawn_opts(ctx, &o, work, i);
        int64_t r = -1;
        ASSERT_OK(dagger_fetch_i64(u, &r));
        ASSERT_EQ(r, 0);
        dagger_task_release(u);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int fib_any(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n < 2) {
        *out = dagger_i64(n);
        return 0;
    }
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = dagger_scope_any();
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    dagger_task_t *x = dagger_spawn_opts(ctx, &o, fib_any, n - 1);
    dagger_task_t *y = dagger_spawn_opts(ctx, &o, fib_any, n - 2);
    int64_t u = 0, v = 0;
    int rc = dagger_fetch_i64(x, &u);
    if (!rc)
        rc = dagger_fetch_i64(y, &v);
    dagger_task_release(x);
    dagger_task_release(y);
    if (rc)
        return dagger_fail(tc, rc, "fib(%lld): a child failed", (long long)n);
    *out = dagger_i64(u + v);
    return 0;
}

/* Tasks that may run on any rank and wait on children that may too: once the running ones
 * all wait, their children sit in the reserve; sleeping workers get them (and other ranks
 * steal them), so the tree completes with the right value. */
TEST(nested_any_rank_waits_do_not_starve)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = dagger_scope_any();
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, fib_any, 12);
    int64_t r = 0;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 144);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(stolen_tasks_run_exactly_once, history_spreads_tasks_without_expected_time,
          dependent_any_rank_tasks_compute_right, lost_thief_fails_its_grants_with_epeer,
          nested_any_rank_waits_do_not_starve)
