/* src/core/args.c - inside a task: argument accessors, scratch copies, the task context.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"

static dagger_value_t scratch_copy(dagger_tc_t *tc, const void *p, size_t n, int kind)
{
    dagger_task_t *t = (dagger_task_t *)tc;
    size_t extra = kind == DAGGER_KIND_STR ? 1 : 0;
    struct scratch *s = t ? dagger__obj_alloc(sizeof *s + n + extra) : NULL;
    if (!s) {
        if (t && !t->argerr)
            t->argerr = dagger__task_failf(t, DAGGER_ENOMEM, "out of memory copying a %zu-byte %s",
                                           n, dagger_kind_name(kind));
        return dagger_nil();
    }
    s->size = n + extra;
    if (n)
        memcpy(s->bytes, p, n);
    if (extra)
        s->bytes[n] = '\0';
    s->next = t->scratch;
    t->scratch = s;
    return kind == DAGGER_KIND_STR ? dagger_str(s->bytes) : dagger_blob(s->bytes, n);
}

dagger_value_t dagger_str_copy(dagger_tc_t *tc, const char *s)
{
    return scratch_copy(tc, s ? s : "", s ? strlen(s) : 0, DAGGER_KIND_STR);
}

dagger_value_t dagger_blob_copy(dagger_tc_t *tc, const void *p, size_t n)
{
    return scratch_copy(tc, p, n, DAGGER_KIND_BLOB);
}

dagger_task_t *dagger_tc_task(dagger_tc_t *tc) { return (dagger_task_t *)tc; }
uint64_t dagger_tc_id(const dagger_tc_t *tc) { return ((const dagger_task_t *)tc)->id; }
const char *dagger_tc_name(const dagger_tc_t *tc)
{
    return dagger__task_display_name((const dagger_task_t *)tc);
}
dagger_ctx_t *dagger_tc_ctx(dagger_tc_t *tc) { return ((dagger_task_t *)tc)->ctx; }
int dagger_tc_thread(const dagger_tc_t *tc)
{
    const dagger_task_t *t = (const dagger_task_t *)tc;
    return dagger__pool_self(t->ctx->pool);
}
bool dagger_tc_cancelled(const dagger_tc_t *tc)
{
    return atomic_load_explicit(&((const dagger_task_t *)tc)->cancel, memory_order_acquire) != 0;
}

/* ---------------------------------------------------------------- argument accessors */

static const dagger_value_t *arg_at(const dagger_args_t *a, size_t i, int kind, int alt)
{
    dagger_task_t *t = (dagger_task_t *)a;
    if (i >= t->nargs) {
        if (!t->argerr)
            t->argerr = dagger__task_failf(
                t, DAGGER_ETYPE, "argument %zu requested as %s, but the task has %u argument%s", i,
                dagger_kind_name(kind), t->nargs, t->nargs == 1 ? "" : "s");
        return NULL;
    }
    const dagger_value_t *v = &t->args[i];
    if (v->kind != kind && v->kind != alt) {
        if (!t->argerr)
            t->argerr = dagger__task_failf(t, DAGGER_ETYPE, "argument %zu is a %s, not a %s", i,
                                           dagger_kind_name(v->kind), dagger_kind_name(kind));
        return NULL;
    }
    return v;
}

size_t dagger_args_count(const dagger_args_t *a) { return ((const dagger_task_t *)a)->nargs; }

const dagger_value_t *dagger_arg(const dagger_args_t *a, size_t i)
{
    const dagger_task_t *t = (const dagger_task_t *)a;
    return i < t->nargs ? &t->args[i] : NULL;
}

bool dagger_arg_bool(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_BOOL, -1);
    return v ? v->u.b : false;
}

int64_t dagger_arg_i64(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_I64, -1);
    return v ? v->u.i : 0;
}

double dagger_arg_f64(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_F64, DAGGER_KIND_I64);
    if (!v)
        return 0.0;
    return v->kind == DAGGER_KIND_F64 ? v->u.f : (double)v->u.i;
}

const char *dagger_arg_str(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_STR, -1);
    return v ? v->u.s : NULL;
}

const void *dagger_arg_blob(const dagger_args_t *a, size_t i, size_t *len)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_BLOB, -1);
    if (len)
        *len = v ? v->len : 0;
    return v ? v->u.p : NULL;
}

void *dagger_arg_ptr(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_PTR, -1);
    return v ? (void *)v->u.p : NULL;
}

/* ---------------------------------------------------------------- for feature layers */

/* The argument array of a running task and its count: the streaming layer runs a body again and
 * again and substitutes the values of its input streams between runs (src/stream). */
dagger_value_t *dagger__task_args(dagger_task_t *t, uint32_t *n)
{
    *n = t->nargs;
    return t->args;
}

/* The code of a failure already recorded on a running task (dagger_fail, a failing argument
 * accessor), or 0: a body that returned 0 may still have failed. */
int dagger__task_failed(const dagger_task_t *t)
{
    if (t->argerr)
        return t->argerr;
    return t->err ? t->err->code : 0;
}