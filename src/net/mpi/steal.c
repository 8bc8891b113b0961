/* src/net/mpi/steal.c - placement by the cost model across ranks, and stealing across ranks.
 *
 * Design: a task that may run on any rank (dagger__sched_movable: the explicit any scope, or an
 * independent long task) reaches mpi__steal_place when it is ready. Its expected run time is
 * the history's (src/sched/cost.c), else dagger_task_opts.expected_time, else unknown (it then
 * stays here). Each rank keeps, per peer, the backlog it placed there and not yet saw finish
 * (plus what the peer last reported in steal messages) and the link measured from pulls; the
 * cost model picks the rank with the earliest estimated finish, staying local unless another
 * is clearly better. A task sent away goes through the remote executor like any remote spawn.
 * A task kept here runs at once while fewer of these tasks than workers run here; beyond that
 * it waits in the reserve, a FIFO that local workers drain as such tasks finish and that idle
 * ranks steal from. The progress thread hands a reserved task to a worker that has slept 2 ms
 * beside it, so tasks that all wait on reserved ones cannot starve.
 *
 * Stealing: when every worker of a rank is parked and the job runs, its progress thread sends
 * M_STEAL (how many it wants, its load) to one peer at a time, in ring order; the victim takes
 * up to half its reserve (no more than the thief's workers left free by the tasks it already
 * sent there) under the lock and sends each as a remote spawn (M_TASK: the result comes back
 * as for any remote task, and a lost thief fails it with DAGGER_EPEER), then answers
 * M_STEAL_REPLY (how many, its load). A refusal backs the thief off that victim (1 ms,
 * doubling to 16 ms); one request is in flight at a time. A stolen task runs on the thief
 * pinned to that rank by its scope (remote.c), so it never moves again.
 *
 * Invariants: a task is in exactly one of the reserve, the pool or a proxy, and moves between
 * them under `lock`, so it runs once. `lock` guards the reserve, the load table and `running`;
 * it is never held while calling into core, the pool or the remote executor. Fields marked
 * progress are touched by the progress thread only.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "net/mpi/mpi_int.h"
#include "sched/cost.h"
#include "sched/sched.h"

#define BACKOFF_MIN_NS (1000 * 1000LL)
#define BACKOFF_MAX_NS (16 * 1000 * 1000LL)
#define ASK_TIMEOUT_NS (200 * 1000 * 1000LL)
#define STARVE_NS (2 * 1000 * 1000LL)
#define LOAD_NS (5 * 1000 * 1000LL) /* at most one load beat per this */

/* One placed task until it finishes: where it is, and the work it was counted for. */
struct placed {
    struct dagger__task_callback cb;
    struct placed *next; /* in the reserve */
    struct mpi_state *st;
    dagger_task_t *t;
    int rank;        /* where it is counted (lock) */
    bool in_pool;    /* local and handed to the pool: counted in `running` (lock) */
    double expected; /* seconds counted in the backlog */
};

struct peer_load {
    struct dagger__cost_target mine; /* what this rank placed there; link measured */
    int rep_ntasks;                  /* what it last reported */
    double rep_backlog;
    _Atomic bool lost;
};

struct mpi_steal {
    pthread_mutex_t lock;
    struct placed *head, *tail; /* the reserve, oldest first (lock) */
    _Atomic int nreserve;       /* written under lock; read without it as a hint */
    int running;                /* lock */
    struct peer_load *peers;    /* [rank] (lock); [st->rank] is this rank */
    dagger__executor cpu;       /* the CPU executor, copied at the first placement (lock) */
    int nthreads;
    /* progress */
    int64_t *next_ask;
    int64_t *backoff;
    bool asking;
    int64_t ask_deadline;
    int next_victim;
    int64_t starve_since; /* ns since a worker sleeps beside a non-empty reserve; -1: not */
    int64_t next_load;    /* when the load may next be told (a load beat) */
    int64_t told_n;       /* the load last told to every peer */
    double told_backlog;
};

int mpi__steal_init(struct mpi_state *st)
{
    struct mpi_steal *s = dagger__calloc(1, sizeof *s);
    if (!s)
        return DAGGER_ENOMEM;
    s->peers = dagger__calloc((size_t)st->nranks, sizeof *s->peers);
    s->next_ask = dagger__calloc((size_t)st->nranks, sizeof *s->next_ask);
    s->backoff = dagger__calloc((size_t)st->nranks, sizeof *s->backoff);
    if (!s->peers || !s->next_ask || !s->backoff) {
        dagger__free(s->peers);
        dagger__free(s->next_ask);
        dagger__free(s->backoff);
        dagger__free(s);
        return DAGGER_ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->nthreads = dagger__ctx_nthreads(st->ctx);
    for (int r = 0; r < st->nranks; r++) {
        struct dagger__cost_target *m = &s->peers[r].mine;
        m->nthreads = s->nthreads; /* until the peer reports its own */
        m->latency = r == st->rank ? 0.0 : DAGGER__COST_LATENCY;
        m->bandwidth = DAGGER__COST_BANDWIDTH;
        s->backoff[r] = BACKOFF_MIN_NS;
    }
    s->next_victim = (st->rank + 1) % st->nranks;
    s->starve_since = -1;
    st->steal = s;
    return 0;
}

void mpi__steal_fini(struct mpi_state *st)
{
    struct mpi_steal *s = st->steal;
    if (!s)
        return;
    /* The context drained before this: the reserve is empty (its tasks were in flight). */
    pthread_mutex_destroy(&s->lock);
    dagger__free(s->peers);
    dagger__free(s->next_ask);
    dagger__free(s->backoff);
    dagger__free(s);
    st->steal = NULL;
}

/* Count `p` at `rank` (lock held). */
static void count_at(struct mpi_steal *s, struct placed *p, int rank, int sign)
{
    struct dagger__cost_target *m = &s->peers[rank].mine;
    m->ntasks += sign;
    m->backlog += sign * p->expected;
    if (m->ntasks <= 0) { /* no drift of the float sum once nothing is there */
        m->ntasks = 0;
        m->backlog = 0.0;
    }
    p->rank = rank;
}

/* Take the oldest reserved task (lock held). */
static struct placed *reserve_pop(struct mpi_steal *s)
{
    struct placed *p = s->head;
    if (!p)
        return NULL;
    s->head = p->next;
    if (!s->head)
        s->tail = NULL;
    p->next = NULL;
    atomic_fetch_sub_explicit(&s->nreserve, 1, memory_order_relaxed);
    return p;
}

static void run_local(struct mpi_steal *s, struct placed *p)
{
    dagger_proc_t where = {.rank = p->st->rank, .kind = DAGGER_PROC_CPU, .index = -1};
    s->cpu.submit(s->cpu.ud, (struct dagger__job *)p->t, &where);
}

/* A placed task finished (any thread): uncount it; a local one frees a slot for the reserve. */
static void placed_done(dagger_task_t *t, void *ud)
{
    (void)t;
    struct placed *p = ud;
    struct mpi_steal *s = p->st->steal;
    struct placed *next = NULL;
    pthread_mutex_lock(&s->lock);
    count_at(s, p, p->rank, -1);
    if (p->in_pool)
        s->running--;
    if (s->running < s->nthreads && (next = reserve_pop(s)) != NULL) {
        next->in_pool = true;
        s->running++;
    }
    pthread_mutex_unlock(&s->lock);
    dagger__free(p);
    if (next)
        run_local(s, next);
}

/* The targets as seen from here (lock held). */
static void fill_targets(struct mpi_state *st, struct dagger__cost_target *tg)
{
    struct mpi_steal *s = st->steal;
    for (int r = 0; r < st->nranks; r++) {
        const struct peer_load *pl = &s->peers[r];
        tg[r] = pl->mine;
        if (r != st->rank) { /* what it reported, when more than this rank knows of */
            if (pl->rep_ntasks > tg[r].ntasks)
                tg[r].ntasks = pl->rep_ntasks;
            if (pl->rep_backlog > tg[r].backlog)
                tg[r].backlog = pl->rep_backlog;
        }
        tg[r].allowed = !atomic_load_explicit(&pl->lost, memory_order_relaxed);
    }
    tg[st->rank].allowed = 1;
}

int mpi__steal_place(void *ud, const struct dagger__place *r, struct dagger__job *j,
                     const dagger_proc_t *p, const struct dagger__executor *execs, char *why,
                     size_t cap)
{
    struct mpi_state *st = ud;
    struct mpi_steal *s = st->steal;
    size_t bytes = dagger__cost_bytes(r->inputs, r->ninputs);
    double expected = r->expected > 0 ? r->expected : -1.0, h;
    if (dagger__cost_expected((const void *)(uintptr_t)dagger__task_fn(r->task), DAGGER_PROC_CPU,
                              bytes, &h) > 0)
        expected = h; /* measured beats announced */
    struct placed *pl = dagger__calloc(1, sizeof *pl);
    if (!pl) {
        snprintf(why, cap, "out of memory placing the task");
        return DAGGER_ENOMEM;
    }
    pl->st = st;
    pl->t = r->task;
    pl->expected = expected > 0 ? expected : 0.0;
    struct dagger__cost_target small[16];
    struct dagger__cost_target *tg =
        st->nranks <= 16 ? small : dagger__malloc((size_t)st->nranks * sizeof *tg);
    int k = st->rank;
    pthread_mutex_lock(&s->lock);
    if (!s->cpu.submit)
        s->cpu = execs[DAGGER_PROC_CPU];
    if (tg) {
        fill_targets(st, tg);
        k = dagger__cost_choose(tg, st->nranks, st->rank, expected, bytes);
    }
    count_at(s, pl, k, +1);
    bool now = false;
    if (k == st->rank && s->running < s->nthreads) {
        now = true;
        pl->in_pool = true;
        s->running++;
    }
    pthread_mutex_unlock(&s->lock);
    if (tg != small)
        dagger__free(tg);
    dagger_proc_t where = *p;
    if (k == st->rank) {
        int rc = dagger__sched_stage(r, &where, why, cap);
        if (rc) {
            pthread_mutex_lock(&s->lock);
            count_at(s, pl, k, -1);
            if (pl->in_pool)
                s->running--;
            pthread_mutex_unlock(&s->lock);
            dagger__free(pl);
            return rc;
        }
    }
    /* Before the task can start: it completes through these callbacks wherever it runs. */
    dagger__task_on_done(r->task, &pl->cb, placed_done, pl);
    if (k != st->rank) {
        where.rank = k;
        mpi__remote_submit(st, j, &where);
        return 0;
    }
    if (now) {
        execs[DAGGER_PROC_CPU].submit(execs[DAGGER_PROC_CPU].ud, j, &where);
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    if (s->running < s->nthreads) { /* a slot freed meanwhile */
        pl->in_pool = true;
        s->running++;
        now = true;
    } else if (s->tail) {
        s->tail->next = pl;
        s->tail = pl;
        atomic_fetch_add_explicit(&s->nreserve, 1, memory_order_relaxed);
    } else {
        s->head = s->tail = pl;
        atomic_fetch_add_explicit(&s->nreserve, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
    if (now)
        execs[DAGGER_PROC_CPU].submit(execs[DAGGER_PROC_CPU].ud, j, &where);
    return 0;
}

/* ---------------------------------------------------------------- the progress thread */

/* This rank's load: tasks in flight (served ones too) and the seconds they are expected to
 * take (the tasks placed here, and the served tasks whose function this rank's history knows). */
static void own_load(struct mpi_state *st, int64_t *n, double *backlog)
{
    struct mpi_steal *s = st->steal;
    pthread_mutex_lock(&s->lock);
    const struct dagger__cost_target *m = &s->peers[st->rank].mine;
    int64_t inflight = dagger__ctx_inflight(st->ctx); /* served tasks too */
    *n = inflight > m->ntasks ? inflight : m->ntasks;
    *backlog = m->backlog + st->served_backlog;
    pthread_mutex_unlock(&s->lock);
}

void mpi__steal_put_load(struct mpi_state *st, struct wbuf *b)
{
    struct mpi_steal *s = st->steal;
    int64_t n = 0;
    double backlog = 0.0;
    if (s)
        own_load(st, &n, &backlog);
    wb_u64(b, (uint64_t)n);
    wb_u64(b, (uint64_t)llround(backlog * 1e9));
    wb_u64(b, (uint64_t)(s ? s->nthreads : dagger__ctx_nthreads(st->ctx)));
}

void mpi__steal_get_load(struct mpi_state *st, int src, struct rbuf *rb)
{
    struct mpi_steal *s = st->steal;
    if (!s)
        return;
    int64_t n = (int64_t)rb_u64(rb);
    double backlog = (double)rb_u64(rb) * 1e-9;
    int64_t threads = (int64_t)rb_u64(rb);
    if (rb->bad || n < 0 || n > INT32_MAX || threads <= 0 || threads > 1 << 20)
        return;
    pthread_mutex_lock(&s->lock);
    s->peers[src].rep_ntasks = (int)n;
    s->peers[src].rep_backlog = backlog;
    s->peers[src].mine.nthreads = (int)threads;
    pthread_mutex_unlock(&s->lock);
}

/* A thief asks: grant up to half the reserve (at most what it wants) as remote spawns. */
static void on_steal(struct mpi_state *st, int src, struct rbuf *rb)
{
    struct mpi_steal *s = st->steal;
    int64_t want = (int64_t)rb_u64(rb);
    mpi__steal_get_load(st, src, rb);
    struct placed *got = NULL;
    int n = 0;
    pthread_mutex_lock(&s->lock);
    if (!rb->bad && want > 0 && !atomic_load(&st->stopped) && !st->peers[src].lost) {
        /* Up to half the reserve, and no more than the thief's workers that the tasks this
         * rank already sent there (not finished) leave free: those keep it busy soon. */
        int take = (atomic_load_explicit(&s->nreserve, memory_order_relaxed) + 1) / 2;
        int64_t free_slots = want - s->peers[src].mine.ntasks;
        if (take > free_slots)
            take = free_slots > 0 ? (int)free_slots : 0;
        for (; n < take; n++) {
            struct placed *p = reserve_pop(s);
            count_at(s, p, st->rank, -1);
            count_at(s, p, src, +1);
            p->next = got;
            got = p;
        }
    }
    pthread_mutex_unlock(&s->lock);
    for (struct placed *p = got, *next; p; p = next) {
        next = p->next;
        p->next = NULL;
        dagger_proc_t where = {.rank = src, .kind = DAGGER_PROC_CPU, .index = -1};
        mpi__remote_submit(st, (struct dagger__job *)p->t, &where); /* p may end from here on */
    }
    struct wbuf b = {0};
    wb_u64(&b, M_STEAL_REPLY);
    wb_u64(&b, (uint64_t)n);
    mpi__steal_put_load(st, &b);
    mpi__send(st, src, &b, false);
}

static void on_reply(struct mpi_state *st, int src, struct rbuf *rb)
{
    struct mpi_steal *s = st->steal;
    int64_t n = (int64_t)rb_u64(rb);
    mpi__steal_get_load(st, src, rb);
    int64_t now = (int64_t)dagger__now_ns();
    s->asking = false;
    if (n > 0) { /* the tasks follow as M_TASK: give them time to arrive before asking again */
        s->backoff[src] = BACKOFF_MIN_NS;
        s->next_ask[src] = now + BACKOFF_MIN_NS;
    } else {
        s->next_ask[src] = now + s->backoff[src];
        s->backoff[src] =
            s->backoff[src] * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : s->backoff[src] * 2;
        s->next_victim = (src + 1) % st->nranks;
    }
}

void mpi__steal_on_msg(struct mpi_state *st, int type, int src, struct rbuf *rb)
{
    if (type == M_STEAL)
        on_steal(st, src, rb);
    else
        on_reply(st, src, rb);
}

/* Whether a load moved enough to tell the other ranks: placement weighs a backlog only once
 * every worker is taken (src/sched/cost.c), so below that only the crossing counts. */
static bool load_moved(int64_t n0, double b0, int64_t n1, double b1, int threads)
{
    bool busy0 = n0 >= threads, busy1 = n1 >= threads;
    if (busy0 != busy1)
        return true;
    if (!busy1)
        return false;
    int64_t dn = n1 > n0 ? n1 - n0 : n0 - n1;
    return dn >= (threads + 1) / 2 || fabs(b1 - b0) > fmax(1e-3, 0.25 * b0);
}

/* A load beat: when this rank's load moved, tell every peer (M_BEAT carries the load), so that
 * their placement sees a busy rank without asking it (a steal round trip). */
static void tell_load(struct mpi_state *st, int64_t now)
{
    struct mpi_steal *s = st->steal;
    /* Once the job stops, nobody places any more: no message left in flight at the close. */
    if (now < s->next_load || atomic_load(&st->stopped) || atomic_load(&st->exit))
        return;
    s->next_load = now + LOAD_NS;
    int64_t n;
    double backlog;
    own_load(st, &n, &backlog);
    if (!load_moved(s->told_n, s->told_backlog, n, backlog, s->nthreads))
        return;
    s->told_n = n;
    s->told_backlog = backlog;
    for (int r = 0; r < st->nranks; r++) {
        if (r == st->rank || st->peers[r].lost)
            continue;
        struct wbuf b = {0};
        wb_u64(&b, M_BEAT);
        mpi__steal_put_load(st, &b);
        mpi__send(st, r, &b, false);
    }
}

int dagger__mpi_peer_load(const dagger_ctx_t *ctx, int rank, int *ntasks, double *backlog)
{
    struct mpi_state *st = dagger__ctx_ranks(ctx);
    DAGGER_CHECK(st && st->steal, DAGGER_EINVAL, "dagger__mpi_peer_load: the context has no ranks");
    DAGGER_CHECK(rank >= 0 && rank < st->nranks, DAGGER_EINVAL,
                 "dagger__mpi_peer_load: rank %d is not in 0..%d", rank, st->nranks - 1);
    struct mpi_steal *s = st->steal;
    pthread_mutex_lock(&s->lock);
    *ntasks = s->peers[rank].rep_ntasks;
    *backlog = s->peers[rank].rep_backlog;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

bool mpi__steal_poll(struct mpi_state *st, int64_t now)
{
    struct mpi_steal *s = st->steal;
    if (!s)
        return false;
    tell_load(st, now);
    int idle = dagger__ctx_idle_workers(st->ctx);
    bool did = false;
    /* A worker sleeps while tasks wait in the reserve (the tasks that run here may all wait on
     * reserved ones): hand it one, once that has lasted STARVE_NS (a worker being woken
     * counts as asleep for a moment, and the reserve is what other ranks steal from). */
    bool reserved = atomic_load_explicit(&s->nreserve, memory_order_relaxed) > 0;
    if (!(idle > 0 && reserved))
        s->starve_since = -1;
    else if (s->starve_since < 0)
        s->starve_since = now;
    if (s->starve_since >= 0 && now - s->starve_since >= STARVE_NS) {
        s->starve_since = now;
        struct placed *p = NULL;
        pthread_mutex_lock(&s->lock);
        if ((p = reserve_pop(s)) != NULL) {
            p->in_pool = true;
            s->running++;
        }
        pthread_mutex_unlock(&s->lock);
        if (p) {
            run_local(s, p);
            did = true;
        }
    }
    if (s->asking && now > s->ask_deadline)
        s->asking = false; /* no answer: that rank is slow or lost; ask another */
    if (s->asking || idle < s->nthreads || atomic_load(&st->stopped) || reserved)
        return did;
    for (int d = 0; d < st->nranks; d++) {
        int v = (s->next_victim + d) % st->nranks;
        if (v == st->rank || st->peers[v].lost || now < s->next_ask[v])
            continue;
        struct wbuf b = {0};
        wb_u64(&b, M_STEAL);
        wb_u64(&b, (uint64_t)s->nthreads);
        mpi__steal_put_load(st, &b);
        mpi__send(st, v, &b, false);
        s->asking = true;
        s->ask_deadline = now + ASK_TIMEOUT_NS;
        s->next_victim = (v + 1) % st->nranks;
        break;
    }
    return did;
}

void mpi__steal_link(struct mpi_state *st, int peer, size_t bytes, int64_t ns)
{
    struct mpi_steal *s = st->steal;
    if (!s || peer == st->rank)
        return;
    pthread_mutex_lock(&s->lock);
    dagger__cost_link_learn(&s->peers[peer].mine, bytes, (double)ns * 1e-9);
    pthread_mutex_unlock(&s->lock);
}

void mpi__steal_lost(struct mpi_state *st, int peer)
{
    if (st->steal)
        atomic_store(&st->steal->peers[peer].lost, true);
}
