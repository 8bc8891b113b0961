/* bench/darray/problem.h - distributed arrays against plain loops and (threaded) OpenBLAS.
 *
 * Rows (bench names as printed in RESULT lines; every impl prints the rows it has):
 *   darray_alloc   an N x N f64 array of zeros made (dagger: blocks made where they live;
 *                  omp: malloc + a parallel first-touch loop).                        ms
 *   darray_add1    X .+ 1 into a new array.                                           ms
 *   darray_sum     sum(X).                                                            ms
 *   darray_norm    norm(X) (2-norm of all elements).                                  ms
 *   darray_matmul  C = A B, n = min(N, 4096) (dagger: gemm per block triple through
 *                  datadeps; openblas: cblas_dgemm with T threads).                   GFLOP/s
 *   darray_cholesky  L L^T = A (dagger: tiled potrf/trsm/syrk/gemm through datadeps on the
 *                  blocks; openblas: LAPACKE_dpotrf with T threads).                  GFLOP/s
 *   darray_cholesky_frac  the same as a percentage of the dgemm rate of this run.     %dgemm
 *   darray_lu      P A = L U (dagger: tiled getrf panels, laswp, trsm, gemm; openblas:
 *                  LAPACKE_dgetrf with T threads).                                    GFLOP/s
 * Sizes: BENCH_N=<n> (default 4096; BENCH_FULL=1: 8192). Blocks NB x NB with BENCH_NB
 * (default 512). Threads: --threads T, BENCH_THREADS, else the cores. Each figure is the best
 * of BENCH_REPS runs (default 2). Results are checked (sums against a loop, factors by a
 * residual); a wrong one prints "ERROR ..." and exits 1.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_DARRAY_PROBLEM_H
#define DAGGER_BENCH_DARRAY_PROBLEM_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct da_cfg {
    int n, nb, threads, reps;
} da_cfg_t;

static inline double da_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int da_env(const char *name, int dflt)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

#define DA_ROWS                                                                                    \
    "darray_alloc\ndarray_add1\ndarray_sum\ndarray_norm\ndarray_matmul\ndarray_cholesky\n"         \
    "darray_cholesky_frac\ndarray_lu"

/* Parse --list / --threads and the environment. Returns 1 when --list was answered. */
static inline int da_setup(da_cfg_t *c, int argc, char **argv)
{
    c->threads = da_env("BENCH_THREADS", (int)sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            puts(DA_ROWS);
            return 1;
        }
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            c->threads = atoi(argv[++i]);
    }
    if (c->threads < 1)
        c->threads = 1;
    c->n = da_env("BENCH_N", da_env("BENCH_FULL", 0) ? 8192 : 4096);
    c->nb = da_env("BENCH_NB", 512);
    c->reps = da_env("BENCH_REPS", 2);
    if (c->reps < 1)
        c->reps = 1;
    return 0;
}

static inline void da_result(const char *bench, const char *impl, const da_cfg_t *c, double v,
                             const char *unit)
{
    printf("RESULT|%s|%s|n=%d,threads=%d|%.3f|%s\n", bench, impl, c->n, c->threads, v, unit);
    fflush(stdout);
}

/* The value of element k of the test matrix (a cheap hash in [0, 1)). */
static inline double da_val(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (double)(k >> 11) * 0x1p-53;
}

/* An SPD matrix: symmetric values in [0, 1) plus n on the diagonal, column-major. */
static inline void da_spd(double *a, int n)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++)
            a[i + (size_t)j * n] = i == j ? n + da_val((uint64_t)i * n + j)
                                          : da_val((uint64_t)(i < j ? i : j) * n + (i < j ? j : i));
}

#endif /* DAGGER_BENCH_DARRAY_PROBLEM_H */
