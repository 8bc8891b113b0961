/* src/net/mpi/spmd.c - SPMD mode: every rank runs main with a context of its own; collectives
 * that suspend the calling task; the close every rank joins.
 *
 * Design: a collective (dagger_barrier, dagger_bcast, dagger_gather; arguments checked in
 * src/net/coll.c) is a record the caller posts to the progress thread (C_COLL) before it
 * waits on the record's event: a task suspends on its fiber, so its worker thread runs other
 * tasks; another thread waits as in dagger_wait. The progress thread runs the collectives of a
 * context one at a time, in the order they were posted (MPI wants every rank to start its
 * collectives in the same order), as nonblocking MPI calls it tests in its loop:
 *   1. an agreement: MPI_Iallreduce(MAX) of (op, ~op, size, ~size, root, ~root), which gives
 *      every rank the largest and smallest of each, so ranks that called different collectives,
 *      sizes or roots all fail with DAGGER_EINVAL instead of corrupting memory or hanging. It is
 *      also the barrier: no rank's all-reduce completes before every rank has entered it;
 *   2. the data: MPI_Ibcast in pieces of at most 1 GiB, or MPI_Igather.
 * The data goes through buffers of the record (copied in at the call, out after it), so that a
 * collective abandoned when a rank is lost (MPI cannot cancel a collective) never writes into
 * the caller's memory later; such a record is kept until the context closes.
 * A lost rank (heartbeats, pid probe: progress.c) fails the collective in flight and the queued
 * ones with DAGGER_EPEER naming the rank, and every later one at once.
 * Close: the ranks' contexts end together. Every rank other than 0 tells rank 0 it closes
 * (M_CLOSING) and waits for its stop; rank 0 waits until every other rank closes (or is lost),
 * then runs the termination rounds of driver mode (progress.c) and stops them, so remote work
 * between ranks is never cut short.
 * Invariants: the queue and `closing` are touched by the progress thread only; a record has two
 * references (the caller's and the progress thread's) and its event fires once.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "net/mpi/mpi_int.h"

struct coll_op {
    struct mpi_cmd cmd; /* C_COLL; cmd.rec is this record */
    struct coll_op *next;
    _Atomic int refs;
    struct dagger__event ev;
    struct dagger__coll c;
    int phase; /* 0 queued, 1 agreeing, 2 moving data */
    uint64_t mine[6], all[6];
    void *buf; /* the data: bcast: size bytes; gather: size (nranks * size on the root) */
    MPI_Request *reqs;
    int nreq;
    int rc;
    char why[320];
};

struct mpi_spmd {
    struct coll_op *head, *tail; /* progress: queued collectives, the head in flight */
    struct coll_op *dead;        /* progress: abandoned after a loss, freed at close */
    int lost_peer;               /* progress: -1, or the rank whose loss broke collectives */
    bool *closing;               /* progress: per rank, M_CLOSING seen (rank 0) */
    _Atomic uint32_t nclosing;   /* rank 0: ranks that closed or were lost */
    _Atomic uint32_t rank0_lost; /* another rank: rank 0 was lost (its close then ends) */
};

static const char *op_name(uint64_t op)
{
    return op == DAGGER__COLL_BARRIER  ? "dagger_barrier"
           : op == DAGGER__COLL_BCAST  ? "dagger_bcast"
           : op == DAGGER__COLL_GATHER ? "dagger_gather"
                                       : "an unknown collective";
}

void mpi__spmd_init(struct mpi_state *st)
{
    st->spmd = dagger__calloc(1, sizeof *st->spmd);
    if (st->spmd)
        st->spmd->closing = dagger__calloc((size_t)st->nranks, sizeof(bool));
    if (!st->spmd || !st->spmd->closing)
        dagger__panic("out of memory for the MPI backend's SPMD state");
    st->spmd->lost_peer = -1;
}

static void op_release(struct coll_op *op)
{
    if (atomic_fetch_sub_explicit(&op->refs, 1, memory_order_acq_rel) != 1)
        return;
    dagger__free(op->buf);
    dagger__free(op->reqs);
    dagger__free(op);
}

void mpi__spmd_fini(struct mpi_state *st)
{
    if (!st->spmd)
        return;
    for (struct coll_op *op = st->spmd->dead, *n; op; op = n) {
        n = op->next;
        op_release(op);
    }
    dagger__free(st->spmd->closing);
    dagger__free(st->spmd);
    st->spmd = NULL;
}

bool mpi__spmd_busy(const struct mpi_state *st) { return st->spmd && st->spmd->head; }

/* ---------------------------------------------------------------- the caller's side */

int mpi__spmd_coll(dagger_ctx_t *ctx, const struct dagger__coll *c)
{
    struct mpi_state *st = dagger__ctx_ranks(ctx);
    int n = st->nranks;
    bool root = st->rank == c->root;
    DAGGER_CHECK(c->op != DAGGER__COLL_GATHER || c->size <= INT_MAX, DAGGER_EINVAL,
                 "%s: size %zu is more than this version gathers per rank (%d bytes)", c->fn,
                 c->size, INT_MAX);
    struct coll_op *op = dagger__calloc(1, sizeof *op);
    DAGGER_CHECK(op, DAGGER_ENOMEM, "%s: out of memory", c->fn);
    size_t len = c->op == DAGGER__COLL_BCAST            ? c->size
                 : c->op == DAGGER__COLL_GATHER && root ? c->size * (size_t)n
                 : c->op == DAGGER__COLL_GATHER         ? c->size
                                                        : 0;
    op->buf = len ? dagger__malloc(len) : NULL;
    if (len && !op->buf) {
        dagger__free(op);
        return dagger__set_errmsg(DAGGER_ENOMEM, "%s: out of memory for %zu bytes", c->fn, len);
    }
    if (c->op == DAGGER__COLL_BCAST && root && c->size)
        memcpy(op->buf, c->send, c->size);
    if (c->op == DAGGER__COLL_GATHER && c->size)
        memcpy((char *)op->buf + (root ? (size_t)st->rank * c->size : 0), c->send, c->size);
    op->c = *c;
    atomic_init(&op->refs, 2);
    dagger__event_init(&op->ev);
    op->cmd.type = C_COLL;
    op->cmd.rec = op;
    mpi__push(st, &op->cmd);
    int rc = dagger__event_wait(ctx, &op->ev, 0);
    if (rc) { /* no stack to suspend on: the collective goes on without this caller */
        op_release(op);
        return rc;
    }
    rc = op->rc;
    if (rc) {
        dagger__set_errmsg(rc, "%s (rank %d): %s", c->fn, st->rank, op->why);
    } else if (c->op == DAGGER__COLL_BCAST && !root && c->size) {
        memcpy(c->recv, op->buf, c->size);
    } else if (c->op == DAGGER__COLL_GATHER && root && c->size) {
        memcpy(c->recv, op->buf, len);
    }
    op_release(op);
    return rc;
}

/* ---------------------------------------------------------------- the progress thread's side */

static void start(struct mpi_state *st, struct coll_op *op);

/* The head is done: wake its caller and start the next one. */
static void finish(struct mpi_state *st, struct coll_op *op, int rc)
{
    struct mpi_spmd *sp = st->spmd;
    sp->head = op->next;
    if (!sp->head)
        sp->tail = NULL;
    op->next = NULL;
    op->rc = rc;
    dagger__event_fire(&op->ev, st->ctx);
    op_release(op);
    if (sp->head)
        start(st, sp->head);
}

static void broken_why(struct mpi_state *st, struct coll_op *op, const char *when)
{
    int r = st->spmd->lost_peer;
    snprintf(op->why, sizeof op->why, "rank %d was lost (%s) %s", r, st->peers[r].why, when);
}

static void start(struct mpi_state *st, struct coll_op *op)
{
    if (st->spmd->lost_peer >= 0) {
        broken_why(st, op, "before this collective: collectives of this context cannot complete");
        finish(st, op, DAGGER_EPEER);
        return;
    }
    op->phase = 1;
    op->nreq = 1;
    op->reqs = dagger__calloc(2, sizeof *op->reqs);
    if (!op->reqs) {
        snprintf(op->why, sizeof op->why, "out of memory starting the collective");
        finish(st, op, DAGGER_ENOMEM);
        return;
    }
    uint64_t v[3] = {(uint64_t)op->c.op, op->c.size, (uint64_t)op->c.root};
    for (int i = 0; i < 3; i++) {
        op->mine[2 * i] = v[i];
        op->mine[2 * i + 1] = ~v[i];
    }
    MPI_Iallreduce(op->mine, op->all, 6, MPI_UINT64_T, MPI_MAX, st->comm, &op->reqs[0]);
}

/* After the agreement: do every rank's arguments match? Returns 0 or DAGGER_EINVAL (why set). */
static int agreed(struct coll_op *op)
{
    const uint64_t *a = op->all;
    if (a[0] != ~a[1]) {
        snprintf(op->why, sizeof op->why,
                 "the ranks called different collectives at this point (%s and %s): every rank "
                 "must call the same collectives in the same order",
                 op_name(~a[1]), op_name(a[0]));
        return DAGGER_EINVAL;
    }
    if (a[2] != ~a[3]) {
        snprintf(op->why, sizeof op->why,
                 "the ranks passed different sizes (%llu and %llu bytes; this rank %zu): every "
                 "rank must pass the same size",
                 (unsigned long long)~a[3], (unsigned long long)a[2], op->c.size);
        return DAGGER_EINVAL;
    }
    if (op->c.op != DAGGER__COLL_BARRIER && a[4] != ~a[5]) {
        snprintf(op->why, sizeof op->why,
                 "the ranks passed different roots (%llu and %llu; this rank %d): every rank "
                 "must pass the same root",
                 (unsigned long long)~a[5], (unsigned long long)a[4], op->c.root);
        return DAGGER_EINVAL;
    }
    return 0;
}

/* Start the data phase. Returns false when there is none (a barrier). */
static bool start_data(struct mpi_state *st, struct coll_op *op)
{
    size_t size = op->c.size;
    if (op->c.op == DAGGER__COLL_BARRIER || size == 0)
        return false;
    op->phase = 2;
    if (op->c.op == DAGGER__COLL_GATHER) {
        op->nreq = 1;
        bool root = st->rank == op->c.root;
        MPI_Igather(root ? MPI_IN_PLACE : op->buf, (int)size, MPI_BYTE, op->buf, (int)size,
                    MPI_BYTE, op->c.root, st->comm, &op->reqs[0]);
        return true;
    }
    size_t pieces = (size + MPI__PIECE - 1) / MPI__PIECE;
    if (pieces > 2) {
        MPI_Request *r = dagger__realloc(op->reqs, pieces * sizeof *r);
        if (!r) /* every rank needs the same pieces: cannot skip one; wait here instead */
            dagger__panic("out of memory for %zu broadcast requests", pieces);
        op->reqs = r;
    }
    op->nreq = (int)pieces;
    for (size_t k = 0; k < pieces; k++) {
        size_t off = k * MPI__PIECE, len = size - off < MPI__PIECE ? size - off : MPI__PIECE;
        MPI_Ibcast((char *)op->buf + off, (int)len, MPI_BYTE, op->c.root, st->comm, &op->reqs[k]);
    }
    return true;
}

bool mpi__spmd_poll(struct mpi_state *st)
{
    struct coll_op *op = st->spmd->head;
    if (!op || op->phase == 0)
        return false;
    int flag = 0;
    MPI_Testall(op->nreq, op->reqs, &flag, MPI_STATUSES_IGNORE);
    if (!flag)
        return false;
    if (op->phase == 1) {
        int rc = agreed(op);
        if (rc || !start_data(st, op))
            finish(st, op, rc);
        return true;
    }
    finish(st, op, 0);
    return true;
}

void mpi__spmd_on_cmd(struct mpi_state *st, struct mpi_cmd *c)
{
    struct mpi_spmd *sp = st->spmd;
    if (c->type == C_CLOSING) {
        dagger__free(c);
        if (st->rank == 0 || st->peers[0].lost)
            return;
        struct wbuf b = {0};
        wb_u64(&b, M_CLOSING);
        mpi__send(st, 0, &b, false);
        return;
    }
    struct coll_op *op = c->rec;
    op->next = NULL;
    if (sp->tail)
        sp->tail->next = op;
    else
        sp->head = op;
    sp->tail = op;
    if (sp->head == op)
        start(st, op);
}

static void mark_closing(struct mpi_state *st, int r)
{
    struct mpi_spmd *sp = st->spmd;
    if (sp->closing[r])
        return;
    sp->closing[r] = true;
    atomic_fetch_add_explicit(&sp->nclosing, 1, memory_order_release);
    dagger__futex_wake(&sp->nclosing, INT_MAX);
}

void mpi__spmd_on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb)
{
    (void)rb;
    if (type == M_CLOSING && st->rank == 0)
        mark_closing(st, src);
}

void mpi__spmd_lost(struct mpi_state *st, int peer)
{
    struct mpi_spmd *sp = st->spmd;
    if (!sp)
        return;
    if (st->rank == 0)
        mark_closing(st, peer); /* nothing to wait for from it */
    if (peer == 0) {
        atomic_store_explicit(&sp->rank0_lost, 1, memory_order_release);
        dagger__futex_wake(&st->stopped, INT_MAX); /* a close waiting for rank 0's stop */
    }
    if (sp->lost_peer < 0)
        sp->lost_peer = peer;
    struct coll_op *op = sp->head;
    if (!op)
        return;
    /* The one in flight: MPI cannot cancel it, so its record (and buffer) stays until close. */
    sp->head = sp->tail = NULL;
    for (struct coll_op *n; op; op = n) {
        n = op->next;
        bool active = op->phase > 0;
        broken_why(st, op, active ? "during this collective" : "before this collective started");
        op->rc = DAGGER_EPEER;
        op->next = NULL;
        if (active) {
            atomic_fetch_add(&op->refs, 1);
            op->next = sp->dead;
            sp->dead = op;
        }
        dagger__event_fire(&op->ev, st->ctx);
        op_release(op);
    }
}

/* ---------------------------------------------------------------- close */

void mpi__spmd_quiesce(struct mpi_state *st)
{
    if (st->rank != 0) {
        struct mpi_cmd *c = dagger__calloc(1, sizeof *c);
        if (c) { /* without it rank 0 waits for this rank's loss, after close */
            c->type = C_CLOSING;
            mpi__push(st, c);
        }
        /* Rank 0 stops this rank once every rank closed and no work is left; its loss ends the
         * wait as well (then no rank coordinates: the others end on their own). */
        while (!atomic_load_explicit(&st->stopped, memory_order_acquire) &&
               !atomic_load_explicit(&st->spmd->rank0_lost, memory_order_acquire))
            dagger__futex_wait(&st->stopped, 0, 20 * 1000 * 1000);
        return;
    }
    struct mpi_spmd *sp = st->spmd;
    uint32_t want = (uint32_t)st->nranks - 1;
    for (;;) {
        uint32_t v = atomic_load_explicit(&sp->nclosing, memory_order_acquire);
        if (v >= want)
            break;
        dagger__futex_wait(&sp->nclosing, v, 20 * 1000 * 1000);
    }
}
