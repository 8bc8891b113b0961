/* tests/test_pool_slot.c - slots of threads outside the pool (issue 17): the deque a thread that
 * is not a worker pushes its spawns to, pops when it waits, and workers steal from.
 *
 * Covers: threads that spawn and end while their slots still hold jobs; a thread that never
 * waits (workers steal all of it); a close while slots hold jobs and their owner lives on;
 * contexts reopened in a loop and used in turn on one thread (the generation check); the order
 * in which a thread ending a group runs its own spawns (newest first, on thread -1); and a
 * random-DAG stress from several threads checked against sequential evaluation. Jobs are held back
 * by a gate (a task that waits for a flag) where a case needs them to stay queued, so no case
 * depends on timing; a hang shows as the test's timeout.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

static _Atomic int gate_open;
static _Atomic int gate_in; /* tasks waiting at the gate */

/* Holds its worker until the gate opens. */
static int gate_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&gate_in, 1);
    while (!atomic_load(&gate_open))
        usleep(200);
    *out = dagger_i64(-1);
    return 0;
}

static void gate_reset(void)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_in, 0);
}

/* Adds its argument to the counter it points to; the thread it ran on is its result. */
static int add_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    _Atomic int64_t *sum = dagger_arg_ptr(a, 0);
    atomic_fetch_add(sum, dagger_arg_i64(a, 1));
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

/* ------------------------------------------------------------ threads that spawn and end */

struct spawner {
    dagger_ctx_t *ctx;
    int n, base;
    _Atomic int64_t sum;
};

static void *spawn_and_end(void *p)
{
    struct spawner *s = p;
    for (int i = 0; i < s->n; i++)
        dagger_task_release(dagger_spawn(s->ctx, add_fn, (void *)&s->sum, (int64_t)(s->base + i)));
    return NULL; /* no wait: the jobs stay in this thread's slot */
}

static int64_t sum_of(int base, int n) { return (int64_t)n * base + (int64_t)n * (n - 1) / 2; }

TEST(threads_spawn_and_end_while_their_slots_hold_jobs)
{
    gate_reset();
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *g[2];
    for (int i = 0; i < 2; i++)
        g[i] = dagger_spawn(ctx, gate_fn);
    while (atomic_load(&gate_in) < 2) /* both workers held: nothing else runs */
        usleep(100);
    enum { NT = 8, PER = 1500 };
    struct spawner s[NT];
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        s[t] = (struct spawner){.ctx = ctx, .n = PER, .base = 1000 * t};
        ASSERT_EQ(pthread_create(&th[t], NULL, spawn_and_end, &s[t]), 0);
    }
    for (int t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < NT; t++) /* every job is still queued in an ended thread's slot */
        ASSERT_EQ(atomic_load(&s[t].sum), 0);
    /* A new thread may adopt one of those slots: its jobs and the old ones all run. */
    struct spawner late = {.ctx = ctx, .n = 100, .base = 7};
    pthread_t lt;
    ASSERT_EQ(pthread_create(&lt, NULL, spawn_and_end, &late), 0);
    pthread_join(lt, NULL);
    atomic_store(&gate_open, 1);
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(dagger_wait(g[i]));
        dagger_task_release(g[i]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
    for (int t = 0; t < NT; t++)
        ASSERT_EQ(atomic_load(&s[t].sum), sum_of(1000 * t, PER));
    ASSERT_EQ(atomic_load(&late.sum), sum_of(7, 100));
}

/* ------------------------------------------------------------ a thread that never waits */

struct busy {
    dagger_ctx_t *ctx;
    int n;
    _Atomic int64_t sum;
    _Atomic int64_t on_worker; /* tasks that ran on a worker (thread >= 0) */
};

static int count_where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct busy *b = dagger_arg_ptr(a, 0);
    atomic_fetch_add(&b->sum, dagger_arg_i64(a, 1));
    if (dagger_tc_thread(tc) >= 0)
        atomic_fetch_add(&b->on_worker, 1);
    return 0;
}

static void *spawn_then_block(void *p)
{
    struct busy *b = p;
    for (int i = 0; i < b->n; i++)
        dagger_task_release(dagger_spawn(b->ctx, count_where, p, (int64_t)i));
    /* Blocked in user code, not in dagger: only workers can run the jobs of this slot. */
    while (atomic_load(&b->sum) != sum_of(0, b->n))
        usleep(200);
    return NULL;
}

TEST(a_thread_that_never_waits_has_all_its_jobs_stolen)
{
    for (int threads = 1; threads <= 2; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        struct busy b = {.ctx = ctx, .n = 5000};
        pthread_t th;
        ASSERT_EQ(pthread_create(&th, NULL, spawn_then_block, &b), 0);
        pthread_join(th, NULL);
        ASSERT_EQ(atomic_load(&b.sum), sum_of(0, 5000));
        ASSERT_EQ(atomic_load(&b.on_worker), 5000);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ------------------------------------------------------------ close while slots hold jobs */

struct holder {
    dagger_ctx_t *ctx;
    _Atomic int64_t sum;
    _Atomic int spawned, go;
    int64_t after; /* the value fetched in a context opened after the close */
    int after_rc;
};

static void *hold_slot(void *p)
{
    struct holder *h = p;
    for (int i = 0; i < 300; i++)
        dagger_task_release(dagger_spawn(h->ctx, add_fn, (void *)&h->sum, (int64_t)i));
    atomic_store(&h->spawned, 1);
    while (!atomic_load(&h->go))
        usleep(100);
    /* The context whose slot this thread owned is closed: a new one must give it a new slot. */
    dagger_ctx_t *c2 = NULL;
    h->after_rc = dagger_ctx_open(&c2, NULL);
    if (h->after_rc)
        return NULL;
    _Atomic int64_t sum2 = 0;
    dagger_task_t *t = dagger_spawn(c2, add_fn, (void *)&sum2, (int64_t)41);
    h->after_rc = dagger_fetch_i64(t, &h->after);
    dagger_task_release(t);
    if (!h->after_rc && atomic_load(&sum2) != 41)
        h->after_rc = -1;
    int rc = dagger_ctx_close(c2);
    if (!h->after_rc)
        h->after_rc = rc;
    return NULL;
}

static void *open_gate_later(void *p)
{
    (void)p;
    usleep(20000);
    atomic_store(&gate_open, 1);
    return NULL;
}

TEST(close_while_slots_hold_jobs_and_their_owner_lives)
{
    gate_reset();
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g = dagger_spawn(ctx, gate_fn);
    while (atomic_load(&gate_in) < 1)
        usleep(100);
    dagger_task_release(g);
    struct holder h = {.ctx = ctx};
    pthread_t th, opener;
    ASSERT_EQ(pthread_create(&th, NULL, hold_slot, &h), 0);
    while (!atomic_load(&h.spawned))
        usleep(100);
    ASSERT_EQ(atomic_load(&h.sum), 0); /* all 300 wait in the live thread's slot */
    ASSERT_EQ(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
    ASSERT_OK(dagger_ctx_close(ctx)); /* drains them: workers steal the slot empty */
    ASSERT_EQ(atomic_load(&h.sum), sum_of(0, 300));
    pthread_join(opener, NULL);
    atomic_store(&h.go, 1);
    pthread_join(th, NULL);
    ASSERT_OK(h.after_rc);
    ASSERT_TRUE(h.after >= 0); /* a fetch from outside the pool runs nothing: a worker ran it */
}

/* ------------------------------------------------------------ contexts reopened on one thread */

TEST(contexts_reopened_and_alternated_on_one_thread)
{
    int rounds = test_level_full() ? 300 : 100;
    for (int r = 0; r < rounds; r++) {
        dagger_ctx_t *a = test_ctx(1 + r % 2), *b = test_ctx(1);
        _Atomic int64_t sa = 0, sb = 0;
        dagger_task_t *ta[40], *tb[40];
        for (int i = 0; i < 40; i++) { /* the thread's slot moves between the two pools */
            ta[i] = dagger_spawn(a, add_fn, (void *)&sa, (int64_t)i);
            tb[i] = dagger_spawn(b, add_fn, (void *)&sb, (int64_t)(2 * i));
        }
        for (int i = 39; i >= 0; i--) {
            ASSERT_OK(dagger_wait(tb[i]));
            ASSERT_OK(dagger_wait(ta[i]));
            dagger_task_release(ta[i]);
            dagger_task_release(tb[i]);
        }
        ASSERT_EQ(atomic_load(&sa), sum_of(0, 40));
        ASSERT_EQ(atomic_load(&sb), 2 * sum_of(0, 40));
        dagger_task_t *t = dagger_spawn(a, add_fn, (void *)&sa, (int64_t)1);
        int64_t where = 0;
        ASSERT_OK(dagger_fetch_i64(t, &where));
        dagger_task_release(t);
        ASSERT_OK(dagger_ctx_close(b));
        ASSERT_OK(dagger_ctx_close(a)); /* the next open may reuse its memory: a new generation */
        ASSERT_EQ(atomic_load(&sa), sum_of(0, 40) + 1);
    }
}

/* ------------------------------------------------------------ the waiting thread's order */

static _Atomic int order_next;

static int record_order(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int *slot = dagger_arg_ptr(a, 0);
    *slot = atomic_fetch_add(&order_next, 1);
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

TEST(the_waiting_thread_runs_its_own_spawns_newest_first)
{
    gate_reset();
    atomic_store(&order_next, 0);
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *g = dagger_spawn(ctx, gate_fn);
    while (atomic_load(&gate_in) < 1) /* the only worker is held: this thread runs the rest */
        usleep(100);
    enum { N = 10 };
    int pos[N];
    dagger_task_t *t[N];
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < N; i++)
        t[i] = dagger_spawn(ctx, record_order, (void *)&pos[i]);
    ASSERT_OK(dagger_sync_end(ctx));
    for (int i = 0; i < N; i++) {
        int64_t where = 0;
        ASSERT_OK(dagger_fetch_i64(t[i], &where));
        ASSERT_EQ(where, -1);         /* processor -1: the thread outside the pool */
        ASSERT_EQ(pos[i], N - 1 - i); /* newest first, as a worker pops its own deque */
        dagger_task_release(t[i]);
    }
    atomic_store(&gate_open, 1);
    ASSERT_OK(dagger_wait(g));
    dagger_task_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ------------------------------------------------------------ random DAGs from several threads */

/* out = (sum of the inputs) * 3 + salt, modulo a prime. */
#define DAG_MOD 1000003
static int dag_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = dagger_args_count(a);
    int64_t s = 0;
    for (size_t i = 0; i + 1 < n; i++)
        s += dagger_arg_i64(a, i);
    *out = dagger_i64((s * 3 + dagger_arg_i64(a, n - 1)) % DAG_MOD);
    return 0;
}

struct dag_job {
    dagger_ctx_t *ctx;
    uint64_t seed;
    int n, use_group;
    int failed; /* 0, or 1 + the node whose value was wrong, or -rc */
};

enum { DAG_MAX = 400 };

static void *dag_main(void *p)
{
    struct dag_job *d = p;
    uint64_t s = d->seed;
    int64_t want[DAG_MAX];
    dagger_task_t *t[DAG_MAX];
    if (d->use_group && dagger_sync_begin(d->ctx)) {
        d->failed = -1;
        return NULL;
    }
    for (int i = 0; i < d->n; i++) {
        dagger_value_t argv[5];
        int nin = i ? (int)(test_rand(&s) % 4) : 0;
        int64_t acc = 0;
        for (int k = 0; k < nin; k++) {
            int from = (int)(test_rand(&s) % (uint64_t)i);
            argv[k] = dagger_taskv(t[from]);
            acc += want[from];
        }
        int64_t salt = (int64_t)(test_rand(&s) % 1000);
        argv[nin] = dagger_i64(salt);
        want[i] = (acc * 3 + salt) % DAG_MOD;
        t[i] = dagger_spawnv(d->ctx, dag_fn, argv, (size_t)nin + 1);
        if (test_rand(&s) % 8 == 0) { /* now and then a fetch in the middle */
            int64_t v = 0;
            int rc = dagger_fetch_i64(t[i], &v);
            if (rc && !d->failed)
                d->failed = rc;
            else if (v != want[i] && !d->failed)
                d->failed = 1 + i;
        }
    }
    if (d->use_group) {
        int rc = dagger_sync_end(d->ctx);
        if (rc && !d->failed)
            d->failed = rc;
    }
    for (int i = d->n - 1; i >= 0; i--) {
        int64_t v = 0;
        int rc = dagger_fetch_i64(t[i], &v);
        if (rc && !d->failed)
            d->failed = rc;
        else if (v != want[i] && !d->failed)
            d->failed = 1 + i;
        dagger_task_release(t[i]);
    }
    return NULL;
}

TEST(random_dags_from_several_threads_match_sequential_evaluation)
{
    uint64_t seed = test_seed();
    int rounds = test_level_full() ? 20 : 5;
    for (int r = 0; r < rounds; r++) {
        dagger_ctx_t *ctx = test_ctx(1 + r % 2);
        enum { NT = 4 };
        struct dag_job d[NT];
        pthread_t th[NT];
        for (int k = 0; k < NT; k++) {
            d[k] = (struct dag_job){.ctx = ctx,
                                    .seed = seed + (uint64_t)(r * NT + k) * 7919u,
                                    .n = DAG_MAX,
                                    .use_group = k % 2};
            ASSERT_EQ(pthread_create(&th[k], NULL, dag_main, &d[k]), 0);
        }
        struct dag_job mine = {
            .ctx = ctx, .seed = seed ^ 0x5bd1e995u, .n = DAG_MAX / 2, .use_group = r % 2};
        dag_main(&mine); /* the main thread too */
        for (int k = 0; k < NT; k++) {
            pthread_join(th[k], NULL);
            ASSERT_EQ(d[k].failed, 0);
        }
        ASSERT_EQ(mine.failed, 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST_LIST(threads_spawn_and_end_while_their_slots_hold_jobs,
          a_thread_that_never_waits_has_all_its_jobs_stolen,
          close_while_slots_hold_jobs_and_their_owner_lives,
          contexts_reopened_and_alternated_on_one_thread,
          the_waiting_thread_runs_its_own_spawns_newest_first,
          random_dags_from_several_threads_match_sequential_evaluation)
