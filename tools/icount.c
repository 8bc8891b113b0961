/* tools/icount.c - a fixed workload for counting instructions per task under callgrind.
 *
 * Timings on a shared or virtual machine are noisy; instruction counts are not. Usage:
 * `icount empty N` (N empty tasks in a sync group), `icount flat N` (N detached tasks of two
 * arguments in a sync group, core.parfor's shape; `flat_main`: from main, core.empty_ext's),
 * `icount chain N` (N dependent tasks),
 * `icount fib N` (fib(N) with a fetch in every task), `icount nested N` (N runs of the seed's
 * 20x6 loop from the main thread, as bench/core's core.nested row: 140 tasks a run, each inner
 * task an input of its outer one, in a sync group, then fetched), `icount groups N` (N runs of
 * oneTBB's form of that loop in a root task: 20 outer tasks in a sync group, each ending a sync
 * group of its 6 inner tasks; 140 tasks a run), `icount groups_main N` (the same from the main
 * thread, as bench/core's core.nested_groups row), `icount chain3 N` (a chain
 * whose tasks take two plain arguments and the previous task, core.tree's shape), on one thread
 * (the root task is scoped to the only worker; nested and groups_main run on main).
 * tools/icount.sh runs two
 * sizes of each and prints the difference per task, so start-up and close cancel out. With
 * ICOUNT_TRACE set, the run is traced (recorded in memory; nothing is written).
 * SPDX-License-Identifier: MIT
 */
#include "dagger.h"
#include "dagger/trace.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int empty(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out) { return 0; }
static int fib(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n < 2) {
        *out = dagger_i64(n);
        return 0;
    }
    dagger_task_t *x = dagger_spawn(dagger_tc_ctx(tc), fib, n - 1);
    dagger_task_t *y = dagger_spawn(dagger_tc_ctx(tc), fib, n - 2);
    int64_t p = 0, q = 0;
    int rc = dagger_fetch_i64(x, &p);
    if (!rc)
        rc = dagger_fetch_i64(y, &q);
    dagger_task_release(x);
    dagger_task_release(y);
    *out = dagger_i64(p + q);
    return rc;
}
static int inc(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_args_count(a) ? dagger_arg_i64(a, 0) + 1 : 1);
    return 0;
}
static int inc3(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 2) + 1);
    return 0;
}
/* outer(i): a sync group of 6 detached inner tasks, each writing its value (groups). */
static int64_t group_out[20][6];
static int group_inner(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0), j = dagger_arg_i64(a, 1);
    group_out[i][j] = (i * i + 1) * j + 1;
    return 0;
}
static int group_outer(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    if (dagger_sync_begin(ctx))
        return 1;
    for (int64_t j = 0; j < 6; j++)
        if (dagger_spawn_detached(ctx, group_inner, i, j))
            break;
    return dagger_sync_end(ctx);
}
/* n runs of oneTBB's form of the nested loop, from a root task (groups) or from main
 * (groups_main, as bench/core's core.nested_groups); nonzero on a failure or a wrong value. */
static int groups(dagger_ctx_t *ctx, int64_t n)
{
    for (int64_t r = 0; r < n; r++) {
        if (dagger_sync_begin(ctx))
            return 1;
        for (int64_t i = 0; i < 20; i++)
            if (dagger_spawn_detached(ctx, group_outer, i))
                break;
        int rc = dagger_sync_end(ctx);
        if (rc)
            return rc;
        for (int i = 0; i < 20; i++)
            for (int j = 0; j < 6; j++)
                if (group_out[i][j] != (int64_t)(i * i + 1) * j + 1)
                    return 1;
    }
    return 0;
}
/* out[i] = i + 1: args (out, i). */
static int flat_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *dst = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    dst[i] = i + 1;
    return 0;
}
/* n detached tasks of two arguments in a sync group (flat: from a root task, core.parfor's
 * shape; flat_main: from main, core.empty_ext's); nonzero on a failure or a wrong value. */
static int flat(dagger_ctx_t *ctx, int64_t n)
{
    int64_t *out = calloc((size_t)n, sizeof *out);
    if (!out || dagger_sync_begin(ctx)) {
        free(out);
        return 1;
    }
    for (int64_t i = 0; i < n; i++)
        if (dagger_spawn_detached(ctx, flat_body, (void *)out, i))
            break;
    int rc = dagger_sync_end(ctx);
    for (int64_t i = 0; i < n && !rc; i++)
        rc = out[i] != i + 1;
    free(out);
    return rc;
}
static int root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const char *what = dagger_arg_str(a, 0);
    int64_t n = dagger_arg_i64(a, 1);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    if (!strcmp(what, "empty")) {
        if (dagger_sync_begin(ctx))
            return 1;
        for (int64_t i = 0; i < n; i++)
            dagger_task_release(dagger_spawn(ctx, empty));
        return dagger_sync_end(ctx);
    }
    if (!strcmp(what, "flat")) /* core.parfor's shape: detached, two arguments */
        return flat(ctx, n);
    if (!strcmp(what, "groups"))
        return groups(ctx, n);
    if (!strcmp(what, "chain") || !strcmp(what, "chain3")) {
        bool three = what[5] == '3';
        dagger_task_t *p = dagger_spawn(ctx, inc);
        for (int64_t i = 1; i < n; i++) {
            dagger_task_t *n =
                three ? dagger_spawn(ctx, inc3, (void *)ctx, i, p) : dagger_spawn(ctx, inc, p);
            dagger_task_release(p);
            p = n;
        }
        int64_t v;
        int rc = dagger_fetch_i64(p, &v);
        dagger_task_release(p);
        return rc;
    }
    return 0;
}
static int nested_f(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0);
    *out = dagger_i64(i * i + 1);
    return 0;
}
static int nested_g(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) * dagger_arg_i64(a, 1) + 1);
    return 0;
}
/* The seed's loop, n times; returns nonzero on a failure or a wrong sum. */
static int nested(dagger_ctx_t *ctx, int64_t n)
{
    dagger_task_t *b[20][6];
    for (int64_t r = 0; r < n; r++) {
        if (dagger_sync_begin(ctx))
            return 1;
        for (int i = 0; i < 20; i++) {
            dagger_task_t *a = dagger_spawn(ctx, nested_f, (int64_t)i);
            for (int j = 0; j < 6; j++)
                b[i][j] = dagger_spawn(ctx, nested_g, a, (int64_t)j);
            dagger_task_release(a);
        }
        int rc = dagger_sync_end(ctx);
        int64_t s = 0, want = 0;
        for (int i = 0; i < 20; i++) {
            for (int j = 0; j < 6; j++) {
                int64_t v = 0;
                rc |= dagger_fetch_i64(b[i][j], &v);
                s += v;
                want += (int64_t)(i * i + 1) * j + 1;
                dagger_task_release(b[i][j]);
            }
        }
        if (rc || s != want)
            return 1;
    }
    return 0;
}
int main(int argc, char **argv)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 1;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o))
        return 1;
    /* ICOUNT_TRACE=1: the run is traced (recorded in memory, nothing written). */
    if (getenv("ICOUNT_TRACE") && dagger_trace_start(ctx))
        return 1;
    const char *w = argc > 1 ? argv[1] : "empty";
    int64_t n = argc > 2 ? atoll(argv[2]) : 100000;
    if (!strcmp(w, "nested") || !strcmp(w, "groups_main")) {
        int rc = w[0] == 'n' ? nested(ctx, n) : groups(ctx, n);
        return rc | dagger_ctx_close(ctx);
    }
    if (!strcmp(w, "flat_main")) /* core.empty_ext's shape: the flat loop from main */
        return flat(ctx, n) | dagger_ctx_close(ctx);
    /* The root on the worker: main, which fetches it, would otherwise run it (and all it spawns,
     * through its own deque) when it takes it before the worker does, and the count would
     * measure whichever thread won. */
    dagger_scope_t *worker = dagger_scope_worker(0);
    dagger_task_opts_t to;
    dagger_task_opts_init(&to);
    to.scope = worker;
    dagger_task_t *t = strcmp(w, "fib") ? dagger_spawn_opts(ctx, &to, root, w, n)
                                        : dagger_spawn_opts(ctx, &to, fib, n);
    int rc = worker && t ? dagger_fetch(t, NULL) : 1;
    dagger_task_release(t);
    dagger_scope_release(worker);
    return rc | dagger_ctx_close(ctx);
}
