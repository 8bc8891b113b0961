/* src/sched/scope.c - scope objects (any, worker, thread, gpu, union, intersection) and their
 * resolution to a set of processors.
 *
 * Scopes are small immutable trees, reference counted so a task can keep one. Resolution walks
 * the tree into a bit set of the local rank's threads and devices; an empty set is reported
 * with the scope's readable form and the reason (a thread, rank or device that does not exist,
 * or an empty intersection).
 * Processors: worker threads (rank, thread) and devices (rank, backend kind, index among that
 * kind, index among all devices). GPUs are opt-in: `any` and worker scopes admit threads only; a
 * device scope (S_PROC of kind DAGGER_PROC_DEVICE) admits devices of its rank (-1: every rank).
 * Comparison (equal, subset) is over every possible processor, not the ones present here.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "sched/sched.h"

enum kind { S_ANY, S_WORKER, S_THREAD, S_WORKER_THREAD, S_UNION, S_INTERSECT, S_PROC };

struct dagger_scope {
    _Atomic uint32_t refs; /* 0 for the static `any` scope: never freed */
    enum kind kind;
    int rank, thread;
    int pkind; /* S_PROC: the dagger_proc_kind_t */
    int gkind; /* S_PROC of devices: the backend kind (DAGGER_GPU_*) */
    dagger_scope_t *l, *r;
};

static dagger_scope_t any_scope = {0, S_ANY, 0, 0, 0, 0, NULL, NULL};
/* What dagger_task_opts_init puts in opts.scope: "never set", read as any at spawn (a NULL
 * scope there is a failed constructor and fails the task). */
static dagger_scope_t unset_scope = {0, S_ANY, 0, 0, 0, 0, NULL, NULL};

static bool is_static(const dagger_scope_t *s) { return s == &any_scope || s == &unset_scope; }

const dagger_scope_t *dagger__scope_unset(void) { return &unset_scope; }

static dagger_scope_t *make(enum kind k, int rank, int thread, const dagger_scope_t *l,
                            const dagger_scope_t *r)
{
    dagger_scope_t *s = dagger__malloc(sizeof *s);
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->kind = k;
    s->rank = rank;
    s->thread = thread;
    s->pkind = 0;
    s->gkind = 0;
    s->l = l ? dagger_scope_retain((dagger_scope_t *)l) : NULL;
    s->r = r ? dagger_scope_retain((dagger_scope_t *)r) : NULL;
    return s;
}

dagger_scope_t *dagger_scope_any(void) { return &any_scope; }
dagger_scope_t *dagger_scope_thread(int t) { return make(S_THREAD, 0, t, NULL, NULL); }
dagger_scope_t *dagger_scope_worker(int rank) { return make(S_WORKER, rank, 0, NULL, NULL); }
dagger_scope_t *dagger_scope_worker_thread(int rank, int t)
{
    return make(S_WORKER_THREAD, rank, t, NULL, NULL);
}

/* A CPU processor is a worker or thread scope; the others (aux threads, devices) are S_PROC,
 * with the index in `thread`, which no processor of this build satisfies. */
dagger_scope_t *dagger_scope_processor(const dagger_proc_t *p)
{
    if (!p)
        return NULL;
    if (p->kind == DAGGER_PROC_CPU)
        return p->index < 0 ? dagger_scope_worker(p->rank)
                            : dagger_scope_worker_thread(p->rank, p->index);
    dagger_scope_t *s = make(S_PROC, p->rank, p->index, NULL, NULL);
    if (s)
        s->pkind = p->kind;
    return s;
}

/* Devices of `kind` (DAGGER_GPU_ANY: `index` counts all devices) on rank `rank` (-1: any). */
static dagger_scope_t *gpu_on(int rank, int kind, int index)
{
    dagger_scope_t *s = make(S_PROC, rank, index < 0 ? -1 : index, NULL, NULL);
    if (s) {
        s->pkind = DAGGER_PROC_DEVICE;
        s->gkind = kind;
    }
    return s;
}

dagger_scope_t *dagger_scope_gpu(int kind, int index) { return gpu_on(-1, kind, index); }

dagger_scope_t *dagger_scope_union(const dagger_scope_t *a, const dagger_scope_t *b)
{
    if (!a || !b)
        return NULL;
    return make(S_UNION, 0, 0, a, b);
}

dagger_scope_t *dagger_scope_intersect(const dagger_scope_t *a, const dagger_scope_t *b)
{
    if (!a || !b)
        return NULL;
    return make(S_INTERSECT, 0, 0, a, b);
}

dagger_scope_t *dagger_scope_retain(dagger_scope_t *s)
{
    if (s && !is_static(s))
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void dagger_scope_release(dagger_scope_t *s)
{
    if (!s || is_static(s))
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        dagger_scope_release(s->l);
        dagger_scope_release(s->r);
        dagger__free(s);
    }
}

int dagger_scope_format(const dagger_scope_t *s, char *buf, size_t cap)
{
    if (!buf)
        cap = 0;
    if (!s)
        return snprintf(buf, cap, "(null)");
    switch (s->kind) {
    case S_ANY:
        return snprintf(buf, cap, "any");
    case S_WORKER:
        return snprintf(buf, cap, "worker(%d)", s->rank);
    case S_THREAD:
        return snprintf(buf, cap, "thread(%d)", s->thread);
    case S_WORKER_THREAD:
        return snprintf(buf, cap, "worker(%d).thread(%d)", s->rank, s->thread);
    case S_PROC: {
        if (s->pkind == DAGGER_PROC_DEVICE && (s->gkind || s->thread < 0)) {
            const char *kn = dagger_gpu_kind_name(s->gkind);
            char on[24] = "";
            if (s->rank >= 0)
                snprintf(on, sizeof on, "worker(%d).", s->rank);
            if (s->thread < 0)
                return snprintf(buf, cap, "%sgpu(%s, all)", on, kn);
            return snprintf(buf, cap, "%sgpu(%s, %d)", on, kn, s->thread);
        }
        dagger_proc_t p = {s->rank, (int16_t)s->pkind, (int16_t)s->thread};
        if (s->pkind == DAGGER_PROC_DEVICE && s->rank > 0) { /* a device of another rank */
            int n = snprintf(buf, cap, "worker(%d).", s->rank);
            return n + dagger_proc_format(&p, (size_t)n < cap ? buf + n : NULL,
                                          (size_t)n < cap ? cap - (size_t)n : 0);
        }
        return dagger_proc_format(&p, buf, cap);
    }
    case S_UNION:
    case S_INTERSECT: {
        const char *name = s->kind == S_UNION ? "union(" : "intersect(";
        int n = snprintf(buf, cap, "%s", name);
        size_t used = (size_t)n;
        n = dagger_scope_format(s->l, used < cap ? buf + used : NULL, used < cap ? cap - used : 0);
        used += (size_t)n;
        n = snprintf(used < cap ? buf + used : NULL, used < cap ? cap - used : 0, ", ");
        used += (size_t)n;
        n = dagger_scope_format(s->r, used < cap ? buf + used : NULL, used < cap ? cap - used : 0);
        used += (size_t)n;
        n = snprintf(used < cap ? buf + used : NULL, used < cap ? cap - used : 0, ")");
        return (int)(used + (size_t)n);
    }
    }
    return 0;
}

int dagger__scope_is_any(const dagger_scope_t *s) { return !s || s->kind == S_ANY; }

/* Threads 0..n-1 into the empty set `out`, a word at a time. Returns n. */
static int fill_threads(dagger__procset *out, int n)
{
    int w = 0;
    for (; w < n >> 6; w++)
        out->bits[w] = ~0ull;
    if (n & 63)
        out->bits[w] = (1ull << (n & 63)) - 1;
    return n;
}

/* Fill `out`; record in *bad the first nonexistent thread or rank met, for the message.
 * Returns the number of threads in `out` (devices not counted). */
static int resolve(const dagger_scope_t *s, int rank, int nranks, int n, dagger__procset *out,
                   char *bad, size_t cap)
{
    memset(out, 0, sizeof *out);
    switch (s->kind) {
    case S_ANY:
        return fill_threads(out, n);
    case S_WORKER:
        if (s->rank < 0 || s->rank >= nranks) {
            if (!bad[0])
                snprintf(bad, cap, "rank %d does not exist: the job has %d rank%s", s->rank, nranks,
                         nranks == 1 ? "" : "s");
        } else if (s->rank == rank) {
            return fill_threads(out, n);
        }
        break;
    case S_THREAD:
    case S_WORKER_THREAD:
        if (s->kind == S_WORKER_THREAD && (s->rank < 0 || s->rank >= nranks)) {
            if (!bad[0])
                snprintf(bad, cap, "rank %d does not exist: the job has %d rank%s", s->rank, nranks,
                         nranks == 1 ? "" : "s");
        } else if (s->thread < 0 || s->thread >= n) {
            if (!bad[0])
                snprintf(bad, cap, "thread %d does not exist: the context has %d thread%s (0..%d)",
                         s->thread, n, n == 1 ? "" : "s", n - 1);
        } else if (s->kind == S_THREAD || s->rank == rank) {
            out->bits[s->thread >> 6] |= 1ull << (s->thread & 63);
            return 1;
        }
        break;
    case S_PROC: {
        const struct dagger__sched_devices *d = dagger__sched_devices_get();
        char why[160];
        why[0] = '\0';
        if (s->pkind == DAGGER_PROC_AUX)
            snprintf(why, sizeof why, "aux threads are chosen by occupancy (< 1), not by scope");
        else if (s->rank >= nranks)
            snprintf(why, sizeof why, "rank %d does not exist: the job has %d rank%s", s->rank,
                     nranks, nranks == 1 ? "" : "s");
        else if (s->rank >= 0 && s->rank != rank)
            break; /* the devices of another rank */
        else if (!d && s->thread >= 0)
            snprintf(why, sizeof why, "device %d does not exist: this build has no device backend",
                     s->thread);
        else if (!d)
            snprintf(why, sizeof why,
                     "no device of kind %s was found: this build has no device backend",
                     dagger_gpu_kind_name(s->gkind));
        else
            d->match(s->gkind, s->thread, &out->dev, why, sizeof why);
        if (!bad[0] && why[0])
            snprintf(bad, cap, "%s", why);
        break;
    }
    case S_UNION:
    case S_INTERSECT: {
        dagger__procset r;
        resolve(s->l, rank, nranks, n, out, bad, cap);
        resolve(s->r, rank, nranks, n, &r, bad, cap);
        for (size_t i = 0; i < sizeof out->bits / sizeof out->bits[0]; i++)
            out->bits[i] = s->kind == S_UNION ? out->bits[i] | r.bits[i] : out->bits[i] & r.bits[i];
        out->dev = s->kind == S_UNION ? out->dev | r.dev : out->dev & r.dev;
        return dagger__procset_threads(out);
    }
    }
    return 0;
}

int dagger__scope_resolve(const dagger_scope_t *s, int rank, int nranks, int nthreads,
                          dagger__procset *out, char *why, size_t cap)
{
    char bad[160];
    bad[0] = '\0'; /* written only when a part of the scope does not exist */
    if (nthreads > DAGGER__MAX_THREADS)
        nthreads = DAGGER__MAX_THREADS;
    int count = resolve(s ? s : &any_scope, rank, nranks, nthreads, out, bad, sizeof bad);
    if (out->dev)
        count += dagger__popcount64(out->dev);
    if (count == 0 && why && cap) {
        char form[256];
        dagger_scope_format(s, form, sizeof form);
        if (bad[0])
            snprintf(why, cap, "no processor satisfies the scope %s: %s", form, bad);
        else
            snprintf(why, cap, "no processor satisfies the scope %s: the intersection is empty",
                     form);
    }
    return count;
}

int dagger__scope_check(const dagger_scope_t *s, int nranks, int nthreads, char *why, size_t cap)
{
    int total = 0;
    dagger__procset set;
    for (int r = 0; r < nranks; r++) /* most scopes leave some rank empty: no message then */
        total += dagger__scope_resolve(s, r, nranks, nthreads, &set, NULL, 0);
    for (int r = 0; total == 0 && r < nranks; r++) /* the message of a refusal */
        dagger__scope_resolve(s, r, nranks, nthreads, &set, why, cap);
    return total;
}

/* ---------------------------------------------------------------- n-ary, comparison, listing */

static dagger_scope_t *fold(enum kind k, const dagger_scope_t *const *v, size_t n)
{
    if (!v || n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!v[i])
            return NULL;
    dagger_scope_t *acc = dagger_scope_retain((dagger_scope_t *)v[0]);
    for (size_t i = 1; i < n && acc; i++) {
        dagger_scope_t *next = make(k, 0, 0, acc, v[i]);
        dagger_scope_release(acc);
        acc = next;
    }
    return acc;
}

dagger_scope_t *dagger_scope_union_n(const dagger_scope_t *const *s, size_t n)
{
    return fold(S_UNION, s, n);
}

dagger_scope_t *dagger_scope_intersect_n(const dagger_scope_t *const *s, size_t n)
{
    return fold(S_INTERSECT, s, n);
}

/* A device: its rank, backend kind, index among that kind and among all devices. */
struct devpt {
    int rank, kind, kidx, gidx;
};

static bool admits_dev(const dagger_scope_t *s, const struct devpt *d)
{
    switch (s->kind) {
    case S_UNION:
        return admits_dev(s->l, d) || admits_dev(s->r, d);
    case S_INTERSECT:
        return admits_dev(s->l, d) && admits_dev(s->r, d);
    case S_PROC:
        if (s->pkind != DAGGER_PROC_DEVICE || (s->rank >= 0 && s->rank != d->rank))
            return false;
        if (s->gkind == DAGGER_GPU_ANY)
            return s->thread < 0 || s->thread == d->gidx;
        return s->gkind == d->kind && (s->thread < 0 || s->thread == d->kidx);
    default: /* any, worker and thread scopes admit worker threads only */
        return false;
    }
}

static bool admits(const dagger_scope_t *s, int rank, int thread)
{
    switch (s->kind) {
    case S_ANY:
        return true;
    case S_WORKER:
        return rank == s->rank;
    case S_THREAD:
        return thread == s->thread;
    case S_WORKER_THREAD:
        return rank == s->rank && thread == s->thread;
    case S_UNION:
        return admits(s->l, rank, thread) || admits(s->r, rank, thread);
    case S_INTERSECT:
        return admits(s->l, rank, thread) && admits(s->r, rank, thread);
    case S_PROC: /* aux threads and devices: no worker thread */
        return false;
    }
    return false;
}

/* The ranks and threads a scope names. A scope only compares processors with these numbers,
 * so every other number behaves like one more, fresh number: checking the named ones plus one
 * fresh rank and thread decides equality and inclusion over all processors. */
struct named {
    int *v;
    size_t n, cap;
    bool oom;
};

static void name_add(struct named *x, int v)
{
    for (size_t i = 0; i < x->n; i++)
        if (x->v[i] == v)
            return;
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 16;
        int *p = dagger__realloc(x->v, cap * sizeof *p);
        if (!p) {
            x->oom = true;
            return;
        }
        x->v = p;
        x->cap = cap;
    }
    x->v[x->n++] = v;
}

/* The numbers a scope names: ranks, threads, device kinds, device indices among a kind and
 * among all devices. */
struct names {
    struct named ranks, threads, kinds, kidx, gidx;
};

static void collect(const dagger_scope_t *s, struct names *x)
{
    if (s->kind == S_WORKER || s->kind == S_WORKER_THREAD)
        name_add(&x->ranks, s->rank);
    if (s->kind == S_THREAD || s->kind == S_WORKER_THREAD)
        name_add(&x->threads, s->thread);
    if (s->kind == S_PROC && s->pkind == DAGGER_PROC_DEVICE) {
        if (s->rank >= 0)
            name_add(&x->ranks, s->rank);
        if (s->gkind != DAGGER_GPU_ANY)
            name_add(&x->kinds, s->gkind);
        if (s->thread >= 0)
            name_add(s->gkind == DAGGER_GPU_ANY ? &x->gidx : &x->kidx, s->thread);
    }
    if (s->l)
        collect(s->l, x);
    if (s->r)
        collect(s->r, x);
}

static void add_fresh(struct named *x)
{
    int m = 0; /* fresh numbers are >= 1: a device kind 0 would be DAGGER_GPU_ANY */
    for (size_t i = 0; i < x->n; i++)
        m = x->v[i] > m ? x->v[i] : m;
    name_add(x, m + 1);
}

/* want_equal: a and b admit the same processors; else: every processor of a is one of b. */
static bool compare(const dagger_scope_t *a, const dagger_scope_t *b, bool want_equal)
{
    if (!a || !b)
        return false;
    struct names x = {0};
    collect(a, &x);
    collect(b, &x);
    struct named *all[] = {&x.ranks, &x.threads, &x.kinds, &x.kidx, &x.gidx};
    bool ok = true;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        add_fresh(all[i]);
        ok &= !all[i]->oom;
    }
    for (size_t i = 0; ok && i < x.ranks.n; i++) {
        for (size_t j = 0; ok && j < x.threads.n; j++) {
            bool in_a = admits(a, x.ranks.v[i], x.threads.v[j]);
            bool in_b = admits(b, x.ranks.v[i], x.threads.v[j]);
            ok = want_equal ? in_a == in_b : !in_a || in_b;
        }
        /* Devices: every combination of the named numbers (a real machine ties an index
         * among all devices to its kind and index in that kind; that is not assumed here,
         * so scopes equal only through that tie compare unequal). */
        for (size_t k = 0; ok && k < x.kinds.n; k++)
            for (size_t m = 0; ok && m < x.kidx.n; m++)
                for (size_t g = 0; ok && g < x.gidx.n; g++) {
                    struct devpt d = {x.ranks.v[i], x.kinds.v[k], x.kidx.v[m], x.gidx.v[g]};
                    bool in_a = admits_dev(a, &d), in_b = admits_dev(b, &d);
                    ok = want_equal ? in_a == in_b : !in_a || in_b;
                }
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        dagger__free(all[i]->v);
    return ok;
}

bool dagger_scope_equal(const dagger_scope_t *a, const dagger_scope_t *b)
{
    return compare(a, b, true);
}

bool dagger_scope_subset(const dagger_scope_t *a, const dagger_scope_t *b)
{
    return compare(a, b, false);
}

int dagger_scope_list(const dagger_scope_t *s, const dagger_ctx_t *ctx, dagger_proc_t *out,
                      size_t cap)
{
    DAGGER_CHECK(s && ctx, DAGGER_EINVAL, "dagger_scope_list: %s is NULL",
                 s ? "the context" : "the scope");
    DAGGER_CHECK(out || cap == 0, DAGGER_EINVAL, "dagger_scope_list: out is NULL, cap %zu", cap);
    int nthreads = dagger_ctx_num_threads(ctx);
    int nranks = dagger_ctx_nranks(ctx), me = dagger_ctx_rank(ctx);
    int count = 0;
    /* Every rank runs as many threads as this one; only this rank's devices are known here. */
    for (int r = 0; r < nranks; r++) {
        dagger__procset set;
        dagger__scope_resolve(s, r, nranks, nthreads, &set, NULL, 0);
        for (int t = 0; t < nthreads && t < DAGGER__MAX_THREADS; t++) {
            if (!dagger__procset_has(&set, t))
                continue;
            if ((size_t)count < cap)
                out[count] = (dagger_proc_t){r, DAGGER_PROC_CPU, (int16_t)t};
            count++;
        }
        for (int d = 0; d < 64 && r == me; d++) {
            if (!((set.dev >> d) & 1))
                continue;
            if ((size_t)count < cap)
                out[count] = (dagger_proc_t){r, DAGGER_PROC_DEVICE, (int16_t)d};
            count++;
        }
    }
    return count;
}

int dagger_scope_num_processors(const dagger_scope_t *s, const dagger_ctx_t *ctx)
{
    return dagger_scope_list(s, ctx, NULL, 0);
}

/* ---------------------------------------------------------------- from a string */

enum { K_WORKER, K_THREAD, K_WORKERS, K_THREADS, K_GPU, K_N };
static const char *const key_names[K_N] = {"worker", "thread", "workers", "threads", "gpu"};

/* Parse a non-negative number of `len` bytes at `p`. */
static int parse_num(const char *p, size_t len, const char *spec, int *out)
{
    char buf[24];
    DAGGER_CHECK(len > 0 && len < sizeof buf, DAGGER_EINVAL,
                 "dagger_scope_from_string: \"%s\": '%.*s' is not a number", spec, (int)len, p);
    memcpy(buf, p, len);
    buf[len] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    DAGGER_CHECK(*end == '\0' && v >= 0 && v <= 1 << 20, DAGGER_EINVAL,
                 "dagger_scope_from_string: \"%s\": '%s' is not a number in 0..%d", spec, buf,
                 1 << 20);
    *out = (int)v;
    return 0;
}

/* `acc` (NULL: nothing yet) united with `one` (NULL: out of memory), both consumed; NULL when
 * out of memory. The parsers of lists build their scopes with it. */
static dagger_scope_t *unite(dagger_scope_t *acc, dagger_scope_t *one)
{
    if (!acc || !one) {
        dagger_scope_release(acc);
        return one;
    }
    dagger_scope_t *u = dagger_scope_union(acc, one);
    dagger_scope_release(acc);
    dagger_scope_release(one);
    return u;
}

/* The union of `mk(v)` for each number of a list "[a,b,...]" or a single number. */
static int parse_set(const char *p, size_t len, bool list, bool is_rank, const char *spec,
                     dagger_scope_t **out)
{
    *out = NULL;
    if (list) {
        DAGGER_CHECK(len >= 2 && p[0] == '[' && p[len - 1] == ']', DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": '%.*s' is not a list like [0,1]", spec,
                     (int)len, p);
        p++;
        len -= 2;
    }
    dagger_scope_t *acc = NULL;
    while (true) {
        const char *comma = memchr(p, ',', len);
        size_t n = comma ? (size_t)(comma - p) : len;
        int v = 0;
        int rc = parse_num(p, n, spec, &v);
        if (rc) {
            dagger_scope_release(acc);
            return rc;
        }
        acc = unite(acc, is_rank ? dagger_scope_worker(v) : dagger_scope_thread(v));
        DAGGER_CHECK(acc, DAGGER_ENOMEM, "dagger_scope_from_string: out of memory");
        if (!comma)
            break;
        len -= n + 1;
        p = comma + 1;
    }
    *out = acc;
    return 0;
}

/* One GPU item: "any", a kind ("opencl": all its devices), "kind:index" ("any:2": device 2 of
 * all); the union over `ranks` (none: every rank). */
static int parse_gpu_item(const char *p, size_t len, const int *ranks, int nranks, const char *spec,
                          dagger_scope_t **out)
{
    *out = NULL;
    const char *colon = memchr(p, ':', len);
    size_t klen = colon ? (size_t)(colon - p) : len;
    int kind = -1;
    for (int k = DAGGER_GPU_ANY; k <= DAGGER_GPU_FAKE && kind < 0; k++) {
        const char *name = dagger_gpu_kind_name(k);
        if (strlen(name) == klen && memcmp(p, name, klen) == 0)
            kind = k;
    }
    DAGGER_CHECK(kind >= 0, DAGGER_EINVAL,
                 "dagger_scope_from_string: \"%s\": '%.*s' is not a GPU kind (known: any, opencl, "
                 "cuda, fake; as gpu=KIND or gpu=KIND:INDEX)",
                 spec, (int)klen, p);
    int index = -1;
    if (colon) {
        int rc = parse_num(colon + 1, len - klen - 1, spec, &index);
        if (rc)
            return rc;
    }
    dagger_scope_t *acc = nranks ? NULL : gpu_on(-1, kind, index);
    for (int i = 0; i < nranks; i++) {
        acc = unite(acc, gpu_on(ranks[i], kind, index));
        if (!acc)
            break;
    }
    DAGGER_CHECK(acc, DAGGER_ENOMEM, "dagger_scope_from_string: out of memory");
    *out = acc;
    return 0;
}

/* gpu=ITEM or gpu=[ITEM,...], on the ranks of worker= / workers= when given. */
static int parse_gpu(const char *p, size_t len, const char *rv, size_t rlen, bool rlist,
                     const char *spec, dagger_scope_t **out)
{
    *out = NULL;
    int ranks[64], nranks = 0;
    if (rv) {
        if (rlist) {
            DAGGER_CHECK(rlen >= 2 && rv[0] == '[' && rv[rlen - 1] == ']', DAGGER_EINVAL,
                         "dagger_scope_from_string: \"%s\": '%.*s' is not a list like [0,1]", spec,
                         (int)rlen, rv);
            rv++;
            rlen -= 2;
        }
        while (true) {
            const char *comma = memchr(rv, ',', rlen);
            size_t n = comma ? (size_t)(comma - rv) : rlen;
            DAGGER_CHECK(nranks < 64, DAGGER_EINVAL,
                         "dagger_scope_from_string: \"%s\": more than 64 workers with a gpu key",
                         spec);
            int rc = parse_num(rv, n, spec, &ranks[nranks++]);
            if (rc)
                return rc;
            if (!comma)
                break;
            rlen -= n + 1;
            rv = comma + 1;
        }
    }
    bool list = len > 0 && p[0] == '[';
    if (list) {
        DAGGER_CHECK(len >= 2 && p[len - 1] == ']', DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": '%.*s' is not a list like "
                     "[opencl:0,cuda:1]",
                     spec, (int)len, p);
        p++;
        len -= 2;
    }
    dagger_scope_t *acc = NULL;
    while (true) {
        const char *comma = memchr(p, ',', len);
        size_t n = comma ? (size_t)(comma - p) : len;
        dagger_scope_t *one;
        int rc = parse_gpu_item(p, n, ranks, nranks, spec, &one);
        if (rc) {
            dagger_scope_release(acc);
            return rc;
        }
        acc = unite(acc, one);
        DAGGER_CHECK(acc, DAGGER_ENOMEM, "dagger_scope_from_string: out of memory");
        if (!comma)
            break;
        len -= n + 1;
        p = comma + 1;
    }
    *out = acc;
    return 0;
}

int dagger_scope_from_string(const char *spec, dagger_scope_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_scope_from_string: out is NULL");
    *out = NULL;
    DAGGER_CHECK(spec, DAGGER_EINVAL, "dagger_scope_from_string: the string is NULL");
    if (strcmp(spec, "any") == 0 || strcmp(spec, "default") == 0) {
        *out = dagger_scope_any();
        return 0;
    }
    const char *val[K_N] = {0};
    size_t vlen[K_N] = {0};
    const char *p = spec;
    DAGGER_CHECK(*p, DAGGER_EINVAL,
                 "dagger_scope_from_string: the string is empty (use \"any\" for any processor)");
    while (*p) {
        const char *eq = strchr(p, '=');
        const char *comma = strchr(p, ',');
        DAGGER_CHECK(eq && (!comma || eq < comma), DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": '%.*s' is not key=value", spec,
                     comma ? (int)(comma - p) : (int)strlen(p), p);
        size_t klen = (size_t)(eq - p);
        int k = 0;
        while (k < K_N && !(strlen(key_names[k]) == klen && memcmp(p, key_names[k], klen) == 0))
            k++;
        DAGGER_CHECK(k < K_N, DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": unknown key '%.*s' (known: worker, thread, "
                     "workers, threads, gpu)",
                     spec, (int)klen, p);
        DAGGER_CHECK(!val[k], DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": key '%s' given twice", spec, key_names[k]);
        const char *v = eq + 1, *e = v;
        if (*v == '[') { /* a list: up to its closing bracket */
            e = strchr(v, ']');
            DAGGER_CHECK(e, DAGGER_EINVAL, "dagger_scope_from_string: \"%s\": '[' without ']'",
                         spec);
            e++;
        } else {
            while (*e && *e != ',')
                e++;
        }
        val[k] = v;
        vlen[k] = (size_t)(e - v);
        DAGGER_CHECK(*e == '\0' || *e == ',', DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": unexpected text after '%.*s'", spec,
                     (int)vlen[k], v);
        p = *e ? e + 1 : e;
        DAGGER_CHECK(*e == '\0' || *p, DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": a trailing comma", spec);
    }
    DAGGER_CHECK(!(val[K_WORKER] && val[K_WORKERS]), DAGGER_EINVAL,
                 "dagger_scope_from_string: \"%s\": keys 'worker' and 'workers' conflict", spec);
    DAGGER_CHECK(!(val[K_THREAD] && val[K_THREADS]), DAGGER_EINVAL,
                 "dagger_scope_from_string: \"%s\": keys 'thread' and 'threads' conflict", spec);
    int rk = val[K_WORKER] ? K_WORKER : K_WORKERS, tk = val[K_THREAD] ? K_THREAD : K_THREADS;
    if (val[K_GPU]) { /* devices (of the given workers): a device is not a worker thread */
        DAGGER_CHECK(!val[tk], DAGGER_EINVAL,
                     "dagger_scope_from_string: \"%s\": keys '%s' and 'gpu' conflict (a device "
                     "is not a worker thread)",
                     spec, key_names[tk]);
        return parse_gpu(val[K_GPU], vlen[K_GPU], val[rk], vlen[rk], rk == K_WORKERS, spec, out);
    }
    dagger_scope_t *r = NULL, *t = NULL;
    int rc = 0;
    if (val[K_WORKER] && val[K_THREAD]) { /* the exact processor, formatted as such */
        int rank = 0, thread = 0;
        rc = parse_num(val[rk], vlen[rk], spec, &rank);
        if (!rc)
            rc = parse_num(val[tk], vlen[tk], spec, &thread);
        if (rc)
            return rc;
        *out = dagger_scope_worker_thread(rank, thread);
        DAGGER_CHECK(*out, DAGGER_ENOMEM, "dagger_scope_from_string: out of memory");
        return 0;
    }
    if (val[rk])
        rc = parse_set(val[rk], vlen[rk], rk == K_WORKERS, true, spec, &r);
    if (!rc && val[tk])
        rc = parse_set(val[tk], vlen[tk], tk == K_THREADS, false, spec, &t);
    if (rc) {
        dagger_scope_release(r);
        dagger_scope_release(t);
        return rc;
    }
    if (r && t) {
        *out = dagger_scope_intersect(r, t);
        dagger_scope_release(r);
        dagger_scope_release(t);
        DAGGER_CHECK(*out, DAGGER_ENOMEM, "dagger_scope_from_string: out of memory");
    } else {
        *out = r ? r : t;
    }
    return 0;
}
