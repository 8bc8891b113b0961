/* tests/fuzz/fuzz_tcp.c - libFuzzer harness: a TCP listening consumer fed hostile bytes.
 *
 * The first byte chooses a listener with or without a secret (and with encrypt=1); the rest
 * is written by a raw client on 127.0.0.1, which then hangs up. The listener pops until the
 * stream fails or ends: it must refuse the client or report a clean error, never crash.
 * SPDX-License-Identifier: MIT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dagger.h"
#include "dagger/net.h"

static const char *const uris[] = {
    "tcp://127.0.0.1:0?role=listen&handshake_ms=100",
    "tcp://127.0.0.1:0?role=listen&secret=fuzz&handshake_ms=100",
    "tcp://127.0.0.1:0?role=listen&secret=fuzz&encrypt=1&handshake_ms=100",
    "tcp://127.0.0.1:0?role=listen&max=64&handshake_ms=100",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* A burst of inputs can use up the ephemeral ports of 127.0.0.1 for a moment (each input
     * takes a listening port and a client port, and a side that closed first keeps its pair in
     * TIME_WAIT): wait a little for them, and skip the input if none frees up. That is the
     * machine's limit, not a finding. */
    dagger_edge_t *e = NULL;
    int fd = -1, err = 0;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        if (tries)
            usleep(10000);
        if (!e && dagger_edge_open(&e, uris[data[0] % 4], DAGGER_EDGE_POP) < 0) {
            e = NULL;
            continue;
        }
        const char *p = strrchr(dagger_edge_uri(e), ':');
        int port = p ? atoi(p + 1) : 0;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            err = errno;
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        fprintf(stderr, "fuzz_tcp: input skipped: %s\n", e ? strerror(err) : dagger_last_errmsg());
        if (e && dagger_edge_close(e)) {
        }
        return 0;
    }
    /* Closed with a reset, not into TIME_WAIT: a minute of inputs would otherwise use up the
     * ephemeral ports of 127.0.0.1, and connect would fail (EADDRNOTAVAIL). */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    size_t off = 1;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 10000; i++) {
        dagger_value_t v;
        int rc = dagger_edge_pop(e, &v, 1);
        if (rc == DAGGER_ETIMEDOUT) {
            dagger_edge_stats_t st;
            dagger_edge_stats(e, &st);
            if (st.rejected) /* the client was refused: nobody else will come */
                break;
            continue;
        }
        if (rc < 0)
            break;
    }
    close(fd);
    if (dagger_edge_close(e)) {
    }
    return 0;
}
