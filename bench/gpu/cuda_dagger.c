/* bench/gpu/cuda_dagger.c - device tasks through dagger on the first CUDA device (see
 * problem.h); the CUDA rows beside bench/gpu/cuda.c.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/cuda.h>

#include "problem.h"

int bench_cuda_empty(cudaStream_t s, float *x);

static int empty_cuda(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return bench_cuda_empty(dagger_tc_cuda_stream(tc), NULL) == 0
               ? 0
               : dagger_fail(tc, DAGGER_ETASK, "launch failed");
}

static int reads_cuda(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)dagger_arg_dptr(a, 0);
    return 0;
}

static int cpu_never(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "ran on the CPU");
}

static const dagger_impl_t empty_impls[] = {{DAGGER_IMPL_CUDA, empty_cuda}};
static const dagger_impl_t reads_impls[] = {{DAGGER_IMPL_CUDA, reads_cuda}};

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0)
        return 1;
    if (dagger_gpu_count(DAGGER_GPU_CUDA) == 0) {
        fprintf(stderr, "bench_gpu_cuda_dagger: no CUDA device, skipped\n");
        return dagger_ctx_close(ctx) ? 1 : 0;
    }
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_CUDA, 0);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = g;
    o.impls = empty_impls;
    o.nimpls = 1;
    long n = GPU_TASKS, batch = 64;
    dagger_task_t *t[64];
    double best = 1e30;
    for (long rep = 0; rep < GPU_REPS + 1; rep++) {
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
    gpu_result("gpu.overhead", "dagger", "cuda empty kernel", best * 1e9, "ns/task");
    size_t bytes = GPU_BYTES;
    dagger_chunk_t *c;
    if (dagger_chunk_create(ctx, bytes, &c) != 0)
        return 1;
    o.impls = reads_impls;
    best = 1e30;
    for (long rep = 0; rep < GPU_REPS; rep++) {
        (void)dagger_chunk_data(c);
        dagger_value_t v = dagger_chunkv(c);
        double t0 = gpu_now();
        dagger_task_t *r = dagger_spawnv_opts(ctx, &o, cpu_never, &v, 1);
        if (dagger_wait(r) || dagger_task_error(r))
            return 1;
        double dt = gpu_now() - t0;
        dagger_task_release(r);
        if (dt < best)
            best = dt;
    }
    char param[64];
    snprintf(param, sizeof param, "cuda %zu MiB", bytes >> 20);
    gpu_result("gpu.h2d", "dagger", param, bytes / best / 1e9, "GB/s");
    dagger_chunk_release(c);
    dagger_scope_release(g);
    return dagger_ctx_close(ctx) ? 1 : 0;
}
