/* src/sched/place.c - placement: a ready task's processor, the staging of its chunks there, and
 * the hand-over to that processor's executor.
 *
 * Design: core calls this only for tasks that need a decision (a scope, a chunk or shard
 * input); every other task goes straight to the CPU pool through one inline check in core.
 * The allowed set is the scope's processors intersected with the processors of the task's
 * mutable inputs and the places of its per-thread shards; among several allowed threads the
 * choice is round robin, and a set that is every thread leaves the task free to be stolen.
 * In a job, a task that may run on any rank (dagger__sched_movable: the explicit any scope, or
 * an independent long task, dagger__sched_spread) goes to the ranks backend's place hook, which
 * weighs the ranks with the cost model (cost.c) and keeps stealable work in a reserve.
 * An input that is mutable data of another rank (a proxy chunk) sends the task to that rank.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "core/core.h"
#include "mem/mem.h"
#include "sched/cost.h"
#include "sched/sched.h"

static int set_count(const dagger__procset *s) { return dagger__procset_threads(s); }

static void set_and(dagger__procset *a, const dagger__procset *b)
{
    for (size_t i = 0; i < sizeof a->bits / sizeof a->bits[0]; i++)
        a->bits[i] &= b->bits[i];
}

static void set_one(dagger__procset *s, int t)
{
    memset(s, 0, sizeof *s);
    s->bits[t >> 6] |= 1ull << (t & 63);
}

/* Narrow `set` by input `i`; on an empty result explain why, naming both scopes. */
static int narrow(const struct dagger__place *r, dagger__procset *set, uint32_t i, char *why,
                  size_t cap)
{
    const dagger_value_t *v = &r->inputs[i];
    dagger__procset mine;
    char place[64];
    if (v->kind == DAGGER_KIND_CHUNK && v->u.c) {
        dagger_proc_t p;
        if (!dagger_chunk_is_mutable(v->u.c, &p) || p.kind != DAGGER_PROC_CPU || p.index < 0)
            return 0; /* data that can move, or data of the whole rank */
        if (p.index >= r->nthreads) {
            snprintf(why, cap,
                     "argument %u (mutable chunk %llu) lives on thread(%d), which this context "
                     "does not have",
                     i, (unsigned long long)dagger_chunk_id(v->u.c), p.index);
            return DAGGER_ESCOPE;
        }
        set_one(&mine, p.index);
        dagger_proc_format(&p, place, sizeof place);
        snprintf(place + strlen(place), sizeof place - strlen(place),
                 ", where argument %u (mutable chunk %llu) lives", i,
                 (unsigned long long)dagger_chunk_id(v->u.c));
    } else if (v->kind == DAGGER_KIND_SHARD && v->u.sh && dagger__mem_shard_per_thread(v->u.sh)) {
        memset(&mine, 0, sizeof mine);
        for (int t = 0; t < r->nthreads; t++)
            if (dagger__mem_shard_local(v->u.sh, t))
                mine.bits[t >> 6] |= 1ull << (t & 63);
        snprintf(place, sizeof place, "the threads that hold a piece of argument %u (a shard)", i);
    } else {
        return 0;
    }
    set_and(set, &mine);
    if (set_count(set) > 0)
        return 0;
    char form[256] = "any";
    if (r->scope)
        dagger_scope_format(r->scope, form, sizeof form);
    snprintf(why, cap, "no processor satisfies both the task's scope %s and %s", form, place);
    return DAGGER_ESCOPE;
}

/* Whether input `v` constrains where the task runs (a mutable chunk of one thread, a shard of
 * per-thread pieces). */
static bool constrains(const dagger_value_t *v)
{
    dagger_proc_t p;
    if (v->kind == DAGGER_KIND_CHUNK && v->u.c)
        return dagger_chunk_is_mutable(v->u.c, &p) && p.kind == DAGGER_PROC_CPU && p.index >= 0;
    return v->kind == DAGGER_KIND_SHARD && v->u.sh && dagger__mem_shard_per_thread(v->u.sh);
}

static const struct dagger__sched_devices *devices; /* set at load time by src/gpu */

void dagger__sched_register_devices(const struct dagger__sched_devices *d) { devices = d; }
const struct dagger__sched_devices *dagger__sched_devices_get(void) { return devices; }

void dagger__sched_exec_open(dagger__executor *execs)
{
    if (devices) {
        execs[DAGGER_PROC_DEVICE] = devices->exec;
        devices->ctx_open();
    }
}

void dagger__sched_exec_close(dagger__executor *execs)
{
    if (devices && execs[DAGGER_PROC_DEVICE].place)
        devices->ctx_close();
}

const char *dagger_gpu_kind_name(int kind)
{
    static const char *const names[] = {"any", "opencl", "cuda", "fake"};
    return kind >= 0 && kind < (int)(sizeof names / sizeof names[0]) ? names[kind] : "unknown";
}

/* Tasks whose CPU body the cost model chose over a device body, and not done yet: the CPU's
 * backlog in that choice (process-wide, like the history). */
static _Atomic int cpu_chosen;

static void chosen_done(dagger_task_t *t, void *ud)
{
    (void)t;
    atomic_fetch_sub_explicit(&cpu_chosen, 1, memory_order_relaxed);
    dagger__free(ud);
}

/* Threads and a device with a body are both allowed: whether the CPU body should run, by the
 * cost model. Each side's history is warmed first (3 runs; the device first, as before there
 * was a history; the CPU with at most 3 such tasks at a time, so that a burst of spawns does
 * not all wait for the first CPU samples), then the CPU body runs when its expected time,
 * times the CPU backlog of such choices per thread, beats the device's estimate (its moves,
 * its queue and the body's expected time there). opts.expected_time stands for the CPU
 * history until it is warm. */
static bool cpu_is_better(const struct dagger__place *r, const struct dagger__dev_estimate *est)
{
    if (est->cost < 0 || !r->task)
        return false;
    double cpu = 0;
    int n = dagger__cost_expected((const void *)(uintptr_t)dagger__task_fn(r->task),
                                  DAGGER_PROC_CPU, est->bytes, &cpu);
    int queued = atomic_load_explicit(&cpu_chosen, memory_order_relaxed);
    if (n < DAGGER__COST_WARM && r->expected > 0)
        cpu = r->expected;
    else if (n < DAGGER__COST_WARM) /* not known yet: a few runs there to learn, not a burst */
        return queued < DAGGER__COST_WARM;
    int threads = r->nthreads > 0 ? r->nthreads : 1;
    return cpu * (1 + queued / threads) < est->cost;
}

/* Count a task in the CPU's backlog until it is done. Out of memory: it is not counted. */
static void count_cpu_choice(dagger_task_t *t)
{
    struct dagger__task_callback *c = dagger__calloc(1, sizeof *c);
    if (!c)
        return;
    atomic_fetch_add_explicit(&cpu_chosen, 1, memory_order_relaxed);
    dagger__task_on_done(t, c, chosen_done, c);
}

/* The scope allows devices: pick one that has an implementation for the task (1: none, or the
 * cost model prefers the CPU body, and threads are allowed too, so the CPU body runs). Mutable
 * data of a thread keeps the task on the CPU. */
static int choose_device(const struct dagger__place *r, dagger__procset *set, dagger_proc_t *out,
                         char *why, size_t cap)
{
    bool pinned = false;
    for (uint32_t i = 0; i < r->ninputs; i++)
        pinned |= constrains(&r->inputs[i]);
    struct dagger__dev_estimate est = {-1, 0};
    int dev = devices && !pinned ? devices->pick(set->dev, r, &est) : -1;
    if (dev >= 0 && set_count(set) > 0 && cpu_is_better(r, &est)) {
        count_cpu_choice(r->task);
        return 1;
    }
    if (dev >= 0) {
        out->kind = DAGGER_PROC_DEVICE;
        out->index = (int16_t)dev;
        return 0;
    }
    if (set_count(set) > 0)
        return 1;
    char form[256] = "any";
    if (r->scope)
        dagger_scope_format(r->scope, form, sizeof form);
    snprintf(why, cap,
             pinned ? "the scope %s allows only devices, but an argument is mutable data of a "
                      "thread"
                    : "the scope %s allows only devices, and the task has no implementation for "
                      "their kind",
             form);
    return DAGGER_ESCOPE;
}

/* The scope allows no thread of this rank: choose another rank among those it allows (round
 * robin), with one thread when the scope names exactly one. Inputs pinned to this rank (mutable
 * data, per-thread shards) cannot follow the task there. */
static int choose_rank(const struct dagger__place *r, dagger_proc_t *out, char *why, size_t cap)
{
    int n = 0, ranks[64];
    for (int k = 0; k < r->nranks && n < 64; k++) {
        dagger__procset set;
        if (k != r->rank &&
            dagger__scope_resolve(r->scope, k, r->nranks, r->nthreads, &set, NULL, 0) > 0)
            ranks[n++] = k;
    }
    if (n == 0)
        return dagger__scope_resolve(r->scope, r->rank, r->nranks, r->nthreads,
                                     &(dagger__procset){0}, why, cap) > 0
                   ? 0
                   : DAGGER_ESCOPE;
    int k = ranks[atomic_fetch_add_explicit(r->rr, 1, memory_order_relaxed) % (uint32_t)n];
    for (uint32_t i = 0; i < r->ninputs; i++) {
        const dagger_value_t *v = &r->inputs[i];
        /* Mutable data here (pinned to a thread or to the worker) never moves to rank k. */
        bool pinned = v->kind == DAGGER_KIND_CHUNK && v->u.c
                          ? dagger_chunk_is_mutable(v->u.c, NULL)
                          : constrains(v) && !(v->kind == DAGGER_KIND_SHARD &&
                                               dagger__mem_shard_on_rank(v->u.sh, k));
        if (pinned) {
            snprintf(why, cap,
                     "argument %u is pinned to a processor of rank %d (mutable data or a "
                     "per-thread shard), but the task's scope sends it to rank %d",
                     i, r->rank, k);
            return DAGGER_ESCOPE;
        }
    }
    dagger__procset set;
    int nt = dagger__scope_resolve(r->scope, k, r->nranks, r->nthreads, &set, NULL, 0);
    out->rank = k;
    for (int t = 0; nt == 1 && t < r->nthreads; t++)
        if (dagger__procset_has(&set, t))
            out->index = (int16_t)t;
    return 0;
}

/* An input is mutable data of another rank (a proxy chunk): the task goes there, to the
 * thread the data is pinned to, if the scope allows it. */
static int choose_home(const struct dagger__place *r, uint32_t i, int home, dagger_proc_t *out,
                       char *why, size_t cap)
{
    dagger_proc_t hp;
    const dagger_chunk_t *c = r->inputs[i].u.c;
    (void)dagger_chunk_is_mutable(c, &hp);
    char form[256] = "any", place[64];
    for (uint32_t j = 0; j < r->ninputs; j++) {
        int q = r->rank; /* mutable data here, pinned to a thread or to the worker */
        const dagger_value_t *v = &r->inputs[j];
        bool other = v->kind == DAGGER_KIND_CHUNK && v->u.c
                         ? dagger_chunk_is_mutable(v->u.c, NULL) &&
                               (dagger__mem_proxy(v->u.c, &q, NULL), q != home)
                         : constrains(v) && !(v->kind == DAGGER_KIND_SHARD &&
                                              dagger__mem_shard_on_rank(v->u.sh, home));
        if (other) {
            snprintf(why, cap,
                     "argument %u (mutable chunk %llu) lives on rank %d, but argument %u is "
                     "pinned to another rank",
                     i, (unsigned long long)dagger_chunk_id(c), home, j);
            return DAGGER_ESCOPE;
        }
    }
    dagger__procset set;
    int nt = dagger__scope_resolve(r->scope, home, r->nranks, r->nthreads, &set, NULL, 0);
    if (nt == 0 || (hp.index >= 0 && !dagger__procset_has(&set, hp.index))) {
        if (r->scope)
            dagger_scope_format(r->scope, form, sizeof form);
        dagger_proc_format(&hp, place, sizeof place); /* worded on a refusal only */
        snprintf(why, cap,
                 "no processor satisfies both the task's scope %s and %s of rank %d, where "
                 "argument %u (mutable chunk %llu) lives",
                 form, place, home, i, (unsigned long long)dagger_chunk_id(c));
        return DAGGER_ESCOPE;
    }
    out->rank = home;
    out->index = hp.index;
    for (int t = 0; hp.index < 0 && nt == 1 && t < r->nthreads; t++)
        if (dagger__procset_has(&set, t))
            out->index = (int16_t)t;
    return 0;
}

int dagger__sched_choose(const struct dagger__place *r, dagger_proc_t *out, char *why, size_t cap)
{
    out->rank = r->rank;
    out->kind = DAGGER_PROC_CPU;
    out->index = -1;
    for (uint32_t i = 0; DAGGER_UNLIKELY(r->nranks > 1) && i < r->ninputs; i++) {
        const dagger_value_t *v = &r->inputs[i];
        int home;
        if (v->kind == DAGGER_KIND_CHUNK && v->u.c && dagger__mem_proxy(v->u.c, &home, NULL))
            return choose_home(r, i, home, out, why, cap);
    }
    bool free_to_move = dagger__scope_is_any(r->scope);
    for (uint32_t i = 0; i < r->ninputs && free_to_move; i++)
        free_to_move = !constrains(&r->inputs[i]);
    if (free_to_move) /* the common case of data inputs: any thread, stealing allowed */
        return 0;
    dagger__procset set;
    /* With ranks, no thread here is the usual case of a task pinned to another rank: no message
     * (choose_rank words one when no rank fits; formatting it cost about 1 us per spawn) */
    bool ranks = r->nranks > 1;
    int n = dagger__scope_resolve(r->scope, r->rank, ranks ? r->nranks : 1, r->nthreads, &set,
                                  ranks ? NULL : why, ranks ? 0 : cap);
    if (n == 0)
        return r->nranks > 1 ? choose_rank(r, out, why, cap) : DAGGER_ESCOPE;
    if (set.dev) {
        int rc = choose_device(r, &set, out, why, cap);
        if (rc <= 0)
            return rc;
    }
    for (uint32_t i = 0; i < r->ninputs; i++) {
        int rc = narrow(r, &set, i, why, cap);
        if (rc)
            return rc;
    }
    n = set_count(&set);
    if (n < r->nthreads) {
        int k = (int)(atomic_fetch_add_explicit(r->rr, 1, memory_order_relaxed) % (uint32_t)n);
        for (int t = 0; t < r->nthreads; t++) {
            if (dagger__procset_has(&set, t) && k-- == 0) {
                out->index = (int16_t)t;
                break;
            }
        }
    }
    return 0;
}

/* Out-of-core: the chunk inputs a placed task holds (never spilled) until it completes. */
struct holder {
    struct dagger__task_callback cb;
    uint32_t n;
    dagger_chunk_t *c[];
};

static void unhold_all(dagger_task_t *t, void *ud)
{
    (void)t;
    struct holder *h = ud;
    for (uint32_t i = 0; i < h->n; i++) {
        dagger__mem_unhold(h->c[i]);
        dagger_chunk_release(h->c[i]);
    }
    dagger__free(h);
}

/* Under a memory limit: refuse a task whose inputs alone exceed it, and hold the others. */
static int hold_inputs(const struct dagger__place *r, size_t limit, char *why, size_t cap)
{
    size_t total = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->ninputs; i++) {
        const dagger_value_t *v = &r->inputs[i];
        if (v->kind == DAGGER_KIND_CHUNK && v->u.c && dagger__mem_tracked(v->u.c)) {
            total += dagger_chunk_size(v->u.c);
            n++;
        }
    }
    if (n == 0)
        return 0;
    if (total > limit) {
        snprintf(why, cap,
                 "the task's chunk inputs need %zu bytes in memory at once, more than the memory "
                 "limit of %zu bytes",
                 total, limit);
        return DAGGER_ENOMEM;
    }
    struct holder *h = dagger__malloc(sizeof *h + n * sizeof h->c[0]);
    if (!h) {
        snprintf(why, cap, "out of memory holding the task's %u chunk inputs", n);
        return DAGGER_ENOMEM;
    }
    h->n = 0;
    for (uint32_t i = 0; i < r->ninputs; i++) {
        const dagger_value_t *v = &r->inputs[i];
        if (v->kind == DAGGER_KIND_CHUNK && v->u.c && dagger__mem_tracked(v->u.c)) {
            h->c[h->n++] = dagger_chunk_retain(v->u.c);
            dagger__mem_hold(v->u.c);
            dagger__mem_handed(v->u.c);
        }
    }
    dagger__task_on_done(r->task, &h->cb, unhold_all, h);
    return 0;
}

int dagger__sched_stage(const struct dagger__place *r, const dagger_proc_t *p, char *why,
                        size_t cap)
{
    size_t limit = dagger__mem_res_limit();
    if (DAGGER_UNLIKELY(limit != 0) && r->task) {
        int rc = hold_inputs(r, limit, why, cap);
        if (rc)
            return rc;
    }
    dagger_space_t space = dagger__mem_space_of(p);
    for (uint32_t i = 0; i < r->ninputs; i++) {
        const dagger_value_t *v = &r->inputs[i];
        if (v->kind != DAGGER_KIND_CHUNK || !v->u.c)
            continue;
        /* Under a memory limit a held chunk is loaded when the body reads it, not now: ready
         * tasks waiting in queues would otherwise load all their inputs at once. */
        if (limit && dagger__mem_tracked(v->u.c))
            continue;
        void *ptr;
        int rc = dagger__mem_stage(v->u.c, &space, &ptr);
        if (rc) {
            snprintf(why, cap, "argument %u: %s", i, dagger_last_errmsg());
            return rc;
        }
    }
    return 0;
}

int dagger__sched_place(const struct dagger__place *r, struct dagger__job *j,
                        const dagger__executor *execs, char *why, size_t cap)
{
    dagger_proc_t p;
    const dagger__executor *rx = &execs[DAGGER__EXEC_REMOTE];
    if (DAGGER_UNLIKELY(r->nranks > 1) && rx->place && dagger__sched_movable(r)) {
        /* any rank: the ranks backend weighs the places (cost model) and may let it be stolen */
        p = (dagger_proc_t){.rank = r->rank, .kind = DAGGER_PROC_CPU, .index = -1};
        return rx->place(rx->ud, r, j, &p, execs, why, cap);
    }
    int rc = dagger__sched_choose(r, &p, why, cap);
    if (rc)
        return rc;
    const dagger__executor *ex = &execs[p.kind];
    if (p.rank != r->rank) { /* the remote executor moves the inputs with the task */
        ex = &execs[DAGGER__EXEC_REMOTE];
        if (!ex->submit) {
            snprintf(why, cap, "no transport reaches rank %d in this build", p.rank);
            return DAGGER_ENOSYS;
        }
        ex->submit(ex->ud, j, &p);
        return 0;
    }
    if (ex->place)
        return ex->place(ex->ud, r, j, &p, execs, why, cap);
    rc = dagger__sched_stage(r, &p, why, cap);
    if (rc)
        return rc;
    if (!ex->submit) {
        char form[48];
        dagger_proc_format(&p, form, sizeof form);
        snprintf(why, cap, "no executor runs tasks on %s in this build", form);
        return DAGGER_ENOSYS;
    }
    ex->submit(ex->ud, j, &p);
    return 0;
}

void dagger__sched_cpu_submit(void *pool, struct dagger__job *j, const dagger_proc_t *p)
{
    j->pin = p->index;
    dagger__pool_submit(pool, j);
}

dagger_scope_t *dagger__sched_spread(dagger_fn_t fn, const dagger_task_opts_t *o,
                                     const dagger_value_t *argv, size_t argc, size_t ndeps)
{
    if (o && o->scope == dagger_scope_any())
        return dagger_scope_any();
    if (ndeps)
        return NULL;
    for (size_t i = 0; i < argc; i++)
        if (argv[i].kind > DAGGER_KIND_BLOB) /* pointers and handles stay where they are */
            return NULL;
    double expected = o ? o->expected_time : 0.0;
    if (!(expected > 0.0) && !dagger__cost_expected((const void *)(uintptr_t)fn, DAGGER_PROC_CPU,
                                                    dagger__cost_bytes(argv, argc), &expected))
        return NULL;
    return expected >= DAGGER__SPREAD_TIME ? dagger_scope_any() : NULL;
}

bool dagger__sched_movable(const struct dagger__place *r)
{
    if (r->nranks <= 1 || r->scope != dagger_scope_any() || !r->task)
        return false;
    for (uint32_t i = 0; i < r->ninputs; i++) {
        const dagger_value_t *v = &r->inputs[i];
        if (constrains(v) || v->kind == DAGGER_KIND_PTR || v->kind == DAGGER_KIND_TASK ||
            v->kind == DAGGER_KIND_SHARD)
            return false;
    }
    return true;
}
