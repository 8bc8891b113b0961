/* bench/mpi/problem.h - ping-pong between two ranks: a dagger task round trip (dagger.c)
 * against MPI_Send/MPI_Recv (mpi.c), from 8 B to 64 MiB.
 *
 * Each binary launches itself under `mpirun -np 2` when started alone (so bench/run.sh can run
 * it), then rank 0 sends `size` bytes to rank 1 and gets `size` bytes back, `reps` times per
 * size. Prints, per size, RESULT|mpi.pingpong|<impl>|size=S|<us per round trip>|us and
 * RESULT|mpi.bandwidth|<impl>|size=S|<MB/s>|MB/s (2 * S bytes per round trip).
 * BENCH_REPS sets the repetitions of every size, BENCH_MAX_SIZE the largest size run.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_MPI_PROBLEM_H
#define DAGGER_BENCH_MPI_PROBLEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const size_t pp_sizes[] = {8, 1024, 65536, 1u << 20, 4u << 20, 64u << 20};
#define PP_NSIZES (sizeof pp_sizes / sizeof pp_sizes[0])

static inline int pp_reps(size_t size)
{
    const char *r = getenv("BENCH_REPS");
    if (r && atoi(r) > 0)
        return atoi(r);
    return size <= 65536 ? 2000 : size <= (4u << 20) ? 100 : 10;
}

/* How many of pp_sizes to run: those up to BENCH_MAX_SIZE bytes (at least the first), or all. */
static inline size_t pp_nsizes(void)
{
    const char *m = getenv("BENCH_MAX_SIZE");
    size_t n = 1;
    if (!m || atoll(m) <= 0)
        return PP_NSIZES;
    while (n < PP_NSIZES && pp_sizes[n] <= (size_t)atoll(m))
        n++;
    return n;
}

static inline double pp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Started alone: run again as 2 ranks under mpirun (and return its status). */
static inline void pp_self_launch(int argc, char **argv)
{
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK"))
        return;
    char *args[8] = {
        "mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", NULL};
    char *cmd[16];
    int n = 0;
    for (int i = 0; args[i]; i++)
        cmd[n++] = args[i];
    cmd[n++] = argv[0];
    cmd[n] = NULL;
    setenv("OMPI_MCA_btl", "self,vader", 0);
    execvp("mpirun", cmd);
    perror("bench/mpi: mpirun");
    exit(77);
}

static inline void pp_report(const char *impl, size_t size, int reps, double secs)
{
    double rtt = secs / reps;
    printf("RESULT|mpi.pingpong|%s|size=%zu|%.2f|us\n", impl, size, rtt * 1e6);
    printf("RESULT|mpi.bandwidth|%s|size=%zu|%.1f|MB/s\n", impl, size,
           2.0 * (double)size / rtt / 1e6);
    fflush(stdout);
}

#endif /* DAGGER_BENCH_MPI_PROBLEM_H */
