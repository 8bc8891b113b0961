/* tests/stream_fail_harness.h - what the stream failure tests share (test_stream_fail.c on one
 * process, test_mpi_stream_fail.c across ranks): the watchdog's bound and the tasks that fail.
 *
 * Design: each case arms alarm(WATCHDOG_S), so a hang (a producer waiting for room or credits
 * that will never come) kills the process and fails the case instead of blocking the suite.
 * Include after harness.h.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TESTS_STREAM_FAIL_HARNESS_H
#define DAGGER_TESTS_STREAM_FAIL_HARNESS_H

#include <signal.h>
#include <unistd.h>

#include "harness.h"

enum { WATCHDOG_S = 60 };

/* gen(state): 0, 1, 2, ... forever, or a failure at value fail_at (>= 0). */
struct gen_state {
    int64_t k, fail_at;
};

static inline int gen(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct gen_state *g = dagger_arg_ptr(a, 0);
    if (g->k == g->fail_at)
        return dagger_fail(tc, DAGGER_EIO, "the generator broke at value %lld",
                           (long long)g->fail_at);
    *out = dagger_i64(g->k++);
    return 0;
}

/* A task that fails at once, before it opens any edge. */
static inline int unplugged(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    return dagger_fail(tc, DAGGER_EIO, "sensor 3 is unplugged");
}

#endif /* DAGGER_TESTS_STREAM_FAIL_HARNESS_H */
