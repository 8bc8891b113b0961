/* src/net/mpi/subscribe.c - the MPI ranks backend: task results left where they were made, and
 * pulled straight from there by whichever rank reads them.
 *
 * Design: a served task's chunk result larger than MPI__INLINE_MAX stays on its rank as an
 * export that several ranks may pull (remote.c). The rank that spawned the task completes its
 * proxy with a chunk whose home is the producer's host memory, the internal space kind
 * DAGGER__SPACE_RANK, with a struct mpi_rref (producer rank, export id) as home pointer and no
 * bytes. A task sent on to a third rank carries the reference, and that rank pulls the bytes
 * from the producer directly, not through the spawning rank; sent back to the producer, it
 * takes the export's chunk as it is. Reading the chunk on the spawning rank (dagger_chunk_data,
 * a local task's staging) goes through the space's copy op, which asks the progress thread to
 * pull the bytes and waits. Releasing the chunk frees the reference, which sends M_DROP to the
 * producer (the export goes once its sends are out).
 * Values of every kind also go straight to a consumer sent early to its rank (remote.c, "Early
 * sends"): the spawning rank subscribes that rank to the producer, which sends its result there
 * when it ends (M_ARG), and a large result sent there is pulled from the producer as above.
 * Invariants: a reference outlives its context only as a dead one (st NULL; reading it fails);
 * the copy op never runs on the progress thread (results that are references complete their
 * proxies on a worker, see remote.c).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "mem/mem.h"
#include "net/mpi/mpi_int.h"
#include "trace/trace.h"

static pthread_mutex_t rref_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mpi_rref *rrefs; /* guarded by rref_lock */

struct mpi_rref *mpi__rref_new(struct mpi_state *st, int rank, uint64_t xid, bool counted)
{
    struct mpi_rref *r = dagger__calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->st = st;
    r->rank = rank;
    r->xid = xid;
    r->counted = counted;
    if (counted)
        atomic_fetch_add_explicit(&st->nrrefs, 1, memory_order_relaxed);
    pthread_mutex_lock(&rref_lock);
    r->next = rrefs;
    if (rrefs)
        rrefs->prev = r;
    rrefs = r;
    pthread_mutex_unlock(&rref_lock);
    return r;
}

const struct mpi_rref *mpi__chunk_rref(dagger_chunk_t *c)
{
    dagger_space_t home = dagger_chunk_home(c);
    return home.kind == DAGGER__SPACE_RANK ? dagger__mem_home_ptr(c) : NULL;
}

void mpi__sub_fini(struct mpi_state *st)
{
    pthread_mutex_lock(&rref_lock);
    for (struct mpi_rref *r = rrefs; r; r = r->next)
        if (r->st == st)
            r->st = NULL;
    pthread_mutex_unlock(&rref_lock);
    /* Drops posted after the progress thread left: the producers are gone too. */
    struct mpi_cmd *c = atomic_exchange(&st->cmds, NULL);
    while (c) {
        struct mpi_cmd *n = c->next;
        if (c->type == C_DROP)
            dagger__free(c);
        c = n;
    }
}

/* ---------------------------------------------------------------- the space's ops */

static void *rank_alloc(const dagger_space_t *s, size_t n)
{
    (void)s;
    (void)n;
    return NULL; /* nothing is ever staged to another rank's memory */
}

/* The chunk is released: tell the producer to let its export go. */
static void rank_free(const dagger_space_t *s, void *p, size_t n)
{
    (void)s;
    (void)n;
    struct mpi_rref *r = p;
    pthread_mutex_lock(&rref_lock);
    struct mpi_state *st = r->st;
    if (r->prev)
        r->prev->next = r->next;
    else
        rrefs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (st && r->counted)
        atomic_fetch_sub_explicit(&st->nrrefs, 1, memory_order_relaxed);
    struct mpi_cmd *c = st ? dagger__calloc(1, sizeof *c) : NULL;
    if (c) { /* pushed under the lock: the context cannot close in between */
        c->type = C_DROP;
        c->rank = r->rank;
        c->id = r->xid;
        mpi__push(st, c);
    } /* out of memory: the producer keeps the export until its context closes */
    pthread_mutex_unlock(&rref_lock);
    dagger__free(r);
}

struct fetch {
    struct mpi_cmd cmd;
    struct import im;
    size_t size;
    void *dst;
    _Atomic uint32_t done;
    int rc;
    char why[256];
};

static void fetch_done(struct mpi_state *st, struct import *im, int rc, const char *why)
{
    (void)st;
    struct fetch *f = im->ud;
    if (!rc)
        DAGGER__TRACE(
            dagger__trace_rank(DAGGER__TRACE_RANK_DATA_RECEIVED, im->peer, f->cmd.id, im->size));
    f->rc = rc;
    if (rc)
        snprintf(f->why, sizeof f->why, "%s", why);
    atomic_store_explicit(&f->done, 1, memory_order_release);
    dagger__futex_wake(&f->done, 1);
}

/* Host memory <- the producer's export: pull it through the progress thread and wait. */
static int rank_copy(const dagger_space_t *ds, void *dst, const dagger_space_t *ss, const void *src,
                     size_t n)
{
    (void)ds;
    DAGGER_CHECK(ss->kind == DAGGER__SPACE_RANK, DAGGER_ENOSYS,
                 "the remote host space copies only from another rank to the host");
    const struct mpi_rref *r = src;
    pthread_mutex_lock(&rref_lock);
    struct mpi_state *st = r->st;
    pthread_mutex_unlock(&rref_lock);
    DAGGER_CHECK(st, DAGGER_ESTATE,
                 "the chunk's bytes are on rank %d, and its context was closed: they can no "
                 "longer be read",
                 r->rank);
    DAGGER_CHECK(!pthread_equal(pthread_self(), st->thread), DAGGER_ESTATE,
                 "internal: the MPI progress thread cannot wait for a pull from rank %d", r->rank);
    struct fetch *f = dagger__calloc(1, sizeof *f);
    DAGGER_CHECK(f, DAGGER_ENOMEM, "out of memory pulling %zu bytes from rank %d", n, r->rank);
    f->cmd.type = C_FETCH;
    f->cmd.rank = r->rank;
    f->cmd.id = r->xid;
    f->cmd.rec = f;
    f->size = n;
    f->dst = dst;
    mpi__push(st, &f->cmd);
    while (!atomic_load_explicit(&f->done, memory_order_acquire))
        dagger__futex_wait(&f->done, 0, 100 * 1000 * 1000);
    int rc = f->rc;
    if (rc)
        dagger__set_errmsg(rc, "pulling the %zu bytes of a result from rank %d: %s", n, r->rank,
                           f->why);
    dagger__free(f);
    return rc;
}

static const struct dagger__space_ops rank_ops = {"remote host", rank_alloc, rank_free, rank_copy,
                                                  NULL};

__attribute__((constructor)) static void register_rank_space(void)
{
    dagger__mem_register_space(DAGGER__SPACE_RANK, &rank_ops);
}

/* ---------------------------------------------------------------- the progress thread */

void mpi__sub_cmd(struct mpi_state *st, struct mpi_cmd *c)
{
    if (c->type == C_DROP) {
        if (!st->peers[c->rank].lost) {
            struct wbuf b = {0};
            wb_u64(&b, M_DROP);
            wb_u64(&b, c->id);
            mpi__send(st, c->rank, &b, false);
        }
        dagger__free(c);
        return;
    }
    struct fetch *f = c->rec; /* C_FETCH: the command lives in the fetch */
    f->im = (struct import){
        .peer = c->rank, .size = f->size, .dst = f->dst, .done = fetch_done, .ud = f};
    if (st->peers[c->rank].lost) {
        char why[200];
        snprintf(why, sizeof why, "rank %d was lost (%s)", c->rank, st->peers[c->rank].why);
        fetch_done(st, &f->im, DAGGER_EPEER, why);
        return;
    }
    if (atomic_load(&st->stopped) && st->rank != 0) {
        fetch_done(st, &f->im, DAGGER_ESTATE, "the job has ended");
        return;
    }
    if (mpi__import_start(st, &f->im)) {
        fetch_done(st, &f->im, DAGGER_ENOMEM, "out of memory posting the receive");
        return;
    }
    struct wbuf b = {0};
    wb_u64(&b, M_PULL);
    wb_u64(&b, c->id);
    wb_u64(&b, (uint64_t)f->im.tag);
    mpi__send(st, c->rank, &b, false);
}

/* ---------------------------------------------------------------- stats */

/* Bytes this rank received by pulls (tests prove with it that a result did not pass through
 * the rank that spawned its consumers). 0 for a context without ranks. */
uint64_t dagger__mpi_bytes_pulled(const dagger_ctx_t *ctx)
{
    const struct mpi_state *st = dagger__ctx_ranks(ctx);
    return st ? atomic_load_explicit(&st->bytes_pulled, memory_order_relaxed) : 0;
}

uint64_t dagger__mpi_served_total(const dagger_ctx_t *ctx, uint64_t *in)
{
    const struct mpi_state *st = dagger__ctx_ranks(ctx);
    if (in)
        *in = st ? atomic_load_explicit(&st->served_in, memory_order_relaxed) : 0;
    return st ? atomic_load_explicit(&st->served_total, memory_order_relaxed) : 0;
}

int64_t dagger__mpi_exports(const dagger_ctx_t *ctx)
{
    const struct mpi_state *st = dagger__ctx_ranks(ctx);
    return st ? atomic_load_explicit(&st->nexports, memory_order_relaxed) : 0;
}
