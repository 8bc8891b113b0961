/* tests/stress_core.c - thousands of random DAGs, each checked against sequential evaluation.
 *
 * Nodes compute a hash of their index and their inputs; some fail on purpose, some spawn and
 * fetch a nested child, some are cancelled before they can start; the expected value or error
 * code of every node comes from a plain loop over the DAG. Replay with DAGGER_TEST_SEED.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#include "core/core.h"     /* dagger__task_bundle_counts, dagger__task_bundle_eager */
#include "core/core_int.h" /* dagger__tiny_ns */
#include "dagger/chunk.h"

#define MAXN 256
#define MAXK 4
#define P 2305843009213693951ull /* 2^61 - 1 */

struct node {
    int k, dep[MAXK];
    int fails, nested, priority, pinned;
};

static uint64_t mix(uint64_t h, uint64_t v) { return ((h ^ v) * 0x100000001b3ull) % P; }

static int body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t index = dagger_arg_i64(a, 0);
    int64_t flags = dagger_arg_i64(a, 1);
    uint64_t h = mix(1469598103934665603ull % P, (uint64_t)index);
    for (size_t i = 2; i < dagger_args_count(a); i++)
        h = mix(h, (uint64_t)dagger_arg_i64(a, i));
    if (flags & 1)
        return dagger_fail(tc, DAGGER_ETASK, "node %lld fails on purpose", (long long)index);
    if (flags & 2) {
        dagger_task_t *c = dagger_spawn(dagger_tc_ctx(tc), body, index + 100000, 0);
        int64_t v = 0;
        int rc = dagger_fetch_i64(c, &v);
        dagger_task_release(c);
        if (rc)
            return rc;
        h = mix(h, (uint64_t)v);
    }
    *out = dagger_i64((int64_t)h);
    return 0;
}

static uint64_t expect_leaf(int64_t index)
{
    return mix(1469598103934665603ull % P, (uint64_t)index);
}

/* `plain`: every spawn without options, in a sync group (main's own, from one call site: small
 * groups whose tiny spawns run at once, src/core/task.c). */
static void one_dag(dagger_ctx_t *ctx, uint64_t *seed, int nthreads, bool plain)
{
    int n = (int)(test_rand(seed) % (MAXN - 1)) + 2;
    struct node nodes[MAXN];
    dagger_task_t *tasks[MAXN];
    int64_t want[MAXN];
    int want_rc[MAXN];
    int extra[MAXN]; /* handles held beyond tasks[i]'s, released along the way */
    dagger_scope_t *scopes[4];
    for (int t = 0; t < nthreads; t++)
        scopes[t] = dagger_scope_thread(t);
    int use_group = plain || test_rand(seed) % 4 == 0;
    if (use_group)
        ASSERT_OK(dagger_sync_begin(ctx));
    int first_err_possible = 0;
    for (int i = 0; i < n; i++) {
        struct node *nd = &nodes[i];
        nd->k = i ? (int)(test_rand(seed) % (MAXK + 1)) : 0;
        for (int j = 0; j < nd->k; j++)
            nd->dep[j] = (int)(test_rand(seed) % (uint64_t)i);
        nd->fails = test_rand(seed) % 50 == 0;
        nd->nested = test_rand(seed) % 10 == 0;
        nd->priority = test_rand(seed) % 16 == 0 ? (int)(test_rand(seed) % 5) - 2 : 0;
        nd->pinned = test_rand(seed) % 16 == 0 ? (int)(test_rand(seed) % (uint64_t)nthreads) : -1;
        if (plain)
            nd->priority = 0, nd->pinned = -1;
        dagger_value_t argv[2 + MAXK];
        argv[0] = dagger_i64(i);
        argv[1] = dagger_i64(nd->fails | (nd->nested << 1));
        for (int j = 0; j < nd->k; j++)
            argv[2 + j] = dagger_taskv(tasks[nd->dep[j]]);
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.priority = nd->priority;
        o.scope = nd->pinned >= 0 ? scopes[nd->pinned] : dagger_scope_any();
        tasks[i] = dagger_spawn_impl(ctx, plain ? NULL : &o, body, "body", argv, 2 + (size_t)nd->k);
        ASSERT_PTR(tasks[i]);
        /* Extra handles, one of an earlier node released at each spawn: before, while or after
         * that node ends (marks on its waiter word, or releases after an abandoned close). */
        extra[i] = test_rand(seed) % 4 == 0 ? (int)(test_rand(seed) % 3) + 1 : 0;
        for (int e = 0; e < extra[i]; e++)
            ASSERT_TRUE(dagger_task_retain(tasks[i]) == tasks[i]);
        int old = (int)(test_rand(seed) % (uint64_t)(i + 1));
        if (extra[old]) {
            dagger_task_release(tasks[old]);
            extra[old]--;
        }
        /* sequential evaluation */
        int rc = 0;
        uint64_t h = expect_leaf(i);
        for (int j = 0; j < nd->k && !rc; j++) {
            if (want_rc[nd->dep[j]])
                rc = DAGGER_EUPSTREAM;
            else
                h = mix(h, (uint64_t)want[nd->dep[j]]);
        }
        if (!rc && nd->fails)
            rc = DAGGER_ETASK;
        if (!rc && nd->nested)
            h = mix(h, expect_leaf(i + 100000));
        want_rc[i] = rc;
        want[i] = (int64_t)h;
        first_err_possible |= rc != 0;
    }
    for (int i = 0; i < n; i += 2) /* half of the extra handles before the ends, half after */
        for (; extra[i]; extra[i]--)
            dagger_task_release(tasks[i]);
    if (use_group) {
        int rc = dagger_sync_end(ctx);
        if (first_err_possible)
            ASSERT_TRUE(rc == DAGGER_ETASK || rc == DAGGER_EUPSTREAM);
        else
            ASSERT_OK(rc);
    }
    for (int i = n - 1; i >= 0; i--) {
        int64_t v = 0;
        int rc = dagger_fetch_i64(tasks[i], &v);
        if (rc != want_rc[i])
            fail_msg("node %d of %d: rc %s, expected %s (%s)", i, n, dagger_err_name(rc),
                     dagger_err_name(want_rc[i]), dagger_task_errmsg(tasks[i]));
        if (!rc && v != want[i])
            fail_msg("node %d of %d: value %lld, expected %lld", i, n, (long long)v,
                     (long long)want[i]);
        if (rc == DAGGER_EUPSTREAM && !strstr(dagger_task_errmsg(tasks[i]), "fails on purpose"))
            fail_msg("node %d: message lacks the root cause: %s", i, dagger_task_errmsg(tasks[i]));
    }
    for (int i = 0; i < n; i++) {
        for (; extra[i]; extra[i]--)
            dagger_task_release(tasks[i]);
        dagger_task_release(tasks[i]);
    }
    for (int t = 0; t < nthreads; t++)
        dagger_scope_release(scopes[t]);
}

static void run(int dags, bool plain)
{
    uint64_t seed = test_seed();
    for (int threads = 1; threads <= 4; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int d = 0; d < dags; d++)
            one_dag(ctx, &seed, threads, plain);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

TEST(random_dags_match_sequential_evaluation) { run(test_level_full() ? 2500 : 600, false); }

/* The same DAGs spawned plainly in groups from main, the body taken for tiny (its timed runs all
 * count as under the mark): most nodes run at their spawn, on main, their inputs done by then
 * (or are queued when an input is still running on a worker), with the same values, errors and
 * handles as a sequential evaluation. */
TEST(random_dags_of_tiny_tasks_run_at_their_spawn_match_sequential_evaluation)
{
    dagger__tiny_ns = 1000000000u;
    run(test_level_full() ? 2500 : 600, true);
    dagger__tiny_ns = 200;
}

/* Random fork-join trees: a task spawns 0..4 children (each a subtree), waits for them in a
 * random order (fetch or wait), some children are also passed to a sibling as an input, and
 * the value of a subtree is checked against the same recursion run sequentially. This drives
 * the inline running of children by waiting parents, suspension and stealing together. */
static uint64_t tree_expect(uint64_t seed, int depth)
{
    uint64_t s = seed;
    int kids = depth > 0 ? (int)(test_rand(&s) % 5) : 0;
    uint64_t h = mix(seed % P, (uint64_t)depth);
    for (int i = 0; i < kids; i++)
        h = mix(h, tree_expect(test_rand(&s), depth - 1));
    return h;
}

static int tree_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    uint64_t seed = (uint64_t)dagger_arg_i64(a, 0), s = seed;
    int depth = (int)dagger_arg_i64(a, 1);
    int kids = depth > 0 ? (int)(test_rand(&s) % 5) : 0;
    dagger_task_t *k[4];
    for (int i = 0; i < kids; i++)
        k[i] = dagger_spawn(dagger_tc_ctx(tc), tree_task, (int64_t)test_rand(&s), depth - 1);
    /* wait in a random order, then fetch in spawn order */
    uint64_t o = seed ^ 0x5555;
    for (int i = 0; i < kids; i++) {
        int j = (int)(test_rand(&o) % (uint64_t)kids);
        int rc = (test_rand(&o) & 1) ? dagger_wait(k[j]) : dagger_fetch(k[j], NULL);
        if (rc)
            return rc;
    }
    uint64_t h = mix(seed % P, (uint64_t)depth);
    int rc = 0;
    for (int i = 0; i < kids; i++) {
        int64_t v = 0;
        if (!rc)
            rc = dagger_fetch_i64(k[i], &v);
        h = mix(h, (uint64_t)v);
        dagger_task_release(k[i]);
    }
    *out = dagger_i64((int64_t)h);
    return rc;
}

TEST(random_fork_join_trees_match_sequential_evaluation)
{
    uint64_t seed = test_seed();
    int trees = test_level_full() ? 400 : 80;
    for (int threads = 1; threads <= 4; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int i = 0; i < trees; i++) {
            int64_t root = (int64_t)test_rand(&seed);
            int depth = 5 + (int)(test_rand(&seed) % 6);
            dagger_task_t *t = dagger_spawn(ctx, tree_task, root, depth);
            int64_t v = 0;
            ASSERT_OK(dagger_fetch_i64(t, &v));
            if ((uint64_t)v != tree_expect((uint64_t)root, depth))
                fail_msg("tree %d (depth %d, %d threads): wrong value", i, depth, threads);
            dagger_task_release(t);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* Random DAGs whose values are chunks: each node reads its inputs (chunks made by other nodes,
 * a chunk made by the test, or a mutable chunk pinned to a thread) through dagger_arg_buf and
 * returns its hash as a chunk, either kept by the runtime from a blob (DAGGER_TASK_CHUNK_RESULT)
 * or made in the body and given (dagger_chunk_give). Checked against sequential evaluation. */
static int data_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t index = dagger_arg_i64(a, 0);
    int64_t flags = dagger_arg_i64(a, 1);
    uint64_t h = mix(1469598103934665603ull % P, (uint64_t)index);
    for (size_t i = 2; i < dagger_args_count(a); i++) {
        size_t len = 0;
        const uint64_t *x = dagger_arg_buf(a, i, &len);
        if (!x || len != 8)
            return dagger_fail(tc, DAGGER_ETYPE, "input %zu: %zu bytes", i, len);
        h = mix(h, *x);
    }
    if (flags & 1)
        return dagger_fail(tc, DAGGER_ETASK, "node %lld fails on purpose", (long long)index);
    if (flags & 4) {
        dagger_chunk_t *c;
        int rc = dagger_chunk_create(dagger_tc_ctx(tc), 8, &c);
        if (rc)
            return rc;
        memcpy(dagger_chunk_data(c), &h, 8);
        *out = dagger_chunk_give(tc, c);
        return 0;
    }
    *out = dagger_blob_copy(tc, &h, 8);
    return 0;
}

static int const_chunk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    uint64_t v = (uint64_t)dagger_arg_i64(a, 0);
    *out = dagger_blob_copy(tc, &v, 8);
    return 0;
}

static void one_data_dag(dagger_ctx_t *ctx, uint64_t *seed, int nthreads, dagger_chunk_t *plain,
                         dagger_chunk_t *pinned, uint64_t pinned_v)
{
    enum { N = 64 };
    int n = (int)(test_rand(seed) % (N - 1)) + 2;
    dagger_task_t *tasks[N];
    uint64_t want[N];
    int want_rc[N];
    for (int i = 0; i < n; i++) {
        int k = i ? (int)(test_rand(seed) % (MAXK + 1)) : 0;
        int fails = test_rand(seed) % 40 == 0;
        int give = (int)(test_rand(seed) & 1);
        dagger_value_t argv[2 + MAXK];
        argv[0] = dagger_i64(i);
        argv[1] = dagger_i64(fails | (give << 2));
        uint64_t h = mix(1469598103934665603ull % P, (uint64_t)i);
        int rc = 0;
        for (int j = 0; j < k; j++) {
            int what = (int)(test_rand(seed) % 8);
            if (what == 0) {
                argv[2 + j] = dagger_chunkv(plain);
                h = mix(h, 7);
            } else if (what == 1) {
                argv[2 + j] = dagger_chunkv(pinned);
                h = mix(h, pinned_v);
            } else {
                int d = (int)(test_rand(seed) % (uint64_t)i);
                argv[2 + j] = dagger_taskv(tasks[d]);
                if (want_rc[d])
                    rc = DAGGER_EUPSTREAM;
                h = mix(h, want[d]);
            }
        }
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.flags = give ? 0 : DAGGER_TASK_CHUNK_RESULT;
        tasks[i] = dagger_spawn_impl(ctx, &o, data_body, "data", argv, 2 + (size_t)k);
        ASSERT_PTR(tasks[i]);
        if (!rc && fails)
            rc = DAGGER_ETASK;
        want_rc[i] = rc;
        want[i] = h;
    }
    for (int i = n - 1; i >= 0; i--) {
        dagger_chunk_t *c = NULL;
        int rc = dagger_fetch_chunk(tasks[i], &c);
        if (rc != want_rc[i])
            fail_msg("data node %d of %d (%d threads): rc %s, expected %s (%s)", i, n, nthreads,
                     dagger_err_name(rc), dagger_err_name(want_rc[i]),
                     dagger_task_errmsg(tasks[i]));
        if (!rc && memcmp(dagger_chunk_data(c), &want[i], 8) != 0)
            fail_msg("data node %d of %d: wrong bytes", i, n);
    }
    for (int i = 0; i < n; i++)
        dagger_task_release(tasks[i]);
}

TEST(random_chunk_dags_match_sequential_evaluation)
{
    uint64_t seed = test_seed();
    int dags = test_level_full() ? 1000 : 200;
    for (int threads = 1; threads <= 4; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        dagger_chunk_t *plain, *pinned;
        ASSERT_OK(dagger_chunk_create(ctx, 8, &plain));
        uint64_t seven = 7;
        memcpy(dagger_chunk_data(plain), &seven, 8);
        dagger_scope_t *last = dagger_scope_thread(threads - 1);
        dagger_value_t v = dagger_i64(12345);
        ASSERT_OK(dagger_mutable(ctx, last, const_chunk, &v, 1, &pinned));
        for (int d = 0; d < dags; d++)
            one_data_dag(ctx, &seed, threads, plain, pinned, 12345);
        dagger_chunk_release(plain);
        dagger_chunk_release(pinned);
        dagger_scope_release(last);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* Sync groups whose tasks finish while the owner publishes its count: each round opens a
 * group, spawns a random number of tasks (up to 200; one round in 8, 300 to 700, past the deep
 * mark of a user thread's deque), some beside the workers with occupancy 0.5, some that
 * open a group of their own inside, some that fail, and checks at the group's end that every
 * task ran exactly once and that the end reports a failure exactly when one was spawned. The
 * owners are three user threads at once, and a task on a worker (which suspends at the end).
 * One task of each inner group spawns a stray: a detached task in no group, which lands above
 * its siblings in the deque of whoever runs it (main's too: the stray goes to the workers' queue
 * there); every stray runs once by the end of the case. */
static _Atomic int64_t strays_spawned, strays_ran;

static int stray_leaf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&strays_ran, 1);
    return 0;
}

struct group_round {
    dagger_ctx_t *ctx;
    uint64_t seed;
    int rounds;
};

static int group_leaf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    _Atomic int64_t *ran = dagger_arg_ptr(a, 0);
    int64_t kind = dagger_arg_i64(a, 1), spin = dagger_arg_i64(a, 2);
    for (volatile int64_t i = 0; i < spin; i++)
        ;
    if (kind == 3) { /* a group of its own: its children are counted before it finishes */
        dagger_ctx_t *c = dagger_tc_ctx(tc);
        int rc = dagger_sync_begin(c);
        if (rc)
            return dagger_fail(tc, rc, "inner sync_begin: %s", dagger_last_errmsg());
        for (int i = 0; i < 8; i++) {
            if (i % 2) { /* detached and handle-released spawns side by side */
                rc = dagger_spawn_detached(c, group_leaf, (void *)ran, (int64_t)(i == 3 ? 4 : 0),
                                           spin);
                if (rc)
                    return dagger_fail(tc, rc, "detached spawn: %s", dagger_last_errmsg());
            } else if (i == 2) { /* with an option: queued even past the deep mark */
                dagger_task_opts_t o;
                dagger_task_opts_init(&o);
                o.name = "inner";
                dagger_task_release(
                    dagger_spawn_opts(c, &o, group_leaf, (void *)ran, (int64_t)0, spin));
            } else {
                dagger_task_release(dagger_spawn(c, group_leaf, (void *)ran, (int64_t)0, spin));
            }
        }
        rc = dagger_sync_end(c);
        if (rc)
            return dagger_fail(tc, rc, "inner sync_end: %s", dagger_last_errmsg());
    }
    if (kind == 4) { /* a stray: in no group (this task's frames have none) */
        int rc = dagger_spawn_detached(dagger_tc_ctx(tc), stray_leaf);
        if (rc)
            return dagger_fail(tc, rc, "stray spawn: %s", dagger_last_errmsg());
        atomic_fetch_add(&strays_spawned, 1);
    }
    atomic_fetch_add(ran, 1);
    if (kind == 2)
        return dagger_fail(tc, DAGGER_ETASK, "group leaf fails on purpose");
    return 0;
}

static void group_rounds(dagger_ctx_t *ctx, uint64_t *seed, int rounds)
{
    for (int r = 0; r < rounds; r++) {
        _Atomic int64_t ran = 0;
        /* One round in 8 passes the deep mark of a group's deque on a thread outside the pool
         * (256 with up to 4 workers): main's further plain spawns run at once there, and those
         * that open a group of their own end it by running its tasks (fetch.c). */
        int n =
            (int)(test_rand(seed) % 8 == 0 ? 300 + test_rand(seed) % 400 : test_rand(seed) % 200);
        int fails = 0;
        int64_t want = 0;
        ASSERT_OK(dagger_sync_begin(ctx));
        for (int i = 0; i < n; i++) {
            int64_t kind = (int64_t)(test_rand(seed) % 16);
            kind = kind < 3 ? 1 : kind == 3 ? 3 : kind == 4 && test_rand(seed) % 8 == 0 ? 2 : 0;
            int64_t spin = (int64_t)(test_rand(seed) % 4 == 0 ? test_rand(seed) % 2000 : 0);
            dagger_task_opts_t o;
            dagger_task_opts_init(&o);
            o.occupancy = kind == 1 ? 0.5 : 1.0;
            dagger_value_t argv[3] = {dagger_ptr((void *)&ran), dagger_i64(kind), dagger_i64(spin)};
            /* a third each: a handle released at once, detached with the options, detached
             * without options (the plain path, when the occupancy is the default) */
            uint64_t how = test_rand(seed) % 3;
            if (how == 0) {
                dagger_task_t *t = dagger_spawn_impl(ctx, &o, group_leaf, "group_leaf", argv, 3);
                ASSERT_PTR(t);
                dagger_task_release(t);
            } else {
                const dagger_task_opts_t *op = how == 1 || kind == 1 ? &o : NULL;
                ASSERT_OK(dagger_spawn_detached_impl(ctx, op, group_leaf, "group_leaf", argv, 3));
            }
            want += kind == 3 ? 9 : 1;
            fails |= kind == 2;
        }
        int rc = dagger_sync_end(ctx);
        int64_t got = atomic_load(&ran);
        if (got != want)
            fail_msg("round %d: the group ended with %lld of %lld tasks run", r, (long long)got,
                     (long long)want);
        if (fails ? rc != DAGGER_ETASK : rc != 0)
            fail_msg("round %d: sync_end returned %s (%s), %s expected", r, dagger_err_name(rc),
                     dagger_last_errmsg(), fails ? "DAGGER_ETASK" : "0");
        if (fails)
            ASSERT_STR_HAS(dagger_last_errmsg(), "group leaf fails on purpose");
    }
}

static void *group_owner_thread(void *arg)
{
    struct group_round *g = arg;
    group_rounds(g->ctx, &g->seed, g->rounds);
    return NULL;
}

static int group_owner_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct group_round *g = dagger_arg_ptr(a, 0);
    group_rounds(dagger_tc_ctx(tc), &g->seed, g->rounds);
    return 0;
}

TEST(sync_groups_count_every_task_once_with_concurrent_owners)
{
    uint64_t seed = test_seed();
    int rounds = test_level_full() ? 300 : 60;
    for (int threads = 1; threads <= 4; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        struct group_round g[4];
        pthread_t th[3];
        for (int i = 0; i < 4; i++)
            g[i] = (struct group_round){ctx, test_rand(&seed), rounds};
        for (int i = 0; i < 3; i++)
            ASSERT_TRUE(pthread_create(&th[i], NULL, group_owner_thread, &g[i]) == 0);
        dagger_task_t *t = dagger_spawn(ctx, group_owner_task, (void *)&g[3]);
        ASSERT_OK(dagger_wait(t));
        dagger_task_release(t);
        for (int i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i < 20000 && atomic_load(&strays_ran) != atomic_load(&strays_spawned); i++)
            usleep(500);
        ASSERT_EQ(atomic_load(&strays_ran), atomic_load(&strays_spawned));
        ASSERT_TRUE(atomic_load(&strays_spawned) > 0);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* Random wide fork-joins: a root spawns 1000 to 3500 children in a row, past the depth at
 * which a worker's deque runs a plain spawn's child at once on the spawner's stack (1024), so
 * the children run early, are stolen, or wait in the deque, at random. Some children are
 * spawned with options (never run early), some fetch an earlier sibling (a child run early
 * then suspends on its parent's stack), some spawn a few children of their own, some fail.
 * Each node's value, or its failure, is checked against the same recursion run sequentially. */
static int wide_kids(uint64_t *s, int depth)
{
    return depth == 2   ? 1000 + (int)(test_rand(s) % 2500)
           : depth == 1 ? (int)(test_rand(s) % 6)
                        : 0;
}

/* The draws of one child, in the order both sides make them. */
struct wide_kid {
    uint64_t seed;
    int64_t sib; /* an earlier sibling it fetches, or -1 */
    int opts, prio;
};

static struct wide_kid wide_draw(uint64_t *s, int i)
{
    struct wide_kid k;
    k.seed = test_rand(s);
    k.sib = i > 0 && test_rand(s) % 5 == 0 ? (int64_t)(test_rand(s) % (uint64_t)i) : -1;
    k.opts = test_rand(s) % 6 == 0;
    k.prio = k.opts ? (int)(test_rand(s) % 3) : 0;
    return k;
}

static int wide_expect(uint64_t seed, int depth, const uint64_t *sv, const int *sok, int64_t sib,
                       uint64_t *val)
{
    uint64_t s = seed;
    int fails = test_rand(&s) % 61 == 0;
    int kids = wide_kids(&s, depth);
    uint64_t h = mix(seed % P, (uint64_t)depth);
    if (sib >= 0)
        h = mix(h, sok[sib] ? sv[sib] : 2);
    uint64_t *cv = kids ? malloc((size_t)kids * sizeof *cv) : NULL;
    int *cok = kids ? malloc((size_t)kids * sizeof *cok) : NULL;
    for (int i = 0; i < kids; i++) {
        struct wide_kid k = wide_draw(&s, i);
        cok[i] = wide_expect(k.seed, depth - 1, cv, cok, k.sib, &cv[i]);
    }
    for (int i = 0; i < kids; i++)
        h = mix(h, cok[i] ? cv[i] : 3);
    free(cv);
    free(cok);
    *val = h;
    return !fails;
}

static int wide_task(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    uint64_t seed = (uint64_t)dagger_arg_i64(a, 0), s = seed;
    int depth = (int)dagger_arg_i64(a, 1);
    dagger_task_t **sibs = dagger_arg_ptr(a, 2);
    int64_t sib = dagger_arg_i64(a, 3);
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int fails = test_rand(&s) % 61 == 0;
    int kids = wide_kids(&s, depth);
    uint64_t h = mix(seed % P, (uint64_t)depth);
    if (sib >= 0) {
        int64_t v = 0;
        int rc = dagger_fetch_i64(sibs[sib], &v);
        h = mix(h, rc ? 2 : (uint64_t)v);
    }
    dagger_task_t **k = kids ? malloc((size_t)kids * sizeof *k) : NULL;
    if (kids && !k)
        return dagger_fail(tc, DAGGER_ENOMEM, "wide node: no memory for %d handles", kids);
    for (int i = 0; i < kids; i++) {
        struct wide_kid d = wide_draw(&s, i);
        if (d.opts) {
            dagger_task_opts_t o;
            dagger_task_opts_init(&o);
            o.priority = d.prio;
            k[i] =
                dagger_spawn_opts(c, &o, wide_task, (int64_t)d.seed, depth - 1, (void *)k, d.sib);
        } else {
            k[i] = dagger_spawn(c, wide_task, (int64_t)d.seed, depth - 1, (void *)k, d.sib);
        }
        if (!k[i])
            return dagger_fail(tc, DAGGER_ENOMEM, "wide node: spawn %d failed", i);
    }
    for (int i = 0; i < kids; i++) {
        int64_t v = 0;
        int rc = dagger_fetch_i64(k[i], &v);
        h = mix(h, rc ? 3 : (uint64_t)v);
    }
    for (int i = 0; i < kids; i++)
        dagger_task_release(k[i]);
    free(k);
    if (fails)
        return dagger_fail(tc, DAGGER_ETASK, "wide node fails on purpose");
    *out = dagger_i64((int64_t)h);
    return 0;
}

TEST(random_wide_fork_joins_match_sequential_evaluation)
{
    uint64_t seed = test_seed();
    int roots = test_level_full() ? 30 : 6;
    for (int threads = 1; threads <= 4; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int i = 0; i < roots; i++) {
            uint64_t root = test_rand(&seed), want = 0;
            int ok = wide_expect(root, 2, NULL, NULL, -1, &want);
            dagger_task_t *t =
                dagger_spawn(ctx, wide_task, (int64_t)root, 2, (void *)NULL, (int64_t)-1);
            int64_t v = 0;
            int rc = dagger_fetch_i64(t, &v);
            if (ok ? rc != 0 || (uint64_t)v != want : rc != DAGGER_ETASK)
                fail_msg("wide root %d (%d threads): rc %s, value %s", i, threads,
                         dagger_err_name(rc), ok && (uint64_t)v != want ? "wrong" : "-");
            dagger_task_release(t);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* Random flat loops on workers: each round, one root task a worker opens a sync group and spawns
 * 1100 to 3600 detached tasks in a row, past the deep mark of its deque (1024), so that their
 * spawns go into bundles (src/core/task.c, "Bundles") that idle workers replay. Along the loop,
 * at random: two functions in turn for a stretch (a spawn of another kind publishes the open
 * bundle), a string argument (the usual path), a fetch of a child (the spawner suspends), a
 * failing task, and a pause of 100 to 400 us with no call into the runtime, past the 50 us after
 * which an idle worker closes a bundle that stopped filling: the spawner then finds its open
 * bundle closed at its next spawn, which goes the usual way unless the thief counted it. Half
 * of the loops then wait for their tasks by spinning on their count (no call into the runtime)
 * before the group's end. Every index must run once, and the end must fail exactly when a task
 * failed, with that task's message. */
#define FLAT_MAX 3600

struct flat_marks {
    _Atomic int ran;
    _Atomic int32_t mark[FLAT_MAX];
};

/* Args (marks, i, fails) [, str]: index i marked; fails with "flat leaf <i> fails on purpose". */
static int flat_leaf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct flat_marks *mk = dagger_arg_ptr(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    atomic_fetch_add_explicit(&mk->mark[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mk->ran, 1, memory_order_release);
    if (dagger_arg_i64(a, 2))
        return dagger_fail(tc, DAGGER_ETASK, "flat leaf %lld fails on purpose", (long long)i);
    return 0;
}

/* The same body under another function (bundles are of one function). */
static int flat_leaf2(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return flat_leaf(tc, a, out);
}

static int flat_child(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Args (marks, seed, n): the loop; 0, or the group end's code (its message in the error). */
static int flat_root(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct flat_marks *mk = dagger_arg_ptr(a, 0);
    uint64_t s = (uint64_t)dagger_arg_i64(a, 1);
    int64_t n = dagger_arg_i64(a, 2);
    bool spin = test_rand(&s) & 1;
    dagger_ctx_t *c = dagger_tc_ctx(tc);
    int rc = dagger_sync_begin(c);
    if (rc)
        return rc;
    int alt = 0; /* spawns left of flat_leaf2 */
    for (int64_t i = 0; i < n && rc == 0; i++) {
        uint64_t r = test_rand(&s);
        int64_t fails = r % 397 == 0;
        if (r % 701 == 0)
            alt = 1 + (int)(test_rand(&s) % 20);
        if (r % 293 == 0) { /* a pause without a call into the runtime */
            uint64_t until = mono_ns() + 100000 + test_rand(&s) % 300000;
            while (mono_ns() < until)
                ;
        }
        if (r % 1009 == 0) {
            rc = dagger_spawn_detached(c, flat_leaf, (void *)mk, i, fails, "a string");
        } else if (r % 2003 == 0) { /* the spawner suspends mid-loop */
            dagger_task_t *t = dagger_spawn(c, flat_child, i);
            int64_t v = 0;
            rc = t ? dagger_fetch_i64(t, &v) : DAGGER_ENOMEM;
            dagger_task_release(t);
            if (rc == 0 && v != i + 1)
                return dagger_fail(tc, DAGGER_ETASK, "child of %lld: %lld", (long long)i,
                                   (long long)v);
            rc = dagger_spawn_detached(c, flat_leaf, (void *)mk, i, fails);
        } else if (alt > 0) {
            alt--;
            rc = dagger_spawn_detached(c, (i & 1) ? flat_leaf2 : flat_leaf, (void *)mk, i, fails);
        } else {
            rc = dagger_spawn_detached(c, flat_leaf, (void *)mk, i, fails);
        }
    }
    /* a wait with no call into the runtime: 20 s at most, then the case fails, not hangs */
    int ran = spin && rc == 0 ? test_wait_reach(&mk->ran, (int)n, 20) : (int)n;
    if (ran < n)
        return dagger_fail(tc, DAGGER_ETASK, "the spin saw %d of %lld tasks run", ran,
                           (long long)n);
    return test_body_sync_end(tc, rc, out);
}

/* The failures a root with `seed` and `n` spawns (the draws of flat_root, in its order). */
static int flat_fails(uint64_t s, int64_t n)
{
    int fails = 0;
    (void)test_rand(&s); /* spin */
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = test_rand(&s);
        fails += r % 397 == 0;
        if (r % 701 == 0)
            (void)test_rand(&s);
        if (r % 293 == 0)
            (void)test_rand(&s);
    }
    return fails;
}

TEST(random_flat_loops_on_workers_run_every_spawn_once)
{
    uint64_t seed = test_seed();
    int rounds = test_level_full() ? 60 : 16;
    uint64_t b0, s0, b1, s1;
    dagger__task_bundle_counts(&b0, &s0);
    struct flat_marks *mk = malloc(sizeof *mk);
    ASSERT_PTR(mk);
    for (int threads = 2; threads <= 4; threads++) {
        dagger_ctx_t *ctx = test_ctx(threads);
        for (int r = 0; r < rounds; r++) {
            memset(mk, 0, sizeof *mk);
            uint64_t rs = test_rand(&seed);
            int64_t n = 1100 + (int64_t)(test_rand(&seed) % (FLAT_MAX - 1100 + 1));
            dagger__task_bundle_eager(test_rand(&seed) & 1);
            /* on a worker: main would run a task it fetches itself (src/core/fetch.c) */
            dagger_task_t *t = TEST_SPAWN_ON_WORKER(ctx, (int)(rs % (uint64_t)threads), flat_root,
                                                    (void *)mk, (int64_t)rs, n);
            ASSERT_PTR(t);
            int64_t v = -1;
            int rc = dagger_fetch_i64(t, &v);
            int fails = flat_fails(rs, n);
            if (fails ? rc != DAGGER_ETASK : rc != 0)
                fail_msg("round %d (%d threads, %lld spawns): rc %s, %d failures spawned (%s)", r,
                         threads, (long long)n, dagger_err_name(rc), fails, dagger_task_errmsg(t));
            if (fails)
                ASSERT_STR_HAS(dagger_task_errmsg(t), "fails on purpose");
            dagger_task_release(t);
            int64_t wrong = 0;
            for (int64_t i = 0; i < n; i++)
                wrong += atomic_load(&mk->mark[i]) != 1;
            if (wrong || atomic_load(&mk->ran) != n)
                fail_msg("round %d (%d threads): %lld of %lld ran, %lld indices not once", r,
                         threads, (long long)atomic_load(&mk->ran), (long long)n, (long long)wrong);
        }
        ASSERT_OK(dagger_ctx_close(ctx));
    }
    dagger__task_bundle_eager(false);
    free(mk);
    dagger__task_bundle_counts(&b1, &s1);
    printf("  %llu bundles of %llu spawns\n", (unsigned long long)(b1 - b0),
           (unsigned long long)(s1 - s0));
    ASSERT_TRUE(b1 > b0);
}

TEST_LIST(random_dags_match_sequential_evaluation,
          random_dags_of_tiny_tasks_run_at_their_spawn_match_sequential_evaluation,
          random_fork_join_trees_match_sequential_evaluation,
          random_chunk_dags_match_sequential_evaluation,
          sync_groups_count_every_task_once_with_concurrent_owners,
          random_wide_fork_joins_match_sequential_evaluation,
          random_flat_loops_on_workers_run_every_spawn_once)
