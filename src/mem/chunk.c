/* src/mem/chunk.c - chunks: refcounted data with a home, a type, and a set of copies.
 *
 * Design: a chunk keeps up to MAX_COPIES copies, each with its space, pointer and version; a
 * copy is valid when its version equals the chunk's. Copy 0 is the home copy and lives as long
 * as the chunk. Staging finds or makes a valid copy in the wanted space under the chunk's lock;
 * the lock-free fast path returns the home copy when it is valid and wanted. Mutable chunks are
 * never copied.
 * Out-of-core (with a memory limit, see mem_int.h and resident.c): a spill writes the host copy
 * to a disk copy and drops the host bytes (the host copy keeps its slot with ptr NULL); staging
 * to host reloads it. A file (src/io) is a chunk whose home copy is in the disk space.
 * Invariants: copies[0] is the home; a copy's pointer never changes while a task holds the
 * chunk (a stale copy is refreshed in place; a spill drops a host pointer only while nothing
 * holds the chunk, see dagger__mem_spill), so pointers handed to running tasks stay valid.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "mem/mem.h"
#include "trace/trace.h"
#include "mem/mem_int.h"
#include "value/value.h"

#define MAX_COPIES 4

enum { CH_MUTABLE = 1u << 0, CH_WRAPPED = 1u << 1, CH_REMOTE = 1u << 2 };

/* A proxy of mutable data on another rank (CH_REMOTE): no copy here; the ranks backend keeps
 * its weighted credit (touched by the progress thread only) and is told at the last release. */
struct remote {
    int rank;
    uint64_t rid;
    uint64_t credit;
    void (*on_free)(void *ud, int rank, uint64_t rid, uint64_t credit);
    void *ud;
};

struct copy {
    dagger_space_t space;
    void *ptr;
    _Atomic uint64_t version;
};

struct dagger_chunk {
    _Atomic uint32_t refs;
    uint32_t flags; /* CH_*: set before the chunk is shared */
    uint64_t id;
    const dagger_ctx_t *ctx;
    size_t size;
    dagger_elt_t elt;
    int ndims;
    size_t shape[DAGGER_CHUNK_MAX_DIMS];
    dagger_space_t home;      /* rank 0 = this process (mem.h); a proxy's: its rank */
    int32_t rank;             /* this process's rank in the job, at creation */
    dagger_proc_t proc;       /* mutable: the processor it is pinned to */
    _Atomic uint64_t version; /* bumped by writes */
    pthread_mutex_t lock;     /* guards ncopies and the refresh of stale copies */
    _Atomic int ncopies;
    struct copy copies[MAX_COPIES];
    void (*free_fn)(void *data, void *ud);
    void *ud;
    struct dagger__res_node res; /* out-of-core residency (mem_int.h) */
    struct remote remote;        /* CH_REMOTE only */
};

static _Atomic uint64_t next_chunk_id = 1;

/* ---------------------------------------------------------------- spaces */

/* Not zeroed: a copy is written whole before it is valid (a new chunk zeroes its own). Large
 * buffers come from and go back to the buffer cache (bufcache.c). */
static void *host_alloc(const dagger_space_t *s, size_t n)
{
    (void)s;
    return dagger__bufcache_get(n, false);
}

static void host_free(const dagger_space_t *s, void *p, size_t n)
{
    (void)s;
    dagger__bufcache_put(p, n);
}

static int host_copy(const dagger_space_t *ds, void *dst, const dagger_space_t *ss, const void *src,
                     size_t n)
{
    DAGGER_CHECK(ss->kind == DAGGER_SPACE_HOST, DAGGER_ENOSYS,
                 "the host space cannot read from a space of kind %d", ss->kind);
    (void)ds;
    if (n)
        memcpy(dst, src, n);
    return 0;
}

static int host_copy2d(const dagger_space_t *ds, void *dst, size_t dpitch, const dagger_space_t *ss,
                       const void *src, size_t spitch, size_t width, size_t rows)
{
    DAGGER_CHECK(ss->kind == DAGGER_SPACE_HOST, DAGGER_ENOSYS,
                 "the host space cannot read from a space of kind %d", ss->kind);
    (void)ds;
    for (size_t r = 0; r < rows; r++)
        memcpy((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return 0;
}

static const struct dagger__space_ops host_ops = {"host", host_alloc, host_free, host_copy,
                                                  host_copy2d};
/* Written by backends at load time only. */
static const struct dagger__space_ops *space_ops[4] = {&host_ops, NULL, NULL, NULL};

void dagger__mem_register_space(int kind, const struct dagger__space_ops *ops)
{
    if (kind > DAGGER_SPACE_HOST && kind <= DAGGER__SPACE_RANK)
        space_ops[kind] = ops;
}

const struct dagger__space_ops *dagger__mem_space_ops(int kind)
{
    return kind >= 0 && kind <= DAGGER__SPACE_RANK ? space_ops[kind] : NULL;
}

dagger_space_t dagger__mem_host(void)
{
    dagger_space_t s = {0, DAGGER_SPACE_HOST, 0};
    return s;
}

dagger_space_t dagger__mem_space_of(const dagger_proc_t *p)
{
    /* Staging happens only on the processor's own rank (placement hands a task for another
     * rank to the ranks backend unstaged), and the spaces of this process carry rank 0 inside
     * the data layer; dagger_chunk_home reports the rank of the process. */
    dagger_space_t s = {0, DAGGER_SPACE_HOST, 0};
    if (p->kind == DAGGER_PROC_DEVICE) {
        s.kind = DAGGER_SPACE_DEVICE;
        s.index = p->index;
    }
    return s;
}

bool dagger__mem_space_equal(const dagger_space_t *a, const dagger_space_t *b)
{
    return a->rank == b->rank && a->kind == b->kind && a->index == b->index;
}

static const char *space_kind_name(int kind)
{
    static const char *const names[] = {"host", "device", "disk", "remote host"};
    return kind >= 0 && kind <= DAGGER__SPACE_RANK ? names[kind] : "unknown";
}

int dagger_space_format(const dagger_space_t *s, char *buf, size_t cap)
{
    if (!buf)
        cap = 0;
    if (!s)
        return snprintf(buf, cap, "(null)");
    if (s->kind == DAGGER_SPACE_HOST && s->index == 0)
        return snprintf(buf, cap, "host of rank %d", (int)s->rank);
    return snprintf(buf, cap, "%s(%d) of rank %d", space_kind_name(s->kind), (int)s->index,
                    (int)s->rank);
}

int dagger_proc_format(const dagger_proc_t *p, char *buf, size_t cap)
{
    if (!buf)
        cap = 0;
    if (!p)
        return snprintf(buf, cap, "(null)");
    switch (p->kind) {
    case DAGGER_PROC_CPU:
        if (p->index < 0)
            return snprintf(buf, cap, "worker(%d)", (int)p->rank);
        return snprintf(buf, cap, "thread(%d)", (int)p->index);
    case DAGGER_PROC_AUX:
        return snprintf(buf, cap, "aux");
    case DAGGER_PROC_DEVICE:
        return snprintf(buf, cap, "device(%d)", (int)p->index);
    }
    return snprintf(buf, cap, "processor(kind %d)", (int)p->kind);
}

/* ---------------------------------------------------------------- the chunk value kind */

static int chunk_own(dagger_value_t *v)
{
    dagger_chunk_retain(v->u.c);
    v->flags |= DAGGER_VALUE_OWNED;
    return 0;
}

static void chunk_drop(dagger_value_t *v) { dagger_chunk_release(v->u.c); }

static void chunk_ref(const dagger_value_t *v, uint64_t *id, uint32_t *rank)
{
    *id = v->u.c->id;
    *rank = (uint32_t)v->u.c->home.rank;
}

__attribute__((constructor)) static void register_chunk_kind(void)
{
    static const struct dagger__kind_ops ops = {"chunk", chunk_own, chunk_drop, chunk_ref};
    dagger__value_register_kind(DAGGER_KIND_CHUNK, &ops);
}

/* ---------------------------------------------------------------- records */

size_t dagger_elt_size(dagger_elt_t elt)
{
    switch (elt) {
    case DAGGER_ELT_F64:
    case DAGGER_ELT_I64:
        return 8;
    case DAGGER_ELT_F32:
    case DAGGER_ELT_I32:
        return 4;
    case DAGGER_ELT_U8:
        return 1;
    case DAGGER_ELT_RAW:
        break;
    }
    return 0;
}

static dagger_chunk_t *chunk_new(const dagger_ctx_t *ctx, size_t size)
{
    dagger_chunk_t *c = dagger__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    c->id = atomic_fetch_add_explicit(&next_chunk_id, 1, memory_order_relaxed);
    c->ctx = ctx;
    c->size = size;
    c->elt = DAGGER_ELT_RAW;
    c->home = dagger__mem_host();
    c->rank = dagger_ctx_rank(ctx);
    c->proc.rank = 0;
    c->proc.kind = DAGGER_PROC_CPU;
    c->proc.index = -1;
    atomic_init(&c->version, 1);
    pthread_mutex_init(&c->lock, NULL);
    c->copies[0].space = c->home;
    atomic_init(&c->copies[0].version, 1);
    atomic_init(&c->ncopies, 1);
    /* Under a memory limit the chunk is tracked; its creator holds it until it is handed to a
     * task (or kept as a result), so a fresh chunk is never spilled under its writer. */
    c->res.self = c;
    c->res.tracked = dagger__res_active();
    atomic_init(&c->res.pins, 0);
    atomic_init(&c->res.upin, 1);
    return c;
}

static int chunk_create(dagger_ctx_t *ctx, size_t size, bool zero, dagger_chunk_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_chunk_create: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_chunk_create: the context is NULL");
    dagger_chunk_t *c = chunk_new(ctx, size);
    DAGGER_CHECK(c, DAGGER_ENOMEM, "dagger_chunk_create: out of memory for a chunk record");
    int rc = c->res.tracked ? dagger__res_wait_room(size) : 0;
    if (rc) {
        pthread_mutex_destroy(&c->lock);
        dagger__free(c);
        return dagger__set_errmsg(rc,
                                  "dagger_chunk_create: no room for %zu bytes under the "
                                  "memory limit: spilling failed (disk full)",
                                  size);
    }
    c->copies[0].ptr = dagger__bufcache_get(size, zero);
    if (!c->copies[0].ptr) {
        pthread_mutex_destroy(&c->lock);
        dagger__free(c);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_chunk_create: out of memory for %zu bytes",
                                  size);
    }
    if (c->res.tracked)
        dagger__res_add(&c->res, size);
    *out = c;
    return 0;
}

int dagger_chunk_create(dagger_ctx_t *ctx, size_t size, dagger_chunk_t **out)
{
    return chunk_create(ctx, size, true, out);
}

int dagger__chunk_create_unset(dagger_ctx_t *ctx, size_t size, dagger_chunk_t **out)
{
    return chunk_create(ctx, size, false, out);
}

/* The byte size of a typed shape; 0 with the message set when it is invalid. */
static int shape_bytes(const char *what, dagger_elt_t elt, int ndims, const size_t *shape,
                       size_t *bytes)
{
    size_t es = dagger_elt_size(elt);
    DAGGER_CHECK(es, DAGGER_EINVAL, "%s: element type %d is not one of f64, f32, i64, i32, u8",
                 what, (int)elt);
    DAGGER_CHECK(ndims >= 1 && ndims <= DAGGER_CHUNK_MAX_DIMS, DAGGER_EINVAL,
                 "%s: %d dimensions is out of range 1..%d", what, ndims, DAGGER_CHUNK_MAX_DIMS);
    DAGGER_CHECK(shape, DAGGER_EINVAL, "%s: shape is NULL", what);
    size_t n = es;
    for (int d = 0; d < ndims; d++)
        DAGGER_CHECK(!__builtin_mul_overflow(n, shape[d], &n), DAGGER_ERANGE,
                     "%s: the shape's byte size overflows", what);
    *bytes = n;
    return 0;
}

static void set_type(dagger_chunk_t *c, dagger_elt_t elt, int ndims, const size_t *shape)
{
    c->elt = elt;
    c->ndims = ndims;
    for (int d = 0; d < ndims; d++)
        c->shape[d] = shape[d];
}

int dagger_chunk_create_array(dagger_ctx_t *ctx, dagger_elt_t elt, int ndims, const size_t *shape,
                              dagger_chunk_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_chunk_create_array: out is NULL");
    *out = NULL;
    size_t bytes = 0;
    int rc = shape_bytes("dagger_chunk_create_array", elt, ndims, shape, &bytes);
    if (rc)
        return rc;
    rc = dagger_chunk_create(ctx, bytes, out);
    if (rc)
        return rc;
    set_type(*out, elt, ndims, shape);
    return 0;
}

int dagger_chunk_set_type(dagger_chunk_t *c, dagger_elt_t elt, int ndims, const size_t *shape)
{
    DAGGER_CHECK(c, DAGGER_EINVAL, "dagger_chunk_set_type: the chunk is NULL");
    size_t bytes = 0;
    int rc = shape_bytes("dagger_chunk_set_type", elt, ndims, shape, &bytes);
    if (rc)
        return rc;
    DAGGER_CHECK(bytes == c->size, DAGGER_EINVAL,
                 "dagger_chunk_set_type: the shape holds %zu bytes but chunk %llu has %zu", bytes,
                 (unsigned long long)c->id, c->size);
    set_type(c, elt, ndims, shape);
    return 0;
}

int dagger_chunk_wrap(dagger_ctx_t *ctx, void *data, size_t size,
                      void (*free_fn)(void *data, void *ud), void *ud, dagger_chunk_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_chunk_wrap: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_chunk_wrap: the context is NULL");
    DAGGER_CHECK(data || size == 0, DAGGER_EINVAL,
                 "dagger_chunk_wrap: data is NULL but size is %zu", size);
    dagger_chunk_t *c = chunk_new(ctx, size);
    DAGGER_CHECK(c, DAGGER_ENOMEM, "dagger_chunk_wrap: out of memory for a chunk record");
    c->flags |= CH_WRAPPED;
    c->res.tracked = false; /* the caller's memory: never spilled */
    c->copies[0].ptr = data;
    c->free_fn = free_fn;
    c->ud = ud;
    *out = c;
    return 0;
}

dagger_chunk_t *dagger_chunk_retain(dagger_chunk_t *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void dagger_chunk_release(dagger_chunk_t *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->res.tracked)
        dagger__res_sub(&c->res, true);
    if (c->flags & CH_REMOTE) {
        struct remote *r = &c->remote;
        r->on_free(r->ud, r->rank, r->rid, r->credit);
        pthread_mutex_destroy(&c->lock);
        dagger__free(c);
        return;
    }
    int n = atomic_load_explicit(&c->ncopies, memory_order_acquire);
    /* Each copy goes back to its own space (the home of a file is the disk space). */
    for (int i = 0; i < n; i++) {
        const struct dagger__space_ops *ops = dagger__mem_space_ops(c->copies[i].space.kind);
        if (i == 0 && (c->flags & CH_WRAPPED)) {
            if (c->free_fn)
                c->free_fn(c->copies[0].ptr, c->ud);
        } else if (ops && c->copies[i].ptr) {
            ops->free(&c->copies[i].space, c->copies[i].ptr, c->size);
        }
    }
    pthread_mutex_destroy(&c->lock);
    dagger__free(c);
}

/* ---------------------------------------------------------------- copies */

uint64_t dagger__mem_version(const dagger_chunk_t *c)
{
    return atomic_load_explicit(&c->version, memory_order_acquire);
}

int dagger__mem_ncopies(const dagger_chunk_t *c)
{
    return atomic_load_explicit(&c->ncopies, memory_order_acquire);
}

static int stage_locked(dagger_chunk_t *c, const dagger_space_t *to, void **ptr)
{
    uint64_t v = atomic_load_explicit(&c->version, memory_order_acquire);
    int n = atomic_load_explicit(&c->ncopies, memory_order_relaxed);
    struct copy *dst = NULL, *src = NULL;
    for (int i = 0; i < n; i++) {
        struct copy *k = &c->copies[i];
        if (dagger__mem_space_equal(&k->space, to))
            dst = k;
        if (!src && atomic_load_explicit(&k->version, memory_order_relaxed) == v)
            src = k;
    }
    if (dst && atomic_load_explicit(&dst->version, memory_order_relaxed) == v) {
        *ptr = dst->ptr;
        return 0;
    }
    char where[64];
    dagger_space_format(to, where, sizeof where);
    DAGGER_CHECK(!(c->flags & CH_MUTABLE), DAGGER_ESCOPE,
                 "chunk %llu is mutable data of its processor and is never copied, so it cannot "
                 "be used in the %s space",
                 (unsigned long long)c->id, where);
    DAGGER_CHECK(src, DAGGER_ESTATE, "chunk %llu has no valid copy to stage from",
                 (unsigned long long)c->id);
    const struct dagger__space_ops *ops = dagger__mem_space_ops(to->kind);
    DAGGER_CHECK(ops, DAGGER_ENOSYS, "cannot stage chunk %llu to %s: no %s backend is built",
                 (unsigned long long)c->id, where, space_kind_name(to->kind));
    if (!dst || !dst->ptr) { /* a new copy, or a host copy dropped by a spill */
        DAGGER_CHECK(dst || n < MAX_COPIES, DAGGER_ENOMEM,
                     "chunk %llu already has %d copies; cannot add one in %s",
                     (unsigned long long)c->id, MAX_COPIES, where);
        void *p = ops->alloc(to, c->size);
        DAGGER_CHECK(p, DAGGER_ENOMEM, "out of memory for a %zu-byte copy of chunk %llu in %s",
                     c->size, (unsigned long long)c->id, where);
        if (dst) {
            dst->ptr = p;
        } else {
            dst = &c->copies[n];
            dst->space = *to;
            dst->ptr = p;
            atomic_store_explicit(&dst->version, 0, memory_order_relaxed);
            atomic_store_explicit(&c->ncopies, n + 1, memory_order_release);
        }
        if (c->res.tracked && to->kind == DAGGER_SPACE_HOST)
            dagger__res_add(&c->res, c->size);
    }
    /* A host table copies only host to host; the table of the other kind (device, disk) copies
     * both ways with the host, so a copy into host from there uses that table. */
    const struct dagger__space_ops *cp = ops;
    if (to->kind == DAGGER_SPACE_HOST && src->space.kind != DAGGER_SPACE_HOST)
        cp = dagger__mem_space_ops(src->space.kind);
    DAGGER_CHECK(cp, DAGGER_ENOSYS, "cannot stage chunk %llu to %s: no %s backend is built",
                 (unsigned long long)c->id, where, space_kind_name(src->space.kind));
    int rc = cp->copy(to, dst->ptr, &src->space, src->ptr, c->size);
    if (rc)
        return rc;
    DAGGER__TRACE(dagger__trace_move(c->id, src->space.kind, to->kind, c->size, -1));
    atomic_store_explicit(&dst->version, v, memory_order_release);
    *ptr = dst->ptr;
    return 0;
}

bool dagger__mem_valid_in(const dagger_chunk_t *c, const dagger_space_t *space)
{
    uint64_t v = atomic_load_explicit(&c->version, memory_order_acquire);
    int n = atomic_load_explicit(&c->ncopies, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (dagger__mem_space_equal(&c->copies[i].space, space))
            return atomic_load_explicit(&c->copies[i].version, memory_order_acquire) == v;
    return false;
}

int dagger__mem_evict(dagger_chunk_t *c, const dagger_space_t *space)
{
    if (pthread_mutex_trylock(&c->lock) != 0)
        return DAGGER_EBUSY;
    uint64_t v = atomic_load_explicit(&c->version, memory_order_relaxed);
    int n = atomic_load_explicit(&c->ncopies, memory_order_relaxed);
    int rc = 0;
    for (int i = 1; i < n; i++) {
        struct copy *k = &c->copies[i];
        if (!dagger__mem_space_equal(&k->space, space))
            continue;
        bool only = atomic_load_explicit(&k->version, memory_order_relaxed) == v &&
                    atomic_load_explicit(&c->copies[0].version, memory_order_relaxed) != v;
        if (only) { /* dirty: write it back to the home first */
            bool elsewhere = false;
            for (int j = 1; j < n; j++)
                elsewhere |= j != i &&
                             atomic_load_explicit(&c->copies[j].version, memory_order_relaxed) == v;
            if (!elsewhere) {
                const struct dagger__space_ops *ops = dagger__mem_space_ops(space->kind);
                rc = ops->copy(&c->home, c->copies[0].ptr, space, k->ptr, c->size);
                if (rc == 0) {
                    atomic_store_explicit(&c->copies[0].version, v, memory_order_release);
                    rc = 1;
                }
            }
        }
        if (rc >= 0)
            atomic_store_explicit(&k->version, 0, memory_order_release);
        break;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int dagger__mem_invalidate(dagger_chunk_t *c, const dagger_space_t *space,
                           bool (*bad)(void *ptr, void *ud), void *ud)
{
    pthread_mutex_lock(&c->lock);
    uint64_t v = atomic_load_explicit(&c->version, memory_order_relaxed);
    int n = atomic_load_explicit(&c->ncopies, memory_order_relaxed);
    struct copy *k = NULL;
    bool other = false;
    for (int i = 0; i < n; i++) {
        bool valid = atomic_load_explicit(&c->copies[i].version, memory_order_relaxed) == v &&
                     c->copies[i].ptr;
        if (dagger__mem_space_equal(&c->copies[i].space, space))
            k = valid ? &c->copies[i] : NULL;
        else
            other |= valid;
    }
    int rc = 0;
    if (k && (!bad || bad(k->ptr, ud))) {
        if (other) {
            atomic_store_explicit(&k->version, 0, memory_order_release);
            rc = 1;
        } else {
            char where[64];
            dagger_space_format(space, where, sizeof where);
            rc = dagger__set_errmsg(DAGGER_ESTATE,
                                    "chunk %llu: its only valid copy, in %s, may be corrupt "
                                    "(the copy or the task that made it failed)",
                                    (unsigned long long)c->id, where);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int dagger__mem_stage(dagger_chunk_t *c, const dagger_space_t *to, void **ptr)
{
    /* Fast path: the home copy is wanted and valid (every host-only program). */
    if (DAGGER_LIKELY(dagger__mem_space_equal(&c->copies[0].space, to) &&
                      atomic_load_explicit(&c->copies[0].version, memory_order_acquire) ==
                          atomic_load_explicit(&c->version, memory_order_acquire))) {
        *ptr = c->copies[0].ptr;
        return 0;
    }
    DAGGER_CHECK(!(c->flags & CH_REMOTE), DAGGER_ESCOPE,
                 "chunk %llu is mutable data of rank %d and never leaves it: use it in a task "
                 "that runs there",
                 (unsigned long long)c->id, c->remote.rank);
    /* Under a memory limit a host copy that must be made first waits for room (spills). */
    if (c->res.tracked && to->kind == DAGGER_SPACE_HOST) {
        pthread_mutex_lock(&c->lock);
        uint64_t v = atomic_load_explicit(&c->version, memory_order_acquire);
        int n = atomic_load_explicit(&c->ncopies, memory_order_relaxed);
        for (int i = 0; i < n; i++) {
            struct copy *k = &c->copies[i];
            if (dagger__mem_space_equal(&k->space, to) && k->ptr &&
                atomic_load_explicit(&k->version, memory_order_relaxed) == v) {
                *ptr = k->ptr; /* resident already (a file's host copy is not its home) */
                pthread_mutex_unlock(&c->lock);
                return 0;
            }
        }
        pthread_mutex_unlock(&c->lock);
        int rc = dagger__res_wait_room(c->size);
        if (rc)
            return dagger__set_errmsg(rc,
                                      "no room to load the %zu bytes of chunk %llu under the "
                                      "memory limit: spilling other chunks failed (disk full)",
                                      c->size, (unsigned long long)c->id);
    }
    pthread_mutex_lock(&c->lock);
    int rc = stage_locked(c, to, ptr);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void dagger__mem_written(dagger_chunk_t *c, const dagger_space_t *space)
{
    pthread_mutex_lock(&c->lock);
    uint64_t v = atomic_load_explicit(&c->version, memory_order_relaxed) + 1;
    int n = atomic_load_explicit(&c->ncopies, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        if (dagger__mem_space_equal(&c->copies[i].space, space))
            atomic_store_explicit(&c->copies[i].version, v, memory_order_release);
    atomic_store_explicit(&c->version, v, memory_order_release);
    pthread_mutex_unlock(&c->lock);
}

/* ---------------------------------------------------------------- queries */

void *dagger_chunk_data(dagger_chunk_t *c)
{
    if (!c) {
        dagger__set_errmsg(DAGGER_EINVAL, "dagger_chunk_data: the chunk is NULL");
        return NULL;
    }
    dagger_space_t host = dagger__mem_host();
    void *p = NULL;
    if (c->res.tracked) { /* the owner holds a host pointer: not spilled until handed over */
        atomic_store_explicit(&c->res.upin, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
    }
    if (dagger__mem_stage(c, &host, &p) != 0)
        return NULL;
    /* The owner may write through the pointer: copies elsewhere (a spill file) become stale. */
    if (c->res.tracked || atomic_load_explicit(&c->ncopies, memory_order_acquire) > 1)
        dagger__mem_written(c, &host);
    return p;
}

size_t dagger_chunk_size(const dagger_chunk_t *c) { return c ? c->size : 0; }
dagger_elt_t dagger_chunk_elt(const dagger_chunk_t *c) { return c ? c->elt : DAGGER_ELT_RAW; }
uint64_t dagger_chunk_id(const dagger_chunk_t *c) { return c ? c->id : 0; }

int dagger_chunk_shape(const dagger_chunk_t *c, size_t *shape, int cap)
{
    if (!c)
        return 0;
    for (int d = 0; d < c->ndims && d < cap && shape; d++)
        shape[d] = c->shape[d];
    return c->ndims;
}

dagger_space_t dagger_chunk_home(const dagger_chunk_t *c)
{
    if (!c)
        return dagger__mem_host();
    dagger_space_t h = c->home;
    if (!(c->flags & CH_REMOTE)) /* this process's space: its rank in the job */
        h.rank = c->rank;
    return h;
}

bool dagger_chunk_is_mutable(const dagger_chunk_t *c, dagger_proc_t *proc)
{
    if (!c || !(c->flags & CH_MUTABLE))
        return false;
    if (proc)
        *proc = c->proc;
    return true;
}

void dagger__mem_pin(dagger_chunk_t *c, const dagger_proc_t *proc)
{
    c->flags |= CH_MUTABLE;
    c->proc = *proc;
}

const dagger_ctx_t *dagger__mem_chunk_ctx(const dagger_chunk_t *c) { return c->ctx; }

/* ---------------------------------------------------------------- proxies of remote data */

int dagger__mem_proxy_create(const dagger_ctx_t *ctx, const dagger_proc_t *proc, uint64_t rid,
                             size_t size, dagger_elt_t elt, int ndims, const size_t *shape,
                             uint64_t credit,
                             void (*on_free)(void *ud, int rank, uint64_t rid, uint64_t credit),
                             void *ud, dagger_chunk_t **out)
{
    dagger_chunk_t *c = chunk_new(ctx, size);
    DAGGER_CHECK(c, DAGGER_ENOMEM, "out of memory for the record of a chunk of rank %d",
                 (int)proc->rank);
    c->flags |= CH_REMOTE | CH_MUTABLE;
    c->res.tracked = false;
    atomic_store_explicit(&c->res.upin, 0, memory_order_relaxed);
    c->proc = *proc;
    c->home = (dagger_space_t){proc->rank, DAGGER_SPACE_HOST, 0};
    c->copies[0].space = c->home;
    atomic_store_explicit(&c->copies[0].version, 0, memory_order_relaxed); /* never valid here */
    if (ndims > 0 && ndims <= DAGGER_CHUNK_MAX_DIMS)
        set_type(c, elt, ndims, shape);
    c->remote = (struct remote){proc->rank, rid, credit, on_free, ud};
    *out = c;
    return 0;
}

bool dagger__mem_proxy(const dagger_chunk_t *c, int *rank, uint64_t *rid)
{
    if (!c || !(c->flags & CH_REMOTE))
        return false;
    if (rank)
        *rank = c->remote.rank;
    if (rid)
        *rid = c->remote.rid;
    return true;
}

uint64_t *dagger__mem_proxy_credit(dagger_chunk_t *c) { return &c->remote.credit; }

/* ---------------------------------------------------------------- results kept as chunks */

int dagger__mem_result_chunk(const dagger_ctx_t *ctx, dagger_value_t *v, const dagger_proc_t *proc,
                             bool pin, char *why, size_t cap)
{
    dagger_chunk_t *c = NULL;
    if (v->kind == DAGGER_KIND_CHUNK && v->u.c) {
        c = v->u.c;
        if (!(v->flags & DAGGER_VALUE_OWNED))
            dagger_chunk_retain(c);
        if (c->flags & CH_REMOTE) { /* made and pinned on its rank (a remote task's result) */
            *v = dagger_chunkv(c);
            v->flags |= DAGGER_VALUE_OWNED;
            return 0;
        }
        if (pin && (c->flags & CH_MUTABLE) &&
            (c->proc.kind != proc->kind || c->proc.index != proc->index)) {
            char a[48], b[48];
            dagger_proc_format(&c->proc, a, sizeof a);
            dagger_proc_format(proc, b, sizeof b);
            snprintf(why, cap, "chunk %llu is already mutable data of %s and cannot move to %s",
                     (unsigned long long)c->id, a, b);
            dagger_chunk_release(c);
            *v = dagger_nil();
            return DAGGER_ESCOPE;
        }
    } else if (v->kind == DAGGER_KIND_BLOB || v->kind == DAGGER_KIND_STR) {
        size_t n = (size_t)v->len + (v->kind == DAGGER_KIND_STR);
        int rc = dagger_chunk_create((dagger_ctx_t *)ctx, n, &c);
        if (rc) { /* out of memory, or no room under the memory limit (disk full) */
            snprintf(why, cap, "a %zu-byte result chunk: %s", n, dagger_last_errmsg());
            return rc;
        }
        if (v->len)
            memcpy(c->copies[0].ptr, v->u.p, v->len);
        dagger__value_drop(v);
    } else if (v->kind == DAGGER_KIND_PTR) {
        if (dagger_chunk_wrap((dagger_ctx_t *)ctx, (void *)v->u.p, 0, NULL, NULL, &c) != 0) {
            snprintf(why, cap, "out of memory for a result chunk record");
            return DAGGER_ENOMEM;
        }
    } else {
        snprintf(why, cap,
                 "a result kept as a chunk must be a chunk, blob, string or pointer, "
                 "not a %s",
                 dagger_kind_name(v->kind));
        return DAGGER_ETYPE;
    }
    if (pin)
        dagger__mem_pin(c, proc);
    else /* the body's pointers are gone with its reference: the result may be spilled */
        atomic_store_explicit(&c->res.upin, 0, memory_order_release);
    *v = dagger_chunkv(c);
    v->flags |= DAGGER_VALUE_OWNED;
    return 0;
}

/* ---------------------------------------------------------------- chunks in another space */

int dagger__mem_chunk_at(const dagger_ctx_t *ctx, size_t size, const dagger_space_t *space,
                         void *ptr, dagger_chunk_t **out)
{
    dagger_chunk_t *c = chunk_new(ctx, size);
    DAGGER_CHECK(c, DAGGER_ENOMEM, "out of memory for a chunk record");
    c->home = *space;
    c->copies[0].space = *space;
    c->copies[0].ptr = ptr;
    atomic_store_explicit(&c->res.upin, 0, memory_order_relaxed); /* no host pointer exists */
    *out = c;
    return 0;
}

const void *dagger__mem_home_ptr(const dagger_chunk_t *c) { return c->copies[0].ptr; }

/* ---------------------------------------------------------------- out-of-core */

struct dagger__res_node *dagger__mem_res_node(dagger_chunk_t *c) { return &c->res; }
size_t dagger__mem_chunk_bytes(const dagger_chunk_t *c) { return c->size; }

bool dagger__mem_try_retain(dagger_chunk_t *c)
{
    uint32_t r = atomic_load_explicit(&c->refs, memory_order_relaxed);
    while (r != 0)
        if (atomic_compare_exchange_weak_explicit(&c->refs, &r, r + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    return false;
}

void dagger__mem_hold(dagger_chunk_t *c)
{
    if (!c->res.tracked)
        return;
    /* seq_cst with the fence: a spill that drops the host copy after this sees the pin (Dekker
     * with dagger__mem_spill), or this thread's staging sees the copy invalid and reloads. */
    atomic_fetch_add_explicit(&c->res.pins, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    dagger__res_touch(&c->res);
}

void dagger__mem_handed(dagger_chunk_t *c)
{
    if (c->res.tracked) /* the owner's host pointer is void once the chunk goes to a task */
        atomic_store_explicit(&c->res.upin, 0, memory_order_release);
}

void dagger__mem_unhold(dagger_chunk_t *c)
{
    if (c->res.tracked)
        atomic_fetch_sub_explicit(&c->res.pins, 1, memory_order_release);
}

bool dagger__mem_tracked(const dagger_chunk_t *c) { return c->res.tracked; }

static bool held(dagger_chunk_t *c)
{
    return atomic_load_explicit(&c->res.pins, memory_order_seq_cst) != 0 ||
           atomic_load_explicit(&c->res.upin, memory_order_seq_cst) != 0;
}

int dagger__mem_spill(dagger_chunk_t *c)
{
    if ((c->flags & (CH_MUTABLE | CH_WRAPPED)) || held(c))
        return DAGGER_EBUSY;
    if (pthread_mutex_trylock(&c->lock) != 0)
        return DAGGER_EBUSY;
    uint64_t v = atomic_load_explicit(&c->version, memory_order_acquire);
    int n = atomic_load_explicit(&c->ncopies, memory_order_relaxed);
    struct copy *h = NULL, *d = NULL;
    for (int i = 0; i < n; i++) {
        if (c->copies[i].space.kind == DAGGER_SPACE_HOST && c->copies[i].ptr)
            h = &c->copies[i];
        if (c->copies[i].space.kind == DAGGER_SPACE_DISK && !d)
            d = &c->copies[i];
    }
    int rc = 0;
    const struct dagger__space_ops *ops = dagger__mem_space_ops(DAGGER_SPACE_DISK);
    dagger_space_t disk = {c->home.rank, DAGGER_SPACE_DISK, 0};
    if (!h || atomic_load_explicit(&h->version, memory_order_relaxed) != v) {
        /* No host bytes, or stale ones (the valid copy is elsewhere): nothing to write. */
        if (!h) {
            pthread_mutex_unlock(&c->lock);
            dagger__res_sub(&c->res, false);
            return 0;
        }
    } else if (!ops) {
        rc = dagger__set_errmsg(DAGGER_ENOSYS, "no disk space backend is built");
    } else if (!d || atomic_load_explicit(&d->version, memory_order_relaxed) != v) {
        /* Written once per version: a disk copy that is still valid is reused as it is. */
        if (!d && n >= MAX_COPIES) {
            rc = DAGGER_EBUSY;
        } else if (!d) {
            void *p = ops->alloc(&disk, c->size);
            if (!p) {
                rc = dagger__set_errmsg(DAGGER_ENOMEM, "out of memory for a spill record");
            } else {
                d = &c->copies[n];
                d->space = disk;
                d->ptr = p;
                atomic_store_explicit(&d->version, 0, memory_order_relaxed);
                atomic_store_explicit(&c->ncopies, n + 1, memory_order_release);
            }
        }
        if (!rc && d) {
            rc = ops->copy(&d->space, d->ptr, &h->space, h->ptr, c->size);
            if (!rc) {
                atomic_store_explicit(&d->version, v, memory_order_release);
                DAGGER__TRACE(dagger__trace_move(c->id, h->space.kind, d->space.kind, c->size, -1));
            }
        }
    }
    if (!rc) {
        /* Dekker with dagger__mem_hold: invalidate, then look for a holder that came in. */
        atomic_store_explicit(&h->version, 0, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (held(c)) {
            atomic_store_explicit(&h->version, v, memory_order_release);
            rc = DAGGER_EBUSY;
        } else {
            host_free(&h->space, h->ptr, c->size);
            h->ptr = NULL;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (!rc)
        dagger__res_sub(&c->res, false);
    return rc;
}
