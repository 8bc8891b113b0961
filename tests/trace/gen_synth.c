/* tests/trace/gen_synth.c - replay a random DAG through the trace hooks, write every format.
 *
 * Usage: trace_gen_synth OUTDIR [NTASKS]. Worker threads (fresh ones for every level of the DAG)
 * start, run and finish tasks as a runtime would; one task fails (its descendants fail
 * without running), one is cancelled, one is suspended and resumed (two runs), and there are
 * steals and parks. Writes OUTDIR/trace.{json,dot,html,txt,dtrace} and the truth the check
 * scripts compare against: expect.env, expect_runs.txt ("id thread" per run),
 * expect_edges.txt ("from to") and expect_flows.txt (edges whose two ends ran).
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dagger/trace.h"
#include "trace/trace.h"

#define NTHREADS 4
#define MAXDEPS 3

struct task {
    uint64_t id;
    int level;
    int ndeps;
    int deps[MAXDEPS];
    int fails, cancelled, blocks, skipped; /* skipped: an input failed */
    int thread;                            /* worker that ran it */
    int ran;
};

static struct task *T;
static int N, LEVELS;
static const char *const NAMES[] = {"load", "transform", "reduce", "store", "fft"};

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void spin_ns(long ns)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < ns);
}

struct worker {
    int w, level;
    pthread_t th;
};

static pthread_barrier_t level_start, level_done;

static void run_level(struct worker *wk)
{
    int w = wk->w;
    int blocked = -1;
    for (int i = 0; i < N; i++) {
        struct task *t = &T[i];
        if (t->level != wk->level || i % NTHREADS != w)
            continue;
        if (i % 7 == 3)
            dagger__trace_steal(w, (w + 1) % NTHREADS, t->id);
        if (t->skipped || t->cancelled) {
            if (t->skipped)
                dagger__trace_error(t->id, "input failed: task 'transform' failed: disk on fire");
            dagger__trace_finish(t->id, w, t->cancelled ? DAGGER_ECANCELED : DAGGER_EUPSTREAM);
            continue;
        }
        t->thread = w;
        t->ran = 1;
        dagger__trace_start(t->id, w, 0);
        spin_ns(20000 + (long)(t->id % 5) * 15000);
        if (t->blocks) {
            dagger__trace_block(t->id, w, t->ndeps ? T[t->deps[0]].id : 0);
            blocked = i;
            continue;
        }
        if (t->fails) {
            dagger__trace_error(t->id, "disk on fire <&> \"quoted\"");
            dagger__trace_finish(t->id, w, DAGGER_ETASK);
        } else {
            dagger__trace_finish(t->id, w, 0);
        }
    }
    if (blocked >= 0) {
        struct task *t = &T[blocked];
        dagger__trace_resume(t->id, w);
        spin_ns(30000);
        dagger__trace_finish(t->id, w, 0);
    }
}

/* A worker: run its share of each level, park between levels. */
static void *work(void *p)
{
    struct worker *wk = p;
    for (int l = 0; l < LEVELS; l++) {
        pthread_barrier_wait(&level_start);
        dagger__trace_wake(wk->w);
        wk->level = l;
        run_level(wk);
        dagger__trace_park(wk->w);
        pthread_barrier_wait(&level_done);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUTDIR [NTASKS]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    N = argc > 2 ? atoi(argv[2]) : 60;
    if (N < 12)
        N = 12;
    LEVELS = 6;
    const char *seed = getenv("DAGGER_TEST_SEED");
    if (seed)
        rng = strtoull(seed, NULL, 0) | 1;
    T = calloc((size_t)N, sizeof *T);
    for (int i = 0; i < N; i++) {
        T[i].id = 100 + (uint64_t)i;
        T[i].level = i * LEVELS / N;
        if (T[i].level > 0) {
            int lo_end = 0;
            while (T[lo_end].level < T[i].level)
                lo_end++;
            int want = 1 + (int)(rnd() % MAXDEPS);
            for (int k = 0; k < want; k++) {
                int d = (int)(rnd() % (uint64_t)lo_end);
                int dup = 0;
                for (int j = 0; j < T[i].ndeps; j++)
                    dup |= T[i].deps[j] == d;
                if (!dup)
                    T[i].deps[T[i].ndeps++] = d;
            }
        }
    }
    /* One failure in level 2 (the first task of level 3 depends on it), a cancelled task in
     * the last level, a suspension in level 1. */
    int fail = 0, canc = N - 1, blk = 0, down = 0;
    while (T[fail].level < 2)
        fail++;
    T[fail].fails = 1;
    while (T[down].level < 3)
        down++;
    if (T[down].ndeps < MAXDEPS && T[down].deps[0] != fail && T[down].deps[1] != fail &&
        T[down].deps[2] != fail)
        T[down].deps[T[down].ndeps++] = fail;
    while (T[blk].level < 1)
        blk++;
    T[blk].blocks = 1;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < T[i].ndeps; j++)
            if (T[T[i].deps[j]].fails || T[T[i].deps[j]].skipped)
                T[i].skipped = 1;
    if (T[canc].skipped)
        T[canc].skipped = 0; /* the cancel wins: it never runs either way */
    T[canc].cancelled = 1;

    static int fake_ctx;
    dagger_ctx_t *ctx = (dagger_ctx_t *)&fake_ctx;
    dagger__trace_ctx_open((struct dagger_ctx *)ctx, NTHREADS);
    if (dagger_trace_start(ctx) != 0)
        return 1;
    char namebuf[64];
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            dagger__trace_spawn(T[i].id, NAMES[i % 5], 1, -1, 0);
        } else {
            snprintf(namebuf, sizeof namebuf, "%s", NAMES[i % 5]);
            dagger__trace_spawn(T[i].id, namebuf, 0, -1, 0);
            memset(namebuf, 'x', sizeof namebuf - 1); /* the trace must have copied it */
        }
        for (int j = 0; j < T[i].ndeps; j++)
            dagger__trace_edge(T[T[i].deps[j]].id, T[i].id);
    }
    pthread_barrier_init(&level_start, NULL, NTHREADS + 1);
    pthread_barrier_init(&level_done, NULL, NTHREADS + 1);
    struct worker wk[NTHREADS];
    for (int w = 0; w < NTHREADS; w++) {
        wk[w].w = w;
        pthread_create(&wk[w].th, NULL, work, &wk[w]);
    }
    for (int l = 0; l < LEVELS; l++) {
        for (int i = 0; i < N; i++)
            if (T[i].level == l)
                dagger__trace_ready(T[i].id, -1);
        pthread_barrier_wait(&level_start);
        pthread_barrier_wait(&level_done);
    }
    for (int w = 0; w < NTHREADS; w++)
        pthread_join(wk[w].th, NULL);
    if (dagger_trace_stop(ctx) != 0)
        return 1;

    static const char *const exts[] = {"json", "dot", "html", "txt", "dtrace"};
    char path[4096];
    for (size_t k = 0; k < sizeof exts / sizeof exts[0]; k++) {
        snprintf(path, sizeof path, "%s/trace.%s", dir, exts[k]);
        int rc = dagger_trace_write(ctx, path);
        if (rc) {
            fprintf(stderr, "write %s: %d\n", path, rc);
            return 1;
        }
    }

    int runs = 0, edges = 0, flows = 0, failed = 0;
    snprintf(path, sizeof path, "%s/expect_runs.txt", dir);
    FILE *fr = fopen(path, "w");
    snprintf(path, sizeof path, "%s/expect_edges.txt", dir);
    FILE *fe = fopen(path, "w");
    snprintf(path, sizeof path, "%s/expect_flows.txt", dir);
    FILE *ff = fopen(path, "w");
    if (!fr || !fe || !ff)
        return 1;
    for (int i = 0; i < N; i++) {
        struct task *t = &T[i];
        int nr = t->ran ? (t->blocks ? 2 : 1) : 0;
        for (int k = 0; k < nr; k++)
            fprintf(fr, "%llu %d\n", (unsigned long long)t->id, t->thread);
        runs += nr;
        failed += t->fails || t->skipped;
        for (int j = 0; j < t->ndeps; j++) {
            struct task *d = &T[t->deps[j]];
            fprintf(fe, "%llu %llu\n", (unsigned long long)d->id, (unsigned long long)t->id);
            edges++;
            if (d->ran && t->ran) {
                fprintf(ff, "%llu %llu\n", (unsigned long long)d->id, (unsigned long long)t->id);
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
            flows, failed, NTHREADS);
    fclose(fv);
    printf("tasks=%d runs=%d edges=%d flows=%d failed=%d\n", N, runs, edges, flows, failed);
    dagger__trace_ctx_close((struct dagger_ctx *)ctx);
    free(T);
    return 0;
}
