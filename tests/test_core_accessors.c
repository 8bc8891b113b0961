/* tests/test_core_accessors.c - the argument accessors' common case inline (include/dagger.h,
 * issue 17): each reads what the function reads, for every kind, for an input's result, and a
 * wrong kind or index still fails the task with the function's message. The same body built
 * with DAGGER_NO_INLINE_ACCESSORS (tests/test_core_accessors_calls.c) gives the same result.
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

int accessors_by_call(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out);

#ifndef dagger_arg_i64
#error "the accessors are not inline in a 64-bit build"
#endif

/* (bool, i64, f64, str, ptr to the context): each accessor inline and as a call (the name in
 * parentheses), compared; the sum of the values. */
static int every_kind(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    if (dagger_args_count(a) != (dagger_args_count)(a) || dagger_args_count(a) != 5)
        return dagger_fail(tc, DAGGER_ETASK, "count %zu", dagger_args_count(a));
    if (dagger_tc_ctx(tc) != (dagger_tc_ctx)(tc) ||
        dagger_arg_ptr(a, 4) != (void *)dagger_tc_ctx(tc))
        return dagger_fail(tc, DAGGER_ETASK, "the context differs");
    bool b = dagger_arg_bool(a, 0);
    int64_t i = dagger_arg_i64(a, 1);
    double f = dagger_arg_f64(a, 2);
    const char *s = dagger_arg_str(a, 3);
    if (b != (dagger_arg_bool)(a, 0) || i != (dagger_arg_i64)(a, 1) ||
        f != (dagger_arg_f64)(a, 2) || s != (dagger_arg_str)(a, 3) ||
        dagger_arg_ptr(a, 4) != (dagger_arg_ptr)(a, 4))
        return dagger_fail(tc, DAGGER_ETASK, "an inline accessor differs from its function");
    *out = dagger_i64((b ? 1000 : 0) + i + (int64_t)(f * 10) + (int64_t)(s ? s[0] : 0));
    return 0;
}

TEST(every_kind_reads_the_same_inline_and_by_call)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int by_call = 0; by_call < 2; by_call++) {
        dagger_fn_t fn = by_call ? accessors_by_call : every_kind;
        dagger_task_t *t = dagger_spawn(ctx, fn, (_Bool)1, (int64_t)-7, 2.5, "A", (void *)ctx);
        ASSERT_PTR(t);
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(t, &v));
        ASSERT_EQ(v, 1000 - 7 + 25 + 'A');
        dagger_task_release(t);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int twice(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(2 * dagger_arg_i64(a, 0));
    return 0;
}

/* A task's input is read as its result, and an i64 as a f64 (through the function). */
static int input_and_widening(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_f64((double)dagger_arg_i64(a, 0) + dagger_arg_f64(a, 1));
    return 0;
}

TEST(inputs_and_widened_integers_read_as_values)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int64_t k = 0; k < 200; k++) {
        dagger_task_t *x = dagger_spawn(ctx, twice, k);
        dagger_task_t *y = dagger_spawn(ctx, input_and_widening, x, (int64_t)3);
        dagger_task_release(x);
        double d = 0;
        ASSERT_OK(dagger_fetch_f64(y, &d));
        ASSERT_TRUE(d == (double)(2 * k + 3));
        dagger_task_release(y);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int want_i64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

static int want_ptr_at_3(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    *out = dagger_ptr(dagger_arg_ptr(a, 3));
    return 0;
}

TEST(a_wrong_kind_or_index_fails_the_task_with_the_functions_message)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, want_i64, "text");
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "argument 0 is a str, not a i64");
    dagger_task_t *u = dagger_spawn(ctx, want_ptr_at_3, (int64_t)1);
    ASSERT_ERR(dagger_fetch(u, NULL), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_task_errmsg(u),
                   "argument 3 requested as ptr, but the task has 1 argument");
    dagger_task_release(t);
    dagger_task_release(u);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(every_kind_reads_the_same_inline_and_by_call, inputs_and_widened_integers_read_as_values,
          a_wrong_kind_or_index_fails_the_task_with_the_functions_message);
