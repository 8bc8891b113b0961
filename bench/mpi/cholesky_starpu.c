/* bench/mpi/cholesky_starpu.c - StarPU-MPI tiled Cholesky (cholesky.h): each rank registers the
 * tiles of its block columns (tile column j on rank j mod P, as dagger and ScaLAPACK), and every
 * rank inserts the same sequential task flow with starpu_mpi_task_insert, which runs each task
 * on the owner of the tile it writes and moves the tiles it reads. One CPU worker per rank.
 * Checks that every potrf succeeded.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <lapacke.h>
#include <starpu.h>
#include <starpu_mpi.h>

#include "cholesky.h"

static _Atomic int potrf_failed;

static void cl_potrf(void *buffers[], void *arg)
{
    (void)arg;
    double *a = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    int nb = (int)STARPU_MATRIX_GET_NX(buffers[0]), ld = (int)STARPU_MATRIX_GET_LD(buffers[0]);
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', nb, a, ld) != 0)
        potrf_failed = 1;
}

static void cl_trsm(void *buffers[], void *arg)
{
    (void)arg;
    const double *akk = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    double *aik = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
    int nb = (int)STARPU_MATRIX_GET_NX(buffers[1]);
    cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, nb, 1.0, akk,
                (int)STARPU_MATRIX_GET_LD(buffers[0]), aik, (int)STARPU_MATRIX_GET_LD(buffers[1]));
}

static void cl_syrk(void *buffers[], void *arg)
{
    (void)arg;
    const double *aik = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    double *aii = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
    int nb = (int)STARPU_MATRIX_GET_NX(buffers[1]);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, nb, nb, -1.0, aik,
                (int)STARPU_MATRIX_GET_LD(buffers[0]), 1.0, aii,
                (int)STARPU_MATRIX_GET_LD(buffers[1]));
}

static void cl_gemm(void *buffers[], void *arg)
{
    (void)arg;
    const double *aik = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    const double *ajk = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
    double *aij = (double *)STARPU_MATRIX_GET_PTR(buffers[2]);
    int nb = (int)STARPU_MATRIX_GET_NX(buffers[2]);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, nb, nb, nb, -1.0, aik,
                (int)STARPU_MATRIX_GET_LD(buffers[0]), ajk, (int)STARPU_MATRIX_GET_LD(buffers[1]),
                1.0, aij, (int)STARPU_MATRIX_GET_LD(buffers[2]));
}

static struct starpu_codelet potrf_cl = {
    .cpu_funcs = {cl_potrf}, .nbuffers = 1, .modes = {STARPU_RW}, .name = "potrf"};
static struct starpu_codelet trsm_cl = {
    .cpu_funcs = {cl_trsm}, .nbuffers = 2, .modes = {STARPU_R, STARPU_RW}, .name = "trsm"};
static struct starpu_codelet syrk_cl = {
    .cpu_funcs = {cl_syrk}, .nbuffers = 2, .modes = {STARPU_R, STARPU_RW}, .name = "syrk"};
static struct starpu_codelet gemm_cl = {.cpu_funcs = {cl_gemm},
                                        .nbuffers = 3,
                                        .modes = {STARPU_R, STARPU_R, STARPU_RW},
                                        .name = "gemm"};

int main(int argc, char **argv)
{
    pp_self_launch(argc, argv);
    openblas_set_num_threads(1);
    setenv("STARPU_SILENT", "1", 0);
    struct starpu_conf conf;
    starpu_conf_init(&conf);
    conf.ncpus = mc_env("BENCH_THREADS", 1);
    conf.ncuda = 0;
    conf.nopencl = 0;
    if (starpu_mpi_init_conf(&argc, &argv, 1, MPI_COMM_WORLD, &conf) != 0) {
        fprintf(stderr, "ERROR starpu_mpi_init_conf failed\n");
        return 1;
    }
    int me, np;
    starpu_mpi_comm_rank(MPI_COMM_WORLD, &me);
    starpu_mpi_comm_size(MPI_COMM_WORLD, &np);
    int n = mc_env("BENCH_N", 2048), nb = mc_env("BENCH_NB", 256), reps = mc_env("BENCH_REPS", 2);
    int nt = n / nb;
    n = nt * nb;
    double dgemm = 0, best = 1e30;
    if (me == 0)
        dgemm = mc_dgemm_rate();
    starpu_mpi_barrier(MPI_COMM_WORLD);
    starpu_data_handle_t *h = calloc((size_t)nt * nt, sizeof *h);
    double **mem = calloc((size_t)nt * nt, sizeof *mem);
#define H(i, j) h[(size_t)(i)*nt + (size_t)(j)]
#define M(i, j) mem[(size_t)(i)*nt + (size_t)(j)]
    for (int r = 0; r < reps && h && mem; r++) {
        for (int j = 0; j < nt; j++) {
            for (int i = j; i < nt; i++) {
                int owner = j % np;
                if (owner == me) {
                    double *t = malloc(sizeof(double) * (size_t)nb * nb);
                    M(i, j) = t;
                    for (int c = 0; c < nb; c++)
                        for (int rr = 0; rr < nb; rr++)
                            t[(size_t)c * nb + rr] =
                                mc_elem((size_t)i * nb + rr, (size_t)j * nb + c, (size_t)n);
                    starpu_matrix_data_register(&H(i, j), STARPU_MAIN_RAM, (uintptr_t)M(i, j),
                                                (uint32_t)nb, (uint32_t)nb, (uint32_t)nb,
                                                sizeof(double));
                } else {
                    starpu_matrix_data_register(&H(i, j), -1, 0, (uint32_t)nb, (uint32_t)nb,
                                                (uint32_t)nb, sizeof(double));
                }
                starpu_mpi_data_register(H(i, j), (int64_t)i * nt + j, owner);
            }
        }
        starpu_mpi_barrier(MPI_COMM_WORLD);
        double t0 = pp_now();
        for (int k = 0; k < nt; k++) {
            starpu_mpi_task_insert(MPI_COMM_WORLD, &potrf_cl, STARPU_RW, H(k, k), 0);
            for (int i = k + 1; i < nt; i++)
                starpu_mpi_task_insert(MPI_COMM_WORLD, &trsm_cl, STARPU_R, H(k, k), STARPU_RW,
                                       H(i, k), 0);
            for (int i = k + 1; i < nt; i++) {
                starpu_mpi_task_insert(MPI_COMM_WORLD, &syrk_cl, STARPU_R, H(i, k), STARPU_RW,
                                       H(i, i), 0);
                for (int j = k + 1; j < i; j++)
                    starpu_mpi_task_insert(MPI_COMM_WORLD, &gemm_cl, STARPU_R, H(i, k), STARPU_R,
                                           H(j, k), STARPU_RW, H(i, j), 0);
            }
        }
        starpu_mpi_wait_for_all(MPI_COMM_WORLD);
        starpu_mpi_barrier(MPI_COMM_WORLD);
        double t = pp_now() - t0;
        if (t < best)
            best = t;
        for (int j = 0; j < nt; j++)
            for (int i = j; i < nt; i++) {
                starpu_data_unregister(H(i, j));
                free(M(i, j));
                M(i, j) = NULL;
            }
    }
#undef H
#undef M
    int failed = potrf_failed;
    if (failed)
        fprintf(stderr, "ERROR starpu potrf failed on rank %d\n", me);
    else if (me == 0)
        mc_report("starpu_mpi", n, nb, np, best, dgemm);
    free(h);
    free(mem);
    starpu_mpi_shutdown();
    return failed;
}
