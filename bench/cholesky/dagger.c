/* bench/cholesky/dagger.c - tiled Cholesky in a dagger datadeps region.
 *
 * Each tile kernel is spawned with tile annotations (In / InOut of NB x NB tiles of the
 * column-major matrix); the region derives the dependencies. Also prints the analysis cost
 * per annotated argument and the empty-task overhead with three annotated arguments.
 * Priorities follow the critical path (potrf > trsm of the panel > updates of the next column >
 * the rest), the lookahead the peers use; BENCH_PRIO=0 turns them off.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include "dagger.h"
#include "dagger/datadeps.h"

static int k_potrf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int info = ch_potrf(dagger_arg_ptr(a, 0), (int)dagger_arg_i64(a, 1), (int)dagger_arg_i64(a, 2));
    return info ? dagger_fail(tc, DAGGER_ETASK, "dpotrf: info %d", info) : 0;
}
static int k_trsm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    ch_trsm(dagger_arg_ptr(a, 0), dagger_arg_ptr(a, 1), (int)dagger_arg_i64(a, 2),
            (int)dagger_arg_i64(a, 3));
    return 0;
}
static int k_syrk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    ch_syrk(dagger_arg_ptr(a, 0), dagger_arg_ptr(a, 1), (int)dagger_arg_i64(a, 2),
            (int)dagger_arg_i64(a, 3));
    return 0;
}
static int k_gemm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    ch_gemm(dagger_arg_ptr(a, 0), dagger_arg_ptr(a, 1), dagger_arg_ptr(a, 2),
            (int)dagger_arg_i64(a, 3), (int)dagger_arg_i64(a, 4));
    return 0;
}

static int cholesky(dagger_ctx_t *ctx, double *a, int n, int nb, dagger_datadeps_stats_t *st)
{
    int t = n / nb;
    dagger_datadeps_t *dd;
    int rc = dagger_datadeps_begin(ctx, DAGGER_DATADEPS_TIMING, &dd);
    if (rc)
        return rc;
#define TILE(acc, i, j) dagger_tile(acc, ch_tile(a, n, nb, i, j), nb, nb, n, sizeof(double))
    /* Priorities: the critical path first (potrf, then the trsm of its panel), then the
     * updates of the next panel's column (the lookahead), then the rest of the trailing
     * matrix. BENCH_PRIO=0 spawns every kernel at priority 0 (the before figure). */
    const char *pe = getenv("BENCH_PRIO");
    int prio = !(pe && pe[0] == '0');
    dagger_task_opts_t op[4];
    for (int l = 0; l < 4; l++) {
        dagger_task_opts_init(&op[l]);
        op[l].priority = prio ? l : 0;
    }
    for (int k = 0; k < t; k++) {
        dagger_task_release(dagger_datadeps_spawn_opts(dd, &op[3], k_potrf,
                                                       TILE(DAGGER_ACCESS_INOUT, k, k), nb, n));
        for (int i = k + 1; i < t; i++)
            dagger_task_release(dagger_datadeps_spawn_opts(dd, &op[2], k_trsm,
                                                           TILE(DAGGER_ACCESS_IN, k, k),
                                                           TILE(DAGGER_ACCESS_INOUT, i, k), nb, n));
        for (int i = k + 1; i < t; i++) {
            dagger_task_release(dagger_datadeps_spawn_opts(dd, &op[i == k + 1], k_syrk,
                                                           TILE(DAGGER_ACCESS_IN, i, k),
                                                           TILE(DAGGER_ACCESS_INOUT, i, i), nb, n));
            for (int j = k + 1; j < i; j++)
                dagger_task_release(dagger_datadeps_spawn_opts(
                    dd, &op[j == k + 1], k_gemm, TILE(DAGGER_ACCESS_IN, i, k),
                    TILE(DAGGER_ACCESS_IN, j, k), TILE(DAGGER_ACCESS_INOUT, i, j), nb, n));
        }
    }
#undef TILE
    dagger_datadeps_stats(dd, st);
    return dagger_datadeps_end(dd);
}

static int empty(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *z = dagger_arg_ptr(a, 2);
    z[0] += 1;
    return 0;
}

static double cells[3][CH_OVERHEAD_CELLS];

static int overhead(dagger_ctx_t *ctx, int ntasks, unsigned flags, double *secs,
                    dagger_datadeps_stats_t *st)
{
    double t0 = ch_now();
    dagger_datadeps_t *dd;
    int rc = dagger_datadeps_begin(ctx, flags, &dd);
    if (rc)
        return rc;
    for (int i = 0; i < ntasks; i++)
        dagger_task_release(
            dagger_datadeps_spawn(dd, empty, dagger_in(&cells[0][i % CH_OVERHEAD_CELLS], 8),
                                  dagger_in(&cells[1][(i + 1) % CH_OVERHEAD_CELLS], 8),
                                  dagger_inout(&cells[2][i % CH_OVERHEAD_CELLS], 8)));
    dagger_datadeps_stats(dd, st);
    rc = dagger_datadeps_end(dd);
    *secs = ch_now() - t0;
    return rc;
}

int main(int argc, char **argv)
{
    ch_cfg_t c;
    if (ch_setup(&c, argc, argv,
                 "cholesky\ncholesky_frac\ndgemm\ndatadeps_analysis\ndatadeps_overhead"))
        return 0;
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = c.threads;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o)) {
        fprintf(stderr, "ERROR dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
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
            dagger_datadeps_stats_t st;
            for (int r = 0; r < c.reps; r++) {
                if (ch_prepare(f, a, n, nb))
                    return 1;
                double t0 = ch_now();
                int rc = cholesky(ctx, f, n, nb, &st);
                double t = ch_now() - t0;
                if (rc) {
                    fprintf(stderr, "ERROR cholesky region: %s\n", dagger_last_errmsg());
                    return 1;
                }
                if (t < best)
                    best = t;
            }
            ch_verify("dagger", a, f, n, nb);
            ch_print("dagger", n, nb, c.threads, best, dgemm);
            printf("RESULT|datadeps_analysis|dagger|cholesky,n=%d,nb=%d,tasks=%llu,args=%llu|%.1f|"
                   "ns/arg\n",
                   n, nb, (unsigned long long)st.tasks, (unsigned long long)st.annotated,
                   (double)st.analysis_ns / (double)(st.annotated ? st.annotated : 1));
        }
        free(a);
        free(f);
    }
    /* Empty tasks with 3 annotated arguments: total cost per task (no timing inside), then the
     * analysis share measured separately. */
    double best = 1e30, secs;
    dagger_datadeps_stats_t st;
    for (int r = 0; r < c.reps + 1; r++) {
        memset(cells, 0, sizeof cells);
        if (overhead(ctx, CH_OVERHEAD_TASKS, 0, &secs, &st)) {
            fprintf(stderr, "ERROR overhead region: %s\n", dagger_last_errmsg());
            return 1;
        }
        if (secs < best)
            best = secs;
    }
    if (cells[2][0] != (double)(CH_OVERHEAD_TASKS / CH_OVERHEAD_CELLS)) {
        fprintf(stderr, "ERROR dagger overhead: cell holds %g\n", cells[2][0]);
        return 1;
    }
    printf("RESULT|datadeps_overhead|dagger|args=3,threads=%d|%.1f|ns/task\n", c.threads,
           best / CH_OVERHEAD_TASKS * 1e9);
    if (overhead(ctx, CH_OVERHEAD_TASKS, DAGGER_DATADEPS_TIMING, &secs, &st) == 0)
        printf("RESULT|datadeps_analysis|dagger|empty,args=3,threads=%d|%.1f|ns/arg\n", c.threads,
               (double)st.analysis_ns / (double)(st.annotated ? st.annotated : 1));
    if (dagger_ctx_close(ctx)) {
        fprintf(stderr, "ERROR dagger_ctx_close: %s\n", dagger_last_errmsg());
        return 1;
    }
    return 0;
}
