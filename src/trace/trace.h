/* src/trace/trace.h - what the other layers call to log events into the trace.
 *
 * Design: every call is wrapped in DAGGER__TRACE(...), which costs one relaxed load and a
 * predictable branch when tracing is off. When on, events go to a per-thread buffer with no
 * lock and no allocation on the hot path once the thread's buffer exists.
 * Thread ids: `thread` is the worker index (0..n-1), or -1 for a thread that is not a worker.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_TRACE_H
#define DAGGER_SRC_TRACE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct dagger_ctx;

/* Non-zero while events are being recorded. */
extern _Atomic int dagger__trace_on;

#define DAGGER__TRACE(call)                                                                        \
    do {                                                                                           \
        if (__builtin_expect(atomic_load_explicit(&dagger__trace_on, memory_order_relaxed), 0))    \
            call;                                                                                  \
    } while (0)

/* Context lifetime: open reads DAGGER_TRACE=path (starts recording); close stops recording
 * and writes the file in the format named by its extension (.json .dot .html .txt .dtrace). */
void dagger__trace_ctx_open(struct dagger_ctx *ctx, int nthreads);
void dagger__trace_ctx_close(struct dagger_ctx *ctx);
/* Check DAGGER_TRACE (extension, a writable folder) and DAGGER_TRACE_LIMIT before a context
 * opens. Returns 0 or DAGGER_EINVAL with a message naming the accepted values or the OS reason. */
int dagger__trace_env_check(void);
/* Close returns DAGGER_EBUSY: write the DAGGER_TRACE file now (recording goes on; a later
 * successful close writes it again). */
void dagger__trace_ctx_busy(struct dagger_ctx *ctx);

/* A task was created. `name` stays valid for the whole trace when `name_static` is non-zero;
 * otherwise the trace copies it. */
void dagger__trace_spawn(uint64_t id, const char *name, int name_static, int thread);
/* A task that is ready as it is spawned (no unfinished dependency): spawn and ready in one
 * event, which saves a timestamp on the most common path. */
void dagger__trace_spawn_ready(uint64_t id, const char *name, int name_static, int thread);
/* `to` depends on `from` (an argument or a syncdep). */
void dagger__trace_edge(uint64_t from, uint64_t to);
void dagger__trace_ready(uint64_t id, int thread);
/* A run begins. On a worker a start or a resume takes no time stamp of its own (buffer.c: the
 * thread's previous one's). */
void dagger__trace_start(uint64_t id, int thread);
/* End of a run: rc is 0, DAGGER_ECANCELED or another error code. */
void dagger__trace_finish(uint64_t id, int thread, int rc);
/* The task was suspended waiting for `on` (0 = a group or a stream), then resumed. */
void dagger__trace_block(uint64_t id, int thread, uint64_t on);
void dagger__trace_resume(uint64_t id, int thread);
void dagger__trace_steal(int thief, int victim, uint64_t id);
/* Chunk `chunk` (`bytes`) was copied from a space of kind `from` to one of kind `to`
 * (dagger_space_kind_t: staging, a spill to disk, a reload, a device copy). */
void dagger__trace_move(uint64_t chunk, int from, int to, uint64_t bytes, int thread);
void dagger__trace_park(int thread);
/* The calling worker found no work at once and is looking for some: its next start takes a
 * time stamp of its own (it cannot be the previous event's). Logs no event. */
void dagger__trace_idle(void);
void dagger__trace_wake(int thread);
/* The error message of a task that finished with rc != 0 (copied; shown in the HTML report
 * and the summary). Call it before or after dagger__trace_finish. */
void dagger__trace_error(uint64_t id, const char *msg);

/* Device work (src/gpu), on the track of one device stream: track = device * 8 + stream
 * (0 copy-in, 1 copy-out, 2.. compute). Copies and evictions are instants naming the chunk and
 * the bytes; a device task is a span from its launch (TASK_BEGIN) to its completion. */
enum {
    DAGGER__TRACE_DEV_H2D = 0,
    DAGGER__TRACE_DEV_D2H,
    DAGGER__TRACE_DEV_D2D,
    DAGGER__TRACE_DEV_EVICT,
    DAGGER__TRACE_DEV_WRITEBACK,
    DAGGER__TRACE_DEV_TASK_BEGIN,
    DAGGER__TRACE_DEV_TASK_END,
};
void dagger__trace_device(int track, int op, uint64_t id, uint64_t bytes);

/* Moves between ranks (src/net/mpi), logged by the progress thread: `id` is the local task (or
 * the payload's export id for data), `peer` the other rank, `bytes` what went on the wire. */
enum {
    DAGGER__TRACE_RANK_TASK_SENT = 0,
    DAGGER__TRACE_RANK_TASK_RECEIVED,
    DAGGER__TRACE_RANK_RESULT_SENT,
    DAGGER__TRACE_RANK_RESULT_RECEIVED,
    DAGGER__TRACE_RANK_DATA_SENT, /* a pulled payload (chunk, string, blob) */
    DAGGER__TRACE_RANK_DATA_RECEIVED,
};
void dagger__trace_rank(int op, int peer, uint64_t id, uint64_t bytes);

/* One trace for every rank (DAGGER_TRACE under MPI; src/net/mpi/trace.c):
 * - whether `ctx` writes the DAGGER_TRACE file at close (so the ranks' events are wanted);
 * - on a rank other than 0, at close: stop recording and hand over the trace as .dtrace bytes
 *   (*buf malloc'ed, the caller frees it); the file is then not written on this rank.
 *   Returns 0, DAGGER_ESTATE (not traced) or DAGGER_ENOMEM;
 * - on rank 0: keep rank `rank`'s trace (bytes from dagger__trace_rank_take, its clock
 *   `offset_ns` ahead of this one's), merged into the file at close. Returns 0, DAGGER_EINVAL
 *   (bytes that do not load; message set) or DAGGER_ENOMEM. */
int dagger__trace_rank_on(struct dagger_ctx *ctx);
int dagger__trace_rank_take(struct dagger_ctx *ctx, void **buf, size_t *len);
int dagger__trace_rank_add(struct dagger_ctx *ctx, int rank, int nranks, const void *buf,
                           size_t len, int64_t offset_ns);

#endif /* DAGGER_SRC_TRACE_H */
