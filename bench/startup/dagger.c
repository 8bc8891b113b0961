/* bench/startup/dagger.c - dagger_ctx_open + dagger_ctx_close of an empty context.
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <dagger.h>

static int one(int threads)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    dagger_ctx_t *ctx;
    int rc = dagger_ctx_open(&ctx, &o);
    if (rc == 0)
        rc = dagger_ctx_close(ctx);
    if (rc)
        fprintf(stderr, "ERROR dagger: %s\n", dagger_last_errmsg());
    return rc;
}

int main(int argc, char **argv)
{
    int threads = startup_init(argc, argv);
    if (threads < 0)
        return 0;
    if (threads == 0) { /* the default: report the count it chose */
        dagger_ctx_t *ctx;
        if (dagger_ctx_open(&ctx, NULL) == 0) {
            threads = dagger_ctx_num_threads(ctx);
            if (dagger_ctx_close(ctx) != 0)
                return 1;
        }
    }
    return startup_run("dagger", threads, one);
}
