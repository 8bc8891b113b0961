/* tests/harness.h - a thin layer over cmocka for dagger's one-process-per-case tests.
 *
 * Each test file defines cases with TEST(name) and ends with TEST_LIST(a, b, ...). The binary
 * answers `--list` (one case name per line) and `<case>` (run one case); with no argument it
 * runs every case. Exit code 77 means skipped (SKIP()).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TESTS_HARNESS_H
#define DAGGER_TESTS_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "dagger.h"

/* Crash and early-exit reports. cmocka turns SIGSEGV and its kin into a failure by longjmp-ing
 * back into the case, which is only sound on the case's own thread: a fault on a runtime or
 * library thread would resume the case's frames on that thread's stack. Each case therefore
 * installs a handler (not under sanitizers, which report faults themselves) that names the
 * case, the signal and the thread, prints a backtrace, and lets the default action end the
 * process, which ctest shows as an exception. A process that exits (exit(), not a return from
 * the case) while a case runs says so too, so that a failure without cmocka's verdict still
 * names where it happened. */
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

static const char *volatile harness_case_;
static pid_t harness_pid_;

static inline void harness_write_(const char *s) { (void)!write(2, s, strlen(s)); }

static inline void harness_fault_(int sig)
{
    char buf[160];
    snprintf(buf, sizeof buf, "\n[  CRASH   ] case %s: signal %d (%s) on thread %ld\n",
             harness_case_ ? harness_case_ : "?", sig, strsignal(sig), (long)gettid());
    harness_write_(buf);
    void *frames[48];
    backtrace_symbols_fd(frames, backtrace(frames, 48), 2);
    raise(sig); /* SA_RESETHAND: the default action now */
}

static inline void harness_exit_report_(void)
{
    const char *c = harness_case_;
    if (c && getpid() == harness_pid_) {
        harness_write_("\n[  EXIT    ] the process exited while case ");
        harness_write_(c);
        harness_write_(" was still running\n");
    }
}

static inline void harness_case_run_(const char *name, void (*body)(void **), void **state)
{
#if !defined(DAGGER_ASAN) && !defined(DAGGER_TSAN)
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = harness_fault_;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
#endif
    harness_pid_ = getpid();
    harness_case_ = name;
    body(state);
    harness_case_ = NULL;
}

/* A case runs through harness_case_run_ (crash report, early-exit report below). */
#define TEST(name)                                                                                 \
    static void name##_case_(void **state_unused_);                                                \
    static void name(void **state_) { harness_case_run_(#name, name##_case_, state_); }            \
    static void name##_case_(void **state_unused_)

/* Skip the current case: the process exits with 77, which ctest reports as skipped. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "SKIP: " __VA_ARGS__);                                                     \
        fputc('\n', stderr);                                                                       \
        harness_case_ = NULL;                                                                      \
        exit(77);                                                                                  \
    } while (0)

#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        long rc_ = (long)(expr);                                                                   \
        if (rc_ < 0)                                                                               \
            fail_msg("%s returned %s (%s): %s", #expr, dagger_err_name((int)rc_),                  \
                     dagger_strerror((int)rc_), dagger_last_errmsg());                             \
    } while (0)

#define ASSERT_ERR(expr, code)                                                                     \
    do {                                                                                           \
        long rc_ = (long)(expr);                                                                   \
        if (rc_ != (long)(code))                                                                   \
            fail_msg("%s returned %s, expected %s", #expr, dagger_err_name((int)rc_),              \
                     dagger_err_name((int)(code)));                                                \
    } while (0)

#define ASSERT_TRUE(c) assert_true(c)
#define ASSERT_FALSE(c) assert_false(c)
#define ASSERT_EQ(a, b) assert_int_equal((a), (b))
#define ASSERT_NE(a, b) assert_int_not_equal((a), (b))
#define ASSERT_PTR(p) assert_non_null(p)
#define ASSERT_NULL(p) assert_null(p)
#define ASSERT_STR_EQ(a, b) assert_string_equal((a), (b))
#define ASSERT_NEAR(a, b, eps)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(a_ - b_ <= (eps) && b_ - a_ <= (eps)))                                               \
            fail_msg("%s = %.17g, expected %.17g (+- %g)", #a, a_, b_, (double)(eps));             \
    } while (0)
#define ASSERT_STR_HAS(hay, needle)                                                                \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            fail_msg("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                    \
    } while (0)

/* Test sizes: DAGGER_TEST_LEVEL=full scales them up. */
static inline int test_level_full(void)
{
    const char *l = getenv("DAGGER_TEST_LEVEL");
    return l && strcmp(l, "full") == 0;
}

/* The seed of a randomised test: DAGGER_TEST_SEED, or a fresh one; printed for replay. */
static inline uint64_t test_seed(void)
{
    const char *s = getenv("DAGGER_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    printf("seed=%llu (replay with DAGGER_TEST_SEED=%llu)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

/* xorshift64*: a small deterministic generator for test data. */
static inline uint64_t test_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Open a context with `n` threads (0 = default), failing the case on error. */
static inline dagger_ctx_t *test_ctx(int n)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = n;
    dagger_ctx_t *ctx = NULL;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    return ctx;
}

/* The last step of a task body that opened a sync group on its context: the body's own code
 * `rc` (a spawn that failed) first; else the group end's, its message kept as "group: <msg>";
 * else 0, with the result 0. */
static inline int test_body_sync_end(dagger_tc_t *tc, int rc, dagger_value_t *out)
{
    int end = dagger_sync_end(dagger_tc_ctx(tc));
    if (rc)
        return rc;
    if (end)
        return dagger_fail(tc, end, "group: %s", dagger_last_errmsg());
    *out = dagger_i64(0);
    return 0;
}

/* Spawn fn(args...) pinned to worker `k` (a thread scope), for a case that needs its task on a
 * worker: a task spawned from main and fetched there may otherwise run on main itself
 * (docs/core.md, "Waiting from outside the pool"). */
#define TEST_SPAWN_ON_WORKER(ctx, k, ...)                                                          \
    ({                                                                                             \
        dagger_task_opts_t o_;                                                                     \
        dagger_task_opts_init(&o_);                                                                \
        dagger_scope_t *s_ = dagger_scope_thread(k);                                               \
        o_.scope = s_;                                                                             \
        dagger_task_t *t_ = dagger_spawn_opts(ctx, &o_, __VA_ARGS__);                              \
        dagger_scope_release(s_);                                                                  \
        t_;                                                                                        \
    })

/* A gate that holds workers, so that a case knows where the rest of its tasks run.
 * test_gate_hold(ctx, n, g) spawns n gate tasks on workers 0..n-1 and returns once each one
 * runs; test_gate_unblock() opens the gate; test_gate_open(n, g) opens it, fetches the tasks
 * (failing the case when one had to open by itself after TEST_GATE_TIMEOUT_S: a regression fails
 * with a message instead of hanging) and releases them. One gate per process, closed again by the
 * next hold. C only. */
#ifndef __cplusplus
#include <stdatomic.h>
#define TEST_GATE_TIMEOUT_S 10
struct test_gate {
    _Atomic int open, in;
};
static inline struct test_gate *test_gate_state(void)
{
    static struct test_gate g;
    return &g;
}
/* The gate task: returns 1 when it had to time out. */
static inline int test_gate_fn(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    (void)a;
    struct test_gate *g = test_gate_state();
    atomic_fetch_add(&g->in, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int timed_out = 0;
    while (!atomic_load(&g->open) && !timed_out) {
        usleep(200);
        clock_gettime(CLOCK_MONOTONIC, &t);
        timed_out = t.tv_sec - t0.tv_sec >= TEST_GATE_TIMEOUT_S;
    }
    *out = dagger_i64(timed_out);
    return 0;
}
static inline void test_gate_hold(dagger_ctx_t *ctx, int n, dagger_task_t **tasks)
{
    struct test_gate *g = test_gate_state();
    atomic_store(&g->open, 0);
    atomic_store(&g->in, 0);
    for (int i = 0; i < n; i++) {
        tasks[i] = TEST_SPAWN_ON_WORKER(ctx, i, test_gate_fn);
        if (!tasks[i])
            fail_msg("test_gate_hold: %s", dagger_last_errmsg());
    }
    while (atomic_load(&g->in) < n)
        usleep(100);
}
/* Open the gate without waiting (from a task, another thread). */
static inline void test_gate_unblock(void) { atomic_store(&test_gate_state()->open, 1); }
static inline void test_gate_open(int n, dagger_task_t **tasks)
{
    test_gate_unblock();
    for (int i = 0; i < n; i++) {
        int64_t timed_out = 0;
        if (dagger_fetch_i64(tasks[i], &timed_out) != 0)
            fail_msg("test_gate_open: gate task %d failed: %s", i, dagger_task_errmsg(tasks[i]));
        if (timed_out)
            fail_msg("test_gate_open: gate task %d opened by itself after %d s", i,
                     TEST_GATE_TIMEOUT_S);
        dagger_task_release(tasks[i]);
    }
}

/* A task that stores the thread running it (dagger_tc_thread) in the _Atomic int that its
 * one argument points to: for a job that only a worker may run (test_wait_change). */
static inline int test_note_thread(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    atomic_store((_Atomic int *)dagger_arg_ptr(a, 0), dagger_tc_thread(tc));
    *out = dagger_nil();
    return 0;
}

/* Wait (polling) until done(*v, arg), for at most `timeout_s` seconds: the last value of *v
 * (the caller tells a timeout by it and fails with its own message). For jobs that only a worker
 * may run, since the caller does not wait on them through dagger. */
static inline int test_wait_until(_Atomic int *v, int arg, int (*done)(int x, int arg),
                                  int timeout_s)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int x;
    while (!done(x = atomic_load(v), arg)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > timeout_s)
            return x;
        usleep(20);
    }
    return x;
}

static inline int test_changed(int x, int unset) { return x != unset; }
static inline int test_reached(int x, int n) { return x >= n; }

/* Until *v is no longer `unset`: its value, or `unset` when it did not change in time. */
static inline int test_wait_change(_Atomic int *v, int unset, int timeout_s)
{
    return test_wait_until(v, unset, test_changed, timeout_s);
}

/* Until *v reaches at least `n`: its last value (below n when it did not get there in time). */
static inline int test_wait_reach(_Atomic int *v, int n, int timeout_s)
{
    return test_wait_until(v, n, test_reached, timeout_s);
}
#endif /* __cplusplus */

/* Run `script` (a python3 -c argument, no double quotes) with a python3 that has numpy, Debian's
 * first: its exit status, or 77 (skip) when there is none. */
static inline int test_python_numpy(const char *script)
{
    static const char *const pys[] = {"/usr/bin/python3", "python3"};
    for (size_t i = 0; i < 2; i++) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", pys[i]);
        if (system(cmd) != 0)
            continue;
        snprintf(cmd, sizeof cmd, "%s -c \"%s\"", pys[i], script);
        int rc = system(cmd);
        return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
    }
    return 77;
}

static inline int harness_main_(const struct CMUnitTest *cases, size_t n, int argc, char **argv)
{
    atexit(harness_exit_report_);
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    if (argc > 1) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(argv[1], cases[i].name) == 0) {
                int rc = _cmocka_run_group_tests(cases[i].name, &cases[i], 1, NULL, NULL);
                harness_case_ = NULL; /* a failed case longjmp-ed out: cmocka said so */
                return rc;
            }
        fprintf(stderr, "no test case named '%s' (try --list)\n", argv[1]);
        return 2;
    }
    int rc = _cmocka_run_group_tests(argv[0], cases, n, NULL, NULL);
    harness_case_ = NULL;
    return rc;
}

#define TEST_ENTRY_(x) cmocka_unit_test(x)
#define TEST_MAP1_(f, a) f(a)
#define TEST_LIST(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        const struct CMUnitTest cases_[] = {TEST_FOREACH_(TEST_ENTRY_, __VA_ARGS__)};              \
        return harness_main_(cases_, sizeof cases_ / sizeof cases_[0], argc, argv);                \
    }

/* TEST_FOREACH_(m, a, b, ...) -> m(a), m(b), ... for up to 64 names. */
#define TEST_FE_1(m, a) m(a)
#define TEST_FE_2(m, a, ...) m(a), TEST_FE_1(m, __VA_ARGS__)
#define TEST_FE_3(m, a, ...) m(a), TEST_FE_2(m, __VA_ARGS__)
#define TEST_FE_4(m, a, ...) m(a), TEST_FE_3(m, __VA_ARGS__)
#define TEST_FE_5(m, a, ...) m(a), TEST_FE_4(m, __VA_ARGS__)
#define TEST_FE_6(m, a, ...) m(a), TEST_FE_5(m, __VA_ARGS__)
#define TEST_FE_7(m, a, ...) m(a), TEST_FE_6(m, __VA_ARGS__)
#define TEST_FE_8(m, a, ...) m(a), TEST_FE_7(m, __VA_ARGS__)
#define TEST_FE_9(m, a, ...) m(a), TEST_FE_8(m, __VA_ARGS__)
#define TEST_FE_10(m, a, ...) m(a), TEST_FE_9(m, __VA_ARGS__)
#define TEST_FE_11(m, a, ...) m(a), TEST_FE_10(m, __VA_ARGS__)
#define TEST_FE_12(m, a, ...) m(a), TEST_FE_11(m, __VA_ARGS__)
#define TEST_FE_13(m, a, ...) m(a), TEST_FE_12(m, __VA_ARGS__)
#define TEST_FE_14(m, a, ...) m(a), TEST_FE_13(m, __VA_ARGS__)
#define TEST_FE_15(m, a, ...) m(a), TEST_FE_14(m, __VA_ARGS__)
#define TEST_FE_16(m, a, ...) m(a), TEST_FE_15(m, __VA_ARGS__)
#define TEST_FE_17(m, a, ...) m(a), TEST_FE_16(m, __VA_ARGS__)
#define TEST_FE_18(m, a, ...) m(a), TEST_FE_17(m, __VA_ARGS__)
#define TEST_FE_19(m, a, ...) m(a), TEST_FE_18(m, __VA_ARGS__)
#define TEST_FE_20(m, a, ...) m(a), TEST_FE_19(m, __VA_ARGS__)
#define TEST_FE_21(m, a, ...) m(a), TEST_FE_20(m, __VA_ARGS__)
#define TEST_FE_22(m, a, ...) m(a), TEST_FE_21(m, __VA_ARGS__)
#define TEST_FE_23(m, a, ...) m(a), TEST_FE_22(m, __VA_ARGS__)
#define TEST_FE_24(m, a, ...) m(a), TEST_FE_23(m, __VA_ARGS__)
#define TEST_FE_25(m, a, ...) m(a), TEST_FE_24(m, __VA_ARGS__)
#define TEST_FE_26(m, a, ...) m(a), TEST_FE_25(m, __VA_ARGS__)
#define TEST_FE_27(m, a, ...) m(a), TEST_FE_26(m, __VA_ARGS__)
#define TEST_FE_28(m, a, ...) m(a), TEST_FE_27(m, __VA_ARGS__)
#define TEST_FE_29(m, a, ...) m(a), TEST_FE_28(m, __VA_ARGS__)
#define TEST_FE_30(m, a, ...) m(a), TEST_FE_29(m, __VA_ARGS__)
#define TEST_FE_31(m, a, ...) m(a), TEST_FE_30(m, __VA_ARGS__)
#define TEST_FE_32(m, a, ...) m(a), TEST_FE_31(m, __VA_ARGS__)
#define TEST_FE_33(m, a, ...) m(a), TEST_FE_32(m, __VA_ARGS__)
#define TEST_FE_34(m, a, ...) m(a), TEST_FE_33(m, __VA_ARGS__)
#define TEST_FE_35(m, a, ...) m(a), TEST_FE_34(m, __VA_ARGS__)
#define TEST_FE_36(m, a, ...) m(a), TEST_FE_35(m, __VA_ARGS__)
#define TEST_FE_37(m, a, ...) m(a), TEST_FE_36(m, __VA_ARGS__)
#define TEST_FE_38(m, a, ...) m(a), TEST_FE_37(m, __VA_ARGS__)
#define TEST_FE_39(m, a, ...) m(a), TEST_FE_38(m, __VA_ARGS__)
#define TEST_FE_40(m, a, ...) m(a), TEST_FE_39(m, __VA_ARGS__)
#define TEST_FE_41(m, a, ...) m(a), TEST_FE_40(m, __VA_ARGS__)
#define TEST_FE_42(m, a, ...) m(a), TEST_FE_41(m, __VA_ARGS__)
#define TEST_FE_43(m, a, ...) m(a), TEST_FE_42(m, __VA_ARGS__)
#define TEST_FE_44(m, a, ...) m(a), TEST_FE_43(m, __VA_ARGS__)
#define TEST_FE_45(m, a, ...) m(a), TEST_FE_44(m, __VA_ARGS__)
#define TEST_FE_46(m, a, ...) m(a), TEST_FE_45(m, __VA_ARGS__)
#define TEST_FE_47(m, a, ...) m(a), TEST_FE_46(m, __VA_ARGS__)
#define TEST_FE_48(m, a, ...) m(a), TEST_FE_47(m, __VA_ARGS__)
#define TEST_FE_49(m, a, ...) m(a), TEST_FE_48(m, __VA_ARGS__)
#define TEST_FE_50(m, a, ...) m(a), TEST_FE_49(m, __VA_ARGS__)
#define TEST_FE_51(m, a, ...) m(a), TEST_FE_50(m, __VA_ARGS__)
#define TEST_FE_52(m, a, ...) m(a), TEST_FE_51(m, __VA_ARGS__)
#define TEST_FE_53(m, a, ...) m(a), TEST_FE_52(m, __VA_ARGS__)
#define TEST_FE_54(m, a, ...) m(a), TEST_FE_53(m, __VA_ARGS__)
#define TEST_FE_55(m, a, ...) m(a), TEST_FE_54(m, __VA_ARGS__)
#define TEST_FE_56(m, a, ...) m(a), TEST_FE_55(m, __VA_ARGS__)
#define TEST_FE_57(m, a, ...) m(a), TEST_FE_56(m, __VA_ARGS__)
#define TEST_FE_58(m, a, ...) m(a), TEST_FE_57(m, __VA_ARGS__)
#define TEST_FE_59(m, a, ...) m(a), TEST_FE_58(m, __VA_ARGS__)
#define TEST_FE_60(m, a, ...) m(a), TEST_FE_59(m, __VA_ARGS__)
#define TEST_FE_61(m, a, ...) m(a), TEST_FE_60(m, __VA_ARGS__)
#define TEST_FE_62(m, a, ...) m(a), TEST_FE_61(m, __VA_ARGS__)
#define TEST_FE_63(m, a, ...) m(a), TEST_FE_62(m, __VA_ARGS__)
#define TEST_FE_64(m, a, ...) m(a), TEST_FE_63(m, __VA_ARGS__)
#define TEST_NARG_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17,     \
                   _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, _33, \
                   _34, _35, _36, _37, _38, _39, _40, _41, _42, _43, _44, _45, _46, _47, _48, _49, \
                   _50, _51, _52, _53, _54, _55, _56, _57, _58, _59, _60, _61, _62, _63, _64, N,   \
                   ...)                                                                            \
    N
#define TEST_NARG(...)                                                                             \
    TEST_NARG_(__VA_ARGS__, 64, 63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48,    \
               47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, \
               26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,  \
               4, 3, 2, 1)
#define TEST_CAT_(a, b) a##b
#define TEST_CAT(a, b) TEST_CAT_(a, b)
#define TEST_FOREACH_(m, ...) TEST_CAT(TEST_FE_, TEST_NARG(__VA_ARGS__))(m, __VA_ARGS__)

#endif /* DAGGER_TESTS_HARNESS_H */
