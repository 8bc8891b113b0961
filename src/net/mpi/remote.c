/* src/net/mpi/remote.c - tasks on other ranks: the remote executor, served tasks, results,
 * errors, cancellation, and payloads pulled by their receiver.
 *
 * Design: placement hands a task whose scope names another rank to mpi__remote_submit, which
 * turns the local task into a proxy: its arguments (dependencies' results included) travel in
 * an M_TASK message with the function as (build id, offset) or a registered name, and its
 * priority; the target spawns the task, and when it ends sends an M_RESULT that completes the
 * proxy through dagger__task_complete. Values up to MPI__INLINE_MAX travel inside the message;
 * a larger chunk, string or blob stays where it is (an export) and the receiver pulls it: it
 * posts its receives on a fresh tag, then sends M_PULL. A chunk result larger than that stays on
 * its rank as an export any rank may pull until the spawning rank drops it (M_DROP): the
 * spawning rank gets a reference (V_CHUNK_REF, subscribe.c), which it passes on to consumer
 * ranks (V_CHUNK_FROM: pull from the producer; V_CHUNK_LOCAL: the consumer is the producer); a
 * task flagged DAGGER__TASK_RESULT_HOME sends its chunk back instead, pulled by the origin on
 * arrival. Pulled bytes are lent to the served task and adopted by the proxy's result, without
 * copies. A failure comes back with the remote task's id, name and rank in the message;
 * dagger_cancel on a proxy sends M_CANCEL.
 *
 * Early sends (issue 9 item 4: a task argument that is a task on another rank is a
 * subscription). A consumer C bound to exactly one other rank r (its scope names r or one thread
 * of r; or no scope, and mutable data of r among its arguments, as placement would send it) and
 * that waits for other tasks is offered to mpi__early at its spawn, before it can become ready,
 * and sent to r at once (C_EARLY). Its dependencies that are not arguments (syncdeps: a
 * datadeps region's order) are slots after its arguments (nsync in M_TASK), awaited the same
 * way but for their end only: their subscription carries SUB_SYNC, and a nil value comes. Finished
 * inputs travel as values; each unfinished one as V_PENDING (producer's rank q, producer's id
 * here): q is where the producer runs (a proxy sent there, or an early task:
 * dagger__task_elsewhere), or this rank for a producer that runs here or is not placed yet (this
 * rank then sends its outcome to r once done, as a forward below). Right after the M_TASK the
 * spawning rank subscribes r to each producer on another rank (M_SUB to q: sent from here, it comes
 * after the producer's own M_TASK on the same pair of ranks, so q knows the producer, or has ended
 * it). q attaches the subscription to the producer (served, or still inbound there) and, when it
 * ends, sends its result or failure straight to r (M_ARG: a value as an argument is sent, a large
 * payload pulled by r from q), besides the M_RESULT to the spawning rank; a producer on r itself
 * fills the argument in place. A subscription that finds no producer (it ended and its result went)
 * is answered M_FWD to the spawning rank, which forwards the producer's outcome to r once its own
 * proxy has it. r keeps C in the intasks table (by origin and id) and spawns it when its last
 * pending argument is in; an M_ARG from q can overtake C's M_TASK (another pair of ranks), so it
 * waits as an orphan until C comes.
 * - Errors: a failed producer fails C on r without running it ("argument 0 failed: task 1:42
 *   'p' on rank 1: ..."), and C's dependents there the same way; here C fails upstream, as
 *   core fails any task whose input failed (the producer's proxy failed here too), and r's
 *   answer is dropped.
 * - Here C stays a pending task of core until its dependencies are done (C_EARLY_READY, from
 *   place_slow): its proxy keeps r's answer until then, so C completes after its inputs as any
 *   task does. The proxy leaves the table once both answered and ready; a dependency that
 *   failed here also sends M_CANCEL to r, so r never waits for what will not come.
 * - Cancelling C sends M_CANCEL: r fails it while it waits (or cancels it as a served task);
 *   cancelled before its send, it is never sent. A cancelled producer fails C as a failure does.
 * - A lost producer's rank fails every task waiting on it on r with DAGGER_EPEER (naming the
 *   rank and argument) when r detects the loss (mpi__remote_lost), and here its proxy fails,
 *   failing C upstream; a lost r answers C's proxy with DAGGER_EPEER. Nothing waits without a
 *   peer that can still answer.
 * - Stealing: C is pinned by its scope, never in a reserve; it runs on r with r's worker scope.
 * - Termination: M_SUB, M_FWD and M_ARG count as work messages, and C waiting on r counts in r's
 *   inbound work (mpi__remote_busy), so the rounds never end while an argument is on its way.
 * - DAGGER_MPI_DIRECT=0 turns early sends off (each task is sent when ready, as before).
 * Invariants: the tables below are touched by the progress thread only; a proxy is in the
 * proxy table from its M_TASK until its M_RESULT or the loss of its rank (an early one until it
 * is also ready here), and completes once.
 * SPDX-License-Identifier: MIT
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "net/mpi/mpi_int.h"
#include "net/net.h"
#include "sched/cost.h"
#include "sched/sched.h"
#include "trace/trace.h"
#include "mem/mem.h"
#include "value/value.h"

#define NBUCKETS 256

struct hnode {
    struct hnode *next;
    uint64_t key;
};

struct later;

struct proxy {
    struct hnode h; /* key: the local task's id */
    dagger_task_t *t;
    int rank;
    const void *fn; /* its body and bytes of arguments: its history entry (src/sched/cost.c) */
    size_t bytes;
    bool there; /* its result is read on its rank only (DAGGER__TASK_RESULT_THERE) */
    /* An early send (C_EARLY): in the table from its send until it is both answered and ready
     * here; its answer waits in ans_rc/ans_msg/ans until its dependencies are done here. */
    bool early;
    bool sent;     /* its M_TASK went out (else the answer is the error that kept it here) */
    bool ready;    /* its dependencies are done here (C_EARLY_READY) */
    bool local;    /* a dependency failed here: core fails it, the answer is dropped */
    bool answered; /* its rank answered, or was lost, or it could not be sent */
    int ans_rc;
    char *ans_msg;     /* the failure's text (dagger__malloc'd), or NULL */
    struct later *ans; /* the success */
    uint32_t nargs;
    uint32_t nslots;         /* nargs, then one per dependency that is not an argument */
    dagger_task_t **deps;    /* per slot: the unfinished dependency it was sent without */
    int *pranks;             /* per slot: the rank named as its producer (V_PENDING) */
    struct proxy *lost_next; /* mpi__remote_lost's list */
};

/* A consumer subscribed to a producer's result: an early task on `rank`, argument `slot`, sent by
 * `origin` as its task `cpid`. */
struct sub {
    struct sub *next;
    int rank, origin;
    uint64_t cpid;
    uint32_t slot;
    bool sync; /* the slot of a dependency that is not an argument: its end, not its value */
};

/* M_SUB's slot word: the slot, and whether only the producer's end is awaited. */
#define SUB_SYNC (1u << 31)

struct served {
    struct hnode h;     /* key: origin rank and the proxy's id */
    struct slot *slots; /* the pulled arguments, which the task borrows until it ends */
    uint32_t nslots;
    struct dagger__task_callback cb;
    struct mpi_cmd cmd;
    struct mpi_state *st;
    dagger_task_t *t;
    int origin;
    uint64_t pid;
    double expected;  /* seconds this rank's history expects (0: unknown), in served_backlog */
    bool result_home; /* its result goes back to its origin (DAGGER__TASK_RESULT_HOME) */
    struct sub *subs; /* early tasks on other ranks waiting for its result */
};

struct exported {
    struct hnode h;        /* key: the export id */
    dagger_chunk_t *chunk; /* retained, or NULL */
    dagger_task_t *task;   /* retained: its result holds the bytes; or NULL */
    void *bytes;           /* a copy, or NULL */
    dagger_value_t owned;  /* an argument's bytes taken over from the proxy, or nil */
    const void *p;
    size_t size;
    int peer;     /* the rank it was made for (its loss releases it) */
    bool multi;   /* a result left here: pulled by any rank until its holder drops it */
    int inflight; /* sends of it not out yet */
    struct mpi_state *st;
    bool dropped; /* out of the table: released once inflight is 0 */
};

/* How a value travels. V_CHUNK_REF: a chunk result left on the sending rank (subscribe.c);
 * V_CHUNK_FROM: pull it from a third rank, its producer; V_CHUNK_LOCAL: it is an export of the
 * receiving rank itself. */
enum {
    V_INLINE = 0,
    V_CHUNK,
    V_CHUNK_PULL,
    V_BYTES_PULL,
    V_CHUNK_REF,
    V_CHUNK_FROM,
    V_CHUNK_LOCAL,
    V_PENDING /* an early task's argument that its producer (rank, task id) sends later */
};

/* One incoming value: decoded in place, or filled by a pull. */
struct slot {
    dagger_value_t v;
    dagger_chunk_t *chunk; /* owned */
    dagger_shard_t *shard; /* owned */
    void *bytes;           /* owned: dagger__obj_alloc'd, nbytes long */
    size_t nbytes;
    bool pending;  /* V_PENDING: waits for an M_ARG from rank prank (its task ppid there) */
    int prank;     /* the producer's rank */
    uint64_t ppid; /* the producer: its id on the spawning rank (the key of its served entry) */
};

static void slots_free(struct slot *slots, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        dagger_chunk_release(slots[i].chunk);
        dagger_shard_release(slots[i].shard);
        if (slots[i].bytes)
            dagger__obj_free(slots[i].bytes, slots[i].nbytes);
    }
    dagger__free(slots);
}

/* A copy of an M_ARG message whose inline value an inbound task borrows. */
struct argmsg {
    struct argmsg *next;
    uint8_t bytes[];
};

/* An M_ARG that came before its task (its producer's rank is not ordered with the spawning
 * rank): kept by the task's key until the task comes (freed at close if it never does: its
 * origin was lost). An M_ARG for a task that already failed here is dropped (a dead mark). */
struct orphan {
    struct hnode h; /* key: served_key(origin, cpid); several may share it */
    int src;
    uint32_t dead; /* > 0: no message but a mark: the task failed here with this many
                      arguments still to come, which are dropped as they come (in_fail) */
    size_t len;
    uint8_t bytes[];
};

/* An incoming task (M_TASK) or result (M_RESULT) whose values may still be pulled. A task is in
 * the intasks table (by origin and id) until it is spawned or fails: a subscription finds it
 * there, and an early task's pending arguments (V_PENDING) arrive there as M_ARG. */
struct inbound {
    struct hnode h; /* key: served_key(src, pid), while `keyed` */
    bool keyed;
    bool is_task;
    int src;
    int vsrc;            /* the rank that sent the value being decoded: src, or an M_ARG's sender */
    void *msg;           /* a copy of the message: inline values borrow it */
    struct argmsg *more; /* copies of its M_ARG messages */
    struct sub *subs;    /* consumers of its result, handed to the served record */
    uint32_t npend;      /* pending arguments (V_PENDING) not arrived, counted in nleft too */
    uint32_t n, nleft;   /* slots: the nargs arguments, then the dependencies it waits for */
    uint32_t nargs;
    struct slot *slots;
    int rc;
    char why[320];
    /* a task */
    dagger_fn_t fn;
    char name[128];
    int64_t pin;
    bool mutable_result;
    bool result_home; /* DAGGER__TASK_RESULT_HOME */
    int prio;         /* its dagger_task_opts.priority */
    double expected;  /* its dagger_task_opts.expected_time (0 unknown) */
    uint64_t pid;
    /* a result */
    struct proxy *px;
};

static struct hnode **table(struct mpi_state *st, int which)
{
    return which == 0   ? (struct hnode **)st->proxies
           : which == 1 ? (struct hnode **)st->served
           : which == 2 ? (struct hnode **)st->exports
           : which == 3 ? (struct hnode **)st->intasks
                        : (struct hnode **)st->orphans;
}

static void h_put(struct mpi_state *st, int which, struct hnode *n)
{
    struct hnode **b = &table(st, which)[n->key % NBUCKETS];
    n->next = *b;
    *b = n;
}

static struct hnode *h_take(struct mpi_state *st, int which, uint64_t key)
{
    for (struct hnode **pp = &table(st, which)[key % NBUCKETS]; *pp; pp = &(*pp)->next) {
        if ((*pp)->key == key) {
            struct hnode *n = *pp;
            *pp = n->next;
            return n;
        }
    }
    return NULL;
}

static struct hnode *h_find(struct mpi_state *st, int which, uint64_t key)
{
    for (struct hnode *n = table(st, which)[key % NBUCKETS]; n; n = n->next)
        if (n->key == key)
            return n;
    return NULL;
}

static uint64_t served_key(int origin, uint64_t pid) { return (uint64_t)origin << 48 ^ pid; }

void mpi__remote_init(struct mpi_state *st)
{
    st->proxies = dagger__calloc(NBUCKETS, sizeof(void *));
    st->served = dagger__calloc(NBUCKETS, sizeof(void *));
    st->exports = dagger__calloc(NBUCKETS, sizeof(void *));
    st->intasks = dagger__calloc(NBUCKETS, sizeof(void *));
    st->orphans = dagger__calloc(NBUCKETS, sizeof(void *));
    st->nbuckets = NBUCKETS;
    if (!st->proxies || !st->served || !st->exports || !st->intasks || !st->orphans)
        dagger__panic("out of memory for the MPI backend's tables");
}

static void export_release(void *ud)
{
    struct exported *x = ud;
    atomic_fetch_sub_explicit(&x->st->nexports, 1, memory_order_relaxed);
    dagger_chunk_release(x->chunk);
    dagger_task_release(x->task);
    dagger__free(x->bytes);
    dagger__value_drop(&x->owned);
    dagger__free(x);
}

/* A send of a multi-pull export is out. */
static void export_sent(void *ud)
{
    struct exported *x = ud;
    if (--x->inflight == 0 && x->dropped)
        export_release(x);
}

/* `x` is out of the table: release it now, or once its sends are out. */
static void export_gone(struct exported *x)
{
    if (x->inflight > 0)
        x->dropped = true;
    else
        export_release(x);
}

void mpi__export_drop(struct mpi_state *st, int src, uint64_t xid)
{
    struct exported *x = (struct exported *)h_find(st, 2, xid);
    if (!x || x->peer != src)
        return; /* only the rank holding the reference (or that would pull it) lets it go */
    h_take(st, 2, xid);
    export_gone(x);
}

bool mpi__remote_busy(const struct mpi_state *st) { return st->nserved > 0 || st->ninbound > 0; }

void mpi__remote_fini(struct mpi_state *st)
{
    if (st->exports) {
        for (size_t b = 0; b < NBUCKETS; b++) {
            for (struct hnode *n = (struct hnode *)st->exports[b], *next; n; n = next) {
                next = n->next;
                export_release(n);
            }
        }
    }
    dagger__free(st->proxies);
    dagger__free(st->served);
    dagger__free(st->exports);
    dagger__free(st->intasks);
    if (st->orphans) /* arguments of tasks that failed before they came */
        for (size_t b = 0; b < NBUCKETS; b++)
            for (struct hnode *n = (struct hnode *)st->orphans[b], *next; n; n = next) {
                next = n->next;
                dagger__free(n);
            }
    dagger__free(st->orphans);
}

/* ---------------------------------------------------------------- values on the wire */

static void put_shape(struct wbuf *b, dagger_chunk_t *c)
{
    size_t shape[DAGGER_CHUNK_MAX_DIMS];
    int nd = dagger_chunk_shape(c, shape, DAGGER_CHUNK_MAX_DIMS);
    wb_u64(b, (uint64_t)dagger_chunk_elt(c));
    wb_u64(b, (uint64_t)nd);
    for (int i = 0; i < nd; i++)
        wb_u64(b, shape[i]);
    wb_u64(b, dagger_chunk_size(c));
}

/* Keep `n` bytes at `p` for `peer` to pull, by reference where something keeps them alive: the
 * chunk `c`; or `t`, a finished task whose result holds them, or the proxy whose argument `v`
 * holds them (an owned argument is taken over from it: the export frees it; a borrowed one, or
 * a dependency's result, lives until the proxy completes, which is after the receiver got every
 * pulled argument, since the remote task starts only then). Otherwise the bytes are copied. */
static uint64_t export_add(struct mpi_state *st, int peer, dagger_chunk_t *c, dagger_task_t *t,
                           dagger_value_t *v, const void *p, size_t n)
{
    struct exported *x = dagger__calloc(1, sizeof *x);
    if (!x)
        return 0;
    x->owned = dagger_nil();
    x->st = st;
    atomic_fetch_add_explicit(&st->nexports, 1, memory_order_relaxed);
    if (c || t) {
        x->chunk = c ? dagger_chunk_retain(c) : NULL;
        x->task = t ? dagger_task_retain(t) : NULL;
        x->p = p;
        if (v && (v->flags & DAGGER_VALUE_OWNED)) {
            x->owned = *v;
            v->flags &= (uint8_t)~DAGGER_VALUE_OWNED;
        }
    } else {
        x->bytes = dagger__malloc(n ? n : 1);
        if (!x->bytes) {
            atomic_fetch_sub_explicit(&st->nexports, 1, memory_order_relaxed);
            dagger__free(x);
            return 0;
        }
        memcpy(x->bytes, p, n);
        x->p = x->bytes;
    }
    x->size = n;
    x->peer = peer;
    x->h.key = ++st->next_xid;
    h_put(st, 2, &x->h);
    return x->h.key;
}

/* How put_value sends a value: a task's argument; a result, whose large chunk stays here for
 * any rank to pull (subscribe.c); a result its origin reads (DAGGER__TASK_RESULT_HOME), which
 * the origin pulls at once. */
enum put_as { AS_ARG, AS_RESULT, AS_RESULT_HOME };

/* Append `v` for `peer`; `owner` (may be NULL: large bytes are copied) is a finished task whose
 * result `v` is, or, with AS_ARG, the proxy whose argument `v` is (export_add). Returns 0, or an
 * error with the reason in why. */
static int put_value(struct mpi_state *st, struct wbuf *b, dagger_value_t *v, dagger_task_t *owner,
                     enum put_as as, int peer, const char *what, char *why, size_t cap)
{
    bool arg = as == AS_ARG;
    switch (v->kind) {
    case DAGGER_KIND_CHUNK: {
        dagger_chunk_t *c = v->u.c;
        int r = mpi__put_ref(st, b, c, peer, what, why, cap); /* mutable data: a reference */
        if (r)
            return r < 0 ? r : 0;
        const struct mpi_rref *rr = mpi__chunk_rref(c);
        dagger_space_t host = dagger__mem_host();
        if (rr && !dagger__mem_valid_in(c, &host)) { /* a result left on its producer's rank */
            if (owner && !arg) {
                snprintf(why, cap,
                         "%s: chunk %llu is a reference to rank %d's data, which "
                         "could not be read here",
                         what, (unsigned long long)dagger_chunk_id(c), rr->rank);
                return DAGGER_ESTATE;
            }
            wb_u64(b, rr->rank == peer ? V_CHUNK_LOCAL : V_CHUNK_FROM);
            put_shape(b, c);
            if (rr->rank != peer)
                wb_u64(b, (uint64_t)rr->rank);
            wb_u64(b, rr->xid);
            return 0;
        }
        void *p = dagger_chunk_data(c);
        size_t n = dagger_chunk_size(c);
        if (!p && n) {
            snprintf(why, cap, "%s: chunk %llu has no host copy to send: %s", what,
                     (unsigned long long)dagger_chunk_id(c), dagger_last_errmsg());
            return DAGGER_ENOMEM;
        }
        if (n <= MPI__INLINE_MAX) {
            wb_u64(b, V_CHUNK);
            put_shape(b, c);
            wb_bytes(b, p, n);
            return 0;
        }
        uint64_t xid = export_add(st, peer, c, NULL, NULL, p, n);
        if (!xid)
            goto oom;
        /* a result: it stays here, and any rank may pull it */
        bool left = owner && as == AS_RESULT;
        if (left)
            ((struct exported *)h_find(st, 2, xid))->multi = true;
        wb_u64(b, left ? V_CHUNK_REF : V_CHUNK_PULL);
        put_shape(b, c);
        wb_u64(b, xid);
        return 0;
    }
    case DAGGER_KIND_PTR:
        snprintf(why, cap, "%s is a local pointer, which cannot travel to rank %d", what, peer);
        return DAGGER_EINVAL;
    case DAGGER_KIND_SHARD:
        return mpi__put_shard(st, b, v->u.sh, peer, what, why, cap);
    case DAGGER_KIND_TASK:
        snprintf(why, cap, "%s is a %s handle, which cannot travel to rank %d in this build", what,
                 dagger_kind_name(v->kind), peer);
        return DAGGER_ENOSYS;
    case DAGGER_KIND_STR:
    case DAGGER_KIND_BLOB:
        if (v->len > MPI__INLINE_MAX) {
            size_t n = v->len + (v->kind == DAGGER_KIND_STR);
            uint64_t xid = export_add(st, peer, NULL, owner, arg ? v : NULL, v->u.p, n);
            if (!xid)
                goto oom;
            wb_u64(b, V_BYTES_PULL);
            wb_u64(b, v->kind);
            wb_u64(b, n);
            wb_u64(b, xid);
            return 0;
        }
        break;
    default:
        break;
    }
    long n = dagger_value_encode(v, NULL, 0);
    if (n < 0) {
        snprintf(why, cap, "%s: %s", what, dagger_last_errmsg());
        return (int)n;
    }
    wb_u64(b, V_INLINE);
    wb_u64(b, (uint64_t)n);
    void *dst = wb_reserve(b, (size_t)n);
    if (dst && dagger_value_encode(v, dst, (size_t)n) != n)
        dagger__panic("the value encoding changed size");
    return 0;
oom:
    snprintf(why, cap, "%s: out of memory keeping a payload to send", what);
    return DAGGER_ENOMEM;
}

static void inbound_step(struct mpi_state *st, struct inbound *in);
static void send_arg(struct mpi_state *st, struct sub *u, dagger_task_t *t, int rc,
                     const char *text);
static void subs_fail(struct mpi_state *st, struct sub **subs, int rc, const char *text);
static void sub_add(struct mpi_state *st, int rank, int origin, uint64_t ppid, uint64_t cpid,
                    uint32_t slot);
static void in_fail(struct mpi_state *st, struct inbound *in, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fwd_request(struct mpi_state *st, uint64_t cpid, uint32_t slot);
static void on_arg(struct mpi_state *st, int src, struct rbuf *rb, bool may_keep);
static void check_producers(struct mpi_state *st, struct inbound *in);
static void orphan_keep(struct mpi_state *st, int src, uint64_t key, struct rbuf *rb);
static void orphans_adopt(struct mpi_state *st, uint64_t key);

static void slot_pulled(struct mpi_state *st, struct import *im, int rc, const char *why)
{
    struct inbound *in = im->ud;
    if (!rc)
        DAGGER__TRACE(
            dagger__trace_rank(DAGGER__TRACE_RANK_DATA_RECEIVED, im->peer, in->pid, im->size));
    if (rc && !in->rc) {
        in->rc = rc;
        snprintf(in->why, sizeof in->why, "%s", why);
    }
    dagger__free(im);
    in->nleft--;
    inbound_step(st, in);
}

/* Pull `size` bytes of export `xid` from rank `from` into `dst`: post the receives, then ask. */
static int pull(struct mpi_state *st, struct inbound *in, void *dst, size_t size, uint64_t xid,
                int from, int64_t alloc_ns)
{
    struct import *im = dagger__calloc(1, sizeof *im);
    if (im)
        *im = (struct import){.peer = from,
                              .size = size,
                              .dst = dst,
                              .done = slot_pulled,
                              .ud = in,
                              .alloc_ns = alloc_ns};
    if (!im || mpi__import_start(st, im)) {
        dagger__free(im);
        snprintf(in->why, sizeof in->why, "out of memory receiving from rank %d", from);
        return DAGGER_ENOMEM;
    }
    in->nleft++;
    struct wbuf b = {0};
    wb_u64(&b, M_PULL);
    wb_u64(&b, xid);
    wb_u64(&b, (uint64_t)im->tag);
    mpi__send(st, from, &b, false);
    return 0;
}

/* A chunk that stays where it is: V_CHUNK_LOCAL, an export of this rank (a result made here,
 * sent back as an argument: taken as it is); V_CHUNK_REF, a result left on in->src, which
 * becomes a chunk whose home is that rank (subscribe.c). */
static int chunk_left(struct mpi_state *st, struct rbuf *rb, struct inbound *in, struct slot *s,
                      uint64_t mode, int elt, int nd, const size_t *shape, size_t size)
{
    uint64_t xid = rb_u64(rb);
    if (rb->bad) {
        snprintf(in->why, sizeof in->why, "a malformed value from rank %d", in->vsrc);
        return DAGGER_EINVAL;
    }
    if (mode == V_CHUNK_LOCAL) {
        struct exported *x = (struct exported *)h_find(st, 2, xid);
        if (!x || !x->chunk) {
            snprintf(in->why, sizeof in->why,
                     "rank %d sent a reference to data %llu of this rank, which is gone", in->vsrc,
                     (unsigned long long)xid);
            return DAGGER_ESTATE;
        }
        s->chunk = dagger_chunk_retain(x->chunk);
        s->v = dagger_chunkv(s->chunk);
        return 0;
    }
    dagger_space_t where = {in->vsrc, DAGGER__SPACE_RANK, 0};
    /* A relay's result is read only where it is: nothing here stages it (subscribe.c) */
    struct mpi_rref *r = mpi__rref_new(st, in->vsrc, xid, !(in->px && in->px->there));
    int rc = r ? dagger__mem_chunk_at(st->ctx, size, &where, r, &s->chunk) : DAGGER_ENOMEM;
    if (rc) { /* the reference's free op tells the producer to let it go */
        if (r)
            dagger__mem_space_ops(DAGGER__SPACE_RANK)->free(&where, r, size);
        snprintf(in->why, sizeof in->why, "out of memory for a reference to rank %d's data",
                 in->vsrc);
        return DAGGER_ENOMEM;
    }
    if (nd > 0 && dagger_chunk_set_type(s->chunk, (dagger_elt_t)elt, nd, shape) != 0) {
        snprintf(in->why, sizeof in->why, "a %zu-byte chunk from rank %d: %s", size, in->vsrc,
                 dagger_last_errmsg());
        return DAGGER_EINVAL;
    }
    s->v = dagger_chunkv(s->chunk);
    return 0;
}

/* Read one value into `s`; a pulled one starts its import. Returns 0 or an error (why set). */
static int get_value(struct mpi_state *st, struct rbuf *rb, struct inbound *in, struct slot *s)
{
    uint64_t mode = rb_u64(rb);
    if (mode == MPI__V_REF) {
        int rc = mpi__get_ref(st, rb, in->vsrc, &s->chunk, in->why, sizeof in->why);
        if (!rc)
            s->v = dagger_chunkv(s->chunk);
        return rc;
    }
    if (mode == MPI__V_SHARD) {
        int rc = mpi__get_shard(st, rb, in->vsrc, &s->shard, in->why, sizeof in->why);
        if (!rc)
            s->v = dagger_shardv(s->shard);
        return rc;
    }
    if (mode == V_PENDING) {
        int prank = (int)rb_u64(rb);
        uint64_t ppid = rb_u64(rb);
        if (rb->bad || !in->is_task || prank < 0 || prank >= st->nranks)
            goto bad;
        s->v = dagger_nil();
        s->pending = true;
        s->prank = prank;
        s->ppid = ppid;
        in->npend++;
        in->nleft++;
        return 0;
    }
    if (mode == V_INLINE) {
        uint64_t n = rb_u64(rb);
        const void *p = rb_bytes(rb, n);
        if (!p || dagger_value_decode(p, n, &s->v) < 0)
            goto bad;
        return 0;
    }
    if (mode == V_CHUNK || mode == V_CHUNK_PULL || mode == V_CHUNK_REF || mode == V_CHUNK_FROM ||
        mode == V_CHUNK_LOCAL) {
        int elt = (int)rb_u64(rb), nd = (int)rb_u64(rb);
        size_t shape[DAGGER_CHUNK_MAX_DIMS];
        if (nd < 0 || nd > DAGGER_CHUNK_MAX_DIMS)
            goto bad;
        for (int i = 0; i < nd; i++)
            shape[i] = rb_u64(rb);
        size_t size = rb_u64(rb);
        int from = mode == V_CHUNK_FROM ? (int)rb_u64(rb) : in->vsrc;
        if (rb->bad || from < 0 || from >= st->nranks || from == st->rank)
            goto bad;
        if (mode == V_CHUNK_LOCAL || mode == V_CHUNK_REF)
            return chunk_left(st, rb, in, s, mode, elt, nd, shape, size);
        int64_t t0 = st->stages ? (int64_t)dagger__now_ns() : 0;
        /* V_CHUNK fills every byte below, a pull receives every byte before the task runs */
        int rc = dagger__chunk_create_unset(st->ctx, size, &s->chunk);
        if (!rc && nd > 0)
            rc = dagger_chunk_set_type(s->chunk, (dagger_elt_t)elt, nd, shape);
        void *dst = rc ? NULL : dagger_chunk_data(s->chunk);
        if (rc || (!dst && size)) {
            snprintf(in->why, sizeof in->why, "a %zu-byte chunk from rank %d: %s", size, in->vsrc,
                     dagger_last_errmsg());
            return rc ? rc : DAGGER_ENOMEM;
        }
        s->v = dagger_chunkv(s->chunk);
        if (mode == V_CHUNK) {
            const void *p = rb_bytes(rb, size);
            if (!p)
                goto bad;
            memcpy(dst, p, size);
            return 0;
        }
        uint64_t xid = rb_u64(rb);
        if (rb->bad)
            goto bad;
        return pull(st, in, dst, size, xid, from, st->stages ? (int64_t)dagger__now_ns() - t0 : 0);
    }
    if (mode == V_BYTES_PULL) {
        int kind = (int)rb_u64(rb);
        size_t size = rb_u64(rb);
        uint64_t xid = rb_u64(rb);
        if (rb->bad || (kind != DAGGER_KIND_STR && kind != DAGGER_KIND_BLOB) || size == 0 ||
            size > UINT32_MAX)
            goto bad;
        int64_t t0 = st->stages ? (int64_t)dagger__now_ns() : 0;
        s->bytes = dagger__obj_alloc(size); /* adopted by the task in the end: no copy */
        s->nbytes = size;
        if (!s->bytes) {
            snprintf(in->why, sizeof in->why, "out of memory for %zu bytes from rank %d", size,
                     in->vsrc);
            return DAGGER_ENOMEM;
        }
        s->v = dagger_nil(); /* the bytes arrive later: no strlen now */
        s->v.kind = (uint8_t)kind;
        s->v.len = (uint32_t)(kind == DAGGER_KIND_STR ? size - 1 : size);
        s->v.u.p = s->bytes;
        return pull(st, in, s->bytes, size, xid, in->vsrc,
                    st->stages ? (int64_t)dagger__now_ns() - t0 : 0);
    }
bad:
    snprintf(in->why, sizeof in->why, "a malformed value from rank %d", in->vsrc);
    return DAGGER_EINVAL;
}

static void inbound_free(struct mpi_state *st, struct inbound *in)
{
    if (in->keyed)
        h_take(st, 3, in->h.key);
    for (struct sub *u = in->subs, *next; u; u = next) {
        next = u->next;
        dagger__free(u);
    }
    for (struct argmsg *m = in->more, *next; m; m = next) {
        next = m->next;
        dagger__free(m);
    }
    slots_free(in->slots, in->n);
    dagger__free(in->msg);
    dagger__free(in);
    st->ninbound--;
}

/* ---------------------------------------------------------------- results */

static void send_result(struct mpi_state *st, int origin, uint64_t pid, dagger_task_t *t, int rc,
                        const char *msg, uint64_t id, const char *name, bool home)
{
    struct wbuf b = {0};
    wb_u64(&b, M_RESULT);
    wb_u64(&b, pid);
    wb_u64(&b, (uint64_t)(int64_t)rc);
    wb_u64(&b, id);
    wb_str(&b, name);
    /* How long its body ran here: the placing rank's history learns from it. */
    double ran = t && !rc ? dagger__task_ran(t) : 0.0;
    wb_u64(&b, ran > 0.0 ? (uint64_t)(ran * 1e9) : 0);
    if (rc) {
        wb_str(&b, msg);
    } else {
        dagger_value_t v = dagger_nil();
        char why[320];
        if (t && dagger_fetch(t, &v) != 0)
            v = dagger_nil();
        struct wbuf val = {0};
        int r = put_value(st, &val, &v, t, home ? AS_RESULT_HOME : AS_RESULT, origin, "the result",
                          why, sizeof why);
        if (r) { /* send the failure instead */
            dagger__free(val.p);
            dagger__free(b.p);
            send_result(st, origin, pid, NULL, r, why, id, name, false);
            return;
        }
        wb_bytes(&b, val.p, val.len);
        dagger__free(val.p);
    }
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_RESULT_SENT, origin, pid, b.len));
    mpi__send(st, origin, &b, true);
}

/* A served task ended (on the thread that completed it): hand it to the progress thread. A
 * chunk result that is itself a reference to a third rank's data is read here first, so that
 * this rank can answer for it. */
static void served_done(dagger_task_t *t, void *ud)
{
    struct served *s = ud;
    dagger_value_t v;
    dagger_space_t host = dagger__mem_host();
    if (dagger_task_error(t) == 0 && dagger_fetch(t, &v) == 0 && v.kind == DAGGER_KIND_CHUNK &&
        v.u.c && mpi__chunk_rref(v.u.c) && !dagger__mem_valid_in(v.u.c, &host) &&
        !pthread_equal(pthread_self(), s->st->thread))
        (void)dagger_chunk_data(v.u.c); /* a failure is reported when the result is sent */
    s->cmd.type = C_RESULT;
    s->cmd.rec = s;
    mpi__linger(s->st); /* the origin's next task may follow */
    mpi__push(s->st, &s->cmd);
}

static void on_served_result(struct mpi_state *st, struct served *s)
{
    dagger_task_t *t = s->t;
    int rc = dagger_task_error(t);
    const char *msg = dagger_task_errmsg(t);
    /* "task 42 'load': text" -> "text": the origin names the task with its rank */
    const char *q = strstr(msg, "': ");
    if (rc && strncmp(msg, "task ", 5) == 0 && q)
        msg = q + 3;
    send_result(st, s->origin, s->pid, t, rc, msg, dagger_task_id(t), dagger_task_name(t),
                s->result_home);
    if (s->subs) {           /* straight to its consumers' ranks, not through its origin */
        char text[400] = ""; /* read only on a failure: worded only then (3200 instructions) */
        if (rc)
            snprintf(text, sizeof text, "task %d:%llu '%s' on rank %d: %s", st->rank,
                     (unsigned long long)dagger_task_id(t), dagger_task_name(t), st->rank, msg);
        for (struct sub *u = s->subs, *next; u; u = next) {
            next = u->next;
            send_arg(st, u, t, rc, text);
            dagger__free(u);
        }
        s->subs = NULL;
    }
    /* A mutable chunk went as a reference that the held table keeps (data.c): the task's own
     * reference goes now, not with its record, which the worker that completed it may still
     * hold. Then the data's free follows its last give-back, which the origin's next message
     * to this rank comes after (tests/test_mpi_data.c, credit_round). A shard keeps its record's
     * reference: only the pieces of the origin's rank went as references. */
    dagger_value_t v;
    if (rc == 0 && dagger_fetch(t, &v) == 0 && v.kind == DAGGER_KIND_CHUNK && v.u.c &&
        dagger_chunk_is_mutable(v.u.c, NULL))
        dagger__task_drop_result(t);
    h_take(st, 1, s->h.key);
    dagger_task_release(t);
    slots_free(s->slots, s->nslots);
    st->served_backlog -= s->expected;
    if (--st->nserved == 0 || st->served_backlog < 0.0)
        st->served_backlog = 0.0; /* no drift of the float sum */
    dagger__free(s);
}

/* A result handed to a worker to complete its proxy with (complete_later). */
struct later {
    dagger_task_t *t; /* the proxy's reference */
    dagger_value_t v;
    dagger_chunk_t *chunk; /* owned: v is this chunk */
    dagger_shard_t *shard; /* owned: v is this shard (an early send's stashed answer) */
    bool adopt;            /* v's str/blob bytes are owned (dagger__obj_alloc'd) */
};

/* Completing a proxy places its local dependents at once, which stages their chunk inputs; a
 * chunk left on another rank is pulled then, waiting for the progress thread. So while such
 * chunks exist here, a worker completes proxies, never the progress thread. */
static void later_run(struct later *l)
{
    if (l->adopt)
        dagger__task_complete_owned(l->t, &l->v);
    else
        dagger__task_complete(l->t, 0, &l->v, NULL);
    dagger_chunk_release(l->chunk);
    dagger_shard_release(l->shard);
    dagger_task_release(l->t);
    dagger__free(l);
}

static int complete_later(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)out;
    later_run(dagger_arg_ptr(a, 0));
    return 0;
}

/* Take a successful result out of `in` (its chunk, shard or bytes; inline bytes copied, since
 * they borrow the message). NULL when out of memory (nothing taken). */
static struct later *later_take(struct inbound *in)
{
    struct slot *s = &in->slots[0];
    struct later *l = dagger__calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->v = s->v;
    bool bytes = s->v.kind == DAGGER_KIND_STR || s->v.kind == DAGGER_KIND_BLOB;
    if (bytes && !s->bytes) {
        size_t n = (size_t)s->v.len + (s->v.kind == DAGGER_KIND_STR);
        void *copy = dagger__obj_alloc(n ? n : 1);
        if (!copy) {
            dagger__free(l);
            return NULL;
        }
        if (s->v.len)
            memcpy(copy, s->v.u.p, s->v.len);
        if (s->v.kind == DAGGER_KIND_STR)
            ((char *)copy)[s->v.len] = 0;
        l->v.u.p = copy;
    }
    s->bytes = NULL;
    l->adopt = bytes;
    l->chunk = s->chunk;
    s->chunk = NULL;
    l->shard = s->shard;
    s->shard = NULL;
    return l;
}

static void later_drop(struct later *l)
{
    if (l->adopt) {
        size_t n = (size_t)l->v.len + (l->v.kind == DAGGER_KIND_STR);
        dagger__obj_free((void *)l->v.u.p, n ? n : 1);
    }
    dagger_chunk_release(l->chunk);
    dagger_shard_release(l->shard);
    dagger__free(l);
}

/* Complete l's task: on a worker while chunks left on other ranks exist here (later_run),
 * else, or when no helper task can be had, on this thread. */
static void later_complete(struct mpi_state *st, struct later *l)
{
    if (atomic_load_explicit(&st->nrrefs, memory_order_relaxed) > 0) {
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = "mpi.complete";
        dagger_value_t argv[1] = {dagger_ptr(l)};
        dagger_task_t *h = dagger_spawn_impl(st->ctx, &o, complete_later, NULL, argv, 1);
        if (h) { /* the helper owns l now (it may have run already) */
            dagger_task_release(h);
            return;
        }
    }
    later_run(l);
}

/* Hand a successful result to later_complete. Returns false (nothing taken) when out of
 * memory: the caller completes it here. */
static bool complete_on_worker(struct mpi_state *st, struct inbound *in)
{
    struct later *l = later_take(in);
    if (!l)
        return false;
    l->t = in->px->t; /* the proxy's reference */
    later_complete(st, l);
    return true;
}

/* Complete a proxy from its M_RESULT, once its values are here. */
static void early_answer(struct mpi_state *st, struct inbound *in, int rc, uint64_t rid,
                         const char *rname);

static void finish_result(struct mpi_state *st, struct inbound *in, int rc, uint64_t rid,
                          const char *rname)
{
    if (in->px->early) { /* kept until its dependencies are done here too */
        early_answer(st, in, rc, rid, rname);
        return;
    }
    dagger_task_t *t = in->px->t;
    if (!rc && atomic_load_explicit(&st->nrrefs, memory_order_relaxed) > 0 &&
        complete_on_worker(st, in)) {
        dagger__free(in->px); /* the worker holds the proxy's reference */
        return;
    }
    if (rc) {
        char text[640];
        snprintf(text, sizeof text, "task %d:%llu '%s' on rank %d: %s", in->src,
                 (unsigned long long)rid, rname, in->src, in->why);
        dagger__task_complete(t, rc, NULL, text);
    } else if (in->slots[0].bytes) { /* pulled bytes: the task adopts them */
        dagger__task_complete_owned(t, &in->slots[0].v);
        in->slots[0].bytes = NULL;
    } else {
        dagger__task_complete(t, 0, &in->slots[0].v, NULL);
    }
    dagger_task_release(t);
    dagger__free(in->px);
}

/* ---------------------------------------------------------------- served tasks */

static void spawn_served(struct mpi_state *st, struct inbound *in)
{
    atomic_fetch_add_explicit(&st->served_in, 1, memory_order_relaxed);
    if (in->rc) {
        send_result(st, in->src, in->pid, NULL, in->rc, in->why, 0, in->name, false);
        return;
    }
    struct served *s = dagger__calloc(1, sizeof *s);
    dagger_value_t small[8];
    uint32_t nargs = in->nargs; /* the slots after them held dependencies only */
    dagger_value_t *argv = nargs <= 8 ? small : dagger__malloc(nargs * sizeof *argv);
    if (!s || !argv) {
        dagger__free(s);
        if (argv != small)
            dagger__free(argv);
        in->rc = DAGGER_ENOMEM;
        snprintf(in->why, sizeof in->why, "out of memory spawning the task");
        send_result(st, in->src, in->pid, NULL, in->rc, in->why, 0, in->name, false);
        return;
    }
    for (uint32_t i = 0; i < nargs; i++) { /* pulled bytes are lent to the task: no copy */
        argv[i] = in->slots[i].v;
        if (in->slots[i].bytes)
            argv[i].flags |= DAGGER_VALUE_BORROW;
    }
    /* Its share of this rank's load as reported to the others: this rank's history, else the
     * expected_time it came with (which it keeps here, for a nested placement too). */
    double expected = in->expected;
    double h;
    if (dagger__cost_expected((const void *)(uintptr_t)in->fn, DAGGER_PROC_CPU,
                              dagger__cost_bytes(argv, nargs), &h) > 0)
        expected = h;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = in->name[0] ? in->name : NULL;
    if (in->mutable_result)
        o.flags |= DAGGER_TASK_MUTABLE_RESULT;
    o.expected_time = in->expected;
    o.priority = in->prio; /* the priority it was spawned with holds here too */
    /* No pin: any thread of this rank, said explicitly so that the cost model never sends a
     * task that was placed (or stolen) here on to another rank. */
    dagger_scope_t *scope =
        in->pin >= 0 ? dagger_scope_thread((int)in->pin) : dagger_scope_worker(st->rank);
    if (scope)
        o.scope = scope;
    dagger_task_t *t = dagger_spawn_impl(st->ctx, &o, in->fn, NULL, argv, nargs);
    dagger_scope_release(scope);
    if (argv != small)
        dagger__free(argv);
    if (!t) {
        dagger__free(s);
        in->rc = DAGGER_ENOMEM;
        snprintf(in->why, sizeof in->why, "out of memory spawning the task");
        send_result(st, in->src, in->pid, NULL, in->rc, in->why, 0, in->name, false);
        return;
    }
    s->st = st;
    s->t = t;
    s->slots = in->slots;
    s->nslots = in->n;
    in->slots = NULL;
    in->n = 0;
    s->origin = in->src;
    s->pid = in->pid;
    s->h.key = served_key(in->src, in->pid);
    s->expected = expected;
    s->result_home = in->result_home;
    s->subs = in->subs; /* its consumers wait for its end now */
    in->subs = NULL;
    h_put(st, 1, &s->h);
    st->nserved++;
    atomic_fetch_add_explicit(&st->served_total, 1, memory_order_relaxed);
    st->served_backlog += expected;
    dagger__task_on_done(t, &s->cb, served_done, s);
}

static void inbound_step(struct mpi_state *st, struct inbound *in)
{
    if (in->nleft > 0)
        return;
    if (in->is_task) {
        if (in->keyed) { /* spawned or failed: a subscription now finds the served task */
            h_take(st, 3, in->h.key);
            in->keyed = false;
        }
        spawn_served(st, in);
        if (in->subs) { /* it failed before it ran: so do its consumers */
            char text[480];
            snprintf(text, sizeof text, "task '%.120s' on rank %d: %s", in->name, st->rank,
                     in->why);
            subs_fail(st, &in->subs, in->rc, text);
        }
    } else {
        uint64_t rid = in->pid; /* a result keeps the remote id in pid */
        finish_result(st, in, in->rc, rid, in->name);
    }
    inbound_free(st, in);
}

static struct inbound *inbound_new(struct mpi_state *st, int src, struct rbuf *rb)
{
    struct inbound *in = dagger__calloc(1, sizeof *in);
    void *copy = dagger__malloc(rb->len ? rb->len : 1);
    if (!in || !copy) {
        dagger__free(in);
        dagger__free(copy);
        return NULL;
    }
    memcpy(copy, rb->p, rb->len);
    in->msg = copy;
    rb->p = copy; /* inline values borrow the copy */
    in->src = src;
    in->vsrc = src;
    in->pin = -1;
    st->ninbound++;
    return in;
}

static void on_task(struct mpi_state *st, int src, struct rbuf *rb)
{
    struct inbound *in = inbound_new(st, src, rb);
    if (!in)
        dagger__panic("out of memory receiving a task from rank %d", src);
    in->is_task = true;
    in->pid = rb_u64(rb);
    mpi__linger(st); /* a worker stays up for it */
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_TASK_RECEIVED, src, in->pid, rb->len));
    in->pin = (int64_t)rb_u64(rb);
    uint64_t rflags = rb_u64(rb);
    in->mutable_result = (rflags & 1) != 0;
    in->result_home = (rflags & 2) != 0;
    uint64_t expected_ns = rb_u64(rb);
    in->prio = (int)(int32_t)rb_u64(rb);
    in->expected = expected_ns < (uint64_t)86400 * 1000000000u ? (double)expected_ns * 1e-9 : 0.0;
    rb_str(rb, in->name, sizeof in->name);
    struct dagger__fn_ref ref = {0};
    rb_str(rb, ref.name, sizeof ref.name);
    ref.idlen = (int)rb_u64(rb);
    const void *id =
        ref.idlen > 0 && ref.idlen <= DAGGER__BUILD_ID_MAX ? rb_bytes(rb, (size_t)ref.idlen) : NULL;
    if (id)
        memcpy(ref.id, id, (size_t)ref.idlen);
    ref.offset = rb_u64(rb);
    uint64_t nsync = rb_u64(rb); /* dependencies that are not arguments (early sends) */
    uint64_t nargs = rb_u64(rb), n = nargs + nsync;
    if (rb->bad || nargs > 65536 || nsync > 65536) {
        in->rc = DAGGER_EINVAL;
        snprintf(in->why, sizeof in->why, "a malformed task message from rank %d", src);
    } else {
        in->rc = dagger__fn_resolve(&ref, &in->fn, in->why, sizeof in->why);
        in->nargs = (uint32_t)nargs;
    }
    if (!in->rc && n) {
        in->slots = dagger__calloc(n, sizeof *in->slots);
        if (!in->slots) {
            in->rc = DAGGER_ENOMEM;
            snprintf(in->why, sizeof in->why, "out of memory for %llu arguments",
                     (unsigned long long)n);
        }
    }
    /* In the table before its arguments are read: a subscription to it may follow at once. */
    in->h.key = served_key(src, in->pid);
    h_put(st, 3, &in->h);
    in->keyed = true;
    for (uint64_t i = 0; !in->rc && i < n; i++) {
        in->n = (uint32_t)i + 1;
        in->rc = get_value(st, rb, in, &in->slots[i]);
    }
    if (in->rc)
        in_fail(st, in, in->rc, "%s", in->why);
    else if (in->npend)
        check_producers(st, in);
    if (in->npend) { /* still waiting: what came before it, and the rest later */
        atomic_fetch_add_explicit(&st->early_in, 1, memory_order_relaxed);
        uint64_t key = in->h.key;
        in->nleft++; /* it cannot end (and go) while its orphans are handed to it */
        orphans_adopt(st, key);
        in->nleft--;
    }
    inbound_step(st, in);
}

static void on_result(struct mpi_state *st, int src, struct rbuf *rb)
{
    uint64_t pid = rb_u64(rb);
    int rc = (int)(int64_t)rb_u64(rb);
    uint64_t rid = rb_u64(rb);
    struct proxy *px = (struct proxy *)h_find(st, 0, pid);
    if (!px || (px->early && px->answered))
        return;     /* its rank was declared lost, and it completed then */
    if (!px->early) /* an early one stays until it is ready here too */
        h_take(st, 0, pid);
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_RESULT_RECEIVED, src, pid, rb->len));
    st->nawaiting--;
    mpi__linger(st); /* its waiter, then its next spawn */
    struct inbound *in = inbound_new(st, src, rb);
    if (!in)
        dagger__panic("out of memory receiving a result from rank %d", src);
    in->px = px;
    in->pid = rid;
    rb_str(rb, in->name, sizeof in->name);
    uint64_t ran_ns = rb_u64(rb);
    /* The run time measured there feeds this rank's history, as a run here would: placement
     * from here then knows the function without running it here first. */
    if (!rc && !rb->bad && ran_ns > 0 && ran_ns < (uint64_t)86400 * 1000000000u)
        dagger__cost_record(px->fn, DAGGER_PROC_CPU, px->bytes, (double)ran_ns * 1e-9);
    in->slots = dagger__calloc(1, sizeof *in->slots);
    in->n = in->slots ? 1 : 0;
    if (rc) {
        in->rc = rc;
        rb_str(rb, in->why, sizeof in->why);
    } else if (!in->slots) {
        in->rc = DAGGER_ENOMEM;
        snprintf(in->why, sizeof in->why, "out of memory receiving the result");
    } else {
        in->rc = get_value(st, rb, in, &in->slots[0]);
    }
    inbound_step(st, in);
}

static void on_pull(struct mpi_state *st, int src, struct rbuf *rb)
{
    uint64_t xid = rb_u64(rb);
    int tag = (int)rb_u64(rb);
    struct exported *x = (struct exported *)h_find(st, 2, xid);
    if (!x || rb->bad) {
        fprintf(stderr, "dagger: rank %d: rank %d pulled unknown data %llu\n", st->rank, src,
                (unsigned long long)xid);
        return;
    }
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_DATA_SENT, src, xid, x->size));
    if (x->multi) { /* a result left here: it stays for the other readers */
        x->inflight++;
        mpi__send_data(st, src, tag, x->p, x->size, export_sent, x);
        return;
    }
    h_take(st, 2, xid);
    mpi__send_data(st, src, tag, x->p, x->size, export_release, x);
}

/* ---------------------------------------------------------------- subscriptions
 * An early task (V_PENDING arguments) subscribes on receipt to each producer's rank (M_SUB). The
 * producer's rank attaches the subscription to the producer (served, or still inbound there) and
 * sends its result straight to the consumer's rank when it ends (M_ARG), besides its M_RESULT to
 * the spawning rank. A subscription that finds no producer there (it ended and its result went,
 * or its M_TASK is still on the way) is answered M_FWD to the spawning rank, which forwards the
 * producer's outcome itself once it has it (fwd_request). */

/* "argument 2", or "dependency 0" for a slot after the arguments (an early task's dependency
 * that is not an argument, of which only the end is awaited). */
static const char *slot_name(const struct inbound *in, uint32_t slot, char *buf, size_t cap)
{
    if (slot < in->nargs)
        snprintf(buf, cap, "argument %u", slot);
    else
        snprintf(buf, cap, "dependency %u", slot - in->nargs);
    return buf;
}

/* Fail an inbound task `in` now (keeping the first error): its pending arguments are no longer
 * awaited (a late M_ARG finds it out of the table and is dropped); pulls in flight end first. */
static void in_fail(struct mpi_state *st, struct inbound *in, int rc, const char *fmt, ...)
{
    if (!in->rc) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(in->why, sizeof in->why, fmt, ap);
        va_end(ap);
        in->rc = rc;
    }
    for (uint32_t i = 0; i < in->n; i++)
        in->slots[i].pending = false;
    if (in->npend) { /* its arguments still on their way are dropped as they come */
        struct orphan *o = dagger__calloc(1, sizeof *o + 1);
        if (o) { /* out of memory: they wait as orphans until close instead */
            o->h.key = served_key(in->src, in->pid);
            o->dead = in->npend;
            h_put(st, 4, &o->h);
        }
    }
    in->nleft -= in->npend;
    in->npend = 0;
    if (in->keyed) {
        h_take(st, 3, in->h.key);
        in->keyed = false;
    }
}

/* An argument of a task that failed here came: drop it, and let its sender free a payload it
 * kept for this rank to pull. Returns false when `key` has no such mark. */
static bool arg_dead(struct mpi_state *st, int src, uint64_t key, struct rbuf *rb, int rc)
{
    struct hnode **pp = (struct hnode **)&st->orphans[key % NBUCKETS];
    while (*pp && ((*pp)->key != key || !((struct orphan *)*pp)->dead))
        pp = &(*pp)->next;
    struct orphan *o = (struct orphan *)*pp;
    if (!o)
        return false;
    if (--o->dead == 0) {
        *pp = o->h.next;
        dagger__free(o);
    }
    uint64_t mode = rc ? V_INLINE : rb_u64(rb), xid = 0;
    if (mode == V_CHUNK_PULL) {
        rb_u64(rb); /* elt */
        uint64_t nd = rb_u64(rb);
        for (uint64_t i = 0; i < nd && i <= DAGGER_CHUNK_MAX_DIMS; i++)
            rb_u64(rb);
        rb_u64(rb); /* size */
        xid = rb_u64(rb);
    } else if (mode == V_BYTES_PULL) {
        rb_u64(rb); /* kind */
        rb_u64(rb); /* size */
        xid = rb_u64(rb);
    }
    if (xid && !rb->bad) {
        struct wbuf b = {0};
        wb_u64(&b, M_DROP);
        wb_u64(&b, xid);
        mpi__send(st, src, &b, false);
    }
    return true;
}

/* Consumer `rank` wants the result of the task `ppid` that `origin` sent here. */
static void sub_add(struct mpi_state *st, int rank, int origin, uint64_t ppid, uint64_t cpid,
                    uint32_t slot)
{
    bool sync = (slot & SUB_SYNC) != 0;
    slot &= ~SUB_SYNC;
    uint64_t key = served_key(origin, ppid);
    struct served *s = (struct served *)h_find(st, 1, key);
    struct inbound *in = s ? NULL : (struct inbound *)h_find(st, 3, key);
    struct sub *u = s || in ? dagger__calloc(1, sizeof *u) : NULL;
    if (u) {
        *u = (struct sub){.rank = rank, .origin = origin, .cpid = cpid, .slot = slot, .sync = sync};
        struct sub **head = s ? &s->subs : &in->subs;
        u->next = *head;
        *head = u;
        atomic_fetch_add_explicit(&st->subs_in, 1, memory_order_relaxed);
        return;
    }
    /* Ended here already (or not arrived, or out of memory): its origin forwards it. */
    if (origin == st->rank) {
        fwd_request(st, cpid, slot);
        return;
    }
    struct wbuf b = {0};
    wb_u64(&b, M_FWD);
    wb_u64(&b, cpid);
    wb_u64(&b, slot);
    mpi__send(st, origin, &b, true);
}

/* Fill pending argument `slot` of `in` from `v`, a result of a task on this rank (copied or
 * retained: the task may go first). Returns 0 or an error with in->why set. */
static int slot_fill(struct inbound *in, struct slot *sl, const dagger_value_t *v)
{
    sl->v = *v;
    sl->v.flags &= (uint8_t) ~(DAGGER_VALUE_OWNED | DAGGER_VALUE_BORROW);
    switch (v->kind) {
    case DAGGER_KIND_CHUNK:
        sl->chunk = dagger_chunk_retain(v->u.c);
        return 0;
    case DAGGER_KIND_SHARD:
        sl->shard = dagger_shard_retain(v->u.sh);
        return 0;
    case DAGGER_KIND_STR:
    case DAGGER_KIND_BLOB: {
        size_t n = (size_t)v->len + (v->kind == DAGGER_KIND_STR);
        sl->bytes = dagger__obj_alloc(n ? n : 1);
        if (!sl->bytes) {
            snprintf(in->why, sizeof in->why, "out of memory for a %zu-byte argument", n);
            return DAGGER_ENOMEM;
        }
        sl->nbytes = n ? n : 1;
        if (n)
            memcpy(sl->bytes, v->u.p, n);
        sl->v.u.p = sl->bytes;
        return 0;
    }
    case DAGGER_KIND_TASK:
        snprintf(in->why, sizeof in->why, "a task handle cannot be an argument on another rank");
        return DAGGER_ENOSYS;
    default:
        return 0;
    }
}

/* The argument `slot` of the inbound task keyed `key` arrived: failed (rc, text), or its value
 * was filled. Returns the task, or NULL when none waits for that argument. */
static struct inbound *arg_slot(struct mpi_state *st, uint64_t key, uint32_t slot)
{
    struct inbound *in = (struct inbound *)h_find(st, 3, key);
    if (!in || slot >= in->n || !in->slots[slot].pending)
        return NULL; /* it failed, was cancelled, or its rank sent it twice: dropped */
    return in;
}

static void arg_done(struct mpi_state *st, struct inbound *in, uint32_t slot, int rc,
                     const char *text)
{
    if (in->slots[slot].pending) {
        in->slots[slot].pending = false;
        in->npend--;
        in->nleft--;
    }
    if (rc) {
        char copy[320]; /* `text` may be in->why, which in_fail writes */
        snprintf(copy, sizeof copy, "%s", text);
        char what[32];
        in_fail(st, in, DAGGER_EUPSTREAM, "%s failed: %s", slot_name(in, slot, what, sizeof what),
                copy);
    }
    inbound_step(st, in);
}

/* The result of `t` (or its failure: rc, text) for consumer `u`. */
static void send_arg(struct mpi_state *st, struct sub *u, dagger_task_t *t, int rc,
                     const char *text)
{
    dagger_value_t v = dagger_nil(); /* a dependency that is not an argument: its end, nil */
    if (!rc && t && !u->sync && dagger_fetch(t, &v) != 0)
        v = dagger_nil();
    if (u->rank == st->rank) { /* the consumer is here too */
        struct inbound *in = arg_slot(st, served_key(u->origin, u->cpid), u->slot);
        if (!in)
            return;
        atomic_fetch_add_explicit(&st->args_direct, 1, memory_order_relaxed);
        int r = rc ? rc : slot_fill(in, &in->slots[u->slot], &v);
        arg_done(st, in, u->slot, r, rc ? text : in->why);
        return;
    }
    struct wbuf b = {0};
    wb_u64(&b, M_ARG);
    wb_u64(&b, (uint64_t)u->origin);
    wb_u64(&b, u->cpid);
    wb_u64(&b, u->slot);
    char why[320];
    struct wbuf val = {0};
    if (!rc) {
        v.flags &= (uint8_t)~DAGGER_VALUE_OWNED; /* sent by reference to t, never taken over */
        rc = put_value(st, &val, &v, t, AS_ARG, u->rank, "the result", why, sizeof why);
        if (rc)
            text = why;
    }
    wb_u64(&b, (uint64_t)(int64_t)rc);
    if (rc)
        wb_str(&b, text);
    else
        wb_bytes(&b, val.p, val.len);
    dagger__free(val.p);
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_RESULT_SENT, u->rank, u->cpid, b.len));
    mpi__send(st, u->rank, &b, true);
}

static void subs_fail(struct mpi_state *st, struct sub **subs, int rc, const char *text)
{
    for (struct sub *u = *subs, *next; u; u = next) {
        next = u->next;
        send_arg(st, u, NULL, rc ? rc : DAGGER_ETASK, text);
        dagger__free(u);
    }
    *subs = NULL;
}

/* M_ARG: an argument of an early task here, from its producer's rank or forwarded by its
 * origin. Inline values borrow a copy of the message, kept with the task. */
static void on_arg(struct mpi_state *st, int src, struct rbuf *rb, bool may_keep)
{
    int origin = (int)rb_u64(rb);
    uint64_t cpid = rb_u64(rb);
    uint32_t slot = (uint32_t)rb_u64(rb);
    size_t at = rb->pos; /* kept from here if the task has not come yet */
    int rc = (int)(int64_t)rb_u64(rb);
    if (rb->bad || origin < 0 || origin >= st->nranks)
        return;
    uint64_t key = served_key(origin, cpid);
    if (may_keep) { /* counted as it comes (a replayed orphan was counted then) */
        struct inbound *w = (struct inbound *)h_find(st, 3, key);
        bool straight = src != origin || (w && slot < w->n && w->slots[slot].prank == origin);
        atomic_fetch_add_explicit(straight ? &st->args_direct : &st->args_forwarded, 1,
                                  memory_order_relaxed);
    }
    if (!h_find(st, 3, key) && !h_find(st, 1, key)) {
        if (arg_dead(st, src, key, rb, rc))
            return;
        if (may_keep && src != origin) {
            struct rbuf keep = *rb;
            keep.pos = at - 24; /* origin, cpid, slot: replayed whole */
            orphan_keep(st, src, key, &keep);
        }
        return;
    }
    struct inbound *in = arg_slot(st, key, slot);
    if (!in)
        return;
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_RESULT_RECEIVED, src, cpid, rb->len));
    if (rc) {
        char text[320];
        rb_str(rb, text, sizeof text);
        arg_done(st, in, slot, rc, text);
        return;
    }
    struct argmsg *m = dagger__malloc(sizeof *m + (rb->len ? rb->len : 1));
    if (!m) {
        arg_done(st, in, slot, DAGGER_ENOMEM, "out of memory receiving it");
        return;
    }
    memcpy(m->bytes, rb->p, rb->len);
    m->next = in->more;
    in->more = m;
    struct rbuf copy = {m->bytes, rb->len, rb->pos, false};
    in->slots[slot].pending = false; /* before the pulls it may start count in nleft */
    in->npend--;
    in->nleft--;
    in->vsrc = src;
    rc = get_value(st, &copy, in, &in->slots[slot]);
    in->vsrc = in->src;
    arg_done(st, in, slot, rc, in->why);
}

/* An early task waits for no lost rank: a producer's rank lost before the task came fails it. */
static void check_producers(struct mpi_state *st, struct inbound *in)
{
    for (uint32_t i = 0; i < in->n && in->npend; i++) {
        struct slot *sl = &in->slots[i];
        if (sl->pending && sl->prank != st->rank && st->peers[sl->prank].lost) {
            char what[32];
            in_fail(st, in, DAGGER_EPEER, "rank %d was lost (%s) before it sent %s", sl->prank,
                    st->peers[sl->prank].why, slot_name(in, i, what, sizeof what));
            return;
        }
    }
}

static void orphan_keep(struct mpi_state *st, int src, uint64_t key, struct rbuf *rb)
{
    size_t len = rb->len - rb->pos;
    struct orphan *o = dagger__malloc(sizeof *o + (len ? len : 1));
    if (!o) /* the task then waits for its rank to be lost or for a cancel: reported */
        dagger__panic("out of memory keeping an argument that came before its task");
    o->h.key = key;
    o->src = src;
    o->dead = 0;
    o->len = len;
    memcpy(o->bytes, rb->p + rb->pos, len);
    h_put(st, 4, &o->h);
}

/* The task keyed `key` came: its arguments that came first are handed to it now. */
static void orphans_adopt(struct mpi_state *st, uint64_t key)
{
    struct orphan *o;
    while ((o = (struct orphan *)h_take(st, 4, key)) != NULL) {
        struct rbuf rb = {o->bytes, o->len, 0, false};
        on_arg(st, o->src, &rb, false);
        dagger__free(o);
    }
}

void mpi__on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb)
{
    switch (type) {
    case M_TASK:
        on_task(st, src, rb);
        break;
    case M_RESULT:
        on_result(st, src, rb);
        break;
    case M_CANCEL: {
        uint64_t key = served_key(src, rb_u64(rb));
        struct served *s = (struct served *)h_find(st, 1, key);
        struct inbound *in = s ? NULL : (struct inbound *)h_find(st, 3, key);
        if (s) {
            (void)dagger_cancel(s->t);
        } else if (in && in->npend) { /* an early task waiting for its arguments */
            in_fail(st, in, DAGGER_ECANCELED,
                    "cancelled while it waited for its arguments from other ranks");
            inbound_step(st, in);
        }
        break;
    }
    case M_PULL:
        on_pull(st, src, rb);
        break;
    case M_SUB: { /* from the spawning rank, for the consumer's rank */
        int rank = (int)rb_u64(rb);
        uint64_t ppid = rb_u64(rb), cpid = rb_u64(rb);
        uint32_t slot = (uint32_t)rb_u64(rb);
        if (!rb->bad && rank >= 0 && rank < st->nranks)
            sub_add(st, rank, src, ppid, cpid, slot);
        break;
    }
    case M_FWD: {
        uint64_t cpid = rb_u64(rb);
        uint32_t slot = (uint32_t)rb_u64(rb);
        if (!rb->bad)
            fwd_request(st, cpid, slot);
        break;
    }
    case M_ARG:
        on_arg(st, src, rb, true);
        break;
    case M_UNREF:
        mpi__data_msg(st, src, rb);
        break;
    }
}

/* ---------------------------------------------------------------- proxies */

static void on_cancel(dagger_task_t *t, void *ud)
{
    struct mpi_cmd *c = dagger__calloc(1, sizeof *c);
    if (!c)
        return; /* the task runs to its end instead */
    c->type = C_CANCEL;
    c->id = dagger_task_id(t);
    mpi__push(ud, c);
}

void mpi__remote_submit(void *ud, struct dagger__job *j, const dagger_proc_t *p)
{
    struct mpi_state *st = ud;
    dagger_task_t *t = (dagger_task_t *)j;
    dagger__task_begin_elsewhere(t);
    /* Another rank completes it: a waiter here sleeps (or lingers) instead of spinning ~50 us,
     * which on a shared core kept this rank's progress thread from sending the task. */
    dagger__task_set_external(t);
    struct mpi_cmd *c = dagger__calloc(1, sizeof *c);
    if (!c) {
        dagger__task_complete(t, DAGGER_ENOMEM, NULL, "out of memory sending the task to a rank");
        return;
    }
    c->type = C_SUBMIT;
    c->t = t;
    c->rank = p->rank;
    c->pin = p->index;
    c->prio = j->prio;
    dagger__task_set_cancel_hook(t, on_cancel, st);
    mpi__linger(st); /* its result is due: the waiter yields */
    /* Once pushed, the task may come back done and be freed before the mark below (a TSan
     * report in mpi_datadeps4.random_program_across_ranks: the mark written into a freed
     * record): a reference of this thread keeps it until then. */
    dagger_task_retain(t);
    mpi__push(st, c);
    /* A dependent may be sent early now (mpi__early): its subscription, posted after this
     * command, then reaches that rank after this task. */
    dagger__task_set_elsewhere(t, p->rank);
    dagger_task_release(t);
}

/* "argument <i>", for messages that name it; no snprintf, which cost about 70 ns an argument
 * on the progress thread for a name that only a failure prints. */
static void arg_name(char what[32], uint32_t i)
{
    static const char prefix[] = "argument ";
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    memcpy(what, prefix, sizeof prefix - 1);
    for (int k = 0; k < n; k++)
        what[sizeof prefix - 1 + (size_t)k] = digits[n - 1 - k];
    what[sizeof prefix - 1 + (size_t)n] = 0;
}

/* Slot `i` of the early task `early` as V_PENDING (its producer's rank and id) when its
 * dependency is still running; false (nothing written) otherwise. */
static bool put_pending(struct mpi_state *st, struct wbuf *b, struct proxy *early, uint32_t i)
{
    dagger_task_t *dep = early && i < early->nslots ? early->deps[i] : NULL;
    if (!dep || dagger_task_done(dep))
        return false;
    int q = dagger__task_elsewhere(dep);
    early->pranks[i] = q >= 0 ? q : st->rank; /* made here: sent from here */
    wb_u64(b, V_PENDING);
    wb_u64(b, (uint64_t)early->pranks[i]);
    wb_u64(b, dagger_task_id(dep));
    return true;
}

/* Encode `t` for `rank`. `early`: an early send, whose arguments from unfinished dependencies
 * (early->deps) go as V_PENDING (producer's rank and id), and from finished ones as their
 * results (a failed one fails the build: the task fails here, upstream). */
static int build_task(struct mpi_state *st, struct wbuf *b, dagger_task_t *t, int rank, int pin,
                      int prio, size_t *bytes, char *why, size_t cap, struct proxy *early)
{
    struct dagger__fn_ref ref;
    int rc = dagger__fn_ref(dagger__task_fn(t), &ref, why, cap);
    if (rc)
        return rc;
    wb_u64(b, M_TASK);
    wb_u64(b, dagger_task_id(t));
    wb_u64(b, (uint64_t)(int64_t)pin);
    /* the result stays there as mutable data (1), or comes back to be read here (2) */
    wb_u64(b, (uint64_t)dagger__task_mutable_result(t) | (uint64_t)dagger__task_result_home(t)
                                                             << 1);
    wb_u64(b, (uint64_t)(dagger__task_expected(t) * 1e9)); /* its expected_time, ns */
    wb_u64(b, (uint64_t)(int64_t)prio);
    const char *given = dagger__task_name_given(t); /* else dladdr's, 350 instructions: kept */
    wb_str(b, given ? given : dagger__fn_symbol(dagger__task_fn(t)));
    wb_str(b, ref.name);
    wb_u64(b, (uint64_t)ref.idlen);
    wb_bytes(b, ref.id, (size_t)ref.idlen);
    wb_u64(b, ref.offset);
    uint32_t n;
    dagger_value_t *args = dagger__task_args(t, &n);
    *bytes = dagger__cost_bytes(args, n);
    wb_u64(b, early ? early->nslots - early->nargs : 0);
    wb_u64(b, n);
    for (uint32_t i = 0; i < n; i++) {
        char what[32];
        arg_name(what, i);
        dagger_task_t *dep = early && i < early->nargs ? early->deps[i] : NULL;
        if (put_pending(st, b, early, i))
            continue;
        if (dep) { /* finished since the spawn: its result goes with the task */
            dagger_value_t v = dagger_nil();
            if (dagger_task_error(dep) || dagger_fetch(dep, &v) != 0) {
                snprintf(why, cap, "%s: its task failed", what);
                return DAGGER_EUPSTREAM;
            }
            v.flags &= (uint8_t)~DAGGER_VALUE_OWNED;
            early->deps[i] = NULL; /* nothing to forward */
            rc = put_value(st, b, &v, dep, AS_ARG, rank, what, why, cap);
            dagger_task_release(dep);
        } else {
            rc = put_value(st, b, &args[i], t, AS_ARG, rank, what, why, cap);
        }
        if (rc)
            return rc;
    }
    /* Its other dependencies: only their end is awaited there (a nil value once done). */
    for (uint32_t i = early ? early->nargs : 0; early && i < early->nslots; i++) {
        dagger_task_t *dep = early->deps[i];
        if (put_pending(st, b, early, i))
            continue;
        if (dep && dagger_task_error(dep)) {
            snprintf(why, cap, "dependency %u: its task failed", i - early->nargs);
            return DAGGER_EUPSTREAM;
        }
        if (dep) {
            early->deps[i] = NULL; /* nothing to forward */
            dagger_task_release(dep);
        }
        dagger_value_t nil = dagger_nil();
        rc = put_value(st, b, &nil, NULL, AS_ARG, rank, "a dependency", why, cap);
        if (rc)
            return rc;
    }
    if (b->oom) {
        snprintf(why, cap, "out of memory encoding the task for rank %d", rank);
        return DAGGER_ENOMEM;
    }
    return 0;
}

static void submit(struct mpi_state *st, struct mpi_cmd *c)
{
    dagger_task_t *t = c->t;
    char why[400];
    int rc = 0;
    struct mpi_peer *peer = &st->peers[c->rank];
    if (peer->lost) {
        rc = DAGGER_EPEER;
        snprintf(why, sizeof why, "rank %d was lost (%s) before the task could be sent there",
                 c->rank, peer->why);
    } else if (atomic_load(&st->stopped)) {
        rc = DAGGER_ESTATE;
        snprintf(why, sizeof why,
                 "rank %d cannot run it: the job has ended (the driver's dagger_ctx_close "
                 "stopped the other ranks)",
                 c->rank);
    } else if (dagger_tc_cancelled((dagger_tc_t *)t)) {
        rc = DAGGER_ECANCELED;
        snprintf(why, sizeof why, "cancelled before it was sent to rank %d", c->rank);
    }
    struct wbuf b = {0};
    size_t bytes = 0;
    if (!rc)
        rc = build_task(st, &b, t, c->rank, c->pin, c->prio, &bytes, why, sizeof why, NULL);
    struct proxy *px = rc ? NULL : dagger__calloc(1, sizeof *px);
    if (!rc && !px) {
        rc = DAGGER_ENOMEM;
        snprintf(why, sizeof why, "out of memory sending the task to rank %d", c->rank);
    }
    if (rc) {
        dagger__free(b.p);
        dagger__task_complete(t, rc, NULL, why);
        return;
    }
    px->t = dagger_task_retain(t);
    px->rank = c->rank;
    px->fn = (const void *)(uintptr_t)dagger__task_fn(t);
    px->bytes = bytes;
    px->there = dagger__task_result_there(t);
    px->h.key = dagger_task_id(t);
    h_put(st, 0, &px->h);
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_TASK_SENT, c->rank, px->h.key, b.len));
    st->nawaiting++;
    mpi__send(st, c->rank, &b, true);
}

/* ---------------------------------------------------------------- early sends
 * A task whose scope names one other rank r, and whose unfinished inputs are all tasks running
 * on other ranks, is sent to r at its spawn (mpi__early, on the spawning thread, then C_EARLY on
 * the progress thread) rather than when it is ready here; those inputs travel as V_PENDING and
 * come to r from their producers (subscriptions above). Here the task stays a pending task of
 * core until its dependencies are done (C_EARLY_READY), and its proxy keeps r's answer until
 * then, so it completes after its inputs here as any task; a dependency that fails here fails
 * it here (upstream, as core does) and the answer is dropped, and r is told to stop waiting
 * (M_CANCEL). Its proxy leaves the table once it is both answered and ready. */

struct early_rec {
    struct mpi_cmd send, ready; /* C_EARLY, C_EARLY_READY */
    struct mpi_state *st;
    struct proxy *px;
};

/* The rank of the mutable data among `args` that lives on another rank (the rank placement
 * would send the task to), and the thread it is pinned to; -1 when there is none, -2 when the
 * arguments pin the task to two places (placement then reports it). */
static int data_rank(const struct mpi_state *st, const dagger_value_t *args, uint32_t nargs,
                     int *pin)
{
    int rank = -1;
    for (uint32_t i = 0; i < nargs; i++) {
        dagger_proc_t p;
        int home;
        if (args[i].kind == DAGGER_KIND_SHARD)
            return -2;
        if (args[i].kind != DAGGER_KIND_CHUNK || !args[i].u.c ||
            !dagger_chunk_is_mutable(args[i].u.c, &p))
            continue;
        if (!dagger__mem_proxy(args[i].u.c, &home, NULL))
            home = st->rank;
        if ((rank >= 0 && home != rank) ||
            (rank >= 0 && p.index >= 0 && *pin >= 0 && p.index != *pin))
            return -2;
        rank = home;
        if (p.index >= 0)
            *pin = p.index;
    }
    return rank;
}

bool mpi__early(void *ud, dagger_task_t *t, void **rec)
{
    struct mpi_state *st = ud;
    /* Past MPI__EARLY_MAX open early sends a task goes when it is ready: a region of thousands
     * of kernels would otherwise send them all at its spawn, and both ranks' threads would
     * spend their cores on that while the first kernels wait. */
    if (!st->direct || atomic_load_explicit(&st->stopped, memory_order_relaxed) ||
        dagger__task_result_home(t) ||
        atomic_load_explicit(&st->early_open, memory_order_relaxed) >= MPI__EARLY_MAX)
        return false;
    uint32_t nargs;
    const dagger_value_t *args = dagger__task_args(t, &nargs);
    const dagger_scope_t *sc = dagger__task_scope(t);
    int nthreads = dagger__ctx_nthreads(st->ctx), rank = -1, pin = -1;
    if (!sc || dagger__scope_is_any(sc)) {
        /* No scope: mutable data of another rank among its arguments sends it there (a
         * datadeps task that writes that rank's data, src/sched/place.c). */
        rank = data_rank(st, args, nargs, &pin);
        if (rank < 0 || pin >= nthreads)
            return false;
    } else {
        /* One rank only, another one, no device: else placement decides when it is ready. */
        for (int k = 0; k < st->nranks; k++) {
            dagger__procset set;
            int nt = dagger__scope_resolve(sc, k, st->nranks, nthreads, &set, NULL, 0);
            if (nt <= 0)
                continue;
            if (rank >= 0 || set.dev)
                return false;
            rank = k;
            for (int th = 0; nt == 1 && th < nthreads; th++)
                if (dagger__procset_has(&set, th))
                    pin = th;
        }
        int dpin = -1, drank = data_rank(st, args, nargs, &dpin);
        if (drank != -1 && (drank != rank || (dpin >= 0 && pin >= 0 && dpin != pin)))
            return false; /* its data lives elsewhere: placement reports it */
        if (dpin >= 0)
            pin = dpin;
    }
    if (rank < 0 || rank == st->rank)
        return false;
    uint32_t nd = dagger__task_ndeps(t), nslots = nargs;
    for (uint32_t i = 0; i < nd; i++) {
        int argi;
        dagger_task_t *d = dagger__task_dep(t, i, &argi);
        if (argi < 0 && !dagger_task_done(d))
            nslots++;
    }
    dagger_task_t **deps = dagger__calloc(nslots ? nslots : 1, sizeof *deps);
    if (!deps)
        return false;
    bool ok = true;
    uint32_t ns = nargs;
    for (uint32_t i = 0; i < nd && ok; i++) {
        int argi;
        dagger_task_t *d = dagger__task_dep(t, i, &argi);
        if (argi < 0) { /* a dependency only: its end is awaited there, wherever it runs */
            if (!dagger_task_done(d) && ns < nslots)
                deps[ns++] = d;
            continue;
        }
        if (dagger_task_done(d)) { /* its result, known now, must travel (no mutable data) */
            dagger_value_t v = dagger_nil();
            if (!dagger_task_error(d) && dagger_fetch(d, &v) == 0)
                ok = v.kind != DAGGER_KIND_SHARD &&
                     !(v.kind == DAGGER_KIND_CHUNK && dagger_chunk_is_mutable(v.u.c, NULL));
        } else { /* made on another rank, which sends it to `rank`; or here (or not placed
                  * yet), and this rank sends it once done. A result read only where it was
                  * made is taken there, on `rank` itself. */
            ok = !dagger__task_mutable_result(d) && !dagger__task_result_home(d) &&
                 (!dagger__task_result_there(d) || dagger__task_elsewhere(d) == rank);
        }
        if (ok && (uint32_t)argi < nargs)
            deps[argi] = d;
    }
    nslots = ns;
    /* Pointers and handles stay here; chunks travel, mutable data only to its own rank. */
    for (uint32_t i = 0; i < nargs && ok; i++) {
        int home = st->rank;
        ok = deps[i] || args[i].kind <= DAGGER_KIND_BLOB ||
             (args[i].kind == DAGGER_KIND_CHUNK && args[i].u.c &&
              (!dagger_chunk_is_mutable(args[i].u.c, NULL) ||
               (dagger__mem_proxy(args[i].u.c, &home, NULL) && home == rank)));
    }
    struct early_rec *e = ok ? dagger__calloc(1, sizeof *e) : NULL;
    struct proxy *px = e ? dagger__calloc(1, sizeof *px) : NULL;
    int *pranks = px ? dagger__calloc(nslots ? nslots : 1, sizeof *pranks) : NULL;
    if (!pranks) {
        dagger__free(px);
        dagger__free(e);
        dagger__free(deps);
        return false;
    }
    px->pranks = pranks;
    for (uint32_t i = 0; i < nslots; i++)
        if (deps[i])
            dagger_task_retain(deps[i]);
    px->early = true;
    px->t = dagger_task_retain(t);
    px->rank = rank;
    px->nargs = nargs;
    px->nslots = nslots;
    px->deps = deps;
    px->there = dagger__task_result_there(t);
    px->fn = (const void *)(uintptr_t)dagger__task_fn(t);
    e->st = st;
    e->px = px;
    e->send = (struct mpi_cmd){.type = C_EARLY, .rank = rank, .pin = pin, .rec = e};
    e->send.prio = ((struct dagger__job *)t)->prio;
    dagger__task_set_external(t);
    dagger__task_set_cancel_hook(t, on_cancel, st);
    atomic_fetch_add_explicit(&st->early_sent, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->early_open, 1, memory_order_relaxed);
    *rec = e;
    mpi__push(st, &e->send);
    dagger__task_set_elsewhere(t, rank); /* its own dependents may follow it early (after it) */
    return true;
}

void mpi__early_ready(void *ud, dagger_task_t *t, void *rec, bool failed)
{
    struct early_rec *e = rec;
    e->ready.type = C_EARLY_READY;
    e->ready.t = t;
    e->ready.pin = failed;
    e->ready.rec = e;
    mpi__push(ud, &e->ready);
}

static char *text_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dagger__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Answered and ready: complete the task here with its rank's answer (unless core failed it
 * upstream), and let the proxy go. */
static void early_finish(struct mpi_state *st, struct proxy *px)
{
    atomic_fetch_sub_explicit(&st->early_open, 1, memory_order_relaxed);
    h_take(st, 0, px->h.key);
    dagger_task_t *t = px->t;
    if (px->local || !px->ans) {
        if (px->ans)
            later_drop(px->ans);
        if (!px->local)
            dagger__task_complete(t, px->ans_rc ? px->ans_rc : DAGGER_ETASK, NULL,
                                  px->ans_msg ? px->ans_msg : dagger_strerror(px->ans_rc));
        dagger_task_release(t);
    } else {
        px->ans->t = t; /* the proxy's reference */
        later_complete(st, px->ans);
    }
    for (uint32_t i = 0; i < px->nslots; i++)
        dagger_task_release(px->deps[i]);
    dagger__free(px->deps);
    dagger__free(px->pranks);
    dagger__free(px->ans_msg);
    dagger__free(px);
}

static void early_set_answer(struct proxy *px, int rc, const char *text)
{
    px->answered = true;
    px->ans_rc = rc;
    px->ans_msg = text_dup(text);
}

/* C_EARLY: the task's first and only send. A failure to send it is its answer. */
static void early_send(struct mpi_state *st, struct early_rec *e)
{
    struct proxy *px = e->px;
    dagger_task_t *t = px->t;
    px->h.key = dagger_task_id(t);
    h_put(st, 0, &px->h);
    char why[400];
    int rc = 0;
    if (st->peers[px->rank].lost) {
        rc = DAGGER_EPEER;
        snprintf(why, sizeof why, "rank %d was lost (%s) before the task could be sent there",
                 px->rank, st->peers[px->rank].why);
    } else if (atomic_load(&st->stopped)) {
        rc = DAGGER_ESTATE;
        snprintf(why, sizeof why, "rank %d cannot run it: the job has ended", px->rank);
    } else if (dagger_tc_cancelled((dagger_tc_t *)t)) {
        rc = DAGGER_ECANCELED;
        snprintf(why, sizeof why, "cancelled before it was sent to rank %d", px->rank);
    }
    struct wbuf b = {0};
    size_t bytes = 0;
    if (!rc)
        rc =
            build_task(st, &b, t, px->rank, e->send.pin, e->send.prio, &bytes, why, sizeof why, px);
    if (rc) {
        dagger__free(b.p);
        early_set_answer(px, rc, why);
        return;
    }
    px->bytes = bytes;
    px->sent = true;
    DAGGER__TRACE(dagger__trace_rank(DAGGER__TRACE_RANK_TASK_SENT, px->rank, px->h.key, b.len));
    st->nawaiting++;
    mpi__send(st, px->rank, &b, true);
    /* Subscribe its rank to each producer still running: sent from here, after the producer's
     * own M_TASK (this rank sent that first), so the producer's rank knows it, or has ended it. */
    for (uint32_t i = 0; i < px->nslots; i++) {
        int q = px->deps[i] ? px->pranks[i] : -1;
        if (q == st->rank) /* made here: sent from here once done */
            fwd_request(st, px->h.key, i);
        if (q < 0 || q == st->rank || st->peers[q].lost)
            continue; /* a lost producer's rank: the task's rank sees the loss too */
        struct wbuf s = {0};
        wb_u64(&s, M_SUB);
        wb_u64(&s, (uint64_t)px->rank);
        wb_u64(&s, dagger_task_id(px->deps[i]));
        wb_u64(&s, px->h.key);
        wb_u64(&s, i < px->nargs ? i : i | SUB_SYNC);
        mpi__send(st, q, &s, true);
    }
}

/* C_EARLY_READY: its dependencies are done here. */
static void early_ready(struct mpi_state *st, struct early_rec *e, bool failed)
{
    struct proxy *px = e->px;
    dagger__free(e);
    px->ready = true;
    px->local = failed;
    if (!failed) {
        dagger__task_begin_elsewhere(px->t);
    } else {
        if (px->sent && !px->answered) { /* it cannot succeed there either: stop it */
            struct wbuf b = {0};
            wb_u64(&b, M_CANCEL);
            wb_u64(&b, px->h.key);
            mpi__send(st, px->rank, &b, false);
        }
        /* After early_send (an earlier command) built its message from the task's arguments:
         * core may now fail it upstream, which drops them. */
        dagger__task_early_failed(px->t);
    }
    if (px->answered)
        early_finish(st, px);
}

/* Its rank answered (M_RESULT, once its values are here). */
static void early_answer(struct mpi_state *st, struct inbound *in, int rc, uint64_t rid,
                         const char *rname)
{
    struct proxy *px = in->px;
    if (rc) {
        char text[640];
        snprintf(text, sizeof text, "task %d:%llu '%s' on rank %d: %s", in->src,
                 (unsigned long long)rid, rname, in->src, in->why);
        early_set_answer(px, rc, text);
    } else {
        px->answered = true;
        px->ans = later_take(in);
        if (!px->ans)
            early_set_answer(px, DAGGER_ENOMEM, "out of memory keeping the task's result");
    }
    if (px->ready)
        early_finish(st, px);
}

/* A producer's rank could not send its result to an early task's rank: forward it from here
 * once the producer's proxy has it. */
struct fwd {
    struct dagger__task_callback cb;
    struct mpi_cmd cmd; /* C_FWD */
    struct mpi_state *st;
    dagger_task_t *p; /* +1 */
    uint64_t cpid;
    uint32_t slot;
};

static void fwd_ready(dagger_task_t *t, void *ud)
{
    (void)t;
    struct fwd *f = ud;
    mpi__push(f->st, &f->cmd);
}

/* The early task `px` (this rank's id `cpid`) as the consumer of slot `slot`, sent from here. */
static struct sub fwd_sub(const struct mpi_state *st, const struct proxy *px, uint64_t cpid,
                          uint32_t slot)
{
    return (struct sub){.rank = px->rank,
                        .origin = st->rank,
                        .cpid = cpid,
                        .slot = slot,
                        .sync = slot >= px->nargs};
}

static void fwd_request(struct mpi_state *st, uint64_t cpid, uint32_t slot)
{
    struct proxy *px = (struct proxy *)h_find(st, 0, cpid);
    if (!px || !px->early || !px->sent || px->answered || slot >= px->nslots || !px->deps[slot])
        return; /* it ended already */
    struct fwd *f = dagger__calloc(1, sizeof *f);
    if (!f) {
        struct sub u = fwd_sub(st, px, cpid, slot);
        send_arg(st, &u, NULL, DAGGER_ENOMEM, "out of memory forwarding it");
        return;
    }
    f->st = st;
    f->p = dagger_task_retain(px->deps[slot]);
    f->cpid = cpid;
    f->slot = slot;
    f->cmd.type = C_FWD;
    f->cmd.rec = f;
    dagger__task_on_done(f->p, &f->cb, fwd_ready, f);
}

static void fwd_send(struct mpi_state *st, struct fwd *f)
{
    struct proxy *px = (struct proxy *)h_find(st, 0, f->cpid);
    if (px && px->early && !px->answered) {
        int rc = dagger_task_error(f->p);
        const char *msg = rc ? dagger_task_errmsg(f->p) : "";
        const char *q = strstr(msg, "': "); /* "task 7 'p': text" -> "text" */
        if (rc && strncmp(msg, "task ", 5) == 0 && q)
            msg = q + 3;
        struct sub u = fwd_sub(st, px, f->cpid, f->slot);
        send_arg(st, &u, rc ? NULL : f->p, rc, msg);
    }
    dagger_task_release(f->p);
    dagger__free(f);
}

int dagger__mpi_direct_stats(const dagger_ctx_t *ctx, struct dagger__mpi_direct *out)
{
    struct mpi_state *st = dagger__ctx_ranks(ctx);
    DAGGER_CHECK(st && out, DAGGER_EINVAL, "dagger__mpi_direct_stats: a context without ranks");
    out->sent = atomic_load_explicit(&st->early_sent, memory_order_relaxed);
    out->subs = atomic_load_explicit(&st->subs_in, memory_order_relaxed);
    out->direct = atomic_load_explicit(&st->args_direct, memory_order_relaxed);
    out->forwarded = atomic_load_explicit(&st->args_forwarded, memory_order_relaxed);
    out->waited = atomic_load_explicit(&st->early_in, memory_order_relaxed);
    out->held = atomic_load_explicit(&st->held_total, memory_order_relaxed);
    return 0;
}

void mpi__on_cmd(struct mpi_state *st, struct mpi_cmd *c)
{
    switch (c->type) {
    case C_SUBMIT:
        submit(st, c);
        dagger__free(c);
        break;
    case C_RESULT:
        on_served_result(st, c->rec); /* the command lives in the record */
        break;
    case C_CANCEL: {
        struct proxy *px = (struct proxy *)h_find(st, 0, c->id);
        if (px) {
            struct wbuf b = {0};
            wb_u64(&b, M_CANCEL);
            wb_u64(&b, c->id);
            mpi__send(st, px->rank, &b, false);
        }
        dagger__free(c);
        break;
    }
    case C_UNREF:
        mpi__data_cmd(st, c); /* frees c */
        break;
    case C_EARLY:
        early_send(st, c->rec); /* the command lives in the record */
        break;
    case C_EARLY_READY:
        early_ready(st, c->rec, c->pin != 0); /* frees the record */
        break;
    case C_FWD:
        fwd_send(st, c->rec); /* frees the record */
        break;
    }
}

void mpi__remote_lost(struct mpi_state *st, int peer)
{
    struct proxy *early = NULL;     /* early proxies there: answered below, out of the walk */
    struct inbound *waiting = NULL; /* early tasks here that wait on it */
    for (size_t k = 0; k < NBUCKETS; k++) {
        for (struct hnode **pp = (struct hnode **)&st->intasks[k]; *pp;) {
            struct inbound *in = (struct inbound *)*pp;
            bool hit = in->src == peer && in->npend;
            for (uint32_t i = 0; !hit && i < in->n; i++)
                hit = in->slots[i].pending && in->slots[i].prank == peer;
            if (!hit) {
                pp = &(*pp)->next;
                continue;
            }
            *pp = in->h.next;
            in->keyed = false;
            in->h.next = (struct hnode *)waiting;
            waiting = in;
        }
        for (struct hnode **pp = (struct hnode **)&st->proxies[k]; *pp;) {
            struct proxy *px = (struct proxy *)*pp;
            if (px->rank != peer) {
                pp = &(*pp)->next;
                continue;
            }
            if (px->early) {
                px->lost_next = early;
                early = px;
                pp = &(*pp)->next;
                continue;
            }
            *pp = px->h.next;
            st->nawaiting--;
            char text[300];
            snprintf(text, sizeof text, "rank %d was lost (%s) while it ran this task", peer,
                     st->peers[peer].why);
            dagger__task_complete(px->t, DAGGER_EPEER, NULL, text);
            dagger_task_release(px->t);
            dagger__free(px);
        }
        for (struct hnode **pp = (struct hnode **)&st->exports[k]; *pp;) {
            struct exported *x = (struct exported *)*pp;
            if (x->peer != peer) {
                pp = &(*pp)->next;
                continue;
            }
            *pp = x->h.next;
            export_gone(x);
        }
    }
    while (waiting) {
        struct inbound *in = waiting;
        waiting = (struct inbound *)in->h.next;
        if (in->src == peer)
            in_fail(st, in, DAGGER_EPEER, "rank %d, which sent this task, was lost (%s)", peer,
                    st->peers[peer].why);
        for (uint32_t i = 0; i < in->n && !in->rc; i++) {
            char what[32];
            if (in->slots[i].pending && in->slots[i].prank == peer)
                in_fail(st, in, DAGGER_EPEER,
                        "rank %d was lost (%s) before it sent %s (the %s of its task %d:%llu)",
                        peer, st->peers[peer].why, slot_name(in, i, what, sizeof what),
                        i < in->nargs ? "result" : "end", in->src,
                        (unsigned long long)in->slots[i].ppid);
        }
        inbound_step(st, in);
    }
    while (early) {
        struct proxy *px = early;
        early = px->lost_next;
        if (px->answered)
            continue;
        if (px->sent)
            st->nawaiting--;
        char text[300];
        snprintf(text, sizeof text, "rank %d was lost (%s) while it ran this task", peer,
                 st->peers[peer].why);
        early_set_answer(px, DAGGER_EPEER, text);
        if (px->ready)
            early_finish(st, px);
    }
}
