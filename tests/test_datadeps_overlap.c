/* tests/test_datadeps_overlap.c - the datadeps analysis alone: exact overlap and dependencies.
 *
 * These cases need no runtime: they call the pure functions of src/datadeps (overlap.c and
 * tracker.c are compiled into this binary) and compare them with a byte-map ground truth.
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

#include "dagger/datadeps.h"
#include "src/datadeps/datadeps_int.h"

static double M[8 * 8]; /* a column-major matrix for the shapes below */
static unsigned char B[1024];

static dagger__ddreg_t mk(int shape, void *p, size_t bytes, size_t rows, size_t cols, size_t ld,
                          size_t es)
{
    dagger__ddreg_t r;
    char err[160];
    int rc = dagger__ddreg_make(&r, shape, p, bytes, rows, cols, ld, es, err, sizeof err);
    if (rc != 1)
        fail_msg("region not made (%d): %s", rc, rc < 0 ? err : "empty");
    return r;
}
static dagger__ddreg_t span(void *p, size_t n) { return mk(DAGGER_SHAPE_SPAN, p, n, 0, 0, 0, 0); }
/* The rows x cols tile at (i, j) of the 4x4 double matrix M (ld 4). */
static dagger__ddreg_t tile4(size_t i, size_t j, size_t rows, size_t cols)
{
    return mk(DAGGER_SHAPE_TILE, &M[i + j * 4], 0, rows, cols, 4, sizeof(double));
}
static dagger__ddreg_t tri(int shape, void *p, size_t n, size_t ld)
{
    return mk(shape, p, 0, n, n, ld, sizeof(double));
}
static bool ov(dagger__ddreg_t a, dagger__ddreg_t b)
{
    bool x = dagger__ddreg_overlap(&a, &b), y = dagger__ddreg_overlap(&b, &a);
    if (x != y)
        fail_msg("overlap is not symmetric");
    return x;
}

TEST(spans_touching_do_not_overlap)
{
    ASSERT_FALSE(ov(span(B, 8), span(B + 8, 8)));
    ASSERT_TRUE(ov(span(B, 9), span(B + 8, 8)));
    ASSERT_TRUE(ov(span(B, 100), span(B + 10, 1)));
    /* Julia's 1:2 and 2:3 of a vector of doubles share element 2. */
    double *x = (double *)B;
    ASSERT_TRUE(ov(span(x, 2 * 8), span(x + 1, 2 * 8)));
    ASSERT_FALSE(ov(span(x, 1 * 8), span(x + 1, 2 * 8)));
}

TEST(empty_and_bad_annotations)
{
    dagger__ddreg_t r;
    char err[160];
    ASSERT_EQ(dagger__ddreg_make(&r, DAGGER_SHAPE_SPAN, B, 0, 0, 0, 0, 0, err, sizeof err), 0);
    ASSERT_EQ(dagger__ddreg_make(&r, DAGGER_SHAPE_SPAN, NULL, 8, 0, 0, 0, 0, err, sizeof err),
              DAGGER_EINVAL);
    ASSERT_EQ(dagger__ddreg_make(&r, DAGGER_SHAPE_TILE, M, 0, 4, 2, 3, 8, err, sizeof err),
              DAGGER_EINVAL);
    ASSERT_STR_HAS(err, "leading dimension 3");
    ASSERT_EQ(dagger__ddreg_make(&r, DAGGER_SHAPE_UPPER, M, 0, 4, 3, 4, 8, err, sizeof err),
              DAGGER_EINVAL);
    ASSERT_STR_HAS(err, "square");
    ASSERT_EQ(dagger__ddreg_make(&r, DAGGER_SHAPE_UNIT_UPPER, M, 0, 1, 1, 4, 8, err, sizeof err),
              0);
    /* A tile whose columns are contiguous is a span; so is a single column. */
    r = tile4(0, 0, 4, 2);
    ASSERT_EQ(r.kind, DD_SPAN);
    r = tile4(1, 1, 2, 1);
    ASSERT_EQ(r.kind, DD_SPAN);
    r = tile4(0, 0, 2, 2);
    ASSERT_EQ(r.kind, DD_TILE);
}

TEST(quadrants_and_centre)
{
    dagger__ddreg_t q[4] = {tile4(0, 0, 2, 2), tile4(2, 0, 2, 2), tile4(0, 2, 2, 2),
                            tile4(2, 2, 2, 2)};
    dagger__ddreg_t centre = tile4(1, 1, 2, 2), whole = span(M, 16 * sizeof(double));
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++)
            ASSERT_EQ(ov(q[i], q[j]), i == j);
        ASSERT_TRUE(ov(q[i], centre));
        ASSERT_TRUE(ov(q[i], whole));
    }
    /* Bounding intervals of q[1] (rows 2-3, col 0-1) and q[2] (rows 0-1, cols 2-3) do not
     * meet, but those of q[1] and the tile at rows 0-1, col 1 do: exactness matters. */
    ASSERT_FALSE(ov(q[1], tile4(0, 1, 2, 1)));
    ASSERT_TRUE(ov(q[1], tile4(2, 1, 1, 1)));
}

TEST(rows_and_columns_of_subtiles)
{
    dagger__ddreg_t row1 = tile4(1, 0, 1, 4), row2 = tile4(2, 0, 1, 4);
    dagger__ddreg_t col1 = tile4(0, 1, 4, 1), col2 = tile4(0, 2, 4, 1);
    ASSERT_FALSE(ov(row1, row2));
    ASSERT_FALSE(ov(col1, col2));
    ASSERT_TRUE(ov(row1, col2));
    ASSERT_TRUE(ov(row2, col1));
    /* A part of row 0 and a part of column 0 that miss each other. */
    ASSERT_FALSE(ov(tile4(0, 1, 1, 3), tile4(1, 0, 3, 1)));
    ASSERT_TRUE(ov(tile4(0, 0, 1, 3), tile4(0, 0, 3, 1)));
    /* Different strides: 2x2 tiles of M seen with ld 4 and with ld 8. */
    dagger__ddreg_t a = mk(DAGGER_SHAPE_TILE, &M[0], 0, 2, 2, 8, 8);
    ASSERT_TRUE(ov(a, tile4(0, 2, 1, 1)));  /* M[8] is a's column 1 */
    ASSERT_FALSE(ov(a, tile4(0, 1, 4, 1))); /* M[4..7] lies between a's columns */
}

TEST(triangle_rules)
{
    /* The 4x4 tile at (4, 4) of the 8x8 matrix M (ld 8). */
    double *t = &M[4 + 4 * 8];
    dagger__ddreg_t U = tri(DAGGER_SHAPE_UPPER, t, 4, 8), L = tri(DAGGER_SHAPE_LOWER, t, 4, 8);
    dagger__ddreg_t UU = tri(DAGGER_SHAPE_UNIT_UPPER, t, 4, 8);
    dagger__ddreg_t UL = tri(DAGGER_SHAPE_UNIT_LOWER, t, 4, 8);
    dagger__ddreg_t D = tri(DAGGER_SHAPE_DIAG, t, 4, 8);
    dagger__ddreg_t full = mk(DAGGER_SHAPE_TILE, t, 0, 4, 4, 8, 8);
    ASSERT_TRUE(ov(U, L)); /* through the diagonal */
    ASSERT_FALSE(ov(UU, UL));
    ASSERT_FALSE(ov(U, UL));
    ASSERT_FALSE(ov(L, UU));
    ASSERT_TRUE(ov(U, UU));
    ASSERT_TRUE(ov(L, UL));
    ASSERT_TRUE(ov(D, U));
    ASSERT_TRUE(ov(D, L));
    ASSERT_FALSE(ov(D, UU));
    ASSERT_FALSE(ov(D, UL));
    dagger__ddreg_t all[5] = {U, L, UU, UL, D};
    for (int i = 0; i < 5; i++)
        ASSERT_TRUE(ov(all[i], full));
    /* Neighbouring tiles of the same matrix share no byte with any triangle. */
    dagger__ddreg_t left = mk(DAGGER_SHAPE_TILE, &M[4], 0, 4, 4, 8, 8);
    dagger__ddreg_t above = mk(DAGGER_SHAPE_TILE, &M[4 * 8], 0, 4, 4, 8, 8);
    for (int i = 0; i < 5; i++) {
        ASSERT_FALSE(ov(all[i], left));
        ASSERT_FALSE(ov(all[i], above));
    }
    /* The element just above the diagonal in column 1 belongs to U and UU only. */
    dagger__ddreg_t e01 = span(&t[0 + 1 * 8], 8);
    ASSERT_TRUE(ov(e01, U));
    ASSERT_TRUE(ov(e01, UU));
    ASSERT_FALSE(ov(e01, L));
    ASSERT_FALSE(ov(e01, UL));
    ASSERT_FALSE(ov(e01, D));
}

/* ------------------------------------------------------------------ random vs byte map */

#define NB 512
typedef struct {
    dagger__ddreg_t r;
    unsigned char map[NB];
} shaped_t;

static void byte_map(const dagger__ddreg_t *r, unsigned char *map)
{
    memset(map, 0, NB);
    for (size_t j = 0; j < r->cols; j++) {
        uintptr_t a, b;
        if (!dagger__ddreg_col(r, j, &a, &b))
            continue;
        for (uintptr_t x = a; x < b; x++)
            map[x - (uintptr_t)B] = 1;
    }
}

/* A random region inside B[0, NB). */
static void random_region(uint64_t *s, shaped_t *o)
{
    for (;;) {
        int shape = (int)(test_rand(s) % 7);
        size_t es = (size_t[]){1, 2, 4, 8}[test_rand(s) % 4];
        size_t off = test_rand(s) % NB, rows = 1 + test_rand(s) % 8, cols = 1 + test_rand(s) % 8;
        size_t ld = rows + test_rand(s) % 6;
        if (shape != DAGGER_SHAPE_TILE && shape != DAGGER_SHAPE_SPAN)
            cols = rows;
        size_t bytes = 1 + test_rand(s) % 64;
        size_t extent = shape == DAGGER_SHAPE_SPAN ? bytes : ((cols - 1) * ld + rows) * es;
        if (off + extent > NB)
            continue;
        char err[160];
        int rc =
            dagger__ddreg_make(&o->r, shape, B + off, bytes, rows, cols, ld, es, err, sizeof err);
        if (rc == 1) {
            byte_map(&o->r, o->map);
            return;
        }
    }
}

static bool maps_meet(const unsigned char *a, const unsigned char *b)
{
    for (int i = 0; i < NB; i++)
        if (a[i] && b[i])
            return true;
    return false;
}

TEST(random_overlap_matches_byte_map)
{
    uint64_t s = test_seed();
    static shaped_t v[300];
    for (int i = 0; i < 300; i++)
        random_region(&s, &v[i]);
    for (int i = 0; i < 300; i++)
        for (int j = 0; j < 300; j++) {
            bool want = maps_meet(v[i].map, v[j].map);
            if (dagger__ddreg_overlap(&v[i].r, &v[j].r) != want)
                fail_msg("regions %d (kind %d) and %d (kind %d): overlap should be %d", i,
                         v[i].r.kind, j, v[j].r.kind, want);
        }
}

/* ------------------------------------------------------------------ tracker */

typedef struct {
    dagger__ddtracker_t t;
    uint32_t n;
    uint32_t *deps;
    size_t cap;
} tr_t;

static long add(tr_t *tr, const dagger__ddaccess_t *a, size_t n)
{
    long k = dagger__ddtracker_add(&tr->t, tr->n++, a, n, &tr->deps, &tr->cap);
    ASSERT_TRUE(k >= 0);
    return k;
}
static dagger__ddaccess_t IN(dagger__ddreg_t r)
{
    return (dagger__ddaccess_t){r, true, false, false};
}
static dagger__ddaccess_t OUT(dagger__ddreg_t r)
{
    return (dagger__ddaccess_t){r, false, true, false};
}
static dagger__ddaccess_t INOUT(dagger__ddreg_t r)
{
    return (dagger__ddaccess_t){r, true, true, false};
}
static bool has(tr_t *tr, long n, uint32_t d)
{
    for (long i = 0; i < n; i++)
        if (tr->deps[i] == d)
            return true;
    return false;
}

TEST(tracker_raw_war_waw)
{
    tr_t tr = {0};
    dagger__ddtracker_init(&tr.t);
    double *x = (double *)B, *c = x + 16;
    dagger__ddaccess_t a0[] = {INOUT(span(x, 64))}; /* sort X */
    ASSERT_EQ(add(&tr, a0, 1), 0);
    dagger__ddaccess_t a1[] = {OUT(span(c, 64)), IN(span(x, 64))}; /* copy X into C */
    long k = add(&tr, a1, 2);
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 0));
    /* Two readers of C run in parallel: both wait for task 1 only. */
    dagger__ddaccess_t r[] = {IN(span(c, 64))};
    k = add(&tr, r, 1); /* 2 */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 1));
    k = add(&tr, r, 1); /* 3 */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 1));
    /* A writer of C waits for both readers (WAR). */
    dagger__ddaccess_t w[] = {OUT(span(c, 64))};
    k = add(&tr, w, 1); /* 4 */
    ASSERT_TRUE(has(&tr, k, 2) && has(&tr, k, 3));
    k = add(&tr, w, 1); /* 5: WAW */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 4));
    /* Duplicated argument: read and write the same buffer in one task. */
    dagger__ddaccess_t dup[] = {IN(span(c, 64)), OUT(span(c, 64))};
    k = add(&tr, dup, 2); /* 6 */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 5));
    k = add(&tr, r, 1); /* 7 reads after 6 */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 6));
    /* Overlapping sub-ranges 1:2 and 2:3 are ordered; 1:1 and 2:3 are not. */
    double *v = x + 40;
    dagger__ddaccess_t s12[] = {INOUT(span(v, 16))}, s23[] = {INOUT(span(v + 1, 16))};
    dagger__ddaccess_t s11[] = {INOUT(span(v, 8))};
    ASSERT_EQ(add(&tr, s12, 1), 0); /* 8 */
    k = add(&tr, s23, 1);           /* 9 */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 8));
    k = add(&tr, s11, 1); /* 10: waits for 8 only */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 8));
    dagger__ddtracker_deinit(&tr.t);
    free(tr.deps);
}

TEST(tracker_quadrants_and_centre)
{
    tr_t tr = {0};
    dagger__ddtracker_init(&tr.t);
    dagger__ddaccess_t whole[] = {INOUT(span(M, 128))};
    ASSERT_EQ(add(&tr, whole, 1), 0); /* 0 */
    dagger__ddreg_t q[4] = {tile4(0, 0, 2, 2), tile4(2, 0, 2, 2), tile4(0, 2, 2, 2),
                            tile4(2, 2, 2, 2)};
    for (int i = 0; i < 4; i++) { /* 1..4: each waits for the whole-matrix task only */
        dagger__ddaccess_t a[] = {INOUT(q[i])};
        long k = add(&tr, a, 1);
        ASSERT_EQ(k, 1);
        ASSERT_TRUE(has(&tr, k, 0));
    }
    dagger__ddaccess_t cen[] = {INOUT(tile4(1, 1, 2, 2))};
    long k = add(&tr, cen, 1); /* 5 waits for the four quadrants */
    for (uint32_t i = 1; i <= 4; i++)
        ASSERT_TRUE(has(&tr, k, i));
    for (int i = 0; i < 4; i++) { /* 6..9: each quadrant waits for the centre */
        dagger__ddaccess_t a[] = {IN(q[i])};
        k = add(&tr, a, 1);
        ASSERT_TRUE(has(&tr, k, 5));
        for (uint32_t j = 6; j < tr.n - 1; j++)
            ASSERT_FALSE(has(&tr, k, j)); /* reads of quadrants are independent */
    }
    dagger__ddaccess_t w[] = {OUT(span(M, 128))};
    k = add(&tr, w, 1); /* 10 waits for every reader */
    for (uint32_t i = 6; i <= 9; i++)
        ASSERT_TRUE(has(&tr, k, i));
    dagger__ddtracker_deinit(&tr.t);
    free(tr.deps);
}

TEST(tracker_triangles)
{
    tr_t tr = {0};
    dagger__ddtracker_init(&tr.t);
    double *t = &M[4 + 4 * 8];
    dagger__ddaccess_t uu[] = {INOUT(tri(DAGGER_SHAPE_UNIT_UPPER, t, 4, 8))};
    dagger__ddaccess_t ul[] = {INOUT(tri(DAGGER_SHAPE_UNIT_LOWER, t, 4, 8))};
    dagger__ddaccess_t u[] = {INOUT(tri(DAGGER_SHAPE_UPPER, t, 4, 8))};
    dagger__ddaccess_t l[] = {INOUT(tri(DAGGER_SHAPE_LOWER, t, 4, 8))};
    ASSERT_EQ(add(&tr, uu, 1), 0); /* 0 */
    ASSERT_EQ(add(&tr, ul, 1), 0); /* 1: unit triangles are independent */
    long k = add(&tr, u, 1);       /* 2: after 0 only */
    ASSERT_EQ(k, 1);
    ASSERT_TRUE(has(&tr, k, 0));
    k = add(&tr, l, 1); /* 3: after 1 (strict lower) and 2 (diagonal) */
    ASSERT_EQ(k, 2);
    ASSERT_TRUE(has(&tr, k, 1) && has(&tr, k, 2));
    dagger__ddtracker_deinit(&tr.t);
    free(tr.deps);
}

/* Random accesses: every direct dependency is a real conflict (exactness) and every conflict
 * is ordered through the dependencies (sufficiency). */
TEST(tracker_random_matches_sequential_order)
{
    uint64_t s = test_seed();
    enum { N = 400, K = 3 };
    static shaped_t reg[N][K];
    static int mode[N][K], nacc[N];
    static unsigned char reach[N][N];
    tr_t tr = {0};
    dagger__ddtracker_init(&tr.t);
    for (int i = 0; i < N; i++) {
        nacc[i] = 1 + (int)(test_rand(&s) % K);
        dagger__ddaccess_t a[K];
        for (int k = 0; k < nacc[i]; k++) {
            random_region(&s, &reg[i][k]);
            mode[i][k] = 1 + (int)(test_rand(&s) % 3);
            a[k] = (dagger__ddaccess_t){reg[i][k].r, (mode[i][k] & 1) != 0, (mode[i][k] & 2) != 0,
                                        false};
        }
        long n = add(&tr, a, (size_t)nacc[i]);
        memset(reach[i], 0, N);
        for (long d = 0; d < n; d++) {
            uint32_t j = tr.deps[d];
            ASSERT_TRUE(j < (uint32_t)i);
            bool conflict = false;
            for (int x = 0; x < nacc[i]; x++)
                for (int y = 0; y < nacc[j]; y++)
                    if (((mode[i][x] | mode[j][y]) & 2) && maps_meet(reg[i][x].map, reg[j][y].map))
                        conflict = true;
            if (!conflict)
                fail_msg("task %d waits for task %u without a conflict", i, j);
            reach[i][j] = 1;
            for (int m = 0; m < i; m++)
                reach[i][m] |= reach[j][m];
        }
        for (int j = 0; j < i; j++) {
            bool conflict = false;
            for (int x = 0; x < nacc[i]; x++)
                for (int y = 0; y < nacc[j]; y++)
                    if (((mode[i][x] & 2) || (mode[j][y] & 2)) &&
                        maps_meet(reg[i][x].map, reg[j][y].map))
                        conflict = true;
            if (conflict && !reach[i][j])
                fail_msg("task %d conflicts with task %d but is not ordered after it", i, j);
        }
    }
    dagger__ddtracker_deinit(&tr.t);
    free(tr.deps);
}

TEST_LIST(spans_touching_do_not_overlap, empty_and_bad_annotations, quadrants_and_centre,
          rows_and_columns_of_subtiles, triangle_rules, random_overlap_matches_byte_map,
          tracker_raw_war_waw, tracker_quadrants_and_centre, tracker_triangles,
          tracker_random_matches_sequential_order)
