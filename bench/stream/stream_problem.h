/* bench/stream/stream_problem.h - the in-process streaming problem shared by every impl.
 *
 * A 3-stage pipeline of 8-byte values: a source emits 0, 1, 2, ..., a middle stage adds 1, a
 * sink sums. Every impl checks the sum. STREAM_VALUES and STREAM_BUFFER (slots per edge) may be
 * overridden from the environment.
 * SPDX-License-Identifier: MIT
 */
#ifndef BENCH_STREAM_PROBLEM_H
#define BENCH_STREAM_PROBLEM_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline long stream_env(const char *name, long def)
{
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 0) : def;
}
static inline int64_t stream_values(void) { return stream_env("STREAM_VALUES", 20000000); }
static inline long stream_buffer(void) { return stream_env("STREAM_BUFFER", 1024); }
/* sum over k < n of (k + 1) */
static inline int64_t stream_expected(int64_t n) { return n * (n + 1) / 2; }
static inline double stream_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
