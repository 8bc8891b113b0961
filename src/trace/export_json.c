/* src/trace/export_json.c - Chrome trace-event JSON, as read by Perfetto and chrome://tracing.
 *
 * Design: one track (tid) per worker thread, worker k being tid k + 1 and threads outside the
 * pool sharing tid 0 ("external"). Every run of a task is one complete ("X") event of category
 * "task" named by the task; parked intervals are "X" events of category "idle"; steals and
 * suspensions are instant events; every dependency whose two ends ran is a flow ("s" at the
 * end of the producer's last run, "f" binding to the consumer's first run). A counter track
 * shows ready and running tasks. Times are microseconds with nanosecond decimals.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "trace/trace.h"
#include "trace/trace_int.h"

struct delta {
    int64_t ts;
    int ready, running;
};

static int delta_cmp(const void *a, const void *b)
{
    const struct delta *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static int tid_of(int thread) { return thread >= 0 ? thread + 1 : 0; }

/* The process and track of a thread: pid 1 for one process; pid rank + 1 in a trace of several
 * ranks, whose lanes (merge.c) name the rank and its thread. */
static void put_track(FILE *f, const struct dtr_model *m, int thread)
{
    const struct dtr_snap *s = m->snap;
    if (s && s->nranks > 0 && thread >= 0 && thread < s->nthreads)
        fprintf(f, ",\"pid\":%d,\"tid\":%d", s->lane_rank[thread] + 1,
                tid_of(s->lane_thread[thread]));
    else
        fprintf(f, ",\"pid\":1,\"tid\":%d", tid_of(thread));
}

/* The ranks' processes and tracks (a trace of several ranks). */
static void put_rank_tracks(FILE *f, const struct dtr_model *m)
{
    const struct dtr_snap *s = m->snap;
    for (int r = 0; r < s->nranks; r++)
        fprintf(f,
                "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
                "\"args\":{\"name\":\"rank %d\"}},\n{\"name\":\"process_sort_index\",\"ph\":"
                "\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"sort_index\":%d}}",
                r ? ",\n" : "", r + 1, r, r + 1, r);
    for (int k = 0; k < s->nthreads; k++) {
        int t = s->lane_thread[k];
        fputs(",\n{\"name\":\"thread_name\",\"ph\":\"M\"", f);
        put_track(f, m, k);
        if (t >= 0)
            fprintf(f, ",\"args\":{\"name\":\"rank %d worker %d\"}}", s->lane_rank[k], t);
        else
            fprintf(f, ",\"args\":{\"name\":\"rank %d external\"}}", s->lane_rank[k]);
    }
}

/* A task id as the rank that made it knows it. */
static unsigned long long local_id(const struct dtr_model *m, uint64_t id)
{
    return m->snap && m->snap->nranks > 0 ? id & ((1ull << DTR_RANK_SHIFT) - 1) : id;
}

static void put_ts(FILE *f, const char *key, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    fprintf(f, ",\"%s\":%lld.%03lld", key, (long long)(ns / 1000), (long long)(ns % 1000));
}

int dagger__trace_export_json(const struct dtr_model *m, FILE *f)
{
    int64_t *first = malloc((m->ntasks + 1) * sizeof *first);
    int64_t *lastr = malloc((m->ntasks + 1) * sizeof *lastr);
    if (!first || !lastr) {
        free(first);
        free(lastr);
        return DAGGER_ENOMEM;
    }
    for (size_t i = 0; i < m->ntasks; i++)
        first[i] = lastr[i] = -1;
    for (size_t i = 0; i < m->nruns; i++) {
        uint32_t t = m->runs[i].task;
        if (first[t] < 0)
            first[t] = (int64_t)i;
        lastr[t] = (int64_t)i;
    }

    fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", f);
    bool ranks = m->snap && m->snap->nranks > 0;
    if (ranks)
        put_rank_tracks(f, m);
    else
        fputs("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
              "\"args\":{\"name\":\"dagger\"}}",
              f);
    for (int k = -1; k < m->nthreads && !ranks; k++) {
        if (k < 0 && !m->has_external)
            continue;
        if (k >= 0)
            fprintf(f,
                    ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
                    "\"args\":{\"name\":\"worker %d\"}}",
                    tid_of(k), k);
        else
            fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
                       "\"args\":{\"name\":\"external\"}}");
        fprintf(f,
                ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
                "\"args\":{\"sort_index\":%d}}",
                tid_of(k), k >= 0 ? k : m->nthreads);
    }

    for (size_t i = 0; i < m->nruns; i++) {
        const struct dtr_run *r = &m->runs[i];
        const struct dtr_task *t = &m->tasks[r->task];
        fputs(",\n{\"name\":\"", f);
        dagger__trace_put_json(f, dagger__trace_task_name(m, t));
        fputs("\",\"cat\":\"task\",\"ph\":\"X\"", f);
        put_track(f, m, r->thread);
        put_ts(f, "ts", r->t0);
        put_ts(f, "dur", r->t1 - r->t0);
        int failed = (t->state & DTR_ST_FINISHED) && t->rc != 0;
        if (failed)
            fputs(",\"cname\":\"terrible\"", f);
        fprintf(f, ",\"args\":{\"id\":%llu,\"thread\":%d,\"run\":%lld", local_id(m, t->id),
                ranks ? m->snap->lane_thread[r->thread] : r->thread,
                (long long)(i - (size_t)first[r->task]));
        if (ranks)
            fprintf(f, ",\"rank\":%d", m->snap->lane_rank[r->thread]);
        if (t->state & DTR_ST_FINISHED)
            fprintf(f, ",\"rc\":%d,\"status\":\"%s\"", t->rc, dagger__trace_err_name(t->rc));
        if (t->err != DTR_NOSTR) {
            fputs(",\"error\":\"", f);
            dagger__trace_put_json(f, dagger__trace_str(m, t->err));
            fputc('"', f);
        }
        fputs("}}", f);
    }

    for (size_t i = 0; i < m->nparks; i++) {
        const struct dtr_span *p = &m->parks[i];
        fputs(",\n{\"name\":\"parked\",\"cat\":\"idle\",\"ph\":\"X\"", f);
        put_track(f, m, p->thread);
        put_ts(f, "ts", p->t0);
        put_ts(f, "dur", p->t1 - p->t0);
        fputs(",\"cname\":\"grey\"}", f);
    }

    for (size_t i = 0; i < m->nsteals; i++) {
        const struct dtr_ev *e = m->steals[i];
        fputs(",\n{\"name\":\"steal\",\"cat\":\"steal\",\"ph\":\"i\",\"s\":\"t\"", f);
        put_track(f, m, e->thread);
        put_ts(f, "ts", e->ts - m->snap->t0);
        fprintf(f, ",\"args\":{\"task\":%llu,\"victim\":%d}}", (unsigned long long)e->id, e->aux);
    }

    static const char *const space[] = {"host", "device", "disk"};
    for (size_t i = 0; i < m->nmoves; i++) {
        const struct dtr_ev *e = m->moves[i];
        int from = e->aux & 0xff, to = (e->aux >> 8) & 0xff;
        fputs(",\n{\"name\":\"move\",\"cat\":\"data\",\"ph\":\"i\",\"s\":\"t\"", f);
        put_track(f, m, e->thread);
        put_ts(f, "ts", e->ts - m->snap->t0);
        fprintf(f, ",\"args\":{\"chunk\":%llu,\"bytes\":%llu,\"from\":\"%s\",\"to\":\"%s\"}}",
                (unsigned long long)e->id, (unsigned long long)e->arg,
                from < 3 ? space[from] : "other", to < 3 ? space[to] : "other");
    }

    for (size_t i = 0; i < m->snap->nev; i++) {
        const struct dtr_ev *e = &m->snap->ev[i];
        if (e->kind != DTR_BLOCK)
            continue;
        fputs(",\n{\"name\":\"blocked\",\"cat\":\"block\",\"ph\":\"i\",\"s\":\"t\"", f);
        put_track(f, m, e->thread);
        put_ts(f, "ts", e->ts - m->snap->t0);
        fprintf(f, ",\"args\":{\"task\":%llu,\"on\":%llu}}", local_id(m, e->id),
                local_id(m, e->arg));
    }

    /* Moves between ranks: instants on the track of the thread that logged them (the MPI
     * progress thread: the rank's external track). */
    static const char *const rank_ops[] = {"task sent",       "task received", "result sent",
                                           "result received", "data sent",     "data received"};
    for (size_t i = 0; i < m->snap->nev; i++) {
        const struct dtr_ev *e = &m->snap->ev[i];
        if (e->kind != DTR_RANK)
            continue;
        int op = e->aux >> 16, peer = e->aux & 0xffff;
        bool out = op % 2 == 0;
        fprintf(f, ",\n{\"name\":\"%s %s rank %d\",\"cat\":\"rank\",\"ph\":\"i\",\"s\":\"t\"",
                op >= 0 && op < 6 ? rank_ops[op] : "move", out ? "to" : "from", peer);
        put_track(f, m, e->thread);
        put_ts(f, "ts", e->ts - m->snap->t0);
        fprintf(f, ",\"args\":{\"%s\":%llu,\"peer\":%d,\"bytes\":%llu",
                op >= 4 ? "payload" : "task", local_id(m, e->id), peer, (unsigned long long)e->arg);
        if (ranks && e->thread >= 0 && e->thread < m->snap->nthreads)
            fprintf(f, ",\"rank\":%d", m->snap->lane_rank[e->thread]);
        fputs("}}", f);
    }

    /* Device streams (process 2): one track per stream, named when first used. */
    static const char *const ops[] = {"h2d", "d2h", "d2d", "evict", "writeback"};
    static const char *const streams[] = {"copy-in", "copy-out"};
    uint64_t seen[8] = {0};                     /* 512 tracks: 64 devices x 8 streams */
    int dpid = ranks ? m->snap->nranks + 1 : 2; /* after the ranks' processes */
    int named = 0;
    for (size_t i = 0; i < m->snap->nev; i++) {
        const struct dtr_ev *e = &m->snap->ev[i];
        if (e->kind != DTR_DEVICE)
            continue;
        int track = e->aux >> 8, op = e->aux & 0xff;
        if (track < 0 || track >= 512)
            continue;
        if (!named++)
            fprintf(f,
                    ",\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
                    "\"args\":{\"name\":\"devices\"}}",
                    dpid);
        if (!(seen[track / 64] >> (track % 64) & 1)) {
            seen[track / 64] |= 1ull << (track % 64);
            fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,", dpid,
                    track + 1);
            if (track % 8 < 2)
                fprintf(f, "\"args\":{\"name\":\"device(%d) %s\"}}", track / 8, streams[track % 8]);
            else
                fprintf(f, "\"args\":{\"name\":\"device(%d) compute %d\"}}", track / 8,
                        track % 8 - 2);
        }
        if (op == DAGGER__TRACE_DEV_TASK_BEGIN || op == DAGGER__TRACE_DEV_TASK_END) {
            fprintf(f,
                    ",\n{\"name\":\"task %llu\",\"cat\":\"device\",\"ph\":\"%s\",\"pid\":%d,"
                    "\"tid\":%d",
                    (unsigned long long)e->id, op == DAGGER__TRACE_DEV_TASK_BEGIN ? "B" : "E", dpid,
                    track + 1);
            put_ts(f, "ts", e->ts - m->snap->t0);
            fputc('}', f);
            continue;
        }
        fprintf(f,
                ",\n{\"name\":\"%s\",\"cat\":\"copy\",\"ph\":\"i\",\"s\":\"t\",\"pid\":%d,"
                "\"tid\":%d",
                op < 5 ? ops[op] : "device", dpid, track + 1);
        put_ts(f, "ts", e->ts - m->snap->t0);
        fprintf(f, ",\"args\":{\"chunk\":%llu,\"bytes\":%llu}}", (unsigned long long)e->id,
                (unsigned long long)e->arg);
    }

    /* The counter track: tasks ready (not yet started) and running, one sample per change. */
    size_t nd = 0;
    struct delta *d = malloc((2 * m->nruns + 2 * m->ntasks + 1) * sizeof *d);
    if (!d) {
        free(first);
        free(lastr);
        return DAGGER_ENOMEM;
    }
    for (size_t i = 0; i < m->nruns; i++) {
        d[nd++] = (struct delta){m->runs[i].t0, 0, 1};
        d[nd++] = (struct delta){m->runs[i].t1, 0, -1};
    }
    for (size_t i = 0; i < m->ntasks; i++) {
        const struct dtr_task *t = &m->tasks[i];
        int64_t until = t->t_start >= 0 ? t->t_start : t->t_end >= 0 ? t->t_end : m->wall;
        if (t->t_ready < 0)
            continue;
        d[nd++] = (struct delta){t->t_ready, 1, 0};
        d[nd++] = (struct delta){until, -1, 0};
    }
    if (nd > 1)
        qsort(d, nd, sizeof *d, delta_cmp);
    int64_t ready = 0, running = 0;
    for (size_t i = 0; i < nd; i++) {
        ready += d[i].ready;
        running += d[i].running;
        if (i + 1 < nd && d[i + 1].ts == d[i].ts)
            continue;
        fputs(",\n{\"name\":\"tasks\",\"ph\":\"C\",\"pid\":1,\"tid\":0", f);
        put_ts(f, "ts", d[i].ts);
        fprintf(f, ",\"args\":{\"ready\":%lld,\"running\":%lld}}", (long long)ready,
                (long long)running);
    }
    free(d);

    uint64_t flows = 0;
    for (size_t i = 0; i < m->nedges; i++) {
        const struct dtr_edge *ed = &m->edges[i];
        if (first[ed->to] < 0 || lastr[ed->from] < 0)
            continue;
        const struct dtr_run *a = &m->runs[lastr[ed->from]], *b = &m->runs[first[ed->to]];
        int64_t sts = a->t1 - a->t0 >= 2 ? a->t1 - 1 : a->t0;
        flows++;
        fprintf(f, ",\n{\"name\":\"dep\",\"cat\":\"dep\",\"ph\":\"s\",\"id\":%llu",
                (unsigned long long)flows);
        put_track(f, m, a->thread);
        put_ts(f, "ts", sts);
        fprintf(f, ",\"args\":{\"from\":%llu,\"to\":%llu}}",
                (unsigned long long)m->tasks[ed->from].id, (unsigned long long)m->tasks[ed->to].id);
        fprintf(f, ",\n{\"name\":\"dep\",\"cat\":\"dep\",\"ph\":\"f\",\"bp\":\"e\",\"id\":%llu",
                (unsigned long long)flows);
        put_track(f, m, b->thread);
        put_ts(f, "ts", b->t0);
        fprintf(f, ",\"args\":{\"from\":%llu,\"to\":%llu}}",
                (unsigned long long)m->tasks[ed->from].id, (unsigned long long)m->tasks[ed->to].id);
    }

    const dagger_trace_stats_t *st = &m->stats;
    fprintf(f,
            "\n],\"otherData\":{\"producer\":\"dagger\",\"threads\":%d,\"tasks\":%llu,"
            "\"runs\":%llu,\"edges\":%llu,\"flows\":%llu,\"failed\":%llu,\"cancelled\":%llu,"
            "\"dropped_events\":%llu,\"wall_ns\":%lld,\"busy_ns\":%lld,"
            "\"critical_path_ns\":%lld,\"ranks\":%d",
            m->nthreads, (unsigned long long)st->tasks, (unsigned long long)st->runs,
            (unsigned long long)st->edges, (unsigned long long)flows,
            (unsigned long long)st->failed, (unsigned long long)st->cancelled,
            (unsigned long long)st->dropped, (long long)m->wall, (long long)m->busy,
            (long long)m->cp_len, ranks ? m->snap->nranks : 1);
    if (m->snap && m->snap->topo) {
        fputs(",\"topology\":\"", f);
        dagger__trace_put_json(f, m->snap->topo);
        fputc('"', f);
    }
    fputs("}}\n", f);
    free(first);
    free(lastr);
    return ferror(f) ? DAGGER_EIO : 0;
}
