/* include/dagger/mpi.h - dagger on a communicator of the caller's: the only public header that
 * includes <mpi.h>.
 *
 * A plain dagger_ctx_open joins MPI_COMM_WORLD when the program runs under a launcher with
 * several ranks (or DAGGER_MPI=1); this header adds opening a context on a communicator of the
 * program's own. dagger always works on a duplicate of it. docs/mpi.md explains the modes.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_MPI_H
#define DAGGER_MPI_H

#include <mpi.h>

#include "dagger.h"

#ifdef __cplusplus
extern "C" {
#endif

/** dagger_ctx_open on the ranks of `comm` (duplicated; the caller keeps and frees `comm`). MPI
 *  may be initialised by the caller, with MPI_THREAD_SERIALIZED or more.
 *  Returns: as dagger_ctx_open (DAGGER_CTX_SERVED on the ranks other than 0), DAGGER_EINVAL for
 *  MPI_COMM_NULL, DAGGER_ENOSYS for a thread level below MPI_THREAD_SERIALIZED.
 *  Ownership: +1 on `*out`. Thread safety: collective over `comm`. */
DAGGER_API DAGGER_NODISCARD int dagger_ctx_open_mpi(dagger_ctx_t **out, const dagger_opts_t *opts,
                                                    MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_MPI_H */
