/* src/trace/merge.c - one trace out of the traces of several ranks.
 *
 * Design: every rank records its own events (per-thread buffers, buffer.c); at close the other
 * ranks send theirs to rank 0 as .dtrace bytes (src/net/mpi/trace.c), and rank 0 merges them
 * here into one snapshot that every exporter reads as usual: each rank gets lanes for its
 * worker threads plus one for its threads outside the pool (the main thread, the MPI progress
 * thread), numbered one rank after the other, and lane_rank / lane_thread say whose lane is
 * which (the JSON exporter makes a process per rank of them). Task ids of rank r > 0 carry r
 * in their top 16 bits so that tasks of different ranks never merge; string indices are
 * shifted into one table; times move by the rank's clock offset onto rank 0's clock.
 * Invariants: the result is sorted by (ts, kind), like any snapshot.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

static bool has_str(const struct dtr_ev *e)
{
    return ((e->kind == DTR_SPAWN || e->kind == DTR_ERROR) && e->arg != DTR_NOSTR) ||
           (e->flags & DTR_F_STR);
}

static uint64_t tag(uint64_t id, int r)
{
    return id && r ? id | (uint64_t)r << DTR_RANK_SHIFT : id;
}

int dagger__trace_snap_merge(struct dtr_snap *out, struct dtr_snap *const *ranks,
                             const int64_t *offset_ns, int n)
{
    memset(out, 0, sizeof *out);
    size_t nev = 0, nstr = 0;
    int nlanes = 0;
    int *nthr = calloc((size_t)n, sizeof *nthr);
    if (!nthr)
        return DAGGER_ENOMEM;
    for (int r = 0; r < n; r++) {
        const struct dtr_snap *s = ranks[r];
        if (!s)
            continue;
        nthr[r] = s->nthreads > 0 ? s->nthreads : 0;
        for (size_t i = 0; i < s->nev; i++)
            if (s->ev[i].thread >= nthr[r])
                nthr[r] = s->ev[i].thread + 1;
        nlanes += nthr[r] + 1;
        nev += s->nev;
        nstr += s->nstr;
    }
    out->ev = malloc((nev ? nev : 1) * sizeof *out->ev);
    out->str = calloc(nstr ? nstr : 1, sizeof *out->str);
    out->lane_rank = malloc((size_t)(nlanes ? nlanes : 1) * sizeof(int));
    out->lane_thread = malloc((size_t)(nlanes ? nlanes : 1) * sizeof(int));
    if (!out->ev || !out->str || !out->lane_rank || !out->lane_thread)
        goto oom;
    out->nranks = n;
    out->nthreads = nlanes;
    bool first = true;
    int base = 0;
    for (int r = 0; r < n; r++) {
        const struct dtr_snap *s = ranks[r];
        if (!s)
            continue;
        int64_t off = offset_ns ? offset_ns[r] : 0;
        for (int k = 0; k <= nthr[r]; k++) {
            out->lane_rank[base + k] = r;
            out->lane_thread[base + k] = k < nthr[r] ? k : -1;
        }
        size_t sbase = out->nstr;
        for (size_t i = 0; i < s->nstr; i++) {
            if (!(out->str[out->nstr] = strdup(s->str[i])))
                goto oom;
            out->nstr++;
        }
        for (size_t i = 0; i < s->nev; i++) {
            struct dtr_ev e = s->ev[i];
            e.ts += off;
            e.thread = (int16_t)(base + (e.thread >= 0 ? e.thread : nthr[r]));
            bool str = has_str(&e);
            if (str)
                e.arg += sbase;
            e.id = tag(e.id, r);
            if ((e.kind == DTR_EDGE || e.kind == DTR_BLOCK) && !str)
                e.arg = tag(e.arg, r);
            out->ev[out->nev++] = e;
        }
        if (first || s->t0 + off < out->t0)
            out->t0 = s->t0 + off;
        if (first || s->t1 + off > out->t1)
            out->t1 = s->t1 + off;
        out->dropped += s->dropped;
        if (first && s->topo && !(out->topo = strdup(s->topo)))
            goto oom;
        first = false;
        base += nthr[r] + 1;
    }
    free(nthr);
    dagger__trace_snap_sort(out);
    return 0;
oom:
    free(nthr);
    dagger__trace_snap_free(out);
    return DAGGER_ENOMEM;
}
