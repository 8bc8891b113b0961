/* tests/test_mpi_data.c - data across ranks (label mpi): mutable data on a rank, shards with
 * pieces on every rank, and the weighted credits that free them.
 *
 * Driver mode, as tests/test_mpi.c: rank 0 runs the case; the other ranks serve inside
 * dagger_ctx_open and the case ends there. Runs on 2 ranks (test_mpi_data) and 4
 * (test_mpi_data4).
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dagger/chunk.h"
#include "harness.h"
#include "mpi_harness.h"

static dagger_task_t *spawn_in(dagger_ctx_t *ctx, dagger_scope_t *s, dagger_fn_t fn,
                               const dagger_value_t *argv, size_t argc)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    if (s) /* NULL: the default (any) */
        o.scope = s;
    dagger_task_t *t = dagger_spawn_impl(ctx, &o, fn, NULL, argv, argc);
    dagger_scope_release(s);
    ASSERT_PTR(t);
    return t;
}

enum { BINS = 10, PER_TASK = 1000 };

static int make_bins(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    int64_t zero[BINS] = {0};
    *out = dagger_blob_copy(tc, zero, sizeof zero);
    return 0;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Adds a pseudo-random array (seeded by argument 1) into the local bins (atomically: a
 * per-worker piece is shared by the threads of its rank). Returns the rank it ran on. */
static int add_to_bins(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *bins = dagger_arg_buf(a, 0, NULL);
    uint64_t seed = (uint64_t)dagger_arg_i64(a, 1);
    if (!bins)
        return DAGGER_ETYPE;
    for (int i = 0; i < PER_TASK; i++)
        __atomic_fetch_add(&bins[mix(seed * PER_TASK + (uint64_t)i) % BINS], 1, __ATOMIC_RELAXED);
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

/* A copy of the bins where they live, and the rank that read them. */
static int read_bins(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const int64_t *bins = dagger_arg_buf(a, 0, &n);
    if (!bins || n != BINS * sizeof(int64_t))
        return dagger_fail(tc, DAGGER_ETYPE, "bins of %zu bytes", n);
    int64_t copy[BINS + 1];
    memcpy(copy, bins, sizeof copy - sizeof copy[0]);
    copy[BINS] = dagger_ctx_rank(dagger_tc_ctx(tc));
    *out = dagger_blob_copy(tc, copy, sizeof copy);
    return 0;
}

static void expected(int ntasks, int64_t *expect)
{
    memset(expect, 0, BINS * sizeof *expect);
    for (int t = 0; t < ntasks; t++)
        for (int i = 0; i < PER_TASK; i++)
            expect[mix((uint64_t)t * PER_TASK + (uint64_t)i) % BINS]++;
}

/* Each rank fills its pieces (tasks spread over the ranks by scope), the driver reads every
 * piece where it lives and reduces; the counts are exact. */
static void histogram(unsigned flags, int nthreads)
{
    dagger_ctx_t *ctx = open_job(nthreads);
    if (!ctx)
        return;
    int nranks = dagger_ctx_nranks(ctx);
    ASSERT_TRUE(nranks >= 2);
    dagger_shard_opts_t so;
    dagger_shard_opts_init(&so);
    so.flags = flags;
    dagger_shard_t *sh;
    ASSERT_OK(dagger_shard(ctx, &so, make_bins, NULL, 0, &sh));
    bool per_thread = flags & DAGGER_SHARD_PER_THREAD;
    size_t want = (size_t)nranks * (per_thread ? (size_t)nthreads : 1);
    ASSERT_EQ(dagger_shard_count(sh), want);
    for (size_t i = 0; i < want; i++) {
        dagger_proc_t p = dagger_shard_piece_proc(sh, i), q;
        ASSERT_EQ(p.rank, (int)(per_thread ? i / (size_t)nthreads : i));
        ASSERT_EQ(p.index, per_thread ? (int)(i % (size_t)nthreads) : -1);
        ASSERT_TRUE(dagger_chunk_is_mutable(dagger_shard_piece(sh, i), &q));
        ASSERT_EQ(q.rank, p.rank);
        ASSERT_EQ(dagger_chunk_home(dagger_shard_piece(sh, i)).rank, p.rank);
    }
    /* Another rank's piece is not readable here. */
    ASSERT_NULL(dagger_chunk_data(dagger_shard_piece(sh, want - 1)));
    ASSERT_STR_HAS(dagger_last_errmsg(), "never leaves it");

    enum { N = 60 };
    dagger_task_t *ts[N];
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int t = 0; t < N; t++) {
        int r = t % nranks;
        ts[t] = spawn_in(ctx, dagger_scope_worker(r), add_to_bins,
                         (dagger_value_t[]){dagger_shardv(sh), dagger_i64(t)}, 2);
    }
    ASSERT_OK(dagger_sync_end(ctx));
    for (int t = 0; t < N; t++) {
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(ts[t], &r));
        ASSERT_EQ(r, t % nranks);
        dagger_task_release(ts[t]);
    }
    int64_t sum[BINS] = {0}, expect[BINS];
    for (size_t i = 0; i < want; i++) {
        dagger_task_t *rd = spawn_in(
            ctx, NULL, read_bins, (dagger_value_t[]){dagger_chunkv(dagger_shard_piece(sh, i))}, 1);
        dagger_value_t v;
        ASSERT_OK(dagger_fetch(rd, &v));
        ASSERT_EQ(v.kind, DAGGER_KIND_BLOB);
        ASSERT_EQ(v.len, (BINS + 1) * sizeof(int64_t));
        const int64_t *b = v.u.p;
        ASSERT_EQ(b[BINS], dagger_shard_piece_proc(sh, i).rank);
        for (int k = 0; k < BINS; k++)
            sum[k] += b[k];
        dagger_task_release(rd);
    }
    expected(N, expect);
    for (int k = 0; k < BINS; k++)
        ASSERT_EQ(sum[k], expect[k]);
    dagger_shard_release(sh);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(shard_histogram_per_rank) { histogram(0, 2); }
TEST(shard_histogram_per_rank_and_thread) { histogram(DAGGER_SHARD_PER_THREAD, 2); }

/* A counter that lives on a rank: every bump runs there, in order. */
static int bump(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *c = dagger_arg_buf(a, 0, NULL);
    if (!c)
        return DAGGER_ETYPE;
    c[0] += dagger_arg_i64(a, 1);
    c[1] = dagger_ctx_rank(dagger_tc_ctx(tc));
    *out = dagger_i64(c[0]);
    return 0;
}

static int make_counter(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    int64_t zero[2] = {0, -1};
    *out = dagger_blob_copy(tc, zero, sizeof zero);
    return 0;
}

TEST(mutable_on_a_rank)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int last = dagger_ctx_nranks(ctx) - 1;
    dagger_scope_t *w = dagger_scope_worker(last);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_mutable(ctx, w, make_counter, NULL, 0, &c));
    dagger_scope_release(w);
    dagger_proc_t p;
    ASSERT_TRUE(dagger_chunk_is_mutable(c, &p));
    ASSERT_EQ(p.rank, last);
    ASSERT_EQ(dagger_chunk_size(c), 2 * sizeof(int64_t));
    /* Tasks that write it run where it lives, whatever rank spawns them (any scope). */
    int64_t total = 0;
    for (int k = 1; k <= 20; k++) {
        dagger_task_t *t = dagger_spawn(ctx, bump, c, (int64_t)k);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        total += k;
        ASSERT_EQ(v, total);
        dagger_task_release(t);
    }
    dagger_task_t *rd = spawn_in(ctx, NULL, read_bins, (dagger_value_t[]){dagger_chunkv(c)}, 1);
    dagger_value_t v;
    ASSERT_ERR(dagger_fetch(rd, &v), DAGGER_ETYPE); /* 16 bytes, not bins: the body said so */
    ASSERT_STR_HAS(dagger_task_errmsg(rd), "bins of 16 bytes");
    dagger_task_release(rd);
    /* A scope that excludes its rank is refused, naming both. */
    dagger_task_t *bad = spawn_in(ctx, dagger_scope_worker(0), bump,
                                  (dagger_value_t[]){dagger_chunkv(c), dagger_i64(1)}, 2);
    ASSERT_ERR(dagger_wait(bad) ? DAGGER_EINVAL : dagger_task_error(bad), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(bad), "worker(0)");
    ASSERT_STR_HAS(dagger_task_errmsg(bad), "mutable chunk");
    dagger_task_release(bad);
    /* A task that takes mutable data of two ranks cannot run anywhere. */
    dagger_scope_t *w0 = dagger_scope_worker(0);
    dagger_chunk_t *here;
    ASSERT_OK(dagger_mutable(ctx, w0, make_counter, NULL, 0, &here));
    dagger_scope_release(w0);
    dagger_task_t *two = dagger_spawn(ctx, bump, here, (int64_t)1, c);
    ASSERT_ERR(dagger_wait(two) ? DAGGER_EINVAL : dagger_task_error(two), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(two), "but argument 0 is pinned to another rank");
    dagger_task_release(two);
    /* Nor can a task scoped to another rank than its data's. */
    dagger_task_t *away = spawn_in(ctx, dagger_scope_worker(last), bump,
                                   (dagger_value_t[]){dagger_chunkv(here), dagger_i64(1)}, 2);
    ASSERT_ERR(dagger_wait(away) ? DAGGER_EINVAL : dagger_task_error(away), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(away), "but the task's scope sends it to rank");
    dagger_task_release(away);
    dagger_chunk_release(here);
    ASSERT_NULL(dagger_chunk_data(c));
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Counters whose bytes say when they are freed, on the rank that holds them. */
static _Atomic int counters_freed;

static void counter_free(void *data, void *ud)
{
    (void)ud;
    free(data);
    atomic_fetch_add(&counters_freed, 1);
}

static int make_tracked_counter(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    int64_t *p = calloc(2, sizeof *p);
    dagger_chunk_t *c;
    if (!p || dagger_chunk_wrap(dagger_tc_ctx(tc), p, 2 * sizeof *p, counter_free, NULL, &c)) {
        free(p);
        return dagger_fail(tc, DAGGER_ENOMEM, "no counter");
    }
    *out = dagger_chunk_give(tc, c);
    return 0;
}

static int freed_here(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    *out = dagger_i64(atomic_load(&counters_freed));
    return 0;
}

static int64_t freed_on(dagger_ctx_t *ctx, int rank)
{
    dagger_task_t *t = spawn_in(ctx, dagger_scope_worker(rank), freed_here, NULL, 0);
    int64_t n = -1;
    ASSERT_OK(dagger_fetch_i64(t, &n));
    dagger_task_release(t);
    return n;
}

/* The count on `rank` once it reaches `want` (asked up to 2000 times, a millisecond apart), or
 * the last answer; `via` is asked first each time (its own give-back precedes its answer). */
static int64_t freed_reaches(dagger_ctx_t *ctx, int rank, int via, int64_t want)
{
    int64_t n = -1;
    for (int k = 0; k < 2000; k++) {
        (void)freed_on(ctx, via);
        n = freed_on(ctx, rank);
        if (n >= want)
            break;
        usleep(1000);
    }
    return n;
}

/* Copies of a proxy handle (retain, task arguments) send nothing; the home keeps the data
 * until the last copy is gone, and then frees it (its give-back precedes the next message). */
static void credit_round(dagger_ctx_t *ctx)
{
    int64_t freed0 = freed_on(ctx, 1);
    dagger_chunk_t *c = mutable_on(ctx, 1, make_tracked_counter, NULL, 0);
    dagger_chunk_t *copy = dagger_chunk_retain(c);
    dagger_chunk_release(c); /* the copy still holds it: nothing freed early */
    for (int k = 0; k < 50; k++) {
        dagger_task_t *t = dagger_spawn(ctx, bump, copy, (int64_t)1);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, k + 1);
        dagger_task_release(t);
    }
    ASSERT_EQ(freed_on(ctx, 1), freed0);
    dagger_chunk_release(copy);
    ASSERT_EQ(freed_on(ctx, 1), freed0 + 1);
    /* A shard piece held after the shard is released stays usable where it lives. */
    dagger_shard_t *sh;
    ASSERT_OK(dagger_shard(ctx, NULL, make_bins, NULL, 0, &sh));
    dagger_chunk_t *piece = dagger_chunk_retain(dagger_shard_piece(sh, 1));
    dagger_shard_release(sh);
    dagger_task_t *t = dagger_spawn(ctx, add_to_bins, piece, (int64_t)0);
    int64_t r = -1;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 1);
    dagger_task_release(t);
    dagger_chunk_release(piece);
}

/* On rank 1: make a tracked counter on rank `target` and return it (a proxy there, or the
 * chunk itself when target is 1). */
static int make_elsewhere(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_scope_t *w = dagger_scope_worker((int)dagger_arg_i64(a, 0));
    dagger_chunk_t *c;
    int rc = dagger_mutable(dagger_tc_ctx(tc), w, make_tracked_counter, NULL, 0, &c);
    dagger_scope_release(w);
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* A reference handed on: rank 1 makes data on rank `target` and hands it to the driver (split
 * credit with 3+ ranks; a reference going home on 2). Tasks spawned here reach it; the last
 * release frees it there. */
TEST(reference_handed_on_between_ranks)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int target = dagger_ctx_nranks(ctx) > 2 ? 2 : 0;
    int64_t freed0 = freed_on(ctx, target);
    dagger_task_t *mk = spawn_in(ctx, dagger_scope_worker(1), make_elsewhere,
                                 (dagger_value_t[]){dagger_i64(target)}, 1);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_fetch_chunk(mk, &c));
    c = dagger_chunk_retain(c);
    dagger_task_release(mk);
    dagger_proc_t p;
    ASSERT_TRUE(dagger_chunk_is_mutable(c, &p));
    ASSERT_EQ(p.rank, target);
    ASSERT_EQ(p.index, -1); /* a worker scope: any thread of that rank */
    for (int k = 0; k < 5; k++) {
        dagger_task_t *t = dagger_spawn(ctx, bump, c, (int64_t)2);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, 2 * (k + 1));
        dagger_task_release(t);
    }
    ASSERT_EQ(freed_on(ctx, target), freed0);
    dagger_chunk_release(c);
    /* The last credit may come from rank 1's own copy, whose give-back is not ordered with
     * this rank's messages: ask rank 1 (its give-back precedes its answer), then look. */
    ASSERT_EQ(freed_reaches(ctx, target, 1, freed0 + 1), freed0 + 1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(credits_free_remote_data_once) { jobs_leak_nothing(credit_round); }

TEST_LIST(shard_histogram_per_rank, shard_histogram_per_rank_and_thread, mutable_on_a_rank,
          reference_handed_on_between_ranks, credits_free_remote_data_once)
