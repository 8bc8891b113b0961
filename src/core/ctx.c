/* src/core/ctx.c - contexts: options, the worker pool, draining and closing; the version.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"
#include "pool/pool.h"
#include "io/io.h"
#include "mem/mem.h"
#include "sched/sched.h"
#include "trace/trace.h"

/* ---------------------------------------------------------------- counters */

void dagger__ctx_global_zero(dagger_ctx_t *ctx, int which)
{
    if (which == CNT_INFLIGHT) {
        /* Nothing more when nobody drains: a thread that waits one task at a time brings the
         * count to 0 at each task. The count's read-modify-write that reached 0 and this read
         * are seq_cst, as the drainer's count of itself and its read of the count (close):
         * either it sees 0, or this sees it and bumps the word it sleeps on. (A bump and a
         * fence at every crossing were 2 locked operations of each round trip from main.) */
        if (atomic_load_explicit(&ctx->drainers, memory_order_seq_cst) > 0) {
            atomic_fetch_add_explicit(&ctx->drain_word, 1, memory_order_release);
            dagger__futex_wake(&ctx->drain_word, INT_MAX);
        }
    } else if (which == CNT_LIVE && atomic_load(&ctx->zombie)) {
        dagger__ctx_reap(ctx); /* the last record of a force-closed context */
    }
}

void dagger__ctx_count(dagger_ctx_t *ctx, int which, int64_t delta)
{
    dagger__ctx_count_w(ctx, dagger__pool_self(ctx->pool), which, delta);
}

void dagger__ctx_count_idle(dagger_ctx_t *ctx, int worker)
{
    /* Records first: once the in-flight count reads 0, close may read the record count. */
    for (int which = CNT_LIVE; which >= CNT_INFLIGHT; which--) {
        int64_t *c = &ctx->credit[worker].n[which];
        if (*c) {
            int64_t give = *c;
            *c = 0;
            dagger__ctx_global_add(ctx, which, -give);
        }
    }
}

DAGGER_TLS struct dagger__acct_tls dagger__acct_tls;

int dagger__ctx_account_claim(dagger_ctx_t *ctx)
{
    uint64_t gen = atomic_load_explicit(&ctx->acct_gen, memory_order_relaxed);
    if (gen == ACCT_CLOSED) /* force-closed: every release counts on the global count */
        return -1;
    /* The thread's account from an earlier visit (it used another context since), else a new
     * one; none left: the global count, remembered until the thread uses another context. */
    uintptr_t me = (uintptr_t)&dagger__acct_tls;
    int a = -1, n = atomic_load_explicit(&ctx->acct_claims, memory_order_acquire);
    for (int i = 0; i < n && a < 0; i++)
        if (atomic_load_explicit(&ctx->acct[i].owner, memory_order_relaxed) == me)
            a = i;
    while (a < 0 && n < DAGGER__CTX_ACCOUNTS) {
        if (atomic_compare_exchange_weak_explicit(&ctx->acct_claims, &n, n + 1,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            atomic_store_explicit(&ctx->acct[n].owner, me, memory_order_relaxed);
            a = n;
        }
    }
    dagger__acct_tls.gen = gen;
    dagger__acct_tls.idx = a;
    return a;
}

/* The credits that the accounts hold (close: their owners are done with the context). */
static int64_t account_credits(dagger_ctx_t *ctx)
{
    int64_t sum = 0;
    int n = atomic_load_explicit(&ctx->acct_claims, memory_order_acquire);
    for (int i = 0; i < n; i++)
        sum += atomic_load_explicit(&ctx->acct[i].live, memory_order_relaxed);
    return sum;
}

#define STR2(x) #x
#define STR(x) STR2(x)

const char *dagger_version(void)
{
    return STR(DAGGER_VERSION_MAJOR) "." STR(DAGGER_VERSION_MINOR) "." STR(DAGGER_VERSION_PATCH);
}

int dagger_version_number(void)
{
    return DAGGER_VERSION_MAJOR * 10000 + DAGGER_VERSION_MINOR * 100 + DAGGER_VERSION_PATCH;
}

void dagger_opts_init(dagger_opts_t *o) { memset(o, 0, sizeof *o); }

static _Atomic uint64_t ctx_gen = 1;

/* How long a worker that ran dry keeps looking for work, yielding its core, before it parks
 * (DAGGER_SPIN_US overrides it). A parked worker takes 60-80 us to run again on a virtual machine
 * (a futex wake-up of an idle CPU), and so does a thread outside the pool asleep on a result:
 * the next loop of an iterative program usually comes within a millisecond. libgomp spins about
 * as long (GOMP_SPINCOUNT), Intel's OpenMP 200 ms (KMP_BLOCKTIME). */
#define IDLE_SPIN_US 1000

/* Parse a positive integer environment variable; 0 when unset. */
static int env_long(const char *name, long lo, long hi, long *out)
{
    const char *s = getenv(name);
    *out = 0;
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10), mul = 1;
    bool ok = end != s && errno == 0;
    if (*end == 'k' || *end == 'K') {
        mul = 1024;
        end++;
    } else if (*end == 'm' || *end == 'M') {
        mul = 1024 * 1024;
        end++;
    }
    /* A huge value times the suffix was a signed overflow (UB) before the range check. */
    if (__builtin_mul_overflow(v, mul, &v))
        ok = false;
    DAGGER_CHECK(ok && *end == '\0' && v >= lo && v <= hi, DAGGER_EINVAL,
                 "%s='%s' is invalid: expected an integer within %ld..%ld", name, s, lo, hi);
    *out = v;
    return 0;
}

void dagger__ctx_ext_release(dagger_ctx_t *ctx)
{
    int c = dagger__pool_ext_counter(ctx->pool);
    if (c >= 0)
        dagger__ctx_count_idle(ctx, c);
    dagger__pool_ext_release(ctx->pool);
}

static void pool_idle(void *ud, int worker) { dagger__ctx_count_idle(ud, worker); }

/* ---------------------------------------------------------------- ranks */

/* The ranks backend compiled in, if any: referenced here so that a static libdagger links it. */
#ifdef DAGGER_HAVE_MPI
extern const struct dagger__ranks_ops dagger__mpi_ranks_ops; /* src/net/mpi */
static const struct dagger__ranks_ops *_Atomic ranks_ops = &dagger__mpi_ranks_ops;
#else
static const struct dagger__ranks_ops *_Atomic ranks_ops;
#endif

void dagger__ranks_register(const struct dagger__ranks_ops *ops) { atomic_store(&ranks_ops, ops); }

void dagger__ctx_set_ranks(dagger_ctx_t *ctx, int rank, int nranks, void *state,
                           void (*submit)(void *ud, struct dagger__job *j, const dagger_proc_t *p))
{
    ctx->rank = rank;
    ctx->nranks = nranks;
    ctx->ranks = state;
    ctx->wait_spin_ns = 0;    /* the other ranks' processes may need the free core */
    ctx->wait_yields = false; /* a yield hands the core to spinning progress threads */
    dagger__pool_set_idle_spin(ctx->pool, 0);
    ctx->exec[DAGGER__EXEC_REMOTE] = (dagger__executor){"rank", submit, state, NULL};
}

void *dagger__ctx_ranks(const dagger_ctx_t *ctx) { return ctx->ranks; }
unsigned dagger__ctx_open_flags(const dagger_ctx_t *ctx) { return ctx->open_flags; }
const struct dagger__ranks_ops *dagger__ranks_get(void) { return atomic_load(&ranks_ops); }

void dagger__ctx_set_ranks_place(dagger_ctx_t *ctx,
                                 int (*place)(void *ud, const struct dagger__place *r,
                                              struct dagger__job *j, const dagger_proc_t *p,
                                              const struct dagger__executor *execs, char *why,
                                              size_t cap))
{
    ctx->exec[DAGGER__EXEC_REMOTE].place = place;
}

void dagger__ctx_set_ranks_early(dagger_ctx_t *ctx,
                                 bool (*early)(void *ud, dagger_task_t *t, void **rec),
                                 void (*early_ready)(void *ud, dagger_task_t *t, void *rec,
                                                     bool failed))
{
    ctx->early = early;
    ctx->early_ready = early_ready;
}

int dagger__ctx_idle_workers(const dagger_ctx_t *ctx) { return dagger__pool_sleepers(ctx->pool); }
int dagger__ctx_nthreads(const dagger_ctx_t *ctx) { return ctx->nthreads; }
void dagger__ctx_linger(dagger_ctx_t *ctx, uint64_t ns)
{
    dagger__pool_linger(ctx->pool, dagger__now_ns() + ns);
}

int64_t dagger__ctx_inflight(dagger_ctx_t *ctx)
{
    return atomic_load_explicit(&ctx->count[CNT_INFLIGHT], memory_order_acquire);
}

int dagger_ctx_rank(const dagger_ctx_t *ctx) { return ctx ? ctx->rank : 0; }
int dagger_ctx_nranks(const dagger_ctx_t *ctx) { return ctx ? ctx->nranks : 1; }

int dagger_ctx_open(dagger_ctx_t **out, const dagger_opts_t *opts)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_ctx_open: out is NULL");
    *out = NULL;
    dagger_opts_t o;
    if (opts)
        o = *opts;
    else
        dagger_opts_init(&o);
    DAGGER_CHECK(o.num_threads >= 0 && o.num_threads <= DAGGER__MAX_THREADS, DAGGER_EINVAL,
                 "dagger_ctx_open: num_threads %d is out of range 0..%d", o.num_threads,
                 DAGGER__MAX_THREADS);
    DAGGER_CHECK((o.flags & ~(unsigned)DAGGER_OPEN_SPMD) == 0, DAGGER_EINVAL,
                 "dagger_ctx_open: unknown flags 0x%x", o.flags & ~(unsigned)DAGGER_OPEN_SPMD);
    long v;
    if (o.num_threads == 0) {
        int rc = env_long("DAGGER_NUM_THREADS", 1, DAGGER__MAX_THREADS, &v);
        if (rc)
            return rc;
        o.num_threads = (int)v;
    }
    if (o.num_threads == 0) {
        int n = dagger__topo_default_threads(); /* affinity mask and cgroup quota */
        o.num_threads = n > DAGGER__MAX_THREADS ? DAGGER__MAX_THREADS : n;
    }
    int bind;
    int brc = dagger__topo_bind_mode(&bind);
    if (!brc)
        brc = dagger__trace_env_check(); /* a bad DAGGER_TRACE is reported now, not at close */
    if (!brc)
        brc = dagger__topo_blas_default(); /* BLAS inside tasks runs on the task's thread */
    if (brc)
        return brc;
    if (o.stack_size == 0) {
        int rc = env_long("DAGGER_STACK_SIZE", 16 * 1024, 1L << 30, &v);
        if (rc)
            return rc;
        o.stack_size = (size_t)v;
    }
    if (o.stack_size == 0) {
#if defined(DAGGER_ASAN) || defined(DAGGER_TSAN)
        o.stack_size = 1024 * 1024; /* sanitizers grow frames */
#else
        o.stack_size = 256 * 1024;
#endif
    }
    long spin_us = IDLE_SPIN_US;
    const char *spin_env = getenv("DAGGER_SPIN_US"); /* 0 is a value here, not "unset" */
    if (spin_env && *spin_env) {
        int rc = env_long("DAGGER_SPIN_US", 0, 1000000, &spin_us);
        if (rc)
            return rc;
    }
    DAGGER_CHECK(o.stack_size >= 16 * 1024, DAGGER_EINVAL,
                 "dagger_ctx_open: stack_size %zu is below the 16 KiB minimum", o.stack_size);
    dagger__alloc_freeze();
    dagger_ctx_t *ctx = dagger__calloc(1, sizeof *ctx);
    DAGGER_CHECK(ctx, DAGGER_ENOMEM, "dagger_ctx_open: out of memory");
    ctx->nthreads = o.num_threads;
    ctx->credit = aligned_alloc(
        DAGGER_CACHELINE, sizeof(struct credit) * (size_t)(o.num_threads + DAGGER__POOL_EXT_SLOTS));
    ctx->acct = aligned_alloc(DAGGER_CACHELINE, sizeof(struct account) * DAGGER__CTX_ACCOUNTS);
    if (!ctx->credit || !ctx->acct || !dagger__alloc_note()) {
        free(ctx->credit);
        free(ctx->acct);
        dagger__free(ctx);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_ctx_open: out of memory");
    }
    memset(ctx->credit, 0,
           sizeof(struct credit) * (size_t)(o.num_threads + DAGGER__POOL_EXT_SLOTS));
    memset(ctx->acct, 0, sizeof(struct account) * DAGGER__CTX_ACCOUNTS);
    ctx->gen = atomic_fetch_add(&ctx_gen, 1);
    atomic_init(&ctx->acct_gen, ctx->gen);
    ctx->magic = CTX_MAGIC;
    atomic_init(&ctx->next_id, 1);
    int rc = dagger__pool_open(&ctx->pool, o.num_threads, o.stack_size, dagger__task_run, pool_idle,
                               dagger__group_flush_dry, ctx, bind == DAGGER__BIND_NONE);
    if (rc) {
        free(ctx->credit);
        free(ctx->acct);
        dagger__alloc_note_free();
        dagger__free(ctx);
        return rc == DAGGER_ENOMEM && !dagger_last_errmsg()[0]
                   ? dagger__set_errmsg(rc, "dagger_ctx_open: out of memory")
                   : rc;
    }
    dagger__pool_set_deep(ctx->pool, dagger__task_deep); /* bundles of spawns (task.c) */
    dagger__pool_set_stale(ctx->pool, dagger__task_bundle_stale);
    /* Only where the workers leave a core free (fewer workers than CPUs): there the spin
     * takes no core that a worker or the thread outside the pool needs. With a worker on
     * every core it made a thread outside the pool that runs its own tasks slower (core
     * round trip at t=2 on 2 cores 0.114 us against 0.098, a flat loop 49 ns a task
     * against 44: bench/RESULTS.md, 2026-12-03 16:00 UTC). Cleared when ranks attach. */
    if (o.num_threads < dagger__topo_default_threads()) {
        ctx->wait_spin_ns = (uint64_t)spin_us * 1000;
        dagger__pool_set_idle_spin(ctx->pool, ctx->wait_spin_ns);
    } else {
        ctx->wait_yields = true;
    }
    rc = dagger__topo_bind(ctx->pool, bind);
    if (rc) {
        dagger__pool_close(ctx->pool);
        free(ctx->credit);
        free(ctx->acct);
        dagger__alloc_note_free();
        dagger__free(ctx);
        return rc;
    }
    ctx->exec[DAGGER_PROC_CPU] =
        (dagger__executor){"cpu", dagger__sched_cpu_submit, ctx->pool, NULL};
    dagger__sched_exec_open(ctx->exec);          /* the executors of backends built in (devices) */
    dagger__io_register();                       /* the disk space (files, spill) */
    rc = dagger__mem_res_open(ctx, o.mem_limit); /* out-of-core: the memory limit */
    if (rc) {
        dagger__pool_close(ctx->pool);
        free(ctx->credit);
        free(ctx->acct);
        dagger__alloc_note_free();
        dagger__free(ctx);
        return rc;
    }
    dagger__mem_bufcache_open(); /* after the limit: a limit disables the buffer cache */
    ctx->nranks = 1;
    ctx->open_flags = o.flags;
    dagger__trace_ctx_open(ctx, o.num_threads);
    const struct dagger__ranks_ops *ro = atomic_load(&ranks_ops);
    rc = ro ? ro->open(ctx) : 0;
    if (rc) { /* a server whose driver closed, or no job to join: close what was opened */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dagger_last_errmsg());
        int crc = dagger_ctx_close_ex(ctx, DAGGER_CLOSE_FORCE); /* forced: always 0 */
        (void)crc;
        dagger__set_errmsg_str(rc, msg);
        return rc;
    }
    *out = ctx;
    return 0;
}

int dagger_ctx_num_threads(const dagger_ctx_t *ctx) { return ctx ? ctx->nthreads : 0; }
int dagger__ctx_threads(const dagger_ctx_t *ctx) { return ctx->nthreads; }

int64_t dagger_ctx_unfetched_failures(const dagger_ctx_t *ctx)
{
    return ctx ? atomic_load_explicit(&ctx->unfetched, memory_order_acquire) : 0;
}

/* Failures nobody looked at are usually bugs: say so at close, unless DAGGER_QUIET=1. */
static void warn_unfetched(dagger_ctx_t *ctx)
{
    int64_t n = dagger_ctx_unfetched_failures(ctx);
    const char *quiet = getenv("DAGGER_QUIET");
    if (n <= 0 || (quiet && strcmp(quiet, "1") == 0))
        return;
    fprintf(stderr,
            "dagger: warning: %lld task%s failed and nobody fetched the error (fetch the tasks, "
            "or read dagger_task_error; DAGGER_QUIET=1 silences this)\n",
            (long long)n, n == 1 ? "" : "s");
}

int dagger_ctx_close_ex(dagger_ctx_t *ctx, unsigned flags)
{
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_ctx_close: the context is NULL");
    DAGGER_CHECK((flags & ~(unsigned)DAGGER_CLOSE_FORCE) == 0, DAGGER_EINVAL,
                 "dagger_ctx_close: unknown flags 0x%x", flags);
    dagger_task_t *me = dagger__task_current();
    DAGGER_CHECK(!me || me->ctx != ctx, DAGGER_EDEADLK,
                 "dagger_ctx_close: called from inside task %llu of this context",
                 (unsigned long long)me->id);
    /* A block left open on this thread would hold its tasks forever: refuse instead of hanging. */
    for (struct frame *f = *dagger__queue_frames_slot(); f; f = f->up)
        DAGGER_CHECK(f->ctx != ctx, DAGGER_ESTATE,
                     "dagger_ctx_close: a task-queue block (sync group, bulk, sequential) of this "
                     "context is still open on this thread; end it with dagger_queue_end first");
    if (ctx->ranks) /* the driver: until no rank has work left */
        atomic_load(&ranks_ops)->quiesce(ctx);
    /* Drain: every spawned task finishes (the timed wait only guards against a lost wake). */
    atomic_fetch_add_explicit(&ctx->drainers, 1, memory_order_seq_cst);
    while (atomic_load_explicit(&ctx->count[CNT_INFLIGHT], memory_order_seq_cst) > 0) {
        uint32_t w = atomic_load_explicit(&ctx->drain_word, memory_order_acquire);
        if (atomic_load_explicit(&ctx->count[CNT_INFLIGHT], memory_order_seq_cst) == 0)
            break;
        dagger__futex_wait(&ctx->drain_word, w, 10 * 1000 * 1000);
    }
    atomic_fetch_sub_explicit(&ctx->drainers, 1, memory_order_relaxed);
    int64_t live =
        atomic_load_explicit(&ctx->count[CNT_LIVE], memory_order_acquire) - account_credits(ctx);
    if (live > 0 && !(flags & DAGGER_CLOSE_FORCE)) {
#ifndef NDEBUG
        fprintf(stderr, "dagger: dagger_ctx_close: %lld task handle%s still held\n",
                (long long)live, live == 1 ? " is" : "s are");
#endif
        dagger__trace_ctx_busy(ctx); /* the trace file is written even though close refuses */
        return dagger__set_errmsg(DAGGER_EBUSY,
                                  "dagger_ctx_close: %lld task handle%s still held; release "
                                  "them, or close with DAGGER_CLOSE_FORCE",
                                  (long long)live, live == 1 ? " is" : "s are");
    }
    warn_unfetched(ctx);
    dagger__sched_exec_close(ctx->exec);
    if (ctx->ranks) /* drained: the progress thread stops while the pool still runs */
        atomic_load(&ranks_ops)->close(ctx);
    dagger__pool_close(ctx->pool);
    dagger__mem_res_close(ctx);
    dagger__mem_bufcache_close(); /* the last context frees the cached buffers */
    dagger__trace_ctx_close(ctx); /* after the workers stopped: their last events are in */
    ctx->magic = CTX_CLOSED;
    if (live > 0) {
        /* Forced with handles still held: their records point at this context, so it lives
         * until the last one is released (every release now counts on the global count). */
        for (int i = 0; i < ctx->nthreads + DAGGER__POOL_EXT_SLOTS; i++)
            dagger__ctx_count_idle(ctx, i);
        atomic_store_explicit(&ctx->acct_gen, ACCT_CLOSED, memory_order_relaxed);
        for (int i = 0; i < DAGGER__CTX_ACCOUNTS; i++) {
            int64_t give = atomic_exchange_explicit(&ctx->acct[i].live, 0, memory_order_relaxed);
            if (give)
                dagger__ctx_global_add(ctx, CNT_LIVE, -give);
        }
        ctx->pool = NULL; /* releases from any thread now count on the global count */
        atomic_store(&ctx->zombie, 1);
        if (atomic_load(&ctx->count[CNT_LIVE]) > 0)
            return 0;
    }
    dagger__ctx_reap(ctx);
    return 0;
}

#ifndef NDEBUG
/* Debug builds keep the last closed contexts (marked CTX_CLOSED) instead of freeing them, so
 * that a spawn on one is caught with a message rather than reading freed memory. */
#define CTX_GRAVES 16
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static dagger_ctx_t *graves[CTX_GRAVES]; /* guarded by grave_lock */
static unsigned grave_next;              /* guarded by grave_lock */
#endif

void dagger__ctx_reap(dagger_ctx_t *ctx)
{
    if (atomic_exchange(&ctx->reaped, 1))
        return;
    free(ctx->credit);
    ctx->credit = NULL;
    free(ctx->acct);
    ctx->acct = NULL;
    dagger__alloc_note_free();
#ifndef NDEBUG
    pthread_mutex_lock(&grave_lock);
    dagger_ctx_t *old = graves[grave_next % CTX_GRAVES];
    graves[grave_next++ % CTX_GRAVES] = ctx;
    pthread_mutex_unlock(&grave_lock);
    if (old)
        dagger__free(old);
#else
    dagger__free(ctx);
#endif
}

int dagger_ctx_close(dagger_ctx_t *ctx) { return dagger_ctx_close_ex(ctx, 0); }
