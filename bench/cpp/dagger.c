/* bench/cpp/dagger.c - cpp.spawn_fetch through the C API (the reference of the C++ row).
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <dagger.h>

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0) + dagger_arg_f64(a, 1));
    return 0;
}

int main(int argc, char **argv)
{
    int threads = cpp_init(argc, argv);
    if (threads < 0)
        return 0;
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o) != 0)
        return 1;
    long n = CPP_N;
    dagger_task_t **t = malloc(sizeof *t * (size_t)n);
    double best = 1e300, want = cpp_expected(n);
    for (int r = 0; r < cpp_reps(); r++) {
        double t0 = cpp_now_ns(), s = 0;
        for (long i = 0; i < n; i++)
            t[i] = (i % CPP_DEP_EVERY == 0 && i > 0) ? dagger_spawn(ctx, add, t[i - 1], 0.5)
                                                     : dagger_spawn(ctx, add, (double)i, 0.5);
        for (long i = 0; i < n; i++) {
            double v = 0;
            if (dagger_fetch_f64(t[i], &v) != 0)
                return 1;
            s += v;
        }
        for (long i = 0; i < n; i++)
            dagger_task_release(t[i]);
        double dt = (cpp_now_ns() - t0) / (double)n;
        best = dt < best ? dt : best;
        if (s != want) {
            fprintf(stderr, "ERROR cpp.spawn_fetch (dagger): sum %g, expected %g\n", s, want);
            return 1;
        }
    }
    printf("RESULT|cpp.spawn_fetch|dagger|n=%ld,t=%d|%.4g|ns/task\n", n,
           dagger_ctx_num_threads(ctx), best);
    free(t);
    return dagger_ctx_close(ctx) == 0 ? 0 : 1;
}
