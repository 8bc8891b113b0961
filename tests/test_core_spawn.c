/* tests/test_core_spawn.c - the argument paths of spawn and the inline paths of the accessors
 * and typed fetches (issue 17).
 *
 * Design: spawn takes the common arguments in one pass (inputs placed right after the
 * arguments in the inline area) and falls back to the general two-pass path for anything
 * else: more inputs than fit inline, syncdeps, chunks, invalid or oversize values, a failed
 * copy. These cases sit on both sides of every fallback and check the values the bodies see,
 * the order of SEQUENTIAL blocks, the first error and its message (the same as the general
 * path gives) and that nothing is left held: dagger_ctx_close returns DAGGER_EBUSY while a
 * task record is still referenced, and the ASan run reports leaked copies.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

#include "dagger/gpu.h"

/* The sum of the i64 arguments (a task argument arrives as its i64 result), times 10 plus the
 * argument count, so that a lost or an extra argument shows. */
static int sum_args(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    int64_t s = 0;
    size_t n = dagger_args_count(a);
    for (size_t i = 0; i < n; i++)
        s += dagger_arg_i64(a, i);
    *out = dagger_i64(s * 10 + (int64_t)n);
    return 0;
}

static int value_of(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

TEST(inputs_on_both_sides_of_the_inline_limit)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *in[6];
    for (int k = 0; k < 6; k++)
        in[k] = dagger_spawn(ctx, value_of, (int64_t)(k + 1) * 100);
    /* k task arguments and m plain ones, interleaved: 16 bytes an argument and 32 an input, so
     * (k, m) = (2, 2) fills the 128 inline bytes exactly and (3, 0), (2, 3), (5, 6) do not */
    for (int k = 0; k <= 5; k++) {
        for (int m = 0; m <= 6; m++) {
            dagger_value_t argv[11];
            int64_t want = 0;
            size_t n = 0;
            for (int i = 0; i < k || i < m; i++) {
                if (i < m) {
                    argv[n++] = dagger_i64(i + 1);
                    want += i + 1;
                }
                if (i < k) {
                    argv[n++] = dagger_taskv(in[i]);
                    want += (int64_t)(i + 1) * 100;
                }
            }
            dagger_task_t *t = dagger_spawnv(ctx, sum_args, argv, n);
            int64_t got = 0;
            ASSERT_OK(dagger_fetch_i64(t, &got));
            ASSERT_EQ(got, want * 10 + (int64_t)n);
            dagger_task_release(t);
        }
    }
    for (int k = 0; k < 6; k++)
        dagger_task_release(in[k]);
    ASSERT_OK(dagger_ctx_close(ctx)); /* every input released: no record left held */
}

/* Appends its argument to the log; the second argument (a task, or nil) is only an input. */
static _Atomic int order_log[64];
static _Atomic int order_n;

static int log_step(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    int i = atomic_fetch_add(&order_n, 1);
    atomic_store(&order_log[i], (int)dagger_arg_i64(a, 0));
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

TEST(a_sequential_block_orders_tasks_that_also_take_inputs)
{
    dagger_ctx_t *ctx = test_ctx(2);
    atomic_store(&order_n, 0);
    dagger_task_t *first = dagger_spawn(ctx, value_of, (int64_t)7);
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL));
    dagger_task_t *t[40];
    for (int i = 0; i < 40; i++) /* one argument and one input beside the block's input */
        t[i] = dagger_spawn(ctx, log_step, (int64_t)i, first);
    ASSERT_OK(dagger_queue_end(ctx));
    for (int i = 0; i < 40; i++) {
        int64_t v = -1;
        ASSERT_OK(dagger_fetch_i64(t[i], &v));
        ASSERT_EQ(v, i);
        dagger_task_release(t[i]);
    }
    ASSERT_EQ(atomic_load(&order_n), 40);
    for (int i = 0; i < 40; i++)
        ASSERT_EQ(atomic_load(&order_log[i]), i);
    dagger_task_release(first);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int concat(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s+%s:%lld", dagger_arg_str(a, 0), dagger_arg_str(a, 1),
             (long long)dagger_arg_i64(a, 2));
    *out = dagger_str_copy(tc, buf);
    return 0;
}

TEST(copied_and_borrowed_strings_beside_an_input)
{
    dagger_ctx_t *ctx = test_ctx(1);
    char mine[16] = "copied", kept[16] = "borrowed";
    dagger_task_t *x = dagger_spawn(ctx, value_of, (int64_t)5);
    dagger_value_t argv[3] = {dagger_str(mine), dagger_str_borrow(kept), dagger_taskv(x)};
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK)); /* held: starts at the block's end */
    dagger_task_t *t = dagger_spawnv(ctx, concat, argv, 3);
    strcpy(mine, "overwritten"); /* the task has its own copy */
    ASSERT_OK(dagger_queue_end(ctx));
    const char *s = NULL;
    ASSERT_OK(dagger_fetch_str(t, &s));
    ASSERT_STR_EQ(s, "copied+borrowed:5");
    dagger_task_release(t);
    dagger_task_release(x);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Each bad spawn must fail with the first problem in argument order as the general path
 * reports it, and drop what the one-pass path took before it saw the problem. */
TEST(bad_arguments_after_taken_ones_fail_and_leave_nothing_held)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *x = dagger_spawn(ctx, value_of, (int64_t)1);
    static char huge_stub[1];
    struct {
        dagger_value_t argv[4];
        size_t n;
        int code;
        const char *msg;
    } cases[] = {
        {{dagger_str("kept copy"), dagger_taskv(x), dagger_taskv(NULL)},
         3,
         DAGGER_EINVAL,
         "argument 2 is a NULL task handle"},
        {{dagger_taskv(x), dagger_i64(3), dagger_str("s"), dagger_nil()},
         4,
         0,
         NULL}, /* valid: nil is an argument like any other (filled in below) */
        {{dagger_taskv(x), dagger_blob(huge_stub, (size_t)1 << 32), dagger_taskv(NULL)},
         3,
         DAGGER_EINVAL,
         "argument 2 is a NULL task handle"}, /* checks first, then the copies (and E2BIG) */
        {{dagger_str("a"), dagger_taskv(x), dagger_blob(huge_stub, (size_t)1 << 32)},
         3,
         DAGGER_E2BIG,
         "of 4 GiB or more"},
    };
    cases[1].argv[3].kind = 99; /* an unknown kind after a retained input and a copy */
    cases[1].code = DAGGER_EINVAL;
    cases[1].msg = "argument 3 has an unknown kind (99)";
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dagger_task_t *t = dagger_spawnv(ctx, sum_args, cases[c].argv, cases[c].n);
        ASSERT_PTR(t);
        ASSERT_ERR(dagger_fetch(t, NULL), cases[c].code);
        ASSERT_STR_HAS(dagger_task_errmsg(t), cases[c].msg);
        dagger_task_release(t);
    }
    dagger_value_t remote = dagger_taskv(x);
    remote.flags |= DAGGER_VALUE_REMOTE;
    dagger_value_t argv[2] = {dagger_taskv(x), remote};
    dagger_task_t *t = dagger_spawnv(ctx, sum_args, argv, 2);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t),
                   "argument 1 is a remote task reference, which has no local handle");
    dagger_task_release(t);
    dagger_task_release(x);
    ASSERT_OK(dagger_ctx_close(ctx)); /* x's retains by the failed spawns were all dropped */
}

TEST(a_failed_copy_is_reported_at_its_argument_unless_a_later_one_is_invalid)
{
    dagger_ctx_t *ctx = test_ctx(1);
    char big[4096];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    dagger_task_t *x = dagger_spawn(ctx, value_of, (int64_t)1);
    dagger_task_release(dagger_spawn(ctx, value_of, (int64_t)2)); /* warm the record cache */
    dagger_fault_alloc(1);                                        /* the copy of the string */
    dagger_task_t *t = dagger_spawn(ctx, concat, x, big, (int64_t)3);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ENOMEM);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "out of memory copying argument 1 (4095 bytes)");
    dagger_task_release(t);
    /* a later invalid argument is the error, as the checks come before the copies */
    dagger_fault_alloc(1);
    dagger_value_t argv[3] = {dagger_str(big), dagger_taskv(x), dagger_taskv(NULL)};
    t = dagger_spawnv(ctx, sum_args, argv, 3);
    dagger_fault_alloc(0);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 2 is a NULL task handle");
    dagger_task_release(t);
    dagger_task_release(x);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int read_mixed(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    /* f64 accepts an i64 (through the out-of-line lookup), the others their own kind */
    double f = dagger_arg_f64(a, 0) + dagger_arg_f64(a, 1);
    int *p = dagger_arg_ptr(a, 2);
    bool b = dagger_arg_bool(a, 3);
    *out = dagger_f64(f + (double)*p + (b ? 0.5 : 0.0));
    return 0;
}

static int read_wrong(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    int which = (int)dagger_arg_i64(a, 0);
    if (which == 0)
        *out = dagger_i64(dagger_arg_i64(a, 1)); /* a str */
    else
        *out = dagger_i64((int64_t)dagger_arg_f64(a, 5)); /* out of range */
    return 0;
}

TEST(accessors_and_typed_fetches_inline_and_out_of_line)
{
    dagger_ctx_t *ctx = test_ctx(1);
    int three = 3;
    dagger_task_t *ok =
        dagger_spawn(ctx, read_mixed, (int64_t)2, 1.25, (void *)&three, dagger_bool(true));
    double d = 0;
    ASSERT_OK(dagger_fetch_f64(ok, &d));
    ASSERT_NEAR(d, 6.75, 1e-12);
    int64_t i = 0;
    ASSERT_ERR(dagger_fetch_i64(ok, &i), DAGGER_ETYPE); /* finished, but an f64 */
    ASSERT_STR_HAS(dagger_last_errmsg(), "returned a f64, not a i64");
    dagger_task_t *w0 = dagger_spawn(ctx, read_wrong, (int64_t)0, "text");
    ASSERT_ERR(dagger_fetch_i64(w0, &i), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(w0), "argument 1 is a str, not a i64");
    dagger_task_t *w1 = dagger_spawn(ctx, read_wrong, (int64_t)1);
    ASSERT_ERR(dagger_fetch_f64(w1, &d), DAGGER_ETYPE); /* again: the failure stays */
    ASSERT_ERR(dagger_fetch_f64(w1, &d), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(w1),
                   "argument 5 requested as f64, but the task has 1 argument");
    ASSERT_ERR(dagger_fetch_i64(NULL, &i), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the task handle is NULL");
    dagger_task_release(ok);
    dagger_task_release(w0);
    dagger_task_release(w1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- undeferred children */

/* A task that spawns many ready children in a row runs the newest at its spawn once its
 * worker's deque is deep (1024 jobs; docs/core.md, "Nested tasks"), so a flat loop keeps a
 * bounded number of task records alive. These cases check every child runs once with its own
 * value, that a child suspending while it runs on its parent's stack resumes, that nested
 * groups inside such children end, and that only plain spawns are run early. */

#define FLAT_N 20000
struct flat {
    _Atomic int64_t ran;      /* children run so far */
    int64_t max_outstanding;  /* the spawner's largest spawned - ran (one worker: exact) */
    int64_t ran_before_end;   /* children run before the spawner's sync_end */
    int64_t mark[FLAT_N];     /* child i writes i + 1 */
    dagger_task_t *h[FLAT_N]; /* handles, for the case whose children fetch a sibling */
    int mode;                 /* 0 plain, 1 with options, 2 fetch an earlier sibling, 3 nested */
};

static int flat_child(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct flat *f = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    int64_t v = i + 1;
    if (f->mode == 2 && i >= 1500 && i % 7 == 0) {
        /* an earlier sibling, perhaps still queued beneath this child on the same stack */
        int64_t w = 0;
        int rc = dagger_fetch_i64(f->h[i - 1500], &w);
        if (rc)
            return rc;
        v = w == i - 1500 + 1 ? v : -1;
    } else if (f->mode == 3 && i % 500 == 0) {
        /* a group of its own: 1100 grandchildren, deep enough to be run early in turn */
        dagger_ctx_t *c = dagger_tc_ctx(tc);
        static struct flat inner[FLAT_N / 500];
        struct flat *g = &inner[i / 500];
        int rc = dagger_sync_begin(c);
        if (rc)
            return rc;
        for (int64_t k = 0; k < 1100; k++)
            dagger_task_release(dagger_spawn(c, flat_child, (void *)g, k));
        rc = dagger_sync_end(c);
        if (rc)
            return rc;
        for (int64_t k = 0; k < 1100; k++)
            v = g->mark[k] == k + 1 ? v : -1;
    }
    f->mark[i] = v;
    atomic_fetch_add_explicit(&f->ran, 1, memory_order_relaxed);
    *out = dagger_i64(v);
    return 0;
}

static int flat_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct flat *f = dagger_arg_ptr(a, 0);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    for (int64_t i = 0; i < FLAT_N; i++) {
        dagger_task_t *t = f->mode == 1 ? dagger_spawn_opts(c, &o, flat_child, (void *)f, i)
                                        : dagger_spawn(c, flat_child, (void *)f, i);
        if (!t)
            return dagger_fail(tc, DAGGER_ENOMEM, "spawn %lld", (long long)i);
        int64_t out_now = i + 1 - atomic_load_explicit(&f->ran, memory_order_relaxed);
        f->max_outstanding = out_now > f->max_outstanding ? out_now : f->max_outstanding;
        if (f->mode == 2)
            f->h[i] = t;
        else
            dagger_task_release(t);
    }
    f->ran_before_end = atomic_load_explicit(&f->ran, memory_order_relaxed);
    return dagger_sync_end(c);
}

static void run_flat(int threads, int mode, struct flat *f)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    dagger_ctx_t *ctx = test_ctx(threads);
    /* On worker 0: a root run by main (which fetches it) would leave the only worker free to
     * run the children before the group's end. */
    dagger_task_t *root = TEST_SPAWN_ON_WORKER(ctx, 0, flat_root, (void *)f);
    ASSERT_PTR(root);
    ASSERT_OK(dagger_wait(root));
    ASSERT_EQ(dagger_task_error(root), 0);
    dagger_task_release(root);
    ASSERT_EQ(atomic_load(&f->ran), FLAT_N);
    for (int64_t i = 0; i < FLAT_N; i++)
        ASSERT_EQ(f->mark[i], i + 1);
    if (mode == 2)
        for (int64_t i = 0; i < FLAT_N; i++)
            dagger_task_release(f->h[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(a_flat_loop_of_spawns_runs_children_early_and_keeps_few_alive)
{
    static struct flat f;
    run_flat(1, 0, &f);
    /* One worker: nothing else runs the children, so those run before the group's end ran at
     * their spawn, and the records alive stay near the deep mark instead of 20000. */
    ASSERT_TRUE(f.max_outstanding <= 2048);
    ASSERT_TRUE(f.ran_before_end >= FLAT_N - 2048);
    run_flat(2, 0, &f);
}

TEST(spawns_with_options_are_never_run_at_their_spawn)
{
    static struct flat f;
    run_flat(1, 1, &f);
    ASSERT_EQ(f.ran_before_end, 0);
    ASSERT_EQ(f.max_outstanding, FLAT_N);
}

TEST(a_child_run_early_that_waits_on_a_queued_sibling_resumes)
{
    static struct flat f;
    run_flat(1, 2, &f);
    run_flat(2, 2, &f);
}

TEST(children_run_early_open_groups_of_their_own)
{
    static struct flat f;
    run_flat(1, 3, &f);
    run_flat(2, 3, &f);
}

/* Inputs taken without a reference (the common spawn) hold one from their registration on: a
 * spawn that fails after it took them (here at its implementations, checked after the
 * arguments) releases none, one that registers them holds each until it completes, whether the
 * input was done already or finished later. Unbalanced counts show as an early free of `a`
 * under ASan, or as DAGGER_EBUSY at close. */
static _Atomic int input_gate;

static int gated_value(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    for (int i = 0; i < 100000 && !atomic_load(&input_gate); i++)
        usleep(100);
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

TEST(inputs_taken_without_a_reference_stay_balanced)
{
    dagger_ctx_t *ctx = test_ctx(2);
    struct dagger_impl impls[17];
    memset(impls, 0, sizeof impls);
    for (int round = 0; round < 2; round++) { /* 0: `a` still running, 1: `a` done */
        atomic_store(&input_gate, round);
        dagger_task_t *a = dagger_spawn(ctx, gated_value, (int64_t)5);
        ASSERT_PTR(a);
        if (round == 1)
            ASSERT_OK(dagger_wait(a));
        dagger_task_t *ok[40];
        for (int k = 0; k < 40; k++) {
            dagger_task_opts_t o;
            dagger_task_opts_init(&o);
            o.impls = impls;
            o.nimpls = 17; /* refused after the arguments were taken */
            dagger_task_t *bad = dagger_spawn_opts(ctx, &o, sum_args, a, (int64_t)k);
            ASSERT_PTR(bad);
            ASSERT_ERR(dagger_fetch(bad, NULL), DAGGER_EINVAL);
            ASSERT_STR_HAS(dagger_task_errmsg(bad), "17 implementations");
            dagger_task_release(bad);
            ok[k] = dagger_spawn(ctx, sum_args, a, (int64_t)k);
            ASSERT_PTR(ok[k]);
        }
        dagger_task_release(a); /* the dependents hold it from here */
        atomic_store(&input_gate, 1);
        for (int k = 0; k < 40; k++) {
            int64_t v = 0;
            ASSERT_OK(dagger_fetch_i64(ok[k], &v));
            ASSERT_EQ(v, (5 + k) * 10 + 2);
            dagger_task_release(ok[k]);
        }
    }
    ASSERT_OK(dagger_ctx_close(ctx)); /* DAGGER_EBUSY if a count was left over */
}

TEST_LIST(inputs_on_both_sides_of_the_inline_limit, inputs_taken_without_a_reference_stay_balanced,
          a_sequential_block_orders_tasks_that_also_take_inputs,
          copied_and_borrowed_strings_beside_an_input,
          bad_arguments_after_taken_ones_fail_and_leave_nothing_held,
          a_failed_copy_is_reported_at_its_argument_unless_a_later_one_is_invalid,
          accessors_and_typed_fetches_inline_and_out_of_line,
          a_flat_loop_of_spawns_runs_children_early_and_keeps_few_alive,
          spawns_with_options_are_never_run_at_their_spawn,
          a_child_run_early_that_waits_on_a_queued_sibling_resumes,
          children_run_early_open_groups_of_their_own);
