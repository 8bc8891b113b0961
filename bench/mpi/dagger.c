/* bench/mpi/dagger.c - a task round trip between ranks: rank 0 spawns echo(blob of S bytes)
 * on rank 1 (dagger_scope_worker(1)) and fetches the S-byte result (problem.h). Blobs over
 * 64 KiB are pulled by the receiver both ways.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE 1
#include <dagger.h>

#include "problem.h"

static int echo(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const void *p = dagger_arg_blob(a, 0, &n);
    *out = dagger_blob(p, n); /* copied after the body returns, while the argument lives */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        puts("mpi.pingpong\nmpi.bandwidth");
        return 0;
    }
    pp_self_launch(argc, argv);
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 1;
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open(&ctx, &o);
    if (rc == DAGGER_CTX_SERVED)
        return 0;
    if (rc || dagger_ctx_nranks(ctx) < 2) {
        fprintf(stderr, "ERROR: %s (ranks: %d)\n", rc ? dagger_last_errmsg() : "one rank",
                rc ? 0 : dagger_ctx_nranks(ctx));
        return 1;
    }
    dagger_scope_t *one = dagger_scope_worker(1);
    dagger_task_opts_t to;
    dagger_task_opts_init(&to);
    to.scope = one;
    char *buf = malloc(pp_sizes[PP_NSIZES - 1]);
    memset(buf, 1, pp_sizes[PP_NSIZES - 1]);
    for (size_t k = 0; k < PP_NSIZES; k++) {
        size_t size = pp_sizes[k];
        int reps = pp_reps(size);
        double t0 = pp_now();
        for (int i = 0; i < reps + 1; i++) {
            if (i == 1)
                t0 = pp_now(); /* the first round trip warms up */
            dagger_value_t arg = dagger_blob_borrow(buf, size);
            dagger_task_t *t = dagger_spawnv_opts(ctx, &to, echo, &arg, 1);
            size_t n = 0;
            dagger_value_t v;
            if (dagger_fetch(t, &v) || v.kind != DAGGER_KIND_BLOB || (n = v.len) != size) {
                fprintf(stderr, "ERROR: size %zu: %s (got %zu bytes)\n", size,
                        dagger_task_errmsg(t), n);
                return 1;
            }
            dagger_task_release(t);
        }
        pp_report("dagger", size, reps, pp_now() - t0);
    }
    free(buf);
    dagger_scope_release(one);
    return dagger_ctx_close(ctx) == 0 ? 0 : 1;
}
