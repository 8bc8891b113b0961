/* tests/test_net_packed.c - PACKED frames on shm and TCP edges (frame version 3, issue 17).
 *
 * A batch of blobs of one size travels packed (src/net/net.h): the bytes of each value, one
 * header per frame. These cases check what packing must not change: runs of one size, runs
 * of other sizes and values of other kinds in one stream arrive in order and none is lost,
 * whichever way the producer ends a packed batch (a short one turned into records, a long
 * one closed, a size bound, close); single pushes and pops and the vector calls mixed in one
 * stream, a value of another size ending a vector (kept for the next pop); a packed batch
 * partly filled at close; a consumer closing under a producer in a packed run; a slow
 * consumer; pushes and pops served from armed runs mixed with flush, poll and vector calls,
 * the counters exact after each; a shm consumer that falls asleep under an armed room, served
 * at the next push; and hostile PACKED frames, refused with a message that names
 * the problem.
 * Producers run on a thread of this process; every wait is bounded.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "net_harness.h"

/* The stream: value i belongs to run i / 50; run r holds blobs of size_of_run(r) bytes, except
 * that every 7th run is 3 values long (a short packed batch that meets another size), every
 * 11th value of a run of 8-byte blobs is an i64 and run 5 holds empty blobs and strings. */
static uint32_t size_of_run(long r)
{
    static const uint32_t sizes[] = {8, 8, 16, 1, 8, 0, 256, 8, 3, 64, 8};
    return sizes[r % 11];
}

static dagger_value_t value_at(long i, unsigned char *buf)
{
    long r = i / 50, k = i % 50;
    uint32_t n = size_of_run(r);
    if (r % 7 == 6 && k >= 3)
        n = 24; /* the rest of a run whose first 3 values were another size */
    if (n == 8 && k % 11 == 10)
        return dagger_i64(-i);
    if (n == 0) {
        if (k % 2)
            return dagger_blob_borrow(buf, 0);
        snprintf((char *)buf, 32, "s%ld", i);
        return dagger_str_borrow((const char *)buf);
    }
    for (uint32_t j = 0; j < n; j++)
        buf[j] = (unsigned char)(i * 31 + j);
    return dagger_blob_borrow(buf, n);
}

/* 0 when v is value i of the stream. */
static int value_bad(long i, const dagger_value_t *v)
{
    unsigned char want[256];
    dagger_value_t w = value_at(i, want);
    if (v->kind != w.kind)
        return 1;
    if (w.kind == DAGGER_KIND_I64)
        return v->u.i != w.u.i;
    if (w.kind == DAGGER_KIND_STR)
        return strcmp(v->u.s, w.u.s) != 0;
    return v->len != w.len || (w.len && memcmp(v->u.p, w.u.p, w.len) != 0);
}

struct prod {
    dagger_edge_t *e;
    long n;
    int vec; /* push runs of 8-byte blobs with dagger_edge_push_n */
    struct net_prod_end end;
};

static void *producer(void *arg)
{
    struct prod *a = arg;
    unsigned char buf[256], run[50 * 8];
    for (long i = 0; i < a->n && !a->end.rc;) {
        dagger_value_t v = value_at(i, buf);
        long k = 0;
        /* A run of 8-byte blobs up to the next value of another kind, in one vector. */
        while (a->vec && i + k < a->n && k < 50) {
            dagger_value_t w = value_at(i + k, buf);
            if (w.kind != DAGGER_KIND_BLOB || w.len != 8)
                break;
            memcpy(run + k * 8, w.u.p, 8);
            k++;
        }
        if (k > 1) {
            int rc = dagger_edge_push_n(a->e, run, 8, (size_t)k, 10000);
            a->end.rc = rc == (int)k ? 0 : rc < 0 ? rc : DAGGER_EIO;
            i += k;
            continue;
        }
        v = value_at(i, buf);
        a->end.rc = dagger_edge_push_timed(a->e, &v, 10000);
        i++;
    }
    net_prod_finish(a->e, &a->end);
    return NULL;
}

/* N values through a pair: the producer pushes one by one (or in vectors: vec), the consumer
 * pops one by one or, with pop_vec, takes 8-byte blobs with dagger_edge_pop_n (a value of
 * another size ends a vector and comes from the next pop); it sleeps 1 ms every
 * `pause_every` values (0: never). */
static void stream(int tcp, const char *extra, long n, int vec, int pop_vec, long pause_every)
{
    dagger_edge_t *p, *c;
    char tag[32];
    snprintf(tag, sizeof tag, "s%d%d%ld", vec, pop_vec, pause_every);
    net_edge_pair(tcp, "packed", tag, extra, &p, &c);
    struct prod a = {.e = p, .n = n, .vec = vec};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, producer, &a), 0);
    long bad = 0, first_bad = -1, held = 0;
    unsigned char got[64 * 8];
    for (long i = 0; i < n;) {
        dagger_value_t v;
        if (pop_vec) {
            int rc = dagger_edge_pop_n(c, got, 8, 64, 10000);
            if (rc > 0) {
                for (int j = 0; j < rc; j++, i++) {
                    dagger_value_t b = dagger_blob_borrow(got + j * 8, 8);
                    if (value_bad(i, &b) && bad++ == 0)
                        first_bad = i;
                }
                continue;
            }
            if (rc != DAGGER_EINVAL)
                fail_msg("%s: pop_n at %ld: %s: %s", tcp ? "tcp" : "shm", i, dagger_err_name(rc),
                         dagger_edge_errmsg(c));
            ASSERT_STR_HAS(dagger_edge_errmsg(c), "kept for the next dagger_edge_pop");
            held++;
        }
        int rc = dagger_edge_pop(c, &v, 10000);
        if (rc < 0)
            fail_msg("%s: pop %ld: %s: %s", tcp ? "tcp" : "shm", i, dagger_err_name(rc),
                     dagger_edge_errmsg(c));
        if (value_bad(i, &v) && bad++ == 0)
            first_bad = i;
        if (pause_every && i % pause_every == 0)
            usleep(1000);
        i++;
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_ECLOSED);
    char end[64];
    snprintf(end, sizeof end, "closed%s after %ld values", tcp ? "" : " the ring", n);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), end);
    if (pop_vec && held == 0)
        fail_msg("no value of another size ended a vector");
    net_stream_end(c, th, &a.end, bad, first_bad, n);
}

TEST(shm_runs_of_sizes_and_kinds_in_order)
{
    stream(0, "", 20000, 0, 0, 0);
    stream(0, "&cap=65536", 20000, 1, 1, 0); /* vectors both sides, ring wraps */
}

TEST(tcp_runs_of_sizes_and_kinds_in_order)
{
    stream(1, "", 20000, 0, 0, 0);
    stream(1, "&batch=1000", 20000, 1, 1, 0); /* small batches: sent by the size bound */
}

TEST(slow_consumer_of_packed_runs_loses_nothing)
{
    stream(0, "&cap=65536", 30000, 1, 0, 1500);
    stream(1, "", 30000, 0, 1, 1500);
}

struct popper {
    dagger_edge_t *e;
    long n;
    int rc[8], bad;
    char msg[256];
};

static void *pop_then_end(void *arg)
{
    struct popper *f = arg;
    for (long i = 0; i <= f->n; i++) {
        dagger_value_t v;
        f->rc[i] = dagger_edge_pop(f->e, &v, 10000);
        if (i < f->n && f->rc[i] == 0) {
            uint64_t x = 0;
            f->bad += v.kind != DAGGER_KIND_BLOB || v.len != 8 ||
                      (memcpy(&x, v.u.p, 8), x != 40u + (uint64_t)i);
        }
    }
    snprintf(f->msg, sizeof f->msg, "%s", dagger_edge_errmsg(f->e));
    return NULL;
}

static void packed_batch_at_close(int tcp)
{
    dagger_edge_t *p, *c;
    net_edge_pair(tcp, "packed", "partial", "&linger_us=10000000", &p, &c);
    struct popper f = {.e = c, .n = 6};
    pthread_t th;
    if (tcp) /* the consumer must run for the first push's handshake */
        ASSERT_EQ(pthread_create(&th, NULL, pop_then_end, &f), 0);
    for (uint64_t x = 40; x < 46; x++) { /* one open packed batch: never flushed */
        dagger_value_t v = dagger_blob_borrow(&x, 8);
        ASSERT_OK(dagger_edge_push(p, &v));
    }
    if (!tcp) { /* nothing is published before the batch closes */
        dagger_value_t v;
        ASSERT_ERR(dagger_edge_pop(c, &v, 0), DAGGER_ETIMEDOUT);
        ASSERT_EQ(pthread_create(&th, NULL, pop_then_end, &f), 0);
    }
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_EQ(pthread_join(th, NULL), 0);
    for (int i = 0; i < 6; i++)
        ASSERT_OK(f.rc[i]);
    ASSERT_EQ(f.bad, 0);
    ASSERT_ERR(f.rc[6], DAGGER_ECLOSED);
    ASSERT_STR_HAS(f.msg, "after 6 values");
    ASSERT_OK(dagger_edge_close(c));
}

TEST(packed_batch_partly_filled_at_close)
{
    packed_batch_at_close(0);
    packed_batch_at_close(1);
}

/* The consumer takes 10 values, then closes; the producer pushes a packed run until it is
 * told, within its bound. */
struct closer {
    dagger_edge_t *e;
    int rc;
};

static void *take_ten_and_close(void *arg)
{
    struct closer *k = arg;
    for (int i = 0; i < 10 && !k->rc; i++) {
        dagger_value_t v;
        k->rc = dagger_edge_pop(k->e, &v, 10000);
    }
    int rc = dagger_edge_close(k->e);
    if (!k->rc)
        k->rc = rc;
    return NULL;
}

static void consumer_closes_under_packed_run(int tcp)
{
    dagger_edge_t *p, *c;
    net_edge_pair(tcp, "packed", "cclose", tcp ? "" : "&cap=65536", &p, &c);
    struct closer k = {.e = c};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, take_ten_and_close, &k), 0);
    int rc = 0;
    uint64_t x;
    for (x = 0; x < 100000000 && rc == 0; x++) {
        dagger_value_t v = dagger_blob_borrow(&x, 8);
        rc = dagger_edge_push_timed(p, &v, 10000);
        if (rc == 0 && x % 4096 == 0) /* the consumer's close shows at a send */
            rc = dagger_edge_flush(p, 10000);
    }
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_OK(k.rc);
    if (tcp) {
        ASSERT_ERR(rc, DAGGER_EPEER);
        ASSERT_STR_HAS(dagger_edge_errmsg(p), "the consumer went away");
    } else {
        ASSERT_ERR(rc, DAGGER_ECLOSED);
        ASSERT_STR_HAS(dagger_edge_errmsg(p), "the consumer closed the ring");
    }
    dagger_value_t v = dagger_blob_borrow(&x, 8);
    ASSERT_ERR(dagger_edge_push(p, &v), rc); /* sticky */
    if (dagger_edge_close(p)) {              /* already failed: the push said why */
    }
}

TEST(consumer_close_fails_a_packed_producer)
{
    consumer_closes_under_packed_run(0);
    consumer_closes_under_packed_run(1);
}

/* Pushes and pops that the edge serves from armed runs (net.h: rp, wp) mixed with calls that
 * settle them: flush and poll between pushes, poll and pop_n between pops, the counters read
 * after each step. */
struct mixer {
    dagger_edge_t *e;
    long n;
    int rc;
    char msg[256];
};

static void *push_mixed_calls(void *arg)
{
    struct mixer *m = arg;
    for (uint64_t x = 0; x < (uint64_t)m->n && !m->rc; x++) {
        dagger_value_t v = dagger_blob_borrow(&x, 8);
        m->rc = dagger_edge_push_timed(m->e, &v, 10000);
        if (!m->rc && x % 97 == 96)
            m->rc = dagger_edge_flush(m->e, 10000);
        if (!m->rc && x % 37 == 36 && dagger_edge_poll(m->e, 10000) != 1)
            m->rc = DAGGER_EIO;
        dagger_edge_stats_t st;
        dagger_edge_stats(m->e, &st);
        if (!m->rc && st.values != x + 1)
            m->rc = DAGGER_ERANGE;
    }
    if (m->rc)
        snprintf(m->msg, sizeof m->msg, "%s", dagger_edge_errmsg(m->e));
    int rc = dagger_edge_close(m->e);
    if (!m->rc)
        m->rc = rc;
    return NULL;
}

static void runs_settle(int tcp)
{
    dagger_edge_t *p, *c;
    net_edge_pair(tcp, "packed", "settle", "", &p, &c);
    struct mixer m = {.e = p, .n = 5000};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, push_mixed_calls, &m), 0);
    uint64_t next = 0, buf[3];
    for (int step = 0; next < (uint64_t)m.n; step++) {
        dagger_value_t v;
        if (step % 5 == 3) {
            ASSERT_EQ(dagger_edge_poll(c, 10000), 1);
            continue;
        }
        if (step % 5 == 4) {
            int k = dagger_edge_pop_n(c, buf, 8, 3, 10000);
            if (k < 1)
                fail_msg("pop_n at %llu: %s: %s", (unsigned long long)next, dagger_err_name(k),
                         dagger_edge_errmsg(c));
            for (int j = 0; j < k; j++, next++)
                ASSERT_EQ(buf[j], next);
        } else {
            int rc = dagger_edge_pop(c, &v, 10000);
            if (rc < 0)
                fail_msg("pop at %llu: %s: %s", (unsigned long long)next, dagger_err_name(rc),
                         dagger_edge_errmsg(c));
            uint64_t x;
            ASSERT_EQ(v.kind, DAGGER_KIND_BLOB);
            ASSERT_EQ(v.len, 8);
            memcpy(&x, v.u.p, 8);
            ASSERT_EQ(x, next);
            next++;
        }
        dagger_edge_stats_t st;
        dagger_edge_stats(c, &st);
        ASSERT_EQ(st.values, next);
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_ECLOSED);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    if (m.rc)
        fail_msg("producer: %s: %s", dagger_err_name(m.rc), m.msg);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(armed_runs_settle_across_other_calls)
{
    runs_settle(0);
    runs_settle(1);
}

/* A consumer that goes to sleep while a packed batch is open and its room armed gets the
 * batch at the next push: the push that dagger_edge_push would have written into the room sees
 * the consumer's word (net.h: wstop) and lets shm publish. */
struct sleeper {
    dagger_edge_t *e;
    int rc[4];
    uint64_t got[4];
    _Atomic int popped;
};

static void *pop_four(void *arg)
{
    struct sleeper *z = arg;
    for (int i = 0; i < 4; i++) {
        dagger_value_t v;
        z->rc[i] = dagger_edge_pop(z->e, &v, 10000);
        if (z->rc[i] == 0 && v.kind == DAGGER_KIND_BLOB && v.len == 8)
            memcpy(&z->got[i], v.u.p, 8);
        atomic_fetch_add(&z->popped, 1);
    }
    return NULL;
}

TEST(shm_consumer_asleep_under_an_armed_room_gets_the_next_push)
{
    dagger_edge_t *p, *c;
    net_edge_pair(0, "packed", "sleeper", "&spin=0&linger_us=10000000", &p, &c);
    for (uint64_t x = 100; x < 103; x++) { /* nobody waits: the batch stays open, room armed */
        dagger_value_t v = dagger_blob_borrow(&x, 8);
        ASSERT_OK(dagger_edge_push(p, &v));
    }
    struct sleeper z = {.e = c};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, pop_four, &z), 0);
    dagger_edge_stats_t st = {0};
    for (int i = 0; i < 5000 && st.waits == 0; i++) {
        usleep(1000);
        dagger_edge_stats(c, &st);
    }
    ASSERT_EQ(st.waits, 1);
    usleep(20000);                        /* from counting the wait to sleeping on the word */
    ASSERT_EQ(atomic_load(&z.popped), 0); /* the open batch is not published */
    uint64_t x = 103;
    dagger_value_t v = dagger_blob_borrow(&x, 8);
    ASSERT_OK(dagger_edge_push(p, &v)); /* no flush, and the linger is 10 s */
    ASSERT_EQ(pthread_join(th, NULL), 0);
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(z.rc[i]);
        ASSERT_EQ(z.got[i], 100u + (uint64_t)i);
    }
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_OK(dagger_edge_close(c));
}

/* ---------------------------------------------------------------- hostile frames */

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        fail_msg("raw connect: %s", strerror(errno));
    return fd;
}

/* A header as docs/net.md gives it: magic "DAGN", version 3, kind, flags, length, count, seq
 * (little-endian). */
static void put_header(unsigned char *p, unsigned kind, uint32_t len, uint32_t count, uint64_t seq)
{
    uint32_t l = htole32(len), k = htole32(count);
    uint64_t s = htole64(seq);
    memcpy(p, "DAGN", 4);
    p[4] = 3;
    p[5] = (unsigned char)kind;
    p[6] = p[7] = 0;
    memcpy(p + 8, &l, 4);
    memcpy(p + 12, &k, 4);
    memcpy(p + 16, &s, 8);
}

/* A listening consumer (`uri`) fed by a raw producer: HELLO (protocol 2, producer, no secret,
 * no encryption, connecting, seq 0), then `len` bytes of frames. Pops until an error, which it
 * returns: *got values came first, the bytes of the first two 8-byte blobs among them in seen;
 * the consumer's message is in msg. */
static int feed(const char *uri, const unsigned char *frames, size_t len, unsigned char *seen,
                int *got, char *msg, size_t cap)
{
    dagger_edge_t *c;
    OPEN_OK(&c, uri, DAGGER_EDGE_POP);
    const char *port = strrchr(dagger_edge_uri(c), ':');
    ASSERT_PTR(port);
    int fd = raw_connect(atoi(port + 1));
    unsigned char hello[24 + 48] = {0};
    put_header(hello, 4, 48, 0, 0);
    hello[24] = 2;     /* protocol 2 */
    hello[24 + 4] = 1; /* producer */
    ASSERT_EQ(write(fd, hello, sizeof hello), (ssize_t)sizeof hello);
    ASSERT_EQ(write(fd, frames, len), (ssize_t)len);
    dagger_value_t v;
    int rc;
    *got = 0;
    while ((rc = dagger_edge_pop(c, &v, 5000)) == 0) {
        if (*got < 2 && v.kind == DAGGER_KIND_BLOB && v.len == 8)
            memcpy(seen + *got * 8, v.u.p, 8); /* v borrows the receive buffer */
        ++*got;
    }
    snprintf(msg, cap, "%s", dagger_edge_errmsg(c));
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
    return rc;
}

TEST(tcp_malformed_packed_frames_refused)
{
    unsigned char f[24 + 64];
    char msg[300];
    unsigned char seen[16];
    int got;

    /* a count that does not divide the length */
    put_header(f, 7, 10, 3, 0);
    memset(f + 24, 'x', 10);
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen", f, 34, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(msg, "packed frame of 10 bytes says it holds 3 values");
    ASSERT_EQ(got, 0);

    /* more values than bytes, and none at all */
    put_header(f, 7, 4, 8, 0);
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen", f, 28, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(msg, "packed frame of 4 bytes says it holds 8 values");
    put_header(f, 7, 8, 0, 0);
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen", f, 32, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(msg, "says it holds 0 values");

    /* values larger than the edge's limit */
    put_header(f, 7, 64, 2, 0);
    memset(f + 24, 'y', 64);
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen&max=16", f, 88, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(msg, "values of 32 bytes exceed the limit of 16");
    ASSERT_EQ(got, 0);

    /* a length above the batch bound, and flags on a packed frame */
    put_header(f, 7, 128u * 1024u, 16, 0);
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen", f, 24, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(msg, "packed frame of 131072 bytes with flags 0x0");
    put_header(f, 7, 8, 1, 0);
    f[6] = 1;
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen", f, 32, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(msg, "with flags 0x1");

    /* a good packed frame of two values, then one out of sequence */
    unsigned char g[2 * (24 + 16)];
    put_header(g, 7, 16, 2, 0);
    memcpy(g + 24, "abcdefghABCDEFGH", 16);
    put_header(g + 40, 7, 16, 2, 7);
    memcpy(g + 64, "ijklmnopIJKLMNOP", 16);
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen", g, sizeof g, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_EQ(got, 2);
    ASSERT_EQ(memcmp(seen, "abcdefghABCDEFGH", 16), 0);
    ASSERT_STR_HAS(msg, "batch frame seq 7 where 2 was expected");

    /* the version of the frames before packing */
    put_header(f, 7, 8, 1, 0);
    f[4] = 2;
    ASSERT_ERR(feed("tcp://127.0.0.1:0?role=listen", f, 32, seen, &got, msg, sizeof msg),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(msg, "frame version 2, this build speaks 3");
}

TEST_LIST(shm_runs_of_sizes_and_kinds_in_order, tcp_runs_of_sizes_and_kinds_in_order,
          slow_consumer_of_packed_runs_loses_nothing, packed_batch_partly_filled_at_close,
          consumer_close_fails_a_packed_producer, armed_runs_settle_across_other_calls,
          shm_consumer_asleep_under_an_armed_room_gets_the_next_push,
          tcp_malformed_packed_frames_refused)
