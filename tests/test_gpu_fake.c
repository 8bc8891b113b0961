/* tests/test_gpu_fake.c - device tasks on the fake test device: data movement, ordering of
 * copies before kernels, eviction, and injected failures (runs under TSan).
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dagger.h"
#include "dagger/gpu.h"
#include "dagger/trace.h"
#include "gpu/gpu.h"
#include "harness.h"
#include "sched/cost.h"

#define MIB (1024u * 1024u)

/* A fake kernel: out[i] = in[i] + add over n doubles (out may be in). */
struct kadd {
    dagger_dptr_t in, out;
    size_t n;
    double add;
    int check; /* also verify that in[] holds `expect` everywhere (the copy finished first) */
    double expect;
    _Atomic int bad;
};

static struct kadd kslots[64];
static _Atomic int knext;

static void k_add(void *ud)
{
    struct kadd *k = ud;
    double *in = dagger__gpu_fake_host(k->in), *out = dagger__gpu_fake_host(k->out);
    for (size_t i = 0; i < k->n; i++) {
        if (k->check && in[i] != k->expect)
            atomic_store(&k->bad, 1);
        out[i] = in[i] + k->add;
    }
}

static struct kadd *kslot(void)
{
    struct kadd *k = &kslots[atomic_fetch_add(&knext, 1) % 64];
    memset(k, 0, sizeof *k);
    return k;
}

/* Device body: a new chunk = argument 0 + 1. */
static int inc_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = dagger_chunk_size(dagger_arg_chunk(a, 0));
    dagger_chunk_t *r;
    struct kadd *k = kslot();
    k->in = dagger_arg_dptr(a, 0);
    int rc = dagger_tc_dchunk_create(tc, n, &r, &k->out);
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    k->n = n / sizeof(double);
    k->add = 1;
    rc = dagger__gpu_fake_launch(tc, k_add, k);
    *out = dagger_chunk_give(tc, r);
    return rc;
}

/* Device body: argument 0 += 1 in place. */
static int inc_inplace_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct kadd *k = kslot();
    k->in = k->out = dagger_arg_dptr_rw(a, 0);
    k->n = dagger_chunk_size(dagger_arg_chunk(a, 0)) / sizeof(double);
    k->add = 1;
    return dagger__gpu_fake_launch(tc, k_add, k);
}

/* A host task that writes a chunk in place takes the owner's pointer (dagger_chunk_data), which
 * makes the host copy the only valid one. */
static int inc_inplace_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_chunk_t *c = dagger_arg_chunk(a, 0);
    size_t n = dagger_chunk_size(c) / sizeof(double);
    double *x = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        x[i] += 1;
    return 0;
}

static int cpu_never(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "the CPU body ran instead of the device body");
}

static const dagger_impl_t inc_impls[] = {{DAGGER_IMPL_FAKE, inc_dev}};
static const dagger_impl_t inplace_impls[] = {{DAGGER_IMPL_FAKE, inc_inplace_dev}};

static dagger_chunk_t *filled(dagger_ctx_t *ctx, size_t n, double v)
{
    dagger_chunk_t *c;
    size_t shape[1] = {n};
    ASSERT_OK(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 1, shape, &c));
    double *p = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        p[i] = v;
    return c;
}

static dagger_task_t *spawn_dev(dagger_ctx_t *ctx, dagger_fn_t cpu, const dagger_impl_t *impls,
                                const dagger_scope_t *scope, dagger_chunk_t *c)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = scope;
    o.impls = impls;
    o.nimpls = 1;
    dagger_value_t v = dagger_chunkv(c);
    return dagger_spawnv_opts(ctx, &o, cpu, &v, 1);
}

/* Wait for `t` and fail the case with its message if it failed. */
static void task_ok(dagger_task_t *t)
{
    ASSERT_OK(dagger_wait(t));
    if (dagger_task_error(t))
        fail_msg("task failed: %s", dagger_task_errmsg(t));
}

static double first(dagger_chunk_t *c) { return ((double *)dagger_chunk_data(c))[0]; }

TEST(sum_of_ten_tasks_comes_back_to_the_host)
{
    dagger__gpu_fake_setup(2, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *gpus = dagger_scope_gpu(DAGGER_GPU_FAKE, -1);
    dagger_task_t *t[10];
    for (int i = 0; i < 10; i++) {
        dagger_chunk_t *x = filled(ctx, 4, i);
        t[i] = spawn_dev(ctx, cpu_never, inc_impls, gpus, x);
        dagger_chunk_release(x);
    }
    double sum = 0;
    for (int i = 0; i < 10; i++) {
        dagger_chunk_t *r;
        ASSERT_OK(dagger_fetch_chunk(t[i], &r));
        double *p = dagger_chunk_data(r);
        ASSERT_PTR(p);
        for (int k = 0; k < 4; k++)
            ASSERT_NEAR(p[k], i + 1, 0);
        sum += p[0];
        dagger_task_release(t[i]);
    }
    ASSERT_NEAR(sum, 55, 0);
    dagger_scope_release(gpus);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(copy_finishes_before_the_kernel_that_reads_it)
{
    struct dagger__fake_faults f = {.slow_us = 3000};
    dagger__gpu_fake_setup(1, 64 * MIB, &f);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *x = filled(ctx, MIB / 8, 7.0);
    kslots[0].check = 0;
    dagger_task_t *t = spawn_dev(ctx, cpu_never, inplace_impls, g, x);
    task_ok(t);
    double *p = dagger_chunk_data(x); /* pulls the device copy back */
    for (size_t i = 0; i < MIB / 8; i++)
        if (p[i] != 8.0)
            fail_msg("element %zu is %g, not 8: the kernel ran before the copy", i, p[i]);
    char log[64];
    dagger__gpu_fake_log(log, sizeof log);
    ASSERT_STR_EQ(log, "CKD"); /* copy in, kernel, copy out: in that order */
    dagger_task_release(t);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(chain_alternates_host_and_device_on_one_chunk)
{
    dagger__gpu_fake_setup(1, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *x = filled(ctx, 1000, 0.0);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "step";
    dagger_task_t *prev = NULL;
    for (int i = 0; i < 6; i++) {
        bool dev = i % 2 == 0;
        o.scope = dev ? g : dagger_scope_any();
        o.impls = dev ? inplace_impls : NULL;
        o.nimpls = dev ? 1 : 0;
        o.syncdeps = prev ? &prev : NULL;
        o.nsyncdeps = prev ? 1 : 0;
        dagger_value_t v = dagger_chunkv(x);
        dagger_task_t *t = dagger_spawnv_opts(ctx, &o, inc_inplace_cpu, &v, 1);
        dagger_task_release(prev);
        prev = t;
    }
    task_ok(prev);
    double *p = dagger_chunk_data(x);
    for (int i = 0; i < 1000; i++)
        ASSERT_NEAR(p[i], 6, 0);
    dagger_task_release(prev);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(device_to_device_copy)
{
    dagger__gpu_fake_setup(2, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g0 = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_scope_t *g1 = dagger_scope_gpu(DAGGER_GPU_FAKE, 1);
    dagger_chunk_t *x = filled(ctx, 100, 1.0);
    dagger_task_t *a = spawn_dev(ctx, cpu_never, inc_impls, g0, x);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = g1;
    o.impls = inc_impls;
    o.nimpls = 1;
    dagger_value_t v = dagger_taskv(a);
    dagger_task_t *b = dagger_spawnv_opts(ctx, &o, cpu_never, &v, 1);
    dagger_chunk_t *r;
    ASSERT_OK(dagger_fetch_chunk(b, &r));
    ASSERT_NEAR(first(r), 3, 0);
    char log[64];
    dagger__gpu_fake_log(log, sizeof log);
    ASSERT_TRUE(strchr(log, 'P') != NULL); /* device 0 -> device 1 without the host */
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_chunk_release(x);
    dagger_scope_release(g0);
    dagger_scope_release(g1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(eviction_writes_back_dirty_copies)
{
    /* 12 chunks of 1 MiB on a 4 MiB device: each is updated in place on the device. */
    dagger__gpu_fake_setup(1, 4 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *c[12];
    dagger_task_t *t[12];
    for (int i = 0; i < 12; i++)
        c[i] = filled(ctx, MIB / 8, i);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 12; i++)
            t[i] = spawn_dev(ctx, cpu_never, inplace_impls, g, c[i]);
        for (int i = 0; i < 12; i++) {
            task_ok(t[i]);
            dagger_task_release(t[i]);
        }
    }
    size_t used, limit;
    ASSERT_OK(dagger_gpu_mem_info(0, &used, &limit));
    ASSERT_TRUE(used <= limit);
    ASSERT_EQ(limit, 4 * MIB);
    for (int i = 0; i < 12; i++) {
        double *p = dagger_chunk_data(c[i]);
        ASSERT_NEAR(p[0], i + 2, 0);
        ASSERT_NEAR(p[MIB / 8 - 1], i + 2, 0);
        dagger_chunk_release(c[i]);
    }
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static void expect_failure(const struct dagger__fake_faults *f, size_t mem, size_t n, int code,
                           const char *text)
{
    dagger__gpu_fake_setup(1, mem, f);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *x = filled(ctx, n, 1.0);
    dagger_task_t *t = spawn_dev(ctx, cpu_never, inc_impls, g, x);
    dagger_value_t out;
    ASSERT_ERR(dagger_fetch(t, &out), code);
    ASSERT_STR_HAS(dagger_task_errmsg(t), text);
    dagger_task_release(t);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(allocation_failure_fails_the_task)
{
    struct dagger__fake_faults f = {.fail_alloc = 1};
    expect_failure(&f, 64 * MIB, 16, DAGGER_ENOMEM, "FAKE_ALLOC_FAILED");
}

TEST(copy_error_fails_the_task_with_the_backend_text)
{
    struct dagger__fake_faults f = {.fail_copy = 1};
    expect_failure(&f, 64 * MIB, 16, DAGGER_ETASK, "FAKE_COPY_FAILED");
}

TEST(kernel_error_fails_the_task_with_the_backend_text)
{
    struct dagger__fake_faults f = {.fail_launch = 1};
    expect_failure(&f, 64 * MIB, 16, DAGGER_ETASK, "FAKE_LAUNCH_FAILED");
}

TEST(too_big_task_fails_with_enomem_naming_sizes)
{
    expect_failure(NULL, MIB, 2 * MIB / 8, DAGGER_ENOMEM, "need 2097152 bytes on device(0)");
}

TEST(gpu_scope_without_device_fails_at_fetch)
{
    dagger__gpu_fake_setup(0, 0, NULL);
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_OPENCL, -1);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = g;
    o.impls = inc_impls;
    o.nimpls = 1;
    dagger_task_t *t = dagger_spawnv_opts(ctx, &o, cpu_never, NULL, 0);
    dagger_value_t out;
    ASSERT_ERR(dagger_fetch(t, &out), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "no device of kind opencl was found");
    ASSERT_EQ(dagger_gpu_count(DAGGER_GPU_ANY), 0);
    dagger_task_release(t);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(union_scope_without_device_impl_runs_on_cpu)
{
    dagger__gpu_fake_setup(1, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, -1);
    dagger_scope_t *u = dagger_scope_union(g, dagger_scope_any());
    dagger_chunk_t *x = filled(ctx, 8, 2.0);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = u;
    dagger_value_t v = dagger_chunkv(x);
    dagger_task_t *t = dagger_spawnv_opts(ctx, &o, inc_inplace_cpu, &v, 1);
    task_ok(t);
    ASSERT_NEAR(first(x), 3, 0);
    /* Devices only, and no implementation for them: refused at placement. */
    o.scope = g;
    dagger_task_t *t2 = dagger_spawnv_opts(ctx, &o, inc_inplace_cpu, &v, 1);
    dagger_value_t out;
    ASSERT_ERR(dagger_fetch(t2, &out), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t2), "no implementation");
    dagger_task_release(t);
    dagger_task_release(t2);
    dagger_chunk_release(x);
    dagger_scope_release(u);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(trace_has_a_track_per_device_stream)
{
    dagger__gpu_fake_setup(1, 4 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    ASSERT_OK(dagger_trace_start(ctx));
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *c[6];
    for (int i = 0; i < 6; i++) /* 6 MiB through a 4 MiB device: evictions with write-back */
        c[i] = filled(ctx, MIB / 8, i);
    for (int i = 0; i < 6; i++) {
        dagger_task_t *t = spawn_dev(ctx, cpu_never, inplace_impls, g, c[i]);
        task_ok(t);
        dagger_task_release(t);
    }
    ASSERT_NEAR(first(c[0]), 1, 0); /* pulled back: a d2h copy */
    ASSERT_OK(dagger_trace_stop(ctx));
    char path[64];
    snprintf(path, sizeof path, "/tmp/dagger-gpu-trace-%d.json", (int)getpid());
    ASSERT_OK(dagger_trace_write(ctx, path));
    FILE *f = fopen(path, "r");
    ASSERT_PTR(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (!getenv("DAGGER_TEST_KEEP"))
        unlink(path);
    ASSERT_STR_HAS(buf, "\"name\":\"device(0) copy-in\"");
    ASSERT_STR_HAS(buf, "\"name\":\"device(0) copy-out\"");
    ASSERT_STR_HAS(buf, "\"name\":\"device(0) compute ");
    ASSERT_STR_HAS(buf, "{\"name\":\"h2d\",\"cat\":\"copy\"");
    ASSERT_STR_HAS(buf, "{\"name\":\"writeback\",\"cat\":\"copy\"");
    ASSERT_STR_HAS(buf, "{\"name\":\"d2h\",\"cat\":\"copy\"");
    ASSERT_STR_HAS(buf, "\"cat\":\"device\",\"ph\":\"B\"");
    ASSERT_STR_HAS(buf, "\"cat\":\"device\",\"ph\":\"E\"");
    char want[64];
    snprintf(want, sizeof want, "\"args\":{\"chunk\":%llu,\"bytes\":%u}",
             (unsigned long long)dagger_chunk_id(c[5]), MIB);
    ASSERT_STR_HAS(buf, want);
    for (int i = 0; i < 6; i++)
        dagger_chunk_release(c[i]);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic(pthread_t) body_thread;

/* Device body: record the thread it runs on, then argument 0 + 1 as a new chunk. */
static int where_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store(&body_thread, pthread_self());
    return inc_dev(tc, a, out);
}

static const dagger_impl_t where_impls[] = {{DAGGER_IMPL_FAKE, where_dev}};

TEST(device_body_runs_on_the_placing_thread)
{
    /* Spawned from here: the body runs on this thread (no hop to a worker). A device task
     * placed when its device input completes is placed by the completion thread: a worker runs
     * its body, and the chain still completes with the right value. */
    dagger__gpu_fake_setup(1, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *x = filled(ctx, 4, 1.0);
    dagger_task_t *a = spawn_dev(ctx, cpu_never, where_impls, g, x);
    ASSERT_TRUE(pthread_equal(atomic_load(&body_thread), pthread_self()));
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = g;
    o.impls = inc_impls;
    o.nimpls = 1;
    dagger_value_t v = dagger_taskv(a);
    dagger_task_t *b = dagger_spawnv_opts(ctx, &o, cpu_never, &v, 1);
    dagger_chunk_t *r;
    ASSERT_OK(dagger_fetch_chunk(b, &r));
    ASSERT_NEAR(first(r), 3, 0);
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- CPU or device: the cost model */

#define SLOW_NS (20 * 1000 * 1000L) /* the slow side's run time */

static void sleep_slow(void *ud)
{
    (void)ud;
    struct timespec ts = {0, SLOW_NS};
    nanosleep(&ts, NULL);
}

static void no_work(void *ud) { (void)ud; }

/* Device bodies: enqueue a slow or an empty kernel; the result 1 says "ran on the device". */
static int slow_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(1);
    return dagger__gpu_fake_launch(tc, sleep_slow, NULL);
}

static int quick_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(1);
    return dagger__gpu_fake_launch(tc, no_work, NULL);
}

/* CPU bodies: the result 0 says "ran on a thread". */
static int quick_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(0);
    return 0;
}

static int slow_cpu(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    sleep_slow(NULL);
    *out = dagger_i64(0);
    return 0;
}

static const dagger_impl_t slow_dev_impls[] = {{DAGGER_IMPL_FAKE, slow_dev}};
static const dagger_impl_t quick_dev_impls[] = {{DAGGER_IMPL_FAKE, quick_dev}};

/* Where task `t` ran: 1 for its device body, 0 for its CPU body. Releases it. */
static int64_t ran_on(dagger_task_t *t)
{
    int64_t where = -1;
    ASSERT_OK(dagger_fetch_i64(t, &where));
    dagger_task_release(t);
    return where;
}

/* Run `n` (<= 16) tasks with a scope of threads and the fake device (and opts.expected_time
 * `expected`), one after the other, or with `burst` all spawned before the first is fetched;
 * where[i] = ran_on(task i). */
static void run_choices(dagger_ctx_t *ctx, dagger_fn_t cpu, const dagger_impl_t *impls,
                        double expected, bool burst, int64_t *where, int n)
{
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, -1);
    dagger_scope_t *u = dagger_scope_union(g, dagger_scope_any());
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = u;
    o.impls = impls;
    o.nimpls = 1;
    o.expected_time = expected;
    dagger_task_t *t[16];
    ASSERT_TRUE(n <= 16);
    for (int i = 0; i < n; i++) {
        dagger_value_t v = dagger_i64(i);
        t[i] = dagger_spawnv_opts(ctx, &o, cpu, &v, 1);
        ASSERT_PTR(t[i]);
        if (!burst)
            where[i] = ran_on(t[i]);
    }
    for (int i = 0; burst && i < n; i++)
        where[i] = ran_on(t[i]);
    dagger_scope_release(u);
    dagger_scope_release(g);
}

TEST(cost_model_runs_the_cpu_body_when_the_device_is_slower)
{
    /* Three runs warm the device's history, three the CPU's; then the CPU body (about a
     * microsecond) beats the device body (20 ms) every time. */
    dagger__gpu_fake_setup(1, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    int64_t where[12];
    run_choices(ctx, quick_cpu, slow_dev_impls, 0, false, where, 12);
    for (int i = 0; i < 12; i++)
        ASSERT_EQ(where[i], i < 3 ? 1 : 0);
    double dev = 0, cpu = 0;
    ASSERT_EQ(dagger__cost_expected((const void *)(uintptr_t)slow_dev, DAGGER_PROC_DEVICE, 0, &dev),
              3);
    ASSERT_TRUE(dev >= 0.015); /* the device's run time was measured, not assumed */
    ASSERT_TRUE(
        dagger__cost_expected((const void *)(uintptr_t)quick_cpu, DAGGER_PROC_CPU, 0, &cpu) >= 3);
    ASSERT_TRUE(cpu < dev);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(cost_model_keeps_the_device_when_the_cpu_body_is_slower)
{
    dagger__gpu_fake_setup(1, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    int64_t where[12];
    run_choices(ctx, slow_cpu, quick_dev_impls, 0, false, where, 12);
    for (int i = 0; i < 12; i++)
        ASSERT_EQ(where[i], i >= 3 && i < 6 ? 0 : 1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(cpu_is_learned_with_three_tasks_not_a_burst)
{
    /* The device's history is warm; a burst of 10 spawns comes before any CPU run has ended
     * (each takes 20 ms): 3 of them go to the threads to learn, the rest stay on the device. */
    dagger__gpu_fake_setup(1, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    int64_t where[10];
    run_choices(ctx, slow_cpu, quick_dev_impls, 0, false, where, 3);
    run_choices(ctx, slow_cpu, quick_dev_impls, 0, true, where, 10);
    int on_cpu = 0;
    for (int i = 0; i < 10; i++)
        on_cpu += where[i] == 0;
    ASSERT_EQ(on_cpu, 3);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(expected_time_stands_for_the_cpu_history)
{
    /* opts.expected_time of 1 s on a device that takes 20 ms: the CPU body never runs, not
     * even to learn its time. */
    dagger__gpu_fake_setup(1, 64 * MIB, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    int64_t where[6];
    run_choices(ctx, quick_cpu, slow_dev_impls, 1.0, false, where, 6);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(where[i], 1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(sum_of_ten_tasks_comes_back_to_the_host, copy_finishes_before_the_kernel_that_reads_it,
          chain_alternates_host_and_device_on_one_chunk, device_to_device_copy,
          eviction_writes_back_dirty_copies, allocation_failure_fails_the_task,
          copy_error_fails_the_task_with_the_backend_text,
          kernel_error_fails_the_task_with_the_backend_text,
          too_big_task_fails_with_enomem_naming_sizes, gpu_scope_without_device_fails_at_fetch,
          union_scope_without_device_impl_runs_on_cpu, trace_has_a_track_per_device_stream,
          device_body_runs_on_the_placing_thread,
          cost_model_runs_the_cpu_body_when_the_device_is_slower,
          cost_model_keeps_the_device_when_the_cpu_body_is_slower,
          cpu_is_learned_with_three_tasks_not_a_burst, expected_time_stands_for_the_cpu_history)
