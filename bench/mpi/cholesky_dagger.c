/* bench/mpi/cholesky_dagger.c - distributed tiled Cholesky with dagger (cholesky.h): tile (i, j)
 * is mutable data of rank j mod P (dagger_mutable on dagger_scope_worker), made there, as
 * ScaLAPACK's 1 x P grid holds it (BENCH_LAYOUT=row: rank i mod P, which splits each panel); a
 * datadeps region of whole-tile accesses (dagger_ddchunk) runs each potrf/trsm/syrk/gemm on the
 * rank of the tile it writes and copies the tiles it reads from the other rank. Priorities, as in
 * bench/cholesky/dagger.c: potrf 3, the trsm of its panel 2, the updates of the next panel's
 * column 1 (the lookahead), the rest 0; BENCH_PRIO=0 spawns every kernel at 0. Timed from the
 * region's begin to its end; checked against LAPACKE_dpotrf (max relative error < 1e-8).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <dagger.h>
#include <dagger/chunk.h>
#include <dagger/datadeps.h>
#include <lapacke.h>

#include "cholesky.h"

static int nb_of(const dagger_args_t *a, size_t i)
{
    size_t n;
    (void)dagger_arg_buf(a, i, &n);
    return (int)lround(sqrt((double)(n / sizeof(double))));
}

static int make_tile(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t i = (size_t)dagger_arg_i64(a, 0), j = (size_t)dagger_arg_i64(a, 1);
    size_t nb = (size_t)dagger_arg_i64(a, 2), n = (size_t)dagger_arg_i64(a, 3);
    dagger_chunk_t *c;
    size_t shape[2] = {nb, nb};
    int rc = dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F64, 2, shape, &c);
    if (rc)
        return dagger_fail(tc, rc, "tile: %s", dagger_last_errmsg());
    double *t = dagger_chunk_data(c);
    for (size_t cc = 0; cc < nb; cc++)
        for (size_t r = 0; r < nb; r++)
            t[cc * nb + r] = mc_elem(i * nb + r, j * nb + cc, n);
    *out = dagger_chunk_give(tc, c);
    return 0;
}

static int potrf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    int nb = nb_of(a, 0);
    int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', nb, dagger_arg_buf(a, 0, NULL), nb);
    return info ? dagger_fail(tc, DAGGER_ETASK, "dpotrf: info %d", info) : 0;
}

static int trsm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    int nb = nb_of(a, 1);
    cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, nb, 1.0,
                dagger_arg_buf(a, 0, NULL), nb, dagger_arg_buf(a, 1, NULL), nb);
    return 0;
}

static int syrk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    int nb = nb_of(a, 1);
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, nb, nb, -1.0, dagger_arg_buf(a, 0, NULL),
                nb, 1.0, dagger_arg_buf(a, 1, NULL), nb);
    return 0;
}

static int gemm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    int nb = nb_of(a, 2);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, nb, nb, nb, -1.0,
                dagger_arg_buf(a, 0, NULL), nb, dagger_arg_buf(a, 1, NULL), nb, 1.0,
                dagger_arg_buf(a, 2, NULL), nb);
    return 0;
}

static int copy_out(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const void *p = dagger_arg_buf(a, 0, &n);
    *out = dagger_blob_copy(tc, p, n);
    return 0;
}

/* The factor's largest relative error against LAPACKE_dpotrf on the whole matrix. */
static double check(dagger_ctx_t *ctx, dagger_chunk_t **tile, int nt, int nb)
{
    size_t n = (size_t)nt * (size_t)nb;
    double *ref = malloc(sizeof(double) * n * n), err = 0;
    if (!ref)
        return INFINITY;
    for (size_t c = 0; c < n; c++)
        for (size_t r = 0; r < n; r++)
            ref[c * n + r] = mc_elem(r, c, n);
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (int)n, ref, (int)n) != 0)
        err = INFINITY;
    for (int j = 0; j < nt && err < INFINITY; j++) {
        for (int i = j; i < nt; i++) {
            dagger_task_t *t = dagger_spawn(ctx, copy_out, tile[i * nt + j]);
            dagger_value_t v;
            if (dagger_fetch(t, &v) != 0) {
                dagger_task_release(t);
                err = INFINITY;
                break;
            }
            const double *b = v.u.p;
            for (int c = 0; c < nb; c++)
                for (int r = i == j ? c : 0; r < nb; r++) {
                    double want = ref[((size_t)j * nb + c) * n + (size_t)i * nb + r];
                    double e = fabs(b[(size_t)c * nb + r] - want) / fabs(want);
                    if (fabs(want) > 1e-12 && e > err)
                        err = e;
                }
            dagger_task_release(t);
        }
    }
    free(ref);
    return err;
}

int main(int argc, char **argv)
{
    pp_self_launch(argc, argv);
    openblas_set_num_threads(1); /* every rank: the task bodies are single-threaded */
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = mc_env("BENCH_THREADS", 1);
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open(&ctx, &o);
    if (rc == DAGGER_CTX_SERVED)
        return 0;
    if (rc) {
        fprintf(stderr, "ERROR dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    int n = mc_env("BENCH_N", 2048), nb = mc_env("BENCH_NB", 256), reps = mc_env("BENCH_REPS", 2);
    int np = dagger_ctx_nranks(ctx), nt = n / nb;
    n = nt * nb;
    double dgemm = mc_dgemm_rate(), best = 1e30, err = 0;
    dagger_chunk_t **tile = calloc((size_t)nt * nt, sizeof *tile);
    for (int k = 0; k < reps && tile; k++) {
        const char *lay = getenv("BENCH_LAYOUT"); /* "row": tile (i, j) on rank i mod P */
        bool by_row = lay && strcmp(lay, "row") == 0;
        for (int j = 0; j < nt; j++) {
            for (int i = j; i < nt; i++) {
                dagger_scope_t *w = dagger_scope_worker((by_row ? i : j) % np);
                dagger_value_t args[4] = {dagger_i64(i), dagger_i64(j), dagger_i64(nb),
                                          dagger_i64(n)};
                int rc = dagger_mutable(ctx, w, make_tile, args, 4, &tile[i * nt + j]);
                dagger_scope_release(w);
                if (rc != 0) {
                    fprintf(stderr, "ERROR tile: %s\n", dagger_last_errmsg());
                    return 1;
                }
            }
        }
        const char *pe = getenv("BENCH_PRIO");
        int prio = !(pe && pe[0] == '0');
        static const char *const names[4] = {"gemm", "syrk", "trsm", "potrf"};
        dagger_task_opts_t op[4][2]; /* [kernel][lookahead] */
        for (int l = 0; l < 4; l++)
            for (int la = 0; la < 2; la++) {
                dagger_task_opts_init(&op[l][la]);
                op[l][la].name = names[l];
                op[l][la].priority = !prio ? 0 : l >= 2 ? l : la;
            }
        dagger_datadeps_t *dd;
        double t0 = pp_now();
        if (dagger_datadeps_begin(ctx, 0, &dd) != 0)
            return 1;
#define T(i, j) tile[(i)*nt + (j)]
        for (int kk = 0; kk < nt; kk++) {
            dagger_task_release(dagger_datadeps_spawn_opts(
                dd, &op[3][0], potrf, dagger_ddchunk(DAGGER_ACCESS_INOUT, T(kk, kk))));
            for (int i = kk + 1; i < nt; i++)
                dagger_task_release(dagger_datadeps_spawn_opts(
                    dd, &op[2][0], trsm, dagger_ddchunk(DAGGER_ACCESS_IN, T(kk, kk)),
                    dagger_ddchunk(DAGGER_ACCESS_INOUT, T(i, kk))));
            for (int i = kk + 1; i < nt; i++) {
                dagger_task_release(dagger_datadeps_spawn_opts(
                    dd, &op[1][i == kk + 1], syrk, dagger_ddchunk(DAGGER_ACCESS_IN, T(i, kk)),
                    dagger_ddchunk(DAGGER_ACCESS_INOUT, T(i, i))));
                for (int j = kk + 1; j < i; j++)
                    dagger_task_release(dagger_datadeps_spawn_opts(
                        dd, &op[0][j == kk + 1], gemm, dagger_ddchunk(DAGGER_ACCESS_IN, T(i, kk)),
                        dagger_ddchunk(DAGGER_ACCESS_IN, T(j, kk)),
                        dagger_ddchunk(DAGGER_ACCESS_INOUT, T(i, j))));
            }
        }
#undef T
        rc = dagger_datadeps_end(dd);
        double t = pp_now() - t0;
        if (rc) {
            fprintf(stderr, "ERROR factor: %s\n", dagger_last_errmsg());
            return 1;
        }
        if (t < best)
            best = t;
        if (k == 0)
            err = check(ctx, tile, nt, nb);
        for (int i = 0; i < nt * nt; i++) {
            dagger_chunk_release(tile[i]);
            tile[i] = NULL;
        }
    }
    if (!(err < 1e-8)) {
        fprintf(stderr, "ERROR the factor differs from LAPACKE's: max relative error %g\n", err);
        return 1;
    }
    mc_report("dagger", n, nb, np, best, dgemm);
    free(tile);
    return dagger_ctx_close(ctx) ? 1 : 0;
}
