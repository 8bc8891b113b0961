/* src/core/hooks.c - per-task checkpoint and restore hooks (Dagger.jl's `checkpoint=` and
 * `restore=` options).
 *
 * Design: `restore` runs in the task, just before its body: a value it gives becomes the result
 * and the body is skipped. `checkpoint` runs in the task after a success, with the result. As
 * in Dagger.jl a hook never changes the task's outcome: a hook that fails (a negative return,
 * dagger_fail, a failing accessor) is reported on stderr with the task and its message, its
 * failure record is dropped, and the task goes on as if the hook were absent.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "core/core_int.h"

/* Report a failed hook and forget the failure it recorded on the task. */
static void hook_failed(dagger_task_t *t, const char *hook, int r)
{
    const char *msg = t->err && t->err->msg ? t->err->msg : dagger_strerror(r);
    fprintf(stderr, "dagger: task %llu '%s': the %s hook failed (%s): %s; going on without it\n",
            (unsigned long long)t->id, dagger__task_display_name(t), hook,
            dagger_err_name(r < 0 ? r : DAGGER_ETASK), msg);
    dagger__task_err_free(t->err);
    t->err = NULL;
    t->argerr = 0;
}

int dagger__task_restore(dagger_task_t *t, dagger_value_t *out)
{
    int r = dagger__task_x(t)->restore((dagger_tc_t *)t, (const dagger_args_t *)t, out);
    int failed = r < 0 ? r : t->argerr ? t->argerr : t->err ? t->err->code : 0;
    if (failed) {
        hook_failed(t, "restore", failed);
        *out = dagger_nil();
        return 0;
    }
    if (r == 0)
        *out = dagger_nil();
    return r > 0;
}

void dagger__task_checkpoint(dagger_task_t *t)
{
    dagger_value_t v = t->result;
    v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
    dagger__task_set_cur(t);
    int r = dagger__task_x(t)->checkpoint((dagger_tc_t *)t, (const dagger_args_t *)t, &v);
    dagger__task_set_cur(NULL);
    int failed = r < 0 ? r : t->argerr ? t->argerr : t->err ? t->err->code : 0;
    if (failed)
        hook_failed(t, "checkpoint", failed);
}
