/* tests/test_stream_fail.c - a task's failure reaches every task of its streaming region and
 * the other end of its edges, in one process and over a shared-memory edge, and nothing hangs.
 *
 * Design: each case arms alarm(WATCHDOG_S), so a hang (a producer waiting for room that will
 * never come, a consumer waiting for a value that will never come) kills the process and fails
 * the case. In-process cases fail a consumer before it runs, a consumer mid-stream (its
 * producer blocked on a full ring) and a producer mid-stream. The shm cases put both ends of
 * the edge in this process: a region on one end, a plain task on the other, which fails before
 * opening its end (the region's edge watches it: dagger_edge_watch), or after popping or
 * pushing a few values (it closes its end after dagger_fail, which aborts the end, so the peer
 * sees a failure, with the failed task's message, and not a clean end with values missing). Cases
 * assert codes and messages. SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "stream_fail_harness.h"

#include <dagger/net.h>
#include <dagger/stream.h>

static dagger_ctx_t *open_ctx(int threads)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    dagger_ctx_t *ctx;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    return ctx;
}

/* picky(limit, v): passes v on; fails at v == limit. */
static int picky(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t limit = dagger_arg_i64(a, 0), v = dagger_arg_i64(a, 1);
    if (v == limit)
        return dagger_fail(tc, DAGGER_ERANGE, "value %lld is out of range", (long long)v);
    *out = dagger_i64(v);
    return 0;
}

/* uses(setup, v): a consumer with a non-streaming input `setup`. */
static int uses(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 1));
    return 0;
}

/* The consumer fails before its first run (an input outside the region failed): the producer,
 * with a buffer of one slot, ends instead of waiting for room, and both report the origin. */
TEST(inproc_consumer_fails_before_running)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_task_t *setup = dagger_spawn(ctx, unplugged);
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    struct gen_state g = {0, -1};
    dagger_task_t *x = dagger_spawn(ctx, gen, (void *)&g);
    dagger_task_t *y = dagger_spawn(ctx, uses, setup, x);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(y), "input 0");
    ASSERT_STR_HAS(dagger_task_errmsg(y), "sensor 3 is unplugged");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "the streaming region stopped because");
    ASSERT_STR_HAS(dagger_task_errmsg(x), "sensor 3 is unplugged");
    dagger_task_release(x);
    dagger_task_release(y);
    dagger_task_release(setup);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The consumer fails at its 6th value while its producer waits on a full one-slot ring: the
 * producer ends with the consumer's error, and so does the consumer's own consumer. */
TEST(inproc_consumer_fails_mid_stream)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(1);
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    struct gen_state g = {0, -1};
    dagger_task_t *x = dagger_spawn(ctx, gen, (void *)&g);
    dagger_task_t *y = dagger_spawn(ctx, picky, (int64_t)5, x);
    dagger_task_t *z = dagger_spawn(ctx, picky, (int64_t)-1, y);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_task_errmsg(y), "value 5 is out of range");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "value 5 is out of range");
    ASSERT_ERR(dagger_fetch(z, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(z), "value 5 is out of range");
    ASSERT_TRUE(g.k >= 6 && g.k <= 8); /* one slot, one value in hand: at most two ahead */
    dagger_task_release(x);
    dagger_task_release(y);
    dagger_task_release(z);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The producer fails at value 5: its consumers end with its error, not with a clean end. */
TEST(inproc_producer_fails_mid_stream)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    struct gen_state g = {0, 5};
    dagger_task_t *x = dagger_spawn(ctx, gen, (void *)&g);
    dagger_task_t *y = dagger_spawn(ctx, picky, (int64_t)-1, x);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EIO);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "the generator broke at value 5");
    ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(y), "the streaming region stopped because");
    ASSERT_STR_HAS(dagger_task_errmsg(y), "the generator broke at value 5");
    dagger_task_release(x);
    dagger_task_release(y);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

static void shm_uri(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "shm:/dagger_sfail_%s_%d?cap=65536", tag, (int)getpid());
}

/* pop_some(uri, n): opens the consumer end, pops n values, then fails and closes its end. */
static int pop_some(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    int64_t n = dagger_arg_i64(a, 1);
    dagger_edge_t *in;
    int rc = dagger_edge_open(&in, dagger_arg_str(a, 0), DAGGER_EDGE_POP);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    for (int64_t i = 0; i < n; i++) {
        dagger_value_t v;
        if ((rc = dagger_edge_pop(in, &v, 10000)) != 0) {
            dagger_fail(tc, rc, "pop %lld: %s", (long long)i, dagger_edge_errmsg(in));
            dagger_edge_close(in);
            return rc;
        }
    }
    rc = dagger_fail(tc, DAGGER_ERANGE, "value %lld is out of range", (long long)n);
    dagger_edge_close(in); /* after dagger_fail: aborted */
    return rc;
}

/* push_some(uri, n): opens the producer end, pushes 0..n-1, then fails and closes its end. */
static int push_some(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    int64_t n = dagger_arg_i64(a, 1);
    dagger_edge_t *e;
    int rc = dagger_edge_open(&e, dagger_arg_str(a, 0), DAGGER_EDGE_PUSH);
    if (rc)
        return dagger_fail(tc, rc, "open: %s", dagger_last_errmsg());
    for (int64_t i = 0; i < n; i++) {
        dagger_value_t v = dagger_i64(i);
        if ((rc = dagger_edge_push_timed(e, &v, 10000)) != 0) {
            dagger_fail(tc, rc, "push %lld: %s", (long long)i, dagger_edge_errmsg(e));
            dagger_edge_close(e);
            return rc;
        }
    }
    rc = dagger_fail(tc, DAGGER_EIO, "the camera stopped after %lld frames", (long long)n);
    dagger_edge_close(e); /* after dagger_fail: aborted, no END */
    return rc;
}

/* A region gen -> edge sink(shm) whose consumer, a task here, fails before it opens its end:
 * the sink watches that task and fails with its error once the ring is full, instead of
 * waiting for room forever. */
TEST(shm_consumer_fails_before_opening)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    char uri[96];
    shm_uri(uri, sizeof uri, "before");
    dagger_edge_t *out;
    ASSERT_OK(dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH));
    dagger_task_t *c = dagger_spawn(ctx, unplugged);
    ASSERT_OK(dagger_edge_watch(out, c));
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    struct gen_state g = {0, -1};
    dagger_task_t *x = dagger_spawn(ctx, gen, (void *)&g);
    dagger_task_t *k = dagger_stream_spawn_edge_sink(s, out, x);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(k, NULL), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(k), "the task at the other end failed");
    ASSERT_STR_HAS(dagger_task_errmsg(k), "'unplugged': sensor 3 is unplugged");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "sensor 3 is unplugged");
    dagger_task_release(k);
    dagger_task_release(x);
    dagger_task_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The consumer task pops 3 values, fails and closes its end: the end is aborted, so the
 * region's sink fails with DAGGER_EPEER instead of ending cleanly with values lost. */
TEST(shm_consumer_fails_after_opening)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    char uri[96];
    shm_uri(uri, sizeof uri, "after");
    dagger_edge_t *out;
    ASSERT_OK(dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH));
    dagger_task_t *c = dagger_spawn(ctx, pop_some, dagger_str(uri), (int64_t)3);
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    struct gen_state g = {0, -1};
    dagger_task_t *x = dagger_spawn(ctx, gen, (void *)&g);
    dagger_task_t *k = dagger_stream_spawn_edge_sink(s, out, x);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(c, NULL), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_task_errmsg(c), "value 3 is out of range");
    ASSERT_ERR(dagger_fetch(k, NULL), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(k),
                   "went away without closing; the consumer: on rank 0, task");
    ASSERT_STR_HAS(dagger_task_errmsg(k), "value 3 is out of range");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    dagger_task_release(k);
    dagger_task_release(x);
    dagger_task_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The producer task pushes 4 values, fails and closes its end: the region's edge source gets
 * the 4 values and then DAGGER_EPEER (no clean end), and its consumer fails in turn. */
TEST(shm_producer_fails_mid_stream)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    char uri[96];
    shm_uri(uri, sizeof uri, "mid");
    dagger_edge_t *in;
    ASSERT_OK(dagger_edge_open(&in, uri, DAGGER_EDGE_POP));
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in);
    dagger_task_t *y = dagger_spawn(ctx, picky, (int64_t)-1, src);
    ASSERT_OK(dagger_stream_end(s));
    dagger_task_t *p = dagger_spawn(ctx, push_some, dagger_str(uri), (int64_t)4);
    ASSERT_ERR(dagger_fetch(p, NULL), DAGGER_EIO);
    ASSERT_STR_HAS(dagger_task_errmsg(p), "the camera stopped after 4 frames");
    ASSERT_ERR(dagger_fetch(src, NULL), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(src),
                   "died without closing, after 4 values; the producer: on rank 0, task");
    ASSERT_STR_HAS(dagger_task_errmsg(src), "the camera stopped after 4 frames");
    ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(y), "died without closing");
    dagger_task_release(p);
    dagger_task_release(src);
    dagger_task_release(y);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

/* The same over UDP or TCP (consumer_uri: its end, listening): the failed producer's
 * END|ABORT carries its message to the source. */
static void producer_fails_over(const char *consumer_uri)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    dagger_edge_t *in;
    ASSERT_OK(dagger_edge_open(&in, consumer_uri, DAGGER_EDGE_POP));
    char uri[300];
    const char *u = dagger_edge_uri(in), *role = strstr(u, "role=listen");
    if (role) /* the producer connects */
        snprintf(uri, sizeof uri, "%.*srole=connect%s", (int)(role - u), u, role + 11);
    else
        snprintf(uri, sizeof uri, "%s", u);
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in);
    dagger_task_t *y = dagger_spawn(ctx, picky, (int64_t)-1, src);
    ASSERT_OK(dagger_stream_end(s));
    dagger_task_t *p = dagger_spawn(ctx, push_some, dagger_str(uri), (int64_t)4);
    ASSERT_ERR(dagger_fetch(p, NULL), DAGGER_EIO);
    ASSERT_ERR(dagger_fetch(src, NULL), DAGGER_EPEER);
    const char *msg = dagger_task_errmsg(src);
    ASSERT_STR_HAS(msg, "the producer failed after 4 values");
    ASSERT_STR_HAS(msg, "the producer: on rank 0, task");
    ASSERT_STR_HAS(msg, "the camera stopped after 4 frames");
    ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(y), "the camera stopped after 4 frames");
    dagger_task_release(p);
    dagger_task_release(src);
    dagger_task_release(y);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

TEST(udp_producer_fails_mid_stream) { producer_fails_over("udp://127.0.0.1:0"); }
TEST(tcp_producer_fails_mid_stream) { producer_fails_over("tcp://127.0.0.1:0?role=listen"); }

/* A streaming task that fails after its region started (the edge ends below are waiting). */
static int late_fail(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    usleep(100000);
    return dagger_fail(tc, DAGGER_EIO, "the lens cracked");
}

/* An edge source on a silent edge and an edge sink on a full one wait on their edges when
 * another task of the region fails: both fail with its error, and neither reports the count of
 * values so far as if its stream had ended (a source stopped there gave 0 values and no error). */
TEST(edge_ends_waiting_on_their_edges_fail_with_the_region)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    char uin[96], uout[96];
    shm_uri(uin, sizeof uin, "silent");
    shm_uri(uout, sizeof uout, "full");
    dagger_edge_t *in, *out;
    ASSERT_OK(dagger_edge_open(&in, uin, DAGGER_EDGE_POP));    /* nobody pushes */
    ASSERT_OK(dagger_edge_open(&out, uout, DAGGER_EDGE_PUSH)); /* nobody pops */
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in);
    dagger_task_t *y = dagger_spawn(ctx, picky, (int64_t)-1, src);
    struct gen_state g = {0, -1};
    dagger_task_t *x = dagger_spawn(ctx, gen, (void *)&g);
    dagger_task_t *k = dagger_stream_spawn_edge_sink(s, out, x);
    dagger_task_t *f = dagger_spawn(ctx, late_fail);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(f, NULL), DAGGER_EIO);
    dagger_task_t *stopped[] = {src, y, x, k};
    for (int i = 0; i < 4; i++) {
        ASSERT_ERR(dagger_fetch(stopped[i], NULL), DAGGER_EUPSTREAM);
        ASSERT_STR_HAS(dagger_task_errmsg(stopped[i]), "the lens cracked");
        dagger_task_release(stopped[i]);
    }
    dagger_task_release(f);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

static int fine(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    *out = dagger_i64(1);
    return 0;
}

/* A watched end keeps the caller's timeout (cut into slices, the note says the whole wait),
 * a watched task that ends well changes nothing, and one that fails fails every later call,
 * sticky, with its message. */
TEST(watch_keeps_timeouts_and_ignores_success)
{
    alarm(WATCHDOG_S);
    dagger_ctx_t *ctx = open_ctx(2);
    char uri[96];
    shm_uri(uri, sizeof uri, "watch");
    dagger_edge_t *in, *out;
    ASSERT_OK(dagger_edge_open(&in, uri, DAGGER_EDGE_POP));
    ASSERT_OK(dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH));
    dagger_task_t *ok = dagger_spawn(ctx, fine);
    ASSERT_OK(dagger_fetch(ok, NULL));
    ASSERT_OK(dagger_edge_watch(in, ok));
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(in, &v, 130), DAGGER_ETIMEDOUT);
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "(the call waited 130 ms in all)");
    ASSERT_EQ(dagger_edge_poll(in, 0), 0);
    dagger_value_t one = dagger_i64(41);
    ASSERT_OK(dagger_edge_push(out, &one));
    ASSERT_OK(dagger_edge_flush(out, 1000));
    ASSERT_OK(dagger_edge_pop(in, &v, 1000));
    ASSERT_EQ(v.u.i, 41);
    dagger_task_t *bad = dagger_spawn(ctx, unplugged);
    ASSERT_ERR(dagger_fetch(bad, NULL), DAGGER_EIO);
    ASSERT_OK(dagger_edge_watch(out, bad));
    ASSERT_ERR(dagger_edge_push(out, &one), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_edge_errmsg(out), "the task at the other end failed");
    ASSERT_STR_HAS(dagger_edge_errmsg(out), "sensor 3 is unplugged");
    ASSERT_ERR(dagger_edge_flush(out, 0), DAGGER_EPEER); /* sticky */
    ASSERT_OK(dagger_edge_close(out));
    ASSERT_OK(dagger_edge_close(in));
    dagger_task_release(ok);
    dagger_task_release(bad);
    ASSERT_OK(dagger_ctx_close(ctx));
    alarm(0);
}

TEST_LIST(inproc_consumer_fails_before_running, inproc_consumer_fails_mid_stream,
          inproc_producer_fails_mid_stream, shm_consumer_fails_before_opening,
          shm_consumer_fails_after_opening, shm_producer_fails_mid_stream,
          udp_producer_fails_mid_stream, tcp_producer_fails_mid_stream,
          edge_ends_waiting_on_their_edges_fail_with_the_region,
          watch_keeps_timeouts_and_ignores_success)
