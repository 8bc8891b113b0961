/* tests/test_mpi_direct.c - early sends: a task pinned to another rank whose inputs are made on
 * other ranks goes there at its spawn, and its inputs come straight from their producers' ranks.
 *
 * Design: run under tests/mpi_run.sh on 2 ranks (test_mpi_direct) and 4 (test_mpi_direct4),
 * driver mode: rank 0 spawns, the other ranks serve. Producer on rank 1, consumers on rank 2 and
 * 3 where there are 4 ranks (on rank 1 too with 2: the producer's rank is then the consumer's).
 * A producer waits (bounded) until the subscriptions it expects reached its rank, so its result
 * deterministically goes straight to the consumers; the backend's own counters
 * (dagger__mpi_direct_stats), read on each rank by a task there, prove the path: arguments that
 * came from their producer's rank, none forwarded by rank 0.
 * SPDX-License-Identifier: MIT
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dagger/chunk.h"
#include "harness.h"
#include "mpi_harness.h"
#include "net/mpi/mpi_int.h"

#define BIG_STR ((size_t)100 * 1024) /* over the 64 KiB inline limit: pulled */
#define N_WORDS ((size_t)1 << 17)    /* 1 MiB of i64: a chunk left where it was made */

/* Wait until `want` subscriptions reached this rank (20 s at most): consumers sent early are
 * then sure to get this task's result straight from here. */
static int wait_subs(dagger_tc_t *tc, int64_t want)
{
    struct dagger__mpi_direct d = {0};
    for (int i = 0; i < 20000; i++) {
        int rc = dagger__mpi_direct_stats(dagger_tc_ctx(tc), &d);
        if (rc)
            return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
        if ((int64_t)d.subs >= want)
            return 0;
        usleep(1000);
    }
    return dagger_fail(tc, DAGGER_ETIMEDOUT, "%llu of %lld subscriptions reached rank %d",
                       (unsigned long long)d.subs, (long long)want,
                       dagger_ctx_rank(dagger_tc_ctx(tc)));
}

/* value(want_subs, v) -> v, once `want_subs` subscriptions reached this rank. */
static int value(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = wait_subs(tc, dagger_arg_i64(a, 0));
    if (rc)
        return rc;
    *out = dagger_i64(dagger_arg_i64(a, 1));
    return 0;
}

/* plus(want_subs, x, k) -> x + k, once `want_subs` subscriptions reached this rank. */
static int plus(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = wait_subs(tc, dagger_arg_i64(a, 0));
    if (rc)
        return rc;
    *out = dagger_i64(dagger_arg_i64(a, 1) + dagger_arg_i64(a, 2));
    return 0;
}

static int times(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) * dagger_arg_i64(a, 1));
    return 0;
}

static int add2(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0) + dagger_arg_i64(a, 1));
    return 0;
}

/* The counters of the rank it runs on, as a blob. */
static int stats_here(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    struct dagger__mpi_direct d;
    int rc = dagger__mpi_direct_stats(dagger_tc_ctx(tc), &d);
    if (rc)
        return rc;
    *out = dagger_blob_copy(tc, &d, sizeof d);
    return 0;
}

static struct dagger__mpi_direct stats_on(dagger_ctx_t *ctx, int rank)
{
    struct dagger__mpi_direct d = {0};
    if (rank == 0) {
        ASSERT_OK(dagger__mpi_direct_stats(ctx, &d));
        return d;
    }
    dagger_task_t *t = spawn_on(ctx, rank, stats_here, "stats_here", NULL, 0);
    const void *p;
    size_t n;
    ASSERT_OK(dagger_fetch_blob(t, &p, &n));
    ASSERT_EQ(n, sizeof d);
    memcpy(&d, p, sizeof d);
    dagger_task_release(t);
    return d;
}

/* Consumers' ranks: 2 and 3 where there are 4 ranks, else the producer's rank 1. */
static int rank_or_1(dagger_ctx_t *ctx, int r) { return dagger_ctx_nranks(ctx) > r ? r : 1; }

/* P (rank 1) -> C (rank 2) -> D (rank 3): C and D are sent at their spawn, and each result goes
 * from its producer's rank to its consumer's rank; rank 0 forwards none. */
TEST(chain_goes_producer_to_consumer)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int cr = rank_or_1(ctx, 2), dr = rank_or_1(ctx, 3);
    /* each producer waits for the subscriptions its rank gets up to its consumer's */
    int64_t p_wait = 1, c_wait = cr == 1 ? 2 : 1;
    dagger_task_t *p =
        spawn_on(ctx, 1, value, "p", (dagger_value_t[]){dagger_i64(p_wait), dagger_i64(20)}, 2);
    dagger_task_t *c =
        spawn_on(ctx, cr, plus, "c",
                 (dagger_value_t[]){dagger_i64(c_wait), dagger_taskv(p), dagger_i64(1)}, 3);
    dagger_task_t *d =
        spawn_on(ctx, dr, times, "d", (dagger_value_t[]){dagger_taskv(c), dagger_i64(2)}, 2);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(d, &v));
    ASSERT_EQ(v, 42);
    ASSERT_OK(dagger_fetch_i64(c, &v));
    ASSERT_EQ(v, 21);
    ASSERT_OK(dagger_fetch_i64(p, &v));
    ASSERT_EQ(v, 20);
    struct dagger__mpi_direct s0 = stats_on(ctx, 0);
    ASSERT_EQ(s0.sent, 2); /* c and d */
    uint64_t direct = 0, forwarded = 0;
    for (int r = 1; r < dagger_ctx_nranks(ctx); r++) {
        struct dagger__mpi_direct s = stats_on(ctx, r);
        direct += s.direct;
        forwarded += s.forwarded;
    }
    ASSERT_EQ(direct, 2); /* p -> c, c -> d */
    ASSERT_EQ(forwarded, 0);
    dagger_task_release(d);
    dagger_task_release(c);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A diamond over the ranks: a (rank 1) feeds b and c, which feed d; the values are right
 * whichever way each input came (straight, or forwarded when a producer had ended). */
TEST(diamond_over_ranks)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int n = dagger_ctx_nranks(ctx);
    for (int64_t k = 0; k < 20; k++) {
        dagger_task_t *a =
            spawn_on(ctx, 1, value, "a", (dagger_value_t[]){dagger_i64(0), dagger_i64(k)}, 2);
        dagger_task_t *b =
            spawn_on(ctx, rank_or_1(ctx, 2), plus, "b",
                     (dagger_value_t[]){dagger_i64(0), dagger_taskv(a), dagger_i64(1)}, 3);
        dagger_task_t *c = spawn_on(ctx, rank_or_1(ctx, 3), times, "c",
                                    (dagger_value_t[]){dagger_taskv(a), dagger_i64(3)}, 2);
        dagger_task_t *d = spawn_on(ctx, (int)(k % (n - 1)) + 1, add2, "d",
                                    (dagger_value_t[]){dagger_taskv(b), dagger_taskv(c)}, 2);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(d, &v));
        ASSERT_EQ(v, (k + 1) + 3 * k);
        dagger_task_release(d);
        dagger_task_release(c);
        dagger_task_release(b);
        dagger_task_release(a);
    }
    /* b, c and d are each sent early when an input is still running at its spawn, which
     * depends on timing; which way each input then went (straight or forwarded) too */
    struct dagger__mpi_direct s0 = stats_on(ctx, 0), sum = {0};
    for (int r = 1; r < n; r++) {
        struct dagger__mpi_direct s = stats_on(ctx, r);
        sum.direct += s.direct;
        sum.forwarded += s.forwarded;
    }
    printf("early sends %llu, arguments straight %llu, forwarded %llu\n",
           (unsigned long long)s0.sent, (unsigned long long)sum.direct,
           (unsigned long long)sum.forwarded);
    ASSERT_TRUE(s0.sent >= 1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* make_str(want_subs, n, c) -> a string of n characters c */
static int make_str(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = wait_subs(tc, dagger_arg_i64(a, 0));
    if (rc)
        return rc;
    size_t n = (size_t)dagger_arg_i64(a, 1);
    char *s = malloc(n + 1);
    if (!s)
        return DAGGER_ENOMEM;
    memset(s, (int)dagger_arg_i64(a, 2), n);
    s[n] = 0;
    *out = dagger_str_copy(tc, s);
    free(s);
    return 0;
}

/* make_blob(want_subs) -> 5 bytes 1..5 */
static int make_blob(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = wait_subs(tc, dagger_arg_i64(a, 0));
    if (rc)
        return rc;
    static const unsigned char b[5] = {1, 2, 3, 4, 5};
    *out = dagger_blob_copy(tc, b, sizeof b);
    return 0;
}

static int64_t word(size_t i, int64_t seed) { return (int64_t)(i * 2654435761u) ^ seed; }

/* make_chunk(want_subs, seed) -> N_WORDS i64 */
static int make_chunk(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = wait_subs(tc, dagger_arg_i64(a, 0));
    if (rc)
        return rc;
    dagger_chunk_t *c;
    size_t n = N_WORDS;
    if (dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_I64, 1, &n, &c))
        return dagger_fail(tc, DAGGER_ENOMEM, "no chunk");
    int64_t *p = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        p[i] = word(i, dagger_arg_i64(a, 1));
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* check(str, blob, chunk, seed) -> length of str + sum of blob + 1000 if every word is right */
static int check(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    const char *s = dagger_arg_str(a, 0);
    size_t bl = 0;
    const unsigned char *b = dagger_arg_blob(a, 1, &bl);
    size_t n = 0;
    const int64_t *w = dagger_arg_array(a, 2, DAGGER_ELT_I64, &n);
    if (!s || !b || !w)
        return DAGGER_ETYPE;
    int64_t r = (int64_t)strlen(s);
    for (size_t i = 0; i < strlen(s); i++)
        if (s[i] != s[0])
            return dagger_fail(tc, DAGGER_EINVAL, "character %zu differs", i);
    for (size_t i = 0; i < bl; i++)
        r += b[i];
    bool ok = n == N_WORDS;
    for (size_t i = 0; ok && i < n; i++)
        ok = w[i] == word(i, dagger_arg_i64(a, 3));
    *out = dagger_i64(r + (ok ? 1000 : 0));
    return 0;
}

/* Results of every kind reach an early consumer straight from their producers: a short and a
 * long string (pulled from the producer), a blob, and a chunk left on its producer's rank. Rank 0
 * pulls only the long string (its own proxy's result), never the chunk. One job per round, so
 * that the producers count their subscriptions afresh. */
TEST(kinds_go_straight)
{
    for (int round = 0; round < 2; round++) {
        dagger_ctx_t *ctx = open_job(2);
        if (!ctx)
            continue; /* a server: it served this round's job */
        int cr = rank_or_1(ctx, 2);
        size_t len = round == 0 ? 10 : BIG_STR;
        uint64_t pulled0 = dagger__mpi_bytes_pulled(ctx);
        /* three producers on rank 1: each waits for its own subscription and those before */
        dagger_task_t *s = spawn_on(
            ctx, 1, make_str, "s",
            (dagger_value_t[]){dagger_i64(1), dagger_i64((int64_t)len), dagger_i64('x')}, 3);
        dagger_task_t *b = spawn_on(ctx, 1, make_blob, "b", (dagger_value_t[]){dagger_i64(2)}, 1);
        dagger_task_t *k =
            spawn_on(ctx, 1, make_chunk, "k", (dagger_value_t[]){dagger_i64(3), dagger_i64(7)}, 2);
        dagger_task_t *c = spawn_on(
            ctx, cr, check, "check",
            (dagger_value_t[]){dagger_taskv(s), dagger_taskv(b), dagger_taskv(k), dagger_i64(7)},
            4);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(c, &v));
        ASSERT_EQ(v, (int64_t)len + 15 + 1000);
        ASSERT_EQ(dagger__mpi_bytes_pulled(ctx) - pulled0, round == 0 ? 0 : BIG_STR + 1);
        struct dagger__mpi_direct sc = stats_on(ctx, cr);
        ASSERT_EQ(sc.direct, 3);
        ASSERT_EQ(sc.forwarded, 0);
        dagger_task_release(c);
        dagger_task_release(k);
        dagger_task_release(b);
        dagger_task_release(s);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

static int fails(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    int rc = wait_subs(tc, dagger_arg_i64(a, 0));
    if (rc)
        return rc;
    return dagger_fail(tc, DAGGER_EIO, "sensor %d is unplugged", 7);
}

/* The producer fails: its error goes straight to the early consumer's rank, which fails the
 * consumer without running it; rank 0's consumer and its dependent fail upstream, naming the
 * producer's rank and its message. */
TEST(producer_failure_reaches_consumer)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int cr = rank_or_1(ctx, 2), dr = rank_or_1(ctx, 3);
    /* With 2 ranks d's subscription to c lands on rank 1 too: p waits for it as well, so that c
     * cannot fail before d is subscribed to it (else d's input is forwarded by rank 0). */
    int64_t p_wait = cr == dr ? 2 : 1;
    dagger_task_t *p = spawn_on(ctx, 1, fails, "sensor", (dagger_value_t[]){dagger_i64(p_wait)}, 1);
    dagger_task_t *c =
        spawn_on(ctx, cr, times, "c", (dagger_value_t[]){dagger_taskv(p), dagger_i64(2)}, 2);
    dagger_task_t *d =
        spawn_on(ctx, dr, times, "d", (dagger_value_t[]){dagger_taskv(c), dagger_i64(2)}, 2);
    ASSERT_ERR(dagger_fetch(d, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(d), "on rank 1: sensor 7 is unplugged");
    ASSERT_ERR(dagger_fetch(c, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(c), "input 0");
    ASSERT_STR_HAS(dagger_task_errmsg(c), "'sensor' on rank 1: sensor 7 is unplugged");
    ASSERT_ERR(dagger_fetch(p, NULL), DAGGER_EIO);
    /* the failure came from rank 1 (maybe after c's cancel from rank 0, another pair of ranks:
     * counted as it comes); with 2 ranks d's failure came from c on the same rank too */
    uint64_t want = cr == dr ? 2 : 1;
    struct dagger__mpi_direct sc = stats_on(ctx, cr);
    for (int i = 0; i < 20000 && sc.direct < want; i++) {
        usleep(1000);
        sc = stats_on(ctx, cr);
    }
    ASSERT_EQ(sc.direct, want);
    ASSERT_EQ(sc.forwarded, 0);
    dagger_task_release(d);
    dagger_task_release(c);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A consumer cancelled while it waits on its rank for its input: it fails with DAGGER_ECANCELED
 * (there, and here once its input is done; its dependent here fails upstream); a second consumer
 * of the same producer (sent after the cancel, so its subscription lets the producer end) still
 * gets the value. */
TEST(cancelled_consumer)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int cr = rank_or_1(ctx, 2);
    dagger_task_t *p =
        spawn_on(ctx, 1, value, "p", (dagger_value_t[]){dagger_i64(2), dagger_i64(20)}, 2);
    dagger_task_t *c1 =
        spawn_on(ctx, cr, times, "c1", (dagger_value_t[]){dagger_taskv(p), dagger_i64(2)}, 2);
    dagger_task_t *d1 = dagger_spawn(ctx, add2, c1, 1);
    /* c1 is on its rank, subscribed to p (else the cancel keeps it here, unsent) */
    for (int i = 0; i < 20000 && stats_on(ctx, 1).subs < 1; i++)
        usleep(1000);
    ASSERT_OK(dagger_cancel(c1));
    dagger_task_t *c2 =
        spawn_on(ctx, cr, times, "c2", (dagger_value_t[]){dagger_taskv(p), dagger_i64(3)}, 2);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(c2, &v));
    ASSERT_EQ(v, 60);
    ASSERT_ERR(dagger_fetch(c1, NULL), DAGGER_ECANCELED);
    /* mostly "cancelled while it waited for its arguments" there; p's result may also reach
     * c1's rank before the cancel does (another pair of ranks), and c1 is cancelled there as
     * it starts, or here as it completes */
    ASSERT_STR_HAS(dagger_task_errmsg(c1), "cancelled");
    ASSERT_ERR(dagger_fetch(d1, NULL), DAGGER_EUPSTREAM);
    dagger_task_release(d1);
    dagger_task_release(c2);
    dagger_task_release(c1);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int die_after_subs(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    if (wait_subs(tc, dagger_arg_i64(a, 0)) == 0)
        kill(getpid(), SIGKILL);
    return 0;
}

/* The producer's rank is killed while an early consumer on another rank waits for its result:
 * the consumer fails (DAGGER_EPEER there; upstream here, naming the lost rank) within the peer
 * timeout, and close returns (the consumer's rank stopped waiting, or termination would not
 * end). */
TEST(lost_producer_rank)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int cr = rank_or_1(ctx, 2);
    dagger_task_t *p = spawn_on(ctx, 1, die_after_subs, "p", (dagger_value_t[]){dagger_i64(1)}, 1);
    dagger_task_t *c =
        spawn_on(ctx, cr, times, "c", (dagger_value_t[]){dagger_taskv(p), dagger_i64(2)}, 2);
    ASSERT_ERR(dagger_fetch(p, NULL), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_task_errmsg(p), "rank 1 was lost");
    ASSERT_ERR(dagger_fetch(c, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(c), "rank 1 was lost");
    if (cr != 1) { /* the consumer's rank still serves */
        dagger_task_t *ok =
            spawn_on(ctx, cr, times, "ok", (dagger_value_t[]){dagger_i64(3), dagger_i64(5)}, 2);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(ok, &v));
        ASSERT_EQ(v, 15);
        dagger_task_release(ok);
    }
    dagger_task_release(c);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static _Atomic int gate;

/* gated(v) -> v once the test opens the gate (20 s at most). */
static int gated(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    for (int i = 0; i < 20000 && !atomic_load(&gate); i++)
        usleep(1000);
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

/* An input made here, still running: the consumer goes to its rank at once, and this rank
 * sends it the value when it is done (counted there as straight from its producer's rank). */
TEST(local_producer_sends_from_here)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    atomic_store(&gate, 0);
    int cr = rank_or_1(ctx, 2);
    dagger_task_t *l = spawn_on(ctx, 0, gated, "l", (dagger_value_t[]){dagger_i64(20)}, 1);
    dagger_task_t *c =
        spawn_on(ctx, cr, times, "c", (dagger_value_t[]){dagger_taskv(l), dagger_i64(2)}, 2);
    ASSERT_EQ(stats_on(ctx, 0).sent, 1);
    /* l still runs once c waits on its rank (else c went with l's value, not pending) */
    for (int i = 0; i < 20000 && stats_on(ctx, cr).waited < 1; i++)
        usleep(1000);
    atomic_store(&gate, 1);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(c, &v));
    ASSERT_EQ(v, 40);
    struct dagger__mpi_direct sc = stats_on(ctx, cr);
    ASSERT_EQ(sc.direct, 1);
    ASSERT_EQ(sc.forwarded, 0);
    dagger_task_release(c);
    dagger_task_release(l);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* DAGGER_MPI_DIRECT=0 turns early sends off: the same chain, every task sent when ready. */
TEST(direct_off_by_env)
{
    setenv("DAGGER_MPI_DIRECT", "0", 1);
    dagger_ctx_t *ctx = open_job(2);
    unsetenv("DAGGER_MPI_DIRECT");
    if (!ctx)
        return;
    int cr = rank_or_1(ctx, 2);
    dagger_task_t *p =
        spawn_on(ctx, 1, value, "p", (dagger_value_t[]){dagger_i64(0), dagger_i64(20)}, 2);
    dagger_task_t *c =
        spawn_on(ctx, cr, times, "c", (dagger_value_t[]){dagger_taskv(p), dagger_i64(2)}, 2);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(c, &v));
    ASSERT_EQ(v, 40);
    struct dagger__mpi_direct s0 = stats_on(ctx, 0), sc = stats_on(ctx, cr);
    ASSERT_EQ(s0.sent, 0);
    ASSERT_EQ(sc.direct + sc.forwarded, 0);
    dagger_task_release(c);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The producer ends, and its rank sends its result and forgets it, before the consumer is
 * spawned: the spawning rank holds that result (DAGGER_FAULT_MPI=hold_results), so the consumer is
 * still sent early, and its subscription finds no producer on the producer's rank. That rank
 * answers M_FWD, and the spawning rank forwards the result once it handles it. */
TEST(late_subscription_is_forwarded)
{
    setenv("DAGGER_FAULT_MPI", "hold_results:1500", 1); /* long beside any stall of main */
    dagger_ctx_t *ctx = open_job(2);
    unsetenv("DAGGER_FAULT_MPI");
    if (!ctx)
        return;
    int cr = rank_or_1(ctx, 2);
    dagger_task_t *p =
        spawn_on(ctx, 1, value, "p", (dagger_value_t[]){dagger_i64(0), dagger_i64(20)}, 2);
    /* p's result reached this rank (held): rank 1 has sent it and let p go */
    for (int i = 0; i < 20000 && stats_on(ctx, 0).held < 1; i++)
        usleep(1000);
    ASSERT_EQ(stats_on(ctx, 0).held, 1);
    ASSERT_FALSE(dagger_task_done(p));
    dagger_task_t *c =
        spawn_on(ctx, cr, add2, "c", (dagger_value_t[]){dagger_taskv(p), dagger_i64(1)}, 2);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(c, &v));
    ASSERT_EQ(v, 21);
    ASSERT_OK(dagger_fetch_i64(p, &v));
    ASSERT_EQ(v, 20);
    struct dagger__mpi_direct s0 = stats_on(ctx, 0), sc = stats_on(ctx, cr);
    ASSERT_EQ(s0.sent, 1);
    ASSERT_EQ(sc.forwarded, 1);
    ASSERT_EQ(sc.direct, 0);
    ASSERT_TRUE(s0.held >= 2); /* p's and c's results */
    dagger_task_release(c);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* An invalid DAGGER_FAULT_MPI is reported and ignored: nothing is held. */
TEST(invalid_fault_setting_is_ignored)
{
    setenv("DAGGER_FAULT_MPI", "hold_results:soon", 1);
    dagger_ctx_t *ctx = open_job(2);
    unsetenv("DAGGER_FAULT_MPI");
    if (!ctx)
        return;
    dagger_task_t *p =
        spawn_on(ctx, 1, value, "p", (dagger_value_t[]){dagger_i64(0), dagger_i64(7)}, 2);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(p, &v));
    ASSERT_EQ(v, 7);
    ASSERT_EQ(stats_on(ctx, 0).held, 0);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* one clock for every rank of this host */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* end_stamp(want_subs) -> the time it ended, once `want_subs` subscriptions reached this rank
 * and 30 ms more went by (its consumer waits meanwhile). */
static int end_stamp(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int rc = wait_subs(tc, dagger_arg_i64(a, 0));
    if (rc)
        return rc;
    usleep(30000);
    *out = dagger_i64(mono_ns());
    return 0;
}

static int start_stamp(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    *out = dagger_i64(mono_ns());
    return 0;
}

/* P (rank 1) -> C (rank 2, or 1), a dependency that is not an argument: C goes out at its
 * spawn and waits there for P's end, which comes straight from P's rank (no value with it). */
TEST(dependency_only_goes_producer_to_consumer)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int cr = rank_or_1(ctx, 2);
    dagger_task_t *p = spawn_on(ctx, 1, end_stamp, "p", (dagger_value_t[]){dagger_i64(1)}, 1);
    dagger_task_t *c = spawn_after(ctx, cr, start_stamp, "c", &p, 1, NULL, 0);
    int64_t end, start;
    ASSERT_OK(dagger_fetch_i64(c, &start));
    ASSERT_OK(dagger_fetch_i64(p, &end));
    ASSERT_TRUE(start >= end); /* c ran after p ended, on another rank where there are 4 */
    struct dagger__mpi_direct s0 = stats_on(ctx, 0);
    ASSERT_EQ(s0.sent, 1);
    uint64_t direct = 0, forwarded = 0;
    for (int r = 1; r < dagger_ctx_nranks(ctx); r++) {
        struct dagger__mpi_direct s = stats_on(ctx, r);
        direct += s.direct;
        forwarded += s.forwarded;
    }
    ASSERT_EQ(direct, 1);
    ASSERT_EQ(forwarded, 0);
    dagger_task_release(c);
    dagger_task_release(p);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int make_counter(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)a;
    dagger_chunk_t *c;
    size_t shape[1] = {1};
    int rc = dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_I64, 1, shape, &c);
    if (rc)
        return rc;
    *(int64_t *)dagger_chunk_data(c) = 0;
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* digit(counter, d, want_subs): counter = counter * 10 + d where the counter lives, once
 * `want_subs` subscriptions reached this rank; d = 0 fails. */
static int digit(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    int64_t *x = dagger_arg_buf(a, 0, &n);
    int64_t d = dagger_arg_i64(a, 1);
    int rc = wait_subs(tc, dagger_arg_i64(a, 2));
    if (rc)
        return rc;
    if (!x || n != sizeof *x)
        return dagger_fail(tc, DAGGER_ETYPE, "digit: no counter");
    if (d == 0)
        return dagger_fail(tc, DAGGER_EIO, "digit: zero");
    *x = *x * 10 + d;
    *out = dagger_i64(*x);
    return 0;
}

/* The datadeps pattern by hand: tasks that write mutable data of the last rank, ordered by
 * dependencies that are not arguments, with no scope (the data places them). The later ones go
 * there at their spawn and run in order; a failure stops the ones after it, on every rank. */
TEST(mutable_data_chain_goes_to_its_rank)
{
    dagger_ctx_t *ctx = open_job(2);
    if (!ctx)
        return;
    int r = dagger_ctx_nranks(ctx) - 1;
    for (int fail = 0; fail < 2; fail++) {
        dagger_chunk_t *m = mutable_on(ctx, r, make_counter, NULL, 0);
        struct dagger__mpi_direct b0 = stats_on(ctx, 0), br = stats_on(ctx, r);
        /* w1 waits until w3's subscription to w2 reached rank r: w2 and w3 are early then */
        dagger_task_t *w1 = spawn_after(
            ctx, -1, digit, "w1", NULL, 0,
            (dagger_value_t[]){dagger_chunkv(m), dagger_i64(1), dagger_i64((int64_t)br.subs + 1)},
            3);
        dagger_task_t *w2 = spawn_after(
            ctx, -1, digit, "w2", &w1, 1,
            (dagger_value_t[]){dagger_chunkv(m), dagger_i64(fail ? 0 : 2), dagger_i64(0)}, 3);
        dagger_task_t *w3 =
            spawn_after(ctx, -1, digit, "w3", &w2, 1,
                        (dagger_value_t[]){dagger_chunkv(m), dagger_i64(3), dagger_i64(0)}, 3);
        int64_t v = 0;
        if (!fail) {
            ASSERT_OK(dagger_fetch_i64(w3, &v));
            ASSERT_EQ(v, 123);
        } else {
            ASSERT_ERR(dagger_fetch_i64(w2, &v), DAGGER_EIO);
            ASSERT_STR_HAS(dagger_task_errmsg(w2), "digit: zero");
            ASSERT_ERR(dagger_fetch_i64(w3, &v), DAGGER_EUPSTREAM);
            ASSERT_STR_HAS(dagger_task_errmsg(w3), "digit: zero");
        }
        int64_t x = -1;
        read_back(ctx, m, &x, sizeof x);
        ASSERT_EQ(x, fail ? 1 : 123); /* w3 never ran after w2 failed */
        struct dagger__mpi_direct s0 = stats_on(ctx, 0);
        ASSERT_EQ(s0.sent - b0.sent, 2); /* w2 and w3 */
        dagger_task_release(w3);
        dagger_task_release(w2);
        dagger_task_release(w1);
        dagger_chunk_release(m);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(chain_goes_producer_to_consumer, diamond_over_ranks, kinds_go_straight,
          producer_failure_reaches_consumer, cancelled_consumer, lost_producer_rank,
          local_producer_sends_from_here, direct_off_by_env,
          dependency_only_goes_producer_to_consumer, mutable_data_chain_goes_to_its_rank,
          late_subscription_is_forwarded, invalid_fault_setting_is_ignored)
