/* tests/fuzz/fuzz_udp.c - libFuzzer harness: UDP consumers fed hostile datagrams.
 *
 * The input is split into datagrams at each 0xff 0xfe 0xfd marker and sent on 127.0.0.1 to a
 * consumer without a secret and one with a secret; both pop until the socket is empty.
 * SPDX-License-Identifier: MIT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dagger.h"
#include "dagger/net.h"

static dagger_edge_t *open_consumer(const char *uri, int *port)
{
    dagger_edge_t *e;
    if (dagger_edge_open(&e, uri, DAGGER_EDGE_POP) < 0)
        abort();
    const char *p = strrchr(dagger_edge_uri(e), ':');
    *port = p ? atoi(p + 1) : 0;
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const uris[2] = {"udp://127.0.0.1:0",
                                        "udp://127.0.0.1:0?secret=fuzz&skew_ms=86400000"};
    static int fd = -1;
    if (fd < 0)
        fd = socket(AF_INET, SOCK_DGRAM, 0);
    for (int k = 0; k < 2; k++) {
        int port;
        dagger_edge_t *e = open_consumer(uris[k], &port);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        size_t start = 0;
        for (size_t i = 0; i <= size; i++) {
            int cut = i == size || (i + 3 <= size && data[i] == 0xff && data[i + 1] == 0xfe &&
                                    data[i + 2] == 0xfd);
            if (!cut)
                continue;
            if (sendto(fd, data + start, i - start, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
            }
            start = i + 3;
            i += 2;
        }
        for (int i = 0; i < 1000; i++) {
            dagger_value_t v;
            if (dagger_edge_pop(e, &v, 0) < 0)
                break;
        }
        if (dagger_edge_close(e)) {
        }
    }
    return 0;
}
