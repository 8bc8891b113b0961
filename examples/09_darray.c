/* examples/09_darray.c - distributed arrays: distribute, rand, ones, zeros, collect, a sum and a
 * Cholesky factorisation (Dagger.jl's "Quickstart: Distributed Arrays").
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdio.h>

#include <dagger.h>
#include <dagger/darray.h>

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0)
        return 1;
    int rc = 1;

    /* DA = distribute(A, Blocks(4, 4)) for a 16 x 16 matrix A (column-major, like Julia) */
    double a[16 * 16];
    for (int k = 0; k < 16 * 16; k++)
        a[k] = k;
    dagger_darray_t *da = NULL, *r = NULL, *o = NULL, *z = NULL, *spd = NULL, *l = NULL;
    if (dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(4, 4), DAGGER_DIMS(16, 16), a,
                                 NULL, &da) != 0)
        goto out;
    dagger_dims_t g = dagger_darray_grid(da);
    printf("distribute: 16x16 in a %zux%zu grid of 4x4 blocks\n", g.d[0], g.d[1]);

    /* rand(Blocks(20, 20), 100, 100), ones and zeros */
    if (dagger_darray_rand(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(20, 20), DAGGER_DIMS(100, 100), 42,
                           NULL, &r) != 0 ||
        dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(20, 20), DAGGER_DIMS(100, 100), NULL,
                           &o) != 0 ||
        dagger_darray_zeros(ctx, DAGGER_ELT_I32, DAGGER_AUTOBLOCKS, DAGGER_DIMS(10), NULL, &z) != 0)
        goto out;

    /* collect(DA) and sum(DA) */
    double back[16 * 16];
    dagger_value_t sum;
    if (dagger_darray_collect(da, back, sizeof back, 0) != 0 ||
        dagger_darray_reduce(da, DAGGER_OP_ADD, NULL, &sum) != 0)
        goto out;
    printf("collect: back[255] = %g; sum(DA) = %g (expected %g)\n", back[255], sum.u.f,
           255.0 * 256 / 2);
    if (dagger_darray_reduce(r, DAGGER_OP_MEAN, NULL, &sum) != 0)
        goto out;
    printf("mean(rand) = %.3f\n", sum.u.f);

    /* Cholesky of a symmetric positive definite matrix: R * R' + 100 I, blocked 20 x 20 */
    dagger_darray_t *rt = NULL, *rrt = NULL;
    if (dagger_darray_transpose(r, &rt) != 0 || dagger_darray_matmul(r, rt, &rrt) != 0) {
        dagger_darray_release(rt);
        goto out;
    }
    dagger_darray_release(rt);
    if (dagger_darray_broadcast(rrt, o, DAGGER_OP_ADD, NULL, NULL, &spd) != 0) {
        dagger_darray_release(rrt);
        goto out;
    }
    dagger_darray_release(rrt);
    double m[100 * 100];
    if (dagger_darray_collect(spd, m, sizeof m, 0) != 0)
        goto out;
    for (int i = 0; i < 100; i++)
        m[i + i * 100] += 100;
    dagger_darray_release(spd);
    spd = NULL;
    if (dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(20, 20), DAGGER_DIMS(100, 100),
                                 m, NULL, &spd) != 0 ||
        dagger_darray_cholesky(spd, &l) != 0)
        goto out;
    double lv[100 * 100];
    if (dagger_darray_collect(l, lv, sizeof lv, 0) != 0)
        goto out;
    printf("cholesky: L[0,0] = %.4f (sqrt(A[0,0]) = %.4f)\n", lv[0], sqrt(m[0]));
    rc = fabs(lv[0] - sqrt(m[0])) < 1e-9 ? 0 : 1;
out:
    if (rc)
        printf("error: %s\n", dagger_last_errmsg());
    dagger_darray_release(da);
    dagger_darray_release(r);
    dagger_darray_release(o);
    dagger_darray_release(z);
    dagger_darray_release(spd);
    dagger_darray_release(l);
    return dagger_ctx_close(ctx) || rc;
}
