/* src/net/mpi/trace.c - one trace for every rank: with DAGGER_TRACE set, rank 0 writes a
 * single file holding the events of all ranks (src/trace/merge.c lays them out, one process
 * per rank in Perfetto JSON).
 *
 * Design: at join every rank says whether it traces this context, and reads its clock right
 * after a barrier; at close, after the local drain and before the progress thread stops,
 * every other rank stops recording and hands its trace to its progress thread as .dtrace bytes
 * (dagger__trace_rank_take), which announces it to rank 0 (M_TRACE with the size); rank 0
 * posts its receive and pulls it (M_TRACE_PULL, the same pattern as any large payload), and
 * hands it to the trace layer (dagger__trace_rank_add), which merges it at rank 0's trace
 * close. Both waits end on the loss of the peer, and at the latest after DAGGER_PEER_TIMEOUT:
 * a trace that cannot come is left out, never waited for forever.
 * Clocks: ranks on rank 0's host share its CLOCK_MONOTONIC (one system-wide clock), so their
 * events need no shift. For a rank on another host the offset is estimated at join: every
 * rank reads its clock as it leaves a barrier, and the difference to rank 0's reading is taken
 * as the offset (its error is the skew of leaving the barrier, typically microseconds).
 * Invariants: `buf` (a rank other than 0) is touched by the progress thread once handed over.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "net/mpi/mpi_int.h"
#include "trace/trace.h"

struct mpi_rtrace {
    bool *on;           /* per rank: it traces this context (DAGGER_TRACE) */
    int64_t *offset_ns; /* per rank: its clock to rank 0's (0 on rank 0's host) */
    bool *done;         /* rank 0, progress: that rank's trace arrived or never will */
    _Atomic uint32_t ndone;
    /* another rank: the trace being sent */
    void *buf;
    size_t len;
    _Atomic uint32_t sent;
};

struct pulled { /* rank 0: a trace being received */
    struct import im;
    void *buf;
};

int mpi__rtrace_join(struct mpi_state *st)
{
    struct mpi_rtrace *rt = dagger__calloc(1, sizeof *rt);
    int n = st->nranks;
    int64_t *all = dagger__calloc((size_t)n * 2, sizeof *all);
    if (rt) {
        rt->on = dagger__calloc((size_t)n, sizeof *rt->on);
        rt->offset_ns = dagger__calloc((size_t)n, sizeof *rt->offset_ns);
        rt->done = dagger__calloc((size_t)n, sizeof *rt->done);
    }
    /* Collective whatever happened: every rank must call the same MPI functions. */
    MPI_Barrier(st->comm);
    int64_t mine[2] = {dagger__trace_rank_on(st->ctx), (int64_t)dagger__now_ns()};
    int64_t dummy[2];
    MPI_Allgather(mine, 2, MPI_INT64_T, all ? all : dummy, all ? 2 : 0, MPI_INT64_T, st->comm);
    if (!rt || !all || !rt->on || !rt->offset_ns || !rt->done) {
        dagger__free(all);
        st->rtrace = rt;
        mpi__rtrace_fini(st);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_ctx_open: out of memory");
    }
    for (int r = 0; r < n; r++) {
        rt->on[r] = all[2 * r] != 0;
        rt->offset_ns[r] = st->peers[r].same_host ? 0 : all[0 * 2 + 1] - all[2 * r + 1];
    }
    dagger__free(all);
    st->rtrace = rt;
    return 0;
}

void mpi__rtrace_fini(struct mpi_state *st)
{
    struct mpi_rtrace *rt = st->rtrace;
    if (!rt)
        return;
    free(rt->buf); /* from open_memstream (the trace layer) */
    dagger__free(rt->on);
    dagger__free(rt->offset_ns);
    dagger__free(rt->done);
    dagger__free(rt);
    st->rtrace = NULL;
}

static void mark_done(struct mpi_state *st, int r)
{
    struct mpi_rtrace *rt = st->rtrace;
    if (rt->done[r])
        return;
    rt->done[r] = true;
    atomic_fetch_add_explicit(&rt->ndone, 1, memory_order_release);
    dagger__futex_wake(&rt->ndone, INT_MAX);
}

static void wake_sent(struct mpi_rtrace *rt)
{
    atomic_store_explicit(&rt->sent, 1, memory_order_release);
    dagger__futex_wake(&rt->sent, INT_MAX);
}

/* A rank other than 0: the trace is out (or will never go). */
static void sent(void *ud)
{
    struct mpi_rtrace *rt = ud;
    free(rt->buf); /* from open_memstream (the trace layer) */
    rt->buf = NULL;
    wake_sent(rt);
}

static void pulled(struct mpi_state *st, struct import *im, int rc, const char *why)
{
    struct pulled *p = (struct pulled *)im;
    if (!rc)
        rc = dagger__trace_rank_add(st->ctx, im->peer, st->nranks, p->buf, im->size,
                                    st->rtrace->offset_ns[im->peer]);
    if (rc)
        fprintf(stderr, "dagger: DAGGER_TRACE: the events of rank %d are left out: %s\n", im->peer,
                why ? why : dagger_last_errmsg());
    mark_done(st, im->peer);
    dagger__free(p->buf);
    dagger__free(p);
}

void mpi__rtrace_on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb)
{
    struct mpi_rtrace *rt = st->rtrace;
    if (type == M_TRACE_PULL) { /* a rank other than 0: rank 0 posted its receive */
        uint64_t tag = rb_u64(rb);
        if (rb->bad || src != 0 || !rt->buf || tag > INT_MAX) { /* rank 0 cannot take it */
            sent(rt);
            return;
        }
        mpi__send_data(st, 0, (int)tag, rt->buf, rt->len, sent, rt);
        return;
    }
    /* M_TRACE on rank 0: a trace of `len` bytes is ready at src (0: it has none) */
    uint64_t len = rb_u64(rb);
    if (rb->bad || st->rank != 0 || src <= 0 || rt->done[src])
        return;
    if (len == 0) {
        mark_done(st, src);
        return;
    }
    struct pulled *p = dagger__calloc(1, sizeof *p);
    void *buf = p && len < SIZE_MAX ? dagger__malloc((size_t)len) : NULL;
    if (p && buf) {
        p->buf = buf;
        p->im = (struct import){.peer = src, .size = (size_t)len, .dst = buf, .done = pulled};
    }
    if (!buf || mpi__import_start(st, &p->im) != 0) {
        fprintf(stderr,
                "dagger: DAGGER_TRACE: out of memory for the %llu-byte trace of rank %d; "
                "its events are left out\n",
                (unsigned long long)len, src);
        dagger__free(buf);
        dagger__free(p);
        mark_done(st, src);
        struct wbuf b = {0};
        wb_u64(&b, M_TRACE_PULL);
        wb_u64(&b, UINT64_MAX); /* "do not send" */
        mpi__send(st, src, &b, false);
        return;
    }
    struct wbuf b = {0};
    wb_u64(&b, M_TRACE_PULL);
    wb_u64(&b, (uint64_t)p->im.tag);
    mpi__send(st, src, &b, false);
}

void mpi__rtrace_on_cmd(struct mpi_state *st, struct mpi_cmd *c)
{
    struct mpi_rtrace *rt = st->rtrace;
    rt->buf = c->rec;
    rt->len = (size_t)c->id;
    dagger__free(c);
    struct wbuf b = {0};
    wb_u64(&b, M_TRACE);
    wb_u64(&b, rt->buf ? rt->len : 0);
    mpi__send(st, 0, &b, false);
    if (!rt->buf || st->peers[0].lost)
        sent(rt);
}

void mpi__rtrace_lost(struct mpi_state *st, int peer)
{
    struct mpi_rtrace *rt = st->rtrace;
    if (!rt)
        return;
    if (st->rank == 0 && peer != 0)
        mark_done(st, peer);
    else if (peer == 0 && st->rank != 0)
        wake_sent(rt);
}

/* Wait until *w >= want, the deadline passes or the progress thread is gone. */
static void wait_word(_Atomic uint32_t *w, uint32_t want, int64_t deadline)
{
    for (;;) {
        uint32_t v = atomic_load_explicit(w, memory_order_acquire);
        if (v >= want || (int64_t)dagger__now_ns() > deadline)
            return;
        dagger__futex_wait(w, v, 20 * 1000 * 1000);
    }
}

void mpi__rtrace_close(struct mpi_state *st)
{
    struct mpi_rtrace *rt = st->rtrace;
    if (!rt || !rt->on[0])
        return; /* rank 0 writes no trace: nothing to gather */
    /* The deadline only guards against a peer that is alive but never answers (a bug): a lost
     * one ends the wait as soon as it is found lost. */
    int64_t deadline = (int64_t)dagger__now_ns() + 2 * st->timeout_ns;
    if (st->rank == 0) {
        uint32_t want = 0;
        for (int r = 1; r < st->nranks; r++)
            want += rt->on[r];
        wait_word(&rt->ndone, want, deadline);
        return;
    }
    if (!rt->on[st->rank])
        return;
    void *buf = NULL;
    size_t len = 0;
    if (dagger__trace_rank_take(st->ctx, &buf, &len) != 0)
        buf = NULL; /* rank 0 then leaves this rank out */
    struct mpi_cmd *c = dagger__calloc(1, sizeof *c);
    if (!c) {
        free(buf);
        return; /* rank 0 gives up on this rank at its deadline */
    }
    c->type = C_TRACE;
    c->rec = buf;
    c->id = len;
    mpi__push(st, c);
    wait_word(&rt->sent, 1, deadline);
}
