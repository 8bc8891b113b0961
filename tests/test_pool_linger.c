/* tests/test_pool_linger.c - lingering workers (dagger__pool_linger, src/pool/pool.c): while work
 * is expected soon, a worker that runs dry yields instead of parking, and once the deadline
 * passes it parks as before, so a linger never keeps a core busy for longer than asked. The
 * pool's parked count (dagger__ctx_idle_workers) tells which.
 * SPDX-License-Identifier: MIT
 */
#include <unistd.h>

#include "common/common.h"
#include "core/core.h"
#include "harness.h"

static int64_t now_ms(void) { return (int64_t)(dagger__now_ns() / 1000000u); }

static int inc(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

/* Wait (up to 10 s) until `n` workers are parked; returns whether they were. */
static bool parked(dagger_ctx_t *ctx, int n)
{
    for (int64_t t0 = now_ms(); now_ms() - t0 < 10000; usleep(1000))
        if (dagger__ctx_idle_workers(ctx) == n)
            return true;
    return false;
}

TEST(pool_lingering_worker_parks_after_the_deadline)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 2;
    dagger_ctx_t *ctx;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    ASSERT_TRUE(parked(ctx, 2));
    int64_t t0 = now_ms();
    dagger__ctx_linger(ctx, 3000u * 1000u * 1000u); /* 3 s */
    dagger_task_t *t = dagger_spawn(ctx, inc, 41);  /* wakes one worker, which then lingers */
    int64_t r = 0;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 42);
    dagger_task_release(t);
    usleep(100 * 1000);
    if (now_ms() - t0 < 2000) /* (a stalled machine could pass the deadline: nothing to check) */
        ASSERT_EQ(dagger__ctx_idle_workers(ctx), 1);
    ASSERT_TRUE(parked(ctx, 2)); /* after the deadline: parked again */
    ASSERT_TRUE(now_ms() - t0 >= 2900);
    /* a shorter deadline never cuts a longer one; a past one changes nothing */
    dagger__ctx_linger(ctx, 0);
    t = dagger_spawn(ctx, inc, 1);
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 2);
    dagger_task_release(t);
    ASSERT_TRUE(parked(ctx, 2));
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(pool_lingering_worker_parks_after_the_deadline)
