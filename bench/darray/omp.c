/* bench/darray/omp.c - the element-wise rows as plain OpenMP loops over one N x N buffer.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <omp.h>

static double best(double a, double b) { return a < b ? a : b; }

int main(int argc, char **argv)
{
    da_cfg_t c;
    if (da_setup(&c, argc, argv))
        return 0;
    omp_set_num_threads(c.threads);
    size_t len = (size_t)c.n * c.n;
    double *x = malloc(len * sizeof *x);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < len; k++)
        x[k] = da_val(k);
    double ref = 0;
    for (size_t k = 0; k < len; k++)
        ref += x[k];
    double t_alloc = 1e30, t_add = 1e30, t_sum = 1e30, t_norm = 1e30;
    for (int r = 0; r < c.reps; r++) {
        double t0 = da_now();
        double *y = malloc(len * sizeof *y);
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < len; k++)
            y[k] = 0;
        t_alloc = best(t_alloc, da_now() - t0);
        free(y);
        /* X .+ 1 makes a new array: the allocation is part of it, as in Julia and in dagger */
        t0 = da_now();
        double *z = malloc(len * sizeof *z);
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < len; k++)
            z[k] = x[k] + 1;
        t_add = best(t_add, da_now() - t0);
        free(z);
        double s = 0;
        t0 = da_now();
#pragma omp parallel for schedule(static) reduction(+ : s)
        for (size_t k = 0; k < len; k++)
            s += x[k];
        t_sum = best(t_sum, da_now() - t0);
        if (fabs(s - ref) > 1e-8 * ref) {
            printf("ERROR sum %.17g, expected %.17g\n", s, ref);
            return 1;
        }
        double s2 = 0;
        t0 = da_now();
#pragma omp parallel for schedule(static) reduction(+ : s2)
        for (size_t k = 0; k < len; k++)
            s2 += x[k] * x[k];
        double nr = sqrt(s2);
        t_norm = best(t_norm, da_now() - t0);
        if (!(nr > 0)) {
            printf("ERROR norm %g\n", nr);
            return 1;
        }
    }
    da_result("darray_alloc", "omp", &c, t_alloc * 1e3, "ms");
    da_result("darray_add1", "omp", &c, t_add * 1e3, "ms");
    da_result("darray_sum", "omp", &c, t_sum * 1e3, "ms");
    da_result("darray_norm", "omp", &c, t_norm * 1e3, "ms");
    free(x);
    return 0;
}
