/* src/trace/export_text.c - the text "Execution Summary" of a trace (like Dagger.jl's).
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

#define MAX_ERRORS 20
#define MAX_CP_SHOWN 6

static size_t cp_count(const struct dtr_model *m)
{
    size_t n = 0;
    for (int64_t i = m->cp_last; i >= 0 && n <= m->ntasks; i = m->tasks[i].cp_prev)
        n++;
    return n;
}

int dagger__trace_export_text(const struct dtr_model *m, FILE *f)
{
    char a[32], b[32], c[32];
    const dagger_trace_stats_t *st = &m->stats;
    int lanes = m->nthreads > 0 ? m->nthreads : 1;
    double util = m->wall > 0 ? 100.0 * (double)m->busy / ((double)m->wall * lanes) : 0.0;
    size_t ncp = cp_count(m);

    fprintf(f, "Execution Summary (dagger trace)\n");
    fprintf(f, "  wall time      %-12s threads %d   tasks %llu (%llu runs, %llu edges)\n",
            dagger__trace_fmt_dur(m->wall, a), m->nthreads, (unsigned long long)st->tasks,
            (unsigned long long)st->runs, (unsigned long long)st->edges);
    if (m->snap && m->snap->topo)
        fprintf(f, "  machine        %s\n", m->snap->topo);
    fprintf(f, "  busy time      %-12s utilisation %.1f %%\n", dagger__trace_fmt_dur(m->busy, a),
            util);
    fprintf(f, "  critical path  %-12s %zu tasks; parallelism %.2f (busy / critical path)\n",
            dagger__trace_fmt_dur(m->cp_len, a), ncp,
            m->cp_len > 0 ? (double)m->busy / (double)m->cp_len : 0.0);
    fprintf(f,
            "  failed %llu  cancelled %llu  steals %llu  parks %llu  blocks %llu  events %llu"
            "  dropped %llu\n",
            (unsigned long long)st->failed, (unsigned long long)st->cancelled,
            (unsigned long long)st->steals, (unsigned long long)st->parks,
            (unsigned long long)st->blocks, (unsigned long long)st->events,
            (unsigned long long)st->dropped);
    if (st->moves)
        fprintf(f,
                "  data moves %llu (%llu bytes): spills %llu (%llu bytes), reloads %llu (%llu "
                "bytes)\n",
                (unsigned long long)st->moves, (unsigned long long)st->moved_bytes,
                (unsigned long long)st->spills, (unsigned long long)st->spilled_bytes,
                (unsigned long long)st->reloads, (unsigned long long)st->reloaded_bytes);
    if (st->dropped)
        fprintf(f, "  warning: %llu events were dropped (raise DAGGER_TRACE_LIMIT)\n",
                (unsigned long long)st->dropped);

    if (m->nfns) {
        fprintf(f, "\n  %-28s %8s %8s %12s %12s %12s %7s\n", "function", "count", "runs", "total",
                "mean", "max", "failed");
        for (size_t i = 0; i < m->nfns; i++) {
            const struct dtr_fn *fn = &m->fns[i];
            const char *name = dagger__trace_str(m, fn->name);
            fprintf(f, "  %-28.28s %8llu %8llu %12s %12s %12s %7llu\n", name,
                    (unsigned long long)fn->count, (unsigned long long)fn->runs,
                    dagger__trace_fmt_dur(fn->total, a),
                    dagger__trace_fmt_dur(fn->count ? fn->total / (int64_t)fn->count : 0, b),
                    dagger__trace_fmt_dur(fn->max, c), (unsigned long long)fn->failed);
        }
    }

    int64_t *chain = ncp ? malloc(ncp * sizeof *chain) : NULL;
    if (chain) {
        size_t n = ncp;
        for (int64_t i = m->cp_last; i >= 0 && n > 0; i = m->tasks[i].cp_prev)
            chain[--n] = i;
        fprintf(f, "\n  critical path: ");
        for (size_t j = 0; j < ncp; j++) {
            if (ncp > 2 * MAX_CP_SHOWN && j == MAX_CP_SHOWN) {
                fprintf(f, "... (%zu more) -> ", ncp - 2 * MAX_CP_SHOWN);
                j = ncp - MAX_CP_SHOWN;
            }
            const struct dtr_task *t = &m->tasks[chain[j]];
            fprintf(f, "%s #%llu (%s)%s", dagger__trace_task_name(m, t), (unsigned long long)t->id,
                    dagger__trace_fmt_dur(t->work, a), j + 1 < ncp ? " -> " : "\n");
        }
        free(chain);
    }

    size_t nerr = 0;
    for (size_t i = 0; i < m->ntasks; i++) {
        const struct dtr_task *t = &m->tasks[i];
        if (!(t->state & DTR_ST_FINISHED) || t->rc == 0)
            continue;
        if (nerr == 0)
            fprintf(f, "\n  errors:\n");
        if (nerr++ < MAX_ERRORS)
            fprintf(f, "    task %llu '%s': %s%s%s\n", (unsigned long long)t->id,
                    dagger__trace_task_name(m, t), dagger__trace_err_name(t->rc),
                    t->err != DTR_NOSTR ? ": " : "",
                    t->err != DTR_NOSTR ? dagger__trace_str(m, t->err) : "");
    }
    if (nerr > MAX_ERRORS)
        fprintf(f, "    ... and %zu more\n", nerr - MAX_ERRORS);
    return ferror(f) ? DAGGER_EIO : 0;
}
