/* tests/mpi_harness.h - what the MPI test programs share (they run under tests/mpi_run.sh).
 *
 * Driver mode: rank 0 runs the case; on the other ranks dagger_ctx_open serves and returns
 * DAGGER_CTX_SERVED, and the case ends there. Include after harness.h.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TESTS_MPI_HARNESS_H
#define DAGGER_TESTS_MPI_HARNESS_H

#include "harness.h"

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

/* Spawn fn(argv) on rank `rank` (rank 0: a thread here), named `name`. */
static inline dagger_task_t *spawn_on(dagger_ctx_t *ctx, int rank, dagger_fn_t fn, const char *name,
                                      const dagger_value_t *argv, size_t argc)
{
    dagger_scope_t *s = dagger_scope_worker(rank);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = s;
    o.name = name;
    dagger_task_t *t = dagger_spawn_impl(ctx, &o, fn, NULL, argv, argc);
    dagger_scope_release(s);
    ASSERT_PTR(t);
    return t;
}

#endif /* DAGGER_TESTS_MPI_HARNESS_H */
