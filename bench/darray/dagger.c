/* bench/darray/dagger.c - distributed arrays: constructors, X .+ 1, sum, norm, matmul,
 * Cholesky and LU on NB x NB blocks (rows in problem.h).
 * BENCH_DARRAY_RANKS=1 under mpirun (driver mode): every array over the job's ranks, block
 * columns dealt round robin (DAGGER_DIST_CYCLICCOL, so LU runs too); X .+ 1 is then a map
 * (broadcast is not built over ranks); the rows print as impl "dagger_ranks".
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <cblas.h>
#include <lapacke.h>

#include "dagger.h"
#include "dagger/darray.h"

void openblas_set_num_threads(int n);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) != 0) {                                                                            \
            printf("ERROR %s: %s\n", #x, dagger_last_errmsg());                                    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static double best(double a, double b) { return a < b ? a : b; }

static void add_one(void *out, const void *in, void *ud)
{
    (void)ud;
    *(double *)out = *(const double *)in + 1.0;
}

int main(int argc, char **argv)
{
    da_cfg_t c;
    if (da_setup(&c, argc, argv))
        return 0;
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = c.threads;
    dagger_ctx_t *ctx;
    int orc = dagger_ctx_open(&ctx, &o);
    if (orc == DAGGER_CTX_SERVED) /* a rank of the job other than the driver */
        return 0;
    CHECK(orc);
    const char *env = getenv("BENCH_DARRAY_RANKS");
    bool ranks = env && atoi(env) == 1;
    const char *impl = ranks ? "dagger_ranks" : "dagger";
    dagger_darray_opts_t ro, *po = NULL;
    dagger_darray_opts_init(&ro);
    if (ranks) {
        ro.over = DAGGER_DARRAY_RANKS;
        ro.dist = DAGGER_DIST_CYCLICCOL;
        po = &ro;
    }
    int n = c.n, nb = c.nb;
    dagger_dims_t dims = DAGGER_DIMS((size_t)n, (size_t)n),
                  bl = DAGGER_BLOCKS((size_t)nb, (size_t)nb);

    /* element-wise rows */
    double t_alloc = 1e30, t_add = 1e30, t_sum = 1e30, t_norm = 1e30;
    dagger_darray_t *x, *y;
    CHECK(dagger_darray_rand(ctx, DAGGER_ELT_F64, bl, dims, 1, po, &x));
    double *buf = malloc((size_t)n * n * sizeof *buf), ref = 0, ref2 = 0;
    CHECK(dagger_darray_collect(x, buf, (size_t)n * n * sizeof *buf, 0));
    for (size_t k = 0; k < (size_t)n * n; k++) {
        ref += buf[k];
        ref2 += buf[k] * buf[k];
    }
    for (int r = 0; r < c.reps; r++) {
        double t0 = da_now();
        CHECK(dagger_darray_zeros(ctx, DAGGER_ELT_F64, bl, dims, po, &y));
        t_alloc = best(t_alloc, da_now() - t0);
        dagger_darray_release(y);
        t0 = da_now();
        if (ranks)
            CHECK(dagger_darray_map(x, DAGGER_ELT_RAW, add_one, NULL, NULL, &y));
        else
            CHECK(dagger_darray_broadcast_scalar(x, DAGGER_OP_ADD, 1.0, false, &y));
        t_add = best(t_add, da_now() - t0);
        dagger_darray_release(y);
        dagger_value_t v;
        t0 = da_now();
        CHECK(dagger_darray_reduce(x, DAGGER_OP_ADD, NULL, &v));
        t_sum = best(t_sum, da_now() - t0);
        if (fabs(v.u.f - ref) > 1e-8 * ref) {
            printf("ERROR sum %.17g, expected %.17g\n", v.u.f, ref);
            return 1;
        }
        double nr;
        t0 = da_now();
        CHECK(dagger_darray_norm(x, &nr));
        t_norm = best(t_norm, da_now() - t0);
        if (fabs(nr - sqrt(ref2)) > 1e-8 * nr) {
            printf("ERROR norm %.17g, expected %.17g\n", nr, sqrt(ref2));
            return 1;
        }
    }
    dagger_darray_release(x);
    da_result("darray_alloc", impl, &c, t_alloc * 1e3, "ms");
    da_result("darray_add1", impl, &c, t_add * 1e3, "ms");
    da_result("darray_sum", impl, &c, t_sum * 1e3, "ms");
    da_result("darray_norm", impl, &c, t_norm * 1e3, "ms");

    /* dgemm rate of this machine for the Cholesky fraction */
    int m = n < 4096 ? n : 4096;
    double *ga = malloc((size_t)m * m * sizeof *ga), *gc = calloc((size_t)m * m, sizeof *gc);
    for (size_t k = 0; k < (size_t)m * m; k++)
        ga[k] = da_val(k);
    openblas_set_num_threads(c.threads);
    double t_dgemm = 1e30;
    for (int r = 0; r < c.reps; r++) {
        double t0 = da_now();
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0, ga, m, ga, m, 0.0, gc,
                    m);
        t_dgemm = best(t_dgemm, da_now() - t0);
    }
    double dgemm_rate = 2.0 * m * m * (double)m / t_dgemm * 1e-9;

    /* matmul */
    dagger_darray_t *a, *cc;
    dagger_dims_t md = DAGGER_DIMS((size_t)m, (size_t)m);
    CHECK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, bl, md, ga, po, &a));
    double t_mm = 1e30;
    for (int r = 0; r < c.reps; r++) {
        double t0 = da_now();
        CHECK(dagger_darray_matmul(a, a, &cc));
        t_mm = best(t_mm, da_now() - t0);
        if (r == 0) {
            double *got = malloc((size_t)m * m * sizeof *got);
            CHECK(dagger_darray_collect(cc, got, (size_t)m * m * sizeof *got, 0));
            for (size_t k = 0; k < (size_t)m * m; k += 997)
                if (fabs(got[k] - gc[k]) > 1e-9 * fabs(gc[k])) {
                    printf("ERROR matmul element %zu: %g, expected %g\n", k, got[k], gc[k]);
                    return 1;
                }
            free(got);
        }
        dagger_darray_release(cc);
    }
    dagger_darray_release(a);
    da_result("darray_matmul", impl, &c, 2.0 * m * m * (double)m / t_mm * 1e-9, "GFLOP/s");
    free(ga);
    free(gc);

    /* Cholesky */
    da_spd(buf, n);
    CHECK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, bl, dims, buf, po, &a));
    double t_ch = 1e30;
    dagger_darray_t *l = NULL;
    for (int r = 0; r < c.reps; r++) {
        dagger_darray_release(l);
        double t0 = da_now();
        CHECK(dagger_darray_cholesky(a, &l));
        t_ch = best(t_ch, da_now() - t0);
    }
    /* check: L (L^T x) = A x for x = 1 */
    double *lv = malloc((size_t)n * n * sizeof *lv), *v1 = malloc(n * sizeof *v1),
           *v2 = malloc(n * sizeof *v2);
    CHECK(dagger_darray_collect(l, lv, (size_t)n * n * sizeof *lv, 0));
    for (int i = 0; i < n; i++)
        v1[i] = 1;
    cblas_dtrmv(CblasColMajor, CblasLower, CblasTrans, CblasNonUnit, n, lv, n, v1, 1);
    cblas_dtrmv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, n, lv, n, v1, 1);
    for (int i = 0; i < n; i++)
        v2[i] = 1;
    double err = 0, nrm = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++)
            s += buf[i + (size_t)j * n] * v2[j];
        err = fmax(err, fabs(s - v1[i]));
        nrm = fmax(nrm, fabs(s));
    }
    if (err > 1e-10 * nrm) {
        printf("ERROR cholesky residual %g\n", err / nrm);
        return 1;
    }
    dagger_darray_release(l);
    dagger_darray_release(a);
    double chol_rate = (double)n * n * (double)n / 3.0 / t_ch * 1e-9;
    da_result("darray_cholesky", impl, &c, chol_rate, "GFLOP/s");
    da_result("darray_cholesky_frac", impl, &c, 100.0 * chol_rate / dgemm_rate, "%dgemm");

    /* LU */
    for (size_t k = 0; k < (size_t)n * n; k++)
        buf[k] = da_val(k * 7 + 3) - 0.5;
    CHECK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, bl, dims, buf, po, &a));
    int64_t *ipiv = malloc(n * sizeof *ipiv);
    double t_lu = 1e30;
    dagger_darray_t *f = NULL;
    for (int r = 0; r < c.reps; r++) {
        dagger_darray_release(f);
        double t0 = da_now();
        CHECK(dagger_darray_lu(a, &f, ipiv));
        t_lu = best(t_lu, da_now() - t0);
    }
    /* check: solve A y = A 1 with the factors */
    CHECK(dagger_darray_collect(f, lv, (size_t)n * n * sizeof *lv, 0));
    int *piv = malloc(n * sizeof *piv);
    for (int i = 0; i < n; i++) {
        piv[i] = (int)ipiv[i];
        double s = 0;
        for (int j = 0; j < n; j++)
            s += buf[i + (size_t)j * n];
        v1[i] = s;
    }
    memcpy(v2, v1, n * sizeof *v2);
    LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'N', n, 1, lv, n, piv, v1, n);
    /* backward error: |A y - b| relative to |A| |y| (a random matrix may be ill-conditioned) */
    cblas_dgemv(CblasColMajor, CblasNoTrans, n, n, 1.0, buf, n, v1, 1, -1.0, v2, 1);
    err = 0;
    double ynorm = 0;
    for (int i = 0; i < n; i++) {
        err = fmax(err, fabs(v2[i]));
        ynorm = fmax(ynorm, fabs(v1[i]));
    }
    if (err > 1e-12 * n * ynorm) {
        printf("ERROR lu: backward error %g\n", err / (n * ynorm));
        return 1;
    }
    da_result("darray_lu", impl, &c, 2.0 * n * n * (double)n / 3.0 / t_lu * 1e-9, "GFLOP/s");
    printf("# nb=%d dgemm(%d threads, n=%d)=%.1f GFLOP/s\n", nb, c.threads, m, dgemm_rate);
    dagger_darray_release(f);
    dagger_darray_release(a);
    free(buf);
    free(lv);
    free(v1);
    free(v2);
    free(ipiv);
    free(piv);
    return dagger_ctx_close(ctx) ? 1 : 0;
}
