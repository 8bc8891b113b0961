/* include/dagger/datadeps.h - datadeps regions: tasks that mutate their arguments in order.
 *
 * Inside a region, each task argument may carry an access annotation (In, Out, InOut) on a
 * byte span, a sub-range, a 2-D strided tile of a column-major matrix or a triangle of a
 * square tile. The region gives every task the dependencies that make the result equal to
 * running the tasks one after the other in spawn order (RAW, WAR and WAW on overlapping bytes
 * only; reads of the same bytes run in parallel). The task body receives plain pointers
 * (dagger_arg_ptr) to the annotated memory. docs/datadeps.md explains the rules.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_DATADEPS_H
#define DAGGER_DATADEPS_H

#include "dagger.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dagger_datadeps dagger_datadeps_t;

/** How a task uses an annotated argument. */
typedef enum dagger_access {
    DAGGER_ACCESS_NONE = 0,  /* a plain value: no annotation */
    DAGGER_ACCESS_IN = 1,    /* read */
    DAGGER_ACCESS_OUT = 2,   /* written (ordered like InOut: the task may leave bytes unwritten) */
    DAGGER_ACCESS_INOUT = 3, /* read and written */
    DAGGER_ACCESS_COMMUTE = 4, /* read and written; such writers run in any order, one at a time */
    DAGGER_ACCESS_REDUX = 5,   /* a private copy, combined before the next other access */
} dagger_access_t;

/** The memory an annotation covers. Triangles are of an n x n column-major tile and include
 *  the diagonal unless UNIT; DIAG is the diagonal alone. */
typedef enum dagger_shape {
    DAGGER_SHAPE_SPAN = 0,   /* `bytes` contiguous bytes from `ptr` */
    DAGGER_SHAPE_TILE,       /* rows x cols elements, column j at ptr + j * ld * elsize */
    DAGGER_SHAPE_UPPER,      /* element (i, j) with i <= j */
    DAGGER_SHAPE_LOWER,      /* i >= j */
    DAGGER_SHAPE_UNIT_UPPER, /* i < j */
    DAGGER_SHAPE_UNIT_LOWER, /* i > j */
    DAGGER_SHAPE_DIAG,       /* i == j */
    DAGGER_SHAPE_CHUNK,      /* a whole chunk (`value`), on this rank or another */
} dagger_shape_t;

/** One argument of a datadeps task: a plain value (access NONE) or an annotated memory region.
 *  Build it with the constructors below. An unannotated argument is read: a borrowed string or
 *  blob counts as In of its bytes, a pointer as In of the annotated memory it points into
 *  (see docs/datadeps.md); numbers, copied strings and task handles have no memory to order. */
typedef struct dagger_ddarg {
    dagger_value_t value; /* access NONE: the value passed to the task */
    uint8_t access;       /* dagger_access_t */
    uint8_t shape;        /* dagger_shape_t */
    uint16_t reserved;
    uint32_t elsize; /* tiles and triangles: bytes per element */
    void *ptr;       /* first byte: span start, or element (0, 0) of the tile */
    size_t bytes;    /* spans: length in bytes */
    size_t rows;     /* tiles: rows; triangles: n */
    size_t cols;     /* tiles: columns; triangles: n */
    size_t ld;       /* tiles and triangles: leading dimension in elements (>= rows) */
} dagger_ddarg_t;

static inline dagger_ddarg_t dagger_ddval(dagger_value_t v)
{
    dagger_ddarg_t a = {v, DAGGER_ACCESS_NONE, DAGGER_SHAPE_SPAN, 0, 0, NULL, 0, 0, 0, 0};
    return a;
}
/** `bytes` bytes from `p`, used with `access`. */
static inline dagger_ddarg_t dagger_span(dagger_access_t access, void *p, size_t bytes)
{
    dagger_ddarg_t a = dagger_ddval(dagger_nil());
    a.access = (uint8_t)access;
    a.ptr = p;
    a.bytes = bytes;
    return a;
}
static inline dagger_ddarg_t dagger_in(const void *p, size_t bytes)
{
    return dagger_span(DAGGER_ACCESS_IN, (void *)p, bytes);
}
static inline dagger_ddarg_t dagger_out(void *p, size_t bytes)
{
    return dagger_span(DAGGER_ACCESS_OUT, p, bytes);
}
static inline dagger_ddarg_t dagger_inout(void *p, size_t bytes)
{
    return dagger_span(DAGGER_ACCESS_INOUT, p, bytes);
}
/** The sub-range [off, off + len) (bytes) of the buffer `base`; the task gets base + off. */
static inline dagger_ddarg_t dagger_range(dagger_access_t access, void *base, size_t off,
                                          size_t len)
{
    return dagger_span(access, (char *)base + off, len);
}
/** The whole chunk `c` (In, Out or InOut): the task gets the chunk (dagger_arg_buf). A written
 *  chunk must be mutable data (dagger_mutable, a shard piece), and the task runs on its rank; a
 *  read chunk of another rank is copied there (see docs/datadeps.md). */
static inline dagger_ddarg_t dagger_ddchunk(dagger_access_t access, dagger_chunk_t *c)
{
    dagger_ddarg_t a = dagger_ddval(dagger_chunkv(c));
    a.access = (uint8_t)access;
    a.shape = DAGGER_SHAPE_CHUNK;
    return a;
}
/** A rows x cols tile of a column-major matrix whose columns are `ld` elements apart. */
static inline dagger_ddarg_t dagger_tile(dagger_access_t access, void *p, size_t rows, size_t cols,
                                         size_t ld, size_t elsize)
{
    dagger_ddarg_t a = dagger_span(access, p, 0);
    a.shape = DAGGER_SHAPE_TILE;
    a.rows = rows;
    a.cols = cols;
    a.ld = ld;
    a.elsize = (uint32_t)elsize;
    return a;
}
/** A triangle or the diagonal (`shape`) of the n x n tile at `p`. */
static inline dagger_ddarg_t dagger_tri(dagger_access_t access, dagger_shape_t shape, void *p,
                                        size_t n, size_t ld, size_t elsize)
{
    dagger_ddarg_t a = dagger_tile(access, p, n, n, ld, elsize);
    a.shape = (uint8_t)shape;
    return a;
}

/* Element-count forms: the element type comes from the pointer, so no byte count is computed
 * by hand. `p` must point to the element type (not void *). */
/** `n` elements from `p`, read. */
#define dagger_in_n(p, n) dagger_in((p), (size_t)(n) * sizeof *(p))
/** `n` elements from `p`, written. */
#define dagger_out_n(p, n) dagger_out((p), (size_t)(n) * sizeof *(p))
/** `n` elements from `p`, read and written. */
#define dagger_inout_n(p, n) dagger_inout((p), (size_t)(n) * sizeof *(p))
/** Elements [first, first + n) of the array `base`; the task gets &base[first]. */
#define dagger_range_n(access, base, first, n)                                                     \
    dagger_range((access), (base), (size_t)(first) * sizeof *(base), (size_t)(n) * sizeof *(base))
/** A rows x cols tile of the column-major matrix of `p`'s element type, columns `ld` apart. */
#define dagger_tile_of(access, p, rows, cols, ld)                                                  \
    dagger_tile((access), (p), (rows), (cols), (ld), sizeof *(p))
/** A triangle or the diagonal of the n x n tile at `p`, elements of `p`'s type. */
#define dagger_tri_of(access, shape, p, n, ld)                                                     \
    dagger_tri((access), (shape), (p), (n), (ld), sizeof *(p))

/** A reduction operator for dagger_redux: `combine(acc, priv)` folds one task's private copy
 *  into the shared bytes; `init(priv)` prepares a private copy (NULL: zero bytes). Both must be
 *  safe to call from any worker thread. The caller keeps the struct alive until the region ends. */
typedef struct dagger_redux_op {
    void (*combine)(void *acc, const void *priv, size_t bytes, void *ud);
    void (*init)(void *priv, size_t bytes, void *ud);
    void *ud;
} dagger_redux_op_t;

/** Reduction access (StarPU's REDUX, OpenMP's task_reduction): the task receives a private,
 *  initialised copy of the `bytes` at `p`; the copies of consecutive reduction tasks on the same
 *  bytes and operator are combined into `p` (after the accesses before them) by one task that
 *  runs before the next access of another kind. Spans only. */
static inline dagger_ddarg_t dagger_redux(void *p, size_t bytes, const dagger_redux_op_t *op)
{
    dagger_ddarg_t a = dagger_span(DAGGER_ACCESS_REDUX, p, bytes);
    a.value = dagger_ptr(op);
    return a;
}
/** Commutative access (StarPU's COMMUTE): like InOut, but consecutive commute tasks on the same
 *  region may run in any order, never at the same time (a task waiting for the region is
 *  suspended, not its thread); they stay ordered against the reads and writes around them. */
static inline dagger_ddarg_t dagger_commute(void *p, size_t bytes)
{
    return dagger_span(DAGGER_ACCESS_COMMUTE, p, bytes);
}

/** Region flags. */
enum {
    DAGGER_DATADEPS_TIMING = 1u << 0, /* measure the analysis time (dagger_datadeps_stats) */
};

/** Open a datadeps region on `ctx`. Tasks join it through dagger_datadeps_spawn*; other spawns
 *  are not affected. Regions may nest and be opened inside tasks.
 *  Returns: 0, DAGGER_EINVAL (unknown flag), DAGGER_ENOMEM.
 *  Ownership: `*out` belongs to the caller until dagger_datadeps_end frees it.
 *  Thread safety: any thread; the region itself is used by the thread or task that began it. */
DAGGER_API DAGGER_NODISCARD int dagger_datadeps_begin(dagger_ctx_t *ctx, unsigned flags,
                                                      dagger_datadeps_t **out);
/** Wait for every task of the region, then free it. Its tasks may then be fetched.
 *  Returns: 0, or the error of the first failed task in spawn order (its message in
 *  dagger_last_errmsg). Ownership: consumes `dd`; user handles stay valid.
 *  Thread safety: the thread or task that began the region. */
DAGGER_API DAGGER_NODISCARD int dagger_datadeps_end(dagger_datadeps_t *dd);
/** Callback form: begin, body(dd, ud), end. A negative return of `body` is returned when no
 *  task failed. Returns: as dagger_datadeps_end, or the body's code. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_datadeps_run(dagger_ctx_t *ctx, unsigned flags,
                                                    int (*body)(dagger_datadeps_t *dd, void *ud),
                                                    void *ud);
/** The region's context (borrowed). Thread safety: any thread. */
DAGGER_API dagger_ctx_t *dagger_datadeps_ctx(const dagger_datadeps_t *dd);

/** Spawn `fn` in region `dd` with annotated arguments; the task waits for the earlier tasks of
 *  the region that touch the same bytes incompatibly. Annotated arguments reach `fn` as
 *  DAGGER_KIND_PTR values. `opts` as for dagger_spawn_impl (scope, name, priority, extra
 *  syncdeps); a bad annotation gives a task already failed with DAGGER_EINVAL.
 *  Returns: the task (+1), or NULL when out of memory. Fetching or waiting on it before
 *  dagger_datadeps_end is refused (DAGGER_ESTATE).
 *  Ownership: +1 on the task (the region keeps its own); borrows argv and opts.
 *  Thread safety: the thread or task that began the region. */
DAGGER_API dagger_task_t *dagger_datadeps_spawn_impl(dagger_datadeps_t *dd,
                                                     const dagger_task_opts_t *opts, dagger_fn_t fn,
                                                     const char *fname, const dagger_ddarg_t *argv,
                                                     size_t argc);

/** Counters of a region (read before dagger_datadeps_end). */
typedef struct dagger_datadeps_stats {
    uint64_t tasks;       /* tasks spawned in the region */
    uint64_t annotated;   /* annotated (tracked) arguments, including inferred In */
    uint64_t edges;       /* dependencies the analysis produced (after deduplication) */
    uint64_t objects;     /* distinct memory regions seen */
    uint64_t analysis_ns; /* time in the analysis (with DAGGER_DATADEPS_TIMING), else 0 */
} dagger_datadeps_stats_t;

/** Read the region's counters. Thread safety: the thread or task that began the region. */
DAGGER_API void dagger_datadeps_stats(const dagger_datadeps_t *dd, dagger_datadeps_stats_t *out);

/* Argument conversion for the spawn macros: a dagger_ddarg_t stays as it is; any other C value
 * becomes a plain argument through the same rules as DAGGER_V. */
static inline dagger_ddarg_t dagger_dd_id_(dagger_ddarg_t a) { return a; }
static inline dagger_ddarg_t dagger_dd_bool_(_Bool b) { return dagger_ddval(dagger_bool(b)); }
static inline dagger_ddarg_t dagger_dd_i64_(int64_t i) { return dagger_ddval(dagger_i64(i)); }
static inline dagger_ddarg_t dagger_dd_f64_(double f) { return dagger_ddval(dagger_f64(f)); }
static inline dagger_ddarg_t dagger_dd_str_(const char *s) { return dagger_ddval(dagger_str(s)); }
static inline dagger_ddarg_t dagger_dd_task_(dagger_task_t *t)
{
    return dagger_ddval(dagger_taskv(t));
}
static inline dagger_ddarg_t dagger_dd_value_(dagger_value_t v) { return dagger_ddval(v); }
static inline dagger_ddarg_t dagger_dd_ptr_(const void *p) { return dagger_ddval(dagger_ptr(p)); }

#define DAGGER_DDA(x)                                                                              \
    _Generic((x),                                                                              \
        dagger_ddarg_t: dagger_dd_id_,                                                         \
        _Bool: dagger_dd_bool_,                                                                \
        char: dagger_dd_i64_,                                                                  \
        signed char: dagger_dd_i64_,                                                           \
        unsigned char: dagger_dd_i64_,                                                         \
        short: dagger_dd_i64_,                                                                 \
        unsigned short: dagger_dd_i64_,                                                        \
        int: dagger_dd_i64_,                                                                   \
        unsigned: dagger_dd_i64_,                                                              \
        long: dagger_dd_i64_,                                                                  \
        unsigned long: dagger_dd_i64_,                                                         \
        long long: dagger_dd_i64_,                                                             \
        unsigned long long: dagger_dd_i64_,                                                    \
        float: dagger_dd_f64_,                                                                 \
        double: dagger_dd_f64_,                                                                \
        char *: dagger_dd_str_,                                                                \
        const char *: dagger_dd_str_,                                                          \
        dagger_task_t *: dagger_dd_task_,                                                      \
        dagger_value_t: dagger_dd_value_,                                                      \
        default: dagger_dd_ptr_)(x)

#define DAGGER_DDMAP_1(a) DAGGER_DDA(a)
#define DAGGER_DDMAP_2(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_1(__VA_ARGS__)
#define DAGGER_DDMAP_3(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_2(__VA_ARGS__)
#define DAGGER_DDMAP_4(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_3(__VA_ARGS__)
#define DAGGER_DDMAP_5(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_4(__VA_ARGS__)
#define DAGGER_DDMAP_6(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_5(__VA_ARGS__)
#define DAGGER_DDMAP_7(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_6(__VA_ARGS__)
#define DAGGER_DDMAP_8(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_7(__VA_ARGS__)
#define DAGGER_DDMAP_9(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_8(__VA_ARGS__)
#define DAGGER_DDMAP_10(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_9(__VA_ARGS__)
#define DAGGER_DDMAP_11(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_10(__VA_ARGS__)
#define DAGGER_DDMAP_12(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_11(__VA_ARGS__)
#define DAGGER_DDMAP_13(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_12(__VA_ARGS__)
#define DAGGER_DDMAP_14(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_13(__VA_ARGS__)
#define DAGGER_DDMAP_15(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_14(__VA_ARGS__)
#define DAGGER_DDMAP_16(a, ...) DAGGER_DDA(a), DAGGER_DDMAP_15(__VA_ARGS__)
#define DAGGER_DD_SEL_(dd, o, fn, n, ...)                                                          \
    dagger_datadeps_spawn_impl(                                                                    \
        (dd), (o), (fn), #fn, (const dagger_ddarg_t[]){DAGGER_CAT(DAGGER_DDMAP_, n)(__VA_ARGS__)}, \
        (n))
#define DAGGER_DD_D1(dd, o, fn) dagger_datadeps_spawn_impl((dd), (o), (fn), #fn, NULL, 0)
#define DAGGER_DD_DN(dd, o, fn, ...)                                                               \
    DAGGER_DD_SEL_(dd, o, fn, DAGGER_NARG(__VA_ARGS__), __VA_ARGS__)
#define DAGGER_DD_PICK_(n) DAGGER_CAT(DAGGER_DD_PICK_, n)
#define DAGGER_DD_PICK_1 DAGGER_DD_D1
#define DAGGER_DD_PICK_2 DAGGER_DD_DN
#define DAGGER_DD_PICK_3 DAGGER_DD_DN
#define DAGGER_DD_PICK_4 DAGGER_DD_DN
#define DAGGER_DD_PICK_5 DAGGER_DD_DN
#define DAGGER_DD_PICK_6 DAGGER_DD_DN
#define DAGGER_DD_PICK_7 DAGGER_DD_DN
#define DAGGER_DD_PICK_8 DAGGER_DD_DN
#define DAGGER_DD_PICK_9 DAGGER_DD_DN
#define DAGGER_DD_PICK_10 DAGGER_DD_DN
#define DAGGER_DD_PICK_11 DAGGER_DD_DN
#define DAGGER_DD_PICK_12 DAGGER_DD_DN
#define DAGGER_DD_PICK_13 DAGGER_DD_DN
#define DAGGER_DD_PICK_14 DAGGER_DD_DN
#define DAGGER_DD_PICK_15 DAGGER_DD_DN
#define DAGGER_DD_PICK_16 DAGGER_DD_DN
#define DAGGER_DD_PICK_17 DAGGER_DD_DN
#define DAGGER_DD_PICK_X DAGGER_SPAWN_TOO_MANY_ /* a _Static_assert naming the limit */

/** dagger_datadeps_spawn(dd, fn, args...): spawn fn in the region with up to 16 arguments,
 *  each a dagger_ddarg_t (dagger_in, dagger_tile, ...) or a plain C value as for dagger_spawn. */
#define dagger_datadeps_spawn(dd, ...)                                                             \
    DAGGER_DD_PICK_(DAGGER_NARG(__VA_ARGS__))(dd, NULL, __VA_ARGS__)
/** dagger_datadeps_spawn_opts(dd, &opts, fn, args...): the same with task options. */
#define dagger_datadeps_spawn_opts(dd, opts, ...)                                                  \
    DAGGER_DD_PICK_(DAGGER_NARG(__VA_ARGS__))(dd, opts, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_DATADEPS_H */
