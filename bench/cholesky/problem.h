/* bench/cholesky/problem.h - tiled Cholesky: sizes, matrix, check and helpers for every impl.
 *
 * Rows (bench names as printed in RESULT lines):
 *   cholesky   A = L L^T of an N x N SPD matrix, lower, column-major.      GFLOP/s (N^3/3)
 *              Tiled versions (dagger datadeps, OpenMP depend, StarPU task_insert) run one
 *              potrf/trsm/syrk/gemm per NB x NB tile with single-threaded OpenBLAS (the solves as
 *              multiplies by the diagonal tile's inverse: ch_inv_setup); lapacke
 *              is LAPACKE_dpotrf with multithreaded OpenBLAS (printed for every NB so that it
 *              pairs with the tiled rows).
 *   cholesky_frac  the same figure as a percentage of the DGEMM rate below.      %dgemm
 *   dgemm      cblas_dgemm with T OpenBLAS threads, n = min(N, 4096), best of 3.  GFLOP/s
 *   datadeps_overhead  (dagger, omp) empty tasks with 3 annotated arguments
 *              (In, In, InOut on 8-byte cells), spawned and waited.            ns/task
 *   datadeps_analysis  (dagger) analysis time per annotated argument, in the Cholesky
 *              region and in the overhead row.                                   ns/arg
 * Sizes: BENCH_N=<n> runs that size only; default N=4096, BENCH_FULL=1 adds 8192. Tile sizes
 * 256 and 512 (BENCH_NB=<nb> for one). Threads: --threads T, BENCH_THREADS, else the cores.
 * Each figure is the best of BENCH_REPS runs (default 2). The factor is checked by solving
 * L L^T y = A x for a random x (relative error < 1e-8), else "ERROR ..." and exit 1.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_CHOLESKY_PROBLEM_H
#define DAGGER_BENCH_CHOLESKY_PROBLEM_H

#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <lapacke.h>

/* OpenBLAS extensions (declared by its cblas.h too). */
void openblas_set_num_threads(int num_threads);

#define CH_OVERHEAD_TASKS 200000
#define CH_OVERHEAD_CELLS 64

typedef struct ch_cfg {
    int sizes[4], nsizes;
    int nbs[4], nnbs;
    int threads;
    int reps;
} ch_cfg_t;

static inline double ch_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int ch_env_int(const char *name, int dflt)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

/* Parse --list / --threads and the environment. Returns 0 to go on, 1 when --list answered. */
static inline int ch_setup(ch_cfg_t *c, int argc, char **argv, const char *rows)
{
    memset(c, 0, sizeof *c);
    c->threads = ch_env_int("BENCH_THREADS", (int)sysconf(_SC_NPROCESSORS_ONLN));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            puts(rows);
            return 1;
        }
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            c->threads = atoi(argv[++i]);
    }
    if (c->threads < 1)
        c->threads = 1;
    int n = ch_env_int("BENCH_N", 0);
    if (n > 0)
        c->sizes[c->nsizes++] = n;
    else {
        c->sizes[c->nsizes++] = 4096;
        if (ch_env_int("BENCH_FULL", 0))
            c->sizes[c->nsizes++] = 8192;
    }
    int nb = ch_env_int("BENCH_NB", 0);
    if (nb > 0)
        c->nbs[c->nnbs++] = nb;
    else {
        c->nbs[c->nnbs++] = 256;
        c->nbs[c->nnbs++] = 512;
    }
    c->reps = ch_env_int("BENCH_REPS", 2);
    if (c->reps < 1)
        c->reps = 1;
    return 0;
}

/* Whether BENCH_FILTER (if any) selects the row `name`. */
static inline int ch_row_on(const char *name)
{
    const char *f = getenv("BENCH_FILTER");
    return !f || !*f || strstr(name, f) || strstr("cholesky", f);
}

static inline double ch_flops(int n) { return (double)n * n * n / 3.0; }

/* A random SPD matrix: symmetric entries in [0, 1) plus n on the diagonal. */
static inline void ch_make(double *a, int n, uint64_t seed)
{
    uint64_t s = seed * 2654435761u + 1;
    for (int j = 0; j < n; j++)
        for (int i = j; i < n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            double x = (double)(s >> 11) / 9007199254740992.0;
            a[(size_t)i + (size_t)j * n] = a[(size_t)j + (size_t)i * n] = x + (i == j ? n : 0);
        }
}

static inline double *ch_alloc(int n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(double) * (size_t)n * (size_t)n))
        return NULL;
    return p;
}

/* Check the lower factor L (in f) of a (the original): solve L L^T y = a x, compare with x.
 * Returns the relative error. */
static inline double ch_check(const double *a, const double *f, int n)
{
    double *x = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++)
        x[i] = 1.0 + (double)(i % 7);
    cblas_dsymv(CblasColMajor, CblasLower, n, 1.0, a, n, x, 1, 0.0, b, 1);
    cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, n, f, n, b, 1);
    cblas_dtrsv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, n, f, n, b, 1);
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += (b[i] - x[i]) * (b[i] - x[i]);
        den += x[i] * x[i];
    }
    free(x);
    free(b);
    return sqrt(num / den);
}

/* The multithreaded DGEMM rate (GFLOP/s) at n x n; sets OpenBLAS to `threads` threads. */
static inline double ch_dgemm_rate(int n, int threads)
{
    openblas_set_num_threads(threads);
    double *a = ch_alloc(n), *b = ch_alloc(n), *c = ch_alloc(n);
    for (size_t i = 0; i < (size_t)n * n; i++)
        a[i] = b[i] = 1.0 / (double)(1 + i % 13), c[i] = 0;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n / 4, n / 4, n / 4, 1.0, a, n, b, n,
                0.0, c, n); /* warm up */
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = ch_now();
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
        double t = ch_now() - t0;
        if (t < best)
            best = t;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best * 1e-9;
}

/* The DGEMM reference rate, measured once per N (BENCH_DGEMM_RATE=<GFLOP/s> skips it). */
static inline double ch_dgemm_ref(int n, int threads)
{
    int m = n < 4096 ? n : 4096;
    const char *e = getenv("BENCH_DGEMM_RATE");
    double r = e && *e ? atof(e) : ch_dgemm_rate(m, threads);
    printf("RESULT|dgemm|openblas|n=%d,threads=%d|%.2f|GFLOP/s\n", m, threads, r);
    return r;
}

static inline void ch_print(const char *impl, int n, int nb, int threads, double seconds,
                            double dgemm)
{
    double gf = ch_flops(n) / seconds * 1e-9;
    printf("RESULT|cholesky|%s|n=%d,nb=%d,threads=%d|%.2f|GFLOP/s\n", impl, n, nb, threads, gf);
    printf("RESULT|cholesky_frac|%s|n=%d,nb=%d,threads=%d|%.1f|%%dgemm\n", impl, n, nb, threads,
           100.0 * gf / dgemm);
    fflush(stdout);
}

/* Verify a factor; on failure print ERROR and exit 1. */
static inline void ch_verify(const char *impl, const double *a, const double *f, int n, int nb)
{
    double e = ch_check(a, f, n);
    if (!(e < 1e-8)) {
        fprintf(stderr, "ERROR cholesky %s n=%d nb=%d: relative error %g\n", impl, n, nb, e);
        exit(1);
    }
}

/* Tile (i, j) of the column-major n x n matrix a with tile size nb. */
static inline double *ch_tile(double *a, int n, int nb, int i, int j)
{
    return a + (size_t)i * nb + (size_t)j * nb * (size_t)n;
}

/* The panel's triangular solves, A_ik := A_ik L_kk^-T, run as a multiply by the inverse
 * (dtrtri once per diagonal tile, in its potrf task, then dtrmm per tile): single-threaded
 * OpenBLAS solves at 29-42 GFLOP/s where it multiplies at 58-66 (nb 512-1024, this project's
 * 2-core machine), and the solves were a sixth of the serial kernel time. Every tiled
 * implementation shares this code; BENCH_TRSM=plain runs dtrsm instead (the figure before).
 * The inverses live in a workspace per diagonal tile, found from the tile's address:
 * ch_prepare (or ch_inv_setup(a, n, nb)) before each factorisation of a. */
static struct {
    const double *base;
    int n, nb, t, on;
    double **w;
} ch_inv;

static inline void ch_inv_free(void)
{
    if (ch_inv.w)
        for (int k = 0; k < ch_inv.t; k++)
            free(ch_inv.w[k]); /* calloc'ed array: the ones never made are NULL */
    free(ch_inv.w);
    ch_inv.w = NULL;
}

static inline int ch_inv_setup(const double *a, int n, int nb)
{
    const char *e = getenv("BENCH_TRSM");
    ch_inv.on = !(e && strcmp(e, "plain") == 0);
    if (ch_inv.w && (ch_inv.n != n || ch_inv.nb != nb))
        ch_inv_free();
    ch_inv.base = a;
    if (!ch_inv.on || ch_inv.w)
        return 0;
    ch_inv.n = n;
    ch_inv.nb = nb;
    ch_inv.t = n / nb;
    ch_inv.w = calloc((size_t)ch_inv.t, sizeof *ch_inv.w);
    if (!ch_inv.w)
        return -1;
    for (int k = 0; k < ch_inv.t; k++)
        if (!(ch_inv.w[k] = malloc(sizeof(double) * (size_t)nb * (size_t)nb))) {
            ch_inv_free();
            return -1;
        }
    return 0;
}

/* Before each timed factorisation of a tiled implementation: f := a, the inverses' workspace
 * ready. 0, or -1 with the error printed (out of memory). */
static inline int ch_prepare(double *f, const double *a, int n, int nb)
{
    memcpy(f, a, sizeof(double) * (size_t)n * (size_t)n);
    if (ch_inv_setup(f, n, nb) == 0)
        return 0;
    fprintf(stderr, "ERROR out of memory for the inverses of n=%d nb=%d\n", n, nb);
    return -1;
}

/* The workspace of diagonal tile akk, or NULL (plain solves, or not a diagonal tile of a). */
static inline double *ch_inv_of(const double *akk)
{
    if (!ch_inv.on || !ch_inv.w || akk < ch_inv.base)
        return NULL;
    size_t off = (size_t)(akk - ch_inv.base), step = (size_t)ch_inv.nb * ((size_t)ch_inv.n + 1);
    if (off % step != 0 || off / step >= (size_t)ch_inv.t)
        return NULL;
    return ch_inv.w[off / step];
}

/* The four tile kernels (single-threaded OpenBLAS is set by the caller). */
static inline int ch_potrf(double *akk, int nb, int ld)
{
    int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nb, akk, ld);
    double *w = ch_inv_of(akk);
    if (info || !w)
        return info;
    LAPACKE_dlacpy_work(LAPACK_COL_MAJOR, 'L', nb, nb, akk, ld, w, nb);
    return LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', nb, w, nb);
}
static inline void ch_trsm(const double *akk, double *aik, int nb, int ld)
{
    const double *w = ch_inv_of(akk);
    if (w)
        cblas_dtrmm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, nb, 1.0, w,
                    nb, aik, ld);
    else
        cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, nb, 1.0,
                    akk, ld, aik, ld);
}
static inline void ch_syrk(const double *aik, double *aii, int nb, int ld)
{
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, nb, nb, -1.0, aik, ld, 1.0, aii, ld);
}
static inline void ch_gemm(const double *aik, const double *ajk, double *aij, int nb, int ld)
{
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, nb, nb, nb, -1.0, aik, ld, ajk, ld, 1.0,
                aij, ld);
}

#endif /* DAGGER_BENCH_CHOLESKY_PROBLEM_H */
