/* include/dagger/opencl.h - OpenCL interop: the queue of a device task, buffers behind device
 * pointers, kernels built for the task's device.
 *
 * The only dagger header that includes the OpenCL headers; include it in files that write
 * OpenCL implementations (DAGGER_IMPL_OPENCL). docs/gpu.md shows a whole task.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_OPENCL_H
#define DAGGER_OPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "dagger/gpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Inside an OpenCL body: the in-order queue to enqueue the task's work on; the task completes
 *  when everything enqueued there before the body returns has finished.
 *  Returns: the queue (borrowed), or NULL outside an OpenCL body. Thread safety: inside a task. */
DAGGER_API cl_command_queue dagger_tc_cl_queue(dagger_tc_t *tc);

/** The buffer behind a device pointer of an OpenCL device (its offset is always 0).
 *  Returns: the cl_mem (borrowed, valid until the task completes). Thread safety: any thread. */
static inline cl_mem dagger_dptr_cl_mem(dagger_dptr_t p) { return (cl_mem)p.handle; }

/** The context and device id of device `dev` (the global device index).
 *  Returns: borrowed handles, or NULL when `dev` is not an OpenCL device. Thread safety: any. */
DAGGER_API cl_context dagger_cl_context(int dev);
DAGGER_API cl_device_id dagger_cl_device(int dev);

/** Inside an OpenCL body: kernel `name` of the program `src`, built once per device and source.
 *  A build error fails the task with DAGGER_ETASK and the build log.
 *  Returns: 0 or the task's error. Ownership: +1 on `*out` (clReleaseKernel after enqueueing).
 *  Thread safety: inside a task only. */
DAGGER_API DAGGER_NODISCARD int dagger_tc_cl_kernel(dagger_tc_t *tc, const char *src,
                                                    const char *name, cl_kernel *out);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_OPENCL_H */
