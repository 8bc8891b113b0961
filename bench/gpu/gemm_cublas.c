/* bench/gpu/gemm_cublas.c - the peer of the tiled gemm: one cublasDgemm on the whole matrices,
 * with A and B copied in and C copied out (see gemm.h).
 * SPDX-License-Identifier: MIT
 */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "gemm.h"

static double at(size_t i, size_t j, void *ud)
{
    size_t n = GEMM_N;
    return ((double *)ud)[j * n + i];
}

int main(void)
{
    int nd = 0;
    if (cudaGetDeviceCount(&nd) != cudaSuccess || nd == 0) {
        fprintf(stderr, "bench_gpu_gemm_cublas: no CUDA device, skipped\n");
        return 0;
    }
    size_t n = GEMM_N, bytes = n * n * sizeof(double);
    double *a, *b, *c, *da, *db, *dc;
    cudaMallocHost((void **)&a, bytes);
    cudaMallocHost((void **)&b, bytes);
    cudaMallocHost((void **)&c, bytes);
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            a[j * n + i] = gemm_a(i, j);
            b[j * n + i] = gemm_b(i, j);
        }
    cudaMalloc((void **)&da, bytes);
    cudaMalloc((void **)&db, bytes);
    cudaMalloc((void **)&dc, bytes);
    cublasHandle_t h;
    cublasCreate(&h);
    double best = 1e30, one = 1, zero = 0;
    for (long rep = 0; rep < GPU_REPS; rep++) {
        double t0 = gpu_now();
        cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice);
        cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice);
        cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)n, (int)n, &one, da, (int)n, db,
                    (int)n, &zero, dc, (int)n);
        cudaMemcpy(c, dc, bytes, cudaMemcpyDeviceToHost);
        double dt = gpu_now() - t0;
        if (dt < best)
            best = dt;
    }
    if (gemm_check(n, at, c))
        return 1;
    char param[32];
    snprintf(param, sizeof param, "n=%zu", n);
    gpu_result("gpu.gemm", "cublas", param, 2.0 * n * n * n / best / 1e9, "GFLOP/s");
    cublasDestroy(h);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    cudaFreeHost(a);
    cudaFreeHost(b);
    cudaFreeHost(c);
    return 0;
}
