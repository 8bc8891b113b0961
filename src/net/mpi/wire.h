/* src/net/mpi/wire.h - little-endian message buffers for the MPI backend (every integer is 8
 * bytes on the wire: simple, and control messages are small).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_NET_MPI_WIRE_H
#define DAGGER_SRC_NET_MPI_WIRE_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct wbuf {
    uint8_t *p; /* dagger__realloc'd */
    size_t len, cap;
    bool oom; /* sticky: an append ran out of memory */
};

struct rbuf {
    const uint8_t *p;
    size_t len, pos;
    bool bad; /* sticky: a read ran past the end */
};

void wb_bytes(struct wbuf *b, const void *p, size_t n);
void wb_str(struct wbuf *b, const char *s);
void *wb_reserve(struct wbuf *b, size_t n);
const void *rb_bytes(struct rbuf *b, size_t n);
void rb_str(struct rbuf *b, char *out, size_t cap);

/* The integers, inline: a task's round trip writes and reads about 50 of them, and a call each
 * (with the byte loop) was about 1000 instructions per round trip on each rank (callgrind). */
static inline void wb_u64(struct wbuf *b, uint64_t x)
{
    uint64_t le = htole64(x);
    if (__builtin_expect(!b->oom && b->cap - b->len >= 8, 1)) {
        memcpy(b->p + b->len, &le, 8);
        b->len += 8;
        return;
    }
    wb_bytes(b, &le, 8); /* grows the buffer, or marks it out of memory */
}

static inline void wb_u32(struct wbuf *b, uint32_t x) { wb_u64(b, x); }

static inline uint64_t rb_u64(struct rbuf *b)
{
    if (__builtin_expect(b->bad || b->len - b->pos < 8, 0)) {
        b->bad = true;
        return 0;
    }
    uint64_t le;
    memcpy(&le, b->p + b->pos, 8);
    b->pos += 8;
    return le64toh(le);
}

static inline uint32_t rb_u32(struct rbuf *b) { return (uint32_t)rb_u64(b); }

#endif /* DAGGER_SRC_NET_MPI_WIRE_H */
