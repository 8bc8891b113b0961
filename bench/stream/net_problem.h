/* bench/stream/net_problem.h - the cross-process streaming problem shared by dagger and peers.
 *
 * A producer process sends N values of B bytes to a consumer process, which checks their
 * length and first bytes. Figures: values/s (and GB/s for large values), consumer side, from
 * the moment both ends are connected until the last value arrived. Sizes: 8 B and 64 KiB.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_NET_PROBLEM_H
#define DAGGER_BENCH_NET_PROBLEM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const size_t net_sizes[] = {8, 65536};

/* Values per run: about 0.5-1 s of work on a current machine; NET_BENCH_SCALE multiplies. */
static inline long net_count(size_t bytes, int tcp)
{
    const char *s = getenv("NET_BENCH_SCALE");
    double k = s ? atof(s) : 1.0;
    long n = bytes <= 64 ? (tcp ? 3000000 : 10000000) : (tcp ? 40000 : 100000);
    n = (long)(n * (k > 0 ? k : 1.0));
    return n > 0 ? n : 1;
}

/* NET_BENCH_BYTES=B runs only the values of B bytes (to time one row with perf stat). */
static inline int net_size_wanted(size_t bytes)
{
    const char *s = getenv("NET_BENCH_BYTES");
    return !s || !*s || (size_t)atol(s) == bytes;
}

/* Stamp value number x into its first min(bytes, 8) bytes, and read it back. Every row (dagger
 * and peers) uses these: a plain memcpy of `bytes < 8 ? bytes : 8` bytes compiled to a
 * `rep movsb` costing more than a small value's whole trip through an edge. */
static inline void net_put_id(void *dst, uint64_t x, size_t bytes)
{
    if (bytes >= 8)
        memcpy(dst, &x, 8);
    else
        memcpy(dst, &x, bytes);
}

static inline uint64_t net_get_id(const void *src, size_t bytes)
{
    uint64_t x = 0;
    if (bytes >= 8)
        memcpy(&x, src, 8);
    else
        memcpy(&x, src, bytes);
    return x;
}

static inline double net_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void net_result(const char *bench, const char *impl, size_t bytes, long n,
                              double secs)
{
    printf("RESULT|%s|%s|bytes=%zu|%.0f|values/s\n", bench, impl, bytes, n / secs);
    printf("RESULT|%s|%s|bytes=%zu|%.3f|GB/s\n", bench, impl, bytes,
           n * (double)bytes / secs / 1e9);
    fflush(stdout);
}

#endif /* DAGGER_BENCH_NET_PROBLEM_H */
