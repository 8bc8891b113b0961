/* tests/test_core_bundle.c - bundles of spawns (src/core/task.c, "Bundles"): a task's flat loop
 * of detached spawns in a sync group, past the deep mark of its worker's deque, moves spawns to an
 * idle worker as blocks of arguments that the taker replays there.
 *
 * Design: each case runs a loop long enough for bundles to form (the process-wide counts of
 * dagger__task_bundle_counts grow) on 2 and 4 workers, and checks what a user sees: every body
 * once, with its own arguments of every scalar kind; a failure of a bundled task at the group's
 * end with its code and message; no task lost when the spawner waits in the middle of its loop,
 * alternates functions or opens inner groups; arguments that are not scalars (a string) taking
 * the usual path; a spawner that waits for its spawns by spinning on their count, with no call
 * into the runtime, seeing every one run (an idle worker takes its open bundle), also with
 * several such spawners stuck at once 64 workers apart on a pool of 72. Each loop starts
 * with the other workers busy for 30 ms and bundles armed eagerly (dagger__task_bundle_eager), so
 * that bundles form in every build, a sanitizer's too: the spawner's deque goes past the deep
 * mark, its bundles wait for those workers.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "harness.h"

#define LOOP_N 300000

struct marks {
    _Atomic int64_t ran;
    _Atomic int64_t bad; /* bodies that saw arguments other than their spawn's */
    _Atomic int32_t mark[LOOP_N];
};

static struct marks m;
static char end_msg[512]; /* the message of loop_root's group end, when it failed */

static void marks_reset(void) { memset(&m, 0, sizeof m); }

/* Every index marked once. */
static void assert_each_once(int64_t n)
{
    ASSERT_EQ(atomic_load(&m.ran), n);
    ASSERT_EQ(atomic_load(&m.bad), 0);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++)
        wrong += atomic_load_explicit(&m.mark[i], memory_order_relaxed) != 1;
    ASSERT_EQ(wrong, 0);
}

/* A body's common part: args (marks, i, ...); index i marked, the run counted; `ok` false counts
 * a body that saw other arguments than its spawn's. Returns i. */
static int64_t mark(const dagger_args_t *a, bool ok)
{
    struct marks *mk = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    if (!ok)
        atomic_fetch_add_explicit(&mk->bad, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mk->mark[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mk->ran, 1, memory_order_relaxed);
    return i;
}

/* Args (marks, i, i / 2.0, i odd, nil): every scalar kind a bundle carries. */
static int check_args(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    int64_t i = dagger_arg_i64(a, 1);
    const dagger_value_t *v = dagger_arg(a, 4);
    mark(a, dagger_arg_f64(a, 2) == (double)i / 2.0 && dagger_arg_bool(a, 3) == (bool)(i & 1) &&
                v && v->kind == DAGGER_KIND_NIL && dagger_args_count(a) == 5);
    return 0;
}

/* Args (marks, i): marked; fails with "bundled task <i> failed" when i is a multiple of 4096 in
 * the second half. */
static int mark_or_fail(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    int64_t i = mark(a, true);
    if (i >= LOOP_N / 2 && i % 4096 == 0)
        return dagger_fail(tc, DAGGER_ETASK, "bundled task %lld failed", (long long)i);
    return 0;
}

/* Args (marks, i) or (marks, i, str): marked; a string must read "s<i % 10>". */
static int mark_str(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    int64_t i = dagger_arg_i64(a, 1);
    bool ok = true;
    if (dagger_args_count(a) > 2) {
        char want[8];
        snprintf(want, sizeof want, "s%d", (int)(i % 10));
        const char *s = dagger_arg_str(a, 2);
        ok = s && strcmp(s, want) == 0;
    }
    mark(a, ok);
    return 0;
}

/* Sleeps args(0) ms (2 without arguments); 7. */
static int nap(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    usleep(dagger_args_count(a) ? (useconds_t)dagger_arg_i64(a, 0) * 1000 : 2000);
    *out = dagger_i64(7);
    return 0;
}

/* Before a loop: every other worker busy for 30 ms, so that the spawner's deque goes past the
 * deep mark however fast thieves are (a sanitizer's build), and the loop's bundles form (armed
 * eagerly: dagger__task_bundle_eager) and wait for those workers. */
static int block_the_others_for(dagger_ctx_t *c, int64_t ms)
{
    int rc = 0;
    for (int k = 1; k < dagger_ctx_num_threads(c) && rc == 0; k++)
        rc = dagger_spawn_detached(c, nap, ms);
    return rc;
}

static int block_the_others(dagger_ctx_t *c) { return block_the_others_for(c, 30); }

enum { PLAIN, WAIT_MID, ALTERNATE, STRINGS, SPIN };

/* The SPIN case's loop: past the deep mark of the spawner's deque (1024 jobs, while the other
 * workers nap), the rest, fewer than a bundle holds (256), stays in the bundle it opens. */
#define SPIN_N 1200

/* How many spawns had run when loop_root's SPIN case gave up waiting for them (a guard of 10 s
 * against a hang, not a timing; -1: all ran). */
static _Atomic int64_t spin_short = -1;

/* The root: a sync group of LOOP_N detached spawns shaped by args(0); the group's end code. */
static int loop_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int how = (int)dagger_arg_i64(a, 0);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    /* SPIN: the others nap longer, so that its short loop reaches its bundle under a sanitizer
     * with other tests running too (30 ms was not always enough there) */
    rc = block_the_others_for(c, how == SPIN ? 200 : 30);
    int64_t loop_n = how == SPIN ? SPIN_N : LOOP_N;
    for (int64_t i = 0; i < loop_n && rc == 0; i++) {
        switch (how) {
        case PLAIN:
            rc = dagger_spawn_detached(c, check_args, (void *)&m, i, (double)i / 2.0, (bool)(i & 1),
                                       dagger_nil());
            break;
        case WAIT_MID:
            rc = dagger_spawn_detached(c, mark_or_fail, (void *)&m, i % (LOOP_N / 2));
            if (i == LOOP_N / 3) { /* a wait that suspends this task, mid-loop */
                dagger_task_t *t = dagger_spawn(c, nap);
                int64_t v = 0;
                rc = t ? dagger_fetch_i64(t, &v) : DAGGER_ENOMEM;
                dagger_task_release(t);
                if (rc == 0 && v != 7)
                    rc = DAGGER_ETASK;
            }
            break;
        case ALTERNATE:
            /* two functions in turn, and an inner group every 1000 spawns */
            if (i % 1000 == 999) {
                rc = dagger_sync_begin(c);
                for (int k = 0; k < 3 && rc == 0 && i < LOOP_N; k++, i++)
                    rc = dagger_spawn_detached(c, mark_str, (void *)&m, i);
                int end = dagger_sync_end(c);
                rc = rc ? rc : end;
                i--;
            } else if (i & 1) {
                rc = dagger_spawn_detached(c, mark_str, (void *)&m, i);
            } else {
                rc = dagger_spawn_detached(c, mark_or_fail, (void *)&m, i % (LOOP_N / 2));
            }
            break;
        case SPIN:
            rc = dagger_spawn_detached(c, mark_str, (void *)&m, i);
            break;
        case STRINGS: {
            /* a buffer written again at each spawn: a spawn that kept the pointer (a bundle
             * borrows its arguments) would read another index's text */
            char s[8];
            snprintf(s, sizeof s, "s%d", (int)(i % 10));
            rc = dagger_spawn_detached(c, mark_str, (void *)&m, i, s);
            break;
        }
        }
    }
    if (how == SPIN && rc == 0) {
        /* the spawner waits for its spawns with no call into the runtime: the other workers
         * must reach each of them (10 s at most, then the case fails instead of hanging) */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            if (atomic_load(&m.ran) == SPIN_N)
                break;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (t1.tv_sec - t0.tv_sec > 10) {
                atomic_store(&spin_short, atomic_load(&m.ran));
                break;
            }
        }
    }
    int end = dagger_sync_end(c);
    snprintf(end_msg, sizeof end_msg, "%s", end ? dagger_last_errmsg() : "");
    *out = dagger_i64(rc ? rc : end);
    return 0;
}

/* A context of `threads` workers (in *ctx), the marks cleared, and root(how) spawned there pinned
 * to worker 0 (main would run a task it fetches itself, src/core/fetch.c). */
static dagger_task_t *root_on_a_worker(dagger_ctx_t **ctx, int threads, dagger_fn_t root_fn,
                                       int64_t how)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    ASSERT_OK(dagger_ctx_open(ctx, &o));
    marks_reset();
    dagger__task_bundle_eager(true);
    dagger_task_t *root = TEST_SPAWN_ON_WORKER(*ctx, 0, root_fn, how);
    ASSERT_PTR(root);
    return root;
}

/* Runs the loop shaped `how` on `threads` workers; the group end's code in *end. Returns the
 * bundles published meanwhile. */
static uint64_t run_loop(int threads, int how, int64_t *end)
{
    uint64_t b0, s0, b1, s1;
    dagger__task_bundle_counts(&b0, &s0);
    dagger_ctx_t *ctx;
    dagger_task_t *root = root_on_a_worker(&ctx, threads, loop_root, how);
    ASSERT_OK(dagger_fetch_i64(root, end));
    dagger_task_release(root);
    dagger__task_bundle_counts(&b1, &s1);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_TRUE(s1 - s0 <= (uint64_t)LOOP_N);
    return b1 - b0;
}

TEST(bundle_a_flat_loop_on_a_worker_runs_every_body_once_with_its_arguments)
{
    for (int threads = 2; threads <= 4; threads += 2) {
        int64_t end = -1;
        uint64_t bundles = run_loop(threads, PLAIN, &end);
        ASSERT_EQ(end, 0);
        assert_each_once(LOOP_N);
        ASSERT_TRUE(bundles > 0);
    }
}

/* A loop whose tasks fail here and there past its half (mark_or_fail); the root fails with the
 * group end's code and message. Args (unused). */
static int failing_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc == 0)
        rc = block_the_others(c);
    for (int64_t i = 0; i < LOOP_N && rc == 0; i++)
        rc = dagger_spawn_detached(c, mark_or_fail, (void *)&m, i);
    return test_body_sync_end(tc, rc, out);
}

TEST(bundle_a_failure_of_a_bundled_task_is_the_error_of_its_group_end)
{
    for (int threads = 2; threads <= 4; threads += 2) {
        dagger_ctx_t *ctx;
        dagger_task_t *root = root_on_a_worker(&ctx, threads, failing_root, 0);
        int64_t v = -1;
        ASSERT_ERR(dagger_fetch_i64(root, &v), DAGGER_ETASK);
        ASSERT_STR_HAS(dagger_task_errmsg(root), "group: ");
        ASSERT_STR_HAS(dagger_task_errmsg(root), "bundled task ");
        ASSERT_STR_HAS(dagger_task_errmsg(root), " failed");
        dagger_task_release(root);
        ASSERT_OK(dagger_ctx_close(ctx));
        assert_each_once(LOOP_N); /* the failed ones ran too, and nothing after them was lost */
    }
}

TEST(bundle_a_spawn_whose_record_cannot_be_made_at_its_replay_fails_the_group_end)
{
    dagger__task_bundle_lose(5); /* the next bundle replayed loses its fifth spawn */
    int64_t end = -1;
    ASSERT_TRUE(run_loop(2, PLAIN, &end) > 0);
    dagger__task_bundle_lose(0);
    ASSERT_EQ(end, DAGGER_ENOMEM);
    ASSERT_STR_HAS(end_msg, "out of memory for the records of 1 of ");
    ASSERT_STR_HAS(end_msg, " tasks of check_args spawned in a bundle by task ");
    ASSERT_EQ(atomic_load(&m.ran), LOOP_N - 1);
    ASSERT_EQ(atomic_load(&m.bad), 0);
    int64_t missing = 0, twice = 0;
    for (int64_t i = 0; i < LOOP_N; i++) {
        missing += atomic_load(&m.mark[i]) == 0;
        twice += atomic_load(&m.mark[i]) > 1;
    }
    ASSERT_EQ(missing, 1);
    ASSERT_EQ(twice, 0);
}

TEST(bundle_a_spawner_that_waits_mid_loop_loses_no_task)
{
    for (int threads = 2; threads <= 4; threads += 2) {
        int64_t end = -1;
        ASSERT_TRUE(run_loop(threads, WAIT_MID, &end) > 0);
        ASSERT_EQ(end, 0); /* mark_or_fail's indices stay below the half: none fails */
        /* each index below the half twice (the loop wraps there), none above */
        ASSERT_EQ(atomic_load(&m.ran), LOOP_N);
        int64_t wrong = 0;
        for (int64_t i = 0; i < LOOP_N; i++)
            wrong += atomic_load(&m.mark[i]) != (i < LOOP_N / 2 ? 2 : 0);
        ASSERT_EQ(wrong, 0);
    }
}

TEST(bundle_alternating_functions_and_inner_groups_lose_no_task)
{
    for (int threads = 2; threads <= 4; threads += 2) {
        int64_t end = -1;
        (void)run_loop(threads, ALTERNATE, &end);
        ASSERT_EQ(end, 0); /* mark_or_fail's indices stay below the half: none fails */
        ASSERT_EQ(atomic_load(&m.ran), LOOP_N);
        ASSERT_EQ(atomic_load(&m.bad), 0);
        int64_t total = 0;
        for (int64_t i = 0; i < LOOP_N; i++)
            total += atomic_load(&m.mark[i]);
        ASSERT_EQ(total, LOOP_N);
    }
}

TEST(bundle_string_arguments_take_the_usual_path_and_keep_their_values)
{
    for (int threads = 2; threads <= 4; threads += 2) {
        int64_t end = -1;
        ASSERT_EQ(run_loop(threads, STRINGS, &end), 0); /* no bundle: strings are copied */
        ASSERT_EQ(end, 0);
        assert_each_once(LOOP_N);
    }
}

/* The spawner's last spawns wait in its open bundle while it spins on their count with no call
 * into the runtime (where it would publish the bundle): an idle worker takes them once the
 * bundle stopped filling (src/core/task.c, "Bundles"), and that bundle counts as published.
 * Before, the spin never ended (131 of 300000 spawns never ran). */
TEST(bundle_a_spawner_that_spins_on_its_spawns_without_a_call_sees_every_one_run)
{
    for (int threads = 2; threads <= 4; threads += 2) {
        /* Each run must see every spawn; at least one of three must have bundled them (the
         * spawner's deque past the deep mark before the others woke: timing, not guaranteed). */
        uint64_t bundles = 0;
        for (int attempt = 0; attempt < 3 && bundles == 0; attempt++) {
            int64_t end = -1;
            atomic_store(&spin_short, -1);
            bundles = run_loop(threads, SPIN, &end);
            ASSERT_EQ(atomic_load(&spin_short), -1);
            ASSERT_EQ(end, 0);
            assert_each_once(SPIN_N);
        }
        ASSERT_TRUE(bundles > 0);
    }
}

/* Spawners stuck at once on a pool of more than 64 workers, their indices 64 apart: the thieves
 * once kept what they saw of a bundle in a table by index modulo 64, and two such spawners reset
 * their shared entry in turn, so neither bundle ever counted as stale (a scan that closed another
 * bundle first ended before it reached the second of a pair, which hid it while bundles of other
 * spawners were left).
 * MANY_SPINNERS tasks meet, each on a worker of its own, while MANY_GATES tasks hold the other
 * workers. The spinners whose worker's index is 64 apart from another spinner's (at least two
 * pairs: 66 spinners on 72 workers) each spawn a loop past the deep mark, the rest in an open
 * bundle, and spin on its count with no call into the runtime; the others spawn nothing. Each
 * spinner and gate lets its worker go once every loop is spawned. */
#define MANY_WORKERS 72
#define MANY_GATES 6
#define MANY_SPINNERS (MANY_WORKERS - MANY_GATES)
/* Spinner s's spawns (a count of its own, so that no two bundles look alike) and its indices. */
#define MANY_N(s) (SPIN_N + (s))
#define MANY_BASE(s) ((s)*2 * SPIN_N)

static struct {
    _Atomic int arrived, spawned, stuck;
    _Atomic bool on[MANY_WORKERS]; /* a spinner runs on that worker */
    _Atomic int ran[MANY_SPINNERS];
    _Atomic int want[MANY_SPINNERS]; /* its spawns: 0 or MANY_N(s) */
    _Atomic int short_of; /* spinners that gave up waiting (a guard of 10 s, not a timing) */
} many;

/* Args (marks, i, s): index i marked, spinner s's count raised. */
static int mark_many(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    mark(a, true);
    atomic_fetch_add_explicit(&many.ran[dagger_arg_i64(a, 2)], 1, memory_order_relaxed);
    return 0;
}

/* Holds its worker until every spinner's loop is spawned. */
static int many_gate(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    (void)out;
    (void)test_wait_reach(&many.spawned, MANY_SPINNERS, 10);
    return 0;
}

/* Spinner args(0) (see above). */
static int many_spinner(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    int64_t s = dagger_arg_i64(a, 0);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int w = dagger_tc_thread(tc);
    if (w >= 0 && w < MANY_WORKERS)
        atomic_store(&many.on[w], true);
    atomic_fetch_add(&many.arrived, 1);
    if (test_wait_reach(&many.arrived, MANY_SPINNERS, 10) < MANY_SPINNERS)
        return dagger_fail(tc, DAGGER_ETASK, "the spinners did not meet");
    int partner = w < 64 ? w + 64 : w - 64;
    bool stuck = w >= 0 && partner < MANY_WORKERS && atomic_load(&many.on[partner]);
    int n = stuck ? MANY_N(s) : 0;
    atomic_store(&many.want[s], n);
    atomic_fetch_add(&many.stuck, stuck);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    for (int64_t i = 0; i < n && rc == 0; i++)
        rc = dagger_spawn_detached(c, mark_many, (void *)&m, MANY_BASE(s) + i, s);
    atomic_fetch_add(&many.spawned, 1);
    /* no thief before every loop is spawned */
    (void)test_wait_reach(&many.spawned, MANY_SPINNERS, 10);
    /* the wait with no call into the runtime (10 s at most, then the case fails) */
    if (rc == 0 && test_wait_reach(&many.ran[s], n, 10) < n)
        atomic_fetch_add(&many.short_of, 1);
    int end = dagger_sync_end(c);
    return rc ? rc : end;
}

/* The root: the gates and the spinners in a group; its end's code. Args (unused). */
static int many_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    for (int k = 0; k < MANY_GATES && rc == 0; k++)
        rc = dagger_spawn_detached(c, many_gate);
    for (int64_t s = 0; s < MANY_SPINNERS && rc == 0; s++)
        rc = dagger_spawn_detached(c, many_spinner, s);
    int end = dagger_sync_end(c);
    *out = dagger_i64(rc ? rc : end);
    return 0;
}

TEST(bundle_spawners_stuck_at_once_64_workers_apart_see_every_spawn_run)
{
    uint64_t b0, s0, b1, s1;
    dagger__task_bundle_counts(&b0, &s0);
    memset(&many, 0, sizeof many);
    dagger_ctx_t *ctx;
    dagger_task_t *root = root_on_a_worker(&ctx, MANY_WORKERS, many_root, 0);
    int64_t end = -1;
    ASSERT_OK(dagger_fetch_i64(root, &end));
    dagger_task_release(root);
    dagger__task_bundle_counts(&b1, &s1);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_EQ(end, 0);
    ASSERT_EQ(atomic_load(&many.short_of), 0);
    ASSERT_TRUE(atomic_load(&many.stuck) >= 4);
    ASSERT_TRUE(b1 - b0 > 0); /* every loop went past the deep mark before a thief looked */
    int64_t ran = 0, wrong = 0;
    for (int s = 0; s < MANY_SPINNERS; s++) {
        int64_t n = atomic_load(&many.want[s]);
        ASSERT_EQ((int64_t)atomic_load(&many.ran[s]), n);
        ran += n;
        for (int64_t i = 0; i < 2 * SPIN_N; i++)
            wrong += atomic_load(&m.mark[MANY_BASE(s) + i]) != (i < n);
    }
    ASSERT_EQ(atomic_load(&m.ran), ran);
    ASSERT_EQ(atomic_load(&m.bad), 0);
    ASSERT_EQ(wrong, 0);
    printf("  %d spinners stuck at once, %llu bundles of %llu spawns\n", atomic_load(&many.stuck),
           (unsigned long long)(b1 - b0), (unsigned long long)(s1 - s0));
}

TEST_LIST(bundle_a_flat_loop_on_a_worker_runs_every_body_once_with_its_arguments,
          bundle_a_failure_of_a_bundled_task_is_the_error_of_its_group_end,
          bundle_a_spawn_whose_record_cannot_be_made_at_its_replay_fails_the_group_end,
          bundle_a_spawner_that_waits_mid_loop_loses_no_task,
          bundle_alternating_functions_and_inner_groups_lose_no_task,
          bundle_string_arguments_take_the_usual_path_and_keep_their_values,
          bundle_a_spawner_that_spins_on_its_spawns_without_a_call_sees_every_one_run,
          bundle_spawners_stuck_at_once_64_workers_apart_see_every_spawn_run)
