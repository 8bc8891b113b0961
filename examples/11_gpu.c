/* examples/11_gpu.c - one task, two implementations: a CPU body and an OpenCL kernel, run under
 * a GPU scope, with the data moving to the device and back by itself.
 *
 * Eight chunks of floats are mapped with y = 2x + 1 by tasks that list an OpenCL
 * implementation; the scope allows any OpenCL device and any thread, so the cost model
 * chooses: a device first while it learns the run times of both bodies (pocl's CPU devices on
 * CI), then whichever finishes sooner (docs/gpu.md), and the CPU body when there is no device.
 * A CPU task then sums every result: the results live on the devices, and dagger copies them
 * back to the host before the sum runs (Dagger.jl's automatic data movement).
 * Exit status: 0 when the sum equals the sequential one.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/opencl.h>
#include <stdio.h>

#define PIECES 8
#define N (1 << 16)

static const char *KERNEL = "__kernel void axpb(__global const float *x, __global float *y)\n"
                            "{ size_t i = get_global_id(0); y[i] = 2.0f * x[i] + 1.0f; }\n";

/* The CPU body: a new chunk y = 2x + 1. */
static int axpb_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const float *x = dagger_arg_array(a, 0, DAGGER_ELT_F32, &n);
    dagger_chunk_t *y;
    if (dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F32, 1, &n, &y) != 0)
        return dagger_fail(tc, DAGGER_ENOMEM, "no memory for %zu floats", n);
    float *py = dagger_chunk_data(y);
    for (size_t i = 0; i < n; i++)
        py[i] = 2.0f * x[i] + 1.0f;
    *out = dagger_chunk_give(tc, y);
    return 0;
}

/* The OpenCL body: the same on the task's device; enqueue, return, complete on the event. */
static int axpb_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    cl_kernel k;
    int rc = dagger_tc_cl_kernel(tc, KERNEL, "axpb", &k); /* built once per device */
    if (rc)
        return rc;
    size_t n = dagger_chunk_size(dagger_arg_chunk(a, 0)) / sizeof(float);
    cl_mem x = dagger_dptr_cl_mem(dagger_arg_dptr(a, 0));
    dagger_chunk_t *y;
    dagger_dptr_t yd;
    rc = dagger_tc_dchunk_create(tc, n * sizeof(float), &y, &yd);
    if (rc) {
        clReleaseKernel(k);
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    }
    if (dagger_chunk_set_type(y, DAGGER_ELT_F32, 1, &n) != 0) {
        clReleaseKernel(k);
        dagger_chunk_release(y);
        return dagger_fail(tc, DAGGER_EINVAL, "%s", dagger_last_errmsg());
    }
    cl_mem ym = dagger_dptr_cl_mem(yd);
    clSetKernelArg(k, 0, sizeof x, &x);
    clSetKernelArg(k, 1, sizeof ym, &ym);
    cl_int st = clEnqueueNDRangeKernel(dagger_tc_cl_queue(tc), k, 1, NULL, &n, NULL, 0, NULL, NULL);
    clReleaseKernel(k);
    *out = dagger_chunk_give(tc, y);
    return st == CL_SUCCESS ? 0 : dagger_fail(tc, DAGGER_ETASK, "clEnqueueNDRangeKernel: %d", st);
}

static const dagger_impl_t axpb_impls[] = {{DAGGER_IMPL_OPENCL, axpb_cl}};

/* A CPU task: the sum of every element of every argument (each pulled back to the host). */
static int sum(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double s = 0;
    for (size_t i = 0; i < dagger_args_count(a); i++) {
        size_t n;
        const float *y = dagger_arg_array(a, i, DAGGER_ELT_F32, &n);
        for (size_t k = 0; k < n; k++)
            s += y[k];
    }
    *out = dagger_f64(s);
    return 0;
}

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0)
        return 1;
    dagger_scope_t *gpus = dagger_scope_gpu(DAGGER_GPU_OPENCL, -1);
    dagger_scope_t *where = dagger_scope_union(gpus, dagger_scope_any());
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = where; /* NULL (out of memory) fails the tasks: reported at fetch */
    o.impls = axpb_impls;
    o.nimpls = 1;
    dagger_value_t parts[PIECES];
    int made = 0, rc = 0;
    double want = 0, got = 0;
    for (int p = 0; p < PIECES && !rc; p++) {
        size_t n = N;
        dagger_chunk_t *x;
        rc = dagger_chunk_create_array(ctx, DAGGER_ELT_F32, 1, &n, &x);
        if (rc) {
            printf("failed: %s\n", dagger_last_errmsg());
            break;
        }
        float *px = dagger_chunk_data(x);
        if (!px) {
            printf("failed: %s\n", dagger_last_errmsg());
            dagger_chunk_release(x);
            rc = DAGGER_ENOMEM;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            px[i] = (float)((p * N + i) % 100);
            want += 2.0 * px[i] + 1.0;
        }
        dagger_value_t v = dagger_chunkv(x);
        dagger_task_t *t = dagger_spawnv_opts(ctx, &o, axpb_cpu, &v, 1);
        dagger_chunk_release(x);
        if (!t) {
            printf("failed: %s\n", dagger_last_errmsg());
            rc = DAGGER_ENOMEM;
            break;
        }
        parts[made++] = dagger_taskv(t);
    }
    dagger_task_t *total = rc ? NULL : dagger_spawnv(ctx, sum, parts, PIECES);
    if (!rc && !total) {
        printf("failed: %s\n", dagger_last_errmsg());
        rc = DAGGER_ENOMEM;
    }
    if (!rc) {
        rc = dagger_fetch_f64(total, &got);
        if (rc)
            printf("failed: %s\n", dagger_task_errmsg(total));
        else
            printf("sum %.0f (expected %.0f) with %d OpenCL device(s)\n", got, want,
                   dagger_gpu_count(DAGGER_GPU_OPENCL));
    }
    for (int p = 0; p < made; p++)
        dagger_task_release(parts[p].u.t);
    dagger_task_release(total);
    dagger_scope_release(where);
    dagger_scope_release(gpus);
    int crc = dagger_ctx_close(ctx);
    return rc || crc || got != want;
}
