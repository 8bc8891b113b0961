/* tests/test_machine.c - respect for the machine: worker count from the affinity mask and
 * cgroup quota, DAGGER_BIND pinning, the topology line.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include <dagger/trace.h>

#include "harness.h"
#include "pool/pool.h"

TEST(cgroup_cpu_max_is_parsed)
{
    ASSERT_EQ(dagger__topo_parse_cpu_max("max 100000\n"), 0);
    ASSERT_EQ(dagger__topo_parse_cpu_max("100000 100000\n"), 1);
    ASSERT_EQ(dagger__topo_parse_cpu_max("150000 100000"), 2); /* 1.5 CPUs rounds up */
    ASSERT_EQ(dagger__topo_parse_cpu_max("400000 100000"), 4);
    ASSERT_EQ(dagger__topo_parse_cpu_max("-1 100000"), 0); /* cgroup v1: no limit */
    ASSERT_EQ(dagger__topo_parse_cpu_max("50000"), 1);     /* default period */
    ASSERT_EQ(dagger__topo_parse_cpu_max("bogus 100"), -1);
    ASSERT_EQ(dagger__topo_parse_cpu_max(""), -1);
    /* tests/fuzz/corpus/parse/crash-cpu-max-*: quota + period - 1 overflowed (UBSan). */
    ASSERT_EQ(dagger__topo_parse_cpu_max("9223372036854775807 1"), 1 << 20);
    ASSERT_EQ(dagger__topo_parse_cpu_max("9223372036854775807 100000"), 1 << 20);
    ASSERT_EQ(dagger__topo_parse_cpu_max("50000 9223372036854775807"), 1);
    ASSERT_EQ(dagger__topo_parse_cpu_max("9223372036854775807 9223372036854775807"), 1);
}

/* What `taskset -c <first allowed CPU>` does: the default context then has one worker. */
TEST(affinity_of_one_cpu_gives_one_worker)
{
    unsetenv("DAGGER_NUM_THREADS");
    cpu_set_t all, one;
    ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    int first = 0;
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    ASSERT_EQ(dagger__topo_default_threads(), 1);
    dagger_ctx_t *ctx;
    ASSERT_OK(dagger_ctx_open(&ctx, NULL));
    ASSERT_EQ(dagger_ctx_num_threads(ctx), 1);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
}

TEST(default_worker_count_is_the_affinity_mask)
{
    unsetenv("DAGGER_NUM_THREADS");
    cpu_set_t all;
    ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    int n = dagger__topo_default_threads();
    ASSERT_TRUE(n >= 1 && n <= CPU_COUNT(&all)); /* a cgroup quota may lower it */
}

static int my_affinity(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    cpu_set_t *set = dagger_arg_ptr(a, 0);
    CPU_ZERO(set);
    if (pthread_getaffinity_np(pthread_self(), sizeof *set, set) != 0)
        return dagger_fail(tc, DAGGER_ETASK, "pthread_getaffinity_np failed");
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

TEST(bind_core_pins_each_worker_inside_the_allowed_set)
{
    setenv("DAGGER_BIND", "core", 1);
    cpu_set_t allowed;
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    dagger_ctx_t *ctx = test_ctx(2);
    cpu_set_t got[2];
    for (int k = 0; k < 2; k++) {
        dagger_scope_t *s = dagger_scope_thread(k);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.scope = s;
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, my_affinity, dagger_ptr(&got[k]));
        int64_t th;
        ASSERT_OK(dagger_fetch_i64(t, &th));
        ASSERT_EQ(th, k);
        dagger_task_release(t);
        dagger_scope_release(s);
        cpu_set_t outside;
        CPU_XOR(&outside, &got[k], &allowed);
        CPU_AND(&outside, &outside, &got[k]);
        ASSERT_TRUE(CPU_COUNT(&got[k]) >= 1);
        ASSERT_EQ(CPU_COUNT(&outside), 0); /* pinned inside the allowed set */
        /* pinned to one core: fewer CPUs than allowed unless only one core is allowed */
        ASSERT_TRUE(CPU_COUNT(&got[k]) < CPU_COUNT(&allowed) || CPU_COUNT(&allowed) <= 2);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_BIND");
}

TEST(bind_rejects_unknown_values_naming_the_accepted_ones)
{
    setenv("DAGGER_BIND", "socket", 1);
    dagger_ctx_t *ctx = NULL;
    dagger_opts_t o;
    dagger_opts_init(&o);
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_NULL(ctx);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_BIND='socket' is invalid");
    ASSERT_STR_HAS(dagger_last_errmsg(), "'none'");
    ASSERT_STR_HAS(dagger_last_errmsg(), "'core'");
    setenv("DAGGER_BIND", "none", 1);
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_BIND");
}

TEST(topology_line_names_workers_binding_and_allowed_cpus)
{
    char buf[512];
    dagger__topo_describe(buf, sizeof buf, 3, DAGGER__BIND_CORE);
    ASSERT_STR_HAS(buf, "3 workers, bind=core; machine: ");
    ASSERT_STR_HAS(buf, "CPUs; allowed: ");
    char tiny[8];
    dagger__topo_describe(tiny, sizeof tiny, 3, DAGGER__BIND_NONE); /* truncates, no overflow */
    ASSERT_EQ(strlen(tiny), 7);
}

TEST(trace_header_carries_the_topology)
{
    dagger_ctx_t *ctx = test_ctx(2);
    ASSERT_OK(dagger_trace_start(ctx));
    ASSERT_OK(dagger_trace_stop(ctx));
    char buf[4096];
    ASSERT_TRUE(dagger_trace_summary(ctx, buf, sizeof buf) > 0);
    ASSERT_STR_HAS(buf, "  machine        2 workers, bind=none; machine: ");
    ASSERT_STR_HAS(buf, "allowed: ");
    ASSERT_OK(dagger_ctx_close(ctx));
}

#ifdef DAGGER_TEST_OPENBLAS
int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
#endif

TEST(blas_runs_single_threaded_inside_tasks_unless_kept)
{
#ifdef DAGGER_TEST_OPENBLAS
    openblas_set_num_threads(2);
    unsetenv("DAGGER_BLAS_THREADS");
    dagger_ctx_t *ctx = test_ctx(1);
    ASSERT_EQ(openblas_get_num_threads(), 1);
    ASSERT_OK(dagger_ctx_close(ctx));
    openblas_set_num_threads(2);
    setenv("DAGGER_BLAS_THREADS", "keep", 1);
    ctx = test_ctx(1);
    ASSERT_EQ(openblas_get_num_threads(), 2);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(dagger_blas_set_threads(1), 1); /* one library: OpenBLAS */
    ASSERT_EQ(openblas_get_num_threads(), 1);
#endif
    setenv("DAGGER_BLAS_THREADS", "many", 1);
    dagger_ctx_t *bad = NULL;
    dagger_opts_t o;
    dagger_opts_init(&o);
    ASSERT_ERR(dagger_ctx_open(&bad, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_BLAS_THREADS='many' is invalid: expected 'keep'");
    unsetenv("DAGGER_BLAS_THREADS");
    ASSERT_ERR(dagger_blas_set_threads(0), DAGGER_EINVAL);
}

TEST_LIST(blas_runs_single_threaded_inside_tasks_unless_kept, trace_header_carries_the_topology,
          cgroup_cpu_max_is_parsed, affinity_of_one_cpu_gives_one_worker,
          default_worker_count_is_the_affinity_mask,
          bind_core_pins_each_worker_inside_the_allowed_set,
          bind_rejects_unknown_values_naming_the_accepted_ones,
          topology_line_names_workers_binding_and_allowed_cpus)
