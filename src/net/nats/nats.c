/* src/net/nats/nats.c - NATS edges through a server (cnats): `nats://`, `tls://`.
 *
 * `nats://host:port/subject?queue=group`: the producer publishes each value as one message on
 * `subject`; every consumer subscribed to it gets every value (fan-out), except that consumers
 * sharing a `queue` group split the values between them. Frames, sequence numbers and gaps:
 * net/msg.h. Core NATS is at most once: a value the server or a full local queue drops is gone,
 * and the consumer counts it from the gap (stats.drops; in a queue group, where the other
 * members' values are gaps too, from cnats' own count of dropped messages).
 * Design: cnats runs its own threads (reader, flusher, reconnection). The consumer uses a
 * synchronous subscription: cnats' per-subscription queue is the bounded local queue (`buffer`
 * messages), and a value popped borrows its natsMsg until the next pop. The producer's
 * publishes go to cnats' buffer, which its flusher thread writes out; a publish blocks on a
 * full socket (TCP back-pressure to the server; NATS has none to the consumers).
 * End of stream: close publishes END on `subject` and on `subject._end`, to which every
 * consumer also listens (not as a group) through a queue of its own: neither a full local
 * queue nor a queue group, which splits END like any value, can hide the end.
 * Connection loss: cnats reconnects by itself and buffers publishes meanwhile; the
 * callbacks below note when the connection went, and push or pop fail with DAGGER_EPEER once
 * it has been away longer than `timeout_ms`.
 * Thread safety: cnats' callbacks touch only the atomics marked below, and the edge is freed
 * only after the last of them ran.
 * Credentials come from the environment (`user_env` with `secret_env`, or `secret_env` alone
 * for a token), never from the URI.
 * SPDX-License-Identifier: MIT
 */
#include "net/msg.h"

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct nats_edge {
    struct dagger_edge base;
    natsConnection *nc;
    natsSubscription *sub;    /* consumer: the values */
    natsSubscription *endsub; /* consumer: END on subject._end (polled) */
    natsMsg *held;            /* consumer: lent to the caller until the next pop */
    char subject[128], endsubj[136], queue[64];
    char server[160];
    int timeout_ms, idle_ms;
    _Atomic int64_t lost_ms; /* cnats threads: when the connection went (0: it is up) */
    _Atomic int closed;      /* cnats threads: cnats gave the connection up */
    uint64_t seq;            /* producer: the next number */
    unsigned char *buf;
    size_t cap;
    struct dagger__msg_rx rx;
    int64_t last_rx_ms;
    int64_t dropped; /* consumer: cnats' dropped count already added to stats.drops */
};

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct nats_edge *q = closure;
    int64_t zero = 0;
    atomic_compare_exchange_strong(&q->lost_ms, &zero, dagger__net_now_ms());
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct nats_edge *q = closure;
    atomic_store(&q->lost_ms, 0);
    atomic_fetch_add_explicit(&q->base.st.reconnects, 1, memory_order_relaxed);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    struct nats_edge *q = closure;
    int64_t zero = 0;
    atomic_compare_exchange_strong(&q->lost_ms, &zero, dagger__net_now_ms());
    atomic_store(&q->closed, 1);
}

/* cnats reports slow consumers here; the counts are read from the subscription instead. */
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)err;
    (void)closure;
}

/* DAGGER_EPEER once the connection has been away longer than timeout_ms (or for good). */
static int check_link(struct nats_edge *q)
{
    int64_t lost = atomic_load(&q->lost_ms);
    if (atomic_load(&q->closed) || (lost && dagger__net_now_ms() - lost > q->timeout_ms))
        return dagger__edge_fail(&q->base, DAGGER_EPEER,
                                 "%s: the connection to the server %s was lost and not "
                                 "re-established within timeout_ms=%d",
                                 q->base.uri, q->server, q->timeout_ms);
    return 0;
}

static void pause_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000};
    nanosleep(&ts, NULL);
}

/* Publish `v`, or END when it is NULL (END|ABORT when `aborted`). */
static int publish(struct nats_edge *q, const dagger_value_t *v, bool aborted, int64_t deadline)
{
    long n = aborted ? dagger__msg_encode_abort(&q->base, q->seq, &q->buf, &q->cap)
                     : dagger__msg_encode(&q->base, v, q->seq, &q->buf, &q->cap);
    if (n < 0)
        return (int)n;
    for (;;) {
        int rc = check_link(q);
        if (rc < 0)
            return rc;
        natsStatus s = natsConnection_Publish(q->nc, q->subject, q->buf, (int)n);
        if (s == NATS_OK && !v)
            s = natsConnection_Publish(q->nc, q->endsubj, q->buf, (int)n);
        if (s == NATS_OK)
            break;
        if (s == NATS_MAX_PAYLOAD)
            return dagger__edge_note(&q->base, DAGGER_ERANGE,
                                     "%s: %ld bytes exceed the server's max_payload", q->base.uri,
                                     n);
        if (s != NATS_INSUFFICIENT_BUFFER && s != NATS_CONNECTION_DISCONNECTED &&
            s != NATS_CONNECTION_CLOSED && s != NATS_IO_ERROR && s != NATS_TIMEOUT)
            return dagger__edge_fail(&q->base, DAGGER_EIO, "%s: publish: %s", q->base.uri,
                                     natsStatus_GetText(s));
        /* Reconnecting and its buffer is full: wait for the connection (bounded). */
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            return dagger__edge_note(&q->base, DAGGER_ETIMEDOUT,
                                     "%s: the server connection is away (%s)", q->base.uri,
                                     natsStatus_GetText(s));
        dagger__edge_count(&q->base.st.waits, 1);
        pause_ms(left < 0 || left > 10 ? 10 : left);
    }
    if (v) {
        q->seq++;
        dagger__edge_count(&q->base.st.values, 1);
    }
    dagger__edge_count(&q->base.st.bytes, (uint64_t)n);
    return 0;
}

static int nats_push(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    return publish((struct nats_edge *)e, v, false, dagger__net_deadline(timeout_ms));
}

/* Wait until cnats has written what it buffered to the socket (no round trip). */
static int nats_flush(struct dagger_edge *e, int timeout_ms)
{
    struct nats_edge *q = (struct nats_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    while (natsConnection_Buffered(q->nc) > 0) {
        int rc = check_link(q);
        if (rc < 0)
            return rc;
        if (dagger__net_left_ms(deadline) == 0)
            return dagger__edge_note(e, DAGGER_ETIMEDOUT, "%s: bytes still buffered", e->uri);
        dagger__edge_count(&e->st.waits, 1);
        nanosleep(&(struct timespec){0, 100000}, NULL); /* cnats' flusher is already on it */
    }
    return 0;
}

/* Queue group: cnats' dropped count is the only measure of loss. */
static void count_dropped(struct nats_edge *q)
{
    int64_t d = 0;
    if (q->rx.split && natsSubscription_GetDropped(q->sub, &d) == NATS_OK && d > q->dropped) {
        dagger__edge_count(&q->base.st.drops, (uint64_t)(d - q->dropped));
        q->dropped = d;
    }
}

/* A message from NextMsg. Returns 1 (a value in *out; the message is held until the next pop),
 * 0 (skipped: counted) or the edge's error. */
static int take(struct nats_edge *q, natsMsg *m, dagger_value_t *out)
{
    if (q->idle_ms > 0)
        q->last_rx_ms = dagger__net_now_ms();
    int r = dagger__msg_accept(&q->base, &q->rx, natsMsg_GetData(m),
                               (size_t)natsMsg_GetDataLength(m), out);
    if (r == 1) {
        q->held = m;
        return 1;
    }
    natsMsg_Destroy(m);
    if (r < 0)
        count_dropped(q);
    return r;
}

/* NextMsg's status other than OK and TIMEOUT: 0 to go on (a slow consumer lost messages,
 * counted), or the edge's error. */
static int trouble(struct nats_edge *q, natsStatus s)
{
    if (s == NATS_SLOW_CONSUMER) {
        count_dropped(q);
        return 0;
    }
    int rc = check_link(q);
    return rc < 0 ? rc
                  : dagger__edge_fail(&q->base, DAGGER_EPEER, "%s: subscription lost: %s",
                                      q->base.uri, natsStatus_GetText(s));
}

static int nats_pop(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct nats_edge *q = (struct nats_edge *)e;
    natsMsg *m = NULL;
    natsStatus s;
    int r;
    if (q->held) {
        natsMsg_Destroy(q->held);
        q->held = NULL;
    }
    /* The fast path reads no clock: a value queued already, or arriving within one slice. */
    if (timeout_ms != 0) {
        s = natsSubscription_NextMsg(&m, q->sub,
                                     timeout_ms < 0 || timeout_ms > 50 ? 50 : timeout_ms);
        if (s == NATS_OK && (r = take(q, m, out)) != 0)
            return r > 0 ? 0 : r;
        if (s != NATS_OK && s != NATS_TIMEOUT && (r = trouble(q, s)) < 0)
            return r;
    }
    int64_t deadline = dagger__net_deadline(timeout_ms);
    for (;;) {
        /* cnats' reader queues messages in arrival order, so once END is queued on the
         * control subject every value routed to this consumer before it is queued too. */
        int ended = 0, pending = 0;
        (void)natsSubscription_GetPending(q->endsub, &ended, NULL);
        int left = dagger__net_left_ms(deadline);
        if (left == 0 &&
            (natsSubscription_GetPending(q->sub, &pending, NULL) != NATS_OK || pending == 0))
            s = NATS_TIMEOUT;
        else
            s = natsSubscription_NextMsg(&m, q->sub, left < 0 || left > 50 ? 50 : left ? left : 1);
        if (s == NATS_OK) {
            if ((r = take(q, m, out)) != 0)
                return r > 0 ? 0 : r;
            continue;
        }
        if (s != NATS_TIMEOUT) {
            if ((r = trouble(q, s)) < 0)
                return r;
            continue;
        }
        count_dropped(q);
        if (ended && natsSubscription_NextMsg(&m, q->endsub, 1) == NATS_OK) {
            if ((r = take(q, m, out)) != 0) /* END: DAGGER_ECLOSED, tail losses counted */
                return r > 0 ? 0 : r;
            continue;
        }
        if ((r = check_link(q)) < 0)
            return r;
        if (q->idle_ms > 0 && dagger__net_now_ms() - q->last_rx_ms > q->idle_ms)
            return dagger__edge_fail(e, DAGGER_EPEER,
                                     "%s: no message from the producer for %d ms (idle_ms)", e->uri,
                                     q->idle_ms);
        if (dagger__net_left_ms(deadline) == 0)
            return dagger__edge_note(e, DAGGER_ETIMEDOUT, "%s: no value before the timeout",
                                     e->uri);
        dagger__edge_count(&e->st.waits, 1);
    }
}

static int nats_poll(struct dagger_edge *e, int timeout_ms)
{
    struct nats_edge *q = (struct nats_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    for (;;) {
        int rc = check_link(q);
        if (rc < 0)
            return rc;
        if (e->end == DAGGER_EDGE_PUSH)
            return 1;
        int pending = 0;
        if (natsSubscription_GetPending(q->sub, &pending, NULL) == NATS_OK && pending > 0)
            return 1;
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            return 0;
        pause_ms(left < 0 || left > 5 ? 5 : left);
    }
}

/* The connection closes before the subscriptions go: cnats before 3.6 (Debian 12 has 3.4)
 * delivers a message to a subscription its reader thread looked up without a reference of its
 * own, so destroying a subscription while the connection still reads (an END on `_end` arriving
 * as the consumer closes after the END on the subject) could crash that thread. Close joins
 * the reader, and the subscriptions stay alive through our references until it has. cnats
 * calls the connection callbacks (which use `q`) from its own thread, the closed one last: `q`
 * is freed only after it ran (bounded wait). */
static void free_edge(struct nats_edge *q)
{
    if (q->nc) {
        natsConnection_Close(q->nc);
        for (int i = 0; i < 2000 && !atomic_load(&q->closed); i++)
            pause_ms(1);
    }
    if (q->held)
        natsMsg_Destroy(q->held);
    if (q->sub)
        natsSubscription_Destroy(q->sub);
    if (q->endsub)
        natsSubscription_Destroy(q->endsub);
    if (q->nc)
        natsConnection_Destroy(q->nc);
    dagger__net_free(q->buf);
    dagger__net_free(q);
}

enum { CLOSE_MS = 2000, ABORT_MS = 1000 };

static int nats_close(struct dagger_edge *e)
{
    struct nats_edge *q = (struct nats_edge *)e;
    int rc = 0;
    if (e->end == DAGGER_EDGE_PUSH && !e->err && !e->aborted) {
        rc = publish(q, NULL, false, dagger__net_deadline(CLOSE_MS));
        if (rc == 0) {
            natsStatus s = natsConnection_FlushTimeout(q->nc, CLOSE_MS);
            if (s != NATS_OK)
                rc = dagger__edge_note(e, DAGGER_EPEER, "%s: final flush: %s", e->uri,
                                       natsStatus_GetText(s));
        }
    } else if (e->end == DAGGER_EDGE_PUSH && q->nc) {
        /* Failed or aborted: the server never tells the consumers that this producer is gone,
         * so they hear it from END|ABORT (best effort, bounded; the edge's error stays). */
        if (publish(q, NULL, true, dagger__net_deadline(ABORT_MS)) == 0)
            (void)natsConnection_FlushTimeout(q->nc, ABORT_MS);
    }
    free_edge(q);
    return rc;
}

static const char *const nats_keys[] = {"queue",    "max",      "timeout_ms", "idle_ms",
                                        "buffer",   "user_env", "secret_env", "cafile",
                                        "certfile", "keyfile",  "insecure",   NULL};

static int open_status(char *err, size_t errcap, const char *what, natsStatus s)
{
    dagger__net_fmt(err, errcap, "%s: %s", what, natsStatus_GetText(s));
    return s == NATS_NO_MEMORY ? DAGGER_ENOMEM : DAGGER_EINVAL;
}

static int nats_open_edge(struct dagger_edge **out, const struct dagger__uri *u, unsigned end,
                          char *err, size_t errcap)
{
    int tls = strcmp(u->scheme, "tls") == 0;
    int64_t buffer;
    struct dagger__msg_opts mo;
    const char *queue = dagger__uri_get(u, "queue");
    int rc = dagger__msg_parse(u, nats_keys, (1 << 20) - DAGGER__FRAME_HDR, DAGGER__FRAME_MAX_LIMIT,
                               "*> \t\r\n", &mo, err, errcap);
    if (rc == 0 && strlen(mo.name) + 6 > sizeof((struct nats_edge *)0)->subject) {
        dagger__net_fmt(err, errcap, "%s: subject longer than %zu bytes", u->scheme,
                        sizeof((struct nats_edge *)0)->subject - 6);
        rc = DAGGER_EINVAL;
    }
    if (rc == 0 && queue &&
        (end != DAGGER_EDGE_POP || !*queue || strlen(queue) >= 64 || strpbrk(queue, "*> \t\r\n"))) {
        dagger__net_fmt(err, errcap, "%s: queue=%s: a consumer's group name, without spaces",
                        u->scheme, queue);
        rc = DAGGER_EINVAL;
    }
    if (rc == 0)
        rc = dagger__uri_int(u, "buffer", 65536, 1, 1 << 24, &buffer, err, errcap);
    if (rc < 0) {
        memset(mo.secret, 0, sizeof mo.secret);
        return rc;
    }
    const char *user = mo.user, *subject = mo.name;
    char *secret = mo.secret;
    int slen = mo.slen;
    struct nats_edge *q = dagger__net_calloc(sizeof *q);
    natsOptions *o = NULL;
    natsStatus s;
    if (!q) {
        dagger__net_fmt(err, errcap, "%s: out of memory", u->scheme);
        return DAGGER_ENOMEM;
    }
    q->base.max_payload = (uint32_t)mo.max;
    q->timeout_ms = (int)mo.timeout_ms;
    q->idle_ms = (int)mo.idle_ms;
    dagger__net_fmt(q->subject, sizeof q->subject, "%s", subject);
    dagger__net_fmt(q->endsubj, sizeof q->endsubj, "%s._end", subject);
    dagger__net_fmt(q->queue, sizeof q->queue, "%s", queue ? queue : "");
    dagger__net_fmt(q->server, sizeof q->server, "%s://%s:%d", tls ? "tls" : "nats", u->host,
                    u->port >= 0 ? u->port : 4222);
    q->rx.split = queue != NULL;
    if ((s = natsOptions_Create(&o)) != NATS_OK) {
        rc = open_status(err, errcap, "natsOptions_Create", s);
        goto fail;
    }
    if ((s = natsOptions_SetURL(o, q->server)) != NATS_OK ||
        (s = natsOptions_SetTimeout(o, q->timeout_ms)) != NATS_OK ||
        (s = natsOptions_SetAllowReconnect(o, true)) != NATS_OK ||
        (s = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
        (s = natsOptions_SetReconnectWait(o, 50)) != NATS_OK ||
        (s = natsOptions_SetDisconnectedCB(o, on_disconnected, q)) != NATS_OK ||
        (s = natsOptions_SetReconnectedCB(o, on_reconnected, q)) != NATS_OK ||
        (s = natsOptions_SetClosedCB(o, on_closed, q)) != NATS_OK ||
        (s = natsOptions_SetErrorHandler(o, on_error, q)) != NATS_OK) {
        rc = open_status(err, errcap, "nats options", s);
        goto fail;
    }
    if (user)
        s = natsOptions_SetUserInfo(o, user, slen > 0 ? secret : "");
    else if (slen > 0)
        s = natsOptions_SetToken(o, secret);
    if (s == NATS_OK && tls) {
        const char *cafile = dagger__uri_get(u, "cafile");
        const char *cert = dagger__uri_get(u, "certfile"), *key = dagger__uri_get(u, "keyfile");
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK && cafile)
            s = natsOptions_LoadCATrustedCertificates(o, cafile);
        if (s == NATS_OK && (cert || key))
            s = natsOptions_LoadCertificatesChain(o, cert, key);
        if (s == NATS_OK && mo.insecure)
            s = natsOptions_SkipServerVerification(o, true);
    }
    memset(mo.secret, 0, sizeof mo.secret);
    if (s != NATS_OK) {
        rc = open_status(err, errcap, tls ? "credentials or TLS files" : "credentials", s);
        goto fail;
    }
    dagger__net_fmt(q->base.uri, sizeof q->base.uri, "%s/%s%s%s", q->server, q->subject,
                    queue ? "?queue=" : "", queue ? queue : "");
    s = natsConnection_Connect(&q->nc, o);
    if (s != NATS_OK) {
        int auth = s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED;
        const char *why = nats_GetLastError(NULL);
        dagger__net_fmt(err, errcap, "%s: %s %s: %s%s%s", q->base.uri,
                        auth ? "the server refused the credentials of" : "cannot connect to",
                        q->server, natsStatus_GetText(s), why && *why ? ": " : "", why ? why : "");
        rc = auth ? DAGGER_EINVAL : s == NATS_NO_MEMORY ? DAGGER_ENOMEM : DAGGER_EPEER;
        goto fail;
    }
    int64_t server_max = natsConnection_GetMaxPayload(q->nc) - DAGGER__FRAME_HDR;
    if (server_max > 0 && (int64_t)q->base.max_payload > server_max)
        q->base.max_payload = (uint32_t)server_max;
    if (end == DAGGER_EDGE_POP) {
        s = queue ? natsConnection_QueueSubscribeSync(&q->sub, q->nc, q->subject, queue)
                  : natsConnection_SubscribeSync(&q->sub, q->nc, q->subject);
        if (s == NATS_OK)
            s = natsSubscription_SetPendingLimits(
                q->sub, (int)buffer, (int)(buffer * 1024 > (1 << 30) ? (1 << 30) : buffer * 1024));
        if (s == NATS_OK)
            s = natsConnection_SubscribeSync(&q->endsub, q->nc, q->endsubj);
        /* The server has the subscription once it answers a ping: values published after
         * open returns reach this consumer. */
        if (s == NATS_OK)
            s = natsConnection_FlushTimeout(q->nc, q->timeout_ms);
        if (s != NATS_OK) {
            dagger__net_fmt(err, errcap, "%s: subscribe: %s", q->base.uri, natsStatus_GetText(s));
            rc = s == NATS_TIMEOUT ? DAGGER_EPEER : DAGGER_EINVAL;
            goto fail;
        }
    }
    natsOptions_Destroy(o);
    q->last_rx_ms = dagger__net_now_ms();
    *out = &q->base;
    return 0;
fail:
    memset(mo.secret, 0, sizeof mo.secret);
    if (o)
        natsOptions_Destroy(o);
    free_edge(q);
    return rc;
}

DAGGER__MSG_OPS(nats_ops, "nats", nats);
DAGGER__MSG_OPS(tls_ops, "tls", nats);

const struct dagger__transport_ops *const dagger__net_nats_ops[] = {&nats_ops, &tls_ops, NULL};
