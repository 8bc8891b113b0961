/* tests/test_datadeps.c - datadeps regions on the runtime: values and orders.
 *
 * Each case compares the memory a region leaves with running the same task bodies in spawn
 * order, and checks orders through a global sequence counter (start/end stamps per task).
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <math.h>
#include <stdatomic.h>

#include <cblas.h>
#include <lapacke.h>

#include "dagger/datadeps.h"

extern void openblas_set_num_threads(int);

/* ------------------------------------------------------------------ helpers */

static _Atomic long seq;
typedef struct {
    _Atomic long start, end;
} stamp_t;

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void stamp_start(stamp_t *s)
{
    if (s)
        atomic_store(&s->start, atomic_fetch_add(&seq, 1) + 1);
}
static void stamp_end(stamp_t *s)
{
    if (s)
        atomic_store(&s->end, atomic_fetch_add(&seq, 1) + 1);
}
/* a ran entirely before b started */
#define ASSERT_BEFORE(a, b)                                                                        \
    do {                                                                                           \
        long e_ = atomic_load(&(a)->end), s_ = atomic_load(&(b)->start);                           \
        if (!(e_ > 0 && s_ > e_))                                                                  \
            fail_msg("%s (end %ld) should finish before %s (start %ld)", #a, e_, #b, s_);          \
    } while (0)

/* n tasks meet here: true when all arrived within 10 s (so they ran at the same time). */
static _Atomic int meet_count;
static bool meet(int n)
{
    atomic_fetch_add(&meet_count, 1);
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(&meet_count) >= n)
            return true;
        nap_ms(1);
    }
    return false;
}

static void end_ok(dagger_datadeps_t *dd) { ASSERT_OK(dagger_datadeps_end(dd)); }

static stamp_t st[16];

static dagger_datadeps_t *begin(dagger_ctx_t *ctx)
{
    /* every case starts from clean stamps, also when the cases share one process */
    for (int i = 0; i < 16; i++)
        atomic_store(&st[i].start, 0), atomic_store(&st[i].end, 0);
    atomic_store(&meet_count, 0);
    dagger_datadeps_t *dd = NULL;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    return dd;
}

static void spawn_drop(dagger_task_t *t)
{
    ASSERT_PTR(t);
    dagger_task_release(t);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ sort then copy */

/* sort!(x, n): slow on purpose, so that a missing dependency shows */
static int sort_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *x = dagger_arg_ptr(a, 0);
    nap_ms(20);
    qsort(x, (size_t)dagger_arg_i64(a, 1), sizeof *x, cmp_double);
    return 0;
}
/* copyto!(dst, src, n) */
static int copy_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    memcpy(dagger_arg_ptr(a, 0), dagger_arg_ptr(a, 1), (size_t)dagger_arg_i64(a, 2) * 8);
    return 0;
}

static void fill_random(double *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(test_rand(&seed) % 100000);
}
static bool is_sorted(const double *x, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (x[i - 1] > x[i])
            return false;
    return true;
}

TEST(sort_then_copy)
{
    dagger_ctx_t *ctx = test_ctx(2);
    enum { N = 1000 };
    static double X[N], C[N], Y[N], D[N];
    fill_random(X, N, 1);
    fill_random(Y, N, 2);
    dagger_datadeps_t *dd = begin(ctx);
    spawn_drop(dagger_datadeps_spawn(dd, sort_vec, dagger_inout(X, sizeof X), N));
    spawn_drop(
        dagger_datadeps_spawn(dd, copy_vec, dagger_out(C, sizeof C), dagger_in(X, sizeof X), N));
    /* Unannotated pointer: read of the annotated buffer it points into. */
    spawn_drop(dagger_datadeps_spawn(dd, sort_vec, dagger_inout(Y, sizeof Y), N));
    spawn_drop(dagger_datadeps_spawn(dd, copy_vec, dagger_out(D, sizeof D), (void *)Y, N));
    end_ok(dd);
    ASSERT_TRUE(is_sorted(C, N));
    ASSERT_TRUE(is_sorted(D, N));
    ASSERT_EQ(memcmp(C, X, sizeof C), 0);
    ASSERT_EQ(memcmp(D, Y, sizeof D), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ pairs of accesses */

/* reader(buf, tag, how): how 0 = nap, 1 = meet 2 */
static int touch(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    stamp_t *s = &st[dagger_arg_i64(a, 1)];
    stamp_start(s);
    int64_t how = dagger_arg_i64(a, 2);
    if (how == 1 && !meet(2))
        return dagger_fail(tc, DAGGER_ETASK, "the other task never ran beside this one");
    if (how == 0)
        nap_ms(30);
    if (how >= 10) { /* write the value `how` into every element */
        int64_t *x = dagger_arg_ptr(a, 0);
        int64_t n = dagger_arg_i64(a, 3);
        nap_ms(10);
        for (int64_t i = 0; i < n; i++)
            x[i] = how;
    }
    stamp_end(s);
    return 0;
}

TEST(in_in_run_concurrently)
{
    dagger_ctx_t *ctx = test_ctx(2);
    static double X[64];
    dagger_datadeps_t *dd = begin(ctx);
    spawn_drop(dagger_datadeps_spawn(dd, touch, dagger_in(X, sizeof X), 0, 1));
    spawn_drop(dagger_datadeps_spawn(dd, touch, dagger_in(X, sizeof X), 1, 1));
    end_ok(dd); /* each task fails unless the other ran at the same time */
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(in_then_out_then_out)
{
    dagger_ctx_t *ctx = test_ctx(2);
    static int64_t X[8];
    dagger_datadeps_t *dd = begin(ctx);
    spawn_drop(dagger_datadeps_spawn(dd, touch, dagger_in(X, sizeof X), 0, 0));
    spawn_drop(dagger_datadeps_spawn(dd, touch, dagger_in(X, sizeof X), 1, 0));
    spawn_drop(dagger_datadeps_spawn(dd, touch, dagger_out(X, sizeof X), 2, 11, 8));
    spawn_drop(dagger_datadeps_spawn(dd, touch, dagger_out(X, sizeof X), 3, 12, 8));
    spawn_drop(dagger_datadeps_spawn(dd, touch, dagger_in(X + 4, 8), 4, 0));
    end_ok(dd);
    ASSERT_BEFORE(&st[0], &st[2]); /* WAR */
    ASSERT_BEFORE(&st[1], &st[2]);
    ASSERT_BEFORE(&st[2], &st[3]); /* WAW */
    ASSERT_BEFORE(&st[3], &st[4]); /* RAW on a sub-range */
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(X[i], 12);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* y .= x .+ 1 through two annotations of (possibly) the same buffer */
static int incr_into(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const double *x = dagger_arg_ptr(a, 0);
    double *y = dagger_arg_ptr(a, 1);
    nap_ms(5);
    for (int64_t i = 0; i < dagger_arg_i64(a, 2); i++)
        y[i] = x[i] + 1;
    return 0;
}

TEST(duplicated_arguments)
{
    dagger_ctx_t *ctx = test_ctx(2);
    enum { N = 100 };
    static double X[N], Y[N];
    dagger_datadeps_t *dd = begin(ctx);
    for (int r = 0; r < 10; r++) /* In(X) and Out(X) in one task, ten times in a row */
        spawn_drop(dagger_datadeps_spawn(dd, incr_into, dagger_in(X, sizeof X),
                                         dagger_out(X, sizeof X), N));
    for (int r = 0; r < 5; r++) /* the same InOut twice */
        spawn_drop(dagger_datadeps_spawn(dd, incr_into, dagger_inout(X, sizeof X),
                                         dagger_inout(X, sizeof X), N));
    spawn_drop(
        dagger_datadeps_spawn(dd, incr_into, dagger_in(X, sizeof X), dagger_out(Y, sizeof Y), N));
    end_ok(dd);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ((int)X[i], 15);
        ASSERT_EQ((int)Y[i], 16);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ tiles of a matrix */

/* tile_op(p, rows, cols, ld, tag, mul, add): p[i,j] = p[i,j] * mul + add, stamped */
static int tile_op(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *p = dagger_arg_ptr(a, 0);
    int64_t rows = dagger_arg_i64(a, 1), cols = dagger_arg_i64(a, 2), ld = dagger_arg_i64(a, 3);
    stamp_t *s = &st[dagger_arg_i64(a, 4)];
    double mul = dagger_arg_f64(a, 5), add = dagger_arg_f64(a, 6);
    stamp_start(s);
    nap_ms(10);
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++)
            p[i + j * ld] = p[i + j * ld] * mul + add;
    stamp_end(s);
    return 0;
}

static void tile_seq(double *p, int rows, int cols, int ld, double mul, double add)
{
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++)
            p[i + j * ld] = p[i + j * ld] * mul + add;
}

TEST(matrix_quadrants_and_centre)
{
    dagger_ctx_t *ctx = test_ctx(4);
    double A[16], R[16];
    for (int i = 0; i < 16; i++)
        A[i] = R[i] = i;
    static const int qi[4] = {0, 2, 0, 2}, qj[4] = {0, 0, 2, 2};
    dagger_datadeps_t *dd = begin(ctx);
    /* 0: whole matrix; 1-4: quadrants; 5: centre; 6-9: quadrants; 10: whole */
    spawn_drop(dagger_datadeps_spawn(dd, tile_op, dagger_inout(A, sizeof A), 4, 4, 4, 0, 2.0, 1.0));
    tile_seq(R, 4, 4, 4, 2, 1);
    for (int q = 0; q < 4; q++) {
        double *p = &A[qi[q] + qj[q] * 4];
        spawn_drop(dagger_datadeps_spawn(dd, tile_op,
                                         dagger_tile(DAGGER_ACCESS_INOUT, p, 2, 2, 4, 8), 2, 2, 4,
                                         1 + q, 3.0, (double)q));
        tile_seq(&R[qi[q] + qj[q] * 4], 2, 2, 4, 3, q);
    }
    spawn_drop(dagger_datadeps_spawn(
        dd, tile_op, dagger_tile(DAGGER_ACCESS_INOUT, &A[5], 2, 2, 4, 8), 2, 2, 4, 5, 0.5, 7.0));
    tile_seq(&R[5], 2, 2, 4, 0.5, 7);
    for (int q = 0; q < 4; q++) {
        double *p = &A[qi[q] + qj[q] * 4];
        spawn_drop(dagger_datadeps_spawn(dd, tile_op,
                                         dagger_tile(DAGGER_ACCESS_INOUT, p, 2, 2, 4, 8), 2, 2, 4,
                                         6 + q, -1.0, 0.0));
        tile_seq(&R[qi[q] + qj[q] * 4], 2, 2, 4, -1, 0);
    }
    spawn_drop(
        dagger_datadeps_spawn(dd, tile_op, dagger_inout(A, sizeof A), 4, 4, 4, 10, 1.0, 100.0));
    tile_seq(R, 4, 4, 4, 1, 100);
    end_ok(dd);
    for (int i = 0; i < 16; i++)
        ASSERT_NEAR(A[i], R[i], 0);
    for (int q = 0; q < 4; q++) {
        ASSERT_BEFORE(&st[0], &st[1 + q]);
        ASSERT_BEFORE(&st[1 + q], &st[5]);
        ASSERT_BEFORE(&st[5], &st[6 + q]);
        ASSERT_BEFORE(&st[6 + q], &st[10]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* meet_tile(p, rows, cols, ld, tag): add 1 to the tile while meeting a second task */
static int meet_tile(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *p = dagger_arg_ptr(a, 0);
    int64_t rows = dagger_arg_i64(a, 1), cols = dagger_arg_i64(a, 2), ld = dagger_arg_i64(a, 3);
    stamp_t *s = &st[dagger_arg_i64(a, 4)];
    stamp_start(s);
    if (!meet(2))
        return dagger_fail(tc, DAGGER_ETASK, "ran alone: a false dependency");
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++)
            p[i + j * ld] += 1;
    stamp_end(s);
    return 0;
}

TEST(rows_and_columns_of_subtiles)
{
    dagger_ctx_t *ctx = test_ctx(2);
    double A[16] = {0};
    dagger_datadeps_t *dd = begin(ctx);
    /* rows 1 and 2 share no byte: they must run together */
    spawn_drop(dagger_datadeps_spawn(
        dd, meet_tile, dagger_tile(DAGGER_ACCESS_INOUT, &A[1], 1, 4, 4, 8), 1, 4, 4, 0));
    spawn_drop(dagger_datadeps_spawn(
        dd, meet_tile, dagger_tile(DAGGER_ACCESS_INOUT, &A[2], 1, 4, 4, 8), 1, 4, 4, 1));
    /* column 3 meets both rows: after both */
    spawn_drop(dagger_datadeps_spawn(
        dd, tile_op, dagger_tile(DAGGER_ACCESS_INOUT, &A[12], 4, 1, 4, 8), 4, 1, 4, 2, 10.0, 0.0));
    end_ok(dd);
    ASSERT_BEFORE(&st[0], &st[2]);
    ASSERT_BEFORE(&st[1], &st[2]);
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++) {
            double want = (i == 1 || i == 2) ? 1 : 0;
            if (j == 3)
                want *= 10;
            ASSERT_NEAR(A[i + j * 4], want, 0);
        }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* tri_op(p, n, ld, shape, tag, add): add to the elements of the shape */
static bool in_shape(int shape, int64_t i, int64_t j)
{
    switch (shape) {
    case DAGGER_SHAPE_UPPER:
        return i <= j;
    case DAGGER_SHAPE_LOWER:
        return i >= j;
    case DAGGER_SHAPE_UNIT_UPPER:
        return i < j;
    case DAGGER_SHAPE_UNIT_LOWER:
        return i > j;
    case DAGGER_SHAPE_DIAG:
        return i == j;
    default:
        return true;
    }
}
static int tri_op(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *p = dagger_arg_ptr(a, 0);
    int64_t n = dagger_arg_i64(a, 1), ld = dagger_arg_i64(a, 2), shape = dagger_arg_i64(a, 3);
    int64_t tag = dagger_arg_i64(a, 4), how = dagger_arg_i64(a, 5);
    stamp_start(&st[tag]);
    if (how == 1 && !meet(2))
        return dagger_fail(tc, DAGGER_ETASK, "ran alone: a false dependency");
    if (how == 0)
        nap_ms(20);
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < n; i++)
            if (in_shape((int)shape, i, j))
                p[i + j * ld] = p[i + j * ld] * 2 + (double)tag;
    stamp_end(&st[tag]);
    return 0;
}

TEST(triangle_aliasing)
{
    dagger_ctx_t *ctx = test_ctx(2);
    double A[64], R[64];
    for (int i = 0; i < 64; i++)
        A[i] = R[i] = i;
    double *t = &A[4 + 4 * 8], *rt = &R[4 + 4 * 8]; /* the 4x4 tile at (4, 4) of an 8x8 matrix */
    static const int shapes[] = {DAGGER_SHAPE_UNIT_UPPER, DAGGER_SHAPE_UNIT_LOWER,
                                 DAGGER_SHAPE_UPPER, DAGGER_SHAPE_DIAG, DAGGER_SHAPE_LOWER};
    static const int how[] = {1, 1, 0, 0, 0};
    dagger_datadeps_t *dd = begin(ctx);
    for (int k = 0; k < 5; k++) {
        spawn_drop(dagger_datadeps_spawn(
            dd, tri_op, dagger_tri(DAGGER_ACCESS_INOUT, (dagger_shape_t)shapes[k], t, 4, 8, 8), 4,
            8, shapes[k], k, how[k]));
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 4; i++)
                if (in_shape(shapes[k], i, j))
                    rt[i + j * 8] = rt[i + j * 8] * 2 + k;
    }
    end_ok(dd);                    /* tasks 0 and 1 (unit triangles) had to meet */
    ASSERT_BEFORE(&st[0], &st[2]); /* upper after unit-upper */
    ASSERT_BEFORE(&st[2], &st[3]); /* diagonal after upper */
    ASSERT_BEFORE(&st[3], &st[4]); /* lower after the diagonal */
    ASSERT_BEFORE(&st[1], &st[4]); /* and after unit-lower */
    for (int i = 0; i < 64; i++)
        ASSERT_NEAR(A[i], R[i], 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ sub-ranges */

/* shift(dst, n): nap, then set every element of dst to dst[0] + 1 */
static int bump_from_first(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *x = dagger_arg_ptr(a, 0);
    int64_t n = dagger_arg_i64(a, 1);
    nap_ms(20);
    double v = x[0] + 1;
    for (int64_t i = 0; i < n; i++)
        x[i] = v;
    return 0;
}
/* set every element of x to x[0] (no nap) */
static int spread_first(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *x = dagger_arg_ptr(a, 0);
    for (int64_t i = 1; i < dagger_arg_i64(a, 1); i++)
        x[i] = x[0];
    return 0;
}

TEST(overlapping_subranges)
{
    dagger_ctx_t *ctx = test_ctx(2);
    double X[3] = {0, 0, 0};
    dagger_datadeps_t *dd = begin(ctx);
    /* Julia's 1:2 and 2:3: InOut(X[1:2]) makes [1, 1, 0]; InOut(X[2:3]) copies X[2] onward */
    spawn_drop(
        dagger_datadeps_spawn(dd, bump_from_first, dagger_range(DAGGER_ACCESS_INOUT, X, 0, 16), 2));
    spawn_drop(
        dagger_datadeps_spawn(dd, spread_first, dagger_range(DAGGER_ACCESS_INOUT, X, 8, 16), 2));
    end_ok(dd);
    ASSERT_NEAR(X[0], 1, 0);
    ASSERT_NEAR(X[1], 1, 0);
    ASSERT_NEAR(X[2], 1, 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ add! DAG, tree reduction */

/* add!(y, x, n): y .+= x */
static int add_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *y = dagger_arg_ptr(a, 0);
    const double *x = dagger_arg_ptr(a, 1);
    for (int64_t i = 0; i < dagger_arg_i64(a, 2); i++)
        y[i] += x[i];
    return 0;
}
/* z .= x .+ y */
static int add3_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *z = dagger_arg_ptr(a, 0);
    const double *x = dagger_arg_ptr(a, 1), *y = dagger_arg_ptr(a, 2);
    nap_ms(5);
    for (int64_t i = 0; i < dagger_arg_i64(a, 3); i++)
        z[i] = x[i] + y[i];
    return 0;
}

TEST(add_dag_of_four_vectors)
{
    dagger_ctx_t *ctx = test_ctx(2);
    enum { N = 1000 };
    static double A[N], B[N], C[N], D[N], A0[N], B0[N], C0[N];
    fill_random(A, N, 3);
    fill_random(B, N, 4);
    fill_random(C, N, 5);
    memcpy(A0, A, sizeof A);
    memcpy(B0, B, sizeof B);
    memcpy(C0, C, sizeof C);
    dagger_datadeps_t *dd = begin(ctx);
    spawn_drop(
        dagger_datadeps_spawn(dd, add_vec, dagger_inout(B, sizeof B), dagger_in(A, sizeof A), N));
    spawn_drop(
        dagger_datadeps_spawn(dd, add_vec, dagger_inout(C, sizeof C), dagger_in(A, sizeof A), N));
    spawn_drop(dagger_datadeps_spawn(dd, add3_vec, dagger_out(D, sizeof D), dagger_in(B, sizeof B),
                                     dagger_in(C, sizeof C), N));
    spawn_drop(
        dagger_datadeps_spawn(dd, add_vec, dagger_inout(A, sizeof A), dagger_in(D, sizeof D), N));
    end_ok(dd);
    for (int i = 0; i < N; i++) {
        ASSERT_NEAR(D[i], (A0[i] + B0[i]) + (A0[i] + C0[i]), 0);
        ASSERT_NEAR(A[i], A0[i] + D[i], 0);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(tree_reduction)
{
    dagger_ctx_t *ctx = test_ctx(0);
    enum { V = 1000, N = 1000 };
    double *v = malloc(sizeof(double) * V * N), *want = calloc(N, sizeof(double));
    ASSERT_PTR(v);
    uint64_t s = 7;
    for (size_t i = 0; i < (size_t)V * N; i++) { /* small integers: every order sums exactly */
        v[i] = (double)(test_rand(&s) % 1000);
        want[i % N] += v[i];
    }
    dagger_datadeps_t *dd = begin(ctx);
    for (size_t stride = 1; stride < V; stride *= 2)
        for (size_t i = 0; i + stride < V; i += 2 * stride)
            spawn_drop(dagger_datadeps_spawn(dd, add_vec, dagger_inout(&v[i * N], N * 8),
                                             dagger_in(&v[(i + stride) * N], N * 8), N));
    end_ok(dd);
    for (int i = 0; i < N; i++)
        ASSERT_NEAR(v[i], want[i], 0);
    free(v);
    free(want);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ tiled Cholesky */

static int k_potrf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int nb = (int)dagger_arg_i64(a, 1), ld = (int)dagger_arg_i64(a, 2);
    int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nb, dagger_arg_ptr(a, 0), ld);
    return info ? dagger_fail(tc, DAGGER_ETASK, "dpotrf: info %d", info) : 0;
}
static int k_trsm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int nb = (int)dagger_arg_i64(a, 2), ld = (int)dagger_arg_i64(a, 3);
    cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, nb, 1.0,
                dagger_arg_ptr(a, 0), ld, dagger_arg_ptr(a, 1), ld);
    return 0;
}
static int k_syrk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int nb = (int)dagger_arg_i64(a, 2), ld = (int)dagger_arg_i64(a, 3);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, nb, nb, -1.0, dagger_arg_ptr(a, 0), ld,
                1.0, dagger_arg_ptr(a, 1), ld);
    return 0;
}
static int k_gemm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int nb = (int)dagger_arg_i64(a, 3), ld = (int)dagger_arg_i64(a, 4);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, nb, nb, nb, -1.0, dagger_arg_ptr(a, 0), ld,
                dagger_arg_ptr(a, 1), ld, 1.0, dagger_arg_ptr(a, 2), ld);
    return 0;
}

TEST(tiled_cholesky)
{
    openblas_set_num_threads(1);
    dagger_ctx_t *ctx = test_ctx(0);
    enum { N = 100, NB = 10, T = N / NB };
    double *A = malloc(sizeof(double) * N * N), *R = malloc(sizeof(double) * N * N);
    uint64_t s = 11;
    for (int j = 0; j < N; j++)
        for (int i = 0; i <= j; i++) {
            double x = (double)(test_rand(&s) % 1000) / 1000.0;
            A[i + j * N] = A[j + i * N] = x + (i == j ? N : 0);
        }
    memcpy(R, A, sizeof(double) * N * N);
    ASSERT_EQ(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', N, R, N), 0);
#define TL(i, j) (&A[(size_t)(i)*NB + (size_t)(j)*NB * N])
    dagger_datadeps_t *dd = begin(ctx);
    for (int k = 0; k < T; k++) {
        /* diagonal tiles are used through their lower triangle only */
        spawn_drop(dagger_datadeps_spawn(
            dd, k_potrf, dagger_tri(DAGGER_ACCESS_INOUT, DAGGER_SHAPE_LOWER, TL(k, k), NB, N, 8),
            NB, N));
        for (int i = k + 1; i < T; i++)
            spawn_drop(dagger_datadeps_spawn(
                dd, k_trsm, dagger_tri(DAGGER_ACCESS_IN, DAGGER_SHAPE_LOWER, TL(k, k), NB, N, 8),
                dagger_tile(DAGGER_ACCESS_INOUT, TL(i, k), NB, NB, N, 8), NB, N));
        for (int i = k + 1; i < T; i++) {
            spawn_drop(dagger_datadeps_spawn(
                dd, k_syrk, dagger_tile(DAGGER_ACCESS_IN, TL(i, k), NB, NB, N, 8),
                dagger_tri(DAGGER_ACCESS_INOUT, DAGGER_SHAPE_LOWER, TL(i, i), NB, N, 8), NB, N));
            for (int j = k + 1; j < i; j++)
                spawn_drop(dagger_datadeps_spawn(
                    dd, k_gemm, dagger_tile(DAGGER_ACCESS_IN, TL(i, k), NB, NB, N, 8),
                    dagger_tile(DAGGER_ACCESS_IN, TL(j, k), NB, NB, N, 8),
                    dagger_tile(DAGGER_ACCESS_INOUT, TL(i, j), NB, NB, N, 8), NB, N));
        }
    }
#undef TL
    dagger_datadeps_stats_t stats;
    dagger_datadeps_stats(dd, &stats);
    ASSERT_EQ((int)stats.tasks, T + T * (T - 1) + T * (T - 1) * (T - 2) / 6);
    end_ok(dd);
    double num = 0, den = 0;
    for (int j = 0; j < N; j++)
        for (int i = j; i < N; i++) {
            double d = A[i + j * N] - R[i + j * N];
            num += d * d;
            den += R[i + j * N] * R[i + j * N];
        }
    if (!(sqrt(num / den) <= 1e-10))
        fail_msg("relative difference %g from LAPACKE_dpotrf", sqrt(num / den));
    free(A);
    free(R);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ random stress */

#define SN 24 /* a 24 x 24 matrix of uint64, ld 24 */
/* apply(task, nargs, then per argument: ptr, desc) with desc = mode | shape << 2 | rows << 8 |
 * cols << 16: mixes what it reads into a hash, then writes hash-derived values */
static void each_elem(uint64_t *p, uint64_t desc, void (*f)(uint64_t *, uint64_t *), uint64_t *h)
{
    int shape = (int)((desc >> 2) & 63), rows = (int)((desc >> 8) & 255);
    int cols = (int)((desc >> 16) & 255);
    if (shape == DAGGER_SHAPE_SPAN) { /* rows = element count */
        for (int i = 0; i < rows; i++)
            f(&p[i], h);
        return;
    }
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++)
            if (in_shape(shape, i, j))
                f(&p[i + j * SN], h);
}
static void mix_in(uint64_t *e, uint64_t *h) { *h = *h * 1099511628211ull ^ *e; }
static void write_out(uint64_t *e, uint64_t *h)
{
    *e = *e * 31 + *h;
    *h += 1;
}
static void apply(uint64_t task, int n, uint64_t **ptr, const uint64_t *desc)
{
    uint64_t h = task * 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < n; k++)
        if (desc[k] & DAGGER_ACCESS_IN)
            each_elem(ptr[k], desc[k], mix_in, &h);
    for (int k = 0; k < n; k++)
        if (desc[k] & DAGGER_ACCESS_OUT)
            each_elem(ptr[k], desc[k], write_out, &h);
}
static int stress_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int n = (int)dagger_arg_i64(a, 1);
    uint64_t *ptr[3], desc[3];
    for (int k = 0; k < n; k++) {
        ptr[k] = dagger_arg_ptr(a, 2 + 2 * (size_t)k);
        desc[k] = (uint64_t)dagger_arg_i64(a, 3 + 2 * (size_t)k);
    }
    apply((uint64_t)dagger_arg_i64(a, 0), n, ptr, desc);
    return 0;
}

TEST(random_stress_equals_sequential)
{
    uint64_t s = test_seed();
    dagger_ctx_t *ctx = test_ctx(4);
    static uint64_t A[SN * SN], R[SN * SN];
    for (int i = 0; i < SN * SN; i++)
        A[i] = R[i] = (uint64_t)i;
    int ntasks = test_level_full() ? 20000 : 2000;
    dagger_datadeps_t *dd = begin(ctx);
    for (int t = 0; t < ntasks; t++) {
        int n = 1 + (int)(test_rand(&s) % 3);
        dagger_ddarg_t args[8];
        uint64_t *ptr[3], desc[3];
        args[0] = dagger_ddval(dagger_i64(t));
        args[1] = dagger_ddval(dagger_i64(n));
        for (int k = 0; k < n; k++) {
            int mode = 1 + (int)(test_rand(&s) % 3), shape = (int)(test_rand(&s) % 7);
            int i0 = (int)(test_rand(&s) % SN), j0 = (int)(test_rand(&s) % SN);
            int rows = 1 + (int)(test_rand(&s) % (uint64_t)(SN - i0));
            int cols = 1 + (int)(test_rand(&s) % (uint64_t)(SN - j0));
            if (shape >= DAGGER_SHAPE_UPPER)
                rows = cols = rows < cols ? rows : cols;
            uint64_t *p = &A[i0 + j0 * SN];
            if (shape == DAGGER_SHAPE_SPAN) {
                int max = SN * SN - (i0 + j0 * SN);
                rows = 1 + (int)(test_rand(&s) % (uint64_t)(max < 100 ? max : 100));
                args[2 + 2 * k] = dagger_span((dagger_access_t)mode, p, (size_t)rows * 8);
            } else if (shape == DAGGER_SHAPE_TILE) {
                args[2 + 2 * k] =
                    dagger_tile((dagger_access_t)mode, p, (size_t)rows, (size_t)cols, SN, 8);
            } else {
                args[2 + 2 * k] = dagger_tri((dagger_access_t)mode, (dagger_shape_t)shape, p,
                                             (size_t)rows, SN, 8);
            }
            desc[k] =
                (uint64_t)mode | (uint64_t)shape << 2 | (uint64_t)rows << 8 | (uint64_t)cols << 16;
            ptr[k] = &R[i0 + j0 * SN];
            args[3 + 2 * k] = dagger_ddval(dagger_i64((int64_t)desc[k]));
        }
        apply((uint64_t)t, n, ptr, desc);
        spawn_drop(
            dagger_datadeps_spawn_impl(dd, NULL, stress_body, "stress", args, 2 + 2 * (size_t)n));
    }
    end_ok(dd);
    for (int i = 0; i < SN * SN; i++)
        if (A[i] != R[i])
            fail_msg("element %d (row %d, col %d) differs from the sequential run", i, i % SN,
                     i / SN);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------------ errors, scopes, rules */

static int fail_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    nap_ms(10);
    return dagger_fail(tc, DAGGER_ETASK, "boom in %s", dagger_tc_name(tc));
}

TEST(errors_reach_end_and_later_tasks)
{
    dagger_ctx_t *ctx = test_ctx(2);
    static double X[16];
    static int64_t Y[16];
    dagger_datadeps_t *dd = begin(ctx);
    dagger_task_t *f = dagger_datadeps_spawn(dd, fail_task, dagger_inout(X, sizeof X));
    dagger_task_t *after = dagger_datadeps_spawn(dd, touch, dagger_in(X, sizeof X), 0, 2);
    dagger_task_t *other =
        dagger_datadeps_spawn(dd, touch, dagger_out(Y, sizeof Y), 1, 13, 16); /* independent */
    ASSERT_ERR(dagger_datadeps_end(dd), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_last_errmsg(), "boom in fail_task");
    ASSERT_ERR(dagger_fetch(f, NULL), DAGGER_ETASK);
    ASSERT_ERR(dagger_fetch(after, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(after), "boom");
    ASSERT_EQ(atomic_load(&st[0].start), 0); /* `after` never ran */
    ASSERT_OK(dagger_fetch(other, NULL));
    ASSERT_EQ(Y[15], 13);
    ASSERT_TRUE(atomic_load(&st[1].end) > 0);
    dagger_task_release(f);
    dagger_task_release(after);
    dagger_task_release(other);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int plain_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(1);
    return 0;
}

TEST(fetch_inside_region_is_refused)
{
    dagger_ctx_t *ctx = test_ctx(2);
    static double X[4];
    dagger_datadeps_t *dd = begin(ctx);
    dagger_task_t *t = dagger_datadeps_spawn(dd, plain_one, dagger_inout(X, sizeof X));
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ESTATE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "open datadeps region");
    ASSERT_ERR(dagger_wait(t), DAGGER_ESTATE);
    /* ordinary spawns keep working inside the region */
    dagger_task_t *p = dagger_spawn(ctx, plain_one);
    int64_t v = 0;
    ASSERT_OK(dagger_fetch_i64(p, &v));
    ASSERT_EQ(v, 1);
    end_ok(dd);
    v = 0;
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, 1);
    dagger_task_release(t);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int *w = dagger_arg_ptr(a, 0);
    *w = dagger_tc_thread(tc);
    return 0;
}

TEST(scopes_are_honoured)
{
    dagger_ctx_t *ctx = test_ctx(2);
    static int W[8];
    dagger_scope_t *sc = dagger_scope_thread(1);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = sc;
    dagger_datadeps_t *dd = begin(ctx);
    for (int i = 0; i < 8; i++)
        spawn_drop(dagger_datadeps_spawn_opts(dd, &o, where, dagger_out(&W[i], sizeof W[i])));
    end_ok(dd);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(W[i], 1);
    dagger_scope_release(sc);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(impossible_scope_fails_region)
{
    dagger_ctx_t *ctx = test_ctx(2);
    static int W[2];
    dagger_scope_t *sc = dagger_scope_thread(99);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = sc;
    dagger_datadeps_t *dd = begin(ctx);
    dagger_task_t *bad = dagger_datadeps_spawn_opts(dd, &o, where, dagger_out(W, sizeof W));
    dagger_task_t *next = dagger_datadeps_spawn(dd, where, dagger_inout(W, sizeof W));
    ASSERT_ERR(dagger_datadeps_end(dd), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "99");
    ASSERT_ERR(dagger_fetch(next, NULL), DAGGER_EUPSTREAM);
    dagger_task_release(bad);
    dagger_task_release(next);
    dagger_scope_release(sc);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(bad_annotation_fails_task)
{
    dagger_ctx_t *ctx = test_ctx(2);
    static double A[16];
    dagger_datadeps_t *dd = begin(ctx);
    dagger_task_t *t = dagger_datadeps_spawn(
        dd, tile_op, dagger_tile(DAGGER_ACCESS_INOUT, A, 4, 2, 3, 8), 4, 2, 3, 0, 1.0, 0.0);
    ASSERT_ERR(dagger_datadeps_end(dd), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "leading dimension 3");
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 1");
    ASSERT_EQ(atomic_load(&st[0].start), 0);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* the callback form, and a region opened inside a task */
typedef struct {
    double *x, *c;
    int n;
} sc_t;
static int sort_copy_body(dagger_datadeps_t *dd, void *ud)
{
    sc_t *p = ud;
    dagger_task_release(dagger_datadeps_spawn(dd, sort_vec, dagger_inout(p->x, p->n * 8), p->n));
    dagger_task_release(dagger_datadeps_spawn(dd, copy_vec, dagger_out(p->c, p->n * 8),
                                              dagger_in(p->x, p->n * 8), p->n));
    return 0;
}
static int region_in_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    sc_t *p = dagger_arg_ptr(a, 0);
    int rc = dagger_datadeps_run(dagger_tc_ctx(tc), 0, sort_copy_body, p);
    if (rc)
        return dagger_fail(tc, rc, "region: %s", dagger_last_errmsg());
    *out = dagger_bool(is_sorted(p->c, (size_t)p->n));
    return 0;
}

TEST(callback_form_and_nested_region)
{
    dagger_ctx_t *ctx = test_ctx(1);
    enum { N = 500 };
    static double X[N], C[N], X2[N], C2[N];
    fill_random(X, N, 9);
    fill_random(X2, N, 10);
    sc_t a = {X, C, N}, b = {X2, C2, N};
    ASSERT_OK(dagger_datadeps_run(ctx, DAGGER_DATADEPS_TIMING, sort_copy_body, &a));
    ASSERT_TRUE(is_sorted(C, N));
    dagger_task_t *t = dagger_spawn(ctx, region_in_task, (void *)&b); /* one thread: no deadlock */
    bool ok = false;
    ASSERT_OK(dagger_fetch_bool(t, &ok));
    ASSERT_TRUE(ok);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(sort_then_copy, in_in_run_concurrently, in_then_out_then_out, duplicated_arguments,
          matrix_quadrants_and_centre, rows_and_columns_of_subtiles, triangle_aliasing,
          overlapping_subranges, add_dag_of_four_vectors, tree_reduction, tiled_cholesky,
          random_stress_equals_sequential, errors_reach_end_and_later_tasks,
          fetch_inside_region_is_refused, scopes_are_honoured, impossible_scope_fails_region,
          bad_annotation_fails_task, callback_form_and_nested_region)
