/* bench/mpi/stencil.h - a Task-Bench-style 1-D stencil on 2 ranks: dagger tasks
 * (stencil_dagger.c) against plain MPI with an Isend/Irecv halo exchange (stencil_mpi.c).
 *
 * The graph: W = 2 * ranks columns, T steps; task (t, i) depends on (t-1, i-1), (t-1, i) and
 * (t-1, i+1) (those that exist), busy-works `iters` iterations of a dependent multiply-add
 * chain, and computes v = left + 2 * mid + 3 * right + 1 (unsigned wrap; the last row is
 * checked against a serial evaluation). Columns 2r and 2r+1 belong to rank r, one worker per
 * rank. For each grain, from 2^20 iterations down by halves (the fastest of 3 runs): efficiency =
 * the work of every task (iters * the calibrated time per iteration) / (wall time * ranks). METG
 * (minimum effective task granularity, Task-Bench's figure) is the task duration of the smallest
 * grain still at >= 50 % efficiency. On a shared machine no grain may reach 50 % (the ranks get a
 * fraction of a core each), so the relative METG is printed too: efficiency divided by that of
 * the largest grain (where overheads are negligible), at the same 50 %. Prints
 *   RESULT|mpi.stencil_eff|<impl>|iters=N|<efficiency>|%
 *   RESULT|mpi.stencil_metg|<impl>|ranks=P|<us>|us
 *   RESULT|mpi.stencil_metg_rel|<impl>|ranks=P|<us>|us
 * so bench/run.sh pairs dagger with mpi. BENCH_STEPS sets T (default 100).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_MPI_STENCIL_H
#define DAGGER_BENCH_MPI_STENCIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "problem.h"

#define ST_MAX_LOG2 20
#define ST_REPS 3 /* runs per grain; the fastest counts (a shared machine is noisy) */
#define ST_MIN_LOG2 6

static volatile uint64_t st_sink;

/* `iters` steps of a dependent chain the compiler cannot shorten. */
static inline void st_kernel(uint64_t iters)
{
    uint64_t x = iters | 1;
    for (uint64_t i = 0; i < iters; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        __asm__ volatile("" : "+r"(x));
    }
    st_sink = x;
}

static inline uint64_t st_value(uint64_t l, uint64_t m, uint64_t r)
{
    return l + 2 * m + 3 * r + 1;
}

static inline int st_steps(void)
{
    const char *s = getenv("BENCH_STEPS");
    return s && atoi(s) > 0 ? atoi(s) : 100;
}

/* The last row of a W x T run, serially (row 0 is v = i + 1). */
static inline void st_reference(int w, int steps, uint64_t *row)
{
    uint64_t *prev = malloc((size_t)w * sizeof *prev);
    for (int i = 0; i < w; i++)
        row[i] = (uint64_t)i + 1;
    for (int t = 1; t < steps; t++) {
        for (int i = 0; i < w; i++)
            prev[i] = row[i];
        for (int i = 0; i < w; i++)
            row[i] = st_value(i > 0 ? prev[i - 1] : 0, prev[i], i + 1 < w ? prev[i + 1] : 0);
    }
    free(prev);
}

/* Seconds per kernel iteration: the best of 50 short runs (2^18 iterations, about 0.3 ms), so
 * that on a shared machine at least one runs without being preempted. */
static inline double st_calibrate(void)
{
    double best = 1e30;
    for (int k = 0; k < 50; k++) {
        double t0 = pp_now();
        st_kernel(1u << 18);
        double dt = pp_now() - t0;
        if (dt < best)
            best = dt;
    }
    return best / (double)(1u << 18);
}

/* Report one grain; returns its efficiency. */
static inline double st_report(const char *impl, int ranks, int w, int steps, uint64_t iters,
                               double per_iter, double wall)
{
    double work = (double)w * steps * (double)iters * per_iter;
    double eff = work / (wall * ranks);
    printf("RESULT|mpi.stencil_eff|%s|iters=%llu|%.1f|%%\n", impl, (unsigned long long)iters,
           100.0 * eff);
    fflush(stdout);
    return eff;
}

/* The METG search: feed each grain's efficiency, largest grain first. Returns 1 once the
 * relative efficiency fell under 25 % (smaller grains only get worse). */
struct st_metg {
    double eff0, metg, metg_rel;
};

static inline int st_metg_add(struct st_metg *m, double eff, double task_s)
{
    if (m->eff0 <= 0)
        m->eff0 = eff;
    if (eff >= 0.5)
        m->metg = task_s;
    if (eff / m->eff0 >= 0.5)
        m->metg_rel = task_s;
    return eff / m->eff0 < 0.25;
}

static inline void st_report_metg(const char *impl, int ranks, const struct st_metg *m)
{
    const char *names[2] = {"mpi.stencil_metg", "mpi.stencil_metg_rel"};
    double v[2] = {m->metg, m->metg_rel};
    for (int k = 0; k < 2; k++) {
        if (v[k] > 0)
            printf("RESULT|%s|%s|ranks=%d|%.1f|us\n", names[k], impl, ranks, v[k] * 1e6);
        else
            printf("RESULT|%s|%s|ranks=%d|none reached 50 %%|us\n", names[k], impl, ranks);
    }
    fflush(stdout);
}

#endif /* DAGGER_BENCH_MPI_STENCIL_H */
