/* src/core/core_int.h - task, context, error and queue-frame records of the core.
 *
 * Only files of src/core include this.
 * Invariants: a task's `waiters` is closed (dagger__ev_closed) exactly when the task is done;
 * `pending` counts unfinished dependencies plus holds (the spawn itself, an open bulk queue) and
 * the task is submitted once, by whoever brings it to 0; `refs` counts the user's handles, the
 * runtime's reference (dropped, handed to dependents or left to the handles at completion),
 * dependents that have not completed, and a group's record of its first error, plus the marks
 * of the waiter word (handles released before the completion: what is held is refs - marks).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_CORE_INT_H
#define DAGGER_SRC_CORE_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "core/core.h"
#include "pool/pool.h"
#include "sched/sched.h"

/* W_DEP_LAZY: a dependent's node that holds no reference on the input yet: the input's
 * completion takes one for each such node at once, when it serves them (task.c, serve). */
enum { W_DEP = 1, W_FIBER, W_THREAD, W_CALL, W_DEP_LAZY };

/* The waiter word of an event (struct dagger__event's head): the list of waiters, a pointer with
 * its low 3 bits and its top 16 free, and tags in those bits. Every event uses bit 0: closed (the
 * event fired, a task is done; the list was taken then). A task's word uses the others too, so
 * that its completion takes one locked operation where a close and a drop of the runtime's
 * reference took two (task.c, complete and dagger_task_release):
 * - bits 48-63, the marks: a handle released before the completion adds a mark here instead of
 *   taking one from `refs` (a decrement there could make the completion's choice below stale);
 *   what the handles hold is then refs - marks, and the completion reads both;
 * - bit 1, abandoned (a closed task only): nobody waited, handles were still held, and the
 *   completion closed the word in one compare-and-swap and left the runtime's reference in
 *   `refs` for the last handle to drop: the record goes when refs falls to marks + 1;
 * - bit 2, folded: a release found EV_MARK_MAX marks and folded them into `refs` (rare; the
 *   completion then trusts no choice made without a compare-and-swap on the word).
 * Other events only ever hold a list or EV_CLOSED. */
#define EV_CLOSED ((struct dagger__waiter *)1)
#define EV_ABANDONED ((uintptr_t)2)
#define EV_FOLDED ((uintptr_t)4)
#define EV_MARK_SHIFT 48
#define EV_MARK_ONE ((uintptr_t)1 << EV_MARK_SHIFT)
#define EV_MARK_MAX 0xFFFFu
#define EV_LIST_MASK ((EV_MARK_ONE - 1) & ~(uintptr_t)7)
_Static_assert(sizeof(uintptr_t) == 8, "the waiter word keeps tags in a 64-bit pointer");

static inline bool dagger__ev_closed(const struct dagger__waiter *h) { return (uintptr_t)h & 1; }
static inline struct dagger__waiter *dagger__ev_list(const struct dagger__waiter *h)
{
    return (struct dagger__waiter *)((uintptr_t)h & EV_LIST_MASK);
}
static inline uint32_t dagger__ev_marks(const struct dagger__waiter *h)
{
    return (uint32_t)((uintptr_t)h >> EV_MARK_SHIFT);
}

struct scratch {
    struct scratch *next;
    size_t size; /* SCRATCH_CHUNK: bytes hold a chunk to release */
    char bytes[];
};
#define SCRATCH_CHUNK SIZE_MAX

/* An input: node.argi is the argument index, or -1 for a syncdep. 32 bytes. */
struct dep {
    struct dagger__waiter node;
    dagger_task_t *task;
};

/* The origin of a failure, shared by every task it failed. */
struct root {
    _Atomic uint32_t refs;
    int code;
    int thread;
    uint64_t id;
    char *name;
    char *text;
};

struct err {
    int code;
    char *msg;   /* the whole message of this task */
    char *chain; /* "7 <- 5 <- 3": this task back to the root */
    struct root *root;
};

/* A WAITALL block's count of its tasks. Only the block's owner spawns into it, so the number
 * spawned is a plain counter. A task that finishes while the block is open adds 1 to its
 * worker's slot (no shared cache line per task). At the end the owner publishes the target,
 * moves every slot's count into `drained` (an exchange per slot) and waits until `drained`
 * reaches the target; a task that finishes after the target is published adds to `drained`
 * directly, and the one whose addition reaches the target fires the event. A finisher that
 * counted in its slot and then sees the target moves its slot's count itself: the slot's
 * read-modify-write and the owner's exchange are ordered (seq_cst), so every count reaches
 * `drained` exactly once, either way. The cost per finished task is O(1) whatever the number
 * of workers. */
struct gslot {
    _Atomic int64_t done;   /* counted here, not yet moved to drained */
    _Atomic int32_t active; /* a finisher is between counting and leaving the group */
} __attribute__((aligned(DAGGER_CACHELINE)));

struct group {
    int64_t spawned;   /* the owner only */
    int64_t home_done; /* finishes on the home thread (below), counted there without atomics */
    /* The home thread runs the group's tasks at its end (fetch.c, dagger__task_help_group): its
     * finishes still count in home_done, which it adds to `drained` when it stops. */
    bool home_ending;
    /* Its plain spawns of a tiny function may run at once (task.c, "Tiny functions"): a group
     * of a thread outside the pool that holds a slot of the pool, its own (then known small: the
     * last group opened at the same call site had at most DAGGER__TINY_GROUP_MAX spawns) or a
     * task's it runs for a group it ends or past its deep mark (queue.c). */
    bool keep;
    /* The owner writes `spawned` at each spawn; finishers read the fields below at each
     * finish: they are kept off its cache line. */
    char pad[DAGGER_CACHELINE];
    _Atomic int64_t target;  /* -1 while the block is open */
    _Atomic int64_t drained; /* counts moved out of the slots, and finishes after the target */
    struct dagger__event ev;
    _Atomic(dagger_task_t *) first_err; /* retained */
    struct gslot *slots;
    int nslots; /* workers + 1 */
    /* The thread that opened the group when it is outside every pool (main, or a task it runs):
     * such a thread never suspends, so the group ends there, after every finish counted there
     * (&dagger__helping_tls of that thread, as a token; NULL on a worker). */
    const void *home;
};

/* queue_begin_at (queue.c) sets every field of a new frame and of its group, one by one: a field
 * added here is set there too. */
struct frame {
    struct frame *up;
    dagger_ctx_t *ctx;
    unsigned mode;
    struct group group;   /* DAGGER_QUEUE_WAITALL */
    dagger_task_t *last;  /* DAGGER_QUEUE_SEQUENTIAL: retained */
    dagger_task_t **held; /* DAGGER_QUEUE_BULK: retained, each with a hold on pending */
    size_t nheld, capheld;
    dagger__task_spawn_hook_fn hook; /* a feature region that takes over spawn */
    void *hook_ud;
    bool ext;         /* WAITALL on a thread outside the pool: it holds a pool slot (pool.h) */
    const void *site; /* WAITALL of the main thread's own: where it was opened (queue.c) */
};

/* Inline storage of the arguments (16 bytes each) and inputs (32 bytes each): the arguments
 * from the front, the inputs right after them (spawn's one-pass path) or from the back (its
 * general path); a task whose arguments and inputs do not fit (8
 * arguments, 4 arguments and 2 inputs, 4 inputs) takes heap arrays, whose sizes live in the
 * extension record. 128 bytes: the shapes of the benchmarks (a tree node: 3 arguments and 1
 * input; a wavefront cell: 2 inputs and 2 arguments) fit, as they did before the record shrank;
 * at 64 they went to the heap. */
#define INLINE_BYTES 128
union task_inline {
    dagger_value_t v[INLINE_BYTES / sizeof(dagger_value_t)];
    struct dep d[INLINE_BYTES / sizeof(struct dep)];
};

enum { T_PENDING = 0, T_RUNNING = 1, T_DONE = 2 };
/* flags: set at spawn, before the task is published, except TF_DEFERRED (set by its own body) */
enum {
    TF_NAME_OWNED = 1u << 0,
    TF_CHUNK_RESULT = 1u << 1,   /* DAGGER_TASK_CHUNK_RESULT */
    TF_MUTABLE_RESULT = 1u << 2, /* DAGGER_TASK_MUTABLE_RESULT */
    TF_DEFERRED = 1u << 3,       /* the body returned; an executor completes it later */
    TF_HAS_DEPS = 1u << 4,
    TF_OWNED_ARGS = 1u << 5,   /* an argument owns a copy or a reference: drop_args walks them */
    TF_RESULT_HOME = 1u << 6,  /* DAGGER__TASK_RESULT_HOME */
    TF_RESULT_THERE = 1u << 7, /* DAGGER__TASK_RESULT_THERE */
    TF_EARLY = 1u << 8,        /* sent to another rank before it was ready (ctx->early) */
    TF_TIMED = 1u << 9,        /* its runs are timed for the cost model: a job, or opts.impls */
    TF_LAZY_DEPS = 1u << 10,   /* inputs taken without a reference, not yet registered */
    TF_TINY_TIMED = 1u << 11,  /* a tiny function's, queued to be timed (task.c, keep_tiny) */
    TF_AT_SPAWN = 1u << 12,    /* run by its spawn, its one handle not yet returned (complete) */
};

/* The rarely used fields of a task: options few tasks set (userdata, hooks, implementations, a
 * scope), hooks of the features (a datadeps guard, a cancel hook, an executor's deferral) and a
 * bulk block's hold. Allocated on first use (task_ext_get in task.c), published with a release
 * CAS; readers load `x` with acquire and treat NULL as all fields zero. Freed with the task. */
struct task_ext {
    _Atomic(dagger__wait_guard_fn) guard_fn; /* set and cleared by a datadeps region */
    void *_Atomic guard;
    struct frame *_Atomic held_by; /* the bulk frame holding it, while held; read by waiters */
    void (*launch)(dagger_task_t *t, void *ud); /* dagger__task_defer */
    void *launch_ud;
    dagger__cancel_hook_fn cancel_fn;
    void *cancel_ud;
    void *ud;                          /* opts.userdata */
    dagger_restore_fn_t restore;       /* opts.restore (hooks.c) */
    dagger_checkpoint_fn_t checkpoint; /* opts.checkpoint (hooks.c) */
    const struct dagger_impl *impls;   /* dagger_task_opts_t.impls (caller storage) */
    uint32_t nimpls;
    float expected;             /* opts.expected_time (seconds; 0 unknown), for the cost model */
    float ran;                  /* seconds its body ran, measured in a job of several ranks */
    void *exec_ud;              /* an executor's record, when placement replaced the body */
    dagger_scope_t *scope;      /* retained; NULL = any */
    uint32_t capargs, capdeps;  /* heap arrays' entries (free with these sizes); 0: inline */
    dagger_task_t *nested_fail; /* the last failed task its body fetched (+1), while running */
    struct scratch *scratch;    /* copies made by dagger_str_copy, freed at completion */
    _Atomic int elsewhere;      /* 1 + the rank running it (a proxy: dagger__task_set_elsewhere) */
    void *early_rec;            /* the ranks backend's record of an early send (TF_EARLY) */
};

/* `cancel` values: a cancel request, or a hook that could not be recorded (out of memory for the
 * task's extension record), which fails the task the same way with its own message. */
enum { CANCEL_REQ = 1, CANCEL_NOMEM = 2 };

/* The record is laid out by who touches it. A task that another worker steals crosses cores
 * twice (its spawner writes it, the thief reads and finishes it, the spawner reuses it), so
 * every line the thief touches costs two transfers: the lines that running and finishing any
 * task read or write come first (the job and the counts; what run reads; the result and the
 * inputs' array), then the inline argument storage, whose first two values share the third
 * line, and last what only the spawner, a waiter or a trace reads (id, name, parent, frames).
 * A stolen task of one or two arguments touches three lines of the five (four before:
 * bench/RESULTS.md, 2026-12-03 16:40 UTC). */
struct dagger_task {
    /* line 0 */
    struct dagger__job job; /* first: the pool sees tasks as jobs */
    _Atomic uint32_t refs;
    _Atomic uint32_t pending;
    _Atomic uint32_t state;
    _Atomic uint32_t cancel; /* CANCEL_REQ or CANCEL_NOMEM */
    _Atomic uint32_t place;  /* != 0: placement must decide (a scope, chunk or shard input) */
    int rc;                  /* valid once state is T_DONE */
    struct dagger__event waiters;
    /* line 1 */
    dagger_ctx_t *ctx;
    dagger_fn_t fn;
    dagger_value_t *args;
    struct group *group;
    struct err *err;
    struct task_ext *_Atomic x; /* the rare fields, NULL until one is set */
    int argerr;                 /* set by a failing argument accessor */
    uint32_t flags;
    uint32_t nargs, ndeps;
    /* line 2 */
    dagger_value_t result;
    _Atomic uint8_t unseen;   /* 1: failed, counted in ctx->unfetched, error not read yet */
    _Atomic uint8_t external; /* completes from outside the workers: waiters do not spin */
    uint16_t help_depth;      /* nesting of tasks run inline by waiting parents (see help()) */
    int16_t thread;           /* worker it last ran on */
    struct dep *deps;
    union task_inline inl; /* see INLINE_BYTES; from byte 160: values 0-1 on line 2 */
    /* cold: the spawner's, a waiter's or a trace's */
    uint64_t id;
    const char *name;
    dagger_task_t *parent; /* the task that spawned it (never dereferenced: compared only) */
    struct frame *frames;  /* queue blocks opened inside this task */
};

/* include/dagger.h reads these three inline (its accessors' common case). */
_Static_assert(offsetof(struct dagger_task, ctx) == DAGGER__TASK_CTX_OFFSET &&
                   offsetof(struct dagger_task, args) == DAGGER__TASK_ARGS_OFFSET &&
                   offsetof(struct dagger_task, nargs) == DAGGER__TASK_NARGS_OFFSET,
               "the offsets include/dagger.h reads match the task record");

/* The extension record of `t`, or NULL when none of its fields was ever set. */
static inline struct task_ext *dagger__task_x(const dagger_task_t *t)
{
    return atomic_load_explicit(&((dagger_task_t *)t)->x, memory_order_acquire);
}
/* Whether `t` may run on a thread outside the pool that waits for it (a fetch from main, the end
 * of a sync group): no scope, no placement to decide, no chunk result to home in a worker's
 * memory space. Such a task reports thread -1 (dagger_tc_thread), as on an aux thread. */
static inline bool dagger__task_runs_anywhere(const dagger_task_t *t)
{
    const struct task_ext *x = dagger__task_x(t);
    return (!x || !x->scope) && !atomic_load_explicit(&t->place, memory_order_relaxed) &&
           !(__atomic_load_n(&t->flags, __ATOMIC_RELAXED) & (TF_MUTABLE_RESULT | TF_CHUNK_RESULT));
}
/* task.c: the extension record of `t`, allocated (zeroed) on first use; NULL when out of memory.
 * Safe from any thread: racing allocations agree on one record. */
struct task_ext *dagger__task_ext_get(dagger_task_t *t);

/* Counters that every task touches (tasks in flight, task records alive) are kept per worker
 * as credits so that spawning and finishing touch no shared cache line: a worker takes
 * CREDIT_BATCH from the global count at a time, spends one per spawn, gets one back per
 * completion, and gives back what it holds before it parks. The global count is then the true
 * count plus the credits held, so it reads 0 only when nothing is in flight and no worker holds
 * credit. A thread that holds an external slot of the pool (a sync group it opened: pool.h) has
 * credits of its own (index n + k), given back when its group ends; other threads that are not
 * workers update the global count directly. */
enum { CNT_INFLIGHT = 0, CNT_LIVE = 1, CNT_N };
#define CREDIT_BATCH 64

struct credit {
    int64_t n[CNT_N]; /* owner worker only */
} __attribute__((aligned(DAGGER_CACHELINE)));

/* The record count of a thread outside the pool that holds no external slot (main spawning
 * without a group, releasing its handles after one) is kept the same way, in an account of its
 * own, claimed at its first spawn or release in the context: a locked operation on the global
 * count at each was 2 of a round trip from main and 120 of a run of core.nested. The in-flight
 * count stays global for such threads: a drain waits for it to reach 0 and is woken by the
 * crossing, which credits held by a thread that does not come back would prevent. Close
 * subtracts the accounts' credits from the record count (their owners are done with the
 * context by then, as they are with their slots: dagger_ctx_close) and a forced close folds
 * them into it (acct_gen ACCT_CLOSED: no account from then on). Owner writes, relaxed: close reads.
 */
#define DAGGER__CTX_ACCOUNTS 16
struct account {
    _Atomic int64_t live;    /* credits, as struct credit's n[CNT_LIVE] */
    _Atomic uintptr_t owner; /* the owning thread's token (dagger__acct_tls' address), 0: free */
} __attribute__((aligned(DAGGER_CACHELINE)));
/* acct_gen of a force-closed context: no thread's cache holds it (a cache starts at 0, and
 * contexts' generations count from 1). */
#define ACCT_CLOSED UINT64_MAX
struct dagger__acct_tls {
    uint64_t gen; /* the acct_gen of the context the account below belongs to */
    int idx;      /* its index in ctx->acct, -1: none left (the global count then) */
};
extern DAGGER_TLS struct dagger__acct_tls dagger__acct_tls;

struct dagger_ctx {
    dagger__pool *pool;
    dagger__executor exec[DAGGER__EXEC_COUNT]; /* by processor kind, then remote; immutable */
    int nthreads;
    /* A thread outside the pool that waits spins this long (ns) before it sleeps, when the
     * workers leave a core free for it (fewer workers than CPUs, no ranks); else 0. */
    uint64_t wait_spin_ns;
    /* The workers take every core and no ranks are attached: such a thread's spin yields the
     * core every WAIT_YIELD_EVERY rounds (event.c), so that a worker it shares a core with runs. */
    bool wait_yields;
    int rank, nranks; /* this process in the job (0 and 1 without ranks); set at open */
    void *ranks;      /* the ranks backend's state (src/net/mpi), NULL without ranks */
    uint64_t gen;
    struct credit *credit;     /* one per worker, then one per external slot of the pool */
    struct account *acct;      /* DAGGER__CTX_ACCOUNTS of them */
    _Atomic uint64_t acct_gen; /* gen while accounts are kept; ACCT_CLOSED after a forced close */
    uint32_t magic;      /* CTX_MAGIC while open, CTX_CLOSED after (debug builds check spawns) */
    unsigned open_flags; /* dagger_opts.flags (DAGGER_OPEN_SPMD) */
    /* The ranks backend's early send (dagger__ctx_set_ranks_early); NULL without ranks. */
    bool (*early)(void *ud, dagger_task_t *t, void **rec);
    void (*early_ready)(void *ud, dagger_task_t *t, void *rec, bool failed);
    /* The fields above are read at every task by every worker; those below are written: a
     * thread outside the pool adds to `count` at each spawn and release. A cache line of
     * padding on each side keeps them apart whatever the record's alignment (calloc gives 16
     * bytes): with `count` beside `credit` and `nranks`, a spawn from main cost a cache miss
     * on the worker and an exclusive-line wait on main (core.nested t=1). */
    char pad_read[DAGGER_CACHELINE];
    _Atomic int64_t count[CNT_N]; /* global counts, see struct credit */
    _Atomic uint32_t drain_word;  /* bumped when the in-flight count reaches 0 */
    _Atomic uint32_t drainers;    /* threads waiting on drain_word: woken only when > 0 */
    _Atomic uint64_t next_id;
    _Atomic uint32_t rr;       /* round robin among a scope's threads */
    _Atomic int64_t unfetched; /* failed tasks whose error nobody read (see observe_failure) */
    /* Set by a forced close that left task records alive: the last record's release frees the
     * context (the records point at it); `reaped` makes sure exactly one side frees it. */
    _Atomic int zombie;
    _Atomic int reaped;
    _Atomic int acct_claims;  /* accounts claimed so far (at most DAGGER__CTX_ACCOUNTS) */
    _Atomic uint32_t rr_rank; /* round robin of long independent tasks over the ranks */
    char pad_written[DAGGER_CACHELINE];
};

/* ctx.c: the global count `which` reached 0: signal a drain, or reap a force-closed context. */
void dagger__ctx_global_zero(dagger_ctx_t *ctx, int which);
/* The global counts (see struct credit). Inline: a thread outside the pool counts here at every
 * task it spawns, runs or releases. */
static inline void dagger__ctx_global_add(dagger_ctx_t *ctx, int which, int64_t delta)
{
    /* seq_cst: the crossing of 0 pairs with a drainer's count of itself (ctx.c) */
    int64_t before = atomic_fetch_add_explicit(&ctx->count[which], delta, memory_order_seq_cst);
    if (DAGGER_UNLIKELY(before + delta == 0))
        dagger__ctx_global_zero(ctx, which);
}
/* ctx.c: the calling thread's account in ctx, claimed now (see struct account); -1: none. */
int dagger__ctx_account_claim(dagger_ctx_t *ctx);
/* Count `delta` records on the calling thread's account (a thread outside the pool without a
 * slot); false when it has none: the caller counts on the global count. */
static inline bool dagger__ctx_account_live(dagger_ctx_t *ctx, int64_t delta)
{
    int a = DAGGER_LIKELY(dagger__acct_tls.gen ==
                          atomic_load_explicit(&ctx->acct_gen, memory_order_relaxed))
                ? dagger__acct_tls.idx
                : dagger__ctx_account_claim(ctx);
    if (DAGGER_UNLIKELY(a < 0))
        return false;
    _Atomic int64_t *c = &ctx->acct[a].live;
    int64_t v = atomic_load_explicit(c, memory_order_relaxed);
    if (delta > 0) {
        if (DAGGER_UNLIKELY(v < delta)) {
            dagger__ctx_global_add(ctx, CNT_LIVE, CREDIT_BATCH + delta);
            v += CREDIT_BATCH + delta;
        }
        v -= delta;
    } else {
        v -= delta;
        if (DAGGER_UNLIKELY(v > 4 * CREDIT_BATCH)) {
            dagger__ctx_global_add(ctx, CNT_LIVE, CREDIT_BATCH - v);
            v = CREDIT_BATCH;
        }
    }
    atomic_store_explicit(c, v, memory_order_relaxed);
    return true;
}
static inline void dagger__ctx_count_w(dagger_ctx_t *ctx, int w, int which, int64_t delta)
{
    if (DAGGER_UNLIKELY(w < 0) && (w = dagger__pool_ext_counter(ctx->pool)) < 0) {
        if (which != CNT_LIVE || !dagger__ctx_account_live(ctx, delta))
            dagger__ctx_global_add(ctx, which, delta);
        return;
    }
    int64_t *c = &ctx->credit[w].n[which];
    if (delta > 0) {
        if (DAGGER_UNLIKELY(*c < delta)) {
            dagger__ctx_global_add(ctx, which, CREDIT_BATCH + delta);
            *c += CREDIT_BATCH + delta;
        }
        *c -= delta;
    } else {
        *c -= delta;
        if (DAGGER_UNLIKELY(*c > 4 * CREDIT_BATCH)) {
            int64_t give = *c - CREDIT_BATCH;
            *c = CREDIT_BATCH;
            dagger__ctx_global_add(ctx, which, -give);
        }
    }
}

/* Both counts on worker (or slot) w's credit line at once, by the same `delta`: +1 at a spawn,
 * -1 when a task completes and its record goes with it (a detached task). One test of the
 * line's two credits; past either mark, each count settles as dagger__ctx_count_w does it, the
 * record count first (the order of task_free, then the completion's count). */
static inline void dagger__ctx_count_both_w(dagger_ctx_t *ctx, int w, int64_t delta)
{
    int64_t *c = ctx->credit[w].n;
    if (delta > 0 ? DAGGER_LIKELY(c[CNT_LIVE] >= delta && c[CNT_INFLIGHT] >= delta)
                  : DAGGER_LIKELY(c[CNT_LIVE] - delta <= 4 * CREDIT_BATCH &&
                                  c[CNT_INFLIGHT] - delta <= 4 * CREDIT_BATCH)) {
        c[CNT_LIVE] -= delta;
        c[CNT_INFLIGHT] -= delta;
        return;
    }
    dagger__ctx_count_w(ctx, w, CNT_LIVE, delta);
    dagger__ctx_count_w(ctx, w, CNT_INFLIGHT, delta);
}

/* Both counts of a spawn from a thread outside the pool without a slot: the record on its
 * account (or the global count), the task in flight on the global count. An increment never
 * brings a count to 0 (a count is the true one plus credits, both >= 0): no drain to signal
 * nor record to reap. The record first, as a spawn from a worker counts it. */
static inline void dagger__ctx_global_spawned(dagger_ctx_t *ctx)
{
    if (!dagger__ctx_account_live(ctx, 1))
        atomic_fetch_add_explicit(&ctx->count[CNT_LIVE], 1, memory_order_acq_rel);
    atomic_fetch_add_explicit(&ctx->count[CNT_INFLIGHT], 1, memory_order_acq_rel);
}
/* Spawns made on this thread outside the pool's workers (fetch.c reads it around a task it runs
 * itself, to learn whether the task's function spawns). */
extern DAGGER_TLS uint64_t dagger__outside_spawns;
/* fetch.c: the context of the task this thread outside the pool runs itself (run_awaited) until
 * the task spawns; then dagger__task_awaited_spawn claims an external slot for the rest of it. */
extern DAGGER_TLS dagger_ctx_t *dagger__awaited_ctx;
void dagger__task_awaited_spawn(dagger_ctx_t *ctx);
/* A spawn's counts: a task record alive and a task in flight. Inlined in every build: link-time
 * optimisation put it out of line once code elsewhere in the spawn grew (core.nested_groups and
 * core.empty_ext 4-7 % slower). */
__attribute__((always_inline)) static inline void dagger__ctx_count_spawn(dagger_ctx_t *ctx, int w)
{
    if (DAGGER_UNLIKELY(w < 0)) {
        dagger__outside_spawns++;
        if ((w = dagger__pool_ext_counter(ctx->pool)) < 0) {
            dagger__ctx_global_spawned(ctx);
            return;
        }
    }
    dagger__ctx_count_both_w(ctx, w, 1);
}

/* Add `w` to the waiters of `ev`, keeping the word's tags; false when `ev` is closed. */
static inline bool dagger__event_push(struct dagger__event *ev, struct dagger__waiter *w)
{
    DAGGER_ASSERT(!((uintptr_t)w & ~EV_LIST_MASK)); /* a user-space address, 8-byte aligned */
    struct dagger__waiter *head = atomic_load_explicit(&ev->head, memory_order_acquire);
    struct dagger__waiter *nw;
    do {
        if (dagger__ev_closed(head))
            return false;
        w->next = dagger__ev_list(head);
        nw = (struct dagger__waiter *)((uintptr_t)w | ((uintptr_t)head & ~EV_LIST_MASK));
    } while (!atomic_compare_exchange_weak_explicit(&ev->head, &head, nw, memory_order_acq_rel,
                                                    memory_order_acquire));
    return true;
}

/* error.c */
const char *dagger__task_display_name(const dagger_task_t *t);
void dagger__task_err_free(struct err *e);
/* Record a failure that starts at `t` (it is the root); keeps the first one. Returns `code`. */
int dagger__task_fail(dagger_task_t *t, int code, const char *text);
int dagger__task_failf(dagger_task_t *t, int code, const char *fmt, ...) DAGGER_PRINTF(3, 4);
/* `t` fails because its input `d` (an argument, or a syncdep when d->argi < 0) failed. */
int dagger__task_fail_upstream(dagger_task_t *t, const struct dep *d);
/* `t` fails with `code` because `up` failed: `input` says how t used it ("input 2", "syncdep",
 * "nested fetch"). The message chains to the root cause like every upstream failure. */
int dagger__task_fail_chain(dagger_task_t *t, const dagger_task_t *up, const char *input, int code);
/* The error of the failed task `t` has been read: it no longer counts as unfetched. */
void dagger__task_observe_failure(const dagger_task_t *t);

void dagger__event_fire(struct dagger__event *ev, dagger_ctx_t *ctx);

/* Add `n` finished tasks to `drained` (after the target is published); the addition that
 * reaches the target fires the group's event. */
static inline void dagger__queue_group_drain(struct group *g, dagger_ctx_t *ctx, int64_t n)
{
    int64_t now = atomic_fetch_add_explicit(&g->drained, n, memory_order_acq_rel) + n;
    if (now == atomic_load_explicit(&g->target, memory_order_relaxed))
        dagger__event_fire(&g->ev, ctx);
}

/* The sync group the calling thread (outside the pool) is ending and running tasks of, and the
 * finishes of those tasks it has not yet added to the group's count: it adds them when it stops
 * running tasks (event.c), so that they cost no read-modify-write of a line the workers' finishes
 * write too. {NULL, 0} elsewhere. */
struct dagger__helping {
    struct group *g;
    int64_t done;
    /* Tasks this thread runs from its own spawns past its slot's deep mark (task.c,
     * run_undeferred): each works for the thread's group, as at its end, so a group of its own
     * ends by running its children from the slot (fetch.c, dagger__task_help_group). */
    int undeferred;
};
extern DAGGER_TLS struct dagger__helping dagger__helping_tls;
/* The calling thread, outside the pool, runs the current task for a group it ends itself, or
 * from its own spawn past its slot's deep mark (not one a fetch runs there: run_awaited), and
 * holds its slot of `pool`: that task ends its own groups by running their tasks from the slot
 * (fetch.c, dagger__task_help_group), and may keep its tiny spawns (queue.c, `keep`). */
static inline bool dagger__helping_outside(dagger__pool *pool)
{
    return (dagger__helping_tls.g != NULL || dagger__helping_tls.undeferred) &&
           dagger__pool_ext_held(pool);
}

/* Count `n` finished tasks of `g` on worker `w` (-1: not a worker of this context): through
 * w's slot of the group while its end has not begun, else on the drained count. */
__attribute__((always_inline)) static inline void
dagger__queue_group_done(struct group *g, dagger_ctx_t *ctx, int w, int64_t n)
{
    bool own = w >= 0 && w < g->nslots - 1; /* a worker's slot has one writer at a time */
    struct gslot *s = &g->slots[own ? w : g->nslots - 1];
    if (own)
        atomic_store_explicit(&s->active, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&s->active, 1, memory_order_relaxed);
    if (atomic_load_explicit(&g->target, memory_order_relaxed) >= 0) {
        dagger__queue_group_drain(g, ctx, n);
    } else {
        atomic_fetch_add_explicit(&s->done, n, memory_order_seq_cst);
        /* Pairs with the owner's store of the target and exchange of the slots (queue.c). */
        if (atomic_load_explicit(&g->target, memory_order_seq_cst) >= 0) {
            int64_t mine = atomic_exchange_explicit(&s->done, 0, memory_order_seq_cst);
            if (mine)
                dagger__queue_group_drain(g, ctx, mine);
        }
    }
    if (own)
        atomic_store_explicit(&s->active, 0, memory_order_release);
    else
        atomic_fetch_sub_explicit(&s->active, 1, memory_order_release);
}

/* The finishes of a sync group's tasks that a worker counted for itself, in a row: they go to
 * the group (dagger__group_flush) before the worker does anything else, that is before it
 * starts a task of another group (or of none), resumes a suspended task, looks for work
 * elsewhere (its own deque ran dry: the pool's dry hook), or ends a group; a group's end
 * therefore never waits for them. One locked addition for the run instead of one a task
 * (core.empty, core.parfor: every task). task.c. */
struct dagger__gcount {
    struct group *g; /* NULL: nothing counted */
    dagger_ctx_t *ctx;
    int w;
    int64_t n;
};
extern DAGGER_TLS struct dagger__gcount dagger__gcount_tls;
void dagger__group_flush_slow(void);
static inline void dagger__group_flush(void)
{
    if (DAGGER_UNLIKELY(dagger__gcount_tls.g != NULL))
        dagger__group_flush_slow();
}
/* dagger__group_flush out of line: the pool's dry hook (ctx.c). */
void dagger__group_flush_dry(void);

#define CTX_MAGIC 0xDA66E2u
#define CTX_CLOSED 0xC105EDu
/* Debug builds: the refs of a task record after its last release (kept a while, see task.c). */
#define REFS_DEAD 0xDEADDEADu
/* Debug builds: a use of a task record after its last release aborts with a message. */
#ifndef NDEBUG
#define TASK_MISUSE(t, what)                                                                       \
    DAGGER_MISUSE(atomic_load_explicit(&(t)->refs, memory_order_relaxed) != REFS_DEAD,             \
                  "%s: task %llu '%s' was used after its last handle was released", (what),        \
                  (unsigned long long)(t)->id, dagger__task_display_name(t))
#else
#define TASK_MISUSE(t, what) ((void)0)
#endif

/* ctx.c: free a force-closed context once its last task record is gone. */
void dagger__ctx_reap(dagger_ctx_t *ctx);

/* event.c: wait for the event of the sync group `g` at its end. A thread outside every pool
 * and task first runs the group's own tasks still in the injection queue (they report
 * processor -1, as on an aux thread), until the group is done or the queue holds none. */
int dagger__event_wait_group(dagger_ctx_t *ctx, struct group *g);

/* fetch.c: on a worker, run `j`, a ready child of the running task `me` that was never queued
 * (a spawn past a deep deque, task.c), on me's stack; false, nothing run, when the nesting of
 * tasks run this way (or by a waiting parent's help) is at its bound. With `me` NULL (a thread
 * outside the pool whose group's slot is deep), run `j` on this thread's stack. */
bool dagger__task_run_on_stack(dagger_task_t *me, struct dagger__job *j);

/* fetch.c: the running task `me` ends sync group `g` of ctx (its event `ev`): on a worker, it
 * runs its own children from the bottom of the worker's deque on its stack, as a fetch does,
 * until the group is done or no child is at hand (on a thread outside the pool that ends a group
 * of its own, from its slot, counting their finishes itself when it is g's home). True: done, no
 * need to suspend. */
bool dagger__task_help_group(dagger_task_t *me, dagger_ctx_t *ctx, struct dagger__event *ev,
                             struct group *g);

/* fetch.c: refuse a wait that can never end (message set). */
int dagger__task_check_wait(dagger_task_t *t, const char *what);

/* deadlock.c: DAGGER_EDEADLK (message set) when `t` depends, through its inputs and syncdeps,
 * on the running task `me`; 0 otherwise or when the bounded walk cannot tell. */
int dagger__task_check_dominated(dagger_task_t *me, dagger_task_t *t, const char *what);

/* hooks.c: run the restore hook; 1 when it gave the result (in *out), 0 to run the body. */
int dagger__task_restore(dagger_task_t *t, dagger_value_t *out);
/* hooks.c: run the checkpoint hook of a task that succeeded. */
void dagger__task_checkpoint(dagger_task_t *t);

/* task.c */
void dagger__task_set_cur(dagger_task_t *t);
/* Publish the calling thread's open bundle of spawns, if any (task.c, "Bundles"): before the
 * thread stops appending to it (a wait, a yield, a group's end, running dry). */
void dagger__task_bundle_flush(void);
/* The pool's call where a worker's spawn finds its deque deep (dagger__pool_set_deep). */
void dagger__task_deep(struct dagger__job *j);
/* The pool's call before a worker parks (dagger__pool_set_stale): spawns left in another
 * worker's open bundle (task.c, "Bundles"). */
long dagger__task_bundle_stale(dagger__pool *p, int self);
void dagger__ctx_count(dagger_ctx_t *ctx, int which, int64_t delta);
/* A worker is about to park: give back its credits. */
void dagger__ctx_count_idle(dagger_ctx_t *ctx, int worker);
/* A thread outside the pool undoes one claim of its external slot of ctx's pool, the counts
 * kept as the slot's credits given back first (a group's end, a task main ran: run_awaited). */
void dagger__ctx_ext_release(dagger_ctx_t *ctx);
struct dagger__job *dagger__task_run(struct dagger__job *j, void *ud);
/* The same, timed for the table of tiny functions (task.c, "Tiny functions"). */
struct dagger__job *dagger__task_run_timed(struct dagger__job *j);
/* A thread outside the pool runs `j` at the end of a task's group: timed when the spawn queued it
 * to be (TF_TINY_TIMED: one in DAGGER__TINY_EVERY of a tiny function's candidates). */
#define DAGGER__TINY_EVERY 64
static inline struct dagger__job *dagger__task_run_outside(struct dagger__job *j)
{
    if (DAGGER_LIKELY(!(((const dagger_task_t *)j)->flags & TF_TINY_TIMED)))
        return dagger__task_run(j, NULL);
    return dagger__task_run_timed(j);
}
/* A group of at most this many spawns is small: its spawns of a tiny function may run at once
 * (task.c, "Tiny functions"; queue.c learns the main thread's groups by call site). */
#define DAGGER__TINY_GROUP_MAX 256
/* Tests only: a function whose timed runs average under this many ns is tiny (task.c). */
extern uint32_t dagger__tiny_ns;
struct frame **dagger__queue_frames_slot(void);
/* Drop the holds of a closed bulk frame's tasks. */
void dagger__task_unhold(dagger_task_t *t);

#endif /* DAGGER_SRC_CORE_INT_H */
