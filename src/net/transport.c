/* src/net/transport.c - the edge API, the transport registry, framing, URIs, SHA-256.
 *
 * Design: dagger_edge_* check their arguments and the edge's sticky error, then call the
 * backend found by the URI's scheme. Built-in backends (shm, tcp, udp) are always in the
 * table; others (MPI, MQTT, NATS) add themselves with dagger__transport_register.
 * SHA-256 and HMAC (FIPS 180-4, RFC 2104) are written here because the handshakes need them
 * and dagger does not depend on a crypto library; they were checked against the FIPS 180-4 and
 * RFC 4231 test vectors.
 * SPDX-License-Identifier: MIT
 */
#include "net/net.h"

#include "common/alloc.h"
#include "common/common.h"
#include "core/core.h"

#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* ---------------------------------------------------------------- small helpers */

void *dagger__net_calloc(size_t n) { return dagger__calloc(1, n ? n : 1); }
void *dagger__net_realloc(void *p, size_t n) { return dagger__realloc(p, n ? n : 1); }
void dagger__net_free(void *p) { dagger__free(p); }

void dagger__net_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

int64_t dagger__net_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t dagger__net_now_ms(void) { return dagger__net_now_ns() / 1000000; }

int64_t dagger__net_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : dagger__net_now_ms() + timeout_ms;
}

int dagger__net_left_ms(int64_t deadline_ms)
{
    if (deadline_ms < 0)
        return -1;
    int64_t left = deadline_ms - dagger__net_now_ms();
    return left < 0 ? 0 : (left > 1000000000 ? 1000000000 : (int)left);
}

/* Open failures have no edge to carry the message: it goes to the thread's last message. */
static void set_last_errmsg(const char *msg) { (void)dagger__set_errmsg_str(0, msg); }

int dagger__edge_fail(struct dagger_edge *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->errmsg, sizeof e->errmsg, fmt, ap);
    va_end(ap);
    if (!e->err)
        e->err = code;
    e->rn = e->wn = 0; /* no armed run after an error (the backend settles from rp, wp) */
    return e->err;
}

int dagger__edge_note(struct dagger_edge *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->errmsg, sizeof e->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

/* ---------------------------------------------------------------- frames */

_Static_assert(sizeof(dagger_value_t) == 16, "dagger_value_t is 16 bytes");

static void frame_put(void *dst, unsigned kind, unsigned flags, uint32_t len, uint32_t count,
                      uint64_t seq)
{
    unsigned char *p = dst;
    uint32_t magic = htole32(DAGGER__FRAME_MAGIC), l = htole32(len), z = htole32(count);
    uint16_t fl = htole16((uint16_t)flags);
    uint64_t s = htole64(seq);
    memcpy(p, &magic, 4);
    p[4] = DAGGER__FRAME_VERSION;
    p[5] = (unsigned char)kind;
    memcpy(p + 6, &fl, 2);
    memcpy(p + 8, &l, 4);
    memcpy(p + 12, &z, 4);
    memcpy(p + 16, &s, 8);
}

void dagger__frame_put(void *dst, unsigned kind, unsigned flags, uint32_t len, uint64_t seq)
{
    frame_put(dst, kind, flags, len, 0, seq);
}

void dagger__frame_put_batch(void *dst, unsigned kind, uint32_t len, uint32_t count, uint64_t seq)
{
    frame_put(dst, kind, 0, len, count, seq);
}

int dagger__frame_get(const void *src, uint32_t max_payload, struct dagger__frame *f, char *err,
                      size_t errcap)
{
    const unsigned char *p = src;
    uint32_t magic, len, rsv;
    uint16_t fl;
    uint64_t seq;
    memcpy(&magic, p, 4);
    memcpy(&fl, p + 6, 2);
    memcpy(&len, p + 8, 4);
    memcpy(&rsv, p + 12, 4);
    memcpy(&seq, p + 16, 8);
    magic = le32toh(magic);
    len = le32toh(len);
    if (magic != DAGGER__FRAME_MAGIC) {
        dagger__net_fmt(err, errcap, "bad frame magic 0x%08x (not a dagger peer?)", magic);
        return DAGGER_EINVAL;
    }
    if (p[4] != DAGGER__FRAME_VERSION) {
        dagger__net_fmt(err, errcap, "frame version %u, this build speaks %u", p[4],
                        DAGGER__FRAME_VERSION);
        return DAGGER_EINVAL;
    }
    if (p[5] < 1 || p[5] > DAGGER__FRAME_KIND_MAX_) {
        dagger__net_fmt(err, errcap, "unknown frame kind %u", p[5]);
        return DAGGER_EINVAL;
    }
    if (le16toh(fl) & ~DAGGER__FRAME_FLAGS_ALL_) {
        dagger__net_fmt(err, errcap, "unknown frame flags 0x%x", le16toh(fl));
        return DAGGER_EINVAL;
    }
    rsv = le32toh(rsv);
    if (p[5] == DAGGER__FRAME_BATCH) {
        if (len > DAGGER__BATCH_MAX || fl) {
            dagger__net_fmt(err, errcap,
                            "batch frame of %u bytes with flags 0x%x (at most %u "
                            "bytes, no flags)",
                            len, le16toh(fl), DAGGER__BATCH_MAX);
            return DAGGER_EINVAL;
        }
        if (rsv == 0 || rsv > len / 4) {
            dagger__net_fmt(err, errcap, "batch frame of %u bytes says it holds %u values", len,
                            rsv);
            return DAGGER_EINVAL;
        }
    } else if (p[5] == DAGGER__FRAME_PACKED) {
        if (len > DAGGER__BATCH_MAX || fl) {
            dagger__net_fmt(err, errcap,
                            "packed frame of %u bytes with flags 0x%x (at most %u bytes, no "
                            "flags)",
                            len, le16toh(fl), DAGGER__BATCH_MAX);
            return DAGGER_EINVAL;
        }
        if (rsv == 0 || rsv > len || len % rsv) {
            dagger__net_fmt(err, errcap,
                            "packed frame of %u bytes says it holds %u values (a count of at "
                            "least 1 that divides the length)",
                            len, rsv);
            return DAGGER_EINVAL;
        }
    } else if (rsv != 0) {
        dagger__net_fmt(err, errcap, "count field of a kind-%u frame is %u, not 0", p[5], rsv);
        return DAGGER_EINVAL;
    } else if (len > max_payload) {
        dagger__net_fmt(err, errcap, "frame length %u exceeds the edge's limit of %u bytes", len,
                        max_payload);
        return DAGGER_EINVAL;
    }
    f->kind = p[5];
    f->flags = le16toh(fl);
    f->len = len;
    f->count = rsv;
    f->seq = le64toh(seq);
    return 0;
}

void dagger__batch_rec_put(void *dst, const dagger_value_t *v, unsigned flags, uint32_t n)
{
    unsigned char *p = dst;
    uint32_t w = htole32(n | (flags & DAGGER__FRAME_RAW ? DAGGER__BATCH_RAW : 0)), z = 0;
    uint32_t rec = dagger__batch_rec_size(n);
    memcpy(p + rec - 4, &z, 4); /* the padding (overwritten by the payload where it lies) */
    memcpy(p, &w, 4);
    dagger__frame_value_write(p + 4, v, flags, n);
}

int dagger__batch_begin(const struct dagger__frame *f, uint32_t max_payload,
                        struct dagger__batch *b, char *err, size_t errcap)
{
    *b = (struct dagger__batch){0, f->count, 0};
    if (f->kind != DAGGER__FRAME_PACKED)
        return 0;
    b->size = f->len / f->count; /* >= 1: dagger__frame_get checked count <= len */
    if (b->size > max_payload) {
        b->left = 0;
        dagger__net_fmt(err, errcap,
                        "packed frame seq %llu: values of %u bytes exceed the limit of %u",
                        (unsigned long long)f->seq, b->size, max_payload);
        return DAGGER_EINVAL;
    }
    return 0;
}

void dagger__batch_unpack(unsigned char *p, uint32_t count, uint32_t size)
{
    uint32_t rec = dagger__batch_rec_size(size), w = htole32(size | DAGGER__BATCH_RAW);
    /* From the last value: record j starts at or after value j, which ends before record j+1,
     * so no value is overwritten before it has moved. */
    for (uint32_t j = count; j-- > 0;) {
        unsigned char *r = p + (size_t)j * rec;
        memmove(r + 4, p + (size_t)j * size, size);
        memcpy(r, &w, 4);
        memset(r + 4 + size, 0, rec - 4 - size);
    }
}

int dagger__batch_read(const struct dagger__frame *f, const unsigned char *p,
                       struct dagger__batch *b, uint32_t max_payload, uint64_t seq,
                       dagger_value_t *out, char *err, size_t errcap)
{
    uint32_t w, room = f->len - b->off;
    if (b->size) {
        if (b->left == 0 || b->off > f->len || room < b->size ||
            (b->left == 1 ? room != b->size : room - b->size < b->size)) {
            dagger__net_fmt(err, errcap,
                            "packed frame seq %llu: value seq %llu of %u bytes at offset %u does "
                            "not match its %u bytes for %u values",
                            (unsigned long long)f->seq, (unsigned long long)seq, b->size, b->off,
                            f->len, f->count);
            return DAGGER_EINVAL;
        }
        *out = (dagger_value_t){.kind = DAGGER_KIND_BLOB};
        out->len = b->size;
        out->u.p = p + b->off;
        b->off += b->size;
        b->left--;
        return 0;
    }
    if (b->left == 0 || b->off > f->len || room < 4) {
        dagger__net_fmt(err, errcap, "batch frame seq %llu: its %u values run past its %u bytes",
                        (unsigned long long)f->seq, f->count, f->len);
        return DAGGER_EINVAL;
    }
    memcpy(&w, p + b->off, 4);
    w = le32toh(w);
    struct dagger__frame one = {.kind = DAGGER__FRAME_DATA,
                                .flags = w & DAGGER__BATCH_RAW ? DAGGER__FRAME_RAW : 0,
                                .len = w & ~DAGGER__BATCH_RAW,
                                .seq = seq};
    if (one.len > max_payload) {
        dagger__net_fmt(err, errcap, "value seq %llu in a batch: %u bytes exceed the limit of %u",
                        (unsigned long long)seq, one.len, max_payload);
        return DAGGER_EINVAL;
    }
    if (one.len > room - 4 || dagger__batch_rec_size(one.len) > room) {
        dagger__net_fmt(err, errcap,
                        "value seq %llu in a batch: a record of %u bytes at offset %u runs past "
                        "the frame's %u bytes",
                        (unsigned long long)seq, one.len, b->off, f->len);
        return DAGGER_EINVAL;
    }
    uint32_t next = b->off + dagger__batch_rec_size(one.len);
    if (b->left == 1 && next != f->len) {
        dagger__net_fmt(err, errcap,
                        "batch frame seq %llu: %u bytes follow the last of its %u values",
                        (unsigned long long)f->seq, f->len - next, f->count);
        return DAGGER_EINVAL;
    }
    if (b->left > 1 && f->len - next < 4) {
        dagger__net_fmt(err, errcap, "batch frame seq %llu ends after %u of its %u values",
                        (unsigned long long)f->seq, f->count - b->left + 1, f->count);
        return DAGGER_EINVAL;
    }
    int rc = dagger__frame_value_read(&one, p + b->off + 4, out, err, errcap);
    if (rc < 0)
        return rc;
    b->off = next;
    b->left--;
    return 0;
}

long dagger__edge_payload_size(struct dagger_edge *e, const dagger_value_t *v, unsigned *fl,
                               const char *limit)
{
    long n;
    if (v->kind == DAGGER_KIND_BLOB && (v->u.p || !v->len)) { /* the common case, inline */
        n = (long)v->len;
        *fl = DAGGER__FRAME_RAW;
    } else {
        n = dagger__frame_value_size(v, fl);
    }
    if (n < 0)
        return dagger__edge_note(e, DAGGER_EINVAL, "%s: a %s value cannot cross processes", e->uri,
                                 dagger_kind_name(v->kind));
    if ((uint64_t)n > e->max_payload)
        return dagger__edge_note(e, DAGGER_ERANGE, "%s: value of %ld bytes exceeds %s=%u", e->uri,
                                 n, limit, e->max_payload);
    return n;
}

long dagger__frame_value_size(const dagger_value_t *v, unsigned *flags)
{
    if (v->kind == DAGGER_KIND_BLOB) {
        if (v->len && !v->u.p)
            return DAGGER_EINVAL;
        *flags = DAGGER__FRAME_RAW;
        return (long)v->len;
    }
    *flags = 0;
    if (v->kind == DAGGER_KIND_PTR)
        return DAGGER_EINVAL;
    return dagger_value_encode(v, NULL, 0);
}

void dagger__frame_value_write(void *dst, const dagger_value_t *v, unsigned flags, size_t size)
{
    if (flags & DAGGER__FRAME_RAW) {
        if (size)
            memcpy(dst, v->u.p, size);
        return;
    }
    long n = dagger_value_encode(v, dst, size);
    (void)n; /* the size was computed by dagger__frame_value_size for this very value */
}

int dagger__frame_value_read(const struct dagger__frame *f, const void *p, dagger_value_t *out,
                             char *err, size_t errcap)
{
    if (f->flags & DAGGER__FRAME_RAW) {
        dagger_value_t v = dagger_nil();
        v.kind = DAGGER_KIND_BLOB;
        v.len = f->len;
        v.u.p = p;
        *out = v;
        return 0;
    }
    if (f->len == 0) {
        dagger__net_fmt(err, errcap, "empty value payload (seq %llu)", (unsigned long long)f->seq);
        return DAGGER_EINVAL;
    }
    dagger_value_t v;
    long n = dagger_value_decode(p, f->len, &v);
    if (n < 0) {
        dagger__net_fmt(err, errcap, "malformed or truncated value in frame seq %llu (%u bytes)",
                        (unsigned long long)f->seq, f->len);
        return DAGGER_EINVAL;
    }
    if ((uint64_t)n != f->len) {
        dagger__net_fmt(err, errcap, "frame seq %llu: value uses %ld of %u bytes",
                        (unsigned long long)f->seq, n, f->len);
        return DAGGER_EINVAL;
    }
    if (v.kind == DAGGER_KIND_PTR || v.kind >= DAGGER_KIND_COUNT_) {
        dagger__net_fmt(err, errcap, "frame seq %llu carries a value of kind %u",
                        (unsigned long long)f->seq, v.kind);
        return DAGGER_EINVAL;
    }
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- URIs */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copy [s, s+n) into dst (cap bytes) percent-decoding; returns -1 if it does not fit or has a
 * bad escape. */
static int copy_decoded(char *dst, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (o + 1 >= cap || c == 0)
            return -1;
        dst[o++] = (char)c;
    }
    dst[o] = 0;
    return 0;
}

int dagger__uri_parse(const char *text, struct dagger__uri *u, char *err, size_t errcap)
{
    memset(u, 0, sizeof *u);
    u->port = -1;
    if (!text) {
        dagger__net_fmt(err, errcap, "NULL URI");
        return DAGGER_EINVAL;
    }
    const char *colon = strchr(text, ':');
    size_t sl = colon ? (size_t)(colon - text) : 0;
    if (!colon || sl == 0 || sl >= sizeof u->scheme) {
        dagger__net_fmt(err, errcap, "'%.64s': no scheme (expected shm:, tcp:// or udp://)", text);
        return DAGGER_EINVAL;
    }
    for (size_t i = 0; i < sl; i++)
        u->scheme[i] = (char)tolower((unsigned char)text[i]);
    const char *p = colon + 1;
    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);
    if (end - p >= 2 && p[0] == '/' && p[1] == '/') {
        p += 2;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *hend = slash ? slash : end;
        const char *pc = NULL;
        if (p < hend && *p == '[') { /* [v6]:port */
            const char *rb = memchr(p, ']', (size_t)(hend - p));
            if (!rb) {
                dagger__net_fmt(err, errcap, "'%.64s': unterminated [address]", text);
                return DAGGER_EINVAL;
            }
            if (copy_decoded(u->host, sizeof u->host, p + 1, (size_t)(rb - p - 1)) < 0)
                goto bad_host;
            pc = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
            if (!pc && rb + 1 != hend)
                goto bad_host;
        } else {
            pc = memchr(p, ':', (size_t)(hend - p));
            if (copy_decoded(u->host, sizeof u->host, p, (size_t)((pc ? pc : hend) - p)) < 0)
                goto bad_host;
        }
        if (pc) {
            long port = 0;
            const char *d = pc + 1;
            if (d == hend) {
                dagger__net_fmt(err, errcap, "'%.64s': empty port", text);
                return DAGGER_EINVAL;
            }
            for (; d < hend; d++) {
                if (!isdigit((unsigned char)*d) || (port = port * 10 + (*d - '0')) > 65535) {
                    dagger__net_fmt(err, errcap, "'%.64s': bad port (0..65535)", text);
                    return DAGGER_EINVAL;
                }
            }
            u->port = (int)port;
        }
        p = hend;
    }
    if (p < end && copy_decoded(u->path, sizeof u->path, p, (size_t)(end - p)) < 0) {
        dagger__net_fmt(err, errcap, "'%.64s': path too long or badly escaped", text);
        return DAGGER_EINVAL;
    }
    if (q) {
        const char *s = q + 1;
        while (*s) {
            const char *amp = strchr(s, '&');
            const char *pe = amp ? amp : s + strlen(s);
            const char *eq = memchr(s, '=', (size_t)(pe - s));
            if (pe != s) {
                if (u->nparams == DAGGER__URI_MAX_PARAMS) {
                    dagger__net_fmt(err, errcap, "too many URI parameters (max %d)",
                                    DAGGER__URI_MAX_PARAMS);
                    return DAGGER_EINVAL;
                }
                const char *ke = eq ? eq : pe;
                int i = u->nparams++;
                if (ke == s ||
                    copy_decoded(u->params[i].key, sizeof u->params[i].key, s, (size_t)(ke - s)) <
                        0 ||
                    (eq && copy_decoded(u->params[i].val, sizeof u->params[i].val, eq + 1,
                                        (size_t)(pe - eq - 1)) < 0)) {
                    dagger__net_fmt(err, errcap, "bad URI parameter '%.*s'",
                                    (int)(pe - s > 40 ? 40 : pe - s), s);
                    return DAGGER_EINVAL;
                }
                for (int j = 0; j < i; j++)
                    if (strcmp(u->params[j].key, u->params[i].key) == 0) {
                        dagger__net_fmt(err, errcap, "URI parameter '%s' given twice",
                                        u->params[i].key);
                        return DAGGER_EINVAL;
                    }
            }
            s = amp ? amp + 1 : pe;
        }
    }
    return 0;
bad_host:
    dagger__net_fmt(err, errcap, "'%.64s': bad or too long host", text);
    return DAGGER_EINVAL;
}

const char *dagger__uri_get(const struct dagger__uri *u, const char *key)
{
    for (int i = 0; i < u->nparams; i++)
        if (strcmp(u->params[i].key, key) == 0)
            return u->params[i].val;
    return NULL;
}

int dagger__uri_int(const struct dagger__uri *u, const char *key, int64_t def, int64_t lo,
                    int64_t hi, int64_t *out, char *err, size_t errcap)
{
    const char *s = dagger__uri_get(u, key);
    if (!s) {
        *out = def;
        return 0;
    }
    char *e = NULL;
    errno = 0;
    long long v = strtoll(s, &e, 0);
    int64_t mul = 1;
    if (e && (*e == 'k' || *e == 'K'))
        mul = 1024, e++;
    else if (e && (*e == 'm' || *e == 'M'))
        mul = 1024 * 1024, e++;
    else if (e && (*e == 'g' || *e == 'G'))
        mul = 1024 * 1024 * 1024, e++;
    if (errno || e == s || *e || v < lo / mul || v > hi / mul || v * mul < lo || v * mul > hi) {
        dagger__net_fmt(err, errcap, "parameter %s=%s: expected an integer in [%lld, %lld]", key, s,
                        (long long)lo, (long long)hi);
        return DAGGER_EINVAL;
    }
    *out = v * mul;
    return 0;
}

int dagger__uri_check_keys(const struct dagger__uri *u, const char *const *allowed, char *err,
                           size_t errcap)
{
    for (int i = 0; i < u->nparams; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, u->params[i].key) == 0;
        if (!ok) {
            dagger__net_fmt(err, errcap, "unknown %s: parameter '%s'", u->scheme, u->params[i].key);
            return DAGGER_EINVAL;
        }
    }
    return 0;
}

int dagger__uri_secret(const struct dagger__uri *u, char *out, size_t cap, char *err, size_t errcap)
{
    const char *s = dagger__uri_get(u, "secret");
    const char *env = dagger__uri_get(u, "secret_env");
    if (s && env) {
        dagger__net_fmt(err, errcap, "give secret= or secret_env=, not both");
        return DAGGER_EINVAL;
    }
    if (env) {
        s = getenv(env);
        if (!s || !*s) {
            dagger__net_fmt(err, errcap, "secret_env=%s: the variable is unset or empty", env);
            return DAGGER_EINVAL;
        }
    }
    if (!s) {
        out[0] = 0;
        return 0;
    }
    int crc = dagger__crypto_check(err, errcap); /* never run unauthenticated by accident */
    if (crc < 0)
        return crc;
    size_t n = strlen(s);
    if (n + 1 > cap) {
        dagger__net_fmt(err, errcap, "secret longer than %zu bytes", cap - 1);
        return DAGGER_EINVAL;
    }
    memcpy(out, s, n + 1);
    return (int)n;
}

/* ---------------------------------------------------------------- exposure */

static _Atomic int exposed_warned;

int dagger__net_check_exposed(const struct sockaddr *sa, int has_secret, const char *what,
                              char *err, size_t errcap)
{
    if (has_secret)
        return 0;
    int loopback = 0;
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        loopback = (a >> 24) == 127;
    } else if (sa->sa_family == AF_INET6) {
        loopback = IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    }
    if (loopback)
        return 0;
    const char *req = getenv("DAGGER_REQUIRE_SECRET");
    if (req && strcmp(req, "1") == 0) {
        dagger__net_fmt(err, errcap,
                        "%s: refusing to listen beyond loopback without a secret "
                        "(DAGGER_REQUIRE_SECRET=1): add secret= or secret_env=",
                        what);
        return DAGGER_EACCES;
    }
    if (!atomic_exchange(&exposed_warned, 1))
        fprintf(stderr,
                "dagger: warning: a %s edge listens beyond loopback without a secret: anyone who "
                "can reach it can feed or drain the stream (set secret=, or "
                "DAGGER_REQUIRE_SECRET=1 to refuse)\n",
                what);
    return 0;
}

/* ---------------------------------------------------------------- registry */

#define MAX_TRANSPORTS 16

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct dagger__transport_ops *registered[MAX_TRANSPORTS]; /* guarded by reg_lock */
static int nregistered;                                                /* guarded by reg_lock */

/* Optional backends compiled into this build (src/net/<backend>/), listed by CMake in the
 * generated net_backends.h; each exports dagger__net_<backend>_ops, a NULL-terminated list of
 * its schemes' vtables. */
#include "net_backends.h"
#define DAGGER_NET_BACKEND_DECL_(b)                                                                \
    extern const struct dagger__transport_ops *const dagger__net_##b##_ops[];
#define DAGGER_NET_BACKEND_LIST_(b) dagger__net_##b##_ops,
DAGGER__NET_BACKENDS(DAGGER_NET_BACKEND_DECL_)
static const struct dagger__transport_ops *const *const backends[] = {
    DAGGER__NET_BACKENDS(DAGGER_NET_BACKEND_LIST_) NULL};

static const struct dagger__transport_ops *const builtins[] = {&dagger__shm_ops, &dagger__tcp_ops,
                                                               &dagger__udp_ops};

static void append_scheme(char *buf, size_t cap, size_t *o, const char *scheme)
{
    if (*o < cap)
        *o += (size_t)snprintf(buf + *o, cap - *o, "%s%s", *o ? ", " : "", scheme);
}

/* "shm, tcp, udp, mqtt, ...": every scheme this build knows, for the unknown-scheme message. */
static void known_schemes(char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        append_scheme(buf, cap, &o, builtins[i]->scheme);
    for (size_t b = 0; backends[b]; b++)
        for (size_t i = 0; backends[b][i]; i++)
            append_scheme(buf, cap, &o, backends[b][i]->scheme);
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < nregistered; i++)
        append_scheme(buf, cap, &o, registered[i]->scheme);
    pthread_mutex_unlock(&reg_lock);
}

const struct dagger__transport_ops *dagger__transport_find(const char *scheme)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (strcmp(builtins[i]->scheme, scheme) == 0)
            return builtins[i];
    for (size_t b = 0; backends[b]; b++)
        for (size_t i = 0; backends[b][i]; i++)
            if (strcmp(backends[b][i]->scheme, scheme) == 0)
                return backends[b][i];
    const struct dagger__transport_ops *found = NULL;
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < nregistered && !found; i++)
        if (strcmp(registered[i]->scheme, scheme) == 0)
            found = registered[i];
    pthread_mutex_unlock(&reg_lock);
    return found;
}

int dagger__transport_register(const struct dagger__transport_ops *ops)
{
    if (!ops || !ops->scheme || !ops->open || !ops->close || !ops->push || !ops->pop || !ops->poll)
        return DAGGER_EINVAL;
    if (dagger__transport_find(ops->scheme))
        return DAGGER_EBUSY;
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    if (nregistered == MAX_TRANSPORTS)
        rc = DAGGER_ENOMEM;
    else
        registered[nregistered++] = ops;
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

/* ---------------------------------------------------------------- the public API */

DAGGER_API int dagger_edge_open(dagger_edge_t **out, const char *uri, unsigned flags)
{
    char err[256] = "";
    struct dagger__uri *u = NULL;
    int rc;
    if (!out) {
        set_last_errmsg("dagger_edge_open: NULL out pointer");
        return DAGGER_EINVAL;
    }
    *out = NULL;
    if (flags != DAGGER_EDGE_PUSH && flags != DAGGER_EDGE_POP) {
        set_last_errmsg("dagger_edge_open: flags must be DAGGER_EDGE_PUSH or DAGGER_EDGE_POP");
        return DAGGER_EINVAL;
    }
    u = dagger__net_calloc(sizeof *u);
    if (!u) {
        set_last_errmsg("dagger_edge_open: out of memory");
        return DAGGER_ENOMEM;
    }
    rc = dagger__uri_parse(uri, u, err, sizeof err);
    if (rc == 0) {
        const struct dagger__transport_ops *ops = dagger__transport_find(u->scheme);
        if (!ops) {
            char known[160];
            known_schemes(known, sizeof known);
            dagger__net_fmt(err, sizeof err, "no transport for scheme '%s' (this build knows: %s)",
                            u->scheme, known);
            rc = DAGGER_EINVAL;
        } else {
            struct dagger_edge *e = NULL;
            rc = ops->open(&e, u, flags, err, sizeof err);
            if (rc == 0) {
                e->ops = ops;
                e->end = flags;
                *out = e;
            }
        }
    }
    dagger__net_free(u);
    if (rc < 0) {
        char msg[300];
        dagger__net_fmt(msg, sizeof msg, "dagger_edge_open: %s", err);
        set_last_errmsg(msg);
    }
    return rc;
}

/* ---------------------------------------------------------------- failures
 * An end closed by a task that has failed (dagger_fail, then dagger_edge_close on the way out)
 * is aborted with that task's message, so the peer learns of the failure instead of a clean
 * end. A watched edge (dagger_edge_watch) checks its task before each call and cuts its waits
 * into slices of WATCH_SLICE_MS, so that a failure of the task at the other end (on another
 * rank: its result message completes the proxy here) ends them. */

enum { WATCH_SLICE_MS = 50 };

static int close_edge(struct dagger_edge *e)
{
    dagger_task_t *w = e->watch;
    e->watch = NULL;
    int rc = e->ops->close(e);
    dagger_task_release(w);
    return rc;
}

DAGGER_API int dagger_edge_close(dagger_edge_t *e)
{
    if (!e)
        return 0;
    dagger_task_t *cur = dagger__task_current();
    if (cur && !e->aborted && dagger__task_failed(cur))
        return dagger__edge_abort_why(e, "on rank %d, %s", dagger_ctx_rank(dagger__task_ctx(cur)),
                                      dagger__task_failed_msg(cur));
    return close_edge(e);
}

int dagger__edge_abort(struct dagger_edge *e)
{
    if (!e)
        return 0;
    e->aborted = 1;
    if (!e->err)
        dagger__edge_fail(e, DAGGER_ECANCELED, "%s: aborted by its owner%s%s", e->uri,
                          e->reason[0] ? ": " : "", e->reason);
    return close_edge(e);
}

int dagger__edge_abort_why(struct dagger_edge *e, const char *fmt, ...)
{
    if (!e)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof e->reason, fmt, ap);
    va_end(ap);
    return dagger__edge_abort(e);
}

DAGGER_API int dagger_edge_watch(dagger_edge_t *e, dagger_task_t *t)
{
    if (!e) {
        set_last_errmsg("dagger_edge_watch: the edge is NULL");
        return DAGGER_EINVAL;
    }
    if (!t)
        return dagger__edge_note(e, DAGGER_EINVAL, "dagger_edge_watch: %s: the task is NULL",
                                 e->uri);
    if (e->watch)
        return dagger__edge_note(
            e, DAGGER_EBUSY, "dagger_edge_watch: %s already watches task %llu '%s'", e->uri,
            (unsigned long long)dagger_task_id(e->watch), dagger_task_name(e->watch));
    e->watch = dagger_task_retain(t);
    return 0;
}

/* The watched task failed: fail the edge for good with its message. Returns 0 or the error. */
static int watch_check(struct dagger_edge *e)
{
    dagger_task_t *t = e->watch;
    int rc = dagger_task_done(t) ? dagger_task_error(t) : 0;
    if (!rc)
        return 0;
    return dagger__edge_fail(e, DAGGER_EPEER, "%s: the task at the other end failed: %s", e->uri,
                             dagger_task_errmsg(t));
}

enum { OP_PUSH, OP_POP, OP_POLL, OP_FLUSH, OP_PUSH_N, OP_POP_N };

/* One call of a watched edge: the backend is called with waits of at most WATCH_SLICE_MS
 * until the call's own timeout, and the watched task is checked between them. */
static int watched(struct dagger_edge *e, int op, const dagger_value_t *v, dagger_value_t *out,
                   void *buf, uint32_t size, int n, int timeout_ms)
{
    int64_t deadline = dagger__net_deadline(timeout_ms);
    for (;;) {
        int rc = watch_check(e);
        if (rc)
            return rc;
        int left = dagger__net_left_ms(deadline);
        int ms = left < 0 || left > WATCH_SLICE_MS ? WATCH_SLICE_MS : left;
        switch (op) {
        case OP_PUSH:
            rc = e->ops->push(e, v, ms);
            break;
        case OP_POP:
            rc = e->ops->pop(e, out, ms);
            break;
        case OP_POLL:
            rc = e->ops->poll(e, ms);
            rc = rc == 0 ? DAGGER_ETIMEDOUT : rc;
            break;
        case OP_FLUSH:
            rc = e->ops->flush(e, ms);
            break;
        case OP_PUSH_N:
            rc = e->ops->push_n(e, buf, size, n, ms);
            break;
        default:
            rc = e->ops->pop_n(e, buf, size, n, ms);
            break;
        }
        if (rc == DAGGER_ETIMEDOUT && left == ms && timeout_ms > ms) {
            /* the backend's note speaks of the last slice: say how long the call waited */
            char last[sizeof e->errmsg];
            memcpy(last, e->errmsg, sizeof last);
            dagger__edge_note(e, rc, "%.200s (the call waited %d ms in all)", last, timeout_ms);
        }
        if (rc != DAGGER_ETIMEDOUT || left == ms)
            return op == OP_POLL && rc == DAGGER_ETIMEDOUT ? 0 : rc;
    }
}

DAGGER_API int dagger_edge_push_timed(dagger_edge_t *e, const dagger_value_t *v, int timeout_ms)
{
    /* Room armed by the backend (net.h: wp): a producer, no error, a blob of the batch's size,
     * and the backend not asked to look (wstop). */
    if (e && v && e->wn) {
        uint32_t n = v->len;
        const void *src = v->u.p;
        unsigned char *dst = e->wp;
        if (n == e->wsize && v->kind == DAGGER_KIND_BLOB && src &&
            !(e->wstop && atomic_load_explicit(e->wstop, memory_order_acquire))) {
            e->wp = dst + n;
            e->wn--;
            dagger__edge_count(&e->st.values, 1);
            dagger__edge_count(&e->st.bytes, n);
            if (n == 8) {
                __builtin_memcpy(dst, src, 8);
                return 0;
            }
            memcpy(dst, src, n);
            return 0;
        }
    }
    if (!e || !v)
        return DAGGER_EINVAL;
    if (e->end != DAGGER_EDGE_PUSH)
        return dagger__edge_note(e, DAGGER_EINVAL, "push on the consumer end of %s", e->uri);
    if (e->err)
        return e->err;
    if (DAGGER_UNLIKELY(e->watch))
        return watched(e, OP_PUSH, v, NULL, NULL, 0, 0, timeout_ms);
    return e->ops->push(e, v, timeout_ms);
}

DAGGER_API int dagger_edge_push(dagger_edge_t *e, const dagger_value_t *v)
{
    return dagger_edge_push_timed(e, v, -1);
}

DAGGER_API int dagger_edge_pop(dagger_edge_t *e, dagger_value_t *out, int timeout_ms)
{
    if (e && out && e->rn) { /* a run armed by the backend (net.h): a consumer, nothing pending */
        dagger_value_t v = {.kind = DAGGER_KIND_BLOB};
        v.len = e->rsize;
        v.u.p = e->rp;
        *out = v;
        e->rp += e->rsize;
        e->rn--;
        dagger__edge_count(&e->st.values, 1);
        dagger__edge_count(&e->st.bytes, v.len);
        return 0;
    }
    if (!e || !out)
        return DAGGER_EINVAL;
    if (e->end != DAGGER_EDGE_POP)
        return dagger__edge_note(e, DAGGER_EINVAL, "pop on the producer end of %s", e->uri);
    if (e->held) { /* kept by dagger_edge_pop_n: popped already, before any error */
        e->held = 0;
        *out = e->held_v;
        return 0;
    }
    if (e->err)
        return e->err;
    if (DAGGER_UNLIKELY(e->watch))
        return watched(e, OP_POP, NULL, out, NULL, 0, 0, timeout_ms);
    return e->ops->pop(e, out, timeout_ms);
}

/* ---------------------------------------------------------------- vectors */

int dagger__edge_hold(struct dagger_edge *e, const dagger_value_t *v, uint32_t size)
{
    e->held = 1;
    e->held_v = *v;
    if (v->kind == DAGGER_KIND_BLOB)
        return dagger__edge_note(e, DAGGER_EINVAL,
                                 "%s: dagger_edge_pop_n of %u-byte values met a blob of %u bytes "
                                 "(kept for the next dagger_edge_pop)",
                                 e->uri, size, v->len);
    return dagger__edge_note(e, DAGGER_EINVAL,
                             "%s: dagger_edge_pop_n of %u-byte values met a %s value (kept for "
                             "the next dagger_edge_pop)",
                             e->uri, size, dagger_kind_name(v->kind));
}

/* Shared checks of push_n and pop_n: 0 or the error (with a message on the edge). */
static int check_vector(dagger_edge_t *e, const void *buf, size_t size, size_t n, unsigned end,
                        const char *fn)
{
    if (!e)
        return DAGGER_EINVAL;
    if (e->end != end)
        return dagger__edge_note(e, DAGGER_EINVAL, "%s on the %s end of %s", fn,
                                 e->end == DAGGER_EDGE_PUSH ? "producer" : "consumer", e->uri);
    if (!buf)
        return dagger__edge_note(e, DAGGER_EINVAL, "%s: NULL buffer", fn);
    if (size == 0)
        return dagger__edge_note(e, DAGGER_EINVAL, "%s: values of size 0", fn);
    if (n > INT_MAX)
        return dagger__edge_note(e, DAGGER_EINVAL, "%s: %zu values, at most %d per call", fn, n,
                                 INT_MAX);
    if (size > e->max_payload)
        return dagger__edge_note(e, DAGGER_ERANGE, "%s: values of %zu bytes exceed max=%u of %s",
                                 fn, size, e->max_payload, e->uri);
    return 0;
}

DAGGER_API int dagger_edge_push_n(dagger_edge_t *e, const void *src, size_t size, size_t n,
                                  int timeout_ms)
{
    int rc = check_vector(e, src, size, n, DAGGER_EDGE_PUSH, "dagger_edge_push_n");
    if (rc < 0)
        return rc;
    if (e->err)
        return e->err;
    if (n == 0)
        return 0;
    if (e->ops->push_n && DAGGER_UNLIKELY(e->watch))
        return watched(e, OP_PUSH_N, NULL, NULL, (void *)src, (uint32_t)size, (int)n, timeout_ms);
    if (e->ops->push_n)
        return e->ops->push_n(e, src, (uint32_t)size, (int)n, timeout_ms);
    /* The generic vector: one push per value, under one deadline. */
    int64_t deadline = dagger__net_deadline(timeout_ms);
    const unsigned char *p = src;
    for (int i = 0; i < (int)n; i++) {
        dagger_value_t v = dagger_blob_borrow(p + (size_t)i * size, size);
        rc = e->watch ? watched(e, OP_PUSH, &v, NULL, NULL, 0, 0,
                                i ? dagger__net_left_ms(deadline) : timeout_ms)
                      : e->ops->push(e, &v, i ? dagger__net_left_ms(deadline) : timeout_ms);
        if (rc < 0)
            return i ? i : rc;
    }
    return (int)n;
}

DAGGER_API int dagger_edge_pop_n(dagger_edge_t *e, void *dst, size_t size, size_t n, int timeout_ms)
{
    int rc = check_vector(e, dst, size, n, DAGGER_EDGE_POP, "dagger_edge_pop_n");
    if (rc < 0)
        return rc;
    if (n == 0)
        return dagger__edge_note(e, DAGGER_EINVAL, "dagger_edge_pop_n: room for 0 values");
    if (e->held) /* the value that ended the last vector is still first in line */
        return dagger__edge_hold(e, &e->held_v, (uint32_t)size);
    if (e->err)
        return e->err;
    if (e->ops->pop_n && DAGGER_UNLIKELY(e->watch))
        return watched(e, OP_POP_N, NULL, NULL, dst, (uint32_t)size, (int)n, timeout_ms);
    if (e->ops->pop_n)
        return e->ops->pop_n(e, dst, (uint32_t)size, (int)n, timeout_ms);
    /* The generic vector: the first pop may wait, the others take what is there. */
    unsigned char *p = dst;
    for (int i = 0; i < (int)n; i++) {
        dagger_value_t v;
        rc = e->watch && i == 0 ? watched(e, OP_POP, NULL, &v, NULL, 0, 0, timeout_ms)
                                : e->ops->pop(e, &v, i ? 0 : timeout_ms);
        if (rc < 0)
            return i ? i : rc;
        if (v.kind != DAGGER_KIND_BLOB || v.len != size) {
            rc = dagger__edge_hold(e, &v, (uint32_t)size);
            return i ? i : rc;
        }
        memcpy(p + (size_t)i * size, v.u.p, size);
    }
    return (int)n;
}

DAGGER_API int dagger_edge_poll(dagger_edge_t *e, int timeout_ms)
{
    if (!e)
        return DAGGER_EINVAL;
    if (e->held)
        return 1; /* the value kept by dagger_edge_pop_n */
    if (e->err)
        return e->err;
    if (DAGGER_UNLIKELY(e->watch))
        return watched(e, OP_POLL, NULL, NULL, NULL, 0, 0, timeout_ms);
    return e->ops->poll(e, timeout_ms);
}

DAGGER_API int dagger_edge_flush(dagger_edge_t *e, int timeout_ms)
{
    if (!e)
        return DAGGER_EINVAL;
    if (e->err)
        return e->err;
    if (DAGGER_UNLIKELY(e->watch) && e->ops->flush && e->end == DAGGER_EDGE_PUSH)
        return watched(e, OP_FLUSH, NULL, NULL, NULL, 0, 0, timeout_ms);
    return e->ops->flush && e->end == DAGGER_EDGE_PUSH ? e->ops->flush(e, timeout_ms) : 0;
}

DAGGER_API void dagger_edge_stats(const dagger_edge_t *e, dagger_edge_stats_t *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    dagger_edge_t *m = (dagger_edge_t *)e; /* atomic loads take non-const pointers */
    out->values = atomic_load_explicit(&m->st.values, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&m->st.bytes, memory_order_relaxed);
    out->drops = atomic_load_explicit(&m->st.drops, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&m->st.rejected, memory_order_relaxed);
    out->waits = atomic_load_explicit(&m->st.waits, memory_order_relaxed);
    out->reconnects = atomic_load_explicit(&m->st.reconnects, memory_order_relaxed);
    out->duplicates = atomic_load_explicit(&m->st.duplicates, memory_order_relaxed);
}

DAGGER_API const char *dagger_edge_errmsg(const dagger_edge_t *e)
{
    return e ? e->errmsg : dagger_last_errmsg();
}

DAGGER_API const char *dagger_edge_uri(const dagger_edge_t *e) { return e ? e->uri : ""; }
