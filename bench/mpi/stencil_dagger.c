/* bench/mpi/stencil_dagger.c - the stencil (stencil.h) as dagger tasks on the ranks of a job:
 * rank 0 spawns every task, column i on rank i / 2 (dagger_scope_worker), its three inputs as
 * task arguments; one worker thread per rank.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <dagger.h>

#include "stencil.h"

static int step(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    st_kernel((uint64_t)dagger_arg_i64(a, 0));
    *out =
        dagger_i64((int64_t)st_value((uint64_t)dagger_arg_i64(a, 1), (uint64_t)dagger_arg_i64(a, 2),
                                     (uint64_t)dagger_arg_i64(a, 3)));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        puts("mpi.stencil_eff\nmpi.stencil_metg");
        return 0;
    }
    pp_self_launch(argc, argv);
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 1;
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open(&ctx, &o);
    if (rc == DAGGER_CTX_SERVED)
        return 0;
    if (rc || dagger_ctx_nranks(ctx) < 2) {
        fprintf(stderr, "ERROR: %s (ranks: %d)\n", rc ? dagger_last_errmsg() : "one rank",
                rc ? 0 : dagger_ctx_nranks(ctx));
        return 1;
    }
    int n = dagger_ctx_nranks(ctx), w = 2 * n, steps = st_steps(), bad = 0;
    double per_iter = st_calibrate();
    printf("# %.3f ns per iteration\n", per_iter * 1e9);
    uint64_t *ref = malloc((size_t)w * sizeof *ref);
    st_reference(w, steps, ref);
    dagger_scope_t **scope = malloc((size_t)n * sizeof *scope);
    for (int r = 0; r < n; r++)
        scope[r] = dagger_scope_worker(r);
    dagger_task_t **prev = calloc((size_t)w, sizeof *prev), **cur = calloc((size_t)w, sizeof *cur);
    struct st_metg metg = {0};
    for (int lg = ST_MAX_LOG2; lg >= ST_MIN_LOG2 && !bad; lg--) {
        int64_t iters = (int64_t)1 << lg;
        double wall = 1e30;
        for (int rep = 0; rep < ST_REPS && !bad; rep++) {
            double t0 = pp_now();
            for (int t = 1; t < steps; t++) {
                for (int i = 0; i < w; i++) {
                    dagger_value_t a[4] = {dagger_i64(iters), dagger_i64(0), dagger_i64(0),
                                           dagger_i64(0)};
                    for (int d = -1; d <= 1; d++) {
                        int j = i + d;
                        if (j < 0 || j >= w)
                            continue;
                        a[2 + d] = t == 1 ? dagger_i64(j + 1) : dagger_taskv(prev[j]);
                    }
                    dagger_task_opts_t to;
                    dagger_task_opts_init(&to);
                    to.scope = scope[i / 2];
                    cur[i] = dagger_spawnv_opts(ctx, &to, step, a, 4);
                }
                for (int i = 0; i < w; i++) {
                    dagger_task_release(prev[i]);
                    prev[i] = cur[i];
                    cur[i] = NULL;
                }
            }
            for (int i = 0; i < w; i++) {
                int64_t v = 0;
                if (dagger_fetch_i64(prev[i], &v)) {
                    fprintf(stderr, "ERROR: column %d: %s\n", i, dagger_task_errmsg(prev[i]));
                    bad = 1;
                } else if ((uint64_t)v != ref[i]) {
                    bad = 1;
                }
            }
            double dt = pp_now() - t0;
            wall = dt < wall ? dt : wall;
            for (int i = 0; i < w; i++) {
                dagger_task_release(prev[i]);
                prev[i] = NULL;
            }
        }
        double eff = st_report("dagger", n, w, steps, (uint64_t)iters, per_iter, wall);
        if (st_metg_add(&metg, eff, (double)iters * per_iter))
            break;
    }
    if (bad)
        fprintf(stderr, "ERROR: the last row differs from the serial evaluation\n");
    st_report_metg("dagger", n, &metg);
    for (int r = 0; r < n; r++)
        dagger_scope_release(scope[r]);
    free(scope);
    free(prev);
    free(cur);
    free(ref);
    return dagger_ctx_close(ctx) == 0 && !bad ? 0 : 1;
}
