/* tests/consume/main.c - an outside program using an installed (or add_subdirectory'd) dagger.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <stdio.h>
#include <string.h>

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0) + dagger_arg_f64(a, 1));
    return 0;
}

int main(void)
{
    if (dagger_version_number() !=
        DAGGER_VERSION_MAJOR * 10000 + DAGGER_VERSION_MINOR * 100 + DAGGER_VERSION_PATCH) {
        fprintf(stderr, "header version differs from library version %s\n", dagger_version());
        return 1;
    }
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0) {
        fprintf(stderr, "dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    dagger_task_t *x = dagger_spawn(ctx, add, 1.0, 2.0);
    dagger_task_t *y = dagger_spawn(ctx, add, x, 3.0);
    double r = 0;
    int rc = dagger_fetch_f64(y, &r);
    dagger_task_release(x);
    dagger_task_release(y);
    if (dagger_ctx_close(ctx) != 0 || rc != 0 || r != 6.0) {
        fprintf(stderr, "wrong result: rc=%d r=%g\n", rc, r);
        return 1;
    }
    printf("consume ok: dagger %s, 1 + 2 + 3 = %g\n", dagger_version(), r);
    return 0;
}
