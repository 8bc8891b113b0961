/* src/sched/cost.h - the cost model: run-time history per (function, processor kind, size
 * bucket), and the choice of a place (a rank) by estimated finish time.
 *
 * Design: see cost.c. The history is process-wide (like a performance model file); the loads
 * and links that a choice weighs belong to the caller (a ranks backend keeps one per peer).
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_SCHED_COST_H
#define DAGGER_SRC_SCHED_COST_H

#include <stddef.h>
#include <stdint.h>

#include "dagger.h"

/* The EWMA weight of a new sample, and the clamp of a sample to [mean / k, mean * k] once the
 * history holds DAGGER__COST_WARM samples. */
#define DAGGER__COST_ALPHA 0.25
#define DAGGER__COST_CLAMP 4.0
#define DAGGER__COST_WARM 3
/* A move must beat staying by at least this (seconds), and by this fraction of the task. */
#define DAGGER__COST_MARGIN_MIN 100e-6
#define DAGGER__COST_MARGIN_FRAC 0.10
/* Until measured: the cost of one move to a peer (seconds) and its bandwidth (bytes/s). */
#define DAGGER__COST_LATENCY 100e-6
#define DAGGER__COST_BANDWIDTH 1e9

/* The size bucket of `bytes` of arguments: 0 for none, then one bucket per factor of 4. */
int dagger__cost_bucket(size_t bytes);
/* The bytes of data in `v[0..n)` (chunks, strings, blobs; 0 for scalars and handles). */
size_t dagger__cost_bytes(const dagger_value_t *v, size_t n);
/* Record that `fn` ran `seconds` on processor kind `kind` with `bytes` of arguments.
 * Thread safety: any thread. */
void dagger__cost_record(const void *fn, int kind, size_t bytes, double seconds);
/* The expected run time of `fn` (kind, bytes) into *out. Returns the number of samples behind
 * it (0: unknown, *out untouched). Thread safety: any thread. */
int dagger__cost_expected(const void *fn, int kind, size_t bytes, double *out);
/* Forget every history (tests). */
void dagger__cost_reset(void);

/* One candidate place of a task: its backlog and the link to it from the deciding place. */
struct dagger__cost_target {
    double backlog;   /* seconds of work placed there and not finished */
    int ntasks;       /* tasks placed there and not finished */
    int nthreads;     /* its workers (<= 0 counts as 1) */
    double latency;   /* seconds per move there (ignored for the local place) */
    double bandwidth; /* bytes/s to it (ignored for the local place) */
    int allowed;      /* 0: the task may not go there */
};
/* The estimated finish time at `t` of a task of `expected` seconds with `bytes` to move there
 * (`local`: no move). */
double dagger__cost_estimate(const struct dagger__cost_target *t, double expected, size_t bytes,
                             int local);
/* Choose among targets[0..n) for a task of `expected` seconds (< 0: unknown) with `bytes` of
 * inputs; `local` is the deciding place. The task stays local unless another place finishes
 * it earlier by the margin; among equal others the first after `local` in ring order wins.
 * Returns the index chosen. */
int dagger__cost_choose(const struct dagger__cost_target *targets, int n, int local,
                        double expected, size_t bytes);
/* Fold a measured move of `bytes` in `seconds` into the link's latency (under 64 KiB) or
 * bandwidth: an EWMA, the sample clamped to 4x either way. */
void dagger__cost_link_learn(struct dagger__cost_target *t, size_t bytes, double seconds);

#endif /* DAGGER_SRC_SCHED_COST_H */
