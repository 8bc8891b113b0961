/* tests/shared_mpi_datadeps.c - a datadeps region across 2 ranks in a program linked against the
 * shared library (every other MPI test links the static one): the runtime's own task functions
 * (the region's copies of a tile to the other rank) then live in libdagger.so, not in the program,
 * and travel as that module's (build id, offset). Rank 1's tile is written there, read on
 * rank 0 into rank 0's tile; the values are checked. Prints "shared datadeps: ok" on success.
 * Run by tests/mpi.cmake under tests/mpi_run.sh on 2 ranks.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/chunk.h>
#include <dagger/datadeps.h>
#include <stdio.h>
#include <string.h>

enum { N = 1024 };

static int make(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_chunk_t *c;
    int rc = dagger_chunk_create(dagger_tc_ctx(tc), N * sizeof(double), &c);
    if (rc)
        return dagger_fail(tc, rc, "chunk: %s", dagger_last_errmsg());
    double *p = dagger_chunk_data(c);
    for (int i = 0; i < N; i++)
        p[i] = (double)dagger_arg_i64(a, 0);
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* x[i] += i (InOut x) */
static int add_index(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    double *x = dagger_arg_buf(a, 0, NULL);
    for (int i = 0; i < N; i++)
        x[i] += i;
    return 0;
}

/* y[i] += 2 x[i] (In x, InOut y) */
static int axpy2(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    const double *x = dagger_arg_buf(a, 0, NULL);
    double *y = dagger_arg_buf(a, 1, NULL);
    for (int i = 0; i < N; i++)
        y[i] += 2 * x[i];
    return 0;
}

static int copy_out(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const void *p = dagger_arg_buf(a, 0, &n);
    *out = dagger_blob_copy(tc, p, n);
    return 0;
}

int main(void)
{
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open(&ctx, NULL);
    if (rc == DAGGER_CTX_SERVED)
        return 0;
    if (rc) {
        fprintf(stderr, "FAILED: dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    if (dagger_ctx_nranks(ctx) < 2) {
        fprintf(stderr, "FAILED: 2 ranks expected, got %d\n", dagger_ctx_nranks(ctx));
        return 1;
    }
    dagger_chunk_t *t[2];
    for (int r = 0; r < 2; r++) {
        dagger_scope_t *w = dagger_scope_worker(r);
        dagger_value_t args[1] = {dagger_i64(r + 1)};
        rc = dagger_mutable(ctx, w, make, args, 1, &t[r]);
        dagger_scope_release(w);
        if (rc) {
            fprintf(stderr, "FAILED: dagger_mutable on rank %d: %s\n", r, dagger_last_errmsg());
            return 1;
        }
    }
    dagger_datadeps_t *dd;
    if (dagger_datadeps_begin(ctx, 0, &dd)) {
        fprintf(stderr, "FAILED: dagger_datadeps_begin: %s\n", dagger_last_errmsg());
        return 1;
    }
    /* on rank 1: t1 = 2 + i; then on rank 0: t0 = 1 + 2 (2 + i), t1 copied there first */
    dagger_task_release(
        dagger_datadeps_spawn(dd, add_index, dagger_ddchunk(DAGGER_ACCESS_INOUT, t[1])));
    dagger_task_release(dagger_datadeps_spawn(dd, axpy2, dagger_ddchunk(DAGGER_ACCESS_IN, t[1]),
                                              dagger_ddchunk(DAGGER_ACCESS_INOUT, t[0])));
    if (dagger_datadeps_end(dd)) {
        fprintf(stderr, "FAILED: the region: %s\n", dagger_last_errmsg());
        return 1;
    }
    dagger_task_t *c = dagger_spawn(ctx, copy_out, t[0]);
    const void *p;
    size_t n;
    if (dagger_fetch_blob(c, &p, &n) || n != N * sizeof(double)) {
        fprintf(stderr, "FAILED: reading the tile: %s\n", dagger_task_errmsg(c));
        return 1;
    }
    const double *v = p;
    for (int i = 0; i < N; i++) {
        if (v[i] != 1.0 + 2.0 * (2.0 + i)) {
            fprintf(stderr, "FAILED: t0[%d] = %g, expected %g\n", i, v[i], 1.0 + 2.0 * (2.0 + i));
            return 1;
        }
    }
    dagger_task_release(c);
    dagger_chunk_release(t[0]);
    dagger_chunk_release(t[1]);
    rc = dagger_ctx_close(ctx);
    if (rc) {
        fprintf(stderr, "FAILED: dagger_ctx_close: %s\n", dagger_last_errmsg());
        return 1;
    }
    puts("shared datadeps: ok");
    return 0;
}
