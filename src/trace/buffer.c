/* src/trace/buffer.c - per-thread, lock-free event buffers and the hooks that fill them.
 *
 * Design: each thread that logs owns one `tbuf` (found through a thread-local pointer) holding a
 * list of fixed-size chunks, and a thread-local cursor (trace.h: the next slot, the limit of its
 * reservation, the recording it belongs to). The hot hooks are inline in trace.h: one test of
 * the cursor, then plain stores of a record of 1 to 5 words (trace.h: a header word, then a
 * stamp, an argument, aux and an id where the event has them) whose header is a release store
 * that publishes it, so a reader (a snapshot taken while recording) sees only whole events: it
 * reads a chunk up to its first zero word (the writer zeroes the word after a record before it
 * publishes it, and a chunk's first when it takes the chunk, so a reused chunk needs no
 * clearing) and no chunk past the last one the recording took (`last_chunk`). A record without
 * a stamp leans on the thread's last stamped record, which the reader has just read.
 * Everything else runs in dagger__trace_put_slow when the cursor hits its limit: attaching a
 * buffer, a new recording, a new chunk, sampling (the limit stays NULL while a sample is
 * being taken, so every event is checked), the spawn count of the sample, the clock without
 * an invariant TSC. A new recording sets every owned buffer's thread's limit to NULL (under
 * g_owner_lock, which a thread's exit takes too), so that its next event comes this way; the
 * fast path tests nothing else (a test of the cursor's recording there cost 3 instructions an
 * event). A change of the sampling shift is seen at the thread's next roll-over (the snapshot
 * thins what was logged before).
 * A recording is a "generation": start bumps g_gen and each thread resets its own buffer the
 * first time it logs in the new generation, reusing its chunks. Memory is bounded by a budget
 * of events per recording: a thread reserves a grant of up to GRANT_MAX events at a time (one
 * atomic operation per grant, none per event); the fast path counts its records (the cursor's
 * `written`) and may write no further than the grant's events left, in words, ahead (a record
 * is one word or more), so the slow path settles the count against the grant a few times per
 * grant; with the budget spent, events are counted as dropped. Records are 8 to 40 bytes: a
 * traced fib task writes 40 (a spawn 16, a start 8, a finish 16), where fixed 32-byte records
 * wrote 96 (bench/RESULTS.md, 2026-12-05 21:30).
 * Sampling keeps whole tasks when a recording has more tasks than its budget can hold: a task
 * is logged only while its hashed id has `shift` leading zero bits (1 task in 2^shift; each
 * sample is a subset of the one before). When the tasks logged at the current shift exceed
 * g_cap_tasks (the budget / 16: room for every event of those tasks and of the ones thinned
 * out, over about 6 halvings), the shift grows by one. The snapshot applies the final shift
 * to what was logged before, so a long trace keeps every event of a uniform sample of its tasks
 * (spawn, start, finish, edges between kept tasks) instead of its first events, which are
 * mostly spawns. Every event left out is counted as dropped.
 * Time stamps: one per task that a worker starts from its loop (its finish), two for a task run
 * inside another's run (its start too: trace.h). A start or a resume on a worker that no run
 * encloses, a spawn inside a task's run on any thread (but one in KEPT_BATCH, which the slow
 * path stamps) and any edge right after its spawn, store the thread's previous stamp (the
 * finish before it) instead of reading the clock; the snapshot puts the n-th such event n ns
 * after that stamp (the thread's order) and a start never before its task was ready
 * (fix_starts). The .dtrace
 * layout does not change: the flag that marks such a start never leaves the live buffers.
 * Buffers of exited threads are adopted by new threads, and freed when the context closes.
 * Trace memory uses libc directly, not dagger__malloc: tracing must not shift the counts that
 * DAGGER_FAULT_ALLOC and the allocation statistics of a program see.
 * Invariants: only the owner writes a tbuf's chunks, pos, cap and arena; `owned` is 1 while a
 * thread owns it, 0 when orphaned, 2 while being trimmed.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "common/common.h"
#include "trace/trace.h"
#include "trace/trace_int.h"

/* A chunk holds 8192 words (64 KiB) of records (trace.h: 1 to 5 words each); a grant of the
 * budget is at most GRANT_MAX events. */
#define CHUNK_WORDS 8192
#define GRANT_MAX 4096
#define REC_MAX DAGGER__TRACE_REC_MAX
#define ARENA_BYTES 16384
#define NAME_MAX_LEN 255
#define MSG_MAX_LEN 1023
#define NAME_CACHE 64

_Atomic int dagger__trace_on;
_Static_assert((int)DAGGER__TRACE_K_SPAWN == (int)DTR_SPAWN &&
                   (int)DAGGER__TRACE_K_EDGE == (int)DTR_EDGE &&
                   (int)DAGGER__TRACE_K_READY == (int)DTR_READY &&
                   (int)DAGGER__TRACE_K_START == (int)DTR_START &&
                   (int)DAGGER__TRACE_K_RESUME == (int)DTR_RESUME &&
                   (int)DAGGER__TRACE_K_BLOCK == (int)DTR_BLOCK &&
                   (int)DAGGER__TRACE_K_FINISH == (int)DTR_FINISH,
               "trace.h kinds match enum dtr_kind");
_Static_assert((int)DAGGER__TRACE_F_STR == (int)DTR_F_STR &&
                   (int)DAGGER__TRACE_F_READY == (int)DTR_F_READY &&
                   (int)DAGGER__TRACE_F_INFER == (int)DTR_F_INFER,
               "trace.h flags match DTR_F_*");
_Static_assert(DTR_KIND_END_ <= 32, "a kind fits the 5 bits of a record's header");
_Static_assert(DTR_F_STR < 8 && DTR_F_READY < 8 && DTR_F_INFER < 8,
               "a live flag fits the 3 bits of a record's header");
DAGGER_TLS struct dagger__trace_cur dagger__trace_tc;

struct chunk {
    _Atomic(struct chunk *) next;
    uint64_t in_slab; /* carved from a slab (freed with it), not from calloc */
    /* Records, each published while its header word is non-zero: the owner zeroes the first
     * word when it takes the chunk, and the word after each record before it publishes it
     * (hence one more). No record crosses CHUNK_WORDS. */
    uint64_t w[CHUNK_WORDS + 1];
};

/* Chunk memory. A page's first write costs a fault, and in a VM a dear one: 11-13 us a 4 KiB
 * page on the 2-core VM of bench/RESULTS.md (2026-12-05 23:10), 110 ns for the 40 bytes of a
 * traced task, so a first recording of fib(28) ran at 2.5x its untraced time where one that
 * reused its chunks read 1.25x. So after its first SLAB_AFTER chunks (from calloc: a thread
 * that logs little keeps little) a thread carves its chunks from slabs of SLAB_BYTES, mapped
 * at that alignment and advised to use huge pages: one fault a slab where the kernel has a huge
 * page at hand (0.35-1.6 us a 4 KiB page there), 4 KiB pages as before where it has none. */
#define SLAB_BYTES ((size_t)2 << 20)
#define SLAB_AFTER 2
struct slab {
    struct slab *next;
    size_t used;
};

struct arena {
    struct arena *next;
    size_t used;
    char data[ARENA_BYTES];
};

struct name_slot {
    uint64_t h;
    const char *copy;
};

struct tbuf {
    _Atomic(struct tbuf *) next_buf; /* global list; immutable once linked */
    _Atomic int owned;
    _Atomic uint32_t gen;               /* generation this buffer holds; 0 = none */
    _Atomic(struct chunk *) head;       /* owner writes, readers follow */
    _Atomic(struct chunk *) last_chunk; /* the recording's current chunk; NULL: none yet */
    _Atomic uint64_t dropped;           /* owner increments, readers sum */
    struct chunk *cur;                  /* owner only */
    /* Owner only: the events of the thread's grant of the budget not yet used, as of the
     * cursor's `written` count `settled` (settle counts the records written since); `mark`, the
     * end of the last record written here (NULL: none in this recording). */
    uint64_t *mark;
    int64_t left;
    uint64_t settled;
    struct arena *arena_head, *arena_cur; /* owner only */
    struct slab *slabs;                   /* owner only: where its later chunks come from */
    unsigned nchunks;                     /* owner only: chunks it holds */
    struct name_slot names[NAME_CACHE];   /* owner only */
    /* The owner's cursor (its thread-local storage), NULL when orphaned; under g_owner_lock. */
    struct dagger__trace_cur *owner_tc;
};

/* The words of a record by its header's low 4 bits (trace.h: one per W_* bit, and the header). */
static const uint8_t rec_words[16] = {1, 2, 2, 3, 2, 3, 3, 4, 2, 3, 3, 4, 3, 4, 4, 5};

/* The published records from `q` (a record's header) up to the first zero header or `end`. */
static uint32_t records_from(const uint64_t *q, const uint64_t *end)
{
    uint32_t n = 0;
    for (uint64_t h; q < end && (h = __atomic_load_n(q, __ATOMIC_ACQUIRE)) != 0; n++)
        q += rec_words[h & 15];
    return n;
}

/* A header's kind, flags and thread (dagger__trace_hdr's fields). */
static inline unsigned hdr_kind(uint64_t h) { return (unsigned)(h >> 4) & 31u; }
static inline unsigned hdr_flags(uint64_t h) { return (unsigned)(h >> 9) & 7u; }
static inline int hdr_thread(uint64_t h) { return (int16_t)(uint16_t)(h >> 12); }

static _Atomic(struct tbuf *) g_bufs;
static _Atomic uint32_t g_gen;
static _Atomic int64_t g_budget; /* events still allowed in this generation */
static _Atomic uint64_t g_lost;  /* events lost without a buffer (allocation failed) */
/* Sampling: keep tasks whose hashed id has this many leading 0s. Read by every event, so it
 * gets a cache line of its own (g_budget and g_kept beside it are written). */
static _Alignas(64) _Atomic uint32_t g_shift;
static char g_shift_pad_[64 - sizeof(uint32_t)] __attribute__((unused));
static _Atomic int64_t g_total;     /* the budget of the recording (workers may read it early) */
static _Atomic int64_t g_cap_tasks; /* tasks the sample may hold before it is halved */
static _Atomic int64_t g_kept;      /* tasks logged at the current shift (batched per thread) */
#define KEPT_BATCH 64
static DAGGER_TLS struct tbuf *tls_buf;
static pthread_key_t g_key;
/* Guards tbuf.owner_tc: a new recording writes the owners' limits, a thread exits. */
static pthread_mutex_t g_owner_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static inline int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Time stamps. Where the CPU has an invariant TSC, events store raw TSC ticks (a third of the
 * cost of clock_gettime in a VM) and the snapshot converts them to CLOCK_MONOTONIC ns with a
 * rate measured once; elsewhere they store CLOCK_MONOTONIC ns directly. */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
static _Atomic int g_tsc;     /* set once, before the first recording turns tracing on */
static int64_t g_tsc0, g_ns0; /* calibration point */
static double g_ns_per_tick;
static pthread_once_t g_clock_once = PTHREAD_ONCE_INIT;

static void clock_init(void)
{
    unsigned a, b, c, d;
    if (getenv("DAGGER_TRACE_CLOCK") && !strcmp(getenv("DAGGER_TRACE_CLOCK"), "monotonic"))
        return;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u)
        return;
    __get_cpuid(0x80000007u, &a, &b, &c, &d);
    if (!(d & (1u << 8))) /* invariant TSC: constant rate, synchronised across cores */
        return;
    int64_t n0 = now_ns(), t0 = (int64_t)__rdtsc(), n1, t1;
    do {
        n1 = now_ns();
        t1 = (int64_t)__rdtsc();
    } while (n1 - n0 < 2000000); /* 2 ms, once per process */
    if (t1 <= t0)
        return;
    g_ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
    g_tsc0 = t1;
    g_ns0 = n1;
    atomic_store_explicit(&g_tsc, 1, memory_order_release);
}

/* Out of line, so that the hot path that inlines stamp() keeps no call in it. */
static __attribute__((noinline, cold)) int64_t now_ns_cold(void) { return now_ns(); }

static inline int64_t stamp(void)
{
    return __builtin_expect(atomic_load_explicit(&g_tsc, memory_order_acquire), 1)
               ? (int64_t)__rdtsc()
               : now_ns_cold();
}

/* Whether the inline fast path may stamp events (it reads the TSC). */
static inline int has_fast_clock(void)
{
    return atomic_load_explicit(&g_tsc, memory_order_relaxed);
}

int64_t dagger__trace_to_ns(int64_t raw)
{
    return atomic_load_explicit(&g_tsc, memory_order_acquire)
               ? g_ns0 + (int64_t)((double)(raw - g_tsc0) * g_ns_per_tick)
               : raw;
}
#else
static pthread_once_t g_clock_once = PTHREAD_ONCE_INIT;
static void clock_init(void) {}
static inline int64_t stamp(void) { return now_ns(); }
static inline int has_fast_clock(void) { return 0; }
int64_t dagger__trace_to_ns(int64_t raw) { return raw; }
#endif

int64_t dagger__trace_now(void)
{
    pthread_once(&g_clock_once, clock_init);
    return stamp();
}

static void on_thread_exit(void *p)
{
    struct tbuf *b = p;
    pthread_mutex_lock(&g_owner_lock); /* its cursor goes with the thread */
    b->owner_tc = NULL;
    pthread_mutex_unlock(&g_owner_lock);
    atomic_store_explicit(&b->owned, 0, memory_order_release);
}

static void make_key(void) { (void)pthread_key_create(&g_key, on_thread_exit); }

/* Owner only: the buffer (and the thread's cursor) start recording `gen`. */
static void reset_buf(struct tbuf *b, uint32_t gen)
{
    atomic_store_explicit(&b->last_chunk, NULL, memory_order_relaxed);
    for (struct arena *a = b->arena_head; a; a = a->next)
        a->used = 0;
    b->arena_cur = b->arena_head;
    memset(b->names, 0, sizeof b->names);
    b->cur = NULL;
    b->mark = NULL;
    b->left = 0;
    struct dagger__trace_cur *tc = &dagger__trace_tc;
    b->settled = tc->written;
    tc->pos = NULL;
    atomic_store_explicit(&tc->lim, NULL, memory_order_relaxed);
    tc->last = 0;
    tc->follow = 0;
    tc->spawns_left = KEPT_BATCH;
    atomic_store_explicit(&b->dropped, 0, memory_order_relaxed);
    atomic_store_explicit(&b->gen, gen, memory_order_release);
}

static struct tbuf *attach(uint32_t gen)
{
    struct tbuf *b = tls_buf;
    if (!b) {
        pthread_once(&g_key_once, make_key);
        for (struct tbuf *o = atomic_load_explicit(&g_bufs, memory_order_acquire); o;
             o = atomic_load_explicit(&o->next_buf, memory_order_relaxed)) {
            int zero = 0;
            if (atomic_load_explicit(&o->owned, memory_order_relaxed) == 0 &&
                atomic_compare_exchange_strong_explicit(&o->owned, &zero, 1, memory_order_acquire,
                                                        memory_order_relaxed)) {
                b = o;
                break;
            }
        }
        if (!b) {
            b = calloc(1, sizeof *b);
            if (!b) {
                atomic_fetch_add_explicit(&g_lost, 1, memory_order_relaxed);
                return NULL;
            }
            atomic_store_explicit(&b->owned, 1, memory_order_relaxed);
            struct tbuf *h = atomic_load_explicit(&g_bufs, memory_order_relaxed);
            do
                atomic_store_explicit(&b->next_buf, h, memory_order_relaxed);
            while (!atomic_compare_exchange_weak_explicit(&g_bufs, &h, b, memory_order_release,
                                                          memory_order_relaxed));
        }
        tls_buf = b;
        int keyed = pthread_setspecific(g_key, b) == 0;
        /* An adopted buffer of this generation keeps its events (the snapshot reads them
         * all); new ones go to a fresh chunk, and its stamps were another thread's. */
        struct dagger__trace_cur *tc = &dagger__trace_tc;
        tc->pos = NULL;
        atomic_store_explicit(&tc->lim, NULL, memory_order_relaxed);
        tc->last = 0;
        tc->follow = 0;
        tc->spawns_left = KEPT_BATCH;
        if (b->mark) { /* the grant stays, less what the last owner's fast path used */
            b->left -= records_from(b->mark, b->cur->w + CHUNK_WORDS);
            b->mark = NULL;
        }
        b->settled = tc->written;
        /* Without its exit hook (the key not set) the cursor is not listed, and put() keeps
         * its limit NULL: every event takes the slow path, which checks the recording. */
        pthread_mutex_lock(&g_owner_lock);
        b->owner_tc = keyed ? tc : NULL;
        pthread_mutex_unlock(&g_owner_lock);
    }
    if (atomic_load_explicit(&b->gen, memory_order_relaxed) != gen)
        reset_buf(b, gen);
    return b;
}

static void drop(struct tbuf *b)
{
    atomic_store_explicit(&b->dropped, atomic_load_explicit(&b->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* An event left out by sampling: counted as dropped (in the thread's buffer of this recording,
 * else as lost), and the next start takes its own stamp instead of leaning on an event that was
 * not logged. */
static void left_out(void)
{
    struct tbuf *b = tls_buf;
    dagger__trace_tc.last = 0;
    if (b && atomic_load_explicit(&b->gen, memory_order_relaxed) ==
                 atomic_load_explicit(&g_gen, memory_order_relaxed))
        drop(b);
    else
        atomic_fetch_add_explicit(&g_lost, 1, memory_order_relaxed);
}

/* Whether task `id` is left out at sampling shift `sh` (events without a task are kept). */
static inline int sampled_out_at(uint64_t id, uint32_t sh)
{
    return sh && id && ((id * 0x9E3779B97F4A7C15ull) >> (64 - sh)) != 0;
}

static inline int sampled_out(uint64_t id)
{
    uint32_t sh = atomic_load_explicit(&g_shift, memory_order_relaxed);
    if (__builtin_expect(!sh, 1))
        return 0;
    if (!sampled_out_at(id, sh))
        return 0;
    left_out();
    return 1;
}

/* A thread logged KEPT_BATCH more spawns: halve the sample when it holds too many tasks. */
static void note_kept(void)
{
    int64_t k = atomic_fetch_add_explicit(&g_kept, KEPT_BATCH, memory_order_relaxed) + KEPT_BATCH;
    if (k <= atomic_load_explicit(&g_cap_tasks, memory_order_relaxed))
        return;
    uint32_t sh = atomic_load_explicit(&g_shift, memory_order_relaxed);
    if (sh < 40 && atomic_compare_exchange_strong_explicit(
                       &g_shift, &sh, sh + 1, memory_order_relaxed, memory_order_relaxed))
        atomic_fetch_sub_explicit(&g_kept, k / 2, memory_order_relaxed); /* about half stay */
}

static int64_t reserve(int64_t want)
{
    int64_t left = atomic_load_explicit(&g_budget, memory_order_relaxed);
    while (left > 0) {
        int64_t take = left < want ? left : want;
        if (atomic_compare_exchange_weak_explicit(&g_budget, &left, left - take,
                                                  memory_order_relaxed, memory_order_relaxed))
            return take;
    }
    return 0;
}

/* A new grant of the budget for the calling thread; 0 when it is spent. */
static int grant(struct tbuf *b)
{
    /* Small budgets are reserved in small grants, so that sampling steps in before one
     * thread's grant has taken the whole budget. */
    int64_t total = atomic_load_explicit(&g_total, memory_order_relaxed);
    int64_t want = total / 64 < 16 ? 16 : total / 64 > GRANT_MAX ? GRANT_MAX : total / 64;
    int64_t got = reserve(want);
    b->left += got;
    return got != 0;
}

#if defined(__linux__) && defined(MADV_HUGEPAGE)
/* A slab of SLAB_BYTES at that alignment (a mapping of twice the size, trimmed), or NULL. */
static struct slab *slab_new(void)
{
    char *raw =
        mmap(NULL, 2 * SLAB_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *at = (char *)(((uintptr_t)raw + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1));
    if (at > raw)
        munmap(raw, (size_t)(at - raw));
    munmap(at + SLAB_BYTES, (size_t)(raw + 2 * SLAB_BYTES - (at + SLAB_BYTES)));
    (void)madvise(at, SLAB_BYTES, MADV_HUGEPAGE); /* advice: 4 KiB pages where refused */
    struct slab *sl = (struct slab *)(void *)at;  /* fresh mapping: zeroed */
    sl->used = 64;
    return sl;
}
#endif

/* A zeroed chunk for the owner of `b`, or NULL. */
static struct chunk *chunk_new(struct tbuf *b)
{
    struct chunk *c = NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (b->nchunks >= SLAB_AFTER) {
        struct slab *sl = b->slabs;
        if (!sl || sl->used + sizeof *c > SLAB_BYTES) {
            if ((sl = slab_new())) {
                sl->next = b->slabs;
                b->slabs = sl;
            }
        }
        if (sl && sl->used + sizeof *c <= SLAB_BYTES) {
            c = (struct chunk *)(void *)((char *)sl + sl->used);
            sl->used += sizeof *c;
            c->in_slab = 1;
        }
    }
#endif
    if (!c)
        c = calloc(1, sizeof *c);
    if (c)
        b->nchunks++;
    return c;
}

/* Move to the next chunk (reused or new); 0 when out of memory. */
static int next_chunk(struct tbuf *b)
{
    struct chunk *c = b->cur ? atomic_load_explicit(&b->cur->next, memory_order_relaxed)
                             : atomic_load_explicit(&b->head, memory_order_relaxed);
    if (!c) {
        c = chunk_new(b);
        if (!c)
            return 0;
        if (b->cur)
            atomic_store_explicit(&b->cur->next, c, memory_order_release);
        else
            atomic_store_explicit(&b->head, c, memory_order_release);
    } else { /* a reused chunk: its old records end at its first word */
        __atomic_store_n(&c->w[0], 0, __ATOMIC_RELAXED);
    }
    atomic_store_explicit(&b->last_chunk, c, memory_order_release);
    b->cur = c;
    dagger__trace_tc.pos = c->w;
    b->mark = c->w;
    return 1;
}

/* Count the records written since the last settle against the thread's grant. */
static inline void settle(struct tbuf *b)
{
    struct dagger__trace_cur *tc = &dagger__trace_tc;
    b->left -= (int64_t)(tc->written - b->settled);
    b->settled = tc->written;
}

/* The calling thread's buffer with room for one record at the cursor and an event of its grant
 * left, or NULL (counted as dropped). */
static struct tbuf *slot(void)
{
    uint32_t gen = atomic_load_explicit(&g_gen, memory_order_relaxed);
    struct tbuf *b = tls_buf;
    if (!b || atomic_load_explicit(&b->gen, memory_order_relaxed) != gen) {
        b = attach(gen);
        if (!b)
            return NULL;
    }
    settle(b);
    struct dagger__trace_cur *tc = &dagger__trace_tc;
    if ((b->left <= 0 && !grant(b)) ||
        ((!tc->pos || !b->mark || tc->pos + REC_MAX > b->cur->w + CHUNK_WORDS) && !next_chunk(b))) {
        drop(b);
        return NULL;
    }
    return b;
}

/* The slow path's writer (the fast path, dagger__trace_put in trace.h, writes the same layout
 * with its length known where it is inlined). Write one record at p (room for
 * DAGGER__TRACE_REC_MAX words and one more): `hdr` as
 * dagger__trace_hdr makes it (with DAGGER__TRACE_F_INFER when `stamped` is 0), the stamp `ts`
 * when `stamped`. The word after it is zeroed (a reader stops there), then a release store of
 * the header publishes it. Returns the next record's place. */
static uint64_t *write_rec(uint64_t *p, uint64_t hdr, int stamped, int64_t ts, uint64_t id,
                           uint64_t arg, int32_t aux)
{
    unsigned n = 1;
    if (stamped) {
        p[n++] = (uint64_t)ts;
        hdr |= DAGGER__TRACE_W_TS;
    }
    if (arg) {
        p[n++] = arg;
        hdr |= DAGGER__TRACE_W_ARG;
    }
    if (aux) {
        p[n++] = (uint32_t)aux;
        hdr |= DAGGER__TRACE_W_AUX;
    }
    if (__builtin_expect(id >> DAGGER__TRACE_ID_BITS == 0, 1)) {
        hdr |= id << (64 - DAGGER__TRACE_ID_BITS);
    } else {
        p[n++] = id;
        hdr |= DAGGER__TRACE_W_ID;
    }
    __atomic_store_n(&p[n], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p[0], hdr, __ATOMIC_RELEASE);
    return p + n;
}

/* Write the next event at the cursor (slot() found room), then set the limit of the fast
 * path: where the grant or the chunk may end (each record is one word or more, so the grant's
 * events left, in words, bound the records the fast path may write), or NULL while sampling
 * (every event must be checked) or without an invariant TSC (the fast path reads it). */
static void put(struct tbuf *b, unsigned kind, int thread, uint64_t id, uint64_t arg, int32_t aux,
                unsigned flags, int may_infer)
{
    struct dagger__trace_cur *tc = &dagger__trace_tc;
    int stamped = !dagger__trace_leans(tc, tc->last, thread, id, may_infer);
    if (stamped)
        tc->last = stamp();
    else
        flags |= DTR_F_INFER;
    tc->pos = write_rec(tc->pos, dagger__trace_hdr(kind & 31, thread, flags & 7), stamped, tc->last,
                        id, arg, aux);
    b->mark = tc->pos;
    b->left--;
    if (atomic_load_explicit(&g_shift, memory_order_relaxed) || !has_fast_clock() || !b->owner_tc) {
        atomic_store_explicit(&tc->lim, NULL, memory_order_relaxed);
        return;
    }
    uint64_t *lim = b->cur->w + CHUNK_WORDS - (REC_MAX - 1);
    if (b->left < lim - tc->pos)
        lim = tc->pos + (b->left > 0 ? b->left : 0);
    /* A recording that began since slot() read g_gen set the limit to NULL before or after
     * this store: after, it stays; before, the load below sees the new generation (both sides
     * seq_cst: the store of the limit, then the load of g_gen here; the store of g_gen, then
     * the limit's in dagger__trace_buf_begin). */
    atomic_store_explicit(&tc->lim, lim, memory_order_seq_cst);
    if (atomic_load_explicit(&g_gen, memory_order_seq_cst) !=
        atomic_load_explicit(&b->gen, memory_order_relaxed))
        atomic_store_explicit(&tc->lim, NULL, memory_order_relaxed);
}

/* A spawn settles the sample's task count every KEPT_BATCH spawns. */
static void count_spawn(void)
{
    struct dagger__trace_cur *tc = &dagger__trace_tc;
    if (tc->spawns_left == 0) {
        note_kept();
        tc->spawns_left = KEPT_BATCH;
    }
    tc->spawns_left--;
}

/* While sampling, the scheduler's events, which have no task to be sampled with (a steal, a
 * park and its wake), are thinned as the tasks are: one in 2^shift per thread, a wake with its
 * park. Unthinned, a worker that parks and steals often filled a bounded trace's budget and the
 * runs of the kept tasks were dropped. */
static int sched_sampled_out(unsigned kind)
{
    uint32_t sh = atomic_load_explicit(&g_shift, memory_order_relaxed);
    struct dagger__trace_cur *tc = &dagger__trace_tc;
    int out;
    if (kind == DTR_WAKE)
        out = tc->park_out;
    else
        out = sh && (tc->sched_n++ & ((1u << (sh < 31 ? sh : 31)) - 1)) != 0;
    if (kind != DTR_STEAL)
        tc->park_out = kind == DTR_PARK && out;
    if (out)
        left_out(); /* a thinned steal's stamp is not there for the next start to lean on */
    return out;
}

void dagger__trace_put_slow(uint64_t hdr, uint64_t id, uint64_t arg, int32_t aux, int may_infer)
{
    unsigned kind = hdr_kind(hdr), flags = hdr_flags(hdr);
    int thread = hdr_thread(hdr);
    if (sampled_out(id))
        return;
    if ((kind == DTR_STEAL || kind == DTR_PARK || kind == DTR_WAKE) && id == 0 &&
        sched_sampled_out(kind))
        return;
    struct tbuf *b = slot();
    if (!b)
        return;
    if (kind == DTR_SPAWN) {
        count_spawn();
        may_infer = 0; /* a spawn in 64 (KEPT_BATCH) stamps: a long loop of spawns stays timed */
    }
    put(b, kind, thread, id, arg, aux, flags, may_infer);
}

static inline void emit(uint8_t kind, int thread, uint64_t id, uint64_t arg, int32_t aux)
{
    dagger__trace_put(kind, thread, id, arg, aux, 0, 0, 0);
}

/* Copy `s` (at most `max` bytes) into the owner's arena; NULL when memory runs out. */
static const char *arena_copy(struct tbuf *b, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n + 1 > ARENA_BYTES)
        n = ARENA_BYTES - 1;
    struct arena *a = b->arena_cur;
    while (a && a->used + n + 1 > ARENA_BYTES) {
        a = a->next;
        if (a)
            a->used = 0;
    }
    if (!a) {
        a = malloc(sizeof *a);
        if (!a)
            return NULL;
        a->next = NULL;
        a->used = 0;
        if (b->arena_cur)
            b->arena_cur->next = a;
        else
            b->arena_head = a;
    }
    b->arena_cur = a;
    char *d = a->data + a->used;
    memcpy(d, s, n);
    d[n] = '\0';
    a->used += n + 1;
    return d;
}

/* An event with a string argument: a name (copied unless static) or an error message. */
void dagger__trace_put_str(unsigned kind, int thread, uint64_t id, const char *s, int is_static,
                           size_t max, unsigned flags)
{
    if (sampled_out(id))
        return;
    struct tbuf *b = slot();
    if (!b)
        return;
    if (kind == DTR_SPAWN)
        count_spawn();
    const char *p = s;
    if (s && !is_static) {
        /* Names repeat (one function, many tasks): a small content-keyed cache avoids copying
         * the same bytes again and again. */
        uint64_t h = 1469598103934665603ull;
        size_t i = 0;
        for (; s[i] && i < max; i++)
            h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
        struct name_slot *ns = &b->names[h % NAME_CACHE];
        if (ns->copy && ns->h == h && strncmp(ns->copy, s, max) == 0 && ns->copy[i] == '\0') {
            p = ns->copy;
        } else {
            p = arena_copy(b, s, max);
            if (p) {
                ns->h = h;
                ns->copy = p;
            }
        }
    }
    put(b, kind, thread, id, (uint64_t)(uintptr_t)p, 0, (p ? DTR_F_STR : 0) | flags, 0);
}

/* ---------------------------------------------------------------- hooks (trace.h) */

void dagger__trace_steal(int thief, int victim, uint64_t id)
{
    emit(DTR_STEAL, thief, id, 0, victim);
}
void dagger__trace_move(uint64_t chunk, int from, int to, uint64_t bytes, int thread)
{
    emit(DTR_MOVE, thread, chunk, bytes, (from & 0xff) | (to & 0xff) << 8);
}
void dagger__trace_device(int track, int op, uint64_t id, uint64_t bytes)
{
    emit(DTR_DEVICE, -1, id, bytes, (int32_t)(track << 8 | (op & 0xff)));
}
void dagger__trace_rank(int op, int peer, uint64_t id, uint64_t bytes)
{
    emit(DTR_RANK, -1, id, bytes, (int32_t)((peer & 0xffff) | op << 16));
}
void dagger__trace_park(int thread) { emit(DTR_PARK, thread, 0, 0, 0); }
void dagger__trace_wake(int thread) { emit(DTR_WAKE, thread, 0, 0, 0); }
void dagger__trace_idle(void) { dagger__trace_tc.last = 0; }
void dagger__trace_error(uint64_t id, const char *msg)
{
    dagger__trace_put_str(DTR_ERROR, -1, id, msg ? msg : "", 0, MSG_MAX_LEN, 0);
}

/* ---------------------------------------------------------------- generations */

/* Begin a new recording with room for `max_events`; returns its generation. */
uint32_t dagger__trace_buf_begin(uint64_t max_events)
{
    pthread_once(&g_clock_once, clock_init);
    atomic_store_explicit(&g_budget, (int64_t)(max_events > INT64_MAX ? INT64_MAX : max_events),
                          memory_order_relaxed);
    atomic_store_explicit(&g_lost, 0, memory_order_relaxed);
    int64_t total = max_events > INT64_MAX ? INT64_MAX : (int64_t)max_events;
    atomic_store_explicit(&g_total, total, memory_order_relaxed);
    atomic_store_explicit(&g_cap_tasks, total / 16 > KEPT_BATCH ? total / 16 : KEPT_BATCH,
                          memory_order_relaxed);
    atomic_store_explicit(&g_kept, 0, memory_order_relaxed);
    atomic_store_explicit(&g_shift, 0, memory_order_relaxed);
    uint32_t g = atomic_load_explicit(&g_gen, memory_order_relaxed) + 1;
    if (g == 0)
        g = 1;
    atomic_store_explicit(&g_gen, g, memory_order_seq_cst);
    /* Every thread's next event takes the slow path, which moves it to this recording. */
    pthread_mutex_lock(&g_owner_lock);
    for (struct tbuf *b = atomic_load_explicit(&g_bufs, memory_order_acquire); b;
         b = atomic_load_explicit(&b->next_buf, memory_order_relaxed))
        if (b->owner_tc)
            atomic_store_explicit(&b->owner_tc->lim, NULL, memory_order_seq_cst);
    pthread_mutex_unlock(&g_owner_lock);
    return g;
}

/* Events logged before the sample reached its final size that it no longer holds. */
/* The next chunk of `b`'s recording after `c` (NULL: the first), NULL after its last one. */
static struct chunk *chunk_next(struct tbuf *b, struct chunk *c)
{
    struct chunk *last = atomic_load_explicit(&b->last_chunk, memory_order_acquire);
    if (!last || c == last)
        return NULL;
    return c ? atomic_load_explicit(&c->next, memory_order_acquire)
             : atomic_load_explicit(&b->head, memory_order_acquire);
}

/* The record at word *i of chunk `c` as a struct dtr_ev (ts: its raw stamp, or 0 when it
 * leans on its thread's previous one), *i moved past it; 0 when it is not published. */
static int chunk_ev(struct chunk *c, uint32_t *i, struct dtr_ev *e)
{
    uint64_t h = __atomic_load_n(&c->w[*i], __ATOMIC_ACQUIRE);
    if (!h)
        return 0;
    const uint64_t *q = &c->w[*i + 1];
    e->ts = h & DAGGER__TRACE_W_TS ? (int64_t)*q++ : 0;
    e->arg = h & DAGGER__TRACE_W_ARG ? *q++ : 0;
    e->aux = h & DAGGER__TRACE_W_AUX ? (int32_t)(uint32_t)*q++ : 0;
    e->id = h & DAGGER__TRACE_W_ID ? *q++ : h >> (64 - DAGGER__TRACE_ID_BITS);
    e->kind = (uint8_t)hdr_kind(h);
    e->flags = (uint8_t)hdr_flags(h);
    e->thread = (int16_t)hdr_thread(h);
    *i = (uint32_t)(q - c->w);
    return 1;
}

static uint64_t count_thinned(struct tbuf *b, uint32_t sh)
{
    uint64_t k = 0;
    struct dtr_ev e;
    for (struct chunk *c = chunk_next(b, NULL); c; c = chunk_next(b, c))
        for (uint32_t i = 0; i < CHUNK_WORDS && chunk_ev(c, &i, &e);)
            k += sampled_out_at(e.id, sh) || (e.kind == DTR_EDGE && sampled_out_at(e.arg, sh));
    return k;
}

/* Dropped events: over the budget, sampled out when logged, or thinned out afterwards. */
uint64_t dagger__trace_buf_dropped(uint32_t gen)
{
    uint64_t d = atomic_load_explicit(&g_lost, memory_order_relaxed);
    uint32_t sh = atomic_load_explicit(&g_shift, memory_order_relaxed);
    for (struct tbuf *b = atomic_load_explicit(&g_bufs, memory_order_acquire); b;
         b = atomic_load_explicit(&b->next_buf, memory_order_relaxed))
        if (atomic_load_explicit(&b->gen, memory_order_acquire) == gen) {
            d += atomic_load_explicit(&b->dropped, memory_order_relaxed);
            if (sh)
                d += count_thinned(b, sh);
        }
    return d;
}

/* Free the memory of buffers whose threads have exited. */
void dagger__trace_buf_trim(void)
{
    for (struct tbuf *b = atomic_load_explicit(&g_bufs, memory_order_acquire); b;
         b = atomic_load_explicit(&b->next_buf, memory_order_relaxed)) {
        int zero = 0;
        if (!atomic_compare_exchange_strong_explicit(&b->owned, &zero, 2, memory_order_acquire,
                                                     memory_order_relaxed))
            continue;
        struct chunk *c = atomic_load_explicit(&b->head, memory_order_relaxed);
        while (c) {
            struct chunk *n = atomic_load_explicit(&c->next, memory_order_relaxed);
            if (!c->in_slab)
                free(c);
            c = n;
        }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        for (struct slab *sl = b->slabs, *n; sl; sl = n) {
            n = sl->next;
            munmap(sl, SLAB_BYTES);
        }
#endif
        b->slabs = NULL;
        b->nchunks = 0;
        struct arena *a = b->arena_head;
        while (a) {
            struct arena *n = a->next;
            free(a);
            a = n;
        }
        atomic_store_explicit(&b->head, NULL, memory_order_relaxed);
        atomic_store_explicit(&b->last_chunk, NULL, memory_order_relaxed);
        b->arena_head = b->arena_cur = NULL;
        b->cur = NULL;
        b->mark = NULL;
        b->left = 0;
        atomic_store_explicit(&b->gen, 0, memory_order_relaxed);
        atomic_store_explicit(&b->owned, 0, memory_order_release);
    }
}

/* ---------------------------------------------------------------- snapshot */

struct strmap {
    const char **key; /* pointers seen in events */
    uint32_t *val;
    size_t cap, n;
};

static int strmap_put(struct strmap *m, struct dtr_snap *s, const char *p, uint32_t *out)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 256;
        const char **nk = calloc(nc, sizeof *nk);
        uint32_t *nv = calloc(nc, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return DAGGER_ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i]) {
                size_t j = ((uintptr_t)m->key[i] >> 3) * 11400714819323198485ull % nc;
                while (nk[j])
                    j = (j + 1) % nc;
                nk[j] = m->key[i];
                nv[j] = m->val[i];
            }
        free(m->key);
        free(m->val);
        m->key = nk;
        m->val = nv;
        m->cap = nc;
    }
    size_t j = ((uintptr_t)p >> 3) * 11400714819323198485ull % m->cap;
    while (m->key[j]) {
        if (m->key[j] == p) {
            *out = m->val[j];
            return 0;
        }
        j = (j + 1) % m->cap;
    }
    if ((s->nstr & (s->nstr - 1)) == 0) {
        char **ns = realloc(s->str, (s->nstr ? s->nstr * 2 : 16) * sizeof *ns);
        if (!ns)
            return DAGGER_ENOMEM;
        s->str = ns;
    }
    char *d = strdup(p);
    if (!d)
        return DAGGER_ENOMEM;
    s->str[s->nstr] = d;
    m->key[j] = p;
    m->val[j] = (uint32_t)s->nstr;
    m->n++;
    *out = (uint32_t)s->nstr++;
    return 0;
}

static char **g_dedupe_str; /* qsort has no context argument; used under the api lock */
static int stridx_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int c = strcmp(g_dedupe_str[x], g_dedupe_str[y]);
    return c ? c : (x > y) - (x < y);
}

/* Equal texts copied by several threads (or cached apart) become one string. */
static int dedupe_strings(struct dtr_snap *s)
{
    if (s->nstr < 2)
        return 0;
    uint32_t *order = malloc(s->nstr * sizeof *order);
    uint32_t *remap = malloc(s->nstr * sizeof *remap);
    if (!order || !remap) {
        free(order);
        free(remap);
        return DAGGER_ENOMEM;
    }
    for (size_t i = 0; i < s->nstr; i++)
        order[i] = (uint32_t)i;
    g_dedupe_str = s->str;
    if (s->nstr > 1)
        qsort(order, s->nstr, sizeof *order, stridx_cmp);
    for (size_t i = 0; i < s->nstr; i++)
        remap[order[i]] = i && strcmp(s->str[order[i]], s->str[order[i - 1]]) == 0
                              ? remap[order[i - 1]]
                              : order[i];
    /* Free the duplicates, then compact the canonical strings in their original order. */
    uint32_t *newidx = order; /* order is no longer needed */
    size_t k = 0;
    for (size_t i = 0; i < s->nstr; i++) {
        if (remap[i] != i) {
            free(s->str[i]);
            s->str[i] = NULL;
        }
    }
    for (size_t i = 0; i < s->nstr; i++)
        if (remap[i] == i) {
            newidx[i] = (uint32_t)k;
            s->str[k++] = s->str[i];
        }
    for (size_t i = 0; i < s->nev; i++)
        if (s->ev[i].flags & DTR_F_STR)
            s->ev[i].arg = newidx[remap[s->ev[i].arg]];
    free(order);
    free(remap);
    s->nstr = k;
    return 0;
}

static int ev_cmp(const void *a, const void *b)
{
    const struct dtr_ev *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    /* A total order, so that a trace and its .dtrace give byte-identical outputs. */
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->thread != y->thread)
        return x->thread < y->thread ? -1 : 1;
    if (x->arg != y->arg)
        return x->arg < y->arg ? -1 : 1;
    return (x->aux > y->aux) - (x->aux < y->aux);
}

void dagger__trace_snap_sort(struct dtr_snap *s)
{
    if (s->nev > 1) /* qsort's array must not be NULL, even when empty */
        qsort(s->ev, s->nev, sizeof *s->ev, ev_cmp);
}

/* Copy every published event of generation `gen` into `s` (ev, str, dropped). */
/* Starts and resumes without a stamp of their own (DTR_F_INFER) sit n ns after their thread's
 * previous stamp (dagger__trace_buf_collect); one that would fall before its task was ready (the
 * spawn or the ready event of another thread landed in between) moves to that time. Clears the
 * flag of every inferred event (spawns and edges keep their time). */
static int fix_starts(struct dtr_snap *s)
{
    size_t ninf = 0;
    for (size_t i = 0; i < s->nev; i++)
        ninf += (s->ev[i].flags & DTR_F_INFER) != 0;
    if (!ninf)
        return 0;
    size_t cap = 64;
    while (cap < ninf * 2)
        cap *= 2;
    uint64_t *key = calloc(cap, sizeof *key); /* task ids of inferred starts (0 = empty) */
    int64_t *rdy = malloc(cap * sizeof *rdy); /* their first spawn-ready or ready time */
    if (!key || !rdy) {
        free(key);
        free(rdy);
        return DAGGER_ENOMEM;
    }
#define SLOT_OF(id) (size_t)(((id)*0x9E3779B97F4A7C15ull) >> 17) & (cap - 1)
#define IS_RUN(kind) ((kind) == DTR_START || (kind) == DTR_RESUME)
    for (size_t i = 0; i < s->nev; i++) {
        const struct dtr_ev *e = &s->ev[i];
        if (!(e->flags & DTR_F_INFER) || !e->id || !IS_RUN(e->kind))
            continue;
        size_t j = SLOT_OF(e->id);
        while (key[j] && key[j] != e->id)
            j = (j + 1) & (cap - 1);
        key[j] = e->id;
        rdy[j] = INT64_MAX;
    }
    for (size_t i = 0; i < s->nev; i++) {
        const struct dtr_ev *e = &s->ev[i];
        if (e->kind != DTR_READY && !(e->kind == DTR_SPAWN && (e->flags & DTR_F_READY)))
            continue;
        size_t j = SLOT_OF(e->id);
        while (key[j] && key[j] != e->id)
            j = (j + 1) & (cap - 1);
        if (key[j] && e->ts < rdy[j]) /* the first: a streaming task is ready again and again */
            rdy[j] = e->ts;
    }
    for (size_t i = 0; i < s->nev; i++) {
        struct dtr_ev *e = &s->ev[i];
        if (!(e->flags & DTR_F_INFER))
            continue;
        e->flags &= (uint8_t)~DTR_F_INFER;
        if (!e->id || !IS_RUN(e->kind))
            continue;
        size_t j = SLOT_OF(e->id);
        while (key[j] != e->id)
            j = (j + 1) & (cap - 1);
        if (rdy[j] != INT64_MAX && rdy[j] > e->ts)
            e->ts = rdy[j];
    }
#undef SLOT_OF
#undef IS_RUN
    free(key);
    free(rdy);
    return 0;
}

int dagger__trace_buf_collect(uint32_t gen, struct dtr_snap *s)
{
    size_t cap = 0;
    struct strmap map = {0};
    int rc = 0;
    uint32_t sh = atomic_load_explicit(&g_shift, memory_order_relaxed);
    uint64_t thinned = 0; /* logged before the sample reached its final size */
    for (struct tbuf *b = atomic_load_explicit(&g_bufs, memory_order_acquire); b && !rc;
         b = atomic_load_explicit(&b->next_buf, memory_order_relaxed)) {
        if (atomic_load_explicit(&b->gen, memory_order_acquire) != gen)
            continue;
        /* The buffer's last stamp in ns, and the events inferred since (each 1 ns later). A
         * stamp that would fall at or before the event before it (a loop of events that lean on
         * an older stamp ran faster than 1 ns each: the trace test's loop of spawns on a 5 GHz
         * core) moves 1 ns after it, so that a thread's events keep its order. */
        int64_t base = dagger__trace_to_ns(0);
        int64_t after = 0;
        int64_t prev = INT64_MIN; /* the buffer's previous event, in ns */
        for (struct chunk *c = chunk_next(b, NULL); c && !rc; c = chunk_next(b, c)) {
            uint32_t n = records_from(c->w, c->w + CHUNK_WORDS);
            struct dtr_ev e;
            if (s->nev + n > cap) {
                size_t nc = cap ? cap * 2 : 4096;
                while (nc < s->nev + n)
                    nc *= 2;
                struct dtr_ev *ne = realloc(s->ev, nc * sizeof *ne);
                if (!ne) {
                    rc = DAGGER_ENOMEM;
                    break;
                }
                s->ev = ne;
                cap = nc;
            }
            uint32_t i = 0;
            for (uint32_t k = 0; k < n && chunk_ev(c, &i, &e); k++) {
                if (e.flags & DTR_F_INFER) {
                    after++;
                    e.ts = base + after;
                } else {
                    after = 0;
                    e.ts = dagger__trace_to_ns(e.ts);
                    if (e.ts <= prev)
                        e.ts = prev + 1;
                    base = e.ts;
                }
                prev = e.ts;
                if (sampled_out_at(e.id, sh) || (e.kind == DTR_EDGE && sampled_out_at(e.arg, sh))) {
                    thinned++;
                    continue;
                }
                if (e.flags & DTR_F_STR) {
                    uint32_t idx;
                    rc = strmap_put(&map, s, (const char *)(uintptr_t)e.arg, &idx);
                    if (rc)
                        break;
                    e.arg = idx;
                } else if (e.kind == DTR_SPAWN || e.kind == DTR_ERROR) {
                    e.arg = DTR_NOSTR;
                }
                s->ev[s->nev++] = e;
            }
        }
    }
    free(map.key);
    free(map.val);
    s->dropped = dagger__trace_buf_dropped(gen); /* includes the `thinned` events */
    (void)thinned;
    if (!rc)
        rc = fix_starts(s);
    if (!rc)
        rc = dedupe_strings(s);
    if (!rc)
        dagger__trace_snap_sort(s);
    return rc;
}

void dagger__trace_snap_free(struct dtr_snap *s)
{
    for (size_t i = 0; i < s->nstr; i++)
        free(s->str[i]);
    free(s->str);
    free(s->ev);
    free(s->topo);
    free(s->lane_rank);
    free(s->lane_thread);
    memset(s, 0, sizeof *s);
}

int dagger__trace_snap_copy(struct dtr_snap *dst, const struct dtr_snap *src)
{
    *dst = *src;
    dst->ev = NULL;
    dst->str = NULL;
    dst->nstr = 0;
    dst->topo = NULL;
    dst->lane_rank = dst->lane_thread = NULL;
    size_t nl = src->nranks > 0 && src->lane_rank ? (size_t)src->nthreads : 0;
    if ((src->nev && !(dst->ev = malloc(src->nev * sizeof *dst->ev))) ||
        (src->nstr && !(dst->str = calloc(src->nstr, sizeof *dst->str))) ||
        (src->topo && !(dst->topo = strdup(src->topo))) ||
        (nl && (!(dst->lane_rank = malloc(nl * sizeof(int))) ||
                !(dst->lane_thread = malloc(nl * sizeof(int))))))
        goto oom;
    if (src->nev)
        memcpy(dst->ev, src->ev, src->nev * sizeof *dst->ev);
    if (nl) {
        memcpy(dst->lane_rank, src->lane_rank, nl * sizeof(int));
        memcpy(dst->lane_thread, src->lane_thread, nl * sizeof(int));
    }
    for (; dst->nstr < src->nstr; dst->nstr++)
        if (!(dst->str[dst->nstr] = strdup(src->str[dst->nstr])))
            goto oom;
    return 0;
oom:
    dagger__trace_snap_free(dst);
    return DAGGER_ENOMEM;
}
