/* src/trace/trace_int.h - inside the trace layer: events, snapshots, the model, exporters.
 *
 * Design: the hooks of trace.h append fixed-size events to per-thread buffers (buffer.c).
 * A writer takes a snapshot (all events, names turned into a string table), builds a model
 * (tasks, runs, edges, idle spans; model.c) and hands it to one exporter per format.
 * A .dtrace file is a snapshot on disk (dtrace.c), so the dagger-trace tool runs the very same
 * exporters on a saved trace.
 * Invariants: snapshot events are sorted by (ts, kind); string index DTR_NOSTR means "none".
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_TRACE_INT_H
#define DAGGER_SRC_TRACE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dagger.h"
#include "dagger/trace.h"

/* Event kinds; the order is the tie-break of equal timestamps. Only ever grows at the end
 * (the values are stored in .dtrace files). */
enum dtr_kind {
    DTR_SPAWN = 1, /* id, arg = name, thread = spawning thread */
    DTR_EDGE,      /* id = from, arg = to */
    DTR_READY,     /* id */
    DTR_START,     /* id, thread */
    DTR_RESUME,    /* id, thread */
    DTR_BLOCK,     /* id, thread, arg = task waited on (0: group or stream) */
    DTR_FINISH,    /* id, thread, aux = rc */
    DTR_ERROR,     /* id, arg = message */
    DTR_STEAL,     /* id, thread = thief, aux = victim */
    DTR_PARK,      /* thread */
    DTR_WAKE,      /* thread */
    DTR_MOVE,      /* id = chunk, arg = bytes, aux = from space kind | to space kind << 8 */
    DTR_DEVICE,    /* id = chunk or task, arg = bytes, aux = track << 8 | op (trace.h) */
    DTR_RANK,      /* id = task or payload, arg = bytes, aux = peer rank | op << 16 (trace.h) */
    DTR_KIND_END_
};

/* One event: 32 bytes. In a live buffer a string argument is a pointer; in a snapshot it is an
 * index into the string table. */
struct dtr_ev {
    int64_t ts;   /* CLOCK_MONOTONIC ns */
    uint64_t id;  /* task id */
    uint64_t arg; /* see dtr_kind */
    int32_t aux;  /* rc, victim */
    int16_t thread;
    uint8_t kind;
    uint8_t flags; /* DTR_F_* */
};
/* arg is a string; a spawn that is also ready; (live buffers only) a start whose ts is the
 * thread's previous stamp, fixed by the snapshot (never in a snapshot or a .dtrace file) */
enum { DTR_F_STR = 1, DTR_F_READY = 2, DTR_F_INFER = 4 };
#define DTR_NOSTR UINT32_MAX

struct dtr_snap {
    struct dtr_ev *ev;
    size_t nev;
    char **str; /* owned strings */
    size_t nstr;
    int nthreads; /* worker threads of the context (0 = unknown) */
    int64_t t0;   /* start of recording */
    int64_t t1;   /* end of recording */
    uint64_t dropped;
    char *topo; /* owned, may be NULL: workers, binding, machine (not kept in .dtrace files) */
    /* A trace of several ranks (merge.c; not kept in .dtrace files): lane k of `thread` is
     * thread lane_thread[k] (-1: outside the pool) of rank lane_rank[k]; task ids of rank r > 0
     * carry r in their top 16 bits. nranks 0: one process, `thread` as in trace.h. */
    int nranks;
    int *lane_rank, *lane_thread; /* owned */
};

void dagger__trace_snap_free(struct dtr_snap *s);
/* A deep copy of `src` into `dst`. Returns 0 or DAGGER_ENOMEM (then `dst` holds nothing). */
int dagger__trace_snap_copy(struct dtr_snap *dst, const struct dtr_snap *src);
/* The live trace of `ctx` as a snapshot. Returns 0, DAGGER_ESTATE or DAGGER_ENOMEM. */
int dagger__trace_snap_take(void *ctx, struct dtr_snap *out);
/* .dtrace on disk. */
int dagger__trace_snap_save(const struct dtr_snap *s, FILE *f);
int dagger__trace_snap_load(struct dtr_snap *s, FILE *f);
/* Why the calling thread's last dagger__trace_snap_load refused its file ("" if it did not). */
const char *dagger__trace_load_why(void);
/* The largest time a .dtrace file may hold (ns, 2^62). */
#define DTR_TS_MAX ((int64_t)1 << 62)
/* Sort events by (ts, kind). */
void dagger__trace_snap_sort(struct dtr_snap *s);
/* Merge the snapshots of ranks 0..n-1 (a NULL one is left out) into `out`, shifting rank r's
 * times by offset_ns[r] (its clock to rank 0's). Consumes nothing. Returns 0 or ENOMEM. */
int dagger__trace_snap_merge(struct dtr_snap *out, struct dtr_snap *const *ranks,
                             const int64_t *offset_ns, int n);
#define DTR_RANK_SHIFT 48

/* Buffers (buffer.c): begin a recording of at most `max_events` (returns its generation),
 * count its dropped events, copy its events into a snapshot, free buffers of exited threads. */
uint32_t dagger__trace_buf_begin(uint64_t max_events);
uint64_t dagger__trace_buf_dropped(uint32_t gen);
int dagger__trace_buf_collect(uint32_t gen, struct dtr_snap *s);
void dagger__trace_buf_trim(void);
/* The clock of every event, raw (TSC ticks or ns), and its conversion to CLOCK_MONOTONIC ns. */
int64_t dagger__trace_now(void);
int64_t dagger__trace_to_ns(int64_t raw);

/* ---------------------------------------------------------------- model */

enum { DTR_ST_SPAWNED = 1, DTR_ST_READY = 2, DTR_ST_STARTED = 4, DTR_ST_FINISHED = 8 };

struct dtr_task {
    uint64_t id;
    uint32_t name; /* string index or DTR_NOSTR */
    uint32_t err;  /* error message string index or DTR_NOSTR */
    int32_t fn;    /* index in model.fns */
    int32_t rc;
    unsigned state; /* DTR_ST_* */
    int spawn_thread;
    int64_t t_spawn, t_ready, t_start, t_end; /* relative to t0; -1 unknown */
    int64_t work;                             /* sum of its runs */
    int32_t open_run;                         /* while building */
    uint32_t nruns;
    int64_t cp;      /* critical path ending with this task */
    int64_t cp_prev; /* predecessor on it, or -1 */
};

struct dtr_run {
    uint32_t task;
    int thread;
    int64_t t0, t1; /* relative to the trace start */
};

struct dtr_span { /* parked interval */
    int thread;
    int64_t t0, t1;
};

struct dtr_edge {
    uint32_t from, to; /* task indices */
};

struct dtr_fn {
    uint32_t name; /* string index or DTR_NOSTR */
    uint64_t count, runs, failed;
    int64_t total, max;
};

struct dtr_model {
    const struct dtr_snap *snap;
    struct dtr_task *tasks;
    size_t ntasks;
    struct dtr_run *runs; /* sorted by start time */
    size_t nruns;
    struct dtr_edge *edges;
    size_t nedges;
    struct dtr_span *parks;
    size_t nparks;
    struct dtr_ev **steals; /* borrowed from the snapshot */
    size_t nsteals;
    struct dtr_ev **moves; /* borrowed from the snapshot */
    size_t nmoves;
    struct dtr_fn *fns; /* sorted by total time, descending */
    size_t nfns;
    int nthreads;     /* worker tracks 0..nthreads-1 */
    int has_external; /* some run on thread -1 */
    int64_t wall;     /* t1 - t0 (at least the last event) */
    int64_t busy;
    int64_t cp_len;
    int64_t cp_last; /* task index ending the critical path, or -1 */
    uint64_t blocks;
    dagger_trace_stats_t stats;
};

int dagger__trace_model_build(struct dtr_model *m, const struct dtr_snap *s);
void dagger__trace_model_free(struct dtr_model *m);
/* The task's display name ("task 12" when unnamed), its label "name #id". */
const char *dagger__trace_task_name(const struct dtr_model *m, const struct dtr_task *t);
const char *dagger__trace_str(const struct dtr_model *m, uint32_t idx);

/* ---------------------------------------------------------------- exporters */

int dagger__trace_export_json(const struct dtr_model *m, FILE *f);
int dagger__trace_export_dot(const struct dtr_model *m, FILE *f);
int dagger__trace_export_html(const struct dtr_model *m, FILE *f);
int dagger__trace_export_text(const struct dtr_model *m, FILE *f);

/* Write the snapshot to `path` in the format of its extension. */
int dagger__trace_write_snap(const struct dtr_snap *s, const char *path);

/* Helpers shared by the exporters. */
const char *dagger__trace_err_name(int rc);
/* A duration as "12.3 ms" into buf (>= 32 bytes). */
const char *dagger__trace_fmt_dur(int64_t ns, char *buf);
/* Write `s` escaped for JSON strings, HTML text/attributes or DOT strings. */
void dagger__trace_put_json(FILE *f, const char *s);
void dagger__trace_put_html(FILE *f, const char *s);
void dagger__trace_put_dot(FILE *f, const char *s);

#endif /* DAGGER_SRC_TRACE_INT_H */
