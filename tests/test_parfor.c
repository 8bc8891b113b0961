/* tests/test_parfor.c - dagger_parallel_for (issue 17): every index in exactly one leaf for many
 * (begin, end, grain) and thread counts, the leaf counts of the automatic grain, nesting inside
 * a task and inside a leaf (on one thread too), open task-queue blocks of the caller, errors of
 * a leaf (code, message naming the range, later leaves skipped) and bad arguments.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---------------------------------------------------------------- coverage */

/* What the leaves saw: a hit count per index, the leaves, their smallest and largest size. */
struct cover {
    int64_t begin, end, grain;
    _Atomic int *hits;     /* index i - begin */
    _Atomic int leaves;    /* calls of the leaf */
    _Atomic int bad;       /* leaves with lo >= hi, outside [begin, end) or larger than grain */
    _Atomic int64_t steps; /* nested runs: indices handled by inner leaves */
};

static int cover_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    (void)tc;
    struct cover *c = ud;
    atomic_fetch_add(&c->leaves, 1);
    if (lo >= hi || lo < c->begin || hi > c->end || (c->grain > 0 && hi - lo > c->grain))
        atomic_fetch_add(&c->bad, 1);
    for (int64_t i = lo; i < hi && i >= c->begin && i < c->end; i++)
        atomic_fetch_add(&c->hits[i - c->begin], 1);
    return 0;
}

/* Run one (begin, end, grain) on `ctx` and check that every index was hit exactly once. */
static void check_cover(dagger_ctx_t *ctx, int64_t begin, int64_t end, int64_t grain)
{
    struct cover c = {.begin = begin, .end = end, .grain = grain};
    size_t n = (size_t)(end - begin);
    c.hits = calloc(n ? n : 1, sizeof *c.hits);
    ASSERT_PTR(c.hits);
    ASSERT_OK(dagger_parallel_for(ctx, begin, end, grain, cover_leaf, &c));
    ASSERT_EQ(atomic_load(&c.bad), 0);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += atomic_load(&c.hits[i]) != 1;
    if (wrong)
        fail_msg("[%lld, %lld) grain %lld: %zu indices not hit exactly once", (long long)begin,
                 (long long)end, (long long)grain, wrong);
    if (n) {
        ASSERT_TRUE(atomic_load(&c.leaves) >= 1);
        ASSERT_TRUE(atomic_load(&c.leaves) <= (int)n);
        if (grain > 0)
            ASSERT_TRUE((int64_t)atomic_load(&c.leaves) >= ((int64_t)n + grain - 1) / grain);
    } else {
        ASSERT_EQ(atomic_load(&c.leaves), 0);
    }
    free(c.hits);
}

TEST(every_index_exactly_once)
{
    static const int64_t cases[][3] = {
        {0, 1, 0},
        {0, 1, 1},
        {0, 1, 100},
        {-5, 5, 1},
        {-1000, 37, 0},
        {-1000, 37, 7},
        {0, 1000, 1},
        {0, 1000, 5000},
        {3, 4, 100},
        {-7, -3, 2},
        {0, 100000, 0},
        {0, 100000, 64},
        {1, 100001, 999},
        {-64, 64, 3},
        {10, 10, 0},
        {-3, -3, 5},
        {0, 2, 1},
        {0, 3, 2},
        {5, 12345, -1},
        {INT64_MAX - 10, INT64_MAX, 3},
        {INT64_MIN, INT64_MIN + 10, 0},
        {0, 300000, 1}, /* more than 16 halvings: a task hands the rest of its range over */
    };
    static const int threads[] = {1, 2, 4};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        dagger_ctx_t *ctx = test_ctx(threads[t]);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            check_cover(ctx, cases[i][0], cases[i][1], cases[i][2]);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* The leaf sizes of [INT64_MIN, INT64_MAX) add up to 2^64 - 1: halving never overflows. */
struct span {
    _Atomic uint64_t total;
    _Atomic int64_t lowest, highest;
    _Atomic int leaves;
};

static int span_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    (void)tc;
    struct span *s = ud;
    atomic_fetch_add(&s->total, (uint64_t)hi - (uint64_t)lo);
    atomic_fetch_add(&s->leaves, 1);
    int64_t cur = atomic_load(&s->lowest);
    while (lo < cur && !atomic_compare_exchange_weak(&s->lowest, &cur, lo))
        ;
    cur = atomic_load(&s->highest);
    while (hi > cur && !atomic_compare_exchange_weak(&s->highest, &cur, hi))
        ;
    return 0;
}

TEST(whole_int64_range_splits_without_overflow)
{
    dagger_ctx_t *ctx = test_ctx(2);
    struct span s = {.lowest = INT64_MAX, .highest = INT64_MIN};
    ASSERT_OK(dagger_parallel_for(ctx, INT64_MIN, INT64_MAX, 0, span_leaf, &s));
    ASSERT_TRUE(atomic_load(&s.total) == UINT64_MAX);
    ASSERT_TRUE(atomic_load(&s.lowest) == INT64_MIN);
    ASSERT_TRUE(atomic_load(&s.highest) == INT64_MAX);
    ASSERT_TRUE(atomic_load(&s.leaves) >= 8); /* two workers: at least 2^3 leaves */
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The automatic grain: 4 leaves per worker to start with (2^(ceil(log2 P) + 2)); steals only
 * add leaves, and on one thread nothing is stolen. */
TEST(automatic_grain_leaf_counts)
{
    static const int threads[] = {1, 3, 4};
    static const int at_least[] = {4, 16, 16};
    for (int k = 0; k < 3; k++) {
        dagger_ctx_t *ctx = test_ctx(threads[k]);
        struct cover c = {.begin = 0, .end = 100000};
        c.hits = calloc(100000, sizeof *c.hits);
        ASSERT_PTR(c.hits);
        ASSERT_OK(dagger_parallel_for(ctx, 0, 100000, 0, cover_leaf, &c));
        if (threads[k] == 1)
            ASSERT_EQ(atomic_load(&c.leaves), 4);
        else
            ASSERT_TRUE(atomic_load(&c.leaves) >= at_least[k]);
        free(c.hits);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- lazy splits */

/* Per index: the id of the task that ran its leaf, and the worker; leaves below `slow` sleep. */
struct who {
    uint64_t *task;
    int *thread;
    int64_t slow;
    long sleep_ns;
};

static int who_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    struct who *w = ud;
    for (int64_t i = lo; i < hi; i++) {
        if (i < w->slow) {
            struct timespec ts = {0, w->sleep_ns};
            nanosleep(&ts, NULL);
        }
        w->task[i] = dagger_tc_id(tc);
        w->thread[i] = dagger_tc_thread(tc);
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* How many different values `v[0..n)` holds (sorts a copy). */
static size_t distinct_u64(const uint64_t *v, size_t n)
{
    uint64_t *c = malloc(n * sizeof *c);
    ASSERT_PTR(c);
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_u64);
    size_t d = n ? 1 : 0;
    for (size_t i = 1; i < n; i++)
        d += c[i] != c[i - 1];
    free(c);
    return d;
}

/* A task runs many leaves of an explicit grain in turn and hands a pending range to a child
 * task only when its worker's deque is empty. One worker has no thief: a grain-1 loop over
 * 100000 indices runs on the 4 tasks of the first split (2^(ceil(log2 P) + 2) for P workers,
 * as the automatic grain), not on 100000 tasks, and its leaves keep the halving's boundaries (the
 * grain-7 leaf count below is that of halving 1000 down to 7 or fewer). */
TEST(explicit_grain_leaves_share_tasks_on_one_thread)
{
    dagger_ctx_t *ctx = test_ctx(1);
    enum { N = 100000 };
    struct who w = {.slow = 0};
    w.task = calloc(N, sizeof *w.task);
    w.thread = calloc(N, sizeof *w.thread);
    ASSERT_PTR(w.task);
    ASSERT_PTR(w.thread);
    ASSERT_OK(dagger_parallel_for(ctx, 0, N, 1, who_leaf, &w));
    ASSERT_EQ(distinct_u64(w.task, N), 4);
    for (int64_t i = 0; i < N; i++)
        ASSERT_EQ(w.thread[i], 0);
    struct cover c = {.begin = 0, .end = 1000, .grain = 7};
    c.hits = calloc(1000, sizeof *c.hits);
    ASSERT_PTR(c.hits);
    ASSERT_OK(dagger_parallel_for(ctx, 0, 1000, 7, cover_leaf, &c));
    ASSERT_EQ(atomic_load(&c.leaves), 232); /* halves of 1000 down to 7 or fewer: c(n) = 1 for n <=
                                               7, else c(n - n / 2) + c(n / 2) */
    ASSERT_EQ(atomic_load(&c.bad), 0);
    free(c.hits);
    free(w.task);
    free(w.thread);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Two workers, the slow leaves all in the root's first quarter: the other worker runs the rest,
 * runs dry, and the root hands it pending ranges of the slow part, so both workers run slow
 * leaves (about half each; at least a sixteenth is asked); still far fewer tasks than leaves
 * (about 60 for the 4096). */
TEST(explicit_grain_hands_pending_ranges_to_an_idle_worker)
{
    dagger_ctx_t *ctx = test_ctx(2);
    enum { N = 4096, SLOW = 256 };
    struct who w = {.slow = SLOW, .sleep_ns = 200000};
    w.task = calloc(N, sizeof *w.task);
    w.thread = calloc(N, sizeof *w.thread);
    ASSERT_PTR(w.task);
    ASSERT_PTR(w.thread);
    ASSERT_OK(dagger_parallel_for(ctx, 0, N, 1, who_leaf, &w));
    int on[2] = {0, 0};
    for (int64_t i = 0; i < SLOW; i++) {
        ASSERT_TRUE(w.thread[i] == 0 || w.thread[i] == 1);
        on[w.thread[i]]++;
    }
    if (on[0] < SLOW / 16 || on[1] < SLOW / 16) /* about half each when both run */
        fail_msg("the %d slow leaves ran %d on worker 0 and %d on worker 1", SLOW, on[0], on[1]);
    size_t tasks = distinct_u64(w.task, N);
    if (tasks >= N / 8)
        fail_msg("%zu tasks for %d leaves of one index", tasks, N);
    free(w.task);
    free(w.thread);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- empty range, bad arguments */

static _Atomic int calls;

static int count_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    (void)tc;
    (void)lo;
    (void)hi;
    (void)ud;
    atomic_fetch_add(&calls, 1);
    return 0;
}

TEST(empty_range_calls_nothing)
{
    dagger_ctx_t *ctx = test_ctx(2);
    atomic_store(&calls, 0);
    ASSERT_OK(dagger_parallel_for(ctx, 0, 0, 0, count_leaf, NULL));
    ASSERT_OK(dagger_parallel_for(ctx, -5, -5, 1, count_leaf, NULL));
    ASSERT_OK(dagger_parallel_for(ctx, INT64_MAX, INT64_MAX, 0, count_leaf, NULL));
    ASSERT_EQ(atomic_load(&calls), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(bad_arguments_name_the_argument)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&calls, 0);
    ASSERT_ERR(dagger_parallel_for(NULL, 0, 10, 0, count_leaf, NULL), DAGGER_EINVAL);
    ASSERT_STR_EQ(dagger_last_errmsg(), "dagger_parallel_for: the context is NULL");
    ASSERT_ERR(dagger_parallel_for(ctx, 0, 10, 0, NULL, NULL), DAGGER_EINVAL);
    ASSERT_STR_EQ(dagger_last_errmsg(), "dagger_parallel_for: fn is NULL");
    ASSERT_ERR(dagger_parallel_for(ctx, 5, 3, 0, count_leaf, NULL), DAGGER_EINVAL);
    ASSERT_STR_EQ(dagger_last_errmsg(), "dagger_parallel_for: end 3 is before begin 5 (an empty "
                                        "range has end == begin)");
    ASSERT_EQ(atomic_load(&calls), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- reduction */

/* Each leaf sums i * i mod 1000003 over its range locally and adds the partial once, to the
 * total and to the slot of the worker it runs on (leaves always run on workers). */
struct reduce {
    _Atomic int64_t sum;
    _Atomic int partials;
    _Atomic int64_t per_worker[2];
    _Atomic int off_worker; /* leaves that reported no worker thread */
};

static int64_t sq_mod(int64_t i) { return (i * i) % 1000003; }

static int reduce_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    struct reduce *r = ud;
    int64_t s = 0;
    for (int64_t i = lo; i < hi; i++)
        s += sq_mod(i);
    atomic_fetch_add(&r->sum, s);
    atomic_fetch_add(&r->partials, 1);
    int w = dagger_tc_thread(tc);
    if (w >= 0 && w < 2)
        atomic_fetch_add(&r->per_worker[w], s);
    else
        atomic_fetch_add(&r->off_worker, 1);
    return 0;
}

TEST(sum_reduction_by_leaf_partials)
{
    int64_t want = 0;
    for (int64_t i = -5000; i < 200000; i++)
        want += sq_mod(i);
    static const int64_t grains[] = {0, 1, 100, 1000000};
    for (int t = 1; t <= 2; t++) {
        dagger_ctx_t *ctx = test_ctx(t);
        for (size_t g = 0; g < sizeof grains / sizeof *grains; g++) {
            struct reduce r = {0};
            ASSERT_OK(dagger_parallel_for(ctx, -5000, 200000, grains[g], reduce_leaf, &r));
            ASSERT_TRUE(atomic_load(&r.sum) == want);
            ASSERT_EQ(atomic_load(&r.off_worker), 0);
            ASSERT_TRUE(atomic_load(&r.per_worker[0]) + atomic_load(&r.per_worker[1]) == want);
            if (grains[g] == 1000000)
                ASSERT_EQ(atomic_load(&r.partials), 1);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- nesting */

#define OUTER 8
#define INNER 100

/* Inner leaf: hits[o * INNER + i] for the row o of the outer leaf (ud points to the row). */
struct row {
    _Atomic int *hits;
};

static int inner_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    (void)tc;
    struct row *r = ud;
    for (int64_t i = lo; i < hi; i++)
        atomic_fetch_add(&r->hits[i], 1);
    return 0;
}

/* Outer leaf: a parallel_for of INNER indices (grain 3) per outer index. */
static int outer_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    _Atomic int *hits = ud;
    for (int64_t o = lo; o < hi; o++) {
        struct row r = {hits + o * INNER};
        int rc = dagger_parallel_for(dagger_tc_ctx(tc), 0, INNER, 3, inner_leaf, &r);
        if (rc)
            return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    }
    return 0;
}

static void check_hits(_Atomic int *hits, int n)
{
    int wrong = 0;
    for (int i = 0; i < n; i++)
        wrong += atomic_load(&hits[i]) != 1;
    ASSERT_EQ(wrong, 0);
}

/* A task body that runs the nested loops: arg 0 the hit array. */
static int nested_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = dagger_parallel_for(dagger_tc_ctx(tc), 0, OUTER, 1, outer_leaf, dagger_arg_ptr(a, 0));
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    *out = dagger_i64(42);
    return 0;
}

TEST(nested_in_a_leaf_and_in_a_task_on_one_and_two_threads)
{
    for (int t = 1; t <= 2; t++) {
        dagger_ctx_t *ctx = test_ctx(t);
        _Atomic int hits[OUTER * INNER];
        /* From main, a leaf that runs a parallel_for itself. */
        memset(hits, 0, sizeof hits);
        ASSERT_OK(dagger_parallel_for(ctx, 0, OUTER, 1, outer_leaf, hits));
        check_hits(hits, OUTER * INNER);
        /* From inside a task: the task suspends (or helps), the worker is never blocked. */
        memset(hits, 0, sizeof hits);
        dagger_task_t *task = dagger_spawn(ctx, nested_task, (void *)hits);
        ASSERT_PTR(task);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(task, &v));
        ASSERT_EQ(v, 42);
        dagger_task_release(task);
        check_hits(hits, OUTER * INNER);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* A parallel_for inside an open BULK block (which holds the tasks spawned in it until its end)
 * and a sync group: its leaves are neither held nor counted by them. */
TEST(open_blocks_of_the_caller_do_not_hold_the_leaves)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&calls, 0);
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
    ASSERT_OK(dagger_parallel_for(ctx, 0, 80, 10, count_leaf, NULL)); /* 8 leaves of 10 */
    ASSERT_EQ(atomic_load(&calls), 8);
    ASSERT_OK(dagger_queue_end(ctx));
    ASSERT_OK(dagger_sync_begin(ctx));
    ASSERT_OK(dagger_parallel_for(ctx, 0, 80, 10, count_leaf, NULL));
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(atomic_load(&calls), 16);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- errors */

/* Fails at index `bad` (ud): with dagger_fail, by returning DAGGER_EIO, or by returning 7. */
struct failing {
    int64_t bad;
    int how; /* 0 dagger_fail, 1 return DAGGER_EIO, 2 return 7 */
    _Atomic int ran;
};

static int failing_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    struct failing *f = ud;
    atomic_fetch_add(&f->ran, 1);
    if (lo <= f->bad && f->bad < hi) {
        if (f->how == 0)
            return dagger_fail(tc, DAGGER_ERANGE, "bad index %lld", (long long)f->bad);
        return f->how == 1 ? DAGGER_EIO : 7;
    }
    return 0;
}

TEST(failing_leaf_reports_code_and_range_and_skips_the_rest)
{
    /* One thread, grain 1: leaves run in index order (each task keeps the lower half and
     * joins its children newest first), so the failure at 500 skips every later leaf. */
    dagger_ctx_t *ctx = test_ctx(1);
    struct failing f = {.bad = 500, .how = 0};
    ASSERT_ERR(dagger_parallel_for(ctx, 0, 10000, 1, failing_leaf, &f), DAGGER_ERANGE);
    ASSERT_STR_EQ(dagger_last_errmsg(), "parallel_for [500, 501): bad index 500");
    ASSERT_EQ(atomic_load(&f.ran), 501);

    struct failing g = {.bad = 123, .how = 1};
    ASSERT_ERR(dagger_parallel_for(ctx, 100, 200, 10, failing_leaf, &g), DAGGER_EIO);
    char want[256];
    snprintf(want, sizeof want, "parallel_for [118, 125): the leaf returned DAGGER_EIO (%s)",
             dagger_strerror(DAGGER_EIO));
    ASSERT_STR_EQ(dagger_last_errmsg(), want);
    ASSERT_TRUE(atomic_load(&g.ran) < 16);

    struct failing h = {.bad = -1, .how = 2};
    ASSERT_ERR(dagger_parallel_for(ctx, -4, 4, 0, failing_leaf, &h), DAGGER_ETASK);
    ASSERT_STR_EQ(dagger_last_errmsg(), "parallel_for [-2, 0): the leaf returned 7");
    /* The failed leaves' tasks were read by their parents: no failure is left unfetched. */
    ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(failing_leaf_on_two_threads_reports_one_error)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int rep = 0; rep < 20; rep++) {
        struct failing f = {.bad = 777, .how = 0};
        ASSERT_ERR(dagger_parallel_for(ctx, 0, 5000, 1, failing_leaf, &f), DAGGER_ERANGE);
        ASSERT_STR_EQ(dagger_last_errmsg(), "parallel_for [777, 778): bad index 777");
    }
    ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A failure of an inner parallel_for travels out through the outer leaf and the task. */
static int failing_outer_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    for (int64_t o = lo; o < hi; o++) {
        struct failing f = {.bad = o == 3 ? 42 : -1, .how = 0};
        int rc = dagger_parallel_for(dagger_tc_ctx(tc), 0, INNER, 5, failing_leaf, &f);
        if (rc)
            return dagger_fail(tc, rc, "row %lld: %s", (long long)o, dagger_last_errmsg());
    }
    (void)ud;
    return 0;
}

static int failing_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    int rc = dagger_parallel_for(dagger_tc_ctx(tc), 0, OUTER, 1, failing_outer_leaf, NULL);
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    return 0;
}

TEST(nested_failure_reaches_the_fetch)
{
    for (int t = 1; t <= 2; t++) {
        dagger_ctx_t *ctx = test_ctx(t);
        dagger_task_t *task = dagger_spawn(ctx, failing_task);
        ASSERT_PTR(task);
        ASSERT_ERR(dagger_fetch(task, NULL), DAGGER_ERANGE);
        ASSERT_STR_HAS(dagger_task_errmsg(task), "parallel_for [3, 4): row 3: parallel_for "
                                                 "[40, 43): bad index 42");
        dagger_task_release(task);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* Cancel: the leaf at index 10 tells main, which cancels the calling task; every leaf from 10 on
 * waits for that cancel before it counts, so at most one leaf per thread is past its check when
 * the cancel comes, and the range tasks after it see the cancel and skip their leaves. */
struct cancelling {
    _Atomic int reached, cancelled, ran;
    int rc;
    char msg[256];
};

static int cancelling_leaf(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    (void)tc;
    struct cancelling *c = ud;
    for (int64_t i = lo; i < hi; i++) {
        if (i == 10)
            atomic_store(&c->reached, 1);
        while (i >= 10 && !atomic_load(&c->cancelled))
            ;
        atomic_fetch_add(&c->ran, 1);
    }
    return 0;
}

static int cancelling_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct cancelling *c = dagger_arg_ptr(a, 0);
    c->rc = dagger_parallel_for(dagger_tc_ctx(tc), 0, 1000, 1, cancelling_leaf, c);
    snprintf(c->msg, sizeof c->msg, "%s", c->rc ? dagger_last_errmsg() : "");
    return c->rc ? dagger_fail(tc, c->rc, "%s", c->msg) : 0;
}

TEST(cancel_of_the_calling_task_stops_the_leaves)
{
    for (int t = 1; t <= 2; t++) {
        dagger_ctx_t *ctx = test_ctx(t);
        struct cancelling c;
        memset(&c, 0, sizeof c);
        dagger_task_t *task = dagger_spawn(ctx, cancelling_task, (void *)&c);
        ASSERT_PTR(task);
        while (!atomic_load(&c.reached))
            ;
        ASSERT_OK(dagger_cancel(task));
        atomic_store(&c.cancelled, 1);
        ASSERT_ERR(dagger_fetch(task, NULL), DAGGER_ECANCELED);
        ASSERT_EQ(c.rc, DAGGER_ECANCELED);
        ASSERT_STR_HAS(c.msg, "parallel_for [");
        char want[64];
        snprintf(want, sizeof want, "): the calling task %llu was cancelled",
                 (unsigned long long)dagger_task_id(task));
        ASSERT_STR_HAS(c.msg, want);
        if (t == 1) /* one thread: leaves run in index order, so 0..10 ran and nothing after */
            ASSERT_EQ(atomic_load(&c.ran), 11);
        else /* 0..9 at most, and the leaves in flight: one per thread */
            ASSERT_TRUE(atomic_load(&c.ran) <= 10 + t);
        dagger_task_release(task);
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST_LIST(every_index_exactly_once, whole_int64_range_splits_without_overflow,
          automatic_grain_leaf_counts, empty_range_calls_nothing, bad_arguments_name_the_argument,
          sum_reduction_by_leaf_partials, nested_in_a_leaf_and_in_a_task_on_one_and_two_threads,
          open_blocks_of_the_caller_do_not_hold_the_leaves,
          failing_leaf_reports_code_and_range_and_skips_the_rest,
          failing_leaf_on_two_threads_reports_one_error, nested_failure_reaches_the_fetch,
          cancel_of_the_calling_task_stops_the_leaves,
          explicit_grain_leaves_share_tasks_on_one_thread,
          explicit_grain_hands_pending_ranges_to_an_idle_worker)
