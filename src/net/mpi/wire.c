/* src/net/mpi/wire.c - little-endian message buffers for the MPI backend.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/alloc.h"
#include "net/mpi/wire.h"

static bool grow(struct wbuf *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *p = dagger__realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void wb_bytes(struct wbuf *b, const void *p, size_t n)
{
    if (n && grow(b, n)) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

void wb_str(struct wbuf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    wb_u64(b, n);
    wb_bytes(b, s, n);
}

void *wb_reserve(struct wbuf *b, size_t n)
{
    if (!grow(b, n))
        return NULL;
    b->len += n;
    return b->p + b->len - n;
}

const void *rb_bytes(struct rbuf *b, size_t n)
{
    if (b->bad || n > b->len - b->pos) {
        b->bad = true;
        return NULL;
    }
    b->pos += n;
    return b->p + b->pos - n;
}

/* A string into `out` (cap bytes, NUL-terminated, truncated). */
void rb_str(struct rbuf *b, char *out, size_t cap)
{
    uint64_t n = rb_u64(b);
    const char *s = rb_bytes(b, n);
    size_t k = s ? (n < cap - 1 ? n : cap - 1) : 0;
    if (k)
        memcpy(out, s, k);
    out[k] = 0;
}
