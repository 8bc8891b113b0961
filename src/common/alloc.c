/* src/common/alloc.c - counted, hookable allocation with fault injection.
 *
 * DAGGER_FAULT_ALLOC=n (read once, at load) or dagger_fault_alloc(n) makes the n-th allocation
 * from then on return NULL, so tests can prove that DAGGER_ENOMEM reaches fetch;
 * DAGGER_ALLOC_REPORT=1 prints the number of allocations made at exit.
 * SPDX-License-Identifier: MIT
 */
#include "common/alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static dagger_allocator_t hooks;
static int hooks_set;
static _Atomic int frozen;
static _Atomic uint64_t n_allocs, n_frees;
static _Atomic long fault_countdown;

__attribute__((constructor)) static void read_fault_env(void)
{
    const char *s = getenv("DAGGER_FAULT_ALLOC");
    if (s && *s)
        atomic_store(&fault_countdown, strtol(s, NULL, 10));
}

/* DAGGER_ALLOC_REPORT=1: print the number of allocations at exit, so that scripts/fault-sweep
 * knows how many runs a program needs (one per allocation). */
__attribute__((destructor)) static void report_allocs(void)
{
    const char *s = getenv("DAGGER_ALLOC_REPORT");
    if (s && *s == '1')
        fprintf(stderr, "dagger: %llu allocations\n", (unsigned long long)atomic_load(&n_allocs));
}

void dagger_fault_alloc(long n) { atomic_store(&fault_countdown, n > 0 ? n : 0); }

static int should_fail(void)
{
    if (DAGGER_LIKELY(atomic_load_explicit(&fault_countdown, memory_order_relaxed) <= 0))
        return 0;
    return atomic_fetch_sub(&fault_countdown, 1) == 1;
}

int dagger__alloc_note(void)
{
    if (should_fail())
        return 0;
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return 1;
}

void dagger__alloc_note_free(void) { atomic_fetch_add_explicit(&n_frees, 1, memory_order_relaxed); }

void *dagger__malloc(size_t n)
{
    if (!dagger__alloc_note())
        return NULL;
    return hooks_set ? hooks.malloc(n ? n : 1, hooks.ud) : malloc(n ? n : 1);
}

/* libc's calloc when no hooks are set: it knows fresh pages from the kernel are zero, so a large
 * block is not written (a memset faults in every 4 KiB page of it: 25 ms for a 64 MiB chunk,
 * and huge pages advised later no longer apply). The hooks have no calloc: malloc and memset. */
void *dagger__calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    if (!hooks_set) {
        if (!dagger__alloc_note())
            return NULL;
        return n && size ? calloc(n, size) : malloc(1);
    }
    void *p = dagger__malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *dagger__realloc(void *p, size_t n)
{
    if (!p)
        return dagger__malloc(n);
    if (should_fail())
        return NULL;
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_frees, 1, memory_order_relaxed);
    return hooks_set ? hooks.realloc(p, n ? n : 1, hooks.ud) : realloc(p, n ? n : 1);
}

void dagger__free(void *p)
{
    if (!p)
        return;
    atomic_fetch_add_explicit(&n_frees, 1, memory_order_relaxed);
    if (hooks_set)
        hooks.free(p, hooks.ud);
    else
        free(p);
}

char *dagger__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dagger__malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void dagger__alloc_freeze(void) { atomic_store(&frozen, 1); }

int dagger_set_allocator(const dagger_allocator_t *a)
{
    DAGGER_CHECK(!atomic_load(&frozen), DAGGER_EBUSY,
                 "dagger_set_allocator: a context was already opened; set the allocator first");
    if (!a) {
        hooks_set = 0;
        return 0;
    }
    DAGGER_CHECK(a->malloc && a->realloc && a->free, DAGGER_EINVAL,
                 "dagger_set_allocator: malloc, realloc and free must all be set");
    hooks = *a;
    hooks_set = 1;
    return 0;
}

void dagger_alloc_stats(dagger_alloc_stats_t *out)
{
    if (!out)
        return;
    out->allocs = atomic_load(&n_allocs);
    out->frees = atomic_load(&n_frees);
    out->live_bytes_hint = 0;
}
