/* bench/mpi/chain_dagger.c - a chain of tasks across ranks: the cost of one link when each
 * result goes through the rank that spawned the chain, against straight to the next rank.
 *
 * Design: rank 0 spawns a chain of LINKS tasks, each adding 1 to its input, task k pinned to
 * rank 1 + k mod (ranks - 1) (dagger_scope_worker), all at once, then fetches the last. With
 * DAGGER_MPI_DIRECT=0 each task is sent when ready, after its input came back to rank 0; with
 * early sends (the default) the whole chain goes out at spawn and each result goes from rank to
 * rank. Both modes run in one job, alternated (a fresh context each, every rank setting the
 * mode before it joins), and the best of REPS chains per mode counts: the machine is shared.
 * Prints RESULT|mpi.chain|<mode>|ranks=N|<us per link>|us.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <dagger.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"

#define LINKS 200
#define REPS 5

static int inc(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

/* One chain on a fresh context in `mode`: seconds per link, or -1 (a server rank: 0). */
static double chain(int direct, int *bad)
{
    setenv("DAGGER_MPI_DIRECT", direct ? "1" : "0", 1);
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 1;
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open(&ctx, &o);
    if (rc == DAGGER_CTX_SERVED)
        return 0;
    if (rc || dagger_ctx_nranks(ctx) < 2) {
        fprintf(stderr, "ERROR: %s\n", rc ? dagger_last_errmsg() : "one rank");
        *bad = 1;
        return -1;
    }
    int n = dagger_ctx_nranks(ctx);
    dagger_scope_t **scope = malloc((size_t)n * sizeof *scope);
    for (int r = 1; r < n; r++)
        scope[r] = dagger_scope_worker(r);
    double best = 1e30;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = pp_now();
        dagger_task_t *prev = NULL;
        for (int k = 0; k < LINKS; k++) {
            dagger_task_opts_t to;
            dagger_task_opts_init(&to);
            to.scope = scope[1 + k % (n - 1)];
            dagger_value_t a[1] = {prev ? dagger_taskv(prev) : dagger_i64(0)};
            dagger_task_t *t = dagger_spawnv_opts(ctx, &to, inc, a, 1);
            dagger_task_release(prev);
            prev = t;
        }
        int64_t v = -1;
        if (dagger_fetch_i64(prev, &v) || v != LINKS) {
            fprintf(stderr, "ERROR: the chain ended with %lld: %s\n", (long long)v,
                    dagger_task_errmsg(prev));
            *bad = 1;
        }
        dagger_task_release(prev);
        double dt = (pp_now() - t0) / LINKS;
        best = dt < best ? dt : best;
    }
    printf("RESULT|mpi.chain|%s|ranks=%d|%.2f|us\n", direct ? "direct" : "via_rank0", n,
           best * 1e6);
    fflush(stdout);
    for (int r = 1; r < n; r++)
        dagger_scope_release(scope[r]);
    free(scope);
    if (dagger_ctx_close(ctx))
        *bad = 1;
    return best;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        puts("mpi.chain");
        return 0;
    }
    pp_self_launch(argc, argv);
    int bad = 0;
    for (int round = 0; round < 3 && !bad; round++) {
        chain(0, &bad);
        chain(1, &bad);
    }
    return bad;
}
