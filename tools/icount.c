/* tools/icount.c - a fixed workload for counting instructions per task under callgrind.
 *
 * Timings on a shared or virtual machine are noisy; instruction counts are not. Usage:
 * tools/icount.sh <libdagger.a> [<other libdagger.a>] runs `empty` (1e5 tasks in a sync
 * group), `chain` (5e4 dependent tasks) and `fib` (fib(18) with a fetch in every task) on one
 * thread and prints instructions per task.
 * SPDX-License-Identifier: MIT
 */
#include "dagger.h"
#include <stdio.h>
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
static int root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const char *what = dagger_arg_str(a, 0);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    if (!strcmp(what, "empty")) {
        if (dagger_sync_begin(ctx))
            return 1;
        for (int i = 0; i < 100000; i++)
            dagger_task_release(dagger_spawn(ctx, empty));
        return dagger_sync_end(ctx);
    }
    if (!strcmp(what, "chain")) {
        dagger_task_t *p = dagger_spawn(ctx, inc);
        for (int i = 0; i < 50000; i++) {
            dagger_task_t *n = dagger_spawn(ctx, inc, p);
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
int main(int argc, char **argv)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 1;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o))
        return 1;
    const char *w = argv[1];
    dagger_task_t *t = strcmp(w, "fib") ? dagger_spawn(ctx, root, w) : dagger_spawn(ctx, fib, 18);
    int rc = dagger_fetch(t, NULL);
    dagger_task_release(t);
    return rc | dagger_ctx_close(ctx);
}
