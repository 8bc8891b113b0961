/* tests/net_harness.h - what the edge test programs share: opening an edge or a pair of them,
 * failing the case with dagger's message. Include after harness.h.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TESTS_NET_HARNESS_H
#define DAGGER_TESTS_NET_HARNESS_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dagger/net.h"
#include "harness.h"

#define OPEN_OK(e, uri, flags)                                                                     \
    do {                                                                                           \
        int rc__ = dagger_edge_open((e), (uri), (flags));                                          \
        if (rc__ < 0)                                                                              \
            fail_msg("dagger_edge_open(%s) = %s: %s", (uri), dagger_err_name(rc__),                \
                     dagger_edge_errmsg(NULL));                                                    \
    } while (0)

/* A pair of ends: shm:/dagger-<name>-<pid>-<tag> (both opened here) or TCP on 127.0.0.1 (a
 * listening consumer and a producer that connects in its first call), with secret `name`.
 * `extra` is "" or "&key=value..." appended to the query. */
static inline void net_edge_pair(int tcp, const char *name, const char *tag, const char *extra,
                                 dagger_edge_t **p, dagger_edge_t **c)
{
    char uri[256];
    if (tcp) {
        snprintf(uri, sizeof uri, "tcp://127.0.0.1:0?role=listen&secret=%s%s", name, extra);
        OPEN_OK(c, uri, DAGGER_EDGE_POP);
        const char *port = strrchr(dagger_edge_uri(*c), ':');
        ASSERT_PTR(port);
        snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d?secret=%s%s", atoi(port + 1), name, extra);
        OPEN_OK(p, uri, DAGGER_EDGE_PUSH);
    } else {
        snprintf(uri, sizeof uri, "shm:/dagger-%s-%d-%s%s%s", name, (int)getpid(), tag,
                 *extra ? "?" : "", *extra ? extra + 1 : "");
        OPEN_OK(p, uri, DAGGER_EDGE_PUSH);
        OPEN_OK(c, uri, DAGGER_EDGE_POP);
    }
}

/* What a producer thread of a stream reports: its error code and message (0, "": none). */
struct net_prod_end {
    int rc;
    char msg[256];
};

/* A producer thread's last step: the message of its error, if it has none yet, then the close
 * of its end `e` (whose error is the report's when there was none before). */
static inline void net_prod_finish(dagger_edge_t *e, struct net_prod_end *pe)
{
    if (pe->rc && !pe->msg[0])
        snprintf(pe->msg, sizeof pe->msg, "%s", dagger_edge_errmsg(e));
    int rc = dagger_edge_close(e);
    if (!pe->rc)
        pe->rc = rc;
}

/* The end of a stream of `n` values checked on its consumer `c`, after the consumer saw the
 * clean end: the producer thread `th` ended well (else its report `pe` fails the case), no
 * value was wrong (`bad` of them, the first at `first_bad`) and `c` counted `n` values. Closes
 * `c`. */
static inline void net_stream_end(dagger_edge_t *c, pthread_t th, const struct net_prod_end *pe,
                                  long bad, long first_bad, long n)
{
    ASSERT_EQ(pthread_join(th, NULL), 0);
    if (pe->rc)
        fail_msg("producer: %s: %s", dagger_err_name(pe->rc), pe->msg);
    if (bad)
        fail_msg("%ld values wrong or out of order, the first at %ld", bad, first_bad);
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.values, (uint64_t)n);
    ASSERT_OK(dagger_edge_close(c));
}

#endif /* DAGGER_TESTS_NET_HARNESS_H */
