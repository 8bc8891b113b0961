/* bench/cholesky/starpu.c - tiled Cholesky with StarPU's sequential task flow (task_insert).
 *
 * Each tile is a registered matrix handle; the codelets call the same OpenBLAS kernels
 * (single-threaded). STARPU_SCHED picks the scheduler (StarPU's default otherwise).
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <starpu.h>

static void cl_potrf(void *buffers[], void *arg)
{
    double *a = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    int ld = (int)STARPU_MATRIX_GET_LD(buffers[0]), nb = (int)STARPU_MATRIX_GET_NX(buffers[0]);
    if (ch_potrf(a, nb, ld))
        fprintf(stderr, "ERROR starpu potrf failed\n");
}
static void cl_trsm(void *buffers[], void *arg)
{
    const double *akk = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    double *aik = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
    ch_trsm(akk, aik, (int)STARPU_MATRIX_GET_NX(buffers[1]), (int)STARPU_MATRIX_GET_LD(buffers[1]));
}
static void cl_syrk(void *buffers[], void *arg)
{
    const double *aik = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    double *aii = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
    ch_syrk(aik, aii, (int)STARPU_MATRIX_GET_NX(buffers[1]), (int)STARPU_MATRIX_GET_LD(buffers[1]));
}
static void cl_gemm(void *buffers[], void *arg)
{
    const double *aik = (double *)STARPU_MATRIX_GET_PTR(buffers[0]);
    const double *ajk = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
    double *aij = (double *)STARPU_MATRIX_GET_PTR(buffers[2]);
    ch_gemm(aik, ajk, aij, (int)STARPU_MATRIX_GET_NX(buffers[2]),
            (int)STARPU_MATRIX_GET_LD(buffers[2]));
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

static int cholesky(double *a, int n, int nb)
{
    int t = n / nb;
    starpu_data_handle_t *h = malloc(sizeof *h * (size_t)t * t);
#define H(i, j) h[(size_t)(i) + (size_t)(j)*t]
    for (int j = 0; j < t; j++)
        for (int i = j; i < t; i++)
            starpu_matrix_data_register(&H(i, j), STARPU_MAIN_RAM,
                                        (uintptr_t)ch_tile(a, n, nb, i, j), (uint32_t)n,
                                        (uint32_t)nb, (uint32_t)nb, sizeof(double));
    int rc = 0;
    for (int k = 0; k < t && !rc; k++) {
        rc |= starpu_task_insert(&potrf_cl, STARPU_RW, H(k, k), 0);
        for (int i = k + 1; i < t; i++)
            rc |= starpu_task_insert(&trsm_cl, STARPU_R, H(k, k), STARPU_RW, H(i, k), 0);
        for (int i = k + 1; i < t; i++) {
            rc |= starpu_task_insert(&syrk_cl, STARPU_R, H(i, k), STARPU_RW, H(i, i), 0);
            for (int j = k + 1; j < i; j++)
                rc |= starpu_task_insert(&gemm_cl, STARPU_R, H(i, k), STARPU_R, H(j, k), STARPU_RW,
                                         H(i, j), 0);
        }
    }
    starpu_task_wait_for_all();
    for (int j = 0; j < t; j++)
        for (int i = j; i < t; i++)
            starpu_data_unregister(H(i, j));
#undef H
    free(h);
    return rc;
}

int main(int argc, char **argv)
{
    ch_cfg_t c;
    if (ch_setup(&c, argc, argv, "cholesky\ncholesky_frac\ndgemm"))
        return 0;
    setenv("STARPU_SILENT", "1", 0);
    struct starpu_conf conf;
    starpu_conf_init(&conf);
    conf.ncpus = c.threads;
    conf.ncuda = 0;
    conf.nopencl = 0;
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
        if (starpu_init(&conf) != 0) {
            fprintf(stderr, "ERROR starpu_init failed\n");
            return 1;
        }
        for (int k = 0; k < c.nnbs; k++) {
            int nb = c.nbs[k];
            if (n % nb)
                continue;
            double best = 1e30;
            for (int r = 0; r < c.reps; r++) {
                if (ch_prepare(f, a, n, nb))
                    return 1;
                double t0 = ch_now();
                if (cholesky(f, n, nb)) {
                    fprintf(stderr, "ERROR starpu_task_insert failed\n");
                    return 1;
                }
                double t = ch_now() - t0;
                if (t < best)
                    best = t;
            }
            ch_verify("starpu", a, f, n, nb);
            ch_print("starpu", n, nb, c.threads, best, dgemm);
        }
        starpu_shutdown();
        free(a);
        free(f);
    }
    return 0;
}
