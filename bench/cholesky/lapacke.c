/* bench/cholesky/lapacke.c - LAPACKE_dpotrf with multithreaded OpenBLAS: the reference.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

int main(int argc, char **argv)
{
    ch_cfg_t c;
    if (ch_setup(&c, argc, argv, "cholesky\ncholesky_frac\ndgemm"))
        return 0;
    for (int s = 0; s < c.nsizes; s++) {
        int n = c.sizes[s];
        double *a = ch_alloc(n), *f = ch_alloc(n);
        if (!a || !f) {
            fprintf(stderr, "ERROR out of memory for n=%d\n", n);
            return 1;
        }
        ch_make(a, n, 42);
        double dgemm = ch_dgemm_ref(n, c.threads);
        openblas_set_num_threads(c.threads);
        double best = 1e30;
        for (int r = 0; r < c.reps; r++) {
            memcpy(f, a, sizeof(double) * (size_t)n * n);
            double t0 = ch_now();
            int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, f, n);
            double t = ch_now() - t0;
            if (info) {
                fprintf(stderr, "ERROR dpotrf info %d\n", info);
                return 1;
            }
            if (t < best)
                best = t;
        }
        ch_verify("lapacke", a, f, n, 0);
        for (int k = 0; k < c.nnbs; k++) /* one figure, printed beside each tile size */
            ch_print("lapacke", n, c.nbs[k], c.threads, best, dgemm);
        free(a);
        free(f);
    }
    return 0;
}
