/* tests/test_broker.c - MQTT and NATS edges against real brokers (issue 13).
 *
 * Every case starts its own broker (tests/broker_proc.h: mosquitto with a config written here,
 * or nats-server, on 127.0.0.1 at a free port) and stops it by PID, whatever happens. A case
 * skips (77) when this build has no such transport or the broker is not installed. Every wait
 * is bounded; the cases assert values, orders, counters and messages, never timings.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker_proc.h"
#include "harness.h"
#include "dagger/net.h"
#include "dagger/stream.h"

#if DAGGER_TEST_HAVE_MQTT
#include <mosquitto.h>
#endif
#if DAGGER_TEST_HAVE_NATS
#include <nats/nats.h>
#endif

#define MQTT BROKER_MQTT
#define NATS BROKER_NATS

static struct broker B;

/* The case's broker goes when the process exits, however the case ends. */
static void stop_b_(void) { broker_destroy(&B); }

static void need_broker_tls(enum broker_kind k, const char *user, const char *pass, int tls)
{
    int built = k == MQTT ? DAGGER_TEST_HAVE_MQTT : DAGGER_TEST_HAVE_NATS;
    if (!built)
        SKIP("this build has no %s transport", k == MQTT ? "MQTT" : "NATS");
    int rc = broker_start_tls(&B, k, user, pass, tls);
    if (rc == 77)
        SKIP("%s is not installed", k == MQTT ? "mosquitto"
                                    : tls     ? "nats-server or openssl"
                                              : "nats-server");
    if (rc < 0)
        fail_msg("could not start the %s broker", k == MQTT ? "MQTT" : "NATS");
    atexit(stop_b_);
}

static void need_broker(enum broker_kind k, const char *user, const char *pass)
{
    need_broker_tls(k, user, pass, 0);
}

/* "mqtt://127.0.0.1:<port>/dagger/<pid>/<topic>?<params>" (NATS: '.' separators). */
static void uri_of(char *buf, size_t cap, const char *topic, const char *params)
{
    if (B.kind == MQTT)
        snprintf(buf, cap, "%s://127.0.0.1:%d/dagger/%d/%s%s%s", B.tls ? "mqtts" : "mqtt", B.port,
                 (int)getpid(), topic, params && *params ? "?" : "", params ? params : "");
    else
        snprintf(buf, cap, "%s://127.0.0.1:%d/dagger.%d.%s%s%s", B.tls ? "tls" : "nats", B.port,
                 (int)getpid(), topic, params && *params ? "?" : "", params ? params : "");
}

static dagger_edge_t *open_edge(const char *uri, unsigned end)
{
    dagger_edge_t *e = NULL;
    int rc = dagger_edge_open(&e, uri, end);
    if (rc < 0)
        fail_msg("dagger_edge_open(%s) = %s: %s", uri, dagger_err_name(rc),
                 dagger_edge_errmsg(NULL));
    return e;
}

static int pop_wait(dagger_edge_t *e, dagger_value_t *v) { return dagger_edge_pop(e, v, 10000); }

static long scaled(long quick)
{
#if defined(DAGGER_TSAN)
    quick /= 10;
#endif
    return test_level_full() ? quick * 10 : quick;
}

/* ---------------------------------------------------------------- every kind, 1e5 values */

enum vkind { V_F64, V_I64, V_STR, V_BLOB };
enum { BLOB_BYTES = 4096 };

static dagger_value_t make_value(enum vkind k, long i, char *buf)
{
    switch (k) {
    case V_F64:
        return dagger_f64((double)i / 3.0);
    case V_I64:
        return dagger_i64(i * 7 - 3);
    case V_STR:
        snprintf(buf, 64, "value-%ld", i);
        return dagger_str(buf);
    default:
        for (int j = 0; j < BLOB_BYTES; j++)
            buf[j] = (char)(i * 31 + j);
        return dagger_blob(buf, BLOB_BYTES);
    }
}

static void check_value(enum vkind k, long i, const dagger_value_t *v)
{
    char want[BLOB_BYTES];
    dagger_value_t w = make_value(k, i, want);
    if (v->kind != w.kind)
        fail_msg("value %ld: kind %s, expected %s", i, dagger_kind_name(v->kind),
                 dagger_kind_name(w.kind));
    if (k == V_F64 && v->u.f != w.u.f)
        fail_msg("value %ld: %.17g, expected %.17g", i, v->u.f, w.u.f);
    if (k == V_I64 && v->u.i != w.u.i)
        fail_msg("value %ld: %lld, expected %lld", i, (long long)v->u.i, (long long)w.u.i);
    if ((k == V_STR || k == V_BLOB) && (v->len != w.len || memcmp(v->u.p, w.u.p, w.len) != 0))
        fail_msg("value %ld: %u bytes differ from the %u expected", i, v->len, w.len);
}

struct pusher {
    dagger_edge_t *e;
    enum vkind kind;
    long n;
    int stop; /* push_forever: set (atomically) to end the pushes */
    int rc;
    char msg[300];
};

static void *push_thread(void *arg)
{
    struct pusher *p = arg;
    char *buf = malloc(BLOB_BYTES);
    p->rc = 0;
    for (long i = 0; i < p->n && p->rc == 0; i++) {
        dagger_value_t v = make_value(p->kind, i, buf);
        p->rc = dagger_edge_push(p->e, &v);
    }
    if (p->rc)
        snprintf(p->msg, sizeof p->msg, "%s", dagger_edge_errmsg(p->e));
    int crc = dagger_edge_close(p->e);
    if (!p->rc && crc) {
        p->rc = crc;
        snprintf(p->msg, sizeof p->msg, "close failed");
    }
    free(buf);
    return NULL;
}

/* Join the producer thread and check that both ends finished well; *st: the consumer's stats. */
static void join_producer(pthread_t th, struct pusher *p, int rc, long got, dagger_edge_t *in,
                          dagger_edge_stats_t *st)
{
    pthread_join(th, NULL);
    if (p->rc)
        fail_msg("producer: %s: %s", dagger_err_name(p->rc), p->msg);
    if (rc != DAGGER_ECLOSED)
        fail_msg("pop after %ld values: %s: %s", got, dagger_err_name(rc), dagger_edge_errmsg(in));
    dagger_edge_stats(in, st);
    printf("%s: %ld values, drops %llu, duplicates dropped %llu, reconnects %llu\n",
           dagger_edge_uri(in), got, (unsigned long long)st->drops,
           (unsigned long long)st->duplicates, (unsigned long long)st->reconnects);
}

static void round_trip(enum vkind k, long n, const char *params)
{
    char uri[256], topic[32];
    snprintf(topic, sizeof topic, "kind%d", (int)k);
    uri_of(uri, sizeof uri, topic, params);
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
    struct pusher p = {.e = open_edge(uri, DAGGER_EDGE_PUSH), .kind = k, .n = n};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, push_thread, &p), 0);
    dagger_value_t v;
    long got = 0;
    int rc;
    while ((rc = pop_wait(in, &v)) == 0)
        check_value(k, got++, &v);
    dagger_edge_stats_t st;
    join_producer(th, &p, rc, got, in, &st);
    ASSERT_EQ(got, n);
    ASSERT_EQ(st.values, (uint64_t)n);
    ASSERT_EQ(st.drops, 0);
    ASSERT_EQ(st.rejected, 0);
    ASSERT_OK(dagger_edge_close(in));
}

/* MQTT: the scalars at QoS 0, the blobs at QoS 1 (each QoS 1 message waits for the broker's
 * acknowledgement window, 10x slower); NATS: a local queue large enough that a slow consumer
 * never drops (the default drops, and counts, beyond 65536 messages). */
static void one_kind(enum broker_kind b, enum vkind k)
{
    need_broker(b, NULL, NULL);
    const char *params = b == NATS ? "buffer=1000000" : k == V_BLOB ? "qos=1" : "qos=0";
    round_trip(k, scaled(k == V_BLOB ? 10000 : 100000), params);
}

TEST(mqtt_f64_in_order) { one_kind(MQTT, V_F64); }
TEST(mqtt_i64_in_order) { one_kind(MQTT, V_I64); }
TEST(mqtt_strings_in_order) { one_kind(MQTT, V_STR); }
TEST(mqtt_4k_blobs_in_order) { one_kind(MQTT, V_BLOB); }
TEST(nats_f64_in_order) { one_kind(NATS, V_F64); }
TEST(nats_i64_in_order) { one_kind(NATS, V_I64); }
TEST(nats_strings_in_order) { one_kind(NATS, V_STR); }
TEST(nats_4k_blobs_in_order) { one_kind(NATS, V_BLOB); }

/* ---------------------------------------------------------------- the seed: singles and vectors */

/* Dagger.jl's streaming test of single Float64 values and vectors of Float64, through a
 * region on each side of the broker: gen -> edge sink ... edge source -> collect. */
enum { SEED_N = 200, SEED_VEC = 8 };

struct gen {
    int64_t i;
    double vec[SEED_VEC];
};

static double seed_x(int64_t i, int j) { return (double)i * 0.5 + j * 0.125; }

static int gen_values(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct gen *g = dagger_arg_ptr(a, 0);
    int64_t i = g->i++;
    if (i % 2 == 0) {
        *out = dagger_f64(seed_x(i, 0));
    } else {
        for (int j = 0; j < SEED_VEC; j++)
            g->vec[j] = seed_x(i, j);
        *out = dagger_blob(g->vec, sizeof g->vec);
    }
    return 0;
}

struct collected {
    int64_t n, bad;
};

static int collect(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct collected *c = dagger_arg_ptr(a, 0);
    const dagger_value_t *v = dagger_arg(a, 1);
    int64_t i = c->n++;
    if (i % 2 == 0) {
        if (v->kind != DAGGER_KIND_F64 || v->u.f != seed_x(i, 0))
            c->bad++;
    } else {
        double vec[SEED_VEC];
        if (v->kind != DAGGER_KIND_BLOB || v->len != sizeof vec) {
            c->bad++;
        } else {
            memcpy(vec, v->u.p, sizeof vec);
            for (int j = 0; j < SEED_VEC; j++)
                if (vec[j] != seed_x(i, j))
                    c->bad++;
        }
    }
    return 0;
}

static void seed_singles_and_vectors(enum broker_kind b)
{
    need_broker(b, NULL, NULL);
    char uri[256];
    uri_of(uri, sizeof uri, "seed", NULL);
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
    dagger_edge_t *out = open_edge(uri, DAGGER_EDGE_PUSH);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_stream_opts_t so;
    dagger_stream_opts_init(&so);
    so.max_evals = SEED_N;
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, &so, &s));
    struct gen g = {0};
    dagger_task_t *x = dagger_spawn(ctx, gen_values, (void *)&g);
    so.max_evals = -1;
    ASSERT_OK(dagger_stream_set_opts(s, &so));
    dagger_task_t *sink = dagger_stream_spawn_edge_sink(s, out, x);
    ASSERT_PTR(sink);
    ASSERT_OK(dagger_stream_end(s));

    ASSERT_OK(dagger_stream_begin(ctx, &so, &s));
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in);
    ASSERT_PTR(src);
    struct collected c = {0};
    dagger_task_t *A = dagger_spawn(ctx, collect, (void *)&c, src);
    ASSERT_OK(dagger_stream_end(s));

    int64_t pushed = -1, popped = -1;
    int rc = dagger_fetch_i64(sink, &pushed);
    if (rc)
        fail_msg("sink: %s", dagger_task_errmsg(sink));
    rc = dagger_fetch_i64(src, &popped);
    if (rc)
        fail_msg("source: %s", dagger_task_errmsg(src));
    ASSERT_OK(dagger_fetch(A, NULL));
    ASSERT_EQ(pushed, SEED_N);
    ASSERT_EQ(popped, SEED_N);
    ASSERT_EQ(c.n, SEED_N);
    ASSERT_EQ(c.bad, 0);
    dagger_task_release(x);
    dagger_task_release(sink);
    dagger_task_release(src);
    dagger_task_release(A);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(mqtt_seed_singles_and_vectors) { seed_singles_and_vectors(MQTT); }
TEST(nats_seed_singles_and_vectors) { seed_singles_and_vectors(NATS); }

/* ---------------------------------------------------------------- two processes */

static int child_status(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The forked producer: waits for the parent's go (its consumer is subscribed), then runs a
 * region gen -> edge sink of SEED_N values. Forked before the parent touches a client library,
 * so the child starts with none of its threads. */
static int producer_child(const char *uri, int go)
{
    char c;
    if (read(go, &c, 1) != 1)
        return 10;
    dagger_edge_t *out;
    if (dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH) < 0) {
        fprintf(stderr, "child: %s\n", dagger_edge_errmsg(NULL));
        return 11;
    }
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) < 0)
        return 12;
    dagger_stream_opts_t so;
    dagger_stream_opts_init(&so);
    so.max_evals = SEED_N;
    dagger_stream_t *s;
    if (dagger_stream_begin(ctx, &so, &s) < 0)
        return 13;
    struct gen g = {0};
    dagger_task_t *x = dagger_spawn(ctx, gen_values, (void *)&g);
    so.max_evals = -1;
    if (dagger_stream_set_opts(s, &so) < 0)
        return 14;
    dagger_task_t *k = dagger_stream_spawn_edge_sink(s, out, x);
    if (!k || dagger_stream_end(s) < 0)
        return 15;
    int64_t n = -1;
    if (dagger_fetch_i64(k, &n) < 0 || n != SEED_N) {
        fprintf(stderr, "child: sink: %s (%lld values)\n", dagger_task_errmsg(k), (long long)n);
        return 16;
    }
    dagger_task_release(x);
    dagger_task_release(k);
    return dagger_ctx_close(ctx) < 0 ? 17 : 0;
}

static void two_processes(enum broker_kind b)
{
    need_broker(b, NULL, NULL);
    char uri[256];
    uri_of(uri, sizeof uri, "twoproc", NULL);
    int go[2];
    ASSERT_EQ(pipe(go), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        alarm(60);
        _exit(producer_child(uri, go[0]));
    }
    close(go[0]);
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
    char c = 1;
    ASSERT_EQ(write(go[1], &c, 1), 1);
    close(go[1]);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in);
    struct collected col = {0};
    dagger_task_t *A = dagger_spawn(ctx, collect, (void *)&col, src);
    ASSERT_OK(dagger_stream_end(s));
    int64_t popped = -1;
    if (dagger_fetch_i64(src, &popped) < 0)
        fail_msg("source: %s", dagger_task_errmsg(src));
    ASSERT_OK(dagger_fetch(A, NULL));
    ASSERT_EQ(popped, SEED_N);
    ASSERT_EQ(col.n, SEED_N);
    ASSERT_EQ(col.bad, 0);
    ASSERT_EQ(child_status(pid), 0);
    dagger_task_release(src);
    dagger_task_release(A);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(mqtt_two_process_region) { two_processes(MQTT); }
TEST(nats_two_process_region) { two_processes(NATS); }

/* ---------------------------------------------------------------- fan-out, queue groups */

enum { FAN_N = 1000 };

static void push_range(dagger_edge_t *out, long n)
{
    for (long i = 0; i < n; i++) {
        dagger_value_t v = dagger_i64(i);
        int rc = dagger_edge_push(out, &v);
        if (rc)
            fail_msg("push %ld: %s: %s", i, dagger_err_name(rc), dagger_edge_errmsg(out));
    }
    ASSERT_OK(dagger_edge_close(out));
}

static void fan_out(enum broker_kind b)
{
    need_broker(b, NULL, NULL);
    char uri[256];
    uri_of(uri, sizeof uri, "fan", NULL);
    dagger_edge_t *a = open_edge(uri, DAGGER_EDGE_POP), *c = open_edge(uri, DAGGER_EDGE_POP);
    push_range(open_edge(uri, DAGGER_EDGE_PUSH), FAN_N);
    dagger_edge_t *ends[2] = {a, c};
    for (int k = 0; k < 2; k++) {
        dagger_value_t v;
        long got = 0;
        int rc;
        while ((rc = pop_wait(ends[k], &v)) == 0) {
            ASSERT_EQ(v.kind, DAGGER_KIND_I64);
            ASSERT_EQ(v.u.i, got);
            got++;
        }
        ASSERT_ERR(rc, DAGGER_ECLOSED);
        ASSERT_EQ(got, FAN_N);
        ASSERT_OK(dagger_edge_close(ends[k]));
    }
}

TEST(mqtt_fan_out_every_subscriber_gets_every_value) { fan_out(MQTT); }
TEST(nats_fan_out_every_subscriber_gets_every_value) { fan_out(NATS); }

TEST(nats_queue_group_splits_values)
{
    need_broker(NATS, NULL, NULL);
    char uri[256], quri[256];
    uri_of(uri, sizeof uri, "group", NULL);
    uri_of(quri, sizeof quri, "group", "queue=workers");
    dagger_edge_t *m[2] = {open_edge(quri, DAGGER_EDGE_POP), open_edge(quri, DAGGER_EDGE_POP)};
    push_range(open_edge(uri, DAGGER_EDGE_PUSH), FAN_N);
    static unsigned char seen[FAN_N];
    long got[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        dagger_value_t v;
        int rc;
        int64_t last = -1;
        while ((rc = pop_wait(m[k], &v)) == 0) {
            ASSERT_EQ(v.kind, DAGGER_KIND_I64);
            ASSERT_TRUE(v.u.i >= 0 && v.u.i < FAN_N);
            ASSERT_TRUE(v.u.i > last); /* each member's share stays in order */
            last = v.u.i;
            seen[v.u.i]++;
            got[k]++;
        }
        ASSERT_ERR(rc, DAGGER_ECLOSED);
        dagger_edge_stats_t st;
        dagger_edge_stats(m[k], &st);
        ASSERT_EQ(st.drops, 0);
        ASSERT_OK(dagger_edge_close(m[k]));
    }
    printf("member 0: %ld values, member 1: %ld values\n", got[0], got[1]);
    ASSERT_EQ(got[0] + got[1], FAN_N);
    ASSERT_TRUE(got[0] > 0 && got[1] > 0);
    for (int i = 0; i < FAN_N; i++)
        if (seen[i] != 1)
            fail_msg("value %d delivered %d times", i, seen[i]);
}

/* Core NATS has no back-pressure to consumers: a consumer whose local queue (buffer=) is full
 * loses values, and counts them; what it pops stays in order and ends cleanly. */
TEST(nats_full_local_queue_drops_are_counted)
{
    need_broker(NATS, NULL, NULL);
    char uri[256], quri[256];
    uri_of(uri, sizeof uri, "slow", NULL);
    uri_of(quri, sizeof quri, "slow", "buffer=10");
    dagger_edge_t *in = open_edge(quri, DAGGER_EDGE_POP);
    push_range(open_edge(uri, DAGGER_EDGE_PUSH), FAN_N); /* nothing is popped meanwhile */
    dagger_value_t v;
    int rc;
    int64_t last = -1;
    while ((rc = pop_wait(in, &v)) == 0) {
        ASSERT_TRUE(v.u.i > last);
        last = v.u.i;
    }
    ASSERT_ERR(rc, DAGGER_ECLOSED);
    dagger_edge_stats_t st;
    dagger_edge_stats(in, &st);
    printf("%llu values, %llu dropped\n", (unsigned long long)st.values,
           (unsigned long long)st.drops);
    ASSERT_EQ(st.values + st.drops, FAN_N);
    ASSERT_TRUE(st.drops > 0);
    ASSERT_OK(dagger_edge_close(in));
}

/* A consumer with no memory to queue a message must not go on without it (the sequence gap
 * would read as a broker's drop, and the stream end cleanly one value short): it returns the
 * values before it in order, then DAGGER_ENOMEM for good. The fourth allocation from the first
 * pop on is a message's copy (the ring of slots, then each slot's first payload). */
TEST(mqtt_consumer_out_of_memory_is_an_error_not_a_gap)
{
    need_broker(MQTT, NULL, NULL);
    char uri[256];
    uri_of(uri, sizeof uri, "nomem", NULL);
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
    push_range(open_edge(uri, DAGGER_EDGE_PUSH), FAN_N); /* acknowledged by the broker */
    dagger_value_t v;
    int rc;
    long got = 0;
    dagger_fault_alloc(4);
    while ((rc = pop_wait(in, &v)) == 0) {
        ASSERT_EQ(v.kind, DAGGER_KIND_I64);
        ASSERT_EQ(v.u.i, got);
        got++;
    }
    dagger_fault_alloc(0);
    ASSERT_ERR(rc, DAGGER_ENOMEM);
    ASSERT_TRUE(got < FAN_N);
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "out of memory queueing a message");
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "the stream is incomplete");
    ASSERT_ERR(pop_wait(in, &v), DAGGER_ENOMEM); /* for good */
    ASSERT_OK(dagger_edge_close(in));
}

/* A consumer that closes while values still arrive for it: the connection's reader thread must
 * not deliver to a subscription being destroyed (cnats before 3.6 looked it up without a
 * reference; the edge closes the connection first). Each of the consumers pops a few values
 * in order from a producer that never stops, then closes mid-stream. */
static void *push_forever(void *arg)
{
    struct pusher *p = arg;
    p->rc = 0;
    for (long i = 0; p->rc == 0 && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE); i++) {
        dagger_value_t v = dagger_i64(i);
        p->rc = dagger_edge_push(p->e, &v);
    }
    if (p->rc)
        snprintf(p->msg, sizeof p->msg, "%s", dagger_edge_errmsg(p->e));
    return NULL;
}

TEST(nats_consumer_closes_while_values_arrive)
{
    need_broker(NATS, NULL, NULL);
    char uri[256];
    uri_of(uri, sizeof uri, "busy", NULL);
    struct pusher p = {.e = open_edge(uri, DAGGER_EDGE_PUSH)};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, push_forever, &p), 0);
    for (int k = 0; k < 40; k++) {
        dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
        dagger_value_t v;
        int64_t last = -1;
        for (int j = 0; j < 50; j++) {
            ASSERT_OK(pop_wait(in, &v));
            ASSERT_EQ(v.kind, DAGGER_KIND_I64);
            ASSERT_TRUE(v.u.i > last);
            last = v.u.i;
        }
        ASSERT_OK(dagger_edge_close(in));
    }
    __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    if (p.rc)
        fail_msg("producer: %s: %s", dagger_err_name(p.rc), p.msg);
    ASSERT_OK(dagger_edge_close(p.e));
}

/* ---------------------------------------------------------------- broker restart and loss */

TEST(mqtt_qos1_broker_restart_loses_nothing)
{
    need_broker(MQTT, NULL, NULL);
    char uri[256], params[128];
    snprintf(params, sizeof params, "qos=1&client=dagger-test-%d&timeout_ms=10000", (int)getpid());
    uri_of(uri, sizeof uri, "restart", params);
    char puri[256];
    uri_of(puri, sizeof puri, "restart", "qos=1&timeout_ms=10000");
    long n = scaled(20000);
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
    struct pusher p = {.e = open_edge(puri, DAGGER_EDGE_PUSH), .kind = V_I64, .n = n};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, push_thread, &p), 0);
    dagger_value_t v;
    long got = 0;
    int rc, restarted = 0;
    while ((rc = pop_wait(in, &v)) == 0) {
        check_value(V_I64, got++, &v);
        if (got == n / 4) {
            ASSERT_EQ(broker_restart(&B), 0);
            restarted = 1;
        }
    }
    dagger_edge_stats_t st;
    join_producer(th, &p, rc, got, in, &st);
    ASSERT_TRUE(restarted);
    ASSERT_EQ(got, n);
    ASSERT_EQ(st.drops, 0);
    ASSERT_TRUE(st.reconnects >= 1);
    ASSERT_OK(dagger_edge_close(in));
}

static void broker_killed(enum broker_kind b)
{
    need_broker(b, NULL, NULL);
    char uri[256];
    uri_of(uri, sizeof uri, "killed", "timeout_ms=300");
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP), *out = open_edge(uri, DAGGER_EDGE_PUSH);
    for (long i = 0; i < 10; i++) {
        dagger_value_t v = dagger_i64(i);
        ASSERT_OK(dagger_edge_push(out, &v));
    }
    ASSERT_OK(dagger_edge_flush(out, 5000));
    dagger_value_t v;
    for (long i = 0; i < 10; i++) {
        ASSERT_OK(pop_wait(in, &v));
        ASSERT_EQ(v.u.i, i);
    }
    broker_stop(&B, SIGKILL);
    int rc = DAGGER_ETIMEDOUT;
    for (int i = 0; i < 100 && rc == DAGGER_ETIMEDOUT; i++) /* at most 10 s */
        rc = dagger_edge_pop(in, &v, 100);
    ASSERT_ERR(rc, DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "not re-established within timeout_ms=300");
    ASSERT_ERR(dagger_edge_pop(in, &v, 0), DAGGER_EPEER); /* sticky */
    rc = 0;
    for (int i = 0; i < 1000 && (rc == 0 || rc == DAGGER_ETIMEDOUT); i++) {
        dagger_value_t x = dagger_i64(i);
        rc = dagger_edge_push_timed(out, &x, 100);
        if (rc == 0)
            broker_sleep_ms_(10);
    }
    ASSERT_ERR(rc, DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_edge_errmsg(out), "lost");
    ASSERT_OK(dagger_edge_close(in));
    ASSERT_ERR(dagger_edge_close(out), 0);
}

TEST(mqtt_broker_killed_is_epeer) { broker_killed(MQTT); }
TEST(nats_broker_killed_is_epeer) { broker_killed(NATS); }

/* ---------------------------------------------------------------- credentials */

static void credentials(enum broker_kind b)
{
    need_broker(b, "dagger", "right-secret");
    char uri[256];
    setenv("DAGGER_TEST_USER", "dagger", 1);
    setenv("DAGGER_TEST_BAD", "wrong-secret", 1);
    setenv("DAGGER_TEST_GOOD", "right-secret", 1);
    dagger_edge_t *e = NULL;
    uri_of(uri, sizeof uri, "auth", "user_env=DAGGER_TEST_USER&secret_env=DAGGER_TEST_BAD");
    ASSERT_ERR(dagger_edge_open(&e, uri, DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(NULL), "refused");
    ASSERT_NULL(e);
    uri_of(uri, sizeof uri, "auth", NULL);
    ASSERT_ERR(dagger_edge_open(&e, uri, DAGGER_EDGE_PUSH), DAGGER_EINVAL);
    uri_of(uri, sizeof uri, "auth", "user_env=DAGGER_TEST_USER&secret=right-secret");
    ASSERT_ERR(dagger_edge_open(&e, uri, DAGGER_EDGE_PUSH), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(NULL), "credentials never go in the URI");
    uri_of(uri, sizeof uri, "auth", "user_env=DAGGER_TEST_USER&secret_env=DAGGER_TEST_GOOD");
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP), *out = open_edge(uri, DAGGER_EDGE_PUSH);
    ASSERT_STR_HAS(dagger_edge_uri(in), "127.0.0.1");
    ASSERT_TRUE(strstr(dagger_edge_uri(in), "right-secret") == NULL);
    dagger_value_t v = dagger_str("hello");
    ASSERT_OK(dagger_edge_push(out, &v));
    ASSERT_OK(dagger_edge_close(out));
    ASSERT_OK(pop_wait(in, &v));
    ASSERT_EQ(v.kind, DAGGER_KIND_STR);
    ASSERT_EQ(v.len, 5);
    ASSERT_TRUE(memcmp(v.u.p, "hello", 5) == 0);
    ASSERT_ERR(pop_wait(in, &v), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(in));
}

TEST(mqtt_bad_credentials_refused) { credentials(MQTT); }
TEST(nats_bad_credentials_refused) { credentials(NATS); }

/* ---------------------------------------------------------------- garbage and limits */

/* Three messages that are not valid frames: text, a header announcing 512 MiB, a header whose
 * payload is cut short. */
static size_t garbage(int which, unsigned char *buf)
{
    if (which == 0) {
        memcpy(buf, "this is not a dagger frame", 26);
        return 26;
    }
    const uint32_t magic = 0x4E474144u, big = 1u << 29, short_len = 100;
    memset(buf, 0, 40);
    memcpy(buf, &magic, 4);
    buf[4] = 1;
    buf[5] = 1;
    memcpy(buf + 8, which == 1 ? &big : &short_len, 4);
    return 40;
}

static void publish_garbage(const char *topic_uri_path)
{
    unsigned char buf[64];
    for (int w = 0; w < 3; w++) {
        size_t n = garbage(w, buf);
        if (B.kind == MQTT) {
            char file[200], cmd[600];
            snprintf(file, sizeof file, "%s/garbage.bin", B.dir);
            FILE *f = fopen(file, "wb");
            ASSERT_PTR(f);
            ASSERT_EQ(fwrite(buf, 1, n, f), n);
            fclose(f);
            snprintf(cmd, sizeof cmd,
                     "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t '%s' -f '%s' >/dev/null 2>&1",
                     B.port, topic_uri_path, file);
            ASSERT_EQ(system(cmd), 0);
        } else {
#if DAGGER_TEST_HAVE_NATS
            natsConnection *nc = NULL;
            char url[64];
            snprintf(url, sizeof url, "nats://127.0.0.1:%d", B.port);
            ASSERT_EQ(natsConnection_ConnectTo(&nc, url), NATS_OK);
            ASSERT_EQ(natsConnection_Publish(nc, topic_uri_path, buf, (int)n), NATS_OK);
            ASSERT_EQ(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
            natsConnection_Destroy(nc);
#endif
        }
    }
}

static void garbage_rejected(enum broker_kind b)
{
    need_broker(b, NULL, NULL);
    char uri[256], topic[128];
    uri_of(uri, sizeof uri, "garbage", NULL);
    if (b == MQTT)
        snprintf(topic, sizeof topic, "dagger/%d/garbage", (int)getpid());
    else
        snprintf(topic, sizeof topic, "dagger.%d.garbage", (int)getpid());
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
    publish_garbage(topic);
    push_range(open_edge(uri, DAGGER_EDGE_PUSH), 3);
    dagger_value_t v;
    for (long i = 0; i < 3; i++) {
        ASSERT_OK(pop_wait(in, &v));
        ASSERT_EQ(v.kind, DAGGER_KIND_I64);
        ASSERT_EQ(v.u.i, i);
    }
    ASSERT_ERR(pop_wait(in, &v), DAGGER_ECLOSED);
    dagger_edge_stats_t st;
    dagger_edge_stats(in, &st);
    ASSERT_EQ(st.rejected, 3);
    ASSERT_EQ(st.values, 3);
    ASSERT_EQ(st.drops, 0);
    ASSERT_OK(dagger_edge_close(in));
}

TEST(mqtt_garbage_payload_rejected_and_counted) { garbage_rejected(MQTT); }
TEST(nats_garbage_payload_rejected_and_counted) { garbage_rejected(NATS); }

static void max_both_sides(enum broker_kind b)
{
    need_broker(b, NULL, NULL);
    char small[256], big[256], other[256];
    uri_of(small, sizeof small, "max", "max=100");
    uri_of(big, sizeof big, "max", "max=1000");
    uri_of(other, sizeof other, "max_producer", "max=100"); /* its END must not reach `in` */
    dagger_edge_t *in = open_edge(small, DAGGER_EDGE_POP);
    dagger_edge_t *tight = open_edge(other, DAGGER_EDGE_PUSH);
    unsigned char blob[200] = {0};
    dagger_value_t v = dagger_blob(blob, sizeof blob);
    ASSERT_ERR(dagger_edge_push(tight, &v), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_edge_errmsg(tight), "exceeds the edge's limit max=100");
    ASSERT_OK(dagger_edge_close(tight));
    dagger_edge_t *loose = open_edge(big, DAGGER_EDGE_PUSH);
    ASSERT_OK(dagger_edge_push(loose, &v)); /* the consumer refuses it */
    dagger_value_t one = dagger_i64(42);
    ASSERT_OK(dagger_edge_push(loose, &one));
    ASSERT_OK(dagger_edge_close(loose));
    dagger_value_t got;
    ASSERT_OK(pop_wait(in, &got));
    ASSERT_EQ(got.kind, DAGGER_KIND_I64);
    ASSERT_EQ(got.u.i, 42);
    dagger_edge_stats_t st;
    dagger_edge_stats(in, &st);
    ASSERT_EQ(st.rejected, 1);
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "exceeds the edge's limit of 100 bytes");
    ASSERT_OK(dagger_edge_close(in));
}

TEST(mqtt_oversized_payload_refused_on_both_sides) { max_both_sides(MQTT); }
TEST(nats_oversized_payload_refused_on_both_sides) { max_both_sides(NATS); }

/* ---------------------------------------------------------------- TLS */

static void tls_round_trip(enum broker_kind b)
{
    need_broker_tls(b, NULL, NULL, 1);
    char params[300], uri[512];
    snprintf(params, sizeof params, "cafile=%s/cert.pem", B.dir);
    uri_of(uri, sizeof uri, "tls", params);
    dagger_edge_t *in = open_edge(uri, DAGGER_EDGE_POP);
    push_range(open_edge(uri, DAGGER_EDGE_PUSH), 100);
    dagger_value_t v;
    for (long i = 0; i < 100; i++) {
        ASSERT_OK(pop_wait(in, &v));
        ASSERT_EQ(v.u.i, i);
    }
    ASSERT_ERR(pop_wait(in, &v), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(in));
    /* A CA that did not sign the server's certificate: the handshake is refused. */
    ASSERT_EQ(broker_make_cert(B.dir, "other"), 0);
    snprintf(params, sizeof params, "cafile=%s/other.pem&timeout_ms=2000", B.dir);
    uri_of(uri, sizeof uri, "tls", params);
    dagger_edge_t *e = NULL;
    int rc = dagger_edge_open(&e, uri, DAGGER_EDGE_POP);
    printf("wrong CA: %s: %s\n", dagger_err_name(rc), dagger_edge_errmsg(NULL));
    ASSERT_TRUE(rc == DAGGER_EPEER || rc == DAGGER_EINVAL);
    ASSERT_NULL(e);
}

TEST(mqtt_tls_round_trip_and_wrong_ca_refused) { tls_round_trip(MQTT); }
TEST(nats_tls_round_trip_and_wrong_ca_refused) { tls_round_trip(NATS); }

/* ---------------------------------------------------------------- the registry */

TEST(unknown_scheme_lists_the_schemes_of_this_build)
{
    dagger_edge_t *e = NULL;
    ASSERT_ERR(dagger_edge_open(&e, "amqp://127.0.0.1:5672/q", DAGGER_EDGE_POP), DAGGER_EINVAL);
    const char *msg = dagger_edge_errmsg(NULL);
    ASSERT_STR_HAS(msg, "no transport for scheme 'amqp' (this build knows: shm, tcp, udp");
    ASSERT_TRUE((strstr(msg, ", mqtt, mqtts") != NULL) == DAGGER_TEST_HAVE_MQTT);
    ASSERT_TRUE((strstr(msg, ", nats, tls") != NULL) == DAGGER_TEST_HAVE_NATS);
    if (DAGGER_TEST_HAVE_MQTT) {
        ASSERT_ERR(dagger_edge_open(&e, "mqtt://127.0.0.1:1/a/+/b", DAGGER_EDGE_POP),
                   DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_edge_errmsg(NULL), "without wildcards");
        ASSERT_ERR(dagger_edge_open(&e, "mqtt://127.0.0.1:1/t?qos=3", DAGGER_EDGE_POP),
                   DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_edge_errmsg(NULL), "qos=3");
    }
    if (DAGGER_TEST_HAVE_NATS) {
        ASSERT_ERR(dagger_edge_open(&e, "nats://127.0.0.1:1/t?queue=g", DAGGER_EDGE_PUSH),
                   DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_edge_errmsg(NULL), "consumer's group");
    }
}

TEST_LIST(mqtt_f64_in_order, mqtt_i64_in_order, mqtt_strings_in_order, mqtt_4k_blobs_in_order,
          nats_f64_in_order, nats_i64_in_order, nats_strings_in_order, nats_4k_blobs_in_order,
          mqtt_seed_singles_and_vectors, nats_seed_singles_and_vectors, mqtt_two_process_region,
          nats_two_process_region, mqtt_fan_out_every_subscriber_gets_every_value,
          nats_fan_out_every_subscriber_gets_every_value, nats_queue_group_splits_values,
          nats_full_local_queue_drops_are_counted,
          mqtt_consumer_out_of_memory_is_an_error_not_a_gap,
          nats_consumer_closes_while_values_arrive, mqtt_qos1_broker_restart_loses_nothing,
          mqtt_broker_killed_is_epeer, nats_broker_killed_is_epeer, mqtt_bad_credentials_refused,
          nats_bad_credentials_refused, mqtt_garbage_payload_rejected_and_counted,
          nats_garbage_payload_rejected_and_counted, mqtt_oversized_payload_refused_on_both_sides,
          nats_oversized_payload_refused_on_both_sides, mqtt_tls_round_trip_and_wrong_ca_refused,
          nats_tls_round_trip_and_wrong_ca_refused, unknown_scheme_lists_the_schemes_of_this_build)
