/* include/dagger/net.h - streaming edges between processes: shared-memory ring, TCP, UDP, brokers.
 *
 * An edge is one end of a one-way stream of dagger values that crosses to another process.
 * Its URI picks the transport: `shm:/name` (a ring in shared memory, one host), `tcp://host:port`
 * (framed, authenticated with a shared secret), `udp://host:port` (datagrams, lossy), and, when
 * built with their client libraries, `mqtt://host:port/topic` and `nats://host:port/subject`
 * (through a broker; any number of consumers). The other process opens the same URI with the
 * opposite end (DAGGER_EDGE_PUSH / DAGGER_EDGE_POP).
 * The streaming runtime sits on top of this; programs may also use it directly.
 * docs/net.md lists every URI parameter and the wire format.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_NET_H
#define DAGGER_NET_H

#include <stddef.h>
#include <stdint.h>

#include "dagger.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dagger_edge dagger_edge_t;

/** Which end of the stream an edge is (exactly one of them). */
enum {
    DAGGER_EDGE_PUSH = 1u << 0, /* the producer: dagger_edge_push */
    DAGGER_EDGE_POP = 1u << 1,  /* the consumer: dagger_edge_pop */
};

/** Counters of one edge end; each counts what this end did. */
typedef struct dagger_edge_stats {
    uint64_t values;     /* values pushed (producer) or popped (consumer) */
    uint64_t bytes;      /* frame bytes sent or received, headers included */
    uint64_t drops;      /* values known to be lost (UDP, broker sequence gaps) */
    uint64_t rejected;   /* frames refused: malformed or unauthenticated (UDP, brokers go on) */
    uint64_t waits;      /* times a push or pop had to sleep (back-pressure or empty) */
    uint64_t reconnects; /* connections re-established after a loss (TCP, brokers) */
    uint64_t duplicates; /* values received twice and dropped (MQTT QoS 1 redelivery) */
} dagger_edge_stats_t;

/** Open one end of the edge named by `uri`; `flags` is DAGGER_EDGE_PUSH or DAGGER_EDGE_POP.
 *  Examples: "shm:/frames?cap=4194304&secret=s3", "tcp://127.0.0.1:0?role=listen&secret=s3",
 *  "udp://127.0.0.1:9000". A listening TCP end or a UDP consumer may give port 0: read the
 *  chosen port back with dagger_edge_uri. Connections and handshakes complete lazily, in the
 *  first push, pop, poll or flush.
 *  Broker edges (mqtt://, nats://) connect and subscribe before open returns.
 *  Returns: 0, DAGGER_EINVAL (bad URI or parameter, unknown scheme, wrong permissions, refused
 *  credentials), DAGGER_EBUSY (this end of the ring is taken), DAGGER_EPEER (a broker cannot
 *  be reached), DAGGER_EIO, DAGGER_ENOMEM; the message is in dagger_last_errmsg. Ownership: +1 on
 * `*out`, ended by dagger_edge_close. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_open(dagger_edge_t **out, const char *uri,
                                                 unsigned flags);

/** Close an end: a producer flushes what it buffered and tells the consumer the stream ended
 *  (the consumer's pops then drain and return DAGGER_ECLOSED). Frees the edge in every case.
 *  Returns: 0, or the error that kept buffered values from being sent (DAGGER_EPEER, ...).
 *  Ownership: consumes `e` (NULL is accepted). Thread safety: owner thread. */
DAGGER_API int dagger_edge_close(dagger_edge_t *e);

/** Send a copy of `*v`, waiting as long as back-pressure lasts (the consumer's death still
 *  ends the wait). Local pointers cannot be sent. TCP may hold small values in a batch until
 *  it fills, the linger time passes, or dagger_edge_flush.
 *  Returns: 0; DAGGER_EINVAL (a pointer or task value, or the edge failed on a malformed
 *  frame), DAGGER_ERANGE (larger than the edge's limit), DAGGER_EPEER (the consumer went
 *  away), DAGGER_ECLOSED (the consumer closed). Messages via dagger_edge_errmsg.
 *  Ownership: borrows `v`. Thread safety: owner thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_push(dagger_edge_t *e, const dagger_value_t *v);

/** dagger_edge_push with a bound: `timeout_ms` < 0 waits forever, 0 never waits.
 *  Returns: as dagger_edge_push, plus DAGGER_ETIMEDOUT (nothing was sent).
 *  Thread safety: owner thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_push_timed(dagger_edge_t *e, const dagger_value_t *v,
                                                       int timeout_ms);

/** Receive the next value into `*out`, waiting up to `timeout_ms` (< 0: forever; 0: poll).
 *  Str and blob values point into the edge's own buffer (the shm ring itself, no copy).
 *  Returns: 0; DAGGER_ETIMEDOUT; DAGGER_ECLOSED (the producer closed and every value was
 *  delivered); DAGGER_EPEER (the producer died or the connection was lost, after the values
 *  it had committed); DAGGER_EINVAL (a malformed or unauthenticated frame: the edge is closed
 *  and every later call returns the same error).
 *  Ownership: `*out` borrows the edge until the next pop or close. Thread safety: owner thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_pop(dagger_edge_t *e, dagger_value_t *out,
                                                int timeout_ms);

/** Send `n` values at once, value i being a blob of `size` bytes at `(char *)src + i * size`
 *  (n * size bytes in all): one argument check and one transport call for the vector, and on
 *  shm and TCP the values go into batches as dagger_edge_push would put them (the consumer may
 *  pop them one by one or with dagger_edge_pop_n). Waits up to `timeout_ms` (< 0: forever,
 *  0: never) for back-pressure, in total.
 *  Returns: the number of values sent, in order (`n` unless an error or the timeout came
 *  first: then the values after that count were not sent, and the next call reports the
 *  error); a negative code when none was sent: DAGGER_EINVAL (NULL edge or src, size 0, n
 *  above INT_MAX, the consumer end), DAGGER_ERANGE (size above the edge's limit),
 *  DAGGER_ETIMEDOUT and the errors of dagger_edge_push. n == 0 returns 0.
 *  Ownership: borrows `src` for the call. Thread safety: owner thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_push_n(dagger_edge_t *e, const void *src, size_t size,
                                                   size_t n, int timeout_ms);

/** Receive up to `n` values at once into `dst` (value i copied to `(char *)dst + i * size`),
 *  each of which must be a blob of exactly `size` bytes. Waits up to `timeout_ms` (< 0:
 *  forever, 0: poll) for the first value, then takes only the values already there.
 *  Returns: the number of values received (1..n), in order; a negative code when none was:
 *  DAGGER_ETIMEDOUT, DAGGER_ECLOSED, DAGGER_EPEER as dagger_edge_pop (an end or error met after
 *  some values is reported by the next call), DAGGER_EINVAL (NULL edge or dst, size 0, n 0 or
 *  above INT_MAX, the producer end, or the next value is not a blob of `size` bytes: it is kept
 *  and the next dagger_edge_pop returns it, so nothing is lost). Messages via
 *  dagger_edge_errmsg. Ownership: writes `dst`; nothing is borrowed after the call.
 *  Thread safety: owner thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_pop_n(dagger_edge_t *e, void *dst, size_t size,
                                                  size_t n, int timeout_ms);

/** Wait until the next push (producer) or pop (consumer) can proceed without waiting.
 *  Returns: 1 ready, 0 on timeout, or the edge's error (an error is "ready" to be reported by
 *  pop). Thread safety: owner thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_poll(dagger_edge_t *e, int timeout_ms);

/** Send every value a producer has buffered (TCP batching); a no-op elsewhere.
 *  Returns: 0, DAGGER_ETIMEDOUT (some bytes remain buffered), or the edge's error.
 *  Thread safety: owner thread. */
DAGGER_API DAGGER_NODISCARD int dagger_edge_flush(dagger_edge_t *e, int timeout_ms);

/** Tie `e` to `t`, the task that serves the other end (on another rank, or here): once `t` has
 *  failed, every call on `e` returns DAGGER_EPEER with a message that quotes t's error (its
 *  task, and its rank when it ran on another), also when `t` failed before it opened its end.
 *  Waits of a watched edge go in slices of 50 ms on the calling thread. A `t` that ends well
 *  changes nothing. Hand the edge to a streaming region after this call.
 *  Returns: 0; DAGGER_EINVAL (NULL edge or task), DAGGER_EBUSY (it already watches a task).
 *  Ownership: retains `t` until the edge is closed. Thread safety: owner thread. */
DAGGER_API int dagger_edge_watch(dagger_edge_t *e, dagger_task_t *t);

/** Read the counters of `e` into `*out`. Thread safety: any thread (relaxed snapshot). */
DAGGER_API void dagger_edge_stats(const dagger_edge_t *e, dagger_edge_stats_t *out);

/** The message of the last failure or timeout of `e` ("" if none), naming the peer and the
 *  cause; for NULL, dagger_last_errmsg() (where a failed open leaves its message).
 *  Returns: never NULL. Ownership: valid until the next call on `e`.
 *  Thread safety: owner thread. */
DAGGER_API const char *dagger_edge_errmsg(const dagger_edge_t *e);

/** The edge's URI as opened, with the port actually bound and without the secret.
 *  Returns: never NULL. Ownership: valid until close. Thread safety: any thread. */
DAGGER_API const char *dagger_edge_uri(const dagger_edge_t *e);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_NET_H */
