/* src/net/mqtt/mqtt.c - MQTT edges through a broker (libmosquitto): `mqtt://`, `mqtts://`.
 *
 * `mqtt://host:port/topic?qos=0|1|2&client=...&keepalive=...`: the producer publishes each value
 * as one message on `topic`, the consumer subscribes to it; several consumers on one topic each
 * get every value (fan-out). Frames, sequence numbers, duplicates and gaps: net/msg.h.
 * Design: libmosquitto runs without its own thread: every push, pop, poll and flush drives
 * mosquitto_loop on the owner thread, so the callbacks below run on the owner thread too and
 * the edge needs no lock. The consumer reads from the socket only when its local queue is
 * empty, so a slow consumer leaves messages in the kernel and the broker (TCP back-pressure;
 * the broker's own queue limits then apply, and what it drops shows up as gaps). The producer
 * keeps at most `window` messages not yet written (QoS 0) or not yet acknowledged (QoS 1, 2)
 * and waits in the loop for the rest (back-pressure).
 * Reconnection: a lost connection is re-established by the next call, with the same client id;
 * QoS 1/2 messages not yet acknowledged are sent again by libmosquitto (the consumer drops the
 * duplicates). When no connection comes back within `timeout_ms` of the loss the edge fails
 * with DAGGER_EPEER. A consumer given `client=` and QoS >= 1 uses a persistent session, so the
 * broker keeps its values while it is away (and across a broker restart, with persistence).
 * Credentials come from the environment (`user_env`, `secret_env`), never from the URI.
 * SPDX-License-Identifier: MIT
 */
#include "net/msg.h"

#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct slot {
    unsigned char *p;
    size_t len, cap;
};

struct mqtt_edge {
    struct dagger_edge base;
    struct mosquitto *m;
    char topic[128];
    char host[128];
    int port;
    int qos, timeout_ms, window, idle_ms;
    int connected;    /* CONNACK accepted and no loss since */
    int refused;      /* the last CONNACK's refusal code (0: none) */
    int subscribed;   /* consumer: SUBACK seen on the current connection */
    int sub_failed;   /* consumer: the broker refused the subscription */
    int64_t lost_ms;  /* when the connection was lost (0: it is up) */
    long outstanding; /* producer: messages not yet written (QoS 0) or acknowledged */
    uint64_t seq;     /* producer: the next number */
    unsigned pushes, pops;
    unsigned char *buf; /* producer: one encoded message */
    size_t cap;
    struct dagger__msg_rx rx;
    struct slot *q; /* consumer: received messages, a ring of qcap slots */
    size_t qcap, qhead, qlen;
    int borrowed;       /* the head slot is lent to the caller until the next pop */
    size_t lost_len;    /* consumer: a message this edge had no memory to queue (its size) */
    int64_t last_rx_ms; /* consumer: the last message (for idle_ms) */
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static void lib_init(void) { mosquitto_lib_init(); }

static void mark_lost(struct mqtt_edge *q)
{
    if (q->connected || !q->lost_ms)
        q->lost_ms = dagger__net_now_ms();
    q->connected = 0;
    q->subscribed = 0;
    if (q->qos == 0 && q->base.end == DAGGER_EDGE_PUSH)
        q->outstanding = 0; /* unwritten QoS 0 messages die with the connection */
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct mqtt_edge *q = obj;
    if (rc != 0) {
        q->refused = rc;
        return;
    }
    q->connected = 1;
    q->refused = 0;
    q->lost_ms = 0;
    if (q->base.end == DAGGER_EDGE_POP && mosquitto_subscribe(m, NULL, q->topic, q->qos) != 0)
        mark_lost(q);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    (void)rc;
    mark_lost(obj);
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    (void)mid;
    struct mqtt_edge *q = obj;
    if (q->outstanding > 0)
        q->outstanding--;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
    (void)m;
    (void)mid;
    struct mqtt_edge *q = obj;
    if (n < 1 || granted[0] > 2)
        q->sub_failed = 1;
    else
        q->subscribed = 1;
}

/* Queue a copy of the message; the ring grows (only a few messages arrive per loop call,
 * because the loop runs only when the queue is empty). A message that finds no memory is not
 * a gap the broker made: the consumer returns the values queued before it, then DAGGER_ENOMEM
 * for good (nothing after it is queued), rather than going on without it. */
static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    struct mqtt_edge *q = obj;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    if (q->lost_len)
        return;
    if (q->qlen == q->qcap) {
        size_t nc = q->qcap ? q->qcap * 2 : 8;
        struct slot *ns = dagger__net_calloc(nc * sizeof *ns);
        if (!ns) {
            q->lost_len = len ? len : 1;
            return;
        }
        for (size_t i = 0; i < q->qcap; i++)
            ns[i] = q->q[(q->qhead + i) % q->qcap];
        dagger__net_free(q->q);
        q->q = ns;
        q->qhead = 0;
        q->qcap = nc;
    }
    struct slot *s = &q->q[(q->qhead + q->qlen) % q->qcap];
    if (len > s->cap) {
        unsigned char *np = dagger__net_realloc(s->p, len);
        if (!np) {
            q->lost_len = len;
            return;
        }
        s->p = np;
        s->cap = len;
    }
    if (len)
        memcpy(s->p, msg->payload, len);
    s->len = len;
    q->qlen++;
}

/* Run the network loop for up to `ms`; a lost connection is noted, never fatal here. */
static void step(struct mqtt_edge *q, int ms)
{
    int rc = mosquitto_loop(q->m, ms < 0 ? 0 : ms, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        mark_lost(q);
}

static int lost_for_good(struct mqtt_edge *q)
{
    return dagger__edge_fail(&q->base, DAGGER_EPEER,
                             "%s: the connection to the broker %s:%d was lost and not "
                             "re-established within timeout_ms=%d",
                             q->base.uri, q->host, q->port, q->timeout_ms);
}

/* Make sure the connection is up (reconnecting, with backoff, until the deadline or until
 * timeout_ms after the loss). Returns 0, DAGGER_ETIMEDOUT or a sticky DAGGER_EPEER. */
static int ensure(struct mqtt_edge *q, int64_t deadline)
{
    int backoff = 10;
    while (!q->connected) {
        if (q->lost_ms && dagger__net_now_ms() - q->lost_ms > q->timeout_ms)
            return lost_for_good(q);
        if (mosquitto_reconnect(q->m) == MOSQ_ERR_SUCCESS) {
            int64_t until = dagger__net_now_ms() + 1000;
            while (!q->connected && !q->refused && dagger__net_now_ms() < until) {
                int r = mosquitto_loop(q->m, 50, 1);
                if (r != MOSQ_ERR_SUCCESS)
                    break;
            }
            if (q->refused)
                return dagger__edge_fail(
                    &q->base, DAGGER_EPEER, "%s: the broker %s:%d refused the reconnection: %s",
                    q->base.uri, q->host, q->port, mosquitto_connack_string(q->refused));
            if (q->connected) {
                dagger__edge_count(&q->base.st.reconnects, 1);
                break;
            }
        }
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            return dagger__edge_note(&q->base, DAGGER_ETIMEDOUT,
                                     "%s: reconnecting to the broker %s:%d", q->base.uri, q->host,
                                     q->port);
        struct timespec ts = {0, (long)(left >= 0 && left < backoff ? left : backoff) * 1000000};
        nanosleep(&ts, NULL);
        backoff = backoff < 200 ? backoff * 2 : 200;
    }
    return 0;
}

/* Wait in the loop until fewer than `limit` messages are outstanding. */
static int drain(struct mqtt_edge *q, long limit, int64_t deadline)
{
    while (q->outstanding >= limit && q->outstanding > 0) {
        int rc = ensure(q, deadline);
        if (rc < 0)
            return rc;
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            return dagger__edge_note(&q->base, DAGGER_ETIMEDOUT,
                                     "%s: %ld messages not yet accepted by the broker", q->base.uri,
                                     q->outstanding);
        dagger__edge_count(&q->base.st.waits, 1);
        step(q, left < 0 || left > 100 ? 100 : left);
    }
    return 0;
}

/* Publish `v`, or END when it is NULL (END|ABORT when `aborted`). */
static int publish(struct mqtt_edge *q, const dagger_value_t *v, bool aborted, int64_t deadline)
{
    int rc = ensure(q, deadline);
    if (rc < 0)
        return rc;
    if ((rc = drain(q, q->window, deadline)) < 0)
        return rc;
    long n = aborted ? dagger__msg_encode_abort(&q->base, q->seq, &q->buf, &q->cap)
                     : dagger__msg_encode(&q->base, v, q->seq, &q->buf, &q->cap);
    if (n < 0)
        return (int)n;
    q->outstanding++; /* before the call: on_publish may run inside it */
    int mrc = mosquitto_publish(q->m, NULL, q->topic, (int)n, q->buf, q->qos, false);
    if (mrc == MOSQ_ERR_NO_CONN || mrc == MOSQ_ERR_CONN_LOST || mrc == MOSQ_ERR_ERRNO) {
        /* QoS >= 1: libmosquitto keeps the message and sends it after the reconnection.
         * QoS 0: it is lost (at most once); the consumer counts the gap. */
        mark_lost(q);
    } else if (mrc != MOSQ_ERR_SUCCESS) {
        q->outstanding--;
        return dagger__edge_note(&q->base, mrc == MOSQ_ERR_NOMEM ? DAGGER_ENOMEM : DAGGER_EINVAL,
                                 "%s: publish refused: %s", q->base.uri, mosquitto_strerror(mrc));
    }
    if (v) {
        q->seq++;
        dagger__edge_count(&q->base.st.values, 1);
    }
    dagger__edge_count(&q->base.st.bytes, (uint64_t)n);
    return 0;
}

static int mqtt_push(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    struct mqtt_edge *q = (struct mqtt_edge *)e;
    int rc = publish(q, v, false, dagger__net_deadline(timeout_ms));
    /* Acknowledgements and keepalives are read now and then without waiting. */
    if (rc == 0 && (++q->pushes & 63) == 0 && q->connected)
        step(q, 0);
    return rc;
}

static int mqtt_flush(struct dagger_edge *e, int timeout_ms)
{
    struct mqtt_edge *q = (struct mqtt_edge *)e;
    return drain(q, 1, dagger__net_deadline(timeout_ms));
}

static int mqtt_pop(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct mqtt_edge *q = (struct mqtt_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    for (;;) {
        if (q->borrowed) {
            q->qhead = (q->qhead + 1) % q->qcap;
            q->qlen--;
            q->borrowed = 0;
        }
        while (q->qlen) {
            struct slot *s = &q->q[q->qhead];
            q->last_rx_ms = dagger__net_now_ms();
            int r = dagger__msg_accept(e, &q->rx, s->p, s->len, out);
            if (r == 1) {
                q->borrowed = 1;
                return 0;
            }
            q->qhead = (q->qhead + 1) % q->qcap;
            q->qlen--;
            if (r < 0)
                return r;
        }
        if (q->lost_len)
            return dagger__edge_fail(e, DAGGER_ENOMEM,
                                     "%s: out of memory queueing a message of %zu bytes after "
                                     "%llu values: the stream is incomplete",
                                     e->uri, q->lost_len, (unsigned long long)q->rx.next);
        int rc = ensure(q, deadline);
        if (rc < 0)
            return rc;
        /* Read what the socket holds without a select() first (libmosquitto reads one packet
         * per call); keepalive pings then need a call of their own now and then. */
        if ((++q->pops & 1023) == 0)
            mosquitto_loop_misc(q->m);
        if (mosquitto_loop_read(q->m, 1) != MOSQ_ERR_SUCCESS)
            mark_lost(q);
        if (q->qlen)
            continue;
        int left = dagger__net_left_ms(deadline);
        if (q->idle_ms > 0 && dagger__net_now_ms() - q->last_rx_ms > q->idle_ms)
            return dagger__edge_fail(e, DAGGER_EPEER,
                                     "%s: no message from the producer for %d ms (idle_ms) after "
                                     "%llu values",
                                     e->uri, q->idle_ms, (unsigned long long)q->rx.next);
        if (left == 0)
            return dagger__edge_note(e, DAGGER_ETIMEDOUT, "%s: no value before the timeout",
                                     e->uri);
        dagger__edge_count(&e->st.waits, 1);
        step(q, left < 0 || left > 100 ? 100 : left);
    }
}

static int mqtt_poll(struct dagger_edge *e, int timeout_ms)
{
    struct mqtt_edge *q = (struct mqtt_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    for (;;) {
        if (e->end == DAGGER_EDGE_PUSH ? q->outstanding < q->window && q->connected
                                       : q->qlen > (size_t)q->borrowed || q->lost_len)
            return 1;
        int rc = ensure(q, deadline);
        if (rc < 0)
            return rc == DAGGER_ETIMEDOUT ? 0 : rc;
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            return 0;
        step(q, left < 0 || left > 100 ? 100 : left);
    }
}

static void free_edge(struct mqtt_edge *q)
{
    if (q->m)
        mosquitto_destroy(q->m);
    for (size_t i = 0; i < q->qcap; i++)
        dagger__net_free(q->q[i].p);
    dagger__net_free(q->q);
    dagger__net_free(q->buf);
    dagger__net_free(q);
}

enum { CLOSE_MS = 2000, ABORT_MS = 1000 };

static int mqtt_close(struct dagger_edge *e)
{
    struct mqtt_edge *q = (struct mqtt_edge *)e;
    int rc = 0;
    if (e->end == DAGGER_EDGE_PUSH && !e->err && !e->aborted) {
        int64_t deadline = dagger__net_deadline(CLOSE_MS);
        rc = publish(q, NULL, false, deadline); /* END, carrying the number of values sent */
        if (rc == 0)
            rc = drain(q, 1, deadline);
    } else if (e->end == DAGGER_EDGE_PUSH && q->connected) {
        /* Failed or aborted: the broker never tells the consumers that this producer is gone,
         * so they hear it from END|ABORT (best effort, bounded; the edge's error stays). */
        int64_t deadline = dagger__net_deadline(ABORT_MS);
        if (publish(q, NULL, true, deadline) == 0)
            (void)drain(q, 1, deadline);
    }
    if (q->connected) {
        mosquitto_disconnect(q->m);
        step(q, 0);
    }
    free_edge(q);
    return rc;
}

static const char *const mqtt_keys[] = {
    "qos",        "client", "keepalive", "max",      "timeout_ms", "idle_ms",  "window", "user_env",
    "secret_env", "cafile", "capath",    "certfile", "keyfile",    "insecure", NULL};

static int mqtt_open_edge(struct dagger_edge **out, const struct dagger__uri *u, unsigned end,
                          char *err, size_t errcap)
{
    int tls = strcmp(u->scheme, "mqtts") == 0;
    int64_t qos, keepalive, window;
    struct dagger__msg_opts mo;
    int rc = dagger__msg_parse(u, mqtt_keys, (16 << 20) - DAGGER__FRAME_HDR,
                               (256 << 20) - 1024 - DAGGER__FRAME_HDR, "+#", &mo, err, errcap);
    if (rc == 0)
        rc = dagger__uri_int(u, "qos", 1, 0, 2, &qos, err, errcap);
    if (rc == 0)
        rc = dagger__uri_int(u, "keepalive", 30, 5, 65535, &keepalive, err, errcap);
    if (rc == 0)
        rc = dagger__uri_int(u, "window", 1000, 1, 1 << 20, &window, err, errcap);
    if (rc == 0 && mo.slen > 0 && !mo.user) {
        dagger__net_fmt(err, errcap,
                        "%s: secret_env= needs user_env= (MQTT has no password without a user "
                        "name)",
                        u->scheme);
        rc = DAGGER_EINVAL;
    }
    if (rc < 0) {
        memset(mo.secret, 0, sizeof mo.secret);
        return rc;
    }
    const char *user = mo.user, *topic = mo.name;
    pthread_once(&lib_once, lib_init);
    struct mqtt_edge *q = dagger__net_calloc(sizeof *q);
    if (!q) {
        dagger__net_fmt(err, errcap, "%s: out of memory", u->scheme);
        return DAGGER_ENOMEM;
    }
    q->base.max_payload = (uint32_t)mo.max;
    q->base.end = end; /* the callbacks read it during open */
    q->qos = (int)qos;
    q->timeout_ms = (int)mo.timeout_ms;
    q->idle_ms = (int)mo.idle_ms;
    q->window = (int)window;
    q->port = u->port >= 0 ? u->port : (tls ? 8883 : 1883);
    dagger__net_fmt(q->host, sizeof q->host, "%s", u->host);
    dagger__net_fmt(q->topic, sizeof q->topic, "%s", topic);
    const char *client = dagger__uri_get(u, "client");
    char idbuf[64];
    if (!client || !*client) {
        uint32_t r = 0;
        (void)dagger__random(&r, sizeof r);
        dagger__net_fmt(idbuf, sizeof idbuf, "dagger-%d-%08x", (int)getpid(), r);
        client = idbuf;
    }
    /* A persistent session keeps a named consumer's values while it is away. */
    bool clean = !(end == DAGGER_EDGE_POP && qos > 0 && client != idbuf);
    q->m = mosquitto_new(client, clean, q);
    if (!q->m) {
        dagger__net_fmt(err, errcap, "%s: mosquitto_new: %s", u->scheme, strerror(errno));
        rc = errno == ENOMEM ? DAGGER_ENOMEM : DAGGER_EINVAL;
        goto fail;
    }
    mosquitto_int_option(q->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(q->m, on_connect);
    mosquitto_disconnect_callback_set(q->m, on_disconnect);
    mosquitto_publish_callback_set(q->m, on_publish);
    mosquitto_subscribe_callback_set(q->m, on_subscribe);
    mosquitto_message_callback_set(q->m, on_message);
    if (user && mosquitto_username_pw_set(q->m, user, mo.slen > 0 ? mo.secret : NULL) != 0) {
        dagger__net_fmt(err, errcap, "%s: bad user name or secret", u->scheme);
        rc = DAGGER_EINVAL;
        goto fail;
    }
    memset(mo.secret, 0, sizeof mo.secret);
    if (tls) {
        const char *cafile = dagger__uri_get(u, "cafile"), *capath = dagger__uri_get(u, "capath");
        int trc = mosquitto_tls_set(q->m, cafile, capath, dagger__uri_get(u, "certfile"),
                                    dagger__uri_get(u, "keyfile"), NULL);
        if (trc == MOSQ_ERR_SUCCESS && !cafile && !capath)
            trc = mosquitto_int_option(q->m, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
        if (trc == MOSQ_ERR_SUCCESS && mo.insecure)
            trc = mosquitto_tls_insecure_set(q->m, true);
        if (trc != MOSQ_ERR_SUCCESS) {
            dagger__net_fmt(err, errcap, "%s: TLS setup (cafile, capath, certfile, keyfile): %s",
                            u->scheme, mosquitto_strerror(trc));
            rc = DAGGER_EINVAL;
            goto fail;
        }
    }
    dagger__net_fmt(q->base.uri, sizeof q->base.uri, "%s://%s:%d/%s?qos=%d", u->scheme, q->host,
                    q->port, q->topic, q->qos);
    int crc = mosquitto_connect(q->m, q->host, q->port, (int)keepalive);
    if (crc != MOSQ_ERR_SUCCESS) {
        dagger__net_fmt(err, errcap, "%s: cannot connect to the broker %s:%d: %s", q->base.uri,
                        q->host, q->port,
                        crc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(crc));
        rc = DAGGER_EPEER;
        goto fail;
    }
    /* The CONNACK, then (consumer) the SUBACK, so that values published after open returns
     * reach this consumer. */
    int64_t deadline = dagger__net_deadline(q->timeout_ms);
    while (!q->sub_failed && !q->refused &&
           !(q->connected && (end == DAGGER_EDGE_PUSH || q->subscribed))) {
        int left = dagger__net_left_ms(deadline);
        if (left == 0)
            break;
        int lrc = mosquitto_loop(q->m, left > 100 ? 100 : left, 1);
        if (lrc != MOSQ_ERR_SUCCESS && !q->refused) {
            dagger__net_fmt(err, errcap, "%s: the connection to the broker %s:%d failed: %s",
                            q->base.uri, q->host, q->port, mosquitto_strerror(lrc));
            rc = DAGGER_EPEER;
            goto fail;
        }
    }
    if (q->refused) {
        dagger__net_fmt(err, errcap, "%s: the broker %s:%d refused the connection: %s", q->base.uri,
                        q->host, q->port, mosquitto_connack_string(q->refused));
        rc = q->refused == 4 || q->refused == 5 ? DAGGER_EINVAL : DAGGER_EPEER;
        goto fail;
    }
    if (q->sub_failed) {
        dagger__net_fmt(err, errcap, "%s: the broker refused the subscription to '%s'", q->base.uri,
                        q->topic);
        rc = DAGGER_EINVAL;
        goto fail;
    }
    if (!q->connected || (end == DAGGER_EDGE_POP && !q->subscribed)) {
        dagger__net_fmt(err, errcap, "%s: no answer from the broker %s:%d within timeout_ms=%d",
                        q->base.uri, q->host, q->port, q->timeout_ms);
        rc = DAGGER_EPEER;
        goto fail;
    }
    q->last_rx_ms = dagger__net_now_ms();
    *out = &q->base;
    return 0;
fail:
    memset(mo.secret, 0, sizeof mo.secret);
    free_edge(q);
    return rc;
}

DAGGER__MSG_OPS(mqtt_ops, "mqtt", mqtt);
DAGGER__MSG_OPS(mqtts_ops, "mqtts", mqtt);

const struct dagger__transport_ops *const dagger__net_mqtt_ops[] = {&mqtt_ops, &mqtts_ops, NULL};
