/* tests/trace/test_trace_unit.c - the trace layer alone: buffers, limits, model, exporters.
 *
 * Events are fed through the dagger__trace_* hooks (as the runtime would) or as a hand-made
 * snapshot with exact timestamps; a fake context pointer keys the trace. The trace sources are
 * compiled into this binary, so it needs no runtime.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

#include "dagger/trace.h"
#include "trace/trace.h"
#include "trace/trace_int.h"

#define UOK(expr) assert_int_equal((long)(expr), 0)

static int fake1, fake2;
#define CTX ((dagger_ctx_t *)&fake1)
#define CTX2 ((dagger_ctx_t *)&fake2)

/* Hooks as the runtime calls them: through DAGGER__TRACE, so "off" is exercised too. */
static void run_task(uint64_t id, const char *name, int thread, int rc)
{
    DAGGER__TRACE(dagger__trace_spawn(id, name, 1, -1, 0));
    DAGGER__TRACE(dagger__trace_ready(id, -1));
    DAGGER__TRACE(dagger__trace_start(id, thread, 0));
    DAGGER__TRACE(dagger__trace_finish(id, thread, rc));
}

static dagger_trace_stats_t stats_of(dagger_ctx_t *ctx)
{
    dagger_trace_stats_t st;
    UOK(dagger_trace_stats(ctx, &st));
    return st;
}

static char *tmpdir(void)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "/tmp/dagger_trace_unit_XXXXXX");
    assert_non_null(mkdtemp(buf));
    return buf;
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

static char *slurp(const char *path)
{
    long n = file_size(path);
    assert_true(n >= 0);
    char *b = malloc((size_t)n + 1);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    return b;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

TEST(off_by_default_records_nothing)
{
    assert_int_equal(atomic_load(&dagger__trace_on), 0);
    run_task(1, "before", 0, 0); /* not recorded: tracing is off */
    UOK(dagger_trace_start(CTX));
    UOK(dagger_trace_stop(CTX));
    run_task(2, "after", 0, 0);
    dagger_trace_stats_t st = stats_of(CTX);
    assert_int_equal(st.events, 0);
    assert_int_equal(st.tasks, 0);
    assert_int_equal(dagger_trace_dropped(CTX), 0);
}

TEST(counts_of_a_small_dag)
{
    UOK(dagger_trace_start(CTX));
    /* a -> c, b -> c, c -> d; d fails, e cancelled without running, c suspended once. */
    DAGGER__TRACE(dagger__trace_spawn(1, "a", 1, -1, 0));
    DAGGER__TRACE(dagger__trace_spawn(2, "b", 1, -1, 0));
    DAGGER__TRACE(dagger__trace_spawn(3, "c", 1, -1, 0));
    DAGGER__TRACE(dagger__trace_edge(1, 3));
    DAGGER__TRACE(dagger__trace_edge(2, 3));
    DAGGER__TRACE(dagger__trace_edge(2, 3)); /* the same input twice is one dependency */
    DAGGER__TRACE(dagger__trace_spawn(4, "d", 1, -1, 0));
    DAGGER__TRACE(dagger__trace_edge(3, 4));
    DAGGER__TRACE(dagger__trace_spawn(5, "e", 1, -1, 0));
    for (uint64_t id = 1; id <= 2; id++) {
        DAGGER__TRACE(dagger__trace_ready(id, -1));
        DAGGER__TRACE(dagger__trace_start(id, (int)id - 1, 0));
        DAGGER__TRACE(dagger__trace_finish(id, (int)id - 1, 0));
    }
    DAGGER__TRACE(dagger__trace_steal(1, 0, 3));
    DAGGER__TRACE(dagger__trace_start(3, 1, 0));
    DAGGER__TRACE(dagger__trace_block(3, 1, 0));
    DAGGER__TRACE(dagger__trace_park(1));
    DAGGER__TRACE(dagger__trace_wake(1));
    DAGGER__TRACE(dagger__trace_resume(3, 0));
    DAGGER__TRACE(dagger__trace_finish(3, 0, 0));
    DAGGER__TRACE(dagger__trace_start(4, 1, 0));
    DAGGER__TRACE(dagger__trace_error(4, "boom"));
    DAGGER__TRACE(dagger__trace_finish(4, 1, DAGGER_ETASK));
    DAGGER__TRACE(dagger__trace_finish(5, -1, DAGGER_ECANCELED));
    UOK(dagger_trace_stop(CTX));

    dagger_trace_stats_t st = stats_of(CTX);
    assert_int_equal(st.tasks, 5);
    assert_int_equal(st.spawned, 5);
    assert_int_equal(st.runs, 5); /* a, b, c twice, d */
    assert_int_equal(st.edges, 3);
    assert_int_equal(st.finished, 5);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.steals, 1);
    assert_int_equal(st.parks, 1);
    assert_int_equal(st.blocks, 1);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.threads, 2);
    assert_true(st.critical_path_ns > 0 && st.critical_path_ns <= st.busy_ns);

    char buf[4096];
    long n = dagger_trace_summary(CTX, buf, sizeof buf);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    assert_non_null(strstr(buf, "Execution Summary"));
    assert_non_null(strstr(buf, "task 4 'd': DAGGER_ETASK: boom"));
    assert_non_null(strstr(buf, "DAGGER_ECANCELED"));
}

TEST(summary_truncates_like_snprintf)
{
    UOK(dagger_trace_start(CTX));
    run_task(1, "alpha", 0, 0);
    UOK(dagger_trace_stop(CTX));
    char small[10];
    long n = dagger_trace_summary(CTX, small, sizeof small);
    assert_true(n > 9);
    assert_int_equal(strlen(small), 9);
    long n0 = dagger_trace_summary(CTX, NULL, 0);
    assert_int_equal(n0, n);
    assert_int_equal(dagger_trace_summary_file(CTX, stdout), 0);
}

TEST(names_are_copied_unless_static)
{
    UOK(dagger_trace_start(CTX));
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "dyn%d", i % 3);
        DAGGER__TRACE(dagger__trace_spawn((uint64_t)i + 1, name, 0, -1, 0));
        memset(name, 'z', sizeof name - 1);
        name[sizeof name - 1] = '\0';
    }
    UOK(dagger_trace_stop(CTX));
    char buf[8192];
    assert_true(dagger_trace_summary(CTX, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "dyn0"));
    assert_non_null(strstr(buf, "dyn2"));
    assert_null(strstr(buf, "zzzz"));
}

TEST(restart_drops_the_old_recording)
{
    UOK(dagger_trace_start(CTX));
    run_task(1, "one", 0, 0);
    UOK(dagger_trace_stop(CTX));
    assert_int_equal(stats_of(CTX).tasks, 1);
    UOK(dagger_trace_start(CTX));
    run_task(7, "two", 0, 0);
    run_task(8, "two", 0, 0);
    UOK(dagger_trace_stop(CTX));
    assert_int_equal(stats_of(CTX).tasks, 2);
}

static _Atomic int logger_stop;

static void *logger(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    while (!atomic_load(&logger_stop)) {
        run_task(id, "late", 1, 0);
        id += 2;
    }
    return NULL;
}

/* A thread that saw tracing on just before the stop may publish its event after the first
 * write: every snapshot after the stop must still see the same events, so that two files
 * written from one stopped trace agree (trace_script.tool_dag compares them byte for byte). */
TEST(a_stopped_trace_reads_the_same_every_time)
{
    for (int round = 0; round < 200; round++) {
        UOK(dagger_trace_start(CTX));
        atomic_store(&logger_stop, 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, logger, (void *)(uintptr_t)1), 0);
        run_task(2, "main", 0, 0);
        UOK(dagger_trace_stop(CTX));
        dagger_trace_stats_t a = stats_of(CTX);
        sched_yield(); /* let the logger publish whatever it was writing */
        dagger_trace_stats_t b = stats_of(CTX);
        atomic_store(&logger_stop, 1);
        pthread_join(th, NULL);
        dagger_trace_stats_t c = stats_of(CTX);
        assert_int_equal(a.events, b.events);
        assert_int_equal(a.events, c.events);
        assert_int_equal(a.tasks, c.tasks);
        assert_int_equal(a.wall_ns, b.wall_ns);
        assert_int_equal(a.wall_ns, c.wall_ns);
    }
    /* a new recording starts afresh */
    UOK(dagger_trace_start(CTX));
    run_task(1, "again", 0, 0);
    UOK(dagger_trace_stop(CTX));
    assert_int_equal(stats_of(CTX).tasks, 1);
}

TEST(one_context_at_a_time)
{
    UOK(dagger_trace_start(CTX));
    UOK(dagger_trace_start(CTX)); /* already recording: fine */
    assert_int_equal(dagger_trace_start(CTX2), DAGGER_EBUSY);
    assert_int_equal(dagger_trace_stop(CTX2), DAGGER_ESTATE);
    assert_int_equal(dagger_trace_write(CTX2, "/tmp/x.json"), DAGGER_ESTATE);
    assert_int_equal(dagger_trace_start(NULL), DAGGER_EINVAL);
    UOK(dagger_trace_stop(CTX));
    UOK(dagger_trace_stop(CTX)); /* idempotent */
}

struct pressure {
    int w, n;
};

static void *spawn_pressure(void *p)
{
    struct pressure *pr = p;
    for (int i = 0; i < pr->n; i++) {
        uint64_t id = (uint64_t)pr->w * 1000000 + (uint64_t)i + 1;
        char name[16];
        snprintf(name, sizeof name, "w%d", pr->w);
        DAGGER__TRACE(dagger__trace_spawn(id, name, 0, pr->w, 0));
        if (i)
            DAGGER__TRACE(dagger__trace_edge(id - 1, id));
        DAGGER__TRACE(dagger__trace_ready(id, pr->w));
        DAGGER__TRACE(dagger__trace_start(id, pr->w, 0));
        DAGGER__TRACE(dagger__trace_finish(id, pr->w, 0));
        if (i % 1000 == 0) {
            DAGGER__TRACE(dagger__trace_park(pr->w));
            DAGGER__TRACE(dagger__trace_wake(pr->w));
        }
    }
    return NULL;
}

/* 8 threads log at full speed while another thread takes snapshots (race-free under TSan). */
TEST(eight_threads_of_spawn_pressure)
{
    enum { W = 8 };
#if defined(DAGGER_TSAN)
    int n = test_level_full() ? 100000 : 5000; /* 20000 took 17 s under ThreadSanitizer */
#else
    int n = test_level_full() ? 100000 : 20000;
#endif
    UOK(dagger_trace_start(CTX));
    pthread_t th[W];
    struct pressure pr[W];
    for (int w = 0; w < W; w++) {
        pr[w] = (struct pressure){w, n};
        pthread_create(&th[w], NULL, spawn_pressure, &pr[w]);
    }
    for (int k = 0; k < 3; k++) {
        dagger_trace_stats_t mid;
        UOK(dagger_trace_stats(CTX, &mid)); /* a snapshot while recording */
        assert_true(mid.runs <= (uint64_t)W * n);
    }
    for (int w = 0; w < W; w++)
        pthread_join(th[w], NULL);
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t st = stats_of(CTX);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.tasks, (uint64_t)W * n);
    assert_int_equal(st.runs, (uint64_t)W * n);
    assert_int_equal(st.finished, (uint64_t)W * n);
    assert_int_equal(st.edges, (uint64_t)W * (n - 1));
    assert_int_equal(st.parks, (uint64_t)W * ((n + 999) / 1000));
    assert_int_equal(st.threads, W);
    /* Each chain is a path: the critical path is one thread's chain at most. */
    assert_true(st.critical_path_ns <= st.busy_ns);
    char buf[4096];
    assert_true(dagger_trace_summary(CTX, buf, sizeof buf) > 0);
    for (int w = 0; w < W; w++) {
        char name[16];
        snprintf(name, sizeof name, "w%d ", w);
        assert_non_null(strstr(buf, name));
    }
}

static void *emit_n(void *p)
{
    int n = *(int *)p;
    for (int i = 0; i < n; i++)
        DAGGER__TRACE(dagger__trace_ready((uint64_t)i + 1, 0));
    return NULL;
}

TEST(limit_counts_dropped_events)
{
    dagger_trace_opts_t o;
    dagger_trace_opts_init(&o);
    o.max_events = 100;
    UOK(dagger_trace_start_opts(CTX, &o));
    int n = 1000;
    emit_n(&n);
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t st = stats_of(CTX);
    /* Past the limit the trace keeps a sample of whole tasks: at most the limit, the rest
     * counted as dropped. */
    assert_true(st.events > 0 && st.events <= 100);
    assert_int_equal(st.events + st.dropped, 1000);
    assert_int_equal(dagger_trace_dropped(CTX), st.dropped);

    /* Several threads share the budget: kept + dropped is every event and kept never exceeds
     * the limit. Threads reserve the budget a chunk at a time, so a thread that stops in the
     * middle of its chunk leaves that part unused: kept is the limit less at most one chunk
     * per thread. */
    o.max_events = 5000;
    UOK(dagger_trace_start_opts(CTX, &o));
    pthread_t th[4];
    n = 3000;
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, emit_n, &n);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    UOK(dagger_trace_stop(CTX));
    st = stats_of(CTX);
    assert_true(st.events > 0 && st.events <= 5000);
    assert_int_equal(st.events + st.dropped, 12000);
    char buf[4096], want[64];
    assert_true(dagger_trace_summary(CTX, buf, sizeof buf) > 0);
    snprintf(want, sizeof want, "dropped %llu", (unsigned long long)st.dropped);
    assert_non_null(strstr(buf, want));
}

TEST(limit_from_the_environment)
{
    setenv("DAGGER_TRACE_LIMIT", "50", 1);
    UOK(dagger_trace_start(CTX));
    unsetenv("DAGGER_TRACE_LIMIT");
    int n = 80;
    emit_n(&n);
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t st = stats_of(CTX);
    assert_true(st.events > 0 && st.events <= 50);
    assert_int_equal(st.events + st.dropped, 80);
    assert_int_equal(dagger_trace_dropped(CTX), st.dropped);
}

static void *short_lived(void *p)
{
    uint64_t id = (uint64_t)(uintptr_t)p;
    run_task(id, "short", (int)id % 4, 0);
    return NULL;
}

/* Threads come and go (one buffer each, adopted by later threads): nothing is lost. */
TEST(buffers_of_exited_threads_are_kept_and_reused)
{
    UOK(dagger_trace_start(CTX));
    for (int round = 0; round < 20; round++) {
        pthread_t th[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&th[i], NULL, short_lived, (void *)(uintptr_t)(round * 4 + i + 1));
        for (int i = 0; i < 4; i++)
            pthread_join(th[i], NULL);
    }
    UOK(dagger_trace_stop(CTX));
    assert_int_equal(stats_of(CTX).runs, 80);
    dagger__trace_buf_trim(); /* frees the orphans; the next recording starts clean */
    UOK(dagger_trace_start(CTX));
    pthread_t t;
    pthread_create(&t, NULL, short_lived, (void *)(uintptr_t)1000);
    pthread_join(t, NULL);
    UOK(dagger_trace_stop(CTX));
    assert_int_equal(stats_of(CTX).runs, 1);
}

TEST(write_every_format)
{
    UOK(dagger_trace_start(CTX));
    DAGGER__TRACE(dagger__trace_spawn(1, "src<&>\"x\"", 1, -1, 0));
    DAGGER__TRACE(dagger__trace_spawn(2, "sink", 1, -1, 0));
    DAGGER__TRACE(dagger__trace_edge(1, 2));
    DAGGER__TRACE(dagger__trace_start(1, 0, 0));
    DAGGER__TRACE(dagger__trace_finish(1, 0, 0));
    DAGGER__TRACE(dagger__trace_start(2, -1, 0));
    DAGGER__TRACE(dagger__trace_error(2, "bad </script> input"));
    DAGGER__TRACE(dagger__trace_finish(2, -1, DAGGER_ETASK));
    UOK(dagger_trace_stop(CTX));
    char *dir = tmpdir();
    static const char *const exts[] = {"json", "dot", "html", "txt", "dtrace"};
    char path[512];
    for (size_t i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/t.%s", dir, exts[i]);
        UOK(dagger_trace_write(CTX, path));
        assert_true(file_size(path) > 20);
    }
    snprintf(path, sizeof path, "%s/t.json", dir);
    char *j = slurp(path);
    assert_int_equal(count_of(j, "\"cat\":\"task\",\"ph\":\"X\""), 2);
    assert_int_equal(count_of(j, "\"ph\":\"s\""), 1);
    assert_int_equal(count_of(j, "\"ph\":\"f\""), 1);
    assert_non_null(strstr(j, "src<&>\\\"x\\\""));
    assert_non_null(strstr(j, "\"name\":\"external\""));
    free(j);
    snprintf(path, sizeof path, "%s/t.dot", dir);
    char *d = slurp(path);
    assert_non_null(strstr(d, "t1 -> t2"));
    assert_non_null(strstr(d, "#f56565")); /* the failed task is red */
    free(d);
    snprintf(path, sizeof path, "%s/t.html", dir);
    char *h = slurp(path);
    assert_int_equal(count_of(h, "<rect class=\"bar"), 2);
    assert_non_null(strstr(h, "src&lt;&amp;&gt;&quot;x&quot;"));
    assert_null(strstr(h, "bad </script>"));
    assert_non_null(strstr(h, "bad &lt;/script&gt; input"));
    assert_null(strstr(h, "http://www.w3.org/1999/xhtml\" src"));
    free(h);
    snprintf(path, sizeof path, "%s/t.svg", dir);
    assert_int_equal(dagger_trace_write(CTX, path), DAGGER_EINVAL);
    assert_int_equal(dagger_trace_write(CTX, "/nonexistent-dir/t.json"), DAGGER_EIO);
}

TEST(dtrace_round_trip)
{
    UOK(dagger_trace_start(CTX));
    for (uint64_t i = 1; i <= 50; i++) {
        run_task(i, i % 2 ? "odd" : "even", (int)(i % 3), i == 7 ? DAGGER_ETASK : 0);
        if (i > 1)
            DAGGER__TRACE(dagger__trace_edge(i - 1, i));
    }
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t live = stats_of(CTX);
    char *dir = tmpdir();
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/r.dtrace", dir);
    UOK(dagger_trace_write(CTX, in));
    dagger_trace_stats_t st;
    UOK(dagger_trace_file_summary(in, NULL, &st));
    assert_int_equal(st.events, live.events);
    assert_int_equal(st.tasks, live.tasks);
    assert_int_equal(st.runs, live.runs);
    assert_int_equal(st.edges, live.edges);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.wall_ns, live.wall_ns);
    assert_int_equal(st.busy_ns, live.busy_ns);
    assert_int_equal(st.critical_path_ns, live.critical_path_ns);
    snprintf(out, sizeof out, "%s/r.html", dir);
    UOK(dagger_trace_convert(in, out));
    assert_true(file_size(out) > 1000);
    snprintf(out, sizeof out, "%s/r.json", dir);
    UOK(dagger_trace_convert(in, out));
    assert_int_equal(dagger_trace_convert(in, "/tmp/r.unknown"), DAGGER_EINVAL);
}

TEST(dtrace_rejects_damaged_files)
{
    UOK(dagger_trace_start(CTX));
    run_task(1, "x", 0, 0);
    UOK(dagger_trace_stop(CTX));
    char *dir = tmpdir();
    char in[512], bad[512];
    snprintf(in, sizeof in, "%s/ok.dtrace", dir);
    UOK(dagger_trace_write(CTX, in));
    char *b = slurp(in);
    long n = file_size(in);
    snprintf(bad, sizeof bad, "%s/bad.dtrace", dir);
    /* Every truncation fails cleanly; so do a wrong magic and a forged string index. */
    for (long cut = 0; cut < n; cut += 7) {
        FILE *f = fopen(bad, "wb");
        fwrite(b, 1, (size_t)cut, f);
        fclose(f);
        assert_int_equal(dagger_trace_file_summary(bad, NULL, NULL), DAGGER_EINVAL);
    }
    b[0] = 'X';
    FILE *f = fopen(bad, "wb");
    fwrite(b, 1, (size_t)n, f);
    fclose(f);
    assert_int_equal(dagger_trace_file_summary(bad, NULL, NULL), DAGGER_EINVAL);
    free(b);
    assert_int_equal(dagger_trace_file_summary("/nonexistent.dtrace", NULL, NULL), DAGGER_EIO);
}

/* A hand-made snapshot with exact times: runs, critical path and functions are exact. */
TEST(model_is_exact_on_known_times)
{
    char *names[] = {strdup("a"), strdup("b")};
    struct dtr_ev ev[] = {
        /* ts, id, arg, aux, thread, kind, flags */
        {0, 1, 0, 0, -1, DTR_SPAWN, DTR_F_STR},
        {0, 2, 1, 0, -1, DTR_SPAWN, DTR_F_STR},
        {0, 3, 1, 0, -1, DTR_SPAWN, DTR_F_STR},
        {0, 1, 3, 0, -1, DTR_EDGE, 0},
        {0, 2, 3, 0, -1, DTR_EDGE, 0},
        {100, 1, 0, 0, 0, DTR_START, 0},
        {100, 2, 0, 0, 1, DTR_START, 0},
        {400, 1, 0, 0, 0, DTR_FINISH, 0}, /* a: 300 ns */
        {600, 2, 0, 0, 1, DTR_FINISH, 0}, /* b: 500 ns */
        {600, 3, 0, 0, 0, DTR_START, 0},
        {700, 3, 0, 0, 0, DTR_BLOCK, 0},
        {800, 3, 0, 0, 1, DTR_RESUME, 0},
        {1000, 3, 0, 0, 1, DTR_FINISH, 0}, /* b #3: 100 + 200 ns */
    };
    struct dtr_snap s = {.ev = ev,
                         .nev = sizeof ev / sizeof ev[0],
                         .str = names,
                         .nstr = 2,
                         .nthreads = 2,
                         .t0 = 0,
                         .t1 = 1000};
    struct dtr_model m;
    UOK(dagger__trace_model_build(&m, &s));
    assert_int_equal(m.nruns, 4);
    assert_int_equal(m.busy, 300 + 500 + 300);
    assert_int_equal(m.cp_len, 500 + 300); /* b -> b#3 */
    assert_int_equal(m.tasks[m.cp_last].id, 3);
    assert_int_equal(m.tasks[m.tasks[m.cp_last].cp_prev].id, 2);
    assert_int_equal(m.nfns, 2);
    assert_string_equal(dagger__trace_str(&m, m.fns[0].name), "b"); /* most time first */
    assert_int_equal(m.fns[0].total, 800);
    assert_int_equal(m.fns[0].max, 500);
    assert_int_equal(m.fns[0].count, 2);
    assert_int_equal(m.fns[0].runs, 3);
    assert_int_equal(m.wall, 1000);
    dagger__trace_model_free(&m);
    free(names[0]);
    free(names[1]);
}

/* Steps of a two-thread script: each side waits (bounded: 10 s) for the other's step. */
static _Atomic int g_step;

static void wait_step(int want)
{
    for (int i = 0; i < 100000 && atomic_load(&g_step) < want; i++)
        usleep(100);
    assert_true(atomic_load(&g_step) >= want);
}

static void *start_worker(void *arg)
{
    (void)arg;
    DAGGER__TRACE(dagger__trace_start(1, 0, 0)); /* a fresh buffer: stamped */
    DAGGER__TRACE(dagger__trace_finish(1, 0, 0));
    atomic_store(&g_step, 1);
    wait_step(2);                                /* main spawns task 2 after this finish */
    DAGGER__TRACE(dagger__trace_start(2, 0, 0)); /* leans on finish 1, moved to the spawn */
    DAGGER__TRACE(dagger__trace_finish(2, 0, 0));
    DAGGER__TRACE(dagger__trace_spawn_ready(3, "c", 1, 0, 0)); /* on a worker: no stamp either */
    DAGGER__TRACE(dagger__trace_start(3, 0, 0));  /* leans on finish 2 too: 1 ns after the spawn */
    for (uint64_t id = 10; id < 10 + 200; id++) { /* a loop of spawns: one in 64 stamps */
        DAGGER__TRACE(dagger__trace_spawn(id, "d", 1, 0, 0));
        DAGGER__TRACE(dagger__trace_edge(3, id));
    }
    DAGGER__TRACE(dagger__trace_block(3, 0, 0));
    DAGGER__TRACE(dagger__trace_resume(3, 0));
    DAGGER__TRACE(dagger__trace_finish(3, 0, 0));
    return NULL;
}

static const struct dtr_ev *find_ev(const struct dtr_snap *s, int kind, uint64_t id)
{
    for (size_t i = 0; i < s->nev; i++)
        if (s->ev[i].kind == kind && s->ev[i].id == id)
            return &s->ev[i];
    return NULL;
}

TEST(starts_lean_on_the_previous_stamp)
{
    atomic_store(&g_step, 0);
    UOK(dagger_trace_start(CTX));
    DAGGER__TRACE(dagger__trace_spawn_ready(1, "a", 1, -1, 0));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, start_worker, NULL), 0);
    wait_step(1);
    struct timespec d = {0, 200000}; /* the spawn's stamp lies after the finish's */
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_spawn_ready(2, "b", 1, -1, 0));
    atomic_store(&g_step, 2);
    assert_int_equal(pthread_join(th, NULL), 0);
    UOK(dagger_trace_stop(CTX));
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *f1 = find_ev(&s, DTR_FINISH, 1), *sp2 = find_ev(&s, DTR_SPAWN, 2),
                        *s2 = find_ev(&s, DTR_START, 2), *f2 = find_ev(&s, DTR_FINISH, 2),
                        *s3 = find_ev(&s, DTR_START, 3), *b3 = find_ev(&s, DTR_BLOCK, 3),
                        *r3 = find_ev(&s, DTR_RESUME, 3), *sp3 = find_ev(&s, DTR_SPAWN, 3);
    assert_true(f1 && sp2 && s2 && f2 && s3 && b3 && r3 && sp3);
    assert_true(sp2->ts >= f1->ts + 100000);
    assert_int_equal(s2->ts, sp2->ts); /* never before its task was ready */
    assert_true(s3->ts > f2->ts);
    assert_int_equal(sp3->ts, f2->ts + 1); /* the thread's previous stamp: no clock read */
    assert_int_equal(s3->ts, sp3->ts + 1); /* after it, in the thread's order */
    assert_int_equal(r3->ts, b3->ts + 1);
    /* Spawns and edges logged inside task 3's run keep the thread's order and lie within it. */
    int64_t prev = s3->ts;
    for (uint64_t id = 10; id < 10 + 200; id++) {
        const struct dtr_ev *sp = find_ev(&s, DTR_SPAWN, id), *ed = find_ev(&s, DTR_EDGE, 3);
        assert_non_null(sp);
        assert_true(sp->ts > prev);
        assert_true(sp->ts < b3->ts);
        for (size_t i = 0; i < s.nev; i++)
            if (s.ev[i].kind == DTR_EDGE && s.ev[i].arg == id)
                ed = &s.ev[i];
        assert_true(ed && ed->arg == id && ed->ts > sp->ts && ed->ts < b3->ts);
        prev = ed->ts;
    }
    for (size_t i = 0; i < s.nev; i++)
        assert_int_equal(s.ev[i].flags & DTR_F_INFER, 0); /* never leaves the live buffers */
    struct dtr_model m;
    UOK(dagger__trace_model_build(&m, &s));
    assert_int_equal(m.nruns, 4);
    for (size_t i = 1; i < m.nruns; i++) /* one thread: runs in order, none overlapping */
        assert_true(m.runs[i].t0 >= m.runs[i - 1].t1);
    dagger__trace_model_free(&m);
    dagger__trace_snap_free(&s);
}

/* On a thread outside the pool a start takes its own stamp, but for the start of the task that
 * the thread runs at once inside the spawn that made it (dagger__trace_follow names it): that
 * one lies right after its spawn. Naming another task changes nothing. */
TEST(a_start_right_after_its_spawn_leans_on_it_off_the_pool)
{
    UOK(dagger_trace_start(CTX));
    DAGGER__TRACE(dagger__trace_spawn_ready(20, "u", 1, -1, 0));
    DAGGER__TRACE(dagger__trace_follow(20));
    DAGGER__TRACE(dagger__trace_start(20, -1, 0));
    DAGGER__TRACE(dagger__trace_finish(20, -1, 0));
    struct timespec d = {0, 200000};
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_start(21, -1, 0)); /* follow still names 20 */
    DAGGER__TRACE(dagger__trace_finish(21, -1, 0));
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_follow(30));
    DAGGER__TRACE(dagger__trace_start(31, -1, 0));
    UOK(dagger_trace_stop(CTX));
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *sp20 = find_ev(&s, DTR_SPAWN, 20), *s20 = find_ev(&s, DTR_START, 20),
                        *f20 = find_ev(&s, DTR_FINISH, 20), *s21 = find_ev(&s, DTR_START, 21),
                        *f21 = find_ev(&s, DTR_FINISH, 21), *s31 = find_ev(&s, DTR_START, 31);
    assert_true(sp20 && s20 && f20 && s21 && f21 && s31);
    assert_int_equal(s20->ts, sp20->ts + 1); /* no clock read of its own */
    assert_true(s21->ts >= f20->ts + 100000);
    assert_true(s31->ts >= f21->ts + 100000);
    for (size_t i = 0; i < s.nev; i++)
        assert_int_equal(s.ev[i].flags & DTR_F_INFER, 0);
    dagger__trace_snap_free(&s);
}

/* A ready on a worker takes the thread's previous stamp (the finish of its input, just before);
 * on a thread outside the pool it reads the clock. */
TEST(a_ready_on_a_worker_leans_on_the_finish_before_it)
{
    UOK(dagger_trace_start(CTX));
    DAGGER__TRACE(dagger__trace_finish(40, 0, 0));
    DAGGER__TRACE(dagger__trace_ready(41, 0));
    DAGGER__TRACE(dagger__trace_finish(50, -1, 0));
    struct timespec d = {0, 200000};
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_ready(51, -1));
    UOK(dagger_trace_stop(CTX));
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *f40 = find_ev(&s, DTR_FINISH, 40), *r41 = find_ev(&s, DTR_READY, 41),
                        *f50 = find_ev(&s, DTR_FINISH, 50), *r51 = find_ev(&s, DTR_READY, 51);
    assert_true(f40 && r41 && f50 && r51);
    assert_int_equal(r41->ts, f40->ts + 1);
    assert_true(r51->ts >= f50->ts + 100000);
    dagger__trace_snap_free(&s);
}

/* A start nested in another task's run (a fetch in its body ran it at once) reads the clock on
 * a worker too: the body ran since the thread's last stamp; but for the one a help loop names
 * (dagger__trace_follow) right after a finish. A start that no run encloses leans on that stamp. A
 * spawn inside a task's run leans on any thread (the main thread running a task it fetched); one
 * from a thread's own code reads the clock. */
TEST(a_nested_start_reads_the_clock_and_a_spawn_in_a_task_leans)
{
    struct timespec d = {0, 200000};
    UOK(dagger_trace_start(CTX));
    DAGGER__TRACE(dagger__trace_finish(60, 0, 0));
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_start(61, 0, 1)); /* nested in a run on worker 0 */
    DAGGER__TRACE(dagger__trace_start(62, 0, 0)); /* none encloses it: leans on 61's stamp */
    DAGGER__TRACE(dagger__trace_finish(62, 0, 0));
    DAGGER__TRACE(dagger__trace_follow(63)); /* run by a help loop right after 62's finish */
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_start(63, 0, 1));
    DAGGER__TRACE(dagger__trace_finish(70, -1, 0));
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_spawn_ready(71, "m", 1, -1, 1)); /* inside a task, off the pool */
    nanosleep(&d, NULL);
    DAGGER__TRACE(dagger__trace_spawn_ready(72, "m", 1, -1, 0)); /* the thread's own code */
    UOK(dagger_trace_stop(CTX));
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *f60 = find_ev(&s, DTR_FINISH, 60), *s61 = find_ev(&s, DTR_START, 61),
                        *s62 = find_ev(&s, DTR_START, 62), *f70 = find_ev(&s, DTR_FINISH, 70),
                        *sp71 = find_ev(&s, DTR_SPAWN, 71), *sp72 = find_ev(&s, DTR_SPAWN, 72),
                        *f62 = find_ev(&s, DTR_FINISH, 62), *s63 = find_ev(&s, DTR_START, 63);
    assert_true(f60 && s61 && s62 && f70 && sp71 && sp72 && f62 && s63);
    assert_true(s61->ts >= f60->ts + 100000);
    assert_int_equal(s62->ts, s61->ts + 1);
    assert_int_equal(s63->ts, f62->ts + 1); /* nested, but named by follow: no clock read */
    assert_int_equal(sp71->ts, f70->ts + 1);
    assert_true(sp72->ts >= sp71->ts + 100000);
    dagger__trace_snap_free(&s);
}

/* Events that lean on a stamp sit 1 ns apart after it (a spawn and an edge inside a task's run on
 * a worker; one spawn in 64 reads the clock). A loop of them may run faster than that on a fast
 * core, and a stamped one then came out before the events just before it, against the thread's
 * order (starts_lean_on_the_previous_stamp failed one run in 3 to 100 that way on a 2-core VM).
 * Such a stamp moves 1 ns after the event before it: a thread's events keep their order. */
static void *fast_loop_worker(void *arg)
{
    (void)arg;
    DAGGER__TRACE(dagger__trace_start(30, 0, 1)); /* nested: stamped */
    for (uint64_t id = 1000; id < 1000 + 5000; id++) {
        DAGGER__TRACE(dagger__trace_spawn(id, "e", 1, 0, 1));
        DAGGER__TRACE(dagger__trace_edge(30, id));
    }
    DAGGER__TRACE(dagger__trace_finish(30, 0, 0)); /* stamped */
    return NULL;
}

TEST(a_stamp_after_a_fast_loop_of_leaning_events_keeps_the_order)
{
    UOK(dagger_trace_start(CTX));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fast_loop_worker, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    UOK(dagger_trace_stop(CTX));
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *st = find_ev(&s, DTR_START, 30), *fi = find_ev(&s, DTR_FINISH, 30);
    assert_true(st && fi);
    int64_t prev = st->ts; /* the thread's order: spawn id, then its edge, for each id */
    for (uint64_t id = 1000; id < 1000 + 5000; id++) {
        const struct dtr_ev *sp = find_ev(&s, DTR_SPAWN, id), *ed = NULL;
        for (size_t i = 0; i < s.nev && !ed; i++)
            if (s.ev[i].kind == DTR_EDGE && s.ev[i].arg == id)
                ed = &s.ev[i];
        if (!sp) /* thinned out by the sample: its edge goes with it */
            continue;
        assert_true(ed != NULL);
        assert_true(sp->ts > prev);
        assert_true(ed->ts > sp->ts);
        prev = ed->ts;
    }
    assert_true(fi->ts > prev);
    dagger__trace_snap_free(&s);
}

TEST_LIST(off_by_default_records_nothing, counts_of_a_small_dag, summary_truncates_like_snprintf,
          names_are_copied_unless_static, restart_drops_the_old_recording, one_context_at_a_time,
          a_stopped_trace_reads_the_same_every_time, eight_threads_of_spawn_pressure,
          limit_counts_dropped_events, limit_from_the_environment,
          buffers_of_exited_threads_are_kept_and_reused, write_every_format, dtrace_round_trip,
          dtrace_rejects_damaged_files, model_is_exact_on_known_times,
          starts_lean_on_the_previous_stamp, a_start_right_after_its_spawn_leans_on_it_off_the_pool,
          a_ready_on_a_worker_leans_on_the_finish_before_it,
          a_nested_start_reads_the_clock_and_a_spawn_in_a_task_leans,
          a_stamp_after_a_fast_loop_of_leaning_events_keeps_the_order)
