/* tests/test_mpi_spmd.c - SPMD mode: every rank runs each case with a context of its own
 * (DAGGER_OPEN_SPMD), under mpirun (tests/mpi_run.sh, 2 ranks; test_mpi_spmd4 on 4).
 *
 * Collectives are checked by value (broadcast and gathered bytes), a barrier by the files every
 * rank writes before it and reads after it, the suspension of a task inside a collective by a
 * job that could not finish if the collective blocked the only worker thread, and errors by
 * code and message. The lost-rank case kills a rank, so each case runs in a job of its own.
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dagger/chunk.h"
#include "harness.h"

static dagger_ctx_t *open_spmd(int threads)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    o.flags = DAGGER_OPEN_SPMD;
    dagger_ctx_t *ctx = NULL;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    ASSERT_PTR(ctx);
    return ctx;
}

/* A folder every rank sees: rank 0 makes it and broadcasts its path. */
static void shared_dir(dagger_ctx_t *ctx, char path[256])
{
    memset(path, 0, 256);
    if (dagger_ctx_rank(ctx) == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, 256, "%s/dagger_spmd_XXXXXX", tmp && *tmp ? tmp : "/tmp");
        ASSERT_PTR(mkdtemp(path));
    }
    ASSERT_OK(dagger_bcast(ctx, 0, path, 256));
    ASSERT_TRUE(path[0] == '/');
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ASSERT_PTR(f);
    fclose(f);
}

static bool exists(const char *dir, const char *name)
{
    char p[512];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT_PTR(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

TEST(every_rank_runs_main)
{
    dagger_ctx_t *ctx = open_spmd(2);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx);
    ASSERT_TRUE(n >= 2);
    ASSERT_TRUE(me >= 0 && me < n);
    /* every rank reports its rank and pid to rank 0: all ranks, all distinct processes */
    int64_t mine[2] = {me, getpid()}, all[2 * 8];
    ASSERT_TRUE(n <= 8);
    ASSERT_OK(dagger_gather(ctx, 0, mine, sizeof mine, me == 0 ? all : NULL));
    if (me == 0) {
        for (int r = 0; r < n; r++) {
            ASSERT_EQ(all[2 * r], r);
            for (int q = 0; q < r; q++)
                ASSERT_NE(all[2 * r + 1], all[2 * q + 1]);
        }
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(bcast_and_gather_values)
{
    dagger_ctx_t *ctx = open_spmd(2);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx), root = n - 1;
    /* 100 KiB from the last rank: every byte arrives */
    size_t big = 100 * 1024;
    unsigned char *b = malloc(big);
    ASSERT_PTR(b);
    for (size_t i = 0; i < big; i++)
        b[i] = me == root ? (unsigned char)(i * 7 + 3) : 0;
    ASSERT_OK(dagger_bcast(ctx, root, b, big));
    for (size_t i = 0; i < big; i++)
        if (b[i] != (unsigned char)(i * 7 + 3))
            fail_msg("byte %zu is %u on rank %d", i, b[i], me);
    free(b);
    /* a double from rank 0, and nothing at all */
    double x = me == 0 ? 3.25 : -1;
    ASSERT_OK(dagger_bcast(ctx, 0, &x, sizeof x));
    ASSERT_NEAR(x, 3.25, 0);
    ASSERT_OK(dagger_bcast(ctx, 0, NULL, 0));
    /* gather three numbers per rank on rank 1 */
    int64_t mine[3] = {me, (int64_t)me * me, 42}, all[3 * 8];
    ASSERT_OK(dagger_gather(ctx, 1, mine, sizeof mine, me == 1 ? all : NULL));
    if (me == 1)
        for (int r = 0; r < n; r++) {
            ASSERT_EQ(all[3 * r], r);
            ASSERT_EQ(all[3 * r + 1], r * r);
            ASSERT_EQ(all[3 * r + 2], 42);
        }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Round k: every rank writes k.<rank>, then the barrier; after it, every rank sees every file
 * of round k. */
TEST(barrier_orders_files)
{
    dagger_ctx_t *ctx = open_spmd(2);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx);
    char dir[256];
    shared_dir(ctx, dir);
    for (int k = 0; k < 3; k++) {
        char name[32];
        if (me == k % n)
            usleep(200 * 1000); /* one rank late each round: the others must wait for it */
        snprintf(name, sizeof name, "%d.%d", k, me);
        touch(dir, name);
        ASSERT_OK(dagger_barrier(ctx));
        for (int r = 0; r < n; r++) {
            snprintf(name, sizeof name, "%d.%d", k, r);
            if (!exists(dir, name))
                fail_msg("rank %d: after barrier %d, %s is missing", me, k, name);
        }
    }
    ASSERT_OK(dagger_barrier(ctx)); /* every rank checked before the folder goes */
    if (me == 0)
        remove_dir(dir);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static char g_dir[256];
static _Atomic int g_entered, g_b_ran, g_seen_b;

/* A: enters a barrier, which cannot complete before B ran (the other ranks join it only once
 * B's file exists): B can run only if A's worker thread is free while A waits. */
static int in_barrier(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store(&g_entered, 1);
    int rc = dagger_barrier(dagger_tc_ctx(tc));
    atomic_store(&g_seen_b, atomic_load(&g_b_ran));
    *out = dagger_i64(rc);
    return 0;
}

static int mark_b(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store(&g_b_ran, 1);
    touch(g_dir, "b_done");
    return 0;
}

/* Each rank gathers its rank to the root from inside a task. */
static int gather_in_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx);
    int32_t v = 100 + me, all[8];
    int rc = dagger_gather(ctx, 0, &v, sizeof v, all);
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    int64_t sum = 0;
    for (int r = 0; me == 0 && r < n; r++)
        sum += all[r];
    *out = dagger_i64(sum);
    return 0;
}

static int count_up(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

TEST(collective_in_task_frees_the_thread)
{
    dagger_ctx_t *ctx = open_spmd(1); /* one worker thread per rank */
    ASSERT_EQ(dagger_ctx_num_threads(ctx), 1);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx);
    shared_dir(ctx, g_dir);
    if (me == 0) {
        dagger_task_t *a = dagger_spawn(ctx, in_barrier);
        for (int i = 0; i < 20000 && !atomic_load(&g_entered); i++)
            usleep(1000);
        ASSERT_TRUE(atomic_load(&g_entered));
        dagger_task_t *b = dagger_spawn(ctx, mark_b);
        ASSERT_OK(dagger_fetch(b, NULL)); /* runs on the thread A waits on */
        int64_t rc;
        ASSERT_OK(dagger_fetch_i64(a, &rc));
        ASSERT_EQ(rc, 0);
        ASSERT_EQ(atomic_load(&g_seen_b), 1);
        dagger_task_release(a);
        dagger_task_release(b);
    } else {
        int i = 0;
        while (!exists(g_dir, "b_done") && i++ < 30000)
            usleep(1000);
        ASSERT_TRUE(exists(g_dir, "b_done")); /* (then rank 0's barrier never completes) */
        ASSERT_OK(dagger_barrier(ctx));
    }
    /* A gather inside a task while a chain of tasks keeps the same single thread busy. */
    dagger_task_t *g = dagger_spawn(ctx, gather_in_task);
    dagger_task_t *c = dagger_spawn(ctx, count_up, (int64_t)0);
    for (int k = 0; k < 50; k++) {
        dagger_task_t *next = dagger_spawn(ctx, count_up, c);
        dagger_task_release(c);
        c = next;
    }
    int64_t cnt, sum;
    ASSERT_OK(dagger_fetch_i64(c, &cnt));
    ASSERT_EQ(cnt, 51);
    ASSERT_OK(dagger_fetch_i64(g, &sum));
    if (me == 0)
        ASSERT_EQ(sum, 100 * n + n * (n - 1) / 2);
    dagger_task_release(c);
    dagger_task_release(g);
    ASSERT_OK(dagger_barrier(ctx));
    if (me == 0)
        remove_dir(g_dir);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)) * 1000 + dagger_arg_i64(a, 0));
    return 0;
}

/* Remote spawn between SPMD ranks: each rank runs a task on the next one; a slow one is still
 * served after that rank reached its close. */
static int slow_where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep(300 * 1000);
    return where(tc, a, out);
}

TEST(remote_spawn_between_ranks)
{
    dagger_ctx_t *ctx = open_spmd(2);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx), next = (me + 1) % n;
    dagger_scope_t *s = dagger_scope_worker(next);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = s;
    dagger_task_t *t =
        dagger_spawn_impl(ctx, &o, where, NULL, (dagger_value_t[]){dagger_i64(me)}, 1);
    dagger_task_t *slow =
        dagger_spawn_impl(ctx, &o, slow_where, NULL, (dagger_value_t[]){dagger_i64(me)}, 1);
    dagger_scope_release(s);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, next * 1000 + me);
    dagger_task_release(t);
    if (me == 0) /* rank 0 closes before its slow task is back: close waits for it */
        dagger_task_release(slow);
    else {
        ASSERT_OK(dagger_fetch_i64(slow, &r));
        ASSERT_EQ(r, next * 1000 + me);
        dagger_task_release(slow);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(collective_errors)
{
    dagger_ctx_t *ctx = open_spmd(2);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx);
    char want[96];
    int64_t v = me, all[8];
    /* checked on each rank alone */
    ASSERT_ERR(dagger_barrier(NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "dagger_barrier: the context is NULL");
    ASSERT_ERR(dagger_bcast(ctx, n, &v, sizeof v), DAGGER_EINVAL);
    snprintf(want, sizeof want, "dagger_bcast: root %d is out of range 0..%d", n, n - 1);
    ASSERT_STR_HAS(dagger_last_errmsg(), want);
    ASSERT_ERR(dagger_gather(ctx, -1, &v, sizeof v, all), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "root -1 is out of range");
    ASSERT_ERR(dagger_bcast(ctx, 0, NULL, 8), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "buf is NULL with size 8");
    if (me == 0) { /* the others went on to the gather: rank 0 joins it after its error */
        ASSERT_ERR(dagger_gather(ctx, 0, &v, sizeof v, NULL), DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_last_errmsg(), "recv is NULL on the root (rank 0)");
    }
    ASSERT_OK(dagger_gather(ctx, 0, &v, sizeof v, all));
    for (int r = 0; me == 0 && r < n; r++)
        ASSERT_EQ(all[r], r);
    /* checked by every rank together: all fail, and the job goes on */
    ASSERT_ERR(dagger_bcast(ctx, 0, all, me == 0 ? 8 : 16), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the ranks passed different sizes (8 and 16 bytes");
    ASSERT_ERR(dagger_gather(ctx, me == 0 ? 0 : 1, &v, sizeof v, all), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the ranks passed different roots (0 and 1");
    int rc = me == 0 ? dagger_barrier(ctx) : dagger_bcast(ctx, 0, NULL, 0);
    ASSERT_ERR(rc, DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "different collectives at this point (dagger_barrier "
                                         "and dagger_bcast)");
    int64_t x = me == 0 ? 77 : 0;
    ASSERT_OK(dagger_bcast(ctx, 0, &x, sizeof x));
    ASSERT_EQ(x, 77);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(driver_mode_refuses_collectives)
{
    dagger_ctx_t *ctx = NULL;
    int rc = dagger_ctx_open(&ctx, NULL);
    if (rc == DAGGER_CTX_SERVED)
        return;
    ASSERT_OK(rc);
    ASSERT_ERR(dagger_barrier(ctx), DAGGER_ESTATE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "driver mode");
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_OPEN_SPMD");
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Without MPI (DAGGER_MPI=0) each rank is a job of one: collectives complete at once. */
TEST(one_rank_collectives)
{
    setenv("DAGGER_MPI", "0", 1);
    dagger_ctx_t *ctx = open_spmd(1);
    ASSERT_EQ(dagger_ctx_nranks(ctx), 1);
    ASSERT_EQ(dagger_ctx_rank(ctx), 0);
    ASSERT_OK(dagger_barrier(ctx));
    int v = 5;
    ASSERT_OK(dagger_bcast(ctx, 0, &v, sizeof v));
    ASSERT_EQ(v, 5);
    int out = 0;
    ASSERT_OK(dagger_gather(ctx, 0, &v, sizeof v, &out));
    ASSERT_EQ(out, 5);
    ASSERT_ERR(dagger_gather(ctx, 1, &v, sizeof v, &out), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "root 1 is out of range 0..0");
    ASSERT_OK(dagger_ctx_close(ctx));
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.flags = 0x80;
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown flags 0x80");
}

/* The last rank dies while the others wait in a barrier: they get DAGGER_EPEER naming it, the
 * next collective fails at once, and close returns. */
TEST(rank_lost_during_collective)
{
    dagger_ctx_t *ctx = open_spmd(2);
    int n = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx), victim = n - 1;
    ASSERT_OK(dagger_barrier(ctx));
    if (me == victim) {
        usleep(200 * 1000);
        kill(getpid(), SIGKILL);
    }
    char want[64];
    snprintf(want, sizeof want, "rank %d was lost", victim);
    ASSERT_ERR(dagger_barrier(ctx), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_last_errmsg(), want);
    ASSERT_STR_HAS(dagger_last_errmsg(), "during this collective");
    int64_t v = 1;
    ASSERT_ERR(dagger_bcast(ctx, 0, &v, sizeof v), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_last_errmsg(), want);
    ASSERT_STR_HAS(dagger_last_errmsg(), "before this collective");
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- one trace for every rank */

/* A minimal JSON validator: value := object | array | string | number | true | false | null. */
static const char *json_value(const char *p);

static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

static const char *json_string(const char *p)
{
    if (*p != '"')
        return NULL;
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && !*++p)
            return NULL;
    return *p == '"' ? p + 1 : NULL;
}

static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = json_string(json_ws(p));
                if (!p || *(p = json_ws(p)) != ':')
                    return NULL;
                p++;
            }
            if (!(p = json_value(p)))
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p++;
        }
    }
    if (*p == '"')
        return json_string(p);
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
        return p + 4;
    if (!strncmp(p, "false", 5))
        return p + 5;
    char *end;
    strtod(p, &end);
    return end > p ? end : NULL;
}

/* Events (one per line in dagger's JSON) whose line holds every one of the strings. */
static int count_events(const char *doc, const char *a, const char *b)
{
    int n = 0;
    for (const char *line = doc; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char *l = strndup(line, len);
        if (strstr(l, a) && (!b || strstr(l, b)))
            n++;
        free(l);
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

static int make_chunk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = 128 * 1024 / 8; /* over the 64 KiB inline limit: pulled by rank 0 */
    dagger_chunk_t *c;
    if (dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_I64, 1, &n, &c))
        return dagger_fail(tc, DAGGER_ENOMEM, "no chunk");
    int64_t *p = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        p[i] = (int64_t)i;
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* DAGGER_TRACE on every rank (the same path): rank 0 writes one JSON with a process per rank,
 * the tasks that ran on each, and the moves between them; the other ranks write nothing. */
TEST(trace_holds_every_rank)
{
    const char *job = getenv("PMIX_NAMESPACE");
    unsigned long h = 5381;
    for (const char *c = job ? job : "job"; *c; c++)
        h = h * 33 + (unsigned char)*c;
    const char *tmp = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/dagger_mpi_trace_%lx.json", tmp && *tmp ? tmp : "/tmp", h);
    setenv("DAGGER_TRACE", path, 1);
    dagger_ctx_t *ctx = NULL;
    int rc = dagger_ctx_open(&ctx, NULL); /* driver mode */
    unsetenv("DAGGER_TRACE");
    if (rc == DAGGER_CTX_SERVED)
        return;
    ASSERT_OK(rc);
    int n = dagger_ctx_nranks(ctx);
    for (int r = 1; r < n; r++) {
        dagger_scope_t *s = dagger_scope_worker(r);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.scope = s;
        o.name = "where";
        dagger_task_t *t =
            dagger_spawn_impl(ctx, &o, where, NULL, (dagger_value_t[]){dagger_i64(r)}, 1);
        o.name = "make_chunk";
        dagger_task_t *c = dagger_spawn_impl(ctx, &o, make_chunk, NULL, NULL, 0);
        dagger_scope_release(s);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, r * 1000 + r);
        dagger_chunk_t *ch;
        ASSERT_OK(dagger_fetch_chunk(c, &ch));
        ASSERT_EQ(dagger_chunk_size(ch), 128 * 1024);
        ASSERT_EQ(((int64_t *)dagger_chunk_data(ch))[1000], 1000);
        dagger_task_release(t);
        dagger_task_release(c);
    }
    ASSERT_OK(dagger_ctx_close(ctx));

    FILE *f = fopen(path, "r");
    ASSERT_PTR(f);
    char *doc = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&doc, &len);
    char buf[4096];
    for (size_t k; (k = fread(buf, 1, sizeof buf, f)) > 0;)
        fwrite(buf, 1, k, m);
    fclose(f);
    fclose(m);
    unlink(path);
    const char *end = json_value(doc);
    ASSERT_PTR(end);
    ASSERT_EQ(*json_ws(end), '\0');
    char want[128], pid[32];
    snprintf(want, sizeof want, "\"ranks\":%d", n);
    ASSERT_STR_HAS(doc, want);
    for (int r = 0; r < n; r++) {
        snprintf(want, sizeof want, "\"args\":{\"name\":\"rank %d\"}", r);
        ASSERT_EQ(count_events(doc, "\"process_name\"", want), 1);
        snprintf(pid, sizeof pid, "\"pid\":%d,", r + 1);
        snprintf(want, sizeof want, "\"args\":{\"name\":\"rank %d worker 0\"}", r);
        ASSERT_EQ(count_events(doc, want, pid), 1);
        if (r == 0)
            continue;
        /* what ran on rank r, on rank r's tracks, with the rank in its args */
        ASSERT_EQ(count_events(doc, "{\"name\":\"where\",\"cat\":\"task\"", pid), 1);
        snprintf(want, sizeof want, "\"run\":0,\"rank\":%d,", r);
        ASSERT_EQ(count_events(doc, "{\"name\":\"where\",\"cat\":\"task\"", want), 1);
        ASSERT_EQ(count_events(doc, "{\"name\":\"make_chunk\",\"cat\":\"task\"", pid), 1);
        /* the moves, on both sides */
        snprintf(want, sizeof want, "\"name\":\"task sent to rank %d\"", r);
        ASSERT_EQ(count_events(doc, want, "\"pid\":1,"), 2);
        ASSERT_EQ(count_events(doc, "\"name\":\"task received from rank 0\"", pid), 2);
        ASSERT_EQ(count_events(doc, "\"name\":\"result sent to rank 0\"", pid), 2);
        snprintf(want, sizeof want, "\"name\":\"result received from rank %d\"", r);
        ASSERT_EQ(count_events(doc, want, "\"pid\":1,"), 2);
        ASSERT_EQ(count_events(doc, "\"name\":\"data sent to rank 0\"", pid), 1);
        snprintf(want, sizeof want, "\"name\":\"data received from rank %d\"", r);
        ASSERT_EQ(count_events(doc, want, "\"bytes\":131072"), 1);
    }
    free(doc);
}

/* Rank 0 (which coordinates the close) dies during a barrier: the others get DAGGER_EPEER
 * naming it, and their close returns without it. */
TEST(rank0_lost_during_collective)
{
    dagger_ctx_t *ctx = open_spmd(2);
    int me = dagger_ctx_rank(ctx);
    ASSERT_OK(dagger_barrier(ctx));
    if (me == 0) {
        usleep(200 * 1000);
        kill(getpid(), SIGKILL);
    }
    ASSERT_ERR(dagger_barrier(ctx), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_last_errmsg(), "rank 0 was lost");
    ASSERT_OK(dagger_ctx_close(ctx));
}

#ifdef DAGGER_TEST_SPMD_NP4
TEST_LIST(every_rank_runs_main, bcast_and_gather_values, barrier_orders_files,
          collective_in_task_frees_the_thread, remote_spawn_between_ranks, collective_errors,
          trace_holds_every_rank, rank_lost_during_collective, rank0_lost_during_collective)
#else
TEST_LIST(every_rank_runs_main, bcast_and_gather_values, barrier_orders_files,
          collective_in_task_frees_the_thread, remote_spawn_between_ranks, collective_errors,
          driver_mode_refuses_collectives, one_rank_collectives, trace_holds_every_rank,
          rank_lost_during_collective, rank0_lost_during_collective)
#endif
