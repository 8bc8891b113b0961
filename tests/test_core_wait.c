/* tests/test_core_wait.c - a thread outside the pool that ends a sync group runs the group's
 * queued tasks itself (issue 17): they report processor -1, as on an aux thread; tasks with
 * a scope stay on the workers; tasks outside the group are left to the workers; it takes them
 * one at a time, so that a worker that becomes free can take the others. A task on a worker that
 * ends a sync group runs the group's tasks, its children, inline.
 * The cases of a thread outside the pool block the only worker on the harness's gate
 * (test_gate_hold), so that whatever runs meanwhile ran on the ending thread; the gate opens by
 * itself after TEST_GATE_TIMEOUT_S, so a regression fails with a message instead of hanging.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "dagger/trace.h"
#include "harness.h"

/* out[i] = the thread it ran on; returns i * i. */
static int record(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    where[i] = dagger_tc_thread(tc);
    *out = dagger_i64(i * i);
    return 0;
}

TEST(sync_end_on_main_runs_the_groups_tasks)
{
    enum { N = 50 };
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    int64_t where[N];
    dagger_task_t *ts[N];
    for (int i = 0; i < N; i++)
        where[i] = 99;
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < N; i++) {
        ts[i] = dagger_spawn(ctx, record, (void *)where, (int64_t)i);
        ASSERT_TRUE(ts[i] != NULL);
    }
    ASSERT_OK(dagger_sync_end(ctx));
    for (int i = 0; i < N; i++) {
        int64_t v = -1;
        ASSERT_TRUE(dagger_task_done(ts[i]));
        ASSERT_OK(dagger_fetch_i64(ts[i], &v));
        ASSERT_EQ(v, (int64_t)i * i);
        ASSERT_EQ(where[i], -1); /* the ending thread is not a worker */
        dagger_task_release(ts[i]);
    }
    test_gate_open(1, &g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A dependent made ready by a task the ending thread ran is the group's too: it runs there. */
TEST(sync_end_on_main_runs_dependents_in_the_group)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    int64_t where[2] = {99, 99};
    ASSERT_OK(dagger_sync_begin(ctx));
    dagger_task_t *a = dagger_spawn(ctx, record, (void *)where, (int64_t)0);
    dagger_task_t *b = dagger_spawn(ctx, record, (void *)where, (int64_t)1, a);
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(where[0], -1);
    ASSERT_EQ(where[1], -1);
    int64_t v = -1;
    ASSERT_OK(dagger_fetch_i64(b, &v));
    ASSERT_EQ(v, 1);
    dagger_task_release(a);
    dagger_task_release(b);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A task with a scope keeps to it: the group waits for the worker. */
static void *open_later(void *arg)
{
    usleep(20000);
    test_gate_unblock();
    return arg;
}

TEST(sync_end_on_main_leaves_scoped_tasks_to_the_workers)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    int64_t where[1] = {99};
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    dagger_scope_t *s = dagger_scope_thread(0);
    o.scope = s;
    pthread_t opener;
    ASSERT_EQ(pthread_create(&opener, NULL, open_later, NULL), 0);
    ASSERT_OK(dagger_sync_begin(ctx));
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, record, (void *)where, (int64_t)0);
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(where[0], 0);
    pthread_join(opener, NULL);
    dagger_task_release(t);
    dagger_scope_release(s);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A sync group ended inside a task is the worker's business: nothing runs on another thread. */
static int group_in_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    if (rc)
        return rc;
    for (int64_t i = 0; i < 8; i++)
        dagger_task_release(dagger_spawn(ctx, record, (void *)where, i));
    return dagger_sync_end(ctx);
}

TEST(sync_end_in_a_task_runs_on_the_workers)
{
    dagger_ctx_t *ctx = test_ctx(2);
    int64_t where[8];
    for (int i = 0; i < 8; i++)
        where[i] = 99;
    dagger_task_t *t = dagger_spawn(ctx, group_in_task, (void *)where);
    ASSERT_OK(dagger_fetch(t, NULL));
    for (int i = 0; i < 8; i++)
        ASSERT_TRUE(where[i] == 0 || where[i] == 1);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A task on a worker that ends its sync group runs the group's tasks (its children) inline from
 * the bottom of its worker's deque, as a fetch does: nobody stole them, so it never suspends.
 * The task is scoped to the only worker, so main's fetch takes nothing; the trace counts one run
 * a task and no block (before, the task suspended at its sync_end and was resumed: 10 runs). */
TEST(sync_end_on_a_worker_runs_its_children_inline)
{
    dagger_ctx_t *ctx = test_ctx(1);
    int64_t where[8];
    for (int i = 0; i < 8; i++)
        where[i] = 99;
    dagger_scope_t *s = dagger_scope_thread(0);
    ASSERT_PTR(s);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = s;
    ASSERT_OK(dagger_trace_start(ctx));
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, group_in_task, (void *)where);
    ASSERT_OK(dagger_fetch(t, NULL));
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st;
    ASSERT_OK(dagger_trace_stats(ctx, &st));
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(where[i], 0);
    ASSERT_EQ(st.tasks, 9);
    ASSERT_EQ(st.finished, 9);
    ASSERT_EQ(st.runs, 9);
    ASSERT_EQ(st.blocks, 0);
    dagger_task_release(t);
    dagger_scope_release(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Main ending its group runs the group's tasks; one of them that ends a sync group of its own
 * runs that group's tasks (in main's slot: the only worker is held) inline too, newest first, then
 * the other outer task (before, main waited for the worker, which the gate holds: it opened by
 * itself). */
TEST(a_group_in_a_task_main_runs_is_run_by_main)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    int64_t where[2][8];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 8; i++)
            where[k][i] = 99;
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int k = 0; k < 2; k++)
        ASSERT_OK(dagger_spawn_detached(ctx, group_in_task, (void *)where[k]));
    ASSERT_OK(dagger_sync_end(ctx));
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 8; i++)
            ASSERT_EQ(where[k][i], -1);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A group that a task main runs ends on main (its home thread), which counts the finishes it
 * runs itself without atomics and adds them once when it stops (fetch.c); the worker, held by the
 * gate until main runs the outer task, takes some of the group's tasks meanwhile, whose finishes
 * reach the group's count on their own. The first task main runs waits (up to a second) until the
 * worker ran one, so that both ways count in the same group; the group's end must come after
 * every task, whoever ran it. */
enum { SPLIT_N = 16 };
static _Atomic int split_on_worker;

static int split_leaf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    int th = dagger_tc_thread(tc);
    if (th >= 0)
        atomic_fetch_add(&split_on_worker, 1);
    if (i == SPLIT_N - 1) /* main's first (newest first): let the worker take some */
        for (int k = 0; k < 1000 && atomic_load(&split_on_worker) == 0; k++)
            usleep(1000);
    else
        usleep(200);
    where[i] = th;
    return 0;
}

static int split_group(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    if (rc)
        return rc;
    test_gate_unblock(); /* main runs this task: the worker is free from here */
    for (int64_t i = 0; i < SPLIT_N && rc == 0; i++)
        rc = dagger_spawn_detached(ctx, split_leaf, (void *)where, i);
    int end = dagger_sync_end(ctx);
    if (rc || end)
        return rc ? rc : end;
    for (int i = 0; i < SPLIT_N; i++)
        if (where[i] == 99)
            return dagger_fail(tc, DAGGER_ESTATE, "the group ended before its task %d ran", i);
    return 0;
}

TEST(a_group_main_ends_in_a_task_counts_its_finishes_and_the_workers)
{
    dagger_ctx_t *ctx = test_ctx(1);
    int mixed = 0;
    for (int round = 0; round < 8; round++) {
        int64_t where[SPLIT_N];
        for (int i = 0; i < SPLIT_N; i++)
            where[i] = 99;
        atomic_store(&split_on_worker, 0);
        dagger_task_t *g;
        test_gate_hold(ctx, 1, &g); /* so that main, not the worker, takes the outer task */
        ASSERT_OK(dagger_sync_begin(ctx));
        ASSERT_OK(dagger_spawn_detached(ctx, split_group, (void *)where));
        ASSERT_OK(dagger_sync_end(ctx));
        test_gate_open(1, &g);
        int here = 0, there = 0;
        for (int i = 0; i < SPLIT_N; i++) {
            ASSERT_TRUE(where[i] == -1 || where[i] == 0);
            here += where[i] == -1;
            there += where[i] == 0;
        }
        ASSERT_TRUE(here > 0); /* main ran the group's end and the first of its tasks */
        mixed += there > 0;
    }
    ASSERT_TRUE(mixed > 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A worker counts the finishes of a group's tasks in a row and adds them to the group before it
 * starts a task of another group, or of none (task.c, dagger__group_flush): here the group's one
 * task, on the worker, spawns a task in no group onto the same worker, which waits until main's
 * end of the group has returned. Counted only when the worker idles, the end would wait for that
 * task and that task for the end (it gives up after 10 s and fails, so the case fails instead of
 * hanging). */
static _Atomic int flush_end_seen;
static dagger_task_t *flush_waiter_task;

static int flush_waiter(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    for (int i = 0; i < 10000 && !atomic_load(&flush_end_seen); i++)
        usleep(1000);
    if (!atomic_load(&flush_end_seen))
        return dagger_fail(tc, DAGGER_ETIMEDOUT, "the group's end did not come in 10 s");
    return 0;
}

static int flush_leaf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    /* In no group (this task opened none), on this worker next (its mailbox). */
    flush_waiter_task = TEST_SPAWN_ON_WORKER(dagger_tc_ctx(tc), 0, flush_waiter);
    if (!flush_waiter_task)
        return dagger_fail(tc, DAGGER_ENOMEM, "spawn: %s", dagger_last_errmsg());
    return 0;
}

TEST(a_worker_adds_its_count_to_a_group_before_it_starts_a_task_of_none)
{
    dagger_ctx_t *ctx = test_ctx(1);
    atomic_store(&flush_end_seen, 0);
    flush_waiter_task = NULL;
    ASSERT_OK(dagger_sync_begin(ctx));
    dagger_task_t *t = TEST_SPAWN_ON_WORKER(ctx, 0, flush_leaf);
    ASSERT_PTR(t);
    ASSERT_OK(dagger_sync_end(ctx));
    atomic_store(&flush_end_seen, 1);
    ASSERT_OK(dagger_fetch(t, NULL));
    dagger_task_release(t);
    ASSERT_PTR(flush_waiter_task);
    int rc = dagger_fetch(flush_waiter_task, NULL);
    if (rc)
        fail_msg("the waiter: %s (%s)", dagger_err_name(rc), dagger_task_errmsg(flush_waiter_task));
    dagger_task_release(flush_waiter_task);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Main's slot hands main its newest task first at any depth, as a worker pops its own deque
 * (the only worker is held, so main runs them all): the order is the reverse of the spawns.
 * Before, below 32 tasks the slot handed out its oldest first, as a thief takes them, and a task
 * ending a group of its own on main met the other tasks of main's group before its children. */
static _Atomic int64_t run_seq;

static int record_order(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *order = dagger_arg_ptr(a, 0);
    order[dagger_arg_i64(a, 1)] = atomic_fetch_add(&run_seq, 1);
    return 0;
}

TEST(sync_end_on_main_runs_its_newest_task_first)
{
    enum { N = 12 };
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    int64_t order[N];
    for (int i = 0; i < N; i++)
        order[i] = -1;
    atomic_store(&run_seq, 0);
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int64_t i = 0; i < N; i++)
        ASSERT_OK(dagger_spawn_detached(ctx, record_order, (void *)order, i));
    ASSERT_OK(dagger_sync_end(ctx));
    for (int i = 0; i < N; i++)
        ASSERT_EQ(order[i], N - 1 - i);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A job that is not a child of the task main runs, above that task's children in main's deque,
 * goes to the workers' queue: main cannot run it above the waiting task. The outer task's second
 * child (run first: newest first) spawns a detached task outside any group, which lands above the
 * first child; main hands it over and runs the first child. The only worker is held, so the stray
 * task runs there once the gate opens. */
static _Atomic int stray_thread;

static int stray(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store(&stray_thread, dagger_tc_thread(tc));
    return 0;
}

static int record_then_stray(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = record(tc, a, out);
    return rc ? rc : dagger_spawn_detached(dagger_tc_ctx(tc), stray);
}

static int outer_with_stray(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    void *where = dagger_arg_ptr(a, 0);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    if (rc)
        return rc;
    rc = dagger_spawn_detached(ctx, record, where, (int64_t)0);
    if (!rc)
        rc = dagger_spawn_detached(ctx, record_then_stray, where, (int64_t)1);
    int end = dagger_sync_end(ctx);
    return rc ? rc : end;
}

TEST(a_job_above_the_children_in_mains_deque_goes_to_the_workers)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    int64_t where[2] = {99, 99};
    atomic_store(&stray_thread, 99);
    ASSERT_OK(dagger_sync_begin(ctx));
    ASSERT_OK(dagger_spawn_detached(ctx, outer_with_stray, (void *)where));
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(where[0], -1);
    ASSERT_EQ(where[1], -1);
    ASSERT_EQ(atomic_load(&stray_thread), 99); /* waiting for the held worker */
    test_gate_open(1, &g);
    for (int i = 0; i < 10000 && atomic_load(&stray_thread) == 99; i++)
        usleep(1000);
    ASSERT_EQ(atomic_load(&stray_thread), 0);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The ending thread takes the group's tasks one at a time, so it never holds one away from an
 * idle worker. The worker is held; the ending thread runs the first task, which frees the
 * worker and waits (up to TEST_GATE_TIMEOUT_S) for another task of the group to start there. A
 * thread that had taken the group's tasks in a batch would hold the others, and the first
 * would time out. */
static _Atomic int others_started;

static int free_worker_then_wait(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    test_gate_unblock();
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!atomic_load(&others_started)) {
        usleep(100);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= TEST_GATE_TIMEOUT_S)
            return dagger_fail(tc, DAGGER_ETIMEDOUT,
                               "no other task of the group started on the freed worker");
    }
    return 0;
}

static int other(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&others_started, 1);
    return 0;
}

TEST(sync_end_on_main_leaves_the_other_tasks_to_idle_workers)
{
    dagger_ctx_t *ctx = test_ctx(1);
    for (int round = 0; round < 3; round++) {
        atomic_store(&others_started, 0);
        dagger_task_t *g;
        test_gate_hold(ctx, 1, &g);
        ASSERT_OK(dagger_sync_begin(ctx));
        dagger_task_release(dagger_spawn(ctx, free_worker_then_wait));
        for (int i = 0; i < 3; i++)
            dagger_task_release(dagger_spawn(ctx, other));
        ASSERT_OK(dagger_sync_end(ctx));
        ASSERT_EQ(atomic_load(&others_started), 3);
        test_gate_open(1, &g);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A thread outside the pool whose group's deque holds its deep mark - 1 tasks (64 a worker, at
 * least 256: src/pool/pool.c) runs each further plain task it spawns at once, as a worker does (a
 * flat loop from main keeps a bounded set of records): with the worker held, exactly the spawns
 * past the mark ran during the loop, on this thread (-1), each once; a task spawned with options,
 * or a scoped one, is still queued. */
static _Atomic int ran_in_loop;
static int count_run(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    where[i] = dagger_tc_thread(tc);
    atomic_fetch_add(&ran_in_loop, 1);
    return 0;
}

TEST(a_deep_group_on_main_runs_further_spawns_at_once)
{
    enum { N = 3000, DEEP = 256 }; /* one worker */
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    static int64_t where[N + 2];
    for (int i = 0; i < N + 2; i++)
        where[i] = 99;
    atomic_store(&ran_in_loop, 0);
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < N; i++)
        ASSERT_OK(dagger_spawn_detached(ctx, count_run, (void *)where, (int64_t)i));
    ASSERT_EQ(atomic_load(&ran_in_loop), N - (DEEP - 1)); /* the first DEEP - 1 are queued */
    for (int i = 0; i < DEEP - 1; i++)
        ASSERT_EQ(where[i], 99);
    for (int i = DEEP - 1; i < N; i++)
        ASSERT_EQ(where[i], -1);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "named";
    dagger_task_t *t = dagger_spawn_opts(ctx, &o, count_run, (void *)where, (int64_t)N);
    ASSERT_PTR(t);
    dagger_scope_t *sc = dagger_scope_thread(0);
    dagger_task_opts_t so;
    dagger_task_opts_init(&so);
    so.scope = sc;
    dagger_task_t *u = dagger_spawn_opts(ctx, &so, count_run, (void *)where, (int64_t)N + 1);
    ASSERT_PTR(u);
    ASSERT_EQ(atomic_load(&ran_in_loop), N - (DEEP - 1)); /* both queued */
    test_gate_unblock();
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(atomic_load(&ran_in_loop), N + 2);
    for (int i = 0; i < N + 1; i++)
        ASSERT_TRUE(where[i] == -1 || where[i] == 0);
    ASSERT_EQ(where[N + 1], 0); /* the scoped one on its worker */
    dagger_task_release(t);
    dagger_task_release(u);
    dagger_scope_release(sc);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A task that main runs at once from its spawn (past the deep mark) and that ends a group of its
 * own runs that group's tasks from main's deque, as a task main runs at its group's end does.
 * The inner tasks are spawned with options (a name), so they are queued, not run at once. With
 * the worker held, before, the first such outer task waited for the worker until the gate opened
 * by itself (TEST_GATE_TIMEOUT_S), and its inner tasks ran there (thread 0). */
enum { UNDEF_N = 300, UNDEF_INNER = 3, UNDEF_DEEP = 256 }; /* one worker */
static int group_of_named(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *where = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    if (rc)
        return rc;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "inner";
    for (int64_t j = 0; j < UNDEF_INNER && rc == 0; j++) {
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, record, (void *)where, i * UNDEF_INNER + j);
        if (!t)
            rc = DAGGER_ENOMEM;
        dagger_task_release(t);
    }
    int end = dagger_sync_end(ctx);
    return rc ? rc : end;
}

TEST(a_task_main_runs_at_its_spawn_runs_its_groups_tasks)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g;
    test_gate_hold(ctx, 1, &g);
    static int64_t where[UNDEF_N * UNDEF_INNER];
    for (int i = 0; i < UNDEF_N * UNDEF_INNER; i++)
        where[i] = 99;
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int64_t i = 0; i < UNDEF_N; i++)
        ASSERT_OK(dagger_spawn_detached(ctx, group_of_named, (void *)where, i));
    /* the outer tasks past the mark ran in the loop, their inner tasks on main; none before */
    for (int i = 0; i < (UNDEF_DEEP - 1) * UNDEF_INNER; i++)
        ASSERT_EQ(where[i], 99);
    for (int i = (UNDEF_DEEP - 1) * UNDEF_INNER; i < UNDEF_N * UNDEF_INNER; i++)
        ASSERT_EQ(where[i], -1);
    ASSERT_OK(dagger_sync_end(ctx));
    for (int i = 0; i < UNDEF_N * UNDEF_INNER; i++)
        ASSERT_EQ(where[i], -1);
    test_gate_open(1, &g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(sync_end_on_main_runs_the_groups_tasks, sync_end_on_main_runs_dependents_in_the_group,
          sync_end_on_main_leaves_scoped_tasks_to_the_workers,
          sync_end_in_a_task_runs_on_the_workers, sync_end_on_a_worker_runs_its_children_inline,
          a_group_in_a_task_main_runs_is_run_by_main,
          a_group_main_ends_in_a_task_counts_its_finishes_and_the_workers,
          a_worker_adds_its_count_to_a_group_before_it_starts_a_task_of_none,
          sync_end_on_main_runs_its_newest_task_first,
          a_job_above_the_children_in_mains_deque_goes_to_the_workers,
          sync_end_on_main_leaves_the_other_tasks_to_idle_workers,
          a_deep_group_on_main_runs_further_spawns_at_once,
          a_task_main_runs_at_its_spawn_runs_its_groups_tasks);
