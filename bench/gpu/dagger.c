/* bench/gpu/dagger.c - device tasks through dagger on the first OpenCL device (see problem.h).
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/opencl.h>

#include "problem.h"

static const char *SRC = "__kernel void empty(__global float *x) { }\n";

static int empty_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    static _Thread_local cl_kernel k; /* one per worker: clSetKernelArg is not thread-safe */
    static _Thread_local cl_mem arg;
    if (!k) {
        int rc = dagger_tc_cl_kernel(tc, SRC, "empty", &k);
        if (rc)
            return rc;
        int dev = dagger_tc_device(tc, NULL);
        arg = clCreateBuffer(dagger_cl_context(dev), CL_MEM_READ_WRITE, 64, NULL, NULL);
        clSetKernelArg(k, 0, sizeof arg, &arg);
    }
    size_t one = 1;
    cl_int st =
        clEnqueueNDRangeKernel(dagger_tc_cl_queue(tc), k, 1, NULL, &one, NULL, 0, NULL, NULL);
    return st == CL_SUCCESS ? 0 : dagger_fail(tc, DAGGER_ETASK, "enqueue: %d", st);
}

static int reads_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)dagger_arg_dptr(a, 0); /* staged before the body runs */
    return 0;
}

static int cpu_never(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "ran on the CPU");
}

static const dagger_impl_t empty_impls[] = {{DAGGER_IMPL_OPENCL, empty_cl}};
static const dagger_impl_t reads_impls[] = {{DAGGER_IMPL_OPENCL, reads_cl}};

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0)
        return 1;
    if (dagger_gpu_count(DAGGER_GPU_OPENCL) == 0) {
        fprintf(stderr, "bench_gpu_dagger: no OpenCL device, skipped\n");
        return dagger_ctx_close(ctx) ? 1 : 0;
    }
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = g;
    o.impls = empty_impls;
    o.nimpls = 1;
    long n = GPU_TASKS, batch = 64;
    dagger_task_t **t = malloc(sizeof *t * (size_t)batch);
    double best = 1e30;
    for (long rep = 0; rep < GPU_REPS + 1; rep++) { /* the first builds the kernel */
        double t0 = gpu_now();
        for (long i = 0; i < n; i += batch) {
            for (long k = 0; k < batch; k++)
                t[k] = dagger_spawnv_opts(ctx, &o, cpu_never, NULL, 0);
            for (long k = 0; k < batch; k++) {
                if (dagger_wait(t[k]) || dagger_task_error(t[k])) {
                    fprintf(stderr, "task failed: %s\n", dagger_task_errmsg(t[k]));
                    return 1;
                }
                dagger_task_release(t[k]);
            }
        }
        double dt = (gpu_now() - t0) / (double)((n + batch - 1) / batch * batch);
        if (rep && dt < best)
            best = dt;
    }
    gpu_result("gpu.overhead", "dagger", "opencl empty kernel", best * 1e9, "ns/task");

    size_t bytes = GPU_BYTES;
    dagger_chunk_t *c;
    if (dagger_chunk_create(ctx, bytes, &c) != 0)
        return 1;
    o.impls = reads_impls;
    best = 1e30;
    for (long rep = 0; rep < GPU_REPS; rep++) {
        (void)dagger_chunk_data(c); /* the host copy is written: the device copy is stale */
        dagger_value_t v = dagger_chunkv(c);
        double t0 = gpu_now();
        dagger_task_t *r = dagger_spawnv_opts(ctx, &o, cpu_never, &v, 1);
        if (dagger_wait(r) || dagger_task_error(r)) {
            fprintf(stderr, "task failed: %s\n", dagger_task_errmsg(r));
            return 1;
        }
        double dt = gpu_now() - t0;
        dagger_task_release(r);
        if (dt < best)
            best = dt;
    }
    char param[64];
    snprintf(param, sizeof param, "opencl %zu MiB", bytes >> 20);
    gpu_result("gpu.h2d", "dagger", param, bytes / best / 1e9, "GB/s");
    dagger_chunk_release(c);
    free(t);
    dagger_scope_release(g);
    return dagger_ctx_close(ctx) ? 1 : 0;
}
