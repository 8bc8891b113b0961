/* tests/test_mpi_ddmove.c - how a datadeps region moves data and orders work across ranks
 * (label mpi): the priority of a task sent to another rank holds there, a chunk read on another
 * rank is pulled there once per version (however many tasks read it there), and a failure of a
 * chunk's writer reaches its readers on every rank through the copies.
 *
 * Driver mode, as tests/test_mpi.c: rank 0 runs the case; the other ranks serve. Runs on 2 ranks
 * (test_mpi_ddmove) and 4 (test_mpi_ddmove4), one worker per rank. Counts come from the backend's
 * own counters (dagger__mpi_bytes_pulled, dagger__mpi_served_total), read on each rank by a task
 * that runs there.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "dagger/chunk.h"
#include "dagger/datadeps.h"
#include "harness.h"
#include "mpi_harness.h"
#include "net/mpi/mpi_int.h"

/* ---------------------------------------------------------------- priorities on another rank */

static _Atomic int64_t run_seq; /* per process: the order tasks ran in on this rank */

/* The tasks served here so far, this one included: it waits until every task that came (this
 * one too) is counted as spawned. */
static int served_here(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    for (int i = 0; i < 20000; i++) {
        uint64_t in, spawned = dagger__mpi_served_total(dagger_tc_ctx(tc), &in);
        if (spawned == in) {
            *out = dagger_i64((int64_t)spawned);
            return 0;
        }
        usleep(1000);
    }
    return dagger_fail(tc, DAGGER_ETIMEDOUT, "served tasks not all spawned after 20 s");
}

/* Hold this rank's only worker until `want` tasks were served here, so that the tasks sent
 * after this one all wait in its pool when it ends. */
static int gate(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    uint64_t want = (uint64_t)dagger_arg_i64(a, 0);
    for (int i = 0; i < 20000; i++) {
        if (dagger__mpi_served_total(dagger_tc_ctx(tc), NULL) >= want)
            return 0;
        usleep(1000);
    }
    return dagger_fail(tc, DAGGER_ETIMEDOUT, "only %llu of %llu tasks came in 20 s",
                       (unsigned long long)dagger__mpi_served_total(dagger_tc_ctx(tc), NULL),
                       (unsigned long long)want);
}

static int ordered(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    *out = dagger_i64(atomic_fetch_add(&run_seq, 1));
    return 0;
}

/* Tasks spawned on rank 1 at priorities 2, 0, 4, 1, 3 while its only worker is held: they run
 * there highest priority first, as they would on one rank (neither in the order they came nor
 * in its reverse). */
TEST(priority_holds_on_another_rank)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    enum { N = 5 };
    int64_t base;
    dagger_task_t *b = spawn_on(ctx, 1, served_here, "served_here", NULL, 0);
    ASSERT_OK(dagger_fetch_i64(b, &base));
    dagger_task_release(b);
    /* The gate goes first (it comes first, and at the top priority: a worker that wakes late
     * picks it before any other task that came meanwhile). */
    dagger_scope_t *w = dagger_scope_worker(1);
    dagger_task_opts_t go;
    dagger_task_opts_init(&go);
    go.scope = w;
    go.name = "gate";
    go.priority = 100;
    dagger_task_t *g =
        dagger_spawn_impl(ctx, &go, gate, NULL, (dagger_value_t[]){dagger_i64(base + 1 + N)}, 1);
    ASSERT_PTR(g);
    dagger_task_t *t[N];
    static const int spawn_order[N] = {2, 0, 4, 1, 3};
    for (int i = 0; i < N; i++) {
        int p = spawn_order[i];
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.scope = w;
        o.name = "ordered";
        o.priority = p;
        t[p] = dagger_spawn_impl(ctx, &o, ordered, NULL, NULL, 0);
        ASSERT_PTR(t[p]);
    }
    dagger_scope_release(w);
    ASSERT_OK(dagger_wait(g));
    ASSERT_OK(dagger_task_error(g));
    dagger_task_release(g);
    int64_t seq[N];
    for (int p = 0; p < N; p++) {
        ASSERT_OK(dagger_fetch_i64(t[p], &seq[p]));
        dagger_task_release(t[p]);
    }
    for (int p = 1; p < N; p++)
        if (seq[p] >= seq[p - 1]) /* priority p ran before priority p - 1 */
            fail_msg("run order by priority 0..4: %lld %lld %lld %lld %lld (base %lld)",
                     (long long)seq[0], (long long)seq[1], (long long)seq[2], (long long)seq[3],
                     (long long)seq[4], (long long)base);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- copies across ranks */

enum { S = 16384 }; /* doubles per vector: 128 KiB, larger than a message carries inline */

static int make_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double v = dagger_arg_f64(a, 0);
    dagger_chunk_t *c;
    size_t shape[1] = {S};
    int rc = dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F64, 1, shape, &c);
    if (rc)
        return dagger_fail(tc, rc, "vector: %s", dagger_last_errmsg());
    double *x = dagger_chunk_data(c);
    for (size_t i = 0; i < S; i++)
        x[i] = v;
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* x += v */
static int bump(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    double *x = dagger_arg_buf(a, 0, NULL);
    if (!x)
        return DAGGER_ETYPE;
    for (size_t i = 0; i < S; i++)
        x[i] += dagger_arg_f64(a, 1);
    return 0;
}

/* x += y */
static int add_to(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    double *x = dagger_arg_buf(a, 0, NULL);
    size_t n = 0;
    const double *y = dagger_arg_buf(a, 1, &n);
    if (!x || !y)
        return DAGGER_ETYPE;
    if (n != S * sizeof(double))
        return dagger_fail(tc, DAGGER_EINVAL, "add_to: %zu bytes read", n);
    for (size_t i = 0; i < S; i++)
        x[i] += y[i];
    return 0;
}

static int fail_here(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    return dagger_fail(tc, DAGGER_ETASK, "boom on rank %d", dagger_ctx_rank(dagger_tc_ctx(tc)));
}

static int pulled_here(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    *out = dagger_i64((int64_t)dagger__mpi_bytes_pulled(dagger_tc_ctx(tc)));
    return 0;
}

static int64_t pulled_on(dagger_ctx_t *ctx, int rank)
{
    if (rank == 0)
        return (int64_t)dagger__mpi_bytes_pulled(ctx);
    dagger_task_t *t = spawn_on(ctx, rank, pulled_here, "pulled_here", NULL, 0);
    int64_t n;
    ASSERT_OK(dagger_fetch_i64(t, &n));
    dagger_task_release(t);
    return n;
}

static dagger_chunk_t *vec_on(dagger_ctx_t *ctx, int rank, double v)
{
    return mutable_on(ctx, rank, make_vec, (dagger_value_t[]){dagger_f64(v)}, 1);
}

/* Every element of `c` (read where it lives) equals `want`. */
static void check_vec(dagger_ctx_t *ctx, dagger_chunk_t *c, double want)
{
    double x[S];
    read_back(ctx, c, x, sizeof x);
    for (size_t i = 0; i < S; i++)
        ASSERT_NEAR(x[i], want, 0.0);
}

/* A on rank 0 is written twice; between the writes K tasks on every other rank read it (each
 * adds it to a vector of its rank). C on rank 1, the same, read by K tasks on rank 0. Each rank
 * pulls each version it reads once: 2 x 128 KiB, not 2 x K x 128 KiB. */
TEST(remote_reads_pulled_once_per_version)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    enum { K = 3, MAXR = 8 };
    int n = dagger_ctx_nranks(ctx);
    ASSERT_TRUE(n <= MAXR);
    dagger_chunk_t *a = vec_on(ctx, 0, 1.0), *c = vec_on(ctx, 1, 5.0), *d = vec_on(ctx, 0, 0.0);
    dagger_chunk_t *b[MAXR] = {0};
    int64_t before[MAXR];
    for (int r = 1; r < n; r++)
        b[r] = vec_on(ctx, r, 0.0);
    for (int r = 0; r < n; r++)
        before[r] = pulled_on(ctx, r);
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    for (int version = 0; version < 2; version++) {
        double step = version ? 10.0 : 1.0;
        dagger_task_release(dagger_datadeps_spawn(dd, bump, dagger_ddchunk(DAGGER_ACCESS_INOUT, a),
                                                  dagger_ddval(dagger_f64(step))));
        dagger_task_release(dagger_datadeps_spawn(dd, bump, dagger_ddchunk(DAGGER_ACCESS_INOUT, c),
                                                  dagger_ddval(dagger_f64(1.0))));
        for (int k = 0; k < K; k++) {
            for (int r = 1; r < n; r++)
                dagger_task_release(dagger_datadeps_spawn(dd, add_to,
                                                          dagger_ddchunk(DAGGER_ACCESS_INOUT, b[r]),
                                                          dagger_ddchunk(DAGGER_ACCESS_IN, a)));
            dagger_task_release(dagger_datadeps_spawn(dd, add_to,
                                                      dagger_ddchunk(DAGGER_ACCESS_INOUT, d),
                                                      dagger_ddchunk(DAGGER_ACCESS_IN, c)));
        }
    }
    ASSERT_OK(dagger_datadeps_end(dd));
    for (int r = 0; r < n; r++) /* before check_vec, whose results rank 0 pulls */
        ASSERT_EQ(pulled_on(ctx, r) - before[r], 2 * S * (int64_t)sizeof(double));
    /* A is 2 then 12, C 6 then 7 */
    for (int r = 1; r < n; r++)
        check_vec(ctx, b[r], K * 2.0 + K * 12.0);
    check_vec(ctx, d, K * 6.0 + K * 7.0);
    check_vec(ctx, a, 12.0);
    check_vec(ctx, c, 7.0);
    for (int r = 1; r < n; r++)
        dagger_chunk_release(b[r]);
    dagger_chunk_release(a);
    dagger_chunk_release(c);
    dagger_chunk_release(d);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A writer that fails, on rank 0 and on rank 1: its readers on the other rank (behind a copy,
 * and for rank 1 a relay) fail upstream with its message, and do not run. */
TEST(writer_error_reaches_remote_readers)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    dagger_chunk_t *a = vec_on(ctx, 0, 1.0), *b = vec_on(ctx, 1, 0.0);
    dagger_chunk_t *c = vec_on(ctx, 1, 1.0), *d = vec_on(ctx, 0, 0.0);
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    dagger_task_release(
        dagger_datadeps_spawn(dd, fail_here, dagger_ddchunk(DAGGER_ACCESS_INOUT, a)));
    dagger_task_release(
        dagger_datadeps_spawn(dd, fail_here, dagger_ddchunk(DAGGER_ACCESS_INOUT, c)));
    dagger_task_t *rb = dagger_datadeps_spawn(dd, add_to, dagger_ddchunk(DAGGER_ACCESS_INOUT, b),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, a));
    dagger_task_t *rd = dagger_datadeps_spawn(dd, add_to, dagger_ddchunk(DAGGER_ACCESS_INOUT, d),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, c));
    ASSERT_ERR(dagger_datadeps_end(dd), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_last_errmsg(), "boom on rank 0");
    ASSERT_ERR(dagger_task_error(rb), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(rb), "boom on rank 0");
    ASSERT_ERR(dagger_task_error(rd), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(rd), "boom on rank 1");
    dagger_task_release(rb);
    dagger_task_release(rd);
    check_vec(ctx, b, 0.0); /* the readers did not run */
    check_vec(ctx, d, 0.0);
    dagger_chunk_release(a);
    dagger_chunk_release(b);
    dagger_chunk_release(c);
    dagger_chunk_release(d);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(priority_holds_on_another_rank, remote_reads_pulled_once_per_version,
          writer_error_reaches_remote_readers)
