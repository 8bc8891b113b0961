/* src/common/common.h - shared helpers: branch hints, checks, futexes, clocks, messages.
 *
 * No dagger semantics live here; every other layer may include it.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_COMMON_H
#define DAGGER_SRC_COMMON_H

#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dagger.h"

#define DAGGER_LIKELY(x) __builtin_expect(!!(x), 1)
#define DAGGER_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define DAGGER_CACHELINE 64
#define DAGGER_NOINLINE __attribute__((noinline, noipa))
/* Thread-locals on hot paths: the initial-exec model is one %fs-relative access, where the
 * default model of position-independent code calls __tls_get_addr. */
#define DAGGER_TLS __thread __attribute__((tls_model("initial-exec")))
#define DAGGER_CONTAINER_OF(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* Abort with a message: only for corrupted internal state, never for user input. */
_Noreturn void dagger__panic(const char *fmt, ...) DAGGER_PRINTF(1, 2);

#ifdef NDEBUG
#define DAGGER_ASSERT(c) ((void)0)
#else
#define DAGGER_ASSERT(c)                                                                           \
    ((c) ? (void)0 : dagger__panic("%s:%d: assertion failed: %s", __FILE__, __LINE__, #c))
#endif

/* Misuse of the API that cannot be reported as an error (a handle released once too often or
 * used after its last release, a spawn on a closed context): debug builds abort with a message
 * naming it; release builds check nothing and pay nothing. */
_Noreturn void dagger__misuse(const char *fmt, ...) DAGGER_PRINTF(1, 2);
#ifdef NDEBUG
#define DAGGER_MISUSE(c, ...) ((void)0)
#else
#define DAGGER_MISUSE(c, ...) ((c) ? (void)0 : dagger__misuse(__VA_ARGS__))
#endif

/* A size or count with an optional k/m/g/t suffix (powers of 1024), e.g. "4G" (size.c).
 * Returns 0, or DAGGER_EINVAL for anything else or an overflow (`*out` untouched). */
int dagger__parse_size(const char *s, size_t *out);

/* Record `code` and a message as the calling thread's last error; returns `code`. */
int dagger__set_errmsg(int code, const char *fmt, ...) DAGGER_PRINTF(2, 3);
/* Copy `msg` as the last error message; returns `code`. */
int dagger__set_errmsg_str(int code, const char *msg);

/* User-input check: always on; returns the code from the calling function. */
#define DAGGER_CHECK(cond, code, ...)                                                              \
    do {                                                                                           \
        if (DAGGER_UNLIKELY(!(cond)))                                                              \
            return dagger__set_errmsg((code), __VA_ARGS__);                                        \
    } while (0)

static inline void dagger__futex_wait(_Atomic uint32_t *addr, uint32_t val, long timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000L;
        ts.tv_nsec = timeout_ns % 1000000000L;
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, tp, NULL, 0);
}

static inline void dagger__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void dagger__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A full (store-load) fence. On x86 a locked no-op on the stack costs less than mfence. */
static inline void dagger__fence_seq_cst(void)
{
#if defined(DAGGER_TSAN)
    /* ThreadSanitizer does not model fences: a seq_cst read-modify-write is a locked
     * instruction, so the hardware ordering is the same, and the tool accepts it. */
    static _Atomic int fence_word;
    atomic_fetch_add_explicit(&fence_word, 0, memory_order_seq_cst);
#elif defined(__x86_64__)
    __asm__ __volatile__("lock orq $0, (%%rsp)" ::: "memory", "cc");
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

static inline uint64_t dagger__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* vsnprintf into a fresh dagger__malloc'ed string; NULL when out of memory. */
char *dagger__vasprintf(const char *fmt, va_list ap);
char *dagger__asprintf(const char *fmt, ...) DAGGER_PRINTF(1, 2);

#endif /* DAGGER_SRC_COMMON_H */
