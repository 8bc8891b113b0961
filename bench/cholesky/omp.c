/* bench/cholesky/omp.c - tiled Cholesky with OpenMP tasks and `depend` clauses.
 *
 * Also the empty-task overhead with three dependences (in, in, inout on 8-byte cells), the
 * peer of dagger's datadeps_overhead row.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <omp.h>

static void cholesky(double *a, int n, int nb)
{
    int t = n / nb;
#pragma omp parallel
#pragma omp single
    for (int k = 0; k < t; k++) {
        double *akk = ch_tile(a, n, nb, k, k);
#pragma omp task depend(inout : akk[0]) firstprivate(akk)
        ch_potrf(akk, nb, n);
        for (int i = k + 1; i < t; i++) {
            double *aik = ch_tile(a, n, nb, i, k);
#pragma omp task depend(in : akk[0]) depend(inout : aik[0]) firstprivate(akk, aik)
            ch_trsm(akk, aik, nb, n);
        }
        for (int i = k + 1; i < t; i++) {
            double *aik = ch_tile(a, n, nb, i, k), *aii = ch_tile(a, n, nb, i, i);
#pragma omp task depend(in : aik[0]) depend(inout : aii[0]) firstprivate(aik, aii)
            ch_syrk(aik, aii, nb, n);
            for (int j = k + 1; j < i; j++) {
                double *ajk = ch_tile(a, n, nb, j, k), *aij = ch_tile(a, n, nb, i, j);
#pragma omp task depend(in : aik[0], ajk[0]) depend(inout : aij[0]) firstprivate(aik, ajk, aij)
                ch_gemm(aik, ajk, aij, nb, n);
            }
        }
    }
}

static double cells[3][CH_OVERHEAD_CELLS];

static double overhead(int ntasks)
{
    double t0 = ch_now();
#pragma omp parallel
#pragma omp single
    for (int i = 0; i < ntasks; i++) {
        double *x = &cells[0][i % CH_OVERHEAD_CELLS], *y = &cells[1][(i + 1) % CH_OVERHEAD_CELLS];
        double *z = &cells[2][i % CH_OVERHEAD_CELLS];
        (void)x; /* used by the depend clause only, which gcc 12 does not count as a use */
        (void)y;
#pragma omp task depend(in : x[0], y[0]) depend(inout : z[0]) firstprivate(z)
        z[0] += 1;
    }
    return ch_now() - t0;
}

int main(int argc, char **argv)
{
    ch_cfg_t c;
    if (ch_setup(&c, argc, argv, "cholesky\ncholesky_frac\ndgemm\ndatadeps_overhead"))
        return 0;
    omp_set_num_threads(c.threads);
    for (int s = 0; s < c.nsizes; s++) {
        int n = c.sizes[s];
        double *a = ch_alloc(n), *f = ch_alloc(n);
        if (!a || !f) {
            fprintf(stderr, "ERROR out of memory for n=%d\n", n);
            return 1;
        }
        ch_make(a, n, 42);
        double dgemm = ch_dgemm_ref(n, c.threads);
        openblas_set_num_threads(1);
        for (int k = 0; k < c.nnbs; k++) {
            int nb = c.nbs[k];
            if (n % nb)
                continue;
            double best = 1e30;
            for (int r = 0; r < c.reps; r++) {
                if (ch_prepare(f, a, n, nb))
                    return 1;
                double t0 = ch_now();
                cholesky(f, n, nb);
                double t = ch_now() - t0;
                if (t < best)
                    best = t;
            }
            ch_verify("omp", a, f, n, nb);
            ch_print("omp", n, nb, c.threads, best, dgemm);
        }
        free(a);
        free(f);
    }
    double best = 1e30;
    for (int r = 0; r < c.reps + 1; r++) {
        memset(cells, 0, sizeof cells);
        double t = overhead(CH_OVERHEAD_TASKS);
        if (t < best)
            best = t;
    }
    if (cells[2][0] != (double)(CH_OVERHEAD_TASKS / CH_OVERHEAD_CELLS)) {
        fprintf(stderr, "ERROR omp overhead: cell holds %g\n", cells[2][0]);
        return 1;
    }
    printf("RESULT|datadeps_overhead|omp|args=3,threads=%d|%.1f|ns/task\n", c.threads,
           best / CH_OVERHEAD_TASKS * 1e9);
    return 0;
}
