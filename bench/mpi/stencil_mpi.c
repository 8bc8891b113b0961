/* bench/mpi/stencil_mpi.c - the peer of the stencil (stencil.h): plain MPI, each rank owning
 * two columns and exchanging its edge values with its neighbours (MPI_Isend/MPI_Irecv) every
 * step, then computing its two tasks.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <mpi.h>

#include "stencil.h"

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        puts("mpi.stencil_eff\nmpi.stencil_metg");
        return 0;
    }
    pp_self_launch(argc, argv);
    MPI_Init(&argc, &argv);
    int rank, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    int w = 2 * n, steps = st_steps(), bad = 0;
    double per_iter = st_calibrate();
    if (rank == 0)
        printf("# %.3f ns per iteration\n", per_iter * 1e9);
    MPI_Bcast(&per_iter, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD); /* one figure for every rank */
    uint64_t *ref = malloc((size_t)w * sizeof *ref), *all = malloc((size_t)w * sizeof *all);
    st_reference(w, steps, ref);
    struct st_metg metg = {0};
    for (int lg = ST_MAX_LOG2; lg >= ST_MIN_LOG2; lg--) {
        uint64_t iters = 1ull << lg;
        uint64_t mine[2], next[2];
        double wall = 1e30;
        for (int rep = 0; rep < ST_REPS; rep++) {
            mine[0] = (uint64_t)2 * rank + 1;
            mine[1] = (uint64_t)2 * rank + 2;
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = pp_now();
            for (int t = 1; t < steps; t++) {
                uint64_t left = 0, right = 0;
                MPI_Request req[4];
                int nr = 0;
                if (rank > 0) {
                    MPI_Irecv(&left, 1, MPI_UINT64_T, rank - 1, t, MPI_COMM_WORLD, &req[nr++]);
                    MPI_Isend(&mine[0], 1, MPI_UINT64_T, rank - 1, t, MPI_COMM_WORLD, &req[nr++]);
                }
                if (rank < n - 1) {
                    MPI_Irecv(&right, 1, MPI_UINT64_T, rank + 1, t, MPI_COMM_WORLD, &req[nr++]);
                    MPI_Isend(&mine[1], 1, MPI_UINT64_T, rank + 1, t, MPI_COMM_WORLD, &req[nr++]);
                }
                MPI_Waitall(nr, req, MPI_STATUSES_IGNORE);
                st_kernel(iters);
                next[0] = st_value(left, mine[0], mine[1]);
                st_kernel(iters);
                next[1] = st_value(mine[0], mine[1], right);
                mine[0] = next[0];
                mine[1] = next[1];
            }
            MPI_Barrier(MPI_COMM_WORLD);
            double dt = pp_now() - t0;
            wall = dt < wall ? dt : wall;
            MPI_Gather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, 0, MPI_COMM_WORLD);
            for (int i = 0; rank == 0 && i < w; i++)
                bad |= all[i] != ref[i];
        }
        int stop = 0;
        if (rank == 0) {
            double eff = st_report("mpi", n, w, steps, iters, per_iter, wall);
            stop = st_metg_add(&metg, eff, (double)iters * per_iter) || bad;
        }
        MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (stop)
            break;
    }
    if (rank == 0) {
        if (bad)
            fprintf(stderr, "ERROR: the last row differs from the serial evaluation\n");
        st_report_metg("mpi", n, &metg);
    }
    free(ref);
    free(all);
    MPI_Finalize();
    return bad;
}
