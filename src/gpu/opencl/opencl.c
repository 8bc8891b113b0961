/* src/gpu/opencl/opencl.c - the OpenCL device backend (tested on pocl's CPU devices).
 *
 * Design: one cl_context per platform holds all its devices, so buffers and events are shared
 * between them (device-to-device copies are clEnqueueCopyBuffer). Streams are in-order command
 * queues; an event is a marker; notify sets a completion callback on a marker and releases it
 * at once (the runtime keeps it until the callback ran), so the callback never calls OpenCL.
 * Programs built through dagger_tc_cl_kernel are cached per device and source.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "dagger/opencl.h"
#include "gpu/gpu_int.h"

#define MAX_CL_DEVICES 16

struct cldev {
    cl_platform_id platform;
    cl_context ctx;
    cl_device_id id;
};

static struct cldev found[MAX_CL_DEVICES];
static int nfound;

static const char *cl_name(int st)
{
    switch (st) {
#define E(x)                                                                                       \
    case x:                                                                                        \
        return #x;
        E(CL_SUCCESS)
        E(CL_DEVICE_NOT_FOUND)
        E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE)
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        E(CL_OUT_OF_RESOURCES)
        E(CL_OUT_OF_HOST_MEMORY)
        E(CL_PROFILING_INFO_NOT_AVAILABLE)
        E(CL_MEM_COPY_OVERLAP)
        E(CL_BUILD_PROGRAM_FAILURE)
        E(CL_MAP_FAILURE)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        E(CL_INVALID_VALUE)
        E(CL_INVALID_DEVICE)
        E(CL_INVALID_CONTEXT)
        E(CL_INVALID_COMMAND_QUEUE)
        E(CL_INVALID_MEM_OBJECT)
        E(CL_INVALID_PROGRAM)
        E(CL_INVALID_PROGRAM_EXECUTABLE)
        E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL)
        E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE)
        E(CL_INVALID_ARG_SIZE)
        E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION)
        E(CL_INVALID_WORK_GROUP_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET)
        E(CL_INVALID_EVENT_WAIT_LIST)
        E(CL_INVALID_EVENT)
        E(CL_INVALID_BUFFER_SIZE)
        E(CL_INVALID_GLOBAL_WORK_SIZE)
#undef E
    }
    return "CL_UNKNOWN_ERROR";
}

static int cl_fail(const char *what, cl_int st)
{
    int code = st == CL_OUT_OF_HOST_MEMORY || st == CL_MEM_OBJECT_ALLOCATION_FAILURE ? DAGGER_ENOMEM
                                                                                     : DAGGER_ETASK;
    return dagger__set_errmsg(code, "OpenCL %s: %s (%d)", what, cl_name(st), (int)st);
}

/* The submissions dagger makes are serialised (a device body's own enqueues are not: holding a
 * lock across a body would order it against the pool's lock). Blocking waits are made without
 * the lock. pocl 3.1's basic devices, which run commands inside the submitting thread, can hang
 * inside pocl in the eviction case: one thread, in a body's clEnqueueNDRangeKernel, blocks in
 * pocl_update_event_running while no other thread is inside pocl and no dagger lock or callback
 * is on its stack; it goes away only when finished markers are never released (docs/gpu.md).
 * Tests use pocl's pthread devices. */
static pthread_mutex_t cl_lock;
static pthread_once_t cl_lock_once = PTHREAD_ONCE_INIT;

static void cl_lock_init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&cl_lock, &a);
    pthread_mutexattr_destroy(&a);
}

static void lock(void)
{
    pthread_once(&cl_lock_once, cl_lock_init);
    pthread_mutex_lock(&cl_lock);
}

static void unlock(void) { pthread_mutex_unlock(&cl_lock); }

#define CL_TRY(what, call)                                                                         \
    do {                                                                                           \
        lock();                                                                                    \
        cl_int st_ = (call);                                                                       \
        unlock();                                                                                  \
        if (st_ != CL_SUCCESS)                                                                     \
            return cl_fail(what, st_);                                                             \
    } while (0)

static void release_finished(void);

static int o_probe(char *why, size_t cap)
{
    cl_platform_id plats[8];
    cl_uint np = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0) {
        snprintf(why, cap, "no OpenCL platform was found");
        return 0;
    }
    nfound = 0;
    for (cl_uint p = 0; p < np && p < 8; p++) {
        cl_device_id ids[MAX_CL_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_CL_DEVICES, ids, &nd) != CL_SUCCESS)
            continue;
        if (nd > (cl_uint)(MAX_CL_DEVICES - nfound))
            nd = (cl_uint)(MAX_CL_DEVICES - nfound);
        if (!nd)
            continue;
        cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plats[p], 0};
        cl_int st;
        cl_context ctx = clCreateContext(props, nd, ids, NULL, NULL, &st);
        if (st != CL_SUCCESS)
            continue;
        for (cl_uint d = 0; d < nd; d++) {
            if (d)
                clRetainContext(ctx);
            found[nfound++] = (struct cldev){plats[p], ctx, ids[d]};
        }
    }
    if (!nfound)
        snprintf(why, cap, "no OpenCL device was found");
    return nfound;
}

static int o_open(int index, void **dev, char *name, size_t namecap, size_t *total)
{
    struct cldev *d = &found[index];
    char buf[96] = "";
    clGetDeviceInfo(d->id, CL_DEVICE_NAME, sizeof buf - 1, buf, NULL);
    snprintf(name, namecap, "%s", buf);
    cl_ulong mem = 0;
    CL_TRY("clGetDeviceInfo",
           clGetDeviceInfo(d->id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL));
    *total = (size_t)mem;
    *dev = d;
    return 0;
}

static void o_close(void *dev)
{
    struct cldev *d = dev;
    release_finished();
    if (d->ctx)
        clReleaseContext(d->ctx);
    d->ctx = NULL;
}

static int o_mem_info(void *dev, size_t *free_bytes, size_t *total)
{
    struct cldev *d = dev;
    cl_ulong mem = 0;
    CL_TRY("clGetDeviceInfo",
           clGetDeviceInfo(d->id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL));
    *total = (size_t)mem;
    *free_bytes = (size_t)mem; /* OpenCL does not say */
    return 0;
}

static int o_alloc(void *dev, size_t n, dagger_dptr_t *out)
{
    struct cldev *d = dev;
    cl_int st;
    lock();
    cl_mem m = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, n, NULL, &st);
    unlock();
    if (st != CL_SUCCESS)
        return cl_fail("clCreateBuffer", st);
    out->handle = (uintptr_t)m;
    out->offset = 0;
    return 0;
}

static void o_free(void *dev, dagger_dptr_t p)
{
    lock();
    clReleaseMemObject((cl_mem)p.handle);
    unlock();
}

static void *o_host_alloc(void *dev, size_t n) { return dagger__malloc(n ? n : 1); }
static void o_host_free(void *dev, void *p, size_t n) { dagger__free(p); }

static int o_stream_create(void *dev, void **out)
{
    struct cldev *d = dev;
    cl_int st;
    lock();
    cl_command_queue q = clCreateCommandQueue(d->ctx, d->id, 0, &st);
    unlock();
    if (st != CL_SUCCESS)
        return cl_fail("clCreateCommandQueue", st);
    *out = q;
    return 0;
}

static void o_stream_destroy(void *dev, void *s)
{
    clFinish(s);
    lock();
    clReleaseCommandQueue(s);
    unlock();
}

static int o_copy_h2d(void *dev, void *s, dagger_dptr_t dst, const void *src, size_t n)
{
    CL_TRY("clEnqueueWriteBuffer", clEnqueueWriteBuffer(s, (cl_mem)dst.handle, CL_FALSE, dst.offset,
                                                        n, src, 0, NULL, NULL));
    return 0;
}

static int o_copy_d2h(void *dev, void *s, void *dst, dagger_dptr_t src, size_t n)
{
    CL_TRY("clEnqueueReadBuffer",
           clEnqueueReadBuffer(s, (cl_mem)src.handle, CL_FALSE, src.offset, n, dst, 0, NULL, NULL));
    return 0;
}

static int o_copy_d2d(void *dev, void *s, dagger_dptr_t dst, void *sdev, dagger_dptr_t src,
                      size_t n)
{
    struct cldev *a = dev, *b = sdev;
    if (a->ctx == b->ctx) {
        CL_TRY("clEnqueueCopyBuffer",
               clEnqueueCopyBuffer(s, (cl_mem)src.handle, (cl_mem)dst.handle, src.offset,
                                   dst.offset, n, 0, NULL, NULL));
        return 0;
    }
    /* Two platforms: through the host (blocking). */
    void *tmp = dagger__malloc(n);
    DAGGER_CHECK(tmp, DAGGER_ENOMEM, "OpenCL: out of memory for a %zu-byte bounce buffer", n);
    cl_int st;
    cl_command_queue q = clCreateCommandQueue(b->ctx, b->id, 0, &st);
    if (st == CL_SUCCESS) {
        st = clEnqueueReadBuffer(q, (cl_mem)src.handle, CL_TRUE, src.offset, n, tmp, 0, NULL, NULL);
        clReleaseCommandQueue(q);
    }
    if (st == CL_SUCCESS)
        st =
            clEnqueueWriteBuffer(s, (cl_mem)dst.handle, CL_TRUE, dst.offset, n, tmp, 0, NULL, NULL);
    dagger__free(tmp);
    return st == CL_SUCCESS ? 0 : cl_fail("copy between platforms", st);
}

static int o_copy2d_h2d(void *dev, void *s, dagger_dptr_t dst, size_t dpitch, const void *src,
                        size_t spitch, size_t width, size_t rows)
{
    size_t boff[3] = {dst.offset, 0, 0}, hoff[3] = {0, 0, 0}, reg[3] = {width, rows, 1};
    CL_TRY("clEnqueueWriteBufferRect",
           clEnqueueWriteBufferRect(s, (cl_mem)dst.handle, CL_FALSE, boff, hoff, reg, dpitch, 0,
                                    spitch, 0, src, 0, NULL, NULL));
    return 0;
}

static int o_copy2d_d2h(void *dev, void *s, void *dst, size_t dpitch, dagger_dptr_t src,
                        size_t spitch, size_t width, size_t rows)
{
    size_t boff[3] = {src.offset, 0, 0}, hoff[3] = {0, 0, 0}, reg[3] = {width, rows, 1};
    CL_TRY("clEnqueueReadBufferRect",
           clEnqueueReadBufferRect(s, (cl_mem)src.handle, CL_FALSE, boff, hoff, reg, spitch, 0,
                                   dpitch, 0, dst, 0, NULL, NULL));
    return 0;
}

static int o_event_record(void *dev, void *s, void **out)
{
    cl_event ev;
    CL_TRY("clEnqueueMarkerWithWaitList", clEnqueueMarkerWithWaitList(s, 0, NULL, &ev));
    lock();
    clFlush(s);
    unlock();
    *out = ev;
    return 0;
}

static int o_event_query(void *ev)
{
    cl_int st = CL_QUEUED;
    if (clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL) != CL_SUCCESS)
        return -1;
    return st < 0 ? -1 : st == CL_COMPLETE;
}

static int o_event_wait(void *dev, void *s, void *ev)
{
    cl_event e = ev;
    CL_TRY("clEnqueueBarrierWithWaitList", clEnqueueBarrierWithWaitList(s, 1, &e, NULL));
    return 0;
}

static int o_event_sync(void *ev)
{
    cl_event e = ev;
    cl_int st = clWaitForEvents(1, &e);
    if (st == CL_SUCCESS) {
        cl_int ex = CL_COMPLETE;
        clGetEventInfo(e, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof ex, &ex, NULL);
        if (ex < 0)
            st = ex;
    }
    return st == CL_SUCCESS ? 0 : cl_fail("event", st);
}

static void o_event_destroy(void *ev)
{
    lock();
    clReleaseEvent(ev);
    unlock();
}

struct note {
    dagger__device_cb cb;
    void *ud;
    cl_event ev;
    _Atomic int refs;          /* the callback and o_notify: the last one lists it finished */
    struct note *_Atomic next; /* the list of finished notes, whose events are released later */
};

/* Finished notes: the callback must not call OpenCL, so their marker events are released by
 * the next notify (or at close), once both the callback and o_notify's own calls are done with
 * them. With pocl 3.1's basic devices this release, made from another thread, is what hangs a
 * later enqueue inside pocl (docs/gpu.md: neither a 50 ms delay nor keeping each queue's newest
 * marker avoids it; only never releasing does). */
static struct note *_Atomic finished;

static void release_finished(void)
{
    struct note *n = atomic_exchange_explicit(&finished, NULL, memory_order_acquire);
    while (n) {
        struct note *next = atomic_load_explicit(&n->next, memory_order_relaxed);
        o_event_destroy(n->ev);
        dagger__free(n);
        n = next;
    }
}

/* Drop one of the note's two users; the last one makes its event releasable. */
static void note_put(struct note *n)
{
    if (atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1)
        return;
    struct note *h = atomic_load_explicit(&finished, memory_order_relaxed);
    do
        atomic_store_explicit(&n->next, h, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&finished, &h, n, memory_order_release,
                                                  memory_order_relaxed));
}

static void CL_CALLBACK on_complete(cl_event ev, cl_int status, void *ud)
{
    struct note *n = ud;
    dagger__device_cb cb = n->cb;
    void *cud = n->ud;
    note_put(n);
    cb(cud, status < 0 ? status : 0);
}

static int o_notify(void *dev, void *s, dagger__device_cb cb, void *ud)
{
    release_finished();
    struct note *n = dagger__malloc(sizeof *n);
    DAGGER_CHECK(n, DAGGER_ENOMEM, "OpenCL: out of memory for a completion note");
    n->cb = cb;
    n->ud = ud;
    /* pocl's basic devices run the marker, and call the callback, inside clSetEventCallback or
     * clFlush below: until this call is done with n->ev, another thread must not release it. */
    atomic_init(&n->refs, 2);
    lock();
    cl_int st = clEnqueueMarkerWithWaitList(s, 0, NULL, &n->ev);
    if (st != CL_SUCCESS) {
        unlock();
        dagger__free(n);
        return cl_fail("clEnqueueMarkerWithWaitList", st);
    }
    /* Once the callback is set, the task may complete and its context close at any moment:
     * nothing here touches the queue or the note afterwards but the note's reference. */
    st = clSetEventCallback(n->ev, CL_COMPLETE, on_complete, n);
    if (st == CL_SUCCESS)
        clFlush(s); /* the queue lives until every context closed, after this task */
    unlock();
    if (st != CL_SUCCESS) {
        o_event_destroy(n->ev);
        dagger__free(n);
        return cl_fail("clSetEventCallback", st);
    }
    note_put(n);
    return 0;
}

static const char *o_errname(int st) { return cl_name(st); }
static void *o_stream_native(void *s) { return s; }

const struct dagger__device_ops dagger__opencl_ops = {
    .name = "opencl",
    .kind = DAGGER_GPU_OPENCL,
    .probe = o_probe,
    .open = o_open,
    .close = o_close,
    .mem_info = o_mem_info,
    .alloc = o_alloc,
    .free = o_free,
    .host_alloc = o_host_alloc,
    .host_free = o_host_free,
    .stream_create = o_stream_create,
    .stream_destroy = o_stream_destroy,
    .copy_h2d = o_copy_h2d,
    .copy_d2h = o_copy_d2h,
    .copy_d2d = o_copy_d2d,
    .copy2d_h2d = o_copy2d_h2d,
    .copy2d_d2h = o_copy2d_d2h,
    .event_record = o_event_record,
    .event_query = o_event_query,
    .event_wait = o_event_wait,
    .event_sync = o_event_sync,
    .event_destroy = o_event_destroy,
    .notify = o_notify,
    .errname = o_errname,
    .stream_native = o_stream_native,
};

/* ---------------------------------------------------------------- the public interop calls */

cl_command_queue dagger_tc_cl_queue(dagger_tc_t *tc)
{
    return (cl_command_queue)dagger__gpu_tc_stream(tc, DAGGER_GPU_OPENCL);
}

cl_context dagger_cl_context(int dev)
{
    struct cldev *d = dagger__gpu_device_handle(dev, DAGGER_GPU_OPENCL);
    return d ? d->ctx : NULL;
}

cl_device_id dagger_cl_device(int dev)
{
    struct cldev *d = dagger__gpu_device_handle(dev, DAGGER_GPU_OPENCL);
    return d ? d->id : NULL;
}

#define MAX_PROGRAMS 64

static struct {
    pthread_mutex_t lock;
    int n;
    struct {
        uint64_t hash;
        cl_device_id id;
        cl_program prog;
    } e[MAX_PROGRAMS];
} progs = {PTHREAD_MUTEX_INITIALIZER, 0, {{0, 0, 0}}};

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Build (once per device and source) the program; on failure fail the task with the log. */
static int build(dagger_tc_t *tc, struct cldev *d, int dev, const char *src, cl_program *out)
{
    uint64_t h = fnv(src);
    pthread_mutex_lock(&progs.lock);
    for (int i = 0; i < progs.n; i++) {
        if (progs.e[i].hash == h && progs.e[i].id == d->id) {
            *out = progs.e[i].prog;
            pthread_mutex_unlock(&progs.lock);
            return 0;
        }
    }
    cl_int st;
    cl_program p = clCreateProgramWithSource(d->ctx, 1, &src, NULL, &st);
    if (st == CL_SUCCESS) {
        st = clBuildProgram(p, 1, &d->id, "", NULL, NULL);
        if (st != CL_SUCCESS) {
            char log[2048] = "";
            size_t len = 0;
            clGetProgramBuildInfo(p, d->id, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &len);
            clReleaseProgram(p);
            pthread_mutex_unlock(&progs.lock);
            return dagger_fail(tc, DAGGER_ETASK,
                               "OpenCL build failed on device(%d) (%s): %s (%d); build log:\n%s",
                               dev, "clBuildProgram", cl_name(st), (int)st, log);
        }
        if (progs.n < MAX_PROGRAMS) {
            progs.e[progs.n].hash = h;
            progs.e[progs.n].id = d->id;
            progs.e[progs.n++].prog = p;
        }
    }
    pthread_mutex_unlock(&progs.lock);
    if (st != CL_SUCCESS)
        return dagger_fail(tc, DAGGER_ETASK, "OpenCL clCreateProgramWithSource: %s (%d)",
                           cl_name(st), (int)st);
    *out = p;
    return 0;
}

int dagger_tc_cl_kernel(dagger_tc_t *tc, const char *src, const char *name, cl_kernel *out)
{
    DAGGER_CHECK(out && src && name, DAGGER_EINVAL, "dagger_tc_cl_kernel: NULL argument");
    *out = NULL;
    int kind;
    int dev = dagger_tc_device(tc, &kind);
    if (dev < 0 || kind != DAGGER_GPU_OPENCL)
        return dagger_fail(tc, DAGGER_ESTATE,
                           "dagger_tc_cl_kernel: the task is not running on "
                           "an OpenCL device");
    struct cldev *d = dagger__gpu_device_handle(dev, DAGGER_GPU_OPENCL);
    cl_program p;
    int rc = build(tc, d, dev, src, &p);
    if (rc)
        return rc;
    cl_int st;
    cl_kernel k = clCreateKernel(p, name, &st);
    if (st != CL_SUCCESS)
        return dagger_fail(tc, DAGGER_ETASK, "OpenCL clCreateKernel '%s': %s (%d)", name,
                           cl_name(st), (int)st);
    *out = k;
    return 0;
}
