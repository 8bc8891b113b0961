/* src/darray/darray.c - the DArray record: layouts, placement of blocks, the per-block task
 * driver, constructors (fill, rand, randn), distribute and collect.
 *
 * Design: a block is made by a task on its place (scope thread(p)) whose result becomes mutable
 * data of that thread (DAGGER_TASK_MUTABLE_RESULT), or by a task anywhere whose result is kept
 * as a chunk (DAGGER_DIST_ANY). Random values come from a counter-based generator: element k
 * (global column-major index) of seed s is a hash of (s, k), so values do not depend on the
 * blocking, the places, or the order in which blocks run.
 * Places over ranks: in one process (or when every block lands on the caller's rank) blocks
 * live here and are free to move between threads, as DAGGER_DIST_ANY; when some block lives on
 * another rank the array is built by src/darray/ranks.c (each block mutable data of its rank)
 * and only the operations built over ranks accept it (dagger__da_check).
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "darray/darray_int.h"

void dagger_darray_opts_init(dagger_darray_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->dist = DAGGER_DIST_ANY;
    o->over = DAGGER_DARRAY_THREADS;
}

/* ---------------------------------------------------------------- geometry */

void dagger__da_block_coords(const dagger_darray_t *a, size_t b, size_t *g)
{
    for (int d = 0; d < DA_MAXD; d++) {
        g[d] = b % a->grid[d];
        b /= a->grid[d];
    }
}

void dagger__da_block_box(const dagger_darray_t *a, size_t b, size_t *origin, size_t *shape)
{
    size_t g[DA_MAXD];
    dagger__da_block_coords(a, b, g);
    for (int d = 0; d < DA_MAXD; d++) {
        origin[d] = g[d] * a->bs[d];
        size_t rest = a->dims[d] - origin[d];
        shape[d] = rest < a->bs[d] ? rest : a->bs[d];
    }
}

size_t dagger__da_block_count(const dagger_darray_t *a, size_t b)
{
    size_t o[DA_MAXD], s[DA_MAXD];
    dagger__da_block_box(a, b, o, s);
    return s[0] * s[1] * s[2] * s[3];
}

void dagger__da_info(const dagger_darray_t *a, size_t b, dagger_darray_blockinfo_t *bi)
{
    memset(bi, 0, sizeof *bi);
    bi->index = b;
    bi->ndims = a->nd;
    dagger__da_block_box(a, b, bi->origin, bi->shape);
    bi->count = bi->shape[0] * bi->shape[1] * bi->shape[2] * bi->shape[3];
    bi->elt = a->elt;
}

const char *dagger__da_shape_str(const dagger_darray_t *a, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (int d = 0; d < a->nd && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, d ? "x%zu" : "%zu", a->dims[d]);
    return buf;
}

int dagger__da_check_any(const dagger_darray_t *a, const char *what)
{
    DAGGER_CHECK(a, DAGGER_EINVAL, "%s: the array is NULL", what);
    return 0;
}

int dagger__da_check(const dagger_darray_t *a, const char *what)
{
    DAGGER_CHECK(a, DAGGER_EINVAL, "%s: the array is NULL", what);
    DAGGER_CHECK(!a->ranks, DAGGER_ENOSYS,
                 "%s: the array has blocks on other ranks, and this operation is not built over "
                 "ranks yet (docs/darray.md, \"Across ranks\")",
                 what);
    return 0;
}

/* ---------------------------------------------------------------- layouts */

static const char *elt_name(dagger_elt_t e)
{
    switch (e) {
    case DAGGER_ELT_F64:
        return "f64";
    case DAGGER_ELT_F32:
        return "f32";
    case DAGGER_ELT_I64:
        return "i64";
    case DAGGER_ELT_I32:
        return "i32";
    default:
        return "an unsupported element type";
    }
}

/* Dagger.jl's AutoBlocks: halve the largest block extent until there are about two blocks per
 * thread (at least one element per block). */
static void auto_blocks(int nd, const size_t *dims, int nthreads, size_t *bs)
{
    size_t target = (size_t)(nthreads > 0 ? nthreads : 1) * 2, nb = 1;
    for (int d = 0; d < nd; d++)
        bs[d] = dims[d] ? dims[d] : 1;
    while (nb < target) {
        int best = -1;
        for (int d = 0; d < nd; d++)
            if (bs[d] > 1 && (best < 0 || bs[d] > bs[best]))
                best = d;
        if (best < 0)
            break;
        bs[best] = (bs[best] + 1) / 2;
        nb = 1;
        for (int d = 0; d < nd; d++)
            nb *= (dims[d] + bs[d] - 1) / bs[d];
    }
}

int dagger__da_layout(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks, dagger_dims_t dims,
                      const dagger_darray_opts_t *opts, dagger__da_layout_t *l)
{
    memset(l, 0, sizeof *l);
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "darray: ctx is NULL");
    DAGGER_CHECK(elt == DAGGER_ELT_F64 || elt == DAGGER_ELT_F32 || elt == DAGGER_ELT_I64 ||
                     elt == DAGGER_ELT_I32,
                 DAGGER_EINVAL, "darray: element type %d is not f64, f32, i64 or i32", (int)elt);
    DAGGER_CHECK(dims.n >= 1 && dims.n <= DA_MAXD, DAGGER_EINVAL,
                 "darray: %d dimensions (1 to %d are supported)", dims.n, DA_MAXD);
    DAGGER_CHECK(blocks.n == 0 || blocks.n == dims.n, DAGGER_EINVAL,
                 "darray: %d block sizes for %d dimensions", blocks.n, dims.n);
    dagger_darray_opts_t def;
    if (!opts) {
        dagger_darray_opts_init(&def);
        opts = &def;
    }
    DAGGER_CHECK(opts->dist >= DAGGER_DIST_ANY && opts->dist <= DAGGER_DIST_EXPLICIT, DAGGER_EINVAL,
                 "darray: unknown distribution %d", (int)opts->dist);
    DAGGER_CHECK(opts->over == DAGGER_DARRAY_THREADS || opts->over == DAGGER_DARRAY_RANKS,
                 DAGGER_EINVAL, "darray: places are threads (0) or ranks (1), not %d", opts->over);
    DAGGER_CHECK(opts->dist != DAGGER_DIST_EXPLICIT || (opts->places && opts->nplaces),
                 DAGGER_EINVAL, "darray: DAGGER_DIST_EXPLICIT needs a non-empty places array");
    DAGGER_CHECK(!(opts->flags & ~(unsigned)DAGGER_DARRAY_ROW_MAJOR), DAGGER_EINVAL,
                 "darray: unknown flags 0x%x", opts->flags);
    l->elt = elt;
    l->nd = dims.n;
    for (int d = 0; d < DA_MAXD; d++)
        l->dims[d] = l->bs[d] = 1;
    size_t len = 1;
    for (int d = 0; d < dims.n; d++) {
        l->dims[d] = dims.d[d];
        DAGGER_CHECK(len == 0 || dims.d[d] <= SIZE_MAX / 16 / len, DAGGER_ERANGE,
                     "darray: the array's size overflows");
        len *= dims.d[d];
    }
    if (blocks.n == 0) {
        auto_blocks(dims.n, l->dims, dagger_ctx_num_threads(ctx), l->bs);
    } else {
        for (int d = 0; d < dims.n; d++) {
            DAGGER_CHECK(blocks.d[d] > 0, DAGGER_EINVAL,
                         "darray: block size 0 in dimension %d (Blocks need positive sizes)", d);
            l->bs[d] = blocks.d[d];
        }
    }
    for (int d = 0; d < dims.n; d++)
        if (l->dims[d] == 0)
            l->bs[d] = 1; /* an empty dimension has one empty block row */
        else if (l->bs[d] > l->dims[d])
            l->bs[d] = l->dims[d];
    l->dist = opts->dist;
    l->over = opts->over;
    l->places = opts->places;
    l->nplaces = opts->nplaces;
    return 0;
}

void dagger__da_layout_like(const dagger_darray_t *a, dagger_elt_t elt, dagger__da_layout_t *l)
{
    memset(l, 0, sizeof *l);
    l->elt = elt;
    l->nd = a->nd;
    memcpy(l->dims, a->dims, sizeof l->dims);
    memcpy(l->bs, a->bs, sizeof l->bs);
    l->dist = a->dist;
    l->over = a->over;
    l->places = a->place;
    l->nplaces = a->nblocks;
    l->copy_places = true;
}

/* The place of block b under the layout's distribution (a thread or a rank, from P places), or
 * -1 when it may move. */
static int place_of(const dagger__da_layout_t *l, const dagger_darray_t *a, size_t b, int P)
{
    if (l->copy_places)
        return l->places[b];
    if (l->dist == DAGGER_DIST_ANY)
        return -1;
    size_t g[DA_MAXD];
    dagger__da_block_coords(a, b, g);
    /* A 1-D array's "columns" are its blocks too. */
    int cd = a->nd > 1 ? 1 : 0;
    switch (l->dist) {
    case DAGGER_DIST_BLOCKROW:
        return (int)(g[0] * (size_t)P / a->grid[0]);
    case DAGGER_DIST_BLOCKCOL:
        return (int)(g[cd] * (size_t)P / a->grid[cd]);
    case DAGGER_DIST_CYCLICROW:
        return (int)(g[0] % (size_t)P);
    case DAGGER_DIST_CYCLICCOL:
        return (int)(g[cd] % (size_t)P);
    case DAGGER_DIST_EXPLICIT:
        return l->places[b % l->nplaces];
    default:
        return -1;
    }
}

/* ---------------------------------------------------------------- building */

typedef struct build_job {
    dagger_darray_t *a;
    dagger__da_fill_fn fill;
    dagger__da_block_fn body;
    void *ud;
} build_job_t;

static void free_block(void *data, void *ud) { dagger__free(data); }

/* A typed chunk for block b: zeroed, or left as malloc gives it when a fill writes it all. */
int dagger__da_new_block(dagger_ctx_t *ctx, const dagger_darray_t *a, const size_t *shape,
                         size_t count, bool zero, dagger_chunk_t **c)
{
    if (zero || !count)
        return dagger_chunk_create_array(ctx, a->elt, a->nd, shape, c);
    void *p = dagger__malloc(count * a->esz);
    if (!p)
        return dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for a block of %zu bytes",
                                  count * a->esz);
    int rc = dagger_chunk_wrap(ctx, p, count * a->esz, free_block, NULL, c);
    if (rc) {
        dagger__free(p);
        return rc;
    }
    if ((rc = dagger_chunk_set_type(*c, a->elt, a->nd, shape))) {
        dagger_chunk_release(*c);
        *c = NULL;
    }
    return rc;
}

static int build_body(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    build_job_t *j = dagger_arg_ptr(args, 0);
    size_t b = (size_t)dagger_arg_i64(args, 1);
    dagger_darray_blockinfo_t bi;
    dagger__da_info(j->a, b, &bi);
    dagger_chunk_t *c;
    int rc =
        dagger__da_new_block(dagger_tc_ctx(tc), j->a, bi.shape, bi.count, !j->fill && !j->body, &c);
    if (rc)
        return dagger_fail(tc, rc, "darray block %zu: %s", b, dagger_last_errmsg());
    /* Each task owns its slot; the builder reads it after fetching the task. */
    j->a->ptr[b] = dagger_chunk_data(c);
    if (j->body)
        rc = j->body(tc, j->a, b, j->ud);
    else if (j->fill && bi.count && (rc = j->fill(j->a->ptr[b], &bi, j->ud)))
        rc = dagger_fail(tc, rc, "darray block %zu: %s", b, dagger_last_errmsg());
    if (rc) {
        dagger_chunk_release(c);
        return rc;
    }
    *out = dagger_chunk_give(tc, c);
    return 0;
}

typedef struct xfer {
    dagger_darray_t *a;
    const size_t *dims;
    char *user;
    bool row_major;
    bool in; /* user -> blocks */
} xfer_t;

static int dist_fill(void *dst, const dagger_darray_blockinfo_t *bi, void *ud);

static dagger_darray_t *alloc_array(dagger_ctx_t *ctx, const dagger__da_layout_t *l)
{
    dagger_darray_t *a = dagger__calloc(1, sizeof *a);
    if (!a)
        return NULL;
    atomic_init(&a->refs, 1);
    a->ctx = ctx;
    a->elt = l->elt;
    a->esz = dagger_elt_size(l->elt);
    a->nd = l->nd;
    a->nblocks = 1;
    a->len = 1;
    for (int d = 0; d < DA_MAXD; d++) {
        a->dims[d] = l->dims[d];
        a->bs[d] = l->bs[d];
        a->grid[d] = l->dims[d] ? (l->dims[d] + l->bs[d] - 1) / l->bs[d] : 1;
        a->nblocks *= a->grid[d];
        a->len *= l->dims[d];
    }
    a->dist = l->dist;
    a->over = l->over;
    a->blocks = dagger__calloc(a->nblocks, sizeof *a->blocks);
    a->ptr = dagger__calloc(a->nblocks, sizeof *a->ptr);
    a->place = dagger__calloc(a->nblocks, sizeof *a->place);
    if (!a->blocks || !a->ptr || !a->place) {
        dagger__free(a->blocks);
        dagger__free(a->ptr);
        dagger__free(a->place);
        dagger__free(a);
        return NULL;
    }
    return a;
}

int dagger__da_new(dagger_ctx_t *ctx, const dagger__da_layout_t *l, dagger_darray_t **out)
{
    *out = NULL;
    dagger_darray_t *a = alloc_array(ctx, l);
    DAGGER_CHECK(a, DAGGER_ENOMEM, "darray: out of memory for the block table");
    int nthreads = dagger_ctx_num_threads(ctx), nranks = dagger_ctx_nranks(ctx);
    int me = dagger_ctx_rank(ctx);
    bool over_ranks = l->over == DAGGER_DARRAY_RANKS;
    for (size_t b = 0; b < a->nblocks; b++) {
        int p = a->place[b] = place_of(l, a, b, over_ranks ? nranks : nthreads);
        if (p >= (over_ranks ? nranks : nthreads) || p < -1) {
            dagger_darray_release(a);
            if (over_ranks)
                return dagger__set_errmsg(DAGGER_ESCOPE,
                                          "darray block %zu: rank %d does not exist (the job has "
                                          "%d rank%s)",
                                          b, p, nranks, nranks == 1 ? "" : "s");
            return dagger__set_errmsg(DAGGER_ESCOPE,
                                      "darray block %zu: thread %d does not exist (the context "
                                      "has %d threads)",
                                      b, p, nthreads);
        }
        if (over_ranks && p >= 0 && p != me)
            a->ranks = true;
    }
    if (over_ranks && !a->ranks) /* every block here: free to move between its threads */
        for (size_t b = 0; b < a->nblocks; b++)
            a->place[b] = -1;
    for (size_t b = 0; a->ranks && b < a->nblocks; b++)
        if (a->place[b] < 0)
            a->place[b] = me;
    *out = a;
    return 0;
}

static int build(dagger_ctx_t *ctx, const dagger__da_layout_t *l, dagger__da_fill_fn fill,
                 dagger__da_block_fn body, void *ud, const char *name, dagger_darray_t **out)
{
    dagger_darray_t *a;
    int rc = dagger__da_new(ctx, l, &a);
    if (rc)
        return rc;
    if (a->ranks) {
        if (fill == dagger__da_ctor_fill) {
            rc = dagger__da_build_ranks(a, ud, NULL, false);
        } else if (fill == dist_fill) {
            const xfer_t *x = ud;
            rc = dagger__da_build_ranks(a, NULL, x->user, x->row_major);
        } else if (!fill && !body) {
            rc = dagger__da_build_ranks(a, NULL, NULL, false);
        } else {
            rc = dagger__set_errmsg(DAGGER_ENOSYS,
                                    "%s: the array would have blocks on other ranks, and this "
                                    "operation is not built over ranks yet (docs/darray.md, "
                                    "\"Across ranks\")",
                                    name);
        }
        if (rc) {
            dagger_darray_release(a);
            return rc;
        }
        *out = a;
        return 0;
    }
    build_job_t job = {a, fill, body, ud};
    dagger_task_t **ts = dagger__calloc(a->nblocks, sizeof *ts);
    if (!ts) {
        dagger_darray_release(a);
        return dagger__set_errmsg(DAGGER_ENOMEM, "darray: out of memory");
    }
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = name;
        dagger_scope_t *s = NULL;
        if (a->place[b] >= 0) {
            s = dagger_scope_thread(a->place[b]);
            o.scope = s;
            o.flags = DAGGER_TASK_MUTABLE_RESULT;
        } else {
            o.flags = DAGGER_TASK_CHUNK_RESULT;
        }
        dagger_value_t av[2] = {dagger_ptr(&job), dagger_i64((int64_t)b)};
        ts[b] = dagger_spawn_impl(ctx, &o, build_body, name, av, 2);
        dagger_scope_release(s);
    }
    int first = 0;
    char *msg = NULL;
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_chunk_t *c = NULL;
        int rc = ts[b] ? dagger_fetch_chunk(ts[b], &c) : DAGGER_ENOMEM;
        if (rc == 0) {
            a->blocks[b] = dagger_chunk_retain(c);
        } else if (!first) {
            first = rc;
            msg = dagger__strdup(ts[b] ? dagger_task_errmsg(ts[b]) : "out of memory");
        }
        dagger_task_release(ts[b]);
    }
    dagger__free(ts);
    if (first) {
        dagger_darray_release(a);
        dagger__set_errmsg_str(first, msg ? msg : dagger_strerror(first));
        dagger__free(msg);
        return first;
    }
    *out = a;
    return 0;
}

int dagger__da_build(dagger_ctx_t *ctx, const dagger__da_layout_t *l, dagger__da_fill_fn fill,
                     void *ud, dagger_darray_t **out)
{
    return build(ctx, l, fill, NULL, ud, "darray_block", out);
}

int dagger__da_build_with(dagger_ctx_t *ctx, const dagger__da_layout_t *l, dagger__da_block_fn body,
                          void *ud, const char *name, dagger_darray_t **out)
{
    return build(ctx, l, NULL, body, ud, name, out);
}

dagger_darray_t *dagger_darray_retain(dagger_darray_t *a)
{
    if (a)
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

void dagger_darray_release(dagger_darray_t *a)
{
    if (!a || atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t b = 0; b < a->nblocks; b++)
        dagger_chunk_release(a->blocks[b]);
    dagger__free(a->blocks);
    dagger__free(a->ptr);
    dagger__free(a->place);
    dagger__free(a);
}

/* ---------------------------------------------------------------- per-block driver */

typedef struct foreach_job {
    dagger_darray_t *a;
    dagger__da_block_fn body;
    void *ud;
} foreach_job_t;

static int foreach_body(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    foreach_job_t *j = dagger_arg_ptr(args, 0);
    return j->body(tc, j->a, (size_t)dagger_arg_i64(args, 1), j->ud);
}

int dagger__da_foreach(dagger_darray_t *a, dagger__da_block_fn body, void *ud, const char *name)
{
    int rc = dagger__da_check(a, name); /* its tasks read blocks through host pointers */
    if (rc)
        return rc;
    dagger_task_t **ts = dagger__calloc(a->nblocks ? a->nblocks : 1, sizeof *ts);
    DAGGER_CHECK(ts, DAGGER_ENOMEM, "darray %s: out of memory", name);
    foreach_job_t job = {a, body, ud};
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = name;
        dagger_scope_t *s = a->place[b] >= 0 ? dagger_scope_thread(a->place[b]) : NULL;
        if (s) /* NULL: the scheduler places it (the options' default scope) */
            o.scope = s;
        dagger_value_t av[2] = {dagger_ptr(&job), dagger_i64((int64_t)b)};
        ts[b] = dagger_spawn_impl(a->ctx, &o, foreach_body, name, av, 2);
        dagger_scope_release(s);
    }
    int first = 0;
    for (size_t b = 0; b < a->nblocks; b++) {
        int rc = ts[b] ? dagger_fetch(ts[b], NULL) : DAGGER_ENOMEM;
        if (rc && !first) {
            first = rc;
            if (ts[b])
                dagger__set_errmsg_str(rc, dagger_task_errmsg(ts[b]));
            else
                dagger__set_errmsg(rc, "darray %s: out of memory", name);
        }
        dagger_task_release(ts[b]);
    }
    dagger__free(ts);
    return first;
}

/* ---------------------------------------------------------------- accessors */

dagger_elt_t dagger_darray_elt(const dagger_darray_t *a) { return a ? a->elt : DAGGER_ELT_RAW; }
int dagger_darray_ndims(const dagger_darray_t *a) { return a ? a->nd : 0; }
size_t dagger_darray_length(const dagger_darray_t *a) { return a ? a->len : 0; }
size_t dagger_darray_nblocks(const dagger_darray_t *a) { return a ? a->nblocks : 0; }

static dagger_dims_t dims_of(const dagger_darray_t *a, const size_t *v)
{
    dagger_dims_t d = {0, {0}};
    if (!a)
        return d;
    d.n = a->nd;
    for (int i = 0; i < a->nd; i++)
        d.d[i] = v[i];
    return d;
}

dagger_dims_t dagger_darray_dims(const dagger_darray_t *a) { return dims_of(a, a ? a->dims : 0); }
dagger_dims_t dagger_darray_block_dims(const dagger_darray_t *a)
{
    return dims_of(a, a ? a->bs : 0);
}
dagger_dims_t dagger_darray_grid(const dagger_darray_t *a) { return dims_of(a, a ? a->grid : 0); }

dagger_chunk_t *dagger_darray_block(const dagger_darray_t *a, size_t b)
{
    return a && b < a->nblocks ? a->blocks[b] : NULL;
}

int dagger_darray_block_place(const dagger_darray_t *a, size_t b)
{
    return a && b < a->nblocks ? a->place[b] : -1;
}

/* ---------------------------------------------------------------- constructors */

/* Store double `v` as element k of type `elt` at p. */
static void put(void *p, size_t k, dagger_elt_t elt, double v)
{
    switch (elt) {
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

/* The global column-major index of element k of a block (an odometer over the block box). */
typedef struct odo {
    size_t i[DA_MAXD];
    size_t gidx;
    size_t stride[DA_MAXD]; /* global strides */
} odo_t;

static void odo_init(odo_t *o, const dagger_darray_blockinfo_t *bi, const size_t *dims)
{
    size_t s = 1;
    o->gidx = 0;
    for (int d = 0; d < DA_MAXD; d++) {
        o->i[d] = 0;
        o->stride[d] = s;
        o->gidx += bi->origin[d] * s;
        s *= dims[d];
    }
}

static void odo_next(odo_t *o, const dagger_darray_blockinfo_t *bi)
{
    for (int d = 0; d < DA_MAXD; d++) {
        o->gidx += o->stride[d];
        if (++o->i[d] < bi->shape[d])
            return;
        o->gidx -= o->stride[d] * o->i[d];
        o->i[d] = 0;
    }
}

static uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* The counter-based generator: 64 random bits for (seed, k, stream). */
static uint64_t rng(uint64_t seed, uint64_t k, uint64_t stream)
{
    uint64_t key = fmix64(seed ^ 0x9E3779B97F4A7C15ull) + stream * 0xD1B54A32D192ED03ull;
    return fmix64(fmix64(k + key) ^ key);
}

static double unit(uint64_t h) { return (double)(h >> 11) * 0x1p-53; }

int dagger__da_ctor_fill(void *dst, const dagger_darray_blockinfo_t *bi, void *ud)
{
    const dagger__da_ctor_t *c = ud;
    if (c->kind == 0) {
        if (c->v == 0)
            return 0;
        for (size_t k = 0; k < bi->count; k++)
            put(dst, k, bi->elt, c->v);
        return 0;
    }
    odo_t o;
    odo_init(&o, bi, c->dims);
    for (size_t k = 0; k < bi->count; k++, odo_next(&o, bi)) {
        uint64_t h = rng(c->seed, o.gidx, 0);
        if (c->kind == 2) {
            double u1 = ((double)(h >> 11) + 1.0) * 0x1p-53; /* (0, 1] */
            double u2 = unit(rng(c->seed, o.gidx, 1));
            put(dst, k, bi->elt, sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
            continue;
        }
        switch (bi->elt) {
        case DAGGER_ELT_F64:
            ((double *)dst)[k] = unit(h);
            break;
        case DAGGER_ELT_F32:
            ((float *)dst)[k] = (float)(h >> 40) * 0x1p-24f;
            break;
        case DAGGER_ELT_I64:
            ((int64_t *)dst)[k] = (int64_t)h;
            break;
        default:
            ((int32_t *)dst)[k] = (int32_t)(uint32_t)(h >> 32);
            break;
        }
    }
    return 0;
}

static int construct(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks, dagger_dims_t dims,
                     const dagger_darray_opts_t *opts, dagger__da_ctor_t *c, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "darray: out is NULL");
    *out = NULL;
    dagger__da_layout_t l;
    int rc = dagger__da_layout(ctx, elt, blocks, dims, opts, &l);
    if (rc)
        return rc;
    DAGGER_CHECK(c->kind != 2 || elt == DAGGER_ELT_F64 || elt == DAGGER_ELT_F32, DAGGER_EINVAL,
                 "darray randn: normal values need f64 or f32, not %s", elt_name(elt));
    memcpy(c->dims, l.dims, sizeof c->dims);
    return dagger__da_build(ctx, &l, c->kind == 0 && c->v == 0 ? NULL : dagger__da_ctor_fill, c,
                            out);
}

int dagger_darray_zeros(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks,
                        dagger_dims_t dims, const dagger_darray_opts_t *opts, dagger_darray_t **out)
{
    dagger__da_ctor_t c = {0, 0.0, 0, {0}};
    return construct(ctx, elt, blocks, dims, opts, &c, out);
}

int dagger_darray_ones(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks,
                       dagger_dims_t dims, const dagger_darray_opts_t *opts, dagger_darray_t **out)
{
    dagger__da_ctor_t c = {0, 1.0, 0, {0}};
    return construct(ctx, elt, blocks, dims, opts, &c, out);
}

int dagger_darray_fill(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks,
                       dagger_dims_t dims, double v, const dagger_darray_opts_t *opts,
                       dagger_darray_t **out)
{
    dagger__da_ctor_t c = {0, v, 0, {0}};
    return construct(ctx, elt, blocks, dims, opts, &c, out);
}

int dagger_darray_rand(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks,
                       dagger_dims_t dims, uint64_t seed, const dagger_darray_opts_t *opts,
                       dagger_darray_t **out)
{
    dagger__da_ctor_t c = {1, 0.0, seed, {0}};
    return construct(ctx, elt, blocks, dims, opts, &c, out);
}

int dagger_darray_randn(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks,
                        dagger_dims_t dims, uint64_t seed, const dagger_darray_opts_t *opts,
                        dagger_darray_t **out)
{
    dagger__da_ctor_t c = {2, 0.0, seed, {0}};
    return construct(ctx, elt, blocks, dims, opts, &c, out);
}

/* ---------------------------------------------------------------- distribute and collect */

/* Copy block b between its chunk and the user buffer. Column-major copies move contiguous runs
 * along dimension 0; row-major ones go element by element through the global strides. */
void dagger__da_xfer_block(const dagger_darray_t *a, size_t b, char *user, bool row_major, bool in,
                           char *blk)
{
    dagger_darray_blockinfo_t bi;
    dagger__da_info(a, b, &bi);
    size_t esz = a->esz, gs[DA_MAXD], s = 1;
    if (row_major) {
        for (int d = a->nd - 1; d >= 0; d--) {
            gs[d] = s;
            s *= a->dims[d];
        }
        for (int d = a->nd; d < DA_MAXD; d++)
            gs[d] = 0;
    } else {
        for (int d = 0; d < DA_MAXD; d++) {
            gs[d] = s;
            s *= a->dims[d];
        }
    }
    size_t run = row_major ? 1 : bi.shape[0];
    size_t nrun = bi.count / (run ? run : 1);
    size_t i[DA_MAXD] = {0, 0, 0, 0};
    for (size_t r = 0; r < nrun && run; r++) {
        size_t g = 0;
        for (int d = 0; d < DA_MAXD; d++)
            g += (bi.origin[d] + i[d]) * gs[d];
        char *u = user + g * esz, *k = blk + r * run * esz;
        if (in)
            memcpy(k, u, run * esz);
        else
            memcpy(u, k, run * esz);
        for (int d = row_major ? 0 : 1; d < DA_MAXD; d++) {
            if (++i[d] < bi.shape[d])
                break;
            i[d] = 0;
        }
    }
}

static int dist_fill(void *dst, const dagger_darray_blockinfo_t *bi, void *ud)
{
    xfer_t *x = ud;
    dagger__da_xfer_block(x->a, bi->index, x->user, x->row_major, x->in, dst);
    return 0;
}

int dagger_darray_distribute(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks,
                             dagger_dims_t dims, const void *src, const dagger_darray_opts_t *opts,
                             dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_distribute: out is NULL");
    *out = NULL;
    dagger__da_layout_t l;
    int rc = dagger__da_layout(ctx, elt, blocks, dims, opts, &l);
    if (rc)
        return rc;
    size_t len = l.dims[0] * l.dims[1] * l.dims[2] * l.dims[3];
    DAGGER_CHECK(src || len == 0, DAGGER_EINVAL, "dagger_darray_distribute: src is NULL");
    /* The build job needs the array it fills; a shell with the same geometry gives it. */
    dagger_darray_t shell;
    memset(&shell, 0, sizeof shell);
    shell.elt = elt;
    shell.esz = dagger_elt_size(elt);
    shell.nd = l.nd;
    for (int d = 0; d < DA_MAXD; d++) {
        shell.dims[d] = l.dims[d];
        shell.bs[d] = l.bs[d];
        shell.grid[d] = l.dims[d] ? (l.dims[d] + l.bs[d] - 1) / l.bs[d] : 1;
    }
    xfer_t x = {&shell, shell.dims, (char *)src, opts && (opts->flags & DAGGER_DARRAY_ROW_MAJOR),
                true};
    return dagger__da_build(ctx, &l, dist_fill, &x, out);
}

static int collect_body(dagger_tc_t *tc, dagger_darray_t *a, size_t b, void *ud)
{
    xfer_t *x = ud;
    dagger__da_xfer_block(x->a, b, x->user, x->row_major, x->in, x->a->ptr[b]);
    return 0;
}

int dagger_darray_collect(dagger_darray_t *a, void *dst, size_t cap, unsigned flags)
{
    int rc = dagger__da_check_any(a, "dagger_darray_collect");
    if (rc)
        return rc;
    DAGGER_CHECK(!(flags & ~(unsigned)DAGGER_DARRAY_ROW_MAJOR), DAGGER_EINVAL,
                 "dagger_darray_collect: unknown flags 0x%x", flags);
    DAGGER_CHECK(dst || a->len == 0, DAGGER_EINVAL, "dagger_darray_collect: dst is NULL");
    char shape[96];
    DAGGER_CHECK(cap >= a->len * a->esz, DAGGER_ERANGE,
                 "dagger_darray_collect: the %s array needs %zu bytes, the buffer has %zu",
                 dagger__da_shape_str(a, shape, sizeof shape), a->len * a->esz, cap);
    if (a->ranks)
        return dagger__da_collect_ranks(a, dst, (flags & DAGGER_DARRAY_ROW_MAJOR) != 0);
    xfer_t x = {a, a->dims, dst, (flags & DAGGER_DARRAY_ROW_MAJOR) != 0, false};
    return dagger__da_foreach(a, collect_body, &x, "darray_collect");
}

/* ---------------------------------------------------------------- gather (copyto, getindex) */

void dagger__da_gather(const dagger_darray_t *dst, size_t b, const dagger_darray_t *src,
                       const size_t *off)
{
    size_t dorg[DA_MAXD], dshp[DA_MAXD];
    dagger__da_block_box(dst, b, dorg, dshp);
    if (!dshp[0] || !dshp[1] || !dshp[2] || !dshp[3])
        return;
    /* The source box and the range of source blocks it meets. */
    size_t lo[DA_MAXD], hi[DA_MAXD], g0[DA_MAXD], g1[DA_MAXD];
    for (int d = 0; d < DA_MAXD; d++) {
        lo[d] = dorg[d] + off[d];
        hi[d] = lo[d] + dshp[d];
        g0[d] = lo[d] / src->bs[d];
        g1[d] = (hi[d] - 1) / src->bs[d];
    }
    size_t esz = dst->esz;
    char *out = dst->ptr[b];
    size_t g[DA_MAXD];
    for (g[3] = g0[3]; g[3] <= g1[3]; g[3]++)
        for (g[2] = g0[2]; g[2] <= g1[2]; g[2]++)
            for (g[1] = g0[1]; g[1] <= g1[1]; g[1]++)
                for (g[0] = g0[0]; g[0] <= g1[0]; g[0]++) {
                    size_t sb =
                        g[0] + src->grid[0] * (g[1] + src->grid[1] * (g[2] + src->grid[2] * g[3]));
                    size_t sorg[DA_MAXD], sshp[DA_MAXD], a0[DA_MAXD], a1[DA_MAXD];
                    dagger__da_block_box(src, sb, sorg, sshp);
                    for (int d = 0; d < DA_MAXD; d++) {
                        a0[d] = lo[d] > sorg[d] ? lo[d] : sorg[d];
                        a1[d] = hi[d] < sorg[d] + sshp[d] ? hi[d] : sorg[d] + sshp[d];
                    }
                    const char *in = src->ptr[sb];
                    size_t run = (a1[0] - a0[0]) * esz;
                    size_t i[DA_MAXD];
                    for (i[3] = a0[3]; i[3] < a1[3]; i[3]++)
                        for (i[2] = a0[2]; i[2] < a1[2]; i[2]++)
                            for (i[1] = a0[1]; i[1] < a1[1]; i[1]++) {
                                size_t so =
                                    (a0[0] - sorg[0]) +
                                    sshp[0] *
                                        ((i[1] - sorg[1]) +
                                         sshp[1] * ((i[2] - sorg[2]) + sshp[2] * (i[3] - sorg[3])));
                                size_t dof =
                                    (a0[0] - lo[0]) +
                                    dshp[0] *
                                        ((i[1] - lo[1]) +
                                         dshp[1] * ((i[2] - lo[2]) + dshp[2] * (i[3] - lo[3])));
                                memcpy(out + dof * esz, in + so * esz, run);
                            }
                }
}
