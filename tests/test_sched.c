/* tests/test_sched.c - scopes, priorities and occupancy. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

static int where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep(50);
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

static dagger_task_t *spawn_scoped(dagger_ctx_t *ctx, dagger_scope_t *s)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = s;
    return dagger_spawn_opts(ctx, &o, where);
}

TEST(thread_scope_pins_the_task)
{
    dagger_ctx_t *ctx = test_ctx(3);
    for (int th = 0; th < 3; th++) {
        dagger_scope_t *s = dagger_scope_thread(th);
        for (int i = 0; i < 50; i++) {
            dagger_task_t *t = spawn_scoped(ctx, s);
            int64_t r;
            ASSERT_OK(dagger_fetch_i64(t, &r));
            ASSERT_EQ(r, th);
            dagger_task_release(t);
        }
        dagger_scope_release(s);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(union_scope_stays_inside_the_union)
{
    dagger_ctx_t *ctx = test_ctx(4);
    dagger_scope_t *a = dagger_scope_thread(0), *b = dagger_scope_thread(2);
    dagger_scope_t *u = dagger_scope_union(a, b);
    dagger_scope_release(a);
    dagger_scope_release(b);
    char form[64];
    dagger_scope_format(u, form, sizeof form);
    ASSERT_STR_EQ(form, "union(thread(0), thread(2))");
    int seen[4] = {0};
    dagger_task_t *ts[100];
    for (int i = 0; i < 100; i++)
        ts[i] = spawn_scoped(ctx, u);
    for (int i = 0; i < 100; i++) {
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(ts[i], &r));
        ASSERT_TRUE(r == 0 || r == 2);
        seen[r]++;
        dagger_task_release(ts[i]);
    }
    ASSERT_TRUE(seen[0] > 0 && seen[2] > 0); /* both members are used */
    dagger_scope_release(u);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(worker_scope_of_this_rank_is_any_thread)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *w = dagger_scope_worker(0);
    dagger_scope_t *wt = dagger_scope_worker_thread(0, 1);
    dagger_task_t *t = spawn_scoped(ctx, w), *u = spawn_scoped(ctx, wt);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_TRUE(r == 0 || r == 1);
    ASSERT_OK(dagger_fetch_i64(u, &r));
    ASSERT_EQ(r, 1);
    dagger_task_release(t);
    dagger_task_release(u);
    dagger_scope_release(w);
    dagger_scope_release(wt);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(missing_thread_fails_at_fetch_naming_the_scope)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *s = dagger_scope_thread(7);
    dagger_task_t *t = spawn_scoped(ctx, s);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "no processor satisfies the scope thread(7): thread 7 "
                                          "does not exist: the context has 2 threads (0..1)");
    dagger_task_release(t);
    dagger_scope_release(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(empty_intersection_fails_naming_both_scopes)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *a = dagger_scope_thread(0), *b = dagger_scope_thread(1);
    dagger_scope_t *i = dagger_scope_intersect(a, b);
    dagger_task_t *t = spawn_scoped(ctx, i);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t),
                   "no processor satisfies the scope "
                   "intersect(thread(0), thread(1)): the intersection is empty");
    dagger_scope_release(i);
    /* a non-empty intersection works */
    dagger_scope_t *any = dagger_scope_any();
    dagger_scope_t *j = dagger_scope_intersect(any, b);
    dagger_task_t *u = spawn_scoped(ctx, j);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(u, &r));
    ASSERT_EQ(r, 1);
    dagger_scope_release(j);
    dagger_scope_release(any);
    dagger_scope_release(a);
    dagger_scope_release(b);
    dagger_task_release(t);
    dagger_task_release(u);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(other_rank_fails_in_one_process)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *s = dagger_scope_worker(1);
    dagger_task_t *t = spawn_scoped(ctx, s);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "worker(1): rank 1 does not exist: the job has 1 rank");
    dagger_task_release(t);
    dagger_scope_release(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Tasks of a pinned chain all run on their thread, also when resumed after a nested fetch. */
static int pinned_nested(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int before = dagger_tc_thread(tc);
    dagger_task_t *child = dagger_spawn(dagger_tc_ctx(tc), where);
    int rc = dagger_fetch(child, NULL);
    dagger_task_release(child);
    int after = dagger_tc_thread(tc);
    *out = dagger_i64(before * 10 + after);
    return rc;
}

TEST(pinned_task_resumes_on_its_thread)
{
    dagger_ctx_t *ctx = test_ctx(3);
    dagger_scope_t *s = dagger_scope_thread(2);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = s;
    for (int i = 0; i < 20; i++) {
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, pinned_nested);
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(t, &r));
        ASSERT_EQ(r, 22);
        dagger_task_release(t);
    }
    dagger_scope_release(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- priorities */

static int prio_log[64];
static _Atomic int prio_n;

static int log_prio(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    prio_log[atomic_fetch_add(&prio_n, 1)] = (int)dagger_arg_i64(a, 0);
    return 0;
}

TEST(higher_priority_ready_tasks_run_first)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&prio_n, 0);
    dagger_task_t *blocker;
    test_gate_hold(ctx, 1, &blocker); /* the only worker is busy before the others arrive */
    int prios[] = {0, 5, -3, 9, 1, 0, 5, 7, -1, 2};
    dagger_task_t *ts[10];
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    for (int i = 0; i < 10; i++) {
        o.priority = prios[i];
        ts[i] = dagger_spawn_opts(ctx, &o, log_prio, prios[i]);
    }
    test_gate_unblock();
    for (int i = 0; i < 10; i++) {
        ASSERT_OK(dagger_fetch(ts[i], NULL));
        dagger_task_release(ts[i]);
    }
    test_gate_open(1, &blocker);
    int want[] = {9, 7, 5, 5, 2, 1, 0, 0, -1, -3};
    ASSERT_EQ(atomic_load(&prio_n), 10);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(prio_log[i], want[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- occupancy */

static pthread_barrier_t barrier;

static int meet(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    pthread_barrier_wait(&barrier); /* blocks the OS thread: needs 4 at once */
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

TEST(occupancy_zero_tasks_never_hold_a_worker)
{
    dagger_ctx_t *ctx = test_ctx(1);
    pthread_barrier_init(&barrier, NULL, 4);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.occupancy = 0.0;
    dagger_task_t *ts[4];
    for (int i = 0; i < 4; i++)
        ts[i] = dagger_spawn_opts(ctx, &o, meet);
    /* the only worker stays free for ordinary tasks meanwhile (pinned there: main would run an
     * unpinned one itself while it fetches it) */
    dagger_task_t *w = TEST_SPAWN_ON_WORKER(ctx, 0, where);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(w, &r));
    ASSERT_EQ(r, 0);
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(dagger_fetch_i64(ts[i], &r));
        ASSERT_EQ(r, -1); /* beside the workers */
        dagger_task_release(ts[i]);
    }
    dagger_task_release(w);
    pthread_barrier_destroy(&barrier);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int running_now, running_max;

static int occupy(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int n = atomic_fetch_add(&running_now, 1) + 1;
    int m = atomic_load(&running_max);
    while (n > m && !atomic_compare_exchange_weak(&running_max, &m, n))
        ;
    usleep(2000);
    atomic_fetch_sub(&running_now, 1);
    return 0;
}

TEST(occupancy_half_allows_two_per_thread)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.occupancy = 0.5;
    dagger_task_t *ts[24];
    for (int i = 0; i < 24; i++)
        ts[i] = dagger_spawn_opts(ctx, &o, occupy);
    for (int i = 0; i < 24; i++) {
        ASSERT_OK(dagger_fetch(ts[i], NULL));
        dagger_task_release(ts[i]);
    }
    /* 2 threads x (1 / 0.5) = at most 4 at once */
    ASSERT_TRUE(atomic_load(&running_max) <= 4);
    ASSERT_TRUE(atomic_load(&running_max) >= 1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(thread_scope_pins_the_task, union_scope_stays_inside_the_union,
          worker_scope_of_this_rank_is_any_thread, missing_thread_fails_at_fetch_naming_the_scope,
          empty_intersection_fails_naming_both_scopes, other_rank_fails_in_one_process,
          pinned_task_resumes_on_its_thread, higher_priority_ready_tasks_run_first,
          occupancy_zero_tasks_never_hold_a_worker, occupancy_half_allows_two_per_thread)
