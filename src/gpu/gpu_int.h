/* src/gpu/gpu_int.h - devices, their memory pools and the launch records of device tasks.
 *
 * Only files of src/gpu include this.
 * Lock order: a chunk's lock (src/mem) before a device's `copy_lock`, before its `lock`; a device's
 * lock is never held while waiting for a chunk's lock (eviction only try-locks chunks, see
 * dagger__mem_evict). SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_GPU_INT_H
#define DAGGER_SRC_GPU_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/core.h"
#include "gpu/gpu.h"
#include "mem/mem.h"

#define GPU_MAX_DEVICES 64
#define GPU_COMPUTE_STREAMS 2
/* The trace track of stream `k` of device `d` (0 copy-in, 1 copy-out, 2.. compute). */
#define GPU_TRACK(d, k) ((d)->index * 8 + (k))

/* A chunk's copy on a device: the pointer a chunk copy holds in a device space. The record
 * lives as long as the copy; the device memory behind it may be evicted and come back. */
struct dbuf {
    struct gpu_dev *dev;
    size_t size;
    dagger_dptr_t d; /* valid while resident */
    bool resident;   /* guarded by dev->lock */
    int pins;        /* tasks using it; guarded by dev->lock */
    void *ready;     /* event of the last copy into it, or NULL; written under the chunk's lock
                      * and dev->copy_lock, read under either */
    dagger_chunk_t *chunk;    /* weak, for eviction; guarded by dev->lock */
    _Atomic uint64_t cid;     /* the chunk's id, for the trace (0: not known yet) */
    struct dbuf *prev, *next; /* LRU of resident buffers (head: least recent); dev->lock */
};

/* A free block kept by the pool (no device free in steady state). */
struct block {
    struct block *next;
    size_t size;
    dagger_dptr_t d;
};

struct rec;

struct gpu_dev {
    int index;      /* among all devices of the process */
    int kind;       /* dagger_gpu_kind_t */
    int kind_index; /* among the devices of its backend */
    const struct dagger__device_ops *ops;
    void *h;
    char name[96];
    void *copy_in, *copy_out;
    void *compute[GPU_COMPUTE_STREAMS];
    _Atomic uint32_t rr;
    _Atomic int inflight; /* device tasks placed and not completed: the backlog */
    /* When its last task completed (dagger__now_ns; the completion thread writes it): a task's
     * run time for the cost model counts from its launch or from then, whichever is later. */
    _Atomic uint64_t last_done;
    pthread_mutex_t lock;
    /* Held from enqueueing a copy on copy_in to recording its `ready` event, so each event
     * reports the error of its own copy (a failed copy latches its stream's error until the
     * next event). Taken after a chunk's lock, never with `lock` held. */
    pthread_mutex_t copy_lock;
    size_t limit;                      /* the pool's size: device memory, or DAGGER_GPU_MEM_LIMIT */
    size_t used;                       /* resident buffers and cached blocks; lock */
    size_t pinned;                     /* bytes of pinned buffers; lock */
    struct dbuf lru;                   /* sentinel; lock */
    struct block *cache;               /* free blocks; lock */
    uint64_t evictions, writebacks;    /* lock */
    size_t admitted;                   /* chunk bytes of admitted device tasks; lock */
    struct rec *wait_head, *wait_tail; /* tasks waiting for admission (exec.c); lock */
};

/* device.c */
int dagger__gpu_ndev(void);
struct gpu_dev *dagger__gpu_dev(int i);
/* Probe once; returns the number of devices. A probe that ran out of memory opens none and
 * is retried on the next call (then dagger__gpu_probe_oom is true). */
int dagger__gpu_probe(void);
bool dagger__gpu_probe_oom(void);
void dagger__gpu_close_all(void);
/* The space of a device. */
dagger_space_t dagger__gpu_space(const struct gpu_dev *d);
/* Make the copy of `c` valid on `d` and pin it; `*out` gets the record. */
int dagger__gpu_stage_pin(struct gpu_dev *d, dagger_chunk_t *c, struct dbuf **out);
void dagger__gpu_unpin(struct dbuf *b);

/* After dagger__gpu_fake_setup: probe only the fake backend. */
void dagger__gpu_fake_only(void);

/* exec.c: the device and stream of the running device body. */
int dagger__gpu_tc_launch(dagger_tc_t *tc, struct gpu_dev **d, void **stream);
/* exec.c: the completion thread */
void dagger__gpu_completion_start(void);
void dagger__gpu_completion_stop(void);

#endif /* DAGGER_SRC_GPU_INT_H */
