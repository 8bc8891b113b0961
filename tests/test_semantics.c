/* tests/test_semantics.c - Dagger.jl semantics (issue 15): dominated waits, bulk units inside
 * sequential blocks, per-task completion in streaming regions, task queries, scopes, user
 * data, checkpoint and restore hooks. Every case runs on 1 and 4 threads.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#include "dagger/stream.h"

static const int THREADS[] = {1, 4};
#define FOR_THREADS(th) for (int th##_i = 0, th; th##_i < 2 && (th = THREADS[th##_i], 1); th##_i++)

/* Poll `cond` for up to 10 s; only ever bounds a wait for something that must happen. */
#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        for (int w_ = 0; w_ < 100000 && !(cond); w_++)                                             \
            usleep(100);                                                                           \
        ASSERT_TRUE(cond);                                                                         \
    } while (0)

static void release_all(dagger_task_t **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dagger_task_release(t[i]);
}

static int ret_i64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

static int add1(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

static int fail_boom(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    return dagger_fail(tc, DAGGER_ETASK, "boom");
}

/* ---------------------------------------------------------------- 1. dominated waits */

struct dom {
    dagger_task_t *target; /* what the task waits for (set before it runs) */
    int use_wait;          /* 0: fetch, 1: wait, 2: wait_all, 3: fetch_all, 4: wait_any */
    int rc;
    char msg[512];
};

static int wait_how(dagger_task_t *t, int how)
{
    dagger_value_t v;
    size_t idx;
    switch (how) {
    case 0:
        return dagger_fetch(t, &v);
    case 1:
        return dagger_wait(t);
    case 2:
        return dagger_wait_all(&t, 1);
    case 3:
        return dagger_fetch_all(&t, 1, &v);
    default:
        return dagger_wait_any(&t, 1, &idx);
    }
}

/* A task that spawns a child taking the task itself as an input, then waits for it. */
static int self_input_parent(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct dom *d = dagger_arg_ptr(a, 0);
    dagger_task_t *child = dagger_spawn(dagger_tc_ctx(tc), add1, dagger_tc_task(tc));
    d->rc = wait_how(child, d->use_wait);
    snprintf(d->msg, sizeof d->msg, "%s", dagger_last_errmsg());
    snprintf(d->msg + strlen(d->msg), sizeof d->msg - strlen(d->msg), "|%llu|%llu",
             (unsigned long long)dagger_task_id(child), (unsigned long long)dagger_tc_id(tc));
    d->target = child; /* +1: checked by the test */
    *out = dagger_i64(41);
    return 0;
}

TEST(child_taking_its_parent_as_input_is_refused)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        for (int how = 0; how < 5; how++) {
            struct dom d = {NULL, how, 0, ""};
            dagger_task_t *p = dagger_spawn(ctx, self_input_parent, (void *)&d);
            int64_t v;
            ASSERT_OK(dagger_fetch_i64(p, &v));
            ASSERT_EQ(v, 41);
            ASSERT_ERR(d.rc, DAGGER_EDEADLK);
            char want[128];
            snprintf(want, sizeof want, "task %llu 'add1' depends on the waiting task %llu",
                     (unsigned long long)dagger_task_id(d.target),
                     (unsigned long long)dagger_task_id(p));
            ASSERT_STR_HAS(d.msg, want);
            ASSERT_STR_HAS(d.msg, "self_input_parent");
            /* The child runs once the parent is done, with the parent's value. */
            ASSERT_OK(dagger_fetch_i64(d.target, &v));
            ASSERT_EQ(v, 42);
            release_all((dagger_task_t *[]){p, d.target}, 2);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* `a` waits for the task in d->target, which the test spawns downstream of `a`. */
static int waiter(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    struct dom *d = dagger_arg_ptr(a, 0);
    d->rc = wait_how(d->target, d->use_wait);
    snprintf(d->msg, sizeof d->msg, "%s", d->rc ? dagger_last_errmsg() : "");
    *out = dagger_i64(1);
    return 0;
}

/* Spawn a = waiter(d) and the tasks downstream of it inside a bulk block, so that `a` starts
 * only when d->target is known. */
static void dominated_case(dagger_ctx_t *ctx, int how, int shape)
{
    struct dom d = {NULL, how, 0, ""};
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
    dagger_task_t *a = dagger_spawn(ctx, waiter, (void *)&d);
    dagger_task_t *b = NULL, *c = NULL;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    switch (shape) {
    case 0: /* b = f(a), a waits for b */
        b = dagger_spawn(ctx, add1, a);
        d.target = b;
        break;
    case 1: /* c = f(b), b = f(a): a waits for c */
        b = dagger_spawn(ctx, add1, a);
        c = dagger_spawn(ctx, add1, b);
        d.target = c;
        break;
    default: /* b follows a through a syncdep only */
        o.syncdeps = &a;
        o.nsyncdeps = 1;
        b = dagger_spawn_opts(ctx, &o, ret_i64, 5);
        d.target = b;
        break;
    }
    ASSERT_OK(dagger_queue_end(ctx));
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(d.target, &v));
    ASSERT_EQ(v, shape == 0 ? 2 : shape == 1 ? 3 : 5);
    ASSERT_ERR(d.rc, DAGGER_EDEADLK);
    char want[160];
    snprintf(want, sizeof want, "task %llu '%s' depends on the waiting task %llu 'waiter'",
             (unsigned long long)dagger_task_id(d.target), shape == 2 ? "ret_i64" : "add1",
             (unsigned long long)dagger_task_id(a));
    ASSERT_STR_HAS(d.msg, want);
    if (shape == 1) {
        snprintf(want, sizeof want, "chain: %llu <- %llu <- %llu",
                 (unsigned long long)dagger_task_id(c), (unsigned long long)dagger_task_id(b),
                 (unsigned long long)dagger_task_id(a));
        ASSERT_STR_HAS(d.msg, want);
    }
    release_all((dagger_task_t *[]){a, b, c}, 3);
}

TEST(waiting_for_a_downstream_task_is_refused)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        for (int shape = 0; shape < 3; shape++)
            for (int how = 0; how < 5; how++)
                dominated_case(ctx, how, shape);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(waiting_for_an_unrelated_task_is_not_refused)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        for (int how = 0; how < 5; how++) {
            /* a has dependents, but the task it waits for is not one of them. */
            struct dom d = {NULL, how, -1, ""};
            ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
            dagger_task_t *x = dagger_spawn(ctx, ret_i64, 7);
            dagger_task_t *a = dagger_spawn(ctx, waiter, (void *)&d);
            dagger_task_t *b = dagger_spawn(ctx, add1, a);
            dagger_task_t *y = dagger_spawn(ctx, add1, x); /* a sibling downstream of x */
            d.target = y;
            ASSERT_OK(dagger_queue_end(ctx));
            int64_t v;
            ASSERT_OK(dagger_fetch_i64(b, &v));
            ASSERT_EQ(v, 2);
            ASSERT_EQ(d.rc, 0);
            release_all((dagger_task_t *[]){x, a, b, y}, 4);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- 2. queue units */

struct meet {
    _Atomic int before;  /* the task before the group has finished */
    _Atomic int arrived; /* tasks of the group at the barrier */
    _Atomic int left;    /* tasks of the group that finished */
    _Atomic int g1_left; /* for two groups: the first group's finished count when g2 ran */
    int n;
    _Atomic int bad;
};

static int before_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct meet *m = dagger_arg_ptr(a, 0);
    atomic_store(&m->before, 1);
    return 0;
}

/* All n tasks of the group must be running at once to get past the barrier. */
static int barrier_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct meet *m = dagger_arg_ptr(a, 0);
    if (!atomic_load(&m->before))
        atomic_store(&m->bad, 1);
    atomic_fetch_add(&m->arrived, 1);
    for (int w = 0; w < 100000 && atomic_load(&m->arrived) < m->n; w++)
        usleep(100);
    if (atomic_load(&m->arrived) < m->n)
        return dagger_fail(tc, DAGGER_ETIMEDOUT, "only %d of %d tasks met",
                           atomic_load(&m->arrived), m->n);
    atomic_fetch_add(&m->left, 1);
    return 0;
}

static int after_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    struct meet *m = dagger_arg_ptr(a, 0);
    *out = dagger_i64(atomic_load(&m->left));
    return 0;
}

TEST(bulk_inside_sequential_launches_together)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct meet m = {0, 0, 0, 0, 10, 0};
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.occupancy = 0;
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_WAITALL));
        dagger_task_release(dagger_spawn(ctx, before_fn, (void *)&m));
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
        for (int i = 0; i < m.n; i++)
            dagger_task_release(dagger_spawn_opts(ctx, &o, barrier_fn, (void *)&m));
        ASSERT_OK(dagger_queue_end(ctx));
        dagger_task_t *after = dagger_spawn(ctx, after_fn, (void *)&m);
        ASSERT_OK(dagger_queue_end(ctx));
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(after, &v));
        ASSERT_EQ(v, 10); /* the next unit runs after the whole group */
        ASSERT_EQ(atomic_load(&m.bad), 0);
        dagger_task_release(after);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

static int g2_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct meet *m = dagger_arg_ptr(a, 0);
    if (atomic_load(&m->left) != m->n)
        atomic_store(&m->bad, 1);
    atomic_fetch_add(&m->g1_left, 1);
    return 0;
}

static int count_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct meet *m = dagger_arg_ptr(a, 0);
    atomic_fetch_add(&m->left, 1);
    return 0;
}

TEST(two_bulk_groups_in_sequence_run_group_after_group)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct meet m = {1, 0, 0, 0, 20, 0};
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_WAITALL));
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
        for (int i = 0; i < m.n; i++)
            dagger_task_release(dagger_spawn(ctx, count_fn, (void *)&m));
        ASSERT_OK(dagger_queue_end(ctx));
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
        for (int i = 0; i < m.n; i++)
            dagger_task_release(dagger_spawn(ctx, g2_fn, (void *)&m));
        ASSERT_OK(dagger_queue_end(ctx));
        ASSERT_OK(dagger_queue_end(ctx));
        ASSERT_EQ(atomic_load(&m.left), 20);
        ASSERT_EQ(atomic_load(&m.g1_left), 20);
        ASSERT_EQ(atomic_load(&m.bad), 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

struct order {
    _Atomic int next;
    int seen[16];
};

static int order_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct order *o = dagger_arg_ptr(a, 0);
    int k = atomic_fetch_add(&o->next, 1);
    o->seen[k] = (int)dagger_arg_i64(a, 1);
    return 0;
}

TEST(sequential_inside_bulk_waits_then_runs_in_order)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct order ord = {0, {0}};
        dagger_task_t *last = NULL;
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL));
        for (int i = 0; i < 12; i++) {
            dagger_task_release(last);
            last = dagger_spawn(ctx, order_fn, (void *)&ord, i);
        }
        ASSERT_OK(dagger_queue_end(ctx));
        ASSERT_FALSE(dagger_task_started(last));
        ASSERT_EQ(atomic_load(&ord.next), 0); /* held until the bulk block ends */
        ASSERT_OK(dagger_queue_end(ctx));
        ASSERT_OK(dagger_wait(last));
        ASSERT_EQ(atomic_load(&ord.next), 12);
        for (int i = 0; i < 12; i++)
            ASSERT_EQ(ord.seen[i], i);
        dagger_task_release(last);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- 3. streaming */

struct counter {
    _Atomic int64_t n;
};

static int count_src(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    struct counter *c = dagger_arg_ptr(a, 0);
    *out = dagger_i64(atomic_fetch_add(&c->n, 1));
    return 0;
}

static int count_sink(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    struct counter *c = dagger_arg_ptr(a, 0);
    if (dagger_arg_i64(a, 1) != atomic_load(&c->n))
        return dagger_fail(tc, DAGGER_ETASK, "out of order");
    atomic_fetch_add(&c->n, 1);
    return 0;
}

static void set_stream(dagger_stream_t *s, int64_t max_evals, bool teardown)
{
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.max_evals = max_evals;
    o.teardown = teardown;
    ASSERT_OK(dagger_stream_set_opts(s, &o));
}

TEST(bounded_stream_task_completes_beside_an_endless_one)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct counter endless = {0}, bounded = {0};
        dagger_stream_t *s;
        ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
        set_stream(s, -1, false);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.occupancy = 0; /* never takes the one worker of the 1-thread case */
        dagger_task_t *A = dagger_spawn_opts(ctx, &o, count_src, (void *)&endless);
        set_stream(s, 3, false);
        dagger_task_t *B = dagger_spawn(ctx, count_src, (void *)&bounded);
        ASSERT_OK(dagger_stream_end(s));
        ASSERT_OK(dagger_fetch(B, NULL)); /* returns after B's own 3 runs */
        ASSERT_EQ(atomic_load(&bounded.n), 3);
        ASSERT_FALSE(dagger_task_done(A));
        ASSERT_OK(dagger_cancel(A));
        ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_ECANCELED);
        release_all((dagger_task_t *[]){A, B}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(teardown_cancels_a_task_still_running)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct counter endless = {0}, bounded = {0};
        dagger_stream_t *s;
        ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.occupancy = 0;
        dagger_task_t *A = dagger_spawn_opts(ctx, &o, count_src, (void *)&endless);
        set_stream(s, 5, true);
        dagger_task_t *B = dagger_spawn(ctx, count_src, (void *)&bounded);
        ASSERT_OK(dagger_stream_end(s));
        ASSERT_OK(dagger_fetch(B, NULL));
        ASSERT_EQ(atomic_load(&bounded.n), 5);
        ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_ECANCELED);
        ASSERT_STR_HAS(dagger_task_errmsg(A), "torn down");
        release_all((dagger_task_t *[]){A, B}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(producer_without_consumer_keeps_running_without_teardown)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct counter made = {0}, taken = {0};
        dagger_stream_t *s;
        ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
        set_stream(s, -1, false);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.occupancy = 0;
        dagger_task_t *x = dagger_spawn_opts(ctx, &o, count_src, (void *)&made);
        set_stream(s, 4, false);
        dagger_task_t *A = dagger_spawn(ctx, count_sink, (void *)&taken, x);
        ASSERT_OK(dagger_stream_end(s));
        ASSERT_OK(dagger_fetch(A, NULL)); /* the consumer's own end */
        ASSERT_EQ(atomic_load(&taken.n), 4);
        WAIT_UNTIL(atomic_load(&made.n) > 100); /* the producer goes on with no consumer */
        ASSERT_FALSE(dagger_task_done(x));
        ASSERT_OK(dagger_cancel(x));
        ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ECANCELED);
        release_all((dagger_task_t *[]){x, A}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- 4. task queries */

TEST(task_started_follows_the_task)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
        dagger_task_t *a = dagger_spawn(ctx, ret_i64, 1);
        dagger_task_t *b = dagger_spawn(ctx, add1, a);
        ASSERT_FALSE(dagger_task_started(a));
        ASSERT_FALSE(dagger_task_started(b));
        ASSERT_OK(dagger_queue_end(ctx));
        ASSERT_OK(dagger_wait(b));
        ASSERT_TRUE(dagger_task_started(a));
        ASSERT_TRUE(dagger_task_started(b));
        ASSERT_FALSE(dagger_task_started(NULL));
        release_all((dagger_task_t *[]){a, b}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(root_error_names_the_origin)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        dagger_task_t *a = dagger_spawn(ctx, fail_boom);
        dagger_task_t *b = dagger_spawn(ctx, add1, a);
        dagger_task_t *c = dagger_spawn(ctx, add1, b);
        dagger_task_t *ok = dagger_spawn(ctx, ret_i64, 3);
        ASSERT_ERR(dagger_fetch(c, NULL), DAGGER_EUPSTREAM);
        int code = 1;
        uint64_t root = 1;
        ASSERT_OK(dagger_task_root_error(c, &code, &root));
        ASSERT_EQ(code, DAGGER_ETASK);
        ASSERT_EQ(root, dagger_task_id(a));
        ASSERT_OK(dagger_task_root_error(a, &code, &root));
        ASSERT_EQ(code, DAGGER_ETASK);
        ASSERT_EQ(root, dagger_task_id(a));
        ASSERT_OK(dagger_wait(ok));
        ASSERT_OK(dagger_task_root_error(ok, &code, &root));
        ASSERT_EQ(code, 0);
        ASSERT_EQ(root, 0);
        ASSERT_ERR(dagger_task_root_error(NULL, &code, &root), DAGGER_EINVAL);
        ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK));
        dagger_task_t *held = dagger_spawn(ctx, ret_i64, 1);
        ASSERT_ERR(dagger_task_root_error(held, &code, &root), DAGGER_ESTATE);
        ASSERT_STR_HAS(dagger_last_errmsg(), "has not finished");
        ASSERT_OK(dagger_queue_end(ctx));
        release_all((dagger_task_t *[]){a, b, c, ok, held}, 5);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(fetch_all_and_wait_all_from_outside)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        dagger_task_t *t[4];
        t[0] = dagger_spawn(ctx, ret_i64, 10);
        t[1] = dagger_spawn(ctx, add1, t[0]);
        t[2] = dagger_spawn(ctx, ret_i64, 30);
        t[3] = dagger_spawn(ctx, add1, t[2]);
        ASSERT_OK(dagger_wait_all(t, 4));
        dagger_value_t v[4];
        ASSERT_OK(dagger_fetch_all(t, 4, v));
        ASSERT_EQ(v[0].u.i, 10);
        ASSERT_EQ(v[1].u.i, 11);
        ASSERT_EQ(v[2].u.i, 30);
        ASSERT_EQ(v[3].u.i, 31);
        dagger_task_t *f = dagger_spawn(ctx, fail_boom);
        dagger_task_t *u[3] = {t[0], f, t[3]};
        ASSERT_ERR(dagger_fetch_all(u, 3, v), DAGGER_ETASK);
        ASSERT_STR_HAS(dagger_last_errmsg(), "boom");
        ASSERT_EQ(v[0].u.i, 10);
        ASSERT_EQ(v[1].kind, DAGGER_KIND_NIL);
        ASSERT_EQ(v[2].u.i, 31);
        ASSERT_ERR(dagger_wait_all(NULL, 2), DAGGER_EINVAL);
        ASSERT_ERR(dagger_wait_any(u, 0, &(size_t){0}), DAGGER_EINVAL);
        release_all(t, 4);
        dagger_task_release(f);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* Runs beside the workers until *flag is set. */
static int gate_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    _Atomic int *flag = dagger_arg_ptr(a, 0);
    for (int w = 0; w < 100000 && !atomic_load(flag); w++)
        usleep(100);
    if (!atomic_load(flag))
        return dagger_fail(tc, DAGGER_ETIMEDOUT, "the gate never opened");
    *out = dagger_i64(99);
    return 0;
}

static dagger_task_t *spawn_gate(dagger_ctx_t *ctx, _Atomic int *flag)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.occupancy = 0;
    return dagger_spawn_opts(ctx, &o, gate_fn, (void *)flag);
}

/* Inside a task (one worker in the 1-thread case): children must run while it waits. */
static int multi_waiter(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    _Atomic int flag = 0;
    dagger_task_t *gate = spawn_gate(ctx, &flag);
    dagger_task_t *kids[8];
    for (int i = 0; i < 8; i++)
        kids[i] = dagger_spawn(ctx, ret_i64, i);
    dagger_task_t *pair[2] = {gate, kids[7]};
    size_t idx = 9;
    int rc = dagger_wait_any(pair, 2, &idx);
    int64_t sum = 0;
    dagger_value_t v[8];
    if (!rc)
        rc = dagger_fetch_all(kids, 8, v);
    for (int i = 0; !rc && i < 8; i++)
        sum += v[i].u.i;
    atomic_store(&flag, 1);
    size_t idx2 = 9;
    if (!rc)
        rc = dagger_wait_any(&gate, 1, &idx2);
    if (!rc)
        rc = dagger_wait_all(&gate, 1);
    release_all(kids, 8);
    dagger_task_release(gate);
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    *out = dagger_i64((int64_t)idx * 1000 + (int64_t)idx2 * 100 + sum);
    return 0;
}

TEST(wait_any_and_fetch_all_inside_a_task_never_block_the_worker)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        dagger_task_t *t = dagger_spawn(ctx, multi_waiter);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, 1000 + 0 + 28);
        dagger_task_release(t);
        /* From outside: the finished one's index; the lowest among finished ones. */
        _Atomic int flag = 0;
        dagger_task_t *g = spawn_gate(ctx, &flag);
        dagger_task_t *q = dagger_spawn(ctx, ret_i64, 1);
        ASSERT_OK(dagger_wait(q));
        size_t idx = 9;
        ASSERT_OK(dagger_wait_any((dagger_task_t *[]){g, q}, 2, &idx));
        ASSERT_EQ(idx, 1);
        atomic_store(&flag, 1);
        ASSERT_OK(dagger_wait(g));
        ASSERT_OK(dagger_wait_any((dagger_task_t *[]){g, q}, 2, &idx));
        ASSERT_EQ(idx, 0);
        release_all((dagger_task_t *[]){g, q}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- 5. scopes */

static int where_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

TEST(null_scope_fails_and_unset_scope_is_any)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, ret_i64, 1); /* never set: any */
        ASSERT_OK(dagger_fetch(t, NULL));
        dagger_task_release(t);
        o.scope = dagger_scope_union(NULL, dagger_scope_any()); /* a failed constructor */
        ASSERT_NULL(o.scope);
        t = dagger_spawn_opts(ctx, &o, ret_i64, 1);
        ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_EINVAL);
        ASSERT_STR_HAS(dagger_task_errmsg(t), "opts.scope is NULL");
        ASSERT_STR_HAS(dagger_task_errmsg(t), "dagger_scope_any()");
        dagger_task_release(t);
        o.scope = dagger_scope_any();
        t = dagger_spawn_opts(ctx, &o, ret_i64, 1);
        ASSERT_OK(dagger_fetch(t, NULL));
        dagger_task_release(t);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(scope_equal_subset_and_processors)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        dagger_scope_t *t0 = dagger_scope_thread(0), *t1 = dagger_scope_thread(1);
        dagger_scope_t *t2 = dagger_scope_thread(2), *w0 = dagger_scope_worker(0);
        dagger_scope_t *any = dagger_scope_any();
        dagger_scope_t *u01 = dagger_scope_union(t0, t1), *u10 = dagger_scope_union(t1, t0);
        const dagger_scope_t *three[] = {t0, t1, t2};
        dagger_scope_t *u012 = dagger_scope_union_n(three, 3);
        dagger_scope_t *w0t2 = dagger_scope_worker_thread(0, 2);
        dagger_scope_t *i_w0_t2 = dagger_scope_intersect(w0, t2);
        const dagger_scope_t *mix[] = {u012, w0, t2};
        dagger_scope_t *i3 = dagger_scope_intersect_n(mix, 3);
        ASSERT_TRUE(dagger_scope_equal(u01, u10));
        ASSERT_TRUE(dagger_scope_equal(w0t2, i_w0_t2));
        ASSERT_TRUE(dagger_scope_equal(i3, w0t2));
        ASSERT_FALSE(dagger_scope_equal(w0, any)); /* other ranks */
        ASSERT_FALSE(dagger_scope_equal(u01, u012));
        ASSERT_TRUE(dagger_scope_subset(u01, u012));
        ASSERT_FALSE(dagger_scope_subset(u012, u01));
        ASSERT_TRUE(dagger_scope_subset(w0t2, t2));
        ASSERT_TRUE(dagger_scope_subset(t2, any));
        ASSERT_FALSE(dagger_scope_subset(any, w0));
        ASSERT_FALSE(dagger_scope_equal(NULL, any));
        ASSERT_NULL(dagger_scope_union_n(three, 0));
        int n = (int)th;
        ASSERT_EQ(dagger_scope_num_processors(any, ctx), n);
        ASSERT_EQ(dagger_scope_num_processors(w0, ctx), n);
        ASSERT_EQ(dagger_scope_num_processors(u012, ctx), n < 3 ? n : 3);
        ASSERT_EQ(dagger_scope_num_processors(t1, ctx), n > 1 ? 1 : 0);
        ASSERT_ERR(dagger_scope_num_processors(NULL, ctx), DAGGER_EINVAL);
        dagger_proc_t procs[8];
        ASSERT_EQ(dagger_scope_list(u012, ctx, procs, 8), n < 3 ? n : 3);
        for (int i = 0; i < (n < 3 ? n : 3); i++) {
            ASSERT_EQ(procs[i].rank, 0);
            ASSERT_EQ(procs[i].kind, DAGGER_PROC_CPU);
            ASSERT_EQ(procs[i].index, i);
        }
        /* A task in a listed scope runs on a listed processor. */
        if (n > 1) {
            dagger_task_opts_t o;
            dagger_task_opts_init(&o);
            o.scope = t1;
            dagger_task_t *t = dagger_spawn_opts(ctx, &o, where_fn);
            int64_t v;
            ASSERT_OK(dagger_fetch_i64(t, &v));
            ASSERT_EQ(v, 1);
            dagger_task_release(t);
        }
        dagger_scope_t *all[] = {t0, t1, t2, w0, any, u01, u10, u012, w0t2, i_w0_t2, i3};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            dagger_scope_release(all[i]);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(scope_from_string_parses_and_rejects)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        dagger_scope_t *s, *want = dagger_scope_worker_thread(0, 2);
        ASSERT_OK(dagger_scope_from_string("worker=0,thread=2", &s));
        ASSERT_TRUE(dagger_scope_equal(s, want));
        char form[64];
        dagger_scope_format(s, form, sizeof form);
        ASSERT_STR_EQ(form, "worker(0).thread(2)");
        dagger_scope_release(s);
        ASSERT_OK(dagger_scope_from_string("threads=[0,2]", &s));
        dagger_scope_t *t0 = dagger_scope_thread(0), *t2 = dagger_scope_thread(2);
        dagger_scope_t *u = dagger_scope_union(t0, t2);
        ASSERT_TRUE(dagger_scope_equal(s, u));
        dagger_scope_release(s);
        ASSERT_OK(dagger_scope_from_string("workers=[0],threads=[2]", &s));
        ASSERT_TRUE(dagger_scope_equal(s, want));
        dagger_scope_release(s);
        ASSERT_OK(dagger_scope_from_string("worker=0", &s));
        ASSERT_EQ(dagger_scope_num_processors(s, ctx), (int)th);
        dagger_scope_release(s);
        ASSERT_OK(dagger_scope_from_string("any", &s));
        ASSERT_TRUE(dagger_scope_equal(s, dagger_scope_any()));
        dagger_scope_release(s);
        static const struct {
            const char *spec, *msg;
        } bad[] = {
            {"cpu=1", "unknown key 'cpu'"},
            {"gpu=1", "'1' is not a GPU kind"},
            {"thread=1,threads=[2]", "keys 'thread' and 'threads' conflict"},
            {"worker=0,workers=[1]", "keys 'worker' and 'workers' conflict"},
            {"thread=1,thread=2", "key 'thread' given twice"},
            {"thread=x", "'x' is not a number"},
            {"threads=[1,2", "'[' without ']'"},
            {"thread=1,", "a trailing comma"},
            {"thread", "is not key=value"},
            {"", "the string is empty"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            s = (dagger_scope_t *)1;
            ASSERT_ERR(dagger_scope_from_string(bad[i].spec, &s), DAGGER_EINVAL);
            ASSERT_NULL(s);
            ASSERT_STR_HAS(dagger_last_errmsg(), bad[i].msg);
        }
        dagger_scope_release(want);
        dagger_scope_release(t0);
        dagger_scope_release(t2);
        dagger_scope_release(u);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- 6. user data */

struct closure {
    int64_t (*op)(int64_t, int64_t); /* a function pointer, never through void * */
    int64_t k;
};

static int64_t mul(int64_t a, int64_t b) { return a * b; }

static int apply_closure(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const struct closure *c = dagger_tc_userdata(tc);
    if (!c)
        return dagger_fail(tc, DAGGER_EINVAL, "no user data");
    *out = dagger_i64(c->op(dagger_arg_i64(a, 0), c->k));
    return 0;
}

static int has_userdata(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    *out = dagger_bool(dagger_tc_userdata(tc) != NULL);
    return 0;
}

TEST(closures_read_their_user_data)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct closure c = {mul, 7};
        dagger_value_t argv[] = {dagger_i64(6)};
        dagger_task_t *t = dagger_spawn_fn(ctx, apply_closure, &c, argv, 1);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, 42);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.userdata = &c;
        dagger_task_t *u = dagger_spawn_opts(ctx, &o, apply_closure, t); /* 42 * 7 */
        ASSERT_OK(dagger_fetch_i64(u, &v));
        ASSERT_EQ(v, 294);
        dagger_task_t *n = dagger_spawn(ctx, has_userdata);
        bool b = true;
        ASSERT_OK(dagger_fetch_bool(n, &b));
        ASSERT_FALSE(b);
        release_all((dagger_task_t *[]){t, u, n}, 3);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- 7. checkpoint and restore */

struct ckpt {
    char dir[64];
    _Atomic int bodies;
    _Atomic int restored;
    _Atomic int saved;
};

static void ckpt_path(dagger_tc_t *tc, char *buf, size_t cap)
{
    const struct ckpt *c = dagger_tc_userdata(tc);
    snprintf(buf, cap, "%s/%s", c->dir, dagger_tc_name(tc));
}

static int save_hook(dagger_tc_t *tc, const dagger_args_t *a, const dagger_value_t *res)
{
    (void)a;
    struct ckpt *c = dagger_tc_userdata(tc);
    char path[128];
    ckpt_path(tc, path, sizeof path);
    FILE *f = fopen(path, "w");
    if (!f)
        return dagger_fail(tc, DAGGER_EIO, "cannot write %s", path);
    fprintf(f, "%lld\n", (long long)res->u.i);
    fclose(f);
    atomic_fetch_add(&c->saved, 1);
    return 0;
}

static int load_hook(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    struct ckpt *c = dagger_tc_userdata(tc);
    char path[128];
    ckpt_path(tc, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* nothing saved: run the body */
    long long v = 0;
    int ok = fscanf(f, "%lld", &v) == 1;
    fclose(f);
    if (!ok)
        return dagger_fail(tc, DAGGER_EIO, "%s is not a number", path);
    *out = dagger_i64(v);
    atomic_fetch_add(&c->restored, 1);
    return 1;
}

static int leaf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct ckpt *c = dagger_tc_userdata(tc);
    atomic_fetch_add(&c->bodies, 1);
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

static int combine(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct ckpt *c = dagger_tc_userdata(tc);
    atomic_fetch_add(&c->bodies, 1);
    *out = dagger_i64(dagger_arg_i64(a, 0) * 10 + dagger_arg_i64(a, 1));
    return 0;
}

/* a=3, b=4, c=a*10+b, d=c*10+a, e=d*10+b: five tasks, each named for its checkpoint file. */
static int64_t run_dag(dagger_ctx_t *ctx, struct ckpt *c, bool restore, int64_t out[5])
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.userdata = c;
    o.checkpoint = save_hook;
    o.restore = restore ? load_hook : NULL;
    dagger_task_t *t[5];
    o.name = "a";
    t[0] = dagger_spawn_opts(ctx, &o, leaf, 3);
    o.name = "b";
    t[1] = dagger_spawn_opts(ctx, &o, leaf, 4);
    o.name = "c";
    t[2] = dagger_spawn_opts(ctx, &o, combine, t[0], t[1]);
    o.name = "d";
    t[3] = dagger_spawn_opts(ctx, &o, combine, t[2], t[0]);
    o.name = "e";
    t[4] = dagger_spawn_opts(ctx, &o, combine, t[3], t[1]);
    for (int i = 0; i < 5; i++)
        ASSERT_OK(dagger_fetch_i64(t[i], &out[i]));
    release_all(t, 5);
    return out[4];
}

static void make_dir(struct ckpt *c)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/dagger-ckpt-XXXXXX");
    ASSERT_PTR(mkdtemp(c->dir));
}

static void remove_dir(struct ckpt *c)
{
    const char *names[] = {"a", "b", "c", "d", "e"};
    char path[128];
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", c->dir, names[i]);
        unlink(path);
    }
    rmdir(c->dir);
}

TEST(checkpointed_dag_restores_without_running_a_body)
{
    FOR_THREADS(th)
    {
        dagger_ctx_t *ctx = test_ctx((int)th);
        struct ckpt c = {"", 0, 0, 0};
        make_dir(&c);
        int64_t first[5], second[5];
        ASSERT_EQ(run_dag(ctx, &c, false, first), 3434);
        ASSERT_EQ(atomic_load(&c.bodies), 5);
        ASSERT_EQ(atomic_load(&c.saved), 5);
        ASSERT_OK(dagger_ctx_close(ctx));
        /* A fresh context: only the files carry the results over. */
        ctx = test_ctx((int)th);
        atomic_store(&c.bodies, 0);
        run_dag(ctx, &c, true, second);
        ASSERT_EQ(atomic_load(&c.bodies), 0);
        ASSERT_EQ(atomic_load(&c.restored), 5);
        for (int i = 0; i < 5; i++)
            ASSERT_EQ(second[i], first[i]);
        ASSERT_OK(dagger_ctx_close(ctx));
        remove_dir(&c);
    }
}

static int bad_restore(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    (void)out;
    return dagger_fail(tc, DAGGER_EIO, "restore storage offline");
}

static int bad_checkpoint(dagger_tc_t *tc, const dagger_args_t *a, const dagger_value_t *res)
{
    (void)tc;
    (void)a;
    (void)res;
    return DAGGER_EIO;
}

TEST(failing_hooks_are_reported_and_ignored)
{
    FOR_THREADS(th)
    {
        /* Capture stderr in a file to check the report. */
        char log[] = "/tmp/dagger-hooklog-XXXXXX";
        int fd = mkstemp(log);
        ASSERT_TRUE(fd >= 0);
        fflush(stderr);
        int saved = dup(2);
        dup2(fd, 2);
        dagger_ctx_t *ctx = test_ctx((int)th);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = "hooked";
        o.restore = bad_restore;
        o.checkpoint = bad_checkpoint;
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, add1, 1);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, 2); /* as if the hooks were absent */
        ASSERT_STR_EQ(dagger_task_errmsg(t), "");
        char want[128];
        snprintf(want, sizeof want, "task %llu 'hooked': the restore hook failed",
                 (unsigned long long)dagger_task_id(t));
        dagger_task_release(t);
        ASSERT_OK(dagger_ctx_close(ctx));
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        char buf[2048] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        unlink(log);
        ASSERT_TRUE(n > 0);
        ASSERT_STR_HAS(buf, want);
        ASSERT_STR_HAS(buf, "restore storage offline");
        ASSERT_STR_HAS(buf, "the checkpoint hook failed (DAGGER_EIO)");
    }
}

TEST_LIST(child_taking_its_parent_as_input_is_refused, waiting_for_a_downstream_task_is_refused,
          waiting_for_an_unrelated_task_is_not_refused, bulk_inside_sequential_launches_together,
          two_bulk_groups_in_sequence_run_group_after_group,
          sequential_inside_bulk_waits_then_runs_in_order,
          bounded_stream_task_completes_beside_an_endless_one,
          teardown_cancels_a_task_still_running,
          producer_without_consumer_keeps_running_without_teardown, task_started_follows_the_task,
          root_error_names_the_origin, fetch_all_and_wait_all_from_outside,
          wait_any_and_fetch_all_inside_a_task_never_block_the_worker,
          null_scope_fails_and_unset_scope_is_any, scope_equal_subset_and_processors,
          scope_from_string_parses_and_rejects, closures_read_their_user_data,
          checkpointed_dag_restores_without_running_a_body, failing_hooks_are_reported_and_ignored)
