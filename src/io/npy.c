/* src/io/npy.c - the built-in codecs: raw bytes and NumPy .npy (format 1.0 and 2.0).
 *
 * Design: .npy is a 6-byte magic, a version, a little-endian header length, a Python dict
 * literal {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), } padded to 64 bytes with
 * spaces and a newline, then the data. The parser reads the dict token by token and takes
 * exactly those three keys, in any order (a key's name inside another value is not the key:
 * fuzz_npy), and names the field that is wrong. Fortran-order data is transposed to C order on
 * load; writes are C order, version 1.0 unless the header needs 2.0. SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/common.h"
#include "io/io.h"

/* ---------------------------------------------------------------- raw */

static int raw_probe(const dagger_codec_t *cd, int fd, const char *path, dagger_file_meta_t *m,
                     char *why, size_t cap)
{
    (void)cd;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return dagger__io_code(errno);
    }
    memset(m, 0, sizeof *m);
    m->size = (size_t)st.st_size;
    return 0;
}

static int raw_decode(const dagger_codec_t *cd, int fd, const char *path,
                      const dagger_file_meta_t *m, void *dst, char *why, size_t cap)
{
    (void)cd;
    return dagger__io_read_at(fd, dst, m->size, m->offset, path, why, cap);
}

static int raw_encode(const dagger_codec_t *cd, int fd, const char *path,
                      const dagger_file_meta_t *m, const void *src, char *why, size_t cap)
{
    (void)cd;
    return dagger__io_write_all(fd, src, m->size, path, why, cap);
}

const dagger_codec_t dagger_codec_raw = {"raw", raw_probe, raw_decode, raw_encode, NULL};

/* ---------------------------------------------------------------- npy header */

static const struct {
    const char *descr;
    dagger_elt_t elt;
    int is_bool;
} dtypes[] = {
    {"<f8", DAGGER_ELT_F64, 0}, {"<f4", DAGGER_ELT_F32, 0}, {"<i8", DAGGER_ELT_I64, 0},
    {"<i4", DAGGER_ELT_I32, 0}, {"|u1", DAGGER_ELT_U8, 0},  {"<u1", DAGGER_ELT_U8, 0},
    {"|b1", DAGGER_ELT_U8, 1},
};

#define BAD(fieldname, ...)                                                                        \
    do {                                                                                           \
        int n_ = snprintf(why, cap, "%s: malformed .npy header: field '%s': ", path, fieldname);   \
        if (n_ > 0 && (size_t)n_ < cap)                                                            \
            snprintf(why + n_, cap - (size_t)n_, __VA_ARGS__);                                     \
        return DAGGER_EINVAL;                                                                      \
    } while (0)

static const char *skip_space(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* A quoted string without escapes at p ('..' or ".."): its text into buf (cap bytes); the
 * position after its closing quote, or NULL when it is not one or does not fit. */
static const char *quoted(const char *p, char *buf, size_t cap)
{
    char quote = *p;
    if (quote != '\'' && quote != '"')
        return NULL;
    const char *e = strchr(p + 1, quote);
    if (!e || (size_t)(e - p - 1) >= cap)
        return NULL;
    memcpy(buf, p + 1, (size_t)(e - p - 1));
    buf[e - p - 1] = '\0';
    return e + 1;
}

static const char *parse_descr(const char *p, const char *path, dagger_file_meta_t *m, char *why,
                               size_t cap, int *rc)
{
    char descr[16];
    *rc = DAGGER_EINVAL;
    const char *e = quoted(p, descr, sizeof descr);
    if (!e) {
        snprintf(why, cap, "%s: malformed .npy header: field 'descr': not a string", path);
        return NULL;
    }
    size_t k = 0;
    for (; k < sizeof dtypes / sizeof dtypes[0]; k++)
        if (strcmp(descr, dtypes[k].descr) == 0)
            break;
    if (k == sizeof dtypes / sizeof dtypes[0]) {
        snprintf(why, cap,
                 "%s: malformed .npy header: field 'descr': '%s' is not one of <f8, <f4, <i8, <i4, "
                 "|u1, |b1 (little-endian)",
                 path, descr);
        return NULL;
    }
    m->elt = dtypes[k].elt;
    m->npy_bool = dtypes[k].is_bool;
    *rc = 0;
    return e;
}

static const char *parse_shape(const char *p, const char *path, dagger_file_meta_t *m, char *why,
                               size_t cap, int *rc)
{
#undef BAD_RET
#define BAD_RET(...)                                                                               \
    do {                                                                                           \
        int n_ = snprintf(why, cap, "%s: malformed .npy header: field 'shape': ", path);           \
        if (n_ > 0 && (size_t)n_ < cap)                                                            \
            snprintf(why + n_, cap - (size_t)n_, __VA_ARGS__);                                     \
        *rc = DAGGER_EINVAL;                                                                       \
        return NULL;                                                                               \
    } while (0)
    if (*p != '(')
        BAD_RET("not a tuple");
    p++;
    int nd = 0;
    for (;;) {
        p = skip_space(p);
        if (*p == ')')
            break;
        if (!isdigit((unsigned char)*p))
            BAD_RET("not a tuple of non-negative integers");
        errno = 0;
        char *end;
        unsigned long long d = strtoull(p, &end, 10);
        if (errno || d > SIZE_MAX || nd == DAGGER_CHUNK_MAX_DIMS)
            BAD_RET(nd == DAGGER_CHUNK_MAX_DIMS ? "more than %d dimensions"
                                                : "an extent is too large",
                    DAGGER_CHUNK_MAX_DIMS);
        m->shape[nd++] = (size_t)d;
        p = skip_space(end);
        if (*p == ',')
            p++;
        else if (*p != ')')
            BAD_RET("not a tuple of non-negative integers");
    }
    if (nd == 0) /* a 0-d array holds one element */
        m->shape[nd++] = 1;
    m->ndims = nd;
    *rc = 0;
    return p + 1;
#undef BAD_RET
}

/* The header is a Python dict literal with exactly the keys descr, fortran_order and shape (as
 * numpy writes and requires). It is read token by token, so that a key's name inside another
 * value is never taken for the key. */
static int parse_header(const char *h, const char *path, dagger_file_meta_t *m, char *why,
                        size_t cap)
{
    static const char *const keys[3] = {"descr", "fortran_order", "shape"};
    int seen[3] = {0, 0, 0}, rc = 0;
    const char *p = skip_space(h);
    if (*p != '{') {
        snprintf(why, cap, "%s: malformed .npy header: not a dict ('{' expected)", path);
        return DAGGER_EINVAL;
    }
    p++;
    for (;;) {
        p = skip_space(p);
        if (*p == '}')
            break;
        char key[32];
        const char *e = quoted(p, key, sizeof key);
        if (!e) {
            snprintf(why, cap, "%s: malformed .npy header: a key is not a short string at '%.16s'",
                     path, p);
            return DAGGER_EINVAL;
        }
        int k = 0;
        while (k < 3 && strcmp(key, keys[k]) != 0)
            k++;
        if (k == 3)
            BAD(key, "not a .npy header key (want descr, fortran_order, shape)");
        if (seen[k]++)
            BAD(key, "given twice");
        p = skip_space(e);
        if (*p != ':')
            BAD(key, "no ':' after the key");
        p = skip_space(p + 1);
        if (k == 0) {
            p = parse_descr(p, path, m, why, cap, &rc);
        } else if (k == 2) {
            p = parse_shape(p, path, m, why, cap, &rc);
        } else if (strncmp(p, "True", 4) == 0) {
            m->fortran = 1;
            p += 4;
        } else if (strncmp(p, "False", 5) == 0) {
            m->fortran = 0;
            p += 5;
        } else {
            BAD("fortran_order", "not True or False");
        }
        if (!p)
            return rc;
        p = skip_space(p);
        if (*p == ',')
            p++;
        else if (*p != '}')
            BAD(key, "its value is not followed by ',' or '}'");
    }
    for (int k = 0; k < 3; k++)
        if (!seen[k])
            BAD(keys[k], "missing");
    size_t bytes = dagger_elt_size(m->elt);
    for (int d = 0; d < m->ndims; d++)
        if (__builtin_mul_overflow(bytes, m->shape[d], &bytes))
            BAD("shape", "the byte size overflows");
    m->size = bytes;
    return 0;
}

static int npy_probe(const dagger_codec_t *cd, int fd, const char *path, dagger_file_meta_t *m,
                     char *why, size_t cap)
{
    (void)cd;
    memset(m, 0, sizeof *m);
    unsigned char pre[12];
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return dagger__io_code(errno);
    }
    if (st.st_size < 10 ||
        dagger__io_read_at(fd, pre, st.st_size < 12 ? 10 : 12, 0, path, why, cap) != 0 ||
        memcmp(pre, "\x93NUMPY", 6) != 0) {
        snprintf(why, cap, "%s: not a .npy file: bad magic number (want \\x93NUMPY)", path);
        return DAGGER_EINVAL;
    }
    int major = pre[6];
    size_t hlen, off;
    if (major == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (st.st_size < 12) {
            snprintf(why, cap, "%s: malformed .npy header: field 'header_len': truncated", path);
            return DAGGER_EINVAL;
        }
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        off = 12;
    } else {
        snprintf(why, cap, "%s: malformed .npy header: field 'version': %d.%d is not 1.0 or 2.0",
                 path, major, pre[7]);
        return DAGGER_EINVAL;
    }
    if (hlen > (1u << 24) || off + hlen > (size_t)st.st_size) {
        snprintf(why, cap, "%s: malformed .npy header: field 'header_len': %zu runs past the file",
                 path, hlen);
        return DAGGER_EINVAL;
    }
    char *h = dagger__malloc(hlen + 1);
    if (!h) {
        snprintf(why, cap, "%s: out of memory for the .npy header", path);
        return DAGGER_ENOMEM;
    }
    int rc = dagger__io_read_at(fd, h, hlen, off, path, why, cap);
    if (!rc) {
        h[hlen] = '\0';
        rc = parse_header(h, path, m, why, cap);
    }
    dagger__free(h);
    if (rc)
        return rc;
    m->offset = off + hlen;
    if ((unsigned long long)st.st_size - m->offset < m->size) {
        snprintf(why, cap,
                 "%s: malformed .npy file: field 'shape': it needs %zu data bytes but the file "
                 "has %llu",
                 path, m->size, (unsigned long long)st.st_size - m->offset);
        return DAGGER_EINVAL;
    }
    return 0;
}

/* Fortran order to C order: dst[i0][i1].. = src[i0 + d0*(i1 + d1*(..))]. */
static void transpose_in(void *dst, const void *src, const dagger_file_meta_t *m)
{
    size_t es = dagger_elt_size(m->elt), n = es ? m->size / es : 0;
    size_t idx[DAGGER_CHUNK_MAX_DIMS] = {0};
    for (size_t lin = 0; lin < n; lin++) {
        size_t off = 0;
        for (int d = m->ndims - 1; d >= 0; d--)
            off = off * m->shape[d] + idx[d];
        memcpy((char *)dst + lin * es, (const char *)src + off * es, es);
        for (int d = m->ndims - 1; d >= 0; d--) { /* C order: the last index moves fastest */
            if (++idx[d] < m->shape[d])
                break;
            idx[d] = 0;
        }
    }
}

static int npy_decode(const dagger_codec_t *cd, int fd, const char *path,
                      const dagger_file_meta_t *m, void *dst, char *why, size_t cap)
{
    (void)cd;
    if (!m->fortran || m->ndims < 2)
        return dagger__io_read_at(fd, dst, m->size, m->offset, path, why, cap);
    void *tmp = dagger__malloc(m->size ? m->size : 1);
    if (!tmp) {
        snprintf(why, cap, "%s: out of memory for a Fortran-order transpose", path);
        return DAGGER_ENOMEM;
    }
    int rc = dagger__io_read_at(fd, tmp, m->size, m->offset, path, why, cap);
    if (!rc)
        transpose_in(dst, tmp, m);
    dagger__free(tmp);
    return rc;
}

static int npy_encode(const dagger_codec_t *cd, int fd, const char *path,
                      const dagger_file_meta_t *m, const void *src, char *why, size_t cap)
{
    (void)cd;
    const char *descr = "|u1";
    size_t shape[DAGGER_CHUNK_MAX_DIMS] = {m->size};
    int nd = 1;
    if (m->elt != DAGGER_ELT_RAW) {
        for (size_t k = 0; k < sizeof dtypes / sizeof dtypes[0]; k++)
            if (dtypes[k].elt == m->elt &&
                dtypes[k].is_bool == (m->npy_bool && m->elt == DAGGER_ELT_U8)) {
                descr = dtypes[k].descr;
                break;
            }
        nd = m->ndims;
        for (int d = 0; d < nd; d++)
            shape[d] = m->shape[d];
    }
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': (", descr,
                     m->fortran && nd > 1 ? "True" : "False");
    for (int d = 0; d < nd; d++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, d ? ", %zu" : "%zu", shape[d]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, nd == 1 ? ",), }" : "), }");
    /* Pad with spaces and end with a newline so that the data starts at a multiple of 64. */
    size_t pre = 10, total = pre + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    char head[320];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - pre;
    head[8] = (char)(hlen & 0xff);
    head[9] = (char)(hlen >> 8);
    memcpy(head + pre, dict, (size_t)n);
    memset(head + pre + n, ' ', padded - total);
    head[padded - 1] = '\n';
    int rc = dagger__io_write_all(fd, head, padded, path, why, cap);
    if (!rc)
        rc = dagger__io_write_all(fd, src, m->size, path, why, cap);
    return rc;
}

const dagger_codec_t dagger_codec_npy = {"npy", npy_probe, npy_decode, npy_encode, NULL};

const dagger_codec_t *dagger_codec_for_path(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if (n >= 4 && strcasecmp(path + n - 4, ".npy") == 0)
        return &dagger_codec_npy;
    return &dagger_codec_raw;
}
