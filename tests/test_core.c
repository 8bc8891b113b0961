/* tests/test_core.c - tasks, values, dependencies, errors, nested fetch, groups and queues. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* ---------------------------------------------------------------- task bodies */

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0) + dagger_arg_f64(a, 1));
    return 0;
}

static int add_i(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t s = 0;
    for (size_t i = 0; i < dagger_args_count(a); i++)
        s += dagger_arg_i64(a, i);
    *out = dagger_i64(s);
    return 0;
}

static int one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(1);
    return 0;
}

static int nothing(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out) { return 0; }

static int fail_eio(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_EIO, "open %s: %s", "x.bin", "No such file or directory");
}

static int add_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

/* ---------------------------------------------------------------- basics */

TEST(quickstart_add)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *x = dagger_spawn(ctx, add, 1.0, 2.0);
    dagger_task_t *y = dagger_spawn(ctx, add, x, 3.0);
    double r = 0;
    ASSERT_OK(dagger_fetch_f64(y, &r));
    ASSERT_NEAR(r, 6.0, 0);
    ASSERT_TRUE(dagger_task_done(x));
    ASSERT_STR_EQ(dagger_task_name(y), "add");
    ASSERT_TRUE(dagger_task_id(x) != dagger_task_id(y));
    dagger_task_release(x);
    dagger_task_release(y);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int kinds(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    if (dagger_args_count(a) != 7)
        return dagger_fail(tc, DAGGER_EINVAL, "expected 7 arguments, got %zu",
                           dagger_args_count(a));
    size_t blen;
    const char *blob = dagger_arg_blob(a, 4, &blen);
    char buf[128];
    snprintf(buf, sizeof buf, "%d %lld %.1f %s %.*s %d %s", dagger_arg_bool(a, 0),
             (long long)dagger_arg_i64(a, 1), dagger_arg_f64(a, 2), dagger_arg_str(a, 3), (int)blen,
             blob, *(int *)dagger_arg_ptr(a, 5),
             dagger_arg(a, 6)->kind == DAGGER_KIND_NIL ? "nil" : "?");
    *out = dagger_str_copy(tc, buf); /* a stack buffer: copy it before it goes */
    return 0;
}

TEST(values_of_every_kind)
{
    dagger_ctx_t *ctx = test_ctx(2);
    int local = 42;
    char text[16] = "hello";
    dagger_task_t *t = dagger_spawn(ctx, kinds, (_Bool)1, (int64_t)-7, 2.5, text,
                                    dagger_blob("xyz", 3), &local, dagger_nil());
    text[0] = 'J'; /* strings are copied at spawn */
    const char *s;
    ASSERT_OK(dagger_fetch_str(t, &s));
    ASSERT_STR_EQ(s, "1 -7 2.5 hello xyz 42 nil");
    double d;
    ASSERT_ERR(dagger_fetch_f64(t, &d), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "returned a str, not a f64");
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int want_f64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0));
    return 0;
}

TEST(wrong_kind_fails_the_task)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, want_f64, "text");
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 0 is a str, not a f64");
    ASSERT_STR_HAS(dagger_task_errmsg(t), "want_f64");
    dagger_task_t *u = dagger_spawn(ctx, want_f64);
    ASSERT_ERR(dagger_fetch(u, NULL), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(u),
                   "argument 0 requested as f64, but the task has 0 arguments");
    dagger_task_t *v = dagger_spawn(ctx, want_f64, 3); /* an i64 is accepted as a f64 */
    double d;
    ASSERT_OK(dagger_fetch_f64(v, &d));
    ASSERT_NEAR(d, 3.0, 0);
    dagger_task_release(t);
    dagger_task_release(u);
    dagger_task_release(v);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(spawn_time_errors_come_back_as_failed_tasks)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *a = dagger_spawnv(ctx, NULL, NULL, 0);
    ASSERT_PTR(a);
    ASSERT_ERR(dagger_fetch(a, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(a), "the task function is NULL");
    /* the macro form: `#f` of NULL is not taken for the task's name */
    dagger_task_t *a2 = dagger_spawn(ctx, NULL);
    ASSERT_ERR(dagger_fetch(a2, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(a2), "the task function is NULL");
    ASSERT_TRUE(strstr(dagger_task_errmsg(a2), "void") == NULL);
    ASSERT_TRUE(strstr(dagger_task_name(a2), "void") == NULL);
    dagger_task_release(a2);
    dagger_value_t bad = dagger_taskv(NULL);
    dagger_task_t *b = dagger_spawnv(ctx, add, &bad, 1);
    ASSERT_ERR(dagger_fetch(b, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(b), "argument 0 is a NULL task handle");
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.occupancy = 1.5;
    dagger_task_t *c = dagger_spawn_opts(ctx, &o, nothing);
    ASSERT_ERR(dagger_fetch(c, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(c), "occupancy 1.5 is out of range");
    /* A dependent of a spawn-time failure fails upstream. */
    dagger_task_t *d = dagger_spawn(ctx, add_one, c);
    ASSERT_ERR(dagger_fetch(d, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(d), "occupancy 1.5 is out of range");
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_task_release(c);
    dagger_task_release(d);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- graph shapes */

TEST(chain_depth_100000)
{
    dagger_ctx_t *ctx = test_ctx(0);
    const int n = 100000;
    dagger_task_t *prev = dagger_spawn(ctx, add_one, 0);
    for (int i = 1; i < n; i++) {
        dagger_task_t *t = dagger_spawn(ctx, add_one, prev);
        dagger_task_release(prev);
        prev = t;
    }
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(prev, &r));
    ASSERT_EQ(r, n);
    dagger_task_release(prev);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(chain_depth_100000_failing_root)
{
    dagger_ctx_t *ctx = test_ctx(0);
    const int n = 100000;
    dagger_task_t *prev = dagger_spawn(ctx, fail_eio);
    for (int i = 1; i < n; i++) {
        dagger_task_t *t = dagger_spawn(ctx, add_one, prev);
        dagger_task_release(prev);
        prev = t;
    }
    ASSERT_ERR(dagger_fetch(prev, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(prev), "root cause: task");
    ASSERT_STR_HAS(dagger_task_errmsg(prev), "'fail_eio': open x.bin");
    dagger_task_release(prev);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(diamond)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *a = dagger_spawn(ctx, add_one, 1);
    dagger_task_t *b = dagger_spawn(ctx, add_one, a);
    dagger_task_t *c = dagger_spawn(ctx, add_i, a, 10);
    dagger_task_t *d = dagger_spawn(ctx, add_i, b, c);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(d, &r));
    ASSERT_EQ(r, 3 + 12);
    dagger_task_t *all[] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        dagger_task_release(all[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(reduction_tree_1000_leaves)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *level[1000];
    int n = 1000;
    for (int i = 0; i < n; i++)
        level[i] = dagger_spawn(ctx, one);
    while (n > 1) {
        int m = 0;
        for (int i = 0; i < n; i += 2) {
            if (i + 1 < n) {
                dagger_task_t *s = dagger_spawn(ctx, add_i, level[i], level[i + 1]);
                dagger_task_release(level[i]);
                dagger_task_release(level[i + 1]);
                level[m++] = s;
            } else {
                level[m++] = level[i];
            }
        }
        n = m;
    }
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(level[0], &r));
    ASSERT_EQ(r, 1000);
    dagger_task_release(level[0]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(fan_out_4x8)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *root = dagger_spawn(ctx, add_one, 0); /* 1 */
    dagger_task_t *mid[4], *leaf[32];
    for (int i = 0; i < 4; i++) {
        mid[i] = dagger_spawn(ctx, add_i, root, i); /* 1 + i */
        for (int j = 0; j < 8; j++)
            leaf[i * 8 + j] = dagger_spawn(ctx, add_i, mid[i], j * 100); /* 1 + i + 100 j */
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) {
            int64_t r;
            ASSERT_OK(dagger_fetch_i64(leaf[i * 8 + j], &r));
            ASSERT_EQ(r, 1 + i + 100 * j);
            dagger_task_release(leaf[i * 8 + j]);
        }
    for (int i = 0; i < 4; i++)
        dagger_task_release(mid[i]);
    dagger_task_release(root);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int gate_open;

static int slow_value(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    while (!atomic_load(&gate_open))
        usleep(100);
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

struct fetcher {
    dagger_task_t *t;
    int64_t got;
    int rc;
};

static void *fetch_thread(void *arg)
{
    struct fetcher *f = arg;
    f->rc = dagger_fetch_i64(f->t, &f->got);
    return NULL;
}

TEST(sixteen_threads_fetch_the_same_task_20_rounds)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int round = 0; round < 20; round++) {
        atomic_store(&gate_open, 0);
        dagger_task_t *t = dagger_spawn(ctx, slow_value, round * 7);
        pthread_t th[16];
        struct fetcher f[16];
        for (int i = 0; i < 16; i++) {
            f[i] = (struct fetcher){t, -1, -1};
            pthread_create(&th[i], NULL, fetch_thread, &f[i]);
        }
        if (round % 2)
            usleep(1000); /* some fetchers block, some arrive after the end */
        atomic_store(&gate_open, 1);
        for (int i = 0; i < 16; i++) {
            pthread_join(th[i], NULL);
            ASSERT_OK(f[i].rc);
            ASSERT_EQ(f[i].got, round * 7);
        }
        dagger_task_release(t);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- errors */

TEST(fetch_reports_task_error)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *a = dagger_spawn(ctx, fail_eio);
    ASSERT_ERR(dagger_fetch(a, NULL), DAGGER_EIO);
    ASSERT_EQ(dagger_task_error(a), DAGGER_EIO);
    char want[128];
    snprintf(want, sizeof want, "task %llu 'fail_eio': open x.bin: No such file or directory",
             (unsigned long long)dagger_task_id(a));
    ASSERT_STR_EQ(dagger_task_errmsg(a), want);
    ASSERT_STR_EQ(dagger_last_errmsg(), want);
    dagger_task_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(fetch_reports_upstream_error)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *a = dagger_spawn(ctx, fail_eio);
    dagger_task_t *b = dagger_spawn(ctx, add_one, a);
    dagger_value_t out = dagger_i64(99);
    ASSERT_ERR(dagger_fetch(b, &out), DAGGER_EUPSTREAM);
    ASSERT_EQ(out.u.i, 99); /* untouched */
    char want[160];
    snprintf(want, sizeof want,
             "task %llu 'add_one': input 0 (task %llu 'fail_eio') failed: open x.bin: No such file "
             "or directory",
             (unsigned long long)dagger_task_id(b), (unsigned long long)dagger_task_id(a));
    ASSERT_STR_EQ(dagger_task_errmsg(b), want);
    dagger_task_release(b);
    dagger_task_release(a);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int ran_after_failure;

static int count_run(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&ran_after_failure, 1);
    *out = dagger_i64(0);
    return 0;
}

TEST(error_chain_three_deep)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *a = dagger_spawn(ctx, fail_eio);
    dagger_task_t *b = dagger_spawn(ctx, count_run, a);
    dagger_task_t *c = dagger_spawn(ctx, count_run, b);
    dagger_task_t *d = dagger_spawn(ctx, count_run, c);
    ASSERT_ERR(dagger_fetch(d, NULL), DAGGER_EUPSTREAM);
    ASSERT_EQ(atomic_load(&ran_after_failure), 0); /* dependents never run */
    char want[256];
    snprintf(
        want, sizeof want,
        "task %llu 'count_run': input 0 (task %llu 'count_run') failed; root cause: task %llu "
        "'fail_eio': open x.bin: No such file or directory (chain: %llu <- %llu <- %llu <- %llu)",
        (unsigned long long)dagger_task_id(d), (unsigned long long)dagger_task_id(c),
        (unsigned long long)dagger_task_id(a), (unsigned long long)dagger_task_id(d),
        (unsigned long long)dagger_task_id(c), (unsigned long long)dagger_task_id(b),
        (unsigned long long)dagger_task_id(a));
    ASSERT_STR_EQ(dagger_task_errmsg(d), want);
    ASSERT_ERR(dagger_task_error(b), DAGGER_EUPSTREAM);
    dagger_task_t *all[] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        dagger_task_release(all[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(error_in_diamond_and_unrelated_task_succeeds)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *a = dagger_spawn(ctx, fail_eio);
    dagger_task_t *b = dagger_spawn(ctx, add_one, a);
    dagger_task_t *c = dagger_spawn(ctx, add_one, a);
    dagger_task_t *d = dagger_spawn(ctx, add_i, b, c);
    dagger_task_t *u = dagger_spawn(ctx, add_one, 41);
    ASSERT_ERR(dagger_fetch(d, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(d), "'fail_eio': open x.bin");
    ASSERT_ERR(dagger_fetch(b, NULL), DAGGER_EUPSTREAM);
    ASSERT_ERR(dagger_fetch(c, NULL), DAGGER_EUPSTREAM);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(u, &r));
    ASSERT_EQ(r, 42);
    dagger_task_t *all[] = {a, b, c, d, u};
    for (int i = 0; i < 5; i++)
        dagger_task_release(all[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(error_names_the_failed_input_among_several)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *ok1 = dagger_spawn(ctx, one);
    dagger_task_t *bad = dagger_spawn(ctx, fail_eio);
    dagger_task_t *ok2 = dagger_spawn(ctx, one);
    dagger_task_t *s = dagger_spawn(ctx, add_i, ok1, bad, ok2);
    ASSERT_ERR(dagger_fetch(s, NULL), DAGGER_EUPSTREAM);
    char want[64];
    snprintf(want, sizeof want, "input 1 (task %llu 'fail_eio') failed",
             (unsigned long long)dagger_task_id(bad));
    ASSERT_STR_HAS(dagger_task_errmsg(s), want);
    dagger_task_t *all[] = {ok1, bad, ok2, s};
    for (int i = 0; i < 4; i++)
        dagger_task_release(all[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int returns_code(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return (int)dagger_arg_i64(a, 0);
}

TEST(nonzero_return_without_fail_is_an_error)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *a = dagger_spawn(ctx, returns_code, DAGGER_ERANGE);
    ASSERT_ERR(dagger_fetch(a, NULL), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_task_errmsg(a), "returned DAGGER_ERANGE");
    dagger_task_t *b = dagger_spawn(ctx, returns_code, 3);
    ASSERT_ERR(dagger_fetch(b, NULL), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_task_errmsg(b), "the task body returned 3");
    dagger_task_release(a);
    dagger_task_release(b);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(wait_never_reports_the_task_error)
{
    dagger_ctx_t *ctx = test_ctx(0);
    dagger_task_t *a = dagger_spawn(ctx, fail_eio);
    dagger_task_t *b = dagger_spawn(ctx, add_one, a);
    ASSERT_OK(dagger_wait(b));
    ASSERT_OK(dagger_wait(a));
    ASSERT_TRUE(dagger_task_done(a) && dagger_task_done(b));
    ASSERT_ERR(dagger_task_error(b), DAGGER_EUPSTREAM);
    dagger_task_release(a);
    dagger_task_release(b);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(error_names_and_strings)
{
    ASSERT_STR_EQ(dagger_err_name(DAGGER_EUPSTREAM), "DAGGER_EUPSTREAM");
    ASSERT_STR_EQ(dagger_err_name(0), "DAGGER_OK");
    ASSERT_STR_EQ(dagger_err_name(12345), "DAGGER_E?");
    ASSERT_STR_EQ(dagger_strerror(DAGGER_ESCOPE), "no processor satisfies the scope");
    ASSERT_STR_EQ(dagger_strerror(DAGGER_ENOMEM), "out of memory");
    ASSERT_STR_EQ(dagger_strerror(-999999), "unknown error");
    ASSERT_EQ(DAGGER_EINVAL, -EINVAL);
    ASSERT_TRUE(dagger_version_number() ==
                DAGGER_VERSION_MAJOR * 10000 + DAGGER_VERSION_MINOR * 100 + DAGGER_VERSION_PATCH);
    ASSERT_PTR(dagger_version());
}

/* ---------------------------------------------------------------- nested tasks */

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

static void run_fib(int threads)
{
    dagger_ctx_t *ctx = test_ctx(threads);
    dagger_task_t *t = dagger_spawn(ctx, fib, 20);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 6765);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(nested_fib20_one_thread) { run_fib(1); }
TEST(nested_fib20_n_threads) { run_fib(4); }

static int fetch_self(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = dagger_fetch(dagger_tc_task(tc), NULL);
    *out = dagger_i64(rc);
    return 0;
}

TEST(a_task_fetching_itself_is_refused)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, fetch_self);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, DAGGER_EDEADLK);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int tc_info(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    char buf[96];
    snprintf(buf, sizeof buf, "%llu %s %d", (unsigned long long)dagger_tc_id(tc),
             dagger_tc_name(tc), dagger_tc_thread(tc));
    *out = dagger_str_copy(tc, buf);
    return 0;
}

TEST(task_context_reports_id_name_thread)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "custom name";
    dagger_scope_t *one = dagger_scope_thread(1); /* main would run it itself (next case) */
    o.scope = one;
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, tc_info);
    dagger_scope_release(one);
    const char *s;
    ASSERT_OK(dagger_fetch_str(t, &s));
    char want[96];
    snprintf(want, sizeof want, "%llu custom name 1", (unsigned long long)dagger_task_id(t));
    ASSERT_STR_EQ(s, want);
    ASSERT_STR_EQ(dagger_task_name(t), "custom name");
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* main fetches a task that no worker took: it runs it itself, and the task reports thread -1 (as
 * on an aux thread); what it spawns and waits for runs on the workers or on main. */
static _Atomic int children_on_main;

static int ident_i64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    if (dagger_tc_thread(tc) < 0)
        atomic_fetch_add(&children_on_main, 1);
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

static int sum_children(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t n = dagger_arg_i64(a, 0), sum = 0;
    dagger_task_t *c[16];
    for (int64_t i = 0; i < n; i++)
        if (!(c[i] = dagger_spawn(dagger_tc_ctx(tc), ident_i64, i)))
            return dagger_fail(tc, DAGGER_ENOMEM, "spawn %lld", (long long)i);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = -1;
        int rc = dagger_fetch_i64(c[i], &v);
        dagger_task_release(c[i]);
        if (rc)
            return rc;
        sum += v;
    }
    *out = dagger_i64(sum * 1000 + dagger_tc_thread(tc));
    return 0;
}

TEST(main_runs_the_task_it_fetches_when_no_worker_took_it)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&gate_open, 0);
    dagger_task_t *busy = dagger_spawn(ctx, slow_value, 5); /* the only worker waits in it */
    while (!dagger_task_started(busy))
        usleep(100);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "on main";
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, tc_info);
    const char *s;
    ASSERT_OK(dagger_fetch_str(t, &s)); /* the worker is busy: main ran it */
    char want[96];
    snprintf(want, sizeof want, "%llu on main -1", (unsigned long long)dagger_task_id(t));
    ASSERT_STR_EQ(s, want);
    dagger_task_release(t);
    /* A task on main that spawns and waits: from its first spawn main holds a deque that the
     * workers steal from, where its children go; the worker is busy, so main runs them all as it
     * waits (without that deque they would wait for the worker). */
    atomic_store(&children_on_main, 0);
    t = dagger_spawn(ctx, sum_children, (int64_t)16);
    int64_t v = 0;
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, 120 * 1000 - 1);
    ASSERT_EQ(atomic_load(&children_on_main), 16);
    dagger_task_release(t);
    /* Its function spawns: from now on main leaves such a task to the workers (it would be one
     * thread more than the pool's for the whole fan-out), and waits. */
    t = dagger_spawn(ctx, sum_children, (int64_t)4);
    atomic_store(&gate_open, 1);
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, 6 * 1000 + 0);
    dagger_task_release(t);
    ASSERT_OK(dagger_fetch_i64(busy, &v));
    ASSERT_EQ(v, 5);
    dagger_task_release(busy);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- sync groups and queues */

static _Atomic int counter;

static int bump(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep((useconds_t)(dagger_args_count(a) ? dagger_arg_i64(a, 0) : 0));
    atomic_fetch_add(&counter, 1);
    return 0;
}

static void spawn_more(dagger_ctx_t *ctx, int n)
{
    for (int i = 0; i < n; i++)
        dagger_task_release(dagger_spawn(ctx, bump, 200));
}

TEST(sync_group_waits_for_every_task)
{
    dagger_ctx_t *ctx = test_ctx(0);
    atomic_store(&counter, 0);
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < 50; i++)
        dagger_task_release(dagger_spawn(ctx, bump, 100));
    spawn_more(ctx, 10); /* nested code on the same thread counts too */
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(atomic_load(&counter), 60);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(sync_group_reports_first_error)
{
    dagger_ctx_t *ctx = test_ctx(0);
    atomic_store(&counter, 0);
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < 10; i++)
        dagger_task_release(dagger_spawn(ctx, bump, 100));
    dagger_task_t *f = dagger_spawn(ctx, fail_eio);
    ASSERT_ERR(dagger_sync_end(ctx), DAGGER_EIO);
    ASSERT_STR_HAS(dagger_last_errmsg(), "'fail_eio': open x.bin");
    ASSERT_EQ(atomic_load(&counter), 10);
    dagger_task_release(f);
    ASSERT_ERR(dagger_sync_end(ctx), DAGGER_ESTATE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "no task-queue block of this context is open");
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int group_inside(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    if (rc)
        return rc;
    for (int i = 0; i < 20; i++)
        dagger_task_release(dagger_spawn(ctx, bump, 100));
    rc = dagger_sync_end(ctx);
    *out = dagger_i64(atomic_load(&counter));
    return rc;
}

TEST(sync_group_inside_a_task_on_one_thread)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&counter, 0);
    dagger_task_t *t = dagger_spawn(ctx, group_inside);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(t, &r));
    ASSERT_EQ(r, 20);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(bulk_queue_launches_at_end)
{
    dagger_ctx_t *ctx = test_ctx(2);
    atomic_store(&counter, 0);
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
    dagger_task_t *ts[20];
    for (int i = 0; i < 20; i++)
        ts[i] = dagger_spawn(ctx, bump, 0);
    usleep(20000);
    ASSERT_EQ(atomic_load(&counter), 0); /* held: none can have started */
    ASSERT_FALSE(dagger_task_done(ts[0]));
    ASSERT_ERR(dagger_fetch(ts[3], NULL), DAGGER_EDEADLK);
    ASSERT_STR_HAS(dagger_last_errmsg(), "held by the open bulk queue");
    ASSERT_ERR(dagger_wait(ts[4]), DAGGER_EDEADLK);
    ASSERT_OK(dagger_queue_end(ctx));
    for (int i = 0; i < 20; i++) {
        ASSERT_OK(dagger_fetch(ts[i], NULL));
        dagger_task_release(ts[i]);
    }
    ASSERT_EQ(atomic_load(&counter), 20);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int order_log[200];
static _Atomic int order_n;

static int log_order(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep((useconds_t)(dagger_arg_i64(a, 0) % 3) * 100);
    order_log[atomic_fetch_add(&order_n, 1)] = (int)dagger_arg_i64(a, 0);
    return 0;
}

TEST(sequential_queue_runs_in_spawn_order)
{
    dagger_ctx_t *ctx = test_ctx(0);
    atomic_store(&order_n, 0);
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_WAITALL));
    for (int i = 0; i < 100; i++)
        dagger_task_release(dagger_spawn(ctx, log_order, i));
    ASSERT_OK(dagger_queue_end(ctx));
    ASSERT_EQ(atomic_load(&order_n), 100);
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(order_log[i], i);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(sequential_queue_without_waitall_still_orders)
{
    dagger_ctx_t *ctx = test_ctx(0);
    atomic_store(&order_n, 0);
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL));
    dagger_task_t *last = NULL;
    for (int i = 0; i < 50; i++) {
        dagger_task_release(last);
        last = dagger_spawn(ctx, log_order, i);
    }
    ASSERT_OK(dagger_queue_end(ctx));
    ASSERT_OK(dagger_wait(last));
    ASSERT_EQ(atomic_load(&order_n), 50);
    for (int i = 0; i < 50; i++)
        ASSERT_EQ(order_log[i], i);
    dagger_task_release(last);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(waitall_queue_nested_in_bulk)
{
    dagger_ctx_t *ctx = test_ctx(2);
    atomic_store(&counter, 0);
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_WAITALL));
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
    for (int i = 0; i < 30; i++)
        dagger_task_release(dagger_spawn(ctx, bump, 50));
    ASSERT_EQ(atomic_load(&counter), 0);
    ASSERT_OK(dagger_queue_end(ctx)); /* bulk: launch */
    ASSERT_OK(dagger_queue_end(ctx)); /* wait-all: every task of both blocks */
    ASSERT_EQ(atomic_load(&counter), 30);
    ASSERT_ERR(dagger_queue_begin(ctx, 1u << 7), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown mode bits");
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- syncdeps and cancellation */

static _Atomic int flag_a;

static int set_flag(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    usleep(20000);
    atomic_store(&flag_a, 1);
    return 0;
}

static int read_flag(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(atomic_load(&flag_a));
    return 0;
}

TEST(syncdeps_order_without_passing_values)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *a = dagger_spawn(ctx, set_flag);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.syncdeps = &a;
    o.nsyncdeps = 1;
    dagger_task_t *b = dagger_spawn_opts(ctx, &o, read_flag);
    int64_t r;
    ASSERT_OK(dagger_fetch_i64(b, &r));
    ASSERT_EQ(r, 1);
    /* A failed syncdep fails the task. */
    dagger_task_t *f = dagger_spawn(ctx, fail_eio);
    o.syncdeps = &f;
    dagger_task_t *c = dagger_spawn_opts(ctx, &o, read_flag);
    ASSERT_ERR(dagger_fetch(c, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(c), "syncdep (task");
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_task_release(f);
    dagger_task_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int cancel_ran;

static int mark_ran(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store(&cancel_ran, 1);
    return 0;
}

TEST(cancel_a_queued_task_never_runs)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&gate_open, 0);
    atomic_store(&cancel_ran, 0);
    dagger_task_t *blocker = dagger_spawn(ctx, slow_value, 1); /* holds the only worker */
    dagger_task_t *t = dagger_spawn(ctx, mark_ran);
    dagger_task_t *dep = dagger_spawn(ctx, add_one, t);
    ASSERT_OK(dagger_cancel(t));
    atomic_store(&gate_open, 1);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ECANCELED);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "cancelled before it ran");
    ASSERT_ERR(dagger_fetch(dep, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(dep), "cancelled before it ran");
    ASSERT_EQ(atomic_load(&cancel_ran), 0);
    ASSERT_OK(dagger_fetch(blocker, NULL));
    dagger_task_release(blocker);
    dagger_task_release(t);
    dagger_task_release(dep);
    ASSERT_ERR(dagger_cancel(NULL), DAGGER_EINVAL);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int spinner_started;

static int spin_until_cancelled(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store(&spinner_started, 1);
    while (!dagger_tc_cancelled(tc))
        usleep(100);
    *out = dagger_i64(7);
    return 0;
}

TEST(cancel_a_running_task_sees_the_flag)
{
    dagger_ctx_t *ctx = test_ctx(2);
    atomic_store(&spinner_started, 0);
    dagger_task_t *t = dagger_spawn(ctx, spin_until_cancelled);
    while (!atomic_load(&spinner_started))
        usleep(100);
    ASSERT_OK(dagger_cancel(t));
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ECANCELED);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "cancelled while running");
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- allocation and context */

TEST(zero_allocations_per_task_after_warm_up)
{
    /* Each round spawns 2n tasks (a chain with 1- and 3-argument tasks, and independent ones)
     * in sync groups of 1000. The pools grow until they hold the high-water mark of a round,
     * which depends on scheduling; from then on a round allocates nothing. A per-task
     * allocation would show in every round (n of them), so a round of 0 settles it. */
    dagger_ctx_t *ctx = test_ctx(2);
    const int n = test_level_full() ? 200000 : 50000;
    uint64_t last = UINT64_MAX;
    int round;
    for (round = 0; round < 30 && last != 0; round++) {
        dagger_alloc_stats_t s0, s1;
        dagger_alloc_stats(&s0);
        dagger_task_t *prev = dagger_spawn(ctx, add_one, 0);
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int i = 1; i < n; i++) {
            if (i % 1000 == 0) { /* bound the tasks in flight */
                ASSERT_OK(dagger_sync_end(ctx));
                ASSERT_OK(dagger_sync_begin(ctx));
            }
            dagger_task_t *t =
                (i % 3) ? dagger_spawn(ctx, add_one, prev) : dagger_spawn(ctx, add_i, prev, 0, 0);
            dagger_task_t *side = dagger_spawn(ctx, add_one, i);
            dagger_task_release(side);
            dagger_task_release(prev);
            prev = t;
        }
        ASSERT_OK(dagger_sync_end(ctx));
        int64_t r;
        ASSERT_OK(dagger_fetch_i64(prev, &r));
        ASSERT_EQ(r, n - (n - 1) / 3);
        dagger_task_release(prev);
        dagger_alloc_stats(&s1);
        last = s1.allocs - s0.allocs;
        printf("round %d: %llu allocations for %d tasks\n", round, (unsigned long long)last, 2 * n);
    }
    ASSERT_EQ(last, 0);
    /* The counters count (the context's own allocations at least): a 0 above is not a dead
     * counter. The first round warms the pools up unless earlier cases of this process did. */
    dagger_alloc_stats_t all;
    dagger_alloc_stats(&all);
    ASSERT_TRUE(all.allocs > 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(close_reports_live_handles)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, one);
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_last_errmsg(), "1 task handle is still held");
    int64_t r; /* the context is still usable */
    ASSERT_OK(dagger_fetch_i64(t, &r));
    dagger_task_t *u = dagger_spawn(ctx, add_one, t);
    ASSERT_OK(dagger_fetch_i64(u, &r));
    ASSERT_EQ(r, 2);
    dagger_task_release(t);
    dagger_task_release(u);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(close_refuses_an_open_block_instead_of_hanging)
{
    dagger_ctx_t *ctx = test_ctx(1);
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
    dagger_task_t *t = dagger_spawn(ctx, one); /* held until the block ends */
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_ESTATE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "still open on this thread");
    ASSERT_OK(dagger_queue_end(ctx));
    ASSERT_OK(dagger_fetch(t, NULL));
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(close_force_closes_with_live_handles)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, one);
    (void)t;
    ASSERT_OK(dagger_ctx_close_ex(ctx, DAGGER_CLOSE_FORCE));
}

TEST(bad_environment_is_reported)
{
    setenv("DAGGER_NUM_THREADS", "lots", 1);
    dagger_ctx_t *ctx = NULL;
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_NUM_THREADS='lots' is invalid");
    ASSERT_NULL(ctx);
    /* A huge value with a suffix overflowed a long before the range check (UBSan). */
    setenv("DAGGER_NUM_THREADS", "9223372036854775807m", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_NUM_THREADS='9223372036854775807m' is invalid");
    setenv("DAGGER_NUM_THREADS", "99999999999999999999", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "is invalid: expected an integer within 1..");
    ASSERT_NULL(ctx);
    setenv("DAGGER_NUM_THREADS", "3", 1);
    ASSERT_OK(dagger_ctx_open(&ctx, NULL));
    ASSERT_EQ(dagger_ctx_num_threads(ctx), 3);
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_NUM_THREADS");
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = -2;
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "num_threads -2 is out of range");
}

TEST(idle_spin_setting_is_checked)
{
    dagger_ctx_t *ctx = NULL;
    setenv("DAGGER_SPIN_US", "soon", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(),
                   "DAGGER_SPIN_US='soon' is invalid: expected an integer within 0..1000000");
    ASSERT_NULL(ctx);
    setenv("DAGGER_SPIN_US", "-1", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_SPIN_US='-1' is invalid");
    setenv("DAGGER_SPIN_US", "1000001", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_EINVAL);
    unsetenv("DAGGER_SPIN_US");
}

static int range_sum(dagger_tc_t *tc, int64_t lo, int64_t hi, void *ud)
{
    (void)tc;
    int64_t *v = ud;
    for (int64_t i = lo; i < hi; i++)
        v[i] = i;
    return 0;
}

/* Bursts of loops and fetches from main, then a close, with the worker lingering long between
 * them (1 s), not at all, and briefly: every result right and every close done, whichever
 * state (lingering, parked) the worker and main are in when work comes. That a close does not
 * wait for the spin (the worker gives its counts back first) is a matter of time: bench/. On a
 * machine with one CPU nothing lingers and this runs the plain path. */
TEST(lingering_workers_keep_results_and_close)
{
    const char *spins[] = {"1000000", "0", "50"};
    for (int k = 0; k < 3; k++) {
        setenv("DAGGER_SPIN_US", spins[k], 1);
        dagger_ctx_t *ctx = test_ctx(1); /* a spare core on most machines: main spins too */
        int64_t v[1000];
        for (int r = 0; r < 20; r++) {
            memset(v, 0xff, sizeof v);
            ASSERT_OK(dagger_parallel_for(ctx, 0, 1000, 10, range_sum, v));
            for (int i = 0; i < 1000; i++)
                ASSERT_EQ(v[i], i);
            dagger_task_t *t = dagger_spawn(ctx, one);
            int64_t x = 0;
            ASSERT_OK(dagger_fetch_i64(t, &x));
            ASSERT_EQ(x, 1);
            dagger_task_release(t);
            if (r % 5 == 0)
                usleep(2000); /* the worker lingers, or parks after the short spin */
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
    unsetenv("DAGGER_SPIN_US");
}

static int echo_str(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = *dagger_arg(a, 0);
    return 0;
}

TEST(out_of_memory_reaches_fetch)
{
    dagger_ctx_t *ctx = test_ctx(1);
    char big[8192];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    dagger_task_release(dagger_spawn(ctx, one)); /* warm the task-record cache */
    dagger_fault_alloc(1);                       /* the copy of the 8 KiB string argument */
    dagger_task_t *t = dagger_spawn(ctx, echo_str, big);
    ASSERT_PTR(t);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ENOMEM);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "out of memory copying argument 0 (8191 bytes)");
    dagger_task_t *u = dagger_spawn(ctx, echo_str, big); /* works again */
    const char *s;
    ASSERT_OK(dagger_fetch_str(u, &s));
    ASSERT_EQ(strlen(s), 8191);
    dagger_task_release(t);
    dagger_task_release(u);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Run by fault_injection_from_the_environment in a child process with DAGGER_FAULT_ALLOC=1; on
 * its own (no variable) it has nothing to check. */
TEST(fault_env_child)
{
    if (!getenv("DAGGER_FAULT_ALLOC"))
        return;
    dagger_ctx_t *ctx = NULL;
    ASSERT_ERR(dagger_ctx_open(&ctx, NULL), DAGGER_ENOMEM); /* the very first allocation */
    ASSERT_STR_HAS(dagger_last_errmsg(), "out of memory");
    ctx = test_ctx(1); /* the fault fired once: the next open works */
    dagger_task_t *t = dagger_spawn(ctx, one);
    ASSERT_OK(dagger_fetch(t, NULL));
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(fault_injection_from_the_environment)
{
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        setenv("DAGGER_FAULT_ALLOC", "1", 1);
        execl("/proc/self/exe", "test_core", "fault_env_child", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* ---------------------------------------------------------------- bad input */

TEST(bad_input_is_an_error_not_a_crash)
{
    dagger_value_t v;
    double d;
    int64_t i;
    bool b;
    const char *s;
    void *p;
    ASSERT_ERR(dagger_ctx_open(NULL, NULL), DAGGER_EINVAL);
    ASSERT_ERR(dagger_ctx_close(NULL), DAGGER_EINVAL);
    ASSERT_EQ(dagger_ctx_num_threads(NULL), 0);
    ASSERT_NULL(dagger_spawn(NULL, one));
    ASSERT_STR_HAS(dagger_last_errmsg(), "the context is NULL");
    ASSERT_ERR(dagger_fetch(NULL, &v), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the task handle is NULL");
    ASSERT_ERR(dagger_wait(NULL), DAGGER_EINVAL);
    ASSERT_ERR(dagger_fetch_f64(NULL, &d), DAGGER_EINVAL);
    ASSERT_ERR(dagger_cancel(NULL), DAGGER_EINVAL);
    ASSERT_FALSE(dagger_task_done(NULL));
    ASSERT_EQ(dagger_task_error(NULL), 0);
    ASSERT_STR_EQ(dagger_task_errmsg(NULL), "");
    ASSERT_EQ(dagger_task_id(NULL), 0);
    ASSERT_STR_EQ(dagger_task_name(NULL), "");
    ASSERT_NULL(dagger_task_retain(NULL));
    dagger_task_release(NULL);
    ASSERT_ERR(dagger_queue_begin(NULL, 0), DAGGER_EINVAL);
    ASSERT_ERR(dagger_queue_end(NULL), DAGGER_EINVAL);
    ASSERT_ERR(dagger_sync_end(NULL), DAGGER_EINVAL);
    ASSERT_NULL(dagger_scope_union(NULL, NULL));
    ASSERT_NULL(dagger_scope_intersect(dagger_scope_any(), NULL));
    dagger_scope_release(NULL);
    char buf[16];
    ASSERT_TRUE(dagger_scope_format(NULL, buf, sizeof buf) > 0);
    ASSERT_ERR(dagger_value_encode(NULL, NULL, 0), DAGGER_EINVAL);
    ASSERT_ERR(dagger_value_decode(NULL, 0, &v), DAGGER_EINVAL);
    ASSERT_STR_EQ(dagger_kind_name(99), "unknown");
    dagger_alloc_stats(NULL);
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, one);
    ASSERT_ERR(dagger_fetch_f64(t, NULL), DAGGER_EINVAL);
    ASSERT_ERR(dagger_fetch_i64(t, NULL), DAGGER_EINVAL);
    ASSERT_ERR(dagger_fetch_bool(t, NULL), DAGGER_EINVAL);
    ASSERT_ERR(dagger_fetch_str(t, NULL), DAGGER_EINVAL);
    ASSERT_ERR(dagger_fetch_ptr(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "out is NULL");
    ASSERT_OK(dagger_fetch_i64(t, &i));
    ASSERT_ERR(dagger_fetch_bool(t, &b), DAGGER_ETYPE);
    ASSERT_ERR(dagger_fetch_str(t, &s), DAGGER_ETYPE);
    ASSERT_ERR(dagger_fetch_ptr(t, &p), DAGGER_ETYPE);
    ASSERT_OK(dagger_fetch(t, NULL)); /* the value is optional */
    ASSERT_ERR(dagger_ctx_close_ex(ctx, 1u << 9), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown flags");
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.stack_size = 100;
    dagger_ctx_t *bad = NULL;
    ASSERT_ERR(dagger_ctx_open(&bad, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "below the 16 KiB minimum");
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- encoding */

static void roundtrip(dagger_value_t v)
{
    unsigned char buf[256];
    long n = dagger_value_encode(&v, NULL, 0);
    ASSERT_TRUE(n >= 8);
    ASSERT_EQ(dagger_value_encode(&v, buf, sizeof buf), n);
    dagger_value_t w;
    ASSERT_EQ(dagger_value_decode(buf, (size_t)n, &w), n);
    ASSERT_EQ(w.kind, v.kind);
    switch (v.kind) {
    case DAGGER_KIND_BOOL:
        ASSERT_EQ(w.u.b, v.u.b);
        break;
    case DAGGER_KIND_I64:
        ASSERT_TRUE(w.u.i == v.u.i);
        break;
    case DAGGER_KIND_F64:
        ASSERT_TRUE(memcmp(&w.u.f, &v.u.f, 8) == 0);
        break;
    case DAGGER_KIND_STR:
        ASSERT_STR_EQ(w.u.s, v.u.s);
        ASSERT_EQ(w.len, v.len);
        break;
    case DAGGER_KIND_BLOB:
        ASSERT_EQ(w.len, v.len);
        ASSERT_TRUE(v.len == 0 || memcmp(w.u.p, v.u.p, v.len) == 0);
        break;
    case DAGGER_KIND_TASK:
        ASSERT_TRUE(w.flags & DAGGER_VALUE_REMOTE);
        ASSERT_TRUE((uint64_t)w.u.i == dagger_task_id(v.u.t));
        break;
    default:
        break;
    }
    /* Every truncation is rejected. */
    for (long cut = 0; cut < n; cut++)
        ASSERT_ERR(dagger_value_decode(buf, (size_t)cut, &w), DAGGER_EINVAL);
}

TEST(encode_decode_round_trips)
{
    roundtrip(dagger_nil());
    roundtrip(dagger_bool(true));
    roundtrip(dagger_bool(false));
    roundtrip(dagger_i64(INT64_MIN));
    roundtrip(dagger_i64(1234567890123));
    roundtrip(dagger_f64(-0.0));
    roundtrip(dagger_f64(3.141592653589793));
    roundtrip(dagger_f64(1e308));
    roundtrip(dagger_str(""));
    roundtrip(dagger_str("héllo wörld"));
    roundtrip(dagger_blob("", 0));
    unsigned char bytes[100];
    for (int i = 0; i < 100; i++)
        bytes[i] = (unsigned char)(i * 37);
    roundtrip(dagger_blob(bytes, sizeof bytes));
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, one);
    roundtrip(dagger_taskv(t));
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
    int x;
    dagger_value_t p = dagger_ptr(&x);
    ASSERT_ERR(dagger_value_encode(&p, NULL, 0), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "a local pointer cannot be encoded");
}

TEST(decode_rejects_malformed_input)
{
    unsigned char buf[64] = {0};
    dagger_value_t w;
    buf[0] = 99; /* unknown kind */
    ASSERT_ERR(dagger_value_decode(buf, 16, &w), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown kind 99");
    buf[0] = DAGGER_KIND_STR; /* length beyond the buffer */
    buf[4] = 200;
    ASSERT_ERR(dagger_value_decode(buf, 64, &w), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "truncated str value");
    buf[4] = 3; /* not NUL-terminated */
    memcpy(buf + 8, "abcd", 4);
    ASSERT_ERR(dagger_value_decode(buf, 64, &w), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "not NUL-terminated");
    buf[0] = DAGGER_KIND_BOOL; /* a length on a fixed-size kind */
    ASSERT_ERR(dagger_value_decode(buf, 64, &w), DAGGER_EINVAL);
    buf[4] = 0;
    buf[8] = 2; /* a bool byte that is not 0/1 */
    ASSERT_ERR(dagger_value_decode(buf, 64, &w), DAGGER_EINVAL);
    buf[0] = DAGGER_KIND_BLOB; /* 4 GiB claimed */
    buf[4] = buf[5] = buf[6] = buf[7] = 0xff;
    ASSERT_ERR(dagger_value_decode(buf, 64, &w), DAGGER_EINVAL);
}

TEST_LIST(quickstart_add, values_of_every_kind, wrong_kind_fails_the_task,
          spawn_time_errors_come_back_as_failed_tasks, chain_depth_100000,
          chain_depth_100000_failing_root, diamond, reduction_tree_1000_leaves, fan_out_4x8,
          sixteen_threads_fetch_the_same_task_20_rounds, fetch_reports_task_error,
          fetch_reports_upstream_error, error_chain_three_deep,
          error_in_diamond_and_unrelated_task_succeeds, error_names_the_failed_input_among_several,
          nonzero_return_without_fail_is_an_error, wait_never_reports_the_task_error,
          error_names_and_strings, nested_fib20_one_thread, nested_fib20_n_threads,
          a_task_fetching_itself_is_refused, task_context_reports_id_name_thread,
          main_runs_the_task_it_fetches_when_no_worker_took_it, sync_group_waits_for_every_task,
          sync_group_reports_first_error, sync_group_inside_a_task_on_one_thread,
          bulk_queue_launches_at_end, sequential_queue_runs_in_spawn_order,
          sequential_queue_without_waitall_still_orders, waitall_queue_nested_in_bulk,
          syncdeps_order_without_passing_values, cancel_a_queued_task_never_runs,
          cancel_a_running_task_sees_the_flag, zero_allocations_per_task_after_warm_up,
          close_reports_live_handles, close_refuses_an_open_block_instead_of_hanging,
          close_force_closes_with_live_handles, bad_environment_is_reported,
          idle_spin_setting_is_checked, lingering_workers_keep_results_and_close,
          out_of_memory_reaches_fetch, fault_env_child, fault_injection_from_the_environment,
          bad_input_is_an_error_not_a_crash, encode_decode_round_trips,
          decode_rejects_malformed_input)
