/* tests/test_mem_bufcache.c - the cache of large host buffers (src/mem/bufcache.c): a freed
 * chunk's buffer comes back to the next chunk of its size class, a zeroed chunk reads as zero
 * after reusing a dirty buffer, the cap (DAGGER_BUFCACHE_MB, LRU trimming, 0 disables, a bad
 * value warns), a memory limit disables it, the last close frees everything (the allocation
 * counters balance), a failed allocation gives the same error as before, and many threads
 * creating and freeing chunks at once (for TSan).
 * Reuse is judged by the allocation counters, not by pointers alone: libc's mmap often hands
 * back the same address after a munmap.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "harness.h"

#include "dagger/chunk.h"
#include "mem/mem.h"

#define MIB ((size_t)1 << 20)

static dagger_ctx_t *open_ctx(size_t mem_limit)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 2;
    o.mem_limit = mem_limit;
    dagger_ctx_t *ctx = NULL;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    return ctx;
}

static uint64_t allocs_now(void)
{
    dagger_alloc_stats_t s;
    dagger_alloc_stats(&s);
    return s.allocs;
}

static int64_t live_blocks(void)
{
    dagger_alloc_stats_t s;
    dagger_alloc_stats(&s);
    return (int64_t)(s.allocs - s.frees);
}

static struct dagger__bufcache_stats stats(void)
{
    struct dagger__bufcache_stats s;
    dagger__mem_bufcache_stats(&s);
    return s;
}

static dagger_chunk_t *make(dagger_ctx_t *ctx, size_t n, uint8_t fill)
{
    dagger_chunk_t *c = NULL;
    ASSERT_OK(dagger_chunk_create(ctx, n, &c));
    memset(dagger_chunk_data(c), fill, n);
    return c;
}

static size_t default_cap(void)
{
    size_t def = 256 * MIB;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0 && (size_t)pages / 8 * (size_t)psize < def)
        def = (size_t)pages / 8 * (size_t)psize;
    return def;
}

TEST(size_classes_have_eight_steps_per_power_of_two)
{
    ASSERT_EQ(dagger__bufcache_class(1000), 1000);             /* small: not cached */
    ASSERT_EQ(dagger__bufcache_class(MIB - 1), MIB - 1);       /* under the threshold */
    ASSERT_EQ(dagger__bufcache_class(MIB), MIB);               /* exact */
    ASSERT_EQ(dagger__bufcache_class(MIB + 1), MIB + MIB / 8); /* next step of 128 KiB */
    ASSERT_EQ(dagger__bufcache_class(3 * MIB), 3 * MIB);       /* a multiple of 256 KiB */
    ASSERT_EQ(dagger__bufcache_class(64 * MIB + 5), 72 * MIB); /* at most 12.5 % more */
    ASSERT_EQ(dagger__bufcache_class(4000000), 4 * MIB);       /* 3.81 MiB -> 4 MiB */
    ASSERT_EQ(dagger__bufcache_class(SIZE_MAX), SIZE_MAX);     /* overflow: no class */
}

TEST(freed_buffer_is_reused_by_a_chunk_of_the_same_size)
{
    unsetenv("DAGGER_BUFCACHE_MB");
    dagger_ctx_t *ctx = open_ctx(0);
    dagger_chunk_t *a = make(ctx, 4 * MIB, 0xab);
    void *pa = dagger_chunk_data(a);
    dagger_chunk_release(a);
    struct dagger__bufcache_stats s = stats();
    ASSERT_EQ(s.held, 4 * MIB);
    ASSERT_EQ(s.buffers, 1);
    ASSERT_EQ(s.cap, default_cap());
    uint64_t before = allocs_now();
    dagger_chunk_t *b = NULL;
    ASSERT_OK(dagger__chunk_create_unset(ctx, 4 * MIB, &b)); /* as the MPI pull makes it */
    ASSERT_EQ(allocs_now() - before, 1); /* the chunk record only: the buffer was cached */
    ASSERT_TRUE(dagger_chunk_data(b) == pa);
    s = stats();
    ASSERT_EQ(s.held, 0);
    ASSERT_EQ(s.hits, 1);
    ASSERT_EQ(s.misses, 1);
    /* Another size class is a miss: the record and a new buffer. */
    before = allocs_now();
    dagger_chunk_t *c = make(ctx, 2 * MIB, 1);
    ASSERT_EQ(allocs_now() - before, 2);
    ASSERT_EQ(stats().misses, 2);
    dagger_chunk_release(b);
    dagger_chunk_release(c);
    ASSERT_EQ(stats().buffers, 2);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(small_chunks_are_not_cached)
{
    unsetenv("DAGGER_BUFCACHE_MB");
    dagger_ctx_t *ctx = open_ctx(0);
    dagger_chunk_t *a = make(ctx, MIB - 1, 3);
    dagger_chunk_release(a);
    ASSERT_EQ(stats().held, 0);
    uint64_t before = allocs_now();
    a = make(ctx, MIB - 1, 3);
    ASSERT_EQ(allocs_now() - before, 2);
    dagger_chunk_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(zeroed_chunk_reads_zero_after_reusing_a_dirty_buffer)
{
    unsetenv("DAGGER_BUFCACHE_MB");
    dagger_ctx_t *ctx = open_ctx(0);
    const size_t n = 3 * MIB + 12345; /* class 3.25 MiB: the tail past n stays dirty */
    dagger_chunk_t *a = make(ctx, n, 0xff);
    void *pa = dagger_chunk_data(a);
    dagger_chunk_release(a);
    dagger_chunk_t *b = NULL;
    ASSERT_OK(dagger_chunk_create(ctx, n, &b));
    const uint8_t *p = dagger_chunk_data(b);
    ASSERT_TRUE(p == pa);
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++)
        nonzero += p[i] != 0;
    ASSERT_EQ(nonzero, 0);
    ASSERT_EQ(stats().hits, 1);
    dagger_chunk_release(b);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(zero_cap_disables_the_cache)
{
    setenv("DAGGER_BUFCACHE_MB", "0", 1);
    dagger_ctx_t *ctx = open_ctx(0);
    ASSERT_EQ(stats().cap, 0);
    dagger_chunk_t *a = make(ctx, 4 * MIB, 1);
    dagger_chunk_release(a);
    ASSERT_EQ(stats().held, 0);
    ASSERT_EQ(stats().buffers, 0);
    uint64_t before = allocs_now();
    a = make(ctx, 4 * MIB, 1);
    ASSERT_EQ(allocs_now() - before, 2); /* record and buffer: nothing was kept */
    ASSERT_EQ(stats().hits, 0);
    dagger_chunk_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(small_cap_frees_the_least_recently_used)
{
    setenv("DAGGER_BUFCACHE_MB", "5", 1);
    dagger_ctx_t *ctx = open_ctx(0);
    ASSERT_EQ(stats().cap, 5 * MIB);
    dagger_chunk_t *a = make(ctx, 2 * MIB, 1), *b = make(ctx, 3 * MIB, 2),
                   *c = make(ctx, 1 * MIB, 3), *big = make(ctx, 8 * MIB, 4);
    void *pb = dagger_chunk_data(b), *pc = dagger_chunk_data(c);
    dagger_alloc_stats_t s0, s1;
    dagger_alloc_stats(&s0);
    dagger_chunk_release(big); /* over the cap by itself: freed at once */
    dagger_alloc_stats(&s1);
    ASSERT_EQ(s1.frees - s0.frees, 2); /* record and buffer */
    ASSERT_EQ(stats().held, 0);
    dagger_chunk_release(a);
    dagger_chunk_release(b);
    ASSERT_EQ(stats().held, 5 * MIB);
    dagger_alloc_stats(&s0);
    dagger_chunk_release(c); /* 6 MiB > 5: the oldest (a's 2 MiB) goes */
    dagger_alloc_stats(&s1);
    ASSERT_EQ(s1.frees - s0.frees, 2); /* c's record and a's buffer */
    struct dagger__bufcache_stats s = stats();
    ASSERT_EQ(s.held, 4 * MIB);
    ASSERT_EQ(s.buffers, 2);
    uint64_t before = allocs_now();
    a = make(ctx, 2 * MIB, 1); /* trimmed: a miss */
    ASSERT_EQ(allocs_now() - before, 2);
    before = allocs_now();
    b = make(ctx, 3 * MIB, 2);
    c = make(ctx, 1 * MIB, 3);
    ASSERT_EQ(allocs_now() - before, 2); /* two records: both buffers were kept */
    ASSERT_TRUE(dagger_chunk_data(b) == pb);
    ASSERT_TRUE(dagger_chunk_data(c) == pc);
    dagger_chunk_release(a);
    dagger_chunk_release(b);
    dagger_chunk_release(c);
    ASSERT_TRUE(stats().held <= 5 * MIB);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Open a context with DAGGER_BUFCACHE_MB=`value` and return what it wrote to stderr. */
static void open_with_bad_value(const char *value, char *err, size_t cap)
{
    setenv("DAGGER_BUFCACHE_MB", value, 1);
    char path[] = "/tmp/dagger_bufcacheXXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ASSERT_TRUE(saved >= 0);
    ASSERT_TRUE(dup2(fd, STDERR_FILENO) >= 0);
    dagger_ctx_t *ctx = open_ctx(0);
    size_t got = stats().cap;
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ASSERT_OK(dagger_ctx_close(ctx));
    FILE *f = fdopen(fd, "r");
    ASSERT_PTR(f);
    rewind(f);
    size_t n = fread(err, 1, cap - 1, f);
    err[n] = 0;
    fclose(f);
    unlink(path);
    ASSERT_EQ(got, default_cap());
}

TEST(bad_value_warns_and_uses_the_default)
{
    char err[512], want[128];
    snprintf(want, sizeof want, "using the default, %zu MiB", default_cap() >> 20);
    const char *bad[] = {"lots", "-1", "12x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        open_with_bad_value(bad[i], err, sizeof err);
        char name[64];
        snprintf(name, sizeof name, "DAGGER_BUFCACHE_MB='%s' is invalid", bad[i]);
        ASSERT_STR_HAS(err, name);
        ASSERT_STR_HAS(err, want);
    }
}

TEST(memory_limit_disables_and_empties_the_cache)
{
    unsetenv("DAGGER_BUFCACHE_MB");
    dagger_ctx_t *a = open_ctx(0);
    dagger_chunk_release(make(a, 4 * MIB, 1));
    ASSERT_EQ(stats().held, 4 * MIB);
    dagger_ctx_t *b = open_ctx(64 * MIB); /* sets the limit for the process */
    ASSERT_EQ(stats().held, 0);
    ASSERT_EQ(stats().cap, 0);
    dagger_chunk_release(make(b, 4 * MIB, 1));
    dagger_chunk_release(make(a, 4 * MIB, 1));
    ASSERT_EQ(stats().held, 0);
    ASSERT_OK(dagger_ctx_close(b));
    ASSERT_EQ(stats().cap, default_cap()); /* the limit is gone with its context */
    dagger_chunk_release(make(a, 4 * MIB, 1));
    ASSERT_EQ(stats().held, 4 * MIB);
    ASSERT_OK(dagger_ctx_close(a));
}

TEST(last_close_frees_every_cached_buffer)
{
    unsetenv("DAGGER_BUFCACHE_MB");
    int64_t best = INT64_MAX;
    for (int round = 0; round < 3; round++) {
        int64_t live0 = live_blocks();
        dagger_ctx_t *a = open_ctx(0), *b = open_ctx(0);
        dagger_chunk_t *kept = make(a, 2 * MIB, 7);
        for (int i = 0; i < 4; i++)
            dagger_chunk_release(make(i % 2 ? a : b, (size_t)(i + 1) * MIB, 1));
        ASSERT_EQ(stats().buffers, 4);
        ASSERT_OK(dagger_ctx_close(a));
        ASSERT_EQ(stats().buffers, 4); /* b is still open */
        ASSERT_OK(dagger_ctx_close(b));
        ASSERT_EQ(stats().held, 0);
        ASSERT_EQ(stats().buffers, 0);
        dagger_chunk_release(kept); /* after the last close: freed, not kept */
        ASSERT_EQ(stats().held, 0);
        int64_t live = live_blocks() - live0;
        printf("round %d: %lld blocks still allocated\n", round, (long long)live);
        if (round > 0 && live < best)
            best = live;
    }
#ifdef NDEBUG
    ASSERT_TRUE(best <= 0);
#else
    /* Debug builds keep closed contexts a while (to catch a spawn on one): two blocks. */
    ASSERT_TRUE(best <= 2);
#endif
}

TEST(failed_allocation_gives_the_same_error)
{
    unsetenv("DAGGER_BUFCACHE_MB");
    dagger_ctx_t *ctx = open_ctx(0);
    dagger_chunk_t *c = NULL;
    dagger_fault_alloc(2); /* the record is the first allocation, the buffer the second */
    ASSERT_ERR(dagger_chunk_create(ctx, 4 * MIB, &c), DAGGER_ENOMEM);
    dagger_fault_alloc(0);
    ASSERT_NULL(c);
    ASSERT_STR_HAS(dagger_last_errmsg(), "dagger_chunk_create: out of memory for 4194304 bytes");
    ASSERT_EQ(stats().held, 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

#define THREADS 6
#define ROUNDS 150

struct worker {
    dagger_ctx_t *ctx;
    int id, bad;
};

static void *churn(void *p)
{
    struct worker *w = p;
    for (int i = 0; i < ROUNDS; i++) {
        size_t n = (size_t)(1 + (w->id + i) % 3) * MIB + (size_t)(i % 2) * 4096;
        dagger_chunk_t *c = NULL;
        if (dagger_chunk_create(w->ctx, n, &c)) {
            w->bad++;
            continue;
        }
        uint8_t *d = dagger_chunk_data(c);
        if (d[0] || d[n / 2] || d[n - 1]) /* zeroed even when reused */
            w->bad++;
        d[0] = d[n / 2] = d[n - 1] = (uint8_t)(w->id + 1);
        sched_yield();
        if (d[0] != w->id + 1 || d[n / 2] != w->id + 1 || d[n - 1] != w->id + 1)
            w->bad++; /* another thread got the same buffer */
        dagger_chunk_release(c);
    }
    return NULL;
}

TEST(many_threads_create_and_free_chunks)
{
    setenv("DAGGER_BUFCACHE_MB", "12", 1); /* smaller than what is in flight: trims too */
    dagger_ctx_t *ctx = open_ctx(0);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ctx, i, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, churn, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
        ASSERT_EQ(w[i].bad, 0);
    }
    struct dagger__bufcache_stats s = stats();
    ASSERT_EQ(s.hits + s.misses, THREADS * ROUNDS);
    ASSERT_TRUE(s.hits > 0);
    ASSERT_TRUE(s.held <= 12 * MIB);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(stats().held, 0);
}

TEST_LIST(size_classes_have_eight_steps_per_power_of_two,
          freed_buffer_is_reused_by_a_chunk_of_the_same_size, small_chunks_are_not_cached,
          zeroed_chunk_reads_zero_after_reusing_a_dirty_buffer, zero_cap_disables_the_cache,
          small_cap_frees_the_least_recently_used, bad_value_warns_and_uses_the_default,
          memory_limit_disables_and_empties_the_cache, last_close_frees_every_cached_buffer,
          failed_allocation_gives_the_same_error, many_threads_create_and_free_chunks)
