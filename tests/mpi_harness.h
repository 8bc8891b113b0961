/* tests/mpi_harness.h - what the MPI test programs share (they run under tests/mpi_run.sh).
 *
 * Driver mode: rank 0 runs the case; on the other ranks dagger_ctx_open serves and returns
 * DAGGER_CTX_SERVED, and the case ends there. Include after harness.h.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TESTS_MPI_HARNESS_H
#define DAGGER_TESTS_MPI_HARNESS_H

#include "harness.h"
#include "dagger/chunk.h"

/* Open the job's context with `threads` workers per rank; NULL on a server rank once the
 * driver closed. */
static inline dagger_ctx_t *open_job(int threads)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    dagger_ctx_t *ctx = NULL;
    int rc = dagger_ctx_open(&ctx, &o);
    if (rc == DAGGER_CTX_SERVED)
        return NULL;
    ASSERT_OK(rc);
    return ctx;
}

/* Spawn fn(argv) on rank `rank` (rank 0: a thread here; -1: no scope, its data places it),
 * named `name`, after `nsync` dependencies that are not arguments. */
static inline dagger_task_t *spawn_after(dagger_ctx_t *ctx, int rank, dagger_fn_t fn,
                                         const char *name, dagger_task_t *const *sync, size_t nsync,
                                         const dagger_value_t *argv, size_t argc)
{
    dagger_scope_t *s = rank >= 0 ? dagger_scope_worker(rank) : NULL;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    if (s)
        o.scope = s;
    o.name = name;
    o.syncdeps = sync;
    o.nsyncdeps = nsync;
    dagger_task_t *t = dagger_spawn_impl(ctx, &o, fn, NULL, argv, argc);
    dagger_scope_release(s);
    ASSERT_PTR(t);
    return t;
}

/* Spawn fn(argv) on rank `rank` (rank 0: a thread here), named `name`. */
static inline dagger_task_t *spawn_on(dagger_ctx_t *ctx, int rank, dagger_fn_t fn, const char *name,
                                      const dagger_value_t *argv, size_t argc)
{
    return spawn_after(ctx, rank, fn, name, NULL, 0, argv, argc);
}

/* Mutable data on rank `rank`, made there by `ctor(argv)`. */
static inline dagger_chunk_t *mutable_on(dagger_ctx_t *ctx, int rank, dagger_fn_t ctor,
                                         const dagger_value_t *argv, size_t argc)
{
    dagger_scope_t *w = dagger_scope_worker(rank);
    dagger_chunk_t *c = NULL;
    ASSERT_OK(dagger_mutable(ctx, w, ctor, argv, argc, &c));
    dagger_scope_release(w);
    return c;
}

/* A task returning a copy of its chunk argument's bytes, read where the chunk lives. */
static inline int chunk_copy_out(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const void *p = dagger_arg_buf(a, 0, &n);
    if (!p)
        return DAGGER_ETYPE;
    *out = dagger_blob_copy(tc, p, n);
    return 0;
}

/* The `n` bytes of `c`, read where it lives, copied to `dst`. */
static inline void read_back(dagger_ctx_t *ctx, dagger_chunk_t *c, void *dst, size_t n)
{
    dagger_task_t *t = dagger_spawn(ctx, chunk_copy_out, c);
    dagger_value_t v;
    ASSERT_OK(dagger_fetch(t, &v));
    ASSERT_EQ(v.kind, DAGGER_KIND_BLOB);
    ASSERT_EQ(v.len, n);
    memcpy(dst, v.u.p, n);
    dagger_task_release(t);
}

/* Four jobs in a row, each running `round` on its context, counted with dagger's own
 * allocation counters: a leak in each job would show in every job after the first (which fills
 * caches); the object pools may still carve a slab now and then, so some later job must end
 * with nothing more allocated. Open MPI's allocations are not counted (it calls malloc
 * itself). */
static inline void jobs_leak_nothing(void (*round)(dagger_ctx_t *ctx))
{
    int64_t best = INT64_MAX;
    for (int k = 0; k < 4; k++) {
        dagger_alloc_stats_t s0, s1;
        dagger_alloc_stats(&s0);
        dagger_ctx_t *ctx = open_job(2);
        if (ctx) {
            round(ctx);
            ASSERT_OK(dagger_ctx_close(ctx));
        }
        dagger_alloc_stats(&s1);
        int64_t live = (int64_t)(s1.allocs - s0.allocs) - (int64_t)(s1.frees - s0.frees);
        printf("job %d: %lld blocks still allocated\n", k, (long long)live);
        if (k > 0 && live < best)
            best = live;
    }
#ifdef NDEBUG
    ASSERT_TRUE(best <= 0);
#else
    ASSERT_TRUE(best <= 1); /* a debug build keeps each closed context a while */
#endif
}

#endif /* DAGGER_TESTS_MPI_HARNESS_H */
