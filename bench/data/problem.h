/* bench/data/problem.h - the cost of a chunk argument per task, against a plain pointer.
 *
 * N tasks are spawned flat from a root task inside a sync group; each reads 8 bytes of its one
 * argument: a chunk (dagger.c: placement, a reference held by the task, dagger_arg_buf) or the
 * same bytes through a plain pointer (ptr.c: the peer a user would write without the data layer).
 * Prints RESULT|data.arg|<impl>|n=N|<ns/task>|ns/task. SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_DATA_PROBLEM_H
#define DAGGER_BENCH_DATA_PROBLEM_H

#include <dagger.h>
#include <dagger/chunk.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/problem.h"

#ifndef DATA_CHUNK
#error "define DATA_CHUNK 0 or 1"
#endif

static _Atomic long data_sum;

static int data_read(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
#if DATA_CHUNK
    const long *p = dagger_arg_buf(a, 0, NULL);
#else
    const long *p = dagger_arg_ptr(a, 0);
#endif
    if (!p)
        return DAGGER_ETYPE;
    atomic_fetch_add_explicit(&data_sum, *p, memory_order_relaxed);
    return 0;
}

static int data_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    long n = (long)dagger_arg_i64(a, 1);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    if (rc)
        return rc;
    for (long i = 0; i < n; i++) {
#if DATA_CHUNK
        dagger_task_release(dagger_spawn(ctx, data_read, (dagger_chunk_t *)dagger_arg_ptr(a, 0)));
#else
        dagger_task_release(dagger_spawn(ctx, data_read, dagger_arg_ptr(a, 0)));
#endif
    }
    return dagger_sync_end(ctx);
}

static int data_main(int argc, char **argv, const char *impl)
{
    int t = core_init(argc, argv, impl, "DAGGER_NUM_THREADS");
    if (t < 0) {
        puts("data.arg");
        return 0;
    }
    if (!core_want("data.arg"))
        return 0;
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = t;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o) != 0)
        return 1;
    long one = 1;
    dagger_chunk_t *c = NULL;
    if (dagger_chunk_wrap(ctx, &one, sizeof one, NULL, NULL, &c) != 0)
        return 1;
    void *arg = DATA_CHUNK ? (void *)c : (void *)&one;
    const long n = 200000;
    double best = 1e300;
    for (int r = 0; r < core_reps(5); r++) {
        atomic_store(&data_sum, 0);
        double t0 = core_now_ns();
        dagger_task_t *root = dagger_spawn(ctx, data_root, arg, (int64_t)n);
        int rc = dagger_fetch(root, NULL);
        double dt = core_now_ns() - t0;
        if (rc)
            core_fail("data.arg", dagger_task_errmsg(root));
        dagger_task_release(root);
        core_check_i64("data.arg", "sum", atomic_load(&data_sum), n);
        if (dt < best)
            best = dt;
    }
    char param[32];
    snprintf(param, sizeof param, "n=%ld,t=%d", n, dagger_ctx_num_threads(ctx));
    core_result("data.arg", param, best / (double)n, "ns/task");
    dagger_chunk_release(c);
    if (dagger_ctx_close(ctx) != 0)
        return 1;
    return core_exit_code();
}

#endif /* DAGGER_BENCH_DATA_PROBLEM_H */
