/* tests/test_core_tiny.c - tiny functions run at their spawn on a thread outside the pool (issue
 * 17, src/core/task.c, "Tiny functions").
 *
 * Main ends a sync group of outer tasks, which it runs itself; each outer task spawns inner
 * tasks in a group of its own. Once the inner function is learnt tiny (its timed runs on main
 * average under dagger__tiny_ns), such a spawn runs the inner task before dagger_spawn returns,
 * on main (thread -1); so do main's own spawns in a group whose call site's last group was small
 * (the seed's nested loop, its dependents too). The cases set dagger__tiny_ns themselves, so that
 * what is tiny does not depend on the machine's speed (or a sanitizer's), and check the values,
 * the errors, that a function whose tasks became long stops being run this way, and that a spawn
 * with options, a group from a site of large groups and a group's spawns past
 * DAGGER__TINY_GROUP_MAX are never run this way.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"
#include "harness.h"

enum { INNER = 6, OUTER = 20 };

/* What an inner task saw: set by it, read by its spawner right after dagger_spawn returned. */
struct mark {
    _Atomic int ran;    /* 1 once the body ran */
    _Atomic int thread; /* dagger_tc_thread in the body */
};

static _Atomic long slow_ns; /* > 0: each inner body spins this long (its tasks became long) */

static void spin_ns(long ns)
{
    for (uint64_t end = dagger__now_ns() + (uint64_t)ns; dagger__now_ns() < end;)
        ;
}

/* inner(mark, out, v): out = v * 2 + 1; v == -1 fails */
static int inner(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct mark *m = dagger_arg_ptr(a, 0);
    int64_t *o = dagger_arg_ptr(a, 1);
    int64_t v = dagger_arg_i64(a, 2);
    long slow = atomic_load(&slow_ns);
    if (slow > 0)
        spin_ns(slow);
    atomic_store(&m->thread, dagger_tc_thread(tc));
    atomic_store(&m->ran, 1);
    if (v == -1)
        return dagger_fail(tc, DAGGER_ETASK, "inner task %d refused its value", 7);
    *o = v * 2 + 1;
    return 0;
}

/* What one outer task saw of its inner spawns: how many ran at their spawn, on main. */
struct outer_out {
    int64_t vals[INNER];
    struct mark marks[INNER];
    _Atomic int at_spawn;            /* ran before dagger_spawn returned, on thread -1 */
    _Atomic unsigned at_spawn_which; /* bit j: inner task j was one of them */
    int end_rc;
    char end_msg[256];
};

/* outer(out, base, with_opts, fail_at): a group of INNER inner tasks of values base + j (the
 * one at fail_at gets -1), spawned with a priority option when with_opts. */
static int outer(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct outer_out *o = dagger_arg_ptr(a, 0);
    int64_t base = dagger_arg_i64(a, 1);
    bool with_opts = dagger_arg_i64(a, 2) != 0;
    int64_t fail_at = dagger_arg_i64(a, 3);
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    if (rc)
        return rc;
    for (int j = 0; j < INNER; j++) {
        struct mark *m = &o->marks[j];
        atomic_store(&m->ran, 0);
        atomic_store(&m->thread, -2);
        int64_t v = j == fail_at ? -1 : base + j;
        int src;
        if (with_opts) {
            dagger_task_opts_t op;
            dagger_task_opts_init(&op);
            op.priority = 1;
            dagger_task_t *t =
                dagger_spawn_opts(ctx, &op, inner, (void *)m, (void *)&o->vals[j], v);
            src = t ? 0 : DAGGER_ENOMEM;
            dagger_task_release(t);
        } else {
            src = dagger_spawn_detached(ctx, inner, (void *)m, (void *)&o->vals[j], v);
        }
        if (src)
            break;
        if (atomic_load(&m->ran) && atomic_load(&m->thread) == -1) {
            atomic_fetch_add(&o->at_spawn, 1);
            atomic_fetch_or(&o->at_spawn_which, 1u << j);
        }
    }
    o->end_rc = dagger_sync_end(ctx);
    snprintf(o->end_msg, sizeof o->end_msg, "%s", o->end_rc ? dagger_last_errmsg() : "");
    return 0;
}

static struct outer_out outs[OUTER];

/* One run from main: a group of OUTER outer tasks (fail_at: the inner index that fails in outer
 * task 0, -2 none); checks every value and returns how many inner tasks ran at their spawn. */
static int run_once(dagger_ctx_t *ctx, int64_t base, bool with_opts, int64_t fail_at)
{
    memset(outs, 0, sizeof outs);
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < OUTER; i++)
        ASSERT_OK(dagger_spawn_detached(ctx, outer, (void *)&outs[i], base + 100 * i,
                                        (int64_t)with_opts, i == 0 ? fail_at : (int64_t)-2));
    ASSERT_OK(dagger_sync_end(ctx));
    int at_spawn = 0;
    for (int i = 0; i < OUTER; i++) {
        at_spawn += atomic_load(&outs[i].at_spawn);
        for (int j = 0; j < INNER; j++) {
            ASSERT_EQ(atomic_load(&outs[i].marks[j].ran), 1);
            if (i == 0 && j == fail_at)
                continue;
            ASSERT_EQ(outs[i].vals[j], (base + 100 * i + j) * 2 + 1);
        }
        if (i == 0 && fail_at >= 0) {
            ASSERT_EQ(outs[i].end_rc, DAGGER_ETASK);
            ASSERT_STR_HAS(outs[i].end_msg, "inner task 7 refused its value");
        } else {
            ASSERT_OK(outs[i].end_rc);
        }
    }
    return at_spawn;
}

/* A context of one worker where the inner function is learnt tiny (`tiny_ns` the mark; inner
 * tasks fast): runs until some inner task ran at its spawn, at most 2000 runs (its timed samples
 * would all have to go to the worker, which steals them, for none to). */
static dagger_ctx_t *learnt_ctx(uint32_t tiny_ns)
{
    dagger__tiny_ns = tiny_ns;
    atomic_store(&slow_ns, 0);
    dagger_ctx_t *ctx = test_ctx(1);
    bool learnt = false;
    for (int r = 0; r < 2000 && !learnt; r++)
        learnt = run_once(ctx, r, false, -2) > 0;
    ASSERT_TRUE(learnt);
    return ctx;
}

static void close_ctx(dagger_ctx_t *ctx)
{
    atomic_store(&slow_ns, 0);
    ASSERT_OK(dagger_ctx_close(ctx));
    dagger__tiny_ns = 200; /* TINY_NS */
}

TEST(tiny_inner_tasks_run_at_their_spawn_on_main_with_the_same_values)
{
    dagger_ctx_t *ctx = learnt_ctx(1000000000u); /* every timed run is tiny */
    /* Learnt: nearly every inner spawn runs at once now (one in DAGGER__TINY_EVERY is queued to
     * be timed again; a worker may take an outer task now and then, whose spawns are its own). */
    int at_spawn = 0;
    for (int r = 0; r < 20; r++)
        at_spawn += run_once(ctx, 1000 + r, false, -2);
    ASSERT_TRUE(at_spawn > 20 * OUTER * INNER / 2);
    close_ctx(ctx);
}

TEST(tiny_a_failure_of_a_task_run_at_its_spawn_reaches_its_group)
{
    dagger_ctx_t *ctx = learnt_ctx(1000000000u);
    /* outer 0's group ends with inner 2's error (run_once checks it), until every inner task
     * of it ran at its spawn, the failing one too (a worker may take outer 0, or an inner task
     * be a timed sample): its group then ends with every finish counted on main (queue.c, the
     * end of a group whose tasks all finished on its home thread) */
    bool failed_at_spawn = false;
    for (int r = 0; r < 400 && !failed_at_spawn; r++) {
        (void)run_once(ctx, 3000 + r, false, 2);
        failed_at_spawn = atomic_load(&outs[0].at_spawn_which) == (1u << INNER) - 1;
    }
    ASSERT_TRUE(failed_at_spawn);
    close_ctx(ctx);
}

TEST(tiny_a_function_whose_tasks_became_long_is_queued_again)
{
    /* Tiny below 1 ms; the long phase spins 1.5 ms a task, past both marks (TINY_LONG_NS). */
    dagger_ctx_t *ctx = learnt_ctx(1000000u);
    atomic_store(&slow_ns, 1500000);
    /* The next timed run (one in DAGGER__TINY_EVERY spawns, queued) ends it: within a few runs
     * of OUTER * INNER spawns, a whole run goes without a task run at its spawn. */
    bool stopped = false;
    for (int r = 0; r < 8 && !stopped; r++)
        stopped = run_once(ctx, 5000 + r, false, -2) == 0;
    ASSERT_TRUE(stopped);
    close_ctx(ctx);
}

TEST(tiny_spawns_with_options_are_queued_as_before)
{
    dagger_ctx_t *ctx = learnt_ctx(1000000000u);
    for (int r = 0; r < 10; r++)
        ASSERT_EQ(run_once(ctx, 7000 + r, true, -2), 0);
    close_ctx(ctx);
}

/* main's own spawns in its group, marks[i] set by the tasks */
static struct mark flat_marks[4096];
static int64_t flat_vals[4096];

enum { BIG = 400, BIG_KEPT_MAX = 256 }; /* TINY_GROUP_MAX in src/core/task.c */
static _Atomic int big_late_at_spawn, big_early_at_spawn;

/* big_outer(): a group of BIG inner tasks (flat_marks, flat_vals); counts those run at their
 * spawn among the first BIG_KEPT_MAX and after them. */
static int big_outer(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(ctx);
    for (int j = 0; j < BIG && rc == 0; j++) {
        struct mark *m = &flat_marks[j];
        atomic_store(&m->ran, 0);
        atomic_store(&m->thread, -2);
        rc = dagger_spawn_detached(ctx, inner, (void *)m, (void *)&flat_vals[j], (int64_t)j);
        if (rc == 0 && atomic_load(&m->ran) && atomic_load(&m->thread) == -1)
            atomic_fetch_add(j < BIG_KEPT_MAX ? &big_early_at_spawn : &big_late_at_spawn, 1);
    }
    int end = dagger_sync_end(ctx);
    return rc ? rc : end;
}

/* One group of n of main's own spawns (from this one call site); returns how many of its first
 * OWN_COUNTED ran at their spawn on main (from the slot's deep mark on, 255 queued here, spawns
 * run at once whatever their function), the values checked. */
enum { OWN_COUNTED = 200 };
static int own_group(dagger_ctx_t *ctx, int n)
{
    ASSERT_OK(dagger_sync_begin(ctx));
    int at_spawn = 0;
    for (int i = 0; i < n; i++) {
        struct mark *m = &flat_marks[i];
        atomic_store(&m->ran, 0);
        atomic_store(&m->thread, -2);
        ASSERT_OK(dagger_spawn_detached(ctx, inner, (void *)m, (void *)&flat_vals[i], (int64_t)i));
        at_spawn += i < OWN_COUNTED && atomic_load(&m->ran) && atomic_load(&m->thread) == -1;
    }
    ASSERT_OK(dagger_sync_end(ctx));
    for (int i = 0; i < n; i++)
        ASSERT_EQ(flat_vals[i], i * 2 + 1);
    return at_spawn;
}

TEST(tiny_mains_own_spawns_run_at_once_only_in_groups_known_small)
{
    dagger_ctx_t *ctx = learnt_ctx(1000000000u);
    /* a call site whose groups have 400 spawns: never (a worker that takes one may run it before
     * the spawn returns, on its own thread: not -1) */
    for (int r = 0; r < 10; r++)
        ASSERT_EQ(own_group(ctx, BIG), 0);
    /* the same site with groups of 200: the first is not known small yet, the next ones are */
    ASSERT_EQ(own_group(ctx, 200), 0);
    int at_spawn = 0;
    for (int r = 0; r < 10; r++)
        at_spawn += own_group(ctx, 200);
    ASSERT_TRUE(at_spawn > 10 * 200 / 2);
    close_ctx(ctx);
}

TEST(tiny_a_large_groups_rest_is_queued_in_a_task_main_runs)
{
    dagger_ctx_t *ctx = learnt_ctx(1000000000u);
    /* a task main runs for its group that spawns a large group: its first spawns may run at
     * once, never those past the mark (the rest of a large group keeps the slot's course) */
    atomic_store(&big_early_at_spawn, 0);
    atomic_store(&big_late_at_spawn, 0);
    /* until main ran big_outer with its first spawns at once (a worker may take it instead) */
    for (int r = 0; r < 200 && (r < 10 || atomic_load(&big_early_at_spawn) == 0); r++) {
        ASSERT_OK(dagger_sync_begin(ctx));
        ASSERT_OK(dagger_spawn_detached(ctx, big_outer));
        ASSERT_OK(dagger_sync_end(ctx));
        for (int i = 0; i < BIG; i++)
            ASSERT_EQ(flat_vals[i], i * 2 + 1);
        ASSERT_EQ(atomic_load(&big_late_at_spawn), 0);
    }
    ASSERT_TRUE(atomic_load(&big_early_at_spawn) > 0); /* the path ran: its cap was tested */
    close_ctx(ctx);
}

/* f(i) = i * 3; g(a, j) = a + j: the seed's nested loop, with handles and inputs */
static int seed_f(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) * 3);
    return 0;
}

static int seed_g(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    if (dagger_arg_i64(a, 1) == -1)
        return dagger_fail(tc, DAGGER_ETASK, "g got the value %d it refuses", -1);
    *out = dagger_i64(dagger_arg_i64(a, 0) + dagger_arg_i64(a, 1));
    return 0;
}

TEST(tiny_the_seed_loop_with_inputs_and_handles_keeps_its_values_and_errors)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger__tiny_ns = 1000000000u;
    dagger_task_t *b[OUTER][INNER];
    int done_at_spawn = 0;
    for (int r = 0; r < 300; r++) { /* learnt after a few runs; the values checked in every one */
        bool fail = r == 299;
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int i = 0; i < OUTER; i++) {
            dagger_task_t *a = dagger_spawn(ctx, seed_f, (int64_t)i);
            ASSERT_PTR(a);
            for (int j = 0; j < INNER; j++) {
                b[i][j] =
                    dagger_spawn(ctx, seed_g, a, (int64_t)(fail && i == 3 && j == 4 ? -1 : j));
                ASSERT_PTR(b[i][j]);
                done_at_spawn += dagger_task_done(b[i][j]);
            }
            dagger_task_release(a);
        }
        int rc = dagger_sync_end(ctx);
        if (fail) {
            ASSERT_EQ(rc, DAGGER_ETASK);
            ASSERT_STR_HAS(dagger_last_errmsg(), "g got the value -1 it refuses");
        } else {
            ASSERT_OK(rc);
        }
        for (int i = 0; i < OUTER; i++)
            for (int j = 0; j < INNER; j++) {
                int64_t v = 0;
                int frc = dagger_fetch_i64(b[i][j], &v);
                if (fail && i == 3 && j == 4) {
                    ASSERT_EQ(frc, DAGGER_ETASK);
                } else {
                    ASSERT_OK(frc);
                    ASSERT_EQ(v, i * 3 + j);
                }
                dagger_task_release(b[i][j]);
            }
    }
    ASSERT_TRUE(done_at_spawn > 0); /* the dependents ran at their spawn, their input just before */
    close_ctx(ctx);
}

/* A tiny task that, when asked, hands a reference of its own to another thread, which waits on
 * it while the task still runs at its spawn on main: its completion serves that waiter (a
 * completion that took the store of a task whose one handle is its spawn's, complete's
 * TF_AT_SPAWN, would leave the thread waiting and the join below hanging). The race of such a
 * thread's release with that store is not reached here: it needs a handle besides the spawn's,
 * which complete tests for (held == 2). */
struct handed {
    dagger_task_t *self;
    pthread_t th;
    _Atomic int started;
    _Atomic int64_t got;
    _Atomic int rc;
};

static void *hand_waiter(void *arg)
{
    struct handed *h = arg;
    atomic_store(&h->started, 1);
    int64_t v = 0;
    atomic_store(&h->rc, dagger_fetch_i64(h->self, &v));
    atomic_store(&h->got, v);
    dagger_task_release(h->self);
    return NULL;
}

static int hander(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct handed *h = dagger_arg_ptr(a, 0);
    if (h) {
        h->self = dagger_task_retain(dagger_tc_task(tc));
        if (pthread_create(&h->th, NULL, hand_waiter, h) != 0)
            return dagger_fail(tc, DAGGER_ENOMEM, "no thread");
        while (!atomic_load(&h->started))
            ;
        spin_ns(2000000); /* the other thread waits on this task meanwhile */
    }
    *out = dagger_i64(77);
    return 0;
}

TEST(tiny_a_task_run_at_its_spawn_that_hands_out_its_handle_is_waited_on)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger__tiny_ns = 1000000000u;
    bool tried = false;
    for (int r = 0; r < 400 && !tried; r++) {
        struct handed h = {0};
        ASSERT_OK(dagger_sync_begin(ctx)); /* one call site: small groups */
        for (int i = 0; i < 8; i++)        /* learning runs: tiny bodies */
            ASSERT_OK(dagger_spawn_detached(ctx, hander, (void *)NULL));
        dagger_task_t *t = r >= 20 ? dagger_spawn(ctx, hander, (void *)&h) : NULL;
        bool kept = t && dagger_task_done(t); /* ran at its spawn, on main */
        ASSERT_OK(dagger_sync_end(ctx));
        if (t) {
            int64_t v = 0;
            ASSERT_OK(dagger_fetch_i64(t, &v));
            ASSERT_EQ(v, 77);
            dagger_task_release(t);
            ASSERT_EQ(pthread_join(h.th, NULL), 0); /* its fetch returned */
            ASSERT_EQ(atomic_load(&h.got), 77);
            ASSERT_OK(atomic_load(&h.rc));
            tried = kept;
        }
    }
    ASSERT_TRUE(tried);
    close_ctx(ctx);
}

TEST_LIST(tiny_inner_tasks_run_at_their_spawn_on_main_with_the_same_values,
          tiny_a_failure_of_a_task_run_at_its_spawn_reaches_its_group,
          tiny_a_function_whose_tasks_became_long_is_queued_again,
          tiny_spawns_with_options_are_queued_as_before,
          tiny_mains_own_spawns_run_at_once_only_in_groups_known_small,
          tiny_a_large_groups_rest_is_queued_in_a_task_main_runs,
          tiny_the_seed_loop_with_inputs_and_handles_keeps_its_values_and_errors,
          tiny_a_task_run_at_its_spawn_that_hands_out_its_handle_is_waited_on)
