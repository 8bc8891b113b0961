/* tests/test_mem.c - the data layer: chunks, copies and staging, results kept as chunks,
 * mutable data, shards, placement by data, completion from another thread.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <unistd.h>

#include "harness.h"

#include "common/common.h"
#include "core/core.h"
#include "dagger/chunk.h"
#include "mem/mem.h"

static dagger_ctx_t *open_ctx(int n)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = n;
    dagger_ctx_t *ctx = NULL;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    return ctx;
}

/* ---------------------------------------------------------------- bodies */

static int sum_f64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    double *x = dagger_arg_array(a, 0, DAGGER_ELT_F64, &n);
    if (!x)
        return DAGGER_ETYPE;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *out = dagger_f64(s);
    return 0;
}

/* A blob of n doubles 0, 1, 2, ... kept as a chunk (the task uses DAGGER_TASK_CHUNK_RESULT). */
static int make_iota(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    double buf[64];
    for (int64_t i = 0; i < n && i < 64; i++)
        buf[i] = (double)i;
    *out = dagger_blob_copy(tc, buf, (size_t)n * sizeof(double));
    return 0;
}

/* Doubles every element of the chunk argument into a new chunk result. */
static int twice(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t len;
    const double *x = dagger_arg_buf(a, 0, &len);
    if (!x)
        return DAGGER_ETYPE;
    dagger_chunk_t *c;
    int rc = dagger_chunk_create(dagger_tc_ctx(tc), len, &c);
    if (rc)
        return dagger_fail(tc, rc, "no chunk");
    double *y = dagger_chunk_data(c);
    for (size_t i = 0; i < len / sizeof(double); i++)
        y[i] = 2 * x[i];
    *out = dagger_chunk_give(tc, c); /* the body's reference goes to the runtime */
    return 0;
}

static int add_chunks(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t la, lb;
    const double *x = dagger_arg_buf(a, 0, &la);
    const double *y = dagger_arg_buf(a, 1, &lb);
    if (!x || !y)
        return DAGGER_ETYPE;
    double s = 0;
    for (size_t i = 0; i < la / sizeof(double); i++)
        s += x[i] + y[i];
    *out = dagger_f64(s);
    return 0;
}

/* ---------------------------------------------------------------- chunks */

TEST(chunk_create_query_and_errors)
{
    dagger_ctx_t *ctx = open_ctx(2);
    size_t shape[2] = {3, 4};
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 2, shape, &c));
    ASSERT_EQ(dagger_chunk_size(c), 96);
    ASSERT_EQ(dagger_chunk_elt(c), DAGGER_ELT_F64);
    size_t got[4] = {0};
    ASSERT_EQ(dagger_chunk_shape(c, got, 4), 2);
    ASSERT_EQ(got[0], 3);
    ASSERT_EQ(got[1], 4);
    double *d = dagger_chunk_data(c);
    for (int i = 0; i < 12; i++)
        ASSERT_TRUE(d[i] == 0.0);
    dagger_space_t home = dagger_chunk_home(c);
    char buf[64];
    dagger_space_format(&home, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "host of rank 0");
    ASSERT_FALSE(dagger_chunk_is_mutable(c, NULL));
    size_t bad[1] = {5};
    ASSERT_ERR(dagger_chunk_set_type(c, DAGGER_ELT_I32, 1, bad), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the shape holds 20 bytes but chunk");
    ASSERT_STR_HAS(dagger_last_errmsg(), "has 96");
    size_t ok[1] = {24};
    ASSERT_OK(dagger_chunk_set_type(c, DAGGER_ELT_I32, 1, ok));
    dagger_chunk_release(c);

    dagger_chunk_t *x = (dagger_chunk_t *)1;
    ASSERT_ERR(dagger_chunk_create_array(ctx, (dagger_elt_t)42, 1, shape, &x), DAGGER_EINVAL);
    ASSERT_NULL(x);
    ASSERT_STR_HAS(dagger_last_errmsg(), "element type 42 is not one of f64, f32, i64, i32, u8");
    ASSERT_ERR(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 0, shape, &x), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "0 dimensions is out of range 1..4");
    size_t huge[2] = {SIZE_MAX / 4, 4};
    ASSERT_ERR(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 2, huge, &x), DAGGER_ERANGE);
    ASSERT_ERR(dagger_chunk_create(NULL, 8, &x), DAGGER_EINVAL);
    ASSERT_ERR(dagger_chunk_wrap(ctx, NULL, 8, NULL, NULL, &x), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "data is NULL but size is 8");
    ASSERT_NULL(dagger_chunk_data(NULL));
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(chunk_arguments_and_results_through_chains_and_diamonds)
{
    dagger_ctx_t *ctx = open_ctx(4);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    dagger_task_t *a = dagger_spawn_opts(ctx, &o, make_iota, 10); /* 0..9 */
    dagger_task_t *b = dagger_spawn(ctx, twice, a);               /* 0..18 */
    dagger_task_t *c = dagger_spawn(ctx, twice, a);
    dagger_task_t *d = dagger_spawn(ctx, add_chunks, b, c); /* 2 * 90 */
    dagger_task_t *s = dagger_spawn(ctx, sum_f64, a);       /* typed? raw: ETYPE */
    double r;
    ASSERT_OK(dagger_fetch_f64(d, &r));
    ASSERT_NEAR(r, 180.0, 0);
    ASSERT_ERR(dagger_fetch_f64(s, &r), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(s), "argument 0 is a chunk of raw elements, not f64");
    dagger_chunk_t *k1, *k2;
    ASSERT_OK(dagger_fetch_chunk(b, &k1));
    ASSERT_OK(dagger_fetch_chunk(b, &k2));
    ASSERT_TRUE(k1 == k2);
    const double *bytes = dagger_chunk_data(k1);
    for (int i = 0; i < 10; i++)
        ASSERT_TRUE(bytes[i] == 2.0 * i);
    dagger_value_t v;
    ASSERT_OK(dagger_fetch(a, &v));
    ASSERT_EQ(v.kind, DAGGER_KIND_CHUNK);
    ASSERT_EQ(dagger_chunk_size(v.u.c), 80);
    ASSERT_ERR(dagger_fetch_chunk(d, &k1), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "returned a f64, not a chunk");
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_task_release(c);
    dagger_task_release(d);
    dagger_task_release(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int slow_sum(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep(20000); /* the spawner releases its chunk meanwhile */
    size_t len;
    const unsigned char *p = dagger_arg_buf(a, 0, &len);
    int64_t s = 0;
    for (size_t i = 0; i < len; i++)
        s += p[i];
    *out = dagger_i64(s);
    return 0;
}

static int frees;
static void count_free(void *p, void *ud)
{
    (void)ud;
    __atomic_fetch_add(&frees, 1, __ATOMIC_SEQ_CST);
    free(p);
}

TEST(chunk_refcounts_balance)
{
    dagger_alloc_stats_t s0, s1;
    dagger_alloc_stats(&s0);
    dagger_ctx_t *ctx = open_ctx(2);
    unsigned char *mem = malloc(1000);
    for (int i = 0; i < 1000; i++)
        mem[i] = 1;
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_wrap(ctx, mem, 1000, count_free, NULL, &c));
    dagger_task_t *t = dagger_spawn(ctx, slow_sum, c);
    dagger_chunk_release(c); /* the task keeps it alive */
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 1000);
    dagger_task_release(t);
    ASSERT_EQ(__atomic_load_n(&frees, __ATOMIC_SEQ_CST), 1);

    /* results and fetches: many chunk-valued tasks, all released */
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    for (int i = 0; i < 50; i++) {
        dagger_task_t *a = dagger_spawn_opts(ctx, &o, make_iota, 8);
        dagger_task_t *b = dagger_spawn(ctx, twice, a);
        dagger_task_t *d = dagger_spawn(ctx, add_chunks, a, b);
        double x;
        ASSERT_OK(dagger_fetch_f64(d, &x));
        ASSERT_NEAR(x, 3 * 28.0, 0);
        dagger_task_release(d);
        dagger_task_release(b);
        dagger_task_release(a);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
    dagger_alloc_stats(&s1);
    /* Pools keep blocks for reuse, but every chunk record and buffer (plain malloc) is gone:
     * the difference is bounded by the pools, not by the 150 chunks made. */
    ASSERT_TRUE(s1.allocs - s0.allocs - (s1.frees - s0.frees) < 64);
}

/* ---------------------------------------------------------------- staging and copies */

TEST(staging_copies_by_version)
{
    dagger_ctx_t *ctx = open_ctx(1);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create(ctx, 64, &c));
    unsigned char *home = dagger_chunk_data(c);
    memset(home, 7, 64);
    dagger_space_t other = {0, DAGGER_SPACE_HOST, 1};
    void *p = NULL, *q = NULL;
    ASSERT_OK(dagger__mem_stage(c, &other, &p));
    ASSERT_TRUE(p != home);
    ASSERT_EQ(((unsigned char *)p)[63], 7);
    ASSERT_EQ(dagger__mem_ncopies(c), 2);
    ASSERT_OK(dagger__mem_stage(c, &other, &q)); /* cached: same copy, no new one */
    ASSERT_TRUE(p == q);
    uint64_t v0 = dagger__mem_version(c);
    home = dagger_chunk_data(c); /* the owner may write: the other copy is stale now */
    ASSERT_TRUE(dagger__mem_version(c) == v0 + 1);
    memset(home, 9, 64);
    ASSERT_OK(dagger__mem_stage(c, &other, &q));
    ASSERT_TRUE(p == q); /* refreshed in place */
    ASSERT_EQ(((unsigned char *)q)[0], 9);
    /* a write on the other copy makes home stale; host access copies it back */
    memset(q, 3, 64);
    dagger__mem_written(c, &other);
    home = dagger_chunk_data(c);
    ASSERT_EQ(home[10], 3);
    dagger_space_t dev = {0, DAGGER_SPACE_DEVICE, 60}; /* no such device, with or without GPUs */
    ASSERT_TRUE(dagger__mem_stage(c, &dev, &p) != 0);
    ASSERT_STR_HAS(dagger_last_errmsg(), "device(60) of rank 0");
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- mutable */

static int zeros8(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t zero = 0;
    *out = dagger_blob_copy(tc, &zero, sizeof zero);
    return 0;
}

struct seen {
    int thread;
    void *ptr;
};

/* accumulate!: add 1 in place, record where and what it saw */
static int accumulate(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *x = dagger_arg_buf(a, 0, NULL);
    struct seen *s = dagger_arg_ptr(a, 1);
    if (!x)
        return DAGGER_ETYPE;
    *x += 1;
    s->thread = dagger_tc_thread(tc);
    s->ptr = x;
    return 0;
}

TEST(mutable_pinned_to_thread)
{
    dagger_ctx_t *ctx = open_ctx(4);
    dagger_scope_t *t2 = dagger_scope_thread(2);
    dagger_chunk_t *m;
    ASSERT_OK(dagger_mutable(ctx, t2, zeros8, NULL, 0, &m));
    dagger_proc_t p;
    ASSERT_TRUE(dagger_chunk_is_mutable(m, &p));
    ASSERT_EQ(p.kind, DAGGER_PROC_CPU);
    ASSERT_EQ(p.index, 2);
    enum { N = 100 };
    static struct seen seen[N];
    dagger_task_t *ts[N];
    for (int i = 0; i < N; i++)
        ts[i] = dagger_spawn(ctx, accumulate, m, (void *)&seen[i]);
    for (int i = 0; i < N; i++) {
        ASSERT_OK(dagger_fetch(ts[i], NULL));
        dagger_task_release(ts[i]);
    }
    void *first = seen[0].ptr;
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(seen[i].thread, 2);
        ASSERT_TRUE(seen[i].ptr == first);
    }
    ASSERT_EQ(*(int64_t *)dagger_chunk_data(m), N);
    ASSERT_TRUE(dagger_chunk_data(m) == first);
    dagger_chunk_release(m);
    dagger_scope_release(t2);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(mutable_scope_conflict_names_both_scopes)
{
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_scope_t *t0 = dagger_scope_thread(0), *t1 = dagger_scope_thread(1);
    dagger_chunk_t *m;
    ASSERT_OK(dagger_mutable(ctx, t0, zeros8, NULL, 0, &m));
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = t1;
    o.name = "acc";
    static struct seen s;
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, accumulate, m, (void *)&s);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ESCOPE);
    char want[256];
    snprintf(want, sizeof want,
             "task %llu 'acc': no processor satisfies both the task's scope thread(1) and "
             "thread(0), where argument 0 (mutable chunk %llu) lives",
             (unsigned long long)dagger_task_id(t), (unsigned long long)dagger_chunk_id(m));
    ASSERT_STR_EQ(dagger_task_errmsg(t), want);
    ASSERT_EQ(*(int64_t *)dagger_chunk_data(m), 0); /* the body never ran */
    /* the same through a dependency whose result is the mutable chunk */
    dagger_task_opts_t mo;
    dagger_task_opts_init(&mo);
    mo.flags = DAGGER_TASK_MUTABLE_RESULT;
    mo.scope = t0;
    dagger_task_t *mk = dagger_spawn_opts(ctx, &mo, zeros8);
    dagger_task_t *u = dagger_spawn_opts(ctx, &o, accumulate, mk, (void *)&s);
    ASSERT_ERR(dagger_fetch(u, NULL), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(u), "no processor satisfies both the task's scope thread(1) "
                                          "and thread(0), where argument 0 (mutable chunk");
    dagger_task_t *v = dagger_spawn(ctx, accumulate, mk, (void *)&s); /* no scope: runs on 0 */
    ASSERT_OK(dagger_fetch(v, NULL));
    ASSERT_EQ(s.thread, 0);
    /* occupancy < 1 cannot make mutable data */
    mo.occupancy = 0.0;
    dagger_task_t *w = dagger_spawn_opts(ctx, &mo, zeros8);
    ASSERT_ERR(dagger_fetch(w, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(w), "DAGGER_TASK_MUTABLE_RESULT needs occupancy 1");
    dagger_task_release(t);
    dagger_task_release(mk);
    dagger_task_release(u);
    dagger_task_release(v);
    dagger_task_release(w);
    dagger_chunk_release(m);
    dagger_scope_release(t0);
    dagger_scope_release(t1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int ctor_fails(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "no memory for the bins");
}

static int thread_of(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

static int returns_i64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(3);
    return 0;
}

TEST(mutable_errors)
{
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_chunk_t *m = (dagger_chunk_t *)1;
    ASSERT_ERR(dagger_mutable(ctx, NULL, ctor_fails, NULL, 0, &m), DAGGER_ETASK);
    ASSERT_NULL(m);
    ASSERT_STR_HAS(dagger_last_errmsg(), "no memory for the bins");
    ASSERT_ERR(dagger_mutable(ctx, NULL, returns_i64, NULL, 0, &m), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_last_errmsg(),
                   "a result kept as a chunk must be a chunk, blob, string or pointer, not a i64");
    dagger_scope_t *bad = dagger_scope_thread(9);
    ASSERT_ERR(dagger_mutable(ctx, bad, zeros8, NULL, 0, &m), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "thread 9 does not exist");
    ASSERT_ERR(dagger_mutable(ctx, NULL, NULL, NULL, 0, &m), DAGGER_EINVAL);
    dagger_scope_release(bad);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- shards */

enum { BINS = 10, PER_TASK = 1000 };

static int make_bins(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
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

/* Adds a pseudo-random array (seeded by argument 1) into the local bins. */
static int add_to_bins(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *bins = dagger_arg_buf(a, 0, NULL);
    uint64_t seed = (uint64_t)dagger_arg_i64(a, 1);
    if (!bins)
        return DAGGER_ETYPE;
    for (int i = 0; i < PER_TASK; i++)
        bins[mix(seed * PER_TASK + (uint64_t)i) % BINS] += 1;
    return 0;
}

static void histogram(unsigned flags, int nthreads)
{
    dagger_ctx_t *ctx = open_ctx(nthreads);
    dagger_shard_opts_t so;
    dagger_shard_opts_init(&so);
    so.flags = flags;
    dagger_shard_t *sh;
    ASSERT_OK(dagger_shard(ctx, &so, make_bins, NULL, 0, &sh));
    size_t want_pieces = flags & DAGGER_SHARD_PER_THREAD ? (size_t)nthreads : 1;
    ASSERT_EQ(dagger_shard_count(sh), want_pieces);
    if (flags & DAGGER_SHARD_PER_THREAD) {
        for (size_t i = 0; i < want_pieces; i++) {
            ASSERT_EQ(dagger_shard_piece_proc(sh, i).index, (int)i);
            ASSERT_TRUE(dagger_chunk_is_mutable(dagger_shard_piece(sh, i), NULL));
        }
    }
    enum { N = 100 };
    int64_t expect[BINS] = {0};
    for (int t = 0; t < N; t++)
        for (int i = 0; i < PER_TASK; i++)
            expect[mix((uint64_t)t * PER_TASK + (uint64_t)i) % BINS]++;
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int t = 0; t < N; t++) {
        dagger_task_release(dagger_spawn(ctx, add_to_bins, sh, t));
        if (!(flags & DAGGER_SHARD_PER_THREAD)) { /* one shared piece: one writer at a time */
            ASSERT_OK(dagger_sync_end(ctx));
            ASSERT_OK(dagger_sync_begin(ctx));
        }
    }
    ASSERT_OK(dagger_sync_end(ctx));
    int64_t sum[BINS] = {0};
    for (size_t p = 0; p < dagger_shard_count(sh); p++) {
        const int64_t *b = dagger_chunk_data(dagger_shard_piece(sh, p));
        for (int i = 0; i < BINS; i++)
            sum[i] += b[i];
    }
    for (int i = 0; i < BINS; i++)
        ASSERT_EQ(sum[i], expect[i]);
    dagger_shard_release(sh);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(shard_histogram_per_thread) { histogram(DAGGER_SHARD_PER_THREAD, 4); }
TEST(shard_histogram_per_thread_one_thread) { histogram(DAGGER_SHARD_PER_THREAD, 1); }
TEST(shard_histogram_per_worker) { histogram(0, 4); }

TEST(shard_errors)
{
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_shard_opts_t so;
    dagger_shard_opts_init(&so);
    dagger_shard_t *sh = (dagger_shard_t *)1;
    so.flags = DAGGER_SHARD_PER_WORKER | DAGGER_SHARD_PER_THREAD;
    ASSERT_ERR(dagger_shard(ctx, &so, make_bins, NULL, 0, &sh), DAGGER_EINVAL);
    ASSERT_NULL(sh);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_SHARD_PER_WORKER and DAGGER_SHARD_PER_THREAD "
                                         "contradict each other");
    so.flags = 1u << 7;
    ASSERT_ERR(dagger_shard(ctx, &so, make_bins, NULL, 0, &sh), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown flags 0x80");
    so.flags = DAGGER_SHARD_PER_THREAD;
    dagger_scope_t *none = dagger_scope_thread(7);
    so.scope = none;
    ASSERT_ERR(dagger_shard(ctx, &so, make_bins, NULL, 0, &sh), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "no place gets a piece: no processor satisfies the scope "
                                         "thread(7): thread 7 does not exist");
    so.scope = NULL;
    ASSERT_ERR(dagger_shard(ctx, &so, NULL, NULL, 0, &sh), DAGGER_EINVAL);
    ASSERT_ERR(dagger_shard(ctx, &so, ctor_fails, NULL, 0, &sh), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the constructor of the piece for thread(0) failed");
    ASSERT_STR_HAS(dagger_last_errmsg(), "no memory for the bins");
    /* a per-thread shard cannot go to a task beside the workers */
    ASSERT_OK(dagger_shard(ctx, &so, make_bins, NULL, 0, &sh));
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.occupancy = 0.0;
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, add_to_bins, sh, 1);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 0 is a per-thread shard, but occupancy 0");
    /* a shard with pieces on thread 1 only: tasks go there */
    dagger_shard_t *one;
    dagger_scope_t *t1 = dagger_scope_thread(1);
    so.scope = t1;
    ASSERT_OK(dagger_shard(ctx, &so, make_bins, NULL, 0, &one));
    ASSERT_EQ(dagger_shard_count(one), 1);
    dagger_task_t *u = dagger_spawn(ctx, add_to_bins, one, 2);
    ASSERT_OK(dagger_fetch(u, NULL));
    const int64_t *b = dagger_chunk_data(dagger_shard_piece(one, 0));
    int64_t total = 0;
    for (int i = 0; i < BINS; i++)
        total += b[i];
    ASSERT_EQ(total, PER_TASK);
    dagger_task_release(t);
    dagger_task_release(u);
    dagger_shard_release(sh);
    dagger_shard_release(one);
    dagger_scope_release(none);
    dagger_scope_release(t1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- arguments and codec */

TEST(data_argument_errors)
{
    dagger_ctx_t *ctx = open_ctx(2), *other = open_ctx(1);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create(other, 8, &c));
    dagger_task_t *t = dagger_spawn(ctx, twice, c);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 0 is a chunk of another context");
    dagger_task_release(t);
    t = dagger_spawn(ctx, twice, (dagger_chunk_t *)NULL);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 0 is a NULL chunk handle");
    dagger_task_release(t);
    t = dagger_spawn(ctx, twice, 3.0);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 0 is a f64, not a chunk, shard or blob");
    dagger_task_release(t);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = 1u << 9;
    t = dagger_spawn_opts(ctx, &o, twice, c);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "unknown task option flags 0x200");
    dagger_task_release(t);
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(other));
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(encode_decode_handles)
{
    dagger_ctx_t *ctx = open_ctx(1);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create(ctx, 8, &c));
    dagger_shard_t *sh;
    ASSERT_OK(dagger_shard(ctx, NULL, make_bins, NULL, 0, &sh));
    dagger_task_t *t = dagger_spawn(ctx, returns_i64);
    dagger_value_t in[3] = {dagger_chunkv(c), dagger_shardv(sh), dagger_taskv(t)};
    for (int i = 0; i < 3; i++) {
        unsigned char buf[64];
        long n = dagger_value_encode(&in[i], buf, sizeof buf);
        ASSERT_EQ(n, 20);
        dagger_value_t out;
        ASSERT_EQ(dagger_value_decode(buf, (size_t)n, &out), 20);
        ASSERT_EQ(out.kind, in[i].kind);
        ASSERT_TRUE(out.flags & DAGGER_VALUE_REMOTE);
        ASSERT_EQ(out.rank, 0);
        uint64_t id = i == 0 ? dagger_chunk_id(c) : i == 2 ? dagger_task_id(t) : (uint64_t)out.u.i;
        ASSERT_EQ((uint64_t)out.u.i, id);
        /* a remote reference re-encodes to the same bytes */
        unsigned char again[64];
        ASSERT_EQ(dagger_value_encode(&out, again, sizeof again), 20);
        ASSERT_TRUE(memcmp(buf + 8, again + 8, 12) == 0); /* id and rank */
    }
    unsigned char bad[20] = {DAGGER_KIND_CHUNK};
    bad[16] = 0xff; /* the rank field (bytes 16..19, little-endian) reads 0x100ff */
    bad[18] = 1;
    dagger_value_t out;
    ASSERT_ERR(dagger_value_decode(bad, sizeof bad, &out), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "chunk reference names rank");
    /* a remote chunk reference cannot be an argument */
    unsigned char buf[64];
    long n = dagger_value_encode(&in[0], buf, sizeof buf);
    ASSERT_OK(dagger_value_decode(buf, (size_t)n, &out));
    dagger_task_t *u = dagger_spawnv(ctx, twice, &out, 1);
    ASSERT_ERR(dagger_fetch(u, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(u), "argument 0 is a remote chunk reference");
    ASSERT_STR_EQ(dagger_kind_name(DAGGER_KIND_CHUNK), "chunk");
    ASSERT_STR_EQ(dagger_kind_name(DAGGER_KIND_SHARD), "shard");
    dagger_task_release(u);
    dagger_task_release(t);
    dagger_shard_release(sh);
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(scope_of_processors)
{
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_proc_t dev = {0, DAGGER_PROC_DEVICE, 60}; /* no such device, with or without GPUs */
    dagger_scope_t *s = dagger_scope_processor(&dev);
    char buf[64];
    dagger_scope_format(s, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "device(60)");
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = s;
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, returns_i64);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t),
                   "no processor satisfies the scope device(60): device 60 does not exist");
    dagger_task_release(t);
    dagger_scope_release(s);
    dagger_proc_t cpu = {0, DAGGER_PROC_CPU, 1};
    s = dagger_scope_processor(&cpu);
    dagger_scope_format(s, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "worker(0).thread(1)");
    o.scope = s;
    for (int i = 0; i < 8; i++) {
        t = dagger_spawn_opts(ctx, &o, thread_of);
        int64_t th;
        ASSERT_OK(dagger_fetch_i64(t, &th));
        ASSERT_EQ(th, 1);
        dagger_task_release(t);
    }
    dagger_scope_release(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- completion from anywhere */

static dagger_task_t *_Atomic handed;

static void hand_over(dagger_task_t *t, void *ud)
{
    (void)ud;
    atomic_store(&handed, t);
}

static int deferred_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger__task_defer(tc, hand_over, NULL);
    return 0;
}

static int plus_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

/* The callback runs on the completing thread, maybe after a dependent already finished: wait
 * for it (bounded). */
static int wait_flag(int *flag)
{
    for (int i = 0; i < 100000 && !__atomic_load_n(flag, __ATOMIC_SEQ_CST); i++)
        usleep(100);
    return __atomic_load_n(flag, __ATOMIC_SEQ_CST);
}

static void *executor_thread(void *arg)
{
    int fail = *(int *)arg;
    dagger_task_t *t;
    while (!(t = atomic_exchange(&handed, NULL)))
        usleep(100);
    usleep(5000);
    dagger_value_t v = dagger_i64(41);
    if (fail)
        dagger__task_complete(t, DAGGER_EIO, NULL, "the device reported an error");
    else
        dagger__task_complete(t, 0, &v, NULL);
    return NULL;
}

static int calls;
static void on_done(dagger_task_t *t, void *ud)
{
    __atomic_fetch_add(&calls, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n((int *)ud, dagger_task_error(t) ? -1 : 1, __ATOMIC_SEQ_CST);
}

TEST(completion_from_another_thread)
{
    dagger_ctx_t *ctx = open_ctx(2);
    for (int fail = 0; fail < 2; fail++) {
        pthread_t th;
        pthread_create(&th, NULL, executor_thread, &fail);
        dagger_task_t *a = dagger_spawn(ctx, deferred_body);
        struct dagger__task_callback cb;
        int flag = 0;
        dagger__task_on_done(a, &cb, on_done, &flag);
        dagger_task_t *b = dagger_spawn(ctx, plus_one, a);
        int64_t r = 0;
        if (!fail) {
            ASSERT_OK(dagger_fetch_i64(b, &r));
            ASSERT_EQ(r, 42);
            ASSERT_EQ(wait_flag(&flag), 1);
        } else {
            ASSERT_ERR(dagger_fetch_i64(b, &r), DAGGER_EUPSTREAM);
            ASSERT_STR_HAS(dagger_task_errmsg(b), "the device reported an error");
            ASSERT_ERR(dagger_fetch(a, NULL), DAGGER_EIO);
            ASSERT_EQ(wait_flag(&flag), -1);
        }
        /* The callback runs on the completing thread, possibly after b's fetch returned: the
         * join orders it before the check. */
        pthread_join(th, NULL);
        ASSERT_EQ(flag, fail ? -1 : 1);
        /* a callback on a finished task runs at once */
        struct dagger__task_callback cb2;
        int flag2 = 0;
        dagger__task_on_done(a, &cb2, on_done, &flag2);
        ASSERT_EQ(flag2, fail ? -1 : 1);
        dagger_task_release(a);
        dagger_task_release(b);
    }
    ASSERT_EQ(calls, 4);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The one size parser of the environment variables (DAGGER_MEM_LIMIT, DAGGER_GPU_MEM_LIMIT,
 * DAGGER_TRACE_LIMIT). */
TEST(sizes_parse_with_suffixes_and_refuse_the_rest)
{
    size_t v = 7;
    ASSERT_OK(dagger__parse_size("65536", &v));
    ASSERT_EQ(v, 65536);
    ASSERT_OK(dagger__parse_size("4k", &v));
    ASSERT_EQ(v, 4096);
    ASSERT_OK(dagger__parse_size("3M", &v));
    ASSERT_EQ(v, 3u << 20);
    ASSERT_OK(dagger__parse_size("2GiB", &v));
    ASSERT_EQ(v, (size_t)2 << 30);
    v = 7;
    ASSERT_ERR(dagger__parse_size("lots", &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger__parse_size("12q", &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger__parse_size("", &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger__parse_size("99999999999999999999", &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger__parse_size("17179869184T", &v), DAGGER_EINVAL);
    ASSERT_EQ(v, 7);
}

/* tests/fuzz/corpus/parse/crash-size-negative: strtoull took "-1" for 2^64 - 1, so
 * DAGGER_MEM_LIMIT=-1 meant no limit at all; a sign or a space before the digits is refused. */
TEST(sizes_refuse_a_sign_or_a_space)
{
    size_t v = 7;
    ASSERT_ERR(dagger__parse_size("-1", &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger__parse_size("-4k", &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger__parse_size("+5", &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger__parse_size(" 5", &v), DAGGER_EINVAL);
    ASSERT_EQ(v, 7);
    setenv("DAGGER_MEM_LIMIT", "-1", 1);
    dagger_ctx_t *ctx = NULL;
    dagger_opts_t o;
    dagger_opts_init(&o);
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_MEM_LIMIT=-1 is not a size");
    unsetenv("DAGGER_MEM_LIMIT");
}

TEST_LIST(sizes_parse_with_suffixes_and_refuse_the_rest, sizes_refuse_a_sign_or_a_space,
          chunk_create_query_and_errors, chunk_arguments_and_results_through_chains_and_diamonds,
          chunk_refcounts_balance, staging_copies_by_version, mutable_pinned_to_thread,
          mutable_scope_conflict_names_both_scopes, mutable_errors, shard_histogram_per_thread,
          shard_histogram_per_thread_one_thread, shard_histogram_per_worker, shard_errors,
          data_argument_errors, encode_decode_handles, scope_of_processors,
          completion_from_another_thread)
