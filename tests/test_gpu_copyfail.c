/* tests/test_gpu_copyfail.c - a failed copy into a device never leaves a valid-looking copy:
 * the task that needed it fails with the backend's text, and the next reader (a device task,
 * a host read) gets the correct bytes or an error, never stale or garbage data. Fake device.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <string.h>

#include "dagger.h"
#include "dagger/gpu.h"
#include "gpu/gpu.h"
#include "harness.h"

#define N 64

struct kadd {
    dagger_dptr_t in, out;
    double add;
};

static struct kadd slots[16];
static _Atomic int next_slot;

static void k_add(void *ud)
{
    struct kadd *k = ud;
    double *in = dagger__gpu_fake_host(k->in), *out = dagger__gpu_fake_host(k->out);
    for (size_t i = 0; i < N; i++)
        out[i] = in[i] + k->add;
}

/* Device body: argument 0 += 1 in place. */
static int inc_inplace_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct kadd *k = &slots[atomic_fetch_add(&next_slot, 1) % 16];
    k->in = k->out = dagger_arg_dptr_rw(a, 0);
    k->add = 1;
    return dagger__gpu_fake_launch(tc, k_add, k);
}

/* Device body: a new chunk = argument 0 + 10. */
static int plus10_dev(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct kadd *k = &slots[atomic_fetch_add(&next_slot, 1) % 16];
    dagger_chunk_t *r;
    k->in = dagger_arg_dptr(a, 0);
    k->add = 10;
    int rc = dagger_tc_dchunk_create(tc, N * sizeof(double), &r, &k->out);
    if (rc)
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    rc = dagger__gpu_fake_launch(tc, k_add, k);
    *out = dagger_chunk_give(tc, r);
    return rc;
}

static int cpu_never(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "the CPU body ran instead of the device body");
}

static const dagger_impl_t inplace_impls[] = {{DAGGER_IMPL_FAKE, inc_inplace_dev}};
static const dagger_impl_t plus10_impls[] = {{DAGGER_IMPL_FAKE, plus10_dev}};

static dagger_chunk_t *filled(dagger_ctx_t *ctx, double v)
{
    dagger_chunk_t *c;
    size_t shape[1] = {N};
    ASSERT_OK(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 1, shape, &c));
    double *p = dagger_chunk_data(c);
    for (size_t i = 0; i < N; i++)
        p[i] = v;
    return c;
}

static dagger_task_t *spawn_dev(dagger_ctx_t *ctx, const dagger_impl_t *impls,
                                const dagger_scope_t *g, dagger_chunk_t *c)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = g;
    o.impls = impls;
    o.nimpls = 1;
    dagger_value_t v = dagger_chunkv(c);
    return dagger_spawnv_opts(ctx, &o, cpu_never, &v, 1);
}

static void expect_all(dagger_chunk_t *c, double v)
{
    double *p = dagger_chunk_data(c);
    if (!p)
        fail_msg("reading the chunk failed: %s", dagger_last_errmsg());
    for (size_t i = 0; i < N; i++)
        if (p[i] != v)
            fail_msg("element %zu is %g, not %g", i, p[i], v);
}

static void expect_copy_failed(dagger_task_t *t)
{
    ASSERT_ERR(dagger_wait(t) ? DAGGER_ETASK : dagger_task_error(t), DAGGER_ETASK);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "FAKE_COPY_FAILED");
}

/* The copy-in of a read-only argument fails: the next device reader copies again. */
TEST(next_device_reader_after_failed_copy_gets_correct_bytes)
{
    struct dagger__fake_faults f = {.fail_copy = 1};
    dagger__gpu_fake_setup(1, 1 << 20, &f);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *x = filled(ctx, 5.0);
    dagger_task_t *a = spawn_dev(ctx, plus10_impls, g, x);
    expect_copy_failed(a);
    dagger_task_t *b = spawn_dev(ctx, plus10_impls, g, x);
    dagger_chunk_t *r;
    int rc = dagger_fetch_chunk(b, &r);
    if (rc)
        fail_msg("the second reader failed: %s", dagger_task_errmsg(b));
    expect_all(r, 15.0);
    expect_all(x, 5.0);
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* The copy-in of an argument written in place fails: the host copy stays the valid one. */
TEST(failed_copy_of_written_argument_keeps_the_host_copy)
{
    struct dagger__fake_faults f = {.fail_copy = 1};
    dagger__gpu_fake_setup(1, 1 << 20, &f);
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_chunk_t *x = filled(ctx, 5.0);
    dagger_task_t *a = spawn_dev(ctx, inplace_impls, g, x);
    expect_copy_failed(a);
    expect_all(x, 5.0); /* not the device's garbage, and not an error: the home is intact */
    dagger_task_t *b = spawn_dev(ctx, inplace_impls, g, x);
    if (dagger_wait(b) || dagger_task_error(b))
        fail_msg("the second writer failed: %s", dagger_task_errmsg(b));
    expect_all(x, 6.0);
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_chunk_release(x);
    dagger_scope_release(g);
    ASSERT_OK(dagger_ctx_close(ctx));
}

/* A device-to-device copy fails: the reader on the second device fails, the next one there
 * copies again from a valid copy. */
TEST(failed_device_to_device_copy_is_not_valid)
{
    dagger__gpu_fake_setup(2, 1 << 20, &(struct dagger__fake_faults){.fail_copy = 2});
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_scope_t *g0 = dagger_scope_gpu(DAGGER_GPU_FAKE, 0);
    dagger_scope_t *g1 = dagger_scope_gpu(DAGGER_GPU_FAKE, 1);
    dagger_chunk_t *x = filled(ctx, 1.0);
    /* copy 1: host -> device 0; the kernel writes x there (device 0 holds the only copy) */
    dagger_task_t *a = spawn_dev(ctx, inplace_impls, g0, x);
    if (dagger_wait(a) || dagger_task_error(a))
        fail_msg("the first writer failed: %s", dagger_task_errmsg(a));
    /* copy 2: device 0 -> device 1 fails */
    dagger_task_t *b = spawn_dev(ctx, plus10_impls, g1, x);
    expect_copy_failed(b);
    dagger_task_t *c = spawn_dev(ctx, plus10_impls, g1, x);
    dagger_chunk_t *r;
    if (dagger_fetch_chunk(c, &r))
        fail_msg("the second reader failed: %s", dagger_task_errmsg(c));
    expect_all(r, 12.0);
    expect_all(x, 2.0);
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_task_release(c);
    dagger_chunk_release(x);
    dagger_scope_release(g0);
    dagger_scope_release(g1);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(next_device_reader_after_failed_copy_gets_correct_bytes,
          failed_copy_of_written_argument_keeps_the_host_copy,
          failed_device_to_device_copy_is_not_valid)
