/* src/trace/model.c - from a sorted event list to tasks, runs, edges, idle spans and totals.
 *
 * Design: one pass over the events in time order. A run opens at start or resume and closes
 * at block or finish (or at the end of the recording for a task still running). Tasks that
 * were spawned before the recording began still appear (unnamed) when later events name them.
 * The critical path is the longest chain of dependencies weighted by each task's run time,
 * found in topological order (Kahn).
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "dagger/chunk.h"
#include "trace/trace_int.h"

struct idmap {
    uint64_t *key;
    uint32_t *val;
    size_t cap;
};

static size_t hash_id(uint64_t id, size_t cap)
{
    return (size_t)((id * 11400714819323198485ull) >> 17) & (cap - 1);
}

/* Grow-by-doubling arrays. */
#define PUSH(arr, n, cap, item)                                                                    \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            size_t nc_ = (cap) ? (cap)*2 : 256;                                                    \
            void *na_ = realloc((arr), nc_ * sizeof *(arr));                                       \
            if (!na_)                                                                              \
                goto oom;                                                                          \
            (arr) = na_;                                                                           \
            (cap) = nc_;                                                                           \
        }                                                                                          \
        (arr)[(n)++] = (item);                                                                     \
    } while (0)

struct builder {
    struct dtr_model *m;
    struct idmap map;
    size_t task_cap;
};

/* The index of task `id`, created on first sight; -1 when out of memory. */
static int64_t task_of(struct builder *b, uint64_t id)
{
    struct dtr_model *m = b->m;
    if ((m->ntasks + 1) * 2 > b->map.cap) {
        size_t nc = b->map.cap ? b->map.cap * 2 : 1024;
        uint64_t *nk = malloc(nc * sizeof *nk);
        uint32_t *nv = malloc(nc * sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return -1;
        }
        for (size_t i = 0; i < nc; i++)
            nv[i] = UINT32_MAX;
        for (size_t i = 0; i < b->map.cap; i++)
            if (b->map.val[i] != UINT32_MAX) {
                size_t j = hash_id(b->map.key[i], nc);
                while (nv[j] != UINT32_MAX)
                    j = (j + 1) & (nc - 1);
                nk[j] = b->map.key[i];
                nv[j] = b->map.val[i];
            }
        free(b->map.key);
        free(b->map.val);
        b->map.key = nk;
        b->map.val = nv;
        b->map.cap = nc;
    }
    size_t j = hash_id(id, b->map.cap);
    while (b->map.val[j] != UINT32_MAX) {
        if (b->map.key[j] == id)
            return b->map.val[j];
        j = (j + 1) & (b->map.cap - 1);
    }
    if (m->ntasks == b->task_cap) {
        size_t nc = b->task_cap ? b->task_cap * 2 : 256;
        struct dtr_task *nt = realloc(m->tasks, nc * sizeof *nt);
        if (!nt)
            return -1;
        m->tasks = nt;
        b->task_cap = nc;
    }
    struct dtr_task *t = &m->tasks[m->ntasks];
    memset(t, 0, sizeof *t);
    t->id = id;
    t->name = t->err = DTR_NOSTR;
    t->spawn_thread = -1;
    t->t_spawn = t->t_ready = t->t_start = t->t_end = -1;
    t->open_run = -1;
    t->cp_prev = -1;
    b->map.key[j] = id;
    b->map.val[j] = (uint32_t)m->ntasks;
    return (int64_t)m->ntasks++;
}

static int edge_cmp(const void *a, const void *b)
{
    const struct dtr_edge *x = a, *y = b;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    return x->to < y->to ? -1 : x->to > y->to;
}

static const struct dtr_model *g_sort_model; /* qsort has no context argument */
static int fn_cmp(const void *a, const void *b)
{
    const struct dtr_fn *x = a, *y = b;
    if (x->total != y->total)
        return x->total > y->total ? -1 : 1;
    return strcmp(dagger__trace_str(g_sort_model, x->name),
                  dagger__trace_str(g_sort_model, y->name));
}

/* Durations are validated on load (0 <= ts <= DTR_TS_MAX), but a file may hold many of them:
 * sums saturate instead of overflowing. */
static int64_t sat_add(int64_t a, int64_t b)
{
    return b > 0 && a > INT64_MAX - b ? INT64_MAX : a + b;
}

static int critical_path(struct dtr_model *m)
{
    size_t n = m->ntasks;
    uint32_t *indeg = calloc(n + 1, sizeof *indeg);
    uint32_t *first = calloc(n + 1, sizeof *first);
    uint32_t *queue = malloc((n + 1) * sizeof *queue);
    int64_t *best = calloc(n + 1, sizeof *best);
    if (!indeg || !first || !queue || !best) {
        free(indeg);
        free(first);
        free(queue);
        free(best);
        return DAGGER_ENOMEM;
    }
    /* Edges are sorted by `from`: first[u] .. first[u+1] are u's out-edges. */
    for (size_t i = 0; i < m->nedges; i++) {
        indeg[m->edges[i].to]++;
        first[m->edges[i].from + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        first[i + 1] += first[i];
    size_t qh = 0, qt = 0;
    for (size_t i = 0; i < n; i++)
        if (!indeg[i])
            queue[qt++] = (uint32_t)i;
    m->cp_len = 0;
    m->cp_last = -1;
    while (qh < qt) {
        uint32_t u = queue[qh++];
        struct dtr_task *t = &m->tasks[u];
        t->cp = sat_add(best[u], t->work);
        if (t->cp > m->cp_len || m->cp_last < 0) {
            m->cp_len = t->cp;
            m->cp_last = u;
        }
        for (uint32_t k = first[u]; k < first[u + 1]; k++) {
            uint32_t v = m->edges[k].to;
            if (m->tasks[v].cp_prev < 0 || t->cp > best[v]) {
                best[v] = t->cp;
                m->tasks[v].cp_prev = u;
            }
            if (--indeg[v] == 0)
                queue[qt++] = v;
        }
    }
    free(indeg);
    free(first);
    free(queue);
    free(best);
    return 0;
}

int dagger__trace_model_build(struct dtr_model *m, const struct dtr_snap *s)
{
    memset(m, 0, sizeof *m);
    m->snap = s;
    struct builder b = {.m = m};
    size_t run_cap = 0, edge_cap = 0, park_cap = 0, steal_cap = 0, move_cap = 0;
    int maxthr = s->nthreads - 1;
    int64_t *park_open = NULL; /* per thread + 1 (external): start of an open park or -1 */
    size_t npark_open = 0;
    int64_t last = 0;

    for (size_t i = 0; i < s->nev; i++) {
        struct dtr_ev *e = &s->ev[i];
        int64_t ts = e->ts - s->t0;
        if (ts > last)
            last = ts;
        if (e->thread > maxthr)
            maxthr = e->thread;
        int64_t ti = -1;
        switch (e->kind) {
        case DTR_SPAWN:
        case DTR_READY:
        case DTR_START:
        case DTR_RESUME:
        case DTR_BLOCK:
        case DTR_FINISH:
        case DTR_ERROR:
            ti = task_of(&b, e->id);
            if (ti < 0)
                goto oom;
            break;
        default:
            break;
        }
        struct dtr_task *t = ti >= 0 ? &m->tasks[ti] : NULL;
        switch (e->kind) {
        case DTR_SPAWN:
            t->state |= DTR_ST_SPAWNED;
            t->name = (uint32_t)e->arg;
            t->t_spawn = ts;
            t->spawn_thread = e->thread;
            m->stats.spawned++;
            if (e->flags & DTR_F_READY) { /* ready as it was spawned */
                t->state |= DTR_ST_READY;
                if (t->t_ready < 0)
                    t->t_ready = ts;
            }
            break;
        case DTR_EDGE: {
            int64_t f = task_of(&b, e->id), to = task_of(&b, e->arg);
            if (f < 0 || to < 0)
                goto oom;
            struct dtr_edge ed = {(uint32_t)f, (uint32_t)to};
            PUSH(m->edges, m->nedges, edge_cap, ed);
            break;
        }
        case DTR_READY:
            t->state |= DTR_ST_READY;
            if (t->t_ready < 0)
                t->t_ready = ts;
            break;
        case DTR_START:
        case DTR_RESUME: {
            if (t->open_run >= 0)
                m->runs[t->open_run].t1 = ts;
            struct dtr_run r = {(uint32_t)ti, e->thread, ts, -1};
            PUSH(m->runs, m->nruns, run_cap, r);
            t->open_run = (int32_t)(m->nruns - 1);
            t->state |= DTR_ST_STARTED;
            if (t->t_start < 0)
                t->t_start = ts;
            break;
        }
        case DTR_BLOCK:
        case DTR_FINISH:
            if (t->open_run >= 0) {
                m->runs[t->open_run].t1 = ts;
                t->open_run = -1;
            }
            if (e->kind == DTR_BLOCK) {
                m->blocks++;
            } else {
                t->state |= DTR_ST_FINISHED;
                t->rc = e->aux;
                t->t_end = ts;
            }
            break;
        case DTR_ERROR:
            t->err = (uint32_t)e->arg;
            break;
        case DTR_STEAL:
            PUSH(m->steals, m->nsteals, steal_cap, e);
            break;
        case DTR_MOVE: {
            PUSH(m->moves, m->nmoves, move_cap, e);
            int from = e->aux & 0xff, to = (e->aux >> 8) & 0xff;
            dagger_trace_stats_t *st = &m->stats;
            st->moves++;
            st->moved_bytes = sat_add(st->moved_bytes, e->arg);
            if (from == DAGGER_SPACE_HOST && to == DAGGER_SPACE_DISK) {
                st->spills++;
                st->spilled_bytes = sat_add(st->spilled_bytes, e->arg);
            } else if (from == DAGGER_SPACE_DISK && to == DAGGER_SPACE_HOST) {
                st->reloads++;
                st->reloaded_bytes = sat_add(st->reloaded_bytes, e->arg);
            }
            break;
        }
        case DTR_PARK:
        case DTR_WAKE: {
            size_t k = (size_t)(e->thread + 1);
            if (k >= npark_open) {
                size_t nn = k + 16;
                int64_t *np = realloc(park_open, nn * sizeof *np);
                if (!np)
                    goto oom;
                for (size_t j = npark_open; j < nn; j++)
                    np[j] = -1;
                park_open = np;
                npark_open = nn;
            }
            if (e->kind == DTR_PARK) {
                if (park_open[k] < 0)
                    park_open[k] = ts;
            } else if (park_open[k] >= 0) {
                struct dtr_span sp = {e->thread, park_open[k], ts};
                PUSH(m->parks, m->nparks, park_cap, sp);
                park_open[k] = -1;
            }
            break;
        }
        default:
            break;
        }
    }
    m->wall = s->t1 - s->t0 > last ? s->t1 - s->t0 : last;
    for (size_t k = 0; k < npark_open; k++)
        if (park_open[k] >= 0) {
            struct dtr_span sp = {(int)k - 1, park_open[k], m->wall};
            PUSH(m->parks, m->nparks, park_cap, sp);
        }
    free(park_open);
    park_open = NULL;
    m->nthreads = maxthr + 1;

    for (size_t i = 0; i < m->nruns; i++) {
        struct dtr_run *r = &m->runs[i];
        if (r->t1 < 0)
            r->t1 = m->wall;
        if (r->thread < 0)
            m->has_external = 1;
        int64_t d = r->t1 - r->t0;
        m->tasks[r->task].work = sat_add(m->tasks[r->task].work, d);
        m->tasks[r->task].nruns++;
        m->busy = sat_add(m->busy, d);
    }

    /* One edge per (from, to), however many arguments carried it. */
    if (m->nedges) {
        if (m->nedges > 1)
            qsort(m->edges, m->nedges, sizeof *m->edges, edge_cmp);
        size_t k = 1;
        for (size_t i = 1; i < m->nedges; i++)
            if (edge_cmp(&m->edges[i], &m->edges[k - 1]) != 0)
                m->edges[k++] = m->edges[i];
        m->nedges = k;
    }

    /* Functions: one per distinct name (equal names share a string index). */
    {
        size_t nfn_cap = 0;
        int32_t *fn_of_str = malloc((s->nstr + 1) * sizeof *fn_of_str);
        if (!fn_of_str)
            goto oom;
        for (size_t i = 0; i <= s->nstr; i++)
            fn_of_str[i] = -1;
        for (size_t i = 0; i < m->ntasks; i++) {
            struct dtr_task *t = &m->tasks[i];
            size_t k = t->name == DTR_NOSTR || t->name >= s->nstr ? s->nstr : t->name;
            if (fn_of_str[k] < 0) {
                struct dtr_fn f = {k == s->nstr ? DTR_NOSTR : (uint32_t)k, 0, 0, 0, 0, 0};
                if (m->nfns == nfn_cap) {
                    size_t nc = nfn_cap ? nfn_cap * 2 : 16;
                    struct dtr_fn *nf = realloc(m->fns, nc * sizeof *nf);
                    if (!nf) {
                        free(fn_of_str);
                        goto oom;
                    }
                    m->fns = nf;
                    nfn_cap = nc;
                }
                m->fns[m->nfns] = f;
                fn_of_str[k] = (int32_t)m->nfns++;
            }
            struct dtr_fn *f = &m->fns[fn_of_str[k]];
            f->count++;
            f->runs += t->nruns;
            f->total = sat_add(f->total, t->work);
            if (t->work > f->max)
                f->max = t->work;
            if ((t->state & DTR_ST_FINISHED) && t->rc != 0)
                f->failed++;
        }
        /* Sort by total time and point the tasks at the new positions. */
        g_sort_model = m;
        if (m->nfns > 1)
            qsort(m->fns, m->nfns, sizeof *m->fns, fn_cmp);
        for (size_t j = 0; j < m->nfns; j++)
            fn_of_str[m->fns[j].name == DTR_NOSTR ? s->nstr : m->fns[j].name] = (int32_t)j;
        for (size_t i = 0; i < m->ntasks; i++) {
            struct dtr_task *t = &m->tasks[i];
            t->fn = fn_of_str[t->name == DTR_NOSTR || t->name >= s->nstr ? s->nstr : t->name];
        }
        free(fn_of_str);
    }

    if (critical_path(m))
        goto oom;

    dagger_trace_stats_t *st = &m->stats;
    st->events = s->nev;
    st->dropped = s->dropped;
    st->tasks = m->ntasks;
    st->runs = m->nruns;
    st->edges = m->nedges;
    st->steals = m->nsteals;
    st->parks = m->nparks;
    st->blocks = m->blocks;
    st->wall_ns = m->wall;
    st->busy_ns = m->busy;
    st->critical_path_ns = m->cp_len;
    st->threads = m->nthreads;
    for (size_t i = 0; i < m->ntasks; i++) {
        const struct dtr_task *t = &m->tasks[i];
        if (!(t->state & DTR_ST_FINISHED))
            continue;
        st->finished++;
        if (t->rc == DAGGER_ECANCELED)
            st->cancelled++;
        else if (t->rc != 0)
            st->failed++;
    }
    free(b.map.key);
    free(b.map.val);
    return 0;
oom:
    free(park_open);
    free(b.map.key);
    free(b.map.val);
    dagger__trace_model_free(m);
    return DAGGER_ENOMEM;
}

void dagger__trace_model_free(struct dtr_model *m)
{
    free(m->tasks);
    free(m->runs);
    free(m->edges);
    free(m->parks);
    free(m->steals);
    free(m->moves);
    free(m->fns);
    memset(m, 0, sizeof *m);
}

const char *dagger__trace_str(const struct dtr_model *m, uint32_t idx)
{
    if (idx == DTR_NOSTR || idx >= m->snap->nstr)
        return "(unnamed)";
    return m->snap->str[idx];
}

const char *dagger__trace_task_name(const struct dtr_model *m, const struct dtr_task *t)
{
    return dagger__trace_str(m, t->name);
}

/* ---------------------------------------------------------------- shared helpers */

const char *dagger__trace_err_name(int rc)
{
    switch (rc) {
    case 0:
        return "DAGGER_OK";
#define X_(name, value, text)                                                                      \
    case value:                                                                                    \
        return "DAGGER_" #name;
        DAGGER_ERROR_MAP(X_)
#undef X_
    default:
        return "error";
    }
}

const char *dagger__trace_fmt_dur(int64_t ns, char *buf)
{
    double v = (double)ns;
    if (ns < 0)
        snprintf(buf, 32, "-");
    else if (ns < 1000)
        snprintf(buf, 32, "%lld ns", (long long)ns);
    else if (ns < 1000000)
        snprintf(buf, 32, "%.2f us", v / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, 32, "%.2f ms", v / 1e6);
    else
        snprintf(buf, 32, "%.3f s", v / 1e9);
    return buf;
}

void dagger__trace_put_json(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

void dagger__trace_put_html(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

void dagger__trace_put_dot(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c >= 0x20)
            fputc(c, f);
    }
}
