/* bench/startup/starpu.c - starpu_init + starpu_shutdown with CPU workers only (the peer).
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <starpu.h>

static int one(int threads)
{
    struct starpu_conf conf;
    starpu_conf_init(&conf);
    if (threads > 0)
        conf.ncpus = threads;
    conf.ncuda = 0;
    conf.nopencl = 0;
    int rc = starpu_init(&conf);
    if (rc) {
        fprintf(stderr, "ERROR starpu_init: %d\n", rc);
        return 1;
    }
    starpu_shutdown();
    return 0;
}

int main(int argc, char **argv)
{
    int threads = startup_init(argc, argv);
    if (threads < 0)
        return 0;
    return startup_run("starpu", threads, one);
}
