/* src/pool/fiber.h - stacks for suspended jobs and the context switch between them.
 *
 * Only files of src/pool include this.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_POOL_FIBER_H
#define DAGGER_SRC_POOL_FIBER_H

#include <stddef.h>

struct dagger__fiber {
    void *sp;                   /* saved stack pointer while switched out */
    void *stack;                /* mmap'ed region (guard page first); NULL for a thread's own */
    size_t size;                /* usable bytes above the guard page */
    struct dagger__fiber *next; /* free list */
    void *tsan;                 /* ThreadSanitizer fiber handle */
    unsigned tsan_lives;        /* prepares since tsan was made (fiber.c) */
    void *asan_fake;            /* AddressSanitizer fake-stack save area */
    const void *asan_bottom;    /* stack bounds, for AddressSanitizer */
    size_t asan_size;
#if !defined(__x86_64__)
    void *uctx; /* ucontext_t, where no hand-written switch exists */
#endif
};

/* Map a stack of `size` bytes with a guard page below it. Returns 0 or -1. */
int dagger__fiber_alloc(struct dagger__fiber *f, size_t size);
void dagger__fiber_free(struct dagger__fiber *f);
/* Describe the calling thread's own stack as a fiber (it is the thread's way back out). */
void dagger__fiber_init_thread(struct dagger__fiber *f);
/* Prepare `f` to start entry(arg) on its next switch-in (erasing whatever ran on it before). */
void dagger__fiber_prepare(struct dagger__fiber *f, void (*entry)(void *), void *arg);
/* Save the running context into `from` and continue `to`. `from_dies` says `from` will never
 * be resumed (its stack is recycled), which the sanitizers need to know. Returns when someone
 * switches back to `from`. */
void dagger__fiber_switch(struct dagger__fiber *from, struct dagger__fiber *to, int from_dies);
/* First thing to call after a switch arrives in `self` (fresh entry or return of switch). */
void dagger__fiber_arrived(struct dagger__fiber *self);

#endif /* DAGGER_SRC_POOL_FIBER_H */
