/* bench/gpu/gemm_dagger.c - tiled gemm through dagger: one device task per tile product
 * C(i,j) += A(i,k) B(k,j), each a cublasDgemm on the task's stream, chained per C tile; the C
 * tiles come back to the host by themselves when read (see gemm.h).
 * SPDX-License-Identifier: MIT
 */
#include <cublas_v2.h>
#include <dagger.h>
#include <dagger/cuda.h>
#include <string.h>

#include "gemm.h"

#define MAXT 16

static size_t N, TS, NT;
static dagger_chunk_t *A[MAXT][MAXT], *B[MAXT][MAXT], *C[MAXT][MAXT];

/* One cuBLAS handle per worker thread and device (cublasSetStream per call). */
static cublasHandle_t handle(int dev)
{
    static _Thread_local cublasHandle_t h[8];
    if (!h[dev])
        cublasCreate(&h[dev]);
    return h[dev];
}

/* Arguments: A tile, B tile, C tile (written), beta (0 for the first product). */
static int tile_gemm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int dev = dagger_tc_device(tc, NULL);
    cublasHandle_t h = handle(dev);
    cublasSetStream(h, dagger_tc_cuda_stream(tc));
    const double *x = dagger_dptr_cuda(dagger_arg_dptr(a, 0));
    const double *y = dagger_dptr_cuda(dagger_arg_dptr(a, 1));
    double *z = dagger_dptr_cuda(dagger_arg_dptr_rw(a, 2));
    double one = 1, beta = dagger_arg_f64(a, 3);
    int t = (int)TS;
    cublasStatus_t st =
        cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, t, t, t, &one, x, t, y, t, &beta, z, t);
    return st == CUBLAS_STATUS_SUCCESS ? 0
                                       : dagger_fail(tc, DAGGER_ETASK, "cublasDgemm: %d", (int)st);
}

static int cpu_never(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "ran on the CPU");
}

static const dagger_impl_t gemm_impls[] = {{DAGGER_IMPL_CUDA, tile_gemm}};

static double at(size_t i, size_t j, void *ud)
{
    const double *p = dagger_chunk_data(C[i / TS][j / TS]);
    return p[(j % TS) * TS + i % TS];
}

static dagger_chunk_t *tile(dagger_ctx_t *ctx, size_t ti, size_t tj, int which)
{
    dagger_chunk_t *c;
    size_t shape[2] = {TS, TS};
    if (dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 2, shape, &c) != 0)
        exit(1);
    double *p = dagger_chunk_data(c);
    for (size_t j = 0; j < TS; j++)
        for (size_t i = 0; i < TS; i++)
            p[j * TS + i] = which == 0   ? gemm_a(ti * TS + i, tj * TS + j)
                            : which == 1 ? gemm_b(ti * TS + i, tj * TS + j)
                                         : 0;
    return c;
}

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0)
        return 1;
    if (dagger_gpu_count(DAGGER_GPU_CUDA) == 0) {
        fprintf(stderr, "bench_gpu_gemm_dagger: no CUDA device, skipped\n");
        return dagger_ctx_close(ctx) ? 1 : 0;
    }
    N = GEMM_N;
    TS = GEMM_TILE;
    NT = N / TS;
    if (NT * TS != N || NT > MAXT) {
        fprintf(stderr, "GEMM_N must be a multiple of GEMM_TILE, at most %d tiles\n", MAXT);
        return 1;
    }
    for (size_t i = 0; i < NT; i++)
        for (size_t j = 0; j < NT; j++) {
            A[i][j] = tile(ctx, i, j, 0);
            B[i][j] = tile(ctx, i, j, 1);
            C[i][j] = tile(ctx, i, j, 2);
        }
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_CUDA, -1);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = g;
    o.impls = gemm_impls;
    o.nimpls = 1;
    double best = 1e30;
    for (long rep = 0; rep < GPU_REPS; rep++) {
        for (size_t i = 0; i < NT; i++) /* the inputs start on the host every time */
            for (size_t j = 0; j < NT; j++) {
                (void)dagger_chunk_data(A[i][j]);
                (void)dagger_chunk_data(B[i][j]);
            }
        double t0 = gpu_now();
        dagger_task_t *last[MAXT][MAXT];
        for (size_t i = 0; i < NT; i++)
            for (size_t j = 0; j < NT; j++) {
                dagger_task_t *prev = NULL;
                for (size_t k = 0; k < NT; k++) {
                    dagger_value_t v[4] = {dagger_chunkv(A[i][k]), dagger_chunkv(B[k][j]),
                                           dagger_chunkv(C[i][j]), dagger_f64(k ? 1.0 : 0.0)};
                    o.syncdeps = prev ? &prev : NULL;
                    o.nsyncdeps = prev ? 1 : 0;
                    dagger_task_t *t = dagger_spawnv_opts(ctx, &o, cpu_never, v, 4);
                    dagger_task_release(prev);
                    prev = t;
                }
                last[i][j] = prev;
            }
        for (size_t i = 0; i < NT; i++)
            for (size_t j = 0; j < NT; j++) {
                if (dagger_wait(last[i][j]) || dagger_task_error(last[i][j])) {
                    fprintf(stderr, "ERROR gemm task: %s\n", dagger_task_errmsg(last[i][j]));
                    return 1;
                }
                (void)dagger_chunk_data(C[i][j]); /* C back on the host */
                dagger_task_release(last[i][j]);
            }
        double dt = gpu_now() - t0;
        if (dt < best)
            best = dt;
    }
    if (gemm_check(N, at, NULL))
        return 1;
    char param[32];
    snprintf(param, sizeof param, "n=%zu", N);
    gpu_result("gpu.gemm", "dagger", param, 2.0 * N * N * N / best / 1e9, "GFLOP/s");
    for (size_t i = 0; i < NT; i++)
        for (size_t j = 0; j < NT; j++) {
            dagger_chunk_release(A[i][j]);
            dagger_chunk_release(B[i][j]);
            dagger_chunk_release(C[i][j]);
        }
    dagger_scope_release(g);
    return dagger_ctx_close(ctx) ? 1 : 0;
}
