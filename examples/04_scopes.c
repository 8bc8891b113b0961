/* examples/04_scopes.c - scopes: pin tasks to threads, a union of threads, invalid scopes.
 *
 * A scope says where a task may run; it is given in the task options. thread(k) pins a task
 * to worker thread k, union(a, b) allows either, intersect(a, b) both. A scope that no
 * processor satisfies (a thread that does not exist, an empty intersection) is a spawn-time
 * error: the task comes back already failed with DAGGER_ESCOPE, reported at fetch with a
 * message that names the scope and the reason.
 * The context has 3 threads whatever the machine, so the output is the same everywhere.
 * Exit status: 0 when every task ran where its scope allows and the errors are the expected ones.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <stdio.h>
#include <string.h>

/* where(): the worker thread the task runs on. */
static int where(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(dagger_tc_thread(tc));
    return 0;
}

/* Spawn `where` with `scope` (and `name`, when not NULL). */
static dagger_task_t *spawn_in(dagger_ctx_t *ctx, const dagger_scope_t *scope, const char *name)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.scope = scope; /* borrowed during the call only */
    o.name = name;
    return dagger_spawn_opts(ctx, &o, where);
}

int main(void)
{
    dagger_opts_t opts;
    dagger_opts_init(&opts);
    opts.num_threads = 3;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, &opts) != 0) {
        fprintf(stderr, "dagger_ctx_open: %s\n", dagger_last_errmsg());
        return 1;
    }
    int bad = 0;
    char form[128];

    /* 1. Pinned: thread(k) runs on worker k, every time. */
    for (int k = 0; k < 3; k++) {
        dagger_scope_t *s = dagger_scope_thread(k);
        dagger_task_t *t[8];
        for (int r = 0; r < 8; r++)
            t[r] = spawn_in(ctx, s, NULL);
        dagger_scope_release(s); /* the tasks no longer need it */
        int on_k = 0;
        for (int r = 0; r < 8; r++) {
            int64_t th = -1;
            if (dagger_fetch_i64(t[r], &th) == 0 && th == k)
                on_k++;
            dagger_task_release(t[r]);
        }
        printf("thread(%d): %d of 8 tasks ran on thread %d\n", k, on_k, k);
        bad += on_k != 8;
    }

    /* 2. A union: thread 0 or thread 2, never thread 1. */
    dagger_scope_t *t0 = dagger_scope_thread(0), *t1 = dagger_scope_thread(1);
    dagger_scope_t *t2 = dagger_scope_thread(2);
    dagger_scope_t *u = dagger_scope_union(t0, t2);
    dagger_scope_format(u, form, sizeof form);
    int seen[3] = {0, 0, 0};
    for (int r = 0; r < 30; r++) {
        dagger_task_t *t = spawn_in(ctx, u, NULL);
        int64_t th = -1;
        if (dagger_fetch_i64(t, &th) == 0 && th >= 0 && th < 3)
            seen[th]++;
        else
            bad++;
        dagger_task_release(t);
    }
    printf("%s: thread 0 ran %d, thread 1 ran %d, thread 2 ran %d of 30\n", form, seen[0], seen[1],
           seen[2]);
    bad += seen[1] != 0 || seen[0] + seen[2] != 30;

    /* 3. Invalid scopes fail the task at spawn; the error shows at fetch. */
    dagger_scope_t *t7 = dagger_scope_thread(7);
    dagger_scope_t *none = dagger_scope_intersect(t0, t1);
    struct {
        const dagger_scope_t *scope;
        const char *name;
        const char *why;
    } cases[] = {
        {t7, "pinned-to-7",
         "no processor satisfies the scope thread(7): thread 7 does not exist: the context has 3 "
         "threads (0..2)"},
        {none, "nowhere",
         "no processor satisfies the scope intersect(thread(0), thread(1)): the intersection "
         "is empty"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dagger_task_t *t = spawn_in(ctx, cases[c].scope, cases[c].name);
        int rc = dagger_fetch(t, NULL);
        char want[256];
        snprintf(want, sizeof want, "task %llu '%s': %s", (unsigned long long)dagger_task_id(t),
                 cases[c].name, cases[c].why);
        printf("%s -> %s\n  %s\n", cases[c].name, dagger_err_name(rc), dagger_task_errmsg(t));
        if (rc != DAGGER_ESCOPE || strcmp(dagger_task_errmsg(t), want) != 0) {
            fprintf(stderr, "FAIL: expected DAGGER_ESCOPE and\n  %s\n", want);
            bad++;
        }
        dagger_task_release(t);
    }

    dagger_scope_release(t0);
    dagger_scope_release(t1);
    dagger_scope_release(t2);
    dagger_scope_release(t7);
    dagger_scope_release(u);
    dagger_scope_release(none);
    if (dagger_ctx_close(ctx) != 0) {
        fprintf(stderr, "dagger_ctx_close: %s\n", dagger_last_errmsg());
        return 1;
    }
    printf(bad ? "%d unexpected result(s)\n" : "all as expected\n", bad);
    return bad ? 1 : 0;
}
