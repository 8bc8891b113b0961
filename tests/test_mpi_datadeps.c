/* tests/test_mpi_datadeps.c - a datadeps region across ranks (label mpi): whole-chunk accesses
 * to mutable data placed on every rank; tasks run where the data they write lives, remote reads
 * are copied by version, and the result equals sequential execution.
 *
 * Driver mode, as tests/test_mpi.c: rank 0 runs the case; the other ranks serve. Runs on 2 ranks
 * (test_mpi_datadeps) and 4 (test_mpi_datadeps4). The Cholesky case is checked against
 * LAPACKE_dpotrf on the whole matrix.
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dagger/chunk.h"
#include "dagger/datadeps.h"
#include "harness.h"
#include "mpi_harness.h"

/* ---------------------------------------------------------------- a random program */

enum { NVARS = 8, NOPS = 160 };
#define MOD 1000000007ll

static int make_var(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t v = dagger_arg_i64(a, 0);
    *out = dagger_blob_copy(tc, &v, sizeof v);
    return 0;
}

static int64_t step(int64_t w, int64_t r1, int64_t r2, int64_t i)
{
    return (w * 3 + r1 + 2 * r2 + i) % MOD;
}

/* x[w] = step(x[w], x[r1], x[r2], i): reads everything before it writes. */
static int op(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    int64_t *w = dagger_arg_buf(a, 0, NULL);
    const int64_t *r1 = dagger_arg_buf(a, 1, NULL), *r2 = dagger_arg_buf(a, 2, NULL);
    if (!w || !r1 || !r2)
        return DAGGER_ETYPE;
    int64_t x = step(*w, *r1, *r2, dagger_arg_i64(a, 3));
    *w = x;
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

TEST(random_program_across_ranks)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int nranks = dagger_ctx_nranks(ctx);
    unsigned seed = (unsigned)test_seed();
    int64_t seq[NVARS];
    dagger_chunk_t *var[NVARS];
    for (int k = 0; k < NVARS; k++) {
        seq[k] = k + 1;
        var[k] = mutable_on(ctx, k % nranks, make_var, (dagger_value_t[]){dagger_i64(k + 1)}, 1);
    }
    int w[NOPS], r1[NOPS], r2[NOPS];
    for (int i = 0; i < NOPS; i++) {
        w[i] = rand_r(&seed) % NVARS;
        r1[i] = rand_r(&seed) % NVARS;
        r2[i] = rand_r(&seed) % NVARS;
        seq[w[i]] = step(seq[w[i]], seq[r1[i]], seq[r2[i]], i);
    }
    dagger_task_t *ts[NOPS];
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    for (int i = 0; i < NOPS; i++)
        ts[i] = dagger_datadeps_spawn(dd, op, dagger_ddchunk(DAGGER_ACCESS_INOUT, var[w[i]]),
                                      dagger_ddchunk(DAGGER_ACCESS_IN, var[r1[i]]),
                                      dagger_ddchunk(DAGGER_ACCESS_IN, var[r2[i]]),
                                      dagger_ddval(dagger_i64(i)));
    ASSERT_OK(dagger_datadeps_end(dd));
    for (int i = 0; i < NOPS; i++) {
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(ts[i], &r));
        ASSERT_EQ(r, w[i] % nranks); /* it ran where the data it writes lives */
        dagger_task_release(ts[i]);
    }
    for (int k = 0; k < NVARS; k++) {
        int64_t v;
        read_back(ctx, var[k], &v, sizeof v);
        ASSERT_EQ(v, seq[k]);
        dagger_chunk_release(var[k]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(region_refuses_bad_chunk_writes)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_chunk_t *a = mutable_on(ctx, 0, make_var, (dagger_value_t[]){dagger_i64(1)}, 1);
    dagger_chunk_t *b = mutable_on(ctx, 1, make_var, (dagger_value_t[]){dagger_i64(2)}, 1);
    dagger_chunk_t *plain;
    ASSERT_OK(dagger_chunk_create(ctx, 8, &plain));
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    dagger_task_t *t1 = dagger_datadeps_spawn(dd, op, dagger_ddchunk(DAGGER_ACCESS_INOUT, a),
                                              dagger_ddchunk(DAGGER_ACCESS_INOUT, b),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, a), 0);
    dagger_task_t *t2 = dagger_datadeps_spawn(dd, op, dagger_ddchunk(DAGGER_ACCESS_OUT, plain),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, a),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, a), 0);
    ASSERT_ERR(dagger_datadeps_end(dd), DAGGER_ESCOPE);
    ASSERT_ERR(dagger_task_error(t1), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t1), "lives on rank 1, but the task writes data of rank 0");
    ASSERT_ERR(dagger_task_error(t2), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t2), "is written but is not mutable data");
    dagger_task_release(t1);
    dagger_task_release(t2);
    dagger_chunk_release(a);
    dagger_chunk_release(b);
    dagger_chunk_release(plain);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- tiled Cholesky */

/* Element (r, c) of the n x n SPD test matrix. */
static double elem(size_t r, size_t c, size_t n)
{
    return 1.0 / (1.0 + (double)r + (double)c) + (r == c ? (double)n : 0.0);
}

/* Tile (i, j) of size nb, column-major. */
static int make_tile(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t i = (size_t)dagger_arg_i64(a, 0), j = (size_t)dagger_arg_i64(a, 1);
    size_t nb = (size_t)dagger_arg_i64(a, 2), n = (size_t)dagger_arg_i64(a, 3);
    double *t = malloc(nb * nb * sizeof *t);
    if (!t)
        return dagger_fail(tc, DAGGER_ENOMEM, "tile");
    for (size_t c = 0; c < nb; c++)
        for (size_t r = 0; r < nb; r++)
            t[c * nb + r] = elem(i * nb + r, j * nb + c, n);
    *out = dagger_blob_copy(tc, t, nb * nb * sizeof *t);
    free(t);
    return 0;
}

static int nb_of(const dagger_args_t *a, size_t i)
{
    size_t n;
    (void)dagger_arg_buf(a, i, &n);
    return (int)sqrt((double)(n / sizeof(double)));
}

static int potrf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    double *akk = dagger_arg_buf(a, 0, NULL);
    int nb = nb_of(a, 0);
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', nb, akk, nb);
    return info ? dagger_fail(tc, DAGGER_ETASK, "dpotrf: info %d", info) : 0;
}

static int trsm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    const double *akk = dagger_arg_buf(a, 0, NULL);
    double *aik = dagger_arg_buf(a, 1, NULL);
    int nb = nb_of(a, 1);
    cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, nb, 1.0, akk,
                nb, aik, nb);
    return 0;
}

static int syrk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    const double *aik = dagger_arg_buf(a, 0, NULL);
    double *aii = dagger_arg_buf(a, 1, NULL);
    int nb = nb_of(a, 1);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, nb, nb, -1.0, aik, nb, 1.0, aii, nb);
    return 0;
}

static int gemm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    const double *aik = dagger_arg_buf(a, 0, NULL), *ajk = dagger_arg_buf(a, 1, NULL);
    double *aij = dagger_arg_buf(a, 2, NULL);
    int nb = nb_of(a, 2);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, nb, nb, nb, -1.0, aik, nb, ajk, nb, 1.0,
                aij, nb);
    return 0;
}

static void cholesky(int nt, int nb, bool by_column)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int nranks = dagger_ctx_nranks(ctx);
    size_t n = (size_t)nt * (size_t)nb;
    dagger_chunk_t **tile = calloc((size_t)nt * (size_t)nt, sizeof *tile);
    ASSERT_PTR(tile);
#define T(i, j) tile[(size_t)(i) * (size_t)nt + (size_t)(j)]
    /* Lower tiles; by column (rank j mod P) or 2-D block-cyclic over a 2 x P/2 grid. */
    for (int j = 0; j < nt; j++) {
        for (int i = j; i < nt; i++) {
            int r = by_column ? j % nranks
                              : (i % 2) * (nranks / 2 > 0 ? nranks / 2 : 1) +
                                    j % (nranks / 2 > 0 ? nranks / 2 : 1);
            r %= nranks;
            T(i, j) = mutable_on(ctx, r, make_tile,
                                 (dagger_value_t[]){dagger_i64(i), dagger_i64(j), dagger_i64(nb),
                                                    dagger_i64((int64_t)n)},
                                 4);
        }
    }
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    for (int k = 0; k < nt; k++) {
        dagger_task_release(
            dagger_datadeps_spawn(dd, potrf, dagger_ddchunk(DAGGER_ACCESS_INOUT, T(k, k))));
        for (int i = k + 1; i < nt; i++)
            dagger_task_release(
                dagger_datadeps_spawn(dd, trsm, dagger_ddchunk(DAGGER_ACCESS_IN, T(k, k)),
                                      dagger_ddchunk(DAGGER_ACCESS_INOUT, T(i, k))));
        for (int i = k + 1; i < nt; i++) {
            dagger_task_release(
                dagger_datadeps_spawn(dd, syrk, dagger_ddchunk(DAGGER_ACCESS_IN, T(i, k)),
                                      dagger_ddchunk(DAGGER_ACCESS_INOUT, T(i, i))));
            for (int j = k + 1; j < i; j++)
                dagger_task_release(
                    dagger_datadeps_spawn(dd, gemm, dagger_ddchunk(DAGGER_ACCESS_IN, T(i, k)),
                                          dagger_ddchunk(DAGGER_ACCESS_IN, T(j, k)),
                                          dagger_ddchunk(DAGGER_ACCESS_INOUT, T(i, j))));
        }
    }
    ASSERT_OK(dagger_datadeps_end(dd));
    /* The reference: LAPACKE on the whole matrix. */
    double *ref = malloc(n * n * sizeof *ref), *t = malloc((size_t)nb * (size_t)nb * sizeof *t);
    ASSERT_PTR(ref);
    ASSERT_PTR(t);
    for (size_t c = 0; c < n; c++)
        for (size_t r = 0; r < n; r++)
            ref[c * n + r] = elem(r, c, n);
    ASSERT_EQ(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (int)n, ref, (int)n), 0);
    double maxerr = 0;
    for (int j = 0; j < nt; j++) {
        for (int i = j; i < nt; i++) {
            read_back(ctx, T(i, j), t, (size_t)nb * (size_t)nb * sizeof *t);
            for (int c = 0; c < nb; c++)
                for (int r = (i == j ? c : 0); r < nb; r++) {
                    double want = ref[((size_t)j * nb + c) * n + (size_t)i * nb + r];
                    double e = fabs(t[(size_t)c * nb + r] - want) / (fabs(want) + 1e-300);
                    if (fabs(want) > 1e-12 && e > maxerr)
                        maxerr = e;
                }
            dagger_chunk_release(T(i, j));
        }
    }
#undef T
    printf("cholesky %d x %d tiles of %d on %d ranks: max relative error %.3g\n", nt, nt, nb,
           nranks, maxerr);
    ASSERT_TRUE(maxerr < 1e-10);
    free(ref);
    free(t);
    free(tile);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(cholesky_by_column_against_lapacke) { cholesky(5, 48, true); }
TEST(cholesky_block_cyclic_against_lapacke) { cholesky(4, 64, false); }

TEST_LIST(random_program_across_ranks, region_refuses_bad_chunk_writes,
          cholesky_by_column_against_lapacke, cholesky_block_cyclic_against_lapacke)
