/* tests/test_pool_wake.c - wake-ups of parked workers under the rationing rule of src/pool/pool.c
 * (issue 17): a submitter wakes nobody while a worker searches and sends one wake-up at a time;
 * the woken worker passes the wake-up on while more work is queued. These cases check that the
 * rationing loses no wake-up: a burst spawned while every other worker sleeps reaches all of them
 * (the tasks can only finish when all run at the same time), and single tasks spawned from
 * outside the pool after the workers parked are run, also after a run of round trips that made
 * the idle worker look less often. A task that waits for its peers gives up after
 * MEET_TIMEOUT_S and reports it, so a regression fails with a message instead of hanging.
 * Workers carry names (dagger-w<index>), checked from a task.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MEET_TIMEOUT_S 10
#define ROUNDS 8

static _Atomic int arrived;

/* Arrive, then wait until args(1) tasks have arrived. Args (where, i, n): where[i] = thread.
 * Returns 1 when the others did not come within MEET_TIMEOUT_S, else 0. */
static int meet(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    int n = (int)dagger_arg_i64(a, 2);
    where[i] = dagger_tc_thread(tc);
    atomic_fetch_add(&arrived, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int timed_out = 0;
    while (atomic_load(&arrived) < n && !timed_out) {
        usleep(100);
        clock_gettime(CLOCK_MONOTONIC, &t);
        timed_out = t.tv_sec - t0.tv_sec >= MEET_TIMEOUT_S;
    }
    *out = dagger_i64(timed_out);
    return 0;
}

/* Spawns n meet tasks from a worker, fetches them; returns how many timed out. Args (where, n). */
static int burst(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    int64_t n = dagger_arg_i64(a, 1);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    dagger_task_t *t[8];
    for (int64_t i = 0; i < n; i++) {
        t[i] = dagger_spawn(ctx, meet, (void *)where, i, n);
        if (!t[i])
            return dagger_fail(tc, DAGGER_ENOMEM, "spawn %lld: %s", (long long)i,
                               dagger_last_errmsg());
    }
    int64_t late = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = 1;
        int rc = dagger_fetch_i64(t[i], &v);
        dagger_task_release(t[i]);
        if (rc)
            return dagger_fail(tc, rc, "meet %lld: %s", (long long)i, dagger_last_errmsg());
        late += v;
    }
    *out = dagger_i64(late);
    return 0;
}

TEST(burst_from_a_worker_wakes_every_parked_worker)
{
    enum { N = 3 };
    dagger_ctx_t *ctx = test_ctx(N);
    for (int r = 0; r < ROUNDS; r++) {
        usleep(20 * 1000); /* the workers run dry and park */
        atomic_store(&arrived, 0);
        int64_t where[N] = {99, 99, 99};
        dagger_task_t *b = TEST_SPAWN_ON_WORKER(ctx, 0, burst, (void *)where, (int64_t)N);
        ASSERT_PTR(b);
        int64_t late = -1;
        ASSERT_OK(dagger_fetch_i64(b, &late));
        dagger_task_release(b);
        ASSERT_EQ(late, 0); /* all N ran at the same time: every worker was woken */
        for (int i = 0; i < N; i++) {
            ASSERT_TRUE(where[i] >= 0 && where[i] < N);
            for (int k = 0; k < i; k++)
                ASSERT_NE(where[i], where[k]);
        }
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int square(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0);
    *out = dagger_i64(i * i);
    return 0;
}

TEST(spawns_from_outside_after_the_workers_parked_run)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int64_t i = 0; i < 64; i++) {
        if (i % 4 == 0)
            usleep(2 * 1000); /* parked, or about to park, at the next spawn */
        dagger_task_t *t[2];
        for (int k = 0; k < 2; k++) {
            t[k] = dagger_spawn(ctx, square, i + k);
            ASSERT_PTR(t[k]);
        }
        for (int k = 0; k < 2; k++) {
            int64_t v = -1;
            ASSERT_OK(dagger_fetch_i64(t[k], &v));
            ASSERT_EQ(v, (i + k) * (i + k));
            dagger_task_release(t[k]);
        }
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int ran_on = -2;

/* An idle worker looks less often while the jobs main injects are gone by its next look (main
 * spawns and fetches one task at a time and runs each itself: src/pool/pool.c, look_every). A
 * job that main posts and does not fetch must still reach it: main waits for the job to have
 * run before it fetches, so only a worker can run it. */
TEST(a_job_posted_from_outside_after_round_trips_reaches_a_worker)
{
    dagger_ctx_t *ctx = test_ctx(1);
    for (int round = 0; round < 4; round++) {
        for (int64_t i = 0; i < 20000; i++) {
            dagger_task_t *t = dagger_spawn(ctx, square, i);
            int64_t v = -1;
            ASSERT_OK(dagger_fetch_i64(t, &v));
            ASSERT_EQ(v, i * i);
            dagger_task_release(t);
        }
        atomic_store(&ran_on, -2);
        dagger_task_t *t = dagger_spawn(ctx, test_note_thread, (void *)&ran_on);
        ASSERT_PTR(t);
        int th = test_wait_change(&ran_on, -2, MEET_TIMEOUT_S);
        if (th == -2)
            fail_msg("round %d: no worker took the job main posted within %d s", round,
                     MEET_TIMEOUT_S);
        ASSERT_EQ(th, 0);
        ASSERT_OK(dagger_wait(t));
        dagger_task_release(t);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Returns 1 when the thread running it is named "dagger-w<its index>", as top -H, perf and gdb
 * show it; fails with the name it found otherwise. */
static int own_name(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    char name[16] = "", want[16];
    snprintf(want, sizeof want, "dagger-w%d", dagger_tc_thread(tc));
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0)
        return dagger_fail(tc, DAGGER_ESTATE, "pthread_getname_np failed");
    if (strcmp(name, want) != 0)
        return dagger_fail(tc, DAGGER_ESTATE, "thread named '%s', not '%s'", name, want);
    *out = dagger_i64(1);
    return 0;
}

TEST(workers_are_named_by_their_index)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int i = 0; i < 32; i++) {
        dagger_task_t *t = TEST_SPAWN_ON_WORKER(ctx, i % 2, own_name, (int64_t)i);
        ASSERT_PTR(t);
        int64_t v = 0;
        int rc = dagger_fetch_i64(t, &v);
        if (rc)
            fail_msg("task %d: %s", i, dagger_task_errmsg(t));
        ASSERT_EQ(v, 1);
        dagger_task_release(t);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(burst_from_a_worker_wakes_every_parked_worker,
          spawns_from_outside_after_the_workers_parked_run,
          a_job_posted_from_outside_after_round_trips_reaches_a_worker,
          workers_are_named_by_their_index);
