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

#endif /* DAGGER_TESTS_MPI_HARNESS_H */
