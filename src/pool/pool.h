/* src/pool/pool.h - worker threads, work stealing, parking, and suspension of blocked jobs.
 *
 * The pool runs jobs; it knows nothing of tasks. The core embeds a struct dagger__job in each
 * task and gives the pool a run function. A job that must wait (a fetch of an unfinished task,
 * a group) calls dagger__pool_suspend from inside its run: its stack is kept and the worker
 * continues on another stack until someone submits the job again, which resumes it.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_POOL_H
#define DAGGER_SRC_POOL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dagger__fiber;
typedef struct dagger__pool dagger__pool;

struct dagger__job {
    _Atomic(struct dagger__job *) next; /* link in the injection queue, a mailbox, the aux queue */
    struct dagger__fiber *fiber;        /* non-NULL while suspended: submit resumes it */
    int32_t prio;                       /* 0 = default; != 0 goes through the priority queue */
    int32_t pin;                        /* -1 = any worker; >= 0 = only this worker */
    float occupancy;                    /* < 1 runs on the aux threads beside the workers */
    uint32_t seq;                       /* FIFO order among equal priorities */
};

/* Run a fresh job; may return another job to run at once on the same worker (a continuation
 * with no placement constraint), or NULL. */
typedef struct dagger__job *(*dagger__run_fn)(struct dagger__job *job, void *ud);

/* Called on a worker that is about to park (it found no work). */
typedef void (*dagger__idle_fn)(void *ud, int worker);
/* Called on a worker each time its own deque runs dry, before it looks elsewhere (core: the
 * finishes it counted for a sync group go to the group; src/core/task.c). */
typedef void (*dagger__dry_fn)(void);
/* Called on a worker whose plain spawn found its deque deep by its top and keeps the job `j` to
 * run at once (a streak of such spawns starts: DAGGER__POOL_DEEP_STREAK). */
typedef void (*dagger__deep_fn)(struct dagger__job *j);
/* A worker about to park asks it for spawns left in another worker's open bundle (src/core/task.c,
 * "Bundles"): < 0, it handed one to the pool (look again); 0, none open; > 0, one is open but
 * still filling: park at most that long (ns). */
typedef long (*dagger__stale_fn)(struct dagger__pool *p, int self);

/* A worker's open bundle of spawns as other threads see it (src/core/task.c, "Bundles"), a line
 * of its own: the state (a generation << 2 | DAGGER__BS_*), the spawns published so far, the
 * count the thread that closed it took (+ 1; 0: not yet known), the bundle, and what the other
 * workers saw of it first (written by them: the state's generation and the count, and when). */
enum { DAGGER__BS_IDLE = 0, DAGGER__BS_OPEN = 1, DAGGER__BS_CLOSED = 2 };
struct dagger__bundle_slot {
    _Atomic uint64_t state;
    _Atomic uint32_t n_pub;
    _Atomic uint32_t n_final;
    void *_Atomic b;
    _Atomic uint64_t seen;
};

/* spread: each worker starts on an allowed CPU of its own, then may run anywhere it is allowed
 * (dagger__topo_spread; false under DAGGER_BIND, which pins them after). */
int dagger__pool_open(dagger__pool **out, int nthreads, size_t stack_size, dagger__run_fn run,
                      dagger__idle_fn idle, dagger__dry_fn dry, void *ud, bool spread);
/* Stops and joins every thread; the caller has drained all work. */
void dagger__pool_close(dagger__pool *p);
int dagger__pool_size(const dagger__pool *p);
/* Workers parked or about to park (no work found); a hint, read without ordering. */
int dagger__pool_sleepers(const dagger__pool *p);

/* Make a ready job runnable (or resume a suspended one). Thread safety: any thread. */
void dagger__pool_submit(dagger__pool *p, struct dagger__job *j);
/* The same for a fresh job known to be plain (occupancy 1, no pin, no priority, not suspended),
 * without testing it. With `may_keep`, returns true, the job NOT submitted, when the calling
 * thread's own deque (a worker's, or the external slot it holds) holds DAGGER__POOL_DEEP - 1
 * jobs or more (an external slot: 64 a worker, at least 256, at most DAGGER__POOL_DEEP, minus
 * one): plenty for the thieves, so the caller runs this one itself (task.c, undeferred spawns)
 * or submits it with dagger__pool_submit. False: submitted. Thread safety: any thread. */
#define DAGGER__POOL_DEEP 1024
bool dagger__pool_submit_plain(dagger__pool *p, struct dagger__job *j, bool may_keep);

/* Set the function called where a streak of spawns past the deep mark starts (NULL: none).
 * Thread safety: before any spawn. */
void dagger__pool_set_deep(dagger__pool *p, dagger__deep_fn fn);
/* A count of worker w's bundles of spawns taken by whoever runs them (src/core/task.c,
 * "Bundles"), on a line of its own. Thread safety: any thread, w a worker of p. */
_Atomic uint32_t *dagger__pool_bundle_taken(dagger__pool *p, int w);
/* Worker w's open-bundle slot (above). Thread safety: any thread, w a worker of p. */
struct dagger__bundle_slot *dagger__pool_bundle_slot(dagger__pool *p, int w);
/* The count of bundles open on the pool's workers (raised when one opens, lowered when it stops
 * being open), which gates the look at every slot before a park. Thread safety: any thread. */
_Atomic uint32_t *dagger__pool_bundles_open(dagger__pool *p);
/* Set the function a worker calls before it parks (dagger__stale_fn; NULL: none). Thread safety:
 * any thread; set it before any spawn. */
void dagger__pool_set_stale(dagger__pool *p, dagger__stale_fn fn);
/* Whether pushes rely on the parking side's barrier (Linux membarrier) instead of a fence of
 * their own. Thread safety: any thread. */
bool dagger__pool_asym(const dagger__pool *p);
/* The heavy side of the asymmetric fence: every running thread of the process executes a full
 * barrier before it returns (a plain full fence where the pool has no asymmetric fences).
 * Thread safety: any thread. */
void dagger__pool_barrier(dagger__pool *p);
/* Wake one sleeping worker, if any and none is searching (as a push does). Thread safety: any
 * thread. */
void dagger__pool_wake_one(dagger__pool *p);
/* Another worker than the caller looks for work or sleeps for want of it (a hint, read without
 * a fence). Thread safety: any thread. */
bool dagger__pool_idle_hint(const dagger__pool *p);
/* Work is expected soon (a reply from another rank, the next task it sends): until `until_ns`
 * (dagger__now_ns), a worker that runs dry yields the core and looks again instead of parking,
 * so that the job arrives without a futex wake-up. Only ever extends the deadline. Thread
 * safety: any thread. */
void dagger__pool_linger(dagger__pool *p, uint64_t until_ns);
/* A worker that runs dry keeps searching, yielding the core, for `ns` before it parks (0: park
 * after the short spin). Thread safety: any thread. */
void dagger__pool_set_idle_spin(dagger__pool *p, uint64_t ns);
/* The deadline set by dagger__pool_linger (0: none yet); a hint. Thread safety: any thread. */
uint64_t dagger__pool_linger_until(const dagger__pool *p);
/* A thread outside the pool spins for a result (on): the CPU it spins on, so that the pool's
 * worker, where it has only one, yields that CPU at once when it runs dry rather than after its
 * pause rounds (an idle pool made the result); off clears it. One word for the pool: the latest
 * spinner's. A hint. Thread safety: any thread. */
void dagger__pool_ext_spin(dagger__pool *p, bool on);

/* The calling thread's pool and worker index (NULL, -1 outside any pool). Thread-local: read it
 * only in code that cannot suspend between the read and the use (a suspended task may resume on
 * another worker). */
struct dagger__self {
    const dagger__pool *pool;
    int index;
    uint64_t runs; /* tasks this thread started (the core counts them): the hold-back's measure */
    /* Plain spawns from a task that may still run at once without a read of the worker's `top`
     * while its deque looks deep by the cached one (DAGGER__POOL_DEEP_STREAK). */
    uint32_t deep_left;
};
extern __thread __attribute__((tls_model("initial-exec"))) struct dagger__self dagger__self_tls;

/* The same, out of line: for use after a call that may have suspended the caller (the compiler
 * may keep the thread pointer of before the call in a register). */
int dagger__pool_self_fresh(const dagger__pool *p);

/* After a spawn found the calling worker's deque deep by its `top` (dagger__pool_submit_plain
 * returned true), this many more plain spawns from a task that find it deep by the cached top run
 * at once on the spawner's stack without reading `top` again: each spawn of a flat loop past the
 * deep mark read that line (which the thieves write) in a call of its own. A steal that made
 * room is seen at the streak's end; the worker's own pops make room the cached top sees. 529 ->
 * 512 instructions a task (tools/icount.c, `flat`), core.parfor and core.empty 1-8 % faster
 * (bench/RESULTS.md, 2026-12-06 07:30). The check runs only for a spawn that found the deque
 * deep by the cached top: before the push it cost fib 9 instructions a task, and in the spawn
 * itself (task.c) the main thread's spawns 3-7 % in time (code layout). */
#define DAGGER__POOL_DEEP_STREAK 32

/* True (and one spawn taken) while the streak lasts. The caller is the worker whose deque looks
 * deep by its cached top (pool.c, submit_plain). */
static inline bool dagger__pool_still_deep(void)
{
    if (__builtin_expect(dagger__self_tls.deep_left == 0, 1))
        return false;
    dagger__self_tls.deep_left--;
    return true;
}

/* The worker index of the calling thread in `p`, or -1 (another pool, an aux or user thread). */
static inline int dagger__pool_self(const dagger__pool *p)
{
    return dagger__self_tls.pool == p ? dagger__self_tls.index : -1;
}

/* True when the caller runs a job on a worker of `p` and may therefore suspend. */
bool dagger__pool_can_suspend(const dagger__pool *p);

/* The calling worker's own deque, or the external slot the calling thread holds: take the
 * newest job (NULL when empty or neither), or put one back. */
struct dagger__job *dagger__pool_pop_local(dagger__pool *p);
void dagger__pool_push_local(dagger__pool *p, struct dagger__job *j);

/* Whether work handed to the pool now would find a taker soon: on a worker of `p`, its own deque
 * is empty and `p` has another worker (a thief found nothing there, or will not); elsewhere,
 * a worker is parked. A hint, read without ordering: the lazy splits of dagger_parallel_for ask
 * it between leaves. Thread safety: any thread. */
bool dagger__pool_hungry(const dagger__pool *p);

/* For a thread outside the pool that waits: take up to `max` jobs from the injection queue (jobs
 * submitted from outside the workers) that may run on any thread, linked through ->next, or
 * NULL. A suspended job found there goes back (it resumes on a worker only). Thread safety:
 * any thread. */
struct dagger__job *dagger__pool_take_injected(dagger__pool *p, int max);
/* For a thread outside the pool that waits for job `j`: take `j` from the injection queue when
 * it is the next job there and the priority queue is empty (the workers would take those
 * first); false, nothing taken, otherwise. The caller checks ->fiber (a resumption goes back
 * with dagger__pool_hand_off). Thread safety: any thread. */
bool dagger__pool_take_injected_if(dagger__pool *p, struct dagger__job *j);
/* For a thread outside the pool that waits: one job from the top of a worker's deque, taken as
 * a thief does, or NULL. It may be a suspended job (its ->fiber set) or one the caller may not
 * run: the caller hands it off (dagger__pool_hand_off). Thread safety: any thread. */
struct dagger__job *dagger__pool_steal_any(dagger__pool *p);

/* External slots: a thread outside the pool that opens a sync group claims one (a deque of its
 * own, up to 8 threads at a time per pool; nested claims by the holder count up). While it holds
 * it, the plain jobs it submits go to that deque instead of the injection queue: workers steal
 * them from it, and the thread pops them back (newest first) to run them at its group's end.
 * Claim returns false, nothing held, on a worker or aux thread, when the thread holds the slot of
 * another pool, or when every slot is taken. Release undoes one claim; the last leaves any job
 * still in the deque to the thieves. Thread safety: the calling thread's own slot only. */
#define DAGGER__POOL_EXT_SLOTS 8
bool dagger__pool_ext_claim(dagger__pool *p);
void dagger__pool_ext_release(dagger__pool *p);
bool dagger__pool_ext_held(const dagger__pool *p);
/* The slot the calling thread holds: its pool and n + k for slot k (n: the pool's size), or
 * {NULL, -1}. Thread-local, as dagger__self_tls. */
struct dagger__ext_self {
    const dagger__pool *pool;
    int counter;
};
extern __thread __attribute__((tls_model("initial-exec"))) struct dagger__ext_self dagger__ext_tls;
/* The calling thread's index among p's credit holders beyond its workers (core_int.h): n + k
 * while it holds slot k of p, else -1. */
static inline int dagger__pool_ext_counter(const dagger__pool *p)
{
    int c = dagger__ext_tls.counter;
    return c >= 0 && dagger__ext_tls.pool == p ? c : -1;
}
/* The newest job of the caller's slot, or NULL (none held, or empty). */
struct dagger__job *dagger__pool_ext_pop(dagger__pool *p);
/* Give a job to the workers (the injection queue), whoever calls: for a job the calling thread
 * took but must not run (a suspended task's resumption, another group's task), or one for the
 * first worker that looks (a bundle of spawns: src/core/task.c, "Bundles"). */
void dagger__pool_hand_off(dagger__pool *p, struct dagger__job *j);

/* Suspend the running job `self`: switch to a fresh stack, call arm(arg) there (arm must make
 * sure the job is submitted later, e.g. by enqueueing a waiter; it may submit it at once), and
 * return 0 when the job is resumed, possibly on another worker. Returns DAGGER_ENOMEM, without
 * calling arm, when no stack can be had: the caller's wait then fails (see event_wait). */
int dagger__pool_suspend(dagger__pool *p, struct dagger__job *self, void (*arm)(void *), void *arg);

/* The pthread of worker i (0 <= i < dagger__pool_size). */
pthread_t dagger__pool_thread(const dagger__pool *p, int i);

/* ---------------------------------------------------------------- the machine (topo.c) */

enum { DAGGER__BIND_NONE = 0, DAGGER__BIND_CORE = 1 };
/* The default worker count: CPUs of the affinity mask, lowered to a cgroup CPU quota. */
int dagger__topo_default_threads(void);
/* CPUs (rounded up) of a cgroup v2 cpu.max text ("150000 100000"; v1 "quota period" too):
 * 0 for no limit ("max", "-1"), -1 when malformed. */
int dagger__topo_parse_cpu_max(const char *text);
/* DAGGER_BIND into *mode. Returns 0, or DAGGER_EINVAL naming the accepted values. */
int dagger__topo_bind_mode(int *mode);
/* Pin the workers of `p` one per allowed core (DAGGER__BIND_CORE); nothing for NONE. */
int dagger__topo_bind(dagger__pool *p, int mode);
/* Where the n workers of a pool without DAGGER_BIND start: cpus[i] is the i-th CPU of the
 * calling thread's affinity mask counted from the one after the CPU it runs on, round robin
 * (each worker then widens its affinity back to that mask). Returns 0 (every cpus[i] -1) when
 * fewer than 2 CPUs are allowed or the mask cannot be read: nothing to spread. */
int dagger__topo_spread(int n, int *cpus);
/* The calling thread moves to `cpu`, then allows again every CPU of its mask: a first placement,
 * not a pin. Returns the CPU it ran on there, -1 when it could not move. */
int dagger__topo_place_self(int cpu);
/* The CPU worker i ran on right after its first placement (-1: not placed). Read after a task
 * that ran on that worker (tests). */
int dagger__pool_first_cpu(const dagger__pool *p, int i);
/* DAGGER_BLAS_THREADS (default 1, or 'keep') applied to the loaded BLAS libraries.
 * Returns 0 or DAGGER_EINVAL naming the accepted values. */
int dagger__topo_blas_default(void);
/* One line: workers, binding, packages/cores/CPUs, the allowed CPUs and the cgroup quota. */
void dagger__topo_describe(char *buf, size_t cap, int nworkers, int mode);

#endif /* DAGGER_SRC_POOL_H */
