/* tests/test_pool.c - the work-stealing deque, suspended tasks, parking and waking, and the
 * tasks of a busy worker reaching thieves that hold back from small steals. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"
#include "pool/deque.h"

/* ---------------------------------------------------------------- deque */

#define DQ_ITEMS 200000
static struct dagger__deque dq;
static _Atomic int taken[DQ_ITEMS + 1];
static _Atomic int owner_done;

static void *thief(void *arg)
{
    (void)arg;
    long got = 0;
    for (;;) {
        void *x = dq_steal(&dq);
        if (x == DQ_EMPTY) {
            if (atomic_load(&owner_done) && dq_size(&dq) <= 0)
                break;
            continue;
        }
        if (x == DQ_ABORT)
            continue;
        atomic_fetch_add(&taken[(intptr_t)x >> 4], 1);
        got++;
    }
    return (void *)got;
}

/* Three thieves run `fn` while the owner pushes bursts of up to `burst` items and pops up to
 * `pops` after each; then every item must have been taken exactly once. */
static void deque_race(void *(*fn)(void *), int burst, int pops)
{
    for (int i = 0; i <= DQ_ITEMS; i++)
        atomic_store(&taken[i], 0);
    ASSERT_EQ(dq_init(&dq, 16), 0); /* small: forces growth while thieves read */
    atomic_store(&owner_done, 0);
    pthread_t th[3];
    for (intptr_t i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, fn, (void *)(i + 1));
    uint64_t seed = test_seed();
    intptr_t next = 1;
    while (next <= DQ_ITEMS) {
        int n = (int)(test_rand(&seed) % (uint64_t)burst) + 1;
        for (int k = 0; k < n && next <= DQ_ITEMS; k++)
            ASSERT_EQ(dq_push(&dq, (void *)(next++ << 4)), 0); /* 0 and 1 are EMPTY/ABORT */
        int m = (int)(test_rand(&seed) % (uint64_t)pops);
        for (int k = 0; k < m; k++) {
            void *x = dq_pop(&dq);
            if (!x)
                break;
            atomic_fetch_add(&taken[(intptr_t)x >> 4], 1);
        }
    }
    void *x;
    while ((x = dq_pop(&dq)))
        atomic_fetch_add(&taken[(intptr_t)x >> 4], 1);
    atomic_store(&owner_done, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 1; i <= DQ_ITEMS; i++)
        if (atomic_load(&taken[i]) != 1)
            fail_msg("item %d taken %d times", i, atomic_load(&taken[i]));
    dq_destroy(&dq);
}

TEST(deque_every_item_taken_exactly_once) { deque_race(thief, 64, 48); }

/* Thieves taking half (dq_steal_half) and one at a time against an owner that pushes in bursts
 * and pops, deep and shallow in turn: every item is taken exactly once. */
static void *half_thief(void *arg)
{
    long got = 0;
    uint64_t seed = (uint64_t)(intptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    for (;;) {
        void *out[DQ_HALF_MAX];
        int k = 0;
        if (test_rand(&seed) % 4 != 0) {
            k = dq_steal_half(&dq, out, 1 + (int)(test_rand(&seed) % DQ_HALF_MAX),
                              2 + (int64_t)(test_rand(&seed) % 64));
        } else {
            void *x = dq_steal(&dq);
            if (x != DQ_EMPTY && x != DQ_ABORT) {
                out[0] = x;
                k = 1;
            }
        }
        if (k <= 0) {
            if (atomic_load(&owner_done) && dq_size(&dq) <= 0)
                break;
            continue;
        }
        for (int i = 0; i < k; i++)
            atomic_fetch_add(&taken[(intptr_t)out[i] >> 4], 1);
        got += k;
    }
    return (void *)got;
}

TEST(deque_half_steals_take_every_item_exactly_once) { deque_race(half_thief, 200, 160); }

/* ---------------------------------------------------------------- suspension */

static _Atomic int gate;

static int wait_gate(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    while (!atomic_load(&gate))
        usleep(200);
    *out = dagger_i64(5);
    return 0;
}

static int fetch_arg_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_task_t *t = (dagger_task_t *)dagger_arg_ptr(a, 0);
    int64_t v = 0;
    int rc = dagger_fetch_i64(t, &v);
    *out = dagger_i64(v + dagger_arg_i64(a, 1));
    return rc;
}

TEST(thousands_of_suspended_tasks_on_one_thread)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&gate, 0);
    dagger_scope_t *aux = NULL;
    (void)aux;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.occupancy = 0.0; /* the gate task waits beside the worker */
    dagger_task_t *g = dagger_spawn_opts(ctx, &o, wait_gate);
    const int n = test_level_full() ? 5000 : 2000;
    dagger_task_t **ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++)
        ts[i] = dagger_spawn(ctx, fetch_arg_task, (void *)g, i);
    usleep(20000); /* let them all block */
    atomic_store(&gate, 1);
    for (int i = 0; i < n; i++) {
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(ts[i], &r));
        ASSERT_EQ(r, 5 + i);
        dagger_task_release(ts[i]);
    }
    free(ts);
    dagger_task_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int deep(int n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    return n == 0 ? pad[0] : deep(n - 1) + 1 + (pad[0] - (char)n);
}

static int recurse_then_fetch(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_task_t *c = dagger_spawn(dagger_tc_ctx(tc), wait_gate);
    int d = deep(100); /* ~50 KiB of stack, on a fiber */
    int rc = dagger_fetch(c, NULL);
    dagger_task_release(c);
    *out = dagger_i64(d + deep(100));
    return rc;
}

TEST(suspended_tasks_keep_their_stacks)
{
    dagger_ctx_t *ctx = test_ctx(2);
    atomic_store(&gate, 1);
    dagger_task_t *ts[64];
    for (int i = 0; i < 64; i++)
        ts[i] = dagger_spawn(ctx, recurse_then_fetch);
    for (int i = 0; i < 64; i++) {
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(ts[i], &r));
        ASSERT_EQ(r, 200);
        dagger_task_release(ts[i]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int inc(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

TEST(no_lost_wake_ups_in_bursts)
{
    /* Workers park between bursts; a lost wake-up would hang this case (ctest timeout). */
    dagger_ctx_t *ctx = test_ctx(2);
    uint64_t seed = test_seed();
    const int rounds = test_level_full() ? 20000 : 3000;
    for (int r = 0; r < rounds; r++) {
        int burst = (int)(test_rand(&seed) % 4) + 1;
        dagger_task_t *ts[4];
        for (int k = 0; k < burst; k++)
            ts[k] = dagger_spawn(ctx, inc, r);
        for (int k = 0; k < burst; k++) {
            int64_t v;
            ASSERT_OK(dagger_fetch_i64(ts[k], &v));
            ASSERT_EQ(v, r + 1);
            dagger_task_release(ts[k]);
        }
        if (test_rand(&seed) % 8 == 0)
            usleep((useconds_t)(test_rand(&seed) % 300)); /* long enough to park */
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static void *spawner(void *arg)
{
    dagger_ctx_t *ctx = arg;
    int64_t sum = 0;
    for (int i = 0; i < 2000; i++) {
        dagger_task_t *t = dagger_spawn(ctx, inc, i);
        int64_t v = 0;
        if (dagger_fetch_i64(t, &v) == 0)
            sum += v;
        dagger_task_release(t);
    }
    return (void *)(intptr_t)sum;
}

TEST(many_outside_threads_spawn_and_fetch)
{
    dagger_ctx_t *ctx = test_ctx(2);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, spawner, ctx);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(th[i], &r);
        ASSERT_EQ((intptr_t)r, 2000 * 2001 / 2);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- holding back from steals */

static _Atomic int small_ran, small_elsewhere;

/* A tiny task: counts itself, and whether it ran on another thread than args(0). */
static int small(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    if (dagger_tc_thread(tc) != (int)dagger_arg_i64(a, 0))
        atomic_fetch_add(&small_elsewhere, 1);
    atomic_fetch_add(&small_ran, 1);
    *out = dagger_nil();
    return 0;
}

/* A flat loop of tiny tasks in a group: the thieves' steals from it bring little work. */
static int flat_loop(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int me = dagger_tc_thread(tc);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    if (dagger_sync_begin(c) != 0)
        return DAGGER_ESTATE;
    for (int64_t i = 0; i < dagger_arg_i64(a, 0); i++)
        if (dagger_spawn_detached(c, small, (int64_t)me) != 0)
            break;
    *out = dagger_nil();
    return dagger_sync_end(c);
}

/* Spawns args(0) tiny tasks into its worker's deque, then spins (no dagger wait, which would
 * run them here) until they all ran: only other workers can run them. Returns -1 when they did,
 * else how many had run when it gave up after 10 s. */
static int spawn_and_spin(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int me = dagger_tc_thread(tc);
    int n = (int)dagger_arg_i64(a, 0);
    atomic_store(&small_ran, 0);
    atomic_store(&small_elsewhere, 0);
    for (int i = 0; i < n; i++)
        if (dagger_spawn_detached(dagger_tc_ctx(tc), small, (int64_t)me) != 0)
            return dagger_fail(tc, DAGGER_ENOMEM, "spawn %d: %s", i, dagger_last_errmsg());
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int late = 0;
    while (atomic_load(&small_ran) < n && !late) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        late = now.tv_sec - t0.tv_sec > 10;
    }
    *out = dagger_i64(late ? atomic_load(&small_ran) : -1);
    return 0;
}

/* A worker whose steals from other workers brought little (src/pool/pool.c, ws_worth) takes a
 * victim's oldest task only once it stayed there 10 us, or up to 160 us after late steals that
 * brought little (the flat loops before); tasks in the deque of a worker that is busy with a
 * long task must still be taken, by every other worker count. */
TEST(a_worker_held_back_by_small_steals_takes_the_tasks_of_a_busy_worker)
{
    for (int threads = 2; threads <= 4; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int round = 0; round < 3; round++) {
            for (int k = 0; k < 5; k++) {
                dagger_task_t *f = dagger_spawn(ctx, flat_loop, (int64_t)20000);
                ASSERT_OK(dagger_wait(f));
                dagger_task_release(f);
            }
            dagger_task_t *t = dagger_spawn(ctx, spawn_and_spin, (int64_t)64);
            int64_t ran = 0;
            ASSERT_OK(dagger_fetch_i64(t, &ran));
            dagger_task_release(t);
            if (ran >= 0)
                fail_msg("threads %d, round %d: %lld of 64 tasks ran in 10 s", threads, round,
                         (long long)ran);
            ASSERT_EQ(atomic_load(&small_elsewhere), 64);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(contexts_open_and_close_repeatedly)
{
    for (int i = 0; i < 50; i++) {
        dagger_ctx_t *ctx = test_ctx(1 + i % 3);
        dagger_task_t *t = dagger_spawn(ctx, inc, i);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, i + 1);
        dagger_task_release(t);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST_LIST(deque_every_item_taken_exactly_once, deque_half_steals_take_every_item_exactly_once,
          thousands_of_suspended_tasks_on_one_thread, suspended_tasks_keep_their_stacks,
          no_lost_wake_ups_in_bursts, many_outside_threads_spawn_and_fetch,
          a_worker_held_back_by_small_steals_takes_the_tasks_of_a_busy_worker,
          contexts_open_and_close_repeatedly)
