/* examples/05_datadeps.c - sort a vector in place, then copy it: with and without annotations.
 *
 * With InOut(X) on the sort and In(X) on the copy, the datadeps region orders the copy after
 * the sort, so C comes out sorted. Without annotations both tasks only read X as far as the
 * region knows, so nothing orders them: here the sort even waits until the copy is done (a
 * flag, so that the example stays free of data races) and C keeps the unsorted values.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dagger.h>
#include <dagger/datadeps.h>

enum { N = 10 };
static _Atomic int copied; /* set by the copy; the unannotated sort waits for it (1 s at most) */

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* sort!(x, n, wait_for_copy) */
static int sort_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *x = dagger_arg_ptr(a, 0);
    if (dagger_arg_i64(a, 2))
        for (int i = 0; i < 1000 && !atomic_load(&copied); i++)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    qsort(x, (size_t)dagger_arg_i64(a, 1), sizeof *x, cmp);
    return 0;
}

/* copyto!(dst, src, n) */
static int copy_vec(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    memcpy(dagger_arg_ptr(a, 0), dagger_arg_ptr(a, 1),
           sizeof(double) * (size_t)dagger_arg_i64(a, 2));
    atomic_store(&copied, 1);
    return 0;
}

static void show(const char *label, const double *c)
{
    printf("%-22s", label);
    for (int i = 0; i < N; i++)
        printf(" %g", c[i]);
    printf("\n");
}

int main(void)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 2;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o) != 0)
        return 1;
    double X[N], C[N];
    static const double init[N] = {5, 3, 9, 1, 7, 2, 8, 0, 6, 4};

    /* With annotations: the copy waits for the sort. */
    memcpy(X, init, sizeof X);
    dagger_datadeps_t *dd;
    if (dagger_datadeps_begin(ctx, 0, &dd) != 0)
        return 1;
    dagger_task_release(dagger_datadeps_spawn(dd, sort_vec, dagger_inout(X, sizeof X), N, 0));
    dagger_task_release(
        dagger_datadeps_spawn(dd, copy_vec, dagger_out(C, sizeof C), dagger_in(X, sizeof X), N));
    if (dagger_datadeps_end(dd) != 0) {
        printf("region failed: %s\n", dagger_last_errmsg());
        return 1;
    }
    show("with annotations:", C);

    /* Without annotations: plain pointers are reads, so the two tasks are independent. */
    memcpy(X, init, sizeof X);
    atomic_store(&copied, 0);
    if (dagger_datadeps_begin(ctx, 0, &dd) != 0)
        return 1;
    dagger_task_release(dagger_datadeps_spawn(dd, sort_vec, (void *)X, N, 1));
    dagger_task_release(dagger_datadeps_spawn(dd, copy_vec, (void *)C, (void *)X, N));
    if (dagger_datadeps_end(dd) != 0) {
        printf("region failed: %s\n", dagger_last_errmsg());
        return 1;
    }
    show("without annotations:", C);
    return dagger_ctx_close(ctx) == 0 ? 0 : 1;
}
