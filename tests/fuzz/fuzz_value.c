/* tests/fuzz/fuzz_value.c - libFuzzer harness: dagger_value_decode on hostile bytes.
 *
 * Decodes values one after the other; each decoded value must encode back to the same bytes
 * (a round trip), and no length may be read past the input.
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dagger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    size_t off = 0;
    while (off < size) {
        dagger_value_t v;
        long n = dagger_value_decode(buf + off, size - off, &v);
        if (n <= 0)
            break;
        if ((size_t)n > size - off)
            abort(); /* consumed more than it was given */
        if (v.kind != DAGGER_KIND_TASK) {
            long m = dagger_value_encode(&v, NULL, 0);
            if (m != n)
                abort(); /* the encoding of a decoded value differs in size */
        }
        off += (size_t)n;
    }
    free(buf);
    return 0;
}
