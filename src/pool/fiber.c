/* src/pool/fiber.c - context switch and stacks for suspended jobs.
 *
 * Hand-written because the switch is on the path of every blocked fetch: swapcontext makes a
 * signal-mask system call each time, this saves six registers and the FP control words.
 * x86-64 SysV has the hand-written switch; other targets fall back to ucontext.
 * Design: a fresh fiber starts in a trampoline that calls entry(arg); entry never returns.
 * Sanitizers: AddressSanitizer and ThreadSanitizer are told about every switch, otherwise they
 * take the other stack for a corruption or a race.
 * SPDX-License-Identifier: MIT
 */
#include "pool/fiber.h"

#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/common.h"
#include "pool/pool.h" /* dagger__self_tls */

#if defined(DAGGER_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(DAGGER_TSAN)
#include <sanitizer/tsan_interface.h>
#define TSAN_FIBER_REUSE 64
#endif

#if defined(__x86_64__)
void dagger__ctx_swap(void **save_sp, void *new_sp);
void dagger__ctx_trampoline(void);
__asm__(".text\n"
        ".globl dagger__ctx_swap\n"
        ".hidden dagger__ctx_swap\n"
        ".type dagger__ctx_swap,@function\n"
        "dagger__ctx_swap:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size dagger__ctx_swap,.-dagger__ctx_swap\n"
        ".globl dagger__ctx_trampoline\n"
        ".hidden dagger__ctx_trampoline\n"
        ".type dagger__ctx_trampoline,@function\n"
        "dagger__ctx_trampoline:\n"
        "    movq %r13, %rdi\n"
        "    callq *%r12\n"
        "    ud2\n"
        ".size dagger__ctx_trampoline,.-dagger__ctx_trampoline\n");
#else
#include <ucontext.h>
#endif

int dagger__fiber_alloc(struct dagger__fiber *f, size_t size)
{
    memset(f, 0, sizeof *f);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) & ~(page - 1);
    if (!dagger__alloc_note())
        return -1;
    void *m = mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    mprotect(m, page, PROT_NONE); /* guard page: an overflow faults instead of corrupting */
    f->stack = m;
    f->size = size;
#if !defined(__x86_64__)
    f->uctx = dagger__malloc(sizeof(ucontext_t));
    if (!f->uctx) {
        munmap(m, size + page);
        return -1;
    }
#endif
    return 0;
}

/* The lowest usable byte of a fiber's stack (above its guard page). */
static char *stack_base(struct dagger__fiber *f)
{
    return (char *)f->stack + (size_t)sysconf(_SC_PAGESIZE);
}

void dagger__fiber_free(struct dagger__fiber *f)
{
    if (!f->stack)
        return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
#if defined(DAGGER_ASAN)
    /* The frames a stack's last job abandoned (a fiber never returns) leave poisoned shadow
     * behind, which would outlive the mapping: whatever the address range is mapped for next
     * (LeakSanitizer's own buffers at exit, in mpi.nested_fib_across_ranks at -O1) then reads
     * as a stack-buffer-underflow. */
    ASAN_UNPOISON_MEMORY_REGION(stack_base(f), f->size);
#endif
    munmap(f->stack, f->size + page);
    dagger__alloc_note_free();
#if defined(DAGGER_TSAN)
    if (f->tsan)
        __tsan_destroy_fiber(f->tsan);
#endif
#if !defined(__x86_64__)
    dagger__free(f->uctx);
#endif
    f->stack = NULL;
}

void dagger__fiber_init_thread(struct dagger__fiber *f)
{
    memset(f, 0, sizeof *f);
#if defined(DAGGER_TSAN)
    f->tsan = __tsan_get_current_fiber();
#endif
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *addr = NULL;
        size_t size = 0;
        pthread_attr_getstack(&attr, &addr, &size);
        f->asan_bottom = addr;
        f->asan_size = size;
        pthread_attr_destroy(&attr);
    }
#if !defined(__x86_64__)
    static __thread ucontext_t own;
    f->uctx = &own;
#endif
}

#if defined(__x86_64__)
/* Where a fresh stack's top goes, to a byte in a page: just below the page offset of the
 * thread-local block of the module that holds this code. A load of thread-local data (the task a
 * spawn runs in, the object caches) issued right after stores to the stack at an address with
 * the same low 12 bits waits for those stores (4 KiB aliasing), and a flat loop of spawns on a
 * worker read 17.6 to 19.1 ns a task by where its fiber's stack top fell in its page alone
 * (core.empty at t=2, bench/RESULTS.md 2026-12-06 09:50; unrelated changes of a stack frame's
 * size moved it by 4-6 %). From just below the block, the top 4 KiB less the block's size of a
 * stack never meet it. The block's offset from a variable of it, through dl_iterate_phdr, once;
 * every worker's block sits at the same offset in its page (above its stack, below its thread
 * descriptor). */
static _Atomic intptr_t tls_delta = INTPTR_MIN; /* &dagger__self_tls - the module's block */

static int tls_block_of(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t code = (uintptr_t)&dagger__fiber_prepare;
    bool mine = false;
    for (int i = 0; i < info->dlpi_phnum && !mine; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        mine = ph->p_type == PT_LOAD && code >= lo && code < lo + ph->p_memsz;
    }
    if (!mine)
        return 0;
    if (info->dlpi_tls_data)
        *(uintptr_t *)arg = (uintptr_t)info->dlpi_tls_data;
    return 1;
}

static uintptr_t stack_top(char *lo, size_t size)
{
    uintptr_t top = (uintptr_t)(lo + size);
    intptr_t delta = atomic_load_explicit(&tls_delta, memory_order_relaxed);
    if (delta == INTPTR_MIN) {
        uintptr_t block = 0;
        dl_iterate_phdr(tls_block_of, &block);
        delta = block ? (intptr_t)((uintptr_t)&dagger__self_tls - block) : INTPTR_MAX;
        atomic_store_explicit(&tls_delta, delta, memory_order_relaxed);
    }
    if (delta == INTPTR_MAX) /* no block found: the page's end, as before */
        return top & ~(uintptr_t)15;
    uintptr_t want = ((uintptr_t)&dagger__self_tls - (uintptr_t)delta - 64) & 4095;
    uintptr_t at = top & 4095;
    top -= (at - want) & 4095; /* at most a page less, lo + size - 4095 at the lowest */
    return top & ~(uintptr_t)15;
}
#endif

void dagger__fiber_prepare(struct dagger__fiber *f, void (*entry)(void *), void *arg)
{
    char *lo = stack_base(f);
#if defined(DAGGER_ASAN)
    /* Frames abandoned on a recycled stack leave poisoned shadow behind. */
    ASAN_UNPOISON_MEMORY_REGION(lo, f->size);
#endif
    f->asan_bottom = lo;
    f->asan_size = f->size;
    f->asan_fake = NULL;
#if defined(DAGGER_TSAN)
    /* A ThreadSanitizer fiber is kept for TSAN_FIBER_REUSE lives of its stack, then made anew:
     * making one clears TSan's state for a thread (a stream of one-slot edges moved a value in
     * about 5 ms under TSan, against 16 us without it, nearly all of it there), but TSan's
     * shadow call stack of a reused fiber keeps the frames its last life abandoned (a
     * suspended job's worker loop), and past 65536 of them TSan aborts. Whoever recycles a
     * stack has seen its last job end, so the fiber's history holds nothing the next job could
     * not see anyway. */
    if (f->tsan && ++f->tsan_lives >= TSAN_FIBER_REUSE) {
        __tsan_destroy_fiber(f->tsan);
        f->tsan = NULL;
    }
    if (!f->tsan) {
        f->tsan = __tsan_create_fiber(0);
        f->tsan_lives = 0;
    }
#endif
#if defined(__x86_64__)
    uintptr_t top = stack_top(lo, f->size);
    uint64_t *ret = (uint64_t *)(top - 24); /* 8 mod 16: after `ret`, rsp is 16-aligned */
    ret[0] = (uint64_t)(uintptr_t)dagger__ctx_trampoline;
    ret[1] = 0;
    uint64_t *sp = ret - 7;
    uint32_t *csr = (uint32_t *)sp;
    csr[0] = 0x1F80;                    /* default MXCSR */
    csr[1] = 0x037F;                    /* default x87 control word */
    sp[1] = 0;                          /* r15 */
    sp[2] = 0;                          /* r14 */
    sp[3] = (uint64_t)(uintptr_t)arg;   /* r13 */
    sp[4] = (uint64_t)(uintptr_t)entry; /* r12 */
    sp[5] = 0;                          /* rbx */
    sp[6] = 0;                          /* rbp */
    f->sp = sp;
#else
    ucontext_t *uc = f->uctx;
    getcontext(uc);
    uc->uc_stack.ss_sp = lo;
    uc->uc_stack.ss_size = f->size;
    uc->uc_link = NULL;
    /* makecontext passes ints: split the two pointers. */
    makecontext(uc, (void (*)(void))entry, 1, arg);
#endif
}

void dagger__fiber_switch(struct dagger__fiber *from, struct dagger__fiber *to, int from_dies)
{
#if defined(DAGGER_ASAN)
    __sanitizer_start_switch_fiber(from_dies ? NULL : &from->asan_fake, to->asan_bottom,
                                   to->asan_size);
#else
    (void)from_dies;
#endif
#if defined(DAGGER_TSAN)
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
#if defined(__x86_64__)
    dagger__ctx_swap(&from->sp, to->sp);
#else
    swapcontext((ucontext_t *)from->uctx, (ucontext_t *)to->uctx);
#endif
}

void dagger__fiber_arrived(struct dagger__fiber *self)
{
#if defined(DAGGER_ASAN)
    const void *bottom = NULL;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(self->asan_fake, &bottom, &size);
    (void)bottom;
    (void)size;
#else
    (void)self;
#endif
}
