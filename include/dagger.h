/* include/dagger.h - the front door of dagger: context, spawn, fetch, errors, scopes, groups.
 *
 * A program opens a context (a pool of worker threads), spawns tasks whose arguments may be
 * other tasks (dependencies), and fetches results. Failures travel to every dependent task.
 * The headers are the API reference; docs/ explains the model. Thread-safety terms are
 * defined in docs/threading.md.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_H
#define DAGGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dagger/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DAGGER_VERSION_MAJOR 0
#define DAGGER_VERSION_MINOR 2
#define DAGGER_VERSION_PATCH 0

#if defined(_WIN32)
#define DAGGER_API
#else
#define DAGGER_API __attribute__((visibility("default")))
#endif
#define DAGGER_NODISCARD __attribute__((warn_unused_result))
#define DAGGER_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef struct dagger_ctx dagger_ctx_t;
typedef struct dagger_task dagger_task_t;
typedef struct dagger_tc dagger_tc_t;
typedef struct dagger_args dagger_args_t;
typedef struct dagger_scope dagger_scope_t;
typedef struct dagger_chunk dagger_chunk_t; /* data with a home: include <dagger/chunk.h> */
typedef struct dagger_shard dagger_shard_t; /* one piece per worker or thread */

/* ---------------------------------------------------------------- version and errors */

/** The run-time version as "MAJOR.MINOR.PATCH".
 *  Returns: a static string. Ownership: none. Thread safety: any thread. */
DAGGER_API const char *dagger_version(void);
/** The run-time version as MAJOR*10000 + MINOR*100 + PATCH, to compare with the macros.
 *  Thread safety: any thread. */
DAGGER_API int dagger_version_number(void);
/** The sentence for an error code ("invalid argument"); unknown codes get a generic text.
 *  Returns: a static string, never NULL. Thread safety: any thread. */
DAGGER_API const char *dagger_strerror(int rc);
/** The symbolic name of an error code ("DAGGER_EINVAL", "DAGGER_OK").
 *  Returns: a static string, never NULL. Thread safety: any thread. */
DAGGER_API const char *dagger_err_name(int rc);
/** The message of the last failed dagger call made by the calling thread (or task), for
 *  errors that no task carries (bad context options, a refused wait, a group's first error).
 *  Returns: a thread-local string, "" when none; valid until the next failing call.
 *  Thread safety: any thread. */
DAGGER_API const char *dagger_last_errmsg(void);

/* ---------------------------------------------------------------- values */

/** Kinds of dagger_value_t. Kinds only ever grow at the end. */
typedef enum dagger_kind {
    DAGGER_KIND_NIL = 0,
    DAGGER_KIND_BOOL,
    DAGGER_KIND_I64,
    DAGGER_KIND_F64,
    DAGGER_KIND_STR,   /* NUL-terminated text; len excludes the NUL */
    DAGGER_KIND_BLOB,  /* bytes; len is the size */
    DAGGER_KIND_PTR,   /* a local pointer, never copied nor freed, never encoded */
    DAGGER_KIND_TASK,  /* a task handle: as an argument, a dependency */
    DAGGER_KIND_CHUNK, /* a chunk handle (dagger/chunk.h): the body gets a pointer where it runs */
    DAGGER_KIND_SHARD, /* a shard handle (dagger/chunk.h): the body gets the local piece */
    DAGGER_KIND_COUNT_
} dagger_kind_t;

/** Value flags (dagger_value_t.flags). */
enum {
    DAGGER_VALUE_BORROW =
        1u << 0,                  /* str/blob argument: caller keeps it alive until the task ends */
    DAGGER_VALUE_OWNED = 1u << 1, /* internal: the holder frees the bytes */
    DAGGER_VALUE_REMOTE = 1u << 2, /* decoded task reference: u.i is the task id, no handle */
    DAGGER_VALUE_TOOBIG =
        1u << 3, /* str/blob of 4 GiB or more: refused (DAGGER_E2BIG) where used */
};

/** A 16-byte tagged value. Build it with the constructors below; read it with the accessors. */
typedef struct dagger_value {
    uint8_t kind;  /* dagger_kind_t */
    uint8_t flags; /* DAGGER_VALUE_* */
    uint16_t rank; /* a decoded (remote) handle reference: the rank that holds it; else 0 */
    uint32_t len;  /* str/blob: bytes (str without the NUL) */
    union {
        bool b;
        int64_t i;
        double f;
        const char *s;
        const void *p;
        dagger_task_t *t;
        dagger_chunk_t *c;
        dagger_shard_t *sh;
    } u;
} dagger_value_t;

static inline dagger_value_t dagger_nil(void)
{
    dagger_value_t v = {DAGGER_KIND_NIL, 0, 0, 0, {0}};
    return v;
}
static inline dagger_value_t dagger_bool(bool b)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_BOOL;
    v.u.b = b;
    return v;
}
static inline dagger_value_t dagger_i64(int64_t i)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_I64;
    v.u.i = i;
    return v;
}
static inline dagger_value_t dagger_f64(double f)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_F64;
    v.u.f = f;
    return v;
}
/** A string value. Passed to spawn it is copied then (see dagger_str_borrow); returned from a task
 *  body it is copied after the body returns, so it must outlive the body (or use dagger_str_copy).
 */
DAGGER_API dagger_value_t dagger_str(const char *s);
/** A string argument the runtime does not copy: the caller keeps it alive until the task ends. */
DAGGER_API dagger_value_t dagger_str_borrow(const char *s);
/** A byte blob of `n` bytes (n < 4 GiB; a larger one is marked DAGGER_VALUE_TOOBIG and refused
 *  with DAGGER_E2BIG by spawn, task results and encode); copied like strings. Inline, like the
 *  other constructors of fixed-size values: a stream pushes one per value. */
static inline dagger_value_t dagger_blob(const void *p, size_t n)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_BLOB;
    v.u.p = p;
    v.len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    if (n > UINT32_MAX)
        v.flags = (uint8_t)(v.flags | DAGGER_VALUE_TOOBIG);
    return v;
}
/** A blob argument the runtime does not copy (DAGGER_BORROW mode). */
static inline dagger_value_t dagger_blob_borrow(const void *p, size_t n)
{
    dagger_value_t v = dagger_blob(p, n);
    v.flags = (uint8_t)(v.flags | DAGGER_VALUE_BORROW);
    return v;
}
static inline dagger_value_t dagger_ptr(const void *p)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_PTR;
    v.u.p = p;
    return v;
}
static inline dagger_value_t dagger_taskv(dagger_task_t *t)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_TASK;
    v.u.t = t;
    return v;
}
/** A chunk argument or result: passing it never steals the caller's reference. */
static inline dagger_value_t dagger_chunkv(dagger_chunk_t *c)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_CHUNK;
    v.u.c = c;
    return v;
}
/** A shard argument: the task body receives the piece of the place where it runs. */
static inline dagger_value_t dagger_shardv(dagger_shard_t *s)
{
    dagger_value_t v = dagger_nil();
    v.kind = DAGGER_KIND_SHARD;
    v.u.sh = s;
    return v;
}
static inline dagger_value_t dagger_value_id(dagger_value_t v) { return v; }

/** The name of a kind ("f64", "str", ...). Returns: a static string, never NULL. */
DAGGER_API const char *dagger_kind_name(int kind);

/** Encode `v` into `buf` (little-endian, self-describing); local pointers cannot be encoded.
 *  Returns: the encoded size (also when it exceeds `cap`, in which case nothing is written),
 *  or DAGGER_EINVAL for a local pointer or a bad value.
 *  Ownership: borrows everything. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD long dagger_value_encode(const dagger_value_t *v, void *buf,
                                                     size_t cap);
/** Decode one value from `buf`; str/blob values borrow `buf`'s bytes, a task decodes as a
 *  remote reference (kind TASK, flag DAGGER_VALUE_REMOTE, u.i = task id).
 *  Returns: bytes consumed, or DAGGER_EINVAL for a truncated or malformed buffer.
 *  Ownership: `*out` borrows `buf`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD long dagger_value_decode(const void *buf, size_t len,
                                                     dagger_value_t *out);

/* ---------------------------------------------------------------- context */

/** Context options; initialise with dagger_opts_init. This struct only ever grows at the end. */
typedef struct dagger_opts {
    int num_threads;   /* worker threads; 0 = DAGGER_NUM_THREADS or the core count */
    size_t stack_size; /* bytes per suspended-task stack; 0 = DAGGER_STACK_SIZE or 256 KiB */
    unsigned flags;    /* 0, or DAGGER_OPEN_SPMD */
    size_t mem_limit;  /* bytes chunks may hold in host memory before spilling to disk (out-of-core,
                        * dagger/file.h); 0 = DAGGER_MEM_LIMIT or no limit */
} dagger_opts_t;

/** Fill `o` with the defaults. Thread safety: any thread. */
DAGGER_API void dagger_opts_init(dagger_opts_t *o);

/** dagger_opts.flags: SPMD mode. Under MPI every rank's dagger_ctx_open returns 0 with a
 *  context of its own and every rank runs main (no serving ranks); collectives
 *  (dagger_barrier, dagger_bcast, dagger_gather) and remote spawn work between them, and
 *  dagger_ctx_close is collective. Without MPI the context is rank 0 of 1. See docs/mpi.md. */
enum { DAGGER_OPEN_SPMD = 1u << 0 };

/** Returned by dagger_ctx_open on the ranks other than 0 of an MPI job in driver mode, once
 *  they have served tasks until the driver (rank 0) closed its context: `*out` is NULL and
 *  the program should end (`if (rc == DAGGER_CTX_SERVED) return 0;`). See docs/mpi.md. */
enum { DAGGER_CTX_SERVED = 1 };

/** Open a context: start the worker threads. `opts` may be NULL for the defaults; the
 *  environment variables DAGGER_NUM_THREADS and DAGGER_STACK_SIZE fill fields left at 0.
 *  Under an MPI launcher with several ranks (or DAGGER_MPI=1) every rank joins the job: rank 0
 *  returns 0 and runs main, the others serve and return DAGGER_CTX_SERVED (docs/mpi.md); with
 *  DAGGER_OPEN_SPMD every rank returns 0 and runs main. It sets the BLAS libraries loaded in
 *  the process to one thread (dagger_blas_set_threads; DAGGER_BLAS_THREADS changes that), so
 *  no other thread should be inside a BLAS call meanwhile.
 *  Returns: 0, DAGGER_CTX_SERVED, DAGGER_EINVAL (bad option; see dagger_last_errmsg),
 *  DAGGER_ENOMEM, DAGGER_ENOSYS / DAGGER_EPEER (the job cannot be joined; message set).
 *  Ownership: +1 on `*out`, closed by dagger_ctx_close. Thread safety: any thread;
 *  collective when ranks are on. */
DAGGER_API DAGGER_NODISCARD int dagger_ctx_open(dagger_ctx_t **out, const dagger_opts_t *opts);

enum { DAGGER_CLOSE_FORCE = 1u << 0 };

/** Drain every spawned task, then stop the workers and free the context.
 *  Returns: 0; DAGGER_EBUSY if task handles are still held (the context stays open and usable
 *  unless DAGGER_CLOSE_FORCE is given, which closes it anyway).
 *  Ownership: consumes `ctx` on success. Thread safety: any thread outside a task. */
DAGGER_API DAGGER_NODISCARD int dagger_ctx_close_ex(dagger_ctx_t *ctx, unsigned flags);
/** dagger_ctx_close_ex(ctx, 0). */
DAGGER_API DAGGER_NODISCARD int dagger_ctx_close(dagger_ctx_t *ctx);
/** The number of worker threads. Thread safety: any thread. */
DAGGER_API int dagger_ctx_num_threads(const dagger_ctx_t *ctx);
/** How many tasks of `ctx` failed with nobody reading their error so far (no fetch, no
 *  dagger_task_error/errmsg, no dependent or sync group that inherited it). dagger_ctx_close
 *  prints this count as a warning on stderr when it is not 0 (DAGGER_QUIET=1 silences it).
 *  Returns: the count, 0 for NULL. Thread safety: any thread. */
DAGGER_API int64_t dagger_ctx_unfetched_failures(const dagger_ctx_t *ctx);

/** Set the thread count of the BLAS libraries loaded in the process (OpenBLAS, BLIS, MKL,
 *  FlexiBLAS; found at run time, no link dependency). A BLAS call inside a task should use the
 *  task's thread only: dagger_ctx_open therefore sets 1, unless DAGGER_BLAS_THREADS=keep (or a
 *  count). With n == 1, OpenBLAS's idle server threads are stopped as well (they spin for
 *  about 0.1 s after the library loads, a core taken from the workers); a later count > 1
 *  starts them again. Returns: the number of libraries set (0: none loaded), DAGGER_EINVAL for
 *  n < 1. Thread safety: any thread, but not while BLAS calls run. */
DAGGER_API int dagger_blas_set_threads(int n);

/** This process's rank in the job and the job's number of ranks (0 and 1 without MPI).
 *  Thread safety: any thread. */
DAGGER_API int dagger_ctx_rank(const dagger_ctx_t *ctx);
DAGGER_API int dagger_ctx_nranks(const dagger_ctx_t *ctx);

/* ---------------------------------------------------------------- collectives (SPMD) */

/** Collectives across the ranks of a context opened with DAGGER_OPEN_SPMD. Every rank calls
 *  the same collectives in the same order (as in MPI), one at a time per rank. Called from a
 *  task, the task is suspended (its worker thread runs other tasks) until the collective
 *  completes; called from another thread, the thread waits as in dagger_wait. Workers never
 *  call MPI: the context's progress thread runs the nonblocking MPI collective. With one rank
 *  (no MPI) each completes at once.
 *  Returns: 0; DAGGER_EINVAL (NULL context or buffer, a root out of range, or ranks that passed
 *  different sizes or roots: every rank fails, the message names both values);
 *  DAGGER_ESTATE (driver mode: collectives need every rank to run main); DAGGER_EPEER (a rank
 *  was lost before or during it, named in the message, within DAGGER_PEER_TIMEOUT);
 *  DAGGER_ENOMEM. Thread safety: any thread; see above for ordering. */
DAGGER_API DAGGER_NODISCARD int dagger_barrier(dagger_ctx_t *ctx);
/** Copy `size` bytes at `buf` on rank `root` into `buf` on every rank. Every rank passes the
 *  same `root` and `size`. Ownership: `buf` stays the caller's (dagger copies it in and out).
 *  Returns and thread safety: as dagger_barrier. */
DAGGER_API DAGGER_NODISCARD int dagger_bcast(dagger_ctx_t *ctx, int root, void *buf, size_t size);
/** Gather `size` bytes at `send` from every rank into `recv` on rank `root`, rank r's bytes at
 *  recv + r * size (`recv` holds nranks * size bytes; ignored, may be NULL, on other ranks).
 *  Every rank passes the same `root` and `size`. Ownership: the buffers stay the caller's.
 *  Returns and thread safety: as dagger_barrier. */
DAGGER_API DAGGER_NODISCARD int dagger_gather(dagger_ctx_t *ctx, int root, const void *send,
                                              size_t size, void *recv);

/* ---------------------------------------------------------------- scopes */

/** Scopes say where a task may run. Each constructor returns +1 (release with
 *  dagger_scope_release) or NULL when out of memory; invalid scopes (a thread that does not
 *  exist, an empty intersection) are only detected at spawn, where they fail the task with
 *  DAGGER_ESCOPE. Thread safety: any thread. */
DAGGER_API dagger_scope_t *dagger_scope_any(void);
DAGGER_API dagger_scope_t *dagger_scope_thread(int thread);
DAGGER_API dagger_scope_t *dagger_scope_worker(int rank);
DAGGER_API dagger_scope_t *dagger_scope_worker_thread(int rank, int thread);
DAGGER_API dagger_scope_t *dagger_scope_union(const dagger_scope_t *a, const dagger_scope_t *b);
DAGGER_API dagger_scope_t *dagger_scope_intersect(const dagger_scope_t *a, const dagger_scope_t *b);
/** Union and intersection of `n` scopes (n >= 1): NULL when n is 0, an operand is NULL, or out
 *  of memory. Ownership: +1; borrows the operands. Thread safety: any thread. */
DAGGER_API dagger_scope_t *dagger_scope_union_n(const dagger_scope_t *const *s, size_t n);
DAGGER_API dagger_scope_t *dagger_scope_intersect_n(const dagger_scope_t *const *s, size_t n);
/** Parse Dagger.jl's `scope(...)` keys: "any", or comma-separated `worker=R`, `thread=T`,
 *  `workers=[R,...]`, `threads=[T,...]` (dagger's 0-based numbers), `gpu=KIND[:INDEX]` or
 *  `gpu=[..]` (KIND any, opencl, cuda, fake; with worker(s): the devices of those ranks).
 *  Returns: 0, DAGGER_EINVAL (unknown, repeated or conflicting key, bad number; the message in
 *  dagger_last_errmsg), DAGGER_ENOMEM. Ownership: +1 on `*out`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_scope_from_string(const char *spec, dagger_scope_t **out);
/** Whether `a` and `b` admit the same processors (of every rank, thread and device), and whether
 *  every processor `a` admits is admitted by `b`. NULL operands compare false.
 *  Thread safety: any thread. */
DAGGER_API bool dagger_scope_equal(const dagger_scope_t *a, const dagger_scope_t *b);
DAGGER_API bool dagger_scope_subset(const dagger_scope_t *a, const dagger_scope_t *b);
/** Processor kinds: where a task body runs. */
typedef enum dagger_proc_kind {
    DAGGER_PROC_CPU = 0, /* a worker thread; index = thread, -1 = any thread of the rank */
    DAGGER_PROC_AUX,     /* a thread beside the workers (occupancy < 1) */
    DAGGER_PROC_DEVICE,  /* a GPU or other device */
} dagger_proc_kind_t;

/** A processor: (rank, kind, index). */
typedef struct dagger_proc {
    int32_t rank;
    int16_t kind;  /* dagger_proc_kind_t */
    int16_t index; /* thread or device index; -1 = any of the kind */
} dagger_proc_t;
/** The processors of `ctx` that `s` admits, rank by rank (threads, then this rank's devices):
 *  up to `cap` written to `out` (which may be NULL when cap is 0).
 *  Returns: how many `s` admits (also when more than cap), DAGGER_EINVAL for a NULL scope or
 *  context. dagger_scope_num_processors(s, ctx) is the count alone.
 *  Thread safety: any thread. */
DAGGER_API int dagger_scope_list(const dagger_scope_t *s, const dagger_ctx_t *ctx,
                                 dagger_proc_t *out, size_t cap);
DAGGER_API int dagger_scope_num_processors(const dagger_scope_t *s, const dagger_ctx_t *ctx);
DAGGER_API dagger_scope_t *dagger_scope_retain(dagger_scope_t *s);
DAGGER_API void dagger_scope_release(dagger_scope_t *s);
/** Write a readable form ("union(thread(0), thread(2))") into buf.
 *  Returns: the length it needs, like snprintf. Thread safety: any thread. */
DAGGER_API int dagger_scope_format(const dagger_scope_t *s, char *buf, size_t cap);

/* ---------------------------------------------------------------- tasks */

/** A task body: read arguments with dagger_arg_*, write the result to `*out` (nil by default),
 *  return 0, or return dagger_fail(tc, code, fmt, ...). */
typedef int (*dagger_fn_t)(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out);

/** Checkpoint and restore hooks (Dagger.jl's `checkpoint=` and `restore=`). `restore` runs
 *  before the body: it returns 1 with a value in `*out` (the body is skipped, the value is the
 *  result), 0 to run the body, or an error. `checkpoint` runs after a success with the result,
 *  and returns 0 or an error. A failing hook (its dagger_fail message, or the code) is reported
 *  on stderr and the task goes on as if the hook were absent. */
typedef int (*dagger_restore_fn_t)(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out);
typedef int (*dagger_checkpoint_fn_t)(dagger_tc_t *tc, const dagger_args_t *args,
                                      const dagger_value_t *result);

/** Name a task function so that it can travel to other ranks by name: for functions of
 *  plugins loaded with dlopen, which other ranks may load at another address (functions of the
 *  program and its libraries travel as (build id, offset) with no registration). Every rank
 *  registers the same names before dagger_ctx_open. `name` is copied.
 *  Returns: 0, DAGGER_EINVAL (NULL or empty name, NULL fn, a name taken by another function),
 *  DAGGER_ENOMEM. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_fn_register(const char *name, dagger_fn_t fn);

/** Per-task options; initialise with dagger_task_opts_init. Only ever grows at the end. */
typedef struct dagger_task_opts {
    const char *name; /* copied; NULL = the function's name */
    /* borrowed during the call; dagger_scope_any() = any processor. Left as set by
     * dagger_task_opts_init it means any; NULL (a failed scope constructor) fails the task with
     * DAGGER_EINVAL. */
    const dagger_scope_t *scope;
    int priority;                   /* higher runs first among ready tasks; 0 = default */
    double occupancy;               /* 0..1 of a thread; < 1 runs beside the workers */
    dagger_task_t *const *syncdeps; /* extra dependencies whose values are not passed */
    size_t nsyncdeps;
    double expected_time;              /* seconds, a placement hint; 0 = unknown */
    unsigned flags;                    /* DAGGER_TASK_* */
    void *userdata;                    /* read by the body with dagger_tc_userdata; not owned */
    dagger_restore_fn_t restore;       /* NULL = none */
    dagger_checkpoint_fn_t checkpoint; /* NULL = none */
    /* Implementations per processor kind (dagger/gpu.h): the array must stay alive until the
     * task completes (static storage); `fn` stays the CPU body. NULL = CPU only. */
    const struct dagger_impl *impls;
    size_t nimpls;
} dagger_task_opts_t;

/** Task option flags (dagger_task_opts_t.flags). */
enum {
    /* Keep the result as a chunk made where the task ran (a blob or string is copied into it, a
     * chunk is kept, a pointer is wrapped); fetch it with dagger_fetch_chunk (dagger/chunk.h). */
    DAGGER_TASK_CHUNK_RESULT = 1u << 0,
    /* The same, and the chunk becomes mutable data of the worker thread the task ran on: it is
     * never copied and every task that takes it runs there (see dagger_mutable). */
    DAGGER_TASK_MUTABLE_RESULT = 1u << 1,
};

/** Fill `o` with the defaults (occupancy 1, scope "not set" = any, everything else 0).
 *  Thread safety: any thread. */
DAGGER_API void dagger_task_opts_init(dagger_task_opts_t *o);

/** Spawn `fn(args)`: eager, never blocks. Task arguments are dependencies; strings and blobs
 *  are copied unless borrowed. `fname` names the task when opts has no name (may be NULL).
 *  Returns: the task (+1), or NULL only when the handle itself cannot be allocated; other
 *  spawn-time errors give an already-failed task, reported at fetch.
 *  Ownership: +1; borrows `argv`, `opts` and their handles. Thread safety: any thread. */
DAGGER_API dagger_task_t *dagger_spawn_impl(dagger_ctx_t *ctx, const dagger_task_opts_t *opts,
                                            dagger_fn_t fn, const char *fname,
                                            const dagger_value_t *argv, size_t argc);

/** Array form: spawn `fn` with `argc` values. See dagger_spawn_impl. */
static inline dagger_task_t *dagger_spawnv(dagger_ctx_t *ctx, dagger_fn_t fn,
                                           const dagger_value_t *argv, size_t argc)
{
    return dagger_spawn_impl(ctx, NULL, fn, NULL, argv, argc);
}
/** Array form with options. */
static inline dagger_task_t *dagger_spawnv_opts(dagger_ctx_t *ctx, const dagger_task_opts_t *o,
                                                dagger_fn_t fn, const dagger_value_t *argv,
                                                size_t argc)
{
    return dagger_spawn_impl(ctx, o, fn, NULL, argv, argc);
}

/** Array form of a closure: spawn `fn` with user data `ud`, which the body reads with
 *  dagger_tc_userdata. See dagger_spawn_impl. */
static inline dagger_task_t *dagger_spawn_fn(dagger_ctx_t *ctx, dagger_fn_t fn, void *ud,
                                             const dagger_value_t *argv, size_t argc)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.userdata = ud;
    return dagger_spawn_impl(ctx, &o, fn, NULL, argv, argc);
}

/* DAGGER_V(x): a C expression to a dagger_value_t, by its type. */
#define DAGGER_V(x)                                                                                \
    _Generic((x),                                                                              \
        _Bool: dagger_bool,                                                                    \
        char: dagger_i64,                                                                      \
        signed char: dagger_i64,                                                               \
        unsigned char: dagger_i64,                                                             \
        short: dagger_i64,                                                                     \
        unsigned short: dagger_i64,                                                            \
        int: dagger_i64,                                                                       \
        unsigned: dagger_i64,                                                                  \
        long: dagger_i64,                                                                      \
        unsigned long: dagger_i64,                                                             \
        long long: dagger_i64,                                                                 \
        unsigned long long: dagger_i64,                                                        \
        float: dagger_f64,                                                                     \
        double: dagger_f64,                                                                    \
        char *: dagger_str,                                                                    \
        const char *: dagger_str,                                                              \
        dagger_task_t *: dagger_taskv,                                                         \
        dagger_chunk_t *: dagger_chunkv,                                                       \
        dagger_shard_t *: dagger_shardv,                                                       \
        dagger_value_t: dagger_value_id,                                                       \
        default: dagger_ptr)(x)

/* Argument-list plumbing for up to 16 task arguments. */
#define DAGGER_CAT_(a, b) a##b
#define DAGGER_CAT(a, b) DAGGER_CAT_(a, b)
/* Counts up to 17; 18 to 40 arguments count as X, which the spawn macros turn into a
 * _Static_assert naming the limit instead of a cryptic macro error. */
#define DAGGER_NARG_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17,   \
                     _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32,    \
                     _33, _34, _35, _36, _37, _38, _39, _40, N, ...)                               \
    N
#define DAGGER_NARG(...)                                                                           \
    DAGGER_NARG_(__VA_ARGS__, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, \
                 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define DAGGER_MAP_1(a) DAGGER_V(a)
#define DAGGER_MAP_2(a, ...) DAGGER_V(a), DAGGER_MAP_1(__VA_ARGS__)
#define DAGGER_MAP_3(a, ...) DAGGER_V(a), DAGGER_MAP_2(__VA_ARGS__)
#define DAGGER_MAP_4(a, ...) DAGGER_V(a), DAGGER_MAP_3(__VA_ARGS__)
#define DAGGER_MAP_5(a, ...) DAGGER_V(a), DAGGER_MAP_4(__VA_ARGS__)
#define DAGGER_MAP_6(a, ...) DAGGER_V(a), DAGGER_MAP_5(__VA_ARGS__)
#define DAGGER_MAP_7(a, ...) DAGGER_V(a), DAGGER_MAP_6(__VA_ARGS__)
#define DAGGER_MAP_8(a, ...) DAGGER_V(a), DAGGER_MAP_7(__VA_ARGS__)
#define DAGGER_MAP_9(a, ...) DAGGER_V(a), DAGGER_MAP_8(__VA_ARGS__)
#define DAGGER_MAP_10(a, ...) DAGGER_V(a), DAGGER_MAP_9(__VA_ARGS__)
#define DAGGER_MAP_11(a, ...) DAGGER_V(a), DAGGER_MAP_10(__VA_ARGS__)
#define DAGGER_MAP_12(a, ...) DAGGER_V(a), DAGGER_MAP_11(__VA_ARGS__)
#define DAGGER_MAP_13(a, ...) DAGGER_V(a), DAGGER_MAP_12(__VA_ARGS__)
#define DAGGER_MAP_14(a, ...) DAGGER_V(a), DAGGER_MAP_13(__VA_ARGS__)
#define DAGGER_MAP_15(a, ...) DAGGER_V(a), DAGGER_MAP_14(__VA_ARGS__)
#define DAGGER_MAP_16(a, ...) DAGGER_V(a), DAGGER_MAP_15(__VA_ARGS__)
#define DAGGER_SPAWN_SEL_(impl, ctx, o, fn, n, ...)                                                \
    impl((ctx), (o), (fn), #fn, (const dagger_value_t[]){DAGGER_CAT(DAGGER_MAP_, n)(__VA_ARGS__)}, \
         (n))
#define DAGGER_SPAWN_0_(impl, ctx, o, fn) impl((ctx), (o), (fn), #fn, NULL, 0)
/* Dispatch on the total count of arguments after ctx (fn + task arguments); `impl` is
 * dagger_spawn_impl or dagger_spawn_detached_impl. */
#define DAGGER_SPAWN_D1(impl, ctx, o, fn) DAGGER_SPAWN_0_(impl, ctx, o, fn)
#define DAGGER_SPAWN_DN(impl, ctx, o, fn, ...)                                                     \
    DAGGER_SPAWN_SEL_(impl, ctx, o, fn, DAGGER_NARG(__VA_ARGS__), __VA_ARGS__)
#define DAGGER_SPAWN_PICK_(n) DAGGER_CAT(DAGGER_SPAWN_PICK_, n)
#define DAGGER_SPAWN_PICK_1 DAGGER_SPAWN_D1
#define DAGGER_SPAWN_PICK_2 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_3 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_4 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_5 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_6 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_7 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_8 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_9 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_10 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_11 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_12 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_13 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_14 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_15 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_16 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_17 DAGGER_SPAWN_DN
#define DAGGER_SPAWN_PICK_X DAGGER_SPAWN_TOO_MANY_
#define DAGGER_SPAWN_TOO_MANY_(impl, ctx, o, ...)                                                  \
    ((dagger_task_t                                                                                \
          *)(0 * sizeof(struct {                                                                   \
                 _Static_assert(                                                                   \
                     0, "dagger_spawn takes at most 16 task arguments: pass more with "            \
                        "dagger_spawnv(ctx, fn, argv, argc) and an array of dagger_value_t");      \
                 int unused_;                                                                      \
             })))

/** dagger_spawn(ctx, fn, args...): spawn fn with C arguments converted by DAGGER_V (numbers,
 *  strings, task handles, dagger_value_t, pointers). Up to 16 arguments (more is a compile-time
 *  error naming the limit; dagger_spawnv takes any number). */
#define dagger_spawn(ctx, ...)                                                                     \
    DAGGER_SPAWN_PICK_(DAGGER_NARG(__VA_ARGS__))(dagger_spawn_impl, ctx, NULL, __VA_ARGS__)
/** dagger_spawn_opts(ctx, &opts, fn, args...): the same with options. */
#define dagger_spawn_opts(ctx, opts, ...)                                                          \
    DAGGER_SPAWN_PICK_(DAGGER_NARG(__VA_ARGS__))(dagger_spawn_impl, ctx, opts, __VA_ARGS__)

/** Spawn without a handle, for fire-and-forget tasks (a flat loop inside a sync group): the
 *  same as dagger_task_release(dagger_spawn_impl(...)), cheaper. The task's failure goes where a
 *  released task's goes: to the end of its sync group or queue block, or else to the count of
 *  failures nobody fetched (dagger_ctx_unfetched_failures); spawn-time errors too.
 *  Returns: 0 (the task was made; it may run and be gone before the call returns), DAGGER_EINVAL
 *  (ctx NULL) or DAGGER_ENOMEM (no record), with dagger_last_errmsg.
 *  Ownership: none to the caller; borrows `argv`, `opts` and their handles.
 *  Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_spawn_detached_impl(dagger_ctx_t *ctx,
                                                           const dagger_task_opts_t *opts,
                                                           dagger_fn_t fn, const char *fname,
                                                           const dagger_value_t *argv, size_t argc);
/** Array form of dagger_spawn_detached. */
static inline DAGGER_NODISCARD int dagger_spawnv_detached(dagger_ctx_t *ctx, dagger_fn_t fn,
                                                          const dagger_value_t *argv, size_t argc)
{
    return dagger_spawn_detached_impl(ctx, NULL, fn, NULL, argv, argc);
}
/** dagger_spawn_detached(ctx, fn, args...): dagger_spawn without a handle (see
 *  dagger_spawn_detached_impl); returns 0 or an error code. */
#define dagger_spawn_detached(ctx, ...)                                                            \
    DAGGER_SPAWN_PICK_(DAGGER_NARG(__VA_ARGS__))(dagger_spawn_detached_impl, ctx, NULL, __VA_ARGS__)
/** dagger_spawn_detached_opts(ctx, &opts, fn, args...): the same with options. */
#define dagger_spawn_detached_opts(ctx, opts, ...)                                                 \
    DAGGER_SPAWN_PICK_(DAGGER_NARG(__VA_ARGS__))(dagger_spawn_detached_impl, ctx, opts, __VA_ARGS__)

/** Take another reference to `t`. Returns: `t`. Thread safety: any thread, lock-free. */
DAGGER_API dagger_task_t *dagger_task_retain(dagger_task_t *t);
/** Drop a reference; the last one frees the task (a running task is kept alive by the runtime).
 *  NULL is accepted. Thread safety: any thread; lock-free except the final free. */
DAGGER_API void dagger_task_release(dagger_task_t *t);

/** Wait for `t` and borrow its result into `*out` (out may be NULL).
 *  Returns: 0, or the task's error (DAGGER_ETASK, DAGGER_EUPSTREAM, DAGGER_ECANCELED, ...), or
 *  DAGGER_EDEADLK when the wait can never end (the task itself, a task that depends on the
 *  waiting task, a task held by an open bulk queue); `*out` untouched on error. Inside a task
 *  the wait suspends the task, never the thread. A thread outside the pool may run `t` itself
 *  when no worker took it yet and its function never spawned there (dagger_tc_thread -1;
 *  docs/core.md, "Waiting from outside the pool"). Ownership: borrows `t`; `*out` lives as long
 *  as the caller holds `t`.
 *  Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_fetch(dagger_task_t *t, dagger_value_t *out);
/** Typed fetches: DAGGER_ETYPE (message in dagger_last_errmsg) when the result has another kind;
 *  dagger_fetch_f64 accepts an i64 result. The string is borrowed from the task. */
DAGGER_API DAGGER_NODISCARD int dagger_fetch_f64(dagger_task_t *t, double *out);
DAGGER_API DAGGER_NODISCARD int dagger_fetch_i64(dagger_task_t *t, int64_t *out);
DAGGER_API DAGGER_NODISCARD int dagger_fetch_bool(dagger_task_t *t, bool *out);
DAGGER_API DAGGER_NODISCARD int dagger_fetch_str(dagger_task_t *t, const char **out);
DAGGER_API DAGGER_NODISCARD int dagger_fetch_ptr(dagger_task_t *t, void **out);
/** Fetch a blob result: `*out` borrows its bytes (valid while the caller holds `t`), `*len` is
 *  its size. Returns: 0, the task's error, DAGGER_ETYPE for another kind, DAGGER_EINVAL for NULL
 *  out or len. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_fetch_blob(dagger_task_t *t, const void **out, size_t *len);
/** Wait for `t` to finish, successfully or not; never reports the task's error (fetch it, or
 *  read dagger_task_error, to learn it). Not DAGGER_NODISCARD: ignoring the result is normal.
 *  Returns: 0, or DAGGER_EDEADLK for a wait that can never end. Thread safety: any thread. */
DAGGER_API int dagger_wait(dagger_task_t *t);
/** Whether `t` has finished. Thread safety: any thread, wait-free. */
DAGGER_API bool dagger_task_done(const dagger_task_t *t);
/** The error code of a finished task (0 when it succeeded or is not finished).
 *  Thread safety: any thread, wait-free. */
DAGGER_API int dagger_task_error(const dagger_task_t *t);
/** The error message of a finished, failed task ("" otherwise), never NULL.
 *  Ownership: valid while the caller holds `t`. Thread safety: any thread. */
DAGGER_API const char *dagger_task_errmsg(const dagger_task_t *t);
/** The task's id (unique in its context) and name. Thread safety: any thread. */
DAGGER_API uint64_t dagger_task_id(const dagger_task_t *t);
DAGGER_API const char *dagger_task_name(const dagger_task_t *t);
/** Whether `t` has started (its body, a restore hook, or its failure) or finished: Dagger.jl's
 *  istaskstarted. Thread safety: any thread, wait-free. */
DAGGER_API bool dagger_task_started(const dagger_task_t *t);
/** The root of a finished task's failure: the code and id of the task where it began (for a
 *  task that failed on its own: its own code and id; for one that succeeded: 0 and 0).
 *  Returns: 0, DAGGER_ESTATE when `t` has not finished, DAGGER_EINVAL for NULL arguments.
 *  Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_task_root_error(const dagger_task_t *t, int *code,
                                                       uint64_t *root_id);
/** Wait for every task of `tasks` (n of them); never reports the tasks' errors.
 *  Returns: 0, DAGGER_EINVAL (NULL array or task), DAGGER_EDEADLK (a wait that can never end).
 *  Inside a task the wait suspends the task, never the thread. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_wait_all(dagger_task_t *const *tasks, size_t n);
/** Wait for every task, then borrow each result into `values[i]` (nil for a failed task).
 *  Returns: 0, or the error of the first failed task in array order (its message in
 *  dagger_last_errmsg), or as dagger_wait_all. Ownership: as dagger_fetch.
 *  Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_fetch_all(dagger_task_t *const *tasks, size_t n,
                                                 dagger_value_t *values);
/** Wait until one of `tasks` has finished, and write its index (the lowest among those already
 *  finished) to `*index`. Inside a task the wait suspends the task, never the thread.
 *  Returns: 0, DAGGER_EINVAL (NULL argument, n == 0), DAGGER_EDEADLK (every task waits for
 *  the caller), DAGGER_ENOMEM. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_wait_any(dagger_task_t *const *tasks, size_t n,
                                                size_t *index);
/** Ask `t` to stop: a task that has not started never runs and ends with DAGGER_ECANCELED; a
 *  running task sees dagger_tc_cancelled and ends with DAGGER_ECANCELED unless its body fails
 *  with an error of its own, which is kept. No effect on a finished task.
 *  Returns: 0, or DAGGER_EINVAL for NULL. Thread safety: any thread. */
DAGGER_API int dagger_cancel(dagger_task_t *t);

/* ---------------------------------------------------------------- inside a task */

/** Record the task's failure: `code` (DAGGER_ETASK when 0 or positive) and a message.
 *  Returns: the code, so a body can `return dagger_fail(tc, ...)`. Thread safety: inside a task
 * only. */
DAGGER_API int dagger_fail(dagger_tc_t *tc, int code, const char *fmt, ...) DAGGER_PRINTF(3, 4);
/** A copy of `s` (or of `n` bytes at `p`) that lives until the running task ends: for results
 *  and child arguments built in a stack buffer. `*out = dagger_str(s)` copies `s` after the body
 *  returns, so `s` must outlive the body; these copy at once. On out of memory the task fails
 *  with DAGGER_ENOMEM and nil is returned. Thread safety: inside a task only. */
DAGGER_API dagger_value_t dagger_str_copy(dagger_tc_t *tc, const char *s);
DAGGER_API dagger_value_t dagger_blob_copy(dagger_tc_t *tc, const void *p, size_t n);
/** The running task (borrowed), its id, name, context, and the worker thread it runs on now
 *  (-1 beside the workers: occupancy < 1, or a thread outside the pool that runs it while it
 *  waits, in a fetch or at a sync group's end). Thread safety: inside a task only. */
DAGGER_API dagger_task_t *dagger_tc_task(dagger_tc_t *tc);
DAGGER_API uint64_t dagger_tc_id(const dagger_tc_t *tc);
DAGGER_API const char *dagger_tc_name(const dagger_tc_t *tc);
DAGGER_API dagger_ctx_t *dagger_tc_ctx(dagger_tc_t *tc);
DAGGER_API int dagger_tc_thread(const dagger_tc_t *tc);
/** The user data given at spawn (opts.userdata, dagger_spawn_fn), or NULL.
 *  Thread safety: inside a task only. */
DAGGER_API void *dagger_tc_userdata(const dagger_tc_t *tc);
/** Whether dagger_cancel was called on the running task. Thread safety: inside a task only. */
DAGGER_API bool dagger_tc_cancelled(const dagger_tc_t *tc);

/** Arguments: count and checked accessors. A wrong kind or index fails the task with
 *  DAGGER_ETYPE and a message naming the index and both kinds (the accessor returns 0/NULL);
 *  dagger_arg_f64 accepts an i64. Thread safety: inside a task only. */
DAGGER_API size_t dagger_args_count(const dagger_args_t *a);
DAGGER_API const dagger_value_t *dagger_arg(const dagger_args_t *a, size_t i);
DAGGER_API bool dagger_arg_bool(const dagger_args_t *a, size_t i);
DAGGER_API int64_t dagger_arg_i64(const dagger_args_t *a, size_t i);
DAGGER_API double dagger_arg_f64(const dagger_args_t *a, size_t i);
DAGGER_API const char *dagger_arg_str(const dagger_args_t *a, size_t i);
DAGGER_API const void *dagger_arg_blob(const dagger_args_t *a, size_t i, size_t *len);
DAGGER_API void *dagger_arg_ptr(const dagger_args_t *a, size_t i);

/* Where the running task's record keeps its context, its argument array and their count (both
 * dagger_tc_t and dagger_args_t point at it); src/core/core_int.h checks these at build time. */
#define DAGGER__TASK_CTX_OFFSET 64
#define DAGGER__TASK_ARGS_OFFSET 80
#define DAGGER__TASK_NARGS_OFFSET 120

/* The accessors' common case inline in the caller: the argument at `i` when it has the kind
 * asked for, the count and the context. Anything else (a wrong kind or index, with its message;
 * dagger_arg_f64 of an i64; the chunk kinds) calls the function, whose name in parentheses
 * skips the macro. A body reads each argument once; the call and its jump through the PLT cost
 * a tiny task 4-9 % (bench/RESULTS.md, 2026-12-05 19:30). The library's own functions take the
 * same lookup (dagger__arg_at_kind) first. Define DAGGER_NO_INLINE_ACCESSORS before this header
 * to call the functions only. */
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
static inline const dagger_value_t *dagger__arg_at_kind(const void *a, size_t i, unsigned kind)
{
    const char *p = (const char *)a;
    uint32_t n = *(const uint32_t *)(const void *)(p + DAGGER__TASK_NARGS_OFFSET);
    const dagger_value_t *v =
        *(const dagger_value_t *const *)(const void *)(p + DAGGER__TASK_ARGS_OFFSET);
    return i < n && v[i].kind == kind ? &v[i] : (const dagger_value_t *)0;
}
#if !defined(DAGGER_BUILDING) && !defined(DAGGER_NO_INLINE_ACCESSORS)
static inline size_t dagger__args_count_inline(const dagger_args_t *a)
{
    return *(const uint32_t *)(const void *)((const char *)a + DAGGER__TASK_NARGS_OFFSET);
}
static inline dagger_ctx_t *dagger__tc_ctx_inline(dagger_tc_t *tc)
{
    return *(dagger_ctx_t *const *)(const void *)((const char *)tc + DAGGER__TASK_CTX_OFFSET);
}
static inline bool dagger__arg_bool_inline(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = dagger__arg_at_kind(a, i, DAGGER_KIND_BOOL);
    return v ? v->u.b : (dagger_arg_bool)(a, i);
}
static inline int64_t dagger__arg_i64_inline(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = dagger__arg_at_kind(a, i, DAGGER_KIND_I64);
    return v ? v->u.i : (dagger_arg_i64)(a, i);
}
static inline double dagger__arg_f64_inline(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = dagger__arg_at_kind(a, i, DAGGER_KIND_F64);
    return v ? v->u.f : (dagger_arg_f64)(a, i);
}
static inline const char *dagger__arg_str_inline(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = dagger__arg_at_kind(a, i, DAGGER_KIND_STR);
    return v ? v->u.s : (dagger_arg_str)(a, i);
}
static inline void *dagger__arg_ptr_inline(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = dagger__arg_at_kind(a, i, DAGGER_KIND_PTR);
    return v ? (void *)v->u.p : (dagger_arg_ptr)(a, i);
}
#define dagger_args_count(a) dagger__args_count_inline(a)
#define dagger_tc_ctx(tc) dagger__tc_ctx_inline(tc)
#define dagger_arg_bool(a, i) dagger__arg_bool_inline((a), (i))
#define dagger_arg_i64(a, i) dagger__arg_i64_inline((a), (i))
#define dagger_arg_f64(a, i) dagger__arg_f64_inline((a), (i))
#define dagger_arg_str(a, i) dagger__arg_str_inline((a), (i))
#define dagger_arg_ptr(a, i) dagger__arg_ptr_inline((a), (i))
#endif
#endif

/* ---------------------------------------------------------------- groups and task queues */

/** Task-queue modes, combinable. */
enum {
    DAGGER_QUEUE_BULK = 1u << 0,       /* tasks start together at dagger_queue_end */
    DAGGER_QUEUE_SEQUENTIAL = 1u << 1, /* each task depends on the one spawned before it */
    DAGGER_QUEUE_WAITALL = 1u << 2,    /* dagger_queue_end waits for every task of the block */
};

/** Open a task-queue block on the calling thread (or task); blocks nest. Tasks spawned by the
 *  same thread or task until the matching end are governed by `mode`.
 *  Returns: 0, DAGGER_EINVAL (unknown mode bits), DAGGER_ENOMEM. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_queue_begin(dagger_ctx_t *ctx, unsigned mode);
/** Close the innermost block: launch held tasks, wait if WAITALL.
 *  Returns: 0 or the first error of a task of the block (its message in dagger_last_errmsg);
 *  DAGGER_ESTATE when no block is open. Thread safety: the thread or task that began it. */
DAGGER_API DAGGER_NODISCARD int dagger_queue_end(dagger_ctx_t *ctx);
/** A sync group: dagger_queue_begin(ctx, DAGGER_QUEUE_WAITALL). */
DAGGER_API DAGGER_NODISCARD int dagger_sync_begin(dagger_ctx_t *ctx);
/** End of a sync group: waits for every task spawned inside and reports the first error.
 *  On a thread outside the pool, the group's queued tasks may run on the calling thread
 *  meanwhile (dagger_tc_thread -1 there; see docs/core.md, sync groups). */
DAGGER_API DAGGER_NODISCARD int dagger_sync_end(dagger_ctx_t *ctx);

/* ---------------------------------------------------------------- parallel for */

/** A leaf of dagger_parallel_for: handle every index of [lo, hi) (lo < hi). Return 0, or an
 *  error (dagger_fail(tc, code, fmt, ...) gives it a message). `tc` is the task that runs the
 *  leaf (with an explicit grain, one task may run several leaves in turn). */
typedef int (*dagger_range_fn_t)(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud);

/** Call `fn` over [begin, end) split recursively in halves into tasks (leaves of at most `grain`
 *  indices, made into tasks lazily, when a worker runs dry; grain <= 0: about 4 leaves per
 *  worker, split further where work is stolen); every
 *  index is in exactly one leaf. Blocks until all leaves ended (inside a task it suspends the
 *  task, never the worker). After a leaf fails, leaves not started are skipped. See docs/core.md.
 *  Returns: 0 (begin == end: fn is not called), DAGGER_EINVAL (NULL ctx or fn, end < begin),
 *  DAGGER_ENOMEM, or the first failing leaf's code; the message, "parallel_for [lo, hi): ...",
 *  is in dagger_last_errmsg. Ownership: borrows `ud`. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_parallel_for(dagger_ctx_t *ctx, int64_t begin, int64_t end,
                                                    int64_t grain, dagger_range_fn_t fn, void *ud);

/* ---------------------------------------------------------------- allocator */

/** Allocation hooks; replace before the first dagger_ctx_open. */
typedef struct dagger_allocator {
    void *(*malloc)(size_t size, void *ud);
    void *(*realloc)(void *p, size_t size, void *ud);
    void (*free)(void *p, void *ud);
    void *ud;
} dagger_allocator_t;

/** Counters of the internal allocator (every allocation of dagger goes through it). */
typedef struct dagger_alloc_stats {
    uint64_t allocs; /* calls that allocated memory from the system or the hooks */
    uint64_t frees;
    uint64_t live_bytes_hint; /* not maintained yet: 0 */
} dagger_alloc_stats_t;

/** Install allocation hooks (NULL restores libc).
 *  Returns: 0, DAGGER_EBUSY once a context has been opened. Thread safety: not thread-safe. */
DAGGER_API DAGGER_NODISCARD int dagger_set_allocator(const dagger_allocator_t *a);
/** Read the allocation counters. Thread safety: any thread. */
DAGGER_API void dagger_alloc_stats(dagger_alloc_stats_t *out);
/** Fault injection: make the n-th allocation from now fail (n >= 1; 0 disarms). The variable
 *  DAGGER_FAULT_ALLOC=n arms it at the first allocation. Thread safety: any thread. */
DAGGER_API void dagger_fault_alloc(long n);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_H */
