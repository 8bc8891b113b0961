/* tests/test_broker_abort.c - a failed producer reaches its consumers through a broker.
 *
 * A broker never tells a subscriber that a publisher is gone, so a producer's edge that closes
 * without a clean end (its region failed, or an allocation failed) publishes END|ABORT
 * (src/net/msg.c): the consumer's pop fails with DAGGER_EPEER and a message saying the stream is
 * incomplete, instead of waiting for ever. Each case starts its own broker (broker_proc.h) and
 * skips (77) when the transport is not built or the broker is not installed.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <unistd.h>

#include "broker_proc.h"
#include "harness.h"
#include "dagger/net.h"
#include "dagger/stream.h"

static struct broker B;

static void stop_b_(void) { broker_destroy(&B); }

static void need_broker(enum broker_kind k)
{
    int built = k == BROKER_MQTT ? DAGGER_TEST_HAVE_MQTT : DAGGER_TEST_HAVE_NATS;
    if (!built)
        SKIP("this build has no %s transport", k == BROKER_MQTT ? "MQTT" : "NATS");
    int rc = broker_start_tls(&B, k, NULL, NULL, 0);
    if (rc == 77)
        SKIP("%s is not installed", k == BROKER_MQTT ? "mosquitto" : "nats-server");
    if (rc < 0)
        fail_msg("could not start the %s broker", k == BROKER_MQTT ? "MQTT" : "NATS");
    atexit(stop_b_);
}

enum { GOOD = 5 };

/* Emits 0 .. GOOD-1, then fails. */
static int five_then_fail(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *k = dagger_arg_ptr(a, 0);
    if (*k == GOOD)
        return dagger_fail(tc, DAGGER_ETASK, "the source broke after %d values", GOOD);
    *out = dagger_i64((*k)++);
    return 0;
}

static void failed_region_is_epeer(enum broker_kind kind)
{
    need_broker(kind);
    char uri[256];
    if (kind == BROKER_MQTT)
        snprintf(uri, sizeof uri, "mqtt://127.0.0.1:%d/dagger/%d/abort", B.port, (int)getpid());
    else
        snprintf(uri, sizeof uri, "nats://127.0.0.1:%d/dagger.%d.abort", B.port, (int)getpid());
    dagger_edge_t *in = NULL, *out = NULL;
    ASSERT_OK(dagger_edge_open(&in, uri, DAGGER_EDGE_POP)); /* subscribed before any push */
    ASSERT_OK(dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH));
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    int64_t next = 0;
    dagger_task_t *x = dagger_spawn(ctx, five_then_fail, (void *)&next);
    dagger_task_t *sink = dagger_stream_spawn_edge_sink(s, out, x); /* consumes `out` */
    ASSERT_PTR(sink);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ETASK);
    ASSERT_TRUE(dagger_fetch(sink, NULL) != 0); /* stopped by the failure: its edge aborted */
    /* The values the sink pushed before the failure stopped it arrive in order, then the
     * abort: never a clean end (DAGGER_ECLOSED) and never a wait without end. */
    dagger_value_t v;
    int rc;
    int64_t n = 0;
    while ((rc = dagger_edge_pop(in, &v, 10000)) == 0) {
        ASSERT_EQ(v.kind, DAGGER_KIND_I64);
        ASSERT_EQ(v.u.i, n);
        n++;
    }
    ASSERT_ERR(rc, DAGGER_EPEER);
    ASSERT_TRUE(n <= GOOD);
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "the producer failed after");
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "the stream is incomplete");
    /* END|ABORT carries the reason: the failed task, its rank and its message */
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "the producer: on rank 0, task");
    ASSERT_STR_HAS(dagger_edge_errmsg(in), "the source broke after 5 values");
    ASSERT_ERR(dagger_edge_pop(in, &v, 0), DAGGER_EPEER); /* sticky */
    ASSERT_OK(dagger_edge_close(in));
    dagger_task_release(x);
    dagger_task_release(sink);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(mqtt_failed_region_is_epeer) { failed_region_is_epeer(BROKER_MQTT); }
TEST(nats_failed_region_is_epeer) { failed_region_is_epeer(BROKER_NATS); }

TEST_LIST(mqtt_failed_region_is_epeer, nats_failed_region_is_epeer)
