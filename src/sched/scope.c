/* src/sched/scope.c - scope objects (any, worker, thread, union, intersection) and their
 * resolution to a set of processors.
 *
 * Scopes are small immutable trees, reference counted so a task can keep one. Resolution walks
 * the tree into a bit set of the local rank's threads; an empty set is reported with the
 * scope's readable form and the reason (a thread or rank that does not exist, or an empty
 * intersection).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
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
    dagger_scope_t *l, *r;
};

static dagger_scope_t any_scope = {0, S_ANY, 0, 0, 0, NULL, NULL};

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
    if (s && s != &any_scope)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void dagger_scope_release(dagger_scope_t *s)
{
    if (!s || s == &any_scope)
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
        dagger_proc_t p = {s->rank, (int16_t)s->pkind, (int16_t)s->thread};
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

/* Fill `out`; record in *bad the first nonexistent thread or rank met, for the message. */
static void resolve(const dagger_scope_t *s, int rank, int nranks, int n, dagger__procset *out,
                    char *bad, size_t cap)
{
    memset(out, 0, sizeof *out);
    switch (s->kind) {
    case S_ANY:
        for (int t = 0; t < n; t++)
            out->bits[t >> 6] |= 1ull << (t & 63);
        break;
    case S_WORKER:
        if (s->rank < 0 || s->rank >= nranks) {
            if (!bad[0])
                snprintf(bad, cap, "rank %d does not exist: the job has %d rank%s", s->rank, nranks,
                         nranks == 1 ? "" : "s");
        } else if (s->rank == rank) {
            for (int t = 0; t < n; t++)
                out->bits[t >> 6] |= 1ull << (t & 63);
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
        }
        break;
    case S_PROC:
        if (!bad[0] && s->pkind == DAGGER_PROC_AUX)
            snprintf(bad, cap, "aux threads are chosen by occupancy (< 1), not by scope");
        else if (!bad[0])
            snprintf(bad, cap, "device %d does not exist: this build has no device backend",
                     s->thread);
        break;
    case S_UNION:
    case S_INTERSECT: {
        dagger__procset r;
        resolve(s->l, rank, nranks, n, out, bad, cap);
        resolve(s->r, rank, nranks, n, &r, bad, cap);
        for (size_t i = 0; i < sizeof out->bits / sizeof out->bits[0]; i++)
            out->bits[i] = s->kind == S_UNION ? out->bits[i] | r.bits[i] : out->bits[i] & r.bits[i];
        break;
    }
    }
}

int dagger__scope_resolve(const dagger_scope_t *s, int rank, int nranks, int nthreads,
                          dagger__procset *out, char *why, size_t cap)
{
    char bad[160] = "";
    if (nthreads > DAGGER__MAX_THREADS)
        nthreads = DAGGER__MAX_THREADS;
    resolve(s ? s : &any_scope, rank, nranks, nthreads, out, bad, sizeof bad);
    int count = 0;
    for (size_t i = 0; i < sizeof out->bits / sizeof out->bits[0]; i++)
        count += __builtin_popcountll(out->bits[i]);
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
    for (int r = 0; r < nranks; r++)
        total += dagger__scope_resolve(s, r, nranks, nthreads, &set, why, cap);
    return total;
}
