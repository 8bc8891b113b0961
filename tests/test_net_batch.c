/* tests/test_net_batch.c - batch frames on shm and TCP edges (issue 17, item 3).
 *
 * Small values travel as records of BATCH frames (src/net/net.h). These cases check what the
 * batching must not change: values arrive in order and none is lost, whatever their sizes mix
 * (batched values, values with a frame of their own) and however slow the consumer; a batch
 * partly filled at close is delivered before the clean end; a consumer that closes fails the
 * producer; a sleeping shm consumer gets a single value at once; and a streaming sink flushes a
 * single value while its producer waits, without more pushes. Producers run on a thread of
 * this process; every wait is bounded.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"
#include "net_harness.h"
#include "dagger/stream.h"

/* A pair of ends (tests/net_harness.h); the TCP connection is made by the first push and pop. */
static void edge_pair(int tcp, const char *tag, const char *extra, dagger_edge_t **p,
                      dagger_edge_t **c)
{
    net_edge_pair(tcp, "batch", tag, extra, p, c);
}

/* Value i of the mixed stream: mostly 8-byte blobs holding i, every 13th an i64, every 97th a
 * 1000-byte blob (a frame of its own), every 101st a short string. */
static dagger_value_t mixed(long i, unsigned char *buf)
{
    if (i % 97 == 0) {
        memset(buf, (int)(i & 0xff), 1000);
        memcpy(buf, &i, 8);
        return dagger_blob_borrow(buf, 1000);
    }
    if (i % 13 == 0)
        return dagger_i64(-i);
    if (i % 101 == 0) {
        snprintf((char *)buf, 32, "v%ld", i);
        return dagger_str_borrow((const char *)buf);
    }
    memcpy(buf, &i, 8);
    return dagger_blob_borrow(buf, 8);
}

/* 0 when v is value i of the mixed stream. */
static int mixed_bad(long i, const dagger_value_t *v)
{
    long x = -1;
    char want[32];
    if (i % 97 == 0) {
        const unsigned char *p = v->u.p;
        if (v->kind != DAGGER_KIND_BLOB || v->len != 1000)
            return 1;
        memcpy(&x, p, 8);
        return x != i || p[999] != (unsigned char)(i & 0xff);
    }
    if (i % 13 == 0)
        return v->kind != DAGGER_KIND_I64 || v->u.i != -i;
    if (i % 101 == 0) {
        snprintf(want, sizeof want, "v%ld", i);
        return v->kind != DAGGER_KIND_STR || strcmp(v->u.s, want) != 0;
    }
    if (v->kind != DAGGER_KIND_BLOB || v->len != 8)
        return 1;
    memcpy(&x, v->u.p, 8);
    return x != i;
}

struct prod {
    dagger_edge_t *e;
    long n;
    struct net_prod_end end;
};

static void *producer(void *arg)
{
    struct prod *a = arg;
    unsigned char buf[1000];
    for (long i = 0; i < a->n && !a->end.rc; i++) {
        dagger_value_t v = mixed(i, buf);
        a->end.rc = dagger_edge_push_timed(a->e, &v, 10000);
    }
    net_prod_finish(a->e, &a->end);
    return NULL;
}

/* N values through a pair, the consumer sleeping 1 ms every `pause_every` values (0: never). */
static void stream_mixed(int tcp, const char *extra, long n, long pause_every)
{
    dagger_edge_t *p, *c;
    edge_pair(tcp, "mixed", extra, &p, &c);
    struct prod a = {.e = p, .n = n};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, producer, &a), 0);
    long bad = 0, first_bad = -1;
    for (long i = 0; i < n; i++) {
        dagger_value_t v;
        int rc = dagger_edge_pop(c, &v, 10000);
        if (rc < 0)
            fail_msg("%s: pop %ld: %s: %s", tcp ? "tcp" : "shm", i, dagger_err_name(rc),
                     dagger_edge_errmsg(c));
        if (mixed_bad(i, &v) && bad++ == 0)
            first_bad = i;
        if (pause_every && i % pause_every == 0)
            usleep(1000);
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "closed");
    net_stream_end(c, th, &a.end, bad, first_bad, n);
}

TEST(shm_mixed_sizes_in_order)
{
    stream_mixed(0, "", 300000, 0);
    /* A ring of 64 KiB wraps every few batches, with PAD frames and implicit pads. */
    stream_mixed(0, "&cap=65536", 300000, 0);
    stream_mixed(0, "&batch=0", 20000, 0); /* no batches: a frame per value, as in version 1 */
}

TEST(tcp_mixed_sizes_in_order)
{
    stream_mixed(1, "", 300000, 0);
    stream_mixed(1, "&encrypt=1", 100000, 0);
}

TEST(slow_consumer_loses_nothing)
{
    /* The producer fills the small ring (or the socket) and waits again and again. */
    stream_mixed(0, "&cap=65536", 60000, 2000);
    stream_mixed(1, "", 60000, 2000);
}

struct five {
    dagger_edge_t *e;
    int rc[6], bad;
    char msg[256];
};

static void *pop_five_then_end(void *arg)
{
    struct five *f = arg;
    for (long i = 0; i < 6; i++) {
        dagger_value_t v;
        f->rc[i] = dagger_edge_pop(f->e, &v, 10000);
        if (i < 5 && f->rc[i] == 0)
            f->bad += mixed_bad(i + 1, &v);
    }
    snprintf(f->msg, sizeof f->msg, "%s", dagger_edge_errmsg(f->e));
    return NULL;
}

static void partial_batch_at_close(int tcp)
{
    dagger_edge_t *p, *c;
    edge_pair(tcp, "partial", "", &p, &c);
    struct five f = {.e = c};
    pthread_t th;
    if (tcp) /* the consumer must run for the first push's handshake */
        ASSERT_EQ(pthread_create(&th, NULL, pop_five_then_end, &f), 0);
    unsigned char buf[1000];
    for (long i = 1; i <= 5; i++) { /* one open batch: 5 values, never flushed */
        dagger_value_t v = mixed(i, buf);
        ASSERT_OK(dagger_edge_push(p, &v));
    }
    if (!tcp) { /* nothing is published before the batch closes */
        dagger_value_t v;
        ASSERT_ERR(dagger_edge_pop(c, &v, 0), DAGGER_ETIMEDOUT);
        ASSERT_EQ(pthread_create(&th, NULL, pop_five_then_end, &f), 0);
    }
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_EQ(pthread_join(th, NULL), 0);
    for (int i = 0; i < 5; i++)
        ASSERT_OK(f.rc[i]);
    ASSERT_EQ(f.bad, 0);
    ASSERT_ERR(f.rc[5], DAGGER_ECLOSED);
    ASSERT_STR_HAS(f.msg, "after 5 values");
    ASSERT_OK(dagger_edge_close(c));
}

TEST(partly_filled_batch_delivered_at_close)
{
    partial_batch_at_close(0);
    partial_batch_at_close(1);
}

TEST(shm_consumer_close_fails_the_batching_producer)
{
    dagger_edge_t *p, *c;
    edge_pair(0, "cclose", "", &p, &c);
    unsigned char buf[8] = {0};
    dagger_value_t v = dagger_blob_borrow(buf, 8);
    ASSERT_OK(dagger_edge_push(p, &v)); /* opens a batch */
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_ERR(dagger_edge_push(p, &v), DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "the consumer closed the ring");
    ASSERT_ERR(dagger_edge_push(p, &v), DAGGER_ECLOSED); /* sticky */
    ASSERT_OK(dagger_edge_close(p));
}

struct waiter {
    dagger_edge_t *e;
    int rc;
    dagger_value_t v;
    _Atomic int done;
};

static void *pop_one(void *arg)
{
    struct waiter *w = arg;
    w->rc = dagger_edge_pop(w->e, &w->v, 10000);
    atomic_store(&w->done, 1);
    return NULL;
}

TEST(shm_sleeping_consumer_gets_a_single_value_at_once)
{
    /* spin=0: the consumer goes to sleep at once; it then sets the flag that makes the
     * producer publish (and wake it) at the push, without a flush or more pushes. */
    dagger_edge_t *p, *c;
    edge_pair(0, "sleeper", "&spin=0&linger_us=10000000", &p, &c);
    struct waiter w = {.e = c};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, pop_one, &w), 0);
    dagger_edge_stats_t st = {0};
    for (int i = 0; i < 5000 && st.waits == 0; i++) {
        usleep(1000);
        dagger_edge_stats(c, &st);
    }
    ASSERT_EQ(st.waits, 1);
    usleep(20000); /* from counting the wait to sleeping on the ring's word */
    unsigned char buf[8];
    long x = 42;
    memcpy(buf, &x, 8);
    dagger_value_t v = dagger_blob_borrow(buf, 8);
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_OK(w.rc); /* within the pop's 10 s, though the linger is 10 s and no flush came */
    ASSERT_EQ(w.v.len, 8);
    memcpy(&x, w.v.u.p, 8);
    ASSERT_EQ(x, 42);
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_OK(dagger_edge_close(c));
}

/* ---------------------------------------------------------------- a sink flushes while its
 * producer waits */

static _Atomic int got_first;

/* Run 0 yields 7; run 1 waits (at most 10 s) until the consumer has the 7, then yields 8. */
static int hold_after_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    _Atomic long *runs = dagger_arg_ptr(a, 0);
    long k = atomic_fetch_add(runs, 1);
    for (int i = 0; k == 1 && i < 10000 && !atomic_load(&got_first); i++)
        usleep(1000);
    *out = dagger_i64(7 + k);
    return 0;
}

static void *poll_briefly(void *arg)
{
    int rc = dagger_edge_poll(arg, 2000); /* accepts and completes the handshake */
    (void)rc;
    return NULL;
}

static void sink_flushes_while_the_producer_waits(int tcp)
{
    dagger_edge_t *p, *c;
    /* A 10 s linger: only the sink's flush can deliver the first value in time. */
    edge_pair(tcp, "sinkflush", "&linger_us=10000000", &p, &c);
    if (tcp) { /* connect now: the consumer below pops only after the first push */
        pthread_t th;
        ASSERT_EQ(pthread_create(&th, NULL, poll_briefly, c), 0);
        ASSERT_EQ(dagger_edge_poll(p, 5000), 1);
        ASSERT_EQ(pthread_join(th, NULL), 0);
    }
    atomic_store(&got_first, 0);
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 2;
    dagger_ctx_t *ctx;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    dagger_stream_opts_t so;
    dagger_stream_opts_init(&so);
    so.max_evals = 2;
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, &so, &s));
    _Atomic long runs = 0;
    dagger_task_t *x = dagger_spawn(ctx, hold_after_one, (void *)&runs);
    so.max_evals = -1;
    ASSERT_OK(dagger_stream_set_opts(s, &so));
    dagger_task_t *k = dagger_stream_spawn_edge_sink(s, p, x);
    ASSERT_PTR(k);
    ASSERT_OK(dagger_stream_end(s));
    /* Pop only once the sink pushed the 7 and the source holds its second run: a consumer
     * asleep at the push would have the shm producer publish at once, not the flush. */
    dagger_edge_stats_t st = {0};
    for (int i = 0; i < 10000 && (st.values < 1 || atomic_load(&runs) < 2); i++) {
        usleep(1000);
        dagger_edge_stats(p, &st);
    }
    ASSERT_EQ(st.values, 1);
    usleep(20000);
    dagger_value_t v;
    int rc = dagger_edge_pop(c, &v, 5000); /* the source still holds its second run */
    if (rc < 0)
        fail_msg("%s: the first value did not come while the producer waited: %s: %s",
                 tcp ? "tcp" : "shm", dagger_err_name(rc), dagger_edge_errmsg(c));
    ASSERT_EQ(v.kind, DAGGER_KIND_I64);
    ASSERT_EQ(v.u.i, 7);
    ASSERT_EQ(atomic_load(&runs), 2); /* it was held, not ended */
    atomic_store(&got_first, 1);
    ASSERT_OK(dagger_edge_pop(c, &v, 10000));
    ASSERT_EQ(v.u.i, 8);
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_ECLOSED);
    int64_t count = -1;
    ASSERT_OK(dagger_fetch_i64(k, &count));
    ASSERT_EQ(count, 2);
    dagger_task_release(k);
    dagger_task_release(x);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_OK(dagger_edge_close(c));
}

TEST(sink_flushes_a_single_value_while_its_producer_waits)
{
    sink_flushes_while_the_producer_waits(0);
    sink_flushes_while_the_producer_waits(1);
}

TEST_LIST(shm_mixed_sizes_in_order, tcp_mixed_sizes_in_order, slow_consumer_loses_nothing,
          partly_filled_batch_delivered_at_close, shm_consumer_close_fails_the_batching_producer,
          shm_sleeping_consumer_gets_a_single_value_at_once,
          sink_flushes_a_single_value_while_its_producer_waits)
