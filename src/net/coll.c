/* src/net/coll.c - collectives across the ranks of an SPMD context: dagger_barrier,
 * dagger_bcast and dagger_gather.
 *
 * Design: the public entry points check what one rank can check alone (a context, buffers, a
 * root in range, SPMD mode) and complete a one-rank collective at once; with several ranks they
 * hand the collective to the ranks backend (src/net/mpi/spmd.c), which suspends the caller (a
 * task's fiber, or the calling thread) until the progress thread completes the nonblocking MPI
 * collective. What needs every rank (the same size and root everywhere) is checked there.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/common.h"
#include "core/core.h"

static int run(dagger_ctx_t *ctx, const struct dagger__coll *c)
{
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "%s: the context is NULL", c->fn);
    int n = dagger_ctx_nranks(ctx);
    DAGGER_CHECK(c->op == DAGGER__COLL_BARRIER || (c->root >= 0 && c->root < n), DAGGER_EINVAL,
                 "%s: root %d is out of range 0..%d", c->fn, c->root, n - 1);
    bool root = dagger_ctx_rank(ctx) == c->root;
    DAGGER_CHECK(c->op != DAGGER__COLL_BCAST || c->recv || !c->size, DAGGER_EINVAL,
                 "%s: buf is NULL with size %zu", c->fn, c->size);
    DAGGER_CHECK(c->op != DAGGER__COLL_GATHER || c->send || !c->size, DAGGER_EINVAL,
                 "%s: send is NULL with size %zu", c->fn, c->size);
    DAGGER_CHECK(c->op != DAGGER__COLL_GATHER || !root || c->recv || !c->size, DAGGER_EINVAL,
                 "%s: recv is NULL on the root (rank %d) with size %zu", c->fn, c->root, c->size);
    DAGGER_CHECK(c->op != DAGGER__COLL_GATHER || c->size <= SIZE_MAX / (size_t)n, DAGGER_EINVAL,
                 "%s: size %zu times %d ranks overflows", c->fn, c->size, n);
    if (n == 1) { /* one rank: nothing to exchange */
        if (c->op == DAGGER__COLL_GATHER && c->size && c->recv != c->send)
            memmove(c->recv, c->send, c->size);
        return 0;
    }
    DAGGER_CHECK(dagger__ctx_open_flags(ctx) & DAGGER_OPEN_SPMD, DAGGER_ESTATE,
                 "%s: the context is in driver mode (only rank 0 runs main): open it with "
                 "DAGGER_OPEN_SPMD to use collectives",
                 c->fn);
    const struct dagger__ranks_ops *ro = dagger__ranks_get();
    DAGGER_CHECK(ro && ro->coll, DAGGER_ENOSYS, "%s: no ranks backend in this build", c->fn);
    return ro->coll(ctx, c);
}

int dagger_barrier(dagger_ctx_t *ctx)
{
    struct dagger__coll c = {DAGGER__COLL_BARRIER, 0, NULL, NULL, 0, "dagger_barrier"};
    return run(ctx, &c);
}

int dagger_bcast(dagger_ctx_t *ctx, int root, void *buf, size_t size)
{
    struct dagger__coll c = {DAGGER__COLL_BCAST, root, buf, buf, size, "dagger_bcast"};
    return run(ctx, &c);
}

int dagger_gather(dagger_ctx_t *ctx, int root, const void *send, size_t size, void *recv)
{
    struct dagger__coll c = {DAGGER__COLL_GATHER, root, send, recv, size, "dagger_gather"};
    return run(ctx, &c);
}
