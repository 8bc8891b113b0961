/* bench/gpu/choice.c - the choice between a task's CPU body and its OpenCL body by the cost
 * model, against both fixed choices, on the first OpenCL device.
 *
 *   gpu.choice  GPU_TASKS tasks spawned at once, each y = f(x) into a fresh chunk from one
 *               shared input x, then waited for; us per task. `dagger`: the scope allows every
 *               thread and the OpenCL devices, and the task carries both bodies (placement
 *               weighs the run-time history of each); `threads`: the CPU body only; `opencl`:
 *               the OpenCL devices only. The ratios dagger/threads and dagger/opencl say how
 *               close the choice comes to the better fixed one (1.0 or less: as good).
 *   work=small  x + 1 over 1024 floats: a launch costs more than the work;
 *   work=heavy  64 multiply-adds per element over 65536 floats.
 * The history is the process's: the first repetition warms it (3 runs on each side), and the
 * best repetition is kept, as for every row.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/opencl.h>
#include <string.h>

#include "problem.h"

#define HEAVY_ITERS 64

static const char *SRC = "__kernel void small(__global const float *x, __global float *y)\n"
                         "{ size_t i = get_global_id(0); y[i] = x[i] + 1.0f; }\n"
                         "__kernel void heavy(__global const float *x, __global float *y)\n"
                         "{ size_t i = get_global_id(0); float v = x[i];\n"
                         "  for (int k = 0; k < 64; k++) v = v * 0.999f + 0.5f; y[i] = v; }\n";

/* y = f(x) on the device: `name` is the kernel. */
static int run_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out, const char *name)
{
    cl_kernel k;
    int rc = dagger_tc_cl_kernel(tc, SRC, name, &k);
    if (rc)
        return rc;
    size_t bytes = dagger_chunk_size(dagger_arg_chunk(a, 0)), n = bytes / sizeof(float);
    cl_mem x = dagger_dptr_cl_mem(dagger_arg_dptr(a, 0));
    dagger_chunk_t *r;
    dagger_dptr_t y;
    rc = dagger_tc_dchunk_create(tc, bytes, &r, &y);
    if (rc) {
        clReleaseKernel(k);
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    }
    cl_mem ym = dagger_dptr_cl_mem(y);
    clSetKernelArg(k, 0, sizeof x, &x);
    clSetKernelArg(k, 1, sizeof ym, &ym);
    *out = dagger_chunk_give(tc, r);
    cl_int st = clEnqueueNDRangeKernel(dagger_tc_cl_queue(tc), k, 1, NULL, &n, NULL, 0, NULL, NULL);
    clReleaseKernel(k);
    return st == CL_SUCCESS ? 0 : dagger_fail(tc, DAGGER_ETASK, "enqueue: %d", (int)st);
}

static int small_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return run_cl(tc, a, out, "small");
}

static int heavy_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return run_cl(tc, a, out, "heavy");
}

/* y = f(x) on a thread. */
static int run_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out, int heavy)
{
    size_t n;
    const float *x = dagger_arg_array(a, 0, DAGGER_ELT_F32, &n);
    dagger_chunk_t *r;
    if (!x || dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F32, 1, &n, &r))
        return dagger_fail(tc, DAGGER_ENOMEM, "no input or out of memory");
    float *y = dagger_chunk_data(r);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (heavy)
            for (int k = 0; k < HEAVY_ITERS; k++)
                v = v * 0.999f + 0.5f;
        else
            v += 1.0f;
        y[i] = v;
    }
    *out = dagger_chunk_give(tc, r);
    return 0;
}

static int small_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return run_cpu(tc, a, out, 0);
}

static int heavy_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return run_cpu(tc, a, out, 1);
}

static const dagger_impl_t small_impls[] = {{DAGGER_IMPL_OPENCL, small_cl}};
static const dagger_impl_t heavy_impls[] = {{DAGGER_IMPL_OPENCL, heavy_cl}};

/* Best us per task over the repetitions, or a negative value on a failure (reported). */
static double run(dagger_ctx_t *ctx, const dagger_task_opts_t *o, dagger_fn_t cpu,
                  dagger_chunk_t *x, long n)
{
    dagger_task_t **t = malloc(sizeof *t * (size_t)n);
    if (!t)
        return -1;
    double best = 1e30;
    for (long rep = 0; rep < GPU_REPS + 1; rep++) {
        double t0 = gpu_now();
        for (long i = 0; i < n; i++) {
            dagger_value_t v = dagger_chunkv(x);
            t[i] = dagger_spawnv_opts(ctx, o, cpu, &v, 1);
        }
        int bad = 0;
        for (long i = 0; i < n; i++) {
            if (!t[i] || dagger_wait(t[i]) != 0 || dagger_task_error(t[i])) {
                if (!bad)
                    fprintf(stderr, "ERROR gpu.choice: task %ld: %s\n", i,
                            t[i] ? dagger_task_errmsg(t[i]) : dagger_last_errmsg());
                bad = 1;
            }
            dagger_task_release(t[i]);
        }
        double dt = (gpu_now() - t0) / (double)n * 1e6;
        if (bad) {
            free(t);
            return -1;
        }
        if (rep && dt < best) /* the first one warms the history (and builds the kernels) */
            best = dt;
    }
    free(t);
    return best;
}

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0)
        return 1;
    if (dagger_gpu_count(DAGGER_GPU_OPENCL) == 0) {
        fprintf(stderr, "bench_gpuchoice_dagger: no OpenCL device, skipped\n");
        return dagger_ctx_close(ctx) ? 1 : 0;
    }
    dagger_scope_t *gpus = dagger_scope_gpu(DAGGER_GPU_OPENCL, -1);
    dagger_scope_t *both = dagger_scope_union(gpus, dagger_scope_any());
    long n = GPU_TASKS / 4 > 0 ? GPU_TASKS / 4 : 1;
    static const struct {
        const char *name;
        size_t elems;
        dagger_fn_t cpu;
        const dagger_impl_t *impls;
    } works[] = {{"small", 1024, small_cpu, small_impls}, {"heavy", 65536, heavy_cpu, heavy_impls}};
    int rc = 0;
    for (size_t w = 0; w < sizeof works / sizeof works[0] && !rc; w++) {
        size_t elems = works[w].elems;
        dagger_chunk_t *x;
        if (dagger_chunk_create_array(ctx, DAGGER_ELT_F32, 1, &elems, &x) != 0) {
            rc = 1;
            break;
        }
        float *px = dagger_chunk_data(x);
        for (size_t i = 0; i < elems; i++)
            px[i] = (float)(i % 100);
        char param[64];
        snprintf(param, sizeof param, "work=%s,tasks=%ld", works[w].name, n);
        static const char *const impl[] = {"dagger", "threads", "opencl"};
        for (int mode = 0; mode < 3 && !rc; mode++) {
            dagger_task_opts_t o;
            dagger_task_opts_init(&o);
            o.scope = mode == 0 ? both : mode == 1 ? dagger_scope_any() : gpus;
            o.impls = mode == 1 ? NULL : works[w].impls;
            o.nimpls = mode == 1 ? 0 : 1;
            double us = run(ctx, &o, works[w].cpu, x, n);
            if (us < 0)
                rc = 1;
            else
                gpu_result("gpu.choice", impl[mode], param, us, "us/task");
        }
        dagger_chunk_release(x);
    }
    dagger_scope_release(both);
    dagger_scope_release(gpus);
    if (dagger_ctx_close(ctx) != 0)
        rc = 1;
    return rc;
}
