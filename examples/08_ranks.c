/* examples/08_ranks.c - the quickstart on several processes: mpirun -n 2 ./example_08_ranks.
 *
 * Rank 0 runs main; on the other ranks dagger_ctx_open serves tasks and returns
 * DAGGER_CTX_SERVED when rank 0 closes its context. A task is pinned to the last rank with
 * dagger_scope_worker, its result flows into a task here, and a remote failure reads like a
 * local one, naming the rank. Run without mpirun it is the threaded program (one rank).
 */
#include <dagger.h>
#include <stdio.h>
#include <string.h>

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0) + dagger_arg_f64(a, 1));
    return 0;
}

static int whoami(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

static int load(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_EIO, "open %s: No such file or directory", dagger_arg_str(a, 0));
}

int main(void)
{
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open(&ctx, NULL);
    if (rc == DAGGER_CTX_SERVED) /* a server rank: the driver has closed */
        return 0;
    if (rc != 0) {
        fprintf(stderr, "dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    int last = dagger_ctx_nranks(ctx) - 1;
    dagger_scope_t *there = dagger_scope_worker(last);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = there;

    dagger_task_t *x = dagger_spawn_opts(ctx, &o, add, 1.0, 2.0); /* runs on the last rank */
    dagger_task_t *y = dagger_spawn(ctx, add, x, 3.0);            /* here, with x's value */
    dagger_task_t *w = dagger_spawn_opts(ctx, &o, whoami);
    dagger_task_t *e = dagger_spawn_opts(ctx, &o, load, "x.bin");
    double r = 0;
    int64_t rank = -1;
    int ok = dagger_fetch_f64(y, &r) == 0 && dagger_fetch_i64(w, &rank) == 0;
    printf("%d rank(s): (1 + 2) + 3 = %g, computed on rank %lld\n", last + 1, r, (long long)rank);
    ok &= dagger_fetch(e, NULL) == DAGGER_EIO;
    printf("%s\n", dagger_task_errmsg(e)); /* task N 'load': task 1:M 'load' on rank 1: open ... */
    ok &= strstr(dagger_task_errmsg(e), "open x.bin") != NULL;

    dagger_task_release(x);
    dagger_task_release(y);
    dagger_task_release(w);
    dagger_task_release(e);
    dagger_scope_release(there);
    return dagger_ctx_close(ctx) == 0 && ok && r == 6.0 && rank == last ? 0 : 1;
}
