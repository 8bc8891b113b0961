/* tests/test_pool_ext.c - the deque of a thread outside the pool that opens a sync group
 * (issue 17): its spawns go there, workers steal them in batches, and the thread runs what is
 * left at the group's end (on thread -1).
 *
 * Covers: every task of a group runs once, wherever it ran; with every worker held, the thread
 * that ends the group runs all of it, newest first; a failure of a task it ran reaches the end
 * of the group with its message; a suspended task resumed by the thread goes back to a worker; a
 * dependent outside the group that such a task makes ready still runs; nested groups and a
 * second context on one thread; more threads with groups open than the pool has slots; group
 * tasks a worker made ready in its own deque are stolen by the thread ending the group; a worker
 * that holds back from slots (its steals there brought little) still takes a job that stays, and
 * so does one held back from a slot whose owner runs its spawns itself past the deep mark.
 * Workers are held by the harness's gate (test_gate_hold) where a case needs it, so no case depends
 * on timing; a gate that had to open by itself fails the case.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

/* Records where and in which order it ran: args (log, i). */
struct runlog {
    _Atomic int64_t sum;
    _Atomic int n;
    _Atomic int on_outside; /* ran on thread -1 */
    int order[4096];
};

static int log_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct runlog *l = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    atomic_fetch_add(&l->sum, i);
    int at = atomic_fetch_add(&l->n, 1);
    if (at < 4096)
        l->order[at] = (int)i;
    if (dagger_tc_thread(tc) < 0)
        atomic_fetch_add(&l->on_outside, 1);
    *out = dagger_i64(i);
    return 0;
}

static int64_t sum_to(int n) { return (int64_t)n * (n - 1) / 2; }

/* Open a sync group on ctx and spawn log_fn(l, i) for i in [0, n) in it (l cleared first). */
static void group_of_logs(dagger_ctx_t *ctx, struct runlog *l, int n)
{
    memset(l, 0, sizeof *l);
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < n; i++)
        dagger_task_release(dagger_spawn(ctx, log_fn, (void *)l, (int64_t)i));
}

TEST(every_task_of_a_group_from_main_runs_once)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int round = 0; round < 20; round++) {
            static struct runlog l;
            group_of_logs(ctx, &l, 20000);
            ASSERT_OK(dagger_sync_end(ctx));
            ASSERT_EQ(atomic_load(&l.n), 20000);
            ASSERT_EQ(atomic_load(&l.sum), sum_to(20000));
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(held_workers_leave_the_group_to_the_thread_that_ends_it)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *g[2];
    test_gate_hold(ctx, 2, g);
    static struct runlog l;
    enum { N = 250 }; /* below the slot's deep mark (256 for 2 workers): all queued */
    group_of_logs(ctx, &l, N);
    ASSERT_EQ(atomic_load(&l.n), 0); /* nobody ran any yet */
    ASSERT_OK(dagger_sync_end(ctx));
    ASSERT_EQ(atomic_load(&l.n), N);
    ASSERT_EQ(atomic_load(&l.on_outside), N);
    ASSERT_EQ(atomic_load(&l.sum), sum_to(N));
    for (int k = 0; k < N; k++) /* newest first, as a worker pops its own deque */
        ASSERT_EQ(l.order[k], N - 1 - k);
    test_gate_open(2, g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int fail_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "task %lld refused", (long long)dagger_arg_i64(a, 0));
}

TEST(a_failure_run_by_the_ending_thread_reaches_the_group_end)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g[1];
    test_gate_hold(ctx, 1, g);
    static struct runlog l;
    group_of_logs(ctx, &l, 10);
    dagger_task_release(dagger_spawn(ctx, fail_fn, (int64_t)42));
    int rc = dagger_sync_end(ctx);
    ASSERT_EQ(rc, DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_last_errmsg(), "task 42 refused");
    ASSERT_EQ(atomic_load(&l.n), 10);
    test_gate_open(1, g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Waits for the handle its argument points to (set by the spawning thread after this spawn),
 * fetches it (on a worker: suspends until it ends) and returns its value + 1. */
static int fetch_cell_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    _Atomic(dagger_task_t *) *cell = dagger_arg_ptr(a, 0);
    dagger_task_t *y;
    while (!(y = atomic_load(cell)))
        usleep(20);
    int64_t v = 0;
    int rc = dagger_fetch_i64(y, &v);
    if (rc)
        return dagger_fail(tc, rc, "fetch: %s", dagger_last_errmsg());
    *out = dagger_i64(v + 1);
    return 0;
}

static int value_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

TEST(a_task_suspended_on_a_task_the_ending_thread_runs_resumes_on_a_worker)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int round = 0; round < 200; round++) {
            enum { P = 8 };
            _Atomic(dagger_task_t *) cell[P];
            dagger_task_t *x[P], *y[P];
            ASSERT_OK(dagger_sync_begin(ctx));
            /* The fetchers first (the oldest: those workers steal), then what they wait for
             * (the newest: those the ending thread pops and runs, whose end then resumes a
             * fetcher suspended on a worker). */
            for (int i = 0; i < P; i++) {
                atomic_init(&cell[i], NULL);
                x[i] = dagger_spawn(ctx, fetch_cell_fn, (void *)&cell[i]);
            }
            for (int i = 0; i < P; i++) {
                y[i] = dagger_spawn(ctx, value_fn, (int64_t)(100 * round + i));
                atomic_store(&cell[i], y[i]);
            }
            ASSERT_OK(dagger_sync_end(ctx));
            for (int i = 0; i < P; i++) {
                int64_t v = 0;
                ASSERT_OK(dagger_fetch_i64(x[i], &v));
                ASSERT_EQ(v, 100 * round + i + 1);
                dagger_task_release(x[i]);
                dagger_task_release(y[i]);
            }
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

static int plus_one_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

struct dep_spawner {
    dagger_ctx_t *ctx;
    dagger_task_t *on, *made;
};

static void *spawn_dependent(void *p)
{
    struct dep_spawner *d = p;
    d->made = dagger_spawn(d->ctx, plus_one_fn, d->on);
    return NULL;
}

/* A task outside the group (another thread spawned it) that waits on one of the group's tasks:
 * the ending thread runs that task, which makes it ready there; it is not the group's, so it is
 * left to the workers, who run it once they are free. */
TEST(a_dependent_outside_the_group_made_ready_by_the_ending_thread_runs)
{
    dagger_ctx_t *ctx = test_ctx(1);
    for (int round = 0; round < 20; round++) {
        dagger_task_t *g[1];
        test_gate_hold(ctx, 1, g);
        ASSERT_OK(dagger_sync_begin(ctx));
        dagger_task_t *c = dagger_spawn(ctx, value_fn, (int64_t)round);
        struct dep_spawner d = {.ctx = ctx, .on = c};
        pthread_t th;
        ASSERT_EQ(pthread_create(&th, NULL, spawn_dependent, &d), 0);
        pthread_join(th, NULL);
        ASSERT_PTR(d.made);
        ASSERT_OK(dagger_sync_end(ctx)); /* c ran here: the worker is held */
        test_gate_open(1, g);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(d.made, &v));
        ASSERT_EQ(v, round + 1);
        dagger_task_release(d.made);
        dagger_task_release(c);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* Nested groups on one thread hold one slot; a group of another context inside them uses that
 * context's shared queue. */
TEST(nested_groups_and_a_second_context_on_one_thread)
{
    dagger_ctx_t *c1 = test_ctx(2), *c2 = test_ctx(1);
    static struct runlog l1, l2;
    memset(&l1, 0, sizeof l1);
    memset(&l2, 0, sizeof l2);
    for (int round = 0; round < 50; round++) {
        ASSERT_OK(dagger_sync_begin(c1));
        for (int i = 0; i < 100; i++)
            dagger_task_release(dagger_spawn(c1, log_fn, (void *)&l1, (int64_t)i));
        ASSERT_OK(dagger_sync_begin(c1));
        for (int i = 100; i < 200; i++)
            dagger_task_release(dagger_spawn(c1, log_fn, (void *)&l1, (int64_t)i));
        ASSERT_OK(dagger_sync_begin(c2));
        for (int i = 0; i < 100; i++)
            dagger_task_release(dagger_spawn(c2, log_fn, (void *)&l2, (int64_t)i));
        ASSERT_OK(dagger_sync_end(c2));
        ASSERT_EQ(atomic_load(&l2.n), 100 * (round + 1));
        ASSERT_OK(dagger_sync_end(c1));
        for (int i = 200; i < 300; i++)
            dagger_task_release(dagger_spawn(c1, log_fn, (void *)&l1, (int64_t)i));
        ASSERT_OK(dagger_sync_end(c1));
        ASSERT_EQ(atomic_load(&l1.n), 300 * (round + 1));
    }
    ASSERT_EQ(atomic_load(&l1.sum), 50 * sum_to(300));
    ASSERT_EQ(atomic_load(&l2.sum), 50 * sum_to(100));
    ASSERT_OK(dagger_ctx_close(c2));
    ASSERT_OK(dagger_ctx_close(c1));
}

/* More threads with a group open than the pool has slots (8): the others' spawns go to the
 * shared queue; every group still sees all of its tasks done at its end. */
struct grouper {
    dagger_ctx_t *ctx;
    int rc;
    _Atomic int64_t sum;
};

static int add_to_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    _Atomic int64_t *sum = dagger_arg_ptr(a, 0);
    atomic_fetch_add(sum, dagger_arg_i64(a, 1));
    return 0;
}

static void *grouper_main(void *p)
{
    struct grouper *g = p;
    for (int round = 0; round < 40 && !g->rc; round++) {
        int64_t before = atomic_load(&g->sum);
        if ((g->rc = dagger_sync_begin(g->ctx)) != 0)
            break;
        for (int i = 0; i < 300; i++)
            dagger_task_release(dagger_spawn(g->ctx, add_to_fn, (void *)&g->sum, (int64_t)i));
        g->rc = dagger_sync_end(g->ctx);
        if (!g->rc && atomic_load(&g->sum) - before != sum_to(300))
            g->rc = -1; /* the group ended before all of its tasks did */
    }
    return NULL;
}

TEST(more_threads_with_groups_than_slots)
{
    dagger_ctx_t *ctx = test_ctx(2);
    enum { NT = 11 };
    static struct grouper g[NT];
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        g[t].ctx = ctx;
        g[t].rc = 0;
        atomic_store(&g[t].sum, 0);
        ASSERT_EQ(pthread_create(&th[t], NULL, grouper_main, &g[t]), 0);
    }
    for (int t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < NT; t++) {
        ASSERT_EQ(g[t].rc, 0);
        ASSERT_EQ(atomic_load(&g[t].sum), 40 * sum_to(300));
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The stealing case: x runs on the worker; its completion makes the dependents d ready there
 * (one runs at once, the rest wait in the worker's deque). The one on the worker waits for the
 * others, which only the thread ending the group can run, by stealing them from that deque. x
 * takes a few milliseconds after it started, so the ending thread finds nothing to take at first
 * and sleeps: it must look again while it waits (a race the CI's TSan run once lost). */
static _Atomic int steal_x_started, steal_done, steal_on_outside;

static int steal_x_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store(&steal_x_started, dagger_tc_thread(tc) >= 0 ? 1 : -1);
    usleep(3000);
    *out = dagger_i64(7);
    return 0;
}

static int steal_d_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int n = (int)dagger_arg_i64(a, 1);
    if (dagger_tc_thread(tc) >= 0) { /* the worker's: the others must run elsewhere */
        for (int i = 0; i < 50000 && atomic_load(&steal_done) < n - 1; i++)
            usleep(200);
        if (atomic_load(&steal_done) < n - 1)
            return dagger_fail(tc, DAGGER_ETASK, "only %d of the other %d dependents ran",
                               atomic_load(&steal_done), n - 1);
    } else {
        atomic_fetch_add(&steal_on_outside, 1);
    }
    atomic_fetch_add(&steal_done, 1);
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

TEST(the_ending_thread_steals_group_tasks_a_worker_holds)
{
    dagger_ctx_t *ctx = test_ctx(1);
    enum { N = 5 };
    for (int round = 0; round < 20; round++) {
        atomic_store(&steal_x_started, 0);
        atomic_store(&steal_done, 0);
        atomic_store(&steal_on_outside, 0);
        ASSERT_OK(dagger_sync_begin(ctx));
        dagger_task_t *x = dagger_spawn(ctx, steal_x_fn);
        ASSERT_PTR(x);
        dagger_task_t *d[N];
        for (int i = 0; i < N; i++) {
            d[i] = dagger_spawn(ctx, steal_d_fn, x, (int64_t)N);
            ASSERT_PTR(d[i]);
        }
        /* x runs on the worker (it steals it from this thread's deque) before the group ends */
        for (int i = 0; i < 50000 && !atomic_load(&steal_x_started); i++)
            usleep(100);
        ASSERT_EQ(atomic_load(&steal_x_started), 1);
        ASSERT_OK(dagger_sync_end(ctx));
        ASSERT_EQ(atomic_load(&steal_done), N);
        /* all but the one the worker ran after x (if it got one before this thread) ran here */
        ASSERT_TRUE(atomic_load(&steal_on_outside) >= N - 1);
        for (int i = 0; i < N; i++) {
            int64_t v = 0;
            ASSERT_OK(dagger_fetch_i64(d[i], &v));
            ASSERT_EQ(v, 8);
            dagger_task_release(d[i]);
        }
        dagger_task_release(x);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int flag_thread = -2;

/* A worker whose steals from slots brought little (groups of tiny tasks that main ends at once)
 * holds back from a slot's newest jobs (src/pool/pool.c, ext_worth); a job that stays in the
 * slot while its owner is busy elsewhere must still reach it. Main does not end the group until
 * the job ran, so only a worker can run it; a worker that never came fails the case. */
TEST(a_worker_held_back_by_small_steals_still_takes_a_job_that_stays)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int round = 0; round < 4; round++) {
            static struct runlog l;
            for (int g = 0; g < 300; g++) {
                group_of_logs(ctx, &l, 140);
                ASSERT_OK(dagger_sync_end(ctx));
                ASSERT_EQ(atomic_load(&l.sum), sum_to(140));
            }
            atomic_store(&flag_thread, -2);
            ASSERT_OK(dagger_sync_begin(ctx));
            dagger_task_release(dagger_spawn(ctx, test_note_thread, (void *)&flag_thread));
            int th = test_wait_change(&flag_thread, -2, 10);
            if (th == -2)
                fail_msg("threads %d, round %d: no worker took the job in main's slot in 10 s",
                         threads, round);
            ASSERT_TRUE(th >= 0);
            ASSERT_OK(dagger_sync_end(ctx));
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

static _Atomic int kept_ran, kept_on_outside;

static int count_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    if (dagger_tc_thread(tc) < 0)
        atomic_fetch_add(&kept_on_outside, 1);
    atomic_fetch_add(&kept_ran, 1);
    *out = dagger_nil();
    return 0;
}

/* A thread whose slot is past its deep mark runs its further spawns itself, and a worker
 * then judges the slot by the work per job that its steals from such slots brought
 * (src/pool/pool.c, ext_worth): groups of tiny tasks teach it to hold back. The jobs left in the
 * slot while its owner does something else must still reach a worker: main spawns past the deep
 * mark, then waits without ending the group until every task ran, with 1 to 3 workers (each
 * keeps its own mean). A worker that never came fails the case. */
TEST(a_worker_held_back_from_a_slot_whose_owner_runs_its_spawns_still_takes_its_jobs)
{
    for (int threads = 1; threads <= 3; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int round = 0; round < 4; round++) {
            for (int g = 0; g < 5; g++) {
                ASSERT_OK(dagger_sync_begin(ctx));
                for (int i = 0; i < 20000; i++)
                    ASSERT_OK(dagger_spawn_detached(ctx, count_fn));
                ASSERT_OK(dagger_sync_end(ctx));
            }
            atomic_store(&kept_ran, 0);
            atomic_store(&kept_on_outside, 0);
            ASSERT_OK(dagger_sync_begin(ctx));
            for (int i = 0; i < 3000; i++)
                ASSERT_OK(dagger_spawn_detached(ctx, count_fn));
            int ran = test_wait_reach(&kept_ran, 3000, 10);
            if (ran < 3000)
                fail_msg("threads %d, round %d: %d of 3000 tasks ran in 10 s (%d on main)", threads,
                         round, ran, atomic_load(&kept_on_outside));
            ASSERT_OK(dagger_sync_end(ctx));
            ASSERT_EQ(atomic_load(&kept_ran), 3000);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST_LIST(every_task_of_a_group_from_main_runs_once,
          held_workers_leave_the_group_to_the_thread_that_ends_it,
          a_failure_run_by_the_ending_thread_reaches_the_group_end,
          a_task_suspended_on_a_task_the_ending_thread_runs_resumes_on_a_worker,
          a_dependent_outside_the_group_made_ready_by_the_ending_thread_runs,
          nested_groups_and_a_second_context_on_one_thread, more_threads_with_groups_than_slots,
          the_ending_thread_steals_group_tasks_a_worker_holds,
          a_worker_held_back_by_small_steals_still_takes_a_job_that_stays,
          a_worker_held_back_from_a_slot_whose_owner_runs_its_spawns_still_takes_its_jobs)
