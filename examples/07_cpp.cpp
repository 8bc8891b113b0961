/* examples/07_cpp.cpp - the C++17 layer: lambdas, RAII handles, errors as exceptions. */
#include <dagger.hpp>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

int main()
{
    try {
        dagger::context ctx; /* threads = the CPUs this process may use */
        double x = 1.0;
        auto a = dagger::spawn(
            ctx, [](double p, double q) { return p + q; }, x, 2.0);
        auto b = dagger::spawn(
            ctx, [](double s) { return s * 10; }, a); /* a is a dependency */
        std::printf("(1 + 2) * 10 = %g\n", b.get());

        auto parse = dagger::spawn(
            ctx,
            [](std::string s) -> long {
                size_t used = 0;
                long v = std::stol(s, &used);
                if (used != s.size())
                    throw std::invalid_argument("'" + s + "' is not a number");
                return v;
            },
            "12x");
        auto twice = dagger::spawn(
            ctx, [](long v) { return 2 * v; }, parse);
        try {
            twice.get();
            return 1;
        } catch (const dagger::error &e) { /* DAGGER_EUPSTREAM, naming the root cause */
            std::printf("%s: %s\n", e.name(), e.what());
            if (!std::strstr(e.what(), "'12x' is not a number"))
                return 1; /* another failure (out of memory, ...) came first */
        }
    } catch (const dagger::error &e) {
        std::fprintf(stderr, "dagger: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc &) {
        std::fprintf(stderr, "out of memory\n");
        return 1;
    }
    return 0;
}
