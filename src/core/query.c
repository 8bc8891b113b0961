/* src/core/query.c - task queries and waits over several tasks: started, root error, wait_all,
 * fetch_all, wait_any; the task's user data.
 *
 * Design: wait_any puts one callback waiter on each task (a block shared by all of them,
 * counted once per waiter and once for the caller); the first completion records its index
 * and fires the block's event, which the caller waits on like any event (a task suspends, a
 * thread sleeps). Waiters of tasks still running after the call returns keep the block alive
 * until their task completes; the last one frees it.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "common/alloc.h"
#include "core/core_int.h"

bool dagger_task_started(const dagger_task_t *t)
{
    return t && atomic_load_explicit(&t->state, memory_order_acquire) != T_PENDING;
}

int dagger_task_root_error(const dagger_task_t *t, int *code, uint64_t *root_id)
{
    DAGGER_CHECK(t && code && root_id, DAGGER_EINVAL, "dagger_task_root_error: NULL argument");
    DAGGER_CHECK(dagger_task_done(t), DAGGER_ESTATE,
                 "dagger_task_root_error: task %llu '%s' has not finished",
                 (unsigned long long)t->id, dagger__task_display_name(t));
    *code = 0;
    *root_id = 0;
    if (!t->rc)
        return 0;
    const struct root *r = t->err ? t->err->root : NULL;
    *code = r ? r->code : t->rc;
    *root_id = r ? r->id : t->rc == DAGGER_EUPSTREAM ? 0 : t->id;
    return 0;
}

void *dagger_tc_userdata(const dagger_tc_t *tc)
{
    const struct task_ext *x = tc ? dagger__task_x((const dagger_task_t *)tc) : NULL;
    return x ? x->ud : NULL;
}

int dagger_wait_all(dagger_task_t *const *tasks, size_t n)
{
    DAGGER_CHECK(tasks || n == 0, DAGGER_EINVAL, "dagger_wait_all: the task array is NULL");
    for (size_t i = 0; i < n; i++)
        DAGGER_CHECK(tasks[i], DAGGER_EINVAL, "dagger_wait_all: tasks[%zu] is NULL", i);
    /* Refuse before waiting for any: a deadlocked set fails the same whatever its order. */
    for (size_t i = 0; i < n; i++) {
        if (dagger_task_done(tasks[i]))
            continue;
        int rc = dagger__task_check_wait(tasks[i], "dagger_wait_all");
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = dagger_wait(tasks[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int dagger_fetch_all(dagger_task_t *const *tasks, size_t n, dagger_value_t *values)
{
    DAGGER_CHECK(values || n == 0, DAGGER_EINVAL, "dagger_fetch_all: values is NULL");
    int rc = dagger_wait_all(tasks, n);
    if (rc)
        return rc;
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        values[i] = dagger_nil();
        int r = dagger_fetch(tasks[i], &values[i]);
        if (r && !first)
            first = r; /* dagger_fetch set the message of the first failure */
    }
    if (first) { /* the message of the first failure in array order */
        for (size_t i = 0; i < n; i++) {
            if (tasks[i]->rc) {
                dagger__set_errmsg_str(tasks[i]->rc, dagger_task_errmsg(tasks[i]));
                break;
            }
        }
    }
    return first;
}

struct any_block {
    _Atomic uint32_t refs;
    _Atomic int64_t winner; /* -1 until a task completes */
    struct dagger__event ev;
    size_t n;
    struct any_node {
        struct dagger__call_waiter w;
        struct any_block *b;
        size_t index;
    } nodes[];
};

static void any_release(struct any_block *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        dagger__free(b);
}

static void any_win(struct any_block *b, size_t index, dagger_ctx_t *ctx)
{
    int64_t expect = -1;
    if (atomic_compare_exchange_strong_explicit(&b->winner, &expect, (int64_t)index,
                                                memory_order_acq_rel, memory_order_acquire))
        dagger__event_fire(&b->ev, ctx);
}

static void any_done(struct dagger__call_waiter *w, dagger_ctx_t *ctx)
{
    struct any_node *node = (struct any_node *)w;
    struct any_block *b = node->b;
    any_win(b, node->index, ctx);
    any_release(b);
}

int dagger_wait_any(dagger_task_t *const *tasks, size_t n, size_t *index)
{
    DAGGER_CHECK(tasks && index, DAGGER_EINVAL, "dagger_wait_any: NULL argument");
    DAGGER_CHECK(n > 0, DAGGER_EINVAL, "dagger_wait_any: no task to wait for (n is 0)");
    for (size_t i = 0; i < n; i++)
        DAGGER_CHECK(tasks[i], DAGGER_EINVAL, "dagger_wait_any: tasks[%zu] is NULL", i);
    for (size_t i = 0; i < n; i++) {
        if (dagger_task_done(tasks[i])) {
            *index = i;
            return 0;
        }
    }
    /* Only the tasks whose wait could end are watched; none: the first refusal. */
    int refused = 0, watch = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = dagger__task_check_wait(tasks[i], "dagger_wait_any");
        if (rc && !refused)
            refused = rc;
        watch += rc == 0;
    }
    if (!watch)
        return refused; /* its message is set */
    struct any_block *b = dagger__malloc(sizeof *b + n * sizeof b->nodes[0]);
    DAGGER_CHECK(b, DAGGER_ENOMEM, "dagger_wait_any: out of memory for %zu waiters", n);
    atomic_init(&b->refs, (uint32_t)n + 1);
    atomic_init(&b->winner, -1);
    dagger__event_init(&b->ev);
    b->n = n;
    dagger_ctx_t *ctx = tasks[0]->ctx;
    for (size_t i = 0; i < n; i++) {
        struct any_node *node = &b->nodes[i];
        node->b = b;
        node->index = i;
        node->w.fn = any_done;
        node->w.node.kind = W_CALL;
        node->w.node.target = NULL;
        if (!dagger__event_push(&tasks[i]->waiters, &node->w.node)) {
            any_win(b, i, ctx); /* finished meanwhile */
            any_release(b);
        }
    }
    int rc = dagger__event_wait(ctx, &b->ev, 0);
    int64_t w = atomic_load_explicit(&b->winner, memory_order_acquire);
    any_release(b);
    if (rc)
        return rc;
    *index = (size_t)w;
    return 0;
}
