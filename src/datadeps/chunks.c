/* src/datadeps/chunks.c - whole-chunk accesses in a datadeps region, on one rank or across
 * ranks.
 *
 * Design: dagger_ddchunk(access, c) orders the region's tasks by chunk: the access covers one
 * byte at the chunk's record address, which no user region can overlap, so the tracker orders
 * chunk accesses exactly like any other region. A written chunk must be mutable data
 * (dagger_mutable or a shard piece): the task then runs where it lives (placement sends a task
 * whose argument is another rank's mutable data to that rank). A chunk that the task only
 * reads and that lives on another rank than the task's (the rank of its first written chunk)
 * (or on its rank, pinned to another thread than the task's) is fetched: a copy task runs where
 * the chunk lives, after its last writer, and its result (a plain chunk, which moves between
 * ranks and threads) is the task's argument. The copy is cached by
 * (chunk, version, rank): another reader of the same version on that rank reuses it; a write
 * makes a new version; the region drops its copies at its end. A copy waits for the chunk's
 * last writer in the region only (not for the other inputs of its first reader), so it is made
 * and moved while the reader still waits for those. It runs just above its writer and its reader
 * (one more than the higher of their priorities): data another rank waits for leaves as soon as
 * it is made, before the local work of the same level (a panel goes out before its rank goes on
 * with the next trsm). A
 * copy read on the rank that spawns the region comes back with its result, pulled by the
 * progress thread (DAGGER__TASK_RESULT_HOME), so that no worker waits for its bytes. A copy read
 * on another rank goes there through a relay task on that rank, which runs as soon as the copy
 * is made: its rank pulls the bytes then, once, and keeps them as the relay's result (which the
 * spawning rank never reads, DAGGER__TASK_RESULT_THERE); the readers there take that result as
 * it is, so they neither pull the bytes again each nor wait for them when they are ready.
 * Thread safety: used by the thread or task that owns the region.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "core/core.h"
#include "datadeps/datadeps_int.h"

struct ddfetch {
    const dagger_chunk_t *chunk;
    uint64_t version;
    int rank;
    dagger_task_t *task; /* +1 */
};

struct ddversion {
    const dagger_chunk_t *chunk;
    uint64_t version;      /* writes to it in this region */
    dagger_task_t *writer; /* the last of them (the region holds it), or NULL */
    int prio;              /* the writer's priority */
};

int dagger__dd_chunk_access(const dagger_ddarg_t *a, dagger__ddaccess_t *acc, char *err, size_t cap)
{
    const dagger_value_t *v = &a->value;
    if (v->kind != DAGGER_KIND_CHUNK || !v->u.c)
        return snprintf(err, cap, "a chunk access needs a chunk value, not a %s",
                        dagger_kind_name(v->kind)),
               DAGGER_EINVAL;
    if (a->access != DAGGER_ACCESS_IN && a->access != DAGGER_ACCESS_OUT &&
        a->access != DAGGER_ACCESS_INOUT)
        return snprintf(err, cap,
                        "a chunk access is In, Out or InOut (access %d is for memory regions)",
                        a->access),
               DAGGER_EINVAL;
    acc->read = (a->access & DAGGER_ACCESS_IN) != 0;
    acc->write = (a->access & DAGGER_ACCESS_OUT) != 0;
    acc->commute = false;
    if (acc->write && !dagger_chunk_is_mutable(v->u.c, NULL))
        return snprintf(err, cap,
                        "chunk %llu is written but is not mutable data: a task result is "
                        "immutable; make it with dagger_mutable (or use a shard piece)",
                        (unsigned long long)dagger_chunk_id(v->u.c)),
               DAGGER_EINVAL;
    char why[64];
    int rc = dagger__ddreg_make(&acc->reg, DAGGER_SHAPE_SPAN, (const void *)v->u.c, 1, 0, 0, 0, 0,
                                why, sizeof why);
    return rc < 0 ? (snprintf(err, cap, "%s", why), rc) : 0;
}

static int rank_of(const dagger_chunk_t *c, int me)
{
    dagger_proc_t p;
    return dagger_chunk_is_mutable(c, &p) ? p.rank : me;
}

static struct ddversion *version_of(struct dagger__ddchunks *cc, const dagger_chunk_t *c)
{
    for (size_t i = 0; i < cc->nversions; i++)
        if (cc->versions[i].chunk == c)
            return &cc->versions[i];
    if (cc->nversions == cc->capversions) {
        size_t cap = cc->capversions ? 2 * cc->capversions : 16;
        void *p = dagger__realloc(cc->versions, cap * sizeof *cc->versions);
        if (!p)
            return NULL;
        cc->versions = p;
        cc->capversions = cap;
    }
    cc->versions[cc->nversions] = (struct ddversion){c, 0, NULL, 0};
    return &cc->versions[cc->nversions++];
}

/* Copy argument 0 (a chunk, where it lives) into a new plain chunk of the same type. */
static int dd_copy_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_chunk_t *src = dagger_arg_chunk(a, 0);
    size_t n = 0;
    const void *p = src ? dagger_arg_buf(a, 0, &n) : NULL;
    if (!src || (!p && n))
        return DAGGER_ETYPE; /* the accessor failed the task with the reason */
    dagger_chunk_t *c;
    int rc = dagger_chunk_create(dagger_tc_ctx(tc), n, &c);
    if (rc)
        return dagger_fail(tc, rc, "copying chunk %llu (%zu bytes): %s",
                           (unsigned long long)dagger_chunk_id(src), n, dagger_last_errmsg());
    size_t shape[DAGGER_CHUNK_MAX_DIMS];
    int nd = dagger_chunk_shape(src, shape, DAGGER_CHUNK_MAX_DIMS);
    if (nd > 0 && dagger_chunk_set_type(c, dagger_chunk_elt(src), nd, shape) != 0)
        dagger__panic("a copy's type does not fit its bytes"); /* same size as the source */
    if (n)
        memcpy(dagger_chunk_data(c), p, n);
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* Argument 0 (a chunk pulled to this rank) is the result: it stays here for the readers. */
static int dd_relay_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_chunk_t *c = dagger_arg_chunk(a, 0);
    if (!c)
        return DAGGER_ETYPE; /* the accessor failed the task with the reason */
    *out = dagger_chunk_give(tc, dagger_chunk_retain(c));
    return 0;
}

/* The copy `t` (+1, taken) of a chunk read on `rank`, another rank: a relay task there. */
static dagger_task_t *relay(dagger_ctx_t *ctx, dagger_task_t *t, int rank, int prio)
{
    dagger_scope_t *w = dagger_scope_worker(rank);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "datadeps_relay";
    o.priority = prio;
    o.scope = w;
    o.flags = DAGGER__TASK_RESULT_THERE;
    dagger_value_t arg = dagger_taskv(t);
    dagger_task_t *r =
        w ? dagger_spawn_impl(ctx, &o, dd_relay_body, "datadeps_relay", &arg, 1) : NULL;
    dagger_scope_release(w);
    dagger_task_release(t);
    return r;
}

/* The copy of `c` at its current version for `rank`: cached, or a new copy task that waits for
 * the version's writer only. */
static dagger_task_t *fetch(struct dagger__ddchunks *cc, dagger_ctx_t *ctx, dagger_chunk_t *c,
                            const struct ddversion *v, int rank, int prio)
{
    for (size_t i = 0; i < cc->nfetches; i++) {
        struct ddfetch *f = &cc->fetches[i];
        if (f->chunk == c && f->version == v->version && f->rank == rank)
            return f->task;
    }
    if (cc->nfetches == cc->capfetches) {
        size_t cap = cc->capfetches ? 2 * cc->capfetches : 16;
        void *p = dagger__realloc(cc->fetches, cap * sizeof *cc->fetches);
        if (!p)
            return NULL;
        cc->fetches = p;
        cc->capfetches = cap;
    }
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "datadeps_copy";
    /* above its writer and its reader, saturated */
    int top = prio > v->prio ? prio : v->prio;
    prio = o.priority = top < INT_MAX ? top + 1 : top;
    o.syncdeps = v->writer ? &v->writer : NULL;
    o.nsyncdeps = v->writer ? 1 : 0;
    bool here = rank == dagger_ctx_rank(ctx);
    if (here)
        o.flags |= DAGGER__TASK_RESULT_HOME; /* its bytes come back with its result */
    dagger_value_t arg = dagger_chunkv(c);
    dagger_task_t *t = dagger_spawn_impl(ctx, &o, dd_copy_body, "datadeps_copy", &arg, 1);
    if (t && !here)
        t = relay(ctx, t, rank, prio);
    if (t)
        cc->fetches[cc->nfetches++] = (struct ddfetch){c, v->version, rank, t};
    return t;
}

int dagger__dd_chunks_place(struct dagger__ddchunks *cc, dagger_ctx_t *ctx,
                            const dagger_ddarg_t *argv, size_t argc, dagger_value_t *vals, int prio,
                            char *err, size_t cap)
{
    int me = dagger_ctx_rank(ctx), target = -1, thread = -1;
    bool any = false;
    /* The task runs where its first written chunk lives (or its first read mutable chunk):
     * that rank, and that thread when the chunk is pinned to one. */
    for (int pass = 0; pass < 2 && target < 0; pass++) {
        for (size_t i = 0; i < argc && target < 0; i++) {
            const dagger_ddarg_t *a = &argv[i];
            if (a->shape != DAGGER_SHAPE_CHUNK || a->access == DAGGER_ACCESS_NONE)
                continue;
            any = true;
            dagger_proc_t p;
            if (pass == 0 ? (a->access & DAGGER_ACCESS_OUT) != 0
                          : dagger_chunk_is_mutable(a->value.u.c, NULL)) {
                target = rank_of(a->value.u.c, me);
                if (dagger_chunk_is_mutable(a->value.u.c, &p))
                    thread = p.index;
            }
        }
    }
    if (!any)
        return 0;
    /* Written data of the whole worker: the first read data pinned to a thread of that rank
     * chooses the thread (other threads' data is copied). */
    for (size_t i = 0; i < argc && thread < 0; i++) {
        const dagger_ddarg_t *a = &argv[i];
        dagger_proc_t p;
        if (a->shape == DAGGER_SHAPE_CHUNK && a->access == DAGGER_ACCESS_IN &&
            dagger_chunk_is_mutable(a->value.u.c, &p) && rank_of(a->value.u.c, me) == target)
            thread = p.index;
    }
    for (size_t i = 0; i < argc; i++) {
        const dagger_ddarg_t *a = &argv[i];
        if (a->shape != DAGGER_SHAPE_CHUNK || a->access == DAGGER_ACCESS_NONE)
            continue;
        dagger_chunk_t *c = a->value.u.c;
        struct ddversion *v = version_of(cc, c);
        if (!v)
            return snprintf(err, cap, "out of memory tracking chunk versions"), DAGGER_ENOMEM;
        if (a->access & DAGGER_ACCESS_OUT) {
            if (rank_of(c, me) != target)
                return snprintf(err, cap,
                                "argument %zu (chunk %llu) lives on rank %d, but the task writes "
                                "data of rank %d too; a task writes the data of one rank",
                                i + 1, (unsigned long long)dagger_chunk_id(c), rank_of(c, me),
                                target),
                       DAGGER_ESCOPE;
            v->version++;
            v->writer = NULL; /* the task being placed: dagger__dd_chunks_spawned */
            v->prio = prio;
            continue;
        }
        dagger_proc_t p;
        if (!dagger_chunk_is_mutable(c, &p) ||
            (rank_of(c, me) == target && (p.index < 0 || thread < 0 || p.index == thread)))
            continue; /* plain data moves by itself; data the task's processor reaches is used */
        dagger_task_t *t = fetch(cc, ctx, c, v, target, prio);
        if (!t)
            return snprintf(err, cap, "out of memory copying argument %zu from rank %d", i + 1,
                            rank_of(c, me)),
                   DAGGER_ENOMEM;
        vals[i] = dagger_taskv(t);
        cc->fetched++;
    }
    return 0;
}

void dagger__dd_chunks_spawned(struct dagger__ddchunks *cc, const dagger_ddarg_t *argv, size_t argc,
                               dagger_task_t *t)
{
    for (size_t i = 0; i < argc; i++) {
        const dagger_ddarg_t *a = &argv[i];
        if (a->shape != DAGGER_SHAPE_CHUNK || !(a->access & DAGGER_ACCESS_OUT))
            continue;
        for (size_t k = 0; k < cc->nversions; k++)
            if (cc->versions[k].chunk == a->value.u.c)
                cc->versions[k].writer = t;
    }
}

void dagger__dd_chunks_fini(struct dagger__ddchunks *cc)
{
    for (size_t i = 0; i < cc->nfetches; i++)
        dagger_task_release(cc->fetches[i].task);
    dagger__free(cc->fetches);
    dagger__free(cc->versions);
    memset(cc, 0, sizeof *cc);
}
