/* bench/io/problem.h - what the io benchmarks share: sizes, a clock, the RESULT line.
 *
 * io.npy_load / io.npy_save: a 1-D f64 array of BYTES bytes through a .npy file in BENCH_DIR
 * (default: the temp dir), best of REPS; dagger (dagger_file + load, dagger_file_save with its
 * fsync and rename), numpy (numpy.load, numpy.save + fsync), memcpy (the same bytes in memory).
 * io.ooc: a tree reduction over 4x the memory limit against the same run in memory, and the
 * disk's sequential bandwidth measured with dd in the same run (dagger.c).
 * Prints RESULT|<bench>|<impl>|<param>|<figure>|<unit>. SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_IO_PROBLEM_H
#define DAGGER_BENCH_IO_PROBLEM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const size_t io_sizes[] = {1u << 20, 16u << 20, 64u << 20};
#define IO_NSIZES (sizeof io_sizes / sizeof io_sizes[0])

static inline double io_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int io_reps(void)
{
    const char *r = getenv("BENCH_REPS");
    return r && atoi(r) > 0 ? atoi(r) : 5;
}

static inline const char *io_dir(void)
{
    const char *d = getenv("BENCH_DIR");
    if (!d || !*d)
        d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

static inline void io_result(const char *bench, const char *impl, size_t bytes, double gbps)
{
    printf("RESULT|%s|%s|bytes=%zu|%.3f|GB/s\n", bench, impl, bytes, gbps);
}

#endif /* DAGGER_BENCH_IO_PROBLEM_H */
