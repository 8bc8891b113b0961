/* src/darray/darray_int.h - distributed-array internals: the array record, block geometry and
 * the "one task per block, then wait" driver shared by every operation.
 *
 * Design: a DArray is immutable in shape once built: dims, block sizes, the grid, one chunk and
 * one place per block. Operations spawn tasks whose arguments are a job record and a block
 * number; a task that writes a pinned block runs on its thread (scope), so inputs are read
 * through host pointers, never as chunk arguments (two pinned inputs on different threads
 * would make the task unplaceable). The driver waits for its tasks before returning, which
 * keeps the job record and the pointers alive while tasks run.
 * Across ranks (`ranks` set: DAGGER_DARRAY_RANKS in a job where some block lives on another rank
 * than the caller's) nothing goes through host pointers or job records: each block is mutable
 * data made on its rank (dagger_mutable), the operations built for it (constructors,
 * distribute, collect, map, copy, reduce, matmul, Cholesky, LU, solve; src/darray/ranks.c) pass
 * blocks as chunk arguments and plain values, and every other operation refuses such an array
 * (dagger__da_check_local). Invariants: blocks[b] is a typed chunk of elt with the ragged shape of
 * block b; place[b] is a thread index (the chunk is then mutable data of that thread) or -1; with
 * `ranks`, place[b] is the rank of block b and ptr[b] is NULL. SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_DARRAY_INT_H
#define DAGGER_SRC_DARRAY_INT_H

#include <stdatomic.h>

#include "dagger.h"
#include "dagger/chunk.h"
#include "dagger/darray.h"

#define DA_MAXD DAGGER_CHUNK_MAX_DIMS

struct dagger_darray {
    _Atomic uint32_t refs;
    dagger_ctx_t *ctx;
    dagger_elt_t elt;
    size_t esz;
    int nd;
    size_t dims[DA_MAXD], bs[DA_MAXD], grid[DA_MAXD]; /* unused dims are 1 */
    size_t nblocks, len;
    dagger_dist_t dist;
    int over;
    dagger_chunk_t **blocks; /* +1 each */
    void **ptr;              /* host pointer of each block (its home copy) */
    int *place;              /* thread of each block, -1 = anywhere; with `ranks`, its rank */
    bool ranks;              /* blocks on ranks: see the design note above */
};

/* Block geometry: grid coordinates, origin and ragged shape of block b. */
void dagger__da_block_coords(const dagger_darray_t *a, size_t b, size_t *g);
void dagger__da_block_box(const dagger_darray_t *a, size_t b, size_t *origin, size_t *shape);
size_t dagger__da_block_count(const dagger_darray_t *a, size_t b);
/* "3x4" into buf. */
const char *dagger__da_shape_str(const dagger_darray_t *a, char *buf, size_t cap);

/* A layout to build an array from: everything but the blocks. */
typedef struct dagger__da_layout {
    dagger_elt_t elt;
    int nd;
    size_t dims[DA_MAXD], bs[DA_MAXD];
    dagger_dist_t dist;
    int over;
    const int *places; /* explicit places, or per-block places to copy when `copy_places` */
    size_t nplaces;
    bool copy_places;
} dagger__da_layout_t;

/* Fill a layout from user dims/blocks/opts (automatic blocks resolved); message set on error. */
int dagger__da_layout(dagger_ctx_t *ctx, dagger_elt_t elt, dagger_dims_t blocks, dagger_dims_t dims,
                      const dagger_darray_opts_t *opts, dagger__da_layout_t *l);
/* The layout of `a` with another element type (places copied block by block). */
void dagger__da_layout_like(const dagger_darray_t *a, dagger_elt_t elt, dagger__da_layout_t *l);

/* Filling a new block: fill(dst, info, ud); it must write every element. */
typedef int (*dagger__da_fill_fn)(void *dst, const dagger_darray_blockinfo_t *bi, void *ud);
/* A task's work on block b of `a` (its pointer a->ptr[b] is set). Returns 0 or an error code
 * with dagger_fail called. */
typedef int (*dagger__da_block_fn)(dagger_tc_t *tc, dagger_darray_t *a, size_t b, void *ud);
/* Build an array from a layout, each block made by a task where it lives, then written by
 * `fill` or `body` in that task (at most one; both NULL: zeros, else the block is not zeroed). */
int dagger__da_build(dagger_ctx_t *ctx, const dagger__da_layout_t *l, dagger__da_fill_fn fill,
                     void *ud, dagger_darray_t **out);
int dagger__da_build_with(dagger_ctx_t *ctx, const dagger__da_layout_t *l, dagger__da_block_fn body,
                          void *ud, const char *name, dagger_darray_t **out);

/* Run body for every block b of `a` (one task each, on the block's place), then wait.
 * Returns the first error. */
int dagger__da_foreach(dagger_darray_t *a, dagger__da_block_fn body, void *ud, const char *name);

void dagger__da_info(const dagger_darray_t *a, size_t b, dagger_darray_blockinfo_t *bi);

/* Copy the box of `dst`'s block b (shifted by off[] in src's index space) out of `src`. */
void dagger__da_gather(const dagger_darray_t *dst, size_t b, const dagger_darray_t *src,
                       const size_t *off);

/* Check helpers: set the message and return DAGGER_EINVAL. dagger__da_check also refuses an
 * array over ranks (DAGGER_ENOSYS: the operation reads blocks through host pointers);
 * dagger__da_check_any accepts it, for the operations built over ranks. */
int dagger__da_check(const dagger_darray_t *a, const char *what);
int dagger__da_check_any(const dagger_darray_t *a, const char *what);

/* ---------------------------------------------------------------- across ranks (ranks.c) */

/* What a constructor writes into a new block: plain data, so it travels to the block's rank. */
typedef struct dagger__da_ctor {
    int kind; /* 0 fill, 1 rand, 2 randn */
    double v;
    uint64_t seed;
    size_t dims[DA_MAXD];
} dagger__da_ctor_t;
int dagger__da_ctor_fill(void *dst, const dagger_darray_blockinfo_t *bi, void *ud);

/* A typed chunk for a block of `a`'s element type and `shape`: zeroed, or left as malloc gives
 * it when the caller writes every element. */
int dagger__da_new_block(dagger_ctx_t *ctx, const dagger_darray_t *a, const size_t *shape,
                         size_t count, bool zero, dagger_chunk_t **c);

/* Copy block b between `blk` and a whole user buffer `user` (column- or row-major). */
void dagger__da_xfer_block(const dagger_darray_t *a, size_t b, char *user, bool row_major, bool in,
                           char *blk);

/* A new array of layout `l` with its places set and no blocks yet (`ranks` set when some block
 * lives on another rank). Returns 0 or an error with its message (DAGGER_ESCOPE for a place
 * that does not exist). */
int dagger__da_new(dagger_ctx_t *ctx, const dagger__da_layout_t *l, dagger_darray_t **out);

/* Make every block of `a` (places set, `ranks` true) on its rank: zeros (ctor NULL, src NULL),
 * the constructor's values, or block b's part of the user buffer `src`. Waits; first error. */
int dagger__da_build_ranks(dagger_darray_t *a, const dagger__da_ctor_t *ctor, const void *src,
                           bool row_major);
/* map / map_inplace (dst NULL) over ranks: each block's function runs on the block's rank; the
 * functions travel by reference, `ud` must be NULL (a pointer cannot travel). With neither ef
 * nor bf, dst becomes a copy of src (same element type). */
int dagger__da_map_ranks(dagger_darray_t *src, dagger_darray_t *dst, dagger_darray_elemfn_t ef,
                         dagger_darray_blockfn_t bf, void *ud, const char *what);
/* A zeroed chunk of `size` bytes, mutable data of `rank`. */
int dagger__da_chunk_on(dagger_ctx_t *ctx, int rank, size_t size, dagger_chunk_t **out);
/* Copy the `len` bytes of chunk c (wherever it lives) into dst, by a task where it lives. */
int dagger__da_chunk_get(dagger_ctx_t *ctx, dagger_chunk_t *c, void *dst, size_t len);
/* collect over ranks: each block copied out by a task on its rank. */
int dagger__da_collect_ranks(dagger_darray_t *a, void *dst, bool row_major);

#endif /* DAGGER_SRC_DARRAY_INT_H */
