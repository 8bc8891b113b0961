/* src/net/msg.h - framing for message transports (brokers): one frame per broker message.
 *
 * Design: a broker (MQTT, NATS) already delimits messages, so each value travels as one
 * message holding the usual frame (header + payload, net.h) and the consumer checks it the
 * way the UDP edge checks a datagram. Sequence numbers give the delivery semantics a broker
 * leaves open: a number below the next expected one is a duplicate (MQTT QoS 1 redelivery) and
 * is dropped (stats.duplicates); a number above it is a gap (at-most-once delivery, a full
 * queue) and is counted (stats.drops). A message that is not a valid frame is counted
 * (stats.rejected) and skipped: anyone allowed on the topic can publish one.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_NET_MSG_H
#define DAGGER_SRC_NET_MSG_H

#include "net/net.h"

/* Encode `v` (or END carrying `seq` when v is NULL) with number `seq` into *buf (grown as
 * needed, dagger__net_* allocation). Returns the message size; DAGGER_EINVAL (a pointer value),
 * DAGGER_ERANGE (above the edge's max) or DAGGER_ENOMEM, with a note on `e`. */
long dagger__msg_encode(struct dagger_edge *e, const dagger_value_t *v, uint64_t seq,
                        unsigned char **buf, size_t *cap);

/* Encode END|ABORT carrying `seq` (the producer failed or was aborted) into *buf, as
 * dagger__msg_encode. Its payload is the reason as text (e->reason, else e->errmsg; at most
 * 199 bytes and the edge's max), which the consumer quotes in its DAGGER_EPEER message. */
long dagger__msg_encode_abort(struct dagger_edge *e, uint64_t seq, unsigned char **buf,
                              size_t *cap);

/* The consumer's sequence state. `split`: values are shared with other consumers (a NATS
 * queue group), so a gap is not a loss and only going backwards is a duplicate. */
struct dagger__msg_rx {
    uint64_t next; /* the next expected number */
    int split;
    int started; /* split: a value was seen (next is meaningful) */
};

/* Check one received message. Returns 1 (a value in *out, borrowing `data`), 0 (skipped:
 * duplicate or rejected, counted), DAGGER_ECLOSED (END: the edge is failed with it, after
 * counting the values lost at the tail) or DAGGER_EPEER (END|ABORT: the producer failed; the
 * edge is failed with it). */
int dagger__msg_accept(struct dagger_edge *e, struct dagger__msg_rx *rx, const void *data,
                       size_t len, dagger_value_t *out);

/* What every broker URI shares: scheme://host[:port]/name?max=&timeout_ms=&idle_ms=&insecure=
 * &user_env=&secret_env= (plus the backend's own keys, checked by the backend). */
struct dagger__msg_opts {
    const char *name; /* the topic or subject: the path without its leading '/' */
    const char *user; /* the value of the variable named by user_env, or NULL */
    char secret[256]; /* from secret_env; wipe after use */
    int slen;
    int64_t max, timeout_ms, idle_ms, insecure;
};

/* Parse the shared part of `u` (refusing keys not in `keys`, credentials in the URI, an empty
 * host or name, a name holding one of `bad`). Returns 0 or DAGGER_EINVAL with err set. */
int dagger__msg_parse(const struct dagger__uri *u, const char *const *keys, int64_t def_max,
                      int64_t max_limit, const char *bad, struct dagger__msg_opts *o, char *err,
                      size_t errcap);

/* The vtable of a broker scheme whose functions are <pfx>_open_edge, <pfx>_close, <pfx>_push,
 * <pfx>_pop, <pfx>_poll and <pfx>_flush (a backend serves a plain and a TLS scheme alike). */
#define DAGGER__MSG_OPS(var, sch, pfx)                                                             \
    static const struct dagger__transport_ops var = {                                              \
        .scheme = sch,                                                                             \
        .open = pfx##_open_edge,                                                                   \
        .close = pfx##_close,                                                                      \
        .push = pfx##_push,                                                                        \
        .pop = pfx##_pop,                                                                          \
        .poll = pfx##_poll,                                                                        \
        .flush = pfx##_flush,                                                                      \
    }

#endif /* DAGGER_SRC_NET_MSG_H */
