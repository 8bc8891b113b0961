/* tests/test_datadeps_chunks.c - whole-chunk datadeps accesses (dagger_ddchunk) in one process:
 * mutable data pinned to threads and to the worker, reads of another thread's data copied by
 * version, the result equal to sequential execution, and refused accesses. The same accesses
 * across ranks are tests/test_mpi_datadeps.c.
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>

#include "dagger/chunk.h"
#include "dagger/datadeps.h"
#include "harness.h"

enum { NVARS = 8, NOPS = 300, NTHREADS = 4 };
#define MOD 1000000007ll

static int make_var(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t v = dagger_arg_i64(a, 0);
    *out = dagger_blob_copy(tc, &v, sizeof v);
    return 0;
}

static int64_t step(int64_t w, int64_t r1, int64_t r2, int64_t i)
{
    return (w * 3 + r1 + 2 * r2 + i) % MOD;
}

/* x[w] = step(x[w], x[r1], x[r2], i); returns the thread it ran on. */
static int op(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *w = dagger_arg_buf(a, 0, NULL);
    const int64_t *r1 = dagger_arg_buf(a, 1, NULL), *r2 = dagger_arg_buf(a, 2, NULL);
    if (!w || !r1 || !r2)
        return DAGGER_ETYPE;
    *w = step(*w, *r1, *r2, dagger_arg_i64(a, 3));
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

static int read_var(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    const int64_t *v = dagger_arg_buf(a, 0, NULL);
    if (!v)
        return DAGGER_ETYPE;
    *out = dagger_i64(*v);
    return 0;
}

TEST(random_program_equals_sequential)
{
    dagger_ctx_t *ctx = test_ctx(NTHREADS);
    unsigned seed = (unsigned)test_seed();
    int64_t seq[NVARS];
    dagger_chunk_t *var[NVARS];
    for (int k = 0; k < NVARS; k++) {
        /* even: pinned to thread k/2 mod T; odd: data of the worker (any thread) */
        dagger_scope_t *w =
            k % 2 == 0 ? dagger_scope_thread(k / 2 % NTHREADS) : dagger_scope_worker(0);
        seq[k] = k + 1;
        ASSERT_OK(
            dagger_mutable(ctx, w, make_var, (dagger_value_t[]){dagger_i64(k + 1)}, 1, &var[k]));
        dagger_scope_release(w);
        dagger_proc_t p;
        ASSERT_TRUE(dagger_chunk_is_mutable(var[k], &p));
        ASSERT_EQ(p.index, k % 2 == 0 ? k / 2 % NTHREADS : -1);
    }
    int w[NOPS], r1[NOPS], r2[NOPS];
    for (int i = 0; i < NOPS; i++) {
        w[i] = rand_r(&seed) % NVARS;
        r1[i] = rand_r(&seed) % NVARS;
        r2[i] = rand_r(&seed) % NVARS;
        seq[w[i]] = step(seq[w[i]], seq[r1[i]], seq[r2[i]], i);
    }
    dagger_task_t *ts[NOPS];
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    for (int i = 0; i < NOPS; i++)
        ts[i] = dagger_datadeps_spawn(dd, op, dagger_ddchunk(DAGGER_ACCESS_INOUT, var[w[i]]),
                                      dagger_ddchunk(DAGGER_ACCESS_IN, var[r1[i]]),
                                      dagger_ddchunk(DAGGER_ACCESS_IN, var[r2[i]]),
                                      dagger_ddval(dagger_i64(i)));
    ASSERT_OK(dagger_datadeps_end(dd));
    for (int i = 0; i < NOPS; i++) {
        int64_t th;
        ASSERT_OK(dagger_fetch_i64(ts[i], &th));
        if (w[i] % 2 == 0) /* it ran on the thread of the data it writes */
            ASSERT_EQ(th, w[i] / 2 % NTHREADS);
        dagger_task_release(ts[i]);
    }
    for (int k = 0; k < NVARS; k++) {
        dagger_task_t *t = dagger_spawn(ctx, read_var, var[k]);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, seq[k]);
        dagger_task_release(t);
        dagger_chunk_release(var[k]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(chunk_access_errors)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_chunk_t *plain, *m;
    ASSERT_OK(dagger_chunk_create(ctx, 8, &plain));
    ASSERT_OK(dagger_mutable(ctx, NULL, make_var, (dagger_value_t[]){dagger_i64(1)}, 1, &m));
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    dagger_task_t *t1 = dagger_datadeps_spawn(dd, op, dagger_ddchunk(DAGGER_ACCESS_OUT, plain),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, m),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, m), 0);
    dagger_ddarg_t bad = dagger_ddchunk(DAGGER_ACCESS_COMMUTE, m);
    dagger_task_t *t2 = dagger_datadeps_spawn(dd, op, bad, dagger_ddchunk(DAGGER_ACCESS_IN, m),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, m), 0);
    dagger_ddarg_t notchunk = dagger_ddchunk(DAGGER_ACCESS_IN, m);
    notchunk.value = dagger_i64(3);
    dagger_task_t *t3 = dagger_datadeps_spawn(dd, op, dagger_ddchunk(DAGGER_ACCESS_INOUT, m),
                                              notchunk, dagger_ddchunk(DAGGER_ACCESS_IN, m), 0);
    /* Plain data read as a whole chunk moves to the task as usual. */
    dagger_task_t *t4 = dagger_datadeps_spawn(dd, op, dagger_ddchunk(DAGGER_ACCESS_INOUT, m),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, plain),
                                              dagger_ddchunk(DAGGER_ACCESS_IN, m), 5);
    ASSERT_ERR(dagger_datadeps_end(dd), DAGGER_EINVAL);
    ASSERT_ERR(dagger_task_error(t1), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t1), "argument 1: chunk");
    ASSERT_STR_HAS(dagger_task_errmsg(t1), "is written but is not mutable data");
    ASSERT_ERR(dagger_task_error(t2), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t2), "a chunk access is In, Out or InOut");
    ASSERT_ERR(dagger_task_error(t3), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_task_errmsg(t3), "argument 2: a chunk access needs a chunk value, not");
    ASSERT_OK(dagger_task_error(t4));
    dagger_task_t *rd = dagger_spawn(ctx, read_var, m);
    int64_t v;
    ASSERT_OK(dagger_fetch_i64(rd, &v));
    ASSERT_EQ(v, step(1, 0, 1, 5));
    dagger_task_release(rd);
    dagger_task_release(t1);
    dagger_task_release(t2);
    dagger_task_release(t3);
    dagger_task_release(t4);
    dagger_chunk_release(plain);
    dagger_chunk_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(random_program_equals_sequential, chunk_access_errors)
