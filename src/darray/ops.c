/* src/darray/ops.c - element-wise operations and copies of distributed arrays: map, broadcast,
 * copy, permutedims, getindex and copyto.
 *
 * Design: every operation builds its result with the layout of its first input (same blocks,
 * same places) and fills block b in a task on b's place, reading the inputs' blocks through
 * their host pointers. Inputs with another blocking are first re-blocked with copyto.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "darray/darray_int.h"

static int same_dims(const dagger_darray_t *a, const dagger_darray_t *b, const char *what)
{
    char sa[96], sb[96];
    DAGGER_CHECK(a->nd == b->nd && !memcmp(a->dims, b->dims, sizeof a->dims), DAGGER_EINVAL,
                 "%s: shapes %s and %s differ", what, dagger__da_shape_str(a, sa, sizeof sa),
                 dagger__da_shape_str(b, sb, sizeof sb));
    DAGGER_CHECK(a->elt == b->elt, DAGGER_EINVAL,
                 "%s: element types differ (%d and %d; convert one with dagger_darray_map)", what,
                 (int)a->elt, (int)b->elt);
    return 0;
}

static bool same_blocking(const dagger_darray_t *a, const dagger_darray_t *b)
{
    return !memcmp(a->bs, b->bs, sizeof a->bs) && !memcmp(a->dims, b->dims, sizeof a->dims);
}

/* ---------------------------------------------------------------- map */

typedef struct map_job {
    dagger_darray_t *src;
    dagger_darray_elemfn_t ef;
    dagger_darray_blockfn_t bf;
    void *ud;
} map_job_t;

static int map_body(dagger_tc_t *tc, dagger_darray_t *dst, size_t b, void *ud)
{
    map_job_t *j = ud;
    dagger_darray_blockinfo_t bi;
    dagger__da_info(j->src, b, &bi);
    char *out = dst->ptr[b];
    const char *in = j->src->ptr[b];
    if (j->bf) {
        int rc = j->bf(out, in, &bi, j->ud);
        return rc ? dagger_fail(tc, rc,
                                "darray map: the block function failed on block %zu "
                                "with %s",
                                b, dagger_err_name(rc))
                  : 0;
    }
    size_t so = j->src->esz, dso = dst->esz;
    for (size_t k = 0; k < bi.count; k++)
        j->ef(out + k * dso, in + k * so, j->ud);
    return 0;
}

int dagger_darray_map(dagger_darray_t *a, dagger_elt_t out_elt, dagger_darray_elemfn_t ef,
                      dagger_darray_blockfn_t bf, void *ud, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_map: out is NULL");
    *out = NULL;
    int rc = dagger__da_check_any(a, "dagger_darray_map");
    if (rc)
        return rc;
    DAGGER_CHECK(!ef != !bf, DAGGER_EINVAL,
                 "dagger_darray_map: give exactly one of an element and a block function");
    dagger__da_layout_t l;
    dagger__da_layout_like(a, out_elt == DAGGER_ELT_RAW ? a->elt : out_elt, &l);
    dagger_darray_t *c;
    DAGGER_CHECK(dagger_elt_size(l.elt), DAGGER_EINVAL,
                 "dagger_darray_map: element type %d is not f64, f32, i64 or i32", (int)l.elt);
    if (a->ranks) {
        if ((rc = dagger__da_new(a->ctx, &l, &c)))
            return rc;
        if ((rc = dagger__da_map_ranks(a, c, ef, bf, ud, "dagger_darray_map"))) {
            dagger_darray_release(c);
            return rc;
        }
        *out = c;
        return 0;
    }
    map_job_t j = {a, ef, bf, ud};
    rc = dagger__da_build_with(a->ctx, &l, map_body, &j, "darray_map", &c);
    if (rc)
        return rc;
    *out = c;
    return 0;
}

int dagger_darray_map_inplace(dagger_darray_t *a, dagger_darray_elemfn_t ef,
                              dagger_darray_blockfn_t bf, void *ud)
{
    int rc = dagger__da_check_any(a, "dagger_darray_map_inplace");
    if (rc)
        return rc;
    DAGGER_CHECK(!ef != !bf, DAGGER_EINVAL,
                 "dagger_darray_map_inplace: give exactly one of an element and a block function");
    if (a->ranks)
        return dagger__da_map_ranks(a, NULL, ef, bf, ud, "dagger_darray_map_inplace");
    map_job_t j = {a, ef, bf, ud};
    return dagger__da_foreach(a, map_body, &j, "darray_map_inplace");
}

/* ---------------------------------------------------------------- broadcast */

typedef struct gather_job {
    dagger_darray_t *src;
    size_t off[DA_MAXD];
} gather_job_t;

static int gather_body(dagger_tc_t *tc, dagger_darray_t *dst, size_t b, void *ud)
{
    gather_job_t *j = ud;
    dagger__da_gather(dst, b, j->src, j->off);
    return 0;
}

typedef struct bc_job {
    dagger_darray_t *x, *y; /* y NULL: the scalar */
    dagger_darray_op_t op;
    dagger_darray_binfn_t fn;
    void *ud;
    double s;
    bool s_left;
} bc_job_t;

#define BC_LOOP(T, ISINT)                                                                          \
    do {                                                                                           \
        T *o = out;                                                                                \
        const T *xa = xp, *ya = yp;                                                                \
        T sv = (T)j->s;                                                                            \
        for (size_t k = 0; k < n; k++) {                                                           \
            T u = xa[k], v = ya ? ya[k] : sv;                                                      \
            if (!ya && j->s_left) {                                                                \
                v = u;                                                                             \
                u = sv;                                                                            \
            }                                                                                      \
            switch (j->op) {                                                                       \
            case DAGGER_OP_ADD:                                                                    \
                o[k] = u + v;                                                                      \
                break;                                                                             \
            case DAGGER_OP_SUB:                                                                    \
                o[k] = u - v;                                                                      \
                break;                                                                             \
            case DAGGER_OP_MUL:                                                                    \
                o[k] = u * v;                                                                      \
                break;                                                                             \
            case DAGGER_OP_DIV:                                                                    \
                if (ISINT && v == 0)                                                               \
                    return dagger_fail(tc, DAGGER_ERANGE,                                          \
                                       "darray broadcast: integer division by zero in block %zu, " \
                                       "element %zu",                                              \
                                       b, k);                                                      \
                o[k] = u / v;                                                                      \
                break;                                                                             \
            case DAGGER_OP_MIN:                                                                    \
                o[k] = u < v ? u : v;                                                              \
                break;                                                                             \
            default:                                                                               \
                o[k] = u > v ? u : v;                                                              \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static int bc_body(dagger_tc_t *tc, dagger_darray_t *dst, size_t b, void *ud)
{
    bc_job_t *j = ud;
    size_t n = dagger__da_block_count(dst, b);
    void *out = dst->ptr[b];
    const void *xp = j->x->ptr[b], *yp = j->y ? j->y->ptr[b] : NULL;
    if (j->op == DAGGER_OP_USER) {
        size_t e = dst->esz;
        for (size_t k = 0; k < n; k++)
            j->fn((char *)out + k * e, (const char *)xp + k * e, (const char *)yp + k * e, j->ud);
        return 0;
    }
    switch (dst->elt) {
    case DAGGER_ELT_F64:
        BC_LOOP(double, 0);
        break;
    case DAGGER_ELT_F32:
        BC_LOOP(float, 0);
        break;
    case DAGGER_ELT_I64:
        BC_LOOP(int64_t, 1);
        break;
    default:
        BC_LOOP(int32_t, 1);
        break;
    }
    return 0;
}

static int broadcast(bc_job_t *j, dagger_darray_t **out)
{
    dagger__da_layout_t l;
    dagger__da_layout_like(j->x, j->x->elt, &l);
    return dagger__da_build_with(j->x->ctx, &l, bc_body, j, "darray_broadcast", out);
}

int dagger_darray_broadcast(dagger_darray_t *a, dagger_darray_t *b, dagger_darray_op_t op,
                            dagger_darray_binfn_t fn, void *ud, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_broadcast: out is NULL");
    *out = NULL;
    int rc = dagger__da_check(a, "dagger_darray_broadcast");
    if (rc || (rc = dagger__da_check(b, "dagger_darray_broadcast")))
        return rc;
    if ((rc = same_dims(a, b, "dagger_darray_broadcast")))
        return rc;
    DAGGER_CHECK((op >= DAGGER_OP_ADD && op <= DAGGER_OP_MAX) || (op == DAGGER_OP_USER && fn),
                 DAGGER_EINVAL, "dagger_darray_broadcast: operator %d is not a binary operator%s",
                 (int)op, op == DAGGER_OP_USER ? " (DAGGER_OP_USER needs fn)" : "");
    dagger_darray_t *bb = dagger_darray_retain(b);
    if (!same_blocking(a, b)) {
        dagger__da_layout_t l;
        dagger__da_layout_like(a, a->elt, &l);
        dagger_darray_release(bb);
        gather_job_t g = {b, {0, 0, 0, 0}};
        if ((rc = dagger__da_build_with(a->ctx, &l, gather_body, &g, "darray_reblock", &bb)))
            return rc;
    }
    bc_job_t j = {a, bb, op, fn, ud, 0, false};
    rc = broadcast(&j, out);
    dagger_darray_release(bb);
    return rc;
}

int dagger_darray_broadcast_scalar(dagger_darray_t *a, dagger_darray_op_t op, double s, bool s_left,
                                   dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_broadcast_scalar: out is NULL");
    *out = NULL;
    int rc = dagger__da_check(a, "dagger_darray_broadcast_scalar");
    if (rc)
        return rc;
    DAGGER_CHECK(op >= DAGGER_OP_ADD && op <= DAGGER_OP_MAX, DAGGER_EINVAL,
                 "dagger_darray_broadcast_scalar: operator %d is not a built-in binary operator",
                 (int)op);
    bc_job_t j = {a, NULL, op, NULL, NULL, s, s_left};
    return broadcast(&j, out);
}

/* ---------------------------------------------------------------- copies */

int dagger_darray_copyto(dagger_darray_t *dst, dagger_darray_t *src)
{
    int rc = dagger__da_check(dst, "dagger_darray_copyto");
    if (rc || (rc = dagger__da_check(src, "dagger_darray_copyto")))
        return rc;
    if ((rc = same_dims(dst, src, "dagger_darray_copyto")))
        return rc;
    if (dst == src)
        return 0;
    gather_job_t j = {src, {0, 0, 0, 0}};
    return dagger__da_foreach(dst, gather_body, &j, "darray_copyto");
}

int dagger_darray_copy(dagger_darray_t *a, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_copy: out is NULL");
    *out = NULL;
    int rc = dagger__da_check_any(a, "dagger_darray_copy");
    if (rc)
        return rc;
    dagger__da_layout_t l;
    dagger__da_layout_like(a, a->elt, &l);
    if (a->ranks) { /* each block copied on its rank */
        dagger_darray_t *c;
        if ((rc = dagger__da_new(a->ctx, &l, &c)))
            return rc;
        if ((rc = dagger__da_map_ranks(a, c, NULL, NULL, NULL, "dagger_darray_copy"))) {
            dagger_darray_release(c);
            return rc;
        }
        *out = c;
        return 0;
    }
    gather_job_t j = {a, {0, 0, 0, 0}};
    return dagger__da_build_with(a->ctx, &l, gather_body, &j, "darray_copy", out);
}

int dagger_darray_getindex(dagger_darray_t *a, const size_t *lo, const size_t *hi,
                           dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_getindex: out is NULL");
    *out = NULL;
    int rc = dagger__da_check(a, "dagger_darray_getindex");
    if (rc)
        return rc;
    DAGGER_CHECK(lo && hi, DAGGER_EINVAL, "dagger_darray_getindex: lo or hi is NULL");
    dagger__da_layout_t l;
    dagger__da_layout_like(a, a->elt, &l);
    l.copy_places = false; /* another grid: placed by A's distribution */
    l.places = NULL;
    l.nplaces = 0;
    if (l.dist == DAGGER_DIST_EXPLICIT)
        l.dist = DAGGER_DIST_ANY;
    char shape[96];
    gather_job_t j;
    j.src = a;
    for (int d = 0; d < DA_MAXD; d++) {
        size_t l0 = d < a->nd ? lo[d] : 0, h0 = d < a->nd ? hi[d] : 1;
        DAGGER_CHECK(l0 < h0 && h0 <= a->dims[d], DAGGER_EINVAL,
                     "dagger_darray_getindex: range [%zu, %zu) of dimension %d is empty or "
                     "outside the %s array",
                     l0, h0, d, dagger__da_shape_str(a, shape, sizeof shape));
        j.off[d] = l0;
        l.dims[d] = h0 - l0;
        if (l.bs[d] > l.dims[d])
            l.bs[d] = l.dims[d];
    }
    return dagger__da_build_with(a->ctx, &l, gather_body, &j, "darray_getindex", out);
}

/* ---------------------------------------------------------------- permutedims */

typedef struct perm_job {
    dagger_darray_t *src;
    int perm[DA_MAXD];
} perm_job_t;

static int perm_body(dagger_tc_t *tc, dagger_darray_t *dst, size_t b, void *ud)
{
    perm_job_t *j = ud;
    const dagger_darray_t *d = dst, *s = j->src;
    size_t dg[DA_MAXD], sg[DA_MAXD], dorg[DA_MAXD], dshp[DA_MAXD], sorg[DA_MAXD], sshp[DA_MAXD];
    dagger__da_block_coords(d, b, dg);
    for (int k = 0; k < DA_MAXD; k++)
        sg[j->perm[k]] = dg[k];
    size_t sb = sg[0] + s->grid[0] * (sg[1] + s->grid[1] * (sg[2] + s->grid[2] * sg[3]));
    dagger__da_block_box(d, b, dorg, dshp);
    dagger__da_block_box(s, sb, sorg, sshp);
    /* Source strides seen from the destination's dimensions. */
    size_t ss[DA_MAXD], st = 1, sstride[DA_MAXD];
    for (int k = 0; k < DA_MAXD; k++) {
        sstride[k] = st;
        st *= sshp[k];
    }
    for (int k = 0; k < DA_MAXD; k++)
        ss[k] = sstride[j->perm[k]];
    size_t esz = d->esz, n = dshp[0] * dshp[1] * dshp[2] * dshp[3];
    char *out = d->ptr[b];
    const char *in = s->ptr[sb];
    size_t i[DA_MAXD] = {0, 0, 0, 0}, so = 0;
    for (size_t k = 0; k < n; k++) {
        memcpy(out + k * esz, in + so * esz, esz);
        for (int q = 0; q < DA_MAXD; q++) {
            so += ss[q];
            if (++i[q] < dshp[q])
                break;
            so -= ss[q] * i[q];
            i[q] = 0;
        }
    }
    return 0;
}

int dagger_darray_permutedims(dagger_darray_t *a, const int *perm, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_permutedims: out is NULL");
    *out = NULL;
    int rc = dagger__da_check(a, "dagger_darray_permutedims");
    if (rc)
        return rc;
    DAGGER_CHECK(perm, DAGGER_EINVAL, "dagger_darray_permutedims: perm is NULL");
    perm_job_t j;
    int seen = 0;
    for (int k = 0; k < DA_MAXD; k++) {
        j.perm[k] = k < a->nd ? perm[k] : k;
        DAGGER_CHECK(j.perm[k] >= 0 && j.perm[k] < (k < a->nd ? a->nd : DA_MAXD) &&
                         !(seen & (1 << j.perm[k])),
                     DAGGER_EINVAL,
                     "dagger_darray_permutedims: entry %d (%d) does not make a permutation of "
                     "0..%d",
                     k, j.perm[k], a->nd - 1);
        seen |= 1 << j.perm[k];
    }
    dagger__da_layout_t l;
    memset(&l, 0, sizeof l);
    l.elt = a->elt;
    l.nd = a->nd;
    for (int k = 0; k < DA_MAXD; k++) {
        l.dims[k] = a->dims[j.perm[k]];
        l.bs[k] = a->bs[j.perm[k]];
    }
    /* The block grid is permuted: block places follow their source block. */
    int *pl = NULL;
    l.dist = a->dist;
    l.over = a->over;
    if (a->nblocks && (pl = dagger__calloc(a->nblocks, sizeof *pl))) {
        size_t g[DA_MAXD], sg[DA_MAXD], grid[DA_MAXD];
        for (int k = 0; k < DA_MAXD; k++)
            grid[k] = a->grid[j.perm[k]];
        for (size_t b = 0; b < a->nblocks; b++) {
            size_t r = b;
            for (int k = 0; k < DA_MAXD; k++) {
                g[k] = r % grid[k];
                r /= grid[k];
            }
            for (int k = 0; k < DA_MAXD; k++)
                sg[j.perm[k]] = g[k];
            pl[b] =
                a->place[sg[0] + a->grid[0] * (sg[1] + a->grid[1] * (sg[2] + a->grid[2] * sg[3]))];
        }
        l.places = pl;
        l.nplaces = a->nblocks;
        l.copy_places = true;
    }
    DAGGER_CHECK(pl, DAGGER_ENOMEM, "dagger_darray_permutedims: out of memory");
    j.src = a;
    rc = dagger__da_build_with(a->ctx, &l, perm_body, &j, "darray_permutedims", out);
    dagger__free(pl);
    return rc;
}

static int same_bytes(dagger_tc_t *tc, dagger_darray_t *dst, size_t b, void *ud)
{
    const dagger_darray_t *a = ud;
    memcpy(dst->ptr[b], a->ptr[b], dagger__da_block_count(a, b) * a->esz);
    return 0;
}

int dagger_darray_transpose(dagger_darray_t *a, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_transpose: out is NULL");
    *out = NULL;
    int rc = dagger__da_check(a, "dagger_darray_transpose");
    if (rc)
        return rc;
    DAGGER_CHECK(a->nd <= 2, DAGGER_EINVAL,
                 "dagger_darray_transpose: %d-D array (use dagger_darray_permutedims)", a->nd);
    int perm[2] = {1, 0};
    if (a->nd == 2)
        return dagger_darray_permutedims(a, perm, out);
    /* A vector of n becomes a 1 x n matrix: the same bytes, one row of blocks. */
    dagger__da_layout_t l;
    dagger__da_layout_like(a, a->elt, &l);
    l.nd = 2;
    l.dims[1] = a->dims[0];
    l.bs[1] = a->bs[0];
    l.dims[0] = l.bs[0] = 1;
    return dagger__da_build_with(a->ctx, &l, same_bytes, a, "darray_transpose", out);
}
