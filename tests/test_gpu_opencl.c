/* tests/test_gpu_opencl.c - device tasks on real OpenCL devices (pocl on CI: two CPU devices):
 * results back on the host, host/device chains, device-to-device moves, eviction, admission and
 * build errors. Every case exits 77 when no OpenCL device is found.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dagger.h"
#include "dagger/opencl.h"
#include "harness.h"

#define MIB (1024u * 1024u)

static const char *SRC = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
                         "__kernel void inc(__global const double *x, __global double *y)\n"
                         "{ size_t i = get_global_id(0); y[i] = x[i] + 1.0; }\n"
                         "__kernel void inc_inplace(__global double *x)\n"
                         "{ size_t i = get_global_id(0); x[i] += 1.0; }\n";

static const char *BAD_SRC = "__kernel void broken(__global float *x) { x[0] = undefined_name; }\n";

static void need_devices(int n)
{
    int have = dagger_gpu_count(DAGGER_GPU_OPENCL);
    if (have < n)
        SKIP("%d OpenCL device(s) found, the case needs %d\n", have, n);
}

static int enqueue(dagger_tc_t *tc, cl_kernel k, size_t n)
{
    cl_int st = clEnqueueNDRangeKernel(dagger_tc_cl_queue(tc), k, 1, NULL, &n, NULL, 0, NULL, NULL);
    clReleaseKernel(k);
    if (st != CL_SUCCESS)
        return dagger_fail(tc, DAGGER_ETASK, "clEnqueueNDRangeKernel: %d", (int)st);
    return 0;
}

/* y = x + 1 into a new chunk. */
static int inc_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    cl_kernel k;
    int rc = dagger_tc_cl_kernel(tc, SRC, "inc", &k);
    if (rc)
        return rc;
    size_t bytes = dagger_chunk_size(dagger_arg_chunk(a, 0)), n = bytes / sizeof(double);
    cl_mem x = dagger_dptr_cl_mem(dagger_arg_dptr(a, 0));
    dagger_chunk_t *r;
    dagger_dptr_t y;
    rc = dagger_tc_dchunk_create(tc, bytes, &r, &y);
    if (rc) {
        clReleaseKernel(k);
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    }
    ASSERT_OK(dagger_chunk_set_type(r, DAGGER_ELT_F64, 1, &n));
    cl_mem ym = dagger_dptr_cl_mem(y);
    clSetKernelArg(k, 0, sizeof x, &x);
    clSetKernelArg(k, 1, sizeof ym, &ym);
    *out = dagger_chunk_give(tc, r);
    return enqueue(tc, k, n);
}

static int inc_inplace_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    cl_kernel k;
    int rc = dagger_tc_cl_kernel(tc, SRC, "inc_inplace", &k);
    if (rc)
        return rc;
    size_t n = dagger_chunk_size(dagger_arg_chunk(a, 0)) / sizeof(double);
    cl_mem x = dagger_dptr_cl_mem(dagger_arg_dptr_rw(a, 0));
    clSetKernelArg(k, 0, sizeof x, &x);
    return enqueue(tc, k, n);
}

static int broken_cl(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    cl_kernel k;
    int rc = dagger_tc_cl_kernel(tc, BAD_SRC, "broken", &k);
    if (rc)
        return rc;
    clReleaseKernel(k);
    return 0;
}

/* The CPU implementations. */
static int inc_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const double *x = dagger_arg_array(a, 0, DAGGER_ELT_F64, &n);
    dagger_chunk_t *r;
    if (dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F64, 1, &n, &r))
        return dagger_fail(tc, DAGGER_ENOMEM, "out of memory");
    double *y = dagger_chunk_data(r);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] + 1;
    *out = dagger_chunk_give(tc, r);
    return 0;
}

/* A host task that writes a chunk in place takes the owner's pointer (dagger_chunk_data), which
 * makes the host copy the only valid one. */
static int inc_inplace_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_chunk_t *c = dagger_arg_chunk(a, 0);
    size_t n = dagger_chunk_size(c) / sizeof(double);
    double *x = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        x[i] += 1;
    return 0;
}

static int sum_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double s = 0;
    for (size_t i = 0; i < dagger_args_count(a); i++) {
        size_t n;
        const double *x = dagger_arg_array(a, i, DAGGER_ELT_F64, &n);
        for (size_t k = 0; k < n; k++)
            s += x[k];
    }
    *out = dagger_f64(s);
    return 0;
}

static const dagger_impl_t inc_impls[] = {{DAGGER_IMPL_OPENCL, inc_cl}};
static const dagger_impl_t inplace_impls[] = {{DAGGER_IMPL_OPENCL, inc_inplace_cl}};
static const dagger_impl_t broken_impls[] = {{DAGGER_IMPL_OPENCL, broken_cl}};

static dagger_chunk_t *filled(dagger_ctx_t *ctx, size_t n, double v)
{
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 1, &n, &c));
    double *p = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        p[i] = v;
    return c;
}

static dagger_task_t *spawn1(dagger_ctx_t *ctx, dagger_fn_t cpu, const dagger_impl_t *impls,
                             const dagger_scope_t *scope, dagger_value_t v)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = scope;
    o.impls = impls;
    o.nimpls = impls ? 1 : 0;
    return dagger_spawnv_opts(ctx, &o, cpu, &v, 1);
}

static void task_ok(dagger_task_t *t)
{
    ASSERT_OK(dagger_wait(t));
    if (dagger_task_error(t))
        fail_msg("task failed: %s", dagger_task_errmsg(t));
}

TEST(sum_of_ten_increments_under_a_gpu_scope)
{
    need_devices(1);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, -1);
    dagger_value_t parts[10];
    for (int i = 0; i < 10; i++) {
        dagger_chunk_t *x = filled(ctx, 16, i);
        parts[i] = dagger_taskv(spawn1(ctx, inc_cpu, inc_impls, g, dagger_chunkv(x)));
        dagger_chunk_release(x);
    }
    dagger_task_t *sum = dagger_spawnv(ctx, sum_cpu, parts, 10);
    double r;
    ASSERT_OK(dagger_fetch_f64(sum, &r));
    ASSERT_NEAR(r, 16 * 55, 0);
    for (int i = 0; i < 10; i++)
        dagger_task_release(parts[i].u.t);
    dagger_task_release(sum);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(chain_alternates_host_and_device)
{
    need_devices(1);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0);
    dagger_chunk_t *x = filled(ctx, 4096, 0);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    dagger_task_t *prev = NULL;
    for (int i = 0; i < 6; i++) {
        bool dev = i % 2 == 1;
        o.scope = dev ? g : dagger_scope_any();
        o.impls = dev ? inplace_impls : NULL;
        o.nimpls = dev ? 1 : 0;
        o.syncdeps = prev ? &prev : NULL;
        o.nsyncdeps = prev ? 1 : 0;
        dagger_value_t v = dagger_chunkv(x);
        dagger_task_t *t = dagger_spawnv_opts(ctx, &o, inc_inplace_cpu, &v, 1);
        dagger_task_release(prev);
        prev = t;
    }
    task_ok(prev);
    const double *p = dagger_chunk_data(x);
    for (int i = 0; i < 4096; i++)
        ASSERT_NEAR(p[i], 6, 0);
    dagger_task_release(prev);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(device_to_device_movement)
{
    need_devices(2);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g0 = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0);
    dagger_scope_t *g1 = dagger_scope_gpu(DAGGER_GPU_OPENCL, 1);
    dagger_chunk_t *x = filled(ctx, 1000, 1);
    dagger_task_t *a = spawn1(ctx, inc_cpu, inc_impls, g0, dagger_chunkv(x));
    dagger_task_t *b = spawn1(ctx, inc_cpu, inc_impls, g1, dagger_taskv(a));
    dagger_chunk_t *r;
    ASSERT_OK(dagger_fetch_chunk(b, &r));
    const double *p = dagger_chunk_data(r);
    for (int i = 0; i < 1000; i++)
        ASSERT_NEAR(p[i], 3, 0);
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_chunk_release(x);
    dagger_scope_release(g0);
    dagger_scope_release(g1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The pool is capped by DAGGER_GPU_MEM_LIMIT (48 MiB in tests/gpu.cmake, below pocl's 1 GiB)
 * and the working set is three times that: the 3 GiB against 1 GiB, scaled down so the
 * case takes seconds. */
TEST(eviction_with_a_working_set_three_times_the_device)
{
    need_devices(1);
    size_t used, limit;
    ASSERT_OK(dagger_gpu_mem_info(0, &used, &limit));
    size_t piece = 8 * MIB, n = 3 * limit / piece;
    if (n > 64)
        SKIP("device memory of %zu bytes is too large for this case\n", limit);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0);
    dagger_chunk_t *c[64];
    for (size_t i = 0; i < n; i++)
        c[i] = filled(ctx, piece / sizeof(double), (double)i);
    for (int round = 0; round < 2; round++) {
        dagger_task_t *t[64];
        for (size_t i = 0; i < n; i++)
            t[i] = spawn1(ctx, inc_inplace_cpu, inplace_impls, g, dagger_chunkv(c[i]));
        for (size_t i = 0; i < n; i++) {
            task_ok(t[i]);
            dagger_task_release(t[i]);
        }
    }
    ASSERT_OK(dagger_gpu_mem_info(0, &used, &limit));
    ASSERT_TRUE(used <= limit);
    for (size_t i = 0; i < n; i++) {
        const double *p = dagger_chunk_data(c[i]);
        ASSERT_NEAR(p[0], (double)i + 2, 0);
        ASSERT_NEAR(p[piece / sizeof(double) - 1], (double)i + 2, 0);
        dagger_chunk_release(c[i]);
    }
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(too_big_task_fails_with_enomem)
{
    need_devices(1);
    size_t used, limit;
    ASSERT_OK(dagger_gpu_mem_info(0, &used, &limit));
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0);
    dagger_chunk_t *x;
    ASSERT_OK(dagger_chunk_create(ctx, limit + 8, &x));
    dagger_task_t *t = spawn1(ctx, inc_inplace_cpu, inplace_impls, g, dagger_chunkv(x));
    dagger_value_t out;
    ASSERT_ERR(dagger_fetch(t, &out), DAGGER_ENOMEM);
    char want[96];
    snprintf(want, sizeof want, "need %zu bytes on device(0)", limit + 8);
    ASSERT_STR_HAS(dagger_task_errmsg(t), want);
    snprintf(want, sizeof want, "which holds %zu", limit);
    ASSERT_STR_HAS(dagger_task_errmsg(t), want);
    dagger_task_release(t);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(kernel_build_error_reports_the_build_log)
{
    need_devices(1);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0);
    dagger_task_t *t = spawn1(ctx, inc_inplace_cpu, broken_impls, g, dagger_i64(0));
    dagger_value_t out;
    ASSERT_ERR(dagger_fetch(t, &out), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "CL_BUILD_PROGRAM_FAILURE");
    ASSERT_STR_HAS(dagger_task_errmsg(t), "build log");
    ASSERT_STR_HAS(dagger_task_errmsg(t), "undefined_name");
    dagger_task_release(t);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int slow_cpu_runs;

/* x += 1 in place on a thread, after 50 ms: far slower than the kernel on any device. */
static int slow_inplace_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&slow_cpu_runs, 1);
    struct timespec ts = {0, 50 * 1000 * 1000L};
    nanosleep(&ts, NULL);
    return inc_inplace_cpu(tc, a, out);
}

TEST(cost_model_keeps_opencl_when_the_cpu_body_is_slower)
{
    /* A scope of threads and devices, one chunk incremented in place ten times, in order. The
     * device's history is warmed first (its first run builds the kernel: the warm-up keeps
     * the shortest run), then the CPU's (3 runs of 50 ms); then the kernel wins every time.
     * The chunk moves between host and device as the body changes sides: every increment
     * lands. */
    need_devices(1);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, -1);
    dagger_scope_t *u = dagger_scope_union(g, dagger_scope_any());
    dagger_chunk_t *x = filled(ctx, 1024, 0);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = u;
    o.impls = inplace_impls;
    o.nimpls = 1;
    for (int i = 0; i < 10; i++) {
        dagger_value_t v = dagger_chunkv(x);
        dagger_task_t *t = dagger_spawnv_opts(ctx, &o, slow_inplace_cpu, &v, 1);
        task_ok(t);
        dagger_task_release(t);
        ASSERT_EQ(atomic_load(&slow_cpu_runs), i < 3 ? 0 : i < 6 ? i - 2 : 3);
    }
    dagger_value_t v = dagger_chunkv(x);
    dagger_task_t *r = dagger_spawnv(ctx, sum_cpu, &v, 1);
    double s;
    ASSERT_OK(dagger_fetch_f64(r, &s));
    ASSERT_NEAR(s, 1024 * 10, 0);
    dagger_task_release(r);
    dagger_chunk_release(x);
    dagger_scope_release(u);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(sum_of_ten_increments_under_a_gpu_scope, chain_alternates_host_and_device,
          device_to_device_movement, eviction_with_a_working_set_three_times_the_device,
          too_big_task_fails_with_enomem, kernel_build_error_reports_the_build_log,
          cost_model_keeps_opencl_when_the_cpu_body_is_slower)
