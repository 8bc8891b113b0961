/* src/net/udp.c - UDP edges: one value per datagram, numbered; lossy by design.
 *
 * `udp://host:port`: the consumer binds host:port (port 0 picks one, see dagger_edge_uri); the
 * producer sends to it. Nothing is retransmitted: a datagram the network or a full socket
 * buffer drops is gone, and the consumer counts it from the gap in sequence numbers
 * (stats.drops); a late or duplicated datagram is discarded (its loss was already counted),
 * so pops stay in order. Close sends END (three times, in case one is lost) carrying the
 * number of values sent, so trailing losses are counted as well.
 * Authentication: with `secret=`, every datagram carries the stream's epoch (8 bytes) and a
 * 16-byte tag, HMAC-SHA-256(secret, "dagger-udp-2" || header || payload || epoch) truncated;
 * without one, datagrams carry neither. The epoch is the producer's wall-clock time at open
 * (ms, shifted left 16) with 16 random bits: a consumer takes only epochs from `skew_ms`
 * (default 2000) before its own open on, and only the first such epoch it sees, so datagrams
 * recorded from an earlier stream (values, or an END that would close this one) are refused.
 * Sequence numbers never wrap: a producer refuses its 2^64-1st value. There
 * is no connection for a bad datagram to close, and anyone can send one, so the consumer
 * drops datagrams that are malformed or fail the tag and counts them (stats.rejected; the
 * last reason is in dagger_edge_errmsg); `strict=1` fails the edge with DAGGER_EINVAL instead.
 * Liveness: a producer cannot be seen to die; `idle_ms=N` makes pop fail with DAGGER_EPEER
 * after N ms without a datagram.
 * SPDX-License-Identifier: MIT
 */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define UDP_MAX_DGRAM 65507u /* IPv4's limit; IPv6 allows 20 bytes more, unused */
#define TAG_LEN 16u
#define EPOCH_LEN 8u
static const char tag_label[] = "dagger-udp-2";

struct udp_edge {
    struct dagger_edge base;
    int fd;
    char secret[256];
    int slen;
    int strict;
    int idle_ms;
    int64_t skew_ms;      /* consumer: how much older than its open an epoch may be */
    uint64_t epoch;       /* producer: this stream's; consumer: the one taken (0: none yet) */
    int64_t open_wall_ms; /* consumer: wall-clock time of open */
    int64_t last_rx_ms;   /* consumer: time of the last valid datagram (or of open) */
    uint64_t seq;         /* producer: next to send; consumer: next expected */
    unsigned char *buf;   /* consumer: one datagram (+1 byte to see truncation) */
    size_t bufcap;
};

static void tag_of(struct udp_edge *u, const void *hdr, const void *payload, size_t n,
                   const unsigned char epoch[EPOCH_LEN], uint8_t out[TAG_LEN])
{
    uint8_t mac[32];
    const void *parts[4] = {tag_label, hdr, payload, epoch};
    const size_t lens[4] = {sizeof tag_label - 1, DAGGER__FRAME_HDR, n, EPOCH_LEN};
    dagger__hmac_sha256(u->secret, (size_t)u->slen, parts, lens, 4, mac);
    memcpy(out, mac, TAG_LEN);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, dagger__net_left_ms(deadline));
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return 1;
    }
}

/* Send one datagram: header, payload (from the caller's memory), optional tag. */
static int send_dgram(struct udp_edge *u, unsigned kind, unsigned fl, const void *payload, size_t n,
                      int64_t deadline)
{
    unsigned char hdr[DAGGER__FRAME_HDR], epoch[EPOCH_LEN];
    uint8_t tag[TAG_LEN];
    if (u->slen > 0)
        fl |= DAGGER__FRAME_TAG;
    dagger__frame_put(hdr, kind, fl, (uint32_t)n, u->seq);
    if (u->slen > 0) {
        for (int i = 0; i < 8; i++)
            epoch[i] = (unsigned char)(u->epoch >> (8 * i));
        tag_of(u, hdr, payload, n, epoch, tag);
    }
    struct iovec iov[4] = {
        {hdr, sizeof hdr}, {(void *)payload, n}, {epoch, EPOCH_LEN}, {tag, TAG_LEN}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = u->slen > 0 ? 4 : 2};
    int refused = 0;
    for (;;) {
        ssize_t r = sendmsg(u->fd, &m, MSG_NOSIGNAL);
        if (r >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == ECONNREFUSED && !refused++)
            continue; /* an earlier datagram found no listener; that one is lost, not this */
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            dagger__edge_count(&u->base.st.waits, 1);
            if (!wait_fd(u->fd, POLLOUT, deadline))
                return dagger__edge_note(&u->base, DAGGER_ETIMEDOUT,
                                         "%s: socket buffer full until the timeout", u->base.uri);
            continue;
        }
        if (errno == ECONNREFUSED)
            return dagger__edge_note(&u->base, DAGGER_EPEER, "%s: no consumer is listening",
                                     u->base.uri);
        return dagger__edge_fail(&u->base, DAGGER_EIO, "%s: send: %s", u->base.uri,
                                 strerror(errno));
    }
    dagger__edge_count(&u->base.st.bytes, sizeof hdr + n + (u->slen > 0 ? EPOCH_LEN + TAG_LEN : 0));
    return 0;
}

static int udp_push(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    struct udp_edge *u = (struct udp_edge *)e;
    unsigned fl;
    if (u->seq == UINT64_MAX - 1)
        return dagger__edge_note(e, DAGGER_ERANGE,
                                 "%s: the stream's sequence numbers are used up (2^64 - 2 values); "
                                 "they never wrap",
                                 e->uri);
    long n = dagger__frame_value_size(v, &fl);
    if (n < 0)
        return dagger__edge_note(e, DAGGER_EINVAL, "%s: a %s value cannot cross processes", e->uri,
                                 dagger_kind_name(v->kind));
    if ((uint64_t)n > e->max_payload)
        return dagger__edge_note(e, DAGGER_ERANGE,
                                 "%s: value of %ld bytes exceeds the datagram limit max=%u", e->uri,
                                 n, e->max_payload);
    const void *payload = v->u.p;
    unsigned char small[256];
    unsigned char *tmp = NULL;
    if (!(fl & DAGGER__FRAME_RAW)) {
        tmp = (size_t)n <= sizeof small ? small : dagger__net_calloc((size_t)n);
        if (!tmp)
            return dagger__edge_note(e, DAGGER_ENOMEM, "%s: out of memory", e->uri);
        dagger__frame_value_write(tmp, v, fl, (size_t)n);
        payload = tmp;
    }
    int rc =
        send_dgram(u, DAGGER__FRAME_DATA, fl, payload, (size_t)n, dagger__net_deadline(timeout_ms));
    if (tmp && tmp != small)
        dagger__net_free(tmp);
    if (rc < 0)
        return rc;
    u->seq++;
    dagger__edge_count(&e->st.values, 1);
    return 0;
}

/* A datagram that cannot be trusted: count it, or fail the edge when strict. */
static int reject(struct udp_edge *u, const char *why)
{
    dagger__edge_count(&u->base.st.rejected, 1);
    if (u->strict)
        return dagger__edge_fail(&u->base, DAGGER_EINVAL, "%s: bad datagram: %s", u->base.uri, why);
    dagger__edge_note(&u->base, 0, "%s: dropped a bad datagram: %s", u->base.uri, why);
    return 0;
}

static int udp_pop(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct udp_edge *u = (struct udp_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    char err[160];
    int rc;
    for (int turn = 0;; turn++) {
        /* Checked on every turn, not only when the socket is empty: a stream of junk or
         * duplicate datagrams must not hold a pop past its deadline or past idle_ms. */
        if (turn > 0 && (deadline >= 0 || u->idle_ms > 0)) {
            int64_t now = dagger__net_now_ms();
            if (u->idle_ms > 0 && now >= u->last_rx_ms + u->idle_ms)
                return dagger__edge_fail(e, DAGGER_EPEER,
                                         "%s: no valid datagram from the producer for %d ms "
                                         "(idle_ms) after %llu values",
                                         e->uri, u->idle_ms, (unsigned long long)u->seq);
            if (deadline >= 0 && now >= deadline)
                return dagger__edge_note(e, DAGGER_ETIMEDOUT, "%s: no value before the timeout",
                                         e->uri);
        }
        ssize_t r = recv(u->fd, u->buf, u->bufcap, MSG_TRUNC | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return dagger__edge_fail(e, DAGGER_EIO, "%s: recv: %s", e->uri, strerror(errno));
            int64_t d = deadline;
            int idle = 0;
            if (u->idle_ms > 0 && (d < 0 || u->last_rx_ms + u->idle_ms < d)) {
                d = u->last_rx_ms + u->idle_ms;
                idle = 1;
            }
            dagger__edge_count(&e->st.waits, 1);
            if (!wait_fd(u->fd, POLLIN, d)) {
                if (idle)
                    return dagger__edge_fail(e, DAGGER_EPEER,
                                             "%s: no datagram from the producer for %d ms "
                                             "(idle_ms) after %llu values",
                                             e->uri, u->idle_ms, (unsigned long long)u->seq);
                return dagger__edge_note(e, DAGGER_ETIMEDOUT, "%s: no value before the timeout",
                                         e->uri);
            }
            continue;
        }
        size_t len = (size_t)r;
        if (len > u->bufcap - 1) {
            dagger__net_fmt(err, sizeof err, "%zu bytes, above the limit of %zu", len,
                            u->bufcap - 1);
            if ((rc = reject(u, err)) < 0)
                return rc;
            continue;
        }
        struct dagger__frame f;
        if (len < DAGGER__FRAME_HDR) {
            dagger__net_fmt(err, sizeof err, "%zu bytes, shorter than a frame header", len);
            if ((rc = reject(u, err)) < 0)
                return rc;
            continue;
        }
        if (dagger__frame_get(u->buf, e->max_payload, &f, err, sizeof err) < 0) {
            if ((rc = reject(u, err)) < 0)
                return rc;
            continue;
        }
        size_t tag = f.flags & DAGGER__FRAME_TAG ? EPOCH_LEN + TAG_LEN : 0;
        if (len != DAGGER__FRAME_HDR + f.len + tag) {
            dagger__net_fmt(err, sizeof err, "%zu bytes where the header announces %zu", len,
                            (size_t)(DAGGER__FRAME_HDR + f.len + tag));
            if ((rc = reject(u, err)) < 0)
                return rc;
            continue;
        }
        if ((u->slen > 0) != (tag != 0)) {
            if ((rc = reject(u, u->slen > 0 ? "no authentication tag"
                                            : "tagged, but this end has no secret")) < 0)
                return rc;
            continue;
        }
        if (tag) {
            uint8_t want[TAG_LEN];
            const unsigned char *ep = u->buf + DAGGER__FRAME_HDR + f.len;
            tag_of(u, u->buf, u->buf + DAGGER__FRAME_HDR, f.len, ep, want);
            if (!dagger__ct_equal(want, ep + EPOCH_LEN, TAG_LEN)) {
                if ((rc = reject(u, "authentication tag mismatch (wrong secret?)")) < 0)
                    return rc;
                continue;
            }
            uint64_t epoch = 0;
            for (int i = 0; i < 8; i++)
                epoch |= (uint64_t)ep[i] << (8 * i);
            if (u->epoch == 0 && (int64_t)(epoch >> 16) + u->skew_ms < u->open_wall_ms) {
                if ((rc = reject(u, "a stream that began before this end opened (a replay?)")) < 0)
                    return rc;
                continue;
            }
            if (u->epoch != 0 && epoch != u->epoch) {
                if ((rc = reject(u, "a datagram of another stream (a replay?)")) < 0)
                    return rc;
                continue;
            }
            u->epoch = epoch;
        }
        if (f.seq == UINT64_MAX && f.kind == DAGGER__FRAME_DATA) {
            if ((rc = reject(u, "sequence number 2^64 - 1 (numbers never wrap)")) < 0)
                return rc;
            continue;
        }
        if (f.kind != DAGGER__FRAME_DATA && f.kind != DAGGER__FRAME_END) {
            if ((rc = reject(u, "unexpected frame kind")) < 0)
                return rc;
            continue;
        }
        u->last_rx_ms = dagger__net_now_ms();
        if (f.seq < u->seq)
            continue; /* late or duplicate: its loss was counted when the gap was seen */
        dagger__edge_count(&e->st.drops, f.seq - u->seq);
        if (f.kind == DAGGER__FRAME_END) {
            u->seq = f.seq;
            if (f.flags & DAGGER__FRAME_ABORT) { /* its payload: the producer's reason */
                int wlen = f.len > 200 ? 200 : (int)f.len;
                return dagger__edge_fail(e, DAGGER_EPEER,
                                         "%s: the producer failed after %llu values (its edge "
                                         "was aborted): the stream is incomplete%s%.*s",
                                         e->uri, (unsigned long long)f.seq,
                                         wlen ? "; the producer: " : "", wlen,
                                         (const char *)u->buf + DAGGER__FRAME_HDR);
            }
            return dagger__edge_fail(e, DAGGER_ECLOSED, "%s: the producer closed after %llu values",
                                     e->uri, (unsigned long long)f.seq);
        }
        f.flags &= ~(uint32_t)DAGGER__FRAME_TAG;
        if (dagger__frame_value_read(&f, u->buf + DAGGER__FRAME_HDR, out, err, sizeof err) < 0) {
            if ((rc = reject(u, err)) < 0)
                return rc;
            continue;
        }
        u->seq = f.seq + 1;
        dagger__edge_count(&e->st.values, 1);
        dagger__edge_count(&e->st.bytes, len);
        return 0;
    }
}

static int udp_poll(struct dagger_edge *e, int timeout_ms)
{
    struct udp_edge *u = (struct udp_edge *)e;
    return wait_fd(u->fd, e->end == DAGGER_EDGE_POP ? POLLIN : POLLOUT,
                   dagger__net_deadline(timeout_ms));
}

static int udp_close(struct dagger_edge *e)
{
    struct udp_edge *u = (struct udp_edge *)e;
    int rc = 0;
    /* A failed or aborted producer sends END|ABORT with its reason (best effort, as END): the
     * consumer then fails with DAGGER_EPEER instead of waiting for idle_ms or ending cleanly. */
    bool failed = e->aborted || e->err;
    const char *why = e->reason[0] ? e->reason : e->errmsg;
    size_t wlen = failed ? strnlen(why, sizeof e->reason - 1) : 0;
    if (wlen > e->max_payload)
        wlen = e->max_payload;
    if (e->end == DAGGER_EDGE_PUSH)
        for (int i = 0; i < 3; i++) {
            int r = send_dgram(u, DAGGER__FRAME_END, failed ? DAGGER__FRAME_ABORT : 0, why, wlen,
                               dagger__net_deadline(100));
            rc = failed || rc ? rc : (r == DAGGER_EPEER ? 0 : r);
        }
    close(u->fd);
    memset(u->secret, 0, sizeof u->secret);
    dagger__net_free(u->buf);
    dagger__net_free(u);
    return rc;
}

static const char *const udp_keys[] = {"secret",  "secret_env", "max",     "strict",
                                       "idle_ms", "rcvbuf",     "skew_ms", NULL};

static int udp_open_edge(struct dagger_edge **out, const struct dagger__uri *uri, unsigned end,
                         char *err, size_t errcap)
{
    int64_t maxp, strict, idle, rcvbuf, skew;
    int rc;
    if ((rc = dagger__uri_check_keys(uri, udp_keys, err, errcap)) < 0)
        return rc;
    if (!uri->host[0] || uri->port < 0 || (uri->path[0] && strcmp(uri->path, "/") != 0)) {
        dagger__net_fmt(err, errcap, "udp: expected udp://host:port[?params]");
        return DAGGER_EINVAL;
    }
    if (end == DAGGER_EDGE_PUSH && uri->port == 0) {
        dagger__net_fmt(err, errcap, "udp: a producer needs the consumer's port, not 0");
        return DAGGER_EINVAL;
    }
    const int64_t maxlimit = UDP_MAX_DGRAM - DAGGER__FRAME_HDR - EPOCH_LEN - TAG_LEN;
    if ((rc = dagger__uri_int(uri, "max", maxlimit, 0, maxlimit, &maxp, err, errcap)) < 0 ||
        (rc = dagger__uri_int(uri, "strict", 0, 0, 1, &strict, err, errcap)) < 0 ||
        (rc = dagger__uri_int(uri, "idle_ms", 0, 0, 3600000, &idle, err, errcap)) < 0 ||
        (rc = dagger__uri_int(uri, "rcvbuf", 4 << 20, 0, 1 << 30, &rcvbuf, err, errcap)) < 0 ||
        (rc = dagger__uri_int(uri, "skew_ms", 2000, 0, 86400000, &skew, err, errcap)) < 0)
        return rc;
    struct udp_edge *u = dagger__net_calloc(sizeof *u);
    if (!u) {
        dagger__net_fmt(err, errcap, "udp: out of memory");
        return DAGGER_ENOMEM;
    }
    u->fd = -1;
    u->slen = dagger__uri_secret(uri, u->secret, sizeof u->secret, err, errcap);
    if (u->slen < 0) {
        rc = u->slen;
        goto fail;
    }
    u->base.max_payload = (uint32_t)maxp;
    u->strict = (int)strict;
    u->idle_ms = (int)idle;
    u->skew_ms = skew;
    u->open_wall_ms = wall_ms();
    if (end == DAGGER_EDGE_PUSH && u->slen > 0) {
        uint16_t r16 = 0;
        if ((rc = dagger__random(&r16, sizeof r16)) < 0) {
            dagger__net_fmt(err, errcap, "udp: no random bytes for the stream's epoch");
            goto fail;
        }
        u->epoch = (uint64_t)u->open_wall_ms << 16 | r16;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_DGRAM,
                             .ai_flags =
                                 AI_NUMERICSERV | (end == DAGGER_EDGE_POP ? AI_PASSIVE : 0)};
    struct addrinfo *ai = NULL;
    char port[8];
    dagger__net_fmt(port, sizeof port, "%d", uri->port);
    int g = getaddrinfo(uri->host, port, &hints, &ai);
    if (g != 0 || !ai) {
        dagger__net_fmt(err, errcap, "udp: cannot resolve %s: %s", uri->host, gai_strerror(g));
        rc = DAGGER_EINVAL;
        goto fail;
    }
    struct sockaddr_storage sa;
    socklen_t sl = ai->ai_addrlen;
    memcpy(&sa, ai->ai_addr, sl);
    freeaddrinfo(ai);
    u->fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0) {
        dagger__net_fmt(err, errcap, "udp: socket: %s", strerror(errno));
        rc = DAGGER_EIO;
        goto fail;
    }
    if (end == DAGGER_EDGE_POP) {
        int b = (int)rcvbuf;
        if (b)
            setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &b, sizeof b);
        if ((rc = dagger__net_check_exposed((struct sockaddr *)&sa, u->slen > 0, "udp", err,
                                            errcap)) < 0)
            goto fail;
        if (bind(u->fd, (struct sockaddr *)&sa, sl) < 0) {
            dagger__net_fmt(err, errcap, "udp: cannot bind %s:%d: %s", uri->host, uri->port,
                            strerror(errno));
            rc = errno == EADDRINUSE || errno == EACCES ? DAGGER_EBUSY : DAGGER_EIO;
            goto fail;
        }
        sl = sizeof sa;
        getsockname(u->fd, (struct sockaddr *)&sa, &sl);
        u->bufcap = UDP_MAX_DGRAM + 1;
        u->buf = dagger__net_calloc(u->bufcap);
        if (!u->buf) {
            dagger__net_fmt(err, errcap, "udp: out of memory");
            rc = DAGGER_ENOMEM;
            goto fail;
        }
        u->last_rx_ms = dagger__net_now_ms();
    } else if (connect(u->fd, (struct sockaddr *)&sa, sl) < 0) {
        dagger__net_fmt(err, errcap, "udp: cannot address %s:%d: %s", uri->host, uri->port,
                        strerror(errno));
        rc = DAGGER_EIO;
        goto fail;
    }
    char host[64] = "?";
    int p = 0;
    if (sa.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof host);
        p = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        dagger__net_fmt(u->base.uri, sizeof u->base.uri, "udp://%s:%d", host, p);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof host);
        p = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        dagger__net_fmt(u->base.uri, sizeof u->base.uri, "udp://[%s]:%d", host, p);
    }
    *out = &u->base;
    return 0;
fail:
    if (u->fd >= 0)
        close(u->fd);
    memset(u->secret, 0, sizeof u->secret);
    dagger__net_free(u->buf);
    dagger__net_free(u);
    return rc;
}

const struct dagger__transport_ops dagger__udp_ops = {
    .scheme = "udp",
    .open = udp_open_edge,
    .close = udp_close,
    .push = udp_push,
    .pop = udp_pop,
    .poll = udp_poll,
    .flush = NULL,
};
