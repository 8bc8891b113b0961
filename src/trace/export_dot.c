/* src/trace/export_dot.c - the DAG as a Graphviz digraph: one node per task, one edge per
 * dependency.
 *
 * A node is labelled "name #id" and its run time; its colour tells the state: green finished,
 * red failed (a lighter red when it failed because an input failed), grey cancelled, white
 * never finished. Edges on the critical path are drawn thick.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>

#include "trace/trace_int.h"

int dagger__trace_export_dot(const struct dtr_model *m, FILE *f)
{
    char a[32];
    unsigned char *oncp = calloc(m->ntasks + 1, 1);
    if (!oncp)
        return DAGGER_ENOMEM;
    for (int64_t i = m->cp_last; i >= 0; i = m->tasks[i].cp_prev) {
        if (oncp[i])
            break;
        oncp[i] = 1;
    }
    fprintf(f,
            "digraph dagger {\n"
            "  graph [rankdir=TB, fontname=\"Helvetica\", labelloc=t, "
            "label=\"dagger: %llu tasks, %llu edges, critical path %s\"];\n"
            "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", "
            "fontsize=10, color=\"#4a5568\", fillcolor=\"#ffffff\"];\n"
            "  edge [color=\"#718096\", arrowsize=0.6];\n",
            (unsigned long long)m->stats.tasks, (unsigned long long)m->stats.edges,
            dagger__trace_fmt_dur(m->cp_len, a));
    for (size_t i = 0; i < m->ntasks; i++) {
        const struct dtr_task *t = &m->tasks[i];
        const char *fill = "#ffffff", *border = "#4a5568", *style = "rounded,filled";
        const char *state = "";
        if (t->state & DTR_ST_FINISHED) {
            if (t->rc == 0) {
                fill = "#c6f6d5";
                border = "#2f855a";
            } else if (t->rc == DAGGER_ECANCELED) {
                fill = "#e2e8f0";
                style = "rounded,filled,dashed";
                state = "cancelled";
            } else if (t->rc == DAGGER_EUPSTREAM) {
                fill = "#feb2b2";
                border = "#e53e3e";
                state = "failed (input)";
            } else {
                fill = "#f56565";
                border = "#9b2c2c";
                state = "FAILED";
            }
        } else {
            style = "rounded,dashed";
            state = t->state & DTR_ST_STARTED ? "running" : "not run";
        }
        fprintf(f, "  t%llu [label=\"", (unsigned long long)t->id);
        dagger__trace_put_dot(f, dagger__trace_task_name(m, t));
        fprintf(f, " #%llu\\n%s", (unsigned long long)t->id,
                t->nruns ? dagger__trace_fmt_dur(t->work, a) : "-");
        if (*state) {
            fprintf(f, "\\n%s", state);
            if (t->rc && t->rc != DAGGER_ECANCELED && (t->state & DTR_ST_FINISHED))
                fprintf(f, " %s", dagger__trace_err_name(t->rc));
        }
        fprintf(f, "\", style=\"%s\", fillcolor=\"%s\", color=\"%s\"%s", style, fill, border,
                oncp[i] ? ", penwidth=2" : "");
        if (t->err != DTR_NOSTR) {
            fputs(", tooltip=\"", f);
            dagger__trace_put_dot(f, dagger__trace_str(m, t->err));
            fputc('"', f);
        }
        fputs("];\n", f);
    }
    for (size_t i = 0; i < m->nedges; i++) {
        const struct dtr_edge *e = &m->edges[i];
        int cp = oncp[e->to] && m->tasks[e->to].cp_prev == (int64_t)e->from;
        fprintf(f, "  t%llu -> t%llu%s;\n", (unsigned long long)m->tasks[e->from].id,
                (unsigned long long)m->tasks[e->to].id,
                cp ? " [penwidth=2.5, color=\"#dd6b20\"]" : "");
    }
    fputs("}\n", f);
    free(oncp);
    return ferror(f) ? DAGGER_EIO : 0;
}
