/* tests/test_core_record.c - the task record's storage (issue 17 item 1).
 *
 * A record keeps 128 bytes for its arguments (from the front) and inputs (from the back) and
 * moves what does not fit to the heap; rarely used fields live in an extension record made on
 * first use. These cases spawn every split of arguments, task inputs and syncdeps around that
 * boundary and check the values each body saw, and use the extension's fields (userdata, scratch
 * copies, a nested failure) together with heap storage.
 */
#include <string.h>

#include "harness.h"

static int one(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_arg_i64(a, 0));
    return 0;
}

/* sum of its arguments (task inputs arrive as their results) + 1000 * count */
static int sum(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t s = 0;
    size_t n = dagger_args_count(a);
    for (size_t i = 0; i < n; i++)
        s += dagger_arg_i64(a, i);
    *out = dagger_i64(s + 1000 * (int64_t)n);
    return 0;
}

TEST(every_split_of_arguments_inputs_and_syncdeps)
{
    dagger_ctx_t *ctx = test_ctx(2);
    for (int nargs = 0; nargs <= 7; nargs++) {
        for (int ntask = 0; ntask <= nargs; ntask++) {
            for (int nsync = 0; nsync <= 3; nsync++) {
                dagger_value_t argv[7];
                dagger_task_t *in[7] = {0}, *sync[3] = {0};
                int64_t want = 1000 * nargs;
                for (int i = 0; i < nargs; i++) {
                    int64_t v = 10 * i + nargs + 1;
                    want += v;
                    if (i < ntask) { /* the first ntask arguments are tasks */
                        in[i] = dagger_spawn(ctx, one, v);
                        ASSERT_PTR(in[i]);
                        argv[i] = dagger_taskv(in[i]);
                    } else {
                        argv[i] = dagger_i64(v);
                    }
                }
                for (int i = 0; i < nsync; i++) {
                    sync[i] = dagger_spawn(ctx, one, (int64_t)i);
                    ASSERT_PTR(sync[i]);
                }
                dagger_task_opts_t o;
                dagger_task_opts_init(&o);
                o.syncdeps = sync;
                o.nsyncdeps = (size_t)nsync;
                dagger_task_t *t = dagger_spawnv_opts(ctx, &o, sum, argv, (size_t)nargs);
                ASSERT_PTR(t);
                int64_t got = -1;
                ASSERT_OK(dagger_fetch_i64(t, &got));
                if (got != want)
                    fail_msg("nargs %d, task inputs %d, syncdeps %d: sum %lld, want %lld", nargs,
                             ntask, nsync, (long long)got, (long long)want);
                dagger_task_release(t);
                for (int i = 0; i < ntask; i++)
                    dagger_task_release(in[i]);
                for (int i = 0; i < nsync; i++)
                    dagger_task_release(sync[i]);
            }
        }
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* userdata, a scratch copy and nine arguments (heap storage: 9 * 16 + 32 > 128) in one task */
static int label(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const char *prefix = dagger_tc_userdata(tc);
    char buf[64];
    snprintf(buf, sizeof buf, "%s:%lld", prefix ? prefix : "(none)",
             (long long)(dagger_arg_i64(a, 0) + dagger_arg_i64(a, 8)));
    *out = dagger_str_copy(tc, buf);
    return 0;
}

TEST(userdata_scratch_copies_and_heap_arguments_together)
{
    dagger_ctx_t *ctx = test_ctx(1);
    static char prefix[] = "ud";
    dagger_task_t *two = dagger_spawn(ctx, one, (int64_t)2);
    dagger_value_t argv[9] = {dagger_i64(40), dagger_i64(0), dagger_taskv(two),
                              dagger_i64(0),  dagger_i64(0), dagger_i64(0),
                              dagger_i64(0),  dagger_i64(0), dagger_i64(2)};
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.userdata = prefix;
    dagger_task_t *t = dagger_spawnv_opts(ctx, &o, label, argv, 9);
    dagger_value_t v;
    ASSERT_OK(dagger_fetch(t, &v));
    ASSERT_STR_EQ(v.u.s, "ud:42");
    dagger_task_release(t);
    /* without userdata the body reads NULL */
    t = dagger_spawnv(ctx, label, argv, 9);
    ASSERT_OK(dagger_fetch(t, &v));
    ASSERT_STR_EQ(v.u.s, "(none):42");
    dagger_task_release(t);
    dagger_task_release(two);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int boom(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "boom %lld", (long long)dagger_arg_i64(a, 0));
}

/* fetches a failing child and returns its code: the failure chains to the child */
static int parent(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_task_t *c = dagger_spawn(dagger_tc_ctx(tc), boom, (int64_t)7);
    int rc = dagger_fetch(c, NULL);
    dagger_task_release(c);
    return rc;
}

TEST(a_nested_failure_names_the_child)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *t = dagger_spawn(ctx, parent);
    ASSERT_ERR(dagger_fetch(t, NULL), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "nested fetch");
    ASSERT_STR_HAS(dagger_task_errmsg(t), "boom 7");
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(every_split_of_arguments_inputs_and_syncdeps,
          userdata_scratch_copies_and_heap_arguments_together, a_nested_failure_names_the_child);
