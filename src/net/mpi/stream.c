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
 * Back-pressure by credits: the producer may have at most `window` values (default 64) sent and
 * not yet popped; each message carries the window, and the consumer returns credits (M_CREDIT:
 * how many messages it has taken so far) each time it has taken half a window more, so its
 * rank buffers at most `window` values of the edge (plus the end). A producer out of credits
 * waits for them on a fresh one-shot event (src/core): inside a task on a worker the task
 * suspends and the worker runs other tasks; a timed push (an edge sink on its aux thread, in
 * slices) blocks its thread on the channel's futex word instead, up to the timeout. A consumer
 * that closes sends CREDIT_CLOSED: the producer's next push fails with DAGGER_ECLOSED.
 * Failures: an end that fails or is aborted (its task failed, its region stopped) tells the
 * other rank, with its reason: a producer sends END|ABORT carrying it (net/msg.c), whose pops
 * then fail with DAGGER_EPEER after the values sent; a consumer sends CREDIT_FAILED and the
 * reason, and the producer's next push or credit wait fails with DAGGER_EPEER quoting it. A
 * consumer that never opens (its task failed first) is seen through dagger_edge_watch.
 * Limits: a value is at most `max` bytes (default 16 MiB, at most 1 GiB).
 * Invariants: the channel table is guarded by its lock; a consumer's channel is freed when its
 * consumer closed (values arriving after that are dropped), a producer's when its producer
 * closed (credits arriving after that are dropped). A producer's waiter event is taken (an
 * exchange with NULL) by exactly one of the progress thread, which fires it, and the producer.
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
#define CREDIT_CLOSED UINT64_MAX       /* M_CREDIT from a consumer that closed its end */
#define CREDIT_FAILED (UINT64_MAX - 1) /* ... that failed or was aborted; its reason follows */
#define WHY_MAX 200

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
    bool push;                /* the producer's record (credits), not a consumer's queue */
    struct qmsg *head, *tail; /* guarded by chan_lock */
    size_t nq;                /* messages queued (chan_lock) */
    uint64_t window;          /* consumer: the producer's window, from its messages (chan_lock) */
    bool popper;              /* a consumer end is open */
    _Atomic bool lost;        /* the peer was lost (or the context closed) */
    _Atomic uint32_t seq;     /* bumped (and woken) on every arrival: a message, or credits */
    _Atomic uint64_t acked;   /* producer: messages the consumer has taken */
    _Atomic bool closed;      /* producer: the consumer closed its end (CREDIT_CLOSED) */
    _Atomic bool failed;      /* producer: the consumer failed (CREDIT_FAILED); `why` is set */
    char why[WHY_MAX + 1];    /* producer: the consumer's reason (written before `failed`) */
    struct dagger__event *_Atomic waiter; /* producer: out of credits, waiting on this */
};

static pthread_mutex_t chan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chan *chans;                    /* guarded by chan_lock */
static _Atomic(struct mpi_state *) stream_st; /* the process's open context on several ranks */

void mpi__stream_attach(struct mpi_state *st) { atomic_store(&stream_st, st); }

/* The peer is gone: wake whoever waits on `c` (under chan_lock). */
static void mark_lost(struct mpi_state *st, struct chan *c)
{
    atomic_store(&c->lost, true);
    atomic_fetch_add(&c->seq, 1);
    dagger__futex_wake(&c->seq, INT_MAX);
    struct dagger__event *ev = atomic_exchange(&c->waiter, NULL);
    if (ev)
        dagger__event_fire(ev, st->ctx);
}

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
        if (c->popper || c->push) { /* an end still open: it sees the peer as gone */
            mark_lost(st, c);
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
static struct chan *chan_get(struct mpi_state *st, int peer, const char *name, bool push,
                             bool create)
{
    for (struct chan *c = chans; c; c = c->next)
        if (c->st == st && c->peer == peer && c->push == push && !strcmp(c->name, name))
            return c;
    if (!create)
        return NULL;
    struct chan *c = dagger__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->st = st;
    c->peer = peer;
    c->push = push;
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
    uint64_t window = rb_u64(rb);
    uint64_t len = rb_u64(rb);
    const void *p = rb_bytes(rb, len);
    if (!p || window == 0)
        return;
    struct qmsg *m = dagger__malloc(sizeof *m + len);
    if (!m)
        return; /* the consumer counts the gap (stats.drops) by sequence number */
    m->next = NULL;
    m->len = len;
    memcpy(m->data, p, len);
    pthread_mutex_lock(&chan_lock);
    struct chan *c = chan_get(st, src, name, false, true);
    if (c) {
        if (c->tail)
            c->tail->next = m;
        else
            c->head = m;
        c->tail = m;
        c->nq++;
        c->window = window;
        atomic_fetch_add_explicit(&c->seq, 1, memory_order_release);
        dagger__futex_wake(&c->seq, INT_MAX);
    } else {
        dagger__free(m);
    }
    pthread_mutex_unlock(&chan_lock);
}

/* M_CREDIT: the consumer on `src` has taken `taken` messages of the channel: the producer may
 * send up to `window` beyond that. */
void mpi__stream_on_credit(struct mpi_state *st, int src, struct rbuf *rb)
{
    char name[NAME_MAX_ + 1];
    rb_str(rb, name, sizeof name);
    uint64_t taken = rb_u64(rb);
    char why[WHY_MAX + 1] = "";
    if (taken == CREDIT_FAILED)
        rb_str(rb, why, sizeof why);
    if (rb->bad)
        return;
    pthread_mutex_lock(&chan_lock);
    struct chan *c = chan_get(st, src, name, true, false);
    if (c && taken > atomic_load_explicit(&c->acked, memory_order_relaxed)) {
        if (taken == CREDIT_CLOSED) {
            atomic_store(&c->closed, true);
        } else if (taken == CREDIT_FAILED) {
            if (!atomic_load(&c->failed)) {
                memcpy(c->why, why, sizeof why);
                atomic_store(&c->failed, true);
            }
        } else
            atomic_store(&c->acked, taken); /* seq_cst: against the waiter's store and read */
        atomic_fetch_add_explicit(&c->seq, 1, memory_order_release);
        dagger__futex_wake(&c->seq, INT_MAX);
        struct dagger__event *ev = atomic_exchange(&c->waiter, NULL);
        if (ev)
            dagger__event_fire(ev, st->ctx);
    }
    pthread_mutex_unlock(&chan_lock);
}

void mpi__stream_lost(struct mpi_state *st, int peer)
{
    pthread_mutex_lock(&chan_lock);
    for (struct chan *c = chans; c; c = c->next)
        if (c->st == st && c->peer == peer)
            mark_lost(st, c);
    pthread_mutex_unlock(&chan_lock);
}

size_t dagger__mpi_stream_buffered(int peer, const char *name)
{
    size_t n = 0;
    struct mpi_state *st = atomic_load(&stream_st);
    pthread_mutex_lock(&chan_lock);
    struct chan *c = st ? chan_get(st, peer, name, false, false) : NULL;
    if (c)
        n = c->nq;
    pthread_mutex_unlock(&chan_lock);
    return n;
}

/* ---------------------------------------------------------------- the edge ends */

struct mpi_edge {
    struct dagger_edge e; /* first */
    struct mpi_state *st;
    int peer;
    char name[NAME_MAX_ + 1];
    uint64_t seq;      /* push: the next number */
    uint64_t window;   /* push: values sent and not yet taken, at most */
    struct chan *chan; /* pop: the queue; push: the credits */
    uint64_t taken;    /* pop: messages taken from the queue */
    uint64_t credited; /* pop: `taken` as last told to the producer */
    struct qmsg *cur;  /* pop: the message the last value borrows */
    struct dagger__msg_rx rx;
    unsigned char *buf; /* push: the encoding buffer */
    size_t cap;
};

static int mpi_open(struct dagger_edge **out, const struct dagger__uri *u, unsigned end, char *err,
                    size_t errcap)
{
    static const char *const keys[] = {"max", "window", NULL};
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
    int64_t max, window;
    if ((rc = dagger__uri_int(u, "max", 16 << 20, 1, DAGGER__FRAME_MAX_LIMIT, &max, err, errcap)) <
            0 ||
        (rc = dagger__uri_int(u, "window", 64, 1, 1 << 20, &window, err, errcap)) < 0)
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
    m->window = (uint64_t)window;
    snprintf(m->e.uri, sizeof m->e.uri, "mpi://%d/%s?max=%lld&window=%lld", m->peer, m->name,
             (long long)max, (long long)window);
    bool pop = end == DAGGER_EDGE_POP;
    pthread_mutex_lock(&chan_lock);
    /* A producer's record exists only while its end is open: one producer end per channel. */
    bool busy = !pop && chan_get(st, m->peer, m->name, true, false);
    struct chan *c = busy ? NULL : chan_get(st, m->peer, m->name, !pop, true);
    busy = busy || (pop && c && c->popper);
    if (c && !busy && pop)
        c->popper = true;
    pthread_mutex_unlock(&chan_lock);
    if (!c || busy) {
        dagger__net_free(m);
        dagger__net_fmt(err, errcap,
                        busy ? "mpi://%d/%s: this rank already has a %s end of that channel"
                             : "mpi://%d/%s: out of memory",
                        (int)peer, name, pop ? "consumer" : "producer");
        return busy ? DAGGER_EBUSY : DAGGER_ENOMEM;
    }
    m->chan = c;
    *out = &m->e;
    return 0;
}

struct stream_cmd {
    struct mpi_cmd cmd; /* first */
    struct wbuf b;
};

/* Hand one framed message (or, frame NULL, the consumer's credits) to the progress thread. */
static int post(struct mpi_edge *m, const void *frame, size_t len)
{
    struct stream_cmd *s = dagger__calloc(1, sizeof *s);
    if (!s)
        return dagger__edge_fail(&m->e, DAGGER_ENOMEM, "%s: out of memory", m->e.uri);
    if (frame) {
        wb_u64(&s->b, M_STREAM);
        wb_str(&s->b, m->name);
        wb_u64(&s->b, m->window);
        wb_u64(&s->b, len);
        wb_bytes(&s->b, frame, len);
    } else {
        wb_u64(&s->b, M_CREDIT);
        wb_str(&s->b, m->name);
        wb_u64(&s->b, m->taken);
        if (m->taken == CREDIT_FAILED) {
            char why[WHY_MAX + 1];
            snprintf(why, sizeof why, "%.200s", m->e.reason[0] ? m->e.reason : m->e.errmsg);
            wb_str(&s->b, why);
        }
    }
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

/* Wait until the producer may send one more value: 0, DAGGER_ETIMEDOUT (noted) or
 * DAGGER_EPEER. Untimed: on a fresh one-shot event (a task suspends); timed: on the futex. */
static int credit(struct mpi_edge *m, int timeout_ms)
{
    struct chan *c = m->chan;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    for (;;) {
        uint32_t seen = atomic_load_explicit(&c->seq, memory_order_acquire);
        if (atomic_load(&c->lost) || atomic_load(&stream_st) != m->st)
            return dagger__edge_fail(&m->e, DAGGER_EPEER,
                                     "%s: rank %d was lost (or the context closed) while the "
                                     "producer waited for credits",
                                     m->e.uri, m->peer);
        if (atomic_load(&c->failed))
            return dagger__edge_fail(&m->e, DAGGER_EPEER, "%s: the consumer on rank %d failed: %s",
                                     m->e.uri, m->peer, c->why[0] ? c->why : "its end was aborted");
        if (atomic_load(&c->closed)) /* its values would be dropped: end like a closed ring */
            return dagger__edge_fail(&m->e, DAGGER_ECLOSED,
                                     "%s: the consumer on rank %d closed its end", m->e.uri,
                                     m->peer);
        if (m->seq - atomic_load_explicit(&c->acked, memory_order_acquire) < m->window)
            return 0;
        dagger__edge_count(&m->e.st.waits, 1);
        if (timeout_ms < 0) {
            struct dagger__event ev;
            dagger__event_init(&ev);
            atomic_store(&c->waiter, &ev); /* seq_cst: before the credits are read again */
            if (m->seq - atomic_load(&c->acked) < m->window || atomic_load(&c->lost) ||
                atomic_load(&c->closed) || atomic_load(&c->failed)) {
                if (atomic_exchange(&c->waiter, NULL) == &ev)
                    continue; /* nobody took it: it is ours again */
            }
            int rc = dagger__event_wait(m->st->ctx, &ev, 0); /* fired by whoever took it */
            if (rc)
                return dagger__edge_fail(&m->e, rc, "%s: waiting for credits: %s", m->e.uri,
                                         dagger_last_errmsg());
            continue;
        }
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            return dagger__edge_note(&m->e, DAGGER_ETIMEDOUT,
                                     "%s: the consumer on rank %d has %llu values not taken "
                                     "(window=%llu)",
                                     m->e.uri, m->peer,
                                     (unsigned long long)(m->seq - atomic_load(&c->acked)),
                                     (unsigned long long)m->window);
        long slice = left < 0 || left > 50 ? 50 : left;
        dagger__futex_wait(&c->seq, seen, slice * 1000 * 1000);
    }
}

static int mpi_push(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    struct mpi_edge *m = (struct mpi_edge *)e;
    if (atomic_load(&stream_st) != m->st)
        return dagger__edge_fail(e, DAGGER_EPEER, "%s: the context was closed", e->uri);
    int rc = credit(m, timeout_ms);
    if (rc)
        return rc;
    long n = dagger__msg_encode(e, v, m->seq, &m->buf, &m->cap);
    if (n < 0)
        return (int)n;
    rc = post(m, m->buf, (size_t)n);
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
        uint64_t window = c->window;
        if (q && out) {
            c->head = q->next;
            if (!c->head)
                c->tail = NULL;
            c->nq--;
        }
        bool lost = c->lost;
        pthread_mutex_unlock(&chan_lock);
        if (q) {
            if (out) {
                *out = q;
                /* Credits back to the producer each half window taken (at least each one). */
                if (++m->taken - m->credited >= (window + 1) / 2) {
                    m->credited = m->taken;
                    (void)post(m, NULL, 0); /* a failure is sticky on the edge: seen next */
                }
            }
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
    if (e->end == DAGGER_EDGE_POP)
        return take(m, timeout_ms, NULL);
    int rc = credit(m, timeout_ms); /* a push may go once a credit is free */
    return rc == 0 ? 1 : rc == DAGGER_ETIMEDOUT ? 0 : rc;
}

static int mpi_close(struct dagger_edge *e)
{
    struct mpi_edge *m = (struct mpi_edge *)e;
    int rc = 0;
    /* A failed or aborted end tells the other rank so, with its reason: never a clean end. */
    bool failed = e->aborted || (e->err && e->err != DAGGER_ECLOSED);
    /* Nothing goes to a consumer that closed, failed or was lost: its channel is gone. */
    if (e->end == DAGGER_EDGE_PUSH && atomic_load(&stream_st) == m->st &&
        !atomic_load(&m->chan->closed) && !atomic_load(&m->chan->failed) &&
        !atomic_load(&m->chan->lost)) {
        long n = failed ? dagger__msg_encode_abort(e, m->seq, &m->buf, &m->cap)
                        : dagger__msg_encode(e, NULL, m->seq, &m->buf, &m->cap);
        int prc = n < 0 ? (int)n : post(m, m->buf, (size_t)n);
        rc = failed ? 0 : prc;
    }
    if (e->end == DAGGER_EDGE_POP && atomic_load(&stream_st) == m->st) {
        /* A producer waiting for credits ends with DAGGER_ECLOSED, or DAGGER_EPEER and the
         * reason when this end failed. */
        m->taken = failed ? CREDIT_FAILED : CREDIT_CLOSED;
        (void)post(m, NULL, 0);
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
