/* bench/stream/broker_dagger.c - streaming through a broker with dagger's MQTT and NATS edges.
 *
 * The problem is in broker_problem.h; the peers (raw libmosquitto, raw cnats) are in
 * broker_peers.c. Prints RESULT|stream_mqtt|dagger|bytes=B|... and RESULT|stream_nats|dagger|...
 * Usage: bench_streambroker_dagger [mqtt|nats]...
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "broker_problem.h"
#include "dagger.h"
#include "dagger/net.h"

struct prod {
    char uri[256];
    size_t bytes;
    long n;
    atomic_int go;
    int rc;
};

static void *producer(void *arg)
{
    struct prod *p = arg;
    dagger_edge_t *e;
    if (dagger_edge_open(&e, p->uri, DAGGER_EDGE_PUSH) < 0) {
        fprintf(stderr, "producer: %s\n", dagger_edge_errmsg(NULL));
        p->rc = 1;
        return NULL;
    }
    unsigned char *src = calloc(1, p->bytes);
    dagger_value_t warm = dagger_nil();
    if (!src || dagger_edge_push(e, &warm) < 0 || dagger_edge_flush(e, 10000) < 0) {
        p->rc = 2;
        return NULL;
    }
    while (!atomic_load(&p->go))
        sched_yield();
    for (long i = 0; i < p->n && !p->rc; i++) {
        broker_fill(src, p->bytes, i);
        dagger_value_t v = dagger_blob_borrow(src, p->bytes);
        if (dagger_edge_push(e, &v) < 0) {
            fprintf(stderr, "producer: %s\n", dagger_edge_errmsg(e));
            p->rc = 3;
        }
    }
    free(src);
    if (dagger_edge_close(e) < 0 && !p->rc)
        p->rc = 4;
    return NULL;
}

/* One run: the seconds it took, or -1. */
static double run(const char *bench, const char *uri, size_t bytes, long n)
{
    dagger_edge_t *c;
    if (dagger_edge_open(&c, uri, DAGGER_EDGE_POP) < 0) {
        fprintf(stderr, "%s: %s\n", bench, dagger_edge_errmsg(NULL));
        return -1;
    }
    struct prod p = {.bytes = bytes, .n = n};
    snprintf(p.uri, sizeof p.uri, "%s", uri);
    pthread_t th;
    if (pthread_create(&th, NULL, producer, &p) != 0)
        return -1;
    dagger_value_t v;
    int rc = dagger_edge_pop(c, &v, 10000); /* the warm-up value: both ends are connected */
    double t0 = net_now();
    atomic_store(&p.go, 1);
    long got = 0, bad = 0;
    while (rc == 0 && (rc = dagger_edge_pop(c, &v, 10000)) == 0)
        bad += !broker_check(v.u.p, v.len, bytes, got++);
    double t1 = net_now();
    pthread_join(th, NULL);
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    if (bad || got != n || rc != DAGGER_ECLOSED || p.rc) {
        fprintf(stderr,
                "ERROR %s: %ld of %ld values (%ld bad, %llu dropped), end %s (%s), "
                "producer %d\n",
                bench, got, n, bad, (unsigned long long)st.drops, dagger_err_name(rc),
                dagger_edge_errmsg(c), p.rc);
        dagger_edge_close(c);
        return -1;
    }
    dagger_edge_close(c);
    return t1 - t0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        enum broker_kind kind = k == 0 ? BROKER_MQTT : BROKER_NATS;
        const char *name = k == 0 ? "mqtt" : "nats";
        if (!broker_wanted(argc, argv, name))
            continue;
        struct broker b;
        int s = broker_start(&b, kind, NULL, NULL);
        if (s != 0) {
            fprintf(stderr, "%s: no broker (%s), skipped\n", name,
                    s == 77 ? "not installed" : "did not start");
            continue;
        }
        for (size_t i = 0; i < sizeof broker_sizes / sizeof broker_sizes[0]; i++) {
            size_t bytes = broker_sizes[i];
            char uri[256], bench[32];
            snprintf(bench, sizeof bench, "stream_%s", name);
            if (kind == BROKER_MQTT)
                snprintf(uri, sizeof uri, "mqtt://127.0.0.1:%d/bench/%zu?qos=1&window=%d", b.port,
                         bytes, BROKER_WINDOW);
            else
                snprintf(uri, sizeof uri, "nats://127.0.0.1:%d/bench.%zu?buffer=%d", b.port, bytes,
                         BROKER_QUEUE);
            long n = broker_count(bytes, kind);
            double best = -1;
            for (int r = 0; r < broker_reps() && (r == 0 || best > 0); r++) {
                double t = run(bench, uri, bytes, n);
                best = t < 0 ? -1 : best < 0 || t < best ? t : best;
            }
            if (best > 0)
                net_result(bench, "dagger", bytes, n, best);
            else
                rc = 1;
        }
        broker_destroy(&b);
    }
    return rc;
}
