/* src/net/net.h - transports behind one vtable: shm ring, TCP, UDP, brokers (later MPI).
 *
 * Design: every edge end is a `struct dagger_edge` embedded as the first member of the
 * backend's own struct. transport.c parses the URI, finds the backend by scheme in a registry,
 * checks the arguments and the sticky error, and calls the backend through
 * `struct dagger__transport_ops`. A backend validates its own URI parameters (unknown keys are
 * refused so typos do not pass silently).
 * Framing (all transports): a 24-byte little-endian header
 *     magic u32 | version u8 | kind u8 | flags u16 | length u32 | count u32 | seq u64
 * followed by `length` payload bytes: dagger_value_encode's output, or the raw bytes of a blob
 * when flags has DAGGER__FRAME_RAW (saves the copy into an encoding buffer).
 * Batches (version 2): a BATCH frame carries `count` (>= 1) small values, seq being the first
 * one's; its payload is records of  u32 (length | DAGGER__BATCH_RAW) | bytes | zeros to a
 * multiple of 4. `count` is 0 in every other kind. A producer (shm, tcp) appends values to an
 * open batch and closes it when it flushes (its size or time bound, a flush, a wait, close), so
 * a small value costs a 4-byte record and no per-value publication or write.
 * Packed batches (version 3): a PACKED frame carries `count` (>= 1) blobs of the same size
 * len / count (>= 1) bytes back to back, with no record header: the common stream of fixed-size
 * values costs its bytes alone, and the consumer checks the frame once, not each value. A
 * producer opens a batch packed when its first value is a blob; a value of another size or
 * kind turns a batch of a few values into records in place (dagger__batch_unpack) and closes a
 * longer one, so mixed streams keep their records and runs of one size travel packed.
 * Invariants: every length read from outside is checked against the edge's limit before it
 * is used; a malformed frame fails the edge with DAGGER_EINVAL (sticky), never a crash.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_NET_H
#define DAGGER_SRC_NET_H

#include <endian.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dagger.h"
#include "dagger/net.h"

/* ---------------------------------------------------------------- frames */

#define DAGGER__FRAME_MAGIC 0x4E474144u /* "DAGN" as little-endian bytes */
#define DAGGER__FRAME_VERSION 3u
#define DAGGER__FRAME_HDR 24u
/* The largest payload any edge accepts, whatever its parameters say (1 GiB). */
#define DAGGER__FRAME_MAX_LIMIT (1u << 30)

enum dagger__frame_kind {
    DAGGER__FRAME_DATA = 1,   /* one value */
    DAGGER__FRAME_END = 2,    /* the producer closed; seq = values sent */
    DAGGER__FRAME_PAD = 3,    /* shm ring: skip to the start of the ring */
    DAGGER__FRAME_HELLO = 4,  /* tcp handshake: role, auth mode, nonce */
    DAGGER__FRAME_AUTH = 5,   /* tcp handshake: HMAC-SHA-256 proof */
    DAGGER__FRAME_BATCH = 6,  /* `count` small values as records (shm, tcp) */
    DAGGER__FRAME_PACKED = 7, /* `count` blobs of len / count bytes, back to back (shm, tcp) */
    DAGGER__FRAME_KIND_MAX_ = 7
};

enum {
    DAGGER__FRAME_RAW = 1u << 0, /* payload is a blob's bytes, not an encoded value */
    DAGGER__FRAME_TAG = 1u << 1, /* udp: a 16-byte HMAC tag follows the payload */
    /* END of a producer that failed or was aborted (brokers, msg.c): the stream is incomplete.
     * A broker gives no sign of a producer gone, so without it the consumer would wait on. */
    DAGGER__FRAME_ABORT = 1u << 2,
    DAGGER__FRAME_FLAGS_ALL_ = 7u
};

struct dagger__frame {
    uint32_t kind;
    uint32_t flags;
    uint32_t len;   /* payload bytes, already checked against the limit */
    uint32_t count; /* BATCH: values (>= 1, <= len / 4); PACKED: (>= 1, divides len); else 0 */
    uint64_t seq;
};

/* Batches. A record's length word has this bit for a blob's raw bytes. */
#define DAGGER__BATCH_RAW 0x80000000u
/* Values with payloads up to this go into batches; larger ones get a frame of their own. */
#define DAGGER__BATCH_VALUE_MAX 256u
/* A BATCH payload never exceeds this, whatever the edge's `max` (a receiver's bound). */
#define DAGGER__BATCH_MAX (64u * 1024u)

static inline uint32_t dagger__batch_rec_size(uint32_t n) { return (4u + n + 3u) & ~3u; }

/* A packed batch of at most this many values is turned into records when a value of another
 * size or kind follows (above it the batch is closed instead). */
#define DAGGER__BATCH_UNPACK_MAX 8u

static inline int dagger__frame_is_batch(uint32_t kind)
{
    return kind == DAGGER__FRAME_BATCH || kind == DAGGER__FRAME_PACKED;
}

/* Reading a batch: the payload offset of the next value, the values still to read, and the
 * size of each (PACKED) or 0 (BATCH: records). */
struct dagger__batch {
    uint32_t off, left, size;
};

/* Start reading the BATCH or PACKED frame `f` (checked by dagger__frame_get). Returns 0, or
 * DAGGER_EINVAL with a sentence in err when a packed value exceeds max_payload. */
int dagger__batch_begin(const struct dagger__frame *f, uint32_t max_payload,
                        struct dagger__batch *b, char *err, size_t errcap);

/* Turn the `count` packed values of `size` bytes at p into records, in place: the caller has
 * made room for count * dagger__batch_rec_size(size) bytes at p. */
void dagger__batch_unpack(unsigned char *p, uint32_t count, uint32_t size);

/* Write the record of `v` (payload size n and flags from dagger__frame_value_size) at dst:
 * dagger__batch_rec_size(n) bytes, padding zeroed. */
void dagger__batch_rec_put(void *dst, const dagger_value_t *v, unsigned flags, uint32_t n);
/* The same, inline for a blob (flags has DAGGER__FRAME_RAW). */
static inline void dagger__batch_rec_put_raw(unsigned char *dst, const void *src, uint32_t n)
{
    uint32_t w = htole32(n | DAGGER__BATCH_RAW), z = 0;
    __builtin_memcpy(dst + dagger__batch_rec_size(n) - 4, &z, 4);
    __builtin_memcpy(dst, &w, 4);
    if (n == 8)
        __builtin_memcpy(dst + 4, src, 8); /* the common small value: no call */
    else if (n)
        __builtin_memcpy(dst + 4, src, n);
}
/* Decode the next value of the BATCH or PACKED frame `f` whose payload is `p` (borrowed by
 * *out) as the value of sequence number `seq`; records longer than max_payload are refused.
 * Checks that the record and its padding lie inside the frame, and at the last one that the
 * frame ends there. Returns 0 (b advanced) or DAGGER_EINVAL with a sentence in err. */
int dagger__batch_read(const struct dagger__frame *f, const unsigned char *p,
                       struct dagger__batch *b, uint32_t max_payload, uint64_t seq,
                       dagger_value_t *out, char *err, size_t errcap);

/* The same, inline for the common case (a blob record that passes every check); anything
 * else, errors included, goes through dagger__batch_read. */
static inline int dagger__batch_next(const struct dagger__frame *f, const unsigned char *p,
                                     struct dagger__batch *b, uint32_t max_payload, uint64_t seq,
                                     dagger_value_t *out, char *err, size_t errcap)
{
    uint32_t w, room = f->len - b->off;
    if (b->size) { /* packed: the frame's bounds were checked once, each value's are here */
        if (b->left && b->off <= f->len && room >= b->size &&
            (b->left == 1 ? room == b->size : room - b->size >= b->size)) {
            dagger_value_t v = {.kind = DAGGER_KIND_BLOB};
            v.len = b->size;
            v.u.p = p + b->off;
            *out = v;
            b->off += b->size;
            b->left--;
            return 0;
        }
    } else if (b->left && b->off <= f->len && room >= 4) {
        __builtin_memcpy(&w, p + b->off, 4);
        w = le32toh(w);
        uint32_t n = w & ~DAGGER__BATCH_RAW, rec = dagger__batch_rec_size(n);
        if ((w & DAGGER__BATCH_RAW) && n <= max_payload && n <= room - 4 && rec <= room &&
            (b->left == 1 ? rec == room : room - rec >= 4)) {
            dagger_value_t v = {.kind = DAGGER_KIND_BLOB};
            v.len = n;
            v.u.p = p + b->off + 4;
            *out = v;
            b->off += rec;
            b->left--;
            return 0;
        }
    }
    return dagger__batch_read(f, p, b, max_payload, seq, out, err, errcap);
}

/* Copy out up to `m` (<= b->left) next values of the batch `f` (payload `p`) that are blobs
 * of exactly `size` bytes (size <= the edge's limit, checked by the caller), value j to
 * dst + j * size: a PACKED frame of that size in one memcpy; BATCH records in one loop, the
 * positions of the m records checked once (inside the frame, the frame ending at the last
 * record of the batch, room for one more otherwise), each length word against the one expected.
 * Stops at the first other value, which the caller reads with dagger__batch_next (errors
 * included). Returns the values copied (b advanced). */
static inline uint32_t dagger__batch_copy_n(const struct dagger__frame *f, const unsigned char *p,
                                            struct dagger__batch *b, uint32_t size,
                                            unsigned char *dst, uint32_t m)
{
    if (b->size) {
        uint64_t bytes = (uint64_t)m * size;
        if (b->size != size || m == 0 || m > b->left || b->off > f->len ||
            bytes > f->len - b->off || (m == b->left) != (bytes == f->len - b->off))
            return 0;
        __builtin_memcpy(dst, p + b->off, (size_t)bytes);
        b->off += (uint32_t)bytes;
        b->left -= m;
        return m;
    }
    uint32_t rec = dagger__batch_rec_size(size), want = htole32(size | DAGGER__BATCH_RAW), j;
    uint64_t end = (uint64_t)b->off + (uint64_t)m * rec;
    if (m == 0 || m > b->left || b->off > f->len || end > f->len ||
        (m == b->left ? end != f->len : f->len - end < 4))
        return 0;
    const unsigned char *q = p + b->off;
    for (j = 0; j < m; j++, q += rec, dst += size) {
        uint32_t w;
        __builtin_memcpy(&w, q, 4);
        if (w != want)
            break;
        if (size == 8)
            __builtin_memcpy(dst, q + 4, 8);
        else
            __builtin_memcpy(dst, q + 4, size);
    }
    b->off += j * rec;
    b->left -= j;
    return j;
}

/* Write a header into `dst` (DAGGER__FRAME_HDR bytes); count is 0 but for BATCH and PACKED
 * (kind: DAGGER__FRAME_BATCH or DAGGER__FRAME_PACKED). */
void dagger__frame_put(void *dst, unsigned kind, unsigned flags, uint32_t len, uint64_t seq);
void dagger__frame_put_batch(void *dst, unsigned kind, uint32_t len, uint32_t count, uint64_t seq);
/* Read and check a header: magic, version, kind, flags, count, len <= max_payload (a BATCH:
 * len <= DAGGER__BATCH_MAX, no flags, 1 <= count <= len / 4; a PACKED: len <= DAGGER__BATCH_MAX,
 * no flags, 1 <= count <= len, count divides len; its value size is checked by
 * dagger__batch_begin).
 * Returns 0 or DAGGER_EINVAL with a sentence in err. */
int dagger__frame_get(const void *src, uint32_t max_payload, struct dagger__frame *f, char *err,
                      size_t errcap);
/* Payload bytes for `v` (sets *flags to DAGGER__FRAME_RAW for blobs).
 * Returns the size, or DAGGER_EINVAL (pointer or task values, a bad value). */
long dagger__frame_value_size(const dagger_value_t *v, unsigned *flags);
/* Write the payload of `v` (size from dagger__frame_value_size) into dst. */
void dagger__frame_value_write(void *dst, const dagger_value_t *v, unsigned flags, size_t size);
/* Decode a DATA payload into *out (borrowing `p`). Returns 0 or DAGGER_EINVAL with err set. */
int dagger__frame_value_read(const struct dagger__frame *f, const void *p, dagger_value_t *out,
                             char *err, size_t errcap);

/* ---------------------------------------------------------------- URIs */

#define DAGGER__URI_MAX_PARAMS 16

/* scheme:[//host[:port]][/path][?k=v&k=v]; values are percent-decoded. */
struct dagger__uri {
    char scheme[16];
    char host[128];
    int port;       /* -1 when absent */
    char path[128]; /* "" when absent; begins with '/' */
    int nparams;
    struct {
        char key[32];
        char val[256];
    } params[DAGGER__URI_MAX_PARAMS];
};

int dagger__uri_parse(const char *text, struct dagger__uri *u, char *err, size_t errcap);
/* The value of `key`, or NULL. */
const char *dagger__uri_get(const struct dagger__uri *u, const char *key);
/* Integer parameter within [lo, hi] (decimal, 0x hex, or a k/m/g suffix); `def` when absent.
 * Returns 0 or DAGGER_EINVAL with err set. */
int dagger__uri_int(const struct dagger__uri *u, const char *key, int64_t def, int64_t lo,
                    int64_t hi, int64_t *out, char *err, size_t errcap);
/* DAGGER_EINVAL when a key is not in the NULL-terminated `allowed` list. */
int dagger__uri_check_keys(const struct dagger__uri *u, const char *const *allowed, char *err,
                           size_t errcap);
/* The shared secret: `secret=` or the variable named by `secret_env=`. Copies at most cap-1
 * bytes. Returns its length (0 = none) or DAGGER_EINVAL. */
int dagger__uri_secret(const struct dagger__uri *u, char *out, size_t cap, char *err,
                       size_t errcap);

/* ---------------------------------------------------------------- crypto (crypto.c, libsodium) */

/* 0 when secrets can be used; DAGGER_ENOSYS (a build without libsodium) or DAGGER_EIO with a
 * sentence in err otherwise. dagger__uri_secret calls it for every secret given. */
int dagger__crypto_check(char *err, size_t errcap);
void dagger__sha256(const void *data, size_t len, uint8_t out[32]);
/* HMAC-SHA-256 of the concatenation of `n` parts. */
void dagger__hmac_sha256(const void *key, size_t keylen, const void *const *parts,
                         const size_t *lens, int n, uint8_t out[32]);
/* Compare in time independent of where the buffers differ. Returns 1 when equal. */
int dagger__ct_equal(const void *a, const void *b, size_t n);
/* Fill with random bytes. Returns 0 or DAGGER_EIO. */
int dagger__random(void *buf, size_t n);
/* ChaCha20-Poly1305 (IETF) with the nonce made of `counter`: `out` gets len + 16 bytes. */
#define DAGGER__AEAD_TAG 16u
void dagger__aead_seal(const uint8_t key[32], uint64_t counter, const void *ad, size_t adlen,
                       const void *plain, size_t len, void *out);
/* Check and decrypt clen bytes (tag included) into `out` (clen - 16 bytes). Returns 0 or
 * DAGGER_EINVAL (forged, corrupted or replayed under another counter). */
int dagger__aead_open(const uint8_t key[32], uint64_t counter, const void *ad, size_t adlen,
                      const void *cipher, size_t clen, void *out);

/* ---------------------------------------------------------------- edges and backends */

struct dagger__transport_ops;

/* Common part of every edge end; the backend's struct starts with it. */
struct dagger_edge {
    const struct dagger__transport_ops *ops; /* immutable after open */
    unsigned end;                            /* DAGGER_EDGE_PUSH or _POP; immutable */
    uint32_t max_payload;                    /* immutable after open */
    int err;                                 /* sticky failure; owner thread */
    int aborted;                             /* closing without a clean end; owner thread */
    char errmsg[256];                        /* owner thread */
    char uri[256];                           /* the effective URI; set by open */
    int held;                                /* pop_n kept `held_v` for the next pop */
    dagger_value_t held_v;                   /* owner thread */
    /* A run of packed values (a PACKED frame being read) that dagger_edge_pop hands out without
     * calling the backend: rn more blobs of rsize bytes from rp on, rp advancing. The backend
     * arms it after a pop that leaves no error and no held value, and at its next call settles
     * what was taken (from how far rp moved) and disarms it. Owner thread. */
    const unsigned char *rp;
    uint32_t rsize, rn;
    /* The producer's twin (shm, tcp): room for wn more blobs of exactly wsize bytes in an open
     * packed batch, which dagger_edge_push copies to wp without calling the backend while the
     * word wstop (when not NULL) reads 0 (shm: the consumer sleeps or closed, so the backend
     * must publish or fail); armed at the end of a push that leaves such a batch, settled (from
     * how far wp moved) at the next call. */
    unsigned char *wp;
    uint32_t wsize, wn;
    const _Atomic uint32_t *wstop;
    struct { /* owner writes (relaxed); anyone reads */
        _Atomic uint64_t values, bytes, drops, rejected, waits, reconnects, duplicates;
    } st;
    /* Failures (transport.c): `watch` (+1, from dagger_edge_watch) is the task at the other
     * end, whose failure fails the edge; `reason` says why the owner aborted it, for the
     * transports that can tell the peer (mpi://, brokers: END|ABORT carries it). Owner thread. */
    dagger_task_t *watch;
    char reason[200];
};

/* A transport. Every function runs on the owner thread of `e`. Timeouts in ms, < 0 forever.
 * The wrappers in transport.c have already checked the end (push vs pop) and the sticky
 * error; a backend returns errors through dagger__edge_fail (sticky) or dagger__edge_note. */
struct dagger__transport_ops {
    const char *scheme;
    /* Allocate and open an end (the struct's first member is struct dagger_edge; fill
     * everything except ops and end, which the caller sets). Errors go to err. */
    int (*open)(struct dagger_edge **out, const struct dagger__uri *uri, unsigned end, char *err,
                size_t errcap);
    /* Flush and signal the end (producer), release every resource, free `e`. */
    int (*close)(struct dagger_edge *e);
    int (*push)(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms);
    int (*pop)(struct dagger_edge *e, dagger_value_t *out, int timeout_ms);
    /* 1 ready, 0 timeout, < 0 error. */
    int (*poll)(struct dagger_edge *e, int timeout_ms);
    /* May be NULL (nothing is ever buffered). */
    int (*flush)(struct dagger_edge *e, int timeout_ms);
    /* Vectors of fixed-size blobs (dagger_edge_push_n / _pop_n); either may be NULL, and the
     * wrapper then loops over push / pop. Arguments are checked (size <= max_payload, n >= 1,
     * n <= INT_MAX). push_n returns the count sent or, when none was, the error; pop_n returns
     * the count received (it waits only for the first) or the error, and a value that is not
     * a blob of `size` bytes is handed to dagger__edge_hold, ending the vector. */
    int (*push_n)(struct dagger_edge *e, const unsigned char *src, uint32_t size, int n,
                  int timeout_ms);
    int (*pop_n)(struct dagger_edge *e, unsigned char *dst, uint32_t size, int n, int timeout_ms);
};

/* Keep `v` (popped, but not a blob of the size dagger_edge_pop_n asked for) for the next
 * dagger_edge_pop, which returns it before asking the backend again: the backend's buffer it
 * borrows stays valid because no pop runs in between. Returns DAGGER_EINVAL with a message. */
int dagger__edge_hold(struct dagger_edge *e, const dagger_value_t *v, uint32_t size);

/* Close `e` without telling the peer the stream ended: a producer sends no END (shm: the ring
 * is not marked closed), so the consumer reports DAGGER_EPEER after the values already sent,
 * not a clean DAGGER_ECLOSED; a consumer leaves as if it died, so the producer gets
 * DAGGER_EPEER too. Used when the owner failed or was cancelled. Frees `e`.
 * Returns: 0 or the backend's close error. Thread safety: owner thread. */
int dagger__edge_abort(struct dagger_edge *e);
/* dagger__edge_abort with the reason (printf) that the peer is told where the transport can
 * carry one (e->reason): a streaming region aborts the edges of a failed node with the failed
 * task's message. Returns and frees as dagger__edge_abort. Thread safety: owner thread. */
int dagger__edge_abort_why(struct dagger_edge *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Register a transport for a scheme (MPI, brokers). Built-ins are always present.
 * Returns 0, DAGGER_EBUSY (scheme taken) or DAGGER_ENOMEM. Thread safety: any thread. */
int dagger__transport_register(const struct dagger__transport_ops *ops);
const struct dagger__transport_ops *dagger__transport_find(const char *scheme);

extern const struct dagger__transport_ops dagger__shm_ops;
extern const struct dagger__transport_ops dagger__tcp_ops;
extern const struct dagger__transport_ops dagger__udp_ops;

/* Fail `e` for good: remember code and message, return code. */
int dagger__edge_fail(struct dagger_edge *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Record a message for a non-sticky outcome (timeout, refused argument); return code. */
int dagger__edge_note(struct dagger_edge *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The payload size of `v` on edge `e` (its frame flags in *fl), or a negative error noted on `e`:
 * a value that cannot cross processes (DAGGER_EINVAL), or one over e->max_payload
 * (DAGGER_ERANGE; `limit` names the bound in the message, e.g. "max", "the datagram limit max"). */
long dagger__edge_payload_size(struct dagger_edge *e, const dagger_value_t *v, unsigned *fl,
                               const char *limit);

/* Owner-thread counter bump, readable from any thread. */
static inline void dagger__edge_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Allocation for the net layer (one place to route to dagger's allocator hooks). */
void *dagger__net_calloc(size_t n);
void *dagger__net_realloc(void *p, size_t n);
void dagger__net_free(void *p);

/* Monotonic clock in ms / ns, and the ms left before `deadline_ms` (deadline < 0: forever,
 * returns -1). */
int64_t dagger__net_now_ms(void);
int64_t dagger__net_now_ns(void);
int dagger__net_left_ms(int64_t deadline_ms);
int64_t dagger__net_deadline(int timeout_ms);

/* A listener bound beyond loopback without a secret: warns once on stderr, or refuses with
 * DAGGER_EACCES (message in err) when DAGGER_REQUIRE_SECRET=1. Returns 0 when allowed. */
struct sockaddr;
int dagger__net_check_exposed(const struct sockaddr *sa, int has_secret, const char *what,
                              char *err, size_t errcap);

/* snprintf into a fixed buffer, never overflowing. */
void dagger__net_fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- functions (fnid.c) */

#define DAGGER__BUILD_ID_MAX 32
#define DAGGER__FN_NAME_MAX 128

/* How a task function travels to another process: a registered name, or the build id of its
 * module and its offset there. */
struct dagger__fn_ref {
    char name[DAGGER__FN_NAME_MAX]; /* "" unless registered */
    uint8_t id[DAGGER__BUILD_ID_MAX];
    int idlen;
    uint64_t offset;
};

/* The reference of `fn`. Returns 0, or DAGGER_EINVAL / DAGGER_ENOSYS with the reason in why. */
int dagger__fn_ref(dagger_fn_t fn, struct dagger__fn_ref *out, char *why, size_t cap);
/* The local function of a reference, checked to lie in an executable segment of the module
 * with that build id. Returns 0, or DAGGER_EINVAL with the reason in why. */
int dagger__fn_resolve(const struct dagger__fn_ref *ref, dagger_fn_t *out, char *why, size_t cap);
/* The build id of the module whose code holds `addr`. Returns its length (0: none). */
int dagger__fn_module_id(const void *addr, uint8_t *id);
/* The build id of the program (the executable). Returns its length (0: none). */
int dagger__fn_program_id(uint8_t *id);
void dagger__fn_id_hex(const uint8_t *id, int n, char *out, size_t cap);
/* The symbol name of `fn` (dladdr), or "task" when it has none. A function of the program or of
 * libdagger is looked up once per thread while it stays the last one asked: neither module is
 * unloaded, so its name stays valid. Thread safety: any thread. */
const char *dagger__fn_symbol(dagger_fn_t fn);

/* A consumer backend arms a run for the rest of the packed batch `bc` whose payload starts at
 * `payload` (its bounds were checked with the frame): none after an error or with a value held.
 * *run_from remembers where it started, for dagger__run_settle. */
static inline void dagger__run_arm(struct dagger_edge *e, const unsigned char **run_from,
                                   const struct dagger__batch *bc, const unsigned char *payload)
{
    if (bc->left && bc->size && !e->err && !e->held) {
        *run_from = payload + bc->off;
        e->rp = *run_from;
        e->rsize = bc->size;
        e->rn = bc->left;
    }
}

/* A consumer backend's catch-up with an armed run (struct dagger_edge: rp, rn) that started
 * at *run_from (NULL: none): the values dagger_edge_pop took since then advance the batch's
 * cursor and the sequence number, and the run is disarmed. Returns the values taken. */
static inline uint32_t dagger__run_settle(struct dagger_edge *e, const unsigned char **run_from,
                                          struct dagger__batch *bc, uint64_t *seq)
{
    if (!*run_from)
        return 0;
    uint32_t taken = (uint32_t)((size_t)(e->rp - *run_from) / bc->size);
    *run_from = NULL;
    e->rn = 0;
    bc->off += taken * bc->size;
    bc->left -= taken;
    *seq += taken;
    return taken;
}

/* The next value of the packed batch `bc` (frame `bf`, payload at `payload`) for a consumer's
 * pop: no call and no check but its bounds, which the frame had checked as a whole. Returns 1
 * with *out set, the cursor, *seq and the counters moved (bc->left is 0 after the batch's last
 * value: the backend releases the frame at its next pop), or 0 when the next value is not such
 * a one (the backend's slow pop takes it). */
static inline int dagger__packed_next(struct dagger_edge *e, const struct dagger__frame *bf,
                                      struct dagger__batch *bc, const unsigned char *payload,
                                      uint64_t *seq, dagger_value_t *out)
{
    uint32_t sz = bc->size;
    if (!bc->left || !sz || bf->len - bc->off < sz)
        return 0;
    dagger_value_t v = {.kind = DAGGER_KIND_BLOB};
    v.len = sz;
    v.u.p = payload + bc->off;
    *out = v;
    bc->off += sz;
    bc->left--;
    ++*seq;
    dagger__edge_count(&e->st.values, 1);
    dagger__edge_count(&e->st.bytes, sz);
    return 1;
}

/* The vector pop of a consumer reading batch frames (shm, TCP): blobs of `size` bytes into
 * `dst`, at most n. The records of the batch being read (frame `bf`, cursor `bc`, sequence
 * number *seq) are copied out in one loop; a new frame is read by the backend's pop_one, which
 * waits for the first value only: later ones are taken only when more(e) says a whole one is
 * there without waiting. A value of another size or kind ends the vector, held. The backend's
 * hooks: payload(e), where the batch's payload is; released(e), after the batch's last value
 * (the frame is released at the next pop); bad(e, why), a malformed record (it fails the
 * edge). Returns the values copied, or the error when none was. Inline, so that each backend's
 * copy has its hooks inlined. */
static inline int dagger__batch_pop_n(
    struct dagger_edge *e, struct dagger__frame *bf, struct dagger__batch *bc, uint64_t *seq,
    unsigned char *dst, uint32_t size, int n, int timeout_ms,
    const unsigned char *(*payload)(struct dagger_edge *e), void (*released)(struct dagger_edge *e),
    void (*bad)(struct dagger_edge *e, const char *why), int (*more)(struct dagger_edge *e),
    int (*pop_one)(struct dagger_edge *e, dagger_value_t *out, int timeout_ms))
{
    dagger_value_t v;
    char err[160];
    int i = 0, rc;
    while (i < n) {
        if (bc->left) {
            const unsigned char *pl = payload(e);
            uint32_t at = bc->off;
            int j = i, odd = 0;
            uint32_t run =
                dagger__batch_copy_n(bf, pl, bc, size, dst + (size_t)i * size,
                                     bc->left < (uint32_t)(n - i) ? bc->left : (uint32_t)(n - i));
            i += (int)run;
            *seq += run;
            while (i < n && bc->left) {
                if (dagger__batch_next(bf, pl, bc, e->max_payload, *seq, &v, err, sizeof err) < 0) {
                    bc->left = 0;
                    bad(e, err);
                    break;
                }
                ++*seq;
                if (v.kind != DAGGER_KIND_BLOB || v.len != size) {
                    odd = 1; /* popped (counted below), then held */
                    break;
                }
                memcpy(dst + (size_t)i * size, v.u.p, size);
                i++;
            }
            if (!bc->left && !e->err)
                released(e);
            dagger__edge_count(&e->st.values, (uint64_t)(i - j + odd));
            dagger__edge_count(&e->st.bytes, bc->off - at);
            if (e->err) /* a malformed record: the values before it stand */
                return i ? i : e->err;
            if (odd) {
                rc = dagger__edge_hold(e, &v, size);
                return i ? i : rc;
            }
            continue;
        }
        if (i && !more(e))
            return i; /* take only what is there: no wait, no system call */
        if ((rc = pop_one(e, &v, i ? 0 : timeout_ms)) < 0)
            return i ? i : rc;
        if (v.kind != DAGGER_KIND_BLOB || v.len != size) {
            rc = dagger__edge_hold(e, &v, size);
            return i ? i : rc;
        }
        memcpy(dst + (size_t)i * size, v.u.p, size);
        i++;
    }
    return n;
}

#endif /* DAGGER_SRC_NET_H */
