/* tests/test_datadeps_modes.c - reduction (dagger_redux) and commute (dagger_commute) accesses
 * of datadeps regions, compared with sequential execution (also run under TSan).
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <time.h>

#include "harness.h"

#include "dagger/datadeps.h"

#define NBINS 16

static void add_u64(void *acc, const void *priv, size_t bytes, void *ud)
{
    uint64_t *a = acc;
    const uint64_t *p = priv;
    for (size_t i = 0; i < bytes / sizeof *a; i++)
        a[i] += p[i];
}

typedef struct hist_job {
    const uint32_t *data;
    size_t lo, hi;
} hist_job_t;

/* Count the values of data[lo, hi) into the task's private histogram. */
static int hist_part(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    uint64_t *h = dagger_arg_ptr(a, 0);
    const hist_job_t *j = dagger_arg_ptr(a, 1);
    for (size_t i = j->lo; i < j->hi; i++)
        h[j->data[i] % NBINS]++;
    return 0;
}

static int snapshot(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    memcpy(dagger_arg_ptr(a, 1), dagger_arg_ptr(a, 0), NBINS * sizeof(uint64_t));
    return 0;
}

static int double_all(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    uint64_t *h = dagger_arg_ptr(a, 0);
    for (int i = 0; i < NBINS; i++)
        h[i] *= 2;
    return 0;
}

static void hist_case(int threads)
{
    enum { N = 20000, PARTS = 40 };
    uint32_t *data = malloc(N * sizeof *data);
    uint64_t s = 12345;
    for (size_t i = 0; i < N; i++)
        data[i] = (uint32_t)test_rand(&s);
    /* sequential: first half counted, snapshot, doubled, second half counted */
    uint64_t want[NBINS] = {0}, want_snap[NBINS];
    for (size_t i = 0; i < N / 2; i++)
        want[data[i] % NBINS]++;
    memcpy(want_snap, want, sizeof want);
    for (int b = 0; b < NBINS; b++)
        want[b] *= 2;
    for (size_t i = N / 2; i < N; i++)
        want[data[i] % NBINS]++;

    dagger_ctx_t *ctx = test_ctx(threads);
    uint64_t hist[NBINS] = {0}, snap[NBINS];
    hist_job_t jobs[PARTS];
    dagger_redux_op_t op = {add_u64, NULL, NULL};
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    for (int p = 0; p < PARTS; p++) {
        jobs[p] = (hist_job_t){data, (size_t)p * (N / PARTS), (size_t)(p + 1) * (N / PARTS)};
        if (p == PARTS / 2) {
            dagger_task_release(dagger_datadeps_spawn(dd, snapshot, dagger_in(hist, sizeof hist),
                                                      dagger_out(snap, sizeof snap)));
            dagger_task_release(
                dagger_datadeps_spawn(dd, double_all, dagger_inout(hist, sizeof hist)));
        }
        dagger_task_release(
            dagger_datadeps_spawn(dd, hist_part, dagger_redux(hist, sizeof hist, &op), &jobs[p]));
    }
    dagger_datadeps_stats_t st;
    dagger_datadeps_stats(dd, &st);
    ASSERT_OK(dagger_datadeps_end(dd));
    ASSERT_EQ(memcmp(snap, want_snap, sizeof snap), 0);
    ASSERT_EQ(memcmp(hist, want, sizeof hist), 0);
    /* 40 counting tasks, the snapshot, the doubling and the first combine (the second one is
     * spawned by dagger_datadeps_end) */
    ASSERT_EQ(st.tasks, PARTS + 3);
    ASSERT_OK(dagger_ctx_close(ctx));
    free(data);
}

TEST(redux_histogram_matches_sequential) { hist_case(4); }
TEST(redux_histogram_one_thread) { hist_case(1); }

/* A max reduction with an initialiser, two operators on one buffer, and sub-ranges. */
static void max_i64(void *acc, const void *priv, size_t bytes, void *ud)
{
    int64_t *a = acc;
    const int64_t *p = priv;
    for (size_t i = 0; i < bytes / 8; i++)
        if (p[i] > a[i])
            a[i] = p[i];
}
static void init_min(void *priv, size_t bytes, void *ud)
{
    int64_t *p = priv;
    for (size_t i = 0; i < bytes / 8; i++)
        p[i] = INT64_MIN;
}
static int put_max(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *p = dagger_arg_ptr(a, 0), v = dagger_arg_i64(a, 1);
    if (*p != INT64_MIN && *p >= v)
        return dagger_fail(tc, DAGGER_ETASK, "private copy not initialised: %lld", (long long)*p);
    *p = v;
    return 0;
}
static int add_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    ++*(int64_t *)dagger_arg_ptr(a, 0);
    return 0;
}

TEST(redux_max_with_init_and_other_accesses)
{
    dagger_ctx_t *ctx = test_ctx(3);
    int64_t x[2] = {100, 7};
    dagger_redux_op_t mx = {max_i64, init_min, NULL};
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    for (int k = 0; k < 30; k++) /* max(100, 0..29) = 100 on x[0]; x[1] is untouched */
        dagger_task_release(dagger_datadeps_spawn(dd, put_max, dagger_redux(&x[0], 8, &mx), k));
    dagger_task_release(dagger_datadeps_spawn(dd, add_one, dagger_inout(&x[0], 8))); /* 101 */
    for (int k = 0; k < 30; k++) /* max(101, 90..209) = 209 */
        dagger_task_release(
            dagger_datadeps_spawn(dd, put_max, dagger_redux(&x[0], 8, &mx), 90 + 4 * k));
    dagger_task_release(dagger_datadeps_spawn(dd, add_one, dagger_inout(&x[1], 8)));
    ASSERT_OK(dagger_datadeps_end(dd));
    ASSERT_EQ(x[0], 206); /* 90 + 4 * 29 */
    ASSERT_EQ(x[1], 8);
    /* a tile is refused */
    double m[4];
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    dagger_ddarg_t bad = dagger_tile(DAGGER_ACCESS_REDUX, m, 2, 2, 2, sizeof(double));
    bad.value = dagger_ptr(&mx);
    dagger_task_t *t = dagger_datadeps_spawn(dd, put_max, bad, 1);
    ASSERT_ERR(dagger_datadeps_end(dd), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "a reduction needs a span");
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- commute */

typedef struct acct {
    int64_t balance; /* plain: only commute tasks touch it, one at a time */
    int64_t ops;
    _Atomic int inside;
    _Atomic int overlap; /* set when two commute tasks ran at once */
} acct_t;

static int deposit(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    acct_t *c = dagger_arg_ptr(a, 0);
    if (atomic_fetch_add(&c->inside, 1) != 0)
        atomic_store(&c->overlap, 1);
    int64_t b = c->balance;
    for (volatile int spin = 0; spin < 200; spin++) /* widen the window for a race */
        ;
    c->balance = b + dagger_arg_i64(a, 1);
    c->ops++;
    atomic_fetch_sub(&c->inside, 1);
    return 0;
}

static int read_balance(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const acct_t *c = dagger_arg_ptr(a, 0);
    *(int64_t *)dagger_arg_ptr(a, 1) = c->balance * 1000 + c->ops;
    return 0;
}

static void commute_case(int threads)
{
    dagger_ctx_t *ctx = test_ctx(threads);
    acct_t c;
    memset(&c, 0, sizeof c);
    int64_t seen[3];
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    int64_t want_bal = 0, want_ops = 0, want_seen[3];
    for (int round = 0; round < 3; round++) {
        for (int k = 1; k <= 25; k++) {
            dagger_task_release(dagger_datadeps_spawn(
                dd, deposit, dagger_commute(&c, offsetof(acct_t, inside)), k * (round + 1)));
            want_bal += k * (round + 1);
            want_ops++;
        }
        dagger_task_release(dagger_datadeps_spawn(dd, read_balance,
                                                  dagger_in(&c, offsetof(acct_t, inside)),
                                                  dagger_out(&seen[round], sizeof seen[0])));
        want_seen[round] = want_bal * 1000 + want_ops;
    }
    ASSERT_OK(dagger_datadeps_end(dd));
    ASSERT_EQ(atomic_load(&c.overlap), 0);
    ASSERT_EQ(c.balance, want_bal);
    for (int r = 0; r < 3; r++)
        ASSERT_EQ(seen[r], want_seen[r]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(commute_writers_exclusive_and_ordered_against_reads) { commute_case(4); }
TEST(commute_one_thread) { commute_case(1); }

/* The analysis: commute tasks wait for the write before them, not for each other; the read
 * after them waits for all. A gate keeps the first writer running so no task is dropped as
 * finished and the edge count is exact. */
static _Atomic int gate;
static int gated_write(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    for (int i = 0; i < 10000 && !atomic_load(&gate); i++) { /* bounded: 10 s */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    *(int64_t *)dagger_arg_ptr(a, 0) = 0;
    return 0;
}
static int copy_i64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *(int64_t *)dagger_arg_ptr(a, 1) = *(const int64_t *)dagger_arg_ptr(a, 0);
    return 0;
}
static int plus(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *(int64_t *)dagger_arg_ptr(a, 0) += dagger_arg_i64(a, 1);
    return 0;
}

TEST(commute_edges)
{
    dagger_ctx_t *ctx = test_ctx(2);
    int64_t v = 5, r = 0;
    atomic_store(&gate, 0);
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    dagger_task_release(dagger_datadeps_spawn(dd, gated_write, dagger_out(&v, sizeof v)));
    for (int k = 0; k < 10; k++)
        dagger_task_release(dagger_datadeps_spawn(dd, plus, dagger_commute(&v, sizeof v), k));
    dagger_task_release(
        dagger_datadeps_spawn(dd, copy_i64, dagger_in(&v, sizeof v), dagger_out(&r, sizeof r)));
    dagger_datadeps_stats_t st;
    dagger_datadeps_stats(dd, &st);
    atomic_store(&gate, 1);
    ASSERT_EQ(st.edges, 10 + 11);
    ASSERT_OK(dagger_datadeps_end(dd));
    ASSERT_EQ(r, 45);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Fail the n-th allocation of a region with reductions and commute tasks: the end reports 0 or
 * an error, never crashes, and nothing leaks (ASan). */
TEST(out_of_memory_in_a_region)
{
    int clean = 0;
    for (long n = 1; n < 2000 && clean < 3; n++) {
        dagger_ctx_t *ctx = test_ctx(2);
        /* warm both workers: their first fibers are allocated lazily and must not fail */
        dagger_task_t *w[2] = {dagger_spawn(ctx, copy_i64, &(int64_t){1}, &(int64_t){0}),
                               dagger_spawn(ctx, copy_i64, &(int64_t){1}, &(int64_t){0})};
        ASSERT_OK(dagger_wait(w[0]));
        ASSERT_OK(dagger_wait(w[1]));
        dagger_task_release(w[0]);
        dagger_task_release(w[1]);
        uint64_t hist[NBINS] = {0};
        uint32_t data[64];
        for (int i = 0; i < 64; i++)
            data[i] = (uint32_t)i;
        hist_job_t jobs[4];
        dagger_redux_op_t op = {add_u64, NULL, NULL};
        acct_t c;
        memset(&c, 0, sizeof c);
        dagger_fault_alloc(n);
        dagger_datadeps_t *dd;
        bool lost = false; /* a spawn that returns NULL was never part of the region */
        dagger_task_t *t;
        int rc = dagger_datadeps_begin(ctx, 0, &dd);
        if (!rc) {
            for (int p = 0; p < 4; p++) {
                jobs[p] = (hist_job_t){data, (size_t)p * 16, (size_t)(p + 1) * 16};
                t = dagger_datadeps_spawn(dd, hist_part, dagger_redux(hist, sizeof hist, &op),
                                          &jobs[p]);
                lost |= !t;
                dagger_task_release(t);
                t = dagger_datadeps_spawn(dd, deposit, dagger_commute(&c, offsetof(acct_t, inside)),
                                          p);
                lost |= !t;
                dagger_task_release(t);
            }
            t = dagger_datadeps_spawn(dd, double_all, dagger_inout(hist, sizeof hist));
            lost |= !t;
            dagger_task_release(t);
            rc = dagger_datadeps_end(dd);
        }
        dagger_fault_alloc(0);
        ASSERT_TRUE(rc <= 0);
        if (rc == 0 && !lost) {
            if (hist[0] != 8)
                fail_msg("n=%ld: hist[0] = %llu", n, (unsigned long long)hist[0]);
            ASSERT_EQ(c.balance, 6);
        }
        clean = rc == 0 && !lost ? clean + 1 : 0;
        ASSERT_OK(dagger_ctx_close(ctx));
    }
    ASSERT_EQ(clean, 3);
}

TEST_LIST(redux_histogram_matches_sequential, redux_histogram_one_thread,
          redux_max_with_init_and_other_accesses,
          commute_writers_exclusive_and_ordered_against_reads, commute_one_thread, commute_edges,
          out_of_memory_in_a_region)
