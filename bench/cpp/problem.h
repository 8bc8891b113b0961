/* bench/cpp/problem.h - the C++ spawn path (include/dagger.hpp) against the C one, same work.
 *
 * Rows (bench names as printed in RESULT lines):
 *   cpp.spawn_fetch  N tasks add(i, 0.5) spawned from the main thread, each with one task
 *                    argument (the one before it every 64th task, else a value), then all
 *                    fetched and summed; handles released.                         ns/task
 * dagger.c is the C path (dagger_spawn, dagger_fetch_f64), cpp.cpp the C++ one
 * (dagger::spawn with a lambda, task<double>::get). Best of BENCH_REPS (default 7) runs.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_CPP_PROBLEM_H
#define DAGGER_BENCH_CPP_PROBLEM_H

#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CPP_N 200000
#define CPP_REPS 7
#define CPP_DEP_EVERY 64

static inline double cpp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* --threads N / --list; returns the thread count (0 = default) or -1 after --list. */
static inline int cpp_init(int argc, char **argv)
{
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) {
            printf("cpp.spawn_fetch\n");
            return -1;
        }
        if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "-t")) && i + 1 < argc)
            threads = atoi(argv[++i]);
    }
    if (threads <= 0 && getenv("BENCH_THREADS"))
        threads = atoi(getenv("BENCH_THREADS"));
    return threads > 0 ? threads : 0;
}

static inline int cpp_reps(void)
{
    const char *r = getenv("BENCH_REPS");
    int n = r ? atoi(r) : 0;
    return n > 0 ? n : CPP_REPS;
}

/* The expected sum: task i yields (i or the previous task's value) + 0.5. */
static inline double cpp_expected(long n)
{
    double s = 0, prev = 0;
    for (long i = 0; i < n; i++) {
        double in = (i % CPP_DEP_EVERY == 0 && i > 0) ? prev : (double)i;
        prev = in + 0.5;
        s += prev;
    }
    return s;
}

#endif /* DAGGER_BENCH_CPP_PROBLEM_H */
