/* bench/stream/broker_peers.c - what dagger's broker edges are measured against: the client
 * libraries used directly, the way a program would without dagger.
 *
 * mosquitto: a libmosquitto publisher thread and subscriber, each driving mosquitto_loop
 *   itself, QoS 1, the publisher keeping at most BROKER_WINDOW messages unacknowledged; the
 *   payload is the value's bytes alone.
 * cnats: a cnats publisher thread and a synchronous subscription (natsSubscription_NextMsg)
 *   with the same queue limit as dagger's consumer.
 * Prints RESULT|stream_mqtt|mosquitto|bytes=B|... and RESULT|stream_nats|cnats|bytes=B|...
 * Usage: bench_streambroker_peers [mqtt|nats]...
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "broker_problem.h"

#if BENCH_HAVE_MQTT
#include <mosquitto.h>
#endif
#if BENCH_HAVE_NATS
#include <nats/nats.h>
#endif

struct side {
    int port;
    size_t bytes;
    long n;
    atomic_int go;
    int rc;
    /* mosquitto */
    long outstanding;
    int connected, subscribed;
    long got, bad;
    int warm;
};

static void wait_go(struct side *s)
{
    while (!atomic_load(&s->go))
        sched_yield();
}

#if BENCH_HAVE_MQTT
static void mq_on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct side *s = obj;
    s->connected = rc == 0;
}

static void mq_on_publish(struct mosquitto *m, void *obj, int mid)
{
    struct side *s = obj;
    s->outstanding--;
}

static void mq_on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *g)
{
    struct side *s = obj;
    s->subscribed = 1;
}

static void mq_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    struct side *s = obj;
    if (!s->warm) {
        s->warm = 1;
        return;
    }
    s->bad += !broker_check(msg->payload, (size_t)msg->payloadlen, s->bytes, s->got);
    s->got++;
}

static struct mosquitto *mq_connect(struct side *s)
{
    struct mosquitto *m = mosquitto_new(NULL, true, s);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(m, mq_on_connect);
    mosquitto_publish_callback_set(m, mq_on_publish);
    mosquitto_subscribe_callback_set(m, mq_on_subscribe);
    mosquitto_message_callback_set(m, mq_on_message);
    if (mosquitto_connect(m, "127.0.0.1", s->port, 30) != MOSQ_ERR_SUCCESS)
        return NULL;
    for (int i = 0; i < 100 && !s->connected; i++)
        mosquitto_loop(m, 50, 1);
    return s->connected ? m : NULL;
}

static void *mq_publisher(void *arg)
{
    struct side *s = arg;
    struct mosquitto *m = mq_connect(s);
    unsigned char *buf = calloc(1, s->bytes);
    if (!m || !buf) {
        s->rc = 1;
        return NULL;
    }
    s->outstanding = 1;
    mosquitto_publish(m, NULL, "peer/bench", 1, "w", 1, false);
    while (s->outstanding > 0)
        mosquitto_loop(m, 50, 1);
    wait_go(s);
    for (long i = 0; i < s->n; i++) {
        while (s->outstanding >= BROKER_WINDOW)
            mosquitto_loop(m, 100, 1);
        broker_fill(buf, s->bytes, i);
        s->outstanding++;
        if (mosquitto_publish(m, NULL, "peer/bench", (int)s->bytes, buf, 1, false) != 0) {
            s->rc = 2;
            break;
        }
        if ((i & 63) == 63)
            mosquitto_loop(m, 0, 1);
    }
    while (s->outstanding > 0)
        mosquitto_loop(m, 100, 1);
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    free(buf);
    return NULL;
}

static double bench_mosquitto(int port, size_t bytes, long n)
{
    struct side sub = {.port = port, .bytes = bytes, .n = n};
    struct side pub = {.port = port, .bytes = bytes, .n = n};
    struct mosquitto *m = mq_connect(&sub);
    if (!m)
        return -1;
    mosquitto_subscribe(m, NULL, "peer/bench", 1);
    for (int i = 0; i < 100 && !sub.subscribed; i++)
        mosquitto_loop(m, 50, 1);
    pthread_t th;
    pthread_create(&th, NULL, mq_publisher, &pub);
    for (int i = 0; i < 1000 && !sub.warm; i++)
        mosquitto_loop(m, 10, 1);
    double t0 = net_now(), last = t0;
    atomic_store(&pub.go, 1);
    long seen = 0;
    while (sub.got < n && net_now() - last < 10) {
        mosquitto_loop(m, 100, 1);
        if (sub.got != seen)
            seen = sub.got, last = net_now();
    }
    double t1 = net_now();
    pthread_join(th, NULL);
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    if (sub.got != n || sub.bad || pub.rc) {
        fprintf(stderr, "ERROR mosquitto: %ld of %ld values, %ld bad, publisher %d\n", sub.got, n,
                sub.bad, pub.rc);
        return -1;
    }
    return t1 - t0;
}
#endif

#if BENCH_HAVE_NATS
static void *nats_publisher(void *arg)
{
    struct side *s = arg;
    natsConnection *nc = NULL;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", s->port);
    unsigned char *buf = calloc(1, s->bytes);
    if (!buf || natsConnection_ConnectTo(&nc, url) != NATS_OK) {
        s->rc = 1;
        return NULL;
    }
    natsConnection_Publish(nc, "peer.bench", "w", 1);
    natsConnection_FlushTimeout(nc, 10000);
    wait_go(s);
    for (long i = 0; i < s->n; i++) {
        broker_fill(buf, s->bytes, i);
        if (natsConnection_Publish(nc, "peer.bench", buf, (int)s->bytes) != NATS_OK) {
            s->rc = 2;
            break;
        }
    }
    natsConnection_FlushTimeout(nc, 10000);
    natsConnection_Destroy(nc);
    free(buf);
    return NULL;
}

static double bench_cnats(int port, size_t bytes, long n)
{
    struct side pub = {.port = port, .bytes = bytes, .n = n};
    natsConnection *nc = NULL;
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
        natsConnection_SubscribeSync(&sub, nc, "peer.bench") != NATS_OK ||
        natsSubscription_SetPendingLimits(sub, BROKER_QUEUE, 1 << 30) != NATS_OK ||
        natsConnection_FlushTimeout(nc, 10000) != NATS_OK)
        return -1;
    pthread_t th;
    pthread_create(&th, NULL, nats_publisher, &pub);
    if (natsSubscription_NextMsg(&m, sub, 10000) != NATS_OK)
        return -1;
    natsMsg_Destroy(m);
    double t0 = net_now();
    atomic_store(&pub.go, 1);
    long got = 0, bad = 0;
    while (got < n && natsSubscription_NextMsg(&m, sub, 10000) == NATS_OK) {
        bad += !broker_check(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), bytes, got);
        got++;
        natsMsg_Destroy(m);
    }
    double t1 = net_now();
    pthread_join(th, NULL);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    if (got != n || bad || pub.rc) {
        fprintf(stderr, "ERROR cnats: %ld of %ld values, %ld bad, publisher %d\n", got, n, bad,
                pub.rc);
        return -1;
    }
    return t1 - t0;
}
#endif

int main(int argc, char **argv)
{
    int rc = 0;
#if BENCH_HAVE_MQTT
    mosquitto_lib_init();
#endif
    for (int k = 0; k < 2; k++) {
        enum broker_kind kind = k == 0 ? BROKER_MQTT : BROKER_NATS;
        int built = k == 0 ? BENCH_HAVE_MQTT : BENCH_HAVE_NATS;
        if (!built || !broker_wanted(argc, argv, k == 0 ? "mqtt" : "nats"))
            continue;
        struct broker b;
        if (broker_start(&b, kind, NULL, NULL) != 0) {
            fprintf(stderr, "%s: no broker, skipped\n", k == 0 ? "mqtt" : "nats");
            continue;
        }
        for (size_t i = 0; i < sizeof broker_sizes / sizeof broker_sizes[0]; i++) {
            size_t bytes = broker_sizes[i];
            long n = broker_count(bytes, kind);
            double best = -1;
            for (int r = 0; r < broker_reps() && (r == 0 || best > 0); r++) {
                double t = -1;
#if BENCH_HAVE_MQTT
                if (kind == BROKER_MQTT)
                    t = bench_mosquitto(b.port, bytes, n);
#endif
#if BENCH_HAVE_NATS
                if (kind == BROKER_NATS)
                    t = bench_cnats(b.port, bytes, n);
#endif
                best = t < 0 ? -1 : best < 0 || t < best ? t : best;
            }
            if (best > 0)
                net_result(k == 0 ? "stream_mqtt" : "stream_nats", k == 0 ? "mosquitto" : "cnats",
                           bytes, n, best);
            else
                rc = 1;
        }
        broker_destroy(&b);
    }
    return rc;
}
