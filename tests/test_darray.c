/* tests/test_darray.c - distributed arrays on threads: round trips, constructors, placement,
 * map/broadcast, reductions, copies, and linear algebra against plain loops and LAPACKE.
 *
 * The cross-rank cases are in tests/test_darray_mpi.c (label mpi).
 * SPDX-License-Identifier: MIT
 */
#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>

#include "harness.h"

#include "dagger/darray.h"

extern void openblas_set_num_threads(int n);

static const dagger_elt_t ELTS[4] = {DAGGER_ELT_F64, DAGGER_ELT_F32, DAGGER_ELT_I64,
                                     DAGGER_ELT_I32};

/* Element k of a buffer of type `e` as a double, and back. */
static double get(const void *p, size_t k, dagger_elt_t e)
{
    switch (e) {
    case DAGGER_ELT_F64:
        return ((const double *)p)[k];
    case DAGGER_ELT_F32:
        return ((const float *)p)[k];
    case DAGGER_ELT_I64:
        return (double)((const int64_t *)p)[k];
    default:
        return ((const int32_t *)p)[k];
    }
}
static void set(void *p, size_t k, dagger_elt_t e, double v)
{
    switch (e) {
    case DAGGER_ELT_F64:
        ((double *)p)[k] = v;
        break;
    case DAGGER_ELT_F32:
        ((float *)p)[k] = (float)v;
        break;
    case DAGGER_ELT_I64:
        ((int64_t *)p)[k] = (int64_t)v;
        break;
    default:
        ((int32_t *)p)[k] = (int32_t)v;
        break;
    }
}

static void *collect_new(dagger_darray_t *a, unsigned flags)
{
    size_t n = dagger_darray_length(a) * dagger_elt_size(dagger_darray_elt(a));
    void *p = malloc(n ? n : 1);
    ASSERT_OK(dagger_darray_collect(a, p, n, flags));
    return p;
}

static dagger_darray_t *from(dagger_ctx_t *ctx, dagger_elt_t e, dagger_dims_t blocks,
                             dagger_dims_t dims, const void *src)
{
    dagger_darray_t *a;
    ASSERT_OK(dagger_darray_distribute(ctx, e, blocks, dims, src, NULL, &a));
    return a;
}

/* ---------------------------------------------------------------- round trips */

TEST(distribute_collect_roundtrip_all_dims_and_types)
{
    dagger_ctx_t *ctx = test_ctx(3);
    const size_t dims[4] = {7, 5, 4, 3}, bs[4] = {3, 2, 3, 2}; /* ragged everywhere */
    for (int nd = 1; nd <= 4; nd++)
        for (int t = 0; t < 4; t++) {
            dagger_elt_t e = ELTS[t];
            dagger_dims_t d = {nd, {0}}, b = {nd, {0}};
            size_t len = 1;
            for (int k = 0; k < nd; k++) {
                d.d[k] = dims[k];
                b.d[k] = bs[k];
                len *= dims[k];
            }
            size_t esz = dagger_elt_size(e);
            char *src = malloc(len * esz);
            for (size_t k = 0; k < len; k++)
                set(src, k, e, (double)(k * 3 + 1));
            for (int rm = 0; rm < 2; rm++) {
                dagger_darray_opts_t o;
                dagger_darray_opts_init(&o);
                o.flags = rm ? DAGGER_DARRAY_ROW_MAJOR : 0;
                dagger_darray_t *a;
                ASSERT_OK(dagger_darray_distribute(ctx, e, b, d, src, &o, &a));
                ASSERT_EQ(dagger_darray_ndims(a), nd);
                ASSERT_EQ(dagger_darray_length(a), len);
                char *back = collect_new(a, o.flags);
                ASSERT_EQ(memcmp(back, src, len * esz), 0);
                free(back);
                if (nd >= 2 && !rm) { /* row-major out of a column-major array: the transpose */
                    back = collect_new(a, DAGGER_DARRAY_ROW_MAJOR);
                    if (nd == 2)
                        for (size_t i = 0; i < dims[0]; i++)
                            for (size_t j = 0; j < dims[1]; j++)
                                ASSERT_EQ(get(back, i * dims[1] + j, e),
                                          get(src, i + j * dims[0], e));
                    free(back);
                }
                /* block chunks: typed arrays of the ragged block shape */
                dagger_dims_t g = dagger_darray_grid(a);
                size_t nb = 1;
                for (int k = 0; k < nd; k++) {
                    ASSERT_EQ(g.d[k], (dims[k] + bs[k] - 1) / bs[k]);
                    nb *= g.d[k];
                }
                ASSERT_EQ(dagger_darray_nblocks(a), nb);
                dagger_chunk_t *last = dagger_darray_block(a, nb - 1);
                size_t shape[4];
                ASSERT_EQ(dagger_chunk_shape(last, shape, 4), nd);
                for (int k = 0; k < nd; k++)
                    ASSERT_EQ(shape[k], dims[k] - (g.d[k] - 1) * bs[k]);
                ASSERT_EQ(dagger_chunk_elt(last), e);
                ASSERT_NULL(dagger_darray_block(a, nb));
                dagger_darray_release(a);
            }
            free(src);
        }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(collect_checks_its_buffer)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_darray_t *a;
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2, 2), DAGGER_DIMS(3, 4), NULL, &a));
    double buf[12];
    ASSERT_ERR(dagger_darray_collect(a, buf, sizeof buf - 1, 0), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the 3x4 array needs 96 bytes, the buffer has 95");
    ASSERT_ERR(dagger_darray_collect(a, buf, sizeof buf, 8), DAGGER_EINVAL);
    dagger_darray_release(a);
    ASSERT_ERR(dagger_darray_zeros(ctx, DAGGER_ELT_U8, DAGGER_AUTOBLOCKS, DAGGER_DIMS(3), NULL, &a),
               DAGGER_EINVAL);
    ASSERT_ERR(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(0, 2), DAGGER_DIMS(3, 4), NULL, &a),
        DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "block size 0 in dimension 0");
    ASSERT_ERR(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2), DAGGER_DIMS(3, 4), NULL, &a),
        DAGGER_EINVAL);
    ASSERT_ERR(
        dagger_darray_randn(ctx, DAGGER_ELT_I32, DAGGER_AUTOBLOCKS, DAGGER_DIMS(3), 1, NULL, &a),
        DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "randn");
    /* an empty array: one empty block, sum 0, min undefined */
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(0, 3), NULL, &a));
    ASSERT_EQ(dagger_darray_length(a), 0);
    ASSERT_OK(dagger_darray_collect(a, NULL, 0, 0));
    dagger_value_t v;
    ASSERT_OK(dagger_darray_reduce(a, DAGGER_OP_ADD, NULL, &v));
    ASSERT_EQ(v.u.f, 0.0);
    ASSERT_ERR(dagger_darray_reduce(a, DAGGER_OP_MIN, NULL, &v), DAGGER_EINVAL);
    dagger_darray_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- constructors */

TEST(constructors_sizes_and_values)
{
    dagger_ctx_t *ctx = test_ctx(4);
    for (int t = 0; t < 4; t++) {
        dagger_elt_t e = ELTS[t];
        dagger_darray_t *z, *o, *f;
        ASSERT_OK(dagger_darray_zeros(ctx, e, DAGGER_BLOCKS(4, 3), DAGGER_DIMS(10, 7), NULL, &z));
        ASSERT_OK(dagger_darray_ones(ctx, e, DAGGER_BLOCKS(4, 3), DAGGER_DIMS(10, 7), NULL, &o));
        ASSERT_OK(dagger_darray_fill(ctx, e, DAGGER_AUTOBLOCKS, DAGGER_DIMS(10, 7), 5.0, NULL, &f));
        ASSERT_EQ(dagger_darray_dims(z).d[0], 10);
        ASSERT_EQ(dagger_darray_dims(z).d[1], 7);
        ASSERT_EQ(dagger_darray_block_dims(z).d[0], 4);
        ASSERT_TRUE(dagger_darray_nblocks(f) >= 4); /* AutoBlocks: about two per thread */
        void *zb = collect_new(z, 0), *ob = collect_new(o, 0), *fb = collect_new(f, 0);
        for (size_t k = 0; k < 70; k++) {
            ASSERT_EQ(get(zb, k, e), 0.0);
            ASSERT_EQ(get(ob, k, e), 1.0);
            ASSERT_EQ(get(fb, k, e), 5.0);
        }
        free(zb);
        free(ob);
        free(fb);
        dagger_darray_release(z);
        dagger_darray_release(o);
        dagger_darray_release(f);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The same seed gives the same array on 1 and 4 threads, with any blocking and placement;
 * another seed gives another array. */
TEST(rand_same_seed_same_array_on_1_and_4_threads)
{
    for (int t = 0; t < 4; t++) {
        dagger_elt_t e = ELTS[t];
        size_t esz = dagger_elt_size(e);
        void *ref = NULL;
        int variant = 0;
        for (int th = 1; th <= 4; th += 3)
            for (int dist = 0; dist < 3; dist++, variant++) {
                dagger_ctx_t *ctx = test_ctx(th);
                dagger_darray_opts_t o;
                dagger_darray_opts_init(&o);
                o.dist = dist == 1 ? DAGGER_DIST_CYCLICROW : DAGGER_DIST_ANY;
                dagger_dims_t b = dist == 2 ? DAGGER_BLOCKS(7, 3) : DAGGER_BLOCKS(20, 20);
                dagger_darray_t *a;
                ASSERT_OK(dagger_darray_rand(ctx, e, b, DAGGER_DIMS(57, 23), 42, &o, &a));
                void *v = collect_new(a, 0);
                if (!ref)
                    ref = v;
                else {
                    ASSERT_EQ(memcmp(ref, v, 57 * 23 * esz), 0);
                    free(v);
                }
                dagger_darray_release(a);
                if (variant == 0) { /* another seed differs; floats lie in [0, 1) */
                    ASSERT_OK(dagger_darray_rand(ctx, e, b, DAGGER_DIMS(57, 23), 43, &o, &a));
                    void *w = collect_new(a, 0);
                    size_t same = 0;
                    for (size_t k = 0; k < 57 * 23; k++) {
                        same += get(w, k, e) == get(ref, k, e);
                        if (e == DAGGER_ELT_F64 || e == DAGGER_ELT_F32)
                            ASSERT_TRUE(get(ref, k, e) >= 0 && get(ref, k, e) < 1);
                    }
                    ASSERT_TRUE(same < 10);
                    free(w);
                    dagger_darray_release(a);
                }
                ASSERT_OK(dagger_ctx_close(ctx));
            }
        free(ref);
    }
    /* randn: mean near 0 and variance near 1 over 40000 values */
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_darray_t *a;
    ASSERT_OK(dagger_darray_randn(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(200, 200), 7,
                                  NULL, &a));
    double *v = collect_new(a, 0), s = 0, s2 = 0;
    for (size_t k = 0; k < 40000; k++) {
        s += v[k];
        s2 += v[k] * v[k];
    }
    ASSERT_NEAR(s / 40000, 0.0, 0.03);
    ASSERT_NEAR(s2 / 40000, 1.0, 0.05);
    free(v);
    dagger_darray_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- placement */

TEST(placement_blockrow_cyclic_explicit)
{
    dagger_ctx_t *ctx = test_ctx(4);
    struct {
        dagger_dist_t dist;
        int want[16]; /* place of block (i, j) at i + 4 j on a 4 x 4 grid */
    } cases[] = {
        {DAGGER_DIST_BLOCKROW, {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3}},
        {DAGGER_DIST_CYCLICROW, {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3}},
        {DAGGER_DIST_BLOCKCOL, {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}},
        {DAGGER_DIST_CYCLICCOL, {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}},
        {DAGGER_DIST_ANY, {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dagger_darray_opts_t o;
        dagger_darray_opts_init(&o);
        o.dist = cases[c].dist;
        dagger_darray_t *a, *b;
        ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2, 2), DAGGER_DIMS(8, 8), 1,
                                     &o, &a));
        for (size_t k = 0; k < 16; k++) {
            ASSERT_EQ(dagger_darray_block_place(a, k), cases[c].want[k]);
            dagger_proc_t p;
            bool mut = dagger_chunk_is_mutable(dagger_darray_block(a, k), &p);
            ASSERT_EQ(mut, cases[c].want[k] >= 0);
            if (mut)
                ASSERT_EQ(p.index, cases[c].want[k]);
        }
        /* results keep the places of their input */
        ASSERT_OK(dagger_darray_broadcast_scalar(a, DAGGER_OP_ADD, 1.0, false, &b));
        for (size_t k = 0; k < 16; k++)
            ASSERT_EQ(dagger_darray_block_place(b, k), cases[c].want[k]);
        dagger_darray_release(b);
        dagger_darray_release(a);
    }
    /* blockrow with fewer block rows than threads: 2 block rows on 4 threads */
    dagger_darray_opts_t o;
    dagger_darray_opts_init(&o);
    o.dist = DAGGER_DIST_BLOCKROW;
    dagger_darray_t *a;
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_I32, DAGGER_BLOCKS(4), DAGGER_DIMS(8), &o, &a));
    ASSERT_EQ(dagger_darray_block_place(a, 0), 0);
    ASSERT_EQ(dagger_darray_block_place(a, 1), 2);
    dagger_darray_release(a);
    /* explicit places, cycled over the blocks */
    int places[3] = {3, 1, 2};
    o.dist = DAGGER_DIST_EXPLICIT;
    o.places = places;
    o.nplaces = 3;
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_I32, DAGGER_BLOCKS(1), DAGGER_DIMS(5), &o, &a));
    for (size_t k = 0; k < 5; k++)
        ASSERT_EQ(dagger_darray_block_place(a, k), places[k % 3]);
    dagger_darray_release(a);
    places[1] = 9;
    ASSERT_ERR(dagger_darray_ones(ctx, DAGGER_ELT_I32, DAGGER_BLOCKS(1), DAGGER_DIMS(5), &o, &a),
               DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "thread 9 does not exist");
    o.over = DAGGER_DARRAY_RANKS;
    ASSERT_ERR(dagger_darray_ones(ctx, DAGGER_ELT_I32, DAGGER_BLOCKS(1), DAGGER_DIMS(5), &o, &a),
               DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "rank 3 does not exist");
    /* over ranks with one process: every block on rank 0, free to move */
    o.dist = DAGGER_DIST_CYCLICROW;
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_I32, DAGGER_BLOCKS(1), DAGGER_DIMS(5), &o, &a));
    for (size_t k = 0; k < 5; k++)
        ASSERT_EQ(dagger_darray_block_place(a, k), -1);
    dagger_darray_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- map and broadcast */

static void sq_plus_one(void *out, const void *in, void *ud)
{
    *(double *)out = *(const double *)in * *(const double *)in + 1;
}
static void to_i32_half(void *out, const void *in, void *ud)
{
    *(int32_t *)out = (int32_t)(*(const double *)in * 100);
}
static int scale_block(void *out, const void *in, const dagger_darray_blockinfo_t *bi, void *ud)
{
    for (size_t k = 0; k < bi->count; k++)
        ((double *)out)[k] = ((const double *)in)[k] * *(double *)ud + (double)bi->origin[0];
    return 0;
}
static int failing_block(void *out, const void *in, const dagger_darray_blockinfo_t *bi, void *ud)
{
    return bi->index == 2 ? DAGGER_ERANGE : 0;
}
static void hypot_fn(void *out, const void *x, const void *y, void *ud)
{
    *(double *)out = hypot(*(const double *)x, *(const double *)y);
}

TEST(map_and_broadcast_against_loops)
{
    dagger_ctx_t *ctx = test_ctx(3);
    dagger_darray_t *a, *b, *c;
    ASSERT_OK(dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(5, 4), DAGGER_DIMS(13, 9), 3,
                                 NULL, &a));
    ASSERT_OK(dagger_darray_randn(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 7), DAGGER_DIMS(13, 9), 4,
                                  NULL, &b));
    double *x = collect_new(a, 0), *y = collect_new(b, 0), *r;
    size_t n = 13 * 9;
    ASSERT_OK(dagger_darray_map(a, DAGGER_ELT_RAW, sq_plus_one, NULL, NULL, &c));
    r = collect_new(c, 0);
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(r[k], x[k] * x[k] + 1);
    free(r);
    dagger_darray_release(c);
    ASSERT_OK(dagger_darray_map(a, DAGGER_ELT_I32, to_i32_half, NULL, NULL, &c));
    ASSERT_EQ(dagger_darray_elt(c), DAGGER_ELT_I32);
    int32_t *ri = collect_new(c, 0);
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(ri[k], (int32_t)(x[k] * 100));
    free(ri);
    dagger_darray_release(c);
    double f = 3;
    ASSERT_OK(dagger_darray_map(a, DAGGER_ELT_RAW, NULL, scale_block, &f, &c));
    r = collect_new(c, 0);
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(r[k], x[k] * 3 + (double)((k % 13) / 5 * 5));
    free(r);
    dagger_darray_release(c);
    ASSERT_ERR(dagger_darray_map(a, DAGGER_ELT_RAW, NULL, failing_block, NULL, &c), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "block function failed on block 2");
    ASSERT_ERR(dagger_darray_map(a, DAGGER_ELT_RAW, NULL, NULL, NULL, &c), DAGGER_EINVAL);
    /* broadcast of two blockings, each operator */
    const dagger_darray_op_t ops[6] = {DAGGER_OP_ADD, DAGGER_OP_SUB, DAGGER_OP_MUL,
                                       DAGGER_OP_DIV, DAGGER_OP_MIN, DAGGER_OP_MAX};
    for (int o = 0; o < 6; o++) {
        ASSERT_OK(dagger_darray_broadcast(a, b, ops[o], NULL, NULL, &c));
        ASSERT_EQ(dagger_darray_block_dims(c).d[0], 5);
        r = collect_new(c, 0);
        for (size_t k = 0; k < n; k++) {
            double u = x[k], v = y[k];
            double w = o == 0   ? u + v
                       : o == 1 ? u - v
                       : o == 2 ? u * v
                       : o == 3 ? u / v
                       : o == 4 ? (u < v ? u : v)
                                : (u > v ? u : v);
            ASSERT_EQ(r[k], w);
        }
        free(r);
        dagger_darray_release(c);
    }
    ASSERT_OK(dagger_darray_broadcast(a, b, DAGGER_OP_USER, hypot_fn, NULL, &c));
    r = collect_new(c, 0);
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(r[k], hypot(x[k], y[k]));
    free(r);
    dagger_darray_release(c);
    /* X .+ 1 and 2 .- X */
    ASSERT_OK(dagger_darray_broadcast_scalar(a, DAGGER_OP_ADD, 1.0, false, &c));
    r = collect_new(c, 0);
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(r[k], x[k] + 1);
    free(r);
    dagger_darray_release(c);
    ASSERT_OK(dagger_darray_broadcast_scalar(a, DAGGER_OP_SUB, 2.0, true, &c));
    r = collect_new(c, 0);
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(r[k], 2 - x[k]);
    free(r);
    dagger_darray_release(c);
    /* in place */
    ASSERT_OK(dagger_darray_map_inplace(a, sq_plus_one, NULL, NULL));
    r = collect_new(a, 0);
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(r[k], x[k] * x[k] + 1);
    free(r);
    /* shape and type mismatches */
    dagger_darray_t *d, *e;
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(9, 13), NULL, &d));
    ASSERT_ERR(dagger_darray_broadcast(a, d, DAGGER_OP_ADD, NULL, NULL, &c), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "shapes 13x9 and 9x13 differ");
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_I64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(13, 9), NULL, &e));
    ASSERT_ERR(dagger_darray_broadcast(a, e, DAGGER_OP_ADD, NULL, NULL, &c), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "element types differ");
    /* integer division by zero */
    ASSERT_ERR(dagger_darray_broadcast(e, e, DAGGER_OP_DIV, NULL, NULL, &c), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "integer division by zero");
    dagger_darray_release(d);
    dagger_darray_release(e);
    free(x);
    free(y);
    dagger_darray_release(a);
    dagger_darray_release(b);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- reductions */

static void absmax(void *acc, const void *x, void *ud)
{
    double a = fabs(*(const double *)x);
    if (a > *(double *)acc)
        *(double *)acc = a;
}
static void imax(void *acc, const void *x, void *ud)
{
    if (*(const int32_t *)x > *(int32_t *)acc)
        *(int32_t *)acc = *(const int32_t *)x;
}

/* The reference: fold over every element, or along dim, in plain loops. */
static double ref_fold(int op, double acc, double v)
{
    switch (op) {
    case DAGGER_OP_MUL:
        return acc * v;
    case DAGGER_OP_MIN:
        return v < acc ? v : acc;
    case DAGGER_OP_MAX:
        return v > acc ? v : acc;
    default:
        return acc + v;
    }
}
static double ref_init(int op)
{
    return op == DAGGER_OP_MUL   ? 1
           : op == DAGGER_OP_MIN ? INFINITY
           : op == DAGGER_OP_MAX ? -INFINITY
                                 : 0;
}

TEST(reduce_every_op_and_dim_against_loops)
{
    dagger_ctx_t *ctx = test_ctx(3);
    const size_t dims[3] = {9, 7, 5};
    const size_t n = 9 * 7 * 5;
    const dagger_darray_op_t ops[5] = {DAGGER_OP_ADD, DAGGER_OP_MUL, DAGGER_OP_MIN, DAGGER_OP_MAX,
                                       DAGGER_OP_MEAN};
    for (int t = 0; t < 4; t++) {
        dagger_elt_t e = ELTS[t];
        char *src = malloc(n * 8);
        uint64_t s = 99;
        for (size_t k = 0; k < n; k++) /* values near 1 keep products finite */
            set(src, k, e,
                e == DAGGER_ELT_F64 || e == DAGGER_ELT_F32
                    ? 0.9 + (double)(test_rand(&s) % 2000) / 10000.0
                    : (double)(test_rand(&s) % 201) - 100.0);
        dagger_darray_t *a = from(ctx, e, DAGGER_BLOCKS(4, 3, 2), DAGGER_DIMS(9, 7, 5), src);
        bool flt = e == DAGGER_ELT_F64 || e == DAGGER_ELT_F32;
        for (int o = 0; o < 5; o++) {
            int op = ops[o];
            if (op == DAGGER_OP_MUL && !flt) /* products of 315 integers overflow: use ones */
                continue;
            double want = ref_init(op);
            for (size_t k = 0; k < n; k++)
                want = ref_fold(op, want, get(src, k, e));
            if (op == DAGGER_OP_MEAN)
                want /= (double)n;
            dagger_value_t v;
            ASSERT_OK(dagger_darray_reduce(a, op, NULL, &v));
            double got = v.kind == DAGGER_KIND_F64 ? v.u.f : (double)v.u.i;
            ASSERT_EQ(v.kind, flt || op == DAGGER_OP_MEAN ? DAGGER_KIND_F64 : DAGGER_KIND_I64);
            ASSERT_NEAR(got, want, fabs(want) * 1e-9 + 1e-9);
            for (int dim = 0; dim < 3; dim++) {
                dagger_darray_t *r;
                ASSERT_OK(dagger_darray_reduce_dim(a, op, NULL, dim, &r));
                dagger_dims_t rd = dagger_darray_dims(r);
                ASSERT_EQ(rd.n, 3);
                ASSERT_EQ(rd.d[dim], 1);
                dagger_elt_t re = dagger_darray_elt(r);
                ASSERT_EQ(re, op == DAGGER_OP_MEAN && !flt ? DAGGER_ELT_F64 : e);
                char *got_r = collect_new(r, 0);
                size_t od[3] = {dims[0], dims[1], dims[2]};
                od[dim] = 1;
                for (size_t i2 = 0; i2 < od[2]; i2++)
                    for (size_t i1 = 0; i1 < od[1]; i1++)
                        for (size_t i0 = 0; i0 < od[0]; i0++) {
                            double w = ref_init(op);
                            for (size_t q = 0; q < dims[dim]; q++) {
                                size_t ix[3] = {i0, i1, i2};
                                ix[dim] = q;
                                w = ref_fold(op, w, get(src, ix[0] + 9 * (ix[1] + 7 * ix[2]), e));
                            }
                            if (op == DAGGER_OP_MEAN)
                                w /= (double)dims[dim];
                            double g = get(got_r, i0 + od[0] * (i1 + od[1] * i2), re);
                            double tol = e == DAGGER_ELT_F32 ? fabs(w) * 1e-6 : fabs(w) * 1e-12;
                            ASSERT_NEAR(g, w, tol + 1e-12);
                        }
                free(got_r);
                dagger_darray_release(r);
            }
        }
        dagger_darray_release(a);
        free(src);
    }
    /* user operators */
    double m[6] = {1, -7, 3, 2, -1, 5};
    dagger_darray_t *a = from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2, 2), DAGGER_DIMS(2, 3), m);
    double zero = 0;
    dagger_darray_redop_t am = {absmax, &zero, NULL};
    dagger_value_t v;
    ASSERT_OK(dagger_darray_reduce(a, DAGGER_OP_USER, &am, &v));
    ASSERT_EQ(v.u.f, 7.0);
    dagger_darray_t *r;
    ASSERT_OK(dagger_darray_reduce_dim(a, DAGGER_OP_USER, &am, 1, &r));
    double col[2];
    ASSERT_OK(dagger_darray_collect(r, col, sizeof col, 0));
    ASSERT_EQ(col[0], 3.0);
    ASSERT_EQ(col[1], 7.0);
    dagger_darray_release(r);
    double nrm;
    ASSERT_OK(dagger_darray_norm(a, &nrm));
    ASSERT_NEAR(nrm, sqrt(1 + 49 + 9 + 4 + 1 + 25), 1e-12);
    ASSERT_ERR(dagger_darray_reduce(a, DAGGER_OP_SUB, NULL, &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger_darray_reduce(a, DAGGER_OP_USER, NULL, &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger_darray_reduce_dim(a, DAGGER_OP_ADD, NULL, 2, &r), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "dimension 2 of a 2-D array");
    dagger_darray_release(a);
    int32_t iv[5] = {4, -2, 9, 0, 3};
    int32_t lowest = INT32_MIN;
    dagger_darray_redop_t mx = {imax, &lowest, NULL};
    a = from(ctx, DAGGER_ELT_I32, DAGGER_BLOCKS(2), DAGGER_DIMS(5), iv);
    ASSERT_OK(dagger_darray_reduce(a, DAGGER_OP_USER, &mx, &v));
    ASSERT_EQ(v.u.i, 9);
    dagger_darray_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(histogram_through_datadeps_reduction)
{
    dagger_ctx_t *ctx = test_ctx(4);
    for (int t = 0; t < 4; t++) {
        dagger_elt_t e = ELTS[t];
        dagger_darray_t *a;
        ASSERT_OK(dagger_darray_randn(ctx, e == DAGGER_ELT_F32 ? e : DAGGER_ELT_F64,
                                      DAGGER_BLOCKS(17, 9), DAGGER_DIMS(100, 50), 5, NULL, &a));
        if (e == DAGGER_ELT_I64 || e == DAGGER_ELT_I32) { /* integers in [-30, 30) */
            dagger_darray_t *f;
            ASSERT_OK(dagger_darray_broadcast_scalar(a, DAGGER_OP_MUL, 10.0, false, &f));
            dagger_darray_release(a);
            double *v = collect_new(f, 0);
            char *iv = malloc(5000 * 8);
            for (size_t k = 0; k < 5000; k++)
                set(iv, k, e, floor(v[k]));
            a = from(ctx, e, DAGGER_BLOCKS(17, 9), DAGGER_DIMS(100, 50), iv);
            free(v);
            free(iv);
            dagger_darray_release(f);
        }
        void *v = collect_new(a, 0);
        double lo = e == DAGGER_ELT_F64 || e == DAGGER_ELT_F32 ? -2 : -30, hi = -lo;
        uint64_t want[12] = {0}, got[12];
        for (size_t k = 0; k < 5000; k++) {
            double x = get(v, k, e);
            if (x >= lo && x < hi)
                want[(size_t)((x - lo) * (12 / (hi - lo)))]++;
        }
        ASSERT_OK(dagger_darray_histogram(a, lo, hi, 12, got));
        ASSERT_EQ(memcmp(got, want, sizeof want), 0);
        free(v);
        dagger_darray_release(a);
    }
    uint64_t c[1];
    dagger_darray_t *a;
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(4), NULL, &a));
    ASSERT_ERR(dagger_darray_histogram(a, 1, 1, 1, c), DAGGER_EINVAL);
    dagger_darray_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- copies */

TEST(copyto_every_pair_of_blockings)
{
    dagger_ctx_t *ctx = test_ctx(3);
    const size_t sizes[3][2] = {{57, 83}, {16, 16}, {5, 1}};
    const size_t blocks[5][2] = {{57, 83}, {10, 10}, {16, 7}, {1, 83}, {4, 1}};
    for (int s = 0; s < 3; s++) {
        size_t m = sizes[s][0], n = sizes[s][1];
        double *src = malloc(m * n * sizeof *src);
        for (size_t k = 0; k < m * n; k++)
            src[k] = (double)k;
        for (int p = 0; p < 5; p++)
            for (int q = 0; q < 5; q++) {
                dagger_darray_t *a =
                    from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(blocks[p][0], blocks[p][1]),
                         DAGGER_DIMS(m, n), src);
                dagger_darray_t *b;
                dagger_darray_opts_t o;
                dagger_darray_opts_init(&o);
                o.dist = q % 2 ? DAGGER_DIST_CYCLICCOL : DAGGER_DIST_ANY;
                ASSERT_OK(dagger_darray_zeros(ctx, DAGGER_ELT_F64,
                                              DAGGER_BLOCKS(blocks[q][0], blocks[q][1]),
                                              DAGGER_DIMS(m, n), &o, &b));
                ASSERT_OK(dagger_darray_copyto(b, a));
                double *got = collect_new(b, 0);
                ASSERT_EQ(memcmp(got, src, m * n * sizeof *src), 0);
                free(got);
                dagger_darray_release(a);
                dagger_darray_release(b);
            }
        free(src);
    }
    dagger_darray_t *a, *b;
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(4, 4), NULL, &a));
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(4, 5), NULL, &b));
    ASSERT_ERR(dagger_darray_copyto(a, b), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "shapes 4x4 and 4x5 differ");
    dagger_darray_release(a);
    dagger_darray_release(b);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(copy_permutedims_transpose_getindex)
{
    dagger_ctx_t *ctx = test_ctx(2);
    const size_t d0 = 5, d1 = 4, d2 = 3;
    int64_t src[60];
    for (int k = 0; k < 60; k++)
        src[k] = k * 7 - 11;
    dagger_darray_t *a =
        from(ctx, DAGGER_ELT_I64, DAGGER_BLOCKS(2, 3, 2), DAGGER_DIMS(5, 4, 3), src);
    dagger_darray_t *c;
    ASSERT_OK(dagger_darray_copy(a, &c));
    int64_t *g = collect_new(c, 0);
    ASSERT_EQ(memcmp(g, src, sizeof src), 0);
    free(g);
    dagger_darray_release(c);
    int perm[3] = {2, 0, 1};
    ASSERT_OK(dagger_darray_permutedims(a, perm, &c));
    dagger_dims_t pd = dagger_darray_dims(c), pb = dagger_darray_block_dims(c);
    ASSERT_EQ(pd.d[0], 3);
    ASSERT_EQ(pd.d[1], 5);
    ASSERT_EQ(pd.d[2], 4);
    ASSERT_EQ(pb.d[0], 2);
    ASSERT_EQ(pb.d[1], 2);
    ASSERT_EQ(pb.d[2], 3);
    g = collect_new(c, 0);
    for (size_t i = 0; i < d0; i++)
        for (size_t j = 0; j < d1; j++)
            for (size_t k = 0; k < d2; k++) /* B[k, i, j] = A[i, j, k] */
                ASSERT_EQ(g[k + d2 * (i + d0 * j)], src[i + d0 * (j + d1 * k)]);
    free(g);
    dagger_darray_release(c);
    int bad[3] = {0, 0, 1};
    ASSERT_ERR(dagger_darray_permutedims(a, bad, &c), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "permutation");
    size_t lo[3] = {1, 1, 0}, hi[3] = {5, 3, 3};
    ASSERT_OK(dagger_darray_getindex(a, lo, hi, &c));
    ASSERT_EQ(dagger_darray_dims(c).d[0], 4);
    g = collect_new(c, 0);
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 2; j++)
            for (size_t k = 0; k < 3; k++)
                ASSERT_EQ(g[i + 4 * (j + 2 * k)], src[(i + 1) + d0 * ((j + 1) + d1 * k)]);
    free(g);
    dagger_darray_release(c);
    hi[0] = 6;
    ASSERT_ERR(dagger_darray_getindex(a, lo, hi, &c), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "range [1, 6) of dimension 0");
    ASSERT_ERR(dagger_darray_transpose(a, &c), DAGGER_EINVAL);
    dagger_darray_release(a);
    double m[6] = {1, 2, 3, 4, 5, 6}, t[6];
    a = from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2, 2), DAGGER_DIMS(3, 2), m);
    ASSERT_OK(dagger_darray_transpose(a, &c));
    ASSERT_OK(dagger_darray_collect(c, t, sizeof t, 0));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            ASSERT_EQ(t[j + 2 * i], m[i + 3 * j]);
    dagger_darray_release(c);
    dagger_darray_release(a);
    a = from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(4), DAGGER_DIMS(6), m);
    ASSERT_OK(dagger_darray_transpose(a, &c));
    ASSERT_EQ(dagger_darray_dims(c).d[0], 1);
    ASSERT_EQ(dagger_darray_dims(c).d[1], 6);
    ASSERT_OK(dagger_darray_collect(c, t, sizeof t, 0));
    ASSERT_EQ(memcmp(t, m, sizeof m), 0);
    dagger_darray_release(c);
    dagger_darray_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- linear algebra */

#define N 128

static double *spd(uint64_t seed)
{
    double *r = malloc(N * N * sizeof *r), *a = malloc(N * N * sizeof *a);
    for (int k = 0; k < N * N; k++)
        r[k] = (double)(test_rand(&seed) % 1000) / 1000.0 - 0.5;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, N, N, N, 1.0, r, N, r, N, 0.0, a, N);
    for (int i = 0; i < N; i++)
        a[i + i * N] += N;
    free(r);
    return a;
}

static double max_diff(const double *x, const double *y, size_t n)
{
    double m = 0;
    for (size_t k = 0; k < n; k++)
        m = fmax(m, fabs(x[k] - y[k]));
    return m;
}

static const size_t LA_BLOCKS[3][2] = {{64, 64}, {64, 32}, {24, 40}}; /* last: ragged */

TEST(matmul_against_blas)
{
    openblas_set_num_threads(1);
    dagger_ctx_t *ctx = test_ctx(4);
    uint64_t s = 5;
    double *x = malloc(N * N * sizeof *x), *y = malloc(N * N * sizeof *y),
           *z = malloc(N * N * sizeof *z), *v = malloc(N * sizeof *v);
    for (int k = 0; k < N * N; k++) {
        x[k] = (double)(test_rand(&s) % 1000) / 500.0 - 1;
        y[k] = (double)(test_rand(&s) % 1000) / 500.0 - 1;
    }
    for (int k = 0; k < N; k++)
        v[k] = k * 0.01;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0, x, N, y, N, 0.0, z, N);
    for (int p = 0; p < 3; p++)
        for (int q = 0; q < 3; q++) {
            dagger_darray_t *a =
                from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(LA_BLOCKS[p][0], LA_BLOCKS[p][1]),
                     DAGGER_DIMS(N, N), x);
            dagger_darray_t *b =
                from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(LA_BLOCKS[q][0], LA_BLOCKS[q][1]),
                     DAGGER_DIMS(N, N), y);
            dagger_darray_t *c;
            ASSERT_OK(dagger_darray_matmul(a, b, &c));
            double *got = collect_new(c, 0);
            ASSERT_TRUE(max_diff(got, z, N * N) < 1e-11);
            free(got);
            dagger_darray_release(c);
            /* gemv */
            dagger_darray_t *bv =
                from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(LA_BLOCKS[q][1]), DAGGER_DIMS(N), v);
            ASSERT_OK(dagger_darray_matmul(a, bv, &c));
            ASSERT_EQ(dagger_darray_ndims(c), 1);
            double want[N], gv[N];
            cblas_dgemv(CblasColMajor, CblasNoTrans, N, N, 1.0, x, N, v, 1, 0.0, want, 1);
            ASSERT_OK(dagger_darray_collect(c, gv, sizeof gv, 0));
            ASSERT_TRUE(max_diff(gv, want, N) < 1e-11);
            dagger_darray_release(c);
            dagger_darray_release(bv);
            dagger_darray_release(a);
            dagger_darray_release(b);
        }
    /* f32, rectangular: (3 x 5) * (5 x 2) */
    float xf[15], yf[10], zf[6];
    for (int k = 0; k < 15; k++)
        xf[k] = (float)k;
    for (int k = 0; k < 10; k++)
        yf[k] = (float)(k - 4);
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, 3, 2, 5, 1.0f, xf, 3, yf, 5, 0.0f, zf,
                3);
    dagger_darray_t *a = from(ctx, DAGGER_ELT_F32, DAGGER_BLOCKS(2, 2), DAGGER_DIMS(3, 5), xf);
    dagger_darray_t *b = from(ctx, DAGGER_ELT_F32, DAGGER_BLOCKS(3, 1), DAGGER_DIMS(5, 2), yf);
    dagger_darray_t *c;
    ASSERT_OK(dagger_darray_matmul(a, b, &c));
    float gf[6];
    ASSERT_OK(dagger_darray_collect(c, gf, sizeof gf, 0));
    for (int k = 0; k < 6; k++)
        ASSERT_EQ(gf[k], zf[k]);
    dagger_darray_release(c);
    dagger_darray_release(b);
    dagger_darray_release(a);
    /* 3x4 times 5x2: both shapes in the message */
    dagger_darray_t *m34, *m52;
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(3, 4), NULL, &m34));
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(5, 2), NULL, &m52));
    ASSERT_ERR(dagger_darray_matmul(m34, m52, &c), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "A is 3x4 and B is 5x2");
    ASSERT_NULL(c);
    dagger_darray_release(m34);
    dagger_darray_release(m52);
    free(x);
    free(y);
    free(z);
    free(v);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(cholesky_against_lapacke)
{
    openblas_set_num_threads(1);
    dagger_ctx_t *ctx = test_ctx(4);
    double *a0 = spd(11), *ref = malloc(N * N * sizeof *ref);
    memcpy(ref, a0, N * N * sizeof *ref);
    ASSERT_EQ(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', N, ref, N), 0);
    for (int j = 0; j < N; j++)
        for (int i = 0; i < j; i++)
            ref[i + j * N] = 0;
    for (int p = 0; p < 3; p++) {
        dagger_darray_t *a =
            from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(LA_BLOCKS[p][0], LA_BLOCKS[p][1]),
                 DAGGER_DIMS(N, N), a0);
        dagger_darray_t *l;
        ASSERT_OK(dagger_darray_cholesky(a, &l));
        ASSERT_EQ(dagger_darray_block_dims(l).d[1], LA_BLOCKS[p][1]);
        double *got = collect_new(l, 0);
        ASSERT_TRUE(max_diff(got, ref, N * N) < 1e-10);
        free(got);
        dagger_darray_release(l);
        /* the input is untouched */
        got = collect_new(a, 0);
        ASSERT_EQ(memcmp(got, a0, N * N * sizeof *got), 0);
        free(got);
        dagger_darray_release(a);
    }
    /* not positive definite: a negative entry on the diagonal of block (1, 1) */
    a0[70 + 70 * N] = -1e6;
    dagger_darray_t *a = from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(64, 64), DAGGER_DIMS(N, N), a0);
    dagger_darray_t *l;
    ASSERT_ERR(dagger_darray_cholesky(a, &l), DAGGER_ENOTPD);
    ASSERT_STR_HAS(dagger_last_errmsg(), "block (1, 1)");
    ASSERT_STR_HAS(dagger_last_errmsg(), "global row 71");
    ASSERT_NULL(l);
    dagger_darray_release(a);
    dagger_darray_t *r;
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(4, 3), NULL, &r));
    ASSERT_ERR(dagger_darray_cholesky(r, &l), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "A is 4x3, not square");
    dagger_darray_release(r);
    free(a0);
    free(ref);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(lu_residual_and_singular)
{
    openblas_set_num_threads(1);
    dagger_ctx_t *ctx = test_ctx(4);
    uint64_t s = 17;
    double *a0 = malloc(N * N * sizeof *a0);
    for (int k = 0; k < N * N; k++)
        a0[k] = (double)(test_rand(&s) % 2000) / 1000.0 - 1;
    double anorm = LAPACKE_dlange(LAPACK_COL_MAJOR, '1', N, N, a0, N);
    for (int p = 0; p < 3; p++) {
        dagger_darray_t *a =
            from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(LA_BLOCKS[p][0], LA_BLOCKS[p][1]),
                 DAGGER_DIMS(N, N), a0);
        dagger_darray_t *f;
        int64_t ipiv[N];
        ASSERT_OK(dagger_darray_lu(a, &f, ipiv));
        double *lu = collect_new(f, 0), *l = calloc(N * N, sizeof *l),
               *u = calloc(N * N, sizeof *u), *pa = malloc(N * N * sizeof *pa),
               *prod = malloc(N * N * sizeof *prod);
        for (int j = 0; j < N; j++)
            for (int i = 0; i < N; i++) {
                if (i > j)
                    l[i + j * N] = lu[i + j * N];
                else
                    u[i + j * N] = lu[i + j * N];
                if (i == j)
                    l[i + j * N] = 1;
            }
        memcpy(pa, a0, N * N * sizeof *pa);
        for (int r = 0; r < N; r++) { /* apply the interchanges in order */
            ASSERT_TRUE(ipiv[r] >= r + 1 && ipiv[r] <= N);
            int q = (int)ipiv[r] - 1;
            for (int c = 0; c < N; c++) {
                double t = pa[r + c * N];
                pa[r + c * N] = pa[q + c * N];
                pa[q + c * N] = t;
            }
        }
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0, l, N, u, N, 0.0, prod,
                    N);
        for (int k = 0; k < N * N; k++)
            prod[k] -= pa[k];
        double res =
            LAPACKE_dlange(LAPACK_COL_MAJOR, '1', N, N, prod, N) / (anorm * N * DBL_EPSILON);
        printf("LU %zux%zu blocks: residual %.3g\n", LA_BLOCKS[p][0], LA_BLOCKS[p][1], res);
        ASSERT_TRUE(res < 10.0);
        /* same pivots as LAPACKE_dgetrf on the whole matrix */
        int rp[N];
        memcpy(pa, a0, N * N * sizeof *pa);
        ASSERT_EQ(LAPACKE_dgetrf(LAPACK_COL_MAJOR, N, N, pa, N, rp), 0);
        for (int r = 0; r < N; r++)
            ASSERT_EQ(ipiv[r], rp[r]);
        free(lu);
        free(l);
        free(u);
        free(pa);
        free(prod);
        dagger_darray_release(f);
        dagger_darray_release(a);
    }
    /* singular: column 100 is zero */
    for (int i = 0; i < N; i++)
        a0[i + 100 * N] = 0;
    dagger_darray_t *a = from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(64, 64), DAGGER_DIMS(N, N), a0);
    dagger_darray_t *f;
    ASSERT_ERR(dagger_darray_lu(a, &f, NULL), DAGGER_ESINGULAR);
    ASSERT_STR_HAS(dagger_last_errmsg(), "block (1, 1)");
    ASSERT_STR_HAS(dagger_last_errmsg(), "global row and column 101");
    dagger_darray_release(a);
    free(a0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(solve_with_lu_and_cholesky_against_lapacke)
{
    openblas_set_num_threads(1);
    dagger_ctx_t *ctx = test_ctx(4);
    double *a0 = spd(23), *b0 = malloc(N * 3 * sizeof *b0), *ref = malloc(N * 3 * sizeof *ref);
    double *fa = malloc(N * N * sizeof *fa);
    for (int k = 0; k < N * 3; k++)
        b0[k] = sin(k * 0.1);
    for (int kind = 0; kind < 2; kind++)
        for (int p = 0; p < 3; p++)
            for (int vec = 0; vec < 2; vec++) {
                int nrhs = vec ? 1 : 3;
                memcpy(ref, b0, N * nrhs * sizeof *ref);
                memcpy(fa, a0, N * N * sizeof *fa);
                int piv[N];
                if (kind == DAGGER_SOLVE_LU)
                    ASSERT_EQ(LAPACKE_dgesv(LAPACK_COL_MAJOR, N, nrhs, fa, N, piv, ref, N), 0);
                else
                    ASSERT_EQ(LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', N, nrhs, fa, N, ref, N), 0);
                dagger_darray_t *a =
                    from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(LA_BLOCKS[p][0], LA_BLOCKS[p][1]),
                         DAGGER_DIMS(N, N), a0);
                dagger_darray_t *b =
                    vec ? from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(50), DAGGER_DIMS(N), b0)
                        : from(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(50, 2), DAGGER_DIMS(N, 3), b0);
                dagger_darray_t *x;
                ASSERT_OK(dagger_darray_solve(a, b, (dagger_solve_kind_t)kind, &x));
                ASSERT_EQ(dagger_darray_ndims(x), vec ? 1 : 2);
                ASSERT_EQ(dagger_darray_block_dims(x).d[0], 50);
                double *got = collect_new(x, 0);
                ASSERT_TRUE(max_diff(got, ref, (size_t)N * nrhs) < 1e-12);
                free(got);
                dagger_darray_release(x);
                dagger_darray_release(a);
                dagger_darray_release(b);
            }
    dagger_darray_t *a, *b, *x;
    ASSERT_OK(
        dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(4, 4), NULL, &a));
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(5), NULL, &b));
    ASSERT_ERR(dagger_darray_solve(a, b, DAGGER_SOLVE_LU, &x), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "A is 4x4 and B is 5");
    dagger_darray_release(b);
    ASSERT_OK(dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_AUTOBLOCKS, DAGGER_DIMS(4), NULL, &b));
    ASSERT_ERR(dagger_darray_solve(a, b, DAGGER_SOLVE_LU, &x), DAGGER_ESINGULAR);
    ASSERT_ERR(dagger_darray_solve(a, b, DAGGER_SOLVE_CHOLESKY, &x), DAGGER_ENOTPD);
    dagger_darray_release(a);
    dagger_darray_release(b);
    free(a0);
    free(b0);
    free(ref);
    free(fa);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- out of memory */

/* Fail the n-th allocation of a chain of operations, for every n up to where the chain no longer
 * fails: each call returns 0 or an error (never crashes), and close still returns 0 (ASan checks
 * that nothing leaked). */
TEST(out_of_memory_anywhere)
{
    int clean = 0;
    long n = 1;
    for (; n < 3000 && clean < 3; n++) {
        dagger_ctx_t *ctx = test_ctx(2);
        dagger_darray_t *a = NULL, *b = NULL, *c = NULL, *l = NULL;
        /* Warm both workers first: the pool allocates each worker's first fiber lazily and treats
         * its failure as fatal (not this layer's to test). */
        dagger_darray_opts_t o;
        dagger_darray_opts_init(&o);
        o.dist = DAGGER_DIST_CYCLICROW;
        ASSERT_OK(
            dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(1), DAGGER_DIMS(2), &o, &a));
        dagger_darray_release(a);
        a = NULL;
        dagger_fault_alloc(n);
        int rc = dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(4, 4), DAGGER_DIMS(8, 8), 1,
                                    NULL, &a);
        if (!rc)
            rc = dagger_darray_broadcast_scalar(a, DAGGER_OP_ADD, 8.0, false, &b);
        dagger_value_t v;
        if (!rc)
            rc = dagger_darray_reduce_dim(b, DAGGER_OP_ADD, NULL, 1, &c);
        if (!rc)
            rc = dagger_darray_reduce(b, DAGGER_OP_MAX, NULL, &v);
        if (!rc) {
            dagger_darray_t *t = NULL, *m = NULL;
            rc = dagger_darray_transpose(b, &t);
            if (!rc)
                rc = dagger_darray_matmul(b, t, &m);
            if (!rc)
                rc = dagger_darray_cholesky(m, &l);
            dagger_darray_t *f = NULL, *x = NULL, *g = NULL, *p = NULL, *q = NULL;
            int64_t piv[8];
            uint64_t bins[4];
            size_t lo[2] = {1, 2}, hi[2] = {7, 8};
            int perm[2] = {1, 0};
            if (!rc)
                rc = dagger_darray_lu(m, &f, piv);
            if (!rc)
                rc = dagger_darray_solve(m, b, DAGGER_SOLVE_CHOLESKY, &x);
            if (!rc)
                rc = dagger_darray_getindex(b, lo, hi, &g);
            if (!rc)
                rc = dagger_darray_permutedims(g, perm, &p);
            if (!rc)
                rc = dagger_darray_histogram(p, 8, 10, 4, bins);
            if (!rc)
                rc = dagger_darray_map(p, DAGGER_ELT_I32, to_i32_half, NULL, NULL, &q);
            if (!rc)
                rc = dagger_darray_copyto(g, p);
            dagger_darray_release(f);
            dagger_darray_release(x);
            dagger_darray_release(g);
            dagger_darray_release(p);
            dagger_darray_release(q);
            dagger_darray_release(t);
            dagger_darray_release(m);
        }
        dagger_fault_alloc(0);
        ASSERT_TRUE(rc <= 0);
        if (rc == 0)
            clean++;
        else
            clean = 0;
        dagger_darray_release(a);
        dagger_darray_release(b);
        dagger_darray_release(c);
        dagger_darray_release(l);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
    printf("the chain succeeds from allocation %ld on\n", n - 3);
    ASSERT_EQ(clean, 3);
}

TEST_LIST(distribute_collect_roundtrip_all_dims_and_types, collect_checks_its_buffer,
          constructors_sizes_and_values, rand_same_seed_same_array_on_1_and_4_threads,
          placement_blockrow_cyclic_explicit, map_and_broadcast_against_loops,
          reduce_every_op_and_dim_against_loops, histogram_through_datadeps_reduction,
          copyto_every_pair_of_blockings, copy_permutedims_transpose_getindex, matmul_against_blas,
          cholesky_against_lapacke, lu_residual_and_singular,
          solve_with_lu_and_cholesky_against_lapacke, out_of_memory_anywhere)
