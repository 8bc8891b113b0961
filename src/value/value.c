/* src/value/value.c - values: constructors, the kind table, ownership, and the byte encoding.
 *
 * Encoding (little-endian): kind u8, flags u8, reserved u16, len u32, then the payload:
 * nothing for nil, 1 byte for bool, 8 for i64/f64, len bytes (+ a NUL for strings) for
 * str/blob, and u64 id + u32 rank for a handle (task, chunk, shard) reference, which decodes as
 * a remote reference. Every length is checked on decode.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "value/value.h"

#define HDR 8

dagger_value_t dagger_str(const char *s)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_STR;
    v.u.s = s ? s : "";
    size_t n = strlen(v.u.s);
    v.len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    if (n >= UINT32_MAX) /* the NUL must fit the encoding too */
        v.flags |= DAGGER_VALUE_TOOBIG;
    return v;
}

dagger_value_t dagger_str_borrow(const char *s)
{
    dagger_value_t v = dagger_str(s);
    v.flags |= DAGGER_VALUE_BORROW;
    return v;
}

static int own_bytes(dagger_value_t *v)
{
    size_t n = (size_t)v->len + (v->kind == DAGGER_KIND_STR);
    char *copy = dagger__obj_alloc(n ? n : 1);
    if (!copy)
        return DAGGER_ENOMEM;
    if (v->len)
        memcpy(copy, v->u.p, v->len);
    if (v->kind == DAGGER_KIND_STR)
        copy[v->len] = '\0';
    v->u.p = copy;
    v->flags = (uint8_t)((v->flags & ~DAGGER_VALUE_BORROW) | DAGGER_VALUE_OWNED);
    return 0;
}

static void drop_bytes(dagger_value_t *v)
{
    size_t n = (size_t)v->len + (v->kind == DAGGER_KIND_STR);
    dagger__obj_free((void *)v->u.p, n ? n : 1);
}

/* Written once per handle kind by its layer's constructor, read everywhere after. */
static struct dagger__kind_ops kinds[DAGGER_KIND_COUNT_] = {
    [DAGGER_KIND_NIL] = {"nil", NULL, NULL, NULL},
    [DAGGER_KIND_BOOL] = {"bool", NULL, NULL, NULL},
    [DAGGER_KIND_I64] = {"i64", NULL, NULL, NULL},
    [DAGGER_KIND_F64] = {"f64", NULL, NULL, NULL},
    [DAGGER_KIND_STR] = {"str", own_bytes, drop_bytes, NULL},
    [DAGGER_KIND_BLOB] = {"blob", own_bytes, drop_bytes, NULL},
    [DAGGER_KIND_PTR] = {"ptr", NULL, NULL, NULL},
    [DAGGER_KIND_TASK] = {"task", NULL, NULL, NULL},
    [DAGGER_KIND_CHUNK] = {"chunk", NULL, NULL, NULL},
    [DAGGER_KIND_SHARD] = {"shard", NULL, NULL, NULL},
};

void dagger__value_register_kind(int kind, const struct dagger__kind_ops *ops)
{
    if (kind >= DAGGER_KIND_TASK && kind < DAGGER_KIND_COUNT_)
        kinds[kind] = *ops;
}

bool dagger__value_is_handle(int kind)
{
    return kind >= DAGGER_KIND_TASK && kind < DAGGER_KIND_COUNT_;
}

const char *dagger_kind_name(int kind)
{
    if (kind < 0 || kind >= DAGGER_KIND_COUNT_)
        return "unknown";
    return kinds[kind].name;
}

int dagger__value_size_check(const dagger_value_t *v, const char *what)
{
    if (DAGGER_LIKELY(!(v->flags & DAGGER_VALUE_TOOBIG)))
        return 0;
    return dagger__set_errmsg(DAGGER_E2BIG,
                              "%s: a %s of 4 GiB or more cannot be stored (values hold at most "
                              "4 GiB - 1 bytes); pass a pointer or a chunk instead",
                              what, dagger_kind_name(v->kind));
}

int dagger__value_own(dagger_value_t *v)
{
    if (v->flags & DAGGER_VALUE_TOOBIG)
        return DAGGER_E2BIG;
    v->flags &= (uint8_t)~DAGGER_VALUE_OWNED;
    if (v->kind >= DAGGER_KIND_COUNT_ || !kinds[v->kind].own)
        return 0;
    if (dagger__value_is_handle(v->kind) && (!v->u.p || (v->flags & DAGGER_VALUE_REMOTE)))
        return 0; /* a remote reference or a NULL handle holds nothing */
    return kinds[v->kind].own(v);
}

void dagger__value_drop(dagger_value_t *v)
{
    if ((v->flags & DAGGER_VALUE_OWNED) && v->kind < DAGGER_KIND_COUNT_ && kinds[v->kind].drop)
        kinds[v->kind].drop(v);
    *v = dagger_nil();
}

static void put32(unsigned char *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

static void put64(unsigned char *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t x = 0;
    for (int i = 0; i < 4; i++)
        x |= (uint32_t)p[i] << (8 * i);
    return x;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)p[i] << (8 * i);
    return x;
}

long dagger_value_encode(const dagger_value_t *v, void *buf, size_t cap)
{
    DAGGER_CHECK(v, DAGGER_EINVAL, "dagger_value_encode: value is NULL");
    int big = dagger__value_size_check(v, "dagger_value_encode");
    if (big)
        return big;
    size_t payload;
    switch (v->kind) {
    case DAGGER_KIND_NIL:
        payload = 0;
        break;
    case DAGGER_KIND_BOOL:
        payload = 1;
        break;
    case DAGGER_KIND_I64:
    case DAGGER_KIND_F64:
        payload = 8;
        break;
    case DAGGER_KIND_STR:
        payload = (size_t)v->len + 1;
        DAGGER_CHECK(v->u.s || !v->len, DAGGER_EINVAL, "dagger_value_encode: NULL string");
        break;
    case DAGGER_KIND_BLOB:
        payload = v->len;
        DAGGER_CHECK(v->u.p || !v->len, DAGGER_EINVAL, "dagger_value_encode: NULL blob");
        break;
    case DAGGER_KIND_TASK:
    case DAGGER_KIND_CHUNK:
    case DAGGER_KIND_SHARD:
        payload = 12;
        DAGGER_CHECK(v->u.p || (v->flags & DAGGER_VALUE_REMOTE), DAGGER_EINVAL,
                     "dagger_value_encode: NULL %s handle", dagger_kind_name(v->kind));
        DAGGER_CHECK((v->flags & DAGGER_VALUE_REMOTE) || kinds[v->kind].ref, DAGGER_EINVAL,
                     "dagger_value_encode: %s handles cannot be encoded by this build",
                     dagger_kind_name(v->kind));
        break;
    case DAGGER_KIND_PTR:
        return dagger__set_errmsg(DAGGER_EINVAL,
                                  "dagger_value_encode: a local pointer cannot be encoded");
    default:
        return dagger__set_errmsg(DAGGER_EINVAL, "dagger_value_encode: unknown kind %d", v->kind);
    }
    size_t total = HDR + payload;
    if (total > LONG_MAX)
        return dagger__set_errmsg(DAGGER_ERANGE, "dagger_value_encode: value too large");
    if (!buf || cap < total)
        return (long)total;
    unsigned char *p = buf;
    p[0] = v->kind;
    p[1] = (uint8_t)(v->flags & DAGGER_VALUE_REMOTE);
    p[2] = p[3] = 0;
    put32(p + 4, v->kind == DAGGER_KIND_STR || v->kind == DAGGER_KIND_BLOB ? v->len : 0);
    p += HDR;
    switch (v->kind) {
    case DAGGER_KIND_BOOL:
        p[0] = v->u.b ? 1 : 0;
        break;
    case DAGGER_KIND_I64:
        put64(p, (uint64_t)v->u.i);
        break;
    case DAGGER_KIND_F64: {
        uint64_t bits;
        memcpy(&bits, &v->u.f, 8);
        put64(p, bits);
        break;
    }
    case DAGGER_KIND_STR:
        if (v->len)
            memcpy(p, v->u.s, v->len);
        p[v->len] = 0;
        break;
    case DAGGER_KIND_BLOB:
        if (v->len)
            memcpy(p, v->u.p, v->len);
        break;
    case DAGGER_KIND_TASK:
    case DAGGER_KIND_CHUNK:
    case DAGGER_KIND_SHARD: {
        uint64_t id = (uint64_t)v->u.i;
        uint32_t rank = v->rank; /* a remote reference keeps its rank */
        if (!(v->flags & DAGGER_VALUE_REMOTE))
            kinds[v->kind].ref(v, &id, &rank);
        put64(p, id);
        put32(p + 8, rank);
        break;
    }
    default:
        break;
    }
    return (long)total;
}

long dagger_value_decode(const void *buf, size_t len, dagger_value_t *out)
{
    DAGGER_CHECK(buf && out, DAGGER_EINVAL, "dagger_value_decode: NULL buffer or output");
    DAGGER_CHECK(len >= HDR, DAGGER_EINVAL,
                 "dagger_value_decode: %zu bytes is shorter than a value header (8)", len);
    const unsigned char *p = buf;
    int kind = p[0];
    uint32_t n = get32(p + 4);
    size_t payload;
    switch (kind) {
    case DAGGER_KIND_NIL:
        payload = 0;
        break;
    case DAGGER_KIND_BOOL:
        payload = 1;
        break;
    case DAGGER_KIND_I64:
    case DAGGER_KIND_F64:
        payload = 8;
        break;
    case DAGGER_KIND_STR:
        payload = (size_t)n + 1;
        break;
    case DAGGER_KIND_BLOB:
        payload = n;
        break;
    case DAGGER_KIND_TASK:
    case DAGGER_KIND_CHUNK:
    case DAGGER_KIND_SHARD:
        payload = 12;
        break;
    default:
        return dagger__set_errmsg(DAGGER_EINVAL, "dagger_value_decode: unknown kind %d", kind);
    }
    DAGGER_CHECK(kind == DAGGER_KIND_STR || kind == DAGGER_KIND_BLOB || n == 0, DAGGER_EINVAL,
                 "dagger_value_decode: a %s value cannot carry a length (%u)",
                 dagger_kind_name(kind), n);
    DAGGER_CHECK(len - HDR >= payload, DAGGER_EINVAL,
                 "dagger_value_decode: truncated %s value: %zu payload bytes, %zu needed",
                 dagger_kind_name(kind), len - HDR, payload);
    const unsigned char *q = p + HDR;
    dagger_value_t v = dagger_nil();
    v.kind = (uint8_t)kind;
    switch (kind) {
    case DAGGER_KIND_BOOL:
        DAGGER_CHECK(q[0] <= 1, DAGGER_EINVAL, "dagger_value_decode: bool byte is %u", q[0]);
        v.u.b = q[0] != 0;
        break;
    case DAGGER_KIND_I64:
        v.u.i = (int64_t)get64(q);
        break;
    case DAGGER_KIND_F64: {
        uint64_t bits = get64(q);
        memcpy(&v.u.f, &bits, 8);
        break;
    }
    case DAGGER_KIND_STR:
        DAGGER_CHECK(q[n] == 0, DAGGER_EINVAL,
                     "dagger_value_decode: string of %u bytes is not NUL-terminated", n);
        DAGGER_CHECK(memchr(q, 0, n) == NULL, DAGGER_EINVAL,
                     "dagger_value_decode: string of %u bytes holds a NUL", n);
        v.u.s = (const char *)q;
        v.len = n;
        break;
    case DAGGER_KIND_BLOB:
        v.u.p = q;
        v.len = n;
        break;
    case DAGGER_KIND_TASK:
    case DAGGER_KIND_CHUNK:
    case DAGGER_KIND_SHARD: {
        uint32_t rank = get32(q + 8);
        DAGGER_CHECK(rank <= UINT16_MAX, DAGGER_EINVAL,
                     "dagger_value_decode: %s reference names rank %u, beyond 65535",
                     dagger_kind_name(kind), rank);
        v.u.i = (int64_t)get64(q);
        v.rank = (uint16_t)rank;
        v.flags = DAGGER_VALUE_REMOTE;
        break;
    }
    default:
        break;
    }
    *out = v;
    return (long)(HDR + payload);
}
