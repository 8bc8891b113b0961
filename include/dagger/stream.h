/* include/dagger/stream.h - streaming regions: tasks that run again and again over streams.
 *
 * Inside a streaming region every task spawned becomes a streaming task: it runs repeatedly;
 * an argument that is another streaming task of the region is an input stream (each run takes
 * one value from it), other arguments are reused every run, and each result is pushed to every
 * consumer through its own bounded buffer. Nothing starts before dagger_stream_end. This is
 * Dagger.jl's `spawn_streaming`; docs/stream.md describes the model, example:
 * examples/06_streaming.c.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_STREAM_H
#define DAGGER_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "dagger.h"
#include "dagger/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dagger_stream dagger_stream_t;

/** Options of a streaming region (and of the tasks spawned after dagger_stream_set_opts).
 *  Initialise with dagger_stream_opts_init. This struct only ever grows at the end. */
typedef struct dagger_stream_opts {
    long buffer;              /* slots of each input buffer of a task; >= 1, default 1 */
    int64_t max_evals;        /* runs per task; < 0 = unlimited (default); 0 is rejected */
    bool teardown;            /* the end of any task stops the whole region; default true */
    uint32_t max_value_bytes; /* largest string/blob a task may stream; default 4096 */
} dagger_stream_opts_t;

/** Fill `o` with the defaults. Thread safety: any thread. */
DAGGER_API void dagger_stream_opts_init(dagger_stream_opts_t *o);

/** Open a streaming region on the calling thread (or task): until dagger_stream_end, every
 *  dagger_spawn of `ctx` there makes a streaming task and returns its handle (+1), which can be
 *  fetched (after the end) or cancelled. `opts` may be NULL for the defaults.
 *  Returns: 0, DAGGER_EINVAL (bad option: buffer <= 0, max_evals == 0; message in
 *  dagger_last_errmsg), DAGGER_ENOMEM. Ownership: `*out` is consumed by dagger_stream_end.
 *  Thread safety: any thread; the region is used by the thread or task that opened it. */
DAGGER_API DAGGER_NODISCARD int
dagger_stream_begin(dagger_ctx_t *ctx, const dagger_stream_opts_t *opts, dagger_stream_t **out);

/** Change the options for the tasks spawned from now on in region `s` (max_evals, teardown,
 *  the capacity of their input buffers, the largest value they stream).
 *  Returns: 0, DAGGER_EINVAL (bad option). Thread safety: the thread or task that opened `s`. */
DAGGER_API DAGGER_NODISCARD int dagger_stream_set_opts(dagger_stream_t *s,
                                                       const dagger_stream_opts_t *opts);

/** Close region `s`: connect the streams and start every task of it together. The tasks then
 *  run until they finish (max_evals, dagger_finish_stream, inputs closed, teardown), fail or
 *  are cancelled; fetch their handles to wait for them.
 *  Returns: 0, DAGGER_ESTATE (another block was opened inside the region and is still open:
 *  the region stays open), DAGGER_ENOMEM (the region's tasks then fail).
 *  Ownership: consumes `s` unless DAGGER_ESTATE. Thread safety: the thread or task that
 *  opened `s`. */
DAGGER_API DAGGER_NODISCARD int dagger_stream_end(dagger_stream_t *s);

/** Callback form: begin, body(s, ud), end. Returns: the first error of begin or end. */
DAGGER_API DAGGER_NODISCARD int dagger_stream_run(dagger_ctx_t *ctx,
                                                  const dagger_stream_opts_t *opts,
                                                  void (*body)(dagger_stream_t *s, void *ud),
                                                  void *ud);

/** From inside a streaming task's body: end the task after this run. `last`, unless nil, is
 *  pushed to the consumers as the final value; fetching the task then gives `result` (strings
 *  and blobs of both are copied at once). The body should return 0 right after.
 *  Returns: 0, DAGGER_ESTATE when the calling task is not a streaming task.
 *  Thread safety: inside a task only. */
DAGGER_API int dagger_finish_stream(dagger_tc_t *tc, dagger_value_t last, dagger_value_t result);

/** Spawn in region `s` a streaming source that yields, each run, the next value popped from
 *  `e` (a DAGGER_EDGE_POP end, see dagger/net.h) and ends when the producer closes the edge.
 *  It runs beside the workers (occupancy 0). A lost producer fails it with DAGGER_EPEER.
 *  Returns: the task (+1), NULL if `s` is NULL or closed or out of memory (dagger_last_errmsg);
 *  a wrong end fails the task (DAGGER_EINVAL). Fetch gives the count of values popped.
 *  Ownership: consumes `e` (closed when the task ends, or here on NULL).
 *  Thread safety: the thread or task that opened `s`. */
DAGGER_API dagger_task_t *dagger_stream_spawn_edge_source(dagger_stream_t *s, dagger_edge_t *e);

/** Spawn in region `s` a streaming sink that pushes each value of `input` (a streaming task of
 *  `s`) to `e` (a DAGGER_EDGE_PUSH end), flushing whenever `input` has nothing more queued; when
 *  it ends well it closes `e`, so the peer's source ends too; a failed region aborts `e` (the
 *  peer sees DAGGER_EPEER). Runs beside the workers (occupancy 0).
 *  Returns, Ownership: as dagger_stream_spawn_edge_source; fetch gives the count pushed.
 *  Thread safety: the thread or task that opened `s`. */
DAGGER_API dagger_task_t *dagger_stream_spawn_edge_sink(dagger_stream_t *s, dagger_edge_t *e,
                                                        dagger_task_t *input);

/** Whether `t` is a streaming task of a region that is still running.
 *  Thread safety: any thread. */
DAGGER_API bool dagger_task_is_streaming(const dagger_task_t *t);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_STREAM_H */
