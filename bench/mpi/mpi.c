/* bench/mpi/mpi.c - the peer: MPI_Send/MPI_Recv ping-pong between ranks 0 and 1 (problem.h).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <mpi.h>

#include "problem.h"

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        puts("mpi.pingpong\nmpi.bandwidth");
        return 0;
    }
    pp_self_launch(argc, argv);
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    char *buf = malloc(pp_sizes[PP_NSIZES - 1]);
    memset(buf, 1, pp_sizes[PP_NSIZES - 1]);
    for (size_t k = 0; k < pp_nsizes(); k++) {
        size_t size = pp_sizes[k];
        int reps = pp_reps(size);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = pp_now();
        for (int i = 0; i < reps + 1; i++) {
            if (i == 1)
                t0 = pp_now(); /* the first round trip warms up */
            if (rank == 0) {
                MPI_Send(buf, (int)size, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(buf, (int)size, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(buf, (int)size, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, (int)size, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
        }
        if (rank == 0)
            pp_report("mpi", size, reps, pp_now() - t0);
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
