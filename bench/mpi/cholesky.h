/* bench/mpi/cholesky.h - distributed tiled Cholesky on 2 ranks: dagger (a datadeps region over
 * mutable tiles, cholesky_dagger.c) against ScaLAPACK pdpotrf (cholesky_scalapack.c).
 *
 * A = L L^T of the N x N SPD matrix a(r, c) = 1 / (1 + r + c) + N [r == c], lower, column-major,
 * in NB x NB tiles distributed by block column over the ranks (tile column j on rank j mod P;
 * ScaLAPACK's 1 x P process grid with NB x NB blocks gives the same distribution). One thread
 * per rank and single-threaded OpenBLAS. Sizes: BENCH_N (default 2048), BENCH_NB (256); the
 * best of BENCH_REPS runs (default 2). Prints
 *   RESULT|mpi.cholesky|<impl>|N=..,NB=..,P=..|<GFLOP/s>|GFLOP/s      (N^3/3 flops)
 *   RESULT|mpi.cholesky_frac|<impl>|N=..,NB=..,P=..|<% of P x DGEMM>|%dgemm
 *   RESULT|mpi.dgemm|<impl>|n=1024|<GFLOP/s of one core, the other ranks idle>|GFLOP/s
 * Each binary launches itself under `mpirun -np 2` when started alone (problem.h).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_MPI_CHOLESKY_H
#define DAGGER_BENCH_MPI_CHOLESKY_H

#include <cblas.h>
#include <math.h>

#include "problem.h"

static inline double mc_elem(size_t r, size_t c, size_t n)
{
    return 1.0 / (1.0 + (double)r + (double)c) + (r == c ? (double)n : 0.0);
}

static inline int mc_env(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

/* OpenBLAS extension (declared by its cblas.h too). */
void openblas_set_num_threads(int num_threads);

/* One core's DGEMM rate (n = 1024, best of 3), GFLOP/s; rank 0 measures it while the other
 * ranks wait (both implementations). */
static inline double mc_dgemm_rate(void)
{
    const int n = 1024;
    openblas_set_num_threads(1);
    double *a = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * n),
           *c = calloc((size_t)n * n, sizeof(double));
    if (!a || !b || !c)
        return 0;
    for (int i = 0; i < n * n; i++) {
        a[i] = 1.0 / (1 + i % 97);
        b[i] = 1.0 / (1 + i % 89);
    }
    double best = 1e30;
    for (int k = 0; k < 3; k++) {
        double t0 = pp_now();
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
        double t = pp_now() - t0;
        if (t < best)
            best = t;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}

static inline void mc_report(const char *impl, int n, int nb, int p, double secs, double dgemm)
{
    double gf = (double)n * n * (double)n / 3.0 / secs / 1e9;
    printf("RESULT|mpi.cholesky|%s|N=%d,NB=%d,P=%d|%.2f|GFLOP/s\n", impl, n, nb, p, gf);
    printf("RESULT|mpi.cholesky_frac|%s|N=%d,NB=%d,P=%d|%.1f|%%dgemm\n", impl, n, nb, p,
           100.0 * gf / (p * dgemm));
    printf("RESULT|mpi.dgemm|%s|n=1024|%.2f|GFLOP/s\n", impl, dgemm);
    fflush(stdout);
}

#endif /* DAGGER_BENCH_MPI_CHOLESKY_H */
