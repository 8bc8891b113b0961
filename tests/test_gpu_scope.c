/* tests/test_gpu_scope.c - scope queries with devices and ranks: equality and inclusion over
 * GPU processors, dagger_scope_list with devices, and the gpu= key of dagger_scope_from_string
 * (fake devices).
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "dagger.h"
#include "dagger/chunk.h"
#include "dagger/gpu.h"
#include "gpu/gpu.h"
#include "harness.h"

static dagger_scope_t *parse(const char *spec)
{
    dagger_scope_t *s = NULL;
    if (dagger_scope_from_string(spec, &s) != 0)
        fail_msg("\"%s\": %s", spec, dagger_last_errmsg());
    return s;
}

TEST(equal_and_subset_see_devices)
{
    dagger_scope_t *cl0 = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0);
    dagger_scope_t *cl1 = dagger_scope_gpu(DAGGER_GPU_OPENCL, 1);
    dagger_scope_t *cl = dagger_scope_gpu(DAGGER_GPU_OPENCL, -1);
    dagger_scope_t *cu = dagger_scope_gpu(DAGGER_GPU_CUDA, -1);
    dagger_scope_t *all = dagger_scope_gpu(DAGGER_GPU_ANY, -1);
    dagger_scope_t *t0 = dagger_scope_thread(0);
    dagger_scope_t *both = dagger_scope_union(cl0, cl1);
    ASSERT_TRUE(dagger_scope_equal(cl0, cl0));
    ASSERT_FALSE(dagger_scope_equal(cl0, cl1));
    ASSERT_FALSE(dagger_scope_equal(cl0, t0)); /* both admitted "no thread" before */
    ASSERT_FALSE(dagger_scope_equal(cl, cu));
    ASSERT_TRUE(dagger_scope_subset(cl0, cl));
    ASSERT_FALSE(dagger_scope_subset(cl, cl0));
    ASSERT_TRUE(dagger_scope_subset(both, cl));
    ASSERT_FALSE(dagger_scope_equal(both, cl)); /* opencl device 2 is in cl only */
    ASSERT_TRUE(dagger_scope_subset(cl, all));
    ASSERT_TRUE(dagger_scope_subset(cu, all));
    ASSERT_FALSE(dagger_scope_subset(all, cl));
    /* GPUs are opt-in: `any` admits worker threads only */
    ASSERT_FALSE(dagger_scope_subset(cl0, dagger_scope_any()));
    ASSERT_FALSE(dagger_scope_subset(dagger_scope_any(), all));
    dagger_scope_t *mix = dagger_scope_union(t0, cl0);
    ASSERT_TRUE(dagger_scope_subset(t0, mix));
    ASSERT_TRUE(dagger_scope_subset(cl0, mix));
    ASSERT_FALSE(dagger_scope_subset(mix, cl));
    dagger_scope_t *none = dagger_scope_intersect(cl0, cl1);
    dagger_scope_t *none2 = dagger_scope_intersect(t0, cl0);
    ASSERT_TRUE(dagger_scope_equal(none, none2));
    dagger_scope_t *s[] = {cl0, cl1, cl, cu, all, t0, both, mix, none, none2};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        dagger_scope_release(s[i]);
}

TEST(device_scopes_of_ranks_compare_by_rank)
{
    dagger_proc_t p1 = {1, DAGGER_PROC_DEVICE, 0}, p0 = {0, DAGGER_PROC_DEVICE, 0};
    dagger_scope_t *on1 = dagger_scope_processor(&p1), *on0 = dagger_scope_processor(&p0);
    dagger_scope_t *any0 = dagger_scope_gpu(DAGGER_GPU_ANY, 0);
    ASSERT_TRUE(dagger_scope_subset(on1, any0));
    ASSERT_FALSE(dagger_scope_subset(any0, on1));
    ASSERT_FALSE(dagger_scope_equal(on0, on1));
    dagger_scope_t *u = dagger_scope_union(on0, on1);
    ASSERT_FALSE(dagger_scope_equal(u, any0)); /* device 0 of rank 2 */
    dagger_scope_t *w1 = parse("worker=1,gpu=any:0");
    ASSERT_TRUE(dagger_scope_equal(w1, on1));
    dagger_scope_t *w01 = parse("workers=[0,1],gpu=any:0");
    ASSERT_TRUE(dagger_scope_equal(w01, u));
    char buf[128];
    dagger_scope_format(w1, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "worker(1).device(0)");
    dagger_scope_t *f1 = parse("worker=0,gpu=fake:1");
    dagger_scope_format(f1, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "worker(0).gpu(fake, 1)");
    dagger_scope_release(f1);
    dagger_scope_t *s[] = {on1, on0, any0, u, w1, w01};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        dagger_scope_release(s[i]);
}

TEST(from_string_gpu_keys)
{
    static const struct {
        const char *spec;
        int kind, index;
    } ok[] = {
        {"gpu=any", DAGGER_GPU_ANY, -1},        {"gpu=opencl", DAGGER_GPU_OPENCL, -1},
        {"gpu=opencl:0", DAGGER_GPU_OPENCL, 0}, {"gpu=cuda:3", DAGGER_GPU_CUDA, 3},
        {"gpu=any:1", DAGGER_GPU_ANY, 1},       {"gpu=fake", DAGGER_GPU_FAKE, -1},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        dagger_scope_t *s = parse(ok[i].spec), *want = dagger_scope_gpu(ok[i].kind, ok[i].index);
        if (!dagger_scope_equal(s, want))
            fail_msg("\"%s\" does not equal dagger_scope_gpu(%d, %d)", ok[i].spec, ok[i].kind,
                     ok[i].index);
        dagger_scope_release(s);
        dagger_scope_release(want);
    }
    dagger_scope_t *l = parse("gpu=[opencl:0,cuda:1]");
    dagger_scope_t *a = dagger_scope_gpu(DAGGER_GPU_OPENCL, 0), *b = dagger_scope_gpu(2, 1);
    dagger_scope_t *u = dagger_scope_union(a, b);
    ASSERT_TRUE(dagger_scope_equal(l, u));
    dagger_scope_release(l);
    dagger_scope_release(a);
    dagger_scope_release(b);
    dagger_scope_release(u);
    static const struct {
        const char *spec, *msg;
    } bad[] = {
        {"gpu=vulkan", "'vulkan' is not a GPU kind (known: any, opencl, cuda, fake"},
        {"gpu=", "'' is not a GPU kind"},
        {"gpu=opencl:x", "'x' is not a number"},
        {"gpu=opencl:", "'' is not a number"},
        {"gpu=opencl:-1", "'-1' is not a number in 0.."},
        {"thread=0,gpu=any", "keys 'thread' and 'gpu' conflict"},
        {"threads=[0],gpu=any", "keys 'threads' and 'gpu' conflict"},
        {"gpu=[opencl:0", "'[' without ']'"},
        {"gpu=[opencl:0,]", "'' is not a GPU kind"},
        {"gpu=opencl,gpu=cuda", "key 'gpu' given twice"},
        {"workers=[0,x],gpu=any", "'x' is not a number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dagger_scope_t *s = (dagger_scope_t *)1;
        ASSERT_ERR(dagger_scope_from_string(bad[i].spec, &s), DAGGER_EINVAL);
        ASSERT_NULL(s);
        ASSERT_STR_HAS(dagger_last_errmsg(), bad[i].msg);
    }
}

static int where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_tc_device(tc, NULL));
    return 0;
}

static int k_none(void *ud)
{
    (void)ud;
    return 0;
}

static void noop(void *ud) { (void)k_none(ud); }

static int where_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_tc_device(tc, NULL));
    return dagger__gpu_fake_launch(tc, noop, NULL);
}

static const dagger_impl_t where_impls[] = {{DAGGER_IMPL_FAKE, where_dev}};

TEST(list_names_devices_and_tasks_follow_parsed_scopes)
{
    dagger__gpu_fake_setup(2, 1 << 20, NULL);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = parse("gpu=fake");
    dagger_proc_t p[8];
    ASSERT_EQ(dagger_scope_list(g, ctx, p, 8), 2);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(p[i].rank, 0);
        ASSERT_EQ(p[i].kind, DAGGER_PROC_DEVICE);
        ASSERT_EQ(p[i].index, i);
    }
    dagger_scope_t *t1 = dagger_scope_thread(1), *d1 = parse("gpu=fake:1");
    dagger_scope_t *mix = dagger_scope_union(t1, d1);
    ASSERT_EQ(dagger_scope_list(mix, ctx, p, 8), 2);
    ASSERT_EQ(p[0].kind, DAGGER_PROC_CPU);
    ASSERT_EQ(p[0].index, 1);
    ASSERT_EQ(p[1].kind, DAGGER_PROC_DEVICE);
    ASSERT_EQ(p[1].index, 1);
    ASSERT_EQ(dagger_scope_num_processors(dagger_scope_any(), ctx), 2);
    ASSERT_EQ(dagger_scope_list(g, ctx, p, 1), 2); /* the count, even past cap */
    /* a task under gpu=fake:1 runs on device 1 */
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = d1;
    o.impls = where_impls;
    o.nimpls = 1;
    dagger_task_t *t = dagger_spawnv_opts(ctx, &o, where, NULL, 0);
    dagger_value_t v;
    ASSERT_OK(dagger_fetch(t, &v));
    ASSERT_EQ(v.u.i, 1);
    dagger_task_release(t);
    /* the devices of a rank this job does not have */
    dagger_scope_t *w1 = parse("worker=1,gpu=fake");
    ASSERT_EQ(dagger_scope_num_processors(w1, ctx), 0);
    o.scope = w1;
    t = dagger_spawnv_opts(ctx, &o, where, NULL, 0);
    ASSERT_ERR(dagger_fetch(t, &v), DAGGER_ESCOPE);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "rank 1 does not exist");
    dagger_task_release(t);
    dagger_scope_t *s[] = {g, t1, d1, mix, w1};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        dagger_scope_release(s[i]);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(equal_and_subset_see_devices, device_scopes_of_ranks_compare_by_rank,
          from_string_gpu_keys, list_names_devices_and_tasks_follow_parsed_scopes)
