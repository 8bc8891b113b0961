/* src/core/core.h - what the core exposes to the layers above it (datadeps, stream, darray, io).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_CORE_H
#define DAGGER_SRC_CORE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "dagger.h"
#include "dagger/chunk.h"
#include "value/value.h"

/* The task running on the calling thread, or NULL. */
dagger_task_t *dagger__task_current(void);

/* A hook consulted by fetch and wait: `t` may carry a guard set by a feature (a datadeps
 * region) that refuses waits from inside it. Returns 0 or an error (message already set). */
typedef int (*dagger__wait_guard_fn)(dagger_task_t *t, void *guard);
void dagger__task_set_wait_guard(dagger_task_t *t, dagger__wait_guard_fn fn, void *guard);

/* ---------------------------------------------------------------- events
 * A one-shot event: waiters suspend (inside a task on a worker: the task's fiber; elsewhere: the
 * thread) until someone fires it. Fired events stay fired; re-initialise only when no one can
 * still wait on it. Reusable waiting (a ring's "not empty") publishes a fresh event per wait. */
struct dagger__job;
struct dagger__waiter {
    struct dagger__waiter *next;
    uint32_t kind;
    int32_t argi; /* W_DEP: the dependent's argument index, or -1 for a syncdep (fills padding) */
    void *target; /* W_DEP: the dependent task; W_FIBER: the suspended task; W_THREAD: a flag;
                     W_CALLBACK: the struct dagger__task_callback */
};
struct dagger__event {
    _Atomic(struct dagger__waiter *) head;
};

static inline void dagger__event_init(struct dagger__event *ev) { atomic_init(&ev->head, NULL); }
/* True once fired. */
bool dagger__event_fired(struct dagger__event *ev);
/* Wait until `ev` fires; `on_id` names what is awaited in the trace (0: not a task). A thread
 * outside the workers spins `spin` rounds (about 25 ns each) before it sleeps;
 * dagger__event_wait spins DAGGER__WAIT_SPIN. */
#define DAGGER__WAIT_SPIN 2000
int dagger__event_wait(dagger_ctx_t *ctx, struct dagger__event *ev, uint64_t on_id);
int dagger__event_wait_spin(dagger_ctx_t *ctx, struct dagger__event *ev, uint64_t on_id, int spin);
/* Fire `ev`: every waiter, present and future, proceeds. */
void dagger__event_fire(struct dagger__event *ev, dagger_ctx_t *ctx);

/* ---------------------------------------------------------------- completion from anywhere
 * An executor that finishes work asynchronously (a device event, a message from another rank):
 * the body calls dagger__task_defer(tc, launch, ud) and returns 0; once the body has returned,
 * the runtime calls launch(task, ud), which hands the task to whoever completes it later with
 * dagger__task_complete (no one may complete it before launch runs). */
void dagger__task_defer(dagger_tc_t *tc, void (*launch)(dagger_task_t *t, void *ud), void *ud);
/* Complete a deferred task: `rc` 0 keeps `*result` (copied like a body's result; may be NULL for
 * nil), otherwise the task fails with `rc` and `msg`. Thread safety: any thread, once. */
void dagger__task_complete(dagger_task_t *t, int rc, const dagger_value_t *result, const char *msg);
/* The same for a success whose str/blob bytes (from dagger__obj_alloc, len + 1 for a str) the
 * executor hands over: the task adopts them instead of copying. Thread safety: any thread, once. */
void dagger__task_complete_owned(dagger_task_t *t, const dagger_value_t *result);

/* An executor whose processor runs another implementation of the task (a device body): run
 * `fn` as the body instead, with `ud` available to it through dagger__task_exec_ud. Called
 * between placement and the run. */
void dagger__task_set_body(dagger_task_t *t, dagger_fn_t fn, void *ud);
void *dagger__task_exec_ud(const dagger_tc_t *tc);
/* Run a placed task's body on the calling thread now instead of submitting it to the pool (an
 * executor whose bodies only enqueue work, like a device body, spares a thread hop). The task
 * that was running on this thread, if any, stays current; a continuation goes to the pool. */
void dagger__task_run_here(dagger_task_t *t);
/* `t` completes from outside the workers, after work longer than a waiter's spin (a device):
 * a thread that waits for it sleeps at once instead of spinning against the threads doing
 * that work. Call between placement and completion. */
void dagger__task_set_external(dagger_task_t *t);

/* A waiter that calls `fn` when the task completes, on the completing thread (W_CALL). */
struct dagger__call_waiter {
    struct dagger__waiter node; /* first: fire() casts the node back */
    void (*fn)(struct dagger__call_waiter *w, dagger_ctx_t *ctx);
};

/* The same for layers above core: runs fn(t, ud) on the thread that completes `t` (at once if
 * `t` is done). The caller owns `cb` until fn runs; fn must not block. */
struct dagger__task_callback {
    struct dagger__call_waiter w;
    dagger_task_t *task;
    void (*fn)(dagger_task_t *t, void *ud);
    void *ud;
};
void dagger__task_on_done(dagger_task_t *t, struct dagger__task_callback *cb,
                          void (*fn)(dagger_task_t *t, void *ud), void *ud);

/* An executor that runs a ready task somewhere else (another rank) begins it here, instead of
 * running its body: the dependencies' results become its arguments (every dependency has
 * succeeded: placement never hands over a task with a failed input) and the task becomes
 * deferred, to be completed with dagger__task_complete. dagger__task_fn is its body. */
void dagger__task_begin_elsewhere(dagger_task_t *t);
dagger_fn_t dagger__task_fn(const dagger_task_t *t);
/* The name given at spawn (opts.name, or the function's name from the spawn macro), or NULL. */
const char *dagger__task_name_given(const dagger_task_t *t);
/* Seconds the task's body ran, measured in a job of several ranks only (0: unknown, not run, or
 * failed). Read once the task is done. */
double dagger__task_ran(const dagger_task_t *t);
/* Drop the result of a finished task now, not with its record: for a caller that holds a
 * reference and knows that nobody reads the result again (the ranks backend, once a served
 * task's answer went and every reference it sent holds one of its own). The worker that
 * completed the task may hold the record a while longer; the result's data does not wait for it. */
void dagger__task_drop_result(dagger_task_t *t);
/* Its dagger_task_opts.expected_time (seconds; 0 unknown). */
double dagger__task_expected(const dagger_task_t *t);
/* Whether the task keeps its result as mutable data where it runs (DAGGER_TASK_MUTABLE_RESULT). */
bool dagger__task_mutable_result(const dagger_task_t *t);
/* A dagger_task_opts_t.flags bit for dagger's own layers (not public): the task's result will be
 * read on the rank that spawns it, so a task run on another rank brings its bytes back with its
 * result (pulled at once by the progress thread) instead of leaving them there to be pulled on
 * first read (by the reading worker, which then waits). Used by datadeps copies. */
#define DAGGER__TASK_RESULT_HOME (1u << 31)
bool dagger__task_result_home(const dagger_task_t *t);
/* The other way round: the task's result is read only by tasks on the rank it runs on, never on
 * the rank that spawns it (a datadeps relay), so that rank never pulls it. */
#define DAGGER__TASK_RESULT_THERE (1u << 30)
bool dagger__task_result_there(const dagger_task_t *t);

/* ---------------------------------------------------------------- ranks
 * A backend that spans processes (src/net/mpi) registers these from a constructor; ctx.c calls
 * them. Without one, a context is rank 0 of 1. */
/* One collective: op DAGGER__COLL_*; `size` bytes of `send` (from root, or from every rank)
 * into `recv` (every rank, or root). */
enum { DAGGER__COLL_BARRIER = 1, DAGGER__COLL_BCAST, DAGGER__COLL_GATHER };
struct dagger__coll {
    int op, root;
    const void *send;
    void *recv;
    size_t size;
    const char *fn; /* the public name, for messages */
};
struct dagger__ranks_ops {
    /* After the workers started: join the job (dagger__ctx_set_ranks). Returns 0,
     * DAGGER_CTX_SERVED (a driver-mode server whose driver closed: the caller closes the
     * context), or an error with the message set (the backend freed its state). */
    int (*open)(dagger_ctx_t *ctx);
    /* dagger_ctx_close, before the local drain: the driver waits until no rank has work left and
     * stops the servers. Idempotent. */
    void (*quiesce)(dagger_ctx_t *ctx);
    /* After the drain, before the workers stop: leave the job and free the state. */
    void (*close)(dagger_ctx_t *ctx);
    /* A collective (src/net/coll.c checked the arguments; several ranks): suspends the caller
     * until it completes. Returns 0 or an error with the message set. */
    int (*coll)(dagger_ctx_t *ctx, const struct dagger__coll *c);
};
void dagger__ranks_register(const struct dagger__ranks_ops *ops);
/* The ranks backend built in (or registered), or NULL. */
const struct dagger__ranks_ops *dagger__ranks_get(void);
/* dagger_opts.flags of the context (DAGGER_OPEN_SPMD). */
unsigned dagger__ctx_open_flags(const dagger_ctx_t *ctx);
/* Set this context's rank, the job's size, the backend state and the remote executor. */
void dagger__ctx_set_ranks(dagger_ctx_t *ctx, int rank, int nranks, void *state,
                           void (*submit)(void *ud, struct dagger__job *j, const dagger_proc_t *p));
void *dagger__ctx_ranks(const dagger_ctx_t *ctx);
struct dagger__place;
struct dagger__executor;
/* The ranks backend's placement of a task that may run on any rank (src/sched/place.c calls it
 * through exec[DAGGER__EXEC_REMOTE].place): the cost model, stealing. */
void dagger__ctx_set_ranks_place(dagger_ctx_t *ctx,
                                 int (*place)(void *ud, const struct dagger__place *r,
                                              struct dagger__job *j, const dagger_proc_t *p,
                                              const struct dagger__executor *execs, char *why,
                                              size_t cap));
/* Early sends (src/net/mpi/remote.c): at spawn, a task with a scope and unfinished dependencies
 * is offered to early(ud, t, &rec) before it can become ready (the spawn's own hold is still on
 * it); when early returns true the task is the backend's to run, and once its dependencies are
 * done early_ready(ud, t, rec, failed) is called instead of placing it (`failed`: a dependency
 * failed; the backend then hands the task back with dagger__task_early_failed, after its last
 * read of the task, and core fails it upstream as usual). */
void dagger__ctx_set_ranks_early(dagger_ctx_t *ctx,
                                 bool (*early)(void *ud, dagger_task_t *t, void **rec),
                                 void (*early_ready)(void *ud, dagger_task_t *t, void *rec,
                                                     bool failed));
/* An early task whose dependency failed (early_ready's `failed`), handed back by the backend
 * once its thread no longer reads the task: it is submitted, and fails upstream at its start. */
void dagger__task_early_failed(dagger_task_t *t);
/* The rank a proxy's task runs on (set by the remote executor), or -1 (runs here, or unknown). */
void dagger__task_set_elsewhere(dagger_task_t *t, int rank);
int dagger__task_elsewhere(const dagger_task_t *t);
/* A task's dependencies: the i-th one (borrowed) and, in `*argi`, the argument it fills (-1: a
 * syncdep). Stable from spawn until the task completes. */
uint32_t dagger__task_ndeps(const dagger_task_t *t);
dagger_task_t *dagger__task_dep(const dagger_task_t *t, uint32_t i, int *argi);
/* The task's scope (borrowed; NULL: any). */
const dagger_scope_t *dagger__task_scope(const dagger_task_t *t);
/* Worker threads parked for want of work (a hint), and the number of workers. */
int dagger__ctx_idle_workers(const dagger_ctx_t *ctx);
/* Bundles of spawns published so far in the process, and the spawns they carried (task.c,
 * "Bundles"; for tests). */
void dagger__task_bundle_counts(uint64_t *bundles, uint64_t *spawns);
/* Tests: arm bundles without waiting for an idle worker (the other conditions hold). */
void dagger__task_bundle_eager(bool on);
/* Tests: the next bundle replayed drops its k-th spawn (1-based; 0: none) as if its record could
 * not be allocated. */
void dagger__task_bundle_lose(uint32_t k);
int dagger__ctx_nthreads(const dagger_ctx_t *ctx);
/* Work is expected within `ns` nanoseconds (a reply or a task from another rank): until then
 * the context's idle workers and threads blocked in dagger_fetch yield instead of sleeping
 * (dagger__pool_linger). Thread safety: any thread. */
void dagger__ctx_linger(dagger_ctx_t *ctx, uint64_t ns);
/* Tasks spawned and not finished (0 only when the context is idle). Thread safety: any thread. */
int64_t dagger__ctx_inflight(dagger_ctx_t *ctx);

/* ---------------------------------------------------------------- spawn hooks
 * A feature region (a streaming region) can take over dagger_spawn on the thread or task that
 * opened it: while the hook block is the innermost block of `ctx` there, dagger_spawn calls the
 * hook instead of spawning. The hook builds tasks with dagger__task_spawn_nohook. */
typedef dagger_task_t *(*dagger__task_spawn_hook_fn)(void *ud, dagger_ctx_t *ctx,
                                                     const dagger_task_opts_t *o, dagger_fn_t fn,
                                                     const char *fname, const dagger_value_t *argv,
                                                     size_t argc);
int dagger__queue_hook_begin(dagger_ctx_t *ctx, dagger__task_spawn_hook_fn fn, void *ud);
/* Close the innermost block if it is the hook block of `ud`; DAGGER_ESTATE otherwise. */
int dagger__queue_hook_end(dagger_ctx_t *ctx, void *ud);
dagger_task_t *dagger__task_spawn_nohook(dagger_ctx_t *ctx, const dagger_task_opts_t *o,
                                         dagger_fn_t fn, const char *fname,
                                         const dagger_value_t *argv, size_t argc);

/* Called by dagger_cancel (after the flag is set), e.g. to wake a task blocked on a stream. */
typedef void (*dagger__cancel_hook_fn)(dagger_task_t *t, void *ud);
void dagger__task_set_cancel_hook(dagger_task_t *t, dagger__cancel_hook_fn fn, void *ud);

/* The argument array of a task (an internal body may substitute values between runs), and the
 * failure a body recorded so far (dagger_fail or a failing accessor), 0 if none. */
dagger_value_t *dagger__task_args(dagger_task_t *t, uint32_t *n);
int dagger__task_failed(const dagger_task_t *t);
/* The message of that failure ("task N 'name': text") while the task still runs, or "" (none, or
 * out of memory for it). Read by the task's own thread, or after its failure was published. */
const char *dagger__task_failed_msg(const dagger_task_t *t);
/* Let the other ready jobs of this worker run: the calling task is resubmitted behind them.
 * Does nothing outside a worker (or when no stack is free to switch to). */
void dagger__task_yield(void);

/* The worker count of a context, and the context of a task. */
int dagger__ctx_threads(const dagger_ctx_t *ctx);
dagger_ctx_t *dagger__task_ctx(const dagger_task_t *t);

#endif /* DAGGER_SRC_CORE_H */
