/* bench/gpu/gemm.h - tiled DGEMM on a CUDA device: C = A B for n x n matrices of T x T tiles
 * (n = GEMM_N, default 8192; T = GEMM_TILE, default 2048), end to end: A and B from the host,
 * C back on the host. dagger (gemm_dagger.c) runs one cuBLAS call per tile product, chained per
 * C tile; the peer (gemm_cublas.c) is one big cublasDgemm with the same copies.
 * Output: RESULT|gpu.gemm|<impl>|n=<n>|<GFLOP/s>|GFLOP/s.
 * SPDX-License-Identifier: MIT
 */
#ifndef BENCH_GPU_GEMM_H
#define BENCH_GPU_GEMM_H

#include "problem.h"

#define GEMM_N ((size_t)gpu_env("GEMM_N", 8192))
#define GEMM_TILE ((size_t)gpu_env("GEMM_TILE", 2048))

/* A(i,j) = (i + 2j) % 7 - 3, B(i,j) = (3i + j) % 5 - 2 (column-major); C checked at a few
 * entries against the direct sum. */
static inline double gemm_a(size_t i, size_t j) { return (double)((i + 2 * j) % 7) - 3; }
static inline double gemm_b(size_t i, size_t j) { return (double)((3 * i + j) % 5) - 2; }

static inline int gemm_check(size_t n, double (*c)(size_t i, size_t j, void *ud), void *ud)
{
    size_t pts[3][2] = {{0, 0}, {n - 1, n - 1}, {n / 3, n / 2}};
    for (int p = 0; p < 3; p++) {
        size_t i = pts[p][0], j = pts[p][1];
        double want = 0;
        for (size_t k = 0; k < n; k++)
            want += gemm_a(i, k) * gemm_b(k, j);
        double got = c(i, j, ud);
        if (got != want) {
            printf("ERROR gemm: C(%zu,%zu) = %g, expected %g\n", i, j, got, want);
            return 1;
        }
    }
    return 0;
}

#endif /* BENCH_GPU_GEMM_H */
