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
void *dagger__obj_alloc(size_t n);
void dagger__obj_free(void *p, size_t n);

#endif /* DAGGER_SRC_ALLOC_H */
