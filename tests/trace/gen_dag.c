/* tests/trace/gen_dag.c - run a random DAG on the real runtime with tracing on; write every
 * format and the truth the check scripts compare against (see gen_synth.c for the files).
 *
 * Usage: trace_gen_dag OUTDIR [NTASKS]. Tasks record the worker they ran on; one task fails,
 * so its descendants fail without running. DAGGER_TEST_SEED replays a DAG.
 * SPDX-License-Identifier: MIT
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dagger.h"
#include "dagger/trace.h"

#define NTHREADS 4
#define MAXDEPS 3

static int N, FAIL;
static int *thread_of, *ran;
static int (*deps)[MAXDEPS];
static int *ndeps;

static void spin_ns(long ns)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < ns);
}

static int body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int i = (int)dagger_arg_i64(a, 0);
    thread_of[i] = dagger_tc_thread(tc);
    ran[i] = 1;
    spin_ns(10000 + (i % 7) * 8000);
    if (i == FAIL)
        return dagger_fail(tc, DAGGER_ETASK, "task %d fails on purpose", i);
    *out = dagger_i64(i);
    return 0;
}
static int load(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *o)
{
    return body(tc, a, o);
}
static int mul(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *o)
{
    return body(tc, a, o);
}
static int sum(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *o)
{
    return body(tc, a, o);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUTDIR [NTASKS]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    N = argc > 2 ? atoi(argv[2]) : 80;
    if (N < 10)
        N = 10;
    FAIL = N / 3;
    const char *s = getenv("DAGGER_TEST_SEED");
    uint64_t rng = s ? strtoull(s, NULL, 0) | 1 : (uint64_t)time(NULL) | 1;
    printf("seed=%llu\n", (unsigned long long)rng);
    thread_of = calloc((size_t)N, sizeof *thread_of);
    ran = calloc((size_t)N, sizeof *ran);
    deps = calloc((size_t)N, sizeof *deps);
    ndeps = calloc((size_t)N, sizeof *ndeps);
    dagger_task_t **t = calloc((size_t)N, sizeof *t);
    int *failed = calloc((size_t)N, sizeof *failed);

    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = NTHREADS;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &o) != 0)
        return 1;
    if (dagger_trace_start(ctx) != 0)
        return 1;
    if (dagger_sync_begin(ctx) != 0)
        return 1;
    for (int i = 0; i < N; i++) {
        dagger_value_t argv_[1 + MAXDEPS];
        argv_[0] = dagger_i64(i);
        int want = i < 4 ? 0 : 1 + (int)((rng = rng * 6364136223846793005ull + 1) >> 60) % MAXDEPS;
        for (int k = 0; k < want; k++) {
            int d = (int)(((rng = rng * 6364136223846793005ull + 1) >> 33) % (uint64_t)i);
            int dup = 0;
            for (int j = 0; j < ndeps[i]; j++)
                dup |= deps[i][j] == d;
            if (!dup) {
                deps[i][ndeps[i]++] = d;
                argv_[ndeps[i]] = dagger_taskv(t[d]);
                failed[i] |= failed[d];
            }
        }
        failed[i] |= i == FAIL;
        dagger_fn_t fn = i % 3 == 0 ? load : i % 3 == 1 ? mul : sum;
        const char *name = i % 3 == 0 ? "load" : i % 3 == 1 ? "mul" : "sum";
        dagger_task_opts_t to;
        dagger_task_opts_init(&to);
        to.name = name;
        t[i] = dagger_spawnv_opts(ctx, &to, fn, argv_, 1 + (size_t)ndeps[i]);
        if (!t[i])
            return 1;
    }
    int rc = dagger_sync_end(ctx); /* every task has finished, trace events included */
    if (rc != DAGGER_ETASK && rc != DAGGER_EUPSTREAM) {
        fprintf(stderr, "sync_end: %d\n", rc);
        return 1;
    }
    if (dagger_trace_stop(ctx) != 0)
        return 1;
    static const char *const exts[] = {"json", "dot", "html", "txt", "dtrace"};
    char path[4096];
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
        snprintf(path, sizeof path, "%s/trace.%s", dir, exts[k]);
        if (dagger_trace_write(ctx, path) != 0) {
            fprintf(stderr, "write %s failed: %s\n", path, dagger_last_errmsg());
            return 1;
        }
    }
    int runs = 0, edges = 0, flows = 0, nfailed = 0;
    snprintf(path, sizeof path, "%s/expect_runs.txt", dir);
    FILE *fr = fopen(path, "w");
    snprintf(path, sizeof path, "%s/expect_edges.txt", dir);
    FILE *fe = fopen(path, "w");
    snprintf(path, sizeof path, "%s/expect_flows.txt", dir);
    FILE *ff = fopen(path, "w");
    if (!fr || !fe || !ff)
        return 1;
    for (int i = 0; i < N; i++) {
        unsigned long long id = (unsigned long long)dagger_task_id(t[i]);
        if (ran[i]) {
            fprintf(fr, "%llu %d\n", id, thread_of[i]);
            runs++;
        }
        nfailed += failed[i];
        for (int j = 0; j < ndeps[i]; j++) {
            int d = deps[i][j];
            unsigned long long did = (unsigned long long)dagger_task_id(t[d]);
            fprintf(fe, "%llu %llu\n", did, id);
            edges++;
            if (ran[d] && ran[i]) {
                fprintf(ff, "%llu %llu\n", did, id);
                flows++;
            }
        }
    }
    fclose(fr);
    fclose(fe);
    fclose(ff);
    snprintf(path, sizeof path, "%s/expect.env", dir);
    FILE *fv = fopen(path, "w");
    if (!fv)
        return 1;
    fprintf(fv, "TASKS=%d\nRUNS=%d\nEDGES=%d\nFLOWS=%d\nFAILED=%d\nTHREADS=%d\n", N, runs, edges,
            flows, nfailed, NTHREADS);
    fclose(fv);
    printf("tasks=%d runs=%d edges=%d flows=%d failed=%d\n", N, runs, edges, flows, nfailed);
    for (int i = 0; i < N; i++)
        dagger_task_release(t[i]);
    free(t);
    free(failed);
    return dagger_ctx_close(ctx) == 0 ? 0 : 1;
}
