/* src/gpu/cuda/cuda.c - the CUDA device backend (runtime API).
 *
 * Design: every op first makes its device current on the calling thread. Streams are
 * non-blocking streams, events have timing disabled, copies between devices are
 * cudaMemcpyPeerAsync, and notify is a stream callback (which gets the stream's status and
 * never calls CUDA). Host buffers come from cudaMallocHost.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "dagger/cuda.h"
#include "gpu/gpu_int.h"

struct cudev {
    int ordinal;
};

static struct cudev cudevs[GPU_MAX_DEVICES];

static int cu_fail(const char *what, cudaError_t e)
{
    int code = e == cudaErrorMemoryAllocation ? DAGGER_ENOMEM : DAGGER_ETASK;
    return dagger__set_errmsg(code, "CUDA %s: %s (%s)", what, cudaGetErrorName(e),
                              cudaGetErrorString(e));
}

#define CU_TRY(what, call)                                                                         \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return cu_fail(what, e_);                                                              \
    } while (0)

static int set_dev(void *dev)
{
    CU_TRY("cudaSetDevice", cudaSetDevice(((struct cudev *)dev)->ordinal));
    return 0;
}

static int c_probe(char *why, size_t cap)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(why, cap, "CUDA: %s", cudaGetErrorName(e));
        return 0;
    }
    return n > GPU_MAX_DEVICES ? GPU_MAX_DEVICES : n;
}

static int c_open(int index, void **dev, char *name, size_t namecap, size_t *total)
{
    struct cudaDeviceProp prop;
    CU_TRY("cudaGetDeviceProperties", cudaGetDeviceProperties(&prop, index));
    snprintf(name, namecap, "%s", prop.name);
    *total = prop.totalGlobalMem;
    cudevs[index].ordinal = index;
    *dev = &cudevs[index];
    /* Peers: direct copies between devices where the hardware allows them. */
    int n = 0;
    cudaGetDeviceCount(&n);
    cudaSetDevice(index);
    for (int k = 0; k < n; k++) {
        int ok = 0;
        if (k != index && cudaDeviceCanAccessPeer(&ok, index, k) == cudaSuccess && ok)
            (void)cudaDeviceEnablePeerAccess(k, 0);
    }
    (void)cudaGetLastError();
    return 0;
}

static void c_close(void *dev) { (void)dev; }

static int c_mem_info(void *dev, size_t *free_bytes, size_t *total)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    CU_TRY("cudaMemGetInfo", cudaMemGetInfo(free_bytes, total));
    return 0;
}

static int c_alloc(void *dev, size_t n, dagger_dptr_t *out)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    void *p = NULL;
    CU_TRY("cudaMalloc", cudaMalloc(&p, n));
    out->handle = (uintptr_t)p;
    out->offset = 0;
    return 0;
}

static void c_free(void *dev, dagger_dptr_t p)
{
    if (set_dev(dev) == 0)
        cudaFree((void *)p.handle);
}

static void *c_host_alloc(void *dev, size_t n)
{
    void *p = NULL;
    return cudaMallocHost(&p, n ? n : 1) == cudaSuccess ? p : NULL;
}

static void c_host_free(void *dev, void *p, size_t n) { cudaFreeHost(p); }

static int c_stream_create(void *dev, void **out)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    cudaStream_t s;
    CU_TRY("cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *out = s;
    return 0;
}

static void c_stream_destroy(void *dev, void *s)
{
    if (set_dev(dev) == 0) {
        cudaStreamSynchronize(s);
        cudaStreamDestroy(s);
    }
}

static void *addr(dagger_dptr_t p) { return (char *)p.handle + p.offset; }

static int c_copy_h2d(void *dev, void *s, dagger_dptr_t dst, const void *src, size_t n)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    CU_TRY("cudaMemcpyAsync", cudaMemcpyAsync(addr(dst), src, n, cudaMemcpyHostToDevice, s));
    return 0;
}

static int c_copy_d2h(void *dev, void *s, void *dst, dagger_dptr_t src, size_t n)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    CU_TRY("cudaMemcpyAsync", cudaMemcpyAsync(dst, addr(src), n, cudaMemcpyDeviceToHost, s));
    return 0;
}

static int c_copy_d2d(void *dev, void *s, dagger_dptr_t dst, void *sdev, dagger_dptr_t src,
                      size_t n)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    CU_TRY("cudaMemcpyPeerAsync",
           cudaMemcpyPeerAsync(addr(dst), ((struct cudev *)dev)->ordinal, addr(src),
                               ((struct cudev *)sdev)->ordinal, n, s));
    return 0;
}

static int c_copy2d_h2d(void *dev, void *s, dagger_dptr_t dst, size_t dpitch, const void *src,
                        size_t spitch, size_t width, size_t rows)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    CU_TRY("cudaMemcpy2DAsync", cudaMemcpy2DAsync(addr(dst), dpitch, src, spitch, width, rows,
                                                  cudaMemcpyHostToDevice, s));
    return 0;
}

static int c_copy2d_d2h(void *dev, void *s, void *dst, size_t dpitch, dagger_dptr_t src,
                        size_t spitch, size_t width, size_t rows)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    CU_TRY("cudaMemcpy2DAsync", cudaMemcpy2DAsync(dst, dpitch, addr(src), spitch, width, rows,
                                                  cudaMemcpyDeviceToHost, s));
    return 0;
}

static int c_event_record(void *dev, void *s, void **out)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    cudaEvent_t ev;
    CU_TRY("cudaEventCreateWithFlags", cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, s);
    if (e != cudaSuccess) {
        cudaEventDestroy(ev);
        return cu_fail("cudaEventRecord", e);
    }
    *out = ev;
    return 0;
}

static int c_event_query(void *ev)
{
    cudaError_t e = cudaEventQuery(ev);
    return e == cudaSuccess ? 1 : e == cudaErrorNotReady ? 0 : -1;
}

static int c_event_wait(void *dev, void *s, void *ev)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    CU_TRY("cudaStreamWaitEvent", cudaStreamWaitEvent(s, ev, 0));
    return 0;
}

static int c_event_sync(void *ev)
{
    CU_TRY("cudaEventSynchronize", cudaEventSynchronize(ev));
    return 0;
}

static void c_event_destroy(void *ev) { cudaEventDestroy(ev); }

struct note {
    dagger__device_cb cb;
    void *ud;
};

static void CUDART_CB on_done(cudaStream_t s, cudaError_t status, void *ud)
{
    struct note n = *(struct note *)ud;
    dagger__free(ud);
    n.cb(n.ud, (int)status);
}

static int c_notify(void *dev, void *s, dagger__device_cb cb, void *ud)
{
    int rc = set_dev(dev);
    if (rc)
        return rc;
    struct note *n = dagger__malloc(sizeof *n);
    DAGGER_CHECK(n, DAGGER_ENOMEM, "CUDA: out of memory for a completion note");
    n->cb = cb;
    n->ud = ud;
    cudaError_t e = cudaStreamAddCallback(s, on_done, n, 0);
    if (e != cudaSuccess) {
        dagger__free(n);
        return cu_fail("cudaStreamAddCallback", e);
    }
    return 0;
}

static const char *c_errname(int st) { return cudaGetErrorName((cudaError_t)st); }
static void *c_stream_native(void *s) { return s; }

const struct dagger__device_ops dagger__cuda_ops = {
    .name = "cuda",
    .kind = DAGGER_GPU_CUDA,
    .probe = c_probe,
    .open = c_open,
    .close = c_close,
    .mem_info = c_mem_info,
    .alloc = c_alloc,
    .free = c_free,
    .host_alloc = c_host_alloc,
    .host_free = c_host_free,
    .stream_create = c_stream_create,
    .stream_destroy = c_stream_destroy,
    .copy_h2d = c_copy_h2d,
    .copy_d2h = c_copy_d2h,
    .copy_d2d = c_copy_d2d,
    .copy2d_h2d = c_copy2d_h2d,
    .copy2d_d2h = c_copy2d_d2h,
    .event_record = c_event_record,
    .event_query = c_event_query,
    .event_wait = c_event_wait,
    .event_sync = c_event_sync,
    .event_destroy = c_event_destroy,
    .notify = c_notify,
    .errname = c_errname,
    .stream_native = c_stream_native,
    .activate = set_dev,
};

cudaStream_t dagger_tc_cuda_stream(dagger_tc_t *tc)
{
    return (cudaStream_t)dagger__gpu_tc_stream(tc, DAGGER_GPU_CUDA);
}

int dagger_cuda_device(int dev)
{
    struct cudev *d = dagger__gpu_device_handle(dev, DAGGER_GPU_CUDA);
    return d ? d->ordinal : -1;
}
