/* src/mem/mem.h - what the data layer exposes to the others: memory spaces, chunk copies,
 * staging, and the pieces of shards.
 *
 * Memory spaces are (rank, kind, index) with one ops table per kind: host is built in; device
 * and disk tables are registered by their backends when those are compiled in.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_MEM_H
#define DAGGER_SRC_MEM_H

#include <stdbool.h>
#include <stddef.h>

#include "dagger.h"
#include "dagger/chunk.h"
#include "dagger/file.h"

/* The ops of one space kind. `copy` moves bytes from a space of kind `from` into this kind
 * (the host table copies host to host; a device table copies both ways with the host). */
struct dagger__space_ops {
    const char *name;
    void *(*alloc)(const dagger_space_t *s, size_t n);
    void (*free)(const dagger_space_t *s, void *p, size_t n);
    int (*copy)(const dagger_space_t *dst_space, void *dst, const dagger_space_t *src_space,
                const void *src, size_t n);
    int (*copy2d)(const dagger_space_t *dst_space, void *dst, size_t dpitch,
                  const dagger_space_t *src_space, const void *src, size_t spitch, size_t width,
                  size_t rows);
};

/* Internal space kind: the host memory of another rank (src/net/mpi). A chunk whose home is
 * there (a task result left where it was made) has as home pointer the backend's reference;
 * staging it to the host pulls the bytes from that rank. */
#define DAGGER__SPACE_RANK 3

/* Register the ops of a space kind (a backend at load time). */
void dagger__mem_register_space(int kind, const struct dagger__space_ops *ops);
/* The ops of a kind, or NULL when no backend of that kind is built. */
const struct dagger__space_ops *dagger__mem_space_ops(int kind);
/* The host space of this process, and the space a processor reads directly. */
dagger_space_t dagger__mem_host(void);
dagger_space_t dagger__mem_space_of(const dagger_proc_t *p);
bool dagger__mem_space_equal(const dagger_space_t *a, const dagger_space_t *b);

/* Make a copy of `c` valid in `to` and return its pointer in `*ptr`. A mutable chunk is never
 * copied: staging it anywhere but its home fails. Returns 0, DAGGER_ENOMEM, DAGGER_ESCOPE,
 * DAGGER_ENOSYS (no ops for that space kind); the message is set. Thread safety: any thread. */
int dagger__mem_stage(dagger_chunk_t *c, const dagger_space_t *to, void **ptr);
/* Record a write of the copy in `space`: it becomes the only valid copy (version + 1). */
void dagger__mem_written(dagger_chunk_t *c, const dagger_space_t *space);
/* Whether the copy in `space` is valid. */
bool dagger__mem_valid_in(const dagger_chunk_t *c, const dagger_space_t *space);
/* Drop the copy in `space` (a device pool evicting it): when it is the only valid copy it is
 * written back to the home first. Never waits for the chunk's lock. Returns 0 (dropped clean),
 * 1 (written back, then dropped), DAGGER_EBUSY (the chunk is being staged: try another), or the
 * copy's error (the copy stays). The caller frees the memory behind the copy's pointer. */
int dagger__mem_evict(dagger_chunk_t *c, const dagger_space_t *space);
/* Invalidate the copy in `space` when it is valid, `bad(ptr, ud)` says so (NULL: always) and
 * another valid copy exists (a device copy whose copy-in failed, or that a failed task may have
 * half written). Returns 1 (invalidated), 0 (nothing to do), or DAGGER_ESTATE when it is the
 * only valid copy (kept; the message is set). Thread safety: any thread (takes the chunk lock). */
int dagger__mem_invalidate(dagger_chunk_t *c, const dagger_space_t *space,
                           bool (*bad)(void *ptr, void *ud), void *ud);
/* The chunk's version and its number of copies (valid or not). */
uint64_t dagger__mem_version(const dagger_chunk_t *c);
int dagger__mem_ncopies(const dagger_chunk_t *c);

/* A chunk whose home copy is `ptr` in `space` (a file in the disk space: src/io), valid.
 * Returns 0 or DAGGER_ENOMEM. Ownership: +1 on `*out`; `ptr` is freed by that space's ops. */
/* dagger_chunk_create without zeroing the bytes, for a caller that overwrites all of them
 * before anyone reads them (a chunk pulled from another rank: MPI receives into it). */
int dagger__chunk_create_unset(dagger_ctx_t *ctx, size_t size, dagger_chunk_t **out);
int dagger__mem_chunk_at(const dagger_ctx_t *ctx, size_t size, const dagger_space_t *space,
                         void *ptr, dagger_chunk_t **out);
/* The home copy's pointer (for a file: its disk record). */
const void *dagger__mem_home_ptr(const dagger_chunk_t *c);

/* Out-of-core (src/mem/resident.c). A placed task holds its chunk inputs from staging until it
 * completes: a held chunk is never spilled. No-ops for chunks made without a memory limit. */
void dagger__mem_hold(dagger_chunk_t *c);
void dagger__mem_unhold(dagger_chunk_t *c);
/* `c` was handed to a task: a host pointer its owner had from dagger_chunk_data no longer holds
 * it in memory (call after dagger__mem_hold). */
void dagger__mem_handed(dagger_chunk_t *c);
bool dagger__mem_tracked(const dagger_chunk_t *c);
/* Set the memory limit at context open (0: DAGGER_MEM_LIMIT, unset = none); start the spill
 * thread. Returns 0, DAGGER_EINVAL (a bad DAGGER_MEM_LIMIT, a second context with a limit),
 * DAGGER_ENOMEM. At close: stop spilling (spilled chunks still held stay readable). */
int dagger__mem_res_open(const dagger_ctx_t *ctx, size_t limit);
void dagger__mem_res_close(const dagger_ctx_t *ctx);
/* `fn` runs when the context that set the memory limit closes (the disk space removes its
 * spill directory). Set at context open by the disk backend. */
void dagger__mem_on_res_close(void (*fn)(void));
/* The memory limit in force (0: none). */
size_t dagger__mem_res_limit(void);
/* The counters of the limit set by `ctx` (zeros when it set none). */
void dagger__mem_res_stats(const dagger_ctx_t *ctx, dagger_mem_stats_t *out);

/* The cache of large host buffers (bufcache.c): chunk buffers of at least this many bytes are
 * kept for reuse when freed. */
#define DAGGER__BUFCACHE_MIN ((size_t)1 << 20)
/* The size of the buffer a chunk of `n` bytes gets (its size class; `n` below the minimum). */
size_t dagger__bufcache_class(size_t n);
/* A context opened (the first one reads DAGGER_BUFCACHE_MB) or closed (the last one frees every
 * cached buffer). Called by dagger_ctx_open after the memory limit is set, and by close. */
void dagger__mem_bufcache_open(void);
void dagger__mem_bufcache_close(void);
struct dagger__bufcache_stats {
    size_t held, buffers, cap; /* cap 0: disabled (DAGGER_BUFCACHE_MB=0 or a memory limit) */
    unsigned long long hits, misses;
};
void dagger__mem_bufcache_stats(struct dagger__bufcache_stats *out);

/* The context a chunk or shard was made in (compared only). */
const dagger_ctx_t *dagger__mem_chunk_ctx(const dagger_chunk_t *c);
const dagger_ctx_t *dagger__mem_shard_ctx(const dagger_shard_t *s);

/* Turn a task's result into a chunk made at `proc`: a chunk is kept, a blob or string is copied
 * into a new chunk, a pointer is wrapped (never freed); with `pin` the chunk becomes mutable
 * data of `proc`. `*v` must be owned by the caller (DAGGER_VALUE_OWNED handles are consumed).
 * Returns 0 or an error with the reason written to `why`. */
int dagger__mem_result_chunk(const dagger_ctx_t *ctx, dagger_value_t *v, const dagger_proc_t *proc,
                             bool pin, char *why, size_t cap);

/* Mutable data of another rank (src/net/mpi): a proxy record with no copy here, pinned to
 * `proc` (whose rank is the home), known there as chunk `rid`, holding `credit` of its weighted
 * reference count; `on_free` runs at the last release (any thread) to give the credit back.
 * Staging it or reading it here fails with DAGGER_ESCOPE; placement sends its tasks home.
 * Returns 0 or DAGGER_ENOMEM. Ownership: +1 on `*out`. */
int dagger__mem_proxy_create(const dagger_ctx_t *ctx, const dagger_proc_t *proc, uint64_t rid,
                             size_t size, dagger_elt_t elt, int ndims, const size_t *shape,
                             uint64_t credit,
                             void (*on_free)(void *ud, int rank, uint64_t rid, uint64_t credit),
                             void *ud, dagger_chunk_t **out);
/* Whether `c` is such a proxy, and its home rank and id there. */
bool dagger__mem_proxy(const dagger_chunk_t *c, int *rank, uint64_t *rid);
/* The proxy's credit: read and split by the ranks backend's progress thread only. */
uint64_t *dagger__mem_proxy_credit(dagger_chunk_t *c);

/* Make `c` mutable data of `proc` (a constructor's result, before it is shared). */
void dagger__mem_pin(dagger_chunk_t *c, const dagger_proc_t *proc);

/* Shards: the piece for worker thread `thread` (-1: beside the workers) of this rank, and
 * whether pieces are per thread. */
dagger_chunk_t *dagger__mem_shard_local(const dagger_shard_t *s, int thread);
bool dagger__mem_shard_per_thread(const dagger_shard_t *s);
/* Whether the shard has a piece on `rank`. */
bool dagger__mem_shard_on_rank(const dagger_shard_t *s, int rank);
/* A shard of `n` pieces (retained) with their processors: this rank's view of a shard made on
 * another rank. Returns 0 or DAGGER_ENOMEM. Ownership: +1 on `*out`. */
int dagger__mem_shard_assemble(const dagger_ctx_t *ctx, bool per_thread, int nthreads,
                               dagger_chunk_t *const *pieces, const dagger_proc_t *procs, size_t n,
                               dagger_shard_t **out);

#endif /* DAGGER_SRC_MEM_H */
