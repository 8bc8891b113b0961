/* bench/cpp/cpp.cpp - cpp.spawn_fetch through include/dagger.hpp (lambdas, RAII handles).
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <dagger.hpp>
#include <vector>

int main(int argc, char **argv)
{
    int threads = cpp_init(argc, argv);
    if (threads < 0)
        return 0;
    dagger::context ctx(threads);
    long n = CPP_N;
    std::vector<dagger::task<double>> t;
    t.reserve((size_t)n);
    double best = 1e300, want = cpp_expected(n);
    auto add = [](double a, double b) { return a + b; };
    for (int r = 0; r < cpp_reps(); r++) {
        double t0 = cpp_now_ns(), s = 0;
        for (long i = 0; i < n; i++)
            t.push_back((i % CPP_DEP_EVERY == 0 && i > 0)
                            ? dagger::spawn(ctx, add, t[i - 1], 0.5)
                            : dagger::spawn(ctx, add, (double)i, 0.5));
        for (auto &x : t)
            s += x.get();
        t.clear();
        double dt = (cpp_now_ns() - t0) / (double)n;
        best = dt < best ? dt : best;
        if (s != want) {
            fprintf(stderr, "ERROR cpp.spawn_fetch (cpp): sum %g, expected %g\n", s, want);
            return 1;
        }
    }
    printf("RESULT|cpp.spawn_fetch|cpp|n=%ld,t=%d|%.4g|ns/task\n", n, ctx.num_threads(), best);
    return 0;
}
