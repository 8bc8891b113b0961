/* include/dagger/cuda.h - CUDA interop: the stream of a device task and the addresses behind
 * device pointers.
 *
 * The only dagger header that includes the CUDA runtime header; include it in files that write
 * CUDA implementations (DAGGER_IMPL_CUDA). docs/gpu.md shows a whole task.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_CUDA_H
#define DAGGER_CUDA_H

#include <cuda_runtime_api.h>

#include "dagger/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Inside a CUDA body: the stream to launch the task's work on; the task completes when
 *  everything launched there before the body returns has finished.
 *  Returns: the stream (borrowed), or NULL outside a CUDA body. Thread safety: inside a task. */
DAGGER_API cudaStream_t dagger_tc_cuda_stream(dagger_tc_t *tc);

/** The device address behind a device pointer of a CUDA device.
 *  Returns: the address (valid until the task completes). Thread safety: any thread. */
static inline void *dagger_dptr_cuda(dagger_dptr_t p) { return (char *)p.handle + p.offset; }

/** The CUDA device ordinal of dagger device `dev`. Returns: the ordinal, -1 when `dev` is not a
 *  CUDA device. Thread safety: any thread. */
DAGGER_API int dagger_cuda_device(int dev);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_CUDA_H */
