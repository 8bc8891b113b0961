/* examples/08_ranks.c - the quickstart on several processes: mpirun -n 2 ./example_08_ranks.
 *
 * Rank 0 runs main; on the other ranks dagger_ctx_open serves tasks and returns
 * DAGGER_CTX_SERVED when rank 0 closes its context. A task is pinned to the last rank with
 * dagger_scope_worker, its result flows into a task here, a histogram is built from one shard
 * piece per rank (each rank counts into its own piece, the driver sums the pieces), and a remote
 * failure reads like a local one, naming the rank. Run without mpirun it is the threaded program
 * (one rank).
 */
#include <dagger.h>
#include <dagger/chunk.h>
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

enum { BINS = 4, PER_TASK = 1000, NTASKS = 8 };

static int zero_bins(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    int64_t zero[BINS] = {0};
    *out = dagger_blob_copy(tc, zero, sizeof zero);
    return 0;
}

/* Counts i % BINS for PER_TASK values of i into the piece of the rank it runs on (the threads
 * of a rank share its piece, hence the atomic adds). */
static int count(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *bins = dagger_arg_buf(a, 0, NULL);
    int64_t first = dagger_arg_i64(a, 1);
    for (int64_t i = first; i < first + PER_TASK; i++)
        __atomic_fetch_add(&bins[i % BINS], 1, __ATOMIC_RELAXED);
    return 0;
}

/* A copy of a piece, read where it lives. */
static int read_bins(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_blob_copy(tc, dagger_arg_buf(a, 0, NULL), BINS * sizeof(int64_t));
    return 0;
}

/* One piece per rank; NTASKS tasks spread over the ranks count into them; the driver sums. */
static int histogram(dagger_ctx_t *ctx)
{
    dagger_shard_t *sh;
    if (dagger_shard(ctx, NULL, zero_bins, NULL, 0, &sh) != 0) {
        fprintf(stderr, "dagger_shard: %s\n", dagger_last_errmsg());
        return 0;
    }
    int ok = 1, nranks = dagger_ctx_nranks(ctx);
    dagger_task_t *ts[NTASKS];
    for (int t = 0; t < NTASKS; t++) {
        dagger_scope_t *s = dagger_scope_worker(t % nranks);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.scope = s;
        ts[t] = dagger_spawn_opts(ctx, &o, count, sh, (int64_t)t * PER_TASK);
        dagger_scope_release(s);
    }
    for (int t = 0; t < NTASKS; t++) {
        ok &= dagger_wait(ts[t]) == 0 && dagger_task_error(ts[t]) == 0; /* wait never fails it */
        dagger_task_release(ts[t]);
    }
    int64_t sum[BINS] = {0};
    for (size_t p = 0; p < dagger_shard_count(sh); p++) {
        dagger_task_t *rd = dagger_spawn(ctx, read_bins, dagger_shard_piece(sh, p));
        dagger_value_t v;
        if (dagger_fetch(rd, &v) == 0 && v.len == sizeof sum)
            for (int k = 0; k < BINS; k++)
                sum[k] += ((const int64_t *)v.u.p)[k];
        else
            ok = 0;
        dagger_task_release(rd);
    }
    printf("histogram over %zu piece(s), one per rank:", dagger_shard_count(sh));
    for (int k = 0; k < BINS; k++) {
        printf(" %lld", (long long)sum[k]);
        ok &= sum[k] == NTASKS * PER_TASK / BINS;
    }
    printf("\n");
    dagger_shard_release(sh);
    return ok;
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
    ok &= histogram(ctx);

    dagger_task_release(x);
    dagger_task_release(y);
    dagger_task_release(w);
    dagger_task_release(e);
    dagger_scope_release(there);
    return dagger_ctx_close(ctx) == 0 && ok && r == 6.0 && rank == last ? 0 : 1;
}
