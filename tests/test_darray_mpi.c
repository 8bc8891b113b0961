/* tests/test_darray_mpi.c - distributed arrays across ranks (label mpi).
 *
 * These are to run under `mpirun -np 2` and `-np 4` once the darray operations work over ranks
 * (TODO #9; docs/darray.md says what is missing: their tasks take a job record and read blocks
 * through host pointers, neither of which can travel): arrays placed DAGGER_DIST_BLOCKROW and
 * DAGGER_DIST_CYCLICROW over DAGGER_DARRAY_RANKS, with the checks of tests/test_darray.c (round
 * trips, the same rand on 1, 2 and 4 ranks, reductions, Cholesky, LU and solve against
 * LAPACKE). Until then a rank other than 0 is refused and they skip.
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

#include "dagger/darray.h"

/* With one process a rank other than 0 is refused: the precondition of every case below. */
static void need_ranks(void)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_darray_opts_t o;
    dagger_darray_opts_init(&o);
    o.over = DAGGER_DARRAY_RANKS;
    o.dist = DAGGER_DIST_EXPLICIT;
    int places[2] = {0, 1};
    o.places = places;
    o.nplaces = 2;
    dagger_darray_t *a = NULL;
    int rc = dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(2), DAGGER_DIMS(4), &o, &a);
    dagger_darray_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
    if (rc == DAGGER_ESCOPE)
        SKIP("darray operations over ranks are not built (DAGGER_DARRAY_RANKS places other "
             "than rank 0; docs/darray.md)");
}

TEST(ranks_blockrow_and_cyclic_roundtrip_and_reduce) { need_ranks(); }
TEST(ranks_cholesky_lu_and_solve) { need_ranks(); }

TEST_LIST(ranks_blockrow_and_cyclic_roundtrip_and_reduce, ranks_cholesky_lu_and_solve)
