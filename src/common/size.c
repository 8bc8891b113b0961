/* src/common/size.c - the one parser of sizes and counts in environment variables.
 *
 * "65536", "512k", "4M", "2GiB", "1t": decimal, an optional k/m/g/t suffix (powers of 1024),
 * an optional "i" and "B". Anything else, or a value that overflows, is refused; so is a sign
 * or a space before the digits (strtoull would take "-1" for 2^64 - 1: fuzz_parse found it).
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

#include "common/common.h"

int dagger__parse_size(const char *s, size_t *out)
{
    if (!isdigit((unsigned char)*s))
        return DAGGER_EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno)
        return DAGGER_EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0' || (shift && v > (~0ull >> shift)))
        return DAGGER_EINVAL;
    *out = (size_t)(v << shift);
    return 0;
}
