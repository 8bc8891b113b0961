/* src/mem/shard.c - mutable data (Dagger.jl's @mutable) and shards (@shard).
 *
 * Both are built from tasks: the constructor runs as a task whose result is kept as mutable
 * data of the processor it ran on (DAGGER_TASK_MUTABLE_RESULT), so placement, errors and
 * tracing are those of any task. A shard is a table of such pieces, one per worker or per
 * worker thread; a task that takes the shard gets the piece of the place where it runs.
 * Across ranks (src/net/mpi) a piece of another rank is a proxy chunk: a task that takes the
 * shard and runs on rank r gets a shard assembled there from rank r's own pieces.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "mem/mem.h"
#include "sched/sched.h"
#include "value/value.h"

struct dagger_shard {
    _Atomic uint32_t refs;
    bool per_thread;
    const dagger_ctx_t *ctx;
    uint64_t id;
    size_t npieces;
    dagger_chunk_t **pieces; /* owned */
    dagger_proc_t *procs;
    int nthreads;
    int32_t *by_thread; /* per_thread: this rank's piece of each thread, -1 for none */
    int32_t local;      /* per worker: this rank's piece, -1 for none */
};

static _Atomic uint64_t next_shard_id = 1;

/* ---------------------------------------------------------------- the shard value kind */

static int shard_own(dagger_value_t *v)
{
    dagger_shard_retain(v->u.sh);
    v->flags |= DAGGER_VALUE_OWNED;
    return 0;
}

static void shard_drop(dagger_value_t *v) { dagger_shard_release(v->u.sh); }

static void shard_ref(const dagger_value_t *v, uint64_t *id, uint32_t *rank)
{
    *id = v->u.sh->id;
    *rank = 0;
}

__attribute__((constructor)) static void register_shard_kind(void)
{
    static const struct dagger__kind_ops ops = {"shard", shard_own, shard_drop, shard_ref};
    dagger__value_register_kind(DAGGER_KIND_SHARD, &ops);
}

/* ---------------------------------------------------------------- mutable */

/* Spawn `ctor` with its result kept as mutable data where it runs. */
static dagger_task_t *spawn_ctor(dagger_ctx_t *ctx, const dagger_scope_t *where, dagger_fn_t ctor,
                                 const dagger_value_t *argv, size_t argc)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    if (where) /* NULL: any processor (the options' default) */
        o.scope = where;
    o.flags = DAGGER_TASK_MUTABLE_RESULT;
    return dagger_spawn_impl(ctx, &o, ctor, NULL, argv, argc);
}

/* Wait for a constructor task and take a reference to its chunk. */
static int take_chunk(dagger_task_t *t, dagger_chunk_t **out)
{
    if (!t)
        return DAGGER_ENOMEM; /* the message is set by spawn */
    dagger_chunk_t *c = NULL;
    int rc = dagger_fetch_chunk(t, &c);
    if (rc == 0)
        *out = dagger_chunk_retain(c);
    else
        dagger__set_errmsg_str(rc,
                               dagger_task_error(t) ? dagger_task_errmsg(t) : dagger_last_errmsg());
    dagger_task_release(t);
    return rc;
}

int dagger_mutable(dagger_ctx_t *ctx, const dagger_scope_t *where, dagger_fn_t ctor,
                   const dagger_value_t *argv, size_t argc, dagger_chunk_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_mutable: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_mutable: the context is NULL");
    DAGGER_CHECK(ctor, DAGGER_EINVAL, "dagger_mutable: the constructor is NULL");
    int rc = take_chunk(spawn_ctor(ctx, where, ctor, argv, argc), out);
    if (rc || !where || dagger__scope_is_any(where))
        return rc;
    /* A scope of every thread of a worker (dagger_scope_worker(r)): the data belongs to the
     * worker, and any of its threads may run the tasks that use it. */
    int nthreads = dagger_ctx_num_threads(ctx), rank = dagger_chunk_home(*out).rank;
    dagger__procset set;
    if (dagger__scope_resolve(where, rank, dagger_ctx_nranks(ctx), nthreads, &set, NULL, 0) ==
        nthreads)
        dagger__mem_pin(*out, &(dagger_proc_t){rank, DAGGER_PROC_CPU, -1});
    return 0;
}

/* ---------------------------------------------------------------- shards */

void dagger_shard_opts_init(dagger_shard_opts_t *o) { memset(o, 0, sizeof *o); }

static void shard_free(dagger_shard_t *s)
{
    for (size_t i = 0; i < s->npieces; i++)
        dagger_chunk_release(s->pieces[i]);
    dagger__free(s->pieces);
    dagger__free(s->procs);
    dagger__free(s->by_thread);
    dagger__free(s);
}

#define SHARD_FLAGS (DAGGER_SHARD_PER_WORKER | DAGGER_SHARD_PER_THREAD)

/* A shard record for `want` pieces (filled by the caller). NULL when out of memory. */
static dagger_shard_t *shard_new(const dagger_ctx_t *ctx, bool per_thread, int nthreads,
                                 size_t want)
{
    dagger_shard_t *s = dagger__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->ctx = ctx;
    s->id = atomic_fetch_add_explicit(&next_shard_id, 1, memory_order_relaxed);
    s->per_thread = per_thread;
    s->nthreads = nthreads;
    s->local = -1;
    s->pieces = dagger__calloc(want ? want : 1, sizeof *s->pieces);
    s->procs = dagger__calloc(want ? want : 1, sizeof *s->procs);
    s->by_thread = dagger__calloc((size_t)(nthreads > 0 ? nthreads : 1), sizeof *s->by_thread);
    if (!s->pieces || !s->procs || !s->by_thread) {
        shard_free(s);
        return NULL;
    }
    for (int t = 0; t < nthreads; t++)
        s->by_thread[t] = -1;
    return s;
}

/* Piece `i` is in place: index it when it lives on this rank. */
static void shard_index(dagger_shard_t *s, size_t i)
{
    if (dagger__mem_proxy(s->pieces[i], NULL, NULL))
        return; /* another rank's piece: reached through tasks that run there */
    int t = s->procs[i].index;
    if (s->per_thread && t >= 0 && t < s->nthreads)
        s->by_thread[t] = (int32_t)i;
    else if (!s->per_thread && s->local < 0)
        s->local = (int32_t)i;
}

int dagger_shard(dagger_ctx_t *ctx, const dagger_shard_opts_t *o, dagger_fn_t ctor,
                 const dagger_value_t *argv, size_t argc, dagger_shard_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_shard: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_shard: the context is NULL");
    DAGGER_CHECK(ctor, DAGGER_EINVAL, "dagger_shard: the constructor is NULL");
    unsigned flags = o ? o->flags : 0;
    DAGGER_CHECK((flags & ~(unsigned)SHARD_FLAGS) == 0, DAGGER_EINVAL,
                 "dagger_shard: unknown flags 0x%x", flags & ~(unsigned)SHARD_FLAGS);
    DAGGER_CHECK(flags != SHARD_FLAGS, DAGGER_EINVAL,
                 "dagger_shard: DAGGER_SHARD_PER_WORKER and DAGGER_SHARD_PER_THREAD contradict "
                 "each other; choose one");
    bool per_thread = (flags & DAGGER_SHARD_PER_THREAD) != 0;
    /* Every rank of the job that the scope names gets its pieces (ranks have as many threads
     * as this one: DAGGER_NUM_THREADS is the job's). */
    int nthreads = dagger_ctx_num_threads(ctx);
    int me = dagger_ctx_rank(ctx), nranks = dagger_ctx_nranks(ctx);
    const dagger_scope_t *scope = o ? o->scope : NULL;
    dagger__procset set;
    char why[512] = "", why_r[512];
    size_t want = 0;
    for (int r = 0; r < nranks; r++) {
        int n = dagger__scope_resolve(scope, r, nranks, nthreads, &set, why_r, sizeof why_r);
        want += per_thread ? (size_t)n : (size_t)(n > 0);
        if (r == me || !why[0])
            snprintf(why, sizeof why, "%s", why_r);
    }
    DAGGER_CHECK(want > 0, DAGGER_EINVAL, "dagger_shard: no place gets a piece: %s", why);

    dagger_shard_t *s = shard_new(ctx, per_thread, nthreads, want);
    dagger_task_t **tasks = s ? dagger__calloc(want, sizeof *tasks) : NULL;
    if (!tasks) {
        if (s)
            shard_free(s);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_shard: out of memory for %zu pieces",
                                  want);
    }
    /* Launch every constructor first, then wait: they run in parallel. */
    size_t k = 0;
    for (int r = 0; r < nranks; r++) {
        int n = dagger__scope_resolve(scope, r, nranks, nthreads, &set, NULL, 0);
        for (int t = 0; n > 0 && t < nthreads && k < want; t++) {
            if (per_thread && !dagger__procset_has(&set, t))
                continue;
            dagger_scope_t *where = NULL;
            if (per_thread)
                where = r == me ? dagger_scope_thread(t) : dagger_scope_worker_thread(r, t);
            else if (r != me)
                where = dagger_scope_worker(r);
            s->procs[k] = (dagger_proc_t){r, DAGGER_PROC_CPU, (int16_t)(per_thread ? t : -1)};
            tasks[k] = spawn_ctor(ctx, where ? where : scope, ctor, argv, argc);
            dagger_scope_release(where);
            k++;
            if (!per_thread)
                break;
        }
    }
    int rc = 0;
    char msg[1024] = "";
    for (size_t i = 0; i < want; i++) {
        dagger_chunk_t *c = NULL;
        int r = take_chunk(tasks[i], &c);
        if (r && !rc) {
            rc = r;
            char where[64];
            int len = dagger_proc_format(&s->procs[i], where, sizeof where);
            if (nranks > 1 && len > 0 && (size_t)len < sizeof where)
                snprintf(where + len, sizeof where - (size_t)len, " of rank %d",
                         (int)s->procs[i].rank);
            snprintf(msg, sizeof msg,
                     "dagger_shard: the constructor of the piece for %s failed: %s", where,
                     dagger_last_errmsg());
        }
        s->pieces[i] = c;
        s->npieces = i + 1;
        if (c && !s->per_thread) /* a worker's piece serves every thread of the worker */
            dagger__mem_pin(c, &s->procs[i]);
        if (c)
            shard_index(s, i);
    }
    dagger__free(tasks);
    if (rc) {
        shard_free(s);
        return dagger__set_errmsg_str(rc, msg);
    }
    *out = s;
    return 0;
}

int dagger__mem_shard_assemble(const dagger_ctx_t *ctx, bool per_thread, int nthreads,
                               dagger_chunk_t *const *pieces, const dagger_proc_t *procs, size_t n,
                               dagger_shard_t **out)
{
    dagger_shard_t *s = shard_new(ctx, per_thread, nthreads, n);
    DAGGER_CHECK(s, DAGGER_ENOMEM, "out of memory for a shard of %zu pieces", n);
    for (size_t i = 0; i < n; i++) {
        s->pieces[i] = dagger_chunk_retain(pieces[i]);
        s->procs[i] = procs[i];
        s->npieces = i + 1;
        shard_index(s, i);
    }
    *out = s;
    return 0;
}

dagger_shard_t *dagger_shard_retain(dagger_shard_t *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void dagger_shard_release(dagger_shard_t *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        shard_free(s);
}

size_t dagger_shard_count(const dagger_shard_t *s) { return s ? s->npieces : 0; }

dagger_chunk_t *dagger_shard_piece(const dagger_shard_t *s, size_t i)
{
    return s && i < s->npieces ? s->pieces[i] : NULL;
}

dagger_proc_t dagger_shard_piece_proc(const dagger_shard_t *s, size_t i)
{
    dagger_proc_t none = {-1, DAGGER_PROC_CPU, -1};
    return s && i < s->npieces ? s->procs[i] : none;
}

const dagger_ctx_t *dagger__mem_shard_ctx(const dagger_shard_t *s) { return s->ctx; }

bool dagger__mem_shard_on_rank(const dagger_shard_t *s, int rank)
{
    for (size_t i = 0; i < s->npieces; i++)
        if (s->procs[i].rank == rank)
            return true;
    return false;
}
bool dagger__mem_shard_per_thread(const dagger_shard_t *s) { return s->per_thread; }

dagger_chunk_t *dagger__mem_shard_local(const dagger_shard_t *s, int thread)
{
    if (!s->per_thread)
        return s->local >= 0 ? s->pieces[s->local] : NULL;
    if (thread < 0 || thread >= s->nthreads || s->by_thread[thread] < 0)
        return NULL;
    return s->pieces[s->by_thread[thread]];
}
