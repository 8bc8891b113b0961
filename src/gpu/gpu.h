/* src/gpu/gpu.h - the device backend vtable (OpenCL, CUDA, the fake test device).
 *
 * A backend fills one dagger__device_ops and is listed in device.c when it is compiled in.
 * Every call returns 0 or a DAGGER_E* code with a message (dagger__set_errmsg) that carries the
 * backend's own error text (CL_OUT_OF_RESOURCES, cudaErrorIllegalAddress). Device pointers are
 * opaque (handle + offset): OpenCL buffers are objects. Streams are in-order queues; events
 * mark a point of a stream.
 * Thread safety: every op may be called from any thread, concurrently, except open/close.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_GPU_H
#define DAGGER_SRC_GPU_H

#include <stddef.h>

#include "dagger/gpu.h"

/* Called by a backend when the work enqueued on a stream before dagger__device_ops.notify has
 * finished: `status` 0, or the backend's error code (text through errname). Runs on a thread of
 * the backend; it must not call the backend. */
typedef void (*dagger__device_cb)(void *ud, int status);

struct dagger__device_ops {
    const char *name;
    int kind; /* dagger_gpu_kind_t */
    /* The number of devices (0 with the reason in `why`). Called once per process. */
    int (*probe)(char *why, size_t cap);
    /* Open device `index` of this backend; `name` gets its product name. */
    int (*open)(int index, void **dev, char *name, size_t namecap, size_t *mem_total);
    void (*close)(void *dev);
    int (*mem_info)(void *dev, size_t *free_bytes, size_t *total);
    /* Raw device memory; the pool in device.c calls these only to grow or to shrink. */
    int (*alloc)(void *dev, size_t n, dagger_dptr_t *out);
    void (*free)(void *dev, dagger_dptr_t p);
    /* Page-locked host memory for fast copies (may fall back to plain memory). */
    void *(*host_alloc)(void *dev, size_t n);
    void (*host_free)(void *dev, void *p, size_t n);
    int (*stream_create)(void *dev, void **s);
    void (*stream_destroy)(void *dev, void *s);
    /* Asynchronous copies on stream `s`; host memory must stay alive until they finish. */
    int (*copy_h2d)(void *dev, void *s, dagger_dptr_t dst, const void *src, size_t n);
    int (*copy_d2h)(void *dev, void *s, void *dst, dagger_dptr_t src, size_t n);
    /* From `src` of device `sdev` (the same backend) into `dst` of `dev`. */
    int (*copy_d2d)(void *dev, void *s, dagger_dptr_t dst, void *sdev, dagger_dptr_t src, size_t n);
    int (*copy2d_h2d)(void *dev, void *s, dagger_dptr_t dst, size_t dpitch, const void *src,
                      size_t spitch, size_t width, size_t rows);
    int (*copy2d_d2h)(void *dev, void *s, void *dst, size_t dpitch, dagger_dptr_t src,
                      size_t spitch, size_t width, size_t rows);
    /* Events: record a point of `s`; query (1 done, 0 not yet, < 0 failed); make stream `s`
     * wait for it; block the calling thread until it is reached; destroy. */
    int (*event_record)(void *dev, void *s, void **ev);
    int (*event_query)(void *ev);
    int (*event_wait)(void *dev, void *s, void *ev);
    int (*event_sync)(void *ev);
    void (*event_destroy)(void *ev);
    /* Call cb(ud, status) once everything enqueued on `s` so far has finished. */
    int (*notify)(void *dev, void *s, dagger__device_cb cb, void *ud);
    /* The name of a status passed to a callback ("CL_OUT_OF_RESOURCES"). */
    const char *(*errname)(int status);
    /* The native handle behind a stream (cl_command_queue, cudaStream_t). */
    void *(*stream_native)(void *s);
    /* Optional: make `dev` current on the calling thread before a device body runs. */
    int (*activate)(void *dev);
    /* Optional: hold (on = 1) and release (on = 0) the backend's submission lock around a
     * device body, for runtimes that cannot take submissions from several threads at once. */
    void (*serialize)(void *dev, int on);
};

/* Backends compiled in (NULL when not built). */
extern const struct dagger__device_ops dagger__opencl_ops;
extern const struct dagger__device_ops dagger__cuda_ops;
extern const struct dagger__device_ops dagger__fake_ops;

/* The fake device (tests): `ndev` devices of `mem` bytes each, with injected failures. After
 * this, the process sees only fake devices. Call before the first context opens. */
struct dagger__fake_faults {
    int fail_alloc;  /* the n-th raw allocation fails (1-based; 0: never) */
    int fail_copy;   /* the n-th copy fails with FAKE_COPY_FAILED (0: never) */
    int fail_launch; /* the n-th launch fails with FAKE_LAUNCH_FAILED (0: never) */
    int slow_us;     /* every stream operation takes this long (slow events) */
};
void dagger__gpu_fake_setup(int ndev, size_t mem, const struct dagger__fake_faults *f);
/* The host address behind a fake device pointer (the handle itself is poisoned). */
void *dagger__gpu_fake_host(dagger_dptr_t p);
/* Inside a fake device body: enqueue fn(ud) on the task's stream, as a kernel. */
int dagger__gpu_fake_launch(dagger_tc_t *tc, void (*fn)(void *ud), void *ud);
/* The order of operations on all fake streams so far: each copy and launch appends its tag. */
size_t dagger__gpu_fake_log(char *buf, size_t cap);

/* Inside a device body: the native stream of the task (NULL: not a device body). */
void *dagger__gpu_tc_stream(const dagger_tc_t *tc, int kind);
/* The backend device handle of device `dev` when it is of `kind` (NULL otherwise). */
void *dagger__gpu_device_handle(int dev, int kind);

#endif /* DAGGER_SRC_GPU_H */
