/* src/trace/trace.h - what the other layers call to log events into the trace.
 *
 * Design: every call is wrapped in DAGGER__TRACE(...), which costs one relaxed load and a
 * predictable branch when tracing is off. When on, events go to a per-thread buffer with no
 * lock and no allocation on the hot path once the thread's buffer exists.
 * The hooks of the task hot path (spawn, ready, start, finish, block, resume) are inline: their
 * fast path tests the thread's cursor (one compare of the next word with the limit of its
 * reservation, which a new recording sets to NULL) and writes a record of 1 to 5 words with
 * plain stores (the line 1 KiB ahead prefetched): the word after it is zeroed (a reader stops
 * there), then a release store of its header word publishes it. Everything
 * else (a new buffer or recording, a new chunk, sampling, name copies, the clock where there is
 * no invariant TSC) runs in dagger__trace_put_slow (buffer.c), reached when the limit is hit:
 * the slow path sets the limit to NULL whenever each event must come its way.
 * Thread ids: `thread` is the worker index (0..n-1), or -1 for a thread that is not a worker.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_TRACE_H
#define DAGGER_SRC_TRACE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct dagger_ctx;

/* Non-zero while events are being recorded: the recording's generation (buffer.c). */
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

/* The fast path prefetches the word this many words (1 KiB) ahead (with write intent where
 * the target has PRFCHW; the default x86-64 build emits prefetcht0, which brings a line no
 * other core holds in exclusive state, so the store finds it owned): a thread's
 * records fill fresh lines (a recording's memory is far larger than the caches), and a store
 * that misses holds up the task's next atomic operation, which waits for the store buffer to
 * drain. With the line owned in time, fib(25-28) traced/untraced went from 1.53-1.66 to
 * 1.34-1.37 on an Intel host (bench/RESULTS.md); 4 or 8 records ahead was too late, 64 and 128
 * no better. A prefetch past a chunk's end cannot fault. */
#define DAGGER__TRACE_PF 128

/* A record in a live buffer: a header word, then the words its low bits name, in this order:
 * the raw stamp (W_TS), the argument (W_ARG), aux (W_AUX), the id (W_ID, when it does not fit
 * the header's 36 bits). The header holds those bits (0-3), the kind (4-8), the flags (9-11),
 * the thread (12-27) and the id (28-63). A record without a stamp leans on the thread's previous
 * stamped record (DAGGER__TRACE_F_INFER); a zero argument or aux takes no word. So a start on a
 * worker is 8 bytes, a finish 16 and a spawn with a static name 16 (3 records of 32 bytes each
 * before: a traced fib task wrote 96 bytes, now 40). A non-zero header marks it published. */
enum {
    DAGGER__TRACE_W_TS = 1,
    DAGGER__TRACE_W_ARG = 2,
    DAGGER__TRACE_W_AUX = 4,
    DAGGER__TRACE_W_ID = 8,
    DAGGER__TRACE_ID_BITS = 36,
    DAGGER__TRACE_REC_MAX = 5, /* words of the longest record */
};

/* The calling thread's cursor. pos < lim: the fast path may write a record at pos. Only the
 * owner writes it, but for `lim`: a new recording sets every thread's to NULL (buffer.c,
 * dagger__trace_buf_begin), so the fast path needs no test of the recording it writes in. */
struct dagger__trace_cur {
    uint64_t *pos;
    uint64_t *_Atomic lim;
    int64_t last;         /* raw stamp of the last stamped event; 0: stamp the next start */
    uint32_t spawns_left; /* spawns the fast path may log before the sample's count is settled */
    uint32_t sched_n;     /* scheduler events (steal, park) seen while sampling (buffer.c) */
    uint32_t park_out;    /* the thread's last park was thinned out: so is its wake */
    uint64_t follow;      /* a task whose start follows the thread's last event at once */
    uint64_t written;     /* records the thread wrote: its grant of the budget is settled by it */
};
extern __thread
    __attribute__((tls_model("initial-exec"))) struct dagger__trace_cur dagger__trace_tc;

enum { DAGGER__TRACE_F_STR = 1, DAGGER__TRACE_F_READY = 2, DAGGER__TRACE_F_INFER = 4 };

/* A header's kind, flags and thread (the id and the word bits are added as it is written). */
static inline __attribute__((always_inline)) uint64_t dagger__trace_hdr(unsigned kind, int thread,
                                                                        unsigned flags)
{
    return (uint64_t)kind << 4 | (uint64_t)flags << 9 | (uint64_t)(uint16_t)thread << 12;
}

/* The slow path of every hook (buffer.c): `hdr` as dagger__trace_hdr makes it, `may_infer` as
 * in dagger__trace_put. */
void dagger__trace_put_slow(uint64_t hdr, uint64_t id, uint64_t arg, int32_t aux, int may_infer);
/* Same, for a string argument (copied unless `is_static`; at most `max` bytes). */
void dagger__trace_put_str(unsigned kind, int thread, uint64_t id, const char *s, int is_static,
                           size_t max, unsigned flags);

/* Whether an event may lean on the thread's previous stamp `last` (0: none) instead of reading
 * the clock: `may_infer` 1 (a resume, a ready, a spawn outside a task) on a worker, 2 (an edge,
 * right after its spawn; a spawn inside a task's run) on any thread, 3 (a start that no task's
 * run encloses) on a worker or, on any thread, the start of the task the cursor's `follow`
 * names, 4 (a start inside another task's run, whose body ran for any time since the thread's
 * last stamp) only that one; 0 never. Both paths of every hook ask this. */
static inline __attribute__((always_inline)) int
dagger__trace_leans(const struct dagger__trace_cur *c, int64_t last, int thread, uint64_t id,
                    int may_infer)
{
    return may_infer && last != 0 &&
           ((thread >= 0 && may_infer != 4) || may_infer == 2 ||
            (may_infer >= 3 && c->follow == id));
}

/* Append one event. A resume, a ready or a spawn on a worker, and a start there that no task's
 * run encloses (`may_infer` 1 or 3), an edge or a spawn inside a task's run on any thread
 * (`may_infer` 2), and on any thread the start (`may_infer` 3 or 4) of the task the cursor's
 * `follow` names (dagger__trace_follow: it runs right after its own spawn or after another
 * task's finish in a loop of the runtime, no user code between), take
 * no time stamp of their own: they lean on the thread's previous one (the finish before it, a
 * block, a steal, a wake, a nested start), which the snapshot moves n ns later for the n-th
 * such event, and a start never before the task was ready. Only x86 with an invariant TSC has
 * a fast path (elsewhere the slow path keeps lim NULL). */
static inline __attribute__((always_inline)) void dagger__trace_put(unsigned kind, int thread,
                                                                    uint64_t id, uint64_t arg,
                                                                    int32_t aux, unsigned flags,
                                                                    int may_infer, int is_spawn)
{
    /* Packed once, before the test: the fast path adds the id and the word bits, and the slow
     * path takes the same word. */
    uint64_t hdr = dagger__trace_hdr(kind, thread, flags);
#if defined(__x86_64__) || defined(__i386__)
    /* The fast path writes records of a length known where the hook is inlined: an argument
     * that is not a constant takes its word even when zero (a spawn's name), and a non-zero
     * aux (a failed task's code) or an id past the header's bits goes to the slow path. */
    const int has_arg = !__builtin_constant_p(arg) || arg != 0;
    struct dagger__trace_cur *c = &dagger__trace_tc;
    uint64_t *p = c->pos;
    if (__builtin_expect(
            (uintptr_t)p < (uintptr_t)atomic_load_explicit(&c->lim, memory_order_relaxed) &&
                (!is_spawn || c->spawns_left != 0) && aux == 0 && id >> DAGGER__TRACE_ID_BITS == 0,
            1)) {
        hdr |= id << (64 - DAGGER__TRACE_ID_BITS) | (has_arg ? DAGGER__TRACE_W_ARG : 0);
        unsigned n;
        if (__builtin_expect(dagger__trace_leans(c, c->last, thread, id, may_infer), 1)) {
            hdr |= (uint64_t)DAGGER__TRACE_F_INFER << 9;
            if (has_arg)
                p[1] = arg;
            n = 1 + has_arg;
        } else {
            int64_t ts = (int64_t)__builtin_ia32_rdtsc();
            c->last = ts;
            hdr |= DAGGER__TRACE_W_TS;
            p[1] = (uint64_t)ts;
            if (has_arg)
                p[2] = arg;
            n = 2 + has_arg;
        }
        if (is_spawn)
            c->spawns_left--;
        __builtin_prefetch(p + DAGGER__TRACE_PF, 1, 3);
        c->written++;
        c->pos = p + n;
        __atomic_store_n(&p[n], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&p[0], hdr, __ATOMIC_RELEASE);
        return;
    }
#endif
    dagger__trace_put_slow(hdr, id, arg, aux, may_infer);
}

/* Event kinds (the values of enum dtr_kind, trace_int.h). */
enum {
    DAGGER__TRACE_K_SPAWN = 1,
    DAGGER__TRACE_K_EDGE,
    DAGGER__TRACE_K_READY,
    DAGGER__TRACE_K_START,
    DAGGER__TRACE_K_RESUME,
    DAGGER__TRACE_K_BLOCK,
    DAGGER__TRACE_K_FINISH,
};

/* A task was created. `name` stays valid for the whole trace when `name_static` is non-zero;
 * otherwise the trace copies it. `in_task`: the spawner is a task's body (on any thread), whose
 * spawns lean on the thread's last stamp as a worker's do; a spawn from a thread's own code
 * (the main thread outside any task) reads the clock. */
static inline void dagger__trace_spawn(uint64_t id, const char *name, int name_static, int thread,
                                       int in_task)
{
    if (name && !name_static)
        dagger__trace_put_str(DAGGER__TRACE_K_SPAWN, thread, id, name, 0, 255, 0);
    else
        dagger__trace_put(DAGGER__TRACE_K_SPAWN, thread, id, (uint64_t)(uintptr_t)name, 0,
                          name ? DAGGER__TRACE_F_STR : 0, in_task ? 2 : 1, 1);
}
/* A task that is ready as it is spawned (no unfinished dependency): spawn and ready in one
 * event, which saves a timestamp on the most common path. */
static inline void dagger__trace_spawn_ready(uint64_t id, const char *name, int name_static,
                                             int thread, int in_task)
{
    if (name && !name_static)
        dagger__trace_put_str(DAGGER__TRACE_K_SPAWN, thread, id, name, 0, 255,
                              DAGGER__TRACE_F_READY);
    else
        dagger__trace_put(DAGGER__TRACE_K_SPAWN, thread, id, (uint64_t)(uintptr_t)name, 0,
                          (name ? DAGGER__TRACE_F_STR : 0) | DAGGER__TRACE_F_READY, in_task ? 2 : 1,
                          1);
}
/* `to` depends on `from` (an argument or a syncdep). */
static inline void dagger__trace_edge(uint64_t from, uint64_t to)
{
    dagger__trace_put(DAGGER__TRACE_K_EDGE, -1, from, to, 0, 0, 2, 0);
}
/* A task became ready (its last input finished, or a hold was released). On a worker it takes
 * the thread's previous stamp, as a spawn does (mostly the finish just before it): a task of a
 * chain reads the clock once, at its finish, not also at its ready. */
static inline void dagger__trace_ready(uint64_t id, int thread)
{
    dagger__trace_put(DAGGER__TRACE_K_READY, thread, id, 0, 0, 0, 1, 0);
}
/* A run begins. On a worker a start or a resume takes no time stamp of its own (the thread's
 * previous one's: the finish before it, a steal, a wake). A start `nested` in another task's
 * run (run at once by a fetch, a wait or a group's end in that task's body, or by its spawn
 * past the deep mark) reads the clock on every thread, the body having run since the thread's
 * last stamp for any time, but for the one dagger__trace_follow names. */
static inline void dagger__trace_start(uint64_t id, int thread, int nested)
{
    dagger__trace_put(DAGGER__TRACE_K_START, thread, id, 0, 0, 0, nested ? 4 : 3, 0);
}
/* The calling thread starts task `id` next with no user code since its last stamped event, so
 * that start leans on it on any thread, nested or not: right after logging its spawn outside
 * any task (an undeferred run; on main, spawning 1e6 tasks that it runs itself: two clock
 * reads a task, not three), or right after another task's finish in a loop of the runtime that
 * runs tasks back to back (a fetch's or a group end's help, the main thread's group end). */
static inline void dagger__trace_follow(uint64_t id) { dagger__trace_tc.follow = id; }
/* End of a run: rc is 0, DAGGER_ECANCELED or another error code. */
static inline void dagger__trace_finish(uint64_t id, int thread, int rc)
{
    dagger__trace_put(DAGGER__TRACE_K_FINISH, thread, id, 0, rc, 0, 0, 0);
}
/* The task was suspended waiting for `on` (0 = a group or a stream), then resumed. */
static inline void dagger__trace_block(uint64_t id, int thread, uint64_t on)
{
    dagger__trace_put(DAGGER__TRACE_K_BLOCK, thread, id, on, 0, 0, 0, 0);
}
static inline void dagger__trace_resume(uint64_t id, int thread)
{
    dagger__trace_put(DAGGER__TRACE_K_RESUME, thread, id, 0, 0, 0, 1, 0);
}
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
