/* bench/mpi/coll.c - collectives on 2 ranks: dagger_barrier / dagger_bcast in SPMD mode (from
 * main, and from inside a task) against MPI_Barrier / MPI_Bcast on the same job.
 *
 * Launches itself under mpirun -np 2 when started alone (problem.h). MPI is initialised with
 * MPI_THREAD_MULTIPLE here and the raw MPI figures are taken before dagger's context opens
 * (no progress thread beside them). Prints RESULT|mpi.coll|<impl>|<op>|<us per call>|us with
 * impl mpi, dagger (from main) or dagger_task (from a task on the single worker thread).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <dagger.h>
#include <mpi.h>

#include "problem.h"

static int reps(void)
{
    const char *r = getenv("BENCH_REPS");
    return r && atoi(r) > 0 ? atoi(r) : 2000;
}

static const size_t sizes[] = {8, 1u << 20};

static void report(const char *impl, const char *op, size_t size, double secs, int n)
{
    char what[64];
    if (size)
        snprintf(what, sizeof what, "%s,size=%zu", op, size);
    else
        snprintf(what, sizeof what, "%s", op);
    printf("RESULT|mpi.coll|%s|%s|%.2f|us\n", impl, what, secs / n * 1e6);
    fflush(stdout);
}

/* One series of dagger collectives; returns 0 or the first error. */
static int run_dagger(dagger_ctx_t *ctx, const char *impl, char *buf, bool print)
{
    int n = reps();
    double t0 = pp_now();
    for (int i = 0; i < n; i++)
        if (dagger_barrier(ctx))
            return -1;
    if (print)
        report(impl, "barrier", 0, pp_now() - t0, n);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int m = sizes[k] > 65536 ? n / 10 : n;
        t0 = pp_now();
        for (int i = 0; i < m; i++)
            if (dagger_bcast(ctx, 0, buf, sizes[k]))
                return -1;
        if (print)
            report(impl, "bcast", sizes[k], pp_now() - t0, m);
    }
    return 0;
}

static char *g_buf;

static int in_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(run_dagger(dagger_tc_ctx(tc), "dagger_task", g_buf,
                                 dagger_ctx_rank(dagger_tc_ctx(tc)) == 0));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        puts("mpi.coll");
        return 0;
    }
    pp_self_launch(argc, argv);
    int provided, me;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    g_buf = calloc(1, sizes[1]);
    int n = reps();
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = pp_now();
    for (int i = 0; i < n; i++)
        MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0)
        report("mpi", "barrier", 0, pp_now() - t0, n);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int m = sizes[k] > 65536 ? n / 10 : n;
        t0 = pp_now();
        for (int i = 0; i < m; i++)
            MPI_Bcast(g_buf, (int)sizes[k], MPI_BYTE, 0, MPI_COMM_WORLD);
        if (me == 0)
            report("mpi", "bcast", sizes[k], pp_now() - t0, m);
    }
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 1;
    o.flags = DAGGER_OPEN_SPMD;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o)) {
        fprintf(stderr, "ERROR: %s\n", dagger_last_errmsg());
        return 1;
    }
    int rc = run_dagger(ctx, "dagger", g_buf, me == 0);
    dagger_task_t *t = rc ? NULL : dagger_spawn(ctx, in_task);
    int64_t trc = 0;
    if (t && (dagger_fetch_i64(t, &trc) || trc))
        rc = -1;
    dagger_task_release(t);
    if (rc)
        fprintf(stderr, "ERROR: %s\n", dagger_last_errmsg());
    if (dagger_ctx_close(ctx))
        rc = -1;
    free(g_buf);
    MPI_Finalize();
    return rc ? 1 : 0;
}
