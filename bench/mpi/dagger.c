/* bench/mpi/dagger.c - dagger between two ranks against MPI in the same run: rank 0 spawns
 * echo(blob of S bytes) on rank 1 (dagger_scope_worker(1)) and fetches the S-byte result (a task
 * round trip), and moves a chunk of S bytes to rank 1 (len(chunk) runs there: the chunk is
 * pulled by rank 1, a one-way move), both from 8 B to 64 MiB (problem.h).
 *
 * Design: the program initialises MPI itself (MPI_THREAD_MULTIPLE) and first runs the plain
 * MPI_Send/MPI_Recv ping-pong of bench/mpi/mpi.c on MPI_COMM_WORLD, then a local task round
 * trip, then opens dagger on that communicator (dagger_ctx_open_mpi): so every ratio it prints
 * compares figures taken in one run, under the same load. Ratios (RESULT|mpi.ratio|...):
 * rtt_vs_target = dagger round trip / (2 x MPI ping-pong + one local task) (target <= 1), and
 * bw_vs_mpi / chunk_bw_vs_mpi = dagger bandwidth / MPI's ping-pong bandwidth (target >= 0.9 at
 * >= 4 MiB).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <dagger.h>
#include <dagger/chunk.h>
#include <dagger/mpi.h>

#include "problem.h"

static int echo(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    size_t n;
    const void *p = dagger_arg_blob(a, 0, &n);
    *out = dagger_blob(p, n); /* copied after the body returns, while the argument lives */
    return 0;
}

static int chunk_len(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    dagger_chunk_t *c = dagger_arg_chunk(a, 0);
    const unsigned char *p = c ? dagger_chunk_data(c) : NULL;
    size_t n = c ? dagger_chunk_size(c) : 0;
    *out = dagger_i64(p && n && p[n - 1] == 1 ? (int64_t)n : -1);
    return 0;
}

static int noop(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

/* MPI's ping-pong, seconds per round trip (rank 0's figure; rank 1 returns 0). */
static double mpi_pingpong(int rank, char *buf, size_t size, int reps)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = pp_now();
    for (int i = 0; i < reps + 1; i++) {
        if (i == 1)
            t0 = pp_now(); /* the first round trip warms up */
        if (rank == 0) {
            MPI_Send(buf, (int)size, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buf, (int)size, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 1) {
            MPI_Recv(buf, (int)size, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buf, (int)size, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
    }
    return (pp_now() - t0) / reps;
}

static int fail(const char *what, size_t size, dagger_task_t *t)
{
    fprintf(stderr, "ERROR: %s, size %zu: %s\n", what, size, dagger_task_errmsg(t));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        puts("mpi.pingpong\nmpi.bandwidth\nmpi.chunk_move\nmpi.ratio");
        return 0;
    }
    pp_self_launch(argc, argv);
    int provided = 0, rank = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char *buf = malloc(pp_sizes[PP_NSIZES - 1]);
    memset(buf, 1, pp_sizes[PP_NSIZES - 1]);
    double mpi_rtt[PP_NSIZES];
    for (size_t k = 0; k < pp_nsizes(); k++) {
        mpi_rtt[k] = mpi_pingpong(rank, buf, pp_sizes[k], pp_reps(pp_sizes[k]));
        if (rank == 0)
            pp_report("mpi", pp_sizes[k], pp_reps(pp_sizes[k]), mpi_rtt[k] * pp_reps(pp_sizes[k]));
    }
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 1;
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open_mpi(&ctx, &o, MPI_COMM_WORLD);
    if (rc == DAGGER_CTX_SERVED) {
        free(buf);
        MPI_Finalize();
        return 0;
    }
    if (rc || dagger_ctx_nranks(ctx) < 2) {
        fprintf(stderr, "ERROR: %s (ranks: %d)\n", rc ? dagger_last_errmsg() : "one rank",
                rc ? 0 : dagger_ctx_nranks(ctx));
        return 1;
    }
    /* One local task round trip (spawn, run on the worker, fetch). */
    /* BENCH_ROUNDTRIP_ONLY=1: the remote round trips alone (one local task, no chunk moves), so
     * that counters of the whole run (perf stat) divide by round trips only. */
    const bool rt_only = getenv("BENCH_ROUNDTRIP_ONLY") && atoi(getenv("BENCH_ROUNDTRIP_ONLY"));
    int lreps = rt_only ? 1 : pp_reps(8);
    double t0 = pp_now();
    for (int i = 0; i < lreps; i++) {
        dagger_task_t *t = dagger_spawn(ctx, noop, dagger_i64(i));
        dagger_value_t v;
        if (dagger_fetch(t, &v) || v.u.i != i)
            return fail("local task", 8, t);
        dagger_task_release(t);
    }
    double local = (pp_now() - t0) / lreps;
    printf("RESULT|mpi.pingpong|local_task|size=8|%.2f|us\n", local * 1e6);
    dagger_scope_t *one = dagger_scope_worker(1);
    dagger_task_opts_t to;
    dagger_task_opts_init(&to);
    to.scope = one;
    for (size_t k = 0; k < pp_nsizes(); k++) {
        size_t size = pp_sizes[k];
        int reps = pp_reps(size);
        for (int i = 0; i < reps + 1; i++) {
            if (i == 1)
                t0 = pp_now(); /* the first round trip warms up */
            dagger_value_t arg = dagger_blob_borrow(buf, size);
            dagger_task_t *t = dagger_spawnv_opts(ctx, &to, echo, &arg, 1);
            dagger_value_t v;
            if (dagger_fetch(t, &v) || v.kind != DAGGER_KIND_BLOB || v.len != size)
                return fail("round trip", size, t);
            dagger_task_release(t);
        }
        double rtt = (pp_now() - t0) / reps;
        pp_report("dagger", size, reps, rtt * reps);
        if (rt_only)
            continue;
        dagger_chunk_t *c;
        if (dagger_chunk_create(ctx, size, &c)) {
            fprintf(stderr, "ERROR: chunk of %zu bytes: %s\n", size, dagger_last_errmsg());
            return 1;
        }
        memset(dagger_chunk_data(c), 1, size);
        for (int i = 0; i < reps + 1; i++) {
            if (i == 1)
                t0 = pp_now();
            dagger_value_t arg = dagger_chunkv(c);
            dagger_task_t *t = dagger_spawnv_opts(ctx, &to, chunk_len, &arg, 1);
            dagger_value_t v;
            if (dagger_fetch(t, &v) || v.u.i != (int64_t)size)
                return fail("chunk move", size, t);
            dagger_task_release(t);
        }
        double move = (pp_now() - t0) / reps;
        dagger_chunk_release(c);
        printf("RESULT|mpi.chunk_move|dagger|size=%zu|%.2f|us\n", size, move * 1e6);
        printf("RESULT|mpi.chunk_move|dagger|size=%zu|%.1f|MB/s\n", size,
               (double)size / move / 1e6);
        printf("RESULT|mpi.ratio|rtt_vs_target|size=%zu|%.2f|x\n", size,
               rtt / (2 * mpi_rtt[k] + local));
        printf("RESULT|mpi.ratio|bw_vs_mpi|size=%zu|%.2f|x\n", size, mpi_rtt[k] / rtt);
        /* MPI's bandwidth is 2 S per round trip; a chunk move carries S one way */
        printf("RESULT|mpi.ratio|chunk_bw_vs_mpi|size=%zu|%.2f|x\n", size,
               ((double)size / move) / (2.0 * (double)size / mpi_rtt[k]));
        fflush(stdout);
    }
    free(buf);
    dagger_scope_release(one);
    rc = dagger_ctx_close(ctx);
    MPI_Finalize();
    return rc == 0 ? 0 : 1;
}
