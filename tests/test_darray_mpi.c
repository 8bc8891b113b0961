/* tests/test_darray_mpi.c - distributed arrays across ranks (label mpi).
 *
 * Driver mode, as tests/test_mpi_data.c: rank 0 runs the case, the other ranks serve inside
 * dagger_ctx_open. Runs under mpirun on 2 ranks (darray_mpi) and 4 (darray_mpi4). Arrays placed
 * DAGGER_DIST_BLOCKROW, DAGGER_DIST_CYCLICROW and DAGGER_DIST_EXPLICIT over DAGGER_DARRAY_RANKS:
 * every block is mutable data of the rank the distribution names; round trips of distribute and
 * collect (both orders), constructors, map and reductions give the values of the same calls on an
 * array that lives in this process (bit for bit) and of plain loops; matmul, Cholesky, LU (column
 * distributions) and solves against CBLAS / LAPACKE and the same calls in this process;
 * operations not built over ranks yet (transpose, histogram, ...) refuse with DAGGER_ENOSYS.
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "dagger/chunk.h"
#include "dagger/darray.h"
#include "harness.h"
#include "mpi_harness.h"

static dagger_darray_opts_t over_ranks(dagger_dist_t dist)
{
    dagger_darray_opts_t o;
    dagger_darray_opts_init(&o);
    o.over = DAGGER_DARRAY_RANKS;
    o.dist = dist;
    return o;
}

/* The rank docs/darray.md gives block b (grid gr x gc) under `dist` with P ranks. */
static int expected_rank(dagger_dist_t dist, size_t b, size_t gr, int P)
{
    size_t i = b % gr;
    return dist == DAGGER_DIST_BLOCKROW ? (int)(i * (size_t)P / gr) : (int)(i % (size_t)P);
}

/* Every block of `a` is mutable data of the rank its distribution names, and every rank has one. */
static void check_places(dagger_darray_t *a, dagger_dist_t dist, int P)
{
    dagger_dims_t g = dagger_darray_grid(a);
    int seen[8] = {0};
    for (size_t b = 0; b < dagger_darray_nblocks(a); b++) {
        int r = expected_rank(dist, b, g.d[0], P);
        ASSERT_EQ(dagger_darray_block_place(a, b), r);
        dagger_proc_t p;
        ASSERT_TRUE(dagger_chunk_is_mutable(dagger_darray_block(a, b), &p));
        ASSERT_EQ(p.rank, r);
        seen[r] = 1;
    }
    for (int r = 0; r < P; r++)
        ASSERT_EQ(seen[r], 1);
}

/* collect(a) equals collect(ref), byte for byte. */
static void same_values(dagger_darray_t *a, dagger_darray_t *ref)
{
    size_t n = dagger_darray_length(a) * dagger_elt_size(dagger_darray_elt(a));
    ASSERT_EQ(dagger_darray_length(a), dagger_darray_length(ref));
    char *x = malloc(n), *y = malloc(n);
    ASSERT_PTR(x);
    ASSERT_PTR(y);
    ASSERT_OK(dagger_darray_collect(a, x, n, 0));
    ASSERT_OK(dagger_darray_collect(ref, y, n, 0));
    ASSERT_TRUE(memcmp(x, y, n) == 0);
    free(x);
    free(y);
}

/* Reductions over ranks give the single-process answer bit for bit (the same tree). */
static void same_reductions(dagger_darray_t *a, dagger_darray_t *ref)
{
    static const dagger_darray_op_t ops[] = {DAGGER_OP_ADD, DAGGER_OP_MUL, DAGGER_OP_MIN,
                                             DAGGER_OP_MAX, DAGGER_OP_MEAN};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        dagger_value_t v, w;
        ASSERT_OK(dagger_darray_reduce(a, ops[k], NULL, &v));
        ASSERT_OK(dagger_darray_reduce(ref, ops[k], NULL, &w));
        ASSERT_EQ(v.kind, w.kind);
        ASSERT_TRUE(memcmp(&v.u, &w.u, sizeof v.u) == 0);
    }
    double x, y;
    ASSERT_OK(dagger_darray_norm(a, &x));
    ASSERT_OK(dagger_darray_norm(ref, &y));
    ASSERT_TRUE(x == y);
}

TEST(ranks_blockrow_and_cyclic_roundtrip_and_reduce)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int P = dagger_ctx_nranks(ctx);
    ASSERT_TRUE(P >= 2 && P <= 8);
    /* 13 x 9 in ragged 3 x 4 blocks: a 5 x 3 grid. */
    enum { R = 13, C = 9 };
    double src[R * C], back[R * C], rowm[R * C];
    for (size_t k = 0; k < R * C; k++)
        src[k] = (double)k * 0.5 - 7.0;
    static const dagger_dist_t dists[] = {DAGGER_DIST_BLOCKROW, DAGGER_DIST_CYCLICROW};
    for (size_t di = 0; di < 2; di++) {
        dagger_dist_t dist = dists[di];
        dagger_darray_opts_t o = over_ranks(dist);
        dagger_darray_t *A, *B, *ref;
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 4),
                                           DAGGER_DIMS(R, C), src, &o, &A));
        check_places(A, dist, P);
        /* Column-major round trip, then row-major out (element (i, j) at i * C + j). */
        memset(back, 0, sizeof back);
        ASSERT_OK(dagger_darray_collect(A, back, sizeof back, 0));
        ASSERT_TRUE(memcmp(src, back, sizeof src) == 0);
        ASSERT_OK(dagger_darray_collect(A, rowm, sizeof rowm, DAGGER_DARRAY_ROW_MAJOR));
        for (size_t i = 0; i < R; i++)
            for (size_t j = 0; j < C; j++)
                ASSERT_TRUE(rowm[i * C + j] == src[i + j * R]);
        /* Row-major in: the same array. */
        o.flags = DAGGER_DARRAY_ROW_MAJOR;
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 4),
                                           DAGGER_DIMS(R, C), rowm, &o, &B));
        o.flags = 0;
        same_values(B, A);
        /* Plain reductions against loops, and the single-process array bit for bit. */
        double sum = 0, mn = INFINITY;
        for (size_t k = 0; k < R * C; k++) {
            sum += src[k];
            mn = src[k] < mn ? src[k] : mn;
        }
        dagger_value_t v;
        ASSERT_OK(dagger_darray_reduce(A, DAGGER_OP_ADD, NULL, &v));
        ASSERT_TRUE(fabs(v.u.f - sum) < 1e-9);
        ASSERT_OK(dagger_darray_reduce(A, DAGGER_OP_MIN, NULL, &v));
        ASSERT_TRUE(v.u.f == mn);
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 4),
                                           DAGGER_DIMS(R, C), src, NULL, &ref));
        same_reductions(A, ref);
        dagger_darray_release(B);
        dagger_darray_release(ref);
        /* Constructors: the same values as in one process, for every element type. */
        static const dagger_elt_t elts[] = {DAGGER_ELT_F64, DAGGER_ELT_F32, DAGGER_ELT_I64,
                                            DAGGER_ELT_I32};
        for (size_t e = 0; e < 4; e++) {
            dagger_darray_t *x, *y;
            ASSERT_OK(dagger_darray_rand(ctx, elts[e], DAGGER_BLOCKS(7, 5), DAGGER_DIMS(40, 11), 42,
                                         &o, &x));
            check_places(x, dist, P);
            ASSERT_OK(dagger_darray_rand(ctx, elts[e], DAGGER_BLOCKS(7, 5), DAGGER_DIMS(40, 11), 42,
                                         NULL, &y));
            same_values(x, y);
            same_reductions(x, y);
            dagger_darray_release(x);
            dagger_darray_release(y);
        }
        dagger_darray_t *x, *y;
        ASSERT_OK(dagger_darray_randn(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(8), DAGGER_DIMS(100), 7,
                                      &o, &x));
        ASSERT_OK(dagger_darray_randn(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(8), DAGGER_DIMS(100), 7,
                                      NULL, &y));
        same_values(x, y);
        dagger_darray_release(x);
        dagger_darray_release(y);
        ASSERT_OK(dagger_darray_fill(ctx, DAGGER_ELT_I32, DAGGER_BLOCKS(2, 2), DAGGER_DIMS(5, 6),
                                     -3.0, &o, &x));
        ASSERT_OK(
            dagger_darray_zeros(ctx, DAGGER_ELT_F32, DAGGER_BLOCKS(4), DAGGER_DIMS(9), &o, &y));
        int32_t iv[30];
        float fv[9];
        ASSERT_OK(dagger_darray_collect(x, iv, sizeof iv, 0));
        ASSERT_OK(dagger_darray_collect(y, fv, sizeof fv, 0));
        for (size_t k = 0; k < 30; k++)
            ASSERT_EQ(iv[k], -3);
        for (size_t k = 0; k < 9; k++)
            ASSERT_TRUE(fv[k] == 0.0f);
        ASSERT_OK(dagger_darray_reduce(x, DAGGER_OP_ADD, NULL, &v));
        ASSERT_EQ(v.kind, DAGGER_KIND_I64);
        ASSERT_EQ(v.u.i, -90);
        dagger_darray_release(x);
        dagger_darray_release(y);
        dagger_darray_release(A);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* map functions: they travel to the blocks' ranks by reference (ud must be NULL there). */
static void twice_plus_one(void *out, const void *in, void *ud)
{
    (void)ud;
    *(double *)out = 2.0 * *(const double *)in + 1.0;
}

static void to_i64(void *out, const void *in, void *ud)
{
    (void)ud;
    *(int64_t *)out = (int64_t)(*(const double *)in * 10.0);
}

/* Element (i, j) += 1000 * i + j, from the block's origin: checks the block info travels. */
static int add_index(void *out, const void *in, const dagger_darray_blockinfo_t *bi, void *ud)
{
    (void)ud;
    for (size_t j = 0; j < bi->shape[1]; j++)
        for (size_t i = 0; i < bi->shape[0]; i++) {
            size_t k = i + j * bi->shape[0];
            ((double *)out)[k] = ((const double *)in)[k] + 1000.0 * (double)(bi->origin[0] + i) +
                                 (double)(bi->origin[1] + j);
        }
    return 0;
}

static int fail_on_block_2(void *out, const void *in, const dagger_darray_blockinfo_t *bi, void *ud)
{
    (void)out, (void)in, (void)ud;
    return bi->index == 2 ? DAGGER_ERANGE : 0;
}

TEST(ranks_map_and_map_inplace)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int P = dagger_ctx_nranks(ctx);
    dagger_darray_opts_t o = over_ranks(DAGGER_DIST_CYCLICROW);
    dagger_darray_t *A, *ref, *B, *Bref;
    ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 4), DAGGER_DIMS(10, 7), 9,
                                 &o, &A));
    ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 4), DAGGER_DIMS(10, 7), 9,
                                 NULL, &ref));
    /* Element function, same type: the result keeps A's places. */
    ASSERT_OK(dagger_darray_map(A, DAGGER_ELT_RAW, twice_plus_one, NULL, NULL, &B));
    ASSERT_OK(dagger_darray_map(ref, DAGGER_ELT_RAW, twice_plus_one, NULL, NULL, &Bref));
    check_places(B, DAGGER_DIST_CYCLICROW, P);
    same_values(B, Bref);
    dagger_darray_release(B);
    dagger_darray_release(Bref);
    /* Another element type. */
    ASSERT_OK(dagger_darray_map(A, DAGGER_ELT_I64, to_i64, NULL, NULL, &B));
    ASSERT_OK(dagger_darray_map(ref, DAGGER_ELT_I64, to_i64, NULL, NULL, &Bref));
    ASSERT_EQ(dagger_darray_elt(B), DAGGER_ELT_I64);
    same_values(B, Bref);
    same_reductions(B, Bref);
    dagger_darray_release(B);
    dagger_darray_release(Bref);
    /* Block function, then in place. */
    ASSERT_OK(dagger_darray_map(A, DAGGER_ELT_RAW, NULL, add_index, NULL, &B));
    ASSERT_OK(dagger_darray_map(ref, DAGGER_ELT_RAW, NULL, add_index, NULL, &Bref));
    same_values(B, Bref);
    ASSERT_OK(dagger_darray_map_inplace(A, twice_plus_one, NULL, NULL));
    ASSERT_OK(dagger_darray_map_inplace(ref, twice_plus_one, NULL, NULL));
    same_values(A, ref);
    ASSERT_OK(dagger_darray_map_inplace(A, NULL, add_index, NULL));
    ASSERT_OK(dagger_darray_map_inplace(ref, NULL, add_index, NULL));
    same_values(A, ref);
    double x[70];
    ASSERT_OK(dagger_darray_collect(A, x, sizeof x, 0));
    ASSERT_TRUE(x[9 + 6 * 10] >= 9006.0 + 1.0 && x[9 + 6 * 10] < 9006.0 + 3.0);
    dagger_darray_release(B);
    dagger_darray_release(Bref);
    /* A block function's error names the block; ud cannot travel. */
    B = NULL;
    ASSERT_ERR(dagger_darray_map(A, DAGGER_ELT_RAW, NULL, fail_on_block_2, NULL, &B),
               DAGGER_ERANGE);
    ASSERT_TRUE(B == NULL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the block function failed on block 2");
    ASSERT_ERR(dagger_darray_map_inplace(A, NULL, fail_on_block_2, NULL), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the block function failed on block 2");
    int ud = 1;
    ASSERT_ERR(dagger_darray_map(A, DAGGER_ELT_RAW, twice_plus_one, NULL, &ud, &B), DAGGER_ENOSYS);
    ASSERT_STR_HAS(dagger_last_errmsg(), "ud (a pointer) cannot travel");
    ASSERT_ERR(dagger_darray_map_inplace(A, twice_plus_one, NULL, &ud), DAGGER_ENOSYS);
    dagger_darray_release(A);
    dagger_darray_release(ref);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Collect an f64 array into a new buffer. */
static double *collect_f64(dagger_darray_t *a)
{
    size_t n = dagger_darray_length(a);
    double *x = malloc((n ? n : 1) * sizeof *x);
    ASSERT_PTR(x);
    ASSERT_OK(dagger_darray_collect(a, x, n * sizeof *x, 0));
    return x;
}

static double max_diff(const double *x, const double *y, size_t n)
{
    double m = 0;
    for (size_t k = 0; k < n; k++)
        m = fmax(m, fabs(x[k] - y[k]));
    return m;
}

/* matmul, Cholesky, LU and solve over ranks: against CBLAS / LAPACKE on the collected inputs,
 * and bit for bit against the same calls on arrays of this process (same kernels, same order of
 * updates per block). LU needs each block column on one rank (column distributions). */
TEST(ranks_cholesky_lu_and_solve)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    enum { N = 24, K = 10, NB = 6 };
    static const dagger_dist_t dists[] = {DAGGER_DIST_BLOCKROW, DAGGER_DIST_CYCLICROW,
                                          DAGGER_DIST_BLOCKCOL, DAGGER_DIST_CYCLICCOL};
    for (size_t di = 0; di < 4; di++) {
        bool bycol = dists[di] == DAGGER_DIST_BLOCKCOL || dists[di] == DAGGER_DIST_CYCLICCOL;
        dagger_darray_opts_t o = over_ranks(dists[di]);
        dagger_darray_t *A, *B, *C, *Al, *Bl, *Cl;
        ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, NB), DAGGER_DIMS(N, N),
                                     3, &o, &A));
        ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, 5), DAGGER_DIMS(N, K),
                                     4, &o, &B));
        ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, NB), DAGGER_DIMS(N, N),
                                     3, NULL, &Al));
        ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, 5), DAGGER_DIMS(N, K),
                                     4, NULL, &Bl));
        /* C = A B */
        ASSERT_OK(dagger_darray_matmul(A, B, &C));
        ASSERT_OK(dagger_darray_matmul(Al, Bl, &Cl));
        ASSERT_TRUE(dagger_darray_block_place(C, dagger_darray_nblocks(C) - 1) > 0);
        same_values(C, Cl);
        double *a = collect_f64(A), *b = collect_f64(B), *c = collect_f64(C);
        double want[N * K] = {0};
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, N, K, N, 1.0, a, N, b, N, 0.0, want,
                    N);
        ASSERT_TRUE(max_diff(c, want, N * K) < 1e-12);
        /* S = A A' + N I, symmetric positive definite, distributed over ranks. */
        double s[N * N];
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, N, N, N, 1.0, a, N, a, N, 0.0, s, N);
        for (size_t i = 0; i < N; i++)
            s[i + i * N] += N;
        dagger_darray_t *S, *Sl, *L, *Ll, *X, *Xl;
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, NB),
                                           DAGGER_DIMS(N, N), s, &o, &S));
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, NB),
                                           DAGGER_DIMS(N, N), s, NULL, &Sl));
        ASSERT_OK(dagger_darray_cholesky(S, &L));
        ASSERT_OK(dagger_darray_cholesky(Sl, &Ll));
        same_values(L, Ll);
        double *l = collect_f64(L), f[N * N];
        memcpy(f, s, sizeof f);
        ASSERT_EQ(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', N, f, N), 0);
        for (size_t j = 0; j < N; j++)
            for (size_t i = 0; i < j; i++)
                f[i + j * N] = 0;
        ASSERT_TRUE(max_diff(l, f, N * N) < 1e-10);
        /* S X = B with Cholesky, against dposv; the input is not modified. */
        ASSERT_OK(dagger_darray_solve(S, B, DAGGER_SOLVE_CHOLESKY, &X));
        ASSERT_OK(dagger_darray_solve(Sl, Bl, DAGGER_SOLVE_CHOLESKY, &Xl));
        same_values(X, Xl);
        double *x = collect_f64(X), f2[N * N];
        memcpy(f2, s, sizeof f2);
        memcpy(want, b, sizeof want);
        ASSERT_EQ(LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', N, K, f2, N, want, N), 0);
        ASSERT_TRUE(max_diff(x, want, N * K) < 1e-10);
        double *s2 = collect_f64(S);
        ASSERT_TRUE(memcmp(s2, s, sizeof s) == 0);
        free(s2);
        dagger_darray_release(X);
        dagger_darray_release(Xl);
        free(x);
        /* A vector right-hand side. */
        dagger_darray_t *v;
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB), DAGGER_DIMS(N),
                                           b, &o, &v));
        ASSERT_OK(dagger_darray_solve(S, v, DAGGER_SOLVE_CHOLESKY, &X));
        x = collect_f64(X);
        double r[N];
        memcpy(r, b, sizeof r);
        cblas_dgemv(CblasColMajor, CblasNoTrans, N, N, -1.0, s, N, x, 1, 1.0, r, 1);
        for (size_t i = 0; i < N; i++)
            ASSERT_TRUE(fabs(r[i]) < 1e-10);
        free(x);
        dagger_darray_release(X);
        /* LU of A (not symmetric) with partial pivoting: dgetrf's pivots and factors; solves. */
        dagger_darray_t *bad = NULL;
        int64_t ipiv[N], ipivl[N];
        if (bycol) {
            dagger_darray_t *F, *Fl, *Z;
            ASSERT_OK(dagger_darray_lu(A, &F, ipiv));
            ASSERT_OK(dagger_darray_lu(Al, &Fl, ipivl));
            same_values(F, Fl);
            double *lu = collect_f64(F), g[N * N];
            memcpy(g, a, sizeof g);
            lapack_int gp[N];
            ASSERT_EQ(LAPACKE_dgetrf(LAPACK_COL_MAJOR, N, N, g, N, gp), 0);
            for (size_t i = 0; i < N; i++) {
                ASSERT_EQ(ipiv[i], gp[i]);
                ASSERT_EQ(ipivl[i], gp[i]);
            }
            ASSERT_TRUE(max_diff(lu, g, N * N) < 1e-10);
            free(lu);
            dagger_darray_release(F);
            dagger_darray_release(Fl);
            ASSERT_OK(dagger_darray_solve(A, B, DAGGER_SOLVE_LU, &X));
            ASSERT_OK(dagger_darray_solve(Al, Bl, DAGGER_SOLVE_LU, &Xl));
            same_values(X, Xl);
            x = collect_f64(X);
            double w2[N * K];
            memcpy(g, a, sizeof g);
            memcpy(w2, b, sizeof w2);
            ASSERT_EQ(LAPACKE_dgesv(LAPACK_COL_MAJOR, N, K, g, N, gp, w2, N), 0);
            ASSERT_TRUE(max_diff(x, w2, N * K) < 1e-9);
            free(x);
            dagger_darray_release(X);
            dagger_darray_release(Xl);
            ASSERT_OK(dagger_darray_solve(A, v, DAGGER_SOLVE_LU, &X));
            x = collect_f64(X);
            memcpy(r, b, sizeof r);
            cblas_dgemv(CblasColMajor, CblasNoTrans, N, N, -1.0, a, N, x, 1, 1.0, r, 1);
            for (size_t i = 0; i < N; i++)
                ASSERT_TRUE(fabs(r[i]) < 1e-9);
            free(x);
            dagger_darray_release(X);
            /* A singular matrix names the pivot. */
            double z[N * N];
            memcpy(z, a, sizeof z);
            for (size_t i = 0; i < N; i++)
                z[i + 7 * N] = 0;
            ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, NB),
                                               DAGGER_DIMS(N, N), z, &o, &Z));
            ASSERT_ERR(dagger_darray_lu(Z, &bad, ipiv), DAGGER_ESINGULAR);
            ASSERT_STR_HAS(dagger_last_errmsg(), "the matrix is singular");
            ASSERT_TRUE(bad == NULL);
            dagger_darray_release(Z);
        } else { /* a block column on several ranks: refused, naming two of them */
            ASSERT_ERR(dagger_darray_lu(A, &bad, ipiv), DAGGER_ENOSYS);
            ASSERT_STR_HAS(dagger_last_errmsg(), "each block column on one rank");
            ASSERT_ERR(dagger_darray_solve(A, B, DAGGER_SOLVE_LU, &bad), DAGGER_ENOSYS);
            ASSERT_STR_HAS(dagger_last_errmsg(), "each block column on one rank");
        }
        ASSERT_ERR(dagger_darray_solve(S, Bl, DAGGER_SOLVE_CHOLESKY, &bad), DAGGER_ENOSYS);
        ASSERT_STR_HAS(dagger_last_errmsg(), "every operand must be");
        s[5 + 5 * N] = -1.0;
        dagger_darray_t *NP;
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, NB),
                                           DAGGER_DIMS(N, N), s, &o, &NP));
        ASSERT_ERR(dagger_darray_cholesky(NP, &bad), DAGGER_ENOTPD);
        ASSERT_STR_HAS(dagger_last_errmsg(), "not positive definite");
        ASSERT_TRUE(bad == NULL);
        dagger_darray_release(NP);
        /* Over ranks, factorisations need square blocks. */
        ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(NB, 8),
                                           DAGGER_DIMS(N, N), s, &o, &NP));
        ASSERT_ERR(dagger_darray_cholesky(NP, &bad), DAGGER_ENOSYS);
        ASSERT_STR_HAS(dagger_last_errmsg(), "square blocks");
        dagger_darray_release(NP);
        free(a);
        free(b);
        free(c);
        free(l);
        dagger_darray_t *arrs[] = {A, B, C, Al, Bl, Cl, S, Sl, L, Ll, v};
        for (size_t k = 0; k < sizeof arrs / sizeof *arrs; k++)
            dagger_darray_release(arrs[k]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static void user_add(void *acc, const void *x, void *ud)
{
    (void)ud;
    *(double *)acc += *(const double *)x;
}

/* Explicit places, the errors, and the operations that refuse an array over ranks. */
TEST(ranks_explicit_places_and_refusals)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int P = dagger_ctx_nranks(ctx);
    dagger_darray_opts_t o = over_ranks(DAGGER_DIST_EXPLICIT);
    int places[3] = {P - 1, 0, P - 1};
    o.places = places;
    o.nplaces = 3;
    dagger_darray_t *A, *B = NULL;
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2), DAGGER_DIMS(11), &o, &A));
    for (size_t b = 0; b < dagger_darray_nblocks(A); b++)
        ASSERT_EQ(dagger_darray_block_place(A, b), places[b % 3]);
    double out[11];
    ASSERT_OK(dagger_darray_collect(A, out, sizeof out, 0));
    for (size_t k = 0; k < 11; k++)
        ASSERT_TRUE(out[k] == 1.0);
    ASSERT_ERR(dagger_darray_collect(A, out, sizeof out - 1, 0), DAGGER_ERANGE);
    /* Every block on this rank: a plain array of this process. */
    int here[1] = {0};
    o.places = here;
    o.nplaces = 1;
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2), DAGGER_DIMS(4), &o, &B));
    ASSERT_EQ(dagger_darray_block_place(B, 0), -1);
    dagger_darray_release(B);
    /* A rank that does not exist. */
    int bad[2] = {0, P};
    o.places = bad;
    o.nplaces = 2;
    B = NULL;
    ASSERT_ERR(dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2), DAGGER_DIMS(4), &o, &B),
               DAGGER_ESCOPE);
    ASSERT_TRUE(B == NULL);
    char want[64];
    snprintf(want, sizeof want, "rank %d does not exist (the job has %d ranks)", P, P);
    ASSERT_STR_HAS(dagger_last_errmsg(), want);
    /* Not built over ranks yet: refused with a message, nothing made. */
    ASSERT_ERR(dagger_darray_transpose(A, &B), DAGGER_ENOSYS);
    ASSERT_STR_HAS(dagger_last_errmsg(),
                   "dagger_darray_transpose: the array has blocks on other ranks");
    ASSERT_ERR(dagger_darray_histogram(A, 0.0, 1.0, 4, (uint64_t[4]){0}), DAGGER_ENOSYS);
    ASSERT_STR_HAS(dagger_last_errmsg(), "not built over ranks yet");
    dagger_darray_redop_t user = {user_add, &(double){0}, NULL};
    dagger_value_t v;
    ASSERT_ERR(dagger_darray_reduce(A, DAGGER_OP_USER, &user, &v), DAGGER_ENOSYS);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_OP_USER");
    dagger_darray_release(A);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(ranks_blockrow_and_cyclic_roundtrip_and_reduce, ranks_map_and_map_inplace,
          ranks_cholesky_lu_and_solve, ranks_explicit_places_and_refusals)
