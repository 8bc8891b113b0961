/* src/darray/linalg.c - linear algebra on distributed arrays through datadeps on the blocks:
 * matmul (gemm, gemv), Cholesky (potrf, trsm, syrk, gemm), LU with partial pivoting (getrf on
 * block-column panels, laswp, trsm, gemm) and solve with either factorisation.
 *
 * Design: each block is a column-major buffer whose leading dimension is its row count; every
 * kernel call is one datadeps task whose annotations are whole blocks (In or InOut spans), and
 * which runs on the place of the block it writes (owner computes). Factorisations work on
 * square blocks: an array with other blocks is copied into square blocks of its smaller block
 * extent first and copied back at the end. Kernels come from OpenBLAS (CBLAS) and LAPACKE;
 * OpenBLAS is set to one thread while an operation runs (the parallelism is the tasks').
 * Across ranks (arrays with `ranks`): the annotations are the blocks' chunks (dagger_ddchunk),
 * which are mutable data of their ranks, so each kernel runs on the rank of the block it writes
 * and the blocks it reads are copied there once per version; kernels read their data arguments
 * through arg_data, which takes either form. matmul, Cholesky, LU and solve are built
 * that way (square blocks, B blocked to match); so is LU when each block column lives on one
 * rank (its panel task writes the whole column): its pivots are chunks on the panels' ranks,
 * and a solve applies them to B on the calling rank.
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "darray/darray_int.h"
#include "dagger/datadeps.h"

extern void openblas_set_num_threads(int n);
extern int openblas_get_num_threads(void);

/* ---------------------------------------------------------------- region helpers */

typedef struct la {
    dagger_ctx_t *ctx;
    dagger_datadeps_t *dd;
    dagger_scope_t **scopes; /* one per thread, made on first use */
    int nthreads, blas_threads;
    bool ranks; /* blocks on ranks: no thread scopes, the region places each task */
} la_t;

static int la_begin(la_t *L, dagger_ctx_t *ctx)
{
    memset(L, 0, sizeof *L);
    L->ctx = ctx;
    L->nthreads = dagger_ctx_num_threads(ctx);
    L->scopes = dagger__calloc((size_t)L->nthreads, sizeof *L->scopes);
    DAGGER_CHECK(L->scopes, DAGGER_ENOMEM, "darray linear algebra: out of memory");
    L->blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    int rc = dagger_datadeps_begin(ctx, 0, &L->dd);
    if (rc) {
        dagger__free(L->scopes);
        openblas_set_num_threads(L->blas_threads);
    }
    return rc;
}

static int la_end(la_t *L)
{
    int rc = dagger_datadeps_end(L->dd);
    for (int t = 0; t < L->nthreads; t++)
        dagger_scope_release(L->scopes[t]);
    dagger__free(L->scopes);
    openblas_set_num_threads(L->blas_threads);
    return rc;
}

/* Spawn `fn` in the region on `place` (-1: anywhere) at priority `prio`. */
static void la_spawn_prio(la_t *L, int place, int prio, dagger_fn_t fn, const char *name,
                          const dagger_ddarg_t *av, size_t n)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = name;
    o.priority = prio;
    if (!L->ranks && place >= 0 && place < L->nthreads) {
        if (!L->scopes[place])
            L->scopes[place] = dagger_scope_thread(place);
        o.scope = L->scopes[place];
    }
    dagger_task_release(dagger_datadeps_spawn_impl(L->dd, &o, fn, name, av, n));
}

static void la_spawn(la_t *L, int place, dagger_fn_t fn, const char *name, const dagger_ddarg_t *av,
                     size_t n)
{
    la_spawn_prio(L, place, 0, fn, name, av, n);
}

static size_t blk(const dagger_darray_t *a, size_t i, size_t j) { return i + a->grid[0] * j; }
static size_t rows(const dagger_darray_t *a, size_t i)
{
    size_t r = a->dims[0] - i * a->bs[0];
    return r < a->bs[0] ? r : a->bs[0];
}
static size_t cols(const dagger_darray_t *a, size_t j)
{
    size_t r = a->dims[1] - j * a->bs[1];
    return r < a->bs[1] ? r : a->bs[1];
}
static size_t bytes(const dagger_darray_t *a, size_t b)
{
    return dagger__da_block_count(a, b) * a->esz;
}
static dagger_ddarg_t in_blk(const dagger_darray_t *a, size_t b)
{
    return a->ranks ? dagger_ddchunk(DAGGER_ACCESS_IN, a->blocks[b])
                    : dagger_in(a->ptr[b], bytes(a, b));
}
static dagger_ddarg_t inout_blk(dagger_darray_t *a, size_t b)
{
    return a->ranks ? dagger_ddchunk(DAGGER_ACCESS_INOUT, a->blocks[b])
                    : dagger_inout(a->ptr[b], bytes(a, b));
}

/* A kernel's data argument i: a span's pointer in one process, a block chunk's local copy over
 * ranks. */
static void *arg_data(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = dagger_arg(a, i);
    return v && v->kind == DAGGER_KIND_PTR ? dagger_arg_ptr(a, i) : dagger_arg_buf(a, i, NULL);
}

/* ---------------------------------------------------------------- kernels */

/* C = alpha op(A) op(B) + C; args: A, B, C, m, n, k, transa, transb, alpha, elt. */
static int k_gemm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    void *A = arg_data(a, 0), *B = arg_data(a, 1), *C = arg_data(a, 2);
    int m = (int)dagger_arg_i64(a, 3), n = (int)dagger_arg_i64(a, 4), k = (int)dagger_arg_i64(a, 5);
    bool ta = dagger_arg_i64(a, 6), tb = dagger_arg_i64(a, 7);
    double alpha = dagger_arg_f64(a, 8);
    if (!m || !n || !k)
        return 0;
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    int lda = ta ? k : m, ldb = tb ? n : k;
    if (dagger_arg_i64(a, 9) == DAGGER_ELT_F32) {
        if (n == 1 && !tb)
            cblas_sgemv(CblasColMajor, TA, ta ? k : m, ta ? m : k, (float)alpha, A, lda, B, 1, 1.0f,
                        C, 1);
        else
            cblas_sgemm(CblasColMajor, TA, TB, m, n, k, (float)alpha, A, lda, B, ldb, 1.0f, C, m);
    } else if (n == 1 && !tb) {
        cblas_dgemv(CblasColMajor, TA, ta ? k : m, ta ? m : k, alpha, A, lda, B, 1, 1.0, C, 1);
    } else {
        cblas_dgemm(CblasColMajor, TA, TB, m, n, k, alpha, A, lda, B, ldb, 1.0, C, m);
    }
    return 0;
}

/* B = op(A)^-1 B (left) or B op(A)^-1 (right); args: A, B, m, n, side, uplo, trans, unit. */
static int k_trsm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *A = arg_data(a, 0), *B = arg_data(a, 1);
    int m = (int)dagger_arg_i64(a, 2), n = (int)dagger_arg_i64(a, 3);
    bool left = dagger_arg_i64(a, 4), lower = dagger_arg_i64(a, 5), tr = dagger_arg_i64(a, 6),
         unit = dagger_arg_i64(a, 7);
    if (!m || !n)
        return 0;
    cblas_dtrsm(CblasColMajor, left ? CblasLeft : CblasRight, lower ? CblasLower : CblasUpper,
                tr ? CblasTrans : CblasNoTrans, unit ? CblasUnit : CblasNonUnit, m, n, 1.0, A,
                left ? m : n, B, m);
    return 0;
}

/* C -= A A^T (lower); args: A, C, n, k. */
static int k_syrk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int n = (int)dagger_arg_i64(a, 2), k = (int)dagger_arg_i64(a, 3);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, n, k, -1.0, arg_data(a, 0), n, 1.0,
                arg_data(a, 1), n);
    return 0;
}

/* Diagonal block k of a Cholesky; args: A, n, k, global offset. */
static int k_potrf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int n = (int)dagger_arg_i64(a, 1), k = (int)dagger_arg_i64(a, 2);
    int64_t off = dagger_arg_i64(a, 3);
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, arg_data(a, 0), n);
    if (info > 0)
        return dagger_fail(tc, DAGGER_ENOTPD,
                           "Cholesky: block (%d, %d): the leading minor of order %d is not "
                           "positive definite (pivot %d, global row %lld)",
                           k, k, info, info, (long long)(off + info));
    if (info < 0)
        return dagger_fail(tc, DAGGER_EINVAL, "Cholesky: dpotrf argument %d is invalid", -info);
    return 0;
}

/* Zero the strict upper triangle of a block; args: A, m, n, whole (1: zero everything). */
static int k_zero_upper(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *A = arg_data(a, 0);
    size_t m = (size_t)dagger_arg_i64(a, 1), n = (size_t)dagger_arg_i64(a, 2);
    if (dagger_arg_i64(a, 3)) {
        memset(A, 0, m * n * sizeof *A);
        return 0;
    }
    for (size_t j = 1; j < n; j++)
        for (size_t i = 0; i < j && i < m; i++)
            A[i + j * m] = 0;
    return 0;
}

/* ---------------------------------------------------------------- shapes */

static int is_matrix(const dagger_darray_t *a, const char *what, const char *name)
{
    DAGGER_CHECK(a, DAGGER_EINVAL, "%s: %s is NULL", what, name);
    DAGGER_CHECK(a->nd == 2, DAGGER_EINVAL, "%s: %s is %d-D, a matrix is needed", what, name,
                 a->nd);
    return 0;
}

static int is_f64_square(const dagger_darray_t *a, const char *what)
{
    int rc = is_matrix(a, what, "A");
    if (rc)
        return rc;
    char s[96];
    DAGGER_CHECK(a->dims[0] == a->dims[1], DAGGER_EINVAL, "%s: A is %s, not square", what,
                 dagger__da_shape_str(a, s, sizeof s));
    DAGGER_CHECK(a->elt == DAGGER_ELT_F64, DAGGER_EINVAL,
                 "%s: the factorisations support f64 only (element type %d)", what, (int)a->elt);
    return 0;
}

/* A zeroed array of `dims`, blocked `bs`, placed by `like`'s distribution. */
static int blank(const dagger_darray_t *like, dagger_elt_t elt, int nd, const size_t *dims,
                 const size_t *bs, dagger_darray_t **out)
{
    dagger__da_layout_t l;
    memset(&l, 0, sizeof l);
    l.elt = elt;
    l.nd = nd;
    for (int d = 0; d < DA_MAXD; d++) {
        l.dims[d] = d < nd ? dims[d] : 1;
        l.bs[d] = d < nd ? (bs[d] ? bs[d] : 1) : 1;
        if (l.bs[d] > l.dims[d] && l.dims[d])
            l.bs[d] = l.dims[d];
    }
    l.dist = like->dist == DAGGER_DIST_EXPLICIT ? DAGGER_DIST_ANY : like->dist;
    l.over = like->over;
    return dagger__da_build(like->ctx, &l, NULL, NULL, out);
}

/* A copy of `a` with square b x b blocks (b = its smaller block extent), or a new reference
 * when its blocks are square already and copy is false. */
static int square_copy(dagger_darray_t *a, bool copy, dagger_darray_t **out)
{
    size_t b = a->bs[0] < a->bs[1] ? a->bs[0] : a->bs[1];
    if (!copy && a->bs[0] == a->bs[1]) {
        *out = dagger_darray_retain(a);
        return 0;
    }
    size_t bs[2] = {b, b};
    int rc = blank(a, a->elt, 2, a->dims, bs, out);
    if (!rc && (rc = dagger_darray_copyto(*out, a))) {
        dagger_darray_release(*out);
        *out = NULL;
    }
    return rc;
}

/* Over ranks: every array of the operation over ranks, with square blocks (`square`) and B's
 * row blocks matching (`rowbs`, 0: any); else DAGGER_ENOSYS naming what is missing. */
static int ranks_ok(const dagger_darray_t *a, const dagger_darray_t *b, bool square, size_t rowbs,
                    const char *what)
{
    DAGGER_CHECK(a->ranks && (!b || b->ranks), DAGGER_ENOSYS,
                 "%s: one array has blocks on other ranks and another does not: over ranks every "
                 "operand must be (docs/darray.md, \"Across ranks\")",
                 what);
    DAGGER_CHECK(!square || a->bs[0] == a->bs[1], DAGGER_ENOSYS,
                 "%s: over ranks A needs square blocks (it has %zu x %zu; re-blocking across "
                 "ranks is not built yet)",
                 what, a->bs[0], a->bs[1]);
    DAGGER_CHECK(!b || !rowbs || b->bs[0] == rowbs, DAGGER_ENOSYS,
                 "%s: over ranks B's row blocks (%zu) must match A's blocks (%zu; re-blocking "
                 "across ranks is not built yet)",
                 what, b ? b->bs[0] : 0, rowbs);
    return 0;
}

/* LU over ranks: square blocks, and each block column on one rank (its panel task writes the
 * whole column, and a task writes mutable data of one rank only). */
static int lu_ranks_ok(const dagger_darray_t *a, const char *what)
{
    int rc = ranks_ok(a, NULL, true, 0, what);
    if (rc)
        return rc;
    for (size_t j = 0; j < a->grid[1]; j++)
        for (size_t i = 1; i < a->grid[0]; i++)
            DAGGER_CHECK(a->place[blk(a, i, j)] == a->place[blk(a, 0, j)], DAGGER_ENOSYS,
                         "%s: over ranks LU needs each block column on one rank (a column "
                         "distribution, DAGGER_DIST_BLOCKCOL or DAGGER_DIST_CYCLICCOL): blocks "
                         "(0, %zu) and (%zu, %zu) are on ranks %d and %d",
                         what, j, i, j, a->place[blk(a, 0, j)], a->place[blk(a, i, j)]);
    return 0;
}

/* ---------------------------------------------------------------- matmul */

int dagger_darray_matmul(dagger_darray_t *a, dagger_darray_t *b, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_matmul: out is NULL");
    *out = NULL;
    int rc = is_matrix(a, "dagger_darray_matmul", "A");
    if (rc)
        return rc;
    DAGGER_CHECK(b && (b->nd == 1 || b->nd == 2), DAGGER_EINVAL,
                 "dagger_darray_matmul: B must be a matrix or a vector");
    char sa[96], sb[96];
    DAGGER_CHECK(a->dims[1] == b->dims[0], DAGGER_EINVAL,
                 "dagger_darray_matmul: A is %s and B is %s: the inner dimensions %zu and %zu "
                 "differ",
                 dagger__da_shape_str(a, sa, sizeof sa), dagger__da_shape_str(b, sb, sizeof sb),
                 a->dims[1], b->dims[0]);
    DAGGER_CHECK(a->elt == b->elt && (a->elt == DAGGER_ELT_F64 || a->elt == DAGGER_ELT_F32),
                 DAGGER_EINVAL,
                 "dagger_darray_matmul: A (%s) and B (%s) must both be f64 or both f32 (types %d "
                 "and %d)",
                 dagger__da_shape_str(a, sa, sizeof sa), dagger__da_shape_str(b, sb, sizeof sb),
                 (int)a->elt, (int)b->elt);
    if ((a->ranks || b->ranks) && (rc = ranks_ok(a, b, false, a->bs[1], "dagger_darray_matmul")))
        return rc;
    dagger_darray_t *bb = dagger_darray_retain(b);
    if (b->bs[0] != a->bs[1]) { /* match B's row blocks to A's column blocks */
        size_t bs[2] = {a->bs[1], b->bs[1]};
        dagger_darray_release(bb);
        if ((rc = blank(b, b->elt, b->nd, b->dims, bs, &bb)))
            return rc;
        if ((rc = dagger_darray_copyto(bb, b))) {
            dagger_darray_release(bb);
            return rc;
        }
    }
    size_t dims[2] = {a->dims[0], b->nd == 2 ? b->dims[1] : 1};
    size_t bs[2] = {a->bs[0], bb->bs[1]};
    dagger_darray_t *c;
    if ((rc = blank(a, a->elt, b->nd, dims, bs, &c))) {
        dagger_darray_release(bb);
        return rc;
    }
    if (a->ranks && !c->ranks) {
        dagger_darray_release(bb);
        dagger_darray_release(c);
        return dagger__set_errmsg(DAGGER_ENOSYS,
                                  "dagger_darray_matmul: over ranks the result's distribution "
                                  "must put blocks on other ranks too (an explicit distribution "
                                  "is not carried over)");
    }
    la_t L;
    if ((rc = la_begin(&L, a->ctx))) {
        dagger_darray_release(bb);
        dagger_darray_release(c);
        return rc;
    }
    L.ranks = a->ranks;
    size_t gi = a->grid[0], gk = a->grid[1], gj = b->nd == 2 ? bb->grid[1] : 1;
    for (size_t j = 0; j < gj; j++)
        for (size_t i = 0; i < gi; i++)
            for (size_t l = 0; l < gk; l++) {
                size_t cb = blk(c, i, j);
                size_t n = b->nd == 2 ? cols(c, j) : 1;
                dagger_ddarg_t av[10] = {in_blk(a, blk(a, i, l)),
                                         in_blk(bb, blk(bb, l, j)),
                                         inout_blk(c, cb),
                                         dagger_ddval(dagger_i64((int64_t)rows(a, i))),
                                         dagger_ddval(dagger_i64((int64_t)n)),
                                         dagger_ddval(dagger_i64((int64_t)cols(a, l))),
                                         dagger_ddval(dagger_i64(0)),
                                         dagger_ddval(dagger_i64(0)),
                                         dagger_ddval(dagger_f64(1.0)),
                                         dagger_ddval(dagger_i64(a->elt))};
                la_spawn(&L, c->place[cb], k_gemm, "darray_gemm", av, 10);
            }
    rc = la_end(&L);
    dagger_darray_release(bb);
    if (rc) {
        dagger_darray_release(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------- Cholesky */

/* Factor the square-blocked `t` in place into L (lower; the upper part is zeroed). Priorities
 * (which hold on every rank): the critical path first (potrf 3, then the trsm of its panel 2),
 * then the updates of the next panel's column (the lookahead, 1), then the rest (0). */
static int cholesky_tiles(dagger_darray_t *t)
{
    la_t L;
    int rc = la_begin(&L, t->ctx);
    if (rc)
        return rc;
    L.ranks = t->ranks;
    size_t nt = t->grid[0];
#define I64(x) dagger_ddval(dagger_i64((int64_t)(x)))
    for (size_t k = 0; k < nt; k++) {
        size_t kk = blk(t, k, k), nk = rows(t, k);
        dagger_ddarg_t p[4] = {inout_blk(t, kk), I64(nk), I64(k), I64(k * t->bs[0])};
        la_spawn_prio(&L, t->place[kk], 3, k_potrf, "darray_potrf", p, 4);
        for (size_t i = k + 1; i < nt; i++) {
            size_t ik = blk(t, i, k);
            dagger_ddarg_t s[8] = {in_blk(t, kk), inout_blk(t, ik), I64(rows(t, i)), I64(nk),
                                   I64(0),        I64(1),           I64(1),          I64(0)};
            la_spawn_prio(&L, t->place[ik], 2, k_trsm, "darray_trsm", s, 8);
        }
        for (size_t i = k + 1; i < nt; i++) {
            size_t ik = blk(t, i, k), ii = blk(t, i, i);
            dagger_ddarg_t s[4] = {in_blk(t, ik), inout_blk(t, ii), I64(rows(t, i)), I64(nk)};
            la_spawn_prio(&L, t->place[ii], i == k + 1, k_syrk, "darray_syrk", s, 4);
            for (size_t j = k + 1; j < i; j++) {
                size_t jk = blk(t, j, k), ij = blk(t, i, j);
                dagger_ddarg_t g[10] = {in_blk(t, ik),
                                        in_blk(t, jk),
                                        inout_blk(t, ij),
                                        I64(rows(t, i)),
                                        I64(rows(t, j)),
                                        I64(nk),
                                        I64(0),
                                        I64(1),
                                        dagger_ddval(dagger_f64(-1)),
                                        I64(DAGGER_ELT_F64)};
                la_spawn_prio(&L, t->place[ij], j == k + 1, k_gemm, "darray_gemm", g, 10);
            }
        }
    }
    for (size_t j = 0; j < nt; j++)
        for (size_t i = 0; i <= j; i++) {
            size_t ij = blk(t, i, j);
            dagger_ddarg_t z[4] = {inout_blk(t, ij), I64(rows(t, i)), I64(cols(t, j)), I64(i < j)};
            la_spawn(&L, t->place[ij], k_zero_upper, "darray_zero_upper", z, 4);
        }
    return la_end(&L);
}

/* Run `factor` on square blocks and give the result blocked like `a`. */
static int on_square(dagger_darray_t *a, int (*factor)(dagger_darray_t *t, void *ud), void *ud,
                     dagger_darray_t **out)
{
    dagger_darray_t *t;
    int rc = a->ranks ? dagger_darray_copy(a, &t) : square_copy(a, true, &t);
    if (rc)
        return rc;
    if ((rc = factor(t, ud))) {
        dagger_darray_release(t);
        return rc;
    }
    if (a->bs[0] == a->bs[1]) {
        *out = t;
        return 0;
    }
    dagger__da_layout_t l;
    dagger__da_layout_like(a, a->elt, &l);
    dagger_darray_t *r;
    if (!(rc = dagger__da_build(a->ctx, &l, NULL, NULL, &r)) && (rc = dagger_darray_copyto(r, t)))
        dagger_darray_release(r);
    dagger_darray_release(t);
    if (!rc)
        *out = r;
    return rc;
}

static int chol_factor(dagger_darray_t *t, void *ud) { return cholesky_tiles(t); }

int dagger_darray_cholesky(dagger_darray_t *a, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_cholesky: out is NULL");
    *out = NULL;
    int rc = is_f64_square(a, "dagger_darray_cholesky");
    if (!rc && a->ranks)
        rc = ranks_ok(a, NULL, true, 0, "dagger_darray_cholesky");
    return rc ? rc : on_square(a, chol_factor, NULL, out);
}

/* ---------------------------------------------------------------- LU */

typedef struct lu_job {
    dagger_darray_t *t;
    int *ipiv; /* global, 1-based, n entries */
} lu_job_t;

/* Rows of block row i of an n x n matrix in b x b blocks. */
static size_t nrows(size_t n, size_t b, size_t i) { return n - i * b < b ? n - i * b : b; }

/* Factor block column k (rows k*b..n) with getrf. args: n, k, b, the pivots of the panel (nk
 * ints, 1-based, global), then blocks (k, k) .. (nt - 1, k). Data through arg_data, so the same
 * kernel serves spans (one process) and chunks (over ranks). */
static int k_panel(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = (size_t)dagger_arg_i64(a, 0), k = (size_t)dagger_arg_i64(a, 1);
    size_t b = (size_t)dagger_arg_i64(a, 2), nt = (n + b - 1) / b;
    int *ipiv = arg_data(a, 3);
    size_t nk = nrows(n, b, k), m = n - k * b;
    double *w = dagger__malloc((m ? m : 1) * (nk ? nk : 1) * sizeof *w);
    int *piv = dagger__malloc((nk ? nk : 1) * sizeof *piv);
    if (!w || !piv) {
        dagger__free(w);
        dagger__free(piv);
        return dagger_fail(tc, DAGGER_ENOMEM, "LU: out of memory for panel %zu", k);
    }
    for (size_t i = k, r0 = 0; i < nt; r0 += nrows(n, b, i), i++) /* gather the panel */
        for (size_t c = 0; c < nk; c++)
            memcpy(w + r0 + c * m, (double *)arg_data(a, 4 + i - k) + c * nrows(n, b, i),
                   nrows(n, b, i) * sizeof *w);
    int info = LAPACKE_dgetrf(LAPACK_COL_MAJOR, (int)m, (int)nk, w, (int)m, piv);
    for (size_t i = k, r0 = 0; i < nt; r0 += nrows(n, b, i), i++)
        for (size_t c = 0; c < nk; c++)
            memcpy((double *)arg_data(a, 4 + i - k) + c * nrows(n, b, i), w + r0 + c * m,
                   nrows(n, b, i) * sizeof *w);
    for (size_t c = 0; c < nk; c++)
        ipiv[c] = piv[c] + (int)(k * b);
    dagger__free(w);
    dagger__free(piv);
    if (info > 0)
        return dagger_fail(tc, DAGGER_ESINGULAR,
                           "LU: block (%zu, %zu): U(%d, %d) is exactly zero (pivot %d of the "
                           "block, global row and column %zu): the matrix is singular",
                           k, k, info, info, info, k * b + (size_t)info);
    if (info < 0)
        return dagger_fail(tc, DAGGER_EINVAL, "LU: dgetrf argument %d is invalid", -info);
    return 0;
}

/* Swap the rows of block column jc as panel k chose, then (jc > k) solve for U(k, jc).
 * args: n, k, jc, b, the panel's pivots, [block (k, k) when jc > k], blocks (k, jc) .. (nt-1, jc).
 */
static int k_swap(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = (size_t)dagger_arg_i64(a, 0), k = (size_t)dagger_arg_i64(a, 1);
    size_t jc = (size_t)dagger_arg_i64(a, 2), b = (size_t)dagger_arg_i64(a, 3);
    const int *ipiv = arg_data(a, 4);
    size_t first = jc > k ? 6 : 5; /* argument of block (k, jc) */
    size_t nc = nrows(n, b, jc), nk = nrows(n, b, k);
    for (size_t r = k * b; r < k * b + nk; r++) {
        size_t p = (size_t)ipiv[r - k * b] - 1;
        if (p < r || p >= n) /* the panel never ran (its spawn ran out of memory) */
            return dagger_fail(tc, DAGGER_ESTATE, "LU: no pivots for block column %zu", k);
        if (p == r)
            continue;
        double *x = arg_data(a, first + r / b - k), *y = arg_data(a, first + p / b - k);
        size_t lx = nrows(n, b, r / b), ly = nrows(n, b, p / b);
        for (size_t c = 0; c < nc; c++) {
            double v = x[r % b + c * lx];
            x[r % b + c * lx] = y[p % b + c * ly];
            y[p % b + c * ly] = v;
        }
    }
    if (jc > k && nk && nc)
        cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, (int)nk, (int)nc,
                    1.0, arg_data(a, 5), (int)nk, arg_data(a, first), (int)nk);
    return 0;
}

/* The pivots of panel k: a span of the job's array in one process; over ranks, a chunk made on
 * the rank of the panel's column (its writer), read back into the job's array at the end. */
static dagger_ddarg_t piv_arg(lu_job_t *j, dagger_chunk_t **pc, size_t k, size_t nk,
                              dagger_access_t acc)
{
    if (pc)
        return dagger_ddchunk(acc, pc[k]);
    return dagger_span(acc, j->ipiv + k * j->t->bs[0], nk * sizeof(int));
}

static int lu_tiles(dagger_darray_t *t, void *ud)
{
    lu_job_t *j = ud;
    j->t = t;
    size_t nt = t->grid[0], b = t->bs[0];
    dagger_chunk_t **pc = NULL;
    int rc = 0;
    if (t->ranks) { /* one pivot chunk per panel, on its column's rank */
        pc = dagger__calloc(nt, sizeof *pc);
        DAGGER_CHECK(pc, DAGGER_ENOMEM, "LU: out of memory");
        for (size_t k = 0; k < nt && !rc; k++)
            rc = dagger__da_chunk_on(t->ctx, t->place[blk(t, k, k)],
                                     nrows(t->dims[0], b, k) * sizeof(int), &pc[k]);
    }
    la_t L;
    dagger_ddarg_t *av = rc ? NULL : dagger__malloc((nt + 8) * sizeof *av);
    if (!rc && !av)
        rc = dagger__set_errmsg(DAGGER_ENOMEM, "LU: out of memory");
    if (rc || (rc = la_begin(&L, t->ctx))) {
        for (size_t k = 0; pc && k < nt; k++)
            dagger_chunk_release(pc[k]);
        dagger__free(pc);
        dagger__free(av);
        return rc;
    }
    L.ranks = t->ranks;
    for (size_t k = 0; k < nt; k++) {
        size_t nk = cols(t, k), n = 0;
        av[n++] = I64(t->dims[0]);
        av[n++] = I64(k);
        av[n++] = I64(b);
        av[n++] = piv_arg(j, pc, k, nk, DAGGER_ACCESS_INOUT);
        for (size_t i = k; i < nt; i++)
            av[n++] = inout_blk(t, blk(t, i, k));
        la_spawn(&L, t->place[blk(t, k, k)], k_panel, "darray_getrf_panel", av, n);
        for (size_t jc = 0; jc < nt; jc++) {
            if (jc == k)
                continue;
            n = 0;
            av[n++] = I64(t->dims[0]);
            av[n++] = I64(k);
            av[n++] = I64(jc);
            av[n++] = I64(b);
            av[n++] = piv_arg(j, pc, k, nk, DAGGER_ACCESS_IN);
            if (jc > k)
                av[n++] = in_blk(t, blk(t, k, k));
            for (size_t i = k; i < nt; i++)
                av[n++] = inout_blk(t, blk(t, i, jc));
            la_spawn(&L, t->place[blk(t, k, jc)], k_swap, "darray_laswp_trsm", av, n);
        }
        for (size_t jc = k + 1; jc < nt; jc++)
            for (size_t i = k + 1; i < nt; i++) {
                size_t ij = blk(t, i, jc);
                dagger_ddarg_t g[10] = {in_blk(t, blk(t, i, k)),
                                        in_blk(t, blk(t, k, jc)),
                                        inout_blk(t, ij),
                                        I64(rows(t, i)),
                                        I64(cols(t, jc)),
                                        I64(nk),
                                        I64(0),
                                        I64(0),
                                        dagger_ddval(dagger_f64(-1)),
                                        I64(DAGGER_ELT_F64)};
                la_spawn(&L, t->place[ij], k_gemm, "darray_gemm", g, 10);
            }
    }
    dagger__free(av);
    rc = la_end(&L);
    for (size_t k = 0; pc && k < nt; k++) { /* the pivots back into the job's array */
        if (!rc)
            rc = dagger__da_chunk_get(t->ctx, pc[k], j->ipiv + k * b,
                                      nrows(t->dims[0], b, k) * sizeof(int));
        dagger_chunk_release(pc[k]);
    }
    dagger__free(pc);
    return rc;
}

static int lu_factor(dagger_darray_t *a, int *ipiv, dagger_darray_t **out)
{
    lu_job_t j = {NULL, ipiv};
    return on_square(a, lu_tiles, &j, out);
}

int dagger_darray_lu(dagger_darray_t *a, dagger_darray_t **out, int64_t *ipiv)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_lu: out is NULL");
    *out = NULL;
    int rc = is_f64_square(a, "dagger_darray_lu");
    if (!rc && a->ranks)
        rc = lu_ranks_ok(a, "dagger_darray_lu");
    if (rc)
        return rc;
    size_t n = a->dims[0];
    int *piv = dagger__calloc(n ? n : 1, sizeof *piv);
    DAGGER_CHECK(piv, DAGGER_ENOMEM, "dagger_darray_lu: out of memory");
    rc = lu_factor(a, piv, out);
    if (!rc && ipiv)
        for (size_t i = 0; i < n; i++)
            ipiv[i] = piv[i];
    dagger__free(piv);
    return rc;
}

/* ---------------------------------------------------------------- solve */

/* Apply ipiv to the rows of x (all blocks at once); args: x array, ipiv, then annotations. */
static int k_pivot_rhs(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_darray_t *x = dagger_arg_ptr(a, 0);
    const int *ipiv = dagger_arg_ptr(a, 1);
    size_t b = x->bs[0], ncol = x->nd == 2 ? x->dims[1] : 1;
    for (size_t r = 0; r < x->dims[0]; r++) {
        size_t p = (size_t)ipiv[r] - 1;
        if (p < r || p >= x->dims[0])
            return dagger_fail(tc, DAGGER_ESTATE, "solve: no pivot for row %zu", r);
        if (p == r)
            continue;
        for (size_t c = 0; c < ncol; c++) {
            size_t gc = x->nd == 2 ? c / x->bs[1] : 0, lc = x->nd == 2 ? c % x->bs[1] : 0;
            double *u = x->ptr[blk(x, r / b, gc)], *v = x->ptr[blk(x, p / b, gc)];
            size_t lu = rows(x, r / b), lv = rows(x, p / b);
            double s = u[r % b + lc * lu];
            u[r % b + lc * lu] = v[p % b + lc * lv];
            v[p % b + lc * lv] = s;
        }
    }
    return 0;
}

/* Forward and backward substitution on x (blocked like f's rows) with the factor f. */
static int substitute(dagger_darray_t *f, dagger_darray_t *x, const int *ipiv,
                      dagger_solve_kind_t kind)
{
    la_t L;
    int rc = la_begin(&L, f->ctx);
    if (rc)
        return rc;
    L.ranks = f->ranks;
    size_t nt = f->grid[0], gc = x->nd == 2 ? x->grid[1] : 1;
    if (ipiv) {
        dagger_ddarg_t *av = dagger__malloc((x->nblocks + 2) * sizeof *av);
        if (!av) {
            la_end(&L);
            return dagger__set_errmsg(DAGGER_ENOMEM, "solve: out of memory");
        }
        av[0] = dagger_ddval(dagger_ptr(x));
        av[1] = dagger_in(ipiv, f->dims[0] * sizeof *ipiv);
        for (size_t b = 0; b < x->nblocks; b++)
            av[b + 2] = inout_blk(x, b);
        la_spawn(&L, -1, k_pivot_rhs, "darray_pivot_rhs", av, x->nblocks + 2);
        dagger__free(av);
    }
    bool lu = kind == DAGGER_SOLVE_LU;
    for (size_t c = 0; c < gc; c++) {
        size_t nc = x->nd == 2 ? cols(x, c) : 1;
        for (size_t k = 0; k < nt; k++) { /* L y = b */
            size_t xk = blk(x, k, c), kk = blk(f, k, k);
            dagger_ddarg_t s[8] = {in_blk(f, kk), inout_blk(x, xk), I64(rows(f, k)), I64(nc),
                                   I64(1),        I64(1),           I64(0),          I64(lu)};
            la_spawn(&L, x->place[xk], k_trsm, "darray_trsm", s, 8);
            for (size_t i = k + 1; i < nt; i++) {
                size_t xi = blk(x, i, c);
                dagger_ddarg_t g[10] = {in_blk(f, blk(f, i, k)),
                                        in_blk(x, xk),
                                        inout_blk(x, xi),
                                        I64(rows(f, i)),
                                        I64(nc),
                                        I64(rows(f, k)),
                                        I64(0),
                                        I64(0),
                                        dagger_ddval(dagger_f64(-1)),
                                        I64(DAGGER_ELT_F64)};
                la_spawn(&L, x->place[xi], k_gemm, "darray_gemm", g, 10);
            }
        }
        for (size_t k = nt; k-- > 0;) { /* U x = y, or L^T x = y */
            size_t xk = blk(x, k, c), kk = blk(f, k, k);
            dagger_ddarg_t s[8] = {in_blk(f, kk), inout_blk(x, xk), I64(rows(f, k)), I64(nc),
                                   I64(1),        I64(!lu),         I64(!lu),        I64(0)};
            la_spawn(&L, x->place[xk], k_trsm, "darray_trsm", s, 8);
            for (size_t i = 0; i < k; i++) {
                size_t xi = blk(x, i, c);
                /* U(i,k) x_k, or L(k,i)^T x_k */
                size_t fb = lu ? blk(f, i, k) : blk(f, k, i);
                dagger_ddarg_t g[10] = {
                    in_blk(f, fb),      in_blk(x, xk), inout_blk(x, xi),
                    I64(rows(f, i)),    I64(nc),       I64(rows(f, k)),
                    I64(!lu),           I64(0),        dagger_ddval(dagger_f64(-1)),
                    I64(DAGGER_ELT_F64)};
                la_spawn(&L, x->place[xi], k_gemm, "darray_gemm", g, 10);
            }
        }
    }
    return la_end(&L);
}

/* B with the row interchanges of ipiv applied, over ranks like B: collected here, permuted and
 * distributed again (O(n k) bytes through this rank; the factor never moves). */
static int pivoted_rhs(dagger_darray_t *b, const int *ipiv, dagger_darray_t **out)
{
    size_t n = b->dims[0], k = b->nd == 2 ? b->dims[1] : 1;
    double *buf = dagger__malloc((n * k > 0 ? n * k : 1) * sizeof *buf);
    DAGGER_CHECK(buf, DAGGER_ENOMEM, "dagger_darray_solve: out of memory");
    int rc = dagger_darray_collect(b, buf, n * k * sizeof *buf, 0);
    for (size_t r = 0; !rc && r < n; r++) {
        size_t p = (size_t)ipiv[r] - 1;
        for (size_t c = 0; p != r && c < k; c++) {
            double v = buf[r + c * n];
            buf[r + c * n] = buf[p + c * n];
            buf[p + c * n] = v;
        }
    }
    dagger__da_layout_t l;
    dagger__da_layout_like(b, b->elt, &l);
    if (!rc && !(rc = dagger__da_new(b->ctx, &l, out)) &&
        (rc = dagger__da_build_ranks(*out, NULL, buf, false))) {
        dagger_darray_release(*out);
        *out = NULL;
    }
    dagger__free(buf);
    return rc;
}

/* solve over ranks: A factored in a copy on its ranks, then the block substitutions there. */
static int solve_ranks(dagger_darray_t *a, dagger_darray_t *b, dagger_solve_kind_t kind,
                       dagger_darray_t **out)
{
    bool lu = kind == DAGGER_SOLVE_LU;
    int rc = lu ? lu_ranks_ok(a, "dagger_darray_solve") : 0;
    if (rc || (rc = ranks_ok(a, b, true, a->bs[0], "dagger_darray_solve")))
        return rc;
    size_t n = a->dims[0];
    int *piv = lu ? dagger__calloc(n ? n : 1, sizeof *piv) : NULL;
    DAGGER_CHECK(!lu || piv, DAGGER_ENOMEM, "dagger_darray_solve: out of memory");
    lu_job_t j = {NULL, piv};
    dagger_darray_t *t = NULL, *x = NULL;
    if (!(rc = dagger_darray_copy(a, &t)) && !(rc = lu ? lu_tiles(t, &j) : cholesky_tiles(t)) &&
        !(rc = lu ? pivoted_rhs(b, piv, &x) : dagger_darray_copy(b, &x)) &&
        !(rc = substitute(t, x, NULL, kind))) {
        *out = x;
        x = NULL;
    }
    dagger__free(piv);
    dagger_darray_release(t);
    dagger_darray_release(x);
    return rc;
}

int dagger_darray_solve(dagger_darray_t *a, dagger_darray_t *b, dagger_solve_kind_t kind,
                        dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_solve: out is NULL");
    *out = NULL;
    int rc = is_f64_square(a, "dagger_darray_solve");
    if (rc)
        return rc;
    DAGGER_CHECK(kind == DAGGER_SOLVE_LU || kind == DAGGER_SOLVE_CHOLESKY, DAGGER_EINVAL,
                 "dagger_darray_solve: unknown factorisation %d", (int)kind);
    char sa[96], sb[96];
    DAGGER_CHECK(b && (b->nd == 1 || b->nd == 2) && b->elt == DAGGER_ELT_F64 &&
                     b->dims[0] == a->dims[0],
                 DAGGER_EINVAL,
                 "dagger_darray_solve: A is %s and B is %s: B must be an f64 vector or matrix "
                 "with as many rows as A",
                 dagger__da_shape_str(a, sa, sizeof sa),
                 b ? dagger__da_shape_str(b, sb, sizeof sb) : "NULL");
    if (a->ranks || b->ranks)
        return solve_ranks(a, b, kind, out);
    size_t n = a->dims[0];
    int *piv = kind == DAGGER_SOLVE_LU ? dagger__calloc(n ? n : 1, sizeof *piv) : NULL;
    DAGGER_CHECK(kind != DAGGER_SOLVE_LU || piv, DAGGER_ENOMEM,
                 "dagger_darray_solve: out of memory");
    dagger_darray_t *t = NULL, *x = NULL;
    if ((rc = square_copy(a, true, &t)))
        goto out;
    if (kind == DAGGER_SOLVE_LU) {
        lu_job_t j = {NULL, piv};
        rc = lu_tiles(t, &j);
    } else {
        rc = cholesky_tiles(t);
    }
    if (rc)
        goto out;
    size_t bs[2] = {t->bs[0], b->nd == 2 ? b->bs[1] : 1};
    if ((rc = blank(b, DAGGER_ELT_F64, b->nd, b->dims, bs, &x)) ||
        (rc = dagger_darray_copyto(x, b)) || (rc = substitute(t, x, piv, kind)))
        goto out;
    if (x->bs[0] != b->bs[0]) { /* give the result blocked like B */
        dagger__da_layout_t l;
        dagger__da_layout_like(b, b->elt, &l);
        dagger_darray_t *r;
        if ((rc = dagger__da_build(b->ctx, &l, NULL, NULL, &r)))
            goto out;
        if ((rc = dagger_darray_copyto(r, x))) {
            dagger_darray_release(r);
            goto out;
        }
        dagger_darray_release(x);
        x = r;
    }
    *out = x;
    x = NULL;
out:
    dagger__free(piv);
    dagger_darray_release(t);
    dagger_darray_release(x);
    return rc;
}
