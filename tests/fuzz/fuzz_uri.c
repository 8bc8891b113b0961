/* tests/fuzz/fuzz_uri.c - libFuzzer harness: the edge URI parser and its parameter readers.
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct dagger__uri u;
    char err[160];
    if (dagger__uri_parse(text, &u, err, sizeof err) == 0) {
        static const char *const keys[] = {"max", "cap", "batch", "secret", "role", NULL};
        int64_t v;
        char secret[256];
        (void)dagger__uri_check_keys(&u, keys, err, sizeof err);
        for (int i = 0; i < u.nparams; i++)
            (void)dagger__uri_int(&u, u.params[i].key, 0, -1000000, 1000000, &v, err, sizeof err);
        (void)dagger__uri_secret(&u, secret, sizeof secret, err, sizeof err);
        if (strlen(u.host) >= sizeof u.host || strlen(u.path) >= sizeof u.path)
            abort();
    }
    free(text);
    return 0;
}
