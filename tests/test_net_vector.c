/* tests/test_net_vector.c - dagger_edge_push_n / dagger_edge_pop_n on shm and TCP edges.
 *
 * The vector calls move many fixed-size blobs with one call (issue 17, item 3). These cases
 * check: order and no loss through vectors of every length against pops of other lengths
 * (vectors that straddle batches, ring wraps and back-pressure), vectors mixed with single
 * pushes and pops, partial pops (pop_n returns what is there and waits only for the first),
 * the end and errors met in the middle of a vector (reported by the next call, after the
 * values before them), a value of another size or kind that ends a vector (kept for the next
 * dagger_edge_pop, never lost), and bad arguments with their messages. Producers run on a
 * thread of this process; every wait is bounded.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"
#include "net_harness.h"

struct hs {
    dagger_edge_t *p;
    int rc;
    _Atomic int done;
};

static void *producer_poll(void *arg)
{
    struct hs *h = arg;
    h->rc = dagger_edge_poll(h->p, 10000); /* connects and runs the handshake */
    atomic_store(&h->done, 1);
    return NULL;
}

/* TCP ends connect in their first call, the two handshakes meeting: run them side by side, so
 * that a test may then push before it pops. */
static void tcp_connect(dagger_edge_t *p, dagger_edge_t *c)
{
    struct hs h = {.p = p};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, producer_poll, &h), 0);
    for (int i = 0; i < 200 && !atomic_load(&h.done); i++) {
        int rc = dagger_edge_poll(c, 50); /* accepts, then waits for a frame: none comes */
        if (rc != 0)
            fail_msg("consumer poll while connecting = %d: %s", rc, dagger_edge_errmsg(c));
    }
    ASSERT_EQ(pthread_join(th, NULL), 0);
    if (h.rc != 1)
        fail_msg("producer poll while connecting = %d: %s", h.rc, dagger_edge_errmsg(p));
}

/* A pair of ends (tests/net_harness.h); TCP ends are connected before it returns. */
static void edge_pair(int tcp, const char *tag, const char *extra, dagger_edge_t **p,
                      dagger_edge_t **c)
{
    net_edge_pair(tcp, "vec", tag, extra, p, c);
    if (tcp)
        tcp_connect(*p, *c);
}

struct prod {
    dagger_edge_t *e;
    long n;
    struct net_prod_end end;
    long sent;
};

/* Values 0..n-1 as 8-byte blobs, in vectors of 1, 2, ..., 700, 1, ... values, with a single
 * dagger_edge_push every 11th vector. */
static void *producer(void *arg)
{
    struct prod *a = arg;
    uint64_t buf[700];
    long i = 0;
    for (int len = 1, round = 0; i < a->n && !a->end.rc; len = len % 700 + 1, round++) {
        if (round % 11 == 10) {
            uint64_t x = (uint64_t)i;
            dagger_value_t v = dagger_blob_borrow(&x, 8);
            a->end.rc = dagger_edge_push_timed(a->e, &v, 10000);
            i += a->end.rc == 0;
            continue;
        }
        int k = (int)(a->n - i < len ? a->n - i : len);
        for (int j = 0; j < k; j++)
            buf[j] = (uint64_t)(i + j);
        int got = dagger_edge_push_n(a->e, buf, 8, (size_t)k, 10000);
        if (got < 0)
            a->end.rc = got;
        else if (got != k)
            a->end.rc = DAGGER_EIO,
            snprintf(a->end.msg, sizeof a->end.msg, "push_n sent %d of %d", got, k);
        else
            i += k;
    }
    a->sent = i;
    net_prod_finish(a->e, &a->end);
    return NULL;
}

/* n values through a pair; the consumer pops vectors of 1..513 values and a single value now
 * and then, sleeping 1 ms every `pause_every` pops (0: never). */
static void stream_vectors(int tcp, const char *extra, long n, long pause_every)
{
    dagger_edge_t *p, *c;
    edge_pair(tcp, "stream", extra, &p, &c);
    struct prod a = {.e = p, .n = n};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, producer, &a), 0);
    uint64_t buf[513];
    long i = 0, bad = 0, first_bad = -1, pops = 0;
    for (int want = 1; i < n; want = want % 513 + 1, pops++) {
        if (pops % 7 == 6) {
            dagger_value_t v;
            int rc = dagger_edge_pop(c, &v, 10000);
            if (rc < 0)
                fail_msg("%s: pop at %ld: %s: %s", tcp ? "tcp" : "shm", i, dagger_err_name(rc),
                         dagger_edge_errmsg(c));
            uint64_t x = UINT64_MAX;
            if (v.kind == DAGGER_KIND_BLOB && v.len == 8)
                memcpy(&x, v.u.p, 8);
            if (x != (uint64_t)i && bad++ == 0)
                first_bad = i;
            i++;
            continue;
        }
        int got = dagger_edge_pop_n(c, buf, 8, (size_t)want, 10000);
        if (got <= 0 || got > want)
            fail_msg("%s: pop_n(%d) at %ld = %d (%s): %s", tcp ? "tcp" : "shm", want, i, got,
                     dagger_err_name(got), dagger_edge_errmsg(c));
        for (int j = 0; j < got; j++, i++)
            if (buf[j] != (uint64_t)i && bad++ == 0)
                first_bad = i;
        if (pause_every && pops % pause_every == 0)
            usleep(1000);
    }
    ASSERT_EQ(i, n);
    ASSERT_ERR(dagger_edge_pop_n(c, buf, 8, 4, 10000), DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "closed");
    net_stream_end(c, th, &a.end, bad, first_bad, n);
}

TEST(shm_vectors_in_order)
{
    stream_vectors(0, "", 400000, 0);
    /* A 64 KiB ring wraps every few batches; the producer waits for room inside vectors. */
    stream_vectors(0, "&cap=65536", 200000, 0);
    stream_vectors(0, "&cap=65536", 50000, 50); /* a slow consumer */
    stream_vectors(0, "&batch=0", 20000, 0);    /* no batches: the per-value path */
}

TEST(tcp_vectors_in_order)
{
    stream_vectors(1, "", 300000, 0);
    stream_vectors(1, "&encrypt=1", 50000, 0);
    stream_vectors(1, "", 40000, 50);
}

/* pop_n returns the values that are there (fewer than asked), waits only for the first, and
 * times out with none. */
static void partial_pops(int tcp)
{
    dagger_edge_t *p, *c;
    edge_pair(tcp, "partial", "", &p, &c);
    uint64_t src[5] = {10, 11, 12, 13, 14}, dst[16] = {0};
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 16, 0), DAGGER_ETIMEDOUT);
    ASSERT_EQ(dagger_edge_push_n(p, src, 8, 5, 10000), 5);
    ASSERT_OK(dagger_edge_flush(p, 10000));
    int got = 0;
    while (got < 5) { /* one batch frame, but a pop_n may stop short of it: loop */
        int rc = dagger_edge_pop_n(c, dst + got, 8, 16, 10000);
        if (rc <= 0)
            fail_msg("pop_n = %s: %s", dagger_err_name(rc), dagger_edge_errmsg(c));
        got += rc;
    }
    ASSERT_EQ(got, 5);
    for (int j = 0; j < 5; j++)
        ASSERT_EQ(dst[j], 10 + (uint64_t)j);
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 16, 0), DAGGER_ETIMEDOUT);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "no value before the timeout");
    /* Fewer asked than there are: the rest stays for the next call, in order. */
    ASSERT_EQ(dagger_edge_push_n(p, src, 8, 5, 10000), 5);
    ASSERT_OK(dagger_edge_flush(p, 10000));
    ASSERT_EQ(dagger_edge_pop_n(c, dst, 8, 2, 10000), 2);
    ASSERT_EQ(dst[0], 10);
    ASSERT_EQ(dst[1], 11);
    dagger_value_t v;
    ASSERT_OK(dagger_edge_pop(c, &v, 10000));
    ASSERT_EQ(v.len, 8);
    uint64_t x;
    memcpy(&x, v.u.p, 8); /* a record's bytes are 4-aligned */
    ASSERT_EQ(x, 12);
    ASSERT_EQ(dagger_edge_pop_n(c, dst, 8, 16, 10000), 2);
    ASSERT_EQ(dst[0], 13);
    ASSERT_EQ(dst[1], 14);
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 16, 10000), DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "after 10 values");
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 16, 10000), DAGGER_ECLOSED); /* sticky */
    ASSERT_OK(dagger_edge_close(c));
}

TEST(pop_n_returns_what_is_there)
{
    partial_pops(0);
    partial_pops(1);
}

/* A value of another size or kind ends a vector: the values before it are returned, then
 * pop_n reports it (EINVAL, naming it) until dagger_edge_pop takes it; nothing is lost. */
static void odd_value_is_kept(int tcp)
{
    dagger_edge_t *p, *c;
    edge_pair(tcp, "odd", "", &p, &c);
    uint64_t src[3] = {1, 2, 3}, dst[8] = {0};
    unsigned char big[20] = {7};
    dagger_value_t v = dagger_blob_borrow(big, sizeof big);
    ASSERT_EQ(dagger_edge_push_n(p, src, 8, 2, 10000), 2);
    ASSERT_OK(dagger_edge_push(p, &v));
    v = dagger_i64(-5);
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_EQ(dagger_edge_push_n(p, src + 2, 8, 1, 10000), 1);
    ASSERT_OK(dagger_edge_close(p));
    int got = dagger_edge_pop_n(c, dst, 8, 8, 10000);
    if (got == 1) /* TCP: the first value may come alone */
        got += dagger_edge_pop_n(c, dst + 1, 8, 7, 10000);
    ASSERT_EQ(got, 2);
    ASSERT_EQ(dst[0], 1);
    ASSERT_EQ(dst[1], 2);
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 8, 10000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "met a blob of 20 bytes (kept for the next");
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 8, 0), DAGGER_EINVAL); /* still first in line */
    ASSERT_EQ(dagger_edge_poll(c, 0), 1);
    ASSERT_OK(dagger_edge_pop(c, &v, 10000));
    ASSERT_EQ(v.kind, DAGGER_KIND_BLOB);
    ASSERT_EQ(v.len, 20);
    ASSERT_EQ(((const unsigned char *)v.u.p)[0], 7);
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 8, 10000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "met a i64 value");
    ASSERT_OK(dagger_edge_pop(c, &v, 10000));
    ASSERT_EQ(v.kind, DAGGER_KIND_I64);
    ASSERT_EQ(v.u.i, -5);
    ASSERT_EQ(dagger_edge_pop_n(c, dst, 8, 8, 10000), 1);
    ASSERT_EQ(dst[0], 3);
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 8, 10000), DAGGER_ECLOSED);
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.values, 5);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(a_value_of_another_size_is_kept_not_lost)
{
    odd_value_is_kept(0);
    odd_value_is_kept(1);
}

/* The end met inside a vector: the values before it, then DAGGER_ECLOSED. A consumer that
 * closes: push_n reports how many went before it, then the error. */
TEST(shm_end_and_errors_inside_a_vector)
{
    dagger_edge_t *p, *c;
    edge_pair(0, "mid", "&cap=65536", &p, &c);
    uint64_t src[300], dst[400];
    for (int j = 0; j < 300; j++)
        src[j] = (uint64_t)j;
    ASSERT_EQ(dagger_edge_push_n(p, src, 8, 300, 10000), 300);
    ASSERT_OK(dagger_edge_close(p));
    int got = 0, rc;
    while ((rc = dagger_edge_pop_n(c, dst + got, 8, 400 - (size_t)got, 10000)) > 0)
        got += rc;
    ASSERT_EQ(got, 300);
    ASSERT_ERR(rc, DAGGER_ECLOSED);
    for (int j = 0; j < 300; j++)
        ASSERT_EQ(dst[j], (uint64_t)j);
    ASSERT_OK(dagger_edge_close(c));

    /* The ring fills (64 KiB of 12-byte records) and the consumer is gone: the vector stops
     * at the full ring with the count sent, or fails at once; then the error is sticky. */
    edge_pair(0, "mid2", "&cap=65536", &p, &c);
    ASSERT_OK(dagger_edge_close(c));
    static uint64_t many[20000];
    rc = dagger_edge_push_n(p, many, 8, 20000, 10000);
    ASSERT_ERR(rc, DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "the consumer closed the ring");
    ASSERT_ERR(dagger_edge_push_n(p, many, 8, 1, 10000), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(p)); /* shm: nothing left to deliver, close frees it */

    edge_pair(0, "mid3", "&cap=65536", &p, &c);
    rc = dagger_edge_push_n(p, many, 8, 20000, 0); /* no consumer pops: the ring fills */
    if (rc <= 0 || rc >= 20000)
        fail_msg("push_n into a full ring = %d: %s", rc, dagger_edge_errmsg(p));
    ASSERT_ERR(dagger_edge_push_n(p, many, 8, 20000, 0), DAGGER_ETIMEDOUT);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "ring full");
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_ERR(dagger_edge_push_n(p, many, 8, 1, 1000), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(p));
}

TEST(bad_arguments_have_a_message)
{
    dagger_edge_t *p, *c;
    edge_pair(0, "args", "&max=1024", &p, &c);
    uint64_t buf[4] = {0};
    ASSERT_ERR(dagger_edge_push_n(NULL, buf, 8, 1, 0), DAGGER_EINVAL);
    ASSERT_ERR(dagger_edge_pop_n(NULL, buf, 8, 1, 0), DAGGER_EINVAL);
    ASSERT_ERR(dagger_edge_push_n(p, NULL, 8, 1, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "dagger_edge_push_n: NULL buffer");
    ASSERT_ERR(dagger_edge_pop_n(c, NULL, 8, 1, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "dagger_edge_pop_n: NULL buffer");
    ASSERT_ERR(dagger_edge_push_n(p, buf, 0, 1, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "values of size 0");
    ASSERT_ERR(dagger_edge_pop_n(c, buf, 8, 0, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "room for 0 values");
    ASSERT_ERR(dagger_edge_push_n(p, buf, 8, (size_t)INT_MAX + 1, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "at most");
    ASSERT_ERR(dagger_edge_push_n(p, buf, 2048, 1, 0), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "values of 2048 bytes exceed max=1024");
    ASSERT_ERR(dagger_edge_pop_n(p, buf, 8, 1, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "dagger_edge_pop_n on the producer end");
    ASSERT_ERR(dagger_edge_push_n(c, buf, 8, 1, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "dagger_edge_push_n on the consumer end");
    ASSERT_EQ(dagger_edge_push_n(p, buf, 8, 0, 0), 0); /* an empty vector sends nothing */
    /* None of these sent anything: the stream is still empty, then ends cleanly. */
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_ERR(dagger_edge_pop_n(c, buf, 8, 4, 10000), DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "after 0 values");
    ASSERT_OK(dagger_edge_close(c));
}

/* Values above the batch limit (256 bytes) get a frame each: the vectors' slow paths. */
static void large_values(int tcp)
{
    dagger_edge_t *p, *c;
    edge_pair(tcp, "large", "", &p, &c);
    static unsigned char src[40][300], dst[40][300];
    for (int j = 0; j < 40; j++)
        memset(src[j], j + 1, 300);
    ASSERT_EQ(dagger_edge_push_n(p, src, 300, 40, 10000), 40);
    ASSERT_OK(dagger_edge_close(p));
    int got = 0, rc;
    while (got < 40 && (rc = dagger_edge_pop_n(c, dst[got], 300, 40 - (size_t)got, 10000)) > 0)
        got += rc;
    ASSERT_EQ(got, 40);
    for (int j = 0; j < 40; j++)
        ASSERT_EQ(memcmp(src[j], dst[j], 300), 0);
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 300, 40, 10000), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(values_above_the_batch_limit)
{
    large_values(0);
    large_values(1);
}

/* UDP has no vector path of its own: the wrapper's loop over push and pop (brokers take the
 * same loop). 64 values on loopback, a kept i64, then the end. */
TEST(udp_takes_the_generic_loop)
{
    dagger_edge_t *p, *c;
    OPEN_OK(&c, "udp://127.0.0.1:0", DAGGER_EDGE_POP);
    const char *port = strrchr(dagger_edge_uri(c), ':');
    ASSERT_PTR(port);
    char uri[128];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d", atoi(port + 1));
    OPEN_OK(&p, uri, DAGGER_EDGE_PUSH);
    uint64_t src[64], dst[64] = {0};
    for (int j = 0; j < 64; j++)
        src[j] = 1000 + (uint64_t)j;
    ASSERT_EQ(dagger_edge_push_n(p, src, 8, 40, 2000), 40);
    dagger_value_t v = dagger_i64(9);
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_EQ(dagger_edge_push_n(p, src + 40, 8, 24, 2000), 24);
    ASSERT_OK(dagger_edge_close(p));
    int got = 0, rc;
    while (got < 40 && (rc = dagger_edge_pop_n(c, dst + got, 8, 64, 2000)) > 0)
        got += rc;
    ASSERT_EQ(got, 40);
    ASSERT_ERR(dagger_edge_pop_n(c, dst + got, 8, 64, 2000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "met a i64 value");
    ASSERT_OK(dagger_edge_pop(c, &v, 2000));
    ASSERT_EQ(v.u.i, 9);
    while (got < 64 && (rc = dagger_edge_pop_n(c, dst + got, 8, 64, 2000)) > 0)
        got += rc;
    ASSERT_EQ(got, 64);
    for (int j = 0; j < 64; j++)
        ASSERT_EQ(dst[j], 1000 + (uint64_t)j);
    ASSERT_ERR(dagger_edge_pop_n(c, dst, 8, 64, 2000), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(c));
}

TEST_LIST(shm_vectors_in_order, tcp_vectors_in_order, pop_n_returns_what_is_there,
          a_value_of_another_size_is_kept_not_lost, shm_end_and_errors_inside_a_vector,
          bad_arguments_have_a_message, values_above_the_batch_limit, udp_takes_the_generic_loop)
