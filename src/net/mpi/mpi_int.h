/* src/net/mpi/mpi_int.h - the MPI ranks backend: state shared by its files.
 *
 * Design: one progress thread per context owns MPI (a duplicate of the job's communicator) and
 * makes only nonblocking calls; workers and user threads post commands to it through an MPSC
 * list and never call MPI. Control messages carry one tag; bulk bytes are pulled by the
 * receiver on a tag of its own (it posts the receives, then asks), so no large unexpected
 * message waits in MPI's buffers.
 * Invariants: every field below marked "progress" is touched by the progress thread only.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_NET_MPI_INT_H
#define DAGGER_SRC_NET_MPI_INT_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/core.h"
#include "dagger.h"
#include "dagger/chunk.h"
#include "net/mpi/wire.h"

#define MPI__INLINE_MAX (64u * 1024u) /* values up to this size travel inside the message */
#define MPI__PIECE (1u << 30)         /* pulled payloads go in pieces of at most 1 GiB */
#define MPI__HUGE_MIN (4u << 20)      /* pulled into buffers this large: huge pages advised */
#define MPI__MAX_RANKS 4096
/* After a task is sent, received or served, and after a result arrives, the context's idle
 * threads yield rather than sleep for this long (dagger__ctx_linger): the next message of a
 * round trip then finds a thread awake, and no futex wake-up is made on either rank. Only where
 * the threads of this host's ranks fit its cores (st->linger_ns; DAGGER_MPI_LINGER_US). */
#define MPI__LINGER_NS (1000u * 1000u)
/* Early sends (remote.c) open at once on a rank: past it a task is sent when ready. 256 was
 * the best of 64, 256, 1024 and no bound on the distributed Cholesky (bench/RESULTS.md,
 * 2026-12-02 02:50). */
#define MPI__EARLY_MAX 256

enum { TAG_CTRL = 7, TAG_DATA0 = 100, TAG_DATA_SPAN = 20000 };
enum {
    M_TASK = 1,
    M_RESULT,
    M_CANCEL,
    M_PULL,
    M_QUERY,
    M_REPLY,
    M_STOP,
    M_BEAT,
    M_CLOSING,
    M_TRACE,
    M_TRACE_PULL,
    M_STEAL,
    M_STEAL_REPLY,
    M_UNREF,
    M_DROP,
    M_STREAM,
    M_CREDIT,
    M_BYE, /* closing: nothing more follows from this rank on the communicator */
    M_SUB, /* consumer -> producer: send me your result (remote.c, early sends) */
    M_FWD, /* producer -> spawning rank: too late, forward it yourself */
    M_ARG  /* producer or spawning rank -> consumer: an argument of an early-sent task */
};
enum {
    C_SUBMIT = 1,
    C_RESULT,
    C_CANCEL,
    C_QUERY,
    C_STOP,
    C_COLL,
    C_CLOSING,
    C_TRACE,
    C_UNREF,
    C_FETCH,
    C_DROP,
    C_STREAM,
    C_EARLY,       /* a task sent before it is ready (remote.c) */
    C_EARLY_READY, /* its dependencies are done here */
    C_FWD          /* a producer's result to forward to an early task's rank */
};
/* Value modes on the wire beyond remote.c's own (data.c): a reference, a shard. */
enum { MPI__V_REF = 16, MPI__V_SHARD };

struct mpi_cmd {
    struct mpi_cmd *next;
    int type;
    int rank, pin;    /* C_SUBMIT */
    int prio;         /* C_SUBMIT: the task's priority, which it keeps on the other rank */
    dagger_task_t *t; /* C_SUBMIT: the proxy; C_RESULT: the served task */
    uint64_t id;      /* C_CANCEL: the proxy's id; C_FETCH, C_DROP: the export id */
    void *rec;        /* C_RESULT: the struct served; C_FETCH: the fetch */
};

struct mpi_state;

/* A pull in progress: `size` bytes from `peer` into `dst`, then done(st, im). */
struct import {
    struct import *next;
    int peer, tag, nreq;
    size_t size;
    void *dst;
    MPI_Request *reqs;
    void (*done)(struct mpi_state *st, struct import *im, int rc, const char *why);
    void *ud;
    int64_t t0;       /* ns when its receives were posted: the link's measured bandwidth */
    int64_t alloc_ns; /* ns spent creating its destination (DAGGER_MPI_STAGES) */
};

struct mpi_peer {
    int pid;
    bool same_host;
    bool lost;       /* progress */
    bool bye_sent;   /* progress: closing, nothing more goes to it */
    bool bye_rcvd;   /* progress: closing, nothing more comes from it */
    int64_t last_rx; /* progress: ns of the last message from it */
    int64_t last_tx; /* progress */
    char why[128];   /* progress: how it was lost */
};

struct mpi_state {
    dagger_ctx_t *ctx;
    MPI_Comm comm; /* dagger's duplicate */
    int rank, nranks;
    bool driver_mode;
    pthread_t thread;
    _Atomic(struct mpi_cmd *) cmds; /* MPSC: any thread pushes, the progress thread takes all */
    struct mpi_cmd *backlog, *backlog_tail; /* the progress thread's: commands not run yet */
    _Atomic uint32_t wake;                  /* bumped on a push while the progress thread sleeps */
    _Atomic uint32_t sleeping;
    _Atomic uint32_t exit;    /* close asks the progress thread to leave */
    _Atomic uint32_t stopped; /* servers: the driver said stop (or was lost); driver: stops sent */
    _Atomic uint32_t served_rc; /* servers: 0, or DAGGER_EPEER as -rc when the driver was lost */
    int64_t timeout_ns, period_ns;
    uint64_t linger_ns; /* MPI__LINGER_NS, or 0 (oversubscribed host, DAGGER_MPI_LINGER_US) */
    bool stages;        /* DAGGER_MPI_STAGES=1: a line on stderr per pull of MPI__HUGE_MIN bytes */
    /* Fault injection for tests (DAGGER_FAULT_MPI=hold_results:MS): every M_RESULT that comes is
     * handled MS later, in the order they came; counted as received only then. */
    int64_t hold_results_ns;
    struct held_msg *held_msgs, *held_tail; /* progress: the messages held, oldest first */
    _Atomic uint64_t held_total;            /* messages held so far (dagger__mpi_direct_stats) */
    struct mpi_peer *peers;
    /* progress: tables */
    struct proxy **proxies;
    struct served **served;
    struct exported **exports;
    struct inbound **intasks; /* progress: tasks received, not spawned yet (by origin and id) */
    struct orphan **orphans;  /* progress: early tasks' arguments that came before the task */
    size_t nbuckets;
    struct sendreq *sends;
    struct import *imports;
    int64_t ninbound; /* progress: tasks or results waiting for pulled bytes */
    uint64_t next_xid;
    uint32_t next_tag;
    int64_t nserved;               /* progress: served tasks whose result is not sent yet */
    double served_backlog;         /* progress: their expected seconds (this rank's history) */
    int64_t nawaiting;             /* progress: tasks sent to other ranks, awaiting their results */
    _Atomic uint64_t bytes_pulled; /* bytes this rank received by pulls (stats) */
    _Atomic uint64_t served_in;    /* tasks that came to be served here since open (stats) */
    _Atomic uint64_t served_total; /* of those, spawned here (in the pool) since open (stats) */
    _Atomic int64_t nexports;      /* exports alive on this rank (stats) */
    _Atomic int64_t nrrefs;        /* chunks here whose bytes are on another rank */
    uint64_t nsent, nrecvd;        /* progress: TASK and RESULT messages, for termination */
    bool direct;                   /* early sends on (DAGGER_MPI_DIRECT, default 1) */
    /* stats: struct dagger__mpi_direct */
    _Atomic uint64_t early_sent, subs_in, args_direct, args_forwarded, early_in;
    _Atomic int64_t early_open; /* early sends not finished here (bounded: MPI__EARLY_MAX) */
    /* termination rounds (driver) */
    _Atomic uint32_t q_round, q_done;
    uint64_t q_sent, q_recvd;
    int q_waiting;
    bool q_idle;
    char stop_why[160];
    struct mpi_spmd *spmd;     /* spmd.c: collectives and the SPMD close */
    struct mpi_rtrace *rtrace; /* trace.c: one trace for every rank */
    struct mpi_steal *steal;   /* steal.c: cost-model placement, the reserve, stealing */
    /* data.c: mutable data referenced across ranks */
    struct held **held;       /* progress: chunks of this rank referenced elsewhere */
    _Atomic int64_t nproxies; /* proxies alive here, plus a bit once the state closed */
};

/* progress.c */
void mpi__push(struct mpi_state *st, struct mpi_cmd *c);
/* A message of a round trip went or came: idle threads yield for st->linger_ns (if not 0). */
static inline void mpi__linger(struct mpi_state *st)
{
    if (st->linger_ns)
        dagger__ctx_linger(st->ctx, st->linger_ns);
}
/* Send the bytes of `b` (taken over) to `peer` on the control tag; counted for termination when
 * `work`. A lost peer's message is dropped. */
void mpi__send(struct mpi_state *st, int peer, struct wbuf *b, bool work);
/* Payloads go in pieces of at most MPI__PIECE bytes, so that every MPI count fits an int
 * (payloads over 2 GiB): how many for `n` bytes (at least 1), and the length of piece `k` and
 * its offset in `*off`. */
size_t mpi__npieces(size_t n);
size_t mpi__piece(size_t n, size_t k, size_t *off);
/* Send `n` bytes at `p` to `peer` on `tag` in pieces; release(ud) once every piece is out. */
void mpi__send_data(struct mpi_state *st, int peer, int tag, const void *p, size_t n,
                    void (*release)(void *ud), void *ud);
/* Post the receives of `im` (peer, size, dst set) on a fresh tag. Returns 0 or DAGGER_ENOMEM. */
int mpi__import_start(struct mpi_state *st, struct import *im);
/* The rank is lost: `why` says how. */
void mpi__peer_lost(struct mpi_state *st, int peer, const char *why);

/* remote.c */
void mpi__remote_init(struct mpi_state *st);
void mpi__remote_fini(struct mpi_state *st);
void mpi__remote_submit(void *ud, struct dagger__job *j, const dagger_proc_t *p);
void mpi__on_cmd(struct mpi_state *st, struct mpi_cmd *c);
/* A control message of type M_TASK, M_RESULT, M_CANCEL or M_PULL from `src`. */
void mpi__on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb);
/* Fail every proxy and import of a lost rank, and release the exports it held. */
void mpi__remote_lost(struct mpi_state *st, int peer);
/* Work this rank still owes or awaits (served results unsent, imports, pending tasks). */
bool mpi__remote_busy(const struct mpi_state *st);
/* A data reference (M_DROP) from `src`: release export `xid` once its sends are out. */
void mpi__export_drop(struct mpi_state *st, int src, uint64_t xid);
/* ctx->early and ctx->early_ready (core.h): send a task whose inputs are made on other ranks to
 * its rank before it is ready; it becomes ready here. */
bool mpi__early(void *ud, dagger_task_t *t, void **rec);
void mpi__early_ready(void *ud, dagger_task_t *t, void *rec, bool failed);
/* Early sends on this rank (for the tests). Thread safety: any thread. */
struct dagger__mpi_direct {
    uint64_t sent;      /* tasks sent early from here */
    uint64_t subs;      /* subscriptions that found their producer here */
    uint64_t direct;    /* arguments that came straight from their producer's rank */
    uint64_t forwarded; /* arguments forwarded by the spawning rank */
    uint64_t waited;    /* tasks that came here before some of their arguments */
    uint64_t held;      /* messages held by DAGGER_FAULT_MPI=hold_results so far */
};
/* Returns 0, or DAGGER_EINVAL for a context without ranks. */
int dagger__mpi_direct_stats(const dagger_ctx_t *ctx, struct dagger__mpi_direct *out);

/* subscribe.c: results left where they were made. A chunk result larger than MPI__INLINE_MAX
 * stays on the producer's rank as an export; the rank that spawned the task gets a chunk whose
 * home is that rank (space DAGGER__SPACE_RANK, home pointer a struct mpi_rref), and every
 * consumer rank pulls the bytes straight from the producer. */
struct mpi_rref {
    struct mpi_rref *next, *prev; /* the process's list (guarded by its lock) */
    struct mpi_state *st;         /* NULL once that context closed */
    int rank;                     /* where the bytes are */
    uint64_t xid;                 /* the export there */
    bool counted;                 /* in st->nrrefs: this rank may read it */
};
/* A reference to export `xid` of `rank`; NULL when out of memory. `counted`: this rank may read
 * it (a task here may stage it), so results complete on workers while it lives (remote.c). */
struct mpi_rref *mpi__rref_new(struct mpi_state *st, int rank, uint64_t xid, bool counted);
/* The reference behind a chunk whose home is another rank (NULL for any other chunk). */
const struct mpi_rref *mpi__chunk_rref(dagger_chunk_t *c);
/* Progress thread: a C_FETCH or C_DROP command. */
void mpi__sub_cmd(struct mpi_state *st, struct mpi_cmd *c);
/* At close: references still alive forget the context. */
void mpi__sub_fini(struct mpi_state *st);
/* Bytes this rank received by pulls (stats for the tests). Thread safety: any thread. */
uint64_t dagger__mpi_bytes_pulled(const dagger_ctx_t *ctx);
/* Exports alive on this rank: data kept for other ranks to pull (stats for the tests). */
int64_t dagger__mpi_exports(const dagger_ctx_t *ctx);
/* Tasks other ranks sent here and this rank spawned since open; `*in` (may be NULL): those that
 * came, counted before they are spawned (stats for the tests). */
uint64_t dagger__mpi_served_total(const dagger_ctx_t *ctx, uint64_t *in);

/* stream.c: the mpi:// edge transport. Attach at open (the context mpi:// ends use), detach at
 * close; the progress thread files M_STREAM messages, hands M_CREDIT to waiting producers,
 * sends C_STREAM commands, and tells the channels of a lost rank. */
void mpi__stream_attach(struct mpi_state *st);
void mpi__stream_detach(struct mpi_state *st);
void mpi__stream_on_msg(struct mpi_state *st, int src, struct rbuf *rb);
void mpi__stream_on_credit(struct mpi_state *st, int src, struct rbuf *rb); /* M_CREDIT */
/* Values of channel `name` from rank `peer` buffered on this rank, not yet popped (tests).
 * Thread safety: any thread. */
size_t dagger__mpi_stream_buffered(int peer, const char *name);
void mpi__stream_cmd(struct mpi_state *st, struct mpi_cmd *c);
void mpi__stream_lost(struct mpi_state *st, int peer);

/* spmd.c: SPMD mode (every rank runs main): collectives, and the close every rank joins. */
void mpi__spmd_init(struct mpi_state *st);
void mpi__spmd_fini(struct mpi_state *st);
int mpi__spmd_coll(dagger_ctx_t *ctx, const struct dagger__coll *c); /* dagger__ranks_ops.coll */
void mpi__spmd_on_cmd(struct mpi_state *st, struct mpi_cmd *c);      /* C_COLL, C_CLOSING */
void mpi__spmd_on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb); /* M_CLOSING */
/* Progress: advance the collective in flight. Returns whether anything happened. */
bool mpi__spmd_poll(struct mpi_state *st);
/* Whether a collective is in flight (the progress thread then polls instead of sleeping). */
bool mpi__spmd_busy(const struct mpi_state *st);
/* Progress: fail the collectives queued or in flight (a rank was lost). */
void mpi__spmd_lost(struct mpi_state *st, int peer);
/* dagger_ctx_close in SPMD mode: rank 0 waits until every other rank closes (or is lost);
 * another rank tells rank 0 and waits for its stop (or its loss). */
void mpi__spmd_quiesce(struct mpi_state *st);

/* trace.c: with DAGGER_TRACE, every rank's events go to rank 0, which writes one trace.
 * join: collective (after the hello): which ranks trace, and their clock offsets. Returns 0 or
 * DAGGER_ENOMEM. close: before the progress thread stops, rank 0 waits for the other ranks'
 * traces and the others send theirs (both bounded by the loss of the peer). */
int mpi__rtrace_join(struct mpi_state *st);
void mpi__rtrace_close(struct mpi_state *st);
void mpi__rtrace_fini(struct mpi_state *st);
void mpi__rtrace_on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb);
void mpi__rtrace_on_cmd(struct mpi_state *st, struct mpi_cmd *c); /* C_TRACE */
void mpi__rtrace_lost(struct mpi_state *st, int peer);
/* steal.c */
int mpi__steal_init(struct mpi_state *st);
void mpi__steal_fini(struct mpi_state *st);
/* exec[DAGGER__EXEC_REMOTE].place: a task that may run on any rank (cost model, reserve). */
int mpi__steal_place(void *ud, const struct dagger__place *r, struct dagger__job *j,
                     const dagger_proc_t *p, const struct dagger__executor *execs, char *why,
                     size_t cap);
/* A control message of type M_STEAL or M_STEAL_REPLY from `src`. */
void mpi__steal_on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb);
/* The progress thread's turn: feed idle workers from the reserve, ask for work when idle. */
bool mpi__steal_poll(struct mpi_state *st, int64_t now);
/* The load carried by M_STEAL, M_STEAL_REPLY and M_BEAT: write this rank's, or read `src`'s
 * (a short or malformed one is ignored). Progress thread. */
void mpi__steal_put_load(struct mpi_state *st, struct wbuf *b);
void mpi__steal_get_load(struct mpi_state *st, int src, struct rbuf *rb);
/* The load `rank` last reported here (tasks in flight, expected seconds), for the tests.
 * Returns 0, or DAGGER_EINVAL (no ranks, a rank out of range). Thread safety: any thread. */
int dagger__mpi_peer_load(const dagger_ctx_t *ctx, int rank, int *ntasks, double *backlog);
/* A pull of `bytes` from `peer` took `ns`: learn the link. */
void mpi__steal_link(struct mpi_state *st, int peer, size_t bytes, int64_t ns);
void mpi__steal_lost(struct mpi_state *st, int peer);
/* data.c */
/* Append `c` as a reference when it is mutable data (here or a proxy of another rank's).
 * Returns 1 (appended), 0 (not mutable: send its bytes), or an error with why set. */
int mpi__put_ref(struct mpi_state *st, struct wbuf *b, dagger_chunk_t *c, int peer,
                 const char *what, char *why, size_t cap);
/* Read a reference (after its mode): +1 on the chunk itself or a new proxy. */
int mpi__get_ref(struct mpi_state *st, struct rbuf *rb, int src, dagger_chunk_t **out, char *why,
                 size_t cap);
/* A shard: the references of `peer`'s pieces; read back as that rank's own shard (+1). */
int mpi__put_shard(struct mpi_state *st, struct wbuf *b, dagger_shard_t *s, int peer,
                   const char *what, char *why, size_t cap);
int mpi__get_shard(struct mpi_state *st, struct rbuf *rb, int src, dagger_shard_t **out, char *why,
                   size_t cap);
void mpi__data_cmd(struct mpi_state *st, struct mpi_cmd *c);        /* C_UNREF */
void mpi__data_msg(struct mpi_state *st, int src, struct rbuf *rb); /* M_UNREF */
/* At close: release what other ranks referenced. */
void mpi__data_fini(struct mpi_state *st);
/* Mark the state closed: true when proxies are still alive (the last one frees `st`). */
bool mpi__data_keep_state(struct mpi_state *st);

#endif /* DAGGER_SRC_NET_MPI_INT_H */
