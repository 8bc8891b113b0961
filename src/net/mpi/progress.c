/* src/net/mpi/progress.c - the MPI ranks backend: joining the job, the progress thread that
 * owns MPI, lost ranks, and the termination rounds that end a driver-mode job.
 *
 * Design: dagger_ctx_open calls join() on every rank (collective): MPI is initialised if
 * needed (asking for MPI_THREAD_MULTIPLE; a user's SERIALIZED is accepted), the communicator is
 * duplicated, and every rank's program build id, pid and host are gathered; a rank running
 * another program is refused, naming it. Then a progress thread starts; rank 0 returns to main
 * and the other ranks serve inside dagger_ctx_open until the driver closes (in SPMD mode every
 * rank returns, and close waits for every rank first: spmd.c). The progress thread
 * only makes nonblocking MPI calls, handles commands that other threads post, and backs off
 * when idle (polls, yielding the core, 200 us after the last activity, or 10 ms while results
 * are awaited or served tasks run, then sleeps up to 1 ms; a posted command wakes it). A rank is
 * lost when nothing came from it for DAGGER_PEER_TIMEOUT seconds (every rank sends heartbeats) or,
 * on one host, when its process is gone. The driver's close runs termination rounds: every rank
 * reports whether it is idle and how many work messages it sent and received; two equal rounds in a
 * row with every rank idle and sent == received end the job (the four-counter method). Every
 * rank's progress thread then leaves only after an M_BYE from every live peer (closing_done), so
 * no message of one job is left to land in the next job's communicator.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/common.h"
#include "dagger/mpi.h"
#include "net/mpi/mpi_int.h"
#include "net/net.h"
#include "pool/pool.h"

/* ---------------------------------------------------------------- process-wide MPI state */

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static bool we_initialised; /* guarded by init_lock */
static DAGGER_TLS const MPI_Comm *tls_user_comm;

static _Atomic bool peer_was_lost; /* any context of this process lost a rank */

/* MPI_Finalize waits for every rank of the job, a lost one included (Open MPI has no fault
 * tolerance): after a loss the process leaves without it rather than hang. */
static void finalize_at_exit(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && !atomic_load(&peer_was_lost))
        MPI_Finalize();
}

static const char *level_name(int l)
{
    return l == MPI_THREAD_SINGLE       ? "MPI_THREAD_SINGLE"
           : l == MPI_THREAD_FUNNELED   ? "MPI_THREAD_FUNNELED"
           : l == MPI_THREAD_SERIALIZED ? "MPI_THREAD_SERIALIZED"
                                        : "MPI_THREAD_MULTIPLE";
}

/* The job size announced by the launcher, without initialising MPI (0: no launcher). */
static int launcher_size(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return atoi(v);
    }
    return 0;
}

/* Initialise MPI when needed and check the thread level. Returns 0, or DAGGER_ENOSYS. */
static int init_mpi(void)
{
    int inited = 0, fin = 0, provided = 0;
    MPI_Finalized(&fin);
    DAGGER_CHECK(!fin, DAGGER_ENOSYS, "dagger_ctx_open: MPI was already finalized in this process");
    pthread_mutex_lock(&init_lock);
    MPI_Initialized(&inited);
    if (!inited) {
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
        if (rc != MPI_SUCCESS) {
            pthread_mutex_unlock(&init_lock);
            return dagger__set_errmsg(DAGGER_ENOSYS, "dagger_ctx_open: MPI_Init_thread failed (%d)",
                                      rc);
        }
        we_initialised = true;
        atexit(finalize_at_exit);
    } else {
        MPI_Query_thread(&provided);
    }
    pthread_mutex_unlock(&init_lock);
    DAGGER_CHECK(provided >= MPI_THREAD_SERIALIZED, DAGGER_ENOSYS,
                 "dagger_ctx_open: MPI was initialised with %s, but dagger's progress thread "
                 "calls MPI beside the caller's thread: initialise it with MPI_Init_thread and "
                 "MPI_THREAD_MULTIPLE (or MPI_THREAD_SERIALIZED, making no MPI call while the "
                 "context is open)",
                 level_name(provided));
    return 0;
}

/* ---------------------------------------------------------------- commands and sends */

void mpi__push(struct mpi_state *st, struct mpi_cmd *c)
{
    struct mpi_cmd *head = atomic_load_explicit(&st->cmds, memory_order_relaxed);
    do
        c->next = head;
    while (!atomic_compare_exchange_weak_explicit(&st->cmds, &head, c, memory_order_release,
                                                  memory_order_relaxed));
    dagger__fence_seq_cst(); /* pairs with the sleeper's fence between `sleeping` and `cmds` */
    if (atomic_load_explicit(&st->sleeping, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&st->wake, 1, memory_order_release);
        dagger__futex_wake(&st->wake, 1);
    } else if (st->linger_ns == 0 && dagger__self_tls.pool != NULL) {
        /* The progress thread is awake, polling and yielding. On a host with fewer cores than
         * threads a worker that just finished a task hands it the core now: else it runs only
         * when the worker's time slice ends (milliseconds), which held results and tiles the
         * other rank waited for (bench/RESULTS.md, 2026-12-02 02:40). */
        sched_yield();
    }
}

struct datasend {
    int left;
    void (*release)(void *ud);
    void *ud;
};

struct sendreq {
    struct sendreq *next;
    MPI_Request req;
    void *buf; /* a control message's bytes, freed when sent */
    struct datasend *ds;
    int peer;
};

static void add_send(struct mpi_state *st, int peer, void *buf, struct datasend *ds,
                     MPI_Request req)
{
    struct sendreq *s = dagger__calloc(1, sizeof *s);
    if (!s) { /* cannot track it: wait for it here rather than lose the buffer */
        MPI_Wait(&req, MPI_STATUS_IGNORE);
        dagger__free(buf);
        if (ds && --ds->left == 0) {
            ds->release(ds->ud);
            dagger__free(ds);
        }
        return;
    }
    s->req = req;
    s->buf = buf;
    s->ds = ds;
    s->peer = peer;
    s->next = st->sends;
    st->sends = s;
}

void mpi__send(struct mpi_state *st, int peer, struct wbuf *b, bool work)
{
    if (st->peers[peer].lost || st->peers[peer].bye_sent || b->oom) {
        dagger__free(b->p);
        *b = (struct wbuf){0};
        return;
    }
    MPI_Request req;
    MPI_Isend(b->p, (int)b->len, MPI_BYTE, peer, TAG_CTRL, st->comm, &req);
    add_send(st, peer, b->p, NULL, req);
    *b = (struct wbuf){0};
    st->peers[peer].last_tx = (int64_t)dagger__now_ns();
    if (work)
        st->nsent++;
}

size_t mpi__npieces(size_t n) { return n ? (n - 1) / MPI__PIECE + 1 : 1; }

size_t mpi__piece(size_t n, size_t k, size_t *off)
{
    *off = k * (size_t)MPI__PIECE;
    return n - *off < MPI__PIECE ? n - *off : MPI__PIECE;
}

void mpi__send_data(struct mpi_state *st, int peer, int tag, const void *p, size_t n,
                    void (*release)(void *ud), void *ud)
{
    size_t pieces = mpi__npieces(n);
    struct datasend *ds = dagger__calloc(1, sizeof *ds);
    if (!ds || st->peers[peer].lost || st->peers[peer].bye_sent) {
        dagger__free(ds);
        release(ud);
        return;
    }
    ds->left = (int)pieces;
    ds->release = release;
    ds->ud = ud;
    for (size_t k = 0; k < pieces; k++) {
        size_t off, len = mpi__piece(n, k, &off);
        MPI_Request req;
        MPI_Isend((const char *)p + off, (int)len, MPI_BYTE, peer, tag, st->comm, &req);
        add_send(st, peer, NULL, ds, req);
    }
    st->peers[peer].last_tx = (int64_t)dagger__now_ns();
}

static void send_free(struct sendreq *s)
{
    dagger__free(s->buf);
    if (s->ds && --s->ds->left == 0) {
        s->ds->release(s->ds->ud);
        dagger__free(s->ds);
    }
    dagger__free(s);
}

static bool test_sends(struct mpi_state *st)
{
    bool did = false;
    for (struct sendreq **pp = &st->sends; *pp;) {
        struct sendreq *s = *pp;
        int flag = 0;
        if (!st->peers[s->peer].lost)
            MPI_Test(&s->req, &flag, MPI_STATUS_IGNORE);
        if (!flag) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        send_free(s);
        did = true;
    }
    return did;
}

/* At the end: sends to lost ranks never complete; cancel them and free what they held. Sends
 * to a live rank still in flight past the give-up point stay (MPI may still read the bytes). */
static void drop_lost_sends(struct mpi_state *st)
{
    for (struct sendreq **pp = &st->sends; *pp;) {
        struct sendreq *s = *pp;
        if (!st->peers[s->peer].lost) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        MPI_Cancel(&s->req);
        MPI_Request_free(&s->req);
        send_free(s);
    }
}

/* Sends to live peers still in flight. */
static bool sends_pending(const struct mpi_state *st)
{
    for (const struct sendreq *s = st->sends; s; s = s->next)
        if (!st->peers[s->peer].lost)
            return true;
    return false;
}

/* A large receive buffer is fresh memory, which faulting in 4 KiB pages costs more than the
 * transfer itself (about 25 ms per 64 MiB here, against 3 ms for a copy): ask for huge pages on
 * its 2 MiB-aligned interior before the first byte lands (advice only: the buffer stays what its
 * allocator gave). */
static void advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (n < MPI__HUGE_MIN)
        return;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + n) & ~(huge - 1);
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

int mpi__import_start(struct mpi_state *st, struct import *im)
{
    size_t pieces = mpi__npieces(im->size);
    im->reqs = dagger__calloc(pieces, sizeof *im->reqs);
    if (!im->reqs)
        return DAGGER_ENOMEM;
    advise_huge(im->dst, im->size);
    im->tag = TAG_DATA0 + (int)(st->next_tag++ % TAG_DATA_SPAN);
    im->nreq = (int)pieces;
    for (size_t k = 0; k < pieces; k++) {
        size_t off, len = mpi__piece(im->size, k, &off);
        MPI_Irecv((char *)im->dst + off, (int)len, MPI_BYTE, im->peer, im->tag, st->comm,
                  &im->reqs[k]);
    }
    im->next = st->imports;
    st->imports = im;
    im->t0 = (int64_t)dagger__now_ns();
    return 0;
}

static void import_end(struct mpi_state *st, struct import *im, int rc, const char *why)
{
    dagger__free(im->reqs);
    im->reqs = NULL;
    im->done(st, im, rc, why);
}

static bool test_imports(struct mpi_state *st)
{
    bool did = false;
    for (struct import **pp = &st->imports; *pp;) {
        struct import *im = *pp;
        int flag = 0;
        MPI_Testall(im->nreq, im->reqs, &flag, MPI_STATUSES_IGNORE);
        if (!flag) {
            pp = &im->next;
            continue;
        }
        *pp = im->next;
        int64_t took = (int64_t)dagger__now_ns() - im->t0;
        mpi__steal_link(st, im->peer, im->size, took);
        if (st->stages && im->size >= MPI__HUGE_MIN) {
            char dst[48] = ""; /* known where the pull made its destination (remote.c) */
            if (im->alloc_ns > 0)
                snprintf(dst, sizeof dst, "destination %.1f us, ", (double)im->alloc_ns / 1e3);
            fprintf(stderr,
                    "dagger: rank %d: pulled %zu bytes from rank %d: %sreceive %.1f us "
                    "(%.0f MB/s)\n",
                    st->rank, im->size, im->peer, dst, (double)took / 1e3,
                    took > 0 ? (double)im->size * 1e3 / (double)took : 0.0);
        }
        atomic_fetch_add_explicit(&st->bytes_pulled, im->size, memory_order_relaxed);
        import_end(st, im, 0, NULL);
        did = true;
    }
    return did;
}

/* ---------------------------------------------------------------- lost ranks */

static void wake_word(_Atomic uint32_t *w, uint32_t v)
{
    atomic_store_explicit(w, v, memory_order_release);
    dagger__futex_wake(w, INT_MAX);
}

static void round_answered(struct mpi_state *st)
{
    if (st->q_waiting > 0 && --st->q_waiting == 0) {
        atomic_store_explicit(&st->q_done, atomic_load(&st->q_round), memory_order_release);
        dagger__futex_wake(&st->q_done, INT_MAX);
    }
}

void mpi__peer_lost(struct mpi_state *st, int peer, const char *why)
{
    struct mpi_peer *p = &st->peers[peer];
    if (p->lost)
        return;
    p->lost = true;
    atomic_store(&peer_was_lost, true);
    snprintf(p->why, sizeof p->why, "%s", why);
    /* Receives from it never complete: cancel them, then fail what waited on them. */
    for (struct import **pp = &st->imports; *pp;) {
        struct import *im = *pp;
        if (im->peer != peer) {
            pp = &im->next;
            continue;
        }
        *pp = im->next;
        for (int k = 0; k < im->nreq; k++) {
            MPI_Cancel(&im->reqs[k]);
            MPI_Request_free(&im->reqs[k]);
        }
        char msg[200];
        snprintf(msg, sizeof msg, "rank %d was lost (%s) while its data was being received", peer,
                 why);
        import_end(st, im, DAGGER_EPEER, msg);
    }
    mpi__remote_lost(st, peer);
    mpi__spmd_lost(st, peer);
    mpi__rtrace_lost(st, peer);
    mpi__steal_lost(st, peer);
    mpi__stream_lost(st, peer);
    if (st->q_waiting > 0)
        round_answered(st);
    if (st->driver_mode && st->rank != 0 && peer == 0 && !atomic_load(&st->stopped)) {
        snprintf(st->stop_why, sizeof st->stop_why, "the driver (rank 0) was lost: %s", why);
        atomic_store(&st->served_rc, (uint32_t)-DAGGER_EPEER);
        wake_word(&st->stopped, 1);
    }
}

/* Whether the process of a rank on this host is gone (or a zombie). */
static bool process_gone(int pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return kill(pid, 0) != 0 && errno == ESRCH;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *s = strrchr(buf, ')');
    return s && s[1] == ' ' && (s[2] == 'Z' || s[2] == 'X');
}

static void check_peers(struct mpi_state *st, int64_t now)
{
    for (int r = 0; r < st->nranks; r++) {
        struct mpi_peer *p = &st->peers[r];
        if (r == st->rank || p->lost || (p->bye_sent && p->bye_rcvd))
            continue;
        char why[128];
        if (p->same_host && process_gone(p->pid)) {
            snprintf(why, sizeof why, "its process %d on this host is gone", p->pid);
            mpi__peer_lost(st, r, why);
            continue;
        }
        if (now - p->last_rx > st->timeout_ns) {
            snprintf(why, sizeof why, "no message from it for %.1f s (DAGGER_PEER_TIMEOUT)",
                     (double)(now - p->last_rx) / 1e9);
            mpi__peer_lost(st, r, why);
            continue;
        }
        if (now - p->last_tx > st->period_ns) {
            struct wbuf b = {0};
            wb_u64(&b, M_BEAT);
            mpi__steal_put_load(st, &b); /* placement there sees this rank's load */
            mpi__send(st, r, &b, false);
        }
    }
}

/* ---------------------------------------------------------------- termination rounds */

static bool locally_idle(struct mpi_state *st)
{
    return dagger__ctx_inflight(st->ctx) == 0 && !mpi__remote_busy(st);
}

static void start_round(struct mpi_state *st)
{
    uint64_t round = atomic_load(&st->q_round);
    st->q_sent = st->nsent;
    st->q_recvd = st->nrecvd;
    st->q_idle = locally_idle(st);
    st->q_waiting = 1; /* this rank's own share, answered below */
    for (int r = 0; r < st->nranks; r++) {
        if (r == st->rank || st->peers[r].lost)
            continue;
        struct wbuf b = {0};
        wb_u64(&b, M_QUERY);
        wb_u64(&b, round);
        mpi__send(st, r, &b, false);
        st->q_waiting++;
    }
    round_answered(st);
}

static void stop_all(struct mpi_state *st)
{
    for (int r = 0; r < st->nranks; r++) {
        if (r == st->rank || st->peers[r].lost)
            continue;
        struct wbuf b = {0};
        wb_u64(&b, M_STOP);
        wb_u64(&b, atomic_load(&peer_was_lost)); /* then no rank may wait in MPI_Finalize */
        mpi__send(st, r, &b, false);
    }
}

/* ---------------------------------------------------------------- the progress thread */

/* A message held by DAGGER_FAULT_MPI (hold_results). */
struct held_msg {
    struct held_msg *next;
    int64_t due;
    int src;
    size_t len;
    uint8_t bytes[];
};

/* Keep a copy of the message to handle at `due`; false when out of memory (it is handled now). */
static bool hold_message(struct mpi_state *st, int src, const void *buf, size_t len, int64_t due)
{
    struct held_msg *h = dagger__malloc(sizeof *h + len);
    if (!h)
        return false;
    *h = (struct held_msg){.due = due, .src = src, .len = len};
    memcpy(h->bytes, buf, len);
    if (st->held_tail)
        st->held_tail->next = h;
    else
        st->held_msgs = h;
    st->held_tail = h;
    atomic_fetch_add_explicit(&st->held_total, 1, memory_order_relaxed);
    return true;
}

static void dispatch(struct mpi_state *st, int src, const void *buf, size_t len);

/* Handle the held messages that are due, oldest first. */
static bool release_held(struct mpi_state *st, int64_t now)
{
    bool did = false;
    while (st->held_msgs && st->held_msgs->due <= now) {
        struct held_msg *h = st->held_msgs;
        st->held_msgs = h->next;
        if (!st->held_msgs)
            st->held_tail = NULL;
        dispatch(st, h->src, h->bytes, h->len);
        dagger__free(h);
        did = true;
    }
    return did;
}

static void on_message(struct mpi_state *st, int src, const void *buf, size_t len)
{
    int64_t now = (int64_t)dagger__now_ns();
    st->peers[src].last_rx = now;
    if (DAGGER_UNLIKELY(st->hold_results_ns > 0)) {
        struct rbuf rb = {buf, len, 0, false};
        if (rb_u64(&rb) == M_RESULT && hold_message(st, src, buf, len, now + st->hold_results_ns))
            return;
    }
    dispatch(st, src, buf, len);
}

static void dispatch(struct mpi_state *st, int src, const void *buf, size_t len)
{
    struct rbuf rb = {buf, len, 0, false};
    int type = (int)rb_u64(&rb);
    switch (type) {
    case M_BEAT:
        mpi__steal_get_load(st, src, &rb);
        break;
    case M_QUERY: {
        uint64_t round = rb_u64(&rb);
        struct wbuf b = {0};
        wb_u64(&b, M_REPLY);
        wb_u64(&b, round);
        wb_u64(&b, locally_idle(st));
        wb_u64(&b, st->nsent);
        wb_u64(&b, st->nrecvd);
        mpi__send(st, src, &b, false);
        break;
    }
    case M_REPLY: {
        uint64_t round = rb_u64(&rb);
        bool idle = rb_u64(&rb) != 0;
        uint64_t s = rb_u64(&rb), r = rb_u64(&rb);
        if (rb.bad || round != atomic_load(&st->q_round) || st->q_waiting == 0)
            break;
        st->q_idle = st->q_idle && idle;
        st->q_sent += s;
        st->q_recvd += r;
        round_answered(st);
        break;
    }
    case M_STOP:
        if (rb_u64(&rb))
            atomic_store(&peer_was_lost, true);
        if (src == 0)
            wake_word(&st->stopped, 1);
        break;
    case M_TASK:
    case M_RESULT:
    case M_SUB:
    case M_FWD:
    case M_ARG:
        st->nrecvd++;
        mpi__on_msg(st, type, src, &rb);
        break;
    case M_CANCEL:
    case M_PULL:
    case M_UNREF:
        mpi__on_msg(st, type, src, &rb);
        break;
    case M_CLOSING:
        mpi__spmd_on_msg(st, type, src, &rb);
        break;
    case M_TRACE:
    case M_TRACE_PULL:
        mpi__rtrace_on_msg(st, type, src, &rb);
        break;
    case M_STEAL:
    case M_STEAL_REPLY:
        mpi__steal_on_msg(st, type, src, &rb);
        break;
    case M_STREAM:
        mpi__stream_on_msg(st, src, &rb);
        break;
    case M_CREDIT:
        mpi__stream_on_credit(st, src, &rb);
        break;
    case M_BYE:
        st->peers[src].bye_rcvd = true;
        break;
    case M_DROP: {
        uint64_t xid = rb_u64(&rb);
        if (!rb.bad)
            mpi__export_drop(st, src, xid);
        break;
    }
    default:
        fprintf(stderr,
                "dagger: rank %d: a malformed message (type %d, %zu bytes) from rank %d "
                "was dropped\n",
                st->rank, type, len, src);
    }
}

static bool poll_messages(struct mpi_state *st)
{
    bool did = false;
    for (int k = 0; k < 64; k++) {
        int flag = 0, n = 0;
        MPI_Message m;
        MPI_Status s;
        MPI_Improbe(MPI_ANY_SOURCE, TAG_CTRL, st->comm, &flag, &m, &s);
        if (!flag)
            break;
        MPI_Get_count(&s, MPI_BYTE, &n);
        void *buf = dagger__malloc(n > 0 ? (size_t)n : 1);
        if (!buf)
            dagger__panic("out of memory receiving a %d-byte control message", n);
        MPI_Mrecv(buf, n, MPI_BYTE, &m, MPI_STATUS_IGNORE);
        on_message(st, s.MPI_SOURCE, buf, (size_t)n);
        dagger__free(buf);
        did = true;
    }
    return did;
}

static void run_cmd(struct mpi_state *st, struct mpi_cmd *c)
{
    switch (c->type) {
    case C_QUERY:
        start_round(st);
        dagger__free(c);
        break;
    case C_STOP:
        stop_all(st);
        dagger__free(c);
        break;
    case C_COLL:
    case C_CLOSING:
        mpi__spmd_on_cmd(st, c); /* frees or keeps c */
        break;
    case C_TRACE:
        mpi__rtrace_on_cmd(st, c);
        break;
    case C_FETCH:
    case C_DROP:
        mpi__sub_cmd(st, c); /* frees or keeps c */
        break;
    case C_STREAM:
        mpi__stream_cmd(st, c); /* frees c */
        break;
    default:
        mpi__on_cmd(st, c); /* frees or keeps c */
    }
}

/* A command that carries an outcome another rank or task waits for now: a served task's
 * result, a producer's result forwarded to an early task. */
static bool urgent(const struct mpi_cmd *c) { return c->type == C_RESULT || c->type == C_FWD; }

/* Urgent commands run first; every other one keeps its order in the backlog, which runs
 * BACKLOG_BATCH at a time between polls. A datadeps region spawns hundreds of kernels at once
 * and each is an early send: in one queue, the result of the first copy the other rank waited
 * for went out after all of them (8 ms at N=2048, NB=128, bench/RESULTS.md 2026-12-02 02:30).
 * Moving a result ahead is safe: it never passes a message it must follow (the give-back of
 * a reference it carries is pushed after it; the early send a forward completes ran before
 * the forward was asked for). */
#define BACKLOG_BATCH 32

static bool run_cmds(struct mpi_state *st)
{
    struct mpi_cmd *c = atomic_exchange_explicit(&st->cmds, NULL, memory_order_acquire);
    if (!c && !st->backlog)
        return false;
    struct mpi_cmd *rev = NULL; /* oldest first */
    while (c) {
        struct mpi_cmd *n = c->next;
        c->next = rev;
        rev = c;
        c = n;
    }
    struct mpi_cmd *now = NULL, **now_end = &now;
    while (rev) {
        struct mpi_cmd *n = rev->next;
        rev->next = NULL;
        if (urgent(rev)) {
            *now_end = rev;
            now_end = &rev->next;
        } else {
            *(st->backlog ? &st->backlog_tail->next : &st->backlog) = rev;
            st->backlog_tail = rev;
        }
        rev = n;
    }
    while (now) {
        struct mpi_cmd *n = now->next;
        run_cmd(st, now);
        now = n;
    }
    for (int k = 0; k < BACKLOG_BATCH && st->backlog; k++) {
        struct mpi_cmd *b = st->backlog;
        st->backlog = b->next;
        run_cmd(st, b);
    }
    return true;
}

/* Closing, in two steps, so that no message of this job is left on the communicator when it
 * is freed (Open MPI reuses the context id for the next communicator, and a stale message
 * would then land in the next job): once the commands are run and this rank's sends are out,
 * it says M_BYE to every peer and sends nothing more; it goes on receiving until every live
 * peer said M_BYE (ob1 matches each peer's messages in order, so all that peer's data came
 * first), and then leaves. Past `give_up` (the peer timeout) it leaves as things are. */
static bool closing_done(struct mpi_state *st, bool give_up)
{
    if (atomic_load_explicit(&st->cmds, memory_order_acquire) || st->backlog)
        return give_up;
    bool said = true, heard = true;
    for (int r = 0; r < st->nranks; r++) {
        struct mpi_peer *p = &st->peers[r];
        if (r == st->rank || p->lost)
            continue;
        said &= p->bye_sent;
        heard &= p->bye_rcvd;
    }
    if (!said && !sends_pending(st)) {
        for (int r = 0; r < st->nranks; r++) {
            struct mpi_peer *p = &st->peers[r];
            if (r == st->rank || p->lost || p->bye_sent)
                continue;
            struct wbuf b = {0};
            wb_u64(&b, M_BYE);
            mpi__send(st, r, &b, false);
            p->bye_sent = true;
        }
        said = true;
    }
    return give_up || (said && heard && !sends_pending(st));
}

#define SPIN_NS (200 * 1000)
#define AWAIT_SPIN_NS (10 * 1000 * 1000)

static void *progress_main(void *arg)
{
    struct mpi_state *st = arg;
    pthread_setname_np(pthread_self(), "dagger-mpi");
    int idle = 0;
    int64_t next_check = 0, flush_deadline = -1, last_active = 0;
    for (;;) {
        bool did = run_cmds(st);
        did |= poll_messages(st);
        did |= test_sends(st);
        did |= test_imports(st);
        did |= mpi__spmd_poll(st);
        int64_t now = (int64_t)dagger__now_ns();
        if (DAGGER_UNLIKELY(st->held_msgs != NULL))
            did |= release_held(st, now);
        did |= mpi__steal_poll(st, now);
        if (now >= next_check) {
            check_peers(st, now);
            next_check = now + st->period_ns / 4;
        }
        if (atomic_load_explicit(&st->exit, memory_order_acquire)) {
            if (flush_deadline < 0)
                flush_deadline = now + st->timeout_ns;
            if (closing_done(st, now > flush_deadline)) {
                drop_lost_sends(st);
                break;
            }
        }
        if (did) {
            idle = 0;
            last_active = now;
            continue;
        }
        if (st->imports || sends_pending(st)) { /* transfers progress only inside MPI */
            sched_yield();
            continue;
        }
        /* A reply often follows within a round trip: poll (yielding the core) for SPIN_NS after
         * the last activity, AWAIT_SPIN_NS while results are awaited or served tasks run, then
         * sleep 1 us, 2 us, ... up to 1 ms. */
        int64_t spin = st->nawaiting > 0 || st->nserved > 0 ? AWAIT_SPIN_NS : SPIN_NS;
        if (now - last_active < spin) {
            sched_yield();
            continue;
        }
        idle++;
        int cap = mpi__spmd_busy(st) ? 6 : 10; /* a collective progresses only inside MPI */
        long ns = 1000L << (idle < cap ? idle : cap);
        uint32_t w = atomic_load_explicit(&st->wake, memory_order_acquire);
        atomic_store_explicit(&st->sleeping, 1, memory_order_relaxed);
        dagger__fence_seq_cst();
        if (!atomic_load_explicit(&st->cmds, memory_order_relaxed) &&
            !st->backlog) /* closing too: ns <= 1 ms */
            dagger__futex_wait(&st->wake, w, ns);
        atomic_store_explicit(&st->sleeping, 0, memory_order_relaxed);
    }
    return NULL;
}

/* ---------------------------------------------------------------- open and close */

struct hello {
    uint8_t prog_id[DAGGER__BUILD_ID_MAX];
    uint8_t lib_id[DAGGER__BUILD_ID_MAX];
    int32_t prog_len, lib_len;
    int32_t pid;
    char host[64];
};

/* Every rank runs the same program and library, or none proceeds. */
static int check_binaries(const struct hello *all, int nranks, int me)
{
    for (int r = 1; r < nranks; r++) {
        const struct hello *a = &all[0], *b = &all[r];
        const char *what = NULL;
        const uint8_t *ia = NULL, *ib = NULL;
        int la = 0, lb = 0;
        if (a->prog_len != b->prog_len || memcmp(a->prog_id, b->prog_id, (size_t)a->prog_len)) {
            what = "program";
            ia = a->prog_id, ib = b->prog_id, la = a->prog_len, lb = b->prog_len;
        } else if (a->lib_len != b->lib_len || memcmp(a->lib_id, b->lib_id, (size_t)a->lib_len)) {
            what = "dagger library";
            ia = a->lib_id, ib = b->lib_id, la = a->lib_len, lb = b->lib_len;
        }
        if (!what)
            continue;
        char ha[2 * DAGGER__BUILD_ID_MAX + 1], hb[2 * DAGGER__BUILD_ID_MAX + 1];
        dagger__fn_id_hex(ia, la, ha, sizeof ha);
        dagger__fn_id_hex(ib, lb, hb, sizeof hb);
        return dagger__set_errmsg(
            DAGGER_EINVAL,
            "dagger_ctx_open (rank %d): rank %d runs another %s (build id %s) than rank 0 (%s): "
            "every rank must run the same binary, since task functions travel as (build id, "
            "offset)",
            me, r, what, hb[0] ? hb : "none", ha[0] ? ha : "none");
    }
    return 0;
}

/* DAGGER_FAULT_MPI=hold_results:MS (1 to 60000): the M_RESULT messages this rank gets are
 * handled MS later (tests make the races of early sends happen on purpose). */
static int64_t fault_hold_ns(void)
{
    const char *v = getenv("DAGGER_FAULT_MPI");
    if (!v || !*v)
        return 0;
    const char *key = "hold_results:";
    char *end = NULL;
    long ms = strncmp(v, key, strlen(key)) == 0 ? strtol(v + strlen(key), &end, 10) : 0;
    if (end && !*end && ms >= 1 && ms <= 60000)
        return (int64_t)ms * 1000000;
    fprintf(stderr,
            "dagger: DAGGER_FAULT_MPI='%s' is invalid (expected hold_results:MS, MS from 1 "
            "to 60000): ignored\n",
            v);
    return 0;
}

static double peer_timeout(void)
{
    const char *v = getenv("DAGGER_PEER_TIMEOUT");
    char *end;
    double t = v && *v ? strtod(v, &end) : 10.0;
    if (v && *v && (*end || !(t > 0.0) || t > 86400.0)) {
        fprintf(stderr, "dagger: DAGGER_PEER_TIMEOUT='%s' is invalid (seconds, > 0): using 10\n",
                v);
        t = 10.0;
    }
    return t;
}

/* DAGGER_MPI_LINGER_US, else MPI__LINGER_NS where every rank on this host has a core for each
 * of its workers, its progress thread and its main thread, else 0: on an oversubscribed host a
 * thread that yields instead of sleeping takes the core from the one that would answer. */
static uint64_t linger_ns(const struct mpi_state *st)
{
    const char *v = getenv("DAGGER_MPI_LINGER_US");
    if (v && *v) {
        char *end;
        double us = strtod(v, &end);
        if (!*end && us >= 0.0 && us <= 1e6)
            return (uint64_t)(us * 1000.0);
        fprintf(stderr,
                "dagger: DAGGER_MPI_LINGER_US='%s' is invalid (microseconds, 0 to 1000000): "
                "using the default\n",
                v);
    }
    int local = 0;
    for (int r = 0; r < st->nranks; r++)
        local += r == st->rank || st->peers[r].same_host;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long need = (long)local * (dagger__ctx_nthreads(st->ctx) + 2);
    return cores > 0 && need <= cores ? MPI__LINGER_NS : 0;
}

static void state_free(struct mpi_state *st)
{
    while (st->held_msgs) {
        struct held_msg *h = st->held_msgs;
        st->held_msgs = h->next;
        dagger__free(h);
    }
    mpi__spmd_fini(st);
    mpi__rtrace_fini(st);
    mpi__steal_fini(st);
    mpi__sub_fini(st);
    mpi__remote_fini(st);
    mpi__data_fini(st);
    dagger__free(st->peers);
    st->peers = NULL;
    if (!mpi__data_keep_state(st)) /* else the last proxy frees it */
        dagger__free(st);
}

static int join(dagger_ctx_t *ctx)
{
    const MPI_Comm *user = tls_user_comm;
    if (!user) {
        const char *env = getenv("DAGGER_MPI");
        DAGGER_CHECK(!env || !*env || !strcmp(env, "0") || !strcmp(env, "1"), DAGGER_EINVAL,
                     "dagger_ctx_open: DAGGER_MPI='%s' is invalid: expected 0 or 1", env);
        if (env && !strcmp(env, "0"))
            return 0;
        int inited = 0, fin = 0;
        MPI_Initialized(&inited);
        MPI_Finalized(&fin);
        int size = launcher_size();
        if (inited && !fin)
            MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (!(env && !strcmp(env, "1")) && size <= 1)
            return 0;
    }
    int rc = init_mpi();
    if (rc)
        return rc;
    struct mpi_state *st = dagger__calloc(1, sizeof *st);
    DAGGER_CHECK(st, DAGGER_ENOMEM, "dagger_ctx_open: out of memory");
    st->ctx = ctx;
    if (MPI_Comm_dup(user ? *user : MPI_COMM_WORLD, &st->comm) != MPI_SUCCESS) {
        dagger__free(st);
        return dagger__set_errmsg(DAGGER_EINVAL, "dagger_ctx_open: MPI_Comm_dup failed");
    }
    MPI_Comm_set_errhandler(st->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(st->comm, &st->rank);
    MPI_Comm_size(st->comm, &st->nranks);
    if (st->nranks <= 1 || st->nranks > MPI__MAX_RANKS) {
        int n = st->nranks;
        MPI_Comm_free(&st->comm);
        dagger__free(st);
        DAGGER_CHECK(n <= MPI__MAX_RANKS, DAGGER_ENOSYS,
                     "dagger_ctx_open: %d ranks is more than this build supports (%d)", n,
                     MPI__MAX_RANKS);
        return 0; /* one rank: a plain context */
    }
    struct hello me = {0}, *all = dagger__calloc((size_t)st->nranks, sizeof *all);
    st->peers = dagger__calloc((size_t)st->nranks, sizeof *st->peers);
    if (!all || !st->peers) {
        dagger__free(all);
        MPI_Comm_free(&st->comm);
        dagger__free(st->peers);
        dagger__free(st);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_ctx_open: out of memory");
    }
    me.prog_len = dagger__fn_program_id(me.prog_id);
    me.lib_len = dagger__fn_module_id((const void *)(uintptr_t)dagger_ctx_open, me.lib_id);
    me.pid = (int32_t)getpid();
    gethostname(me.host, sizeof me.host - 1);
    MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, st->comm);
    rc = check_binaries(all, st->nranks, st->rank);
    int64_t now = (int64_t)dagger__now_ns();
    for (int r = 0; r < st->nranks; r++) {
        st->peers[r].pid = all[r].pid;
        st->peers[r].same_host = strcmp(all[r].host, me.host) == 0;
        st->peers[r].last_rx = st->peers[r].last_tx = now;
    }
    dagger__free(all);
    if (rc) {
        MPI_Comm_free(&st->comm);
        dagger__free(st->peers);
        dagger__free(st);
        return rc;
    }
    double t = peer_timeout();
    st->timeout_ns = (int64_t)(t * 1e9);
    st->period_ns = st->timeout_ns / 4 < 1000000000LL ? st->timeout_ns / 4 : 1000000000LL;
    st->driver_mode = !(dagger__ctx_open_flags(ctx) & DAGGER_OPEN_SPMD);
    st->linger_ns = linger_ns(st);
    const char *stages = getenv("DAGGER_MPI_STAGES");
    st->stages = stages && !strcmp(stages, "1");
    st->hold_results_ns = fault_hold_ns();
    mpi__remote_init(st);
    mpi__spmd_init(st);
    rc = mpi__rtrace_join(st); /* collective */
    if (rc) {
        MPI_Comm_free(&st->comm);
        state_free(st);
        return rc;
    }
    if (mpi__steal_init(st)) {
        MPI_Comm_free(&st->comm);
        state_free(st);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_ctx_open: out of memory");
    }
    /* Before the thread starts: the tasks it spawns read the rank, and may open mpi:// edges
     * (attached after the start, a served task could run first and find no context to open
     * them on: a race seen under load). */
    dagger__ctx_set_ranks(ctx, st->rank, st->nranks, st, mpi__remote_submit);
    dagger__ctx_set_ranks_place(ctx, mpi__steal_place);
    const char *direct = getenv("DAGGER_MPI_DIRECT");
    st->direct = !direct || strcmp(direct, "0") != 0;
    dagger__ctx_set_ranks_early(ctx, mpi__early, mpi__early_ready);
    mpi__stream_attach(st);
    if (pthread_create(&st->thread, NULL, progress_main, st) != 0) {
        mpi__stream_detach(st);
        dagger__ctx_set_ranks(ctx, 0, 1, NULL, NULL);
        dagger__ctx_set_ranks_early(ctx, NULL, NULL);
        MPI_Comm_free(&st->comm);
        state_free(st);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_ctx_open: cannot start the MPI progress "
                                                 "thread");
    }
    if (!st->driver_mode || st->rank == 0)
        return 0;
    /* A server: run tasks for the others until the driver closes (or is lost). */
    while (!atomic_load_explicit(&st->stopped, memory_order_acquire))
        dagger__futex_wait(&st->stopped, 0, 100 * 1000 * 1000);
    int served = -(int)atomic_load(&st->served_rc);
    if (served)
        return dagger__set_errmsg(served, "dagger_ctx_open (rank %d): %s", st->rank, st->stop_why);
    return DAGGER_CTX_SERVED;
}

static void quiesce(dagger_ctx_t *ctx)
{
    struct mpi_state *st = dagger__ctx_ranks(ctx);
    if (!st->driver_mode) /* SPMD: every rank closes; rank 0 then ends the job as a driver */
        mpi__spmd_quiesce(st);
    if (st->rank != 0 || atomic_load(&st->stopped))
        return;
    uint64_t prev_s = UINT64_MAX, prev_r = UINT64_MAX;
    long nap = 200 * 1000;
    for (uint32_t round = 1;; round++) {
        atomic_store(&st->q_round, round);
        struct mpi_cmd *q = dagger__calloc(1, sizeof *q);
        if (!q) { /* cannot even ask: stop the servers as they are */
            break;
        }
        q->type = C_QUERY;
        mpi__push(st, q);
        /* Bounded: a rank that never answers is lost within the peer timeout. */
        while (atomic_load_explicit(&st->q_done, memory_order_acquire) != round)
            dagger__futex_wait(&st->q_done, round - 1, 10000000);
        bool any_lost = false;
        for (int r = 0; r < st->nranks; r++)
            any_lost |= st->peers[r].lost;
        uint64_t s = st->q_sent, r = st->q_recvd;
        if (st->q_idle && (any_lost || s == r) && s == prev_s && r == prev_r)
            break;
        prev_s = st->q_idle ? s : UINT64_MAX;
        prev_r = st->q_idle ? r : UINT64_MAX;
        struct timespec ts = {0, nap};
        nanosleep(&ts, NULL);
        if (nap < 20 * 1000 * 1000)
            nap *= 2;
    }
    struct mpi_cmd *stop = dagger__calloc(1, sizeof *stop);
    if (stop) { /* consumed before the progress thread sees `exit`; it flushes the sends */
        stop->type = C_STOP;
        mpi__push(st, stop);
    }
    atomic_store(&st->stopped, 1);
}

static void ranks_close(dagger_ctx_t *ctx)
{
    struct mpi_state *st = dagger__ctx_ranks(ctx);
    dagger__ctx_set_ranks_early(ctx, NULL, NULL);
    mpi__rtrace_close(st); /* DAGGER_TRACE: the ranks' events go to rank 0 */
    atomic_store_explicit(&st->exit, 1, memory_order_release);
    atomic_fetch_add(&st->wake, 1);
    dagger__futex_wake(&st->wake, 1);
    pthread_join(st->thread, NULL);
    mpi__stream_detach(st);
    MPI_Comm_free(&st->comm);
    state_free(st);
}

const struct dagger__ranks_ops dagger__mpi_ranks_ops = {join, quiesce, ranks_close, mpi__spmd_coll};

int dagger_ctx_open_mpi(dagger_ctx_t **out, const dagger_opts_t *opts, MPI_Comm comm)
{
    DAGGER_CHECK(comm != MPI_COMM_NULL, DAGGER_EINVAL,
                 "dagger_ctx_open_mpi: comm is MPI_COMM_NULL");
    tls_user_comm = &comm;
    int rc = dagger_ctx_open(out, opts);
    tls_user_comm = NULL;
    return rc;
}
