/* tests/fuzz/fuzz_frame.c - libFuzzer harness: frame headers, DATA payloads and the values of
 * BATCH and PACKED frames (src/net).
 *
 * The first byte picks the payload limit; the rest is read as frames back to back, the way
 * the TCP consumer and the shm ring parse them in place; a batch's values are read one by one
 * until they are done or one is refused, and again with dagger__batch_copy_n in runs.
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
        if (f.kind == DAGGER__FRAME_BATCH
                ? f.len > DAGGER__BATCH_MAX || f.count == 0 || f.count > f.len / 4
            : f.kind == DAGGER__FRAME_PACKED
                ? f.len > DAGGER__BATCH_MAX || f.count == 0 || f.count > f.len || f.len % f.count
                : f.len > limit || f.count != 0)
            abort(); /* the header check let an oversized length or a bad count through */
        if (f.len > n - off - DAGGER__FRAME_HDR)
            break;
        if (f.kind == DAGGER__FRAME_DATA) {
            dagger_value_t v;
            if (dagger__frame_value_read(&f, buf + off + DAGGER__FRAME_HDR, &v, err, sizeof err) ==
                    0 &&
                (v.kind == DAGGER_KIND_STR || v.kind == DAGGER_KIND_BLOB) && v.len > f.len)
                abort(); /* a value longer than its frame */
        }
        struct dagger__batch b;
        if (dagger__frame_is_batch(f.kind) &&
            dagger__batch_begin(&f, limit, &b, err, sizeof err) == 0) {
            const unsigned char *p = buf + off + DAGGER__FRAME_HDR;
            /* Runs of 3 values of the first value's size, copied out (the values copied are
             * the bytes of their records), then one by one. */
            struct dagger__batch r = b;
            dagger_value_t v0;
            unsigned char out[3 * 256];
            if (dagger__batch_next(&f, p, &r, limit, f.seq, &v0, err, sizeof err) == 0 &&
                v0.kind == DAGGER_KIND_BLOB && v0.len >= 1 && v0.len <= 256) {
                r = b;
                uint32_t m = r.left < 3 ? r.left : 3, at = r.off, left = r.left;
                uint32_t k = dagger__batch_copy_n(&f, p, &r, v0.len, out, m);
                if (k > m || r.left != left - k || r.off < at || r.off > f.len ||
                    (k && memcmp(out, v0.u.p, v0.len) != 0))
                    abort(); /* copied too many, miscounted, or not the first value's bytes */
            }
            uint32_t got = 0;
            for (;;) {
                dagger_value_t v;
                uint32_t at = b.off;
                if (dagger__batch_next(&f, p, &b, limit, f.seq + got, &v, err, sizeof err) < 0)
                    break;
                got++;
                if (b.off <= at || b.off > f.len || b.left != f.count - got)
                    abort(); /* the cursor went backwards, past the frame or miscounted */
                if ((v.kind == DAGGER_KIND_STR || v.kind == DAGGER_KIND_BLOB) &&
                    (v.len > limit ||
                     (v.len && ((const unsigned char *)v.u.p < p ||
                                (const unsigned char *)v.u.p + v.len > p + f.len))))
                    abort(); /* a value outside its record */
                if (b.left == 0) {
                    if (b.off != f.len)
                        abort(); /* the last record does not end the frame */
                    break;
                }
            }
        }
        off += DAGGER__FRAME_HDR + f.len;
    }
    free(buf);
    return 0;
}
