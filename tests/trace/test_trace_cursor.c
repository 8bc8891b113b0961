/* tests/trace/test_trace_cursor.c - the hooks' thread-local cursor (trace.h, buffer.c).
 *
 * The fast path of a hook tests only the calling thread's cursor; everything else is noticed
 * when the cursor hits its limit. These tests check what that must not lose: a new recording
 * started while the cursor (this thread's or another's) still has room in the last one's
 * chunk, chunks reused by a later recording (their old events must not reappear), the fast
 * path coming back after a sampled recording, a run in progress seen by a snapshot, and the
 * record word (thread, aux, kind, flags) read back exactly. The trace sources are compiled into
 * this binary (no runtime).
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

#include "dagger/trace.h"
#include "trace/trace.h"
#include "trace/trace_int.h"

#define UOK(expr) assert_int_equal((long)(expr), 0)

static int fake;
#define CTX ((dagger_ctx_t *)&fake)

static dagger_trace_stats_t stats_of(void)
{
    dagger_trace_stats_t st;
    UOK(dagger_trace_stats(CTX, &st));
    return st;
}

static void readies(uint64_t first, int n)
{
    for (int i = 0; i < n; i++)
        DAGGER__TRACE(dagger__trace_ready(first + (uint64_t)i, 0));
}

static const struct dtr_ev *find_ev(const struct dtr_snap *s, int kind, uint64_t id)
{
    for (size_t i = 0; i < s->nev; i++)
        if (s->ev[i].kind == kind && s->ev[i].id == id)
            return &s->ev[i];
    return NULL;
}

/* Recordings of different sizes in turn on one thread: each sees exactly its own events,
 * though it reuses the chunks (and, at its start, the cursor) of the one before. */
TEST(each_recording_sees_only_its_events)
{
    const int sizes[] = {1000, 10, 5000, 3, 2049, 0, 7};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        UOK(dagger_trace_start(CTX));
        readies(k * 100000 + 1, sizes[k]);
        UOK(dagger_trace_stop(CTX));
        readies(999999, 5); /* after the stop: not recorded */
        dagger_trace_stats_t st = stats_of();
        assert_int_equal(st.events, (uint64_t)sizes[k]);
        assert_int_equal(st.dropped, 0);
        struct dtr_snap s;
        UOK(dagger__trace_snap_take(CTX, &s));
        assert_int_equal(s.nev, (size_t)sizes[k]);
        for (size_t i = 0; i < s.nev; i++) {
            assert_int_equal(s.ev[i].kind, DTR_READY);
            assert_true(s.ev[i].id > k * 100000 && s.ev[i].id <= k * 100000 + sizes[k]);
        }
        dagger__trace_snap_free(&s);
    }
}

/* A recording small enough to be sampled, then a large one: the second keeps every event
 * (the fast path, off while sampling, comes back at the new recording). */
TEST(sampling_ends_with_its_recording)
{
    dagger_trace_opts_t o;
    dagger_trace_opts_init(&o);
    o.max_events = 64;
    UOK(dagger_trace_start_opts(CTX, &o));
    for (uint64_t id = 1; id <= 2000; id++) {
        DAGGER__TRACE(dagger__trace_spawn_ready(id, "s", 1, 0, 0));
        DAGGER__TRACE(dagger__trace_start(id, 0, 0));
        DAGGER__TRACE(dagger__trace_finish(id, 0, 0));
    }
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t st = stats_of();
    assert_true(st.events > 0 && st.events <= 64);
    assert_int_equal(st.events + st.dropped, 6000);

    UOK(dagger_trace_start(CTX));
    for (uint64_t id = 1; id <= 3000; id++) {
        DAGGER__TRACE(dagger__trace_spawn_ready(id, "t", 1, 0, 0));
        DAGGER__TRACE(dagger__trace_start(id, 0, 0));
        DAGGER__TRACE(dagger__trace_finish(id, 0, 0));
    }
    UOK(dagger_trace_stop(CTX));
    st = stats_of();
    assert_int_equal(st.events, 9000);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.tasks, 3000);
    assert_int_equal(st.finished, 3000);
}

static _Atomic int g_step;

static void *half_run(void *p)
{
    DAGGER__TRACE(dagger__trace_spawn_ready(7, "long", 1, 1, 0));
    DAGGER__TRACE(dagger__trace_start(7, 1, 0));
    atomic_store(&g_step, 1);
    while (atomic_load(&g_step) != 2)
        ;
    DAGGER__TRACE(dagger__trace_finish(7, 1, 0));
    return NULL;
}

/* A snapshot taken while a task runs on another thread shows its start: the run in progress
 * is in the trace, and its finish follows in the next snapshot. */
TEST(a_run_in_progress_is_in_a_snapshot)
{
    atomic_store(&g_step, 0);
    UOK(dagger_trace_start(CTX));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, half_run, NULL), 0);
    while (atomic_load(&g_step) != 1)
        ;
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    assert_non_null(find_ev(&s, DTR_START, 7));
    assert_null(find_ev(&s, DTR_FINISH, 7));
    dagger__trace_snap_free(&s);
    atomic_store(&g_step, 2);
    assert_int_equal(pthread_join(th, NULL), 0);
    UOK(dagger_trace_stop(CTX));
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *st = find_ev(&s, DTR_START, 7), *fi = find_ev(&s, DTR_FINISH, 7);
    assert_true(st && fi && st->ts <= fi->ts);
    assert_int_equal(st->thread, 1);
    dagger__trace_snap_free(&s);
}

static _Atomic int g_turn;

/* Logs ids 1..10 in the first recording and 1001..1010 in the second, each when told, without
 * a limit reached in between (the reservation of the first has room to spare). */
static void *two_recordings(void *p)
{
    (void)p;
    while (atomic_load(&g_turn) != 1)
        ;
    readies(1, 10);
    atomic_store(&g_turn, 2);
    while (atomic_load(&g_turn) != 3)
        ;
    readies(1001, 10);
    atomic_store(&g_turn, 4);
    return NULL;
}

static void *log_and_exit(void *p)
{
    readies((uint64_t)(uintptr_t)p, 5);
    return NULL;
}

/* The fast path does not test which recording its cursor belongs to: a new recording empties
 * every thread's cursor. Another thread, its cursor still in the first recording's chunk, logs
 * into the second (none of its events lost to the first's chunk), and a thread that exited in
 * between (its cursor gone with it) is left alone by the second start. */
TEST(a_new_recording_reaches_other_threads_cursors)
{
    atomic_store(&g_turn, 0);
    pthread_t th, gone;
    assert_int_equal(pthread_create(&th, NULL, two_recordings, NULL), 0);
    UOK(dagger_trace_start(CTX));
    atomic_store(&g_turn, 1);
    while (atomic_load(&g_turn) != 2)
        ;
    assert_int_equal(pthread_create(&gone, NULL, log_and_exit, (void *)(uintptr_t)501), 0);
    assert_int_equal(pthread_join(gone, NULL), 0);
    UOK(dagger_trace_stop(CTX));
    assert_int_equal(stats_of().events, 15);

    UOK(dagger_trace_start(CTX));
    atomic_store(&g_turn, 3);
    while (atomic_load(&g_turn) != 4)
        ;
    UOK(dagger_trace_stop(CTX));
    assert_int_equal(pthread_join(th, NULL), 0);
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    assert_int_equal(s.nev, 10);
    for (size_t i = 0; i < s.nev; i++)
        assert_true(s.ev[i].kind == DTR_READY && s.ev[i].id > 1000 && s.ev[i].id <= 1010);
    dagger__trace_snap_free(&s);
    assert_int_equal(stats_of().dropped, 0);
}

/* Every field of the packed record word comes back: negative threads and codes, flags. */
TEST(the_record_word_round_trips)
{
    UOK(dagger_trace_start(CTX));
    DAGGER__TRACE(dagger__trace_spawn(11, NULL, 1, -1, 0));
    DAGGER__TRACE(dagger__trace_spawn_ready(12, "n", 1, 32767, 0));
    DAGGER__TRACE(dagger__trace_start(12, 32767, 0));
    DAGGER__TRACE(dagger__trace_finish(12, 32767, DAGGER_ECANCELED));
    DAGGER__TRACE(dagger__trace_block(13, 0, 0xfedcba9876543210ull));
    DAGGER__TRACE(dagger__trace_edge(11, 12));
    DAGGER__TRACE(dagger__trace_steal(1, -1, 12));
    UOK(dagger_trace_stop(CTX));
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *e = find_ev(&s, DTR_SPAWN, 11);
    assert_true(e && e->thread == -1 && e->flags == 0 && e->arg == DTR_NOSTR);
    e = find_ev(&s, DTR_SPAWN, 12);
    assert_true(e && e->thread == 32767 && e->flags == (DTR_F_STR | DTR_F_READY));
    assert_string_equal(s.str[e->arg], "n");
    e = find_ev(&s, DTR_FINISH, 12);
    assert_true(e && e->aux == DAGGER_ECANCELED && e->thread == 32767);
    e = find_ev(&s, DTR_BLOCK, 13);
    assert_true(e && e->arg == 0xfedcba9876543210ull && e->thread == 0);
    e = find_ev(&s, DTR_EDGE, 11);
    assert_true(e && e->arg == 12 && e->thread == -1);
    e = find_ev(&s, DTR_STEAL, 12);
    assert_true(e && e->thread == 1 && e->aux == -1);
    dagger__trace_snap_free(&s);
}

/* Records are 1 to 5 words (trace.h): ids past the header's 36 bits, zero and non-zero
 * arguments and codes, stamped and leaning events, across chunk ends, all come back. */
TEST(records_of_every_length_round_trip)
{
    const uint64_t big[] = {(1ull << 36) - 1, 1ull << 36, (uint64_t)3 << DTR_RANK_SHIFT | 5,
                            UINT64_MAX};
    UOK(dagger_trace_start(CTX));
    int n = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t id = i % 7 == 3 ? big[(i / 7) % 4] : (uint64_t)i + 1;
        DAGGER__TRACE(dagger__trace_spawn_ready(id, i % 2 ? "s" : NULL, 1, 0, 0));
        DAGGER__TRACE(dagger__trace_edge(id, (uint64_t)i * 1000003u));
        DAGGER__TRACE(dagger__trace_start(id, 0, 0));
        DAGGER__TRACE(dagger__trace_finish(id, 0, i % 5 == 0 ? -(i % 11) : 0));
        n += 4;
    }
    /* every word at once: a stamp, an argument, aux and an id past the header's bits */
    DAGGER__TRACE(dagger__trace_move(big[3], 2, 5, 4096, 1));
    n++;
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t st = stats_of();
    assert_int_equal(st.events, (uint64_t)n);
    assert_int_equal(st.dropped, 0);
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    assert_int_equal(s.nev, (size_t)n);
    size_t spawns = 0, edges = 0, starts = 0, fails = 0;
    for (size_t i = 0; i < s.nev; i++) {
        const struct dtr_ev *e = &s.ev[i];
        assert_true(!(e->flags & DTR_F_INFER));
        assert_int_equal(e->thread, e->kind == DTR_EDGE ? -1 : e->kind == DTR_MOVE ? 1 : 0);
        if (e->kind == DTR_SPAWN) {
            spawns++;
            assert_true(e->flags & DTR_F_READY);
            assert_true(e->arg == DTR_NOSTR || !strcmp(s.str[e->arg], "s"));
        } else if (e->kind == DTR_EDGE) {
            edges++;
            assert_int_equal(e->arg % 1000003u, 0);
        } else if (e->kind == DTR_START) {
            starts++;
        } else if (e->kind == DTR_FINISH && e->aux != 0) {
            fails++;
            assert_true(e->aux < 0 && e->aux > -11);
        }
    }
    assert_int_equal(spawns, 20000);
    assert_int_equal(edges, 20000);
    assert_int_equal(starts, 20000);
    /* i % 5 == 0 with i % 11 != 0: 4000 less the multiples of 55 */
    assert_int_equal(fails, 4000 - (20000 + 54) / 55);
    const struct dtr_ev *mv = find_ev(&s, DTR_MOVE, big[3]);
    assert_true(mv && mv->arg == 4096 && mv->aux == (2 | 5 << 8) && mv->thread == 1);
    for (int k = 0; k < 4; k++) {
        const struct dtr_ev *e = find_ev(&s, DTR_START, big[k]);
        assert_non_null(e);
        e = find_ev(&s, DTR_EDGE, big[k]);
        assert_non_null(e);
    }
    dagger__trace_snap_free(&s);
}

/* A start that leans on the finish before it sits just after that finish and never before
 * its task was ready. */
TEST(a_leaning_start_follows_its_stamp)
{
    UOK(dagger_trace_start(CTX));
    DAGGER__TRACE(dagger__trace_start(1, 0, 0)); /* the first event: stamped */
    DAGGER__TRACE(dagger__trace_finish(1, 0, 0));
    DAGGER__TRACE(dagger__trace_start(2, 0, 0)); /* leans on finish(1) */
    DAGGER__TRACE(dagger__trace_start(3, 0, 0)); /* leans on it too, 1 ns later */
    DAGGER__TRACE(dagger__trace_finish(3, 0, 0));
    UOK(dagger_trace_stop(CTX));
    struct dtr_snap s;
    UOK(dagger__trace_snap_take(CTX, &s));
    const struct dtr_ev *f1 = find_ev(&s, DTR_FINISH, 1), *s2 = find_ev(&s, DTR_START, 2),
                        *s3 = find_ev(&s, DTR_START, 3), *f3 = find_ev(&s, DTR_FINISH, 3);
    assert_true(f1 && s2 && s3 && f3);
    assert_int_equal(s2->ts, f1->ts + 1);
    assert_int_equal(s3->ts, f1->ts + 2);
    assert_true(f3->ts >= f1->ts); /* its own stamp, read after finish(1)'s */
    dagger__trace_snap_free(&s);
}

struct mixed {
    uint64_t first;
    int n;
};

static void *emit_mixed(void *p)
{
    const struct mixed *m = p;
    for (int i = 0; i < m->n; i++) {
        uint64_t id = m->first + (uint64_t)i;
        if (i % 3 == 0)
            DAGGER__TRACE(dagger__trace_start(id, 0, 0));
        else if (i % 3 == 1)
            DAGGER__TRACE(dagger__trace_finish(id, 0, i % 2));
        else
            DAGGER__TRACE(dagger__trace_edge(id << 20, id));
    }
    return NULL;
}

/* The budget counts events, whatever their lengths: one thread past it keeps exactly the
 * limit; several keep at most it, and kept + dropped is every event. */
TEST(the_limit_counts_records_of_any_length)
{
    dagger_trace_opts_t o;
    dagger_trace_opts_init(&o);
    o.max_events = 10000;
    UOK(dagger_trace_start_opts(CTX, &o));
    struct mixed m = {1, 30000};
    emit_mixed(&m);
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t st = stats_of();
    assert_int_equal(st.events, 10000);
    assert_int_equal(st.dropped, 20000);

    UOK(dagger_trace_start_opts(CTX, &o));
    pthread_t th[4];
    struct mixed ms[4];
    for (int i = 0; i < 4; i++) {
        ms[i].first = (uint64_t)(i + 1) << 32;
        ms[i].n = 6000;
        pthread_create(&th[i], NULL, emit_mixed, &ms[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    UOK(dagger_trace_stop(CTX));
    st = stats_of();
    assert_true(st.events > 0 && st.events <= 10000);
    assert_int_equal(st.events + st.dropped, 24000);
}

static _Atomic int g_writers_left, g_writers_go;

static void *emit_mixed_then_leave(void *p)
{
    while (!atomic_load(&g_writers_go))
        ;
    emit_mixed(p);
    atomic_fetch_sub(&g_writers_left, 1);
    return NULL;
}

/* Snapshots taken while three threads write records of every fast-path length see only whole
 * records (each decodes to what its writer logged), never fewer than the snapshot before. */
TEST(snapshots_during_writes_see_whole_records)
{
    enum { W = 3, N = 60000 };
    UOK(dagger_trace_start(CTX));
    pthread_t th[W];
    struct mixed ms[W];
    atomic_store(&g_writers_left, W);
    atomic_store(&g_writers_go, 0);
    for (int i = 0; i < W; i++) {
        ms[i].first = (uint64_t)(i + 1) << 32;
        ms[i].n = N;
        assert_int_equal(pthread_create(&th[i], NULL, emit_mixed_then_leave, &ms[i]), 0);
    }
    size_t prev = 0;
    atomic_store(&g_writers_go, 1); /* the first snapshot starts with the writers */
    for (int more = 1; more;) {
        more = atomic_load(&g_writers_left) > 0;
        struct dtr_snap s;
        UOK(dagger__trace_snap_take(CTX, &s));
        assert_true(s.nev >= prev && s.nev <= (size_t)W * N);
        prev = s.nev;
        for (size_t i = 0; i < s.nev; i++) {
            const struct dtr_ev *e = &s.ev[i];
            uint64_t id = e->kind == DTR_EDGE ? e->arg : e->id;
            int w = (int)(id >> 32) - 1;
            int k = (int)(id - ((uint64_t)(w + 1) << 32));
            assert_true(w >= 0 && w < W && k >= 0 && k < N);
            if (e->kind == DTR_START) {
                assert_int_equal(k % 3, 0);
            } else if (e->kind == DTR_FINISH) {
                assert_int_equal(k % 3, 1);
                assert_int_equal(e->aux, k % 2);
            } else {
                assert_int_equal(e->kind, DTR_EDGE);
                assert_int_equal(k % 3, 2);
                assert_true(e->id == id << 20 && e->thread == -1);
            }
        }
        dagger__trace_snap_free(&s);
    }
    for (int i = 0; i < W; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    UOK(dagger_trace_stop(CTX));
    dagger_trace_stats_t st = stats_of();
    assert_int_equal(st.events, (uint64_t)W * N);
    assert_int_equal(st.dropped, 0);

    /* The writers have exited: their buffers (chunks from calloc and from slabs) are freed,
     * and a new thread's recording starts from nothing. */
    dagger__trace_buf_trim();
    UOK(dagger_trace_start(CTX));
    struct mixed m = {(uint64_t)1 << 32, 30000};
    atomic_store(&g_writers_left, 1);
    assert_int_equal(pthread_create(&th[0], NULL, emit_mixed_then_leave, &m), 0);
    assert_int_equal(pthread_join(th[0], NULL), 0);
    UOK(dagger_trace_stop(CTX));
    st = stats_of();
    assert_int_equal(st.events, 30000);
    assert_int_equal(st.dropped, 0);
}

TEST_LIST(each_recording_sees_only_its_events, sampling_ends_with_its_recording,
          a_run_in_progress_is_in_a_snapshot, a_new_recording_reaches_other_threads_cursors,
          the_record_word_round_trips, records_of_every_length_round_trip,
          a_leaning_start_follows_its_stamp, the_limit_counts_records_of_any_length,
          snapshots_during_writes_see_whole_records)
