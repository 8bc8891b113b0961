/* src/stream/remote.c - edge sources and sinks: streams that cross to another process.
 *
 * Design: an edge source or sink is an ordinary streaming task of its region (a node with a
 * driver) whose body pops from or pushes to a dagger_edge_t (src/net/) that the node owns
 * through a `struct port`. It is spawned with occupancy 0, so it runs on an aux thread beside
 * the workers: an edge push or pop blocks in a syscall or a futex, and a worker must never be
 * held by it. Its in-process waits (an empty input, a full output) then block that aux thread,
 * which is what they do outside a worker. Edge waits are cut into slices of SLICE_MS so that a
 * stop of the region or a cancel is seen while the peer is silent.
 * A sink flushes its edge before its driver waits for the next input value (driver.c calls
 * dagger__stream_port_idle), so a batching transport (TCP) never sits on values while the
 * producer upstream is slow, and a sink that never waits sends full batches. When the
 * node ends well and its region did not fail, its edge is closed cleanly (a producer flushes
 * and sends END: the peer's source ends with the stream); otherwise it is aborted with the
 * failed task's message as reason (abort_port), and the peer's edge reports DAGGER_EPEER (with
 * that message where the transport carries it), which fails the peer's region in turn.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "net/net.h"
#include "stream/stream_int.h"

enum { SLICE_MS = 50 };

/* The region asks this node to stop now (an error, a cancel), or its body should leave. */
static bool must_stop(dagger_tc_t *tc, struct node *n, bool source)
{
    int st = atomic_load_explicit(&n->stop, memory_order_acquire);
    return st == STOP_HARD || (source && st == STOP_DRAIN) || dagger_tc_cancelled(tc);
}

/* End the node after this run with the count of values as its result. */
static int finish(struct node *n, struct port *p)
{
    n->finish = true;
    n->last = dagger_nil();
    n->result = dagger_i64(p->count);
    return 0;
}

/* End the node because the region stops it (a failure elsewhere, a teardown, a cancel): not an
 * end of its own, so the driver fails it with the failure's message when there is one, instead
 * of reporting the count so far as if the stream had ended (driver.c, own_end). */
static int stopped(struct node *n, struct port *p)
{
    p->stopped = true;
    return finish(n, p);
}

static int edge_failed(dagger_tc_t *tc, struct port *p, int rc)
{
    return dagger_fail(tc, rc, "%s", dagger_edge_errmsg(p->e));
}

static int check_port(dagger_tc_t *tc, struct port *p, unsigned end, const char *what)
{
    if (!p->e)
        return dagger_fail(tc, DAGGER_EINVAL, "%s: the edge is NULL", what);
    if (end == DAGGER_EDGE_PUSH && p->n->nins != 1)
        return dagger_fail(tc, DAGGER_EINVAL,
                           "%s: the input must be a streaming task of the same region", what);
    if (p->e->end != end)
        return dagger_fail(tc, DAGGER_EINVAL, "%s: %s is the %s end of its edge, not the %s end",
                           what, dagger_edge_uri(p->e),
                           p->e->end == DAGGER_EDGE_PUSH ? "producer" : "consumer",
                           end == DAGGER_EDGE_PUSH ? "producer" : "consumer");
    return 0;
}

/* edge_source(port): one value per run from the edge. */
static int edge_source(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct port *p = dagger_arg_ptr(a, 0);
    struct node *n = p->n;
    if (DAGGER_UNLIKELY(p->count == 0)) {
        int rc = check_port(tc, p, DAGGER_EDGE_POP, "dagger_stream_spawn_edge_source");
        if (rc)
            return rc;
    }
    int rc = dagger_edge_pop(p->e, out, 0);
    while (rc == DAGGER_ETIMEDOUT) {
        if (must_stop(tc, n, true))
            return stopped(n, p);
        rc = dagger_edge_pop(p->e, out, SLICE_MS);
    }
    if (rc == 0) {
        p->count++;
        return 0;
    }
    if (rc == DAGGER_ECLOSED) /* the producer closed after delivering everything */
        return finish(n, p);
    *out = dagger_nil();
    return edge_failed(tc, p, rc);
}

/* edge_sink(port, input): one value per run to the edge. */
static int edge_sink(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)out;
    struct port *p = dagger_arg_ptr(a, 0);
    struct node *n = p->n;
    if (DAGGER_UNLIKELY(p->count == 0)) {
        int rc = check_port(tc, p, DAGGER_EDGE_PUSH, "dagger_stream_spawn_edge_sink");
        if (rc)
            return rc;
    }
    const dagger_value_t *v = dagger_arg(a, 1);
    int rc = dagger_edge_push_timed(p->e, v, 0);
    while (rc == DAGGER_ETIMEDOUT) {
        if (must_stop(tc, n, false))
            return stopped(n, p);
        rc = dagger_edge_push_timed(p->e, v, SLICE_MS);
    }
    if (rc == DAGGER_ECLOSED) /* the consumer closed: like every consumer ending */
        return finish(n, p);
    if (rc)
        return edge_failed(tc, p, rc);
    p->count++;
    p->dirty = true;
    return 0;
}

int dagger__stream_port_idle(struct node *n)
{
    struct port *p = n->port;
    if (!p->dirty || !p->e)
        return 0;
    p->dirty = false;
    int rc = dagger_edge_flush(p->e, 0);
    while (rc == DAGGER_ETIMEDOUT) {
        if (atomic_load_explicit(&n->stop, memory_order_acquire) == STOP_HARD)
            return 1;
        rc = dagger_edge_flush(p->e, SLICE_MS);
    }
    if (rc == 0)
        return 0;
    if (rc != DAGGER_ECLOSED) /* the consumer closed: end as when every consumer ends */
        p->err = rc;
    return 1;
}

/* Abort the edge of `n`, telling the peer why (where the transport can): the failure of this
 * node, or else of the node that stopped the region (its message is published before the
 * region's err_origin), or a cancel. */
static void abort_port(struct node *n, dagger_edge_t *e, int kind)
{
    struct node *o = kind == END_ERROR ? n : atomic_load(&n->r->err_origin);
    int rank = dagger_ctx_rank(n->r->ctx);
    const char *msg = o ? dagger__task_failed_msg(o->task) : "";
    if (msg[0])
        (void)dagger__edge_abort_why(e, "on rank %d, %s", rank, msg);
    else if (o)
        (void)dagger__edge_abort_why(e, "on rank %d, task %llu '%s' failed", rank,
                                     (unsigned long long)dagger_task_id(o->task),
                                     dagger_task_name(o->task));
    else
        (void)dagger__edge_abort_why(e,
                                     "on rank %d, the streaming region of task %llu '%s' was "
                                     "cancelled",
                                     rank, (unsigned long long)dagger_task_id(n->task),
                                     dagger_task_name(n->task));
}

int dagger__stream_port_end(dagger_tc_t *tc, struct node *n, int *kind)
{
    struct port *p = n->port;
    if (!p->e)
        return 0;
    dagger_edge_t *e = p->e;
    int frc = 0;
    if (p->err && *kind == END_OK) { /* a flush failed while the node waited */
        *kind = END_ERROR;
        frc = edge_failed(tc, p, p->err);
    }
    bool clean = *kind == END_OK && !atomic_load(&n->r->err_origin) &&
                 atomic_load(&n->stop) != STOP_HARD && !dagger_tc_cancelled(tc);
    p->e = NULL;
    if (!clean) {
        abort_port(n, e, *kind);
        return frc;
    }
    /* Keep the message: the edge is freed by the close. */
    char uri[sizeof e->uri];
    memcpy(uri, e->uri, sizeof uri);
    int rc = dagger_edge_close(e);
    if (rc == 0 || (p->end == DAGGER_EDGE_PUSH && rc == DAGGER_ECLOSED)) {
        n->finish = true; /* fetch gives the count of values moved */
        n->result = dagger_i64(p->count);
        return 0;
    }
    *kind = END_ERROR;
    return dagger_fail(tc, rc, "%s: closing the edge failed: %s", uri, dagger_strerror(rc));
}

void dagger__stream_port_free(struct port *p)
{
    if (!p)
        return;
    if (p->e)
        (void)dagger__edge_abort(p->e);
    dagger__free(p);
}

static dagger_task_t *spawn_port(dagger_stream_t *s, dagger_edge_t *e, dagger_task_t *input,
                                 unsigned end, const char *what)
{
    if (!s || !s->open) {
        dagger__set_errmsg(DAGGER_EINVAL, "%s: %s", what,
                           s ? "the region is closed" : "the region is NULL");
        if (e)
            (void)dagger__edge_abort(e);
        return NULL;
    }
    if (end == DAGGER_EDGE_PUSH && !input) {
        /* Usually the input's own spawn failed: say so, with its cause, rather than let the
         * sink fail later with a message about the kind of its input. */
        char why[200];
        int code = s->spawn_err ? s->spawn_err : DAGGER_EINVAL;
        if (s->spawn_err)
            snprintf(why, sizeof why, "the input is NULL: its spawn failed (%s)", s->spawn_msg);
        else
            snprintf(why, sizeof why, "the input is NULL");
        dagger__stream_spawn_failed(s, code, why);
        if (e)
            (void)dagger__edge_abort(e);
        dagger__set_errmsg(code, "%s: %s", what, why);
        return NULL;
    }
    struct port *p = dagger__calloc(1, sizeof *p);
    if (!p) {
        if (e)
            (void)dagger__edge_abort(e);
        dagger__stream_spawn_failed(s, DAGGER_ENOMEM, "out of memory for an edge port");
        dagger__set_errmsg(DAGGER_ENOMEM, "%s: out of memory", what);
        return NULL;
    }
    p->e = e;
    p->end = end;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.occupancy = 0.0; /* an aux thread: edge waits block in syscalls and futexes */
    dagger_value_t argv[2] = {dagger_ptr(p), input ? dagger_taskv(input) : dagger_nil()};
    size_t argc = end == DAGGER_EDGE_PUSH ? 2 : 1;
    return dagger__stream_spawn_node(s, &o, end == DAGGER_EDGE_PUSH ? edge_sink : edge_source,
                                     end == DAGGER_EDGE_PUSH ? "edge_sink" : "edge_source", argv,
                                     argc, p);
}

dagger_task_t *dagger_stream_spawn_edge_source(dagger_stream_t *s, dagger_edge_t *e)
{
    return spawn_port(s, e, NULL, DAGGER_EDGE_POP, "dagger_stream_spawn_edge_source");
}

dagger_task_t *dagger_stream_spawn_edge_sink(dagger_stream_t *s, dagger_edge_t *e,
                                             dagger_task_t *input)
{
    return spawn_port(s, e, input, DAGGER_EDGE_PUSH, "dagger_stream_spawn_edge_sink");
}
