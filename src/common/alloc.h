/* src/common/alloc.h - the one internal allocator: hooks, counters, fault injection, pools.
 *
 * Every allocation of dagger goes through dagger__malloc & co (counted, hookable, and able to
 * fail on purpose for tests) or through the size-class object pools on top of them, which
 * keep per-thread caches so that steady-state spawning allocates nothing.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_ALLOC_H
#define DAGGER_SRC_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *dagger__malloc(size_t n);
void *dagger__calloc(size_t n, size_t size);
void *dagger__realloc(void *p, size_t n);
void dagger__free(void *p);
char *dagger__strdup(const char *s);
/* Count an allocation made outside malloc (an mmap'ed stack); false when fault injection
 * says this allocation must fail. */
int dagger__alloc_note(void);
void dagger__alloc_note_free(void);
/* Marks that a context was opened: the allocator hooks can no longer change. */
void dagger__alloc_freeze(void);

/* Object pools: blocks of up to DAGGER__OBJ_MAX bytes from per-thread caches; larger sizes
 * fall through to dagger__malloc. The size given to free must equal the size given to alloc. */
#define DAGGER__OBJ_MAX 4096
#define DAGGER__OBJ_NCLASS 9 /* 32 .. 4096 bytes: powers of two, and 320 */
#define DAGGER__OBJ_BATCH 64 /* objects moved between a thread's list and the global stacks */
void *dagger__obj_alloc_any(size_t n);
void dagger__obj_free_any(void *p, size_t n);

/* The calling thread's free lists (objpool.c), one per size class: a free object's first word
 * links it to the next. Only the inline fast paths below and objpool.c touch them. */
struct dagger__obj_cache {
    void *head[DAGGER__OBJ_NCLASS];
    uint32_t count[DAGGER__OBJ_NCLASS];
    int registered;
};
extern __thread __attribute__((tls_model("initial-exec"))) struct dagger__obj_cache dagger__obj_tc;
/* objpool.c: the list of class `c` is long: hand a batch of it to the global stacks. */
void dagger__obj_spill(int c);

/* Classes 32, 64, 128, 256, 320, 512, ..., 4096 bytes. 320 (five lines) is the task record's
 * size: in the class of 512 each record took 8 lines for its 5, and the records' first lines
 * fell in 8 of the 64 sets of L1 (stride 512); at an odd number of lines they spread over every
 * set, in 5/8 of the memory. Rows with many records alive at once gained: core.tree depth 18
 * 18-20 %, core.parfor_range at grain 1 20-24 % (bench/RESULTS.md, 2026-12-04). */
static inline int dagger__obj_class(size_t n)
{
    if (n <= 32)
        return 0;
    if (n > 256 && n <= 320)
        return 4;
    int c = (int)(64 - __builtin_clzll((unsigned long long)(n - 1))) - 5;
    return c >= 4 ? c + 1 : c;
}

static inline size_t dagger__obj_class_size(int c)
{
    return c < 4 ? (size_t)32 << c : c == 4 ? 320 : (size_t)32 << (c - 1);
}

/* A size known at compile time (a record of a fixed type) takes the class's list inline; the
 * rest, an empty list, and builds with AddressSanitizer (which poisons free objects) call
 * objpool.c. */
static inline void *dagger__obj_alloc(size_t n)
{
#if !defined(DAGGER_ASAN)
    if (__builtin_constant_p(n) && n <= DAGGER__OBJ_MAX) {
        struct dagger__obj_cache *tc = &dagger__obj_tc;
        int c = dagger__obj_class(n);
        void **o = tc->head[c];
        if (__builtin_expect(o != NULL, 1)) {
            tc->head[c] = *o;
            tc->count[c]--;
            return o;
        }
    }
#endif
    return dagger__obj_alloc_any(n);
}

/* Objects of class `c` a thread keeps before it hands a batch over: 4 batches of the small
 * classes (up to 512 bytes: 80 KiB of task records at most, 128 KiB of the largest of them), 2
 * of the others. A thread that makes and frees more than 2 batches of records per round
 * (core.nested: 140 records from main) spilled a batch and took it back each round, under the
 * global lock: 13 instructions a task (callgrind, bench/RESULTS.md 2026-12-04 19:00). */
static inline uint32_t dagger__obj_keep(int c)
{
    return c <= 5 ? 4 * DAGGER__OBJ_BATCH : 2 * DAGGER__OBJ_BATCH;
}

static inline void dagger__obj_free(void *p, size_t n)
{
#if !defined(DAGGER_ASAN)
    if (__builtin_constant_p(n) && n <= DAGGER__OBJ_MAX && p) {
        struct dagger__obj_cache *tc = &dagger__obj_tc;
        int c = dagger__obj_class(n);
        *(void **)p = tc->head[c];
        tc->head[c] = p;
        if (__builtin_expect(++tc->count[c] > dagger__obj_keep(c), 0))
            dagger__obj_spill(c);
        return;
    }
#endif
    dagger__obj_free_any(p, n);
}

#endif /* DAGGER_SRC_ALLOC_H */
