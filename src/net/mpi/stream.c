/* src/net/mpi/stream.c - the mpi:// edge transport: a stream whose ends are on two ranks of the
 * job, so a streaming region's edges can cross ranks (dagger_stream_spawn_edge_sink/_source).
 *
 * Design: `mpi://R/name` names the channel `name` between this rank and rank R; the producer
 * opens it DAGGER_EDGE_PUSH on one rank and the consumer DAGGER_EDGE_POP on the other, each
 * naming the other's rank. Values travel framed as on the broker transports (net/msg.h: the
 * frame header, a sequence number, END when the producer closes), one M_STREAM control message
 * each, sent by the progress thread (the pushing thread posts a command and never calls MPI).
 * The progress thread files an arriving message under its channel (source rank, name), created
 * on first use so that values sent before the consumer opened wait for it, and wakes the
 * consumer. The ends work on the process's most recent context open on several ranks.
 * Limits: no back-pressure (the consumer's rank buffers what it has not popped yet), and a
 * value is at most `max` bytes (default 16 MiB, at most 1 GiB).
 * Invariants: the channel table is guarded by its lock; a channel is freed when its consumer
 * closed (values arriving after that are dropped).
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "net/mpi/mpi_int.h"
#include "net/msg.h"
#include "net/net.h"

#define NAME_MAX_ 120

struct qmsg {
    struct qmsg *next;
    size_t len;
    unsigned char data[];
};

struct chan {
    struct chan *next;
    struct mpi_state *st;
    int peer;
    char name[NAME_MAX_ + 1];
    struct qmsg *head, *tail; /* guarded by chan_lock */
    bool popper;              /* a consumer end is open */
    bool lost;                /* the peer was lost */
    _Atomic uint32_t seq;     /* bumped (and woken) on every arrival */
};

static pthread_mutex_t chan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chan *chans;                    /* guarded by chan_lock */
static _Atomic(struct mpi_state *) stream_st; /* the process's open context on several ranks */

void mpi__stream_attach(struct mpi_state *st) { atomic_store(&stream_st, st); }

/* At close: the context's channels go, and new ends cannot open on it. */
void mpi__stream_detach(struct mpi_state *st)
{
    struct mpi_state *cur = st;
    atomic_compare_exchange_strong(&stream_st, &cur, NULL);
    pthread_mutex_lock(&chan_lock);
    for (struct chan **pp = &chans; *pp;) {
        struct chan *c = *pp;
        if (c->st != st) {
            pp = &c->next;
            continue;
        }
        if (c->popper) { /* an end still open: it sees the peer as gone */
            c->lost = true;
            atomic_fetch_add(&c->seq, 1);
            dagger__futex_wake(&c->seq, INT_MAX);
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        for (struct qmsg *m = c->head, *n; m; m = n) {
            n = m->next;
            dagger__free(m);
        }
        dagger__free(c);
    }
    pthread_mutex_unlock(&chan_lock);
}

/* Under chan_lock. */
static struct chan *chan_get(struct mpi_state *st, int peer, const char *name, bool create)
{
    for (struct chan *c = chans; c; c = c->next)
        if (c->st == st && c->peer == peer && !strcmp(c->name, name))
            return c;
    if (!create)
        return NULL;
    struct chan *c = dagger__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->st = st;
    c->peer = peer;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->next = chans;
    chans = c;
    return c;
}

/* ---------------------------------------------------------------- the progress thread */

void mpi__stream_on_msg(struct mpi_state *st, int src, struct rbuf *rb)
{
    char name[NAME_MAX_ + 1];
    rb_str(rb, name, sizeof name);
    uint64_t len = rb_u64(rb);
    const void *p = rb_bytes(rb, len);
    if (!p)
        return;
    struct qmsg *m = dagger__malloc(sizeof *m + len);
    if (!m)
        return; /* the consumer counts the gap (stats.drops) by sequence number */
    m->next = NULL;
    m->len = len;
    memcpy(m->data, p, len);
    pthread_mutex_lock(&chan_lock);
    struct chan *c = chan_get(st, src, name, true);
    if (c) {
        if (c->tail)
            c->tail->next = m;
        else
            c->head = m;
        c->tail = m;
        atomic_fetch_add_explicit(&c->seq, 1, memory_order_release);
        dagger__futex_wake(&c->seq, INT_MAX);
    } else {
        dagger__free(m);
    }
    pthread_mutex_unlock(&chan_lock);
}

void mpi__stream_lost(struct mpi_state *st, int peer)
{
    pthread_mutex_lock(&chan_lock);
    for (struct chan *c = chans; c; c = c->next) {
        if (c->st == st && c->peer == peer) {
            c->lost = true;
            atomic_fetch_add_explicit(&c->seq, 1, memory_order_release);
            dagger__futex_wake(&c->seq, INT_MAX);
        }
    }
    pthread_mutex_unlock(&chan_lock);
}

/* ---------------------------------------------------------------- the edge ends */

struct mpi_edge {
    struct dagger_edge e; /* first */
    struct mpi_state *st;
    int peer;
    char name[NAME_MAX_ + 1];
    uint64_t seq;      /* push: the next number */
    struct chan *chan; /* pop */
    struct qmsg *cur;  /* pop: the message the last value borrows */
    struct dagger__msg_rx rx;
    unsigned char *buf; /* push: the encoding buffer */
    size_t cap;
};

static int mpi_open(struct dagger_edge **out, const struct dagger__uri *u, unsigned end, char *err,
                    size_t errcap)
{
    static const char *const keys[] = {"max", NULL};
    int rc = dagger__uri_check_keys(u, keys, err, errcap);
    if (rc < 0)
        return rc;
    const char *name = u->path[0] ? u->path + 1 : "";
    char *endp = NULL;
    long peer = strtol(u->host, &endp, 10);
    if (!u->host[0] || *endp || u->port >= 0 || !name[0] || strlen(name) > NAME_MAX_) {
        dagger__net_fmt(err, errcap,
                        "mpi: expected mpi://RANK/name[?max=BYTES] (RANK: the other end's rank, "
                        "name: at most %d characters)",
                        NAME_MAX_);
        return DAGGER_EINVAL;
    }
    int64_t max;
    if ((rc = dagger__uri_int(u, "max", 16 << 20, 1, DAGGER__FRAME_MAX_LIMIT, &max, err, errcap)) <
        0)
        return rc;
    struct mpi_state *st = atomic_load(&stream_st);
    if (!st) {
        dagger__net_fmt(err, errcap,
                        "mpi://%ld/%s: no context is open on several MPI ranks in this process "
                        "(open one with dagger_ctx_open under mpirun first)",
                        peer, name);
        return DAGGER_ENOSYS;
    }
    if (peer < 0 || peer >= st->nranks || peer == st->rank) {
        dagger__net_fmt(err, errcap,
                        "mpi://%ld/%s: rank %ld is not another rank of this job (this is rank %d "
                        "of %d)",
                        peer, name, peer, st->rank, st->nranks);
        return DAGGER_EINVAL;
    }
    struct mpi_edge *m = dagger__net_calloc(sizeof *m);
    if (!m) {
        dagger__net_fmt(err, errcap, "mpi: out of memory");
        return DAGGER_ENOMEM;
    }
    m->st = st;
    m->peer = (int)peer;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->e.max_payload = (uint32_t)max;
    snprintf(m->e.uri, sizeof m->e.uri, "mpi://%d/%s?max=%lld", m->peer, m->name, (long long)max);
    if (end == DAGGER_EDGE_POP) {
        pthread_mutex_lock(&chan_lock);
        struct chan *c = chan_get(st, m->peer, m->name, true);
        bool busy = c && c->popper;
        if (c && !busy)
            c->popper = true;
        pthread_mutex_unlock(&chan_lock);
        if (!c || busy) {
            dagger__net_free(m);
            dagger__net_fmt(err, errcap,
                            busy ? "mpi://%d/%s: this rank already has a consumer end of that "
                                   "channel"
                                 : "mpi://%d/%s: out of memory",
                            (int)peer, name);
            return busy ? DAGGER_EBUSY : DAGGER_ENOMEM;
        }
        m->chan = c;
    }
    *out = &m->e;
    return 0;
}

struct stream_cmd {
    struct mpi_cmd cmd; /* first */
    struct wbuf b;
};

/* Hand one framed message to the progress thread. */
static int post(struct mpi_edge *m, const void *frame, size_t len)
{
    struct stream_cmd *s = dagger__calloc(1, sizeof *s);
    if (!s)
        return dagger__edge_fail(&m->e, DAGGER_ENOMEM, "%s: out of memory", m->e.uri);
    wb_u64(&s->b, M_STREAM);
    wb_str(&s->b, m->name);
    wb_u64(&s->b, len);
    wb_bytes(&s->b, frame, len);
    if (s->b.oom) {
        dagger__free(s->b.p);
        dagger__free(s);
        return dagger__edge_fail(&m->e, DAGGER_ENOMEM, "%s: out of memory", m->e.uri);
    }
    s->cmd.type = C_STREAM;
    s->cmd.rank = m->peer;
    mpi__push(m->st, &s->cmd);
    return 0;
}

void mpi__stream_cmd(struct mpi_state *st, struct mpi_cmd *c)
{
    struct stream_cmd *s = (struct stream_cmd *)c;
    mpi__send(st, c->rank, &s->b, false); /* takes the buffer; dropped if the rank is lost */
    dagger__free(s);
}

static int mpi_push(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    (void)timeout_ms; /* never waits: no back-pressure */
    struct mpi_edge *m = (struct mpi_edge *)e;
    if (atomic_load(&stream_st) != m->st)
        return dagger__edge_fail(e, DAGGER_EPEER, "%s: the context was closed", e->uri);
    long n = dagger__msg_encode(e, v, m->seq, &m->buf, &m->cap);
    if (n < 0)
        return (int)n;
    int rc = post(m, m->buf, (size_t)n);
    if (rc)
        return rc;
    m->seq++;
    dagger__edge_count(&e->st.values, 1);
    dagger__edge_count(&e->st.bytes, (uint64_t)n);
    return 0;
}

/* Take the next message of the channel, waiting up to timeout_ms (< 0: forever). Returns 1,
 * 0 (timeout) or DAGGER_EPEER. */
static int take(struct mpi_edge *m, int timeout_ms, struct qmsg **out)
{
    int64_t deadline = dagger__net_deadline(timeout_ms);
    struct chan *c = m->chan;
    for (;;) {
        uint32_t seen = atomic_load_explicit(&c->seq, memory_order_acquire);
        pthread_mutex_lock(&chan_lock);
        struct qmsg *q = c->head;
        if (q && out) {
            c->head = q->next;
            if (!c->head)
                c->tail = NULL;
        }
        bool lost = c->lost;
        pthread_mutex_unlock(&chan_lock);
        if (q) {
            if (out)
                *out = q;
            return 1;
        }
        if (lost)
            return dagger__edge_fail(&m->e, DAGGER_EPEER,
                                     "%s: rank %d was lost (or the context closed) before the "
                                     "stream ended",
                                     m->e.uri, m->peer);
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            return 0;
        long slice = left < 0 || left > 50 ? 50 : left;
        dagger__futex_wait(&c->seq, seen, slice * 1000 * 1000);
    }
}

static int mpi_pop(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct mpi_edge *m = (struct mpi_edge *)e;
    for (;;) {
        struct qmsg *q = NULL;
        int rc = take(m, timeout_ms, &q);
        if (rc <= 0)
            return rc == 0 ? dagger__edge_note(e, DAGGER_ETIMEDOUT, "%s: nothing arrived in %d ms",
                                               e->uri, timeout_ms)
                           : rc;
        dagger__free(m->cur); /* the previous value's bytes */
        m->cur = q;
        rc = dagger__msg_accept(e, &m->rx, q->data, q->len, out);
        if (rc == 1) {
            dagger__edge_count(&e->st.values, 1);
            dagger__edge_count(&e->st.bytes, q->len);
            return 0;
        }
        if (rc < 0)
            return rc; /* DAGGER_ECLOSED: the producer ended the stream */
    }
}

static int mpi_poll(struct dagger_edge *e, int timeout_ms)
{
    struct mpi_edge *m = (struct mpi_edge *)e;
    if (e->end != DAGGER_EDGE_POP)
        return 1; /* a push never waits */
    return take(m, timeout_ms, NULL);
}

static int mpi_close(struct dagger_edge *e)
{
    struct mpi_edge *m = (struct mpi_edge *)e;
    int rc = 0;
    if (e->end == DAGGER_EDGE_PUSH && !e->aborted && !e->err && atomic_load(&stream_st) == m->st) {
        long n = dagger__msg_encode(e, NULL, m->seq, &m->buf, &m->cap);
        rc = n < 0 ? (int)n : post(m, m->buf, (size_t)n);
    }
    if (m->chan) {
        pthread_mutex_lock(&chan_lock);
        struct chan **pp = &chans;
        while (*pp && *pp != m->chan)
            pp = &(*pp)->next;
        if (*pp)
            *pp = m->chan->next;
        for (struct qmsg *q = m->chan->head, *n; q; q = n) {
            n = q->next;
            dagger__free(q);
        }
        pthread_mutex_unlock(&chan_lock);
        dagger__free(m->chan);
    }
    dagger__free(m->cur);
    dagger__net_free(m->buf);
    dagger__net_free(m);
    return rc;
}

static const struct dagger__transport_ops mpi_stream_ops = {
    .scheme = "mpi",
    .open = mpi_open,
    .close = mpi_close,
    .push = mpi_push,
    .pop = mpi_pop,
    .poll = mpi_poll,
    .flush = NULL,
};

__attribute__((constructor)) static void register_mpi_stream(void)
{
    (void)dagger__transport_register(&mpi_stream_ops);
}
