/* tests/test_cpp.cpp - include/dagger.hpp: lambdas and callables, RAII handles, exceptions
 * that carry the root cause; compiled as C++17.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.hpp>

#include <atomic>
#include <string>
#include <vector>

extern "C" { /* cmocka declares its functions without C linkage */
#include "harness.h"
}

static double add(double a, double b) { return a + b; }

TEST(spawn_a_lambda_with_values_and_a_dependency)
{
    dagger::context ctx(2);
    double x = 1.0;
    auto a = dagger::spawn(
        ctx, [](double p, double q) { return p + q; }, x, 2.0);
    auto b = dagger::spawn(
        ctx, [](double p, int q) { return p * q; }, a, 10); /* a is a dep */
    ASSERT_NEAR(a.get(), 3.0, 0);
    ASSERT_NEAR(b.get(), 30.0, 0);
    auto c = dagger::spawn(ctx, add, b, 0.5); /* a plain function */
    ASSERT_NEAR(c.get(), 30.5, 0);
}

TEST(captures_travel_with_the_task)
{
    dagger::context ctx(2);
    int64_t k = 7;                /* fits in a value */
    double big[3] = {1, 2, 3};    /* a blob copy */
    std::string prefix = "item "; /* not trivially copyable: heap copy */
    auto t1 = dagger::spawn(
        ctx, [k](int64_t v) { return v * k; }, 6);
    auto t2 = dagger::spawn(
        ctx, [big](int i) { return big[0] + big[1] + big[2] + i; }, 4);
    auto t3 = dagger::spawn(
        ctx, [prefix](int64_t i) { return prefix + std::to_string(i); }, t1);
    ASSERT_EQ(t1.get(), 42);
    ASSERT_NEAR(t2.get(), 10.0, 0);
    ASSERT_STR_EQ(t3.get().c_str(), "item 42");
}

TEST(strings_in_and_out)
{
    dagger::context ctx(1);
    auto t = dagger::spawn(
        ctx, [](std::string s, const char *t) { return s + "-" + t; }, std::string("ab"), "cd");
    auto u = dagger::spawn(
        ctx, [](std::string_view s) { return s.size(); }, t);
    ASSERT_STR_EQ(t.get().c_str(), "ab-cd");
    ASSERT_EQ(u.get(), 5u);
}

TEST(an_exception_fails_the_task_and_get_throws_the_root_cause)
{
    dagger::context ctx(2);
    auto bad = dagger::spawn(
        ctx,
        [](int v) -> int {
            if (v < 0)
                throw std::runtime_error("negative input " + std::to_string(v));
            return v;
        },
        -3);
    auto down = dagger::spawn(
        ctx, [](int v) { return v + 1; }, bad);
    bool thrown = false;
    try {
        (void)down.get();
    } catch (const dagger::error &e) {
        thrown = true;
        ASSERT_EQ(e.code(), DAGGER_EUPSTREAM);
        ASSERT_STR_HAS(e.what(), "negative input -3"); /* the root cause */
        ASSERT_STR_EQ(e.name(), "DAGGER_EUPSTREAM");
    }
    ASSERT_TRUE(thrown);
    ASSERT_EQ(bad.error_code(), DAGGER_ETASK);
}

TEST(dagger_error_thrown_in_a_body_keeps_its_code)
{
    dagger::context ctx(1);
    auto t = dagger::spawn(ctx, []() -> int { throw dagger::error(DAGGER_EINVAL, "bad knob"); });
    try {
        (void)t.get();
        fail_msg("no exception");
    } catch (const dagger::error &e) {
        ASSERT_EQ(e.code(), DAGGER_EINVAL);
        ASSERT_STR_HAS(e.what(), "bad knob");
    }
}

TEST(handles_are_raii_copies_retain_moves_transfer)
{
    dagger::context ctx(2);
    dagger::task<int64_t> kept;
    {
        auto t = dagger::spawn(ctx, []() { return int64_t{5}; });
        dagger::task<int64_t> copy = t;
        kept = std::move(copy);
        ASSERT_FALSE(static_cast<bool>(copy));
    }
    ASSERT_EQ(kept.get(), 5);
    std::vector<dagger::task<int64_t>> many;
    for (int i = 0; i < 100; i++)
        many.push_back(dagger::spawn(
            ctx, [](int64_t v) { return v * v; }, i));
    int64_t sum = 0;
    for (auto &t : many)
        sum += t.get();
    ASSERT_EQ(sum, 328350);
    many.clear();
    kept = {};
    ctx.close(); /* nothing held: closes cleanly and would throw otherwise */
}

TEST(close_with_a_held_handle_throws_ebusy)
{
    dagger::context ctx(1);
    auto t = dagger::spawn(ctx, []() { return 1; });
    t.wait();
    try {
        ctx.close();
        fail_msg("close did not throw");
    } catch (const dagger::error &e) {
        ASSERT_EQ(e.code(), DAGGER_EBUSY);
        ASSERT_STR_HAS(e.what(), "still held");
    }
    t = {};
    ctx.close();
}

TEST(nested_spawn_and_sync_group)
{
    dagger::context ctx(1);
    dagger_ctx_t *c = ctx.get();
    auto outer = dagger::spawn(
        ctx,
        [c](int64_t n) {
            std::vector<dagger::task<int64_t>> kids;
            for (int64_t i = 1; i <= n; i++)
                kids.push_back(dagger::spawn(
                    c, [](int64_t v) { return v; }, i));
            int64_t s = 0;
            for (auto &k : kids)
                s += k.get(); /* suspends the task, not the only worker */
            return s;
        },
        10);
    ASSERT_EQ(outer.get(), 55);
    std::atomic<int> ran{0};
    std::atomic<int> *rp = &ran;
    {
        dagger::sync_group g(ctx);
        for (int i = 0; i < 8; i++)
            (void)dagger::spawn(ctx, [rp]() { rp->fetch_add(1); });
        g.wait();
    }
    ASSERT_EQ(ran.load(), 8);
}

TEST(detached_spawns_in_a_sync_group_run_and_their_failure_is_thrown_at_its_wait)
{
    dagger::context ctx(2);
    std::atomic<int64_t> sum{0};
    std::atomic<int64_t> *sp = &sum;
    std::string tag = "add"; /* a capture that is not trivially copyable: boxed on the heap */
    {
        dagger::sync_group g(ctx);
        auto in = dagger::spawn(ctx, []() { return int64_t(1000); });
        for (int64_t i = 1; i <= 100; i++)
            dagger::spawn_detached(
                ctx,
                [sp, tag](int64_t base, int64_t v) {
                    sp->fetch_add(base + v + (int64_t)tag.size());
                },
                in, i);
        g.wait();
    }
    ASSERT_EQ(sum.load(), 100 * 1000 + 5050 + 100 * 3);
    bool threw = false;
    try {
        dagger::sync_group g(ctx);
        for (int i = 0; i < 10; i++)
            dagger::spawn_detached(
                ctx,
                [](int k) {
                    if (k == 7)
                        throw dagger::error(DAGGER_ETASK, "detached boom 7");
                },
                i);
        g.wait();
    } catch (const dagger::error &e) {
        threw = true;
        ASSERT_EQ(e.code(), DAGGER_ETASK);
        ASSERT_TRUE(std::string(e.what()).find("detached boom 7") != std::string::npos);
    }
    ASSERT_TRUE(threw);
    bool null_ctx = false;
    try {
        dagger::spawn_detached(static_cast<dagger_ctx_t *>(nullptr), []() {});
    } catch (const dagger::error &e) {
        null_ctx = e.code() == DAGGER_EINVAL &&
                   std::string(e.what()).find("context is NULL") != std::string::npos;
    }
    ASSERT_TRUE(null_ctx);
}

TEST(bad_context_options_throw_with_the_message)
{
    try {
        dagger::context ctx(-1);
        fail_msg("no exception");
    } catch (const dagger::error &e) {
        ASSERT_EQ(e.code(), DAGGER_EINVAL);
        ASSERT_STR_HAS(e.what(), "num_threads -1 is out of range");
    }
}

static std::atomic<int> probes_alive{0};
struct probe { /* not trivially copyable: travels in a heap box */
    std::string tag;
    explicit probe(std::string t) : tag(std::move(t)) { probes_alive++; }
    probe(const probe &o) : tag(o.tag) { probes_alive++; }
    probe(probe &&o) noexcept : tag(std::move(o.tag)) { probes_alive++; }
    ~probe() { probes_alive--; }
};

TEST(callables_of_tasks_that_never_ran_are_freed_at_close)
{
    {
        dagger::context ctx(2);
        auto bad = dagger::spawn(ctx, []() -> int { throw std::runtime_error("no"); });
        probe p("kept");
        auto skipped = dagger::spawn(
            ctx, [p](int v) { return p.tag + std::to_string(v); }, bad);
        auto ran = dagger::spawn(
            ctx, [p](int v) { return p.tag + std::to_string(v); }, 7);
        ASSERT_STR_EQ(ran.get().c_str(), "kept7");
        try {
            (void)skipped.get();
            fail_msg("no exception");
        } catch (const dagger::error &e) {
            ASSERT_EQ(e.code(), DAGGER_EUPSTREAM);
        }
        ASSERT_EQ(probes_alive.load(), 2); /* p, and the box of the task that never ran */
        bad = {};
        skipped = {};
        ran = {};
        ctx.close(); /* frees the box */
        ASSERT_EQ(probes_alive.load(), 1);
    }
    ASSERT_EQ(probes_alive.load(), 0);
}

TEST_LIST(callables_of_tasks_that_never_ran_are_freed_at_close,
          spawn_a_lambda_with_values_and_a_dependency, captures_travel_with_the_task,
          strings_in_and_out, an_exception_fails_the_task_and_get_throws_the_root_cause,
          dagger_error_thrown_in_a_body_keeps_its_code,
          handles_are_raii_copies_retain_moves_transfer, close_with_a_held_handle_throws_ebusy,
          nested_spawn_and_sync_group,
          detached_spawns_in_a_sync_group_run_and_their_failure_is_thrown_at_its_wait,
          bad_context_options_throw_with_the_message)
