/* examples/02_errors.c - a failing task, the tasks downstream of it, and their messages.
 *
 * parse("12x") fails with dagger_fail. Nothing downstream of it runs: add(parse, parse) and
 * scale(add) complete with DAGGER_EUPSTREAM and a message that names the input that failed,
 * the root task and its message, and the chain of task ids back to the root. dagger_wait never
 * reports the error; dagger_fetch does. A bad option is a spawn-time error: the task comes back
 * already failed and the error shows at fetch, like any other.
 * Exit status: 0 when every code and message is the expected one.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* parse(text) -> i64, or fail with DAGGER_EINVAL. */
static int parse(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const char *s = dagger_arg_str(a, 0);
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0')
        return dagger_fail(tc, DAGGER_EINVAL, "'%s' is not a number", s);
    *out = dagger_i64(v);
    return 0;
}

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0) + dagger_arg_i64(a, 1));
    return 0;
}

static int scale(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_f64(dagger_arg_f64(a, 0) * dagger_arg_f64(a, 1));
    return 0;
}

static int failures;

static void expect_rc(const char *what, int got, int want)
{
    printf("  %-24s -> %s\n", what, dagger_err_name(got));
    if (got != want) {
        fprintf(stderr, "FAIL: %s returned %s, expected %s\n", what, dagger_err_name(got),
                dagger_err_name(want));
        failures++;
    }
}

static void expect_msg(const char *what, const char *got, const char *want)
{
    printf("  %s: %s\n", what, got);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "FAIL: %s\n   got: %s\n  want: %s\n", what, got, want);
        failures++;
    }
}

static unsigned long long id(const dagger_task_t *t)
{
    return (unsigned long long)dagger_task_id(t);
}

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0) {
        fprintf(stderr, "dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }

    /* A chain: scale(add(parse("12x"), parse("30")), 2). */
    dagger_task_t *p1 = dagger_spawn(ctx, parse, "12x");
    dagger_task_t *p2 = dagger_spawn(ctx, parse, "30");
    dagger_task_t *sum = dagger_spawn(ctx, add, p1, p2);
    dagger_task_t *res = dagger_spawn(ctx, scale, sum, 2.0);

    printf("codes:\n");
    expect_rc("dagger_wait(res)", dagger_wait(res), 0); /* waits, never reports the error */
    double r = -1;
    expect_rc("dagger_fetch_f64(res)", dagger_fetch_f64(res, &r), DAGGER_EUPSTREAM);
    if (r != -1) { /* the output is untouched on error */
        fprintf(stderr, "FAIL: fetch wrote %g on error\n", r);
        failures++;
    }
    int64_t v = 0;
    expect_rc("dagger_fetch_i64(p2)", dagger_fetch_i64(p2, &v), 0); /* the sibling succeeded */
    expect_rc("dagger_fetch(p1)", dagger_fetch(p1, NULL), DAGGER_EINVAL);
    expect_rc("dagger_task_error(sum)", dagger_task_error(sum), DAGGER_EUPSTREAM);

    /* The messages, as the runtime builds them: the root says what failed; a direct dependent
     * names its input and the root; further down the root cause and the chain of ids. */
    char want[512];
    printf("messages:\n");
    snprintf(want, sizeof want, "task %llu 'parse': '12x' is not a number", id(p1));
    expect_msg("p1 ", dagger_task_errmsg(p1), want);
    snprintf(want, sizeof want,
             "task %llu 'add': input 0 (task %llu 'parse') failed: '12x' is not a number", id(sum),
             id(p1));
    expect_msg("sum", dagger_task_errmsg(sum), want);
    snprintf(want, sizeof want,
             "task %llu 'scale': input 0 (task %llu 'add') failed; root cause: task %llu "
             "'parse': '12x' is not a number (chain: %llu <- %llu <- %llu)",
             id(res), id(sum), id(p1), id(res), id(sum), id(p1));
    expect_msg("res", dagger_task_errmsg(res), want);
    expect_msg("p2 ", dagger_task_errmsg(p2), ""); /* "" for a task that succeeded */
    /* A failed fetch also leaves the message in dagger_last_errmsg. */
    if (dagger_fetch(res, NULL) != DAGGER_EUPSTREAM ||
        strcmp(dagger_last_errmsg(), dagger_task_errmsg(res)) != 0) {
        fprintf(stderr, "FAIL: dagger_last_errmsg after a failed fetch\n");
        failures++;
    }

    /* A spawn-time error: occupancy must be within 0..1. The task is returned already failed. */
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "too-busy";
    o.occupancy = 2.0;
    dagger_task_t *bad = dagger_spawn_opts(ctx, &o, add, 1, 2);
    printf("spawn-time error:\n");
    expect_rc("dagger_fetch(bad)", dagger_fetch(bad, NULL), DAGGER_EINVAL);
    snprintf(want, sizeof want,
             "task %llu 'too-busy': occupancy 2 is out of range: it must be within 0..1", id(bad));
    expect_msg("bad", dagger_task_errmsg(bad), want);

    dagger_task_release(p1);
    dagger_task_release(p2);
    dagger_task_release(sum);
    dagger_task_release(res);
    dagger_task_release(bad);
    if (dagger_ctx_close(ctx) != 0) {
        fprintf(stderr, "dagger_ctx_close: %s\n", dagger_last_errmsg());
        return 1;
    }
    printf(failures ? "%d unexpected result(s)\n" : "all as expected\n", failures);
    return failures ? 1 : 0;
}
