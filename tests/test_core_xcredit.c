/* tests/test_core_xcredit.c - close and the task counts with threads outside the pool (issue 17):
 * tasks spawned and handles released by threads that are not workers (alive, ended, or waiting
 * elsewhere), a forced close followed by the last release, a sync group helped by the main
 * thread, and one thread using several contexts. Close must neither hang nor finish early and
 * must count the handles still held exactly. These guard the record counts' accounts of
 * threads outside the pool (src/core/core_int.h, struct account): more threads than accounts,
 * a thread that ends holding credit, and releases after a forced close from threads with and
 * without an account. A hang shows as the test's timeout; a context a forced close left that
 * is never freed, as the leak check of the ASan build.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

static _Atomic int64_t ran;

static int count_run(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&ran, 1);
    *out = dagger_i64(dagger_arg_i64(a, 0) * 2);
    return 0;
}

/* A thread outside the pool: spawns `n` tasks, keeps `keep` handles, then says so and waits for
 * `go` before it releases them and ends. */
struct spawner {
    dagger_ctx_t *ctx;
    int n, keep;
    dagger_task_t *kept[4];
    _Atomic int spawned, go;
};

static void *spawner_main(void *p)
{
    struct spawner *s = p;
    for (int i = 0; i < s->n; i++) {
        dagger_task_t *t = dagger_spawn(s->ctx, count_run, (int64_t)i);
        if (i < s->keep)
            s->kept[i] = t;
        else
            dagger_task_release(t);
    }
    atomic_store(&s->spawned, 1);
    while (!atomic_load(&s->go))
        usleep(100);
    for (int i = 0; i < s->keep; i++)
        dagger_task_release(s->kept[i]);
    return NULL;
}

TEST(close_after_a_spawning_thread_ended)
{
    atomic_store(&ran, 0);
    dagger_ctx_t *ctx = test_ctx(2);
    struct spawner s = {.ctx = ctx, .n = 100};
    atomic_store(&s.go, 1);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, spawner_main, &s), 0);
    pthread_join(th, NULL);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(atomic_load(&ran), 100);
}

TEST(close_while_a_spawning_thread_holds_credit)
{
    atomic_store(&ran, 0);
    dagger_ctx_t *ctx = test_ctx(2);
    struct spawner s = {.ctx = ctx, .n = 10};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, spawner_main, &s), 0);
    while (!atomic_load(&s.spawned))
        usleep(100);
    /* The spawner still lives (and would hold any credit it drew): close must not wait on it. */
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(atomic_load(&ran), 10);
    atomic_store(&s.go, 1);
    pthread_join(th, NULL);
}

TEST(close_counts_the_handles_held_exactly)
{
    atomic_store(&ran, 0);
    dagger_ctx_t *ctx = test_ctx(2);
    struct spawner s = {.ctx = ctx, .n = 5, .keep = 2};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, spawner_main, &s), 0);
    while (!atomic_load(&s.spawned))
        usleep(100);
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_last_errmsg(), "2 task handles are still held");
    int64_t v = 0;
    ASSERT_OK(dagger_fetch_i64(s.kept[1], &v));
    ASSERT_EQ(v, 2);
    dagger_task_release(s.kept[0]); /* released on this thread, spawned on the other */
    s.keep = 0;
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_last_errmsg(), "1 task handle is still held");
    dagger_task_release(s.kept[1]);
    atomic_store(&s.go, 1);
    pthread_join(th, NULL);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(atomic_load(&ran), 5);
}

TEST(forced_close_then_the_last_release_frees_the_context)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *kept = dagger_spawn(ctx, count_run, (int64_t)21);
    for (int i = 0; i < 200; i++) /* more than one batch of credit */
        dagger_task_release(dagger_spawn(ctx, count_run, (int64_t)i));
    int64_t v = 0;
    ASSERT_OK(dagger_fetch_i64(kept, &v));
    ASSERT_EQ(v, 42);
    ASSERT_OK(dagger_ctx_close_ex(ctx, DAGGER_CLOSE_FORCE));
    dagger_task_release(kept); /* frees the context: the leak check of ASan builds sees it */
}

TEST(sync_group_ended_on_main_then_close)
{
    atomic_store(&ran, 0);
    dagger_ctx_t *ctx = test_ctx(2);
    for (int round = 0; round < 20; round++) {
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int i = 0; i < 300; i++)
            dagger_task_release(dagger_spawn(ctx, count_run, (int64_t)i));
        ASSERT_OK(dagger_sync_end(ctx));
        ASSERT_EQ(atomic_load(&ran), 300 * (round + 1));
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(one_thread_alternates_between_contexts)
{
    atomic_store(&ran, 0);
    for (int pass = 0; pass < 3; pass++) { /* later passes: contexts of new generations */
        dagger_ctx_t *a = test_ctx(1), *b = test_ctx(2);
        dagger_task_t *ta[100], *tb[100];
        for (int i = 0; i < 100; i++) {
            ta[i] = dagger_spawn(a, count_run, (int64_t)i);
            tb[i] = dagger_spawn(b, count_run, (int64_t)(i + 1000));
        }
        for (int i = 0; i < 100; i++) {
            int64_t va = 0, vb = 0;
            ASSERT_OK(dagger_fetch_i64(ta[i], &va));
            ASSERT_OK(dagger_fetch_i64(tb[i], &vb));
            ASSERT_EQ(va, 2 * i);
            ASSERT_EQ(vb, 2 * (i + 1000));
            dagger_task_release(ta[i]);
            dagger_task_release(tb[i]);
        }
        ASSERT_OK(dagger_ctx_close(b));
        ASSERT_OK(dagger_ctx_close(a));
    }
    ASSERT_EQ(atomic_load(&ran), 3 * 200);
}

static void *release_main(void *p)
{
    dagger_task_release(p);
    return NULL;
}

TEST(forced_close_then_other_threads_release_the_last_handles)
{
    atomic_store(&ran, 0);
    dagger_ctx_t *ctx = test_ctx(2);
    struct spawner s = {.ctx = ctx, .n = 300, .keep = 2}; /* it draws credit on its account */
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, spawner_main, &s), 0);
    while (!atomic_load(&s.spawned))
        usleep(100);
    dagger_task_t *mine = dagger_spawn(ctx, count_run, (int64_t)7);
    for (int i = 0; i < 200; i++) /* main's account too */
        dagger_task_release(dagger_spawn(ctx, count_run, (int64_t)i));
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_last_errmsg(), "3 task handles are still held");
    ASSERT_OK(dagger_ctx_close_ex(ctx, DAGGER_CLOSE_FORCE));
    ASSERT_EQ(atomic_load(&ran), 501);
    /* A thread that never used the context releases main's handle, then the spawner (which has
     * an account there) its two: the last one frees the context. With the accounts still in
     * use after the close, one of those releases counted where nobody looks and the context
     * was never freed. */
    pthread_t fresh;
    ASSERT_EQ(pthread_create(&fresh, NULL, release_main, mine), 0);
    pthread_join(fresh, NULL);
    dagger_alloc_stats_t before, after;
    dagger_alloc_stats(&before);
    atomic_store(&s.go, 1);
    pthread_join(th, NULL);
    dagger_alloc_stats(&after);
    /* The context is freed by the spawner's last release, not before nor never (debug builds
     * bury it, counting the free all the same). */
    ASSERT_TRUE(after.frees > before.frees);
}

/* More threads outside the pool than the context keeps accounts for: the others count on the
 * global count, and close still counts every handle. */
#define MANY 24
TEST(more_threads_outside_the_pool_than_accounts)
{
    atomic_store(&ran, 0);
    dagger_ctx_t *ctx = test_ctx(2);
    struct spawner s[MANY];
    pthread_t th[MANY];
    for (int i = 0; i < MANY; i++) {
        s[i] = (struct spawner){.ctx = ctx, .n = 100, .keep = 1};
        ASSERT_EQ(pthread_create(&th[i], NULL, spawner_main, &s[i]), 0);
    }
    for (int i = 0; i < MANY; i++)
        while (!atomic_load(&s[i].spawned))
            usleep(100);
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_last_errmsg(), "24 task handles are still held");
    for (int i = 0; i < MANY; i += 2) /* half of them released here */
        dagger_task_release(s[i].kept[0]), s[i].keep = 0;
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_last_errmsg(), "12 task handles are still held");
    for (int i = 0; i < MANY; i++)
        atomic_store(&s[i].go, 1);
    for (int i = 0; i < MANY; i++)
        pthread_join(th[i], NULL);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(atomic_load(&ran), MANY * 100);
}

TEST_LIST(close_after_a_spawning_thread_ended, close_while_a_spawning_thread_holds_credit,
          close_counts_the_handles_held_exactly,
          forced_close_then_the_last_release_frees_the_context, sync_group_ended_on_main_then_close,
          one_thread_alternates_between_contexts,
          forced_close_then_other_threads_release_the_last_handles,
          more_threads_outside_the_pool_than_accounts);
