/* src/core/error.c - failure records: the root cause shared by every task it fails, and the
 * message chain of each.
 *
 * Design: the task where a failure starts owns a root (code, id, name, text), refcounted and
 * shared by every downstream task, each of which keeps its own message and id chain.
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"

const char *dagger__task_display_name(const dagger_task_t *t)
{
    if (t->name)
        return t->name;
    Dl_info info;
    if (dladdr((void *)(uintptr_t)t->fn, &info) && info.dli_sname)
        return info.dli_sname;
    return "task";
}

static void root_release(struct root *r)
{
    if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        dagger__free(r->name);
        dagger__free(r->text);
        dagger__free(r);
    }
}

void dagger__task_err_free(struct err *e)
{
    if (!e)
        return;
    root_release(e->root);
    dagger__free(e->msg);
    dagger__free(e->chain);
    dagger__free(e);
}

/* Record a failure that starts at `t` (it is the root). Keeps the first one recorded. */
int dagger__task_fail(dagger_task_t *t, int code, const char *text)
{
    if (t->err)
        return t->err->code;
    struct err *e = dagger__calloc(1, sizeof *e);
    struct root *r = dagger__calloc(1, sizeof *r);
    const char *name = dagger__task_display_name(t);
    if (e && r) {
        atomic_init(&r->refs, 1);
        r->code = code;
        r->id = t->id;
        r->thread = t->thread;
        r->name = dagger__strdup(name);
        r->text = dagger__strdup(text);
        if (!r->name || !r->text) { /* out of memory: the record would print "(null)" */
            dagger__free(r->name);
            dagger__free(r->text);
            dagger__free(e);
            dagger__free(r);
            return code; /* the task still fails with `code`; its message is the code's text */
        }
        e->code = code;
        e->root = r;
        e->msg = dagger__asprintf("task %llu '%s': %s", (unsigned long long)t->id, name, text);
        e->chain = dagger__asprintf("%llu", (unsigned long long)t->id);
        t->err = e;
    } else {
        dagger__free(e);
        dagger__free(r);
    }
    return code;
}

int dagger__task_failf(dagger_task_t *t, int code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return dagger__task_fail(t, code, buf);
}

/* The error of the failed task `t` has been read (fetched, inherited by a dependent): it no
 * longer counts as a failure nobody saw. */
void dagger__task_observe_failure(const dagger_task_t *t)
{
    dagger_task_t *m = (dagger_task_t *)t;
    if (atomic_load_explicit(&m->unseen, memory_order_acquire) &&
        atomic_exchange_explicit(&m->unseen, 0, memory_order_acq_rel))
        atomic_fetch_sub_explicit(&m->ctx->unfetched, 1, memory_order_relaxed);
}

int dagger__task_fail_chain(dagger_task_t *t, const dagger_task_t *up, const char *input, int code)
{
    const struct err *ue = up->err;
    const char *name = dagger__task_display_name(t);
    dagger__task_observe_failure(up);
    struct err *e = dagger__calloc(1, sizeof *e);
    if (!e)
        return code;
    e->code = code;
    if (ue && ue->root) {
        struct root *r = ue->root;
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
        e->root = r;
        if (r->id == up->id) {
            e->msg = dagger__asprintf("task %llu '%s': %s (task %llu '%s') failed: %s",
                                      (unsigned long long)t->id, name, input,
                                      (unsigned long long)up->id, r->name, r->text);
        } else {
            e->msg = dagger__asprintf(
                "task %llu '%s': %s (task %llu '%s') failed; root cause: task %llu '%s': %s "
                "(chain: %llu <- %s)",
                (unsigned long long)t->id, name, input, (unsigned long long)up->id,
                dagger__task_display_name(up), (unsigned long long)r->id, r->name, r->text,
                (unsigned long long)t->id, ue->chain ? ue->chain : "?");
        }
        const char *uc = ue->chain ? ue->chain : "?";
        if (strlen(uc) < 96) {
            e->chain = dagger__asprintf("%llu <- %s", (unsigned long long)t->id, uc);
        } else {
            e->chain = dagger__asprintf("%llu <- %llu <- ... <- %llu", (unsigned long long)t->id,
                                        (unsigned long long)up->id, (unsigned long long)r->id);
        }
    } else {
        e->msg =
            dagger__asprintf("task %llu '%s': %s (task %llu) failed: %s", (unsigned long long)t->id,
                             name, input, (unsigned long long)up->id, dagger_strerror(up->rc));
    }
    t->err = e;
    return code;
}

int dagger__task_fail_upstream(dagger_task_t *t, const struct dep *d)
{
    char input[64];
    if (d->node.argi >= 0)
        snprintf(input, sizeof input, "input %d", d->node.argi);
    else
        snprintf(input, sizeof input, "syncdep");
    return dagger__task_fail_chain(t, d->task, input, DAGGER_EUPSTREAM);
}

int dagger_fail(dagger_tc_t *tc, int code, const char *fmt, ...)
{
    dagger_task_t *t = (dagger_task_t *)tc;
    if (code >= 0)
        code = DAGGER_ETASK;
    if (!t)
        return code;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt ? fmt : "failed", ap);
    va_end(ap);
    return dagger__task_fail(t, code, buf);
}
