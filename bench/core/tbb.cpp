/* bench/core/tbb.cpp - the core-runtime rows with oneTBB (task_group and flow graph).
 *
 * Independent and recursive tasks use tbb::task_group; rows with dependencies (chain, tree,
 * wavefront) build a flow graph of continue_nodes, as Taskflow's TBB baselines do, and the
 * construction is timed with the run. The nested-loop row uses nesting (each outer task runs
 * f, then spawns its 6 inner tasks), the idiomatic TBB form of "g depends on f".
 * The thread count is set with tbb::global_control(max_allowed_parallelism).
 * SPDX-License-Identifier: MIT
 */
#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_group.h>

#include <memory>
#include <vector>

#include "problem.h"

namespace flow = oneapi::tbb::flow;
using oneapi::tbb::task_group;

static int threads;
static char param[64];

static void set_param(const char *size_key, long long size)
{
    snprintf(param, sizeof param, "%s=%lld,t=%d", size_key, size, threads);
}

typedef flow::continue_node<flow::continue_msg> cnode;

/* ---------------------------------------------------------------- empty */

static void spawn_marks(task_group &tg, unsigned char *mark, long n)
{
    for (long i = 0; i < n; i++)
        tg.run([mark, i] { mark[i] = 1; });
}

static void row_empty(long n, bool ext)
{
    const char *bench = ext ? "core.empty_ext" : "core.empty";
    if (!core_want(bench))
        return;
    std::vector<unsigned char> markv((size_t)n);
    unsigned char *mark = markv.data();
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(mark, 0, (size_t)n);
        double t0 = core_now_ns();
        task_group outer;
        if (ext) {
            spawn_marks(outer, mark, n);
        } else {
            outer.run([mark, n] {
                task_group inner;
                spawn_marks(inner, mark, n);
                inner.wait();
            });
        }
        outer.wait();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        long s = 0;
        for (long i = 0; i < n; i++)
            s += mark[i];
        core_check_i64(bench, "tasks run", s, n);
    }
    set_param("n", n);
    core_result(bench, param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- chain */

static void row_chain(long n)
{
    if (!core_want("core.chain"))
        return;
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        int64_t x = 0;
        std::vector<std::unique_ptr<cnode>> nodes;
        nodes.reserve((size_t)n);
        double t0 = core_now_ns();
        {
            flow::graph g;
            for (long i = 0; i < n; i++) {
                nodes.emplace_back(new cnode(g, [&x](const flow::continue_msg &) { x++; }));
                if (i)
                    flow::make_edge(*nodes[(size_t)i - 1], *nodes[(size_t)i]);
            }
            nodes[0]->try_put(flow::continue_msg());
            g.wait_for_all();
            double dt = core_now_ns() - t0;
            if (dt < best)
                best = dt;
            nodes.clear();
        }
        core_check_i64("core.chain", "last value", x, n);
    }
    set_param("n", n);
    core_result("core.chain", param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- fib */

static int64_t fib_task(int64_t n)
{
    if (n < 2)
        return n;
    int64_t x, y;
    task_group g;
    g.run([&x, n] { x = fib_task(n - 1); });
    g.run([&y, n] { y = fib_task(n - 2); });
    g.wait();
    return x + y;
}

static int64_t fib_cutoff(int64_t n)
{
    if (n <= CORE_FIB_CUTOFF)
        return core_fib_serial(n);
    int64_t x, y;
    task_group g;
    g.run([&x, n] { x = fib_cutoff(n - 1); });
    g.run([&y, n] { y = fib_cutoff(n - 2); });
    g.wait();
    return x + y;
}

static void row_fib(int n, bool cutoff)
{
    const char *bench = cutoff ? "core.fib_cutoff" : "core.fib";
    if (!core_want(bench))
        return;
    double best = 1e300;
    int64_t want = core_fib_serial(n);
    for (int r = 0; r < core_reps(cutoff ? CORE_REPS : CORE_REPS_BIG); r++) {
        int64_t v = 0;
        double t0 = core_now_ns();
        task_group root;
        root.run([&v, n, cutoff] { v = cutoff ? fib_cutoff(n) : fib_task(n); });
        root.wait();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_check_i64(bench, "fib", v, want);
    }
    set_param("n", n);
    if (cutoff)
        core_result(bench, param, best / 1e6, "ms/run");
    else
        core_result(bench, param, best / (double)core_fib_calls(n), "ns/task");
}

/* ---------------------------------------------------------------- nested loops */

/* oneTBB's form of the loop, under both names it pairs with: core.nested (dagger's seed form,
 * tasks with inputs and handles) and core.nested_groups (dagger's outer tasks with a sync group
 * each, this form). */
static void row_nested(const char *bench)
{
    if (!core_want(bench))
        return;
    int64_t b[CORE_NESTED_OUTER][CORE_NESTED_INNER];
    struct core_nested_reps x;
    core_nested_reps_init(&x);
    for (int r = 0; r < x.nrep; r++) {
        double t0 = core_now_ns();
        task_group tg;
        for (int i = 0; i < CORE_NESTED_OUTER; i++) {
            tg.run([&tg, &b, i] {
                int64_t a = core_nested_f(i);
                for (int j = 0; j < CORE_NESTED_INNER; j++)
                    tg.run([&b, a, i, j] { b[i][j] = core_nested_g(a, j); });
            });
        }
        tg.wait();
        double dt = core_now_ns() - t0;
        core_nested_reps_keep(&x, bench, t0, dt, &r, b);
    }
    core_nested_reps_report(&x, bench, threads);
}

/* ---------------------------------------------------------------- a group per task, at scale */

static void row_group_per_task(long n)
{
    const char *bench = "core.group_per_task";
    if (!core_want(bench))
        return;
    std::vector<int64_t> ov((size_t)n * CORE_NESTED_INNER);
    int64_t *o = ov.data();
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        std::fill(ov.begin(), ov.end(), 0);
        double t0 = core_now_ns();
        task_group tg;
        for (long i = 0; i < n; i++) {
            tg.run([o, i] {
                task_group in;
                for (int j = 0; j < CORE_NESTED_INNER; j++)
                    in.run([o, i, j] { o[i * CORE_NESTED_INNER + j] = core_groups_value(i, j); });
                in.wait();
            });
        }
        tg.wait();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_groups_check(bench, o, n);
    }
    set_param("n", n);
    core_result(bench, param, best / ((double)n * (CORE_NESTED_INNER + 1)), "ns/task");
}

/* ---------------------------------------------------------------- binary tree */

static void row_tree(int depth)
{
    if (!core_want("core.tree"))
        return;
    long nodes = (1L << depth) - 1;
    std::vector<int64_t> valv((size_t)nodes + 1); /* heap order, 1-based */
    int64_t *val = valv.data();
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        std::fill(valv.begin(), valv.end(), 0);
        std::vector<std::unique_ptr<cnode>> nv;
        nv.reserve((size_t)nodes + 1);
        double t0 = core_now_ns();
        {
            flow::graph g;
            nv.emplace_back(nullptr);
            nv.emplace_back(new cnode(g, [val](const flow::continue_msg &) { val[1] = 1; }));
            for (long i = 2; i <= nodes; i++) {
                nv.emplace_back(new cnode(
                    g, [val, i](const flow::continue_msg &) { val[i] = val[i / 2] + 1; }));
                flow::make_edge(*nv[(size_t)i / 2], *nv[(size_t)i]);
            }
            nv[1]->try_put(flow::continue_msg());
            g.wait_for_all();
            double dt = core_now_ns() - t0;
            if (dt < best)
                best = dt;
            nv.clear();
        }
        int64_t s = 0;
        for (long i = 1; i <= nodes; i++)
            s += val[i];
        core_check_i64("core.tree", "sum of depths", s, core_tree_expected(depth));
    }
    set_param("depth", depth);
    core_result("core.tree", param, best / (double)nodes, "ns/task");
}

/* ---------------------------------------------------------------- wavefront */

static void row_wavefront(int n)
{
    if (!core_want("core.wavefront"))
        return;
    size_t cells = (size_t)n * (size_t)n;
    std::vector<int64_t> gv(cells);
    int64_t *gr = gv.data();
    double best = 1e300;
    int64_t want = core_wave_expected(n);
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        std::vector<std::unique_ptr<cnode>> nv;
        nv.reserve(cells);
        double t0 = core_now_ns();
        {
            flow::graph g;
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    nv.emplace_back(new cnode(g, [gr, n, i, j](const flow::continue_msg &) {
                        int64_t up = i ? gr[(size_t)(i - 1) * n + j] : 0;
                        int64_t left = j ? gr[(size_t)i * n + j - 1] : 0;
                        gr[(size_t)i * n + j] = core_wave_cell(up, left, i > 0, j > 0);
                    }));
                    if (i)
                        flow::make_edge(*nv[(size_t)(i - 1) * n + j], *nv.back());
                    if (j)
                        flow::make_edge(*nv[(size_t)i * n + j - 1], *nv.back());
                }
            }
            nv[0]->try_put(flow::continue_msg());
            g.wait_for_all();
            double dt = core_now_ns() - t0;
            if (dt < best)
                best = dt;
            nv.clear();
        }
        core_check_i64("core.wavefront", "last cell", gr[cells - 1], want);
    }
    set_param("n", (long long)cells);
    core_result("core.wavefront", param, best / (double)cells, "ns/task");
}

/* ---------------------------------------------------------------- parallel for */

static void row_parfor(long n)
{
    if (!core_want("core.parfor"))
        return;
    std::vector<int64_t> outv((size_t)n);
    int64_t *out = outv.data();
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(out, 0, (size_t)n * sizeof *out);
        double t0 = core_now_ns();
        oneapi::tbb::parallel_for(
            oneapi::tbb::blocked_range<long>(0, n, 1),
            [out](const oneapi::tbb::blocked_range<long> &rg) {
                for (long i = rg.begin(); i < rg.end(); i++)
                    out[i] = core_parfor_f(i);
            },
            oneapi::tbb::simple_partitioner());
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_parfor_check("core.parfor", out, n);
    }
    set_param("n", n);
    core_result("core.parfor", param, best / (double)n, "ns/iteration");
}

/* The same loop at the default grain: a blocked_range with the auto_partitioner; with a grain,
 * the simple_partitioner (leaves of at most `grain` iterations). */
static void row_parfor_range(long n, int grain)
{
    if (!core_want("core.parfor_range"))
        return;
    std::vector<int64_t> outv((size_t)n);
    int64_t *out = outv.data();
    auto body = [out](const oneapi::tbb::blocked_range<long> &rg) {
        for (long i = rg.begin(); i < rg.end(); i++)
            out[i] = core_parfor_f(i);
    };
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS); r++) {
        memset(out, 0, (size_t)n * sizeof *out);
        double t0 = core_now_ns();
        if (grain > 0)
            oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<long>(0, n, (size_t)grain), body,
                                      oneapi::tbb::simple_partitioner());
        else
            oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<long>(0, n), body);
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_parfor_check("core.parfor_range", out, n);
    }
    core_parfor_param(param, sizeof param, n, grain, threads);
    core_result("core.parfor_range", param, best / (double)n, "ns/iteration");
}

/* ---------------------------------------------------------------- round trip */

static int round_trip_one(void)
{
    volatile int ran = 0;
    task_group g;
    g.run([&ran] { ran = 1; });
    g.wait();
    return ran == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int t = core_init(argc, argv, "tbb", "TBB_NUM_THREADS");
    if (t < 0) {
        core_list_rows();
        return 0;
    }
    std::unique_ptr<oneapi::tbb::global_control> gc;
    if (t > 0)
        gc.reset(new oneapi::tbb::global_control(
            oneapi::tbb::global_control::max_allowed_parallelism, (size_t)t));
    threads = (int)oneapi::tbb::global_control::active_value(
        oneapi::tbb::global_control::max_allowed_parallelism);

    core_round_trip(threads, round_trip_one); /* first: its phase=start is the process's start */
    row_empty(CORE_EMPTY_N, false);
    row_empty(CORE_EMPTY_N, true);
    row_chain(CORE_CHAIN_N);
    row_fib(CORE_FIB_N, false);
    row_fib(CORE_FIB_CUTOFF_N, true);
    row_nested("core.nested");
    row_nested("core.nested_groups");
    row_group_per_task(CORE_GROUPS_N);
    row_tree(CORE_TREE_DEPTH);
    row_wavefront(CORE_WAVE_N);
    row_parfor(CORE_PARFOR_N);
    row_parfor_range(CORE_PARFOR_N, 0);
    row_parfor_range(CORE_PARFOR_N, 1);
    return core_exit_code();
}
