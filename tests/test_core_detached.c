/* tests/test_core_detached.c - spawns without a handle: dagger_spawn_detached, its _opts and
 * array forms, and dagger_spawn_detached_impl.
 *
 * Design: a detached spawn is dagger_task_release(dagger_spawn(...)) that returns 0 or an error
 * code. Its plain path makes the record with the runtime's reference alone; the others (options,
 * SEQUENTIAL and BULK blocks) spawn a handle and release it. These cases check on both paths, on
 * one and two workers, that every body runs once with its own arguments and inputs, that a
 * failure (the body's, an input's, a spawn-time one) comes out at the end of the sync group or
 * queue block with its code and message, or else in dagger_ctx_unfetched_failures, that the
 * blocks' order holds, and that nothing is left held: dagger_ctx_close returns DAGGER_EBUSY while
 * a task record is still referenced.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <time.h>

#include "harness.h"

/* ---------------------------------------------------------------- bodies */

/* Child i writes i + 1 to its mark and counts itself. */
#define FLAT_N 20000
struct flat {
    _Atomic int64_t ran;
    _Atomic int64_t mark[FLAT_N];
    int spawn_rc; /* the first non-zero return of a detached spawn (the root's loop) */
};

static int mark_one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct flat *f = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    atomic_fetch_add_explicit(&f->mark[i], i + 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&f->ran, 1, memory_order_relaxed);
    return 0;
}

/* Counts itself, then fails with "boom <k>" when its index is the one given. */
static int count_or_fail(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    _Atomic int64_t *ran = dagger_arg_ptr(a, 0);
    int64_t k = dagger_arg_i64(a, 1), fail_at = dagger_arg_i64(a, 2);
    atomic_fetch_add_explicit(ran, 1, memory_order_relaxed);
    if (k == fail_at)
        return dagger_fail(tc, DAGGER_ETASK, "boom %d", (int)k);
    return 0;
}

static int value_of(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

static int fail_with(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    return dagger_fail(tc, DAGGER_ETASK, "boom %d", (int)dagger_arg_i64(a, 0));
}

/* Adds its input's value times 100 plus its own number to the sum, and counts itself. */
struct sum {
    _Atomic int64_t total;
    _Atomic int64_t ran;
};

static int add_input(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct sum *s = dagger_arg_ptr(a, 0);
    int64_t in = dagger_arg_i64(a, 1), j = dagger_arg_i64(a, 2);
    atomic_fetch_add_explicit(&s->total, in * 100 + j, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->ran, 1, memory_order_relaxed);
    return 0;
}

/* Appends its number and whether it saw its expected name to the log. */
#define LOG_N 300
struct order {
    _Atomic int n;
    _Atomic int log[LOG_N];
    _Atomic int named[LOG_N]; /* 1: dagger_tc_name was the expected name */
};

static int log_step(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct order *o = dagger_arg_ptr(a, 0);
    int i = (int)dagger_arg_i64(a, 1);
    const char *want = dagger_arg_str(a, 2);
    int at = atomic_fetch_add(&o->n, 1);
    if (at >= LOG_N)
        return dagger_fail(tc, DAGGER_ETASK, "log full at step %d", i);
    const char *name = dagger_tc_name(tc);
    atomic_store(&o->log[at], i);
    atomic_store(&o->named[at], name && strcmp(name, want) == 0);
    if (i == (int)dagger_arg_i64(a, 3))
        return dagger_fail(tc, DAGGER_ETASK, "boom %d", i);
    return 0;
}

/* Wait without a handle: until `*ran` reaches `want_ran` and the context's unfetched failures
 * `want_unfetched`, polling for at most about 30 s (a bound against a hang, not a timing
 * check). True when both were reached. */
static bool poll_until(dagger_ctx_t *ctx, _Atomic int64_t *ran, int64_t want_ran,
                       int64_t want_unfetched)
{
    struct timespec ms = {0, 1000 * 1000};
    for (int i = 0; i < 30000; i++) {
        if (atomic_load(ran) >= want_ran && dagger_ctx_unfetched_failures(ctx) >= want_unfetched)
            return true;
        nanosleep(&ms, NULL);
    }
    return false;
}

/* ---------------------------------------------------------------- flat loops */

static int flat_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct flat *f = dagger_arg_ptr(a, 0);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    for (int64_t i = 0; i < FLAT_N; i++) {
        int r = dagger_spawn_detached(c, mark_one, (void *)f, i);
        if (r && !f->spawn_rc)
            f->spawn_rc = r;
    }
    return dagger_sync_end(c);
}

static void check_marks(struct flat *f)
{
    ASSERT_EQ(f->spawn_rc, 0);
    ASSERT_EQ(atomic_load(&f->ran), FLAT_N);
    for (int64_t i = 0; i < FLAT_N; i++)
        ASSERT_EQ(atomic_load(&f->mark[i]), i + 1); /* ran exactly once, with its own index */
}

TEST(a_flat_loop_of_detached_spawns_in_a_task_runs_every_body_once)
{
    static struct flat f;
    for (int threads = 1; threads <= 2; threads++) {
        memset(&f, 0, sizeof f);
        dagger_ctx_t *ctx = test_ctx(threads);
        dagger_task_t *root = dagger_spawn(ctx, flat_root, (void *)&f);
        ASSERT_PTR(root);
        ASSERT_OK(dagger_fetch(root, NULL)); /* the root returns its sync_end: 0 */
        dagger_task_release(root);
        check_marks(&f);
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(a_flat_loop_of_detached_spawns_from_the_main_thread_runs_every_body_once)
{
    static struct flat f;
    for (int threads = 1; threads <= 2; threads++) {
        memset(&f, 0, sizeof f);
        dagger_ctx_t *ctx = test_ctx(threads);
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int64_t i = 0; i < FLAT_N; i++) {
            int r = dagger_spawn_detached(ctx, mark_one, (void *)&f, i);
            if (r && !f.spawn_rc)
                f.spawn_rc = r;
        }
        ASSERT_OK(dagger_sync_end(ctx));
        check_marks(&f);
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- failures in a group */

#define FAIL_N 1000
#define FAIL_AT 617

static int failing_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    _Atomic int64_t *ran = dagger_arg_ptr(a, 0);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    for (int64_t k = 0; k < FAIL_N; k++)
        if (dagger_spawn_detached(c, count_or_fail, (void *)ran, k, (int64_t)FAIL_AT) != 0)
            atomic_fetch_add(ran, FAIL_N * 10); /* shows as a wrong count */
    rc = dagger_sync_end(c);
    if (rc != DAGGER_ETASK || !strstr(dagger_last_errmsg(), "boom 617"))
        return dagger_fail(tc, DAGGER_EINVAL, "the group's end returned %s: %s",
                           dagger_err_name(rc), dagger_last_errmsg());
    return 0;
}

TEST(a_failing_detached_task_is_the_error_of_its_group_end)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        /* from the main thread */
        _Atomic int64_t ran = 0;
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int64_t k = 0; k < FAIL_N; k++)
            ASSERT_EQ(dagger_spawn_detached(ctx, count_or_fail, (void *)&ran, k, (int64_t)FAIL_AT),
                      0);
        ASSERT_ERR(dagger_sync_end(ctx), DAGGER_ETASK);
        ASSERT_STR_HAS(dagger_last_errmsg(), "boom 617");
        ASSERT_EQ(atomic_load(&ran), FAIL_N); /* the others all ran */
        /* from a task: its group's end sees the same (checked by the root) */
        atomic_store(&ran, 0);
        dagger_task_t *root = dagger_spawn(ctx, failing_root, (void *)&ran);
        ASSERT_OK(dagger_fetch(root, NULL));
        dagger_task_release(root);
        ASSERT_EQ(atomic_load(&ran), FAIL_N);
        /* the groups read both failures: none is left unfetched */
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

static int spawn_null_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    rc = dagger_spawn_detached(c, NULL, (int64_t)1);
    int end = dagger_sync_end(c);
    if (rc != 0 || end != DAGGER_EINVAL || !strstr(dagger_last_errmsg(), "function is NULL"))
        return dagger_fail(tc, DAGGER_ETASK, "spawn %s, end %s: %s", dagger_err_name(rc),
                           dagger_err_name(end), dagger_last_errmsg());
    return 0;
}

TEST(spawn_time_errors_of_detached_spawns_reach_the_group_end)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        _Atomic int64_t ran = 0;
        /* the plain path: a NULL function, beside tasks that run */
        ASSERT_OK(dagger_sync_begin(ctx));
        ASSERT_EQ(dagger_spawn_detached(ctx, count_or_fail, (void *)&ran, 0, -1), 0);
        ASSERT_EQ(dagger_spawn_detached(ctx, NULL), 0);
        ASSERT_EQ(dagger_spawn_detached(ctx, count_or_fail, (void *)&ran, 1, -1), 0);
        ASSERT_ERR(dagger_sync_end(ctx), DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_last_errmsg(), "the task function is NULL");
        ASSERT_EQ(atomic_load(&ran), 2);
        /* the same from inside a task */
        dagger_task_t *root = dagger_spawn(ctx, spawn_null_fn);
        ASSERT_OK(dagger_fetch(root, NULL));
        dagger_task_release(root);
        /* the path with options: an occupancy out of range */
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.occupancy = 2.0;
        ASSERT_OK(dagger_sync_begin(ctx));
        ASSERT_EQ(dagger_spawn_detached_opts(ctx, &o, count_or_fail, (void *)&ran, 2, -1), 0);
        ASSERT_ERR(dagger_sync_end(ctx), DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_last_errmsg(), "occupancy 2 is out of range");
        ASSERT_EQ(atomic_load(&ran), 2); /* it never ran */
        /* the array form: arguments announced without an array */
        ASSERT_OK(dagger_sync_begin(ctx));
        ASSERT_EQ(dagger_spawnv_detached(ctx, count_or_fail, NULL, 3), 0);
        ASSERT_ERR(dagger_sync_end(ctx), DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_last_errmsg(), "3 arguments announced but argv is NULL");
        ASSERT_EQ(atomic_load(&ran), 2);
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(a_detached_spawn_with_a_null_context_is_refused_with_a_message_naming_it)
{
    _Atomic int64_t ran = 0;
    ASSERT_ERR(dagger_spawn_detached(NULL, count_or_fail, (void *)&ran, 0, -1), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "dagger_spawn_detached: the context is NULL");
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    ASSERT_ERR(dagger_spawn_detached_opts(NULL, &o, count_or_fail, (void *)&ran, 0, -1),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the context is NULL");
    dagger_value_t argv[3] = {dagger_ptr((void *)&ran), dagger_i64(0), dagger_i64(-1)};
    ASSERT_ERR(dagger_spawnv_detached(NULL, count_or_fail, argv, 3), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the context is NULL");
    ASSERT_ERR(dagger_spawn_detached_impl(NULL, NULL, count_or_fail, "count_or_fail", argv, 3),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "the context is NULL");
    /* a context opened after them has nothing of theirs */
    dagger_ctx_t *ctx = test_ctx(1);
    ASSERT_EQ(atomic_load(&ran), 0);
    ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- inputs */

TEST(detached_tasks_see_the_values_of_their_input_tasks)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        struct sum s = {0};
        /* docs/core.md's sync group: 20 inputs, each read by 6 detached tasks, the input
         * released at once (the detached tasks hold it while they need it) */
        int64_t want = 0;
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int64_t i = 1; i <= 20; i++) {
            dagger_task_t *a = dagger_spawn(ctx, value_of, i);
            ASSERT_PTR(a);
            for (int64_t j = 1; j <= 6; j++) {
                ASSERT_EQ(dagger_spawn_detached(ctx, add_input, (void *)&s, a, j), 0);
                want += i * 100 + j;
            }
            dagger_task_release(a);
        }
        ASSERT_OK(dagger_sync_end(ctx));
        ASSERT_EQ(atomic_load(&s.ran), 120);
        ASSERT_EQ(atomic_load(&s.total), want);
        /* an input made outside the group, finished before some of its readers spawn */
        dagger_task_t *a = dagger_spawn(ctx, value_of, (int64_t)42);
        atomic_store(&s.total, 0);
        atomic_store(&s.ran, 0);
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int64_t j = 0; j < 500; j++)
            ASSERT_EQ(dagger_spawn_detached(ctx, add_input, (void *)&s, a, j), 0);
        ASSERT_OK(dagger_sync_end(ctx));
        ASSERT_EQ(atomic_load(&s.ran), 500);
        ASSERT_EQ(atomic_load(&s.total), 500 * 4200 + 499 * 500 / 2);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(a, &v));
        ASSERT_EQ(v, 42);
        dagger_task_release(a);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(a_failed_input_reaches_the_group_end_of_its_detached_readers)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        struct sum s = {0};
        dagger_task_t *bad = dagger_spawn(ctx, fail_with, (int64_t)3);
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int64_t j = 0; j < 50; j++)
            ASSERT_EQ(dagger_spawn_detached(ctx, add_input, (void *)&s, bad, j), 0);
        ASSERT_ERR(dagger_sync_end(ctx), DAGGER_EUPSTREAM);
        ASSERT_STR_HAS(dagger_last_errmsg(), "boom 3");    /* the origin's message */
        ASSERT_STR_HAS(dagger_last_errmsg(), "add_input"); /* the reader, by its function */
        ASSERT_EQ(atomic_load(&s.ran), 0);                 /* no reader ran */
        /* the readers inherited the input's failure: it counts as read */
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        ASSERT_ERR(dagger_fetch(bad, NULL), DAGGER_ETASK);
        ASSERT_STR_HAS(dagger_task_errmsg(bad), "boom 3");
        dagger_task_release(bad);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- outside any group */

static int unfetched_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    _Atomic int64_t *ran = dagger_arg_ptr(a, 0);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    for (int64_t k = 0; k < 100; k++)
        if (dagger_spawn_detached(c, count_or_fail, (void *)ran, k, (int64_t)41) != 0)
            return dagger_fail(tc, DAGGER_ETASK, "spawn %d: %s", (int)k, dagger_last_errmsg());
    return 0;
}

TEST(a_failing_detached_task_outside_a_group_counts_as_unfetched)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        _Atomic int64_t ran = 0;
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        /* from the main thread */
        for (int64_t k = 0; k < 100; k++)
            ASSERT_EQ(dagger_spawn_detached(ctx, count_or_fail, (void *)&ran, k, (int64_t)7), 0);
        ASSERT_TRUE(poll_until(ctx, &ran, 100, 1));
        ASSERT_EQ(atomic_load(&ran), 100);
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 1);
        /* from a task that ends before its children */
        dagger_task_t *root = dagger_spawn(ctx, unfetched_root, (void *)&ran);
        ASSERT_OK(dagger_fetch(root, NULL));
        dagger_task_release(root);
        ASSERT_TRUE(poll_until(ctx, &ran, 200, 2));
        ASSERT_EQ(atomic_load(&ran), 200);
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 2);
        /* nothing held: the close drains and returns 0 (it warns about the 2 on stderr) */
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- queue blocks */

#define SEQ_N 200

/* Spawn SEQ_N steps in a SEQUENTIAL block: the even ones with options (a priority of -1, 0 or
 * 1 and a name), the odd ones plain; step `fail_at` fails. */
static int spawn_steps(dagger_ctx_t *ctx, struct order *o, int fail_at)
{
    dagger_task_opts_t opts;
    dagger_task_opts_init(&opts);
    opts.name = "ordered_step";
    for (int64_t i = 0; i < SEQ_N; i++) {
        int rc;
        if (i % 2 == 0) {
            opts.priority = (int)(i % 3) - 1;
            rc = dagger_spawn_detached_opts(ctx, &opts, log_step, (void *)o, i, "ordered_step",
                                            (int64_t)fail_at);
        } else {
            rc = dagger_spawn_detached(ctx, log_step, (void *)o, i, "log_step", (int64_t)fail_at);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int sequential_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct order *o = dagger_arg_ptr(a, 0);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c); /* the group waits; the inner block orders */
    if (rc)
        return rc;
    rc = dagger_queue_begin(c, DAGGER_QUEUE_SEQUENTIAL);
    if (rc)
        return rc;
    int spawned = spawn_steps(c, o, -1);
    rc = dagger_queue_end(c);
    int end = dagger_sync_end(c);
    return spawned ? spawned : rc ? rc : end;
}

static void check_order(struct order *o, int n)
{
    ASSERT_EQ(atomic_load(&o->n), n);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ(atomic_load(&o->log[i]), i);
        ASSERT_EQ(atomic_load(&o->named[i]), 1);
    }
}

TEST(detached_spawns_with_options_keep_the_order_of_a_sequential_block)
{
    static struct order o;
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        /* from the main thread, the block waiting itself */
        memset(&o, 0, sizeof o);
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_WAITALL));
        ASSERT_OK(spawn_steps(ctx, &o, -1));
        ASSERT_OK(dagger_queue_end(ctx));
        check_order(&o, SEQ_N);
        /* from a task, inside a sync group */
        memset(&o, 0, sizeof o);
        dagger_task_t *root = dagger_spawn(ctx, sequential_root, (void *)&o);
        ASSERT_OK(dagger_fetch(root, NULL));
        dagger_task_release(root);
        check_order(&o, SEQ_N);
        ASSERT_OK(dagger_ctx_close(ctx)); /* the block's last task was released at its end */
    }
}

TEST(a_failure_in_a_sequential_block_stops_the_detached_steps_after_it)
{
    static struct order o;
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        memset(&o, 0, sizeof o);
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_WAITALL));
        ASSERT_OK(spawn_steps(ctx, &o, 57));
        /* the first error is the origin's: each later step fails upstream, after it */
        ASSERT_ERR(dagger_queue_end(ctx), DAGGER_ETASK);
        ASSERT_STR_HAS(dagger_last_errmsg(), "boom 57");
        check_order(&o, 58); /* steps 0..57 ran in order, none after */
        ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(detached_tasks_of_a_bulk_block_start_at_its_end)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        _Atomic int64_t ran = 0;
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK | DAGGER_QUEUE_WAITALL));
        for (int64_t k = 0; k < 64; k++)
            ASSERT_EQ(dagger_spawn_detached(ctx, count_or_fail, (void *)&ran, k, (int64_t)-1), 0);
        ASSERT_EQ(atomic_load(&ran), 0); /* held by the block */
        ASSERT_OK(dagger_queue_end(ctx));
        ASSERT_EQ(atomic_load(&ran), 64);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- the array form */

struct three {
    _Atomic int64_t ran;
    _Atomic int64_t sum;  /* i64 * 1000 + f64 * 10 + strlen, over the tasks */
    _Atomic int bad_kind; /* a body that saw another count or kind */
};

static int read_three(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct three *t = dagger_tc_userdata(tc);
    if (!t) /* spawned without options: the record travels as the fourth argument */
        t = dagger_arg_ptr(a, 3);
    if (dagger_args_count(a) < 3 || dagger_arg(a, 2)->kind != DAGGER_KIND_STR)
        atomic_store(&t->bad_kind, 1);
    int64_t v = dagger_arg_i64(a, 0) * 1000 + (int64_t)(dagger_arg_f64(a, 1) * 10) +
                (int64_t)strlen(dagger_arg_str(a, 2));
    atomic_fetch_add(&t->sum, v);
    atomic_fetch_add(&t->ran, 1);
    return 0;
}

TEST(dagger_spawnv_detached_passes_its_array_of_values)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        struct three t = {0};
        char word[16] = "seven!!";
        int64_t want = 0;
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int64_t i = 0; i < 100; i++) {
            dagger_value_t argv[4] = {dagger_i64(i), dagger_f64(2.5), dagger_str(word),
                                      dagger_ptr((void *)&t)};
            ASSERT_EQ(dagger_spawnv_detached(ctx, read_three, argv, 4), 0);
            want += i * 1000 + 25 + 7;
        }
        /* three values exactly, the record in the options' userdata */
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.userdata = &t;
        dagger_value_t argv3[3] = {dagger_i64(5), dagger_f64(0.5), dagger_str(word)};
        ASSERT_EQ(dagger_spawn_detached_impl(ctx, &o, read_three, "read_three", argv3, 3), 0);
        want += 5000 + 5 + 7;
        strcpy(word, "x"); /* the tasks have their own copies */
        ASSERT_OK(dagger_sync_end(ctx));
        ASSERT_EQ(atomic_load(&t.ran), 101);
        ASSERT_EQ(atomic_load(&t.sum), want);
        ASSERT_EQ(atomic_load(&t.bad_kind), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- out of memory */

static int take_str(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    _Atomic int64_t *ran = dagger_arg_ptr(a, 0);
    atomic_fetch_add(ran, (int64_t)strlen(dagger_arg_str(a, 1)));
    return 0;
}

TEST(out_of_memory_at_a_detached_spawn_shows_at_the_spawn_or_the_group_end)
{
    dagger_ctx_t *ctx = test_ctx(1);
    static char big[4096];
    memset(big, 'b', sizeof big - 1);
    _Atomic int64_t ran = 0;
    /* warm this thread's record cache and the worker, then leave the worker idle: no other
     * allocation races with the one that is made to fail */
    ASSERT_OK(dagger_sync_begin(ctx));
    ASSERT_EQ(dagger_spawn_detached(ctx, take_str, (void *)&ran, "four"), 0);
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(atomic_load(&ran), 4);
    ASSERT_OK(dagger_sync_begin(ctx));
    /* The next allocation fails: the task record if this thread's cache had to be refilled
     * (the spawn returns DAGGER_ENOMEM), else the copy of the string (the task fails). */
    dagger_fault_alloc(1);
    int rc = dagger_spawn_detached(ctx, take_str, (void *)&ran, big);
    dagger_fault_alloc(0);
    char spawn_msg[512];
    snprintf(spawn_msg, sizeof spawn_msg, "%s", dagger_last_errmsg());
    int end = dagger_sync_end(ctx);
    if (rc == DAGGER_ENOMEM) {
        ASSERT_STR_HAS(spawn_msg, "out of memory");
        ASSERT_OK(end);
    } else {
        ASSERT_EQ(rc, 0);
        ASSERT_ERR(end, DAGGER_ENOMEM);
        ASSERT_STR_HAS(dagger_last_errmsg(), "out of memory copying argument 1 (4095 bytes)");
    }
    ASSERT_EQ(atomic_load(&ran), 4); /* the big one never ran */
    /* the context still works */
    ASSERT_OK(dagger_sync_begin(ctx));
    ASSERT_EQ(dagger_spawn_detached(ctx, take_str, (void *)&ran, big), 0);
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(atomic_load(&ran), 4 + 4095);
    ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(a_flat_loop_of_detached_spawns_in_a_task_runs_every_body_once,
          a_flat_loop_of_detached_spawns_from_the_main_thread_runs_every_body_once,
          a_failing_detached_task_is_the_error_of_its_group_end,
          spawn_time_errors_of_detached_spawns_reach_the_group_end,
          a_detached_spawn_with_a_null_context_is_refused_with_a_message_naming_it,
          detached_tasks_see_the_values_of_their_input_tasks,
          a_failed_input_reaches_the_group_end_of_its_detached_readers,
          a_failing_detached_task_outside_a_group_counts_as_unfetched,
          detached_spawns_with_options_keep_the_order_of_a_sequential_block,
          a_failure_in_a_sequential_block_stops_the_detached_steps_after_it,
          detached_tasks_of_a_bulk_block_start_at_its_end,
          dagger_spawnv_detached_passes_its_array_of_values,
          out_of_memory_at_a_detached_spawn_shows_at_the_spawn_or_the_group_end);
