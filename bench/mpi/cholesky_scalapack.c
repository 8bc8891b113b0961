/* bench/mpi/cholesky_scalapack.c - ScaLAPACK pdpotrf on a 1 x P process grid with NB x NB
 * blocks (cholesky.h): the peer of cholesky_dagger.c. Checks info == 0.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <mpi.h>

#include "cholesky.h"

/* ScaLAPACK and BLACS have no C header in Debian. */
void Cblacs_pinfo(int *me, int *np);
void Cblacs_get(int ctxt, int what, int *val);
void Cblacs_gridinit(int *ctxt, const char *order, int rows, int cols);
void Cblacs_gridinfo(int ctxt, int *rows, int *cols, int *row, int *col);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrc, const int *np);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ctxt, const int *lld, int *info);
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desc, int *info);

int main(int argc, char **argv)
{
    pp_self_launch(argc, argv);
    MPI_Init(&argc, &argv);
    int me, np;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    int n = mc_env("BENCH_N", 2048), nb = mc_env("BENCH_NB", 256), reps = mc_env("BENCH_REPS", 2);
    int ctxt, rows, cols, row, col, zero = 0, one = 1, info;
    Cblacs_get(-1, 0, &ctxt);
    Cblacs_gridinit(&ctxt, "Row", 1, np);
    Cblacs_gridinfo(ctxt, &rows, &cols, &row, &col);
    int lr = numroc_(&n, &nb, &row, &zero, &rows), lc = numroc_(&n, &nb, &col, &zero, &cols);
    int lld = lr > 1 ? lr : 1, desc[9];
    descinit_(desc, &n, &n, &nb, &nb, &zero, &zero, &ctxt, &lld, &info);
    double *a = malloc(sizeof(double) * (size_t)lld * (size_t)(lc > 0 ? lc : 1));
    openblas_set_num_threads(1);
    double dgemm = me == 0 ? mc_dgemm_rate() : 0, best = 1e30;
    for (int k = 0; k < reps; k++) {
        /* local (i, j) -> global: block-cyclic with one process row */
        for (int j = 0; j < lc; j++) {
            int gj = (j / nb * cols + col) * nb + j % nb;
            for (int i = 0; i < lr; i++)
                a[(size_t)j * lld + i] = mc_elem((size_t)i, (size_t)gj, (size_t)n);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = pp_now();
        pdpotrf_("L", &n, a, &one, &one, desc, &info);
        MPI_Barrier(MPI_COMM_WORLD);
        double t = pp_now() - t0;
        if (info != 0) {
            fprintf(stderr, "ERROR pdpotrf info %d on rank %d\n", info, me);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (t < best)
            best = t;
    }
    if (me == 0)
        mc_report("scalapack", n, nb, np, best, dgemm);
    free(a);
    Cblacs_gridexit(ctxt);
    MPI_Finalize();
    return 0;
}
