/* examples/11_out_of_core.c - out-of-core: a reduction over 4x more data than the memory limit.
 *
 * With a memory limit (opts.mem_limit here, or DAGGER_MEM_LIMIT=1M), chunks that no running or
 * staged task holds are spilled to a private folder under the temp dir, least recently used
 * first, and come back when a task needs them. The program is the same as without a limit.
 * Exit status: 0 when the sum equals the closed form and something was spilled and reloaded.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/chunk.h>
#include <dagger/file.h>
#include <stdio.h>
#include <stdlib.h>

/* Sizes kept small: CI runs this program once per allocation under ASan (the allocation-failure
 * sweep: 463 runs), and with 512 KiB blocks they took 212 s against 78 s now. */
#define NBLOCKS 32
#define BLOCK (128 * 1024) /* bytes: 4 MiB in all */
#define LIMIT (1024 * 1024)

/* Block i: doubles i, i+1, ..., kept as a chunk (the task has DAGGER_TASK_CHUNK_RESULT). */
static int block(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0), n = BLOCK / sizeof(double);
    double *x = malloc(BLOCK);
    if (!x)
        return dagger_fail(tc, DAGGER_ENOMEM, "block %lld", (long long)i);
    for (int64_t k = 0; k < n; k++)
        x[k] = (double)(i + k);
    *out = dagger_blob_copy(tc, x, BLOCK);
    free(x);
    return 0;
}

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const double *x = dagger_arg_buf(a, 0, &n), *y = dagger_arg_buf(a, 1, NULL);
    double *z = malloc(n);
    if (!x || !y || !z) {
        free(z);
        return dagger_fail(tc, DAGGER_ENOMEM, "add");
    }
    for (size_t k = 0; k < n / sizeof(double); k++)
        z[k] = x[k] + y[k];
    *out = dagger_blob_copy(tc, z, n);
    free(z);
    return 0;
}

static int total(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const double *x = dagger_arg_buf(a, 0, &n);
    double s = 0;
    for (size_t k = 0; x && k < n / sizeof(double); k++)
        s += x[k];
    *out = dagger_f64(s);
    return x ? 0 : DAGGER_ETYPE;
}

int main(void)
{
    dagger_opts_t co;
    dagger_opts_init(&co);
    co.mem_limit = LIMIT;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &co) != 0)
        return 1;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    dagger_task_t *t[NBLOCKS];
    for (int i = 0; i < NBLOCKS; i++)
        t[i] = dagger_spawn_opts(ctx, &o, block, (int64_t)i);
    for (int i = 0; i < NBLOCKS; i++) /* all of it exists at once: 4x the limit */
        if (dagger_wait(t[i]) != 0)
            return 1;
    for (int w = NBLOCKS; w > 1; w /= 2) /* a tree reduction, block by block */
        for (int i = 0; i < w / 2; i++) {
            dagger_task_t *s = dagger_spawn_opts(ctx, &o, add, t[2 * i], t[2 * i + 1]);
            dagger_task_release(t[2 * i]);
            dagger_task_release(t[2 * i + 1]);
            t[i] = s;
        }
    dagger_task_t *s = dagger_spawn(ctx, total, t[0]);
    double got = 0, n = BLOCK / sizeof(double), want = 0;
    int rc = dagger_fetch_f64(s, &got);
    for (int i = 0; i < NBLOCKS; i++)
        want += n * i + n * (n - 1) / 2;
    dagger_mem_stats_t st;
    if (dagger_mem_stats(ctx, &st) == 0) {
        printf("sum %.0f (want %.0f) over %d MiB under a %zu MiB limit\n", got, want,
               NBLOCKS * BLOCK >> 20, st.limit >> 20);
        /* The counters depend on timing (when the spill thread runs): on stderr, so that the
         * output of a correct run is always the same. */
        fprintf(stderr,
                "spilled %llu bytes in %llu spills, reloaded %llu bytes in %llu reloads, "
                "peak resident %zu bytes\n",
                st.spilled, st.spills, st.reloaded, st.reloads, st.peak_resident);
    }
    if (rc)
        fprintf(stderr, "failed: %s\n", dagger_task_errmsg(s));
    dagger_task_release(s);
    dagger_task_release(t[0]);
    int crc = dagger_ctx_close(ctx);
    return rc || crc || got != want || st.spills == 0 || st.reloads == 0;
}
