/* src/value/value.h - value kinds below core and net: one ops table per kind, ownership, codec.
 *
 * Design: every kind has an entry in one table (name, own, drop, reference id); the scalar and
 * byte kinds are built in, the handle kinds (task, chunk, shard) are filled by the layer that
 * owns the handle (core, mem) when it is loaded. Code that copies, frees or encodes a value
 * asks the table; nothing else switches on kinds.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_VALUE_H
#define DAGGER_SRC_VALUE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dagger.h"

struct dagger__kind_ops {
    const char *name;
    /* Take what the holder keeps: copy bytes or retain a handle; sets DAGGER_VALUE_OWNED.
     * NULL: the kind holds nothing (scalars, local pointers). Returns 0 or DAGGER_ENOMEM. */
    int (*own)(dagger_value_t *v);
    /* Give back what own took (called only for DAGGER_VALUE_OWNED values). */
    void (*drop)(dagger_value_t *v);
    /* Handle kinds: the (id, rank) of the handle, for the encoding of a reference. */
    void (*ref)(const dagger_value_t *v, uint64_t *id, uint32_t *rank);
};

/* Fill the ops of a handle kind (DAGGER_KIND_TASK, _CHUNK, _SHARD). Called from a constructor
 * of the owning layer, before any value of the kind exists. */
void dagger__value_register_kind(int kind, const struct dagger__kind_ops *ops);

/* True for kinds whose values are handles (a reference count, an id that can be encoded). */
bool dagger__value_is_handle(int kind);

/* True for kinds whose values hold something (bytes or a handle): the inline test that keeps
 * scalars off the ownership calls. */
static inline bool dagger__value_holds(int kind)
{
    return kind >= DAGGER_KIND_STR && kind != DAGGER_KIND_PTR;
}

/* *dst = *src, as two 8-byte words: for a value a task body has just written (`*out =
 * dagger_i64(x)` is two 8-byte stores), a 16-byte load of it cannot take its bytes from the
 * store buffer and waits for both stores to reach the cache (a store-forwarding stall, 7 % of
 * main's time in core.nested at t=1 under perf). The empty asm keeps the compiler from fusing
 * the two loads into one again. *dst is written as two words too: a 16-byte store built from
 * the two registers (movq, movq, punpcklqdq) made core.empty at t=1 40 ns a task instead of
 * 25 on this host (bench/RESULTS.md, 2026-12-05 12:55). */
static inline void dagger__value_copy_fresh(dagger_value_t *dst, const dagger_value_t *src)
{
    _Static_assert(sizeof(dagger_value_t) == 16, "a value is two words");
    uint64_t lo, hi;
    memcpy(&lo, src, 8);
    memcpy(&hi, (const char *)src + 8, 8);
    __asm__("" : "+r"(lo), "+r"(hi));
    memcpy(dst, &lo, 8);
    memcpy((char *)dst + 8, &hi, 8);
}

/* Make `v` own its bytes or its handle reference. Returns 0 or DAGGER_ENOMEM. */
int dagger__value_own(dagger_value_t *v);
/* DAGGER_E2BIG with a message starting with `what` when `v` is a str/blob of 4 GiB or more. */
int dagger__value_size_check(const dagger_value_t *v, const char *what);
/* Free what an owned value holds (nothing for a borrowed one) and reset it to nil. */
void dagger__value_drop(dagger_value_t *v);

#endif /* DAGGER_SRC_VALUE_H */
