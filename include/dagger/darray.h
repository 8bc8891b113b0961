/* include/dagger/darray.h - distributed arrays: N-d arrays split into blocks, each a chunk.
 *
 * A DArray has up to 4 dimensions of f64, f32, i64 or i32, split into blocks (Dagger.jl's
 * Blocks); each block is a chunk placed by the scheduler or pinned to a thread (blockrow,
 * blockcol, cyclic, explicit). Constructors, collect, map/broadcast, reductions, copies,
 * permutedims, getindex, copyto, matmul, Cholesky, LU and solve run as tasks on the blocks and
 * return when their result is complete. Elements are stored column-major (like Julia and
 * Fortran), inside each block and in distribute/collect unless DAGGER_DARRAY_ROW_MAJOR is given.
 * docs/darray.md explains the model.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_DARRAY_H
#define DAGGER_DARRAY_H

#include "dagger.h"
#include "dagger/chunk.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dagger_darray dagger_darray_t;

/** A list of up to 4 extents: dimensions, or block sizes (n = 0: automatic blocks). */
typedef struct dagger_dims {
    int n;
    size_t d[DAGGER_CHUNK_MAX_DIMS];
} dagger_dims_t;

/** DAGGER_DIMS(100, 100): dimensions; DAGGER_BLOCKS(20, 20): Dagger.jl's Blocks(20, 20);
 *  DAGGER_AUTOBLOCKS: Dagger.jl's AutoBlocks() (about two blocks per thread). */
#define DAGGER_DIMS(...) ((dagger_dims_t){DAGGER_NARG(__VA_ARGS__), {__VA_ARGS__}})
#define DAGGER_BLOCKS(...) DAGGER_DIMS(__VA_ARGS__)
#define DAGGER_AUTOBLOCKS ((dagger_dims_t){0, {0}})

/** Where the blocks of an array live. */
typedef enum dagger_dist {
    DAGGER_DIST_ANY = 0,   /* the scheduler decides; blocks may move */
    DAGGER_DIST_BLOCKROW,  /* contiguous ranges of block rows per place */
    DAGGER_DIST_BLOCKCOL,  /* contiguous ranges of block columns per place */
    DAGGER_DIST_CYCLICROW, /* block row i on place i mod P */
    DAGGER_DIST_CYCLICCOL, /* block column j on place j mod P */
    DAGGER_DIST_EXPLICIT,  /* places[b mod nplaces] for block b (column-major over the grid) */
} dagger_dist_t;

/** What a place is: a worker thread of this process, or a rank of an MPI job (a block on another
 *  rank is mutable data there; docs/darray.md, "Across ranks", lists the operations built). */
enum { DAGGER_DARRAY_THREADS = 0, DAGGER_DARRAY_RANKS = 1 };

/** Flags of dagger_darray_opts_t and of dagger_darray_collect. */
enum {
    DAGGER_DARRAY_ROW_MAJOR = 1u << 0, /* the user buffer is row-major (C order) */
};

/** Construction options; initialise with dagger_darray_opts_init. Only ever grows at the end. */
typedef struct dagger_darray_opts {
    dagger_dist_t dist; /* DAGGER_DIST_ANY by default */
    int over;           /* DAGGER_DARRAY_THREADS (default) or DAGGER_DARRAY_RANKS */
    const int *places;  /* DAGGER_DIST_EXPLICIT: thread (or rank) of each block; borrowed */
    size_t nplaces;
    unsigned flags; /* DAGGER_DARRAY_ROW_MAJOR for dagger_darray_distribute */
} dagger_darray_opts_t;

/** Fill `o` with the defaults. Thread safety: any thread. */
DAGGER_API void dagger_darray_opts_init(dagger_darray_opts_t *o);

/* ---------------------------------------------------------------- construction */

/** Constructors: an array of `dims` split into `blocks` (ragged last blocks allowed), each block
 *  made by a task where it lives. fill converts `v` to the element type; rand gives uniform
 *  [0, 1) floats (full-range integers) and randn standard normal floats, from a counter-based
 *  generator keyed by (seed, element), so the values depend neither on the blocking nor on
 *  where or in which order blocks run. `opts` may be NULL.
 *  Returns: 0, DAGGER_EINVAL (bad type, dims or blocks; randn of integers), DAGGER_ESCOPE (a
 *  place that does not exist), DAGGER_ENOMEM; the message is in dagger_last_errmsg.
 *  Ownership: +1 on `*out` (dagger_darray_release). Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_zeros(dagger_ctx_t *ctx, dagger_elt_t elt,
                                                    dagger_dims_t blocks, dagger_dims_t dims,
                                                    const dagger_darray_opts_t *opts,
                                                    dagger_darray_t **out);
DAGGER_API DAGGER_NODISCARD int dagger_darray_ones(dagger_ctx_t *ctx, dagger_elt_t elt,
                                                   dagger_dims_t blocks, dagger_dims_t dims,
                                                   const dagger_darray_opts_t *opts,
                                                   dagger_darray_t **out);
DAGGER_API DAGGER_NODISCARD int dagger_darray_fill(dagger_ctx_t *ctx, dagger_elt_t elt,
                                                   dagger_dims_t blocks, dagger_dims_t dims,
                                                   double v, const dagger_darray_opts_t *opts,
                                                   dagger_darray_t **out);
DAGGER_API DAGGER_NODISCARD int dagger_darray_rand(dagger_ctx_t *ctx, dagger_elt_t elt,
                                                   dagger_dims_t blocks, dagger_dims_t dims,
                                                   uint64_t seed, const dagger_darray_opts_t *opts,
                                                   dagger_darray_t **out);
DAGGER_API DAGGER_NODISCARD int dagger_darray_randn(dagger_ctx_t *ctx, dagger_elt_t elt,
                                                    dagger_dims_t blocks, dagger_dims_t dims,
                                                    uint64_t seed, const dagger_darray_opts_t *opts,
                                                    dagger_darray_t **out);
/** Dagger.jl's distribute: copy the user array `src` (column-major unless opts->flags has
 *  DAGGER_DARRAY_ROW_MAJOR) into a new blocked array. Returns and ownership as the
 *  constructors; `src` is borrowed during the call. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_distribute(dagger_ctx_t *ctx, dagger_elt_t elt,
                                                         dagger_dims_t blocks, dagger_dims_t dims,
                                                         const void *src,
                                                         const dagger_darray_opts_t *opts,
                                                         dagger_darray_t **out);
/** Copy the whole array into `dst` (`cap` bytes; column-major, or row-major with the flag).
 *  Returns: 0, DAGGER_EINVAL (NULL, unknown flag), DAGGER_ERANGE (`cap` smaller than the array,
 *  both sizes in the message). Ownership: borrows `a` and `dst`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_collect(dagger_darray_t *a, void *dst, size_t cap,
                                                      unsigned flags);

/** Take another reference. Returns: `a`. Ownership: +1. Thread safety: any thread, lock-free. */
DAGGER_API dagger_darray_t *dagger_darray_retain(dagger_darray_t *a);
/** Drop a reference; the last one releases the blocks (NULL accepted).
 *  Ownership: consumes one reference. Thread safety: any thread. */
DAGGER_API void dagger_darray_release(dagger_darray_t *a);

/* ---------------------------------------------------------------- accessors */

/** Element type, number of dimensions, total elements, and extents: dims, block size, block
 *  grid (each writes `ndims` values into `out`, which holds DAGGER_CHUNK_MAX_DIMS).
 *  Ownership: none. Thread safety: any thread. */
DAGGER_API dagger_elt_t dagger_darray_elt(const dagger_darray_t *a);
DAGGER_API int dagger_darray_ndims(const dagger_darray_t *a);
DAGGER_API size_t dagger_darray_length(const dagger_darray_t *a);
DAGGER_API dagger_dims_t dagger_darray_dims(const dagger_darray_t *a);
DAGGER_API dagger_dims_t dagger_darray_block_dims(const dagger_darray_t *a);
DAGGER_API dagger_dims_t dagger_darray_grid(const dagger_darray_t *a);
/** The number of blocks, the chunk of block `b` (column-major over the grid; a typed array
 *  chunk of the block's ragged shape) and its place (thread, or -1 when the scheduler decides;
 *  for an array over ranks with blocks on other ranks, the block's rank, the chunk being
 *  mutable data there).
 *  Returns: borrowed while `a` is held; NULL when `b` is out of range. Thread safety: any. */
DAGGER_API size_t dagger_darray_nblocks(const dagger_darray_t *a);
DAGGER_API dagger_chunk_t *dagger_darray_block(const dagger_darray_t *a, size_t b);
DAGGER_API int dagger_darray_block_place(const dagger_darray_t *a, size_t b);

/* ---------------------------------------------------------------- map and broadcast */

/** An element function: `*out = f(*in)`, both of the array's element type (or the map's). */
typedef void (*dagger_darray_elemfn_t)(void *out, const void *in, void *ud);
/** A binary element function for broadcast: `*out = f(*x, *y)`. */
typedef void (*dagger_darray_binfn_t)(void *out, const void *x, const void *y, void *ud);

/** Where a block lies, for block functions. */
typedef struct dagger_darray_blockinfo {
    size_t index;                         /* block number, column-major over the grid */
    int ndims;                            /* of the array */
    size_t origin[DAGGER_CHUNK_MAX_DIMS]; /* global index of the block's first element */
    size_t shape[DAGGER_CHUNK_MAX_DIMS];  /* the block's (ragged) extents */
    size_t count;                         /* elements in the block */
    dagger_elt_t elt;                     /* element type of `in` */
} dagger_darray_blockinfo_t;
/** A block function: fill `out` (count elements) from `in` (may be the same buffer for
 *  map_inplace). Returns 0 or a negative DAGGER_E* code, which fails the operation. */
typedef int (*dagger_darray_blockfn_t)(void *out, const void *in,
                                       const dagger_darray_blockinfo_t *bi, void *ud);

/** map: B[i] = f(A[i]) with B of element type `out_elt` (DAGGER_ELT_RAW: A's type), same
 *  dims, blocking and places as A. Exactly one of `ef` and `bf` is given. map_inplace writes A.
 *  Returns: 0, DAGGER_EINVAL, a block function's error, DAGGER_ENOMEM. Ownership: +1 on `*out`.
 *  Thread safety: any thread; `ef`/`bf` run on worker threads concurrently. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_map(dagger_darray_t *a, dagger_elt_t out_elt,
                                                  dagger_darray_elemfn_t ef,
                                                  dagger_darray_blockfn_t bf, void *ud,
                                                  dagger_darray_t **out);
DAGGER_API DAGGER_NODISCARD int dagger_darray_map_inplace(dagger_darray_t *a,
                                                          dagger_darray_elemfn_t ef,
                                                          dagger_darray_blockfn_t bf, void *ud);

/** Built-in element-wise operators of broadcast and reduce. */
typedef enum dagger_darray_op {
    DAGGER_OP_ADD = 0, /* broadcast x + y; reduce: sum */
    DAGGER_OP_SUB,     /* broadcast only */
    DAGGER_OP_MUL,     /* broadcast x * y; reduce: prod */
    DAGGER_OP_DIV,     /* broadcast only; integer division by zero fails with DAGGER_ERANGE */
    DAGGER_OP_MIN,
    DAGGER_OP_MAX,
    DAGGER_OP_MEAN, /* reduce only: f64 result for integer arrays */
    DAGGER_OP_USER, /* the user function given beside it */
} dagger_darray_op_t;

/** Broadcast C = A op B of two arrays of the same dims and element type; B may have another
 *  blocking (it is re-blocked like A first). `fn` is used with DAGGER_OP_USER.
 *  Returns: 0, DAGGER_EINVAL (dims or types differ: both in the message), DAGGER_ERANGE,
 *  DAGGER_ENOMEM. Ownership: +1 on `*out`, laid out like A. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_broadcast(dagger_darray_t *a, dagger_darray_t *b,
                                                        dagger_darray_op_t op,
                                                        dagger_darray_binfn_t fn, void *ud,
                                                        dagger_darray_t **out);
/** Broadcast with a scalar: C = A op s (s converted to A's type; `s_left` gives s op A).
 *  Returns: as dagger_darray_broadcast. Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_broadcast_scalar(dagger_darray_t *a,
                                                               dagger_darray_op_t op, double s,
                                                               bool s_left, dagger_darray_t **out);

/* ---------------------------------------------------------------- reductions */

/** A user reduction: `combine(acc, x)` folds element `x` into `acc`, both of the array's type;
 *  `identity` (elsize bytes) starts every partial. Must be associative. */
typedef struct dagger_darray_redop {
    void (*combine)(void *acc, const void *x, void *ud);
    const void *identity;
    void *ud;
} dagger_darray_redop_t;

/** Reduce every element: a per-block task each, then a binary tree of combining tasks.
 *  `*out` is i64 for integer arrays and f64 for float arrays (MEAN: always f64; USER: the
 *  element's value converted the same way). `user` is used with DAGGER_OP_USER.
 *  Returns: 0, DAGGER_EINVAL (SUB or DIV, a missing user op, an empty array for MIN/MAX),
 *  DAGGER_ENOMEM. Ownership: borrows `a`; `*out` holds no reference. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_reduce(dagger_darray_t *a, dagger_darray_op_t op,
                                                     const dagger_darray_redop_t *user,
                                                     dagger_value_t *out);
/** Reduce along dimension `dim` (0-based): the result has extent 1 there and A's blocking
 *  elsewhere; partials of each block are combined along the block grid as a tree.
 *  Returns: as dagger_darray_reduce, and DAGGER_EINVAL for a bad dim.
 *  Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_reduce_dim(dagger_darray_t *a, dagger_darray_op_t op,
                                                         const dagger_darray_redop_t *user, int dim,
                                                         dagger_darray_t **out);
/** The 2-norm of all elements (f64), through per-block sums of squares.
 *  Returns: 0, DAGGER_EINVAL, DAGGER_ENOMEM. Ownership: borrows `a`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_norm(dagger_darray_t *a, double *out);

/** Count the elements of `a` in `nbins` equal bins of [lo, hi) into `counts` (zeroed first;
 *  elements outside the range, and NaNs, are not counted). One task per block counts into a
 *  private copy of the bins (a datadeps reduction, dagger_redux) and the copies are summed.
 *  Returns: 0, DAGGER_EINVAL (no bins, lo >= hi), DAGGER_ENOMEM. Ownership: borrows `a` and
 *  `counts`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_histogram(dagger_darray_t *a, double lo, double hi,
                                                        size_t nbins, uint64_t *counts);

/* ---------------------------------------------------------------- copies and views */

/** A copy with the same blocking and places. Ownership: +1 on `*out`. Thread safety: any. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_copy(dagger_darray_t *a, dagger_darray_t **out);
/** permutedims: B's dimension i is A's dimension perm[i] (a permutation of 0..ndims-1); the
 *  block grid is permuted the same way. transpose: 2-D (a 1-D vector becomes 1 x n).
 *  Returns: 0, DAGGER_EINVAL (not a permutation). Ownership: +1. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_permutedims(dagger_darray_t *a, const int *perm,
                                                          dagger_darray_t **out);
DAGGER_API DAGGER_NODISCARD int dagger_darray_transpose(dagger_darray_t *a, dagger_darray_t **out);
/** getindex: the sub-range [lo[d], hi[d]) of every dimension as a new array blocked like A
 *  (blocks clipped to the range). Returns: 0, DAGGER_EINVAL (an empty or out-of-range range,
 *  named in the message). Ownership: +1. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_getindex(dagger_darray_t *a, const size_t *lo,
                                                       const size_t *hi, dagger_darray_t **out);
/** copyto: copy `src` into `dst`, which has the same dims and element type and any blocking.
 *  Returns: 0, DAGGER_EINVAL (dims or types differ). Ownership: borrows both.
 *  Thread safety: any thread; nothing else may use `dst` meanwhile. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_copyto(dagger_darray_t *dst, dagger_darray_t *src);

/* ---------------------------------------------------------------- files */

/** How dagger_darray_save lays an array out on disk (docs/darray.md, "Files"). */
typedef enum dagger_darray_file {
    /* `path` is a folder: one Fortran-order .npy per block, block_<i>_<j>..npy (grid
     * coordinates, 0-based), and index.txt (element type, dims, block sizes) written last. */
    DAGGER_DARRAY_FILE_BLOCKS = 0,
    /* `path` is one Fortran-order .npy of the whole array (numpy.load reads it); each block's
     * column runs are written and read at their offsets by one task per block. */
    DAGGER_DARRAY_FILE_WHOLE,
} dagger_darray_file_t;

/** Save `a` to `path` as `mode` says, atomically per file (a temporary file, fsync, rename):
 *  a failed save leaves no partial file under its name; BLOCKS creates the folder if missing.
 *  Returns: 0, DAGGER_EINVAL (NULL, bad mode), DAGGER_ENOENT / DAGGER_EACCES / DAGGER_ENOSPC /
 *  DAGGER_EIO (message with the file). Ownership: borrows `a`. Thread safety: any thread;
 *  nothing may write `a` meanwhile. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_save(dagger_darray_t *a, const char *path,
                                                   dagger_darray_file_t mode);
/** Load an array saved by dagger_darray_save (WHOLE: any 1-D .npy, or a Fortran-order one of up
 *  to 4 dims of f64, f32, i64 or i32, e.g. numpy.save of np.asfortranarray(x)). `blocks` gives
 *  the blocking of WHOLE (DAGGER_AUTOBLOCKS allowed); BLOCKS uses the saved one, so `blocks`
 *  must be DAGGER_AUTOBLOCKS or equal to it. One task per block reads its file or its runs.
 *  Returns: 0, DAGGER_ENOENT (a missing index or block file, named), DAGGER_EINVAL (a malformed
 *  index, a C-order file, or a block file whose dtype or shape differs from the index: the file,
 *  both values in the message), DAGGER_EIO, DAGGER_ENOMEM. Ownership: +1 on `*out`.
 *  Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_load(dagger_ctx_t *ctx, const char *path,
                                                   dagger_darray_file_t mode, dagger_dims_t blocks,
                                                   const dagger_darray_opts_t *opts,
                                                   dagger_darray_t **out);

/* ---------------------------------------------------------------- linear algebra */

/** C = A * B through datadeps on the blocks (gemm per block triple; gemv when B is 1-D).
 *  f64 and f32. B's row blocking is matched to A's column blocking first when they differ.
 *  Returns: 0, DAGGER_EINVAL (shapes or types do not match: both shapes in the message).
 *  Ownership: +1 on `*out` (blocked like A's rows and B's columns). Thread safety: any. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_matmul(dagger_darray_t *a, dagger_darray_t *b,
                                                     dagger_darray_t **out);
/** Cholesky A = L L^T of a symmetric positive definite f64 matrix (tiled potrf, trsm, syrk,
 *  gemm through datadeps). `*out` gets L (zeros above the diagonal), blocked like A.
 *  Returns: 0, DAGGER_ENOTPD (the message names the block and the pivot), DAGGER_EINVAL.
 *  Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_cholesky(dagger_darray_t *a, dagger_darray_t **out);
/** LU with partial pivoting, P A = L U, of a square f64 matrix: `*out` holds L (unit lower,
 *  diagonal implied) and U packed like LAPACK's getrf; `ipiv` (n entries, may be NULL) gets
 *  LAPACK's 1-based row interchanges. Returns: 0, DAGGER_ESINGULAR (the block and pivot are
 *  named), DAGGER_EINVAL. Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_lu(dagger_darray_t *a, dagger_darray_t **out,
                                                 int64_t *ipiv);

/** Factorisations for dagger_darray_solve. */
typedef enum dagger_solve_kind {
    DAGGER_SOLVE_LU = 0,
    DAGGER_SOLVE_CHOLESKY,
} dagger_solve_kind_t;

/** Solve A X = B (B an n-vector or n x k matrix, f64) with the chosen factorisation.
 *  Returns: 0, DAGGER_ESINGULAR, DAGGER_ENOTPD, DAGGER_EINVAL (shapes: both in the message).
 *  Ownership: +1 on `*out`, shaped like B. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_darray_solve(dagger_darray_t *a, dagger_darray_t *b,
                                                    dagger_solve_kind_t kind,
                                                    dagger_darray_t **out);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_DARRAY_H */
