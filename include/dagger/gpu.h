/* include/dagger/gpu.h - devices: GPU scopes, task implementations per processor kind, device
 * pointers of chunk arguments.
 *
 * GPUs are opt-in through scopes (dagger_scope_gpu). A task lists its device bodies in
 * dagger_task_opts_t.impls; a device body gets its chunk arguments as device pointers, enqueues
 * work on the stream or queue of its task (dagger/opencl.h, dagger/cuda.h) and returns: the task
 * completes when that work has finished. This header includes no vendor header; docs/gpu.md
 * explains the model.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_GPU_H
#define DAGGER_GPU_H

#include "dagger.h"
#include "dagger/chunk.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Device backend kinds. */
typedef enum dagger_gpu_kind {
    DAGGER_GPU_ANY = 0, /* in a scope: a device of any backend */
    DAGGER_GPU_OPENCL,
    DAGGER_GPU_CUDA,
    DAGGER_GPU_FAKE, /* the test-only fake device (host memory at poisoned addresses) */
} dagger_gpu_kind_t;

/** Implementation kinds of dagger_impl_t. */
typedef enum dagger_impl_kind {
    DAGGER_IMPL_CPU = 0, /* the same as dagger_spawn's function */
    DAGGER_IMPL_OPENCL = DAGGER_GPU_OPENCL,
    DAGGER_IMPL_CUDA = DAGGER_GPU_CUDA,
    DAGGER_IMPL_FAKE = DAGGER_GPU_FAKE,
} dagger_impl_kind_t;

/** One implementation of a task: the body to run on processors of `kind`. */
typedef struct dagger_impl {
    int kind; /* dagger_impl_kind_t */
    dagger_fn_t fn;
} dagger_impl_t;

/** An opaque device pointer: a backend handle (cl_mem, a CUDA address) and a byte offset. */
typedef struct dagger_dptr {
    uintptr_t handle;
    size_t offset;
} dagger_dptr_t;

/** "opencl", "cuda", "fake", "any". Returns: a static string. Thread safety: any thread. */
DAGGER_API const char *dagger_gpu_kind_name(int kind);

/** The scope of device `index` of backend `kind` (DAGGER_GPU_ANY: of any backend); index -1:
 *  any device of that kind (dagger_scope_gpu(DAGGER_GPU_ANY, -1): all GPUs). A scope whose
 *  devices do not exist fails the task at fetch with DAGGER_ESCOPE naming the kind.
 *  Returns: +1 scope, or NULL when out of memory. Thread safety: any thread. */
DAGGER_API dagger_scope_t *dagger_scope_gpu(int kind, int index);

/** The number of devices of `kind` this process sees (probes the backends on first use).
 *  Returns: the count (0 without devices). Thread safety: any thread. */
DAGGER_API int dagger_gpu_count(int kind);

/** Inside a device body: argument `i` (a chunk) as a device pointer on the task's device. The
 *  copy was made valid there before the body ran; the body must only read it.
 *  Returns: the pointer ({0, 0} with the task failed with DAGGER_ETYPE for another kind).
 *  Ownership: valid until the task completes. Thread safety: inside a task only. */
DAGGER_API dagger_dptr_t dagger_arg_dptr(const dagger_args_t *a, size_t i);
/** The same for a chunk the body writes: the device copy becomes the only valid one (host
 *  tasks, fetches and other devices pull it when they need it). */
DAGGER_API dagger_dptr_t dagger_arg_dptr_rw(const dagger_args_t *a, size_t i);
/** Inside a device body: a new chunk of `size` bytes whose only valid copy is the device's
 *  (its bytes are what the enqueued work writes); return it with dagger_chunk_give.
 *  Returns: 0, DAGGER_ENOMEM (the message names the sizes), DAGGER_EINVAL outside a device body.
 *  Ownership: +1 on `*out`. Thread safety: inside a task only. */
DAGGER_API DAGGER_NODISCARD int dagger_tc_dchunk_create(dagger_tc_t *tc, size_t size,
                                                        dagger_chunk_t **out, dagger_dptr_t *d);
/** Inside a task: the device it runs on (index, and backend kind in `*kind`, may be NULL).
 *  Returns: the device index, -1 on a CPU. Thread safety: inside a task only. */
DAGGER_API int dagger_tc_device(const dagger_tc_t *tc, int *kind);

/** Device memory of device `dev`: the pool's limit and what is held by chunk copies.
 *  Returns: 0, DAGGER_EINVAL for an unknown device. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_gpu_mem_info(int dev, size_t *used, size_t *limit);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_GPU_H */
