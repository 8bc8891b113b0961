/* src/net/mpi/wire.h - little-endian message buffers for the MPI backend (every integer is 8
 * bytes on the wire: simple, and control messages are small).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_NET_MPI_WIRE_H
#define DAGGER_SRC_NET_MPI_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
void wb_u64(struct wbuf *b, uint64_t x);
void wb_u32(struct wbuf *b, uint32_t x);
void wb_str(struct wbuf *b, const char *s);
void *wb_reserve(struct wbuf *b, size_t n);
const void *rb_bytes(struct rbuf *b, size_t n);
uint64_t rb_u64(struct rbuf *b);
uint32_t rb_u32(struct rbuf *b);
void rb_str(struct rbuf *b, char *out, size_t cap);

#endif /* DAGGER_SRC_NET_MPI_WIRE_H */
