/* src/mem/mem_int.h - what chunk.c and resident.c share inside the data layer: the residency
 * record of a chunk (out-of-core) and the calls between the two files.
 *
 * Design: with a memory limit, every chunk made while it is set is tracked: its host bytes are
 * counted, and while it has a host copy it sits in one LRU list (resident.c). A chunk is held
 * (never spilled) while a placed task holds it (`pins`) or while its owner has a host pointer
 * from dagger_chunk_data (`upin`, cleared when the chunk is next handed to a task).
 * Lock order: a chunk's lock, then the residency lock; never the other way.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_MEM_INT_H
#define DAGGER_SRC_MEM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem/mem.h"

struct dagger__res_node {
    dagger_chunk_t *self;
    dagger_chunk_t *prev, *next; /* the LRU list: guarded by the residency lock */
    size_t bytes;                /* host bytes counted: guarded by the residency lock */
    uint32_t skip_epoch;         /* a spill failed in this epoch: guarded by the residency lock */
    bool tracked;                /* set at creation, before the chunk is shared */
    bool listed;                 /* in the LRU list: guarded by the residency lock */
    _Atomic uint32_t pins;       /* placed tasks that hold it */
    _Atomic uint32_t upin;       /* the owner holds a host pointer */
};

/* chunk.c */
struct dagger__res_node *dagger__mem_res_node(dagger_chunk_t *c);
size_t dagger__mem_chunk_bytes(const dagger_chunk_t *c);
/* Take a reference unless the last one is already gone. */
bool dagger__mem_try_retain(dagger_chunk_t *c);
/* Spill `c`: write its host copy to the disk space unless a valid disk copy exists, then drop
 * the host copy. Returns 0, DAGGER_EBUSY (held, or its lock is taken: try another), or the
 * disk's error (the chunk then keeps its host copy). Runs on the spill thread. */
int dagger__mem_spill(dagger_chunk_t *c);

/* resident.c */
/* Whether a memory limit is set (chunks made now are tracked). */
bool dagger__res_active(void);
/* Before a host copy of `n` bytes is made: wait until it fits under the limit or nothing more
 * can be spilled. Returns 0, or DAGGER_ENOSPC when spills failed and nothing else can go. */
int dagger__res_wait_room(size_t n);
/* A host copy of the chunk exists now (idempotent): count its bytes, put it at the MRU end. */
void dagger__res_add(struct dagger__res_node *r, size_t n);
/* Its host copy is gone (spilled) or the chunk is freed (`unlink`: leave the list too). */
void dagger__res_sub(struct dagger__res_node *r, bool unlink);
/* It is used now: move it to the MRU end. */
void dagger__res_touch(struct dagger__res_node *r);
/* A spill of `n` bytes was written, or a reload read (for the counters). */
void dagger__res_count(bool spill, size_t n);

/* bufcache.c */
/* A host buffer for a chunk of `n` bytes (zeroed when `zero`): a cached one of its size class,
 * or a new one; NULL when out of memory. Thread-safe. */
void *dagger__bufcache_get(size_t n, bool zero);
/* Give back a buffer from dagger__bufcache_get(n, ...), same `n`: kept while the cache stays
 * under its cap (least recently used ones are freed), else freed. Thread-safe. */
void dagger__bufcache_put(void *p, size_t n);

#endif /* DAGGER_SRC_MEM_INT_H */
