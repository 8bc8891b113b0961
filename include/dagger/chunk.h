/* include/dagger/chunk.h - data with a home: processors, memory spaces, chunks, mutable data
 * and shards.
 *
 * A chunk is reference-counted data with a home (rank, memory space), a size, a type (raw bytes
 * or an element type and shape) and a set of copies; a task that takes a chunk argument gets a
 * pointer valid where it runs. dagger_mutable pins data to one processor and never copies it;
 * dagger_shard gives each worker (or thread) its own piece. docs/data.md explains the model.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_CHUNK_H
#define DAGGER_CHUNK_H

#include "dagger.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- processors and spaces */

/* Processors (dagger_proc_t, dagger_proc_kind_t) are declared in dagger.h. */

/** Memory-space kinds: where bytes live. */
typedef enum dagger_space_kind {
    DAGGER_SPACE_HOST = 0, /* process memory of a rank */
    DAGGER_SPACE_DEVICE,   /* device memory (declared; no backend is built yet) */
    DAGGER_SPACE_DISK,     /* a file or a spill file (dagger/file.h) */
} dagger_space_kind_t;

/** A memory space: (rank, kind, index). */
typedef struct dagger_space {
    int32_t rank;
    int16_t kind; /* dagger_space_kind_t */
    int16_t index;
} dagger_space_t;

/** Write "thread(2)", "aux", "device(0)", "host", ... into buf.
 *  Returns: the length it needs, like snprintf. Thread safety: any thread. */
DAGGER_API int dagger_proc_format(const dagger_proc_t *p, char *buf, size_t cap);
DAGGER_API int dagger_space_format(const dagger_space_t *s, char *buf, size_t cap);

/** A scope of exactly one processor. Returns: +1 scope, or NULL when out of memory.
 *  Thread safety: any thread. */
DAGGER_API dagger_scope_t *dagger_scope_processor(const dagger_proc_t *p);

/* ---------------------------------------------------------------- chunks */

/** Element types of typed chunks. */
typedef enum dagger_elt {
    DAGGER_ELT_RAW = 0, /* bytes with no element type */
    DAGGER_ELT_F64,
    DAGGER_ELT_F32,
    DAGGER_ELT_I64,
    DAGGER_ELT_I32,
    DAGGER_ELT_U8,
} dagger_elt_t;

#define DAGGER_CHUNK_MAX_DIMS 4

/** Create a chunk of `size` zeroed bytes homed in the host memory of the calling rank.
 *  Returns: 0, DAGGER_EINVAL (NULL ctx or out), DAGGER_ENOMEM.
 *  Ownership: +1 on `*out` (dagger_chunk_release). Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_chunk_create(dagger_ctx_t *ctx, size_t size,
                                                    dagger_chunk_t **out);
/** Create a zeroed typed array chunk of `ndims` (1..DAGGER_CHUNK_MAX_DIMS) dimensions.
 *  Returns: 0, DAGGER_EINVAL (bad element type, dimensions or shape), DAGGER_ERANGE (the byte
 *  size overflows), DAGGER_ENOMEM. Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_chunk_create_array(dagger_ctx_t *ctx, dagger_elt_t elt,
                                                          int ndims, const size_t *shape,
                                                          dagger_chunk_t **out);
/** Wrap `size` bytes at `data` (host memory) as a chunk; `free_fn(data, ud)` runs after the last
 *  release (NULL: the caller keeps ownership and keeps `data` alive longer than the chunk).
 *  Returns: 0, DAGGER_EINVAL, DAGGER_ENOMEM (free_fn is then not called).
 *  Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_chunk_wrap(dagger_ctx_t *ctx, void *data, size_t size,
                                                  void (*free_fn)(void *data, void *ud), void *ud,
                                                  dagger_chunk_t **out);
/** Give `c` an element type and shape whose byte size equals the chunk's size.
 *  Returns: 0, DAGGER_EINVAL (with a message naming both sizes). Thread safety: owner only,
 *  before the chunk is shared. */
DAGGER_API DAGGER_NODISCARD int dagger_chunk_set_type(dagger_chunk_t *c, dagger_elt_t elt,
                                                      int ndims, const size_t *shape);
/** Take another reference. Returns: `c`. Thread safety: any thread, lock-free. */
DAGGER_API dagger_chunk_t *dagger_chunk_retain(dagger_chunk_t *c);
/** Drop a reference; the last one frees every copy (NULL accepted). Thread safety: any thread. */
DAGGER_API void dagger_chunk_release(dagger_chunk_t *c);

/** Host access for the chunk's owner: a pointer to a valid host copy (made valid first).
 *  Returns: the pointer, or NULL (NULL chunk, out of memory, no host copy can be made; the
 *  reason is in dagger_last_errmsg). Ownership: valid while the caller holds `c`.
 *  Thread safety: any thread; writes are the caller's to order (run them in tasks). */
DAGGER_API void *dagger_chunk_data(dagger_chunk_t *c);
/** Size in bytes, element type, shape (returns ndims, 0 for raw; fills up to `cap` extents),
 *  home space, and the chunk's id (unique in its process). Thread safety: any thread. */
DAGGER_API size_t dagger_chunk_size(const dagger_chunk_t *c);
DAGGER_API dagger_elt_t dagger_chunk_elt(const dagger_chunk_t *c);
DAGGER_API int dagger_chunk_shape(const dagger_chunk_t *c, size_t *shape, int cap);
DAGGER_API dagger_space_t dagger_chunk_home(const dagger_chunk_t *c);
DAGGER_API uint64_t dagger_chunk_id(const dagger_chunk_t *c);
/** Whether `c` is mutable data (dagger_mutable, a shard piece) and, if so, its processor.
 *  Returns: true and fills `*proc` (may be NULL) for mutable data. Thread safety: any thread. */
DAGGER_API bool dagger_chunk_is_mutable(const dagger_chunk_t *c, dagger_proc_t *proc);
/** The size in bytes of one element of `elt` (0 for DAGGER_ELT_RAW or an unknown type). */
DAGGER_API size_t dagger_elt_size(dagger_elt_t elt);

/** Inside a task: argument `i` as writable bytes where the body runs: a chunk's local copy, a
 *  shard's local piece, or a blob's bytes (read-only). Any other kind fails the task with
 *  DAGGER_ETYPE. Returns: the pointer (NULL for an empty chunk or on failure); `*len` (may be
 *  NULL) gets the size. Ownership: valid until the body returns. Thread safety: inside a task. */
DAGGER_API void *dagger_arg_buf(const dagger_args_t *a, size_t i, size_t *len);
/** The same for a typed chunk: fails with DAGGER_ETYPE unless the element type is `elt`;
 *  `*n` gets the number of elements. */
DAGGER_API void *dagger_arg_array(const dagger_args_t *a, size_t i, dagger_elt_t elt, size_t *n);
/** Argument `i` as a chunk (a shard gives its local piece). Returns: borrowed, or NULL with the
 *  task failed (DAGGER_ETYPE). Thread safety: inside a task only. */
DAGGER_API dagger_chunk_t *dagger_arg_chunk(const dagger_args_t *a, size_t i);

/** Inside a task: `dagger_chunkv(c)` for `*out` or a child's argument, handing the body's
 *  reference to the runtime, which drops it when the task ends (after the result took its own).
 *  Returns: the value (nil, with the task failed with DAGGER_ENOMEM, when out of memory).
 *  Ownership: consumes one reference to `c`. Thread safety: inside a task only. */
DAGGER_API dagger_value_t dagger_chunk_give(dagger_tc_t *tc, dagger_chunk_t *c);

/** Fetch a task whose result is a chunk (see DAGGER_TASK_CHUNK_RESULT).
 *  Returns: 0, the task's error, DAGGER_ETYPE for another kind. Ownership: `*out` is borrowed
 *  while the caller holds `t` (retain it to keep it longer). Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_fetch_chunk(dagger_task_t *t, dagger_chunk_t **out);

/* ---------------------------------------------------------------- mutable data */

/** Dagger.jl's @mutable: run `ctor(argv)` on one processor of `where` (NULL: any) and return
 *  its result as a chunk pinned there. The constructor returns a chunk, a blob (copied into a
 *  chunk allocated on that processor) or a pointer (wrapped; the caller keeps it alive). Every
 *  task that takes the chunk runs on that processor and sees the same pointer; a task whose
 *  scope excludes it fails with DAGGER_ESCOPE. A worker scope (dagger_scope_worker(r)) pins it
 *  to that worker, any of its threads; on another rank it stays there and its tasks run there
 *  (docs/mpi.md). Blocks until the constructor ran (suspends inside a task).
 *  Returns: 0, or the constructor's error / DAGGER_ESCOPE / DAGGER_EINVAL.
 *  Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_mutable(dagger_ctx_t *ctx, const dagger_scope_t *where,
                                               dagger_fn_t ctor, const dagger_value_t *argv,
                                               size_t argc, dagger_chunk_t **out);

/* ---------------------------------------------------------------- shards */

enum {
    DAGGER_SHARD_PER_WORKER = 1u << 0, /* one piece per worker (rank): the default */
    DAGGER_SHARD_PER_THREAD = 1u << 1, /* one piece per worker thread */
};

/** Shard options; initialise with dagger_shard_opts_init. Only ever grows at the end. */
typedef struct dagger_shard_opts {
    unsigned flags;              /* DAGGER_SHARD_PER_WORKER (default) or _PER_THREAD */
    const dagger_scope_t *scope; /* the places that get a piece; NULL = all */
} dagger_shard_opts_t;

/** Fill `o` with the defaults. Thread safety: any thread. */
DAGGER_API void dagger_shard_opts_init(dagger_shard_opts_t *o);

/** Dagger.jl's @shard: run `ctor(argv)` once per worker (or per thread) where it will be used,
 *  on every rank the scope names;
 *  a task that takes the shard receives the piece of the place where it runs (a task that
 *  starts on thread t stays on t for the rest of its run). Blocks until every piece exists.
 *  Returns: 0, DAGGER_EINVAL (contradictory or empty options, NULL ctor; message in
 *  dagger_last_errmsg), DAGGER_ESCOPE, or the first constructor error.
 *  Ownership: +1 on `*out` (dagger_shard_release). Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_shard(dagger_ctx_t *ctx, const dagger_shard_opts_t *o,
                                             dagger_fn_t ctor, const dagger_value_t *argv,
                                             size_t argc, dagger_shard_t **out);
DAGGER_API dagger_shard_t *dagger_shard_retain(dagger_shard_t *s);
DAGGER_API void dagger_shard_release(dagger_shard_t *s);
/** The number of pieces, piece `i` (borrowed while the shard is held; NULL when out of range)
 *  and its processor. Thread safety: any thread; read pieces after the tasks that write them. */
DAGGER_API size_t dagger_shard_count(const dagger_shard_t *s);
DAGGER_API dagger_chunk_t *dagger_shard_piece(const dagger_shard_t *s, size_t i);
DAGGER_API dagger_proc_t dagger_shard_piece_proc(const dagger_shard_t *s, size_t i);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_CHUNK_H */
