/* tests/test_machine.c - respect for the machine: worker count from the affinity mask and
 * cgroup quota, DAGGER_BIND pinning, the first placement of unbound workers, the topology line.
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dagger/trace.h>

#include "core/core_int.h"
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

/* The affinity mask of worker k of ctx, read by a task that runs there. */
static void worker_affinity(dagger_ctx_t *ctx, int k, cpu_set_t *got)
{
    dagger_scope_t *s = dagger_scope_thread(k);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = s;
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, my_affinity, dagger_ptr(got));
    int64_t th;
    ASSERT_OK(dagger_fetch_i64(t, &th));
    ASSERT_EQ(th, k);
    dagger_task_release(t);
    dagger_scope_release(s);
}

TEST(bind_core_pins_each_worker_inside_the_allowed_set)
{
    setenv("DAGGER_BIND", "core", 1);
    cpu_set_t allowed;
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    dagger_ctx_t *ctx = test_ctx(2);
    cpu_set_t got[2];
    for (int k = 0; k < 2; k++) {
        worker_affinity(ctx, k, &got[k]);
        cpu_set_t outside;
        CPU_XOR(&outside, &got[k], &allowed);
        CPU_AND(&outside, &outside, &got[k]);
        ASSERT_TRUE(CPU_COUNT(&got[k]) >= 1);
        ASSERT_EQ(CPU_COUNT(&outside), 0); /* pinned inside the allowed set */
        /* pinned to one core: fewer CPUs than allowed unless only one core is allowed */
        ASSERT_TRUE(CPU_COUNT(&got[k]) < CPU_COUNT(&allowed) || CPU_COUNT(&allowed) <= 2);
        ASSERT_EQ(dagger__pool_first_cpu(ctx->pool, k), -1); /* the pin, no first placement */
    }
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_BIND");
}

/* Without DAGGER_BIND each worker starts on a CPU of its own (two workers on one CPU while
 * another idled took turns there for milliseconds: src/pool/topo.c), then may run on any
 * allowed CPU: a placement, not a pin. */
TEST(unbound_workers_start_on_cpus_of_their_own_and_may_run_anywhere)
{
    cpu_set_t allowed;
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    dagger_ctx_t *ctx = test_ctx(2);
    int first[2];
    for (int k = 0; k < 2; k++) {
        cpu_set_t got;
        worker_affinity(ctx, k, &got);          /* after the worker's start: first_cpu is set */
        ASSERT_TRUE(CPU_EQUAL(&got, &allowed)); /* not pinned */
        first[k] = dagger__pool_first_cpu(ctx->pool, k);
        if (CPU_COUNT(&allowed) >= 2) {
            ASSERT_TRUE(first[k] >= 0 && CPU_ISSET(first[k], &allowed));
        } else {
            ASSERT_EQ(first[k], -1); /* one CPU: nothing to spread */
        }
    }
    if (CPU_COUNT(&allowed) >= 2)
        ASSERT_NE(first[0], first[1]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The plan: the allowed CPUs in order, round robin past the last, each as often. */
TEST(spread_takes_each_allowed_cpu_in_turn)
{
    cpu_set_t allowed;
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int m = CPU_COUNT(&allowed);
    int *cpus = calloc((size_t)(2 * m + 3), sizeof *cpus);
    ASSERT_PTR(cpus);
    if (m < 2) {
        ASSERT_EQ(dagger__topo_spread(2, cpus), 0);
        free(cpus);
        return;
    }
    ASSERT_EQ(dagger__topo_spread(2 * m, cpus), 1);
    cpu_set_t seen;
    CPU_ZERO(&seen);
    for (int i = 0; i < m; i++) {
        ASSERT_TRUE(CPU_ISSET(cpus[i], &allowed));
        ASSERT_FALSE(CPU_ISSET(cpus[i], &seen)); /* a CPU of its own up to m workers */
        CPU_SET(cpus[i], &seen);
        ASSERT_EQ(cpus[i + m], cpus[i]); /* then round robin */
    }
    /* In CPU order from where it starts: wrapped past the highest allowed CPU at most once. */
    int wraps = 0;
    for (int i = 0; i + 1 < m; i++)
        wraps += cpus[i + 1] < cpus[i];
    ASSERT_TRUE(wraps <= 1);
    ASSERT_TRUE(wraps == 0 || cpus[m - 1] < cpus[0]);
    /* A single allowed CPU: nothing to spread, every worker left to the kernel. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[0], &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    ASSERT_EQ(dagger__topo_spread(3, cpus), 0);
    ASSERT_EQ(cpus[0], -1);
    ASSERT_EQ(cpus[2], -1);
    ASSERT_EQ(sched_setaffinity(0, sizeof allowed, &allowed), 0);
    free(cpus);
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

#ifdef DAGGER_TEST_OPENBLAS
void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha, const double *a,
                 int lda, const double *b, int ldb, double beta, double *c, int ldc);

/* Threads of this process other than dagger's (named dagger-*): main, OpenBLAS's servers, and
 * a sanitizer's own. */
static int foreign_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* ended since the listing */
        if (!fgets(comm, sizeof comm, f))
            comm[0] = 0;
        fclose(f);
        if (strncmp(comm, "dagger-", 7) != 0)
            n++;
    }
    closedir(d);
    return n;
}

static int one_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    *out = dagger_i64(1);
    return 0;
}

/* The only worker of `ctx` has started, and named itself, once it ran a task. */
static void named_worker(dagger_ctx_t *ctx)
{
    dagger_task_t *t = TEST_SPAWN_ON_WORKER(ctx, 0, one_fn); /* main would run it itself */
    int64_t v = 0;
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, 1);
    dagger_task_release(t);
}

/* A 512 x 512 product on OpenBLAS's threads: every entry of (all 1) x (all 2) is 2 * 512. */
static void dgemm_checked(void)
{
    enum { N = 512 };
    double *a = malloc(sizeof(double) * N * N), *b = malloc(sizeof(double) * N * N);
    double *c = calloc((size_t)N * N, sizeof(double));
    ASSERT_TRUE(a && b && c);
    for (int i = 0; i < N * N; i++) {
        a[i] = 1.0;
        b[i] = 2.0;
    }
    cblas_dgemm(101 /* row major */, 111, 111, N, N, N, 1.0, a, N, b, N, 0.0, c, N);
    for (int i = 0; i < N * N; i += 4099)
        ASSERT_TRUE(c[i] == 2.0 * N);
    free(a);
    free(b);
    free(c);
}
#endif

/* OpenBLAS's server threads spin for about 0.1 s after the library loads: with the BLAS set to
 * one thread (dagger_ctx_open's default) they are stopped, and a count > 1 brings them back. */
TEST(blas_idle_threads_stop_when_one_thread_is_set)
{
#ifdef DAGGER_TEST_OPENBLAS
    unsetenv("DAGGER_BLAS_THREADS");
    /* Counted against the process's other threads (a sanitizer's, say): main plus OpenBLAS's. */
    openblas_set_num_threads(2); /* at least one server thread, whatever the core count */
    int with = foreign_threads();
    ASSERT_EQ(dagger_blas_set_threads(1), 1);
    int without = foreign_threads();
    ASSERT_TRUE(without >= 1 && without < with);
    dgemm_checked(); /* one thread: no server started for it */
    ASSERT_EQ(foreign_threads(), without);

    openblas_set_num_threads(2);
    dgemm_checked(); /* OpenBLAS starts its servers again for a threaded call */
    ASSERT_TRUE(foreign_threads() > without);
    dagger_ctx_t *ctx = test_ctx(1);
    named_worker(ctx);
    ASSERT_EQ(foreign_threads(), without); /* the context's default stopped them */
    ASSERT_EQ(openblas_get_num_threads(), 1);
    ASSERT_OK(dagger_ctx_close(ctx));

    openblas_set_num_threads(2);
    dgemm_checked();
    setenv("DAGGER_BLAS_THREADS", "keep", 1);
    ctx = test_ctx(1);
    named_worker(ctx);
    ASSERT_TRUE(foreign_threads() > without); /* kept: left alone */
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_BLAS_THREADS");
#else
    skip();
#endif
}

TEST_LIST(blas_runs_single_threaded_inside_tasks_unless_kept,
          blas_idle_threads_stop_when_one_thread_is_set, trace_header_carries_the_topology,
          cgroup_cpu_max_is_parsed, affinity_of_one_cpu_gives_one_worker,
          default_worker_count_is_the_affinity_mask,
          bind_core_pins_each_worker_inside_the_allowed_set,
          unbound_workers_start_on_cpus_of_their_own_and_may_run_anywhere,
          spread_takes_each_allowed_cpu_in_turn,
          bind_rejects_unknown_values_naming_the_accepted_ones,
          topology_line_names_workers_binding_and_allowed_cpus)
