/* src/net/tcp.c - TCP edges: framed values over one connection, peers proven by a secret.
 *
 * `tcp://host:port?role=listen|connect&secret=...`: either end may listen; the producer and the
 * consumer are told apart by the open flags, not by who listens. A listening end may bind
 * port 0 and report the port through dagger_edge_uri.
 * Design: sockets are non-blocking and every wait is poll() with the caller's deadline. The
 * connection and the handshake happen in the first push/pop/poll/flush, so both ends may be
 * opened in any order; a connecting end retries refused connections with backoff for
 * `connect_ms`, then fails with DAGGER_EPEER naming the address, the attempts and the cause.
 * Handshake (protocol 2): each side sends HELLO (role, whether it has a secret, whether it
 * wants encryption, whether it listens, its position, a 32-byte random nonce). With a secret,
 * K = HMAC-SHA-256(secret, "dagger-tcp-2" || listener's HELLO || connector's HELLO) binds both
 * nonces and both roles; the connecting side sends AUTH = HMAC(K, "proof" || its role || 0),
 * the listening side checks it before it sends its own (role, 1), so a listener is never an
 * oracle for a proof it has not seen earned. With `encrypt=1` every byte after the handshake
 * travels in records sealed with ChaCha20-Poly1305 under a key derived from K (libsodium):
 * a relay in the middle can neither read nor inject. Without it the data is authenticated
 * only by the handshake (use encrypt=1, or a tunnel, across untrusted networks).
 * A listening end survives bad peers: a connection that sends garbage, the wrong secret, a
 * truncated or replayed handshake, or nothing within handshake_ms is closed and counted in
 * stats.rejected, and the listener goes on accepting until a peer authenticates. Every wait
 * honours the caller's deadline: a handshake interrupted by it resumes at the next call.
 * Producer: small frames are batched in a send buffer (`batch` bytes, TCP_NODELAY on) that is
 * sent when full, when `linger_us` has passed since its first frame (checked every 16th push,
 * every 64th for batched values), on dagger_edge_flush and on close. Values of up to
 * DAGGER__BATCH_VALUE_MAX bytes go into one open BATCH frame of the buffer (4 bytes of record each
 * instead of a 24-byte header), or a PACKED one for a run of blobs of one size (their bytes
 * alone; tcp_push then checks one bound armed per batch), closed when the buffer is sent or
 * another frame follows; the buffer is allocated for a whole batch, so a batch is one sendmsg; a
 * blob larger than half the batch goes out with one sendmsg (header + the caller's bytes, no
 * copy).
 * Close sends END, so the consumer can tell an ended stream (DAGGER_ECLOSED) from a lost peer
 * (DAGGER_EPEER); a failed or aborted producer that is connected sends END|ABORT with its
 * reason as payload instead (DAGGER_EPEER at the consumer, quoting it). Consumer: reads into a
 * buffer as much as the socket holds, parses frames in place (a value borrows the buffer until the
 * next pop), checks every header and sequence number. A lost connection is not resumed: the kernel
 * may have dropped bytes in flight and there are no acknowledgements to replay from, so the edge
 * fails with DAGGER_EPEER. SPDX-License-Identifier: MIT
 */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HELLO_LEN 48u
#define AUTH_LEN 32u
#define ROLE_PRODUCER 1
#define ROLE_CONSUMER 2
#define PROTO 2u
static const char key_label[] = "dagger-tcp-2";
enum { HS_NONE = 0, HS_HELLO, HS_AUTH, HS_FLUSH };
/* Returned by the handshake when the caller's deadline passed first (not a failure). */
#define HS_AGAIN 1

struct tcp_edge {
    struct dagger_edge base;
    int lfd;         /* listening socket, or -1 */
    int fd;          /* the connection, or -1 */
    int ready;       /* handshake done */
    int attempts;    /* connection attempts so far */
    int64_t give_up; /* when connecting stops being retried: set at the first attempt */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char peer[80]; /* "host:port" of the peer, for messages */
    char secret[256];
    int slen;
    int connect_ms, handshake_ms, close_ms;
    uint64_t seq; /* producer: next to send; consumer: next expected */
    /* handshake in progress on fd (resumable across calls) */
    int hs_state;        /* HS_* */
    int64_t hs_deadline; /* handshake_ms after the connection was made */
    unsigned char hs_out[2 * DAGGER__FRAME_HDR + HELLO_LEN + AUTH_LEN];
    size_t hs_olen, hs_ooff;
    unsigned char hs_in[DAGGER__FRAME_HDR + HELLO_LEN];
    size_t hs_ilen;
    unsigned char my_hello[DAGGER__FRAME_HDR + HELLO_LEN];
    uint8_t hs_key[32]; /* K, with a secret */
    char hs_err[200];   /* why the last handshake was refused */
    char hs_peer[80];   /* listener: the address of the last peer refused */
    /* encryption (encrypt=1): records of u32 length || ChaCha20-Poly1305(frames) */
    int enc;
    uint8_t data_key[32];
    uint64_t rec_ctr;    /* records sealed (producer) or opened (consumer) */
    unsigned char *cbuf; /* producer: the sealed record being sent; consumer: ciphertext read */
    size_t cused, coff, ccap;
    unsigned char *pbuf; /* consumer: the plaintext of the last record opened */
    size_t plen, ppos, pcap;
    /* producer */
    unsigned char *sbuf;
    size_t sused, scap, batch;
    int64_t linger_ns, sfirst_ns;
    size_t bstart;        /* 1 + the offset in sbuf of the open BATCH frame's header; 0: none */
    uint32_t bcount;      /* values in it */
    uint32_t bsize;       /* a PACKED batch: the size of its blobs; 0: a BATCH of records */
    uint64_t bseq;        /* seq of its first value */
    unsigned char *wfrom; /* where the armed room (net.h: wp) started; NULL: none */
    /* consumer */
    unsigned char *rbuf;
    size_t rstart, rend, rcap, pending;
    struct dagger__frame bf; /* the BATCH frame at rstart being read, while bc.left > 0 */
    struct dagger__batch bc;
    const unsigned char *run_from; /* where the armed run (net.h: rp) started; NULL: none */
};

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void tune(int fd)
{
    int one = 1, idle = 10, intvl = 2, cnt = 3;
    unsigned user_timeout = 10000;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

static void addr_text(const struct sockaddr *sa, char *buf, size_t cap)
{
    char host[64] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        dagger__net_fmt(buf, cap, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
        port = ntohs(in->sin6_port);
        dagger__net_fmt(buf, cap, "[%s]:%d", host, port);
    } else {
        dagger__net_fmt(buf, cap, "?");
    }
}

/* Drop the connection and fail the edge for good. */
static int lose(struct tcp_edge *t, int code, const char *fmt, const char *detail)
{
    char what[200];
    dagger__net_fmt(what, sizeof what, fmt, detail);
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    t->ready = 0;
    return dagger__edge_fail(&t->base, code, "%s: %s (peer %s)", t->base.uri, what,
                             t->peer[0] ? t->peer : "none");
}

/* Wait for `events` on fd until the deadline. Returns 1 ready, 0 timeout. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, dagger__net_left_ms(deadline));
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return 1; /* let the following call report the error */
    }
}

/* Send iov fully before the deadline. Returns 0, DAGGER_ETIMEDOUT (*done says how much went
 * out) or a sticky DAGGER_EPEER. */
static int sendv(struct tcp_edge *t, struct iovec *iov, int n, int64_t deadline, size_t *done)
{
    *done = 0;
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t r = sendmsg(t->fd, &m, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                dagger__edge_count(&t->base.st.waits, 1);
                if (!wait_fd(t->fd, POLLOUT, deadline))
                    return DAGGER_ETIMEDOUT;
                continue;
            }
            return lose(t, DAGGER_EPEER, "the consumer went away (%s)", strerror(errno));
        }
        *done += (size_t)r;
        while (n > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++, n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

/* Connect, retrying refused connections with backoff until connect_ms after the first attempt
 * (sticky DAGGER_EPEER then) or the caller's deadline (DAGGER_ETIMEDOUT). */
static int do_connect(struct tcp_edge *t, int64_t deadline)
{
    /* Counted from the first attempt, so that a caller polling with short timeouts
     * (a streaming edge sink) still gives up after connect_ms. */
    if (t->attempts == 0)
        t->give_up = dagger__net_now_ms() + t->connect_ms;
    int64_t give_up = t->give_up;
    int backoff = 10, last = 0;
    for (;;) {
        t->attempts++;
        if (t->attempts > 1)
            dagger__edge_count(&t->base.st.reconnects, 1);
        int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return dagger__edge_fail(&t->base, DAGGER_EIO, "%s: socket: %s", t->base.uri,
                                     strerror(errno));
        int r = connect(fd, (struct sockaddr *)&t->addr, t->addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            int64_t d = deadline >= 0 && deadline < give_up ? deadline : give_up;
            if (wait_fd(fd, POLLOUT, d)) {
                int e = 0;
                socklen_t el = sizeof e;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
                r = e ? -1 : 0;
                errno = e;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (r == 0) {
            t->fd = fd;
            break;
        }
        last = errno;
        close(fd);
        int64_t now = dagger__net_now_ms();
        if (now >= give_up)
            return dagger__edge_fail(
                &t->base, DAGGER_EPEER, "%s: cannot connect to %s after %d attempts in %d ms: %s",
                t->base.uri, t->peer, t->attempts, t->connect_ms, strerror(last));
        if (deadline >= 0 && now >= deadline)
            return dagger__edge_note(&t->base, DAGGER_ETIMEDOUT,
                                     "%s: not connected before the timeout (%s)", t->base.uri,
                                     strerror(last));
        int64_t sleep_ms = backoff;
        if (deadline >= 0 && deadline - now < sleep_ms)
            sleep_ms = deadline - now;
        if (give_up - now < sleep_ms)
            sleep_ms = give_up - now;
        struct timespec ts = {0, (long)sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
        backoff = backoff * 2 > 200 ? 200 : backoff * 2;
    }
    return 0;
}

/* ---------------------------------------------------------------- handshake */

static void hs_start(struct tcp_edge *t)
{
    unsigned char *p = t->my_hello + DAGGER__FRAME_HDR;
    uint32_t proto = htole32(PROTO);
    uint64_t seq = htole64(t->seq);
    memset(t->my_hello, 0, sizeof t->my_hello);
    dagger__frame_put(t->my_hello, DAGGER__FRAME_HELLO, 0, HELLO_LEN, 0);
    memcpy(p, &proto, 4);
    p[4] = t->base.end == DAGGER_EDGE_PUSH ? ROLE_PRODUCER : ROLE_CONSUMER;
    p[5] = t->slen > 0;
    p[6] = (unsigned char)t->enc;
    p[7] = t->lfd >= 0;
    memcpy(p + 8, &seq, 8);
    memcpy(t->hs_out, t->my_hello, sizeof t->my_hello);
    t->hs_olen = sizeof t->my_hello;
    t->hs_ooff = 0;
    t->hs_ilen = 0;
    t->hs_state = HS_HELLO;
    t->hs_deadline = dagger__net_now_ms() + t->handshake_ms;
}

/* A refusal of the handshake: the message goes to hs_err; returns DAGGER_EINVAL or `code`. */
static int hs_refuse(struct tcp_edge *t, int code, const char *fmt, const char *detail)
{
    char what[160];
    dagger__net_fmt(what, sizeof what, fmt, detail);
    dagger__net_fmt(t->hs_err, sizeof t->hs_err, "%s", what);
    return code;
}

/* AUTH proof of `role` (listener: 1 when the prover is the listening side). */
static void hs_proof(const struct tcp_edge *t, unsigned char role, unsigned char listener,
                     uint8_t out[32])
{
    static const char label[] = "proof";
    const void *parts[3] = {label, &role, &listener};
    const size_t lens[3] = {sizeof label - 1, 1, 1};
    dagger__hmac_sha256(t->hs_key, sizeof t->hs_key, parts, lens, 3, out);
}

static void hs_append_auth(struct tcp_edge *t)
{
    unsigned char *p = t->hs_out + t->hs_olen;
    dagger__frame_put(p, DAGGER__FRAME_AUTH, 0, AUTH_LEN, 0);
    hs_proof(t, t->my_hello[DAGGER__FRAME_HDR + 4], t->lfd >= 0, p + DAGGER__FRAME_HDR);
    t->hs_olen += DAGGER__FRAME_HDR + AUTH_LEN;
}

/* The peer's HELLO is in hs_in: check it, derive the keys. Returns 0 or a refusal. */
static int hs_hello(struct tcp_edge *t)
{
    const unsigned char *q = t->hs_in + DAGGER__FRAME_HDR;
    unsigned char myrole = t->my_hello[DAGGER__FRAME_HDR + 4];
    uint32_t pproto;
    uint64_t pseq;
    memcpy(&pproto, q, 4);
    memcpy(&pseq, q + 8, 8);
    pseq = le64toh(pseq);
    if (le32toh(pproto) != PROTO)
        return hs_refuse(t, DAGGER_EINVAL, "%s", "handshake rejected: unknown protocol version");
    if (q[4] != (myrole == ROLE_PRODUCER ? ROLE_CONSUMER : ROLE_PRODUCER))
        return hs_refuse(t, DAGGER_EINVAL, "handshake rejected: both ends are %ss",
                         myrole == ROLE_PRODUCER ? "producer" : "consumer");
    if (q[5] != (t->slen > 0))
        return hs_refuse(t, DAGGER_EINVAL, "handshake rejected: %s",
                         t->slen > 0 ? "the peer has no secret but this end has one"
                                     : "the peer requires a secret but this end has none");
    if (q[6] != (unsigned char)t->enc)
        return hs_refuse(t, DAGGER_EINVAL, "handshake rejected: %s",
                         t->enc ? "this end requires encrypt=1 but the peer does not encrypt"
                                : "the peer requires encrypt=1 but this end does not encrypt");
    if (q[7] != (t->lfd < 0))
        return hs_refuse(t, DAGGER_EINVAL, "%s", "handshake rejected: both ends listen or connect");
    if (pseq != t->seq)
        return hs_refuse(t, DAGGER_EINVAL, "%s", "handshake rejected: the peer is mid-stream");
    if (t->slen > 0) {
        const unsigned char *lh = t->lfd >= 0 ? t->my_hello : t->hs_in;
        const unsigned char *ch = t->lfd >= 0 ? t->hs_in : t->my_hello;
        const void *parts[3] = {key_label, lh, ch};
        const size_t lens[3] = {sizeof key_label - 1, sizeof t->my_hello, sizeof t->my_hello};
        dagger__hmac_sha256(t->secret, (size_t)t->slen, parts, lens, 3, t->hs_key);
        static const char dlabel[] = "data producer to consumer";
        const void *dparts[1] = {dlabel};
        const size_t dlens[1] = {sizeof dlabel - 1};
        dagger__hmac_sha256(t->hs_key, sizeof t->hs_key, dparts, dlens, 1, t->data_key);
    }
    return 0;
}

/* Run the handshake until it completes (0), the caller's deadline passes (HS_AGAIN: the state
 * is kept for the next call), or the peer is refused (an error; the reason in hs_err). */
static int hs_run(struct tcp_edge *t, int64_t deadline)
{
    char err[160];
    for (;;) {
        /* Send what is pending. */
        while (t->hs_ooff < t->hs_olen) {
            ssize_t r = send(t->fd, t->hs_out + t->hs_ooff, t->hs_olen - t->hs_ooff, MSG_NOSIGNAL);
            if (r > 0) {
                t->hs_ooff += (size_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return hs_refuse(t, DAGGER_EPEER, "handshake failed: %s", strerror(errno));
            break;
        }
        if (t->hs_state == HS_FLUSH && t->hs_ooff == t->hs_olen)
            return 0;
        /* Read exactly the frame expected next: data may follow it. */
        size_t need = DAGGER__FRAME_HDR + (t->hs_state == HS_HELLO ? HELLO_LEN : AUTH_LEN);
        if (t->hs_state == HS_FLUSH)
            need = 0;
        while (t->hs_ilen < need) {
            size_t want =
                t->hs_ilen < DAGGER__FRAME_HDR ? DAGGER__FRAME_HDR - t->hs_ilen : need - t->hs_ilen;
            ssize_t r = recv(t->fd, t->hs_in + t->hs_ilen, want, 0);
            if (r > 0) {
                t->hs_ilen += (size_t)r;
                if (t->hs_ilen == DAGGER__FRAME_HDR) {
                    struct dagger__frame f;
                    unsigned kind =
                        t->hs_state == HS_HELLO ? DAGGER__FRAME_HELLO : DAGGER__FRAME_AUTH;
                    uint32_t len = kind == DAGGER__FRAME_HELLO ? HELLO_LEN : AUTH_LEN;
                    if (dagger__frame_get(t->hs_in, len, &f, err, sizeof err) < 0)
                        return hs_refuse(t, DAGGER_EINVAL, "handshake rejected: %s", err);
                    if (f.kind != kind || f.len != len)
                        return hs_refuse(t, DAGGER_EINVAL, "handshake rejected: expected %s",
                                         kind == DAGGER__FRAME_HELLO ? "HELLO" : "an AUTH frame");
                }
                continue;
            }
            if (r == 0)
                return hs_refuse(t, DAGGER_EPEER, "%s",
                                 "the peer closed the connection during the handshake "
                                 "(wrong secret or role?)");
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return hs_refuse(t, DAGGER_EPEER, "handshake failed: %s", strerror(errno));
            break;
        }
        if (need && t->hs_ilen == need) {
            t->hs_ilen = 0;
            if (t->hs_state == HS_HELLO) {
                int rc = hs_hello(t);
                if (rc < 0)
                    return rc;
                if (t->slen == 0) {
                    t->hs_state = HS_FLUSH;
                } else {
                    t->hs_state = HS_AUTH;
                    if (t->lfd < 0)
                        hs_append_auth(t); /* the connecting side proves itself first */
                }
            } else {
                uint8_t expect[32];
                /* The peer has the other role, and listens when this end does not. */
                hs_proof(t, t->my_hello[DAGGER__FRAME_HDR + 4] ^ 3, t->lfd < 0, expect);
                if (!dagger__ct_equal(expect, t->hs_in + DAGGER__FRAME_HDR, 32))
                    return hs_refuse(t, DAGGER_EINVAL, "%s",
                                     "authentication failed: the peer does not know the shared "
                                     "secret");
                if (t->lfd >= 0)
                    hs_append_auth(t); /* checked: now the listening side proves itself */
                t->hs_state = HS_FLUSH;
            }
            continue;
        }
        /* Wait for the socket, the handshake's own bound or the caller's deadline. */
        int64_t now = dagger__net_now_ms();
        if (now >= t->hs_deadline)
            return hs_refuse(t, DAGGER_EPEER, "%s",
                             "handshake timed out (the peer is silent or too slow)");
        int64_t d = deadline >= 0 && deadline < t->hs_deadline ? deadline : t->hs_deadline;
        if (deadline >= 0 && now >= deadline)
            return HS_AGAIN;
        struct pollfd pf = {t->fd, (short)(POLLIN | (t->hs_ooff < t->hs_olen ? POLLOUT : 0)), 0};
        int r = poll(&pf, 1, dagger__net_left_ms(d));
        if (r < 0 && errno != EINTR)
            return hs_refuse(t, DAGGER_EPEER, "handshake failed: poll: %s", strerror(errno));
    }
}

static void drop_conn(struct tcp_edge *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    t->hs_state = HS_NONE;
    t->peer[0] = t->lfd >= 0 ? 0 : t->peer[0];
}

/* Connect (connecting end) or accept (listening end), then shake hands. A listener refuses a
 * bad peer (counted in stats.rejected) and goes on accepting; a connecting end fails. */
static int ensure_ready(struct tcp_edge *t, int64_t deadline)
{
    if (t->ready)
        return 0;
    for (;;) {
        if (t->fd < 0) {
            int rc;
            if (t->lfd >= 0) {
                for (;;) {
                    struct sockaddr_storage sa;
                    socklen_t sl = sizeof sa;
                    int fd =
                        accept4(t->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd >= 0) {
                        t->fd = fd;
                        addr_text((struct sockaddr *)&sa, t->peer, sizeof t->peer);
                        break;
                    }
                    if (errno == EINTR || errno == ECONNABORTED)
                        continue;
                    if (errno != EAGAIN && errno != EWOULDBLOCK)
                        return dagger__edge_fail(&t->base, DAGGER_EIO, "%s: accept: %s",
                                                 t->base.uri, strerror(errno));
                    if (!wait_fd(t->lfd, POLLIN, deadline)) {
                        uint64_t rej = atomic_load(&t->base.st.rejected);
                        if (rej)
                            return dagger__edge_note(
                                &t->base, DAGGER_ETIMEDOUT,
                                "%s: no peer authenticated before the timeout; %llu "
                                "connection%s rejected, the last from %s: %s",
                                t->base.uri, (unsigned long long)rej, rej == 1 ? "" : "s",
                                t->hs_peer, t->hs_err);
                        return dagger__edge_note(&t->base, DAGGER_ETIMEDOUT,
                                                 "%s: no peer connected before the timeout",
                                                 t->base.uri);
                    }
                }
            } else if ((rc = do_connect(t, deadline)) < 0) {
                return rc;
            }
            tune(t->fd);
            hs_start(t);
        }
        int rc = hs_run(t, deadline);
        if (rc == 0) {
            t->hs_state = HS_NONE;
            t->ready = 1;
            return 0;
        }
        if (rc == HS_AGAIN)
            return dagger__edge_note(&t->base, DAGGER_ETIMEDOUT,
                                     "%s: the handshake with %s was not done before the timeout",
                                     t->base.uri, t->peer);
        if (t->lfd < 0)
            return lose(t, rc, "%s", t->hs_err);
        /* A listener: refuse this peer, keep listening. */
        dagger__edge_count(&t->base.st.rejected, 1);
        dagger__net_fmt(t->hs_peer, sizeof t->hs_peer, "%s", t->peer);
        drop_conn(t);
    }
}

/* ---------------------------------------------------------------- producer */

/* encrypt=1: finish sending the sealed record, then seal what is buffered into a new one. */
static int flush_sealed(struct tcp_edge *t, int64_t deadline)
{
    for (;;) {
        if (t->coff < t->cused) {
            struct iovec iov = {t->cbuf + t->coff, t->cused - t->coff};
            size_t done;
            int rc = sendv(t, &iov, 1, deadline, &done);
            t->coff += done;
            if (rc < 0)
                return rc;
        }
        t->coff = t->cused = 0;
        if (!t->sused)
            return 0;
        size_t need = 4 + t->sused + DAGGER__AEAD_TAG;
        if (need > t->ccap) {
            unsigned char *b = dagger__net_realloc(t->cbuf, need);
            if (!b)
                return dagger__edge_note(&t->base, DAGGER_ENOMEM, "%s: out of memory", t->base.uri);
            t->cbuf = b;
            t->ccap = need;
        }
        uint32_t clen = htole32((uint32_t)(t->sused + DAGGER__AEAD_TAG));
        memcpy(t->cbuf, &clen, 4);
        dagger__aead_seal(t->data_key, t->rec_ctr++, t->cbuf, 4, t->sbuf, t->sused, t->cbuf + 4);
        t->cused = need;
        t->sused = 0;
    }
}

/* Write the header of the open batch: from here on it is an ordinary frame of the buffer. */
static void close_batch(struct tcp_edge *t)
{
    if (!t->bstart)
        return;
    size_t at = t->bstart - 1;
    dagger__frame_put_batch(t->sbuf + at, t->bsize ? DAGGER__FRAME_PACKED : DAGGER__FRAME_BATCH,
                            (uint32_t)(t->sused - at - DAGGER__FRAME_HDR), t->bcount, t->bseq);
    t->bstart = 0;
}

/* What dagger_edge_push wrote into the armed room since the last call (net.h: wp), taken into
 * the open batch; the room disarmed. Every producer call starts with it. */
static void settle_room(struct tcp_edge *t)
{
    if (!t->wfrom)
        return;
    uint32_t taken = (uint32_t)((size_t)(t->base.wp - t->wfrom) / t->bsize);
    t->wfrom = NULL;
    t->base.wn = 0;
    t->sused += (size_t)taken * t->bsize;
    t->bcount += taken;
    t->seq += taken;
}

/* Arm room in the open packed batch for dagger_edge_push, at the end of a push: as many values
 * as fit the tightest of the size bound (the buffer is sent once it reaches `batch`), the
 * buffer's allocation and the batch payload bound, and no further than the next seq that is a
 * multiple of 64, where tcp_push_any reads the linger clock. */
static void arm_room(struct tcp_edge *t)
{
    if (!t->bstart || !t->bsize || !t->batch || t->base.err)
        return;
    size_t lim = t->batch - 1, pay = t->bstart - 1 + DAGGER__FRAME_HDR + DAGGER__BATCH_MAX;
    lim = lim < t->scap ? lim : t->scap;
    lim = lim < pay ? lim : pay;
    size_t room = lim > t->sused ? (lim - t->sused) / t->bsize : 0;
    uint64_t to64 = (64 - (t->seq & 63)) & 63;
    if (room > to64)
        room = (size_t)to64;
    if (room == 0)
        return;
    t->wfrom = t->base.wp = t->sbuf + t->sused;
    t->base.wsize = t->bsize;
    t->base.wn = (uint32_t)room;
}

static int flush_buf(struct tcp_edge *t, int64_t deadline)
{
    close_batch(t);
    if (t->enc)
        return flush_sealed(t, deadline);
    if (!t->sused)
        return 0;
    struct iovec iov = {t->sbuf, t->sused};
    size_t done;
    int rc = sendv(t, &iov, 1, deadline, &done);
    if (rc == 0) {
        t->sused = 0;
        return 0;
    }
    if (rc == DAGGER_ETIMEDOUT && done) {
        memmove(t->sbuf, t->sbuf + done, t->sused - done);
        t->sused -= done;
    }
    return rc;
}

/* Room for `need` buffered bytes. The first allocation holds a whole batch and the frame that
 * closes it (a frame in the buffer is at most half a batch, a batched value's record, or END), so
 * the size bound (`batch`) decides when the buffer is sent, not its allocation: a buffer that
 * started at 4 KiB was sent every 4 KiB, sixteen times the system calls of a 64 KiB batch. */
static int grow_sbuf(struct tcp_edge *t, size_t need)
{
    if (need <= t->scap)
        return 0;
    size_t cap = t->scap ? t->scap : t->batch + t->batch / 2 + 2 * DAGGER__FRAME_HDR + 512;
    if (cap < 4096)
        cap = 4096;
    while (cap < need)
        cap *= 2;
    unsigned char *b = dagger__net_realloc(t->sbuf, cap);
    if (!b)
        return dagger__edge_note(&t->base, DAGGER_ENOMEM, "%s: out of memory", t->base.uri);
    t->sbuf = b;
    t->scap = cap;
    return 0;
}

static int tcp_push_any(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms);

/* A small blob appended to an open batch of records, which the buffer holds without a send;
 * anything else (a send due, the clock to read, a packed batch of another size) takes
 * tcp_push_any. */
static __attribute__((noinline)) int tcp_push_rec(struct dagger_edge *e, const dagger_value_t *v,
                                                  int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    if (t->bstart && v->kind == DAGGER_KIND_BLOB && (t->seq & 63) != 0 &&
        (v->len == t->bsize ||
         (!t->bsize && v->len <= DAGGER__BATCH_VALUE_MAX && v->len <= e->max_payload)) &&
        (v->u.p || !v->len)) {
        uint32_t n = v->len, rec = t->bsize ? n : dagger__batch_rec_size(n);
        size_t end = t->sused + rec;
        if (end < t->batch && end <= t->scap &&
            end - (t->bstart - 1) - DAGGER__FRAME_HDR <= DAGGER__BATCH_MAX) {
            if (t->bsize == 8)
                __builtin_memcpy(t->sbuf + t->sused, v->u.p, 8);
            else if (t->bsize)
                memcpy(t->sbuf + t->sused, v->u.p, n);
            else
                dagger__batch_rec_put_raw(t->sbuf + t->sused, v->u.p, n);
            t->sused = end;
            t->bcount++;
            t->seq++;
            dagger__edge_count(&e->st.values, 1);
            dagger__edge_count(&e->st.bytes, rec);
            return 0;
        }
    }
    return tcp_push_any(e, v, timeout_ms);
}

/* A push (dagger_edge_push fills armed room without it): the room settled, the value, room
 * armed again for the packed batch the push leaves open. */
static int tcp_push(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    settle_room(t);
    int rc = tcp_push_rec(e, v, timeout_ms);
    arm_room(t);
    return rc;
}

/* Room for `need` more buffered bytes (`need_after` once a flush closed the open batch): a
 * flush when the buffer would outgrow its cap, then the buffer grown. A flush that timed out
 * keeps its bytes buffered; the value is refused only when it still does not fit. `*deadline`
 * is -2 until the clock is first read. */
static int make_room(struct tcp_edge *t, size_t need, size_t need_after, int64_t *deadline,
                     int timeout_ms)
{
    if (t->sused + need > t->scap && t->sused) {
        if (*deadline == -2)
            *deadline = dagger__net_deadline(timeout_ms);
        int rc = flush_buf(t, *deadline);
        need = need_after;
        if (rc == DAGGER_ETIMEDOUT && t->sused + need > t->scap)
            return dagger__edge_note(&t->base, rc,
                                     "%s: the consumer did not take the value before the "
                                     "timeout",
                                     t->base.uri);
        if (rc < 0 && rc != DAGGER_ETIMEDOUT)
            return rc;
    }
    return grow_sbuf(t, t->sused + need);
}

__attribute__((noinline)) static int tcp_push_any(struct dagger_edge *e, const dagger_value_t *v,
                                                  int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    /* Reading the clock costs as much as buffering a small value: only when it may matter. */
    int64_t deadline = -2;
#define DEADLINE() (deadline == -2 ? (deadline = dagger__net_deadline(timeout_ms)) : deadline)
    unsigned fl;
    int rc;
    long n;
    if ((n = dagger__edge_payload_size(e, v, &fl, "max")) < 0)
        return (int)n;
    if (!t->ready && (rc = ensure_ready(t, DEADLINE())) < 0)
        return rc;
    size_t frame = DAGGER__FRAME_HDR + (size_t)n;
    if (!t->enc && (fl & DAGGER__FRAME_RAW) && (size_t)n > t->batch / 2) {
        /* Large blob: straight from the caller's bytes. */
        if ((rc = flush_buf(t, DEADLINE())) < 0)
            return rc;
        unsigned char hdr[DAGGER__FRAME_HDR];
        dagger__frame_put(hdr, DAGGER__FRAME_DATA, fl, (uint32_t)n, t->seq);
        struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)v->u.p, (size_t)n}};
        size_t done;
        rc = sendv(t, iov, 2, DEADLINE(), &done);
        if (rc == DAGGER_ETIMEDOUT) {
            if (done == 0)
                return dagger__edge_note(e, rc,
                                         "%s: the consumer did not take the value "
                                         "before the timeout",
                                         e->uri);
            /* Partly sent: the rest must follow, so it is buffered; the value is accepted. */
            if ((rc = grow_sbuf(t, frame - done)) < 0)
                return dagger__edge_fail(e, rc, "%s: out of memory mid-frame", e->uri);
            size_t h = done < sizeof hdr ? sizeof hdr - done : 0;
            memcpy(t->sbuf, hdr + (sizeof hdr - h), h);
            size_t off = done > sizeof hdr ? done - sizeof hdr : 0;
            memcpy(t->sbuf + h, (const char *)v->u.p + off, (size_t)n - off);
            t->sused = frame - done;
            t->sfirst_ns = dagger__net_now_ns();
        } else if (rc < 0) {
            return rc;
        }
    } else if ((size_t)n <= DAGGER__BATCH_VALUE_MAX && t->batch) {
        /* Small value: appended to the open batch (opened here when none is, packed when the
         * value is a blob): its bytes when the batch is packed with its size, else a record. */
        uint32_t rec = dagger__batch_rec_size((uint32_t)n);
        int packable = (fl & DAGGER__FRAME_RAW) && n > 0;
        if (t->bstart && t->bsize && !(packable && (uint32_t)n == t->bsize)) {
            /* A packed batch meets another value: a short one becomes records, else closes. */
            size_t grow = (size_t)t->bcount * (dagger__batch_rec_size(t->bsize) - t->bsize);
            if (t->bcount <= DAGGER__BATCH_UNPACK_MAX && t->sused + grow + rec <= t->scap) {
                dagger__batch_unpack(t->sbuf + t->bstart - 1 + DAGGER__FRAME_HDR, t->bcount,
                                     t->bsize);
                t->sused += grow;
                t->bsize = 0;
            } else {
                close_batch(t);
            }
        }
        uint32_t add = t->bstart ? (t->bsize ? (uint32_t)n : rec) : packable ? (uint32_t)n : rec;
        if (t->bstart && t->sused + add - (t->bstart - 1) - DAGGER__FRAME_HDR > DAGGER__BATCH_MAX) {
            close_batch(t);
            add = packable ? (uint32_t)n : rec;
        }
        /* a flush closes the open batch: then the value needs a header again */
        if ((rc = make_room(t, add + (t->bstart ? 0 : DAGGER__FRAME_HDR), rec + DAGGER__FRAME_HDR,
                            &deadline, timeout_ms)) < 0)
            return rc;
        if (!t->sused)
            t->sfirst_ns = t->linger_ns ? dagger__net_now_ns() : 0;
        if (!t->bstart) {
            t->bstart = t->sused + 1;
            t->bcount = 0;
            t->bsize = packable ? (uint32_t)n : 0;
            t->bseq = t->seq;
            t->sused += DAGGER__FRAME_HDR;
        }
        if (t->bsize) {
            memcpy(t->sbuf + t->sused, v->u.p, (size_t)n);
            rec = (uint32_t)n;
        } else if (fl & DAGGER__FRAME_RAW) {
            dagger__batch_rec_put_raw(t->sbuf + t->sused, v->u.p, (uint32_t)n);
        } else {
            dagger__batch_rec_put(t->sbuf + t->sused, v, fl, (uint32_t)n);
        }
        t->sused += rec;
        t->bcount++;
        frame = rec;
        if (t->sused >= t->batch || (t->linger_ns && (t->seq & 63) == 0 &&
                                     dagger__net_now_ns() - t->sfirst_ns >= t->linger_ns)) {
            rc = flush_buf(t, DEADLINE());
            if (rc < 0 && rc != DAGGER_ETIMEDOUT)
                return rc; /* the value is buffered even when the flush timed out */
        }
    } else {
        close_batch(t);
        if ((rc = make_room(t, frame, frame, &deadline, timeout_ms)) < 0)
            return rc;
        if (!t->sused)
            t->sfirst_ns = t->linger_ns ? dagger__net_now_ns() : 0;
        unsigned char *p = t->sbuf + t->sused;
        dagger__frame_put(p, DAGGER__FRAME_DATA, fl, (uint32_t)n, t->seq);
        dagger__frame_value_write(p + DAGGER__FRAME_HDR, v, fl, (size_t)n);
        t->sused += frame;
        /* The clock is read every 16th push only: it costs as much as the rest of a push. */
        if (t->sused >= t->batch || (t->linger_ns && (t->seq & 15) == 0 &&
                                     dagger__net_now_ns() - t->sfirst_ns >= t->linger_ns)) {
            rc = flush_buf(t, DEADLINE());
            if (rc < 0 && rc != DAGGER_ETIMEDOUT)
                return rc; /* the value is buffered even when the flush timed out */
        }
    }
    t->seq++;
    dagger__edge_count(&e->st.values, 1);
    dagger__edge_count(&e->st.bytes, frame);
    return 0;
#undef DEADLINE
}

/* A vector of `n` blobs of `size` bytes: the records that the open batch takes without a send
 * are written in one run, which ends where tcp_push would take its slow path anyway (every
 * 64th value, for the linger clock); the value there goes through tcp_push_any. */
static int tcp_push_n(struct dagger_edge *e, const unsigned char *src, uint32_t size, int n,
                      int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    int64_t deadline = -2; /* read the clock only when the slow path may wait */
    int i = 0;
    settle_room(t);
    while (i < n) {
        uint64_t k = 0;
        uint32_t rec = t->bsize ? size : dagger__batch_rec_size(size);
        if (t->bstart && size <= DAGGER__BATCH_VALUE_MAX && (t->seq & 63) != 0 &&
            (!t->bsize || t->bsize == size)) {
            /* end < batch, end <= scap, the batch's payload <= DAGGER__BATCH_MAX */
            size_t lim = t->batch ? t->batch - 1 : 0, payload_end;
            lim = lim < t->scap ? lim : t->scap;
            payload_end = t->bstart - 1 + DAGGER__FRAME_HDR + DAGGER__BATCH_MAX;
            lim = lim < payload_end ? lim : payload_end;
            k = lim > t->sused ? (lim - t->sused) / rec : 0;
            uint64_t to64 = 64 - (t->seq & 63);
            k = k < to64 ? k : to64; /* a seq that is a multiple of 64 takes tcp_push_any */
            if (k > (uint64_t)(n - i))
                k = (uint64_t)(n - i);
        }
        if (k == 0) {
            dagger_value_t v = dagger_blob_borrow(src + (size_t)i * size, size);
            if (deadline == -2)
                deadline = dagger__net_deadline(timeout_ms);
            int rc = tcp_push_any(e, &v, i ? dagger__net_left_ms(deadline) : timeout_ms);
            if (rc < 0)
                return i ? i : rc;
            i++;
            continue;
        }
        const unsigned char *p = src + (size_t)i * size;
        if (t->bsize) { /* packed: the run in one copy */
            memcpy(t->sbuf + t->sused, p, (size_t)k * size);
            t->sused += (size_t)k * size;
        } else {
            for (uint64_t j = 0; j < k; j++, p += size) {
                dagger__batch_rec_put_raw(t->sbuf + t->sused, p, size);
                t->sused += rec;
            }
        }
        t->bcount += (uint32_t)k;
        t->seq += k;
        i += (int)k;
        dagger__edge_count(&e->st.values, k);
        dagger__edge_count(&e->st.bytes, k * rec);
    }
    arm_room(t);
    return n;
}

static int tcp_flush(struct dagger_edge *e, int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    int rc;
    settle_room(t);
    if (!t->sused && t->coff == t->cused)
        return 0;
    close_batch(t);
    if ((rc = ensure_ready(t, deadline)) < 0)
        return rc;
    rc = flush_buf(t, deadline);
    if (rc == DAGGER_ETIMEDOUT)
        return dagger__edge_note(e, rc, "%s: %zu bytes still buffered at the timeout", e->uri,
                                 t->sused);
    return rc;
}

/* ---------------------------------------------------------------- consumer */

/* The largest sealed record a consumer accepts: a producer seals at most its buffer, which
 * holds up to a batch plus one frame of the largest payload. */
static size_t rec_max(const struct tcp_edge *t)
{
    return (size_t)2 * (DAGGER__FRAME_HDR + t->base.max_payload) + (64u << 20) + DAGGER__AEAD_TAG;
}

/* Receive up to cap bytes of the stream into dst: straight from the socket, or with
 * encrypt=1 from the records opened one after the other. Returns bytes (> 0), 0 at the end of
 * the connection, -1 with errno, or -2 for a forged or malformed record (why in hs_err). */
static ssize_t rx(struct tcp_edge *t, unsigned char *dst, size_t cap)
{
    if (!t->enc)
        return recv(t->fd, dst, cap, 0);
    for (;;) {
        if (t->ppos < t->plen) {
            size_t n = t->plen - t->ppos < cap ? t->plen - t->ppos : cap;
            memcpy(dst, t->pbuf + t->ppos, n);
            t->ppos += n;
            return (ssize_t)n;
        }
        size_t want = 4;
        if (t->cused >= 4) {
            uint32_t clen;
            memcpy(&clen, t->cbuf, 4);
            clen = le32toh(clen);
            if (clen < DAGGER__AEAD_TAG || clen > rec_max(t)) {
                dagger__net_fmt(t->hs_err, sizeof t->hs_err,
                                "malformed encrypted record: length %u", clen);
                return -2;
            }
            want = 4 + (size_t)clen;
            if (t->cused >= want) {
                size_t plen = clen - DAGGER__AEAD_TAG;
                if (plen > t->pcap) {
                    unsigned char *b = dagger__net_realloc(t->pbuf, plen ? plen : 1);
                    if (!b) {
                        dagger__net_fmt(t->hs_err, sizeof t->hs_err, "out of memory");
                        return -2;
                    }
                    t->pbuf = b;
                    t->pcap = plen;
                }
                if (dagger__aead_open(t->data_key, t->rec_ctr, t->cbuf, 4, t->cbuf + 4, clen,
                                      t->pbuf) < 0) {
                    dagger__net_fmt(t->hs_err, sizeof t->hs_err,
                                    "record %llu failed authentication (forged, corrupted or "
                                    "replayed data)",
                                    (unsigned long long)t->rec_ctr);
                    return -2;
                }
                t->rec_ctr++;
                memmove(t->cbuf, t->cbuf + want, t->cused - want);
                t->cused -= want;
                t->plen = plen;
                t->ppos = 0;
                continue;
            }
        }
        if (want > t->ccap || t->ccap - t->cused < 4096) {
            size_t ncap = t->ccap ? t->ccap : 64 << 10;
            while (ncap < want || ncap - t->cused < 4096)
                ncap *= 2;
            unsigned char *b = dagger__net_realloc(t->cbuf, ncap);
            if (!b) {
                dagger__net_fmt(t->hs_err, sizeof t->hs_err, "out of memory");
                return -2;
            }
            t->cbuf = b;
            t->ccap = ncap;
        }
        ssize_t r = recv(t->fd, t->cbuf + t->cused, t->ccap - t->cused, 0);
        if (r <= 0)
            return r;
        t->cused += (size_t)r;
    }
}

/* Make sure one whole frame is at rbuf + rstart; return its checked header in *f. */
static int fill_frame(struct tcp_edge *t, int timeout_ms, struct dagger__frame *f)
{
    char err[160];
    int rc;
    int64_t deadline = -2; /* read the clock only when we have to wait */
    if (!t->ready && (rc = ensure_ready(t, deadline = dagger__net_deadline(timeout_ms))) < 0)
        return rc;
    for (;;) {
        size_t avail = t->rend - t->rstart, need = DAGGER__FRAME_HDR;
        if (avail >= DAGGER__FRAME_HDR) {
            if (dagger__frame_get(t->rbuf + t->rstart, t->base.max_payload, f, err, sizeof err) < 0)
                return lose(t, DAGGER_EINVAL, "malformed frame: %s", err);
            need = DAGGER__FRAME_HDR + f->len;
            if (avail >= need)
                return 0;
        }
        if (avail == 0)
            t->rstart = t->rend = 0;
        if (t->rstart + need > t->rcap) {
            if (need > t->rcap) {
                size_t cap = t->rcap;
                while (cap < need)
                    cap *= 2;
                unsigned char *b = dagger__net_realloc(t->rbuf, cap);
                if (!b)
                    return dagger__edge_note(&t->base, DAGGER_ENOMEM, "%s: out of memory",
                                             t->base.uri);
                t->rbuf = b;
                t->rcap = cap;
            }
            memmove(t->rbuf, t->rbuf + t->rstart, avail);
            t->rstart = 0;
            t->rend = avail;
        }
        ssize_t r = rx(t, t->rbuf + t->rend, t->rcap - t->rend);
        if (r > 0) {
            t->rend += (size_t)r;
            continue;
        }
        if (r == -2)
            return lose(t, DAGGER_EINVAL, "%s", t->hs_err);
        if (r == 0) {
            char what[120];
            if (avail)
                dagger__net_fmt(what, sizeof what,
                                "connection closed inside a frame (%zu of %zu bytes)", avail, need);
            else
                dagger__net_fmt(what, sizeof what,
                                "the producer went away after %llu values "
                                "without ending the stream",
                                (unsigned long long)t->seq);
            return lose(t, DAGGER_EPEER, "%s", what);
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return lose(t, DAGGER_EPEER, "the connection was lost (%s)", strerror(errno));
        dagger__edge_count(&t->base.st.waits, 1);
        if (deadline == -2)
            deadline = dagger__net_deadline(timeout_ms);
        if (!wait_fd(t->fd, POLLIN, deadline))
            return dagger__edge_note(&t->base, DAGGER_ETIMEDOUT, "%s: no value before the timeout",
                                     t->base.uri);
    }
}

/* The next value of the BATCH frame at rstart (whole in rbuf). It borrows the frame, which is
 * released by the pop after its last value. */
static __attribute__((noinline)) int pop_batched(struct tcp_edge *t, dagger_value_t *out)
{
    char err[160];
    uint32_t at = t->bc.off;
    if (dagger__batch_next(&t->bf, t->rbuf + t->rstart + DAGGER__FRAME_HDR, &t->bc,
                           t->base.max_payload, t->seq, out, err, sizeof err) < 0) {
        t->bc.left = 0;
        return lose(t, DAGGER_EINVAL, "%s", err);
    }
    if (!t->bc.left)
        t->pending = DAGGER__FRAME_HDR + t->bf.len;
    t->seq++;
    dagger__edge_count(&t->base.st.values, 1);
    dagger__edge_count(&t->base.st.bytes, t->bc.off - at);
    return 0;
}

/* Everything but the next value of a packed batch (tcp_pop's fast path). */
static __attribute__((noinline)) int tcp_pop_slow(struct dagger_edge *e, dagger_value_t *out,
                                                  int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    struct dagger__frame f;
    char err[160];
    int rc;
    if (t->bc.left)
        return pop_batched(t, out);
    t->rstart += t->pending;
    t->pending = 0;
    if ((rc = fill_frame(t, timeout_ms, &f)) < 0)
        return rc;
    if (dagger__frame_is_batch(f.kind)) {
        if (f.seq != t->seq) {
            dagger__net_fmt(err, sizeof err, "batch frame seq %llu where %llu was expected",
                            (unsigned long long)f.seq, (unsigned long long)t->seq);
            return lose(t, DAGGER_EINVAL, "%s", err);
        }
        t->bf = f;
        if (dagger__batch_begin(&f, e->max_payload, &t->bc, err, sizeof err) < 0)
            return lose(t, DAGGER_EINVAL, "%s", err);
        return pop_batched(t, out);
    }
    if (f.kind == DAGGER__FRAME_END) {
        if (f.seq != t->seq)
            return lose(t, DAGGER_EINVAL, "%s", "the stream ended with a wrong value count");
        if (f.flags & DAGGER__FRAME_ABORT) { /* its payload: the producer's reason */
            int wlen = f.len > 200 ? 200 : (int)f.len;
            return dagger__edge_fail(e, DAGGER_EPEER,
                                     "%s: the producer failed after %llu values (its edge was "
                                     "aborted): the stream is incomplete%s%.*s",
                                     e->uri, (unsigned long long)t->seq,
                                     wlen ? "; the producer: " : "", wlen,
                                     (const char *)t->rbuf + t->rstart + DAGGER__FRAME_HDR);
        }
        return dagger__edge_fail(e, DAGGER_ECLOSED, "%s: the producer closed after %llu values",
                                 e->uri, (unsigned long long)t->seq);
    }
    if (f.kind != DAGGER__FRAME_DATA)
        return lose(t, DAGGER_EINVAL, "unexpected frame kind %s after the handshake",
                    f.kind == DAGGER__FRAME_HELLO ? "HELLO" : "AUTH or PAD");
    if (f.seq != t->seq) {
        dagger__net_fmt(err, sizeof err, "frame seq %llu where %llu was expected",
                        (unsigned long long)f.seq, (unsigned long long)t->seq);
        return lose(t, DAGGER_EINVAL, "%s", err);
    }
    if (dagger__frame_value_read(&f, t->rbuf + t->rstart + DAGGER__FRAME_HDR, out, err,
                                 sizeof err) < 0)
        return lose(t, DAGGER_EINVAL, "%s", err);
    t->pending = DAGGER__FRAME_HDR + f.len;
    t->seq++;
    dagger__edge_count(&e->st.values, 1);
    dagger__edge_count(&e->st.bytes, t->pending);
    return 0;
}

/* The next value of a packed batch takes no call and no check but its bounds, which the frame
 * had checked as a whole; anything else takes tcp_pop_slow. */
static int pop_one(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    if (dagger__packed_next(e, &t->bf, &t->bc, t->rbuf + t->rstart + DAGGER__FRAME_HDR, &t->seq,
                            out)) {
        if (!t->bc.left)
            t->pending = DAGGER__FRAME_HDR + t->bf.len;
        return 0;
    }
    return tcp_pop_slow(e, out, timeout_ms);
}

/* What dagger_edge_pop took from the armed run since the last call (net.h: rp), then the run
 * disarmed: the batch's cursor, the sequence number and, after its last value, the frame's
 * release catch up. */
static void settle(struct tcp_edge *t)
{
    if (dagger__run_settle(&t->base, &t->run_from, &t->bc, &t->seq) && !t->bc.left)
        t->pending = DAGGER__FRAME_HDR + t->bf.len;
}

/* A pop (the wrapper serves an armed run without it): the run settled, one value, the rest of a
 * packed batch armed. */
static int tcp_pop(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    settle(t);
    int rc = pop_one(e, out, timeout_ms);
    if (rc == 0)
        dagger__run_arm(&t->base, &t->run_from, &t->bc, t->rbuf + t->rstart + DAGGER__FRAME_HDR);
    return rc;
}

/* The hooks of dagger__batch_pop_n (net.h): where the batch's payload is, its frame released
 * after its last value, a malformed record, and whether a whole frame follows the borrowed one
 * in rbuf (no system call). */
static const unsigned char *batch_payload(struct dagger_edge *e)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    return t->rbuf + t->rstart + DAGGER__FRAME_HDR;
}

static void batch_released(struct dagger_edge *e)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    t->pending = DAGGER__FRAME_HDR + t->bf.len;
}

static void batch_bad(struct dagger_edge *e, const char *why)
{
    lose((struct tcp_edge *)e, DAGGER_EINVAL, "%s", why);
}

static int frame_buffered(struct dagger_edge *e)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    struct dagger__frame f;
    char err[160];
    size_t at = t->rstart + t->pending, avail = t->rend - at;
    return avail >= DAGGER__FRAME_HDR &&
           (dagger__frame_get(t->rbuf + at, t->base.max_payload, &f, err, sizeof err) < 0 ||
            avail >= DAGGER__FRAME_HDR + f.len);
}

/* A vector of blobs of `size` bytes: a batch's records are copied out in one loop; the next
 * frame is read by pop_one, which waits for the first value only (later frames are taken only
 * when already whole in the receive buffer). A value of another size or kind ends the vector,
 * held. */
static int tcp_pop_n(struct dagger_edge *e, unsigned char *dst, uint32_t size, int n,
                     int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    settle(t);
    return dagger__batch_pop_n(e, &t->bf, &t->bc, &t->seq, dst, size, n, timeout_ms, batch_payload,
                               batch_released, batch_bad, frame_buffered, pop_one);
}

static int tcp_poll(struct dagger_edge *e, int timeout_ms)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    int rc;
    if (e->end == DAGGER_EDGE_POP) {
        settle(t);
        struct dagger__frame f;
        char err[160];
        if (t->bc.left)
            return 1; /* more values of the batch being read */
        if (t->pending) {
            /* The value of the last pop borrows rbuf: nothing may move until the next pop.
             * Ready when a whole frame follows it, or when the socket has bytes. */
            size_t at = t->rstart + t->pending, avail = t->rend - at;
            if (avail >= DAGGER__FRAME_HDR &&
                (dagger__frame_get(t->rbuf + at, t->base.max_payload, &f, err, sizeof err) < 0 ||
                 avail >= DAGGER__FRAME_HDR + f.len))
                return 1;
            if (t->enc && t->ppos < t->plen)
                return 1;
            return wait_fd(t->fd, POLLIN, deadline);
        }
        rc = fill_frame(t, timeout_ms, &f);
        return rc == DAGGER_ETIMEDOUT ? 0 : rc < 0 ? rc : 1;
    }
    settle_room(t);
    if ((rc = ensure_ready(t, deadline)) < 0)
        return rc == DAGGER_ETIMEDOUT ? 0 : rc;
    if (t->sused < t->batch)
        return 1;
    rc = flush_buf(t, deadline);
    return rc == DAGGER_ETIMEDOUT ? 0 : rc < 0 ? rc : 1;
}

/* ---------------------------------------------------------------- open and close */

static int tcp_close(struct dagger_edge *e)
{
    struct tcp_edge *t = (struct tcp_edge *)e;
    int rc = 0;
    if (e->end == DAGGER_EDGE_PUSH)
        settle_room(t);
    if (e->end == DAGGER_EDGE_PUSH && !e->err) {
        int64_t deadline = dagger__net_deadline(t->close_ms);
        rc = ensure_ready(t, deadline);
        close_batch(t);
        if (rc == 0 && (rc = grow_sbuf(t, t->sused + DAGGER__FRAME_HDR)) == 0) {
            dagger__frame_put(t->sbuf + t->sused, DAGGER__FRAME_END, 0, 0, t->seq);
            t->sused += DAGGER__FRAME_HDR;
            rc = flush_buf(t, deadline);
        }
        if (rc == 0)
            shutdown(t->fd, SHUT_WR);
    } else if (e->end == DAGGER_EDGE_PUSH && t->ready && t->fd >= 0) {
        /* Failed or aborted, still connected: what was pushed goes, then END|ABORT with the
         * reason as payload, so the consumer fails with it (best effort, within close_ms). */
        const char *why = e->reason[0] ? e->reason : e->errmsg;
        size_t n = strnlen(why, sizeof e->reason - 1);
        if (n > e->max_payload)
            n = e->max_payload;
        close_batch(t);
        if (grow_sbuf(t, t->sused + DAGGER__FRAME_HDR + n) == 0) {
            dagger__frame_put(t->sbuf + t->sused, DAGGER__FRAME_END, DAGGER__FRAME_ABORT,
                              (uint32_t)n, t->seq);
            memcpy(t->sbuf + t->sused + DAGGER__FRAME_HDR, why, n);
            t->sused += DAGGER__FRAME_HDR + n;
            (void)flush_buf(t, dagger__net_deadline(t->close_ms));
        }
    }
    if (t->fd >= 0)
        close(t->fd);
    if (t->lfd >= 0)
        close(t->lfd);
    memset(t->secret, 0, sizeof t->secret);
    memset(t->hs_key, 0, sizeof t->hs_key);
    memset(t->data_key, 0, sizeof t->data_key);
    dagger__net_free(t->sbuf);
    dagger__net_free(t->rbuf);
    dagger__net_free(t->cbuf);
    dagger__net_free(t->pbuf);
    dagger__net_free(t);
    return rc;
}

static const char *const tcp_keys[] = {"role",     "secret",    "secret_env", "max",
                                       "batch",    "linger_us", "connect_ms", "handshake_ms",
                                       "close_ms", "encrypt",   NULL};

static int tcp_open_edge(struct dagger_edge **out, const struct dagger__uri *u, unsigned end,
                         char *err, size_t errcap)
{
    int64_t maxp, batch, linger, cms, hms, clms, enc;
    int rc;
    if ((rc = dagger__uri_check_keys(u, tcp_keys, err, errcap)) < 0)
        return rc;
    if (!u->host[0] || u->port < 0 || (u->path[0] && strcmp(u->path, "/") != 0)) {
        dagger__net_fmt(err, errcap, "tcp: expected tcp://host:port[?params]");
        return DAGGER_EINVAL;
    }
    const char *role = dagger__uri_get(u, "role");
    int listener = role && strcmp(role, "listen") == 0;
    if (role && !listener && strcmp(role, "connect") != 0) {
        dagger__net_fmt(err, errcap, "tcp: role=%s: expected listen or connect", role);
        return DAGGER_EINVAL;
    }
    if (!listener && u->port == 0) {
        dagger__net_fmt(err, errcap, "tcp: a connecting end needs a port other than 0");
        return DAGGER_EINVAL;
    }
    if ((rc = dagger__uri_int(u, "max", 16 << 20, 0, DAGGER__FRAME_MAX_LIMIT, &maxp, err, errcap)) <
            0 ||
        (rc = dagger__uri_int(u, "batch", 64 << 10, 0, 64 << 20, &batch, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "linger_us", 1000, 0, 10000000, &linger, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "connect_ms", 5000, 0, 3600000, &cms, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "handshake_ms", 5000, 1, 3600000, &hms, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "close_ms", 2000, 0, 3600000, &clms, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "encrypt", 0, 0, 1, &enc, err, errcap)) < 0)
        return rc;
    struct tcp_edge *t = dagger__net_calloc(sizeof *t);
    if (!t) {
        dagger__net_fmt(err, errcap, "tcp: out of memory");
        return DAGGER_ENOMEM;
    }
    t->lfd = t->fd = -1;
    t->slen = dagger__uri_secret(u, t->secret, sizeof t->secret, err, errcap);
    if (t->slen < 0) {
        rc = t->slen;
        goto fail;
    }
    if (enc && t->slen == 0) {
        dagger__net_fmt(err, errcap, "tcp: encrypt=1 needs a secret (secret= or secret_env=)");
        rc = DAGGER_EINVAL;
        goto fail;
    }
    t->enc = (int)enc;
    t->base.max_payload = (uint32_t)maxp;
    t->batch = (size_t)batch;
    t->linger_ns = linger * 1000;
    t->connect_ms = (int)cms;
    t->handshake_ms = (int)hms;
    t->close_ms = (int)clms;
    if (end == DAGGER_EDGE_POP) {
        t->rcap = 256 << 10;
        t->rbuf = dagger__net_calloc(t->rcap);
        if (!t->rbuf) {
            dagger__net_fmt(err, errcap, "tcp: out of memory");
            rc = DAGGER_ENOMEM;
            goto fail;
        }
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (listener ? AI_PASSIVE : 0)};
    struct addrinfo *ai = NULL;
    char port[8];
    dagger__net_fmt(port, sizeof port, "%d", u->port);
    int g = getaddrinfo(u->host, port, &hints, &ai);
    if (g != 0 || !ai) {
        dagger__net_fmt(err, errcap, "tcp: cannot resolve %s: %s", u->host, gai_strerror(g));
        rc = DAGGER_EINVAL;
        goto fail;
    }
    memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
    t->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (listener && (rc = dagger__net_check_exposed((struct sockaddr *)&t->addr, t->slen > 0, "tcp",
                                                    err, errcap)) < 0)
        goto fail;
    if (listener) {
        int one = 1;
        t->lfd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (t->lfd < 0 || setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(t->lfd, (struct sockaddr *)&t->addr, t->addrlen) < 0 || listen(t->lfd, 128) < 0) {
            dagger__net_fmt(err, errcap, "tcp: cannot listen on %s:%d: %s", u->host, u->port,
                            strerror(errno));
            rc = errno == EADDRINUSE || errno == EACCES ? DAGGER_EBUSY : DAGGER_EIO;
            goto fail;
        }
        t->addrlen = sizeof t->addr;
        getsockname(t->lfd, (struct sockaddr *)&t->addr, &t->addrlen);
        set_nonblock(t->lfd);
    } else {
        addr_text((struct sockaddr *)&t->addr, t->peer, sizeof t->peer);
    }
    char here[80];
    addr_text((struct sockaddr *)&t->addr, here, sizeof here);
    dagger__net_fmt(t->base.uri, sizeof t->base.uri, "tcp://%s?role=%s", here,
                    listener ? "listen" : "connect");
    *out = &t->base;
    return 0;
fail:
    if (t->lfd >= 0)
        close(t->lfd);
    memset(t->secret, 0, sizeof t->secret);
    dagger__net_free(t->rbuf);
    dagger__net_free(t);
    return rc;
}

const struct dagger__transport_ops dagger__tcp_ops = {
    .scheme = "tcp",
    .open = tcp_open_edge,
    .close = tcp_close,
    .push = tcp_push,
    .pop = tcp_pop,
    .poll = tcp_poll,
    .flush = tcp_flush,
    .push_n = tcp_push_n,
    .pop_n = tcp_pop_n,
};
