/* src/net/mpi/data.c - data across ranks: mutable data and shard pieces referenced from other
 * ranks, with weighted reference credits.
 *
 * Design: mutable data (dagger_mutable, shard pieces) never moves, so it travels as a
 * reference (home rank, chunk id, credit, thread, type) instead of bytes. The home keeps each
 * chunk it has referenced in a held table with the credit it has handed out; another rank
 * holds a proxy chunk (src/mem) carrying part of that credit. Copying a proxy inside a rank is
 * a plain refcount; handing it to a third rank splits its credit in two and sends nothing to
 * the home. When a proxy's last local reference goes, its credit comes back in one M_UNREF;
 * a reference that arrives home gives its credit back at once. The home releases the chunk
 * when all the credit it handed out is back. Placement sends a task that takes a proxy to its
 * home (src/sched/place.c), where the reference resolves to the chunk itself. A shard travels
 * as the references of the destination rank's pieces; that rank assembles its own view.
 * Invariants: the held table and the proxies' credits are touched by the progress thread only;
 * `held->out` is the sum of the credit of every proxy and reference in flight for that chunk.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "mem/mem.h"
#include "net/mpi/mpi_int.h"

#define HELD_BUCKETS 64
#define CREDIT_FULL (1ull << 40) /* a reference can be handed on 40 times before it is spent */
#define STATE_GONE (1ll << 62)   /* st->nproxies: the context closed; the last proxy frees st */

struct held {
    struct held *next;
    uint64_t id;
    dagger_chunk_t *chunk; /* retained while credit is out */
    uint64_t out;          /* credit handed out and not yet back */
};

/* C_UNREF: a proxy's credit going home (the command lives in the record). */
struct unref {
    struct mpi_cmd cmd;
    uint64_t rid, credit;
};

static struct held **bucket(struct mpi_state *st, uint64_t id)
{
    if (!st->held) {
        st->held = dagger__calloc(HELD_BUCKETS, sizeof *st->held);
        if (!st->held)
            return NULL;
    }
    return &st->held[id % HELD_BUCKETS];
}

static struct held *held_find(struct mpi_state *st, uint64_t id)
{
    struct held **b = bucket(st, id);
    for (struct held *h = b ? *b : NULL; h; h = h->next)
        if (h->id == id)
            return h;
    return NULL;
}

/* Credit `w` of chunk `id` came back: the last of it releases the chunk. */
static void credit_back(struct mpi_state *st, int src, uint64_t id, uint64_t w)
{
    struct held **pp = bucket(st, id);
    for (; pp && *pp; pp = &(*pp)->next) {
        struct held *h = *pp;
        if (h->id != id)
            continue;
        if (w > h->out) {
            fprintf(stderr,
                    "dagger: rank %d: rank %d gave back more credit of chunk %llu than was out\n",
                    st->rank, src, (unsigned long long)id);
            w = h->out;
        }
        h->out -= w;
        if (h->out == 0) {
            *pp = h->next;
            dagger_chunk_release(h->chunk);
            dagger__free(h);
        }
        return;
    }
    fprintf(stderr, "dagger: rank %d: rank %d gave back credit of chunk %llu, which is not held\n",
            st->rank, src, (unsigned long long)id);
}

void mpi__data_fini(struct mpi_state *st)
{
    for (size_t k = 0; st->held && k < HELD_BUCKETS; k++) {
        for (struct held *h = st->held[k], *n; h; h = n) {
            n = h->next;
            dagger_chunk_release(h->chunk);
            dagger__free(h);
        }
    }
    dagger__free(st->held);
    st->held = NULL;
}

bool mpi__data_keep_state(struct mpi_state *st)
{
    int64_t old = atomic_fetch_add(&st->nproxies, STATE_GONE);
    return old != 0;
}

/* A proxy's last reference went (any thread): its credit goes home through the progress
 * thread. After close nothing is sent (the job is over; the home freed what it held). */
static void proxy_freed(void *ud, int rank, uint64_t rid, uint64_t credit)
{
    struct mpi_state *st = ud;
    if (!(atomic_load(&st->nproxies) & STATE_GONE)) {
        struct unref *u = dagger__calloc(1, sizeof *u);
        if (u) { /* out of memory: the home keeps the chunk until the job ends */
            u->cmd.type = C_UNREF;
            u->cmd.rank = rank;
            u->rid = rid;
            u->credit = credit;
            mpi__push(st, &u->cmd);
        }
    }
    if (atomic_fetch_sub(&st->nproxies, 1) == STATE_GONE + 1)
        dagger__free(st);
}

void mpi__data_cmd(struct mpi_state *st, struct mpi_cmd *c)
{
    struct unref *u = (struct unref *)c;
    if (u->cmd.rank == st->rank) {
        credit_back(st, st->rank, u->rid, u->credit);
    } else {
        struct wbuf b = {0};
        wb_u64(&b, M_UNREF);
        wb_u64(&b, u->rid);
        wb_u64(&b, u->credit);
        mpi__send(st, u->cmd.rank, &b, false);
    }
    dagger__free(u);
}

void mpi__data_msg(struct mpi_state *st, int src, struct rbuf *rb)
{
    uint64_t id = rb_u64(rb), w = rb_u64(rb);
    if (rb->bad) {
        fprintf(stderr, "dagger: rank %d: a malformed credit message from rank %d\n", st->rank,
                src);
        return;
    }
    credit_back(st, src, id, w);
}

/* ---------------------------------------------------------------- references on the wire */

static void put_type(struct wbuf *b, const dagger_chunk_t *c)
{
    size_t shape[DAGGER_CHUNK_MAX_DIMS];
    int nd = dagger_chunk_shape(c, shape, DAGGER_CHUNK_MAX_DIMS);
    wb_u64(b, (uint64_t)dagger_chunk_size(c));
    wb_u64(b, (uint64_t)dagger_chunk_elt(c));
    wb_u64(b, (uint64_t)nd);
    for (int i = 0; i < nd; i++)
        wb_u64(b, shape[i]);
}

int mpi__put_ref(struct mpi_state *st, struct wbuf *b, dagger_chunk_t *c, int peer,
                 const char *what, char *why, size_t cap)
{
    dagger_proc_t p;
    if (!dagger_chunk_is_mutable(c, &p))
        return 0; /* data that can move: its bytes travel */
    int home;
    uint64_t rid, give;
    if (dagger__mem_proxy(c, &home, &rid) && home == peer) {
        give = 0; /* going home, where it resolves to the chunk: this proxy's credit stays out
                   * and its own give-back follows this message on the same ordered channel */
    } else if (dagger__mem_proxy(c, &home, &rid)) {
        uint64_t *credit = dagger__mem_proxy_credit(c);
        if (*credit < 2) {
            snprintf(why, cap,
                     "%s (chunk %llu of rank %d) was handed on between ranks too many times: "
                     "its reference credit is spent",
                     what, (unsigned long long)rid, home);
            return DAGGER_ERANGE;
        }
        give = *credit / 2;
        *credit -= give;
    } else {
        home = st->rank;
        rid = dagger_chunk_id(c);
        struct held *h = held_find(st, rid);
        if (!h) {
            struct held **bk = bucket(st, rid);
            h = bk ? dagger__calloc(1, sizeof *h) : NULL;
            if (!h) {
                snprintf(why, cap, "%s: out of memory keeping a reference to chunk %llu", what,
                         (unsigned long long)rid);
                return DAGGER_ENOMEM;
            }
            h->id = rid;
            h->chunk = dagger_chunk_retain(c);
            h->next = *bk;
            *bk = h;
        }
        give = CREDIT_FULL;
        h->out += give;
    }
    wb_u64(b, MPI__V_REF);
    wb_u64(b, (uint64_t)home);
    wb_u64(b, rid);
    wb_u64(b, give);
    wb_u64(b, (uint64_t)(int64_t)p.index);
    put_type(b, c);
    return 1;
}

/* After the MPI__V_REF mode: the chunk, or its proxy. Returns 0 or an error (why set). */
int mpi__get_ref(struct mpi_state *st, struct rbuf *rb, int src, dagger_chunk_t **out, char *why,
                 size_t cap)
{
    int home = (int)(int64_t)rb_u64(rb);
    uint64_t rid = rb_u64(rb), credit = rb_u64(rb);
    int index = (int)(int64_t)rb_u64(rb);
    size_t size = rb_u64(rb);
    int elt = (int)rb_u64(rb), nd = (int)rb_u64(rb);
    size_t shape[DAGGER_CHUNK_MAX_DIMS] = {0};
    if (nd < 0 || nd > DAGGER_CHUNK_MAX_DIMS)
        rb->bad = true;
    for (int i = 0; !rb->bad && i < nd; i++)
        shape[i] = rb_u64(rb);
    if (rb->bad || home < 0 || home >= st->nranks || (credit == 0) != (home == st->rank) ||
        index < -1 || index >= 32767) {
        snprintf(why, cap, "a malformed data reference from rank %d", src);
        return DAGGER_EINVAL;
    }
    if (home == st->rank) {
        struct held *h = held_find(st, rid);
        if (!h) {
            snprintf(why, cap, "rank %d referred to chunk %llu of rank %d, which is not held there",
                     src, (unsigned long long)rid, home);
            return DAGGER_EINVAL;
        }
        dagger_proc_t p;
        *out = dagger_chunk_retain(h->chunk);
        /* Data of a worker (a shard's per-worker piece, dagger_mutable on a worker scope): every
         * thread of this rank may use it. The constructor's task is done and only references
         * reach the chunk, the first of them here, so no task of this rank reads its pin now. */
        if (index < 0 && dagger_chunk_is_mutable(h->chunk, &p) && p.index >= 0) {
            p.index = -1;
            dagger__mem_pin(h->chunk, &p);
        }
        return 0; /* a proxy sent it home: its credit stays out until the proxy goes */
    }
    dagger_proc_t p = {home, DAGGER_PROC_CPU, (int16_t)index};
    atomic_fetch_add(&st->nproxies, 1);
    int rc = dagger__mem_proxy_create(st->ctx, &p, rid, size, (dagger_elt_t)elt, nd, shape, credit,
                                      proxy_freed, st, out);
    if (rc) {
        atomic_fetch_sub(&st->nproxies, 1);
        snprintf(why, cap, "a reference to chunk %llu of rank %d: %s", (unsigned long long)rid,
                 home, dagger_last_errmsg());
    }
    return rc;
}

int mpi__put_shard(struct mpi_state *st, struct wbuf *b, dagger_shard_t *s, int peer,
                   const char *what, char *why, size_t cap)
{
    size_t n = dagger_shard_count(s), m = 0;
    for (size_t i = 0; i < n; i++)
        m += dagger_shard_piece_proc(s, i).rank == peer;
    wb_u64(b, MPI__V_SHARD);
    wb_u64(b, dagger__mem_shard_per_thread(s));
    wb_u64(b, (uint64_t)dagger_ctx_num_threads(st->ctx));
    wb_u64(b, m);
    for (size_t i = 0; i < n; i++) {
        dagger_proc_t p = dagger_shard_piece_proc(s, i);
        if (p.rank != peer)
            continue;
        wb_u64(b, (uint64_t)(int64_t)p.index);
        int rc = mpi__put_ref(st, b, dagger_shard_piece(s, i), peer, what, why, cap);
        if (rc == 0) {
            snprintf(why, cap, "%s: a piece of the shard is not mutable data", what);
            rc = DAGGER_ESTATE;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int mpi__get_shard(struct mpi_state *st, struct rbuf *rb, int src, dagger_shard_t **out, char *why,
                   size_t cap)
{
    bool per_thread = rb_u64(rb) != 0;
    uint64_t nthreads = rb_u64(rb), m = rb_u64(rb);
    if (rb->bad || nthreads > 65536 || m > 65536) {
        snprintf(why, cap, "a malformed shard from rank %d", src);
        return DAGGER_EINVAL;
    }
    dagger_chunk_t **pieces = dagger__calloc(m ? m : 1, sizeof *pieces);
    dagger_proc_t *procs = dagger__calloc(m ? m : 1, sizeof *procs);
    int rc = pieces && procs ? 0 : DAGGER_ENOMEM;
    if (rc)
        snprintf(why, cap, "out of memory for a shard of %llu pieces", (unsigned long long)m);
    size_t got = 0;
    for (; !rc && got < m; got++) {
        int64_t index = (int64_t)rb_u64(rb);
        if (rb_u64(rb) != MPI__V_REF || rb->bad || index < -1 || index >= (int64_t)nthreads) {
            snprintf(why, cap, "a malformed shard from rank %d", src);
            rc = DAGGER_EINVAL;
            break;
        }
        procs[got] = (dagger_proc_t){st->rank, DAGGER_PROC_CPU, (int16_t)index};
        rc = mpi__get_ref(st, rb, src, &pieces[got], why, cap);
        if (rc)
            break;
    }
    if (!rc) {
        rc = dagger__mem_shard_assemble(st->ctx, per_thread, (int)nthreads, pieces, procs, m, out);
        if (rc)
            snprintf(why, cap, "%s", dagger_last_errmsg());
    }
    for (size_t i = 0; pieces && i < got; i++)
        dagger_chunk_release(pieces[i]);
    dagger__free(pieces);
    dagger__free(procs);
    return rc;
}
