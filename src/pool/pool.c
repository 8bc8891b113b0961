/* src/pool/pool.c - worker threads: deques, stealing, parking, mailboxes, suspension.
 *
 * Design: each worker owns a Chase-Lev deque; a job submitted from a worker goes to its own
 * deque, one from a thread outside the pool that opened a sync group to the external slot it
 * holds meanwhile (a deque of its own, which it pops at the group's end and thieves take from in
 * batches), one from any other thread to the injection queue. Idle workers look in order at
 * their mailbox (jobs pinned to them), the priority queue, their deque, the injection queue,
 * then steal from the other workers (half of a deep deque at once) and the slots starting at a
 * random one; after a short spin (a few rounds of `pause`, then `sched_yield`, so that a thread
 * with work to do on this core, such as an MPI progress thread, is not kept off it) they park on
 * an event count. Every job runs on a fiber: when a job suspends, the worker continues the loop
 * on a fresh fiber, and whoever resumes the job switches to the job's fiber and recycles the one
 * it was on. Jobs with occupancy < 1 run on aux threads (created on demand) whose summed occupancy
 * stays within the worker count, so they never take a worker.
 * Invariants: a parked worker rechecked every queue after announcing itself as a sleeper,
 * and a submitter checks for sleepers after publishing (both seq_cst), so no wake-up is lost.
 * Where Linux allows it, the store-load fence of a deque push is asymmetric: the parking worker
 * makes every running thread of the process execute one (membarrier) between its announcement
 * and its recheck, and a push has only the compiler's order (see notify and park_barrier).
 * Wake-ups are rationed (the "spinning threads" rule): a submitter wakes nobody while a worker
 * is searching (it stopped searching only after the seq_cst decrement, and rechecks the
 * queues after it), and only one wake-up is in flight at a time (`waking`, cleared by whoever
 * leaves or enters the futex wait, so it cannot stay set while a worker sleeps). A searcher
 * or a woken worker that finds work and sees more passes the wake-up on. While a ranks backend
 * expects work soon (dagger__pool_linger: a reply or the next task from another rank is due),
 * a worker that runs dry keeps searching, yielding the core, until that deadline instead of
 * parking: the job then arrives without a futex call on either side. Where the workers leave a
 * core free, one idle worker keeps searching for the idle spin (1 ms) before it parks, looking
 * every few yields, and half as often each time a job injected from outside was gone by its next
 * look (the poster ran it itself: its loop's lines are then pulled less), back to every few
 * yields once it takes work.
 * Lock order: the aux lock, the heap lock, the injection lock and the mailbox locks are never
 * held together; the fiber lock is a leaf.
 * SPDX-License-Identifier: MIT
 */
#include "pool/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common/alloc.h"
#include "common/common.h"
#include "pool/deque.h"
#include "pool/fiber.h"
#include "trace/trace.h"

#define SPIN_ROUNDS 64
#define SPIN_PAUSE_ROUNDS 8
#define LINGER_LOOK_EVERY 4
#define LINGER_LOOK_EVERY_MAX 32
#define INJECT_BATCH 16
#define AUX_MAX 256
/* Deques for threads outside the pool that open a sync group (dagger__pool_ext_claim). */
#define EXT_SLOTS DAGGER__POOL_EXT_SLOTS
#define WS_SEEN 64
#define EXT_INITIAL_CAP 1024
/* A thief takes up to this many jobs from a slot at once (dq_steal_half; <= DQ_HALF_MAX). */
#define EXT_STEAL_MAX 32
_Static_assert(EXT_STEAL_MAX <= DQ_HALF_MAX,
               "dq_pop is safe against half steals of at most DQ_HALF_MAX");

/* A FIFO of jobs: many producers push wait-free (an exchange), one consumer at a time pops
 * (Vyukov's intrusive MPSC queue; a try-lock elects the consumer where several may pop). */
struct jobq {
    _Atomic(struct dagger__job *) tail; /* producers: exchange */
    char pad0[DAGGER_CACHELINE - sizeof(void *)];
    _Atomic(struct dagger__job *) head; /* the consumer only; read by others as a hint */
    _Atomic int busy;                   /* consumer try-lock */
    struct dagger__job stub;
    char pad1[DAGGER_CACHELINE];
};

/* A victim's top as a thief first saw it while holding back (src: "Holding back" below). */
struct held {
    int v;          /* the victim, -1: none */
    int64_t top;    /* its deque's top then */
    uint64_t ns;    /* when (0: never) */
    int64_t bottom; /* its bottom then (per_job_worth) */
    bool kp;        /* a slot: its owner kept its spawns at the last look (ext_worth) */
};

/* What steals judged by their work per job brought (owner only; see "Holding back" below): from
 * other workers, or from slots whose owner runs its spawns itself past the deep mark. */
struct holdback {
    uint64_t t0;       /* when the last such steal was taken (0: none since the deque ran dry) */
    uint64_t work_ns;  /* the mean work a job of those steals brought */
    uint64_t age_ns;   /* how long a victim's top must stay put before it is taken from */
    uint64_t held_ns;  /* holding back since (0: not since the last such steal) */
    uint64_t worth_ns; /* a job that brings less does not pay (WS_WORTH_NS, KP_WORTH_NS) */
    uint32_t jobs;     /* how many jobs the last such steal took */
    bool aged;         /* that steal was made past age_ns while holding back */
    /* Judged per task run as well (ext, kp), not per job alone (ws): a steal pays when a job
     * brought big_ns, or min_ns and worth_ns a task run since (holdback_paid). */
    bool per_task;
    uint64_t task_ns; /* the mean work a task run since those steals brought */
    uint64_t runs0;   /* the thread's task count at the last such steal */
    uint64_t min_ns, big_ns;
};

struct worker {
    struct dagger__deque dq;
    struct jobq mailbox;
    dagger__pool *pool;
    int index;
    int first_cpu; /* where the worker starts (dagger__topo_spread), then where it did; -1: any */
    uint64_t rng;
    struct dagger__fiber *cur;   /* the fiber this worker runs on now */
    struct dagger__fiber native; /* the thread's own stack: entry and exit only */
    struct dagger__fiber *spare; /* one recycled fiber kept at hand */
    void (*after_fn)(void *);    /* to run by whoever arrives after a switch */
    void *after_arg;
    pthread_t thread;
    _Atomic int owned;   /* an external slot: 1 while a thread holds it (dagger__pool_ext_claim) */
    unsigned look_every; /* the idle spin's yields per look (owner only; see find_work_idle) */
    /* What steals brought (owner only; see "Holding back" below): from slots of threads outside
     * the pool (ext: a steal counts as one job), from other workers (ws) and from slots whose
     * owner keeps its spawns (kp); the victims' tops seen while holding back, per slot and per
     * worker (by index modulo WS_SEEN). */
    struct holdback ext, ws, kp;
    struct held ext_seen[EXT_SLOTS];
    struct held ws_seen[WS_SEEN];
    /* The bundles of this worker's spawns taken so far (dagger__pool_bundle_taken): written by
     * the threads that take them, a line of its own. */
    _Atomic uint32_t bundles_taken __attribute__((aligned(DAGGER_CACHELINE)));
    /* Its open bundle as thieves see it (dagger__pool_bundle_slot), a line of its own. */
    struct dagger__bundle_slot bslot __attribute__((aligned(DAGGER_CACHELINE)));
} __attribute__((aligned(DAGGER_CACHELINE)));

struct dagger__pool {
    int n;
    /* The deep mark of an external slot: 64 jobs a worker, from 256 to DAGGER__POOL_DEEP.
     * Past it the slot's owner runs its further plain spawns itself (submit_slot) and the
     * workers judge the slot by the work per job of their steals (ext_worth). At 1024 on 2
     * cores, a worker that began to steal while main was still filling its slot could keep pace
     * with main's spawns (each of its steals slowed main: the records crossed between the cores
     * twice), main never reached the mark, and the worker ran nearly all of a 1e6-task flat loop
     * from main at 100-110 ns a task instead of main alone at 30 (3 processes in 10, in a noisy
     * phase; none in 10 at 256: bench/RESULTS.md, 2026-12-05 14:15). */
    int slot_deep;
    _Atomic bool asym; /* asymmetric fences: membarrier on the park path, none on a push */
    struct worker *w;
    dagger__run_fn run;
    dagger__idle_fn idle;
    dagger__dry_fn dry;
    dagger__deep_fn deep;           /* dagger__pool_set_deep */
    _Atomic dagger__stale_fn stale; /* dagger__pool_set_stale: the workers may run already */
    void *ud;
    size_t stack_size;
    struct jobq inject;
    /* priority queue: a binary max-heap on (prio, -seq) */
    pthread_mutex_t heap_lock;
    struct dagger__job **heap; /* guarded by heap_lock */
    size_t heap_n, heap_cap;   /* guarded by heap_lock */
    uint32_t heap_seq;         /* guarded by heap_lock */
    _Atomic int64_t heap_count;
    _Atomic int32_t heap_top; /* priority of the heap's top, valid when heap_count > 0 */
    /* parking */
    _Atomic uint32_t epoch __attribute__((aligned(DAGGER_CACHELINE)));
    _Atomic int32_t sleepers;
    _Atomic int shutdown;
    /* Written each time a worker runs dry: a line of their own, read by submitters only while
     * somebody sleeps (sleepers above is read first, and written only at a park). */
    _Atomic int32_t searching
        __attribute__((aligned(DAGGER_CACHELINE))); /* spinning in find_work */
    _Atomic int32_t waking; /* 1: a wake-up was sent and its worker has not run yet */
    /* dagger__pool_linger: until this (ns), a worker that runs dry yields instead of parking.
     * A line of its own: a ranks backend writes it on each message, workers read it. */
    _Atomic uint64_t linger_until __attribute__((aligned(DAGGER_CACHELINE)));
    /* dagger__pool_set_idle_spin: how long a worker that ran dry keeps searching, yielding the
     * core, before it parks (ns). */
    _Atomic uint64_t idle_spin_ns;
    _Atomic int lingerer; /* 1 while a worker lingers for the idle spin */
    /* dagger__pool_ext_spin: 1 + the CPU a thread outside the pool spins on for a result, 0
     * none. A line of its own: written at each such wait, read by a worker that runs dry. */
    _Atomic int ext_spin_cpu __attribute__((aligned(DAGGER_CACHELINE)));
    /* recycled fibers */
    pthread_mutex_t fiber_lock;
    struct dagger__fiber *fibers; /* guarded by fiber_lock */
    /* aux threads for occupancy < 1 */
    pthread_mutex_t aux_lock;
    pthread_cond_t aux_cond;
    struct dagger__job *aux_head, *aux_tail; /* guarded by aux_lock */
    double aux_load;                         /* guarded by aux_lock: summed occupancy running */
    int aux_threads, aux_idle;               /* guarded by aux_lock */
    pthread_t aux_tid[AUX_MAX];              /* guarded by aux_lock */
    /* External slots: a deque each for a thread outside the pool that opened a sync group; its
     * spawns go there, workers steal from it, and the thread runs its group's tasks from it at
     * the group's end. Only the dq and owned fields are used. */
    struct worker *ext;
    _Atomic int ext_hw; /* slots claimed at least once: thieves look at ext[0 .. ext_hw) */
    uint64_t gen;       /* unique per pool opened: a thread's slot is of this pool, not of a
                           pool opened at the same address after this one closed */
    /* Bundles open on any worker (dagger__pool_bundles_open), a line of its own. */
    _Atomic uint32_t bundles_open __attribute__((aligned(DAGGER_CACHELINE)));
};

/* ---------------------------------------------------------------- thread-local identity */

static DAGGER_TLS struct worker *tls_worker;

/* The external slot the calling thread holds, if any (dagger__pool_ext_claim). */
static DAGGER_TLS struct {
    dagger__pool *pool;
    uint64_t gen;
    struct worker *slot;
    int depth; /* nested sync groups */
} tls_ext;
static _Atomic uint64_t pool_gen;
DAGGER_TLS struct dagger__ext_self dagger__ext_tls = {NULL, -1};

static void ext_tls_clear(void)
{
    memset(&tls_ext, 0, sizeof tls_ext);
    dagger__ext_tls.pool = NULL;
    dagger__ext_tls.counter = -1;
}

/* Out of line on purpose: a job may resume on another thread after a switch, and the
 * compiler must not reuse a thread-local address computed before it. */
DAGGER_NOINLINE static struct worker *self(void) { return tls_worker; }
DAGGER_NOINLINE static void set_self(struct worker *w)
{
    tls_worker = w;
    dagger__self_tls.pool = w ? w->pool : NULL;
    dagger__self_tls.index = w ? w->index : -1;
}

DAGGER_TLS struct dagger__self dagger__self_tls = {NULL, -1, 0, 0};

DAGGER_NOINLINE int dagger__pool_self_fresh(const dagger__pool *p) { return dagger__pool_self(p); }

bool dagger__pool_can_suspend(const dagger__pool *p)
{
    struct worker *w = self();
    return w && w->pool == p;
}

int dagger__pool_size(const dagger__pool *p) { return p->n; }
int dagger__pool_sleepers(const dagger__pool *p)
{
    return atomic_load_explicit(&p->sleepers, memory_order_relaxed);
}
pthread_t dagger__pool_thread(const dagger__pool *p, int i) { return p->w[i].thread; }

int dagger__pool_first_cpu(const dagger__pool *p, int i) { return p->w[i].first_cpu; }

/* ---------------------------------------------------------------- job queues */

#define NEXT(j) atomic_load_explicit(&(j)->next, memory_order_relaxed)
#define SET_NEXT(j, v) atomic_store_explicit(&(j)->next, (v), memory_order_relaxed)

static void jobq_init(struct jobq *q)
{
    atomic_init(&q->stub.next, NULL);
    atomic_init(&q->tail, &q->stub);
    atomic_init(&q->head, &q->stub);
    atomic_init(&q->busy, 0);
}

/* Any thread, wait-free. The exchange is seq_cst: a submitter that then calls
 * notify_published needs no fence of its own (see notify). */
static void jobq_push(struct jobq *q, struct dagger__job *j)
{
    atomic_store_explicit(&j->next, NULL, memory_order_relaxed);
    struct dagger__job *prev = atomic_exchange_explicit(&q->tail, j, memory_order_seq_cst);
    atomic_store_explicit(&prev->next, j, memory_order_release);
}

/* False only when every completed push has been popped: the queue is empty exactly when head
 * and tail are both the stub (a head that is not the stub is a job not yet taken). */
static bool jobq_nonempty(struct jobq *q)
{
    return atomic_load_explicit(&q->tail, memory_order_seq_cst) != &q->stub ||
           atomic_load_explicit(&q->head, memory_order_relaxed) != &q->stub;
}

/* The consumer only. NULL when empty, or when a producer is between its two steps. */
static struct dagger__job *jobq_pop1(struct jobq *q)
{
    struct dagger__job *head = atomic_load_explicit(&q->head, memory_order_relaxed);
    struct dagger__job *next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (head == &q->stub) {
        if (!next)
            return NULL;
        atomic_store_explicit(&q->head, next, memory_order_relaxed);
        head = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        atomic_store_explicit(&q->head, next, memory_order_relaxed);
        return head;
    }
    if (head != atomic_load_explicit(&q->tail, memory_order_acquire))
        return NULL;
    jobq_push(q, &q->stub);
    next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (next) {
        atomic_store_explicit(&q->head, next, memory_order_relaxed);
        return head;
    }
    return NULL;
}

/* Take up to `max` jobs (any thread; one consumer at a time): the first is returned, the rest
 * linked through ->next. */
static struct dagger__job *jobq_take(struct jobq *q, int max)
{
    if (!jobq_nonempty(q) || atomic_exchange_explicit(&q->busy, 1, memory_order_acquire))
        return NULL;
    struct dagger__job *first = jobq_pop1(q), *last = first;
    for (int n = 1; last && n < max; n++) {
        struct dagger__job *j = jobq_pop1(q);
        if (!j)
            break;
        SET_NEXT(last, j);
        last = j;
    }
    if (last)
        SET_NEXT(last, NULL);
    atomic_store_explicit(&q->busy, 0, memory_order_release);
    return first;
}

/* ---------------------------------------------------------------- priority heap */

static bool heap_before(const struct dagger__job *a, const struct dagger__job *b)
{
    return a->prio > b->prio || (a->prio == b->prio && (int32_t)(a->seq - b->seq) < 0);
}

static int heap_push(dagger__pool *p, struct dagger__job *j)
{
    pthread_mutex_lock(&p->heap_lock);
    if (p->heap_n == p->heap_cap) {
        size_t cap = p->heap_cap ? p->heap_cap * 2 : 64;
        struct dagger__job **h = dagger__realloc(p->heap, cap * sizeof *h);
        if (!h) {
            pthread_mutex_unlock(&p->heap_lock);
            return -1;
        }
        p->heap = h;
        p->heap_cap = cap;
    }
    j->seq = p->heap_seq++;
    size_t i = p->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(j, p->heap[up]))
            break;
        p->heap[i] = p->heap[up];
        i = up;
    }
    p->heap[i] = j;
    atomic_store_explicit(&p->heap_top, p->heap[0]->prio, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->heap_count, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&p->heap_lock);
    return 0;
}

/* Pop the top job if its priority is at least `min_prio`. */
static struct dagger__job *heap_pop(dagger__pool *p, int32_t min_prio)
{
    if (atomic_load_explicit(&p->heap_count, memory_order_relaxed) <= 0 ||
        atomic_load_explicit(&p->heap_top, memory_order_relaxed) < min_prio)
        return NULL;
    pthread_mutex_lock(&p->heap_lock);
    struct dagger__job *top = NULL;
    if (p->heap_n && p->heap[0]->prio >= min_prio) {
        top = p->heap[0];
        struct dagger__job *last = p->heap[--p->heap_n];
        size_t i = 0, n = p->heap_n;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= n)
                break;
            if (c + 1 < n && heap_before(p->heap[c + 1], p->heap[c]))
                c++;
            if (!heap_before(p->heap[c], last))
                break;
            p->heap[i] = p->heap[c];
            i = c;
        }
        if (n)
            p->heap[i] = last;
        if (p->heap_n)
            atomic_store_explicit(&p->heap_top, p->heap[0]->prio, memory_order_relaxed);
        atomic_fetch_sub_explicit(&p->heap_count, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&p->heap_lock);
    return top;
}

/* ---------------------------------------------------------------- parking */

/* all: wake every sleeper (a pinned job's owner, shutdown); otherwise wake one, and none
 * while a worker searches or a wake-up is already on its way. For a job published by a seq_cst
 * read-modify-write (jobq_push): that and the seq_cst loads of sleepers and searching below
 * pair with a parking or searching worker's seq_cst update of them and its seq_cst recheck of
 * the queues, so one side sees the other without a fence (one locked instruction less per
 * spawn from outside the pool). */
/* Somebody sleeps: the rest of notify_published, out of line (a submit saves no registers). */
DAGGER_NOINLINE static void wake_sleepers(dagger__pool *p, int all)
{
    if (!all) {
        if (atomic_load_explicit(&p->searching, memory_order_seq_cst) > 0)
            return;
        int32_t idle = 0;
        if (atomic_load_explicit(&p->waking, memory_order_relaxed) != 0 ||
            !atomic_compare_exchange_strong_explicit(&p->waking, &idle, 1, memory_order_seq_cst,
                                                     memory_order_relaxed))
            return;
    }
    atomic_fetch_add_explicit(&p->epoch, 1, memory_order_seq_cst);
    dagger__futex_wake(&p->epoch, all ? INT_MAX : 1);
}

static inline void notify_published(dagger__pool *p, int all)
{
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0)
        wake_sleepers(p, all);
}

/* The same for a job published by plain stores (a deque push): a store-load fence must order
 * them before the loads of sleepers and searching. With asymmetric fences (p->asym) the parking
 * worker issues it for everybody instead (park_barrier), and the push keeps only the compiler's
 * order: a locked instruction per push drained the pusher's store buffer, full of the new task's
 * cold lines (93 % of dagger__pool_submit_plain's samples at t=2 in perf). */
static inline void notify(dagger__pool *p, int all)
{
    if (DAGGER_LIKELY(atomic_load_explicit(&p->asym, memory_order_relaxed)))
        atomic_signal_fence(memory_order_seq_cst);
    else
        dagger__fence_seq_cst();
    notify_published(p, all);
}

/* The parking side of the asymmetric fence: after a worker announced itself (sleepers, searching)
 * and before it rechecks the queues, every other running thread of the process executes a full
 * barrier (membarrier, private expedited). A pusher interrupted before its load of sleepers reads
 * the announcement; one interrupted after it had drained its push by then, and the recheck sees
 * the job. Either way no wake-up is lost, as with a fence on both sides. */
static void park_barrier(dagger__pool *p)
{
#if defined(__linux__)
    if (atomic_load_explicit(&p->asym, memory_order_relaxed) &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
        /* It cannot fail once registered; should it, pushes take their fence from now on. */
        atomic_store_explicit(&p->asym, false, memory_order_relaxed);
        dagger__fence_seq_cst();
    }
#else
    (void)p;
#endif
}

/* Whether this process may use asymmetric fences: Linux's membarrier with the private expedited
 * command, registered once per process (a container's seccomp filter may refuse it: then the
 * pushes keep their fence). DAGGER_MEMBARRIER=0 refuses it too (the tests run the fence path
 * that way). A child of fork registers again: a registration belongs to an address space. */
static bool asym_available(void)
{
    static _Atomic int state;  /* 0 unknown, 1 yes, -1 no */
    static _Atomic long owner; /* the process that decided it */
    bool ok = false;
#if defined(__linux__)
    long pid = (long)getpid();
    int st = atomic_load_explicit(&state, memory_order_acquire);
    if (st != 0 && atomic_load_explicit(&owner, memory_order_relaxed) == pid)
        return st > 0;
    const char *env = getenv("DAGGER_MEMBARRIER");
    if (!env || strcmp(env, "0") != 0) {
        long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        ok = q >= 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
             syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    }
    atomic_store_explicit(&owner, pid, memory_order_relaxed);
    atomic_store_explicit(&state, ok ? 1 : -1, memory_order_release);
#endif
    return ok;
}

/* Holding back. A thief that takes a job moves its record's lines to its core, and the record's
 * owner takes back the lines of its result and record when it fetches and frees it (and the
 * spawner, when it reuses records the thief freed, the whole record). For jobs of a few hundred
 * ns that costs more than running them where they are: core.nested (140 tasks spawned from main
 * in a sync group) took 12.3 us at t=1 with the worker stealing and 7.9 with main alone; a flat
 * loop of tiny spawns at t=2 ran at 39 ns a task with the other worker stealing, 26.5 at t=1.
 * So each worker keeps a moving mean of the work its steals brought it (from a steal to its next
 * look past its own deque: the job, its batch, and what they made ready or spawned there): for
 * slots of threads outside the pool the work of a steal, in all and per task the thread ran
 * since (the core counts them: the jobs taken, what they made ready, and what ran inline in
 * them), for other workers the work of a job taken
 * (a steal of 32 jobs of a flat loop brings 2-4 us, 60-120 ns a job; one of a 1 us task brings
 * 1-2 us, which pays). A slot's steals pay (holdback_paid) from EXT_WORTH_NS in all and
 * EXT_TASK_WORTH_NS a task, or from EXT_BIG_NS in all (a subtree of tiny tasks). The work in
 * all alone was fooled by the misses a steal itself causes: core.nested at t=1 (main's 20 outer
 * tasks, 6 dependents each) brought the worker 5 us a steal, 170 ns a task, against 30 ns a task
 * on main alone; the mean stayed above the mark in some processes, whose worker then took part
 * in 30-50 % of the runs, each 18-25 us instead of 7 (bench/RESULTS.md, 2026-12-06 03:25).
 * While a steal does not pay by that measure (slots) or the mean is below WS_WORTH_NS
 * (workers), the worker takes a victim's oldest job only once the same top has been there
 * EXT_AGE_NS by its own looks (an owner that runs its jobs, as a group's owner at the group's
 * end or a worker popping down to them, usually takes them first), and its idle looks leave
 * that victim's lines alone meanwhile (each look made the owner's next push wait for them);
 * has_work, before it parks, still looks, so it never sleeps longer than that age while a
 * victim holds work (find_work_idle: a sleep with a timeout, not a park). Toward victims
 * that are workers (not slots), the age doubles (up to WS_AGE_MAX_NS) each time a late steal, of
 * half a deep deque whose bottom did not move either, brought too little per job, and goes back to
 * EXT_AGE_NS at the first steal that pays. Other late steals leave it as it is: a worker that
 * took a batch from a slot (core.empty_ext) pops down to it, and a tree's worker is not deep;
 * held back longer from those, core.empty_ext at t=2 lost 3-7 %. The top of a flat
 * loop's spawner never moves (it runs its new tasks itself past the deep mark), so at a fixed
 * 10 us the other worker took 32 of its tasks every 10-15 us, 6 % of a 1e6-task loop, each a
 * record that came back cold to the spawner (28.3 ns a task against 23.4 at t=1); with the
 * doubling, 0.5 % (26.7 ns; bench/RESULTS.md, 2026-12-05). Steals
 * that bring more put it back to stealing at once; the means start above the mark. A slot that
 * holds EXT_BACKLOG jobs or more is taken from at once: its owner is busy making them (core.tree
 * spawns 2^18 tasks from main while the worker runs them: held back, it lost 22 %), unless that
 * owner runs its further spawns itself, past the deep mark (the slot's `keeps`, set at its first
 * such spawn since it claimed the slot). Such a slot is a flat loop's spawner, as a worker at its
 * deep mark is, and is judged the same way (per_job_worth), by a mean of its own (kp) against
 * KP_WORTH_NS. By the backlog rule, the worker took 25-91 % of main's 1e6 empty tasks at t=1
 * (core.empty_ext), each record's lines crossing twice: 48-97 ns a task; held back, main runs 99 %
 * of them at 34-40 ns. A thief's time per job counts the misses on records made on the owner's
 * core: it read 165 ns a job for tasks that main alone runs at 40 ns, 310 for tasks of 165 (taking
 * half of them: 175 ns a task, a loss) and 460 for tasks of 290 (taking half: 240, a gain); so
 * 350 ns, not the workers' 250 (bench/RESULTS.md, 2026-12-05 03:30). That mark holds per task
 * the worker ran since (the core counts them, dagger__self_tls.runs), not per job, unless a job
 * brought KP_BIG_NS: a job that ends a group of tiny tasks (1e5 outer tasks from main, each
 * ending a group of 6) read 1.4 us a job but 200 ns a task, against 40 on main alone, and the
 * worker took 55-85 % of them at 65-80 ns a task in all (37 held back; 2026-12-06 03:45). A
 * slot past the deep mark
 * is taken from at once: its owner did not run those spawns. The workers'
 * tops are kept by index modulo WS_SEEN: WS_HOLD_MAX_NS after it first held back since its last
 * steal from a worker, a worker takes from any victim (two victims sharing an entry would
 * otherwise keep resetting it; after a long spell of other work, that is its first look). The
 * idle spin's look interval (look_every) is set back only when the idle path finds work: after
 * a busy spell it starts where it was, at most LINGER_LOOK_EVERY_MAX yields. The price:
 * a few dozen tasks of 300 ns that main spawns in a group at t=1 may run on main alone (48 of
 * them: 11.4 us, or 17.1-17.6 in one process in three, where the worker's first steals, made
 * while main was still spawning, took one task each); from 1 us a task, or 200 of them, no
 * change (bench/RESULTS.md, 2026-12-04 03:20-03:50). After a flat loop, the first late steal
 * from a worker busy with a long task may wait up to WS_AGE_MAX_NS instead of EXT_AGE_NS. */
#define EXT_WORTH_NS 3000
#define EXT_TASK_WORTH_NS 350
#define EXT_BIG_NS 50000
#define EXT_AGE_NS 10000
#define EXT_BACKLOG (2 * EXT_STEAL_MAX)
#define WS_WORTH_NS 250
#define KP_WORTH_NS 350
#define KP_BIG_NS 5000
#define WS_HOLD_MAX_NS 1000000
#define WS_AGE_MAX_NS (16 * EXT_AGE_NS)

/* Tasks this thread ran since its count read `runs0` (at least 1: the steal's job). */
static inline uint64_t runs_since(uint64_t runs0)
{
    uint64_t n = dagger__self_tls.runs - runs0;
    return n ? n : 1;
}

/* Does a steal judged by h pay, by what it brought a job and (per_task) a task? */
static inline bool holdback_paid(const struct holdback *h, uint64_t job, uint64_t task)
{
    if (h->per_task)
        return job >= h->big_ns || (job >= h->min_ns && task >= h->worth_ns);
    return job >= h->worth_ns;
}

/* The same by the means (holding back while they do not pay). */
static inline bool holdback_pays(const struct holdback *h)
{
    return holdback_paid(h, h->work_ns, h->task_ns);
}

/* The worker's deque ran dry: fold what its last steal judged by h brought, per job (and per
 * task run since) into the means. */
static inline void holdback_fold(struct holdback *h)
{
    if (DAGGER_UNLIKELY(h->t0 != 0)) {
        uint64_t all = dagger__now_ns() - h->t0;
        uint64_t ran = all / h->jobs;
        uint64_t task = h->per_task ? all / runs_since(h->runs0) : 0;
        h->work_ns = (3 * h->work_ns + ran) / 4;
        h->task_ns = (3 * h->task_ns + task) / 4;
        h->t0 = 0;
        if (holdback_paid(h, ran, task)) /* it paid: take from a still top at the first age */
            h->age_ns = EXT_AGE_NS;
        else if (h->aged && h->age_ns < WS_AGE_MAX_NS) /* held back, and it did not */
            h->age_ns *= 2;
    }
}

static inline void steal_sample(struct worker *w)
{
    holdback_fold(&w->ext);
    holdback_fold(&w->ws);
    holdback_fold(&w->kp);
}

/* A hold-back whose steals pay from worth_ns a job, or (big_ns non-zero: judged per task run as
 * well) from big_ns a job, or min_ns a job and worth_ns a task. Its means start at 4 times their
 * marks: a worker steals at once until steals are seen not to pay. */
static struct holdback holdback_start(uint64_t worth_ns, uint64_t min_ns, uint64_t big_ns)
{
    return (struct holdback){.work_ns = 4 * (min_ns > worth_ns ? min_ns : worth_ns),
                             .age_ns = EXT_AGE_NS,
                             .worth_ns = worth_ns,
                             .jobs = 1,
                             .per_task = big_ns != 0,
                             .task_ns = 4 * worth_ns,
                             .min_ns = min_ns,
                             .big_ns = big_ns};
}

/* A steal of `jobs` jobs judged by h was taken now. */
static inline void holdback_took(struct holdback *h, uint32_t jobs)
{
    h->t0 = dagger__now_ns();
    h->jobs = jobs;
    h->runs0 = dagger__self_tls.runs;
    h->held_ns = 0;
}

/* Victim v's top is `top` now: true once it has been the same for `age` ns (else it is
 * remembered as first seen now). */
static inline bool held_aged(struct held *e, int v, int64_t top, uint64_t now, uint64_t age)
{
    if (e->v != v || e->top != top || e->ns == 0) {
        e->v = v;
        e->top = top;
        e->ns = now;
        return false;
    }
    return now - e->ns >= age;
}

/* Within `age` ns of the first sight of victim v's top: the idle looks skip v. */
static inline bool held_recent(const struct held *e, int v, uint64_t now, uint64_t age)
{
    return e->v == v && e->ns != 0 && now - e->ns < age;
}

/* May the worker steal from victim v (deque d; its tops seen in *e) by the work per job that
 * such steals brought (h)? */
static bool per_job_worth(struct holdback *h, struct held *e, int v, struct dagger__deque *d)
{
    h->aged = false;
    if (holdback_pays(h))
        return true;
    uint64_t now = dagger__now_ns();
    if (h->held_ns == 0)
        h->held_ns = now;
    else if (now - h->held_ns >= WS_HOLD_MAX_NS)
        return true;
    int64_t bottom = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    if (!held_aged(e, v, atomic_load_explicit(&d->top, memory_order_relaxed), now, h->age_ns)) {
        if (e->ns == now) /* first seen now */
            e->bottom = bottom;
        return false;
    }
    /* Neither end moved all that time: a flat loop's spawner at its deep mark (see above). */
    h->aged = e->bottom == bottom;
    return true;
}

/* May the worker steal from worker v (deque d) now? */
static bool ws_worth(struct worker *w, int v, struct dagger__deque *d)
{
    return per_job_worth(&w->ws, &w->ws_seen[v % WS_SEEN], v, d);
}

/* Slot k's owner runs its spawns itself past the deep mark: judged as a worker victim is. */
static inline bool ext_keeps(const struct dagger__deque *d)
{
    return atomic_load_explicit(&d->keeps, memory_order_relaxed) != 0;
}

/* May the worker steal from slot k (deque d, holding `size` jobs) now? */
static bool ext_worth(struct worker *w, int k, struct dagger__deque *d, int64_t size)
{
    /* read on bottom's line, which dq_size read; the idle looks (work_seen) and the steal
     * (steal_ext) go by this copy */
    struct held *e = &w->ext_seen[k];
    e->kp = ext_keeps(d);
    if (size >= w->pool->slot_deep) /* past the deep mark: its owner does not run them */
        return true;
    if (e->kp)
        return per_job_worth(&w->kp, e, k, d);
    if (holdback_pays(&w->ext) || size >= EXT_BACKLOG)
        return true;
    return held_aged(e, k, atomic_load_explicit(&d->top, memory_order_relaxed), dagger__now_ns(),
                     EXT_AGE_NS);
}

/* An idle look skips victim v (its tops seen in *e) while holding back from it by h's measure,
 * within h's age of the first sight of its top; the clock is read once per look (*now). */
static inline bool held_skip(const struct holdback *h, const struct held *e, int v, uint64_t *now)
{
    if (holdback_pays(h) || h->held_ns == 0)
        return false;
    if (!*now)
        *now = dagger__now_ns();
    return held_recent(e, v, *now, h->age_ns) && *now - h->held_ns < WS_HOLD_MAX_NS;
}

/* What a searching worker sees: nothing, work in the injection queue only, or work elsewhere. */
enum { SEEN_NONE, SEEN_INJECTED, SEEN_WORK };

static int work_seen(dagger__pool *p, struct worker *w, bool all)
{
    if (jobq_nonempty(&w->mailbox) || atomic_load(&p->heap_count) > 0)
        return SEEN_WORK;
    uint64_t now = 0; /* read at the first victim held back from, if any */
    for (int i = 0; i < p->n; i++) {
        if (!all && i != w->index && held_skip(&w->ws, &w->ws_seen[i % WS_SEEN], i, &now))
            continue;
        if (dq_size(&p->w[i].dq) > 0)
            return SEEN_WORK;
    }
    int ne = atomic_load_explicit(&p->ext_hw, memory_order_seq_cst);
    for (int i = 0; i < ne; i++) {
        const struct held *e = &w->ext_seen[i];
        if (!all &&
            (e->kp ? held_skip(&w->kp, e, i, &now)
                   : !holdback_pays(&w->ext) &&
                         held_recent(e, i, now ? now : (now = dagger__now_ns()), EXT_AGE_NS)))
            continue;
        if (dq_size(&p->ext[i].dq) > 0)
            return SEEN_WORK;
    }
    return jobq_nonempty(&p->inject) ? SEEN_INJECTED : SEEN_NONE;
}

static bool has_work(dagger__pool *p, struct worker *w)
{
    return work_seen(p, w, true) != SEEN_NONE;
}

/* The shortest age among the hold-backs in force: how long a worker that sees only work it
 * holds back from may sleep. */
static uint64_t held_age(const struct worker *w)
{
    uint64_t age = WS_AGE_MAX_NS;
    if (!holdback_pays(&w->ext))
        age = EXT_AGE_NS;
    if (!holdback_pays(&w->ws) && w->ws.age_ns < age)
        age = w->ws.age_ns;
    if (!holdback_pays(&w->kp) && w->kp.age_ns < age)
        age = w->kp.age_ns;
    return age;
}

/* A searching worker's look: take work when it sees some, except, where the workers leave a
 * core free (the idle spin is on), a job that a thread outside the pool injected, which it takes
 * only when it was there at its previous look too. Such a thread (main spawning a task and
 * fetching it) usually runs the task itself a moment later (src/core/fetch.c); a worker that
 * took it first made main wait for another core: a round trip from main at t=1 on 2 cores ran
 * 3.5 % of its tasks on the worker, 160 ns on average (107 the median), and 0.02-0.06 % with
 * one look more (128 ns). A look comes every few hundred ns to 1.5 us, which a job posted from
 * outside waits once more. With a worker on every core the rule is off: there the workers
 * left alone park, the next spawn from main wakes one, and the woken worker shares main's core
 * (a tail of 10-20 us round trips, the mean no better). */
static inline struct dagger__job *try_get(dagger__pool *p, struct worker *w);

static struct dagger__job *look(dagger__pool *p, struct worker *w, bool *injected_seen)
{
    int seen = work_seen(p, w, false);
    bool again = *injected_seen;
    bool gated =
        seen == SEEN_INJECTED && atomic_load_explicit(&p->idle_spin_ns, memory_order_relaxed) != 0;
    *injected_seen = gated;
    if (seen == SEEN_NONE || (gated && !again))
        return NULL;
    return try_get(p, w);
}

/* ---------------------------------------------------------------- aux threads */

static void *aux_main(void *arg);

static struct dagger__job *aux_pick(dagger__pool *p)
{
    struct dagger__job *prev = NULL;
    for (struct dagger__job *j = p->aux_head; j; prev = j, j = NEXT(j)) {
        if (j->occupancy <= 0.0f || p->aux_load + j->occupancy <= (double)p->n + 1e-9) {
            if (prev)
                SET_NEXT(prev, NEXT(j));
            else
                p->aux_head = NEXT(j);
            if (p->aux_tail == j)
                p->aux_tail = prev;
            SET_NEXT(j, NULL);
            return j;
        }
    }
    return NULL;
}

static void aux_submit(dagger__pool *p, struct dagger__job *j)
{
    SET_NEXT(j, NULL);
    pthread_mutex_lock(&p->aux_lock);
    if (p->aux_tail)
        SET_NEXT(p->aux_tail, j);
    else
        p->aux_head = j;
    p->aux_tail = j;
    if (p->aux_idle > 0) {
        pthread_cond_signal(&p->aux_cond);
    } else if (p->aux_threads < AUX_MAX) {
        if (pthread_create(&p->aux_tid[p->aux_threads], NULL, aux_main, p) == 0)
            p->aux_threads++;
    }
    pthread_mutex_unlock(&p->aux_lock);
}

static void *aux_main(void *arg)
{
    dagger__pool *p = arg;
    pthread_setname_np(pthread_self(), "dagger-aux");
    pthread_mutex_lock(&p->aux_lock);
    for (;;) {
        struct dagger__job *j = aux_pick(p);
        if (!j) {
            if (atomic_load(&p->shutdown))
                break;
            p->aux_idle++;
            pthread_cond_wait(&p->aux_cond, &p->aux_lock);
            p->aux_idle--;
            continue;
        }
        double occ = j->occupancy > 0.0f ? j->occupancy : 0.0;
        p->aux_load += occ;
        pthread_mutex_unlock(&p->aux_lock);
        while (j) {
            struct dagger__job *next = p->run(j, p->ud);
            if (next)
                dagger__pool_submit(p, next);
            j = NULL;
        }
        pthread_mutex_lock(&p->aux_lock);
        p->aux_load -= occ;
        /* Load went down: a job that did not fit may fit now. */
        if (p->aux_head && p->aux_idle > 0)
            pthread_cond_signal(&p->aux_cond);
    }
    pthread_mutex_unlock(&p->aux_lock);
    return NULL;
}

/* ---------------------------------------------------------------- submission */

/* A job submitted by a thread that holds a slot of p (it may be another pool's at the same
 * address, one closed since: the generation tells): there, else to the injection queue. */
DAGGER_NOINLINE static bool submit_slot(dagger__pool *p, struct dagger__job *j, bool may_keep)
{
    if (tls_ext.pool == p && tls_ext.gen == p->gen) {
        struct dagger__deque *d = &tls_ext.slot->dq;
        /* A task spawns (it runs on this thread: a fetch or a group's end took it): past the
         * deep mark, as on a worker, it runs the job itself (submit_deep). */
        bool pushed = may_keep && dq_push_room(d, j, p->slot_deep - 1) == 0;
        if (may_keep && !pushed) { /* deep by top_seen: read top again */
            d->top_seen = atomic_load_explicit(&d->top, memory_order_acquire);
            if (atomic_load_explicit(&d->bottom, memory_order_relaxed) - d->top_seen >=
                p->slot_deep - 1) {
                if (DAGGER_UNLIKELY(!atomic_load_explicit(&d->keeps, memory_order_relaxed)))
                    atomic_store_explicit(&d->keeps, 1, memory_order_relaxed);
                return true;
            }
        }
        if (pushed || dq_push(d, j) == 0) {
            notify(p, 0); /* every worker is another thread */
            return false;
        }
    } /* no slot, or it could not grow: the injection queue */
    jobq_push(&p->inject, j);
    notify_published(p, 0);
    return false;
}

/* A job submitted by a thread that is not a worker of p; `may_keep` as submit_plain's. */
static inline bool submit_external(dagger__pool *p, struct dagger__job *j, bool may_keep)
{
    if (DAGGER_UNLIKELY(dagger__ext_tls.pool == p))
        return submit_slot(p, j, may_keep);
    jobq_push(&p->inject, j);
    notify_published(p, 0);
    return false;
}

/* Every kind of job: aux threads, a mailbox, the priority queue, the caller's deque or the
 * injection queue. Out of line: the common case (below) then saves no registers. */
DAGGER_NOINLINE static void submit_any(dagger__pool *p, struct dagger__job *j)
{
    if (DAGGER_UNLIKELY(j->occupancy < 1.0f) && !j->fiber && j->pin < 0) {
        aux_submit(p, j);
        return;
    }
    if (j->pin >= 0) {
        jobq_push(&p->w[j->pin].mailbox, j);
        notify_published(p, 1); /* the owner must wake, whichever sleeper that is */
        return;
    }
    if (DAGGER_UNLIKELY(j->prio != 0)) {
        if (heap_push(p, j) == 0) {
            notify(p, 0);
            return;
        }
        /* Out of memory for the heap: run it without its priority rather than lose it. */
    }
    struct worker *w = tls_worker; /* no switch in this function */
    if (w && w->pool == p && dq_push(&w->dq, j) == 0) {
        if (p->n > 1) /* the only worker is this one: nobody to wake */
            notify(p, 0);
        return;
    }
    (void)submit_external(p, j, false);
}

/* The initial deque holds more than the deep mark: below it, dq_push_room never needs to grow. */
#define DQ_INITIAL_CAP 4096
_Static_assert(DQ_INITIAL_CAP > DAGGER__POOL_DEEP, "the deep mark fits the initial deque");

/* A plain job for the calling worker's own deque, which looks DAGGER__POOL_DEEP - 1 deep or more
 * by its last reading of top. Reads top again (thieves may have emptied it since): still that
 * deep, the job is left to the caller when `may_keep` (true: it runs it on its own stack), else
 * pushed there anyway; otherwise pushed. Out of line: the push below the mark saves no registers
 * for it. */
DAGGER_NOINLINE static bool submit_deep(dagger__pool *p, struct worker *w, struct dagger__job *j,
                                        bool may_keep)
{
    struct dagger__deque *d = &w->dq;
    d->top_seen = atomic_load_explicit(&d->top, memory_order_acquire);
    if (may_keep && atomic_load_explicit(&d->bottom, memory_order_relaxed) - d->top_seen >=
                        DAGGER__POOL_DEEP - 1) {
        dagger__self_tls.deep_left = DAGGER__POOL_DEEP_STREAK - 1; /* see pool.h */
        if (p->deep)
            p->deep(j);
        return true;
    }
    if (dq_push(d, j) != 0) { /* it could not grow: the injection queue takes it */
        jobq_push(&p->inject, j);
        notify_published(p, 0);
        return false;
    }
    if (p->n > 1)
        notify(p, 0);
    return false;
}

/* A plain job (occupancy 1, no pin, no priority) goes to the deque of the worker of p that
 * submits it, from any other thread to the injection queue. Returns true only from submit_deep
 * (the job kept for the caller). */
static inline bool submit_plain(dagger__pool *p, struct dagger__job *j, bool may_keep)
{
    struct worker *w = tls_worker; /* no switch in this function */
    if (!w || w->pool != p)
        return submit_external(p, j, may_keep);
    if (DAGGER_LIKELY(dq_push_room(&w->dq, j, DAGGER__POOL_DEEP - 1) == 0)) {
        if (p->n > 1) /* the only worker is this one: nobody to wake */
            notify(p, 0);
        return false;
    }
    if (may_keep && dagger__pool_still_deep())
        return true; /* deep by top_seen, and by top a few spawns ago: no look at it (pool.h) */
    return submit_deep(p, w, j, may_keep);
}

void dagger__pool_set_deep(dagger__pool *p, dagger__deep_fn fn) { p->deep = fn; }

_Atomic uint32_t *dagger__pool_bundle_taken(dagger__pool *p, int w)
{
    return &p->w[w].bundles_taken;
}

struct dagger__bundle_slot *dagger__pool_bundle_slot(dagger__pool *p, int w)
{
    return &p->w[w].bslot;
}

_Atomic uint32_t *dagger__pool_bundles_open(dagger__pool *p) { return &p->bundles_open; }

void dagger__pool_set_stale(dagger__pool *p, dagger__stale_fn fn)
{
    atomic_store_explicit(&p->stale, fn, memory_order_relaxed);
}

bool dagger__pool_asym(const dagger__pool *p)
{
    return atomic_load_explicit(&p->asym, memory_order_relaxed);
}

void dagger__pool_barrier(dagger__pool *p)
{
    if (atomic_load_explicit(&p->asym, memory_order_relaxed))
        park_barrier(p);
    else
        dagger__fence_seq_cst();
}

void dagger__pool_wake_one(dagger__pool *p) { notify(p, 0); }

bool dagger__pool_idle_hint(const dagger__pool *p)
{
    return p->n > 1 && (atomic_load_explicit(&p->sleepers, memory_order_relaxed) > 0 ||
                        atomic_load_explicit(&p->searching, memory_order_relaxed) > 0);
}

void dagger__pool_submit(dagger__pool *p, struct dagger__job *j)
{
    /* The common case first; NaN occupancy and every other case take the general path, in its
     * order. */
    if (DAGGER_UNLIKELY(!(j->occupancy >= 1.0f) || j->pin >= 0 || j->prio != 0)) {
        submit_any(p, j);
        return;
    }
    (void)submit_plain(p, j, false);
}

bool dagger__pool_submit_plain(dagger__pool *p, struct dagger__job *j, bool may_keep)
{
    DAGGER_ASSERT(j->occupancy >= 1.0f && j->pin < 0 && j->prio == 0 && !j->fiber);
    return submit_plain(p, j, may_keep);
}

/* ---------------------------------------------------------------- finding work */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* A job this worker took beyond the one it runs (the rest of an injection batch, extra steals):
 * onto its deque, where thieves reach it; the injection queue when the deque cannot grow. */
static void keep_here(dagger__pool *p, struct worker *w, struct dagger__job *j)
{
    if (dq_push(&w->dq, j) != 0)
        jobq_push(&p->inject, j);
}

/* A thief takes half of a victim's deque that holds this many jobs or more (up to DQ_HALF_MAX,
 * one CAS: dq_steal_half), the first to run, the rest kept here. A flat loop of spawns at t=2
 * has one worker spawning (past the deep mark, running its spawns) while the other steals: one
 * job per CAS moved the victim's `top` line twice and its `bottom` line once per job taken (the
 * spawner reads top at each deep spawn and pushes after each steal), 65 % of the thief's time
 * in the search (bench/RESULTS.md, 2026-12-03). */
#define STEAL_HALF_MIN 64

/* A batch taken from an external slot: the first job to run, the rest kept here (a thread
 * outside the pool spawns a flat loop: the slot's top line and bottom come here once for up to
 * EXT_STEAL_MAX jobs, where one steal each cost a transfer of both lines per job). Half of what
 * the thief sees from 2 jobs on (dq_steal_half), the last one alone (dq_steal): the slot's owner
 * pops its bottom as a worker does (dq_pop), newest first at any depth. */
static struct dagger__job *steal_ext(dagger__pool *p, struct worker *w, struct dagger__deque *d,
                                     bool keeps)
{
    void *got[EXT_STEAL_MAX];
    for (int tries = 0; tries < 4; tries++) {
        int k = dq_size(d) >= 2 ? dq_steal_half(d, got, EXT_STEAL_MAX, 2) : 0;
        if (k == 0) { /* one job seen (or fewer than 2 by the time of the steal) */
            void *x = dq_steal(d);
            if (x == DQ_EMPTY)
                return NULL;
            k = x == DQ_ABORT ? -1 : 1;
            got[0] = x;
        }
        if (k < 0)
            continue;
        /* the owner keeps its spawns (ext_worth saw it): judged by work per job; otherwise by
         * the work of the steal in all */
        holdback_took(keeps ? &w->kp : &w->ext, keeps ? (uint32_t)k : 1);
        /* Not traced, as a take from the injection queue is not: a steal event has no task, so
         * sampling keeps every one, and one per batch took the budget of a bounded trace from
         * the runs of the tasks it kept. */
        for (int i = 1; i < k; i++)
            keep_here(p, w, got[i]);
        return got[0];
    }
    return NULL;
}

/* One job from the top of deque `d`, a few tries against other thieves; NULL when it is empty
 * or the races were lost. */
static void *steal_one(struct dagger__deque *d)
{
    for (int tries = 0; tries < 4; tries++) {
        void *x = dq_steal(d);
        if (x == DQ_EMPTY)
            break;
        if (x != DQ_ABORT)
            return x;
    }
    return NULL;
}

/* The other workers' deques from a random one, then the external slots (a thief of a flat loop
 * among workers finds its victim without a look at a slot first). */
static struct dagger__job *try_steal(dagger__pool *p, struct worker *w)
{
    int n = p->n;
    if (n > 1) {
        int start = (int)(((rng_next(&w->rng) >> 32) * (uint64_t)n) >> 32);
        for (int k = 0; k < n; k++) {
            int v = (start + k) % n;
            if (v == w->index)
                continue;
            struct dagger__deque *vd = &p->w[v].dq;
            int64_t size = dq_size(vd);
            if (size <= 0 || !ws_worth(w, v, vd))
                continue;
            if (size >= STEAL_HALF_MIN) {
                void *got[DQ_HALF_MAX];
                int taken = dq_steal_half(vd, got, DQ_HALF_MAX, STEAL_HALF_MIN);
                if (taken > 0) {
                    holdback_took(&w->ws, (uint32_t)taken);
                    DAGGER__TRACE(dagger__trace_steal(w->index, v, 0));
                    for (int i = 1; i < taken; i++)
                        keep_here(p, w, got[i]);
                    return got[0];
                }
            }
            void *x = steal_one(vd);
            if (x) {
                holdback_took(&w->ws, 1);
                w->ws.aged = false; /* only a deep victim's (a flat loop's) top stays put */
                DAGGER__TRACE(dagger__trace_steal(w->index, v, 0));
                return x;
            }
        }
    }
    int ne = atomic_load_explicit(&p->ext_hw, memory_order_relaxed);
    for (int k = 0; k < ne; k++) {
        struct dagger__deque *d = &p->ext[k].dq;
        int64_t size = dq_size(d);
        if (size <= 0 || !ext_worth(w, k, d, size))
            continue;
        struct dagger__job *j = steal_ext(p, w, d, w->ext_seen[k].kp);
        if (j)
            return j;
    }
    return NULL;
}

/* What try_get looks at after the worker's own deque: the injection queue, the other workers,
 * then the priority queue at any priority. */
DAGGER_NOINLINE static struct dagger__job *try_get_shared(dagger__pool *p, struct worker *w)
{
    struct dagger__job *j;
    steal_sample(w);
    if ((j = jobq_take(&p->inject, INJECT_BATCH))) {
        /* Keep the rest of the batch where thieves can reach it. */
        struct dagger__job *rest = NEXT(j);
        SET_NEXT(j, NULL);
        while (rest) {
            struct dagger__job *nx = NEXT(rest);
            SET_NEXT(rest, NULL);
            keep_here(p, w, rest);
            rest = nx;
        }
        if (dq_size(&w->dq) > 0)
            notify(p, 0);
        return j;
    }
    if ((j = try_steal(p, w)))
        return j;
    return heap_pop(p, INT32_MIN);
}

/* Every queue in order, when the mailbox or the priority queue holds a job. */
DAGGER_NOINLINE static struct dagger__job *try_get_all(dagger__pool *p, struct worker *w)
{
    struct dagger__job *j;
    if (jobq_nonempty(&w->mailbox) && (j = jobq_take(&w->mailbox, 1)))
        return j;
    if (atomic_load_explicit(&p->heap_count, memory_order_relaxed) > 0 && (j = heap_pop(p, 1)))
        return j;
    if ((j = dq_pop(&w->dq)))
        return j;
    return try_get_shared(p, w);
}

static inline struct dagger__job *try_get(dagger__pool *p, struct worker *w)
{
    /* The mailbox and the heap are empty almost always: test them here, without a call. */
    if (DAGGER_UNLIKELY(jobq_nonempty(&w->mailbox) ||
                        atomic_load_explicit(&p->heap_count, memory_order_relaxed) > 0))
        return try_get_all(p, w);
    struct dagger__job *j = dq_pop(&w->dq);
    return DAGGER_LIKELY(j != NULL) ? j : try_get_shared(p, w);
}

/* A worker that stopped searching (or was woken) with a job in hand: if more work is queued
 * and nobody searches, wake the next sleeper, so that a burst of jobs reaches every worker. */
static void pass_wakeup(dagger__pool *p, struct worker *w)
{
    if (atomic_load_explicit(&p->sleepers, memory_order_relaxed) > 0 && has_work(p, w))
        notify(p, 0);
}

/* A thread outside the pool spins for a result on this worker's CPU (dagger__pool_ext_spin),
 * and this worker, the pool's only one, ran dry: the pool is idle, so the result is made, and
 * the waiter runs only once the worker leaves the CPU. The pause rounds below kept it off for
 * 5.6 us: 7.0-7.5 us from the last leaf's end to the return of a parallel_for at t=1, against
 * 1.4-1.5 with the yield. Not with more workers: one that runs dry amid a computation then
 * yielded to the waiter (on the 2-core VM, core.fib_cutoff at t=2 read 0.77-0.81 ms against
 * 0.42-0.44; bench/RESULTS.md, 2026-12-06, a fourth session). */
static inline bool waiter_here(dagger__pool *p)
{
    if (p->n != 1)
        return false;
    int c = atomic_load_explicit(&p->ext_spin_cpu, memory_order_relaxed);
    return c != 0 && c == sched_getcpu() + 1;
}

/* The idle path of find_work: spin as a searcher, then park (out of line: the per-task path
 * is the first try_get). */
DAGGER_NOINLINE static struct dagger__job *find_work_idle(dagger__pool *p, struct worker *w)
{
    if (p->dry)
        p->dry();
    for (int woken = 0;; woken = 1) {
        struct dagger__job *j = woken ? try_get(p, w) : NULL;
        if (j) {
            w->look_every = LINGER_LOOK_EVERY;
            pass_wakeup(p, w);
            return j;
        }
        DAGGER__TRACE(dagger__trace_idle()); /* the next start takes its own stamp */
        /* One worker: nobody else to wake, and notify reads searching only while it sleeps. */
        bool count = p->n > 1;
        if (count)
            atomic_fetch_add_explicit(&p->searching, 1, memory_order_seq_cst);
        bool injected_seen = false;
        if (!woken && waiter_here(p)) {
            sched_yield();
            j = look(p, w, &injected_seen);
        }
        for (int s = 0; s < SPIN_ROUNDS && !j; s++) {
            if (s < SPIN_PAUSE_ROUNDS) {
                for (int k = 0; k < 32; k++)
                    dagger__cpu_relax();
            } else {
                sched_yield(); /* a thread that has work on this core (a progress thread) runs */
            }
            j = look(p, w, &injected_seen);
        }
        /* The idle spin (the next burst of a loop usually comes within it: no futex call on
         * either side; only where the workers leave a core free: ctx.c), or work is expected
         * soon (dagger__pool_linger): keep searching. The clock is read only here, past the
         * short spin. */
        if (!j) {
            /* One worker at a time lingers for the idle spin (`lingerer`): it takes the next
             * burst's first job and wakes the others (pass_wakeup), so one core, not all,
             * stays busy while the program runs serial code between loops. */
            bool mine = false;
            uint64_t spin = atomic_load_explicit(&p->idle_spin_ns, memory_order_relaxed);
            if (spin) {
                int z = 0;
                mine = atomic_load_explicit(&p->lingerer, memory_order_relaxed) == 0 &&
                       atomic_compare_exchange_strong_explicit(
                           &p->lingerer, &z, 1, memory_order_relaxed, memory_order_relaxed);
            }
            uint64_t lg = atomic_load_explicit(&p->linger_until, memory_order_relaxed);
            uint64_t now = dagger__now_ns(), until = mine ? now + spin : 0;
            /* The credits go back before a long search: a drain must not wait for it. */
            if (p->idle && (mine || lg > now))
                p->idle(p->ud, w->index);
            for (unsigned k = 1; !j && !atomic_load_explicit(&p->shutdown, memory_order_relaxed);
                 k++) {
                lg = atomic_load_explicit(&p->linger_until, memory_order_relaxed);
                if (now >= until && now >= lg)
                    break;
                /* Yield rather than pause: a thread waiting for this core (a progress thread,
                 * another process) gets it at once. */
                sched_yield();
                if (now >= lg && k % w->look_every != 0)
                    continue; /* the idle spin looks every few yields: fewer lines pulled */
                bool gated = injected_seen;
                j = look(p, w, &injected_seen);
                /* A job injected from outside that was gone by the next look: the thread that
                 * posted it took it back (main spawning and fetching one task at a time, which
                 * it runs itself: src/core/fetch.c). Each look pulls the lines of the injection
                 * queue that thread writes at every task, and its next locked operation waits
                 * for them: at t=1 one round trip in 5-10 took 150-270 ns instead of 73. So
                 * look half as often (down to one look in LINGER_LOOK_EVERY_MAX yields) until
                 * a job stays; work taken sets it back (below). */
                if (gated && !injected_seen && !j && w->look_every < LINGER_LOOK_EVERY_MAX)
                    w->look_every *= 2;
                now = dagger__now_ns();
            }
            if (mine)
                atomic_store_explicit(&p->lingerer, 0, memory_order_relaxed);
        }
        /* Submitters saw a searcher and woke nobody: after this decrement they do, and the
         * work they published before it is seen below (seq_cst on both sides). */
        if (count)
            atomic_fetch_sub_explicit(&p->searching, 1, memory_order_seq_cst);
        if (j) {
            w->look_every = LINGER_LOOK_EVERY;
            pass_wakeup(p, w);
            return j;
        }
        if (atomic_load(&p->shutdown))
            return NULL;
        /* Spawns left in another worker's open bundle while that worker runs user code that
         * waits for them without a call into the runtime: taken once the bundle stopped
         * filling, else this worker sleeps at most until it may be (src/core/task.c,
         * "Bundles"). */
        dagger__stale_fn sf = atomic_load_explicit(&p->stale, memory_order_relaxed);
        long stale = sf ? sf(p, w->index) : 0;
        if (stale < 0)
            continue;
        if (p->idle)
            p->idle(p->ud, w->index);
        atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_seq_cst);
        uint32_t e = atomic_load_explicit(&p->epoch, memory_order_seq_cst);
        /* A wake-up sent before this load finds this worker awake, or makes the wait below
         * return at once: either way it has arrived, and the next one may be sent. */
        atomic_store_explicit(&p->waking, 0, memory_order_seq_cst);
        /* Only work it holds back from in sight (a flat loop's spawner, main's small group):
         * a sleep until that may be taken (the age of the hold-back), rather than a spin on
         * sched_yield meanwhile. On the 2-core VM the yields led the profile (the kernel's
         * pvm_irq_enable), and a flat loop's spawner on the other core lost time to them:
         * 25.1-26.8 ns a task against 23.6-24.4 with the sleep
         * (23.3 at t=1; bench/RESULTS.md, 2026-12-05). A wake-up that the sleep misses costs
         * at most its length, so it goes without the barrier (the membarrier's interrupt of
         * every running thread, the spawner's too, at each park). */
        long timeout = -1;
        if (has_work(p, w) && work_seen(p, w, false) == SEEN_NONE)
            timeout = (long)held_age(w);
        else
            park_barrier(p);
        if ((timeout < 0 && has_work(p, w)) || atomic_load(&p->shutdown)) {
            atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_seq_cst);
            continue;
        }
        if (stale > 0 && (timeout < 0 || stale < timeout))
            timeout = stale;
        DAGGER__TRACE(dagger__trace_park(w->index));
        dagger__futex_wait(&p->epoch, e, timeout);
        atomic_store_explicit(&p->waking, 0, memory_order_seq_cst);
        atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_seq_cst);
        DAGGER__TRACE(dagger__trace_wake(w->index));
    }
}

static inline struct dagger__job *find_work(dagger__pool *p, struct worker *w)
{
    struct dagger__job *j = try_get(p, w);
    return DAGGER_LIKELY(j != NULL) ? j : find_work_idle(p, w);
}

void dagger__pool_linger(dagger__pool *p, uint64_t until_ns)
{
    uint64_t cur = atomic_load_explicit(&p->linger_until, memory_order_relaxed);
    /* A deadline moved by less than 50 us is left alone: no write per message in a burst. */
    while (until_ns > cur + 50000 &&
           !atomic_compare_exchange_weak_explicit(&p->linger_until, &cur, until_ns,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void dagger__pool_set_idle_spin(dagger__pool *p, uint64_t ns)
{
    atomic_store_explicit(&p->idle_spin_ns, ns, memory_order_relaxed);
}

uint64_t dagger__pool_linger_until(const dagger__pool *p)
{
    return atomic_load_explicit(&p->linger_until, memory_order_relaxed);
}

void dagger__pool_ext_spin(dagger__pool *p, bool on)
{
    if (p->n != 1) /* read only by the pool's only worker (waiter_here) */
        return;
    int cpu = on ? sched_getcpu() : -1;
    atomic_store_explicit(&p->ext_spin_cpu, cpu >= 0 ? cpu + 1 : 0, memory_order_relaxed);
}

/* ---------------------------------------------------------------- fibers */

static void fiber_entry(void *arg);

static struct dagger__fiber *fiber_get(dagger__pool *p, struct worker *w)
{
    struct dagger__fiber *f = w->spare;
    if (f) {
        w->spare = NULL;
    } else {
        pthread_mutex_lock(&p->fiber_lock);
        f = p->fibers;
        if (f)
            p->fibers = f->next;
        pthread_mutex_unlock(&p->fiber_lock);
    }
    if (!f) {
        f = dagger__malloc(sizeof *f);
        if (!f)
            return NULL;
        if (dagger__fiber_alloc(f, p->stack_size) != 0) {
            dagger__free(f);
            return NULL;
        }
    }
    dagger__fiber_prepare(f, fiber_entry, f);
    return f;
}

static void fiber_put(void *arg)
{
    struct dagger__fiber *f = arg;
    struct worker *w = self();
    if (w && !w->spare) {
        w->spare = f;
        return;
    }
    dagger__pool *p = w->pool;
    pthread_mutex_lock(&p->fiber_lock);
    f->next = p->fibers;
    p->fibers = f;
    pthread_mutex_unlock(&p->fiber_lock);
}

/* Called by the code that arrives on fiber `f` after a switch. */
static void arrived(struct dagger__fiber *f)
{
    dagger__fiber_arrived(f);
    struct worker *w = self();
    w->cur = f;
    void (*fn)(void *) = w->after_fn;
    w->after_fn = NULL;
    if (fn)
        fn(w->after_arg);
}

static void worker_loop(dagger__pool *p)
{
    /* Read again after each job (it may have suspended and resumed on another thread); find_work
     * never switches. */
    struct worker *w = self();
    for (;;) {
        struct dagger__job *j = find_work(p, w);
        if (!j)
            return; /* shut down */
        while (j) {
            if (j->fiber) {
                /* Resume a suspended job: continue on its fiber, recycle this one. */
                struct dagger__fiber *to = j->fiber, *from = w->cur;
                j->fiber = NULL;
                w->after_fn = fiber_put;
                w->after_arg = from;
                dagger__fiber_switch(from, to, 1);
                dagger__panic("a recycled fiber was resumed");
            }
            j = p->run(j, p->ud);
            w = self();
        }
    }
}

static void fiber_entry(void *arg)
{
    struct dagger__fiber *f = arg;
    arrived(f);
    struct worker *w = self();
    dagger__pool *p = w->pool;
    worker_loop(p);
    /* Shut down: go back to the thread's own stack and recycle this fiber there. */
    w = self();
    w->after_fn = fiber_put;
    w->after_arg = f;
    dagger__fiber_switch(f, &w->native, 1);
    dagger__panic("a finished worker fiber was resumed");
}

struct dagger__job *dagger__pool_pop_local(dagger__pool *p)
{
    struct worker *w = tls_worker;
    if (w && w->pool == p)
        return dq_pop(&w->dq);
    return dagger__pool_ext_pop(p); /* the slot a thread outside the pool holds, if any */
}

bool dagger__pool_hungry(const dagger__pool *p)
{
    struct worker *w = tls_worker;
    if (w && w->pool == p) /* one worker alone has no thief: nothing to split for */
        return p->n > 1 && dq_size(&w->dq) <= 0;
    return atomic_load_explicit(&p->sleepers, memory_order_relaxed) > 0;
}

void dagger__pool_push_local(dagger__pool *p, struct dagger__job *j)
{
    struct worker *w = tls_worker;
    if (w && w->pool == p && dq_push(&w->dq, j) == 0)
        return;
    dagger__pool_submit(p, j);
}

struct dagger__job *dagger__pool_take_injected(dagger__pool *p, int max)
{
    struct dagger__job *first = jobq_take(&p->inject, max), *prev = NULL;
    bool back = false;
    for (struct dagger__job *j = first, *nx; j; j = nx) {
        nx = NEXT(j);
        if (DAGGER_LIKELY(j->fiber == NULL)) {
            prev = j;
            continue;
        }
        if (prev) /* its stack is a worker's: out of the list, back to the queue */
            SET_NEXT(prev, nx);
        else
            first = nx;
        jobq_push(&p->inject, j);
        back = true;
    }
    if (back) /* and a worker told */
        notify_published(p, 0);
    return first;
}

bool dagger__pool_take_injected_if(dagger__pool *p, struct dagger__job *j)
{
    struct jobq *q = &p->inject;
    /* A job of the priority queue goes first: the workers take it before this one. */
    if (atomic_load_explicit(&p->heap_count, memory_order_relaxed) > 0 || !jobq_nonempty(q) ||
        atomic_exchange_explicit(&q->busy, 1, memory_order_acquire))
        return false;
    struct dagger__job *head = atomic_load_explicit(&q->head, memory_order_relaxed);
    if (head == &q->stub)
        head = atomic_load_explicit(&head->next, memory_order_acquire);
    /* NULL from the pop: a producer between its two steps; `j` stays for the workers. */
    bool got = head == j && jobq_pop1(q) == j;
    atomic_store_explicit(&q->busy, 0, memory_order_release);
    return got;
}

struct dagger__job *dagger__pool_steal_any(dagger__pool *p)
{
    for (int v = 0; v < p->n; v++) {
        void *x = steal_one(&p->w[v].dq);
        if (x)
            return x;
    }
    return NULL;
}

bool dagger__pool_ext_claim(dagger__pool *p)
{
    if (tls_worker) /* a worker of any pool: it has its own deque, or waits as a task */
        return false;
    if (tls_ext.pool) {
        if (tls_ext.pool != p || tls_ext.gen != p->gen)
            return false; /* one slot per thread: another context's group holds it */
        tls_ext.depth++;
        return true;
    }
    for (int k = 0; k < EXT_SLOTS; k++) {
        int free = 0;
        if (atomic_load_explicit(&p->ext[k].owned, memory_order_relaxed) != 0 ||
            !atomic_compare_exchange_strong_explicit(&p->ext[k].owned, &free, 1,
                                                     memory_order_acquire, memory_order_relaxed))
            continue;
        /* Thieves and sleepers look at slots below ext_hw: raised before the first push
         * (seq_cst, as the loads in has_work), so that the slot's jobs are never missed. */
        int hw = atomic_load_explicit(&p->ext_hw, memory_order_seq_cst);
        while (hw < k + 1 &&
               !atomic_compare_exchange_weak_explicit(&p->ext_hw, &hw, k + 1, memory_order_seq_cst,
                                                      memory_order_seq_cst))
            ;
        tls_ext.pool = p;
        tls_ext.gen = p->gen;
        tls_ext.slot = &p->ext[k];
        tls_ext.depth = 1;
        atomic_store_explicit(&p->ext[k].dq.keeps, 0, memory_order_relaxed);
        dagger__ext_tls.pool = p;
        dagger__ext_tls.counter = p->n + k;
        return true;
    }
    return false; /* every slot is held: this thread's spawns go to the injection queue */
}

void dagger__pool_ext_release(dagger__pool *p)
{
    if (tls_ext.pool != p || tls_ext.gen != p->gen || --tls_ext.depth > 0)
        return;
    struct worker *slot = tls_ext.slot;
    ext_tls_clear();
    /* Jobs left in it stay there for the thieves; the next holder owns its bottom after this. */
    atomic_store_explicit(&slot->owned, 0, memory_order_release);
}

bool dagger__pool_ext_held(const dagger__pool *p)
{
    return tls_ext.pool == p && tls_ext.gen == p->gen;
}

struct dagger__job *dagger__pool_ext_pop(dagger__pool *p)
{
    if (tls_ext.pool != p || tls_ext.gen != p->gen)
        return NULL;
    return dq_pop(&tls_ext.slot->dq);
}

void dagger__pool_hand_off(dagger__pool *p, struct dagger__job *j)
{
    jobq_push(&p->inject, j);
    notify_published(p, 0);
}

int dagger__pool_suspend(dagger__pool *p, struct dagger__job *job, void (*arm)(void *), void *arg)
{
    struct worker *w = self();
    struct dagger__fiber *me = w->cur;
    struct dagger__fiber *next = fiber_get(p, w);
    if (!next)
        return DAGGER_ENOMEM; /* the caller keeps this thread and blocks on it instead */
    job->fiber = me;
    w->after_fn = arm;
    w->after_arg = arg;
    dagger__fiber_switch(me, next, 0);
    arrived(me);
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16];
    snprintf(name, sizeof name, "dagger-w%d", w->index);
    pthread_setname_np(pthread_self(), name); /* seen in top -H, perf, gdb */
    set_self(w);
    if (w->first_cpu >= 0)
        w->first_cpu = dagger__topo_place_self(w->first_cpu);
    dagger__fiber_init_thread(&w->native);
    w->cur = &w->native;
    /* dagger__pool_open gave every worker its first fiber as its spare: this cannot fail. */
    struct dagger__fiber *f = fiber_get(w->pool, w);
    if (!f)
        dagger__panic("a worker started without its first fiber");
    dagger__fiber_switch(&w->native, f, 0);
    arrived(&w->native);
    set_self(NULL);
    return NULL;
}

/* ---------------------------------------------------------------- open / close */

/* The external slots of p, each with an empty deque. Returns 0 or -1 (out of memory). */
static int ext_open(dagger__pool *p)
{
    p->ext = aligned_alloc(DAGGER_CACHELINE, sizeof(struct worker) * EXT_SLOTS);
    if (!p->ext)
        return -1;
    if (!dagger__alloc_note()) {
        free(p->ext);
        return -1;
    }
    memset(p->ext, 0, sizeof(struct worker) * EXT_SLOTS);
    for (int k = 0; k < EXT_SLOTS; k++) {
        if (dq_init(&p->ext[k].dq, EXT_INITIAL_CAP) != 0) {
            for (int i = 0; i <= k; i++)
                dq_destroy(&p->ext[i].dq);
            free(p->ext);
            dagger__alloc_note_free();
            return -1;
        }
    }
    return 0;
}

static void ext_close(dagger__pool *p)
{
    for (int k = 0; k < EXT_SLOTS; k++)
        dq_destroy(&p->ext[k].dq);
    free(p->ext);
    dagger__alloc_note_free();
    if (tls_ext.pool == p) /* the closing thread held a slot (a group left open) */
        ext_tls_clear();
}

/* The pool's block on a cache line, as its members ask (epoch, searching, linger_until) and as
 * p->w is: dagger__calloc gave glibc's 16-byte alignment, each of those 16 bytes into a line. */
static dagger__pool *pool_block(void)
{
    dagger__pool *p = aligned_alloc(DAGGER_CACHELINE, sizeof *p); /* a multiple of the line */
    if (p && !dagger__alloc_note()) {
        free(p);
        return NULL;
    }
    if (p)
        memset(p, 0, sizeof *p);
    return p;
}

static void pool_block_free(dagger__pool *p)
{
    dagger__alloc_note_free();
    free(p);
}

/* The most workers whose first CPUs are chosen (dagger_ctx_open allows 1024). */
#define SPREAD_MAX 1024

int dagger__pool_open(dagger__pool **out, int n, size_t stack_size, dagger__run_fn run,
                      dagger__idle_fn idle, dagger__dry_fn dry, void *ud, bool spread)
{
    dagger__pool *p = pool_block();
    if (!p)
        return DAGGER_ENOMEM;
    p->w = aligned_alloc(DAGGER_CACHELINE, sizeof(struct worker) * (size_t)n);
    if (!p->w || !dagger__alloc_note()) {
        free(p->w);
        pool_block_free(p);
        return DAGGER_ENOMEM;
    }
    memset(p->w, 0, sizeof(struct worker) * (size_t)n);
    if (ext_open(p) != 0) {
        dagger__alloc_note_free(); /* p->w */
        free(p->w);
        pool_block_free(p);
        return DAGGER_ENOMEM;
    }
    p->gen = atomic_fetch_add_explicit(&pool_gen, 1, memory_order_relaxed) + 1;
    p->n = n;
    p->slot_deep = n >= DAGGER__POOL_DEEP / 64 ? DAGGER__POOL_DEEP : n * 64 < 256 ? 256 : n * 64;
    atomic_init(&p->asym, asym_available());
    p->run = run;
    p->idle = idle;
    p->dry = dry;
    p->ud = ud;
    p->stack_size = stack_size;
    jobq_init(&p->inject);
    pthread_mutex_init(&p->heap_lock, NULL);
    pthread_mutex_init(&p->fiber_lock, NULL);
    pthread_mutex_init(&p->aux_lock, NULL);
    pthread_cond_init(&p->aux_cond, NULL);
    for (int i = 0; i < n; i++) {
        struct worker *w = &p->w[i];
        w->pool = p;
        w->index = i;
        w->look_every = LINGER_LOOK_EVERY;
        w->ext = holdback_start(EXT_TASK_WORTH_NS, EXT_WORTH_NS, EXT_BIG_NS);
        w->ws = holdback_start(WS_WORTH_NS, 0, 0);
        w->kp = holdback_start(KP_WORTH_NS, 0, KP_BIG_NS);
        for (int k = 0; k < EXT_SLOTS; k++)
            w->ext_seen[k].v = -1;
        for (int k = 0; k < WS_SEEN; k++)
            w->ws_seen[k].v = -1;
        w->rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        jobq_init(&w->mailbox);
        if (dq_init(&w->dq, DQ_INITIAL_CAP) != 0) {
            for (int k = 0; k <= i; k++)
                dq_destroy(&p->w[k].dq);
            ext_close(p);
            free(p->w);
            pool_block_free(p);
            return DAGGER_ENOMEM;
        }
    }
    /* Each worker's first fiber is allocated here, so that out of memory reaches the caller
     * of dagger_ctx_open instead of a worker thread that could only abort. */
    for (int i = 0; i < n; i++) {
        struct dagger__fiber *f = dagger__malloc(sizeof *f);
        if (!f || dagger__fiber_alloc(f, stack_size) != 0) {
            dagger__free(f);
            for (int k = 0; k < i; k++) {
                dagger__fiber_free(p->w[k].spare);
                dagger__free(p->w[k].spare);
            }
            for (int k = 0; k < n; k++)
                dq_destroy(&p->w[k].dq);
            ext_close(p);
            free(p->w);
            pool_block_free(p);
            return dagger__set_errmsg(
                DAGGER_ENOMEM, "dagger_ctx_open: out of memory for the stack of worker %d", i);
        }
        p->w[i].spare = f;
    }
    for (int i = 0; i < n; i++)
        p->w[i].first_cpu = -1;
    if (spread) {
        int cpus[SPREAD_MAX]; /* 4 KiB on the stack: no allocation to fail */
        if (n <= SPREAD_MAX && dagger__topo_spread(n, cpus))
            for (int i = 0; i < n; i++)
                p->w[i].first_cpu = cpus[i];
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]) != 0) {
            atomic_store(&p->shutdown, 1);
            notify(p, 1);
            for (int k = 0; k < i; k++)
                pthread_join(p->w[k].thread, NULL);
            for (int k = 0; k < n; k++) {
                dq_destroy(&p->w[k].dq);
                if (p->w[k].spare) {
                    dagger__fiber_free(p->w[k].spare);
                    dagger__free(p->w[k].spare);
                }
            }
            while (p->fibers) {
                struct dagger__fiber *f = p->fibers;
                p->fibers = f->next;
                dagger__fiber_free(f);
                dagger__free(f);
            }
            ext_close(p);
            free(p->w);
            pool_block_free(p);
            return dagger__set_errmsg(DAGGER_ENOMEM, "cannot start worker thread %d", i);
        }
    }
    *out = p;
    return 0;
}

void dagger__pool_close(dagger__pool *p)
{
    atomic_store(&p->shutdown, 1);
    atomic_fetch_add(&p->epoch, 1);
    dagger__futex_wake(&p->epoch, INT_MAX);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->w[i].thread, NULL);
    pthread_mutex_lock(&p->aux_lock);
    pthread_cond_broadcast(&p->aux_cond);
    int naux = p->aux_threads;
    pthread_mutex_unlock(&p->aux_lock);
    for (int i = 0; i < naux; i++)
        pthread_join(p->aux_tid[i], NULL);
    for (int i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        if (w->spare) {
            dagger__fiber_free(w->spare);
            dagger__free(w->spare);
        }
        dq_destroy(&w->dq);
    }
    while (p->fibers) {
        struct dagger__fiber *f = p->fibers;
        p->fibers = f->next;
        dagger__fiber_free(f);
        dagger__free(f);
    }
    ext_close(p);
    dagger__free(p->heap);
    pthread_mutex_destroy(&p->heap_lock);
    pthread_mutex_destroy(&p->fiber_lock);
    pthread_mutex_destroy(&p->aux_lock);
    pthread_cond_destroy(&p->aux_cond);
    free(p->w);
    dagger__alloc_note_free();
    pool_block_free(p);
}
