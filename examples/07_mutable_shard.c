/* examples/07_mutable_shard.c - data with a home: mutable data updated in place, and a
 * histogram built from one shard piece per thread.
 *
 * dagger_mutable runs a constructor on one processor (here thread 1) and returns a chunk
 * pinned there: every task that takes it runs on that thread and sees the same memory, so the
 * in-place accumulate below needs no lock (Dagger.jl's @mutable and accumulate!).
 * dagger_shard gives each worker thread its own piece; a task that takes the shard receives
 * the piece of the thread it runs on, and the pieces are summed at the end (Dagger.jl's @shard).
 * Exit status: 0 when the accumulated value and the histogram equal the sequential results.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/chunk.h>
#include <stdio.h>
#include <string.h>

#define NBINS 10
#define PER_TASK 1000
#define NTASKS 100

/* A constructor: a zeroed array of `n` int64 values, copied into a chunk where it runs. */
static int zeros(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t buf[NBINS] = {0};
    int64_t n = dagger_arg_i64(a, 0);
    *out = dagger_blob_copy(tc, buf, (size_t)n * sizeof(int64_t));
    return 0;
}

/* accumulate!: x[0] += v, in place. */
static int accumulate(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *x = dagger_arg_buf(a, 0, NULL);
    if (!x)
        return DAGGER_ETYPE; /* the accessor recorded the reason */
    x[0] += dagger_arg_i64(a, 1);
    return 0;
}

static uint64_t rnd(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Add PER_TASK pseudo-random samples (seeded by argument 1) into the local bins. */
static int add_samples(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *bins = dagger_arg_buf(a, 0, NULL);
    int64_t seed = dagger_arg_i64(a, 1);
    if (!bins)
        return DAGGER_ETYPE;
    for (int i = 0; i < PER_TASK; i++)
        bins[rnd((uint64_t)(seed * PER_TASK + i)) % NBINS]++;
    return 0;
}

int main(void)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 4; /* the same output everywhere */
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o) != 0) {
        fprintf(stderr, "dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    int ok = 0;
    dagger_scope_t *t1 = NULL;
    dagger_chunk_t *acc = NULL;
    dagger_shard_t *bins = NULL;

    /* Mutable data on thread 1, updated in place by 100 tasks. */
    t1 = dagger_scope_thread(1);
    dagger_value_t one = dagger_i64(1);
    if (!t1 || dagger_mutable(ctx, t1, zeros, &one, 1, &acc) != 0) {
        fprintf(stderr, "mutable: %s\n", dagger_last_errmsg());
        goto done;
    }
    if (dagger_sync_begin(ctx) != 0)
        goto done;
    for (int i = 1; i <= NTASKS; i++)
        dagger_task_release(dagger_spawn(ctx, accumulate, acc, i));
    if (dagger_sync_end(ctx) != 0) {
        fprintf(stderr, "accumulate: %s\n", dagger_last_errmsg());
        goto done;
    }
    int64_t total = *(int64_t *)dagger_chunk_data(acc);
    printf("accumulate: %lld (expected %d)\n", (long long)total, NTASKS * (NTASKS + 1) / 2);

    /* A histogram: one piece of bins per thread, 100 tasks adding samples. */
    dagger_shard_opts_t so;
    dagger_shard_opts_init(&so);
    so.flags = DAGGER_SHARD_PER_THREAD;
    dagger_value_t nb = dagger_i64(NBINS);
    if (dagger_shard(ctx, &so, zeros, &nb, 1, &bins) != 0) {
        fprintf(stderr, "shard: %s\n", dagger_last_errmsg());
        goto done;
    }
    if (dagger_sync_begin(ctx) != 0)
        goto done;
    for (int t = 0; t < NTASKS; t++)
        dagger_task_release(dagger_spawn(ctx, add_samples, bins, t));
    if (dagger_sync_end(ctx) != 0) {
        fprintf(stderr, "histogram: %s\n", dagger_last_errmsg());
        goto done;
    }
    int64_t sum[NBINS] = {0}, want[NBINS] = {0};
    for (size_t p = 0; p < dagger_shard_count(bins); p++) {
        const int64_t *b = dagger_chunk_data(dagger_shard_piece(bins, p));
        for (int i = 0; i < NBINS; i++)
            sum[i] += b[i];
    }
    for (int t = 0; t < NTASKS; t++)
        for (int i = 0; i < PER_TASK; i++)
            want[rnd((uint64_t)(t * PER_TASK + i)) % NBINS]++;
    ok = total == NTASKS * (NTASKS + 1) / 2 && memcmp(sum, want, sizeof sum) == 0;
    printf("histogram over %zu pieces:", dagger_shard_count(bins));
    for (int i = 0; i < NBINS; i++)
        printf(" %lld", (long long)sum[i]);
    printf("\n%s\n", ok ? "both equal the sequential results" : "MISMATCH");

done:
    dagger_shard_release(bins);
    dagger_chunk_release(acc);
    dagger_scope_release(t1);
    return dagger_ctx_close(ctx) == 0 && ok ? 0 : 1;
}
