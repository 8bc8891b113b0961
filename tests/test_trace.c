/* tests/test_trace.c - tracing end to end: real DAGs spawned through dagger.h.
 *
 * Every case waits through a sync group before reading the trace: a group ends only after
 * each of its tasks has logged its finish event. The buffers and exporters alone are tested in
 * tests/trace/test_trace_unit.c, the outputs with jq, dot and Chromium in tests/trace/.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <unistd.h>

#include "harness.h"

#include "dagger/trace.h"

static int64_t spin_body(int64_t ns)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < ns);
    return ns;
}

static int node(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t s = 0;
    for (size_t i = 0; i < dagger_args_count(a); i++)
        s += dagger_arg_i64(a, i);
    *out = dagger_i64(s + 1);
    return 0;
}

static int boom(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "boom");
}

static int sleepy(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    spin_body(dagger_arg_i64(a, 0));
    return 0;
}

static dagger_trace_stats_t stats_of(dagger_ctx_t *ctx)
{
    dagger_trace_stats_t st;
    ASSERT_OK(dagger_trace_stats(ctx, &st));
    return st;
}

TEST(random_dag_event_counts)
{
    uint64_t seed = test_seed();
    int n = test_level_full() ? 5000 : 500;
    dagger_ctx_t *ctx = test_ctx(4);
    ASSERT_OK(dagger_trace_start(ctx));
    dagger_task_t **t = calloc((size_t)n, sizeof *t);
    uint64_t edges = 0;
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < n; i++) {
        dagger_value_t args[4];
        size_t na = 0;
        int want = i ? (int)(test_rand(&seed) % 4) : 0;
        for (int k = 0; k < want; k++) {
            dagger_task_t *d = t[test_rand(&seed) % (uint64_t)i];
            int dup = 0;
            for (size_t j = 0; j < na; j++)
                dup |= args[j].u.t == d;
            if (!dup)
                args[na++] = dagger_taskv(d);
        }
        edges += na;
        t[i] = dagger_spawn_impl(ctx, NULL, node, "node", args, na);
        ASSERT_PTR(t[i]);
    }
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st = stats_of(ctx);
    ASSERT_EQ(st.tasks, n);
    ASSERT_EQ(st.spawned, n);
    ASSERT_EQ(st.runs, n);
    ASSERT_EQ(st.finished, n);
    ASSERT_EQ(st.edges, edges);
    ASSERT_EQ(st.failed, 0);
    ASSERT_EQ(st.dropped, 0);
    ASSERT_EQ(st.threads, 4);
    ASSERT_TRUE(st.critical_path_ns <= st.busy_ns);
    char buf[4096];
    ASSERT_TRUE(dagger_trace_summary(ctx, buf, sizeof buf) > 0);
    ASSERT_STR_HAS(buf, "node");
    for (int i = 0; i < n; i++)
        dagger_task_release(t[i]);
    free(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(failures_are_counted_and_named)
{
    dagger_ctx_t *ctx = test_ctx(2);
    ASSERT_OK(dagger_trace_start(ctx));
    ASSERT_OK(dagger_sync_begin(ctx));
    dagger_task_t *a = dagger_spawn(ctx, boom);
    dagger_task_t *b = dagger_spawn(ctx, node, a);
    dagger_task_t *c = dagger_spawn(ctx, node, b, 1);
    ASSERT_ERR(dagger_sync_end(ctx), DAGGER_ETASK);
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st = stats_of(ctx);
    ASSERT_EQ(st.tasks, 3);
    ASSERT_EQ(st.failed, 3);
    ASSERT_EQ(st.runs, 1); /* b and c never ran */
    ASSERT_EQ(st.edges, 2);
    char buf[4096];
    ASSERT_TRUE(dagger_trace_summary(ctx, buf, sizeof buf) > 0);
    ASSERT_STR_HAS(buf, "'boom': DAGGER_ETASK");
    ASSERT_STR_HAS(buf, "DAGGER_EUPSTREAM");
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_task_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int fib(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n < 2) {
        *out = dagger_i64(n);
        return 0;
    }
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    dagger_task_t *x = dagger_spawn(ctx, fib, n - 1);
    dagger_task_t *y = dagger_spawn(ctx, fib, n - 2);
    int64_t rx = 0, ry = 0;
    int rc = dagger_fetch_i64(x, &rx);
    if (!rc)
        rc = dagger_fetch_i64(y, &ry);
    dagger_task_release(x);
    dagger_task_release(y);
    if (rc)
        return rc;
    *out = dagger_i64(rx + ry);
    return 0;
}

/* Nested spawn and fetch: a suspended task shows as several runs, one per resume. */
TEST(nested_fetch_runs_and_blocks)
{
    dagger_ctx_t *ctx = test_ctx(2);
    ASSERT_OK(dagger_trace_start(ctx));
    ASSERT_OK(dagger_sync_begin(ctx));
    dagger_task_t *f = dagger_spawn(ctx, fib, 12);
    ASSERT_OK(dagger_sync_end(ctx));
    int64_t r = 0;
    ASSERT_OK(dagger_fetch_i64(f, &r));
    ASSERT_EQ(r, 144);
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st = stats_of(ctx);
    /* fib(12) makes 465 calls; children are spawned inside tasks, outside the group, so wait
     * for nothing more: the root finished after all of them. */
    ASSERT_EQ(st.tasks, 465);
    ASSERT_EQ(st.spawned, 465);
    ASSERT_EQ(st.runs, st.tasks + st.blocks);
    ASSERT_EQ(st.failed, 0);
    dagger_task_release(f);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The parent of a_task_run_inside_another_shows_its_own_time. Argument 0: spin 30 ms, then
 * spawn a child and fetch it (run at once on this thread). Argument 1: open a group, spawn three
 * children in it, spin 30 ms, then end the group (the children run at its end on this thread,
 * back to back, unless another thread took some). Its own length goes to g_parent_ns. */
static _Atomic int64_t g_parent_ns;
static int spin_then_fetch(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    bool group = dagger_arg_i64(a, 0) != 0;
    int rc = 0;
    if (group) {
        rc = dagger_sync_begin(ctx);
        for (int i = 0; i < 3 && rc == 0; i++)
            rc = dagger_spawn_detached(ctx, node);
        if (rc)
            return rc;
    }
    spin_body(30000000);
    int64_t v = 0;
    if (group) {
        rc = dagger_sync_end(ctx);
        v = 1;
    } else {
        dagger_task_t *c = dagger_spawn(ctx, node);
        rc = c ? dagger_fetch_i64(c, &v) : DAGGER_ENOMEM;
        dagger_task_release(c);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    atomic_store(&g_parent_ns, (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec));
    *out = dagger_i64(v);
    return rc;
}

/* A task run inside another's run (a fetch or a group's end in the body runs the child at once
 * on the same thread) starts when it starts, not at the parent's start: the body ran 30 ms
 * since the thread's last time stamp. Before, the child's start leaned on that stamp and its
 * run read 30 ms too long, so the spans summed to twice the parent's time. The children a
 * group's end runs back to back lean on the finish before them (no user code between): that
 * must not hide the parent's 30 ms either. The parent on the one worker (a scope), then on
 * whichever thread takes it; a fetch, then a group. */
TEST(a_task_run_inside_another_shows_its_own_time)
{
    for (int variant = 0; variant < 4; variant++) {
        int64_t group = variant / 2, kids = group ? 3 : 1;
        dagger_ctx_t *ctx = test_ctx(variant % 2 == 0 ? 1 : 2);
        dagger_scope_t *w = variant % 2 == 0 ? dagger_scope_worker(0) : NULL;
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.scope = w;
        ASSERT_OK(dagger_trace_start(ctx));
        dagger_task_t *p = w ? dagger_spawn_opts(ctx, &o, spin_then_fetch, group)
                             : dagger_spawn(ctx, spin_then_fetch, group);
        ASSERT_PTR(p);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(p, &v));
        ASSERT_EQ(v, 1);
        dagger_task_release(p);
        ASSERT_OK(dagger_trace_stop(ctx));
        dagger_trace_stats_t st = stats_of(ctx);
        ASSERT_EQ(st.tasks, 1 + kids);
        ASSERT_EQ(st.runs, st.tasks + st.blocks); /* a parent waits for a stolen child */
        int64_t parent = atomic_load(&g_parent_ns);
        ASSERT_TRUE(parent >= 30000000);
        /* The parent's spans are its body's length and a few microseconds; the children's, the
         * runtime's work around empty bodies. 15 ms of slack for a preempted thread. */
        if (st.busy_ns >= parent + 15000000)
            fprintf(stderr, "variant %d: busy %lld ns, parent's body %lld ns\n", variant,
                    (long long)st.busy_ns, (long long)parent);
        ASSERT_TRUE(st.busy_ns < parent + 15000000);
        dagger_scope_release(w);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* The main thread's group end runs the group's tasks back to back while the one worker is busy
 * with a 60 ms task of the group: the first starts after main's own 30 ms of work since its
 * last stamp (its spawns), the later ones lean on the finish before them. The spans are the 60
 * ms task's and those of three empty ones. */
TEST(a_group_end_on_main_shows_its_tasks_own_time)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_scope_t *w = dagger_scope_worker(0);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = w;
    ASSERT_OK(dagger_trace_start(ctx));
    ASSERT_OK(dagger_sync_begin(ctx));
    ASSERT_OK(dagger_spawn_detached_opts(ctx, &o, sleepy, (int64_t)60000000));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(dagger_spawn_detached(ctx, node));
    spin_body(30000000);
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st = stats_of(ctx);
    ASSERT_EQ(st.tasks, 4);
    ASSERT_EQ(st.runs, 4);
    if (st.busy_ns >= 75000000)
        fprintf(stderr, "busy %lld ns\n", (long long)st.busy_ns);
    ASSERT_TRUE(st.busy_ns < 75000000);
    dagger_scope_release(w);
    ASSERT_OK(dagger_ctx_close(ctx));
}

struct presser {
    dagger_ctx_t *ctx;
    int n;
    int rc;
};

static void *press(void *p)
{
    struct presser *pr = p;
    pr->rc = dagger_sync_begin(pr->ctx);
    dagger_task_t *prev = NULL;
    for (int i = 0; i < pr->n && !pr->rc; i++) {
        dagger_task_t *t =
            prev && i % 4 ? dagger_spawn(pr->ctx, node, prev) : dagger_spawn(pr->ctx, node);
        dagger_task_release(prev);
        prev = t;
    }
    int rc = dagger_sync_end(pr->ctx);
    dagger_task_release(prev);
    if (!pr->rc)
        pr->rc = rc;
    return NULL;
}

/* 8 threads spawn as fast as they can while 4 workers run and log (race-free under TSan). */
TEST(eight_threads_of_spawn_pressure)
{
    enum { P = 8 };
    int n = test_level_full() ? 20000 : 2000;
    dagger_ctx_t *ctx = test_ctx(4);
    ASSERT_OK(dagger_trace_start(ctx));
    pthread_t th[P];
    struct presser pr[P];
    for (int i = 0; i < P; i++) {
        pr[i] = (struct presser){ctx, n, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, press, &pr[i]), 0);
    }
    dagger_trace_stats_t mid;
    ASSERT_OK(dagger_trace_stats(ctx, &mid)); /* a snapshot while recording */
    for (int i = 0; i < P; i++) {
        pthread_join(th[i], NULL);
        ASSERT_OK(pr[i].rc);
    }
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st = stats_of(ctx);
    ASSERT_EQ(st.dropped, 0);
    ASSERT_EQ(st.tasks, (uint64_t)P * n);
    ASSERT_EQ(st.runs, (uint64_t)P * n);
    ASSERT_EQ(st.finished, (uint64_t)P * n);
    ASSERT_EQ(st.edges, (uint64_t)P * (n - (n + 3) / 4));
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(limit_drops_and_counts)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_trace_opts_t o;
    dagger_trace_opts_init(&o);
    o.max_events = 64;
    ASSERT_OK(dagger_trace_start_opts(ctx, &o));
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < 200; i++)
        dagger_task_release(dagger_spawn(ctx, node));
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st = stats_of(ctx);
    ASSERT_TRUE(st.events > 0 && st.events <= 64); /* a sample of whole tasks */
    ASSERT_TRUE(st.dropped >= 200 * 3 - 64);       /* spawn, start, finish at least per task */
    ASSERT_EQ(dagger_trace_dropped(ctx), st.dropped);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* DAGGER_TRACE=path records from open and writes at close, in the format of the extension. */
TEST(env_variable_writes_at_close)
{
    char dir[] = "/tmp/dagger_trace_env_XXXXXX";
    ASSERT_PTR(mkdtemp(dir));
    static const char *const exts[] = {"json", "dot", "html", "txt", "dtrace"};
    for (size_t k = 0; k < 5; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/run.%s", dir, exts[k]);
        setenv("DAGGER_TRACE", path, 1);
        dagger_ctx_t *ctx = test_ctx(2);
        unsetenv("DAGGER_TRACE");
        dagger_task_t *a = dagger_spawn(ctx, sleepy, (int64_t)100000);
        dagger_task_t *b = dagger_spawn(ctx, node, a);
        ASSERT_OK(dagger_wait(b));
        dagger_task_release(a);
        dagger_task_release(b);
        ASSERT_OK(dagger_ctx_close(ctx));
        ASSERT_TRUE(file_size(path) > 50);
    }
    char in[256], out[256];
    snprintf(in, sizeof in, "%s/run.dtrace", dir);
    snprintf(out, sizeof out, "%s/conv.html", dir);
    ASSERT_OK(dagger_trace_convert(in, out));
    dagger_trace_stats_t st;
    ASSERT_OK(dagger_trace_file_summary(in, NULL, &st));
    ASSERT_EQ(st.tasks, 2);
    ASSERT_EQ(st.runs, 2);
    ASSERT_EQ(st.edges, 1);
}

/* Writing while tasks run is a snapshot: it must not disturb the recording. */
TEST(write_while_recording)
{
    dagger_ctx_t *ctx = test_ctx(2);
    ASSERT_OK(dagger_trace_start(ctx));
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < 50; i++)
        dagger_task_release(dagger_spawn(ctx, sleepy, (int64_t)20000));
    ASSERT_OK(dagger_trace_write(ctx, "/tmp/dagger_trace_live.json"));
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_OK(dagger_trace_stop(ctx));
    ASSERT_EQ(stats_of(ctx).runs, 50);
    unlink("/tmp/dagger_trace_live.json");
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(random_dag_event_counts, failures_are_counted_and_named, nested_fetch_runs_and_blocks,
          a_task_run_inside_another_shows_its_own_time,
          a_group_end_on_main_shows_its_tasks_own_time, eight_threads_of_spawn_pressure,
          limit_drops_and_counts, env_variable_writes_at_close, write_while_recording)
