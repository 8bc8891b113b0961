/* examples/01_spawn_fetch.c - spawn tasks, pass a task to a task, fetch the result. */
#include <dagger.h>
#include <stdio.h>

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0) + dagger_arg_f64(a, 1));
    return 0;
}

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0) { /* threads = cores; reads DAGGER_* env */
        fprintf(stderr, "dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    dagger_task_t *x = dagger_spawn(ctx, add, 1.0, 2.0);
    dagger_task_t *y = dagger_spawn(ctx, add, x, 3.0); /* x is a dependency: add gets its value */
    double r = 0;
    if (dagger_fetch_f64(y, &r) != 0)
        fprintf(stderr, "%s\n", dagger_task_errmsg(y));
    printf("(1 + 2) + 3 = %g\n", r);
    dagger_task_release(x);
    dagger_task_release(y);
    return dagger_ctx_close(ctx) == 0 && r == 6.0 ? 0 : 1;
}
