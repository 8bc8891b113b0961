/* src/core/queue.c - task-queue blocks: bulk, sequential, wait-all (sync groups).
 *
 * Blocks nest per thread, or per task when opened inside one (a task may move between
 * threads while it waits). Spawn consults the open blocks (task.c); ending a block launches
 * what it held and waits when asked to.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"

#define ALL_MODES (DAGGER_QUEUE_BULK | DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_WAITALL)

/* The main thread's groups by call site (the return address of dagger_sync_begin or
 * dagger_queue_begin): how many spawns the last one from there had, so that the next is known
 * small (struct group, `keep`) before its first spawn. A direct-mapped table shared by every
 * context, one word an entry: the tag of the site's hash (32 bits) and the count (32,
 * saturating); a racy update keeps one whole. */
#define SITES 64
static _Atomic uint64_t sites[SITES];

static inline uint64_t site_hash(const void *site)
{
    return (uint64_t)(uintptr_t)site * 0x9E3779B97F4A7C15ull;
}

static bool site_small(const void *site)
{
    uint64_t h = site_hash(site);
    uint64_t e = atomic_load_explicit(&sites[h >> 58], memory_order_relaxed);
    return (uint32_t)(e >> 32) == ((uint32_t)h | 1) && (uint32_t)e <= DAGGER__TINY_GROUP_MAX;
}

static void site_note(const void *site, int64_t spawned)
{
    uint64_t h = site_hash(site);
    uint32_t n = spawned > UINT32_MAX ? UINT32_MAX : (uint32_t)spawned;
    atomic_store_explicit(&sites[h >> 58], (uint64_t)((uint32_t)h | 1) << 32 | n,
                          memory_order_relaxed);
}

static int queue_begin_at(dagger_ctx_t *ctx, unsigned mode, const void *site);

int dagger_queue_begin(dagger_ctx_t *ctx, unsigned mode)
{
    return queue_begin_at(ctx, mode, __builtin_return_address(0));
}

static int queue_begin_at(dagger_ctx_t *ctx, unsigned mode, const void *site)
{
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_queue_begin: the context is NULL");
    DAGGER_CHECK((mode & ~ALL_MODES) == 0, DAGGER_EINVAL,
                 "dagger_queue_begin: unknown mode bits 0x%x", mode & ~ALL_MODES);
    struct frame *f = dagger__obj_alloc(sizeof *f);
    DAGGER_CHECK(f, DAGGER_ENOMEM, "dagger_queue_begin: out of memory");
    /* Field by field: a memset of the 232 bytes compiled to `rep stos`, whose start-up took 69 %
     * of this function's samples in core.nested_groups (a group per outer task; bench/RESULTS.md,
     * 2026-12-06 12:10). The group's pad is never read. */
    f->ctx = ctx;
    f->mode = mode;
    f->group.spawned = 0;
    f->group.home_done = 0;
    f->group.home_ending = false;
    f->group.keep = false;
    atomic_init(&f->group.target, -1);
    atomic_init(&f->group.drained, 0);
    dagger__event_init(&f->group.ev);
    atomic_init(&f->group.first_err, NULL);
    f->group.slots = NULL;
    f->group.nslots = 0;
    f->group.home = NULL;
    f->last = NULL;
    f->held = NULL;
    f->nheld = 0;
    f->capheld = 0;
    f->hook = NULL;
    f->hook_ud = NULL;
    f->ext = false;
    f->site = NULL;
    if (mode & DAGGER_QUEUE_WAITALL) {
        int n = ctx->nthreads + 1;
        f->group.slots = dagger__obj_alloc((size_t)n * sizeof(struct gslot));
        if (!f->group.slots) {
            dagger__obj_free(f, sizeof *f);
            return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_queue_begin: out of memory");
        }
        for (int i = 0; i < n; i++) { /* two stores a line: memset's rep stos cost more here */
            atomic_init(&f->group.slots[i].done, 0);
            atomic_init(&f->group.slots[i].active, 0);
        }
        f->group.nslots = n;
        if (dagger__self_tls.pool == NULL)
            f->group.home = &dagger__helping_tls;
    }
    struct frame **slot = dagger__queue_frames_slot();
    f->up = *slot;
    *slot = f;
    /* A thread outside the pool and every task (main): its spawns go to a deque of its own
     * until the group ends, where it runs those that no worker stole (event.c). */
    if ((mode & DAGGER_QUEUE_WAITALL) && !dagger__task_current()) {
        f->ext = dagger__pool_ext_claim(ctx->pool);
        f->site = site;
        f->group.keep = f->ext && site_small(site);
    } else if ((mode & DAGGER_QUEUE_WAITALL) && dagger__self_tls.pool == NULL) {
        f->group.keep = dagger__helping_outside(ctx->pool); /* a task main runs for its group */
    }
    return 0;
}

static int unit_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    (void)out;
    return 0;
}

/* A BULK block `f` ends inside a SEQUENTIAL block: its group becomes that block's last unit,
 * through one task that follows every task of the group, spawned in the enclosing blocks (it
 * follows the unit before, and becomes the unit after). Out of memory for it, the next unit
 * follows the unit before this group only. */
static void unit_end(dagger_ctx_t *ctx, struct frame *f)
{
    bool in_seq = false;
    for (struct frame *g = f->up; g && !in_seq; g = g->up)
        in_seq = g->ctx == ctx && (g->mode & DAGGER_QUEUE_SEQUENTIAL);
    if (!in_seq)
        return;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.syncdeps = f->held;
    o.nsyncdeps = f->nheld;
    dagger_task_release(dagger__task_spawn_nohook(ctx, &o, unit_fn, "queue_unit", NULL, 0));
}

int dagger_queue_end(dagger_ctx_t *ctx)
{
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_queue_end: the context is NULL");
    struct frame **slot = dagger__queue_frames_slot();
    struct frame *f = *slot;
    DAGGER_CHECK(f && f->ctx == ctx, DAGGER_ESTATE,
                 "dagger_queue_end: no task-queue block of this context is open on this %s",
                 dagger__task_current() ? "task" : "thread");
    *slot = f->up;
    dagger__task_bundle_flush(); /* spawns of this thread not yet published (task.c, bundles) */
    dagger__group_flush(); /* this worker's own count, of this group or another (core_int.h) */
    if (f->nheld)
        unit_end(ctx, f);
    for (size_t i = 0; i < f->nheld; i++) {
        dagger_task_t *t = f->held[i];
        dagger__task_unhold(t);
        dagger_task_release(t);
    }
    dagger__free(f->held);
    dagger_task_release(f->last);
    int rc = 0;
    /* Only WAITALL blocks count their tasks; the others' group is never waited on. */
    struct group *g = &f->group;
    if ((f->mode & DAGGER_QUEUE_WAITALL) && g->home_done == g->spawned) {
        /* Every task of the group finished on this thread, its home, and was counted there
         * (home_done: task.c, group_done), or it had none: no slot holds a count, no finisher
         * on another thread reads the group, nobody else waits on it. It ends without the
         * target's publication and the move to `drained`: two locked operations a group, 41 of
         * the 54 of a run of core.nested_groups at t=1 (bench/RESULTS.md, 2026-12-06 12:00). */
        g->home_done = 0;
    } else if (f->mode & DAGGER_QUEUE_WAITALL) {
        /* Publish the target, then move the slots' counts (see struct group): seq_cst on
         * both sides, so a count added to a slot after its exchange is moved by its finisher. */
        atomic_store_explicit(&g->target, g->spawned, memory_order_seq_cst);
        int64_t moved = g->home_done; /* this thread's, if it is the group's home */
        g->home_done = 0;             /* finishes during the end count again (fetch.c) */
        /* A slot read 0 is left alone: a finisher's addition after that read comes after the
         * target's store (seq_cst), so that finisher sees the target and moves its count
         * itself (core_int.h). No locked operation for the slots nobody counted in. */
        for (int i = 0; i < g->nslots; i++)
            if (atomic_load_explicit(&g->slots[i].done, memory_order_seq_cst) != 0)
                moved += atomic_exchange_explicit(&g->slots[i].done, 0, memory_order_seq_cst);
        if (moved)
            atomic_fetch_add_explicit(&g->drained, moved, memory_order_acq_rel);
        /* The group lives in this frame: leaving before it fires would free it under the
         * finishers, so a wait that found no stack to suspend on is retried. */
        while (atomic_load_explicit(&g->drained, memory_order_acquire) != g->spawned &&
               dagger__event_wait_group(ctx, g) < 0)
            dagger__task_yield();
        /* Every task is counted; wait for the finishers still reading the group. */
        for (int i = 0; i < g->nslots; i++)
            while (atomic_load_explicit(&g->slots[i].active, memory_order_acquire))
                dagger__cpu_relax();
    }
    if (f->mode & DAGGER_QUEUE_WAITALL) {
        if (f->ext)
            dagger__ctx_ext_release(ctx);
        if (f->site)
            site_note(f->site, g->spawned);
        dagger__obj_free(g->slots, (size_t)g->nslots * sizeof(struct gslot));
        dagger_task_t *e = atomic_load_explicit(&g->first_err, memory_order_acquire);
        if (e) {
            rc = dagger_task_error(e);
            dagger__set_errmsg_str(rc, dagger_task_errmsg(e));
            dagger_task_release(e);
        }
    }
    dagger__obj_free(f, sizeof *f);
    return rc;
}

int dagger__queue_hook_begin(dagger_ctx_t *ctx, dagger__task_spawn_hook_fn fn, void *ud)
{
    int rc = dagger_queue_begin(ctx, 0);
    if (rc)
        return rc;
    struct frame *f = *dagger__queue_frames_slot();
    f->hook = fn;
    f->hook_ud = ud;
    return 0;
}

int dagger__queue_hook_end(dagger_ctx_t *ctx, void *ud)
{
    struct frame *f = *dagger__queue_frames_slot();
    DAGGER_CHECK(f && f->ctx == ctx && f->hook && f->hook_ud == ud, DAGGER_ESTATE,
                 "the innermost open block of this %s is not this region",
                 dagger__task_current() ? "task" : "thread");
    return dagger_queue_end(ctx);
}

int dagger_sync_begin(dagger_ctx_t *ctx)
{
    return queue_begin_at(ctx, DAGGER_QUEUE_WAITALL, __builtin_return_address(0));
}
int dagger_sync_end(dagger_ctx_t *ctx) { return dagger_queue_end(ctx); }

/* ---------------------------------------------------------------- groups */
