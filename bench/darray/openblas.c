/* bench/darray/openblas.c - the linear-algebra rows with threaded OpenBLAS: cblas_dgemm,
 * LAPACKE_dpotrf and LAPACKE_dgetrf on the whole matrix with T threads.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <cblas.h>
#include <lapacke.h>

void openblas_set_num_threads(int n);

static double best(double a, double b) { return a < b ? a : b; }

int main(int argc, char **argv)
{
    da_cfg_t c;
    if (da_setup(&c, argc, argv))
        return 0;
    openblas_set_num_threads(c.threads);
    int n = c.n, m = n < 4096 ? n : 4096;
    double *a = malloc((size_t)n * n * sizeof *a), *w = malloc((size_t)n * n * sizeof *w);
    double *g = calloc((size_t)m * m, sizeof *g);
    for (size_t k = 0; k < (size_t)m * m; k++)
        a[k] = da_val(k);
    double t_mm = 1e30, t_ch = 1e30, t_lu = 1e30;
    for (int r = 0; r < c.reps; r++) {
        double t0 = da_now();
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0, a, m, a, m, 0.0, g, m);
        t_mm = best(t_mm, da_now() - t0);
    }
    double dgemm_rate = 2.0 * m * m * (double)m / t_mm * 1e-9;
    da_result("darray_matmul", "openblas", &c, dgemm_rate, "GFLOP/s");
    da_spd(a, n);
    for (int r = 0; r < c.reps; r++) {
        memcpy(w, a, (size_t)n * n * sizeof *w);
        double t0 = da_now();
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, w, n)) {
            printf("ERROR dpotrf\n");
            return 1;
        }
        t_ch = best(t_ch, da_now() - t0);
    }
    double chol_rate = (double)n * n * (double)n / 3.0 / t_ch * 1e-9;
    da_result("darray_cholesky", "openblas", &c, chol_rate, "GFLOP/s");
    da_result("darray_cholesky_frac", "openblas", &c, 100.0 * chol_rate / dgemm_rate, "%dgemm");
    for (size_t k = 0; k < (size_t)n * n; k++)
        a[k] = da_val(k * 7 + 3) - 0.5;
    int *piv = malloc(n * sizeof *piv);
    for (int r = 0; r < c.reps; r++) {
        memcpy(w, a, (size_t)n * n * sizeof *w);
        double t0 = da_now();
        if (LAPACKE_dgetrf(LAPACK_COL_MAJOR, n, n, w, n, piv)) {
            printf("ERROR dgetrf\n");
            return 1;
        }
        t_lu = best(t_lu, da_now() - t0);
    }
    da_result("darray_lu", "openblas", &c, 2.0 * n * n * (double)n / 3.0 / t_lu * 1e-9, "GFLOP/s");
    free(a);
    free(w);
    free(g);
    free(piv);
    return 0;
}
