/* tests/fuzz/fuzz_parse.c - libFuzzer harness: the small text parsers that read what users put
 * in options and the environment, and what the kernel puts in cgroup files.
 *
 * Byte 0 picks the parser, the rest is the text (NUL-terminated):
 *   0  dagger__parse_size (DAGGER_* sizes): an accepted text starts with a digit and its value
 *      prints and parses back the same; a refused one leaves the output alone.
 *   1  dagger__topo_parse_cpu_max (cgroup cpu.max, "QUOTA PERIOD"): -1, 0 or 1..2^20 CPUs, with
 *      no signed overflow (UBSan) on extreme quotas and periods.
 *   2  dagger_scope_from_string (DAGGER_SCOPE-like specs): a scope, or DAGGER_EINVAL with a
 *      message naming the function; a scope formats without overrunning its buffer and compares
 *      equal to itself.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "dagger.h"
#include "pool/pool.h"

static void size_case(const char *s)
{
    size_t v = 12345;
    int rc = dagger__parse_size(s, &v);
    if (rc) {
        if (rc != DAGGER_EINVAL || v != 12345)
            abort();
        return;
    }
    if (!isdigit((unsigned char)s[0]))
        abort(); /* a sign, a space or nothing before the number: not a size */
    char buf[32];
    snprintf(buf, sizeof buf, "%zu", v);
    size_t w = 0;
    if (dagger__parse_size(buf, &w) != 0 || w != v)
        abort();
}

static void cpu_case(const char *s)
{
    int n = dagger__topo_parse_cpu_max(s);
    if (n < -1 || n > 1 << 20)
        abort();
}

static void scope_case(const char *s)
{
    dagger_scope_t *sc = (dagger_scope_t *)1;
    int rc = dagger_scope_from_string(s, &sc);
    if (rc) {
        if (sc || (rc != DAGGER_EINVAL && rc != DAGGER_ENOMEM) ||
            strncmp(dagger_last_errmsg(), "dagger_scope_from_string: ", 26) != 0)
            abort();
        return;
    }
    if (!sc || !dagger_scope_equal(sc, sc))
        abort();
    char small[8], big[4096];
    memset(small, 0x5A, sizeof small);
    int need = dagger_scope_format(sc, small, 4);
    if (need < 0 || small[4] != 0x5A ||
        (need >= 4 ? strlen(small) != 3 : (int)strlen(small) != need))
        abort();
    int need2 = dagger_scope_format(sc, big, sizeof big);
    if (need2 != need || (need < (int)sizeof big && (int)strlen(big) != need))
        abort();
    dagger_scope_release(sc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 3) {
    case 0:
        size_case(s);
        break;
    case 1:
        cpu_case(s);
        break;
    default:
        scope_case(s);
        break;
    }
    free(s);
    return 0;
}
