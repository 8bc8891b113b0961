/* src/core/args.c - inside a task: argument accessors, scratch copies, the task context.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"
#include "mem/mem.h"

static dagger_value_t scratch_copy(dagger_tc_t *tc, const void *p, size_t n, int kind)
{
    dagger_task_t *t = (dagger_task_t *)tc;
    size_t extra = kind == DAGGER_KIND_STR ? 1 : 0;
    struct task_ext *x = t ? dagger__task_ext_get(t) : NULL;
    struct scratch *s = x ? dagger__obj_alloc(sizeof *s + n + extra) : NULL;
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
    s->next = x->scratch;
    x->scratch = s;
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

/* The failing lookups out of line (with their messages); the accessors test the common case,
 * an index in range and a value of the kind asked for, inline. */
DAGGER_NOINLINE static const dagger_value_t *arg_at(const dagger_args_t *a, size_t i, int kind,
                                                    int alt)
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

/* The value at `i` when it is of `kind`, else NULL (the caller then asks arg_at): the lookup
 * that include/dagger.h inlines in task bodies. */
static inline const dagger_value_t *arg_fast(const dagger_args_t *a, size_t i, int kind)
{
    return dagger__arg_at_kind(a, i, (unsigned)kind);
}

bool dagger_arg_bool(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *f = arg_fast(a, i, DAGGER_KIND_BOOL);
    if (f)
        return f->u.b;
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_BOOL, -1);
    return v ? v->u.b : false;
}

int64_t dagger_arg_i64(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *f = arg_fast(a, i, DAGGER_KIND_I64);
    if (f)
        return f->u.i;
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_I64, -1);
    return v ? v->u.i : 0;
}

double dagger_arg_f64(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *f = arg_fast(a, i, DAGGER_KIND_F64);
    if (f)
        return f->u.f;
    const dagger_value_t *v = arg_at(a, i, DAGGER_KIND_F64, DAGGER_KIND_I64);
    if (!v)
        return 0.0;
    return v->kind == DAGGER_KIND_F64 ? v->u.f : (double)v->u.i;
}

const char *dagger_arg_str(const dagger_args_t *a, size_t i)
{
    const dagger_value_t *f = arg_fast(a, i, DAGGER_KIND_STR);
    if (f)
        return f->u.s;
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
    const dagger_value_t *f = arg_fast(a, i, DAGGER_KIND_PTR);
    if (f)
        return (void *)f->u.p;
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

const char *dagger__task_failed_msg(const dagger_task_t *t)
{
    return t->err && t->err->msg ? t->err->msg : "";
}
/* ---------------------------------------------------------------- data arguments */

dagger_value_t dagger_chunk_give(dagger_tc_t *tc, dagger_chunk_t *c)
{
    dagger_task_t *t = (dagger_task_t *)tc;
    struct task_ext *x = t && c ? dagger__task_ext_get(t) : NULL;
    struct scratch *s = x ? dagger__obj_alloc(sizeof *s + sizeof c) : NULL;
    if (!s) {
        if (t && c && !t->argerr)
            t->argerr = dagger__task_failf(t, DAGGER_ENOMEM, "out of memory giving chunk %llu",
                                           (unsigned long long)dagger_chunk_id(c));
        dagger_chunk_release(c);
        return dagger_nil();
    }
    s->size = SCRATCH_CHUNK;
    memcpy(s->bytes, &c, sizeof c);
    s->next = x->scratch;
    x->scratch = s;
    return dagger_chunkv(c);
}

/* The chunk behind argument `i` where the body runs now: a chunk, or a shard's local piece (a
 * task that takes a per-thread shard stays on its thread from then on). NULL: the task failed. */
static dagger_chunk_t *data_arg(dagger_task_t *t, size_t i, const char *want)
{
    const dagger_value_t *v = i < t->nargs ? &t->args[i] : NULL;
    if (v && v->kind == DAGGER_KIND_CHUNK && v->u.c)
        return v->u.c;
    if (v && v->kind == DAGGER_KIND_SHARD && v->u.sh) {
        int th = dagger__pool_self_fresh(t->ctx->pool);
        dagger_chunk_t *c = dagger__mem_shard_local(v->u.sh, th);
        if (!c) {
            if (!t->argerr)
                t->argerr = dagger__task_failf(t, DAGGER_ESCOPE,
                                               "argument %zu is a shard with no piece for "
                                               "thread(%d), where the task runs",
                                               i, th);
            return NULL;
        }
        if (dagger__mem_shard_per_thread(v->u.sh))
            t->job.pin = th; /* a resumed task must find the same piece */
        return c;
    }
    if (!t->argerr) {
        if (!v)
            t->argerr = dagger__task_failf(
                t, DAGGER_ETYPE, "argument %zu requested as %s, but the task has %u argument%s", i,
                want, t->nargs, t->nargs == 1 ? "" : "s");
        else
            t->argerr = dagger__task_failf(t, DAGGER_ETYPE, "argument %zu is a %s, not a %s", i,
                                           dagger_kind_name(v->kind), want);
    }
    return NULL;
}

dagger_chunk_t *dagger_arg_chunk(const dagger_args_t *a, size_t i)
{
    return data_arg((dagger_task_t *)a, i, "chunk");
}

void *dagger_arg_buf(const dagger_args_t *a, size_t i, size_t *len)
{
    dagger_task_t *t = (dagger_task_t *)a;
    if (len)
        *len = 0;
    if (i < t->nargs && t->args[i].kind == DAGGER_KIND_BLOB) {
        if (len)
            *len = t->args[i].len;
        return (void *)t->args[i].u.p;
    }
    dagger_chunk_t *c = data_arg(t, i, "chunk, shard or blob");
    if (!c)
        return NULL;
    int th = dagger__pool_self_fresh(t->ctx->pool);
    dagger_proc_t p = {0, th >= 0 ? DAGGER_PROC_CPU : DAGGER_PROC_AUX, (int16_t)th};
    dagger_space_t space = dagger__mem_space_of(&p);
    void *ptr = NULL;
    int rc = dagger__mem_stage(c, &space, &ptr);
    if (rc) {
        if (!t->argerr)
            t->argerr = dagger__task_failf(t, rc, "argument %zu: %s", i, dagger_last_errmsg());
        return NULL;
    }
    if (len)
        *len = dagger_chunk_size(c);
    return ptr;
}

void *dagger_arg_array(const dagger_args_t *a, size_t i, dagger_elt_t elt, size_t *n)
{
    dagger_task_t *t = (dagger_task_t *)a;
    if (n)
        *n = 0;
    dagger_chunk_t *c = data_arg(t, i, "typed chunk");
    if (!c)
        return NULL;
    size_t es = dagger_elt_size(elt);
    if (dagger_chunk_elt(c) != elt || !es) {
        static const char *const names[] = {"raw", "f64", "f32", "i64", "i32", "u8"};
        int have = dagger_chunk_elt(c), want = (int)elt;
        if (!t->argerr)
            t->argerr = dagger__task_failf(
                t, DAGGER_ETYPE, "argument %zu is a chunk of %s elements, not %s", i,
                have >= 0 && have <= DAGGER_ELT_U8 ? names[have] : "unknown",
                want >= 0 && want <= DAGGER_ELT_U8 ? names[want] : "unknown");
        return NULL;
    }
    size_t len = 0;
    void *p = dagger_arg_buf(a, i, &len);
    if (p && n)
        *n = len / es;
    return p;
}
