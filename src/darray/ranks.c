/* src/darray/ranks.c - DArrays whose blocks live on several ranks: building the blocks where
 * they live, map, and collecting them.
 *
 * Design: nothing here passes a host pointer or a job record to a task that may run on another
 * rank. Block b of rank r is mutable data made there: dagger_mutable(worker(r)) runs `make` on
 * r with plain values (the block's geometry as a blob, the constructor's parameters as a blob,
 * or the block's bytes cut out of the user buffer here), so it never moves and every task that
 * takes it runs on r. The dagger_mutable calls are made from one local task per block, so the
 * blocks of every rank are made at the same time (dagger_mutable suspends its task, not the
 * thread). collect spawns one task per block that takes the block (it runs where the block
 * lives) and returns a copy of its bytes; this rank cuts them into the user buffer. The
 * remote bodies rebuild the block geometry from the blob (a shell array: no blocks, no
 * pointers), so the geometry code of darray.c is shared. map's element or block function
 * travels as a task function does (build id of its module and offset, src/net/fnid.c) and is
 * called on the block's rank; its `ud` must be NULL there.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "darray/darray_int.h"
#include "net/net.h"

/* The geometry of one block: what a remote body needs to know about the array. */
typedef struct geo {
    int32_t elt, nd;
    uint64_t b;
    uint64_t dims[DA_MAXD], bs[DA_MAXD];
} geo_t;

enum { MAKE_ZEROS, MAKE_CTOR, MAKE_BYTES, MAKE_MAP };

/* map's function, as it travels: an element function (block 0), a block function (1), or none
 * (2: a copy, for dagger_darray_copy). */
typedef struct fnblob {
    struct dagger__fn_ref ref;
    int32_t block;
} fnblob_t;

/* Run map's function on one block (the input's geometry in `in_sh`); 0 or the task failed. */
static int apply(dagger_tc_t *tc, const void *fbp, size_t fblen, const dagger_darray_t *in_sh,
                 size_t b, const char *in, char *out, size_t osz)
{
    fnblob_t fb;
    char why[256];
    dagger_fn_t fn = NULL;
    if (fblen != sizeof fb)
        return dagger_fail(tc, DAGGER_EINVAL, "darray map: a malformed function reference");
    memcpy(&fb, fbp, sizeof fb);
    if (fb.block == 2) {
        memcpy(out, in, dagger__da_block_count(in_sh, b) * in_sh->esz);
        return 0;
    }
    int rc = dagger__fn_resolve(&fb.ref, &fn, why, sizeof why);
    if (rc)
        return dagger_fail(tc, rc, "darray map: %s", why);
    dagger_darray_blockinfo_t bi;
    dagger__da_info(in_sh, b, &bi);
    if (fb.block) {
        dagger_darray_blockfn_t bf = (dagger_darray_blockfn_t)(void (*)(void))fn;
        rc = bf(out, in, &bi, NULL);
        return rc ? dagger_fail(tc, rc,
                                "darray map: the block function failed on block %zu "
                                "with %s",
                                b, dagger_err_name(rc))
                  : 0;
    }
    dagger_darray_elemfn_t ef = (dagger_darray_elemfn_t)(void (*)(void))fn;
    for (size_t k = 0; k < bi.count; k++)
        ef(out + k * osz, in + k * in_sh->esz, NULL);
    return 0;
}

static void geo_of(const dagger_darray_t *a, size_t b, geo_t *g)
{
    memset(g, 0, sizeof *g);
    g->elt = (int32_t)a->elt;
    g->nd = a->nd;
    g->b = b;
    for (int d = 0; d < DA_MAXD; d++) {
        g->dims[d] = a->dims[d];
        g->bs[d] = a->bs[d];
    }
}

/* A shell array with the geometry of `g` (no blocks): enough for dagger__da_info. */
static int shell_of(const geo_t *g, dagger_darray_t *sh)
{
    memset(sh, 0, sizeof *sh);
    sh->elt = (dagger_elt_t)g->elt;
    sh->esz = dagger_elt_size(sh->elt);
    sh->nd = g->nd;
    sh->nblocks = 1;
    for (int d = 0; d < DA_MAXD; d++) {
        sh->dims[d] = (size_t)g->dims[d];
        sh->bs[d] = (size_t)g->bs[d];
        if (!sh->bs[d])
            return DAGGER_EINVAL;
        sh->grid[d] = sh->dims[d] ? (sh->dims[d] + sh->bs[d] - 1) / sh->bs[d] : 1;
        sh->nblocks *= sh->grid[d];
    }
    return sh->esz && g->b < sh->nblocks ? 0 : DAGGER_EINVAL;
}

/* dagger_mutable's constructor, on the block's rank: (geometry blob, MAKE_*, payload blob). */
static int make(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    size_t n = 0, plen = 0;
    const geo_t *g = dagger_arg_blob(args, 0, &n);
    dagger_darray_t sh;
    if (!g || n != sizeof *g || shell_of(g, &sh))
        return dagger_fail(tc, DAGGER_EINVAL, "darray block: a malformed block geometry");
    int mode = (int)dagger_arg_i64(args, 1);
    const void *pay = mode == MAKE_ZEROS ? NULL : dagger_arg_blob(args, 2, &plen);
    const char *in = NULL;
    dagger_darray_t in_sh = sh;
    if (mode == MAKE_MAP) { /* map: argument 3 is the input block, 4 its element type */
        size_t ilen = 0;
        in = dagger_arg_buf(args, 3, &ilen);
        in_sh.elt = (dagger_elt_t)dagger_arg_i64(args, 4);
        in_sh.esz = dagger_elt_size(in_sh.elt);
        if ((!in && ilen) || !in_sh.esz ||
            ilen != dagger__da_block_count(&in_sh, (size_t)g->b) * in_sh.esz)
            return dagger_fail(tc, DAGGER_EINVAL, "darray map block %llu: a malformed input",
                               (unsigned long long)g->b);
    }
    size_t b = (size_t)g->b;
    dagger_darray_blockinfo_t bi;
    dagger__da_info(&sh, b, &bi);
    if (mode == MAKE_CTOR && plen != sizeof(dagger__da_ctor_t))
        return dagger_fail(tc, DAGGER_EINVAL, "darray block %zu: a malformed constructor", b);
    if (mode == MAKE_BYTES && plen != bi.count * sh.esz)
        return dagger_fail(tc, DAGGER_EINVAL,
                           "darray block %zu: %zu bytes received for a block of %zu", b, plen,
                           bi.count * sh.esz);
    dagger_chunk_t *c;
    int rc =
        dagger__da_new_block(dagger_tc_ctx(tc), &sh, bi.shape, bi.count, mode == MAKE_ZEROS, &c);
    if (rc)
        return dagger_fail(tc, rc, "darray block %zu: %s", b, dagger_last_errmsg());
    void *dst = dagger_chunk_data(c);
    if (bi.count && mode == MAKE_CTOR) {
        dagger__da_ctor_t ct;
        memcpy(&ct, pay, sizeof ct); /* the blob need not be aligned */
        if ((rc = dagger__da_ctor_fill(dst, &bi, &ct))) {
            dagger_chunk_release(c);
            return dagger_fail(tc, rc, "darray block %zu: %s", b, dagger_last_errmsg());
        }
    } else if (bi.count && mode == MAKE_BYTES) {
        memcpy(dst, pay, plen);
    } else if (bi.count && mode == MAKE_MAP &&
               (rc = apply(tc, pay, plen, &in_sh, b, in, dst, sh.esz))) {
        dagger_chunk_release(c);
        return rc;
    }
    *out = dagger_chunk_give(tc, c);
    return 0;
}

typedef struct build_job {
    dagger_darray_t *a;
    const dagger__da_ctor_t *ctor;
    const char *src;
    bool row_major;
    const dagger_darray_t *in; /* map: the input array, and its function */
    const fnblob_t *fn;
} build_job_t;

/* A local task: make block b on its rank (suspends in dagger_mutable until it is made). */
static int place_block(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    build_job_t *j = dagger_arg_ptr(args, 0);
    dagger_darray_t *a = j->a;
    size_t b = (size_t)dagger_arg_i64(args, 1);
    geo_t g;
    geo_of(a, b, &g);
    int mode = j->fn ? MAKE_MAP : j->ctor ? MAKE_CTOR : j->src ? MAKE_BYTES : MAKE_ZEROS;
    char *bytes = NULL;
    dagger_value_t av[5] = {dagger_blob_borrow(&g, sizeof g), dagger_i64(mode), dagger_nil(),
                            dagger_nil(), dagger_nil()};
    size_t argc = 3;
    if (mode == MAKE_MAP) {
        av[2] = dagger_blob_borrow(j->fn, sizeof *j->fn);
        av[3] = dagger_chunkv(j->in->blocks[b]);
        av[4] = dagger_i64(j->in->elt);
        argc = 5;
    } else if (mode == MAKE_CTOR) {
        av[2] = dagger_blob_borrow(j->ctor, sizeof *j->ctor);
    } else if (mode == MAKE_BYTES) {
        size_t n = dagger__da_block_count(a, b) * a->esz;
        bytes = dagger__malloc(n ? n : 1);
        if (!bytes)
            return dagger_fail(tc, DAGGER_ENOMEM, "darray block %zu: out of memory (%zu bytes)", b,
                               n);
        dagger__da_xfer_block(a, b, (char *)j->src, j->row_major, true, bytes);
        av[2] = dagger_blob_borrow(bytes, n);
    }
    dagger_scope_t *w = dagger_scope_worker(a->place[b]);
    dagger_chunk_t *c = NULL;
    int rc = w ? dagger_mutable(dagger_tc_ctx(tc), w, make, av, argc, &c) : DAGGER_ENOMEM;
    dagger_scope_release(w);
    dagger__free(bytes);
    if (rc)
        return dagger_fail(tc, rc, "darray block %zu on rank %d: %s", b, a->place[b],
                           dagger_last_errmsg());
    a->blocks[b] = c; /* each task owns its slot; the builder reads it after the wait */
    return 0;
}

/* Spawn fn(job, b) for every block here, wait for all; the first error with its message. */
static int each_block(dagger_darray_t *a, dagger_fn_t fn, void *job, const char *name)
{
    dagger_task_t **ts = dagger__calloc(a->nblocks ? a->nblocks : 1, sizeof *ts);
    DAGGER_CHECK(ts, DAGGER_ENOMEM, "darray %s: out of memory", name);
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = name;
        dagger_value_t av[2] = {dagger_ptr(job), dagger_i64((int64_t)b)};
        ts[b] = dagger_spawn_impl(a->ctx, &o, fn, name, av, 2);
    }
    int first = 0;
    for (size_t b = 0; b < a->nblocks; b++) {
        int rc = ts[b] ? dagger_fetch(ts[b], NULL) : DAGGER_ENOMEM;
        if (rc && !first)
            first = ts[b] ? dagger__set_errmsg_str(rc, dagger_task_errmsg(ts[b]))
                          : dagger__set_errmsg(rc, "darray %s: out of memory", name);
        dagger_task_release(ts[b]);
    }
    dagger__free(ts);
    return first;
}

int dagger__da_build_ranks(dagger_darray_t *a, const dagger__da_ctor_t *ctor, const void *src,
                           bool row_major)
{
    build_job_t j = {a, ctor, src, row_major, NULL, NULL};
    return each_block(a, place_block, &j, "darray_block");
}

/* ---------------------------------------------------------------- map */

/* On the block's rank: map_inplace of one block (the block, its geometry, the function). */
static int map_here(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    size_t n = 0, glen = 0, fblen = 0;
    char *p = dagger_arg_buf(args, 0, &n);
    const geo_t *g = dagger_arg_blob(args, 1, &glen);
    const void *fb = dagger_arg_blob(args, 2, &fblen);
    dagger_darray_t sh;
    if ((!p && n) || !g || glen != sizeof *g || shell_of(g, &sh) ||
        n != dagger__da_block_count(&sh, (size_t)g->b) * sh.esz)
        return dagger_fail(tc, DAGGER_EINVAL, "darray map_inplace: a malformed block");
    return n ? apply(tc, fb, fblen, &sh, (size_t)g->b, p, p, sh.esz) : 0;
}

int dagger__da_map_ranks(dagger_darray_t *src, dagger_darray_t *dst, dagger_darray_elemfn_t ef,
                         dagger_darray_blockfn_t bf, void *ud, const char *what)
{
    DAGGER_CHECK(!ud, DAGGER_ENOSYS,
                 "%s: the array has blocks on other ranks, and ud (a pointer) cannot travel "
                 "there: pass NULL (docs/darray.md, \"Across ranks\")",
                 what);
    fnblob_t fb;
    memset(&fb, 0, sizeof fb);
    fb.block = bf ? 1 : ef ? 0 : 2;
    char why[256];
    dagger_fn_t fn = bf ? (dagger_fn_t)(void (*)(void))bf : (dagger_fn_t)(void (*)(void))ef;
    int rc = fn ? dagger__fn_ref(fn, &fb.ref, why, sizeof why) : 0;
    if (rc)
        return dagger__set_errmsg(rc, "%s: %s", what, why);
    if (dst) {
        build_job_t j = {dst, NULL, NULL, false, src, &fb};
        return each_block(dst, place_block, &j, "darray_map");
    }
    dagger_task_t **ts = dagger__calloc(src->nblocks ? src->nblocks : 1, sizeof *ts);
    DAGGER_CHECK(ts, DAGGER_ENOMEM, "%s: out of memory", what);
    for (size_t b = 0; b < src->nblocks; b++) {
        geo_t g;
        geo_of(src, b, &g);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = "darray_map_inplace";
        dagger_value_t av[3] = {dagger_chunkv(src->blocks[b]), dagger_blob(&g, sizeof g),
                                dagger_blob(&fb, sizeof fb)};
        ts[b] = dagger_spawn_impl(src->ctx, &o, map_here, o.name, av, 3);
    }
    for (size_t b = 0; b < src->nblocks; b++) {
        int e = ts[b] ? dagger_fetch(ts[b], NULL) : DAGGER_ENOMEM;
        if (e && !rc)
            rc = ts[b] ? dagger__set_errmsg_str(e, dagger_task_errmsg(ts[b]))
                       : dagger__set_errmsg(e, "%s: out of memory", what);
        dagger_task_release(ts[b]);
    }
    dagger__free(ts);
    return rc;
}

/* ---------------------------------------------------------------- collect */

/* On the block's rank: a copy of the block's bytes. */
static int read_block(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    size_t n = 0;
    void *p = dagger_arg_buf(args, 0, &n);
    if (!p && n)
        return DAGGER_ETYPE; /* dagger_arg_buf failed the task */
    *out = dagger_blob_copy(tc, p, n);
    return 0;
}

typedef struct collect_job {
    dagger_darray_t *a;
    char *dst;
    bool row_major;
} collect_job_t;

/* A local task: read block b where it lives, cut its bytes into the user buffer. */
static int collect_block(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    collect_job_t *j = dagger_arg_ptr(args, 0);
    dagger_darray_t *a = j->a;
    size_t b = (size_t)dagger_arg_i64(args, 1);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "darray_read_block";
    dagger_value_t av[1] = {dagger_chunkv(a->blocks[b])};
    dagger_task_t *t = dagger_spawn_impl(dagger_tc_ctx(tc), &o, read_block, o.name, av, 1);
    if (!t)
        return dagger_fail(tc, DAGGER_ENOMEM, "darray collect: out of memory");
    dagger_value_t v;
    int rc = dagger_fetch(t, &v);
    size_t want = dagger__da_block_count(a, b) * a->esz;
    if (rc)
        rc = dagger_fail(tc, rc, "darray block %zu on rank %d: %s", b, a->place[b],
                         dagger_task_errmsg(t));
    else if (v.kind != DAGGER_KIND_BLOB || v.len != want)
        rc = dagger_fail(tc, DAGGER_EIO,
                         "darray block %zu on rank %d: %u bytes came back for a block of %zu", b,
                         a->place[b], (unsigned)v.len, want);
    else if (want)
        dagger__da_xfer_block(a, b, j->dst, j->row_major, false, (char *)v.u.p);
    dagger_task_release(t);
    return rc;
}

/* dagger_mutable's constructor of dagger__da_chunk_on: a zeroed blob of argument 0 bytes. */
static int make_zeros(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    size_t n = (size_t)dagger_arg_i64(args, 0);
    void *z = dagger__calloc(n ? n : 1, 1);
    if (!z)
        return dagger_fail(tc, DAGGER_ENOMEM, "darray: out of memory (%zu bytes)", n);
    *out = dagger_blob_copy(tc, z, n);
    dagger__free(z);
    return 0;
}

int dagger__da_chunk_on(dagger_ctx_t *ctx, int rank, size_t size, dagger_chunk_t **out)
{
    dagger_scope_t *w = dagger_scope_worker(rank);
    DAGGER_CHECK(w, DAGGER_ENOMEM, "darray: out of memory");
    dagger_value_t av[1] = {dagger_i64((int64_t)size)};
    int rc = dagger_mutable(ctx, w, make_zeros, av, 1, out);
    dagger_scope_release(w);
    return rc;
}

int dagger__da_chunk_get(dagger_ctx_t *ctx, dagger_chunk_t *c, void *dst, size_t len)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "darray_read_chunk";
    dagger_value_t av[1] = {dagger_chunkv(c)};
    dagger_task_t *t = dagger_spawn_impl(ctx, &o, read_block, o.name, av, 1);
    DAGGER_CHECK(t, DAGGER_ENOMEM, "darray: out of memory");
    dagger_value_t v;
    int rc = dagger_fetch(t, &v);
    if (rc)
        rc = dagger__set_errmsg_str(rc, dagger_task_errmsg(t));
    else if (v.kind != DAGGER_KIND_BLOB || v.len != len)
        rc = dagger__set_errmsg(DAGGER_EIO, "darray: %u bytes came back for a chunk of %zu",
                                (unsigned)v.len, len);
    else if (len)
        memcpy(dst, v.u.p, len);
    dagger_task_release(t);
    return rc;
}

int dagger__da_collect_ranks(dagger_darray_t *a, void *dst, bool row_major)
{
    collect_job_t j = {a, dst, row_major};
    return each_block(a, collect_block, &j, "darray_collect");
}
