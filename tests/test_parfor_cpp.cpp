/* tests/test_parfor_cpp.cpp - dagger::parallel_for of include/dagger.hpp: a lambda over a range,
 * nested inside a task, and exceptions of a leaf coming back as dagger::error; C++17.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.hpp>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" { /* cmocka declares its functions without C linkage */
#include "harness.h"
}

TEST(lambda_covers_the_range_once)
{
    dagger::context ctx(2);
    std::vector<std::atomic<int>> hits(10000);
    dagger::parallel_for(ctx, -5000, 5000, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; i++)
            hits[(size_t)(i + 5000)]++;
    });
    int wrong = 0;
    for (auto &h : hits)
        wrong += h.load() != 1;
    ASSERT_EQ(wrong, 0);
    std::atomic<int> leaves{0};
    dagger::parallel_for(
        ctx, 0, 100, [&](int64_t, int64_t) { leaves++; }, 25);
    ASSERT_EQ(leaves.load(), 4);
}

TEST(nested_inside_a_task_on_one_thread)
{
    dagger::context ctx(1);
    auto t = dagger::spawn(ctx, [c = ctx.get()]() {
        std::atomic<int64_t> sum{0};
        dagger::parallel_for(c, 0, 1000, [&](int64_t lo, int64_t hi) {
            int64_t s = 0;
            for (int64_t i = lo; i < hi; i++)
                s += i;
            sum += s;
        });
        return sum.load();
    });
    ASSERT_EQ(t.get(), 499500);
}

TEST(leaf_exception_becomes_dagger_error)
{
    dagger::context ctx(1);
    try {
        dagger::parallel_for(
            ctx, 0, 100,
            [](int64_t lo, int64_t hi) {
                if (lo <= 50 && 50 < hi)
                    throw std::runtime_error("bad fifty");
            },
            10);
        fail_msg("no exception");
    } catch (const dagger::error &e) {
        ASSERT_EQ(e.code(), DAGGER_ETASK);
        ASSERT_STR_EQ(e.what(), "parallel_for [50, 56): bad fifty");
    }
    try {
        dagger::parallel_for(ctx, 5, 1, [](int64_t, int64_t) {});
        fail_msg("no exception");
    } catch (const dagger::error &e) {
        ASSERT_EQ(e.code(), DAGGER_EINVAL);
        ASSERT_STR_HAS(e.what(), "end 1 is before begin 5");
    }
}

TEST_LIST(lambda_covers_the_range_once, nested_inside_a_task_on_one_thread,
          leaf_exception_becomes_dagger_error)
