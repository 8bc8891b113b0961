/* tests/net_harness.h - what the edge test programs share: opening an edge or a pair of them,
 * failing the case with dagger's message. Include after harness.h.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TESTS_NET_HARNESS_H
#define DAGGER_TESTS_NET_HARNESS_H

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

#endif /* DAGGER_TESTS_NET_HARNESS_H */
