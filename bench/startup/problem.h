/* bench/startup/problem.h - start-up cost: open and close an empty runtime, shared by every
 * implementation (dagger.c, starpu.c, process.c).
 *
 * Rows (bench names as printed in RESULT lines):
 *   startup.cold  the first open + close in a fresh process (library init, page faults).  us/run
 *   startup.warm  the best of STARTUP_REPS open + close pairs after the first.           us/run
 * process.c is the floor: posix_spawn + wait of an empty program (itself with --empty), which
 * every command-line use of a runtime pays anyway. The param says the thread count.
 * Each binary takes `--threads N` (or BENCH_THREADS) and answers `--list`.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_STARTUP_PROBLEM_H
#define DAGGER_BENCH_STARTUP_PROBLEM_H

#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STARTUP_REPS 50

static inline double startup_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Parse --threads N / --list; returns the thread count (0 = default) or -1 after --list. */
static inline int startup_init(int argc, char **argv)
{
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) {
            printf("startup.cold\nstartup.warm\n");
            return -1;
        }
        if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "-t")) && i + 1 < argc)
            threads = atoi(argv[++i]);
    }
    if (threads <= 0 && getenv("BENCH_THREADS"))
        threads = atoi(getenv("BENCH_THREADS"));
    return threads > 0 ? threads : 0;
}

static inline int startup_reps(void)
{
    const char *r = getenv("BENCH_REPS");
    int n = r ? atoi(r) : 0;
    return n > 0 ? n : STARTUP_REPS;
}

/* Time `one` (an open + close) once cold, then `reps` times; print both rows. */
static inline int startup_run(const char *impl, int threads, int (*one)(int threads))
{
    char param[32];
    snprintf(param, sizeof param, "t=%d", threads);
    double t0 = startup_now_us();
    if (one(threads) != 0)
        return 1;
    double cold = startup_now_us() - t0, best = 1e300;
    for (int i = 0, n = startup_reps(); i < n; i++) {
        t0 = startup_now_us();
        if (one(threads) != 0)
            return 1;
        double dt = startup_now_us() - t0;
        best = dt < best ? dt : best;
    }
    printf("RESULT|startup.cold|%s|%s|%.4g|us/run\n", impl, param, cold);
    printf("RESULT|startup.warm|%s|%s|%.4g|us/run\n", impl, param, best);
    return 0;
}

#endif /* DAGGER_BENCH_STARTUP_PROBLEM_H */
