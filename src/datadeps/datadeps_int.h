/* src/datadeps/datadeps_int.h - datadeps internals: memory regions, exact overlap, tracker.
 *
 * Design: an annotation is normalised into a `dagger__ddreg` (a span, a strided tile, or a
 * triangle described column by column). Overlap between two regions is decided exactly:
 * spans by interval arithmetic, tiles of equal stride by arithmetic on the column offset,
 * everything else column span by column span. The bounding interval [lo, hi) only filters.
 *
 * The tracker is pure (no runtime): it numbers tasks 0, 1, ... and for each new task returns
 * the earlier task numbers it must wait for. Each distinct region is an object with its last
 * writer, the readers since that write, and the list of other objects it overlaps (computed
 * once, when the object is first seen, through an interval treap of bounding intervals).
 * Invariants: an object's writer happened after every earlier writer and every reader that
 * was dropped from its readers list, so depending on the writer and the kept readers of each
 * overlapping object orders the new task after every conflicting earlier access.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_DATADEPS_INT_H
#define DAGGER_SRC_DATADEPS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The analysis allocates through dagger's allocator (counted, and failing on purpose in tests). */
#include "common/alloc.h"
#define dd_malloc dagger__malloc
#define dd_calloc dagger__calloc
#define dd_realloc dagger__realloc
#define dd_free dagger__free

enum {
    DD_SPAN = 0,
    DD_TILE,
    DD_UPPER,
    DD_LOWER,
    DD_UUPPER,
    DD_ULOWER,
    DD_DIAG,
};

/* A normalised memory region. Column j (0 <= j < cols) covers, for a tile, the bytes
 * [base + j*stride, base + j*stride + len); for a triangle of n = cols elements of `elsize`
 * bytes, rows [r0(j), r1(j)) of that column. A span is cols = 1, len = its length. */
typedef struct dagger__ddreg {
    uintptr_t lo, hi; /* bounding interval [lo, hi); lo < hi */
    uintptr_t base;
    size_t len;    /* tile and span: bytes per column */
    size_t cols;   /* tile: columns; triangle: n */
    size_t stride; /* bytes from a column to the next */
    uint32_t elsize;
    uint8_t kind; /* DD_* */
} dagger__ddreg_t;

/* Normalise an annotation (see dagger_ddarg_t). Returns 1 for a region, 0 for an empty one
 * (nothing to order), or DAGGER_EINVAL with a message in `err` (cap bytes). */
int dagger__ddreg_make(dagger__ddreg_t *r, int shape, const void *ptr, size_t bytes, size_t rows,
                       size_t cols, size_t ld, size_t elsize, char *err, size_t cap);
/* The byte span of column j: false when that column is empty. */
bool dagger__ddreg_col(const dagger__ddreg_t *r, size_t j, uintptr_t *a, uintptr_t *b);
/* Whether two regions share at least one byte: exact. */
bool dagger__ddreg_overlap(const dagger__ddreg_t *x, const dagger__ddreg_t *y);
/* Whether two normalised regions are the same description. */
bool dagger__ddreg_equal(const dagger__ddreg_t *x, const dagger__ddreg_t *y);

/* ------------------------------------------------------------------ tracker */

#define DD_NONE UINT32_MAX

typedef struct dd_obj dd_obj_t;

typedef struct dagger__ddtracker {
    dd_obj_t **slots; /* open-addressed hash of objects by region */
    size_t nslots, nobjs;
    dd_obj_t *root;  /* interval treap by lo, augmented with the subtree's max hi */
    uint32_t *stamp; /* per task: last task number that collected it as a dependency */
    size_t nstamp;
    dd_obj_t **scratch; /* query results */
    size_t nscratch, capscratch;
    /* Whether task `id` finished without error (dependencies on it may be dropped); NULL =
     * never. */
    bool (*done_ok)(void *ud, uint32_t id);
    void *ud;
    uint64_t edges;
} dagger__ddtracker_t;

/* One access of a task: a region and whether it reads and/or writes; a commute access reads
 * and writes, unordered against the other commute accesses of the same region. */
typedef struct dagger__ddaccess {
    dagger__ddreg_t reg;
    bool read, write, commute;
} dagger__ddaccess_t;

void dagger__ddtracker_init(dagger__ddtracker_t *t);
void dagger__ddtracker_deinit(dagger__ddtracker_t *t);
/* Register task `id` (ids are 0, 1, 2, ... in spawn order) with its accesses. Writes into
 * `*deps` (grown with dd_realloc, capacity `*cap`) the distinct earlier tasks it must
 * wait for and returns their number, or DAGGER_ENOMEM (the tracker is unchanged then). */
long dagger__ddtracker_add(dagger__ddtracker_t *t, uint32_t id, const dagger__ddaccess_t *acc,
                           size_t nacc, uint32_t **deps, size_t *cap);
/* The largest end of a known region that contains byte `p`, or 0 when none does. */
uintptr_t dagger__ddtracker_extent(dagger__ddtracker_t *t, uintptr_t p);

/* ------------------------------------------------------------------ chunk accesses (chunks.c) */

#include "dagger.h"
#include "dagger/chunk.h"
#include "dagger/datadeps.h"

/* A region's copies of chunks read on another rank, and the versions of its chunks. */
struct dagger__ddchunks {
    struct ddfetch *fetches;
    size_t nfetches, capfetches;
    struct ddversion *versions;
    size_t nversions, capversions;
    uint64_t fetched; /* arguments replaced by a copy */
};

/* Normalise a DAGGER_SHAPE_CHUNK argument into `acc`. Returns 0 or DAGGER_EINVAL (err set). */
int dagger__dd_chunk_access(const dagger_ddarg_t *a, dagger__ddaccess_t *acc, char *err,
                            size_t cap);
/* After the analysis of a task of priority `prio`: choose its rank, count the writes, and
 * replace in `vals` each chunk it reads from another rank by a copy task (which waits for the
 * chunk's last writer and runs above both). Returns 0, DAGGER_ESCOPE (it writes data of two ranks),
 * DAGGER_ENOMEM (err set). */
int dagger__dd_chunks_place(struct dagger__ddchunks *cc, dagger_ctx_t *ctx,
                            const dagger_ddarg_t *argv, size_t argc, dagger_value_t *vals, int prio,
                            char *err, size_t cap);
/* The task placed last was spawned as `t` (borrowed: the region holds it): it is the writer of
 * the chunks it writes, which their next copies wait for. */
void dagger__dd_chunks_spawned(struct dagger__ddchunks *cc, const dagger_ddarg_t *argv, size_t argc,
                               dagger_task_t *t);
/* At the region's end, after its tasks: drop the copies. */
void dagger__dd_chunks_fini(struct dagger__ddchunks *cc);

#endif /* DAGGER_SRC_DATADEPS_INT_H */
