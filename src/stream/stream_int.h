/* src/stream/stream_int.h - records of the streaming layer: regions, nodes, edges.
 *
 * Design: a region records each spawn as a node whose task is a real core task running
 * driver() (driver.c), held by a bulk queue block until dagger_stream_end. An edge is a
 * single-producer single-consumer ring between two nodes: slots of dagger_value_t, and for
 * strings and blobs a byte area of max_value_bytes per slot, allocated once by the producer at
 * the first such value. A blocked driver publishes a fresh core event on the edge (cons_wait
 * when the ring is empty, prod_wait when it is full), rechecks, and suspends in
 * dagger__event_wait; whoever changes the condition takes the event out with an exchange and
 * fires it, so exactly one party fires each event.
 * A consumer publishes the slots it released in batches (tbatch, and always before it
 * suspends), so the producer's cache does not fetch the consumer's line for every value.
 * Invariants: an edge's head only grows, by its producer; tail only grows, by its consumer;
 * tail <= tpos <= head; head - tail <= cap; `closed` is stored after the producer's last head
 * store; a region is freed when its last reference goes (one per node that is not ended, one for
 * the opener until dagger_stream_end, one per driver between its start and its state CAS), after
 * every driver has left its loop. Lock order: reg_lock (region.c) is a leaf; it is held while hooks
 * wake nodes. SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_STREAM_INT_H
#define DAGGER_SRC_STREAM_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "dagger.h"
#include "dagger/net.h"
#include "dagger/stream.h"
#include "common/common.h"
#include "core/core.h"

/* Added to the end of src/core/task.c for this layer (see its comments). */

enum { N_NEW = 0, N_RUNNING, N_ENDED };        /* node->state */
enum { STOP_NONE = 0, STOP_DRAIN, STOP_HARD }; /* node->stop */
enum { END_OK = 0, END_ERROR, END_CANCEL };    /* how a node ended */

struct node;

struct edge {
    /* producer's line */
    _Atomic uint64_t head;
    uint64_t tail_cache; /* producer only */
    char pad0[DAGGER_CACHELINE - 16];
    /* consumer's line */
    _Atomic uint64_t tail; /* published by the consumer: at most tbatch - 1 behind tpos */
    uint64_t head_cache;   /* consumer only */
    uint64_t tpos;         /* consumer only: the values it has released */
    char pad1[DAGGER_CACHELINE - 24];
    /* Waiters: written only around a suspension, read by the other side on every push or
     * release, so a line of their own stays in both caches instead of following head or tail. */
    _Atomic(struct dagger__event *) prod_wait;
    _Atomic(struct dagger__event *) cons_wait;
    char pad2[DAGGER_CACHELINE - 16];
    /* set once each */
    _Atomic int closed; /* the producer ended: no value after head */
    _Atomic int dead;   /* the consumer ended: pushes are dropped */
    /* thr: free slots at which a waiting producer is woken; tbatch: released slots the consumer
     * publishes at once (1 on small rings) */
    uint64_t cap, mask, thr, tbatch;
    dagger_value_t *slots; /* mask + 1 entries */
    char *bytes;           /* (mask + 1) * slot_bytes, allocated by the producer */
    uint32_t slot_bytes;
    uint32_t argi; /* the consumer's argument index */
    struct node *src, *dst;
} __attribute__((aligned(DAGGER_CACHELINE)));

struct in_arg {
    uint32_t argi;
    uint32_t src; /* producer node index */
    struct edge *e;
};

struct ext_arg {
    uint32_t argi;
    dagger_task_t *t; /* +1: a task outside the region, fetched when the driver starts */
};

struct node {
    struct dagger_stream *r;
    dagger_task_t *task; /* +1 while the region lives */
    dagger_fn_t fn;
    uint32_t idx;
    dagger_stream_opts_t opts; /* in effect when it was spawned */
    struct in_arg *ins;
    uint32_t nins;
    struct ext_arg *exts;
    uint32_t nexts;
    dagger_task_t **sync; /* +1 each: the spawn's syncdeps, waited for at start */
    uint32_t nsync;
    struct edge **outs;
    uint32_t nouts, capouts;
    _Atomic int state;
    _Atomic int stop;
    int end_kind; /* set by whoever ends it */
    /* dagger_finish_stream: driver only */
    bool finish;
    dagger_value_t last, result;
    struct port *port; /* owned: the cross-process edge of an edge source or sink, or NULL */
};

/* The least capacity of the in-process edges into an edge sink and out of an edge source. */
#define DAGGER__STREAM_PORT_BUFFER 256

/* The cross-process end of an edge source or sink (remote.c). The driver of its node is the
 * edge's owner thread: it pushes or pops in the body and closes the edge when the node ends;
 * region_free aborts an edge whose driver never ran. */
struct port {
    dagger_edge_t *e; /* owned until closed (then NULL) */
    unsigned end;     /* DAGGER_EDGE_POP: a source; DAGGER_EDGE_PUSH: a sink */
    struct node *n;   /* set at spawn, before the node can run */
    int64_t count;    /* values popped or pushed: driver only */
    bool dirty;       /* a sink pushed since its last flush: driver only */
    int err;          /* a flush failed while the driver waited: driver only */
    bool stopped;     /* its body ended because the region stopped it: driver only */
};

struct dagger_stream {
    dagger_ctx_t *ctx;
    dagger_stream_opts_t opts;
    struct node **nodes;
    uint32_t nnodes, capnodes; /* guarded by reg_lock while the region is open */
    _Atomic uint32_t refs;
    _Atomic uint32_t running; /* nodes that have not ended */
    struct dagger__event all_ended;
    _Atomic(struct node *) err_origin;
    bool launched; /* guarded by reg_lock */
    /* A driver started before the launch (its bulk block could not hold it: out of memory):
     * dagger_stream_end cancels the region with this code. Guarded by reg_lock. */
    int early_err;
    bool open; /* between begin and end: owner only */
    /* A spawn of the region that returned no task (out of memory): the region is cancelled at
     * dagger_stream_end, which returns this code and message. Owner only. */
    int spawn_err;
    char spawn_msg[160];
    struct dagger_stream *next, *prev; /* registry, guarded by reg_lock */
};

/* region.c */
struct node *dagger__stream_lookup(const dagger_task_t *t);
/* The node of `t` with a reference to its region (released with dagger__stream_release), or
 * NULL when `t` is no node of a live region, or (*early) when its region has not launched:
 * then the region is marked to fail at dagger_stream_end. */
struct node *dagger__stream_acquire(const dagger_task_t *t, bool *early);
void dagger__stream_node_end(struct node *n, int kind);
void dagger__stream_release(struct dagger_stream *r);
void dagger__stream_wake(struct node *n);

/* remote.c */
/* The node left its loop with `*kind`: close its edge (cleanly only when it ended well and the
 * region did not fail). Returns 0, or the error of a failed close (recorded on the task;
 * *kind becomes END_ERROR). */
int dagger__stream_port_end(dagger_tc_t *tc, struct node *n, int *kind);
/* The driver of `n` is about to wait for an input: a sink flushes its edge. Returns 1 when the
 * node must end instead (the flush failed: recorded for port_end, or the peer closed). */
int dagger__stream_port_idle(struct node *n);
/* Abort the edge if still open and free the port (NULL is accepted). */
void dagger__stream_port_free(struct port *p);

/* region.c, for remote.c: a spawn of `r` returned no task; the region fails at its end with
 * `code` and `what` (the first such failure wins). */
void dagger__stream_spawn_failed(struct dagger_stream *r, int code, const char *what);
/* region.c, for remote.c: spawn a node that owns `p` (freed here on every failure). */
dagger_task_t *dagger__stream_spawn_node(struct dagger_stream *r, const dagger_task_opts_t *o,
                                         dagger_fn_t fn, const char *fname,
                                         const dagger_value_t *argv, size_t argc, struct port *p);

/* driver.c */
int dagger__stream_driver(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out);

static inline void dagger__stream_fire(struct dagger_stream *r, _Atomic(struct dagger__event *) *w)
{
    if (atomic_load_explicit(w, memory_order_relaxed)) {
        struct dagger__event *ev = atomic_exchange_explicit(w, NULL, memory_order_acq_rel);
        if (ev)
            dagger__event_fire(ev, r->ctx);
    }
}

#endif /* DAGGER_SRC_STREAM_INT_H */
