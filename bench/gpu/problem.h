/* bench/gpu/problem.h - the device benchmarks shared by dagger and the raw API peers.
 *
 *   gpu.overhead  per-task cost of a device task that enqueues an empty kernel, against a raw
 *                 enqueue of the same kernel (each waited for by the host, in batches)
 *   gpu.h2d       host-to-device bandwidth: dagger staging a chunk to the device against a raw
 *                 write of the same bytes
 * Sizes: GPU_TASKS tasks (default 2000), GPU_BYTES bytes (default 64 MiB), GPU_REPS repetitions
 * (default 5; the best is kept). Output: RESULT|<bench>|<impl>|<param>|<figure>|<unit>.
 * SPDX-License-Identifier: MIT
 */
#ifndef BENCH_GPU_PROBLEM_H
#define BENCH_GPU_PROBLEM_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double gpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline long gpu_env(const char *name, long dflt)
{
    const char *s = getenv(name);
    return s && *s ? atol(s) : dflt;
}

#define GPU_TASKS gpu_env("GPU_TASKS", 2000)
#define GPU_BYTES ((size_t)gpu_env("GPU_BYTES", 64l << 20))
#define GPU_REPS gpu_env("GPU_REPS", 5)

static inline void gpu_result(const char *bench, const char *impl, const char *param, double figure,
                              const char *unit)
{
    printf("RESULT|%s|%s|%s|%.3f|%s\n", bench, impl, param, figure, unit);
    fflush(stdout);
}

#endif /* BENCH_GPU_PROBLEM_H */
