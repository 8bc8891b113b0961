/* tests/test_core_handles.c - a task's handles and its completion (issue 17).
 *
 * A handle released before the task ends leaves a mark on the task's waiter word instead of a
 * decrement of its reference count; a task that ends with handles still held and nobody waiting
 * closes the word in one operation and leaves the runtime's reference to its handles, the last
 * of which frees the record. These cases release handles before, during and after the end, from
 * several threads, past the word's 65535 marks, and check the values fetched and that no record
 * is left: dagger_ctx_close refuses (DAGGER_EBUSY) while a record is alive, and ASan reports a
 * record freed twice.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

/* Rounds that start threads are fewer under a sanitizer, where a thread's start costs ms. */
#if defined(DAGGER_TSAN) || defined(DAGGER_ASAN)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* plus1(x): x + 1 (x an integer or a task's integer result). */
static int plus1(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

/* A task held back by the gate task `g` (its input): it cannot end before the gate opens. */
static dagger_task_t *behind_gate(dagger_ctx_t *ctx, dagger_task_t *g)
{
    dagger_task_t *t = dagger_spawn(ctx, plus1, g);
    ASSERT_PTR(t);
    return t;
}

TEST(handles_released_before_the_end_go_with_the_record_at_the_end)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    /* Ten handles, nine released before the end: the last one fetches. */
    dagger_task_t *t = behind_gate(ctx, g);
    for (int i = 0; i < 9; i++)
        ASSERT_TRUE(dagger_task_retain(t) == t);
    for (int i = 0; i < 9; i++)
        dagger_task_release(t);
    /* Every handle released before the end, inside a group that waits for it; a dependent
     * registered before the releases reads the result after them. */
    ASSERT_OK(dagger_sync_begin(ctx));
    dagger_task_t *u = behind_gate(ctx, g);
    dagger_task_t *d = dagger_spawn(ctx, plus1, u);
    ASSERT_PTR(d);
    for (int i = 0; i < 4; i++)
        dagger_task_retain(u);
    for (int i = 0; i < 5; i++)
        dagger_task_release(u);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_sync_end(ctx));
    int64_t v = 0;
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, 1); /* the gate task returns 0: it did not time out */
    ASSERT_OK(dagger_fetch_i64(d, &v));
    ASSERT_EQ(v, 2);
    dagger_task_release(t);
    dagger_task_release(d);
    ASSERT_OK(dagger_ctx_close(ctx));
}

struct releaser {
    dagger_task_t *t;
    int n;              /* releases to make */
    _Atomic int *start; /* spin until non-zero */
};

static void *release_n(void *arg)
{
    struct releaser *r = arg;
    while (!atomic_load(r->start))
        ;
    for (int i = 0; i < r->n; i++)
        dagger_task_release(r->t);
    return NULL;
}

/* Release `t` `each` times from each of `n` (at most 4) threads started together; with `also`,
 * the calling thread releases it once too while they run. Returns when all are done. */
static void release_from_threads(dagger_task_t *t, int n, int each, int also)
{
    _Atomic int start = 0;
    pthread_t th[4];
    struct releaser r[4];
    for (int i = 0; i < n; i++) {
        r[i] = (struct releaser){t, each, &start};
        ASSERT_EQ(pthread_create(&th[i], NULL, release_n, &r[i]), 0);
    }
    atomic_store(&start, 1);
    if (also)
        dagger_task_release(t);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

TEST(handles_released_after_the_end_from_several_threads_free_the_record_once)
{
    enum { ROUNDS = SANITIZED ? 50 : 200, THREADS = 4 };
    dagger_ctx_t *ctx = test_ctx(2);
    for (int k = 0; k < ROUNDS; k++) {
        dagger_task_t *t = dagger_spawn(ctx, plus1, (int64_t)k);
        ASSERT_PTR(t);
        for (int i = 1; i < THREADS; i++)
            dagger_task_retain(t);
        int64_t v = -1;
        ASSERT_OK(dagger_fetch_i64(t, &v)); /* ended: its handles drop the last reference */
        ASSERT_EQ(v, k + 1);
        release_from_threads(t, THREADS, 1, 0);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(handles_released_while_the_task_ends_free_the_record_once)
{
    /* Each task ends on a worker while other threads release its handles, so that releases
     * fall before, between and after the steps of its completion. */
    enum { ROUNDS = SANITIZED ? 300 : 2000, THREADS = 2 };
    dagger_ctx_t *ctx = test_ctx(2);
    uint64_t seed = test_seed();
    for (int k = 0; k < ROUNDS; k++) {
        dagger_task_t *t = dagger_spawn(ctx, plus1, (int64_t)k);
        ASSERT_PTR(t);
        int keep = (int)(test_rand(&seed) % 2); /* 1: main fetches after the others released */
        for (int i = 0; i < THREADS; i++)
            dagger_task_retain(t);
        release_from_threads(t, THREADS, 1, !keep);
        if (keep) {
            int64_t v = -1;
            ASSERT_OK(dagger_fetch_i64(t, &v));
            ASSERT_EQ(v, k + 1);
            dagger_task_release(t);
        }
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(marks_past_the_words_capacity_fold_into_the_count)
{
    /* 70000 handles released before the end: past 65535 marks a release folds them into the
     * count. Once from one thread with a handle kept to fetch, once from two threads at a time
     * with every handle released, inside a group that waits for the task. */
    enum { N = 70000 };
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    dagger_task_t *t = behind_gate(ctx, g);
    for (int i = 0; i < N; i++)
        dagger_task_retain(t);
    for (int i = 0; i < N; i++)
        dagger_task_release(t);
    ASSERT_OK(dagger_sync_begin(ctx));
    dagger_task_t *u = behind_gate(ctx, g);
    for (int i = 0; i < N - 1; i++)
        dagger_task_retain(u);
    release_from_threads(u, 2, N / 2, 0);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_sync_end(ctx));
    int64_t v = 0;
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, 1);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* fib(n) with a task per call, each fetching its two children and releasing their handles. */
static int fib(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n < 2) {
        *out = dagger_i64(n);
        return 0;
    }
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    dagger_task_t *x = dagger_spawn(c, fib, n - 1);
    dagger_task_t *y = dagger_spawn(c, fib, n - 2);
    int64_t vx = 0, vy = 0;
    int rc = !x || !y ? DAGGER_ENOMEM : dagger_fetch_i64(x, &vx);
    if (!rc)
        rc = dagger_fetch_i64(y, &vy);
    dagger_task_release(x);
    dagger_task_release(y);
    *out = dagger_i64(vx + vy);
    return rc;
}

TEST(tasks_fetched_by_their_parent_leave_it_the_last_reference)
{
    /* A child ends with its parent's handle held and nobody waiting (it mostly runs inline, in
     * the parent's fetch): the parent's release frees it. Then a task with a dependent, whose
     * handle goes before it ends. */
    dagger_ctx_t *ctx = test_ctx(2);
    for (int k = 0; k < 5; k++) {
        dagger_task_t *f = dagger_spawn(ctx, fib, (int64_t)15);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(f, &v));
        ASSERT_EQ(v, 610);
        dagger_task_release(f);
    }
    for (int k = 0; k < 20; k++) {
        dagger_task_t *t = dagger_spawn(ctx, plus1, (int64_t)k);
        dagger_task_t *c = dagger_spawn(ctx, plus1, t);
        dagger_task_release(t);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(c, &v));
        ASSERT_EQ(v, k + 2);
        dagger_task_release(c);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(handles_released_before_the_end_go_with_the_record_at_the_end,
          handles_released_after_the_end_from_several_threads_free_the_record_once,
          handles_released_while_the_task_ends_free_the_record_once,
          marks_past_the_words_capacity_fold_into_the_count,
          tasks_fetched_by_their_parent_leave_it_the_last_reference);
