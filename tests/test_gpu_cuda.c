/* tests/test_gpu_cuda.c - device tasks on CUDA devices: results back on the host, chains with
 * the host, device-to-device moves, a too-big task and a kernel fault. Every case exits 77 when
 * no CUDA device is found (CI compiles them; scripts/gpu-check.sh runs them on a GPU machine).
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>
#include <string.h>

#include "dagger.h"
#include "dagger/cuda.h"
#include "harness.h"

/* tests/test_gpu_cuda_kernels.cu */
int test_cuda_inc(cudaStream_t s, const double *x, double *y, size_t n);
int test_cuda_fault(cudaStream_t s);

static void need_devices(int n)
{
    int have = dagger_gpu_count(DAGGER_GPU_CUDA);
    if (have < n)
        SKIP("%d CUDA device(s) found, the case needs %d\n", have, n);
}

static int inc_cuda(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t bytes = dagger_chunk_size(dagger_arg_chunk(a, 0)), n = bytes / sizeof(double);
    const double *x = dagger_dptr_cuda(dagger_arg_dptr(a, 0));
    dagger_chunk_t *r;
    dagger_dptr_t y;
    int rc = dagger_tc_dchunk_create(tc, bytes, &r, &y);
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    if (dagger_chunk_set_type(r, DAGGER_ELT_F64, 1, &n) != 0) {
        dagger_chunk_release(r);
        return dagger_fail(tc, DAGGER_EINVAL, "set_type");
    }
    *out = dagger_chunk_give(tc, r);
    if (test_cuda_inc(dagger_tc_cuda_stream(tc), x, dagger_dptr_cuda(y), n) != 0)
        return dagger_fail(tc, DAGGER_ETASK, "kernel launch failed");
    return 0;
}

static int fault_cuda(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return test_cuda_fault(dagger_tc_cuda_stream(tc));
}

static int inc_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "the CPU body ran instead of the CUDA body");
}

static const dagger_impl_t inc_impls[] = {{DAGGER_IMPL_CUDA, inc_cuda}};
static const dagger_impl_t fault_impls[] = {{DAGGER_IMPL_CUDA, fault_cuda}};

static dagger_chunk_t *filled(dagger_ctx_t *ctx, size_t n, double v)
{
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 1, &n, &c));
    double *p = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        p[i] = v;
    return c;
}

static dagger_task_t *spawn1(dagger_ctx_t *ctx, const dagger_impl_t *impls,
                             const dagger_scope_t *scope, dagger_value_t v)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = scope;
    o.impls = impls;
    o.nimpls = 1;
    return dagger_spawnv_opts(ctx, &o, inc_cpu, &v, 1);
}

TEST(increments_come_back_to_the_host)
{
    need_devices(1);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_CUDA, -1);
    dagger_chunk_t *x = filled(ctx, 1 << 20, 1);
    dagger_task_t *a = spawn1(ctx, inc_impls, g, dagger_chunkv(x));
    dagger_task_t *b = spawn1(ctx, inc_impls, g, dagger_taskv(a));
    dagger_chunk_t *r;
    ASSERT_OK(dagger_fetch_chunk(b, &r));
    const double *p = dagger_chunk_data(r);
    ASSERT_NEAR(p[0], 3, 0);
    ASSERT_NEAR(p[(1 << 20) - 1], 3, 0);
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(device_to_device_movement)
{
    need_devices(2);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g0 = dagger_scope_gpu(DAGGER_GPU_CUDA, 0);
    dagger_scope_t *g1 = dagger_scope_gpu(DAGGER_GPU_CUDA, 1);
    dagger_chunk_t *x = filled(ctx, 4096, 1);
    dagger_task_t *a = spawn1(ctx, inc_impls, g0, dagger_chunkv(x));
    dagger_task_t *b = spawn1(ctx, inc_impls, g1, dagger_taskv(a));
    dagger_chunk_t *r;
    ASSERT_OK(dagger_fetch_chunk(b, &r));
    ASSERT_NEAR(((const double *)dagger_chunk_data(r))[4095], 3, 0);
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_chunk_release(x);
    dagger_scope_release(g0);
    dagger_scope_release(g1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(too_big_task_fails_with_enomem)
{
    need_devices(1);
    size_t used, limit;
    ASSERT_OK(dagger_gpu_mem_info(0, &used, &limit));
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_CUDA, 0);
    dagger_chunk_t *x;
    ASSERT_OK(dagger_chunk_wrap(ctx, (void *)(uintptr_t)4096, limit + 8, NULL, NULL, &x));
    dagger_task_t *t = spawn1(ctx, inc_impls, g, dagger_chunkv(x));
    dagger_value_t out;
    ASSERT_ERR(dagger_fetch(t, &out), DAGGER_ENOMEM);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "bytes on device(0)");
    dagger_task_release(t);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(kernel_fault_reports_the_cuda_error)
{
    need_devices(1);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_CUDA, 0);
    dagger_task_t *t = spawn1(ctx, fault_impls, g, dagger_i64(0));
    dagger_value_t out;
    ASSERT_ERR(dagger_fetch(t, &out), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "cudaError");
    dagger_task_release(t);
    dagger_scope_release(g);
    int rc = dagger_ctx_close(ctx); /* a faulted CUDA context cannot be trusted afterwards */
    (void)rc;
}

TEST_LIST(increments_come_back_to_the_host, device_to_device_movement,
          too_big_task_fails_with_enomem, kernel_fault_reports_the_cuda_error)
