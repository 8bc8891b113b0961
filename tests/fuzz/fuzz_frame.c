/* tests/fuzz/fuzz_frame.c - libFuzzer harness: frame headers and DATA payloads (src/net).
 *
 * The first byte picks the payload limit; the rest is read as frames back to back, the way
 * the TCP consumer and the shm ring parse them in place.
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t limit = data[0] & 1 ? 1u << 20 : 64;
    uint8_t *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    size_t off = 0, n = size - 1;
    char err[160];
    while (n - off >= DAGGER__FRAME_HDR) {
        struct dagger__frame f;
        if (dagger__frame_get(buf + off, limit, &f, err, sizeof err) < 0)
            break;
        if (f.len > limit)
            abort(); /* the header check let an oversized length through */
        if (f.len > n - off - DAGGER__FRAME_HDR)
            break;
        if (f.kind == DAGGER__FRAME_DATA) {
            dagger_value_t v;
            if (dagger__frame_value_read(&f, buf + off + DAGGER__FRAME_HDR, &v, err, sizeof err) ==
                    0 &&
                (v.kind == DAGGER_KIND_STR || v.kind == DAGGER_KIND_BLOB) && v.len > f.len)
                abort(); /* a value longer than its frame */
        }
        off += DAGGER__FRAME_HDR + f.len;
    }
    free(buf);
    return 0;
}
