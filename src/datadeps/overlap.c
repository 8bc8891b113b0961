/* src/datadeps/overlap.c - normalised memory regions and their exact overlap test.
 *
 * Design: spans overlap by interval arithmetic; a span meets a tile iff some column index j
 * satisfies base + j*S < b and base + j*S + len > a, which is a range of j computed with floor
 * and ceiling divisions; two tiles with the same stride S meet iff some column difference
 * m = j - k satisfies d - lenA < m*S < d + lenB (d = baseB - baseA) within the column counts.
 * Triangles and tiles of different strides are tested column span by column span, only over
 * the columns that fall into the other region's bounding interval.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "dagger.h"
#include "dagger/datadeps.h"
#include "datadeps/datadeps_int.h"

static int64_t floordiv(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int64_t ceildiv(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a > 0) ? q + 1 : q;
}

static bool is_tri(const dagger__ddreg_t *r) { return r->kind >= DD_UPPER; }

/* The rows [r0, r1) of column j of triangle kind `k` with n rows. */
static void tri_rows(int k, size_t n, size_t j, size_t *r0, size_t *r1)
{
    switch (k) {
    case DD_UPPER:
        *r0 = 0, *r1 = j + 1;
        break;
    case DD_LOWER:
        *r0 = j, *r1 = n;
        break;
    case DD_UUPPER:
        *r0 = 0, *r1 = j;
        break;
    case DD_ULOWER:
        *r0 = j + 1, *r1 = n;
        break;
    default:
        *r0 = j, *r1 = j + 1;
        break; /* DD_DIAG */
    }
}

bool dagger__ddreg_col(const dagger__ddreg_t *r, size_t j, uintptr_t *a, uintptr_t *b)
{
    uintptr_t c = r->base + (uintptr_t)j * r->stride;
    if (!is_tri(r)) {
        *a = c;
        *b = c + r->len;
        return true;
    }
    size_t r0, r1;
    tri_rows(r->kind, r->cols, j, &r0, &r1);
    if (r0 >= r1)
        return false;
    *a = c + (uintptr_t)r0 * r->elsize;
    *b = c + (uintptr_t)r1 * r->elsize;
    return true;
}

/* Bytes a column of `r` may cover at most (the full column for a triangle). */
static size_t col_len(const dagger__ddreg_t *r)
{
    return is_tri(r) ? r->cols * (size_t)r->elsize : r->len;
}

/* The columns [j0, j1] of `r` (taken as full columns of col_len bytes) that can meet [a, b);
 * false when none. */
static bool col_range(const dagger__ddreg_t *r, uintptr_t a, uintptr_t b, int64_t *j0, int64_t *j1)
{
    int64_t S = (int64_t)r->stride;
    int64_t lo = floordiv((int64_t)(a - r->base) - (int64_t)col_len(r), S) + 1;
    int64_t hi = ceildiv((int64_t)(b - r->base), S) - 1;
    if (lo < 0)
        lo = 0;
    if (hi > (int64_t)r->cols - 1)
        hi = (int64_t)r->cols - 1;
    *j0 = lo;
    *j1 = hi;
    return lo <= hi;
}

/* Exact: does the span [a, b) meet region y? */
static bool span_meets(uintptr_t a, uintptr_t b, const dagger__ddreg_t *y)
{
    if (a >= y->hi || y->lo >= b)
        return false;
    if (y->kind == DD_SPAN)
        return true;
    int64_t j0, j1;
    if (!col_range(y, a, b, &j0, &j1))
        return false;
    if (y->kind == DD_TILE)
        return true; /* every column in the range meets [a, b) by construction */
    for (int64_t j = j0; j <= j1; j++) {
        uintptr_t ca, cb;
        if (dagger__ddreg_col(y, (size_t)j, &ca, &cb) && ca < b && a < cb)
            return true;
    }
    return false;
}

bool dagger__ddreg_overlap(const dagger__ddreg_t *x, const dagger__ddreg_t *y)
{
    if (x->lo >= y->hi || y->lo >= x->hi)
        return false;
    if (x->kind == DD_SPAN)
        return span_meets(x->lo, x->hi, y);
    if (y->kind == DD_SPAN)
        return span_meets(y->lo, y->hi, x);
    if (x->kind == DD_TILE && y->kind == DD_TILE && x->stride == y->stride) {
        int64_t S = (int64_t)x->stride;
        int64_t d = (int64_t)(y->base - x->base);
        int64_t mlo = floordiv(d - (int64_t)x->len, S) + 1;
        int64_t mhi = ceildiv(d + (int64_t)y->len, S) - 1;
        if (mlo < -((int64_t)y->cols - 1))
            mlo = -((int64_t)y->cols - 1);
        if (mhi > (int64_t)x->cols - 1)
            mhi = (int64_t)x->cols - 1;
        return mlo <= mhi;
    }
    /* Walk the columns of the region with a triangle (or x) that fall into y's interval. */
    if (!is_tri(x) && is_tri(y)) {
        const dagger__ddreg_t *t = x;
        x = y;
        y = t;
    }
    int64_t j0, j1;
    if (!col_range(x, y->lo, y->hi, &j0, &j1))
        return false;
    for (int64_t j = j0; j <= j1; j++) {
        uintptr_t a, b;
        if (dagger__ddreg_col(x, (size_t)j, &a, &b) && span_meets(a, b, y))
            return true;
    }
    return false;
}

bool dagger__ddreg_equal(const dagger__ddreg_t *x, const dagger__ddreg_t *y)
{
    return x->kind == y->kind && x->lo == y->lo && x->hi == y->hi && x->base == y->base &&
           x->len == y->len && x->cols == y->cols && x->stride == y->stride &&
           x->elsize == y->elsize;
}

static void set_span(dagger__ddreg_t *r, uintptr_t a, uintptr_t b)
{
    r->kind = DD_SPAN;
    r->lo = r->base = a;
    r->hi = b;
    r->len = r->stride = (size_t)(b - a);
    r->cols = 1;
    r->elsize = 0;
}

#define BAD(...) (snprintf(err, cap, __VA_ARGS__), DAGGER_EINVAL)

int dagger__ddreg_make(dagger__ddreg_t *r, int shape, const void *ptr, size_t bytes, size_t rows,
                       size_t cols, size_t ld, size_t elsize, char *err, size_t cap)
{
    uintptr_t p = (uintptr_t)ptr, end;
    if (shape == DAGGER_SHAPE_SPAN) {
        if (bytes == 0)
            return 0;
        if (!ptr)
            return BAD("span of %zu bytes at NULL", bytes);
        if (__builtin_add_overflow(p, bytes, &end))
            return BAD("span of %zu bytes at %p wraps around the address space", bytes, ptr);
        set_span(r, p, end);
        return 1;
    }
    if (shape < DAGGER_SHAPE_SPAN || shape > DAGGER_SHAPE_DIAG)
        return BAD("unknown annotation shape %d", shape);
    bool tri = shape != DAGGER_SHAPE_TILE;
    if (tri && rows != cols)
        return BAD("triangle of a %zu x %zu tile: the tile must be square", rows, cols);
    if (rows == 0 || cols == 0)
        return 0;
    if (elsize == 0 || elsize > UINT32_MAX)
        return BAD("element size %zu of a tile", elsize);
    if (ld < rows)
        return BAD("leading dimension %zu is smaller than the %zu rows of the tile", ld, rows);
    if (!ptr)
        return BAD("%zu x %zu tile at NULL", rows, cols);
    size_t len, stride, last, total;
    if (__builtin_mul_overflow(rows, elsize, &len) || __builtin_mul_overflow(ld, elsize, &stride) ||
        __builtin_mul_overflow(cols - 1, stride, &last) ||
        __builtin_add_overflow(last, len, &total) || __builtin_add_overflow(p, total, &end))
        return BAD("%zu x %zu tile (ld %zu) at %p exceeds the address space", rows, cols, ld, ptr);
    if (!tri) {
        if (cols == 1 || len == stride) { /* contiguous: a plain span */
            set_span(r, p, end);
            return 1;
        }
        r->kind = DD_TILE;
        r->lo = r->base = p;
        r->hi = end;
        r->len = len;
        r->cols = cols;
        r->stride = stride;
        r->elsize = 0;
        return 1;
    }
    r->kind = (uint8_t)(DD_UPPER + (shape - DAGGER_SHAPE_UPPER));
    r->base = p;
    r->len = 0;
    r->cols = cols;
    r->stride = stride;
    r->elsize = (uint32_t)elsize;
    /* Bounding interval: first byte of the first non-empty column, end of the last one. */
    uintptr_t a = 0, b = 0;
    size_t j = 0;
    while (j < cols && !dagger__ddreg_col(r, j, &a, &b))
        j++;
    if (j == cols)
        return 0; /* a unit triangle of a 1 x 1 tile */
    r->lo = a;
    j = cols;
    while (!dagger__ddreg_col(r, j - 1, &a, &b))
        j--;
    r->hi = b;
    if (cols == 1)
        set_span(r, r->lo, r->hi);
    return 1;
}
