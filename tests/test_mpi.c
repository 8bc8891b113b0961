/* tests/test_mpi.c - several processes: every case runs under mpirun (tests/mpi_run.sh).
 *
 * Driver mode: rank 0 runs the case; on the other ranks dagger_ctx_open serves and returns
 * DAGGER_CTX_SERVED, and the case ends there. Built twice more: as test_mpi4 (the cases that
 * matter on 4 ranks) and as test_mpi_other (another build id, for the mismatch case).
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <unistd.h>

#include "dagger/chunk.h"
#include "dagger/mpi.h"
#include "harness.h"
#include "mpi_harness.h"

static int where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)) * 1000 + dagger_arg_i64(a, 0));
    return 0;
}

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0) + dagger_arg_f64(a, 1));
    return 0;
}

TEST(quickstart_worker)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int n = dagger_ctx_nranks(ctx);
    ASSERT_TRUE(n >= 2);
    ASSERT_EQ(dagger_ctx_rank(ctx), 0);
    /* the seed quickstart: a = 1 + 2 on the last rank, b = a + 4 here, c = a + b on rank 1 */
    dagger_task_t *a =
        spawn_on(ctx, n - 1, add, "a", (dagger_value_t[]){dagger_f64(1), dagger_f64(2)}, 2);
    dagger_task_t *b = dagger_spawn(ctx, add, a, 4.0);
    dagger_task_t *c =
        spawn_on(ctx, 1, add, "c", (dagger_value_t[]){dagger_taskv(a), dagger_taskv(b)}, 2);
    double r;
    ASSERT_OK(dagger_fetch_f64(c, &r));
    ASSERT_NEAR(r, 10.0, 0);
    int64_t w[8];
    for (int k = 0; k < n; k++) {
        dagger_task_t *t = spawn_on(ctx, k, where, NULL, (dagger_value_t[]){dagger_i64(k)}, 1);
        ASSERT_OK(dagger_fetch_i64(t, &w[k]));
        ASSERT_EQ(w[k], k * 1000 + k);
        dagger_task_release(t);
    }
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_task_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* One job's worth of remote work: inline and pulled values, an error, a nested spawn. */
static void leak_round(dagger_ctx_t *ctx);

TEST(no_leak_by_alloc_counters) { jobs_leak_nothing(leak_round); }

static int load(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_EIO, "open %s: No such file or directory", dagger_arg_str(a, 0));
}

TEST(error_chain_across_ranks)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_t *l = spawn_on(ctx, 1, load, "load", (dagger_value_t[]){dagger_str("x.bin")}, 1);
    dagger_task_t *s = dagger_spawn(ctx, add, l, 1.0);
    ASSERT_ERR(dagger_fetch(l, NULL), DAGGER_EIO);
    ASSERT_STR_HAS(dagger_task_errmsg(l),
                   "'load' on rank 1: open x.bin: No such file or directory");
    ASSERT_STR_HAS(dagger_task_errmsg(l), "task 1:");
    ASSERT_ERR(dagger_fetch(s, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(s), "input 0");
    ASSERT_STR_HAS(dagger_task_errmsg(s), "on rank 1: open x.bin");
    /* an argument that cannot travel fails the task, naming the argument and the rank */
    int local = 5;
    dagger_task_t *p = spawn_on(ctx, 1, where, NULL, (dagger_value_t[]){dagger_ptr(&local)}, 1);
    ASSERT_ERR(dagger_fetch(p, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(p),
                   "argument 0 is a local pointer, which cannot travel to rank 1");
    /* a rank that does not exist fails at spawn */
    dagger_task_t *q = spawn_on(ctx, 9, where, NULL, (dagger_value_t[]){dagger_i64(0)}, 1);
    ASSERT_ERR(dagger_fetch(q, NULL), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(q), "rank 9 does not exist");
    dagger_task_release(l);
    dagger_task_release(s);
    dagger_task_release(p);
    dagger_task_release(q);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int fib(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out);
static int big_blob(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out);
static int blob_len(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out);

static void leak_round(dagger_ctx_t *ctx)
{
    dagger_task_t *f = spawn_on(ctx, 1, fib, "fib", (dagger_value_t[]){dagger_i64(10)}, 1);
    dagger_task_t *b =
        spawn_on(ctx, 1, big_blob, "big_blob", (dagger_value_t[]){dagger_i64(200000)}, 1);
    dagger_task_t *l =
        spawn_on(ctx, 1, blob_len, "blob_len", (dagger_value_t[]){dagger_taskv(b)}, 1);
    dagger_task_t *e = spawn_on(ctx, 1, load, "load", (dagger_value_t[]){dagger_str("y")}, 1);
    int64_t r1 = 0, r2 = 0;
    ASSERT_OK(dagger_fetch_i64(f, &r1));
    ASSERT_OK(dagger_fetch_i64(l, &r2));
    ASSERT_ERR(dagger_fetch(e, NULL), DAGGER_EIO);
    ASSERT_EQ(r1, 55);
    ASSERT_EQ(r2, 200000);
    dagger_task_release(f);
    dagger_task_release(b);
    dagger_task_release(l);
    dagger_task_release(e);
}

/* fib(n) = fib(n-1) + fib(n-2), the children on the next rank round the ring. */
static int fib(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0);
    if (n < 2) {
        *out = dagger_i64(n);
        return 0;
    }
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int next = (dagger_ctx_rank(ctx) + 1) % dagger_ctx_nranks(ctx);
    dagger_task_t *x =
        n > 6 ? spawn_on(ctx, next, fib, "fib", (dagger_value_t[]){dagger_i64(n - 1)}, 1)
              : dagger_spawn(ctx, fib, n - 1);
    dagger_task_t *y = dagger_spawn(ctx, fib, n - 2);
    int64_t u = 0, v = 0;
    int rc = dagger_fetch_i64(x, &u);
    if (!rc)
        rc = dagger_fetch_i64(y, &v);
    dagger_task_release(x);
    dagger_task_release(y);
    if (rc)
        return dagger_fail(tc, rc, "a child failed");
    *out = dagger_i64(u + v);
    return 0;
}

TEST(nested_fib_across_ranks)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_t *t = spawn_on(ctx, 1, fib, "fib", (dagger_value_t[]){dagger_i64(16)}, 1);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 987);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

#define BIG ((size_t)64 << 20)

static uint64_t pattern(size_t i) { return (uint64_t)i * 0x9E3779B97F4A7C15ull ^ (i >> 7); }

static int make_big(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_chunk_t *c;
    size_t n = BIG / 8;
    if (dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_I64, 1, &n, &c))
        return dagger_fail(tc, DAGGER_ENOMEM, "no chunk");
    uint64_t *p = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(i);
    *out = dagger_chunk_give(tc, c);
    return 0;
}

static int check_big(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const uint64_t *p = dagger_arg_array(a, 0, DAGGER_ELT_I64, &n);
    if (!p)
        return DAGGER_ETYPE;
    int64_t bad = n == BIG / 8 ? 0 : -1;
    for (size_t i = 0; i < n && bad == 0; i++)
        if (p[i] != pattern(i))
            bad = (int64_t)i + 1;
    *out = dagger_i64(bad * 100 + dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

static int big_blob(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = (size_t)dagger_arg_i64(a, 0);
    char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + i % 26);
    *out = dagger_blob_copy(tc, buf, n);
    free(buf);
    return 0;
}

static int blob_len(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const char *p = dagger_arg_blob(a, 0, &n);
    for (size_t i = 0; p && i < n; i++)
        if (p[i] != (char)('a' + i % 26))
            return dagger_fail(tc, DAGGER_ETASK, "byte %zu differs", i);
    *out = dagger_i64((int64_t)n);
    return 0;
}

TEST(chunk_64mib_moves_intact)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    /* made on rank 1, pulled here */
    dagger_task_t *m = spawn_on(ctx, 1, make_big, "make_big", NULL, 0);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_fetch_chunk(m, &c));
    ASSERT_EQ(dagger_chunk_size(c), BIG);
    ASSERT_EQ(dagger_chunk_elt(c), DAGGER_ELT_I64);
    const uint64_t *p = dagger_chunk_data(c);
    for (size_t i = 0; i < BIG / 8; i++)
        if (p[i] != pattern(i))
            fail_msg("word %zu differs", i);
    /* and back to rank 1 as an argument (pulled there) */
    dagger_task_t *k =
        spawn_on(ctx, 1, check_big, "check_big", (dagger_value_t[]){dagger_chunkv(c)}, 1);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(k, &r));
    ASSERT_EQ(r, 1);
    /* a task argument that is a remote task's chunk result */
    dagger_task_t *k2 =
        spawn_on(ctx, 1, check_big, "check_big", (dagger_value_t[]){dagger_taskv(m)}, 1);
    ASSERT_OK(dagger_fetch_i64(k2, &r));
    ASSERT_EQ(r, 1);
    /* a blob over the inline limit both ways */
    dagger_task_t *b =
        spawn_on(ctx, 1, big_blob, "big_blob", (dagger_value_t[]){dagger_i64(300000)}, 1);
    dagger_task_t *l =
        spawn_on(ctx, 1, blob_len, "blob_len", (dagger_value_t[]){dagger_taskv(b)}, 1);
    ASSERT_OK(dagger_fetch_i64(l, &r));
    ASSERT_EQ(r, 300000);
    dagger_task_release(m);
    dagger_task_release(k);
    dagger_task_release(k2);
    dagger_task_release(b);
    dagger_task_release(l);
    ASSERT_OK(dagger_ctx_close(ctx));
}

#define DAG_MOD 1000003

/* A node of the random DAG: args = (i, fail, inputs...). */
static int dag_node(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0), v = i * 7 % DAG_MOD;
    if (dagger_arg_i64(a, 1))
        return dagger_fail(tc, DAGGER_ETASK, "node %lld fails on purpose", (long long)i);
    for (size_t k = 2; k < dagger_args_count(a); k++)
        v = (v * 31 + dagger_arg_i64(a, k) * (int64_t)k) % DAG_MOD;
    *out = dagger_i64(v);
    return 0;
}

/* Random DAGs whose nodes run on random ranks, against sequential evaluation: values, and
 * which nodes fail (on purpose, or upstream). Replay with DAGGER_TEST_SEED. */
TEST(random_dag_across_ranks)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    uint64_t seed = test_seed();
    const int n = test_level_full() ? 2000 : 300;
    int nranks = dagger_ctx_nranks(ctx);
    dagger_task_t **t = calloc((size_t)n, sizeof *t);
    int64_t *want = calloc((size_t)n, sizeof *want);
    bool *bad = calloc((size_t)n, sizeof *bad);
    for (int i = 0; i < n; i++) {
        dagger_value_t argv[5];
        int nd = i == 0 ? 0 : (int)(test_rand(&seed) % 4);
        bool fail = test_rand(&seed) % 40 == 0;
        argv[0] = dagger_i64(i);
        argv[1] = dagger_i64(fail);
        int64_t v = (int64_t)i * 7 % DAG_MOD;
        bad[i] = fail;
        for (int k = 0; k < nd; k++) {
            int d = (int)(test_rand(&seed) % (uint64_t)i);
            argv[2 + k] = dagger_taskv(t[d]);
            bad[i] |= bad[d];
            v = (v * 31 + want[d] * (int64_t)(2 + k)) % DAG_MOD;
        }
        want[i] = v;
        int r = (int)(test_rand(&seed) % (uint64_t)nranks);
        t[i] = spawn_on(ctx, r, dag_node, NULL, argv, 2 + (size_t)nd);
    }
    for (int i = 0; i < n; i++) {
        int64_t got = -1;
        int rc = dagger_fetch_i64(t[i], &got);
        if (bad[i]) {
            if (rc != DAGGER_ETASK && rc != DAGGER_EUPSTREAM)
                fail_msg("node %d: %s, expected a failure", i, dagger_err_name(rc));
        } else if (rc || got != want[i]) {
            fail_msg("node %d: %s (%s), %lld, expected %lld", i, dagger_err_name(rc),
                     dagger_task_errmsg(t[i]), (long long)got, (long long)want[i]);
        }
    }
    for (int i = 0; i < n; i++)
        dagger_task_release(t[i]);
    free(t);
    free(want);
    free(bad);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int long_job(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep(20000);
    *out = dagger_i64(dagger_ctx_rank(dagger_tc_ctx(tc)));
    return 0;
}

/* Independent tasks that say they are long spread over every rank, round robin (Dagger.jl's
 * issue 277 put them all on one worker); short ones, and ones with a pointer argument, stay. */
TEST(long_independent_tasks_spread)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int n = dagger_ctx_nranks(ctx), per[8] = {0};
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.expected_time = 0.02;
    dagger_task_t *t[32];
    for (int i = 0; i < 4 * n; i++)
        t[i] = dagger_spawn_opts(ctx, &o, long_job, i);
    for (int i = 0; i < 4 * n; i++) {
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(t[i], &r));
        ASSERT_TRUE(r >= 0 && r < n);
        per[r]++;
        dagger_task_release(t[i]);
    }
    for (int r = 0; r < n; r++)
        ASSERT_EQ(per[r], 4);
    int x = 0;
    for (int i = 0; i < n; i++) {
        dagger_task_t *p = dagger_spawn_opts(ctx, &o, long_job, &x); /* a pointer: stays */
        o.expected_time = 0.0001;
        dagger_task_t *q = dagger_spawn_opts(ctx, &o, long_job, i); /* short: stays */
        o.expected_time = 0.02;
        int64_t r1, r2;
        ASSERT_OK(dagger_fetch_i64(p, &r1));
        ASSERT_OK(dagger_fetch_i64(q, &r2));
        ASSERT_EQ(r1, 0);
        ASSERT_EQ(r2, 0);
        dagger_task_release(p);
        dagger_task_release(q);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A close refused with DAGGER_EBUSY (a handle still held) has already ended the job: the
 * other ranks are gone, so a task for one of them fails at once, naming why. */
TEST(remote_spawn_after_busy_close_refused)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_t *held = spawn_on(ctx, 1, where, NULL, (dagger_value_t[]){dagger_i64(1)}, 1);
    ASSERT_OK(dagger_wait(held));
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    dagger_task_t *late = spawn_on(ctx, 1, where, NULL, (dagger_value_t[]){dagger_i64(2)}, 1);
    ASSERT_ERR(dagger_fetch(late, NULL), DAGGER_ESTATE);
    ASSERT_STR_HAS(dagger_task_errmsg(late), "the job has ended");
    dagger_task_t *here = dagger_spawn(ctx, where, 3);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(here, &r)); /* local work still runs */
    ASSERT_EQ(r, 3);
    dagger_task_release(held);
    dagger_task_release(late);
    dagger_task_release(here);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int spin_until_cancelled(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    for (int i = 0; i < 1000 && !dagger_tc_cancelled(tc); i++)
        usleep(10000);
    if (!dagger_tc_cancelled(tc))
        return dagger_fail(tc, DAGGER_ETASK, "never cancelled");
    return 0;
}

TEST(cancel_across_ranks)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_t *t = spawn_on(ctx, 1, spin_until_cancelled, "spin", NULL, 0);
    usleep(50000);
    ASSERT_OK(dagger_cancel(t));
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ECANCELED);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "on rank 1");
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int named_double(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(2 * dagger_arg_i64(a, 0));
    return 0;
}

TEST(registered_function_travels_by_name)
{
    ASSERT_OK(dagger_fn_register("test.double", named_double));
    ASSERT_OK(dagger_fn_register("test.double", named_double)); /* same pair: accepted */
    ASSERT_ERR(dagger_fn_register("test.double", where), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "already registered");
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    dagger_task_t *t = spawn_on(ctx, 1, named_double, NULL, (dagger_value_t[]){dagger_i64(21)}, 1);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 42);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(user_initialised_mpi)
{
    int provided;
    ASSERT_EQ(MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided), MPI_SUCCESS);
    ASSERT_TRUE(provided >= MPI_THREAD_SERIALIZED);
    dagger_ctx_t *ctx = NULL;
    ASSERT_ERR(dagger_ctx_open_mpi(&ctx, NULL, MPI_COMM_NULL), DAGGER_EINVAL);
    int rc = dagger_ctx_open_mpi(&ctx, NULL, MPI_COMM_WORLD);
    if (rc != DAGGER_CTX_SERVED) {
        ASSERT_OK(rc);
        dagger_task_t *t = spawn_on(ctx, 1, where, NULL, (dagger_value_t[]){dagger_i64(7)}, 1);
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(t, &r));
        ASSERT_EQ(r, 1007);
        dagger_task_release(t);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
    MPI_Barrier(MPI_COMM_WORLD); /* MPI is the user's again */
    MPI_Finalize();
}

TEST(thread_level_too_low_refused)
{
    int provided;
    ASSERT_EQ(MPI_Init_thread(NULL, NULL, MPI_THREAD_SINGLE, &provided), MPI_SUCCESS);
    dagger_ctx_t *ctx = NULL;
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_ENOSYS);
    ASSERT_NULL(ctx);
    ASSERT_STR_HAS(dagger_last_errmsg(), "MPI_THREAD_SINGLE");
    ASSERT_STR_HAS(dagger_last_errmsg(), "MPI_THREAD_MULTIPLE");
    MPI_Finalize();
}

TEST(mpi_off_gives_each_rank_a_context)
{
    setenv("DAGGER_MPI", "0", 1);
    dagger_ctx_t *ctx = open_job(1);
    ASSERT_PTR(ctx);
    ASSERT_EQ(dagger_ctx_nranks(ctx), 1);
    ASSERT_EQ(dagger_ctx_rank(ctx), 0);
    dagger_task_t *t = spawn_on(ctx, 1, where, NULL, (dagger_value_t[]){dagger_i64(0)}, 1);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ESCOPE);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
    setenv("DAGGER_MPI", "2", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_MPI='2'");
}

static int sleepy(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    for (int i = 0; i < 3000 && !dagger_tc_cancelled(tc); i++)
        usleep(10000);
    return 0;
}

static int die(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep(100000);
    kill(getpid(), SIGKILL);
    return 0;
}

/* The last rank is killed with SIGKILL mid-run: every wait on it fails with DAGGER_EPEER naming
 * the rank and the task, and close returns on the survivors. */
TEST(rank_killed_gives_epeer)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int victim = dagger_ctx_nranks(ctx) - 1;
    dagger_task_t *s = spawn_on(ctx, victim, sleepy, "sleepy", NULL, 0);
    dagger_task_t *d = spawn_on(ctx, victim, die, "die", NULL, 0);
    dagger_task_t *after = dagger_spawn(ctx, add, s, 1.0);
    ASSERT_ERR(dagger_fetch(s, NULL), DAGGER_EPEER);
    char want[64];
    snprintf(want, sizeof want, "rank %d was lost", victim);
    ASSERT_STR_HAS(dagger_task_errmsg(s), want);
    ASSERT_STR_HAS(dagger_task_errmsg(s), "'sleepy'");
    ASSERT_ERR(dagger_fetch(d, NULL), DAGGER_EPEER);
    ASSERT_ERR(dagger_fetch(after, NULL), DAGGER_EUPSTREAM);
    /* new work for the lost rank fails at once; the others still serve */
    dagger_task_t *n = spawn_on(ctx, victim, where, NULL, (dagger_value_t[]){dagger_i64(0)}, 1);
    ASSERT_ERR(dagger_fetch(n, NULL), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(n), "before the task could be sent");
    if (victim > 1) {
        dagger_task_t *ok = spawn_on(ctx, 1, where, NULL, (dagger_value_t[]){dagger_i64(3)}, 1);
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(ok, &r));
        ASSERT_EQ(r, 1003);
        dagger_task_release(ok);
    }
    dagger_task_release(s);
    dagger_task_release(d);
    dagger_task_release(after);
    dagger_task_release(n);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int my_pid(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(getpid());
    return 0;
}

static int freeze(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep(100000);
    raise(SIGSTOP); /* alive, but silent: only the heartbeat timeout can tell */
    return 0;
}

/* A rank that stops answering (its process stopped, not gone) is lost after
 * DAGGER_PEER_TIMEOUT seconds without a message. */
TEST(silent_rank_times_out)
{
    setenv("DAGGER_PEER_TIMEOUT", "1.5", 1);
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int64_t pid;
    dagger_task_t *p = spawn_on(ctx, 1, my_pid, NULL, NULL, 0);
    ASSERT_OK(dagger_fetch_i64(p, &pid));
    dagger_task_t *s = spawn_on(ctx, 1, sleepy, "sleepy", NULL, 0);
    dagger_task_t *f = spawn_on(ctx, 1, freeze, "freeze", NULL, 0);
    int rc = dagger_fetch(s, NULL);
    kill((pid_t)pid, SIGKILL); /* end the stopped process before asserting anything */
    ASSERT_ERR(rc, DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(s), "rank 1 was lost (no message from it for");
    ASSERT_STR_HAS(dagger_task_errmsg(s), "DAGGER_PEER_TIMEOUT");
    ASSERT_STR_HAS(dagger_task_errmsg(s), "'sleepy'");
    ASSERT_ERR(dagger_fetch(f, NULL), DAGGER_EPEER);
    dagger_task_release(p);
    dagger_task_release(s);
    dagger_task_release(f);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Two builds of this file (test_mpi_mm_a on rank 0, _b on rank 1) differ in this string, so
 * their build ids differ. */
#ifdef DAGGER_TEST_MPI_OTHER
static const char variant[] = DAGGER_TEST_MPI_OTHER;
#else
static const char variant[] = "";
#endif

TEST(mismatched_binary_refused)
{
    printf("variant %s\n", variant);
    dagger_ctx_t *ctx = NULL;
    int rc = dagger_ctx_open(&ctx, NULL);
    ASSERT_ERR(rc, DAGGER_EINVAL);
    ASSERT_NULL(ctx);
    ASSERT_STR_HAS(dagger_last_errmsg(), "rank 1 runs another program");
}

#if defined(DAGGER_TEST_MPI_OTHER)
TEST_LIST(mismatched_binary_refused)
#elif defined(DAGGER_TEST_MPI_NP4)
TEST_LIST(quickstart_worker, nested_fib_across_ranks, error_chain_across_ranks,
          random_dag_across_ranks, long_independent_tasks_spread, rank_killed_gives_epeer)
#else
TEST_LIST(quickstart_worker, error_chain_across_ranks, nested_fib_across_ranks,
          chunk_64mib_moves_intact, cancel_across_ranks, no_leak_by_alloc_counters,
          random_dag_across_ranks, remote_spawn_after_busy_close_refused,
          long_independent_tasks_spread, registered_function_travels_by_name, user_initialised_mpi,
          thread_level_too_low_refused, mpi_off_gives_each_rank_a_context, rank_killed_gives_epeer,
          silent_rank_times_out)
#endif
