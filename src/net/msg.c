/* src/net/msg.c - framing for message transports (brokers), see msg.h.
 * SPDX-License-Identifier: MIT
 */
#include "net/msg.h"

#include <stdlib.h>
#include <string.h>

int dagger__msg_parse(const struct dagger__uri *u, const char *const *keys, int64_t def_max,
                      int64_t max_limit, const char *bad, struct dagger__msg_opts *o, char *err,
                      size_t errcap)
{
    int rc;
    memset(o, 0, sizeof *o);
    if (dagger__uri_get(u, "secret") || dagger__uri_get(u, "user") ||
        dagger__uri_get(u, "password") || dagger__uri_get(u, "token")) {
        dagger__net_fmt(err, errcap,
                        "%s: credentials never go in the URI: name environment variables with "
                        "user_env= and secret_env=",
                        u->scheme);
        return DAGGER_EINVAL;
    }
    if ((rc = dagger__uri_check_keys(u, keys, err, errcap)) < 0)
        return rc;
    o->name = u->path[0] ? u->path + 1 : "";
    if (!u->host[0] || !o->name[0] || strpbrk(o->name, bad)) {
        dagger__net_fmt(err, errcap,
                        "%s: expected %s://host[:port]/name[?params], a name without wildcards "
                        "or spaces",
                        u->scheme, u->scheme);
        return DAGGER_EINVAL;
    }
    if ((rc = dagger__uri_int(u, "max", def_max, 0, max_limit, &o->max, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "timeout_ms", 5000, 1, 3600000, &o->timeout_ms, err, errcap)) <
            0 ||
        (rc = dagger__uri_int(u, "idle_ms", 0, 0, 3600000, &o->idle_ms, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "insecure", 0, 0, 1, &o->insecure, err, errcap)) < 0)
        return rc;
    const char *user_env = dagger__uri_get(u, "user_env");
    if (user_env && !((o->user = getenv(user_env)) && *o->user)) {
        dagger__net_fmt(err, errcap, "%s: user_env=%s: the variable is unset or empty", u->scheme,
                        user_env);
        return DAGGER_EINVAL;
    }
    o->slen = dagger__uri_secret(u, o->secret, sizeof o->secret, err, errcap);
    return o->slen < 0 ? o->slen : 0;
}

long dagger__msg_encode(struct dagger_edge *e, const dagger_value_t *v, uint64_t seq,
                        unsigned char **buf, size_t *cap)
{
    unsigned fl = 0;
    long n = 0;
    if (v) {
        n = dagger__frame_value_size(v, &fl);
        if (n < 0)
            return dagger__edge_note(e, DAGGER_EINVAL, "%s: a %s value cannot cross processes",
                                     e->uri, dagger_kind_name(v->kind));
        if ((uint64_t)n > e->max_payload)
            return dagger__edge_note(e, DAGGER_ERANGE,
                                     "%s: value of %ld bytes exceeds the edge's limit max=%u",
                                     e->uri, n, e->max_payload);
    }
    size_t need = DAGGER__FRAME_HDR + (size_t)n;
    if (need > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < need)
            c *= 2;
        unsigned char *nb = dagger__net_realloc(*buf, c);
        if (!nb)
            return dagger__edge_note(e, DAGGER_ENOMEM, "%s: out of memory", e->uri);
        *buf = nb;
        *cap = c;
    }
    dagger__frame_put(*buf, v ? DAGGER__FRAME_DATA : DAGGER__FRAME_END, fl, (uint32_t)n, seq);
    if (v)
        dagger__frame_value_write(*buf + DAGGER__FRAME_HDR, v, fl, (size_t)n);
    return (long)need;
}

long dagger__msg_encode_abort(struct dagger_edge *e, uint64_t seq, unsigned char **buf, size_t *cap)
{
    /* The reason travels as the END's payload (text, cut to the edge's limit). */
    const char *why = e->reason[0] ? e->reason : e->errmsg;
    size_t len = strnlen(why, sizeof e->reason - 1);
    if (len > e->max_payload)
        len = e->max_payload;
    dagger_value_t v = dagger_blob_borrow(why, len);
    long n = dagger__msg_encode(e, len ? &v : NULL, seq, buf, cap);
    if (n > 0)
        dagger__frame_put(*buf, DAGGER__FRAME_END, DAGGER__FRAME_ABORT, (uint32_t)len, seq);
    return n;
}

static int reject(struct dagger_edge *e, const char *why)
{
    dagger__edge_count(&e->st.rejected, 1);
    dagger__edge_note(e, 0, "%s: dropped a bad message: %s", e->uri, why);
    return 0;
}

int dagger__msg_accept(struct dagger_edge *e, struct dagger__msg_rx *rx, const void *data,
                       size_t len, dagger_value_t *out)
{
    char err[160];
    struct dagger__frame f;
    if (len < DAGGER__FRAME_HDR) {
        dagger__net_fmt(err, sizeof err, "%zu bytes, shorter than a frame header", len);
        return reject(e, err);
    }
    if (dagger__frame_get(data, e->max_payload, &f, err, sizeof err) < 0)
        return reject(e, err);
    if (len != DAGGER__FRAME_HDR + (size_t)f.len) {
        dagger__net_fmt(err, sizeof err, "%zu bytes where the header announces %zu", len,
                        (size_t)(DAGGER__FRAME_HDR + f.len));
        return reject(e, err);
    }
    if ((f.kind != DAGGER__FRAME_DATA && f.kind != DAGGER__FRAME_END) ||
        (f.flags & DAGGER__FRAME_TAG) ||
        (f.kind == DAGGER__FRAME_END && f.len && !(f.flags & DAGGER__FRAME_ABORT)) ||
        (f.kind == DAGGER__FRAME_END && (f.flags & ~(uint32_t)DAGGER__FRAME_ABORT)) ||
        (f.kind == DAGGER__FRAME_DATA && (f.flags & DAGGER__FRAME_ABORT)))
        return reject(e, "unexpected frame kind or flags");
    if (f.kind == DAGGER__FRAME_END) {
        if (!rx->split && f.seq > rx->next)
            dagger__edge_count(&e->st.drops, f.seq - rx->next);
        if (f.flags & DAGGER__FRAME_ABORT) { /* its payload: the producer's reason, if any */
            const char *why = (const char *)data + DAGGER__FRAME_HDR;
            int wlen = f.len > 200 ? 200 : (int)f.len;
            return dagger__edge_fail(e, DAGGER_EPEER,
                                     "%s: the producer failed after %llu values (its edge was "
                                     "aborted): the stream is incomplete%s%.*s",
                                     e->uri, (unsigned long long)f.seq,
                                     wlen ? "; the producer: " : "", wlen, why);
        }
        return dagger__edge_fail(e, DAGGER_ECLOSED, "%s: the producer closed after %llu values",
                                 e->uri, (unsigned long long)f.seq);
    }
    if (rx->split ? rx->started && f.seq < rx->next : f.seq < rx->next) {
        dagger__edge_count(&e->st.duplicates, 1);
        return 0;
    }
    if (dagger__frame_value_read(&f, (const unsigned char *)data + DAGGER__FRAME_HDR, out, err,
                                 sizeof err) < 0)
        return reject(e, err);
    if (!rx->split)
        dagger__edge_count(&e->st.drops, f.seq - rx->next);
    rx->next = f.seq + 1;
    rx->started = 1;
    dagger__edge_count(&e->st.values, 1);
    dagger__edge_count(&e->st.bytes, len);
    return 1;
}
