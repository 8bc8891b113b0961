/* tests/fuzz/fuzz_shm.c - libFuzzer harness: the shm ring consumer over a hostile data area.
 *
 * A consumer opens a fresh ring file; the harness, playing a producer gone rogue, writes the
 * input into the data area and publishes it (head, sent, closed), then the consumer pops until
 * the ring fails or ends. The header page layout mirrors src/net/shm.c (struct ring_hdr).
 * SPDX-License-Identifier: MIT
 */
#include <fcntl.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dagger.h"
#include "dagger/net.h"

/* The shared fields the producer writes; the same layout as struct ring_hdr in shm.c. */
struct hdr_view {
    uint64_t magic;
    uint32_t version, hdr_bytes;
    uint64_t cap;
    uint32_t max_payload, auth;
    uint8_t salt[16], secret_hash[32];
    alignas(64) _Atomic uint64_t head;
    _Atomic uint64_t sent;
    _Atomic uint32_t closed;
};

enum { CAP = 64 * 1024, HDR = 4096 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[64];
    static unsigned n;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/dagger-fuzz-shm-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    char uri[160], path[160];
    snprintf(uri, sizeof uri, "shm:/r%u?dir=%s&cap=%d&slice_ms=1", n, dir, CAP);
    snprintf(path, sizeof path, "%s/r%u", dir, n);
    n++;
    dagger_edge_t *e;
    if (dagger_edge_open(&e, uri, DAGGER_EDGE_POP) < 0)
        abort();
    int fd = open(path, O_RDWR);
    if (fd < 0)
        abort();
    void *m = mmap(NULL, HDR + CAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        abort();
    struct hdr_view *h = m;
    size_t len = size < CAP ? size : CAP;
    memcpy((char *)m + HDR, data, len);
    atomic_store(&h->head, (len + 7) & ~(uint64_t)7);
    atomic_store(&h->sent, 1000);
    atomic_store(&h->closed, 1);
    for (int i = 0; i < 10000; i++) {
        dagger_value_t v;
        if (dagger_edge_pop(e, &v, 0) < 0)
            break;
    }
    munmap(m, HDR + CAP);
    if (dagger_edge_close(e)) {
    }
    unlink(path);
    return 0;
}
