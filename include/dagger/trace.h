/* include/dagger/trace.h - record what the runtime did and write it as a trace or a report.
 *
 * Tracing is off by default and then costs one predictable branch per event. Turn it on with
 * the environment (DAGGER_TRACE=path: recorded from dagger_ctx_open, written at
 * dagger_ctx_close, the format chosen by the extension) or in code with dagger_trace_start /
 * dagger_trace_stop / dagger_trace_write. One trace is recorded at a time in a process; it is
 * keyed by the context that started it. Formats by extension: .json (Chrome trace events, opens
 * in Perfetto), .dot (Graphviz DAG), .html (self-contained report), .txt (text summary),
 * .dtrace (dagger's binary trace, converted later by the dagger-trace tool).
 * See docs/trace.md.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TRACE_H
#define DAGGER_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include "dagger.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options of dagger_trace_start_opts; initialise with dagger_trace_opts_init. Only ever grows
 *  at the end. */
typedef struct dagger_trace_opts {
    /* Events kept at most (8 to 40 bytes each, about 13 for a task's); later events are
     * counted as dropped. 0 = DAGGER_TRACE_LIMIT from the environment, or 8M events. */
    uint64_t max_events;
    unsigned flags; /* reserved, 0 */
} dagger_trace_opts_t;

/** Counts of a recorded trace (see dagger_trace_stats). Only ever grows at the end. */
typedef struct dagger_trace_stats {
    uint64_t events;    /* events kept */
    uint64_t dropped;   /* events lost to the limit */
    uint64_t tasks;     /* distinct tasks seen */
    uint64_t spawned;   /* spawn events */
    uint64_t runs;      /* execution spans (a task suspended and resumed has several) */
    uint64_t finished;  /* tasks that ended, successfully or not */
    uint64_t failed;    /* ended with an error other than DAGGER_ECANCELED */
    uint64_t cancelled; /* ended with DAGGER_ECANCELED */
    uint64_t edges;     /* dependency edges */
    uint64_t steals;
    uint64_t parks;
    uint64_t blocks;          /* suspensions of a running task */
    int64_t wall_ns;          /* from start to stop (or to now while recording) */
    int64_t busy_ns;          /* sum of all span lengths */
    int64_t critical_path_ns; /* longest dependency chain, weighted by run time */
    int threads;              /* worker tracks (not counting the external one) */
    uint64_t moves;           /* chunk copies between memory spaces (staging, spill, reload) */
    uint64_t moved_bytes;
    uint64_t spills; /* host -> disk copies (out-of-core) */
    uint64_t spilled_bytes;
    uint64_t reloads; /* disk -> host copies (a spilled chunk or a file loaded) */
    uint64_t reloaded_bytes;
} dagger_trace_stats_t;

/** Fill `o` with the defaults. Thread safety: any thread. */
DAGGER_API void dagger_trace_opts_init(dagger_trace_opts_t *o);

/** Start recording the events of `ctx`, dropping any earlier recording.
 *  Returns: 0 (also when `ctx` is already recording), DAGGER_EINVAL for NULL, DAGGER_EBUSY when
 *  another context is recording. Ownership: borrows `ctx` (a key; never dereferenced).
 *  Thread safety: any thread; not concurrent with stop/write of the same trace. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_start(dagger_ctx_t *ctx);
/** dagger_trace_start with options (`o` may be NULL for the defaults). Returns: as
 *  dagger_trace_start. Ownership: borrows `o`. Thread safety: as dagger_trace_start. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_start_opts(dagger_ctx_t *ctx,
                                                        const dagger_trace_opts_t *o);
/** Stop recording; the events stay available to write, summary and stats until the next start
 *  or until `ctx` is closed. The first of those after the stop fixes the recording: every
 *  later one sees the same events, even an event a worker was logging as the stop came.
 *  Returns: 0 (also when not recording), DAGGER_ESTATE when another context owns the trace.
 *  Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_stop(dagger_ctx_t *ctx);
/** Write the trace of `ctx` to `path` in the format of its extension (.json .dot .html .txt
 *  .dtrace); works while recording too (a snapshot).
 *  Returns: 0, DAGGER_EINVAL (unknown extension), DAGGER_ESTATE (no trace for `ctx`),
 *  DAGGER_EIO (cannot write; see dagger_last_errmsg), DAGGER_ENOMEM.
 *  Ownership: borrows `path`. Thread safety: any thread; one write at a time per process. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_write(dagger_ctx_t *ctx, const char *path);
/** Write the text summary ("Execution Summary": wall time, utilisation, per-function table,
 *  critical path, errors) into `buf`, NUL-terminated and truncated to `cap`.
 *  Returns: the length it needs without the NUL, like snprintf, or a negative error as
 *  dagger_trace_write. Ownership: borrows `buf`. Thread safety: as dagger_trace_write. */
DAGGER_API DAGGER_NODISCARD long dagger_trace_summary(dagger_ctx_t *ctx, char *buf, size_t cap);
/** Print the text summary to `f`. Returns: 0 or a negative error as dagger_trace_write.
 *  Ownership: borrows `f`. Thread safety: as dagger_trace_write. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_summary_file(dagger_ctx_t *ctx, FILE *f);
/** Counts of the trace of `ctx` into `*out`. Returns: 0, DAGGER_EINVAL, DAGGER_ESTATE,
 *  DAGGER_ENOMEM. Ownership: borrows `out`. Thread safety: as dagger_trace_write. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_stats(dagger_ctx_t *ctx, dagger_trace_stats_t *out);
/** Events lost so far because the limit was reached (0 when `ctx` has no trace).
 *  Thread safety: any thread, lock-free. */
DAGGER_API uint64_t dagger_trace_dropped(dagger_ctx_t *ctx);

/** Convert a saved .dtrace file into the format of `out_path` (any of the extensions above).
 *  Returns: 0, DAGGER_EINVAL (unknown extension, not a .dtrace file), DAGGER_EIO, DAGGER_ENOMEM.
 *  Ownership: borrows both paths. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_convert(const char *in_path, const char *out_path);
/** Print the text summary of a saved .dtrace file to `f` (stats into `*st` when not NULL).
 *  Returns: as dagger_trace_convert. Ownership: borrows all. Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_trace_file_summary(const char *in_path, FILE *f,
                                                          dagger_trace_stats_t *st);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_TRACE_H */
