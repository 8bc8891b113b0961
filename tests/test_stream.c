/* tests/test_stream.c - streaming regions: every topology of Dagger.jl's suite, kinds, ending,
 * teardown, cancel, errors, buffer capacities, and zero allocations per value.
 *
 * Each topology runs on 1 worker thread (proves that blocked streaming tasks never hold a
 * worker) and on 4, with buffers of 1, 2 and 64 slots, and checks every value and exact counts.
 * The edge_* cases cross processes (dagger/net.h): a forked producer runs x -> edge sink, the
 * parent edge source -> y -> A, over shm and over TCP on 127.0.0.1 with an ephemeral port.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#include <dagger/stream.h>

static const int threads_list[] = {1, 4};
static const long caps_list[] = {1, 2, 64};
#define FOR_CONFIGS(th, cap)                                                                       \
    for (int ti_ = 0; ti_ < 2; ti_++)                                                              \
        for (int ci_ = 0, th = threads_list[ti_]; ci_ < 3; ci_++)                                  \
            for (long cap = caps_list[ci_], once_ = 1; once_; once_ = 0)

enum { N = 200, MAXREC = 100000 };

/* A source's state: the next index; each value is index * mul + add. */
struct src {
    int64_t next, mul, add;
    char buf[64];
};
/* A sink's record of every value it took. */
struct rec {
    _Atomic int64_t n;
    int64_t v[MAXREC];
    double f[MAXREC];
    char s[64][32];
};

static struct rec *rec_new(void) { return calloc(1, sizeof(struct rec)); }

static int src_i64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    *out = dagger_i64(s->next * s->mul + s->add);
    s->next++;
    return 0;
}

static int add1(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + 1);
    return 0;
}

static int add2(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + 2);
    return 0;
}

static int sum2(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + dagger_arg_i64(a, 1));
    return 0;
}

/* sink(rec, values...): records the sum of its i64 arguments. */
static int sink(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct rec *r = dagger_arg_ptr(a, 0);
    int64_t s = 0;
    for (size_t i = 1; i < dagger_args_count(a); i++)
        s += dagger_arg_i64(a, i);
    int64_t n = atomic_load(&r->n);
    if (n < MAXREC)
        r->v[n] = s;
    atomic_store(&r->n, n + 1);
    return 0;
}

static dagger_stream_t *begin(dagger_ctx_t *ctx, long cap, int64_t max_evals, bool teardown)
{
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.buffer = cap;
    o.max_evals = max_evals;
    o.teardown = teardown;
    dagger_stream_t *s = NULL;
    ASSERT_OK(dagger_stream_begin(ctx, &o, &s));
    return s;
}

/* Switch the options of the tasks spawned next (max_evals only). */
static void set_evals(dagger_stream_t *s, long cap, int64_t max_evals, bool teardown)
{
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.buffer = cap;
    o.max_evals = max_evals;
    o.teardown = teardown;
    ASSERT_OK(dagger_stream_set_opts(s, &o));
}

static void expect_nil(dagger_task_t *t)
{
    dagger_value_t v;
    ASSERT_OK(dagger_fetch(t, &v));
    ASSERT_EQ(v.kind, DAGGER_KIND_NIL);
}

static void check_seq(struct rec *r, int64_t n, int64_t mul, int64_t add)
{
    ASSERT_EQ(atomic_load(&r->n), n);
    for (int64_t k = 0; k < n && k < MAXREC; k++)
        if (r->v[k] != k * mul + add)
            fail_msg("value %lld is %lld, expected %lld", (long long)k, (long long)r->v[k],
                     (long long)(k * mul + add));
}

static void release_all(dagger_task_t **t, int n)
{
    for (int i = 0; i < n; i++)
        dagger_task_release(t[i]);
}

/* ---------------------------------------------------------------- topologies */

TEST(x_to_A)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 3, 1, {0}};
        struct rec *r = rec_new();
        dagger_stream_t *s = begin(ctx, cap, -1, true);
        set_evals(s, cap, N, true);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        set_evals(s, cap, -1, true);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(x);
        expect_nil(A);
        check_seq(r, N, 3, 1);
        release_all((dagger_task_t *[]){x, A}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

TEST(independent_x_A)
{
    FOR_CONFIGS(th, cap)
    {
        /* Without teardown each runs max_evals times. */
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}};
        struct rec *r = rec_new();
        dagger_stream_t *s = begin(ctx, cap, N, false);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, 7);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(x);
        expect_nil(A);
        ASSERT_EQ(xs.next, N);
        check_seq(r, N, 0, 7);
        release_all((dagger_task_t *[]){x, A}, 2);
        /* With teardown the first to end stops the other. */
        xs.next = 0;
        atomic_store(&r->n, 0);
        s = begin(ctx, cap, N, true);
        x = dagger_spawn(ctx, src_i64, (void *)&xs);
        A = dagger_spawn(ctx, sink, (void *)r, 7);
        ASSERT_OK(dagger_stream_end(s));
        /* The one stopped before its own end is cancelled (DAGGER_ECANCELED). */
        ASSERT_TRUE(dagger_fetch(x, NULL) == (xs.next == N ? 0 : DAGGER_ECANCELED));
        ASSERT_TRUE(dagger_fetch(A, NULL) == (atomic_load(&r->n) == N ? 0 : DAGGER_ECANCELED));
        ASSERT_TRUE(xs.next <= N && atomic_load(&r->n) <= N);
        ASSERT_TRUE(xs.next == N || atomic_load(&r->n) == N);
        check_seq(r, atomic_load(&r->n), 0, 7);
        release_all((dagger_task_t *[]){x, A}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

TEST(x_to_y_to_A)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 2, 0, {0}};
        struct rec *r = rec_new();
        dagger_stream_t *s = begin(ctx, cap, N, true);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        set_evals(s, cap, -1, true);
        dagger_task_t *y = dagger_spawn(ctx, add1, x);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, y);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(x);
        expect_nil(y);
        expect_nil(A);
        check_seq(r, N, 2, 1);
        release_all((dagger_task_t *[]){x, y, A}, 3);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

TEST(x_to_y_and_A)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}};
        struct rec *r = rec_new(), *ry = rec_new();
        dagger_stream_t *s = begin(ctx, cap, N, true);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        set_evals(s, cap, -1, true);
        dagger_task_t *y = dagger_spawn(ctx, add1, x);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
        dagger_task_t *B = dagger_spawn(ctx, sink, (void *)ry, y);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(x);
        expect_nil(y);
        expect_nil(A);
        expect_nil(B);
        check_seq(r, N, 1, 0);
        check_seq(ry, N, 1, 1);
        release_all((dagger_task_t *[]){x, y, A, B}, 4);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
        free(ry);
    }
}

TEST(x_y_to_A)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}}, ys = {0, 100, 5, {0}};
        struct rec *r = rec_new();
        /* Two sources: without teardown each gives N and A takes N pairs. */
        dagger_stream_t *s = begin(ctx, cap, N, false);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        dagger_task_t *y = dagger_spawn(ctx, src_i64, (void *)&ys);
        set_evals(s, cap, -1, false);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x, y);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(x);
        expect_nil(y);
        expect_nil(A);
        check_seq(r, N, 101, 5);
        release_all((dagger_task_t *[]){x, y, A}, 3);
        /* With teardown the first source to end stops the other: a prefix, correct values. */
        xs.next = ys.next = 0;
        atomic_store(&r->n, 0);
        s = begin(ctx, cap, N, true);
        x = dagger_spawn(ctx, src_i64, (void *)&xs);
        y = dagger_spawn(ctx, src_i64, (void *)&ys);
        set_evals(s, cap, -1, true);
        A = dagger_spawn(ctx, sink, (void *)r, x, y);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(A);
        int64_t n = atomic_load(&r->n);
        ASSERT_TRUE(n <= N);
        check_seq(r, n, 101, 5);
        release_all((dagger_task_t *[]){x, y, A}, 3);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

TEST(x_y_to_z_to_A)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}}, ys = {0, 10, 0, {0}};
        struct rec *r = rec_new();
        dagger_stream_t *s = begin(ctx, cap, N, false);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        dagger_task_t *y = dagger_spawn(ctx, src_i64, (void *)&ys);
        set_evals(s, cap, -1, false);
        dagger_task_t *z = dagger_spawn(ctx, sum2, x, y);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, z);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(z);
        expect_nil(A);
        check_seq(r, N, 11, 0);
        release_all((dagger_task_t *[]){x, y, z, A}, 4);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

TEST(x_to_y_z_to_A)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}};
        struct rec *r = rec_new();
        dagger_stream_t *s = begin(ctx, cap, N, true);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        set_evals(s, cap, -1, true);
        dagger_task_t *y = dagger_spawn(ctx, add1, x);
        dagger_task_t *z = dagger_spawn(ctx, add2, x);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, y, z);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(x);
        expect_nil(y);
        expect_nil(z);
        expect_nil(A);
        check_seq(r, N, 2, 3);
        release_all((dagger_task_t *[]){x, y, z, A}, 4);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

TEST(x_y_to_z_to_A_B)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}}, ys = {0, 1000, 1, {0}};
        struct rec *ra = rec_new(), *rb = rec_new();
        dagger_stream_t *s = begin(ctx, cap, N, false);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        dagger_task_t *y = dagger_spawn(ctx, src_i64, (void *)&ys);
        set_evals(s, cap, -1, false);
        dagger_task_t *z = dagger_spawn(ctx, sum2, x, y);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)ra, z);
        dagger_task_t *B = dagger_spawn(ctx, sink, (void *)rb, z);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(A);
        expect_nil(B);
        check_seq(ra, N, 1001, 1);
        check_seq(rb, N, 1001, 1);
        release_all((dagger_task_t *[]){x, y, z, A, B}, 5);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(ra);
        free(rb);
    }
}

/* ---------------------------------------------------------------- the seed's example */

struct rng {
    uint64_t s;
    int64_t count;
};
static double rng_next(uint64_t *s) { return (double)(test_rand(s) >> 11) / 9007199254740992.0; }

static int gen_rand(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct rng *g = dagger_arg_ptr(a, 0);
    double x = rng_next(&g->s);
    g->count++;
    if (x < 0.01)
        return dagger_finish_stream(tc, dagger_f64(x), dagger_i64(g->count));
    *out = dagger_f64(x);
    return 0;
}

static int write_line(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    FILE *f = dagger_arg_ptr(a, 0);
    fprintf(f, "%.17g\n", dagger_arg_f64(a, 1));
    return 0;
}

TEST(seed_example_random_to_file)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        char path[] = "/tmp/dagger_stream_XXXXXX";
        int fd = mkstemp(path);
        ASSERT_TRUE(fd >= 0);
        FILE *f = fdopen(fd, "w+");
        struct rng g = {12345 + (uint64_t)cap, 0};
        dagger_stream_t *s = begin(ctx, cap, -1, true);
        dagger_task_t *x = dagger_spawn(ctx, gen_rand, (void *)&g);
        dagger_task_t *A = dagger_spawn(ctx, write_line, (void *)f, x);
        ASSERT_OK(dagger_stream_end(s));
        int64_t count = 0;
        ASSERT_OK(dagger_fetch_i64(x, &count));
        expect_nil(A);
        /* Replay the generator: the file holds every value, the last one < 0.01. */
        rewind(f);
        uint64_t rs = 12345 + (uint64_t)cap;
        int64_t lines = 0;
        double v;
        while (fscanf(f, "%lf", &v) == 1) {
            double want = rng_next(&rs);
            ASSERT_TRUE(v == want);
            lines++;
        }
        ASSERT_EQ(lines, count);
        ASSERT_TRUE(v < 0.01);
        fclose(f);
        unlink(path);
        release_all((dagger_task_t *[]){x, A}, 2);
        ASSERT_OK(dagger_ctx_close(ctx));
    }
}

/* ---------------------------------------------------------------- element kinds */

static int src_i32(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    int32_t v = (int32_t)(s->next * 2654435761u);
    s->next++;
    *out = DAGGER_V(v);
    return 0;
}

static int src_big(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    *out = dagger_i64(INT64_MAX - s->next * ((int64_t)1 << 40));
    s->next++;
    return 0;
}

static int src_f64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    *out = dagger_f64((double)s->next / 3.0);
    s->next++;
    return 0;
}

static int src_str(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    snprintf(s->buf, sizeof s->buf, "value-%lld", (long long)s->next);
    s->next++;
    *out = dagger_str(s->buf); /* copied into the stream right after the body */
    return 0;
}

static int src_blob(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    for (int i = 0; i < 24; i++)
        s->buf[i] = (char)(s->next * 7 + i);
    s->next++;
    *out = dagger_blob(s->buf, 24);
    return 0;
}

static int upper(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = *dagger_arg(a, 0); /* pass through: points into the input buffer */
    return 0;
}

static int sink_any(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct rec *r = dagger_arg_ptr(a, 0);
    const dagger_value_t *v = dagger_arg(a, 1);
    int64_t n = atomic_load(&r->n);
    switch (v->kind) {
    case DAGGER_KIND_I64:
        r->v[n] = v->u.i;
        break;
    case DAGGER_KIND_F64:
        r->f[n] = v->u.f;
        break;
    case DAGGER_KIND_STR:
        if (n < 64)
            snprintf(r->s[n], sizeof r->s[n], "%s", v->u.s);
        r->v[n] = (int64_t)strlen(v->u.s);
        break;
    case DAGGER_KIND_BLOB: {
        const unsigned char *p = v->u.p;
        int ok = v->len == 24;
        for (uint32_t i = 0; ok && i < 24; i++)
            ok = p[i] == (unsigned char)(n * 7 + i);
        r->v[n] = ok;
        break;
    }
    default:
        return dagger_fail(tc, DAGGER_ETYPE, "unexpected kind %d", v->kind);
    }
    atomic_store(&r->n, n + 1);
    return 0;
}

static struct rec *run_kind(int th, long cap, dagger_fn_t fn, bool through)
{
    dagger_ctx_t *ctx = test_ctx(th);
    struct src xs = {0, 1, 0, {0}};
    struct rec *r = rec_new();
    dagger_stream_t *s = begin(ctx, cap, N, true);
    dagger_task_t *x =
        dagger_spawn_impl(ctx, NULL, fn, "src", (dagger_value_t[]){dagger_ptr(&xs)}, 1);
    set_evals(s, cap, -1, true);
    dagger_task_t *y = through ? dagger_spawn(ctx, upper, x) : NULL;
    dagger_task_t *A = dagger_spawn(ctx, sink_any, (void *)r, through ? y : x);
    ASSERT_OK(dagger_stream_end(s));
    expect_nil(A);
    ASSERT_EQ(atomic_load(&r->n), N);
    release_all((dagger_task_t *[]){x, A}, 2);
    dagger_task_release(y);
    ASSERT_OK(dagger_ctx_close(ctx));
    return r;
}

TEST(element_kinds_preserved)
{
    FOR_CONFIGS(th, cap)
    {
        for (int through = 0; through < 2; through++) {
            struct rec *r = run_kind(th, cap, src_i32, through);
            for (int64_t k = 0; k < N; k++)
                ASSERT_EQ(r->v[k], (int32_t)(k * 2654435761u));
            free(r);
            r = run_kind(th, cap, src_big, through);
            for (int64_t k = 0; k < N; k++)
                ASSERT_TRUE(r->v[k] == INT64_MAX - k * ((int64_t)1 << 40));
            free(r);
            r = run_kind(th, cap, src_f64, through);
            for (int64_t k = 0; k < N; k++)
                ASSERT_TRUE(r->f[k] == (double)k / 3.0);
            free(r);
            r = run_kind(th, cap, src_str, through);
            for (int64_t k = 0; k < 64; k++) {
                char want[32];
                snprintf(want, sizeof want, "value-%lld", (long long)k);
                ASSERT_STR_EQ(r->s[k], want);
            }
            free(r);
            r = run_kind(th, cap, src_blob, through);
            for (int64_t k = 0; k < N; k++)
                ASSERT_EQ(r->v[k], 1);
            free(r);
        }
    }
}

static int src_long_str(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    static char big[300];
    memset(big, 'x', sizeof big - 1);
    *out = dagger_str(big);
    return 0;
}

TEST(oversized_value_fails_region)
{
    dagger_ctx_t *ctx = test_ctx(2);
    struct rec *r = rec_new();
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.max_value_bytes = 128;
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, &o, &s));
    dagger_task_t *x = dagger_spawn(ctx, src_long_str);
    dagger_task_t *A = dagger_spawn(ctx, sink_any, (void *)r, x);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_task_errmsg(x), "max_value_bytes");
    ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_EUPSTREAM);
    release_all((dagger_task_t *[]){x, A}, 2);
    ASSERT_OK(dagger_ctx_close(ctx));
    free(r);
}

/* ---------------------------------------------------------------- inputs and outputs */

static int konst(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(1000);
    return 0;
}

TEST(non_streaming_inputs_reused)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        dagger_task_t *k = dagger_spawn(ctx, konst); /* outside: its result every run */
        struct src xs = {0, 1, 0, {0}};
        struct rec *r = rec_new();
        dagger_stream_t *s = begin(ctx, cap, N, true);
        dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
        set_evals(s, cap, -1, true);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x, 42, k);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(A);
        check_seq(r, N, 1, 1042);
        release_all((dagger_task_t *[]){k, x, A}, 3);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

static int take_i64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const dagger_value_t *v = dagger_arg(a, 0);
    *out = dagger_i64(v->kind == DAGGER_KIND_NIL ? -1 : v->u.i * 2);
    return 0;
}

static int src_finish(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    int64_t v = s->next++;
    if (v == N - 1)
        return dagger_finish_stream(tc, dagger_i64(v), dagger_i64(123));
    *out = dagger_i64(v);
    return 0;
}

TEST(non_streaming_consumer_gets_final_result)
{
    FOR_CONFIGS(th, cap)
    {
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}};
        struct rec *r = rec_new();
        dagger_stream_t *s = begin(ctx, cap, -1, true);
        dagger_task_t *x = dagger_spawn(ctx, src_finish, (void *)&xs);
        dagger_task_t *y = dagger_spawn(ctx, add1, x);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
        ASSERT_OK(dagger_stream_end(s));
        dagger_task_t *B = dagger_spawn(ctx, take_i64, x); /* after the region: the result */
        dagger_task_t *C = dagger_spawn(ctx, take_i64, y); /* nil result */
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(x, &v));
        ASSERT_EQ(v, 123);
        ASSERT_OK(dagger_fetch_i64(B, &v));
        ASSERT_EQ(v, 246);
        ASSERT_OK(dagger_fetch_i64(C, &v));
        ASSERT_EQ(v, -1);
        expect_nil(A);         /* each task completes on its own: A may still drain after x ended */
        check_seq(r, N, 1, 0); /* the last value pushed by dagger_finish_stream included */
        release_all((dagger_task_t *[]){x, y, A, B, C}, 5);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
    }
}

/* ---------------------------------------------------------------- ending */

TEST(max_evals_1_and_100_and_0)
{
    const int64_t evals[] = {1, 100};
    for (int e = 0; e < 2; e++) {
        FOR_CONFIGS(th, cap)
        {
            dagger_ctx_t *ctx = test_ctx(th);
            struct src xs = {0, 1, 0, {0}};
            struct rec *r = rec_new();
            dagger_stream_t *s = begin(ctx, cap, evals[e], true);
            dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
            dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
            ASSERT_OK(dagger_stream_end(s));
            expect_nil(A);
            check_seq(r, evals[e], 1, 0);
            ASSERT_EQ(xs.next, evals[e]);
            release_all((dagger_task_t *[]){x, A}, 2);
            ASSERT_OK(dagger_ctx_close(ctx));
            free(r);
        }
    }
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.max_evals = 0;
    dagger_stream_t *s = NULL;
    ASSERT_ERR(dagger_stream_begin(ctx, &o, &s), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "max_evals 0");
    ASSERT_NULL(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(buffer_capacity_must_be_positive)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    ASSERT_EQ(o.buffer, 1);
    ASSERT_TRUE(o.teardown);
    dagger_stream_t *s = NULL;
    o.buffer = 0;
    ASSERT_ERR(dagger_stream_begin(ctx, &o, &s), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "buffer 0");
    o.buffer = -3;
    ASSERT_ERR(dagger_stream_begin(ctx, &o, &s), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "at least 1 slot");
    o.buffer = 4;
    ASSERT_OK(dagger_stream_begin(ctx, &o, &s));
    o.buffer = 0;
    ASSERT_ERR(dagger_stream_set_opts(s, &o), DAGGER_EINVAL);
    ASSERT_OK(dagger_stream_end(s)); /* an empty region */
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* An endless source; the sink counts. */
static int src_forever(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct src *s = dagger_arg_ptr(a, 0);
    *out = dagger_i64(s->next++);
    return 0;
}

static double now_ms(void);

/* Wait (at most 30 s, then fail saying what for) until the sink recorded `n` values. */
static void wait_count(struct rec *r, int64_t n)
{
    double deadline = now_ms() + 30000;
    while (atomic_load(&r->n) < n) {
        if (now_ms() > deadline)
            fail_msg("waited 30 s for the sink to record %lld values; it has %lld", (long long)n,
                     (long long)atomic_load(&r->n));
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

/* Wait (at most 60 s, then fail naming `what`) until `t` finished. */
static void await_task(dagger_task_t *t, const char *what)
{
    double deadline = now_ms() + 60000;
    while (!dagger_task_done(t)) {
        if (now_ms() > deadline)
            fail_msg("waited 60 s for %s (task %llu '%s') to finish", what,
                     (unsigned long long)dagger_task_id(t), dagger_task_name(t));
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

TEST(cancel_source_and_sink)
{
    for (int td = 0; td < 2; td++) {
        FOR_CONFIGS(th, cap)
        {
            dagger_ctx_t *ctx = test_ctx(th);
            struct src xs = {0, 1, 0, {0}};
            struct rec *r = rec_new();
            /* Cancel the source: it ends with ECANCELED, the sink drains and ends cleanly. */
            dagger_stream_t *s = begin(ctx, cap, -1, td);
            dagger_task_t *x = dagger_spawn(ctx, src_forever, (void *)&xs);
            dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
            ASSERT_OK(dagger_stream_end(s));
            wait_count(r, 50);
            ASSERT_OK(dagger_cancel(x));
            ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ECANCELED);
            expect_nil(A);
            /* Everything pushed was taken, in order; the run that was cancelled while its
             * value waited for room may have lost that value. */
            int64_t got = atomic_load(&r->n);
            ASSERT_TRUE(got == xs.next || got == xs.next - 1);
            check_seq(r, got, 1, 0);
            release_all((dagger_task_t *[]){x, A}, 2);
            /* Cancel the sink: with teardown the source is stopped (cancelled); without, it
             * keeps running with no consumer (Dagger.jl) until it is cancelled too. */
            xs.next = 0;
            atomic_store(&r->n, 0);
            s = begin(ctx, cap, -1, td);
            x = dagger_spawn(ctx, src_forever, (void *)&xs);
            A = dagger_spawn(ctx, sink, (void *)r, x);
            ASSERT_OK(dagger_stream_end(s));
            wait_count(r, 50);
            ASSERT_OK(dagger_cancel(A));
            ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_ECANCELED);
            if (!td)
                ASSERT_OK(dagger_cancel(x));
            ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ECANCELED);
            release_all((dagger_task_t *[]){x, A}, 2);
            ASSERT_OK(dagger_ctx_close(ctx));
            free(r);
        }
    }
}

TEST(cancel_before_region_ends)
{
    dagger_ctx_t *ctx = test_ctx(2);
    struct src xs = {0, 1, 0, {0}};
    struct rec *r = rec_new();
    dagger_stream_t *s = begin(ctx, 1, -1, true);
    dagger_task_t *x = dagger_spawn(ctx, src_forever, (void *)&xs);
    dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EDEADLK); /* nothing starts before the end */
    ASSERT_OK(dagger_cancel(x));
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ECANCELED);
    expect_nil(A);
    ASSERT_EQ(atomic_load(&r->n), 0);
    ASSERT_EQ(xs.next, 0);
    release_all((dagger_task_t *[]){x, A}, 2);
    ASSERT_OK(dagger_ctx_close(ctx));
    free(r);
}

TEST(teardown_on_and_off)
{
    FOR_CONFIGS(th, cap)
    {
        /* The sink stops after 10: with teardown the endless source is stopped too. */
        dagger_ctx_t *ctx = test_ctx(th);
        struct src xs = {0, 1, 0, {0}}, ws = {0, 1, 0, {0}};
        struct rec *r = rec_new(), *rw = rec_new();
        dagger_stream_t *s = begin(ctx, cap, -1, true);
        dagger_task_t *x = dagger_spawn(ctx, src_forever, (void *)&xs);
        dagger_task_t *w = dagger_spawn(ctx, src_forever, (void *)&ws); /* unrelated */
        dagger_task_t *W = dagger_spawn(ctx, sink, (void *)rw, w);
        set_evals(s, cap, 10, true);
        dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
        ASSERT_OK(dagger_stream_end(s));
        ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ECANCELED); /* torn down while running */
        ASSERT_ERR(dagger_fetch(w, NULL), DAGGER_ECANCELED);
        expect_nil(W); /* drained its input to its close */
        expect_nil(A);
        check_seq(r, 10, 1, 0);
        check_seq(rw, ws.next, 1, 0); /* the unrelated pipeline drained what it made */
        release_all((dagger_task_t *[]){x, w, W, A}, 4);
        /* Without teardown the source keeps running when its one consumer is gone, until it
         * is cancelled (Dagger.jl), and the unrelated pipeline keeps going until its limit. */
        xs.next = ws.next = 0;
        atomic_store(&r->n, 0);
        atomic_store(&rw->n, 0);
        s = begin(ctx, cap, -1, false);
        x = dagger_spawn(ctx, src_forever, (void *)&xs);
        set_evals(s, cap, 300, false);
        w = dagger_spawn(ctx, src_forever, (void *)&ws);
        set_evals(s, cap, -1, false);
        W = dagger_spawn(ctx, sink, (void *)rw, w);
        set_evals(s, cap, 10, false);
        A = dagger_spawn(ctx, sink, (void *)r, x);
        ASSERT_OK(dagger_stream_end(s));
        expect_nil(A);
        ASSERT_FALSE(dagger_task_done(x));
        ASSERT_OK(dagger_cancel(x));
        ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_ECANCELED);
        expect_nil(W);
        check_seq(r, 10, 1, 0);
        check_seq(rw, 300, 1, 0);
        release_all((dagger_task_t *[]){x, w, W, A}, 4);
        ASSERT_OK(dagger_ctx_close(ctx));
        free(r);
        free(rw);
    }
}

/* ---------------------------------------------------------------- errors */

static int fail_at_5(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t v = dagger_arg_i64(a, 0);
    if (v == 5)
        return dagger_fail(tc, DAGGER_ETASK, "boom at %lld", (long long)v);
    *out = dagger_i64(v);
    return 0;
}

static int wrong_kind(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)dagger_arg_str(a, 0); /* an i64: the accessor fails the task, the body returns 0 */
    return 0;
}

TEST(error_reaches_every_task)
{
    for (int td = 0; td < 2; td++) {
        FOR_CONFIGS(th, cap)
        {
            dagger_ctx_t *ctx = test_ctx(th);
            struct src xs = {0, 1, 0, {0}}, ws = {0, 1, 0, {0}};
            struct rec *r = rec_new(), *rw = rec_new();
            dagger_stream_t *s = begin(ctx, cap, -1, td);
            dagger_task_t *x = dagger_spawn(ctx, src_forever, (void *)&xs);
            dagger_task_t *y = dagger_spawn(ctx, fail_at_5, x);
            dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, y);
            dagger_task_t *w = dagger_spawn(ctx, src_forever, (void *)&ws);
            dagger_task_t *W = dagger_spawn(ctx, sink, (void *)rw, w);
            ASSERT_OK(dagger_stream_end(s));
            dagger_task_t *B = dagger_spawn(ctx, take_i64, A); /* outside the region */
            ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_ETASK);
            ASSERT_STR_HAS(dagger_task_errmsg(y), "boom at 5");
            dagger_task_t *others[] = {x, A, w, W};
            for (int i = 0; i < 4; i++) {
                ASSERT_ERR(dagger_fetch(others[i], NULL), DAGGER_EUPSTREAM);
                ASSERT_STR_HAS(dagger_task_errmsg(others[i]), "boom at 5");
                ASSERT_STR_HAS(dagger_task_errmsg(others[i]), "fail_at_5");
            }
            ASSERT_ERR(dagger_fetch(B, NULL), DAGGER_EUPSTREAM);
            ASSERT_TRUE(atomic_load(&r->n) <= 5); /* a failure stops at once: no draining */
            check_seq(r, atomic_load(&r->n), 1, 0);
            release_all((dagger_task_t *[]){x, y, A, w, W, B}, 6);
            /* A failing accessor in a body that returns 0 fails the region too. */
            xs.next = 0;
            s = begin(ctx, cap, -1, td);
            x = dagger_spawn(ctx, src_forever, (void *)&xs);
            y = dagger_spawn(ctx, wrong_kind, x);
            ASSERT_OK(dagger_stream_end(s));
            ASSERT_ERR(dagger_fetch(y, NULL), DAGGER_ETYPE);
            ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
            release_all((dagger_task_t *[]){x, y}, 2);
            ASSERT_OK(dagger_ctx_close(ctx));
            free(r);
            free(rw);
        }
    }
}

TEST(spawn_error_fails_region)
{
    dagger_ctx_t *ctx = test_ctx(2);
    struct src xs = {0, 1, 0, {0}};
    struct rec *r = rec_new();
    dagger_stream_t *s = begin(ctx, 1, -1, true);
    dagger_task_t *x = dagger_spawn(ctx, src_forever, (void *)&xs);
    dagger_scope_t *bad = dagger_scope_thread(99);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = bad;
    dagger_task_t *A = dagger_spawn_opts(ctx, &o, sink, (void *)r, x);
    dagger_scope_release(bad);
    ASSERT_ERR(dagger_stream_end(s), DAGGER_ESCOPE); /* the spawn's error fails the region */
    ASSERT_STR_HAS(dagger_last_errmsg(), "failed at spawn");
    ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_ESCOPE);
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    release_all((dagger_task_t *[]){x, A}, 2);
    ASSERT_OK(dagger_ctx_close(ctx));
    free(r);
}

static int outside_fail(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_EIO, "disk gone");
}

TEST(failed_outside_input_fails_region)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *bad = dagger_spawn(ctx, outside_fail);
    struct src xs = {0, 1, 0, {0}};
    struct rec *r = rec_new();
    dagger_stream_t *s = begin(ctx, 2, -1, true);
    dagger_task_t *x = dagger_spawn(ctx, src_forever, (void *)&xs);
    dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x, bad);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_EUPSTREAM);
    ASSERT_STR_HAS(dagger_task_errmsg(A), "disk gone");
    ASSERT_ERR(dagger_fetch(x, NULL), DAGGER_EUPSTREAM);
    ASSERT_EQ(atomic_load(&r->n), 0);
    release_all((dagger_task_t *[]){bad, x, A}, 3);
    ASSERT_OK(dagger_ctx_close(ctx));
    free(r);
}

/* ---------------------------------------------------------------- allocations */

enum { WARM = 10000 };
struct allocrec {
    int64_t n, bad;
    dagger_alloc_stats_t warm, end;
    int64_t total;
};

static int count_sink(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct allocrec *r = dagger_arg_ptr(a, 0);
    if (dagger_arg_i64(a, 1) != r->n + 1)
        r->bad++;
    r->n++;
    if (r->n == WARM)
        dagger_alloc_stats(&r->warm);
    if (r->n == r->total)
        dagger_alloc_stats(&r->end);
    return 0;
}

TEST(zero_allocations_per_value)
{
#if defined(DAGGER_TSAN)
    const int64_t total = 30000; /* 10^5 took 75 s under ThreadSanitizer, 10^6 minutes */
#elif defined(DAGGER_ASAN)
    const int64_t total = 200000; /* 10^6 took 37 s under AddressSanitizer */
#else
    const int64_t total = 1000000;
#endif
    const int ths[] = {1, 2};
    const long caps[] = {1, 64};
    for (int ti = 0; ti < 2; ti++) {
        for (int ci = 0; ci < 2; ci++) {
            dagger_ctx_t *ctx = test_ctx(ths[ti]);
            /* Warm-up: a first region of the same shape grows the pool of suspended-task
             * stacks to what this pipeline needs at most; they are recycled afterwards. */
            for (int round = 0; round < 2; round++) {
                struct src xs = {0, 1, 0, {0}};
                struct allocrec r = {0, 0, {0}, {0}, total};
                dagger_stream_t *s = begin(ctx, caps[ci], total, true);
                dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
                set_evals(s, caps[ci], -1, true);
                dagger_task_t *y = dagger_spawn(ctx, add1, x);
                dagger_task_t *A = dagger_spawn(ctx, count_sink, (void *)&r, y);
                ASSERT_OK(dagger_stream_end(s));
                expect_nil(A);
                ASSERT_EQ(r.n, total);
                ASSERT_EQ(r.bad, 0);
                printf("threads=%d buffer=%ld: %llu allocations after warm-up for %lld values\n",
                       ths[ti], caps[ci], (unsigned long long)(r.end.allocs - r.warm.allocs),
                       (long long)(total - WARM));
                if (round == 1)
                    ASSERT_EQ(r.end.allocs - r.warm.allocs, 0);
                release_all((dagger_task_t *[]){x, y, A}, 3);
            }
            ASSERT_OK(dagger_ctx_close(ctx));
        }
    }
}

/* ---------------------------------------------------------------- misc */

static void body_cb(dagger_stream_t *s, void *ud)
{
    void **p = ud;
    dagger_ctx_t *ctx = p[0];
    p[2] = dagger_spawn(ctx, src_i64, p[1]);
}

TEST(callback_form_and_streaming_query)
{
    dagger_ctx_t *ctx = test_ctx(2);
    struct src xs = {0, 1, 0, {0}};
    void *p[3] = {ctx, &xs, NULL};
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.max_evals = 5;
    ASSERT_OK(dagger_stream_run(ctx, &o, body_cb, p));
    dagger_task_t *x = p[2];
    expect_nil(x);
    ASSERT_EQ(xs.next, 5);
    ASSERT_FALSE(dagger_task_is_streaming(x)); /* its region is over */
    dagger_task_release(x);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int not_streaming(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_finish_stream(tc, dagger_nil(), dagger_nil()));
    return 0;
}

TEST(finish_stream_outside_streaming_task)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, not_streaming);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, DAGGER_ESTATE);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A region opened inside a task: ending it suspends nothing, fetching its tasks suspends the
 * task (not the worker), even on one thread. */
static int nested(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    struct src xs = {0, 1, 0, {0}};
    struct rec *r = rec_new();
    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.max_evals = 50;
    dagger_stream_t *s;
    int rc = dagger_stream_begin(ctx, &o, &s);
    if (rc)
        return rc;
    dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
    dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, x);
    rc = dagger_stream_end(s);
    if (!rc)
        rc = dagger_fetch(A, NULL);
    *out = dagger_i64(atomic_load(&r->n));
    dagger_task_release(x);
    dagger_task_release(A);
    free(r);
    return rc;
}

TEST(region_inside_a_task)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, nested);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(t, &v));
    ASSERT_EQ(v, 50);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* ---------------------------------------------------------------- cross-process edges */

/* 1e5 values at the quick level, 1e6 at full. */
static long edge_n(void) { return test_level_full() ? 1000000 : 100000; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* What the forked producer runs: x (i * 3 + 1, `n` runs or forever) -> edge sink. */
struct producer {
    char uri[256];
    int threads;
    long buffer;              /* slots of the sink's input */
    long n;                   /* < 0: forever (until killed or the consumer closes) */
    int64_t sent;             /* the child checks the sink's count against this when > 0 */
    dagger_edge_t *inherited; /* the parent's TCP listener, closed in the child */
};

/* Fork a child running fn(arg, ready_fd); it _exits with fn's result. No context may be open
 * in the parent: the child must not inherit threads. */
static pid_t fork_child(int (*fn)(void *, int), void *arg, int *ready_rd)
{
    int p[2];
    if (pipe(p) < 0)
        fail_msg("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        alarm(120); /* a stuck child never outlives the case */
        _exit(fn(arg, p[1]));
    }
    close(p[1]);
    *ready_rd = p[0];
    return pid;
}

/* The child's exit status; a child still running after 130 s (past its own alarm) is killed
 * and the case fails saying so. */
static int child_status(pid_t pid)
{
    int st = 0;
    for (int ms = 0;; ms++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
        if (ms >= 130 * 1000) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            fail_msg("waited 130 s for child %d to exit; killed it", (int)pid);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int producer_main(void *arg, int ready)
{
    struct producer *pa = arg;
    if (pa->inherited && dagger_edge_close(pa->inherited) < 0)
        return 9;
    dagger_edge_t *e;
    if (dagger_edge_open(&e, pa->uri, DAGGER_EDGE_PUSH) < 0) {
        fprintf(stderr, "child: open %s: %s\n", pa->uri, dagger_edge_errmsg(NULL));
        return 10;
    }
    char c = 1;
    if (write(ready, &c, 1) != 1)
        return 11;
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = pa->threads;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o) < 0)
        return 12;
    dagger_stream_opts_t so;
    dagger_stream_opts_init(&so);
    so.max_evals = pa->n > 0 ? pa->n : -1;
    dagger_stream_t *s;
    if (dagger_stream_begin(ctx, &so, &s) < 0)
        return 13;
    struct src xs = {0, 3, 1, {0}};
    dagger_task_t *x = dagger_spawn(ctx, src_i64, (void *)&xs);
    so.max_evals = -1;
    so.buffer = pa->buffer;
    if (dagger_stream_set_opts(s, &so) < 0)
        return 14;
    dagger_task_t *k = dagger_stream_spawn_edge_sink(s, e, x);
    if (!k || dagger_stream_end(s) < 0)
        return 15;
    int64_t count = -1;
    int rc = dagger_fetch_i64(k, &count);
    if (rc < 0) {
        fprintf(stderr, "child: sink: %s: %s\n", dagger_err_name(rc), dagger_task_errmsg(k));
        return 16;
    }
    /* An endless source is torn down when the sink ends (its consumer closed the edge). */
    rc = dagger_fetch(x, NULL);
    if (rc < 0 && !(pa->n <= 0 && rc == DAGGER_ECANCELED))
        return 17;
    if (pa->sent > 0 && count != pa->sent) {
        fprintf(stderr, "child: the sink pushed %lld values, expected %lld\n", (long long)count,
                (long long)pa->sent);
        return 18;
    }
    dagger_task_release(x);
    dagger_task_release(k);
    return dagger_ctx_close(ctx) < 0 ? 19 : 0;
}

/* The consumer's A: value k must be (k * 3 + 1) + 1; kills `victim` after `kill_at` values. */
struct checker {
    int64_t n, bad, first_bad, got_bad;
    pid_t victim;
    int64_t kill_at;
    double killed_at;
};

static int check_sink(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct checker *c = dagger_arg_ptr(a, 0);
    int64_t v = dagger_arg_i64(a, 1);
    if (v != c->n * 3 + 2 && c->bad++ == 0) {
        c->first_bad = c->n;
        c->got_bad = v;
    }
    c->n++;
    if (c->victim > 0 && c->n == c->kill_at) {
        kill(c->victim, SIGKILL);
        c->killed_at = now_ms();
    }
    return 0;
}

/* Parent: edge source -> y (add1) -> A (check_sink). Returns the source's fetch code. */
static int consume_region(dagger_edge_t *e, int threads, long buffer, int64_t a_evals,
                          struct checker *chk, int64_t *count, char *msg, size_t msgcap)
{
    dagger_ctx_t *ctx = test_ctx(threads);
    dagger_stream_t *s = begin(ctx, buffer, -1, true);
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, e);
    ASSERT_PTR(src);
    dagger_task_t *y = dagger_spawn(ctx, add1, src);
    set_evals(s, buffer, a_evals, true);
    dagger_task_t *A = dagger_spawn(ctx, check_sink, (void *)chk, y);
    ASSERT_OK(dagger_stream_end(s));
    await_task(src, "the edge source");
    await_task(A, "the region's sink");
    int rc = dagger_fetch_i64(src, count);
    if (rc == 0) {
        expect_nil(y);
        expect_nil(A);
    } else {
        ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_EUPSTREAM);
        ASSERT_STR_HAS(dagger_task_errmsg(A), dagger_task_errmsg(src));
    }
    snprintf(msg, msgcap, "%s", dagger_task_errmsg(src));
    dagger_task_release(src);
    dagger_task_release(y);
    dagger_task_release(A);
    ASSERT_OK(dagger_ctx_close(ctx));
    return rc;
}

static void shm_uri(char *buf, size_t cap, const char *tag, int threads)
{
    snprintf(buf, cap, "shm:/dagger-stest-%d-%s-%d?secret=s3", (int)getpid(), tag, threads);
}

static void edge_in_order(bool tcp, int threads, long buffer)
{
    long n = edge_n();
    struct producer pa = {.threads = threads, .buffer = buffer, .n = n, .sent = n};
    dagger_edge_t *e = NULL;
    if (tcp) {
        ASSERT_OK(dagger_edge_open(&e, "tcp://127.0.0.1:0?role=listen&secret=s3", DAGGER_EDGE_POP));
        const char *port = strrchr(dagger_edge_uri(e), ':');
        ASSERT_PTR(port);
        snprintf(pa.uri, sizeof pa.uri, "tcp://127.0.0.1:%d?secret=s3", atoi(port + 1));
        pa.inherited = e;
    } else {
        shm_uri(pa.uri, sizeof pa.uri, "order", threads);
    }
    int ready;
    pid_t pid = fork_child(producer_main, &pa, &ready);
    char c;
    ASSERT_EQ(read(ready, &c, 1), 1);
    if (!tcp)
        ASSERT_OK(dagger_edge_open(&e, pa.uri, DAGGER_EDGE_POP));
    struct checker chk = {0};
    int64_t count = -1;
    char msg[512];
    double t0 = now_ms();
    int rc = consume_region(e, threads, buffer, -1, &chk, &count, msg, sizeof msg);
    if (rc)
        fail_msg("source: %s: %s", dagger_err_name(rc), msg);
    printf("%s, %d thread(s), buffer %ld: %ld values in %.0f ms\n", tcp ? "tcp" : "shm", threads,
           buffer, n, now_ms() - t0);
    ASSERT_EQ(count, n);
    ASSERT_EQ(chk.n, n);
    if (chk.bad)
        fail_msg("%lld values out of order, the first at %lld (%lld)", (long long)chk.bad,
                 (long long)chk.first_bad, (long long)chk.got_bad);
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

TEST(edge_shm_region_in_order)
{
    edge_in_order(false, 1, 1);
    edge_in_order(false, 4, 64);
}

TEST(edge_tcp_region_in_order)
{
    edge_in_order(true, 1, 1);
    edge_in_order(true, 4, 64);
}

static void edge_killed_producer(bool tcp, int threads)
{
    struct producer pa = {.threads = threads, .buffer = 16, .n = -1};
    dagger_edge_t *e = NULL;
    if (tcp) {
        ASSERT_OK(dagger_edge_open(&e, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP));
        const char *port = strrchr(dagger_edge_uri(e), ':');
        snprintf(pa.uri, sizeof pa.uri, "tcp://127.0.0.1:%d", atoi(port + 1));
        pa.inherited = e;
    } else {
        /* A small ring: what the producer committed before it died is still delivered first. */
        shm_uri(pa.uri, sizeof pa.uri, "kill", threads);
        strncat(pa.uri, "&cap=65536", sizeof pa.uri - strlen(pa.uri) - 1);
    }
    int ready;
    pid_t pid = fork_child(producer_main, &pa, &ready);
    char c;
    ASSERT_EQ(read(ready, &c, 1), 1);
    if (!tcp)
        ASSERT_OK(dagger_edge_open(&e, pa.uri, DAGGER_EDGE_POP));
    struct checker chk = {.victim = pid, .kill_at = 1000};
    int64_t count = -1;
    char msg[512];
    int rc = consume_region(e, threads, 64, -1, &chk, &count, msg, sizeof msg);
    double dt = now_ms() - chk.killed_at;
    ASSERT_ERR(rc, DAGGER_EPEER);
    /* TCP: the kill lands between frames ("went away") or inside one, a batch of up to 64 KiB
     * ("connection closed inside a frame (N of M bytes)"); both name the peer's end. */
    if (tcp && !strstr(msg, "went away"))
        ASSERT_STR_HAS(msg, "connection closed inside a frame");
    else
        ASSERT_STR_HAS(msg, tcp ? "went away" : "died");
    printf("%s: DAGGER_EPEER %.0f ms after the kill, %lld values taken\n", tcp ? "tcp" : "shm", dt,
           (long long)chk.n);
    ASSERT_TRUE(chk.n >= 1000);
    ASSERT_EQ(chk.bad, 0);
    ASSERT_TRUE(dt < 10000); /* bounded: the shm probe slice is 20 ms, TCP sees EOF at once */
    ASSERT_EQ(child_status(pid), 128 + SIGKILL);
    close(ready);
}

TEST(edge_killed_producer_is_epeer)
{
    edge_killed_producer(false, 1);
    edge_killed_producer(false, 4);
    edge_killed_producer(true, 1);
}

TEST(edge_consumer_ends_first)
{
    /* A stops after 500 values: teardown stops the source, which closes its edge; the
     * producer's sink sees DAGGER_ECLOSED and its region ends cleanly. */
    struct producer pa = {.threads = 1, .buffer = 8, .n = -1};
    shm_uri(pa.uri, sizeof pa.uri, "early", 1);
    int ready;
    pid_t pid = fork_child(producer_main, &pa, &ready);
    char c;
    ASSERT_EQ(read(ready, &c, 1), 1);
    dagger_edge_t *e;
    ASSERT_OK(dagger_edge_open(&e, pa.uri, DAGGER_EDGE_POP));
    struct checker chk = {0};
    int64_t count = -1;
    char msg[512];
    ASSERT_OK(consume_region(e, 2, 4, 500, &chk, &count, msg, sizeof msg));
    ASSERT_EQ(chk.n, 500);
    ASSERT_EQ(chk.bad, 0);
    ASSERT_TRUE(count >= 500);
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

TEST(edge_wrong_end_fails_region)
{
    dagger_edge_t *e;
    ASSERT_OK(dagger_edge_open(&e, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_PUSH));
    dagger_ctx_t *ctx = test_ctx(1);
    struct rec *r = rec_new();
    dagger_stream_t *s = begin(ctx, 1, -1, true);
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, e);
    dagger_task_t *A = dagger_spawn(ctx, sink, (void *)r, src);
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_ERR(dagger_fetch(src, NULL), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(src), "producer end");
    ASSERT_ERR(dagger_fetch(A, NULL), DAGGER_EUPSTREAM);
    ASSERT_EQ(atomic_load(&r->n), 0);
    /* A closed region is refused; the edge is consumed all the same. */
    dagger_edge_t *e2;
    ASSERT_OK(dagger_edge_open(&e2, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP));
    ASSERT_NULL(dagger_stream_spawn_edge_source(NULL, e2));
    dagger_task_release(src);
    dagger_task_release(A);
    free(r);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(x_to_A, independent_x_A, x_to_y_to_A, x_to_y_and_A, x_y_to_A, x_y_to_z_to_A,
          x_to_y_z_to_A, x_y_to_z_to_A_B, seed_example_random_to_file, element_kinds_preserved,
          oversized_value_fails_region, non_streaming_inputs_reused,
          non_streaming_consumer_gets_final_result, max_evals_1_and_100_and_0,
          buffer_capacity_must_be_positive, cancel_source_and_sink, cancel_before_region_ends,
          teardown_on_and_off, error_reaches_every_task, spawn_error_fails_region,
          failed_outside_input_fails_region, zero_allocations_per_value,
          callback_form_and_streaming_query, finish_stream_outside_streaming_task,
          region_inside_a_task, edge_shm_region_in_order, edge_tcp_region_in_order,
          edge_killed_producer_is_epeer, edge_consumer_ends_first, edge_wrong_end_fails_region)
