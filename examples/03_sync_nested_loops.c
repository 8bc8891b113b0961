/* examples/03_sync_nested_loops.c - a sync group over nested loops; the same loops in tasks.
 *
 * Dagger.jl's
 *     @sync for i in 1:20
 *         a = Dagger.@spawn f(i)
 *         for j in 1:6
 *             Dagger.@spawn g(a, j)
 *         end
 *     end
 * in C: 20 tasks f and 120 tasks g, each g depending on its f, all inside one sync group, whose
 * end waits for every task spawned in it. The g tasks are spawned detached (no handle, nobody
 * fetches them) and f's handle is released at once: the runtime keeps what it still needs.
 * Then the inner loop runs inside tasks (nested tasks): row(i) spawns f and its six g, and
 * waits for them in its own sync group; that wait suspends the task, never the worker thread,
 * so it also works with DAGGER_NUM_THREADS=1. Last, a sequential task queue runs five tasks one
 * after the other.
 * Exit status: 0 when every value is the expected one.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

enum { NI = 20, NJ = 6 };

static _Atomic int f_runs, g_runs;

/* f(i) = 10 i */
static int f(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&f_runs, 1);
    *out = dagger_i64(10 * dagger_arg_i64(a, 0));
    return 0;
}

/* g(a, j, slot): a + j, stored in *slot and returned. */
static int g(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_fetch_add(&g_runs, 1);
    int64_t v = dagger_arg_i64(a, 0) + dagger_arg_i64(a, 1);
    int64_t *slot = dagger_arg_ptr(a, 2);
    if (slot)
        *slot = v;
    *out = dagger_i64(v);
    return 0;
}

/* row(i): the inner loop as a task; returns the sum of its six g. */
static int row(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_ctx_t *ctx = dagger_tc_ctx(tc);
    int64_t i = dagger_arg_i64(a, 0);
    dagger_task_t *gs[NJ];
    int rc = dagger_sync_begin(ctx); /* the group belongs to this task */
    if (rc)
        return dagger_fail(tc, rc, "sync_begin: %s", dagger_last_errmsg());
    dagger_task_t *fi = dagger_spawn(ctx, f, i);
    for (int j = 1; j <= NJ; j++)
        gs[j - 1] = dagger_spawn(ctx, g, fi, j, (int64_t *)NULL);
    dagger_task_release(fi);
    rc = dagger_sync_end(ctx); /* suspends this task until the seven children are done */
    int64_t sum = 0;
    for (int j = 0; j < NJ; j++) {
        int64_t v = 0;
        if (!rc)
            rc = dagger_fetch_i64(gs[j], &v); /* already done: no wait */
        sum += v;
        dagger_task_release(gs[j]);
    }
    if (rc)
        return dagger_fail(tc, rc, "row %lld: %s", (long long)i, dagger_last_errmsg());
    *out = dagger_i64(sum);
    return 0;
}

/* append(buf, c): append the character to the string in buf (no lock: the queue orders them). */
static int append(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    char *buf = dagger_arg_ptr(a, 0);
    size_t n = strlen(buf);
    buf[n] = (char)dagger_arg_i64(a, 1);
    buf[n + 1] = '\0';
    return 0;
}

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0) {
        fprintf(stderr, "dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    int bad = 0;

    /* 1. @sync over nested loops, from main. */
    static int64_t grid[NI][NJ];
    int rc = dagger_sync_begin(ctx);
    if (rc == 0) {
        for (int i = 1; i <= NI; i++) {
            dagger_task_t *a = dagger_spawn(ctx, f, i);
            /* detached: no handle to release (a spawn error would show at the end too) */
            for (int j = 1; j <= NJ && rc == 0; j++)
                rc = dagger_spawn_detached(ctx, g, a, j, &grid[i - 1][j - 1]);
            dagger_task_release(a);
        }
        int end = dagger_sync_end(ctx); /* waits for all 140 tasks; 0 or the first error */
        rc = rc ? rc : end;
    }
    if (rc) {
        fprintf(stderr, "sync group: %s: %s\n", dagger_err_name(rc), dagger_last_errmsg());
        bad++;
    }
    for (int i = 1; i <= NI; i++)
        for (int j = 1; j <= NJ; j++)
            if (grid[i - 1][j - 1] != 10 * i + j) {
                fprintf(stderr, "FAIL: g(f(%d), %d) = %lld, expected %d\n", i, j,
                        (long long)grid[i - 1][j - 1], 10 * i + j);
                bad++;
            }
    printf("sync group: f ran %d times, g %d times; g(f(20), 6) = %lld\n", atomic_load(&f_runs),
           atomic_load(&g_runs), (long long)grid[NI - 1][NJ - 1]);
    if (atomic_load(&f_runs) != NI || atomic_load(&g_runs) != NI * NJ)
        bad++;

    /* 2. The inner loop inside tasks: each row task spawns and waits for its children. */
    dagger_task_t *rows[NI];
    for (int i = 1; i <= NI; i++)
        rows[i - 1] = dagger_spawn(ctx, row, i);
    int64_t total = 0;
    for (int i = 1; i <= NI; i++) {
        int64_t v = 0;
        if (dagger_fetch_i64(rows[i - 1], &v) != 0) {
            fprintf(stderr, "FAIL: %s\n", dagger_task_errmsg(rows[i - 1]));
            bad++;
        } else if (v != 60 * i + 21) { /* sum over j of (10 i + j) */
            fprintf(stderr, "FAIL: row(%d) = %lld, expected %d\n", i, (long long)v, 60 * i + 21);
            bad++;
        }
        total += v;
        dagger_task_release(rows[i - 1]);
    }
    printf("nested tasks on %d thread(s): sum of all rows = %lld\n", dagger_ctx_num_threads(ctx),
           (long long)total);
    if (total != 60 * (NI * (NI + 1) / 2) + 21 * NI)
        bad++;

    /* 3. A sequential queue: each task depends on the one spawned before it; WAITALL waits. */
    char order[8] = "";
    rc = dagger_queue_begin(ctx, DAGGER_QUEUE_SEQUENTIAL | DAGGER_QUEUE_WAITALL);
    if (rc == 0) {
        for (int k = 0; k < 5; k++)
            dagger_task_release(dagger_spawn(ctx, append, (void *)order, '0' + k));
        rc = dagger_queue_end(ctx);
    }
    printf("sequential queue: \"%s\"\n", order);
    if (rc || strcmp(order, "01234") != 0)
        bad++;

    if (dagger_ctx_close(ctx) != 0) {
        fprintf(stderr, "dagger_ctx_close: %s\n", dagger_last_errmsg());
        return 1;
    }
    printf(bad ? "%d unexpected result(s)\n" : "all as expected\n", bad);
    return bad ? 1 : 0;
}
