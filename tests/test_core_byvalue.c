/* tests/test_core_byvalue.c - results taken by value (issue 17, src/core/task.c,
 * result_by_value).
 *
 * A dependent spawned without options takes a successful scalar result of its input (nil,
 * bool, i64, f64, ptr) by value when the input completes, or at its spawn when the input is
 * done already: it keeps no reference on that input, so the input's record goes with its last
 * handle even while the dependent still waits for another input. A string result, and a failed
 * input, are still held until the dependent completes (the string is borrowed by its body, the
 * failure's chain names the input). The cases read the input's reference count while the
 * dependent is held back by a gate task, and check the values and errors the dependent gets.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core_int.h"
#include "dagger/trace.h"
#include "harness.h"

enum { MAKE_I64, MAKE_F64, MAKE_STR, MAKE_FAIL };

/* The input: 41, 0.5, "kept" or a failure, by its argument. */
static int make(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    switch (dagger_arg_i64(a, 0)) {
    case MAKE_I64:
        *out = dagger_i64(41);
        return 0;
    case MAKE_F64:
        *out = dagger_f64(0.5);
        return 0;
    case MAKE_STR:
        *out = dagger_str_copy(tc, "kept");
        return 0;
    default:
        return dagger_fail(tc, DAGGER_ETASK, "the input broke");
    }
}

/* i64 + i64, or f64 + i64, or strlen(str) + i64 */
static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const dagger_value_t *v = dagger_arg(a, 0);
    int64_t b = dagger_arg_i64(a, 1);
    if (v->kind == DAGGER_KIND_F64)
        *out = dagger_f64(v->u.f + (double)b);
    else if (v->kind == DAGGER_KIND_STR)
        *out = dagger_i64((int64_t)strlen(v->u.s) + b);
    else
        *out = dagger_i64(dagger_arg_i64(a, 0) + b);
    return 0;
}

/* What the handles and the dependents hold on `t`: its count less the marks of its waiter word
 * (handles released before its end) and, once its completion left the runtime's reference to the
 * handles (an abandoned close: src/core/core_int.h), that reference. */
static uint32_t refs_of(dagger_task_t *t)
{
    struct dagger__waiter *h = atomic_load(&t->waiters.head);
    uint32_t r = atomic_load(&t->refs) - dagger__ev_marks(h);
    return dagger__ev_closed(h) && ((uintptr_t)h & EV_ABANDONED) ? r - 1 : r;
}

/* The input's count once the runtime's own reference is gone (the completion drops it just
 * after it wakes the waiters, so a count read at once may still hold it): polled down to `want`
 * for at most 5 s, then read again after 2 ms more. */
static uint32_t settled_refs(dagger_task_t *t, uint32_t want)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (refs_of(t) <= want)
            break;
        usleep(20);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - t0.tv_sec < 5);
    usleep(2000);
    return refs_of(t);
}

static char errmsg[512]; /* the dependent's, from held_refs */

/* The harness's gate (tests/harness.h) as an input: closed again here, opened by
 * test_gate_unblock; its result is 0 (1 when it opened by itself after TEST_GATE_TIMEOUT_S, which
 * then shows in the values the cases check). */
static dagger_task_t *gate_closed(dagger_ctx_t *ctx)
{
    atomic_store(&test_gate_state()->open, 0);
    return dagger_spawn(ctx, test_gate_fn);
}

/* Spawn `in` (done before or after the dependent's spawn), then add(in, gate) with the gate
 * closed (`what`: the input's result, MAKE_*); returns the input's reference count once it is done
 * (and settled towards `want`) and the dependent still waits, and the dependent's result and code
 * in *out and *rc. */
static uint32_t held_refs(int what, bool done_first, uint32_t want, dagger_value_t *out, int *rc)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *g = gate_closed(ctx);
    dagger_task_t *in = dagger_spawn(ctx, make, (int64_t)what);
    if (done_first)
        (void)dagger_wait(in);
    dagger_task_t *dep = dagger_spawn(ctx, add, in, g);
    (void)dagger_wait(in);
    ASSERT_FALSE(dagger_task_done(dep)); /* the gate holds it */
    uint32_t refs = settled_refs(in, want);
    ASSERT_FALSE(dagger_task_done(dep));
    dagger_task_release(in); /* the dependent must not need this handle */
    test_gate_unblock();
    *rc = dagger_fetch(dep, out);
    snprintf(errmsg, sizeof errmsg, "%s", dagger_task_errmsg(dep));
    dagger_task_release(dep);
    dagger_task_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
    return refs;
}

TEST(scalar_results_are_taken_by_value_and_the_input_is_not_held)
{
    for (int first = 0; first < 2; first++) {
        dagger_value_t v;
        int rc;
        /* Our handle only: neither the completion (first = 0) nor the spawn (first = 1) took a
         * reference for the dependent. */
        ASSERT_EQ(held_refs(MAKE_I64, first, 1, &v, &rc), 1);
        ASSERT_OK(rc);
        ASSERT_EQ(v.kind, DAGGER_KIND_I64);
        ASSERT_EQ(v.u.i, 41);
        ASSERT_EQ(held_refs(MAKE_F64, first, 1, &v, &rc), 1);
        ASSERT_OK(rc);
        ASSERT_EQ(v.kind, DAGGER_KIND_F64);
        ASSERT_TRUE(v.u.f == 0.5);
    }
}

TEST(string_results_keep_their_input_until_the_dependent_completes)
{
    for (int first = 0; first < 2; first++) {
        dagger_value_t v;
        int rc;
        ASSERT_EQ(held_refs(MAKE_STR, first, 2, &v, &rc), 2); /* ours and the dependent's */
        ASSERT_OK(rc);
        ASSERT_EQ(v.u.i, 4); /* strlen("kept"): the string was still there */
    }
}

TEST(failed_inputs_are_held_and_named_by_the_dependent)
{
    for (int first = 0; first < 2; first++) {
        dagger_value_t v = dagger_nil();
        int rc;
        ASSERT_EQ(held_refs(MAKE_FAIL, first, 2, &v, &rc), 2);
        ASSERT_EQ(rc, DAGGER_EUPSTREAM);
        ASSERT_STR_HAS(errmsg, "the input broke");
    }
}

/* Many dependents of one scalar input, some spawned before it completes and some after, all
 * held back by the gate (their second input): every one gets the value, none holds the input
 * meanwhile, and the input goes with its handle. */
TEST(many_dependents_share_a_scalar_input)
{
    dagger_ctx_t *ctx = test_ctx(2);
    enum { N = 64 };
    dagger_task_t *dep[N];
    dagger_task_t *g = gate_closed(ctx);
    dagger_task_t *in = dagger_spawn(ctx, make, (int64_t)MAKE_I64);
    for (int i = 0; i < N; i++) {
        if (i == N / 2)
            (void)dagger_wait(in);
        dep[i] = dagger_spawn(ctx, add, in, g);
    }
    (void)dagger_wait(in);
    ASSERT_EQ(settled_refs(in, 1), 1); /* ours only, while all N still wait for the gate */
    ASSERT_FALSE(dagger_task_done(dep[0]));
    dagger_task_release(in);
    test_gate_unblock();
    for (int i = 0; i < N; i++) {
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(dep[i], &v));
        ASSERT_EQ(v, 41);
        dagger_task_release(dep[i]);
    }
    dagger_task_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The input's last handle goes before it completes, with dependents registered: it completes
 * holding only the runtime's reference (its waiter list closes without an exchange) and serves
 * them by value (i64) or by reference (a string). */
TEST(dependents_of_an_input_released_before_it_completes)
{
    for (int what = MAKE_I64; what <= MAKE_STR; what += MAKE_STR - MAKE_I64) {
        dagger_ctx_t *ctx = test_ctx(2);
        enum { N = 8 };
        dagger_task_t *g = gate_closed(ctx);
        dagger_task_t *in = dagger_spawn(ctx, make, (int64_t)what, g); /* waits for the gate */
        dagger_task_t *dep[N];
        for (int i = 0; i < N; i++)
            dep[i] = dagger_spawn(ctx, add, in, (int64_t)i);
        dagger_task_release(in);
        dagger_task_release(g);
        test_gate_unblock();
        for (int i = 0; i < N; i++) {
            int64_t v = 0;
            ASSERT_OK(dagger_fetch_i64(dep[i], &v));
            ASSERT_EQ(v, (what == MAKE_I64 ? 41 : 4) + i);
            dagger_task_release(dep[i]);
        }
        ASSERT_OK(dagger_ctx_close(ctx)); /* no handle left, none leaked */
    }
}

/* An input done by the dependent's spawn, with a scalar result, is that value from the spawn on
 * (take_args_fast): the dependent records no input for it (ndeps counts the gate alone) and gets
 * the value. A failed input and a string result are still inputs, and so is a done scalar one
 * while tracing, so that the trace keeps its edge. */
TEST(an_input_done_by_the_spawn_is_its_value_from_the_spawn_on)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int traced = 0; traced < 2; traced++) {
        if (traced)
            ASSERT_OK(dagger_trace_start(ctx));
        dagger_task_t *g = gate_closed(ctx);
        dagger_task_t *in[3] = {dagger_spawn(ctx, make, (int64_t)MAKE_I64),
                                dagger_spawn(ctx, make, (int64_t)MAKE_STR),
                                dagger_spawn(ctx, make, (int64_t)MAKE_FAIL)};
        for (int k = 0; k < 3; k++)
            (void)dagger_wait(in[k]);
        dagger_task_t *dep[3];
        for (int k = 0; k < 3; k++)
            dep[k] = dagger_spawn(ctx, add, in[k], g);
        for (int k = 0; k < 3; k++)
            ASSERT_FALSE(dagger_task_done(dep[k])); /* the gate holds each */
        /* by value at the spawn: the gate is its only input (untraced) */
        ASSERT_EQ(dep[0]->ndeps, traced ? 2u : 1u);
        if (!traced) {
            ASSERT_EQ(dep[0]->args[0].kind, DAGGER_KIND_I64);
            ASSERT_EQ(dep[0]->args[0].u.i, 41);
        }
        ASSERT_EQ(dep[1]->ndeps, 2u); /* a string result: still an input */
        ASSERT_EQ(dep[2]->ndeps, 2u); /* a failed input: still an input */
        test_gate_unblock();
        int64_t v = 0;
        ASSERT_OK(dagger_fetch_i64(dep[0], &v));
        ASSERT_EQ(v, 41);
        ASSERT_OK(dagger_fetch_i64(dep[1], &v));
        ASSERT_EQ(v, 4);
        ASSERT_EQ(dagger_fetch_i64(dep[2], &v), DAGGER_EUPSTREAM);
        ASSERT_STR_HAS(dagger_task_errmsg(dep[2]), "the input broke");
        if (traced) {
            dagger_trace_stats_t st;
            ASSERT_OK(dagger_trace_stats(ctx, &st));
            ASSERT_TRUE(st.edges >= 6); /* each dependent's two inputs */
            ASSERT_OK(dagger_trace_stop(ctx));
        }
        for (int k = 0; k < 3; k++) {
            dagger_task_release(dep[k]);
            dagger_task_release(in[k]);
        }
        dagger_task_release(g);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(scalar_results_are_taken_by_value_and_the_input_is_not_held,
          string_results_keep_their_input_until_the_dependent_completes,
          failed_inputs_are_held_and_named_by_the_dependent, many_dependents_share_a_scalar_input,
          dependents_of_an_input_released_before_it_completes,
          an_input_done_by_the_spawn_is_its_value_from_the_spawn_on)
