/* src/sched/cost.c - the cost model: run-time history, and the choice of a place by estimated
 * finish time.
 *
 * Design: a history entry per (function, processor kind, size bucket of the arguments) holds
 * the shortest of its first DAGGER__COST_WARM run times (first runs carry one-off costs: an
 * OpenCL kernel's build, first touches of memory), then an exponentially weighted mean of the
 * later ones (weight DAGGER__COST_ALPHA), each clamped to [mean / 4, mean * 4], so one stalled
 * run (a page fault storm, a preempted thread) does not swing the estimate. Buckets grow by a
 * factor of 4 in bytes.
 *
 * The table is process-wide and fixed-size: 64 parts of 64 slots (open addressing within a
 * part), each part under its own mutex, so workers recording different functions rarely meet.
 * It is touched at each task end and spawn in a job of several ranks, and in one process only
 * by tasks with device bodies (their CPU and device runs, and the choice between them,
 * place.c). A full part records nothing more; estimates then fall back to
 * dagger_task_opts.expected_time.
 *
 * A placement across ranks estimates, for each allowed place, the finish time = the wait for a
 * worker (0 while fewer tasks than workers are placed there, else backlog / workers) + the
 * expected run time + for another place the move (latency + bytes / bandwidth). The task stays
 * local unless the best other place beats local by a margin (max(100 us, 10 % of the task)):
 * moving costs more than the estimate shows (a result to send back, a progress thread to wake).
 *
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "dagger/chunk.h"
#include "sched/cost.h"

#define NPARTS 64
#define PART_SLOTS 64

struct entry {
    const void *fn; /* NULL: free */
    int kind, bucket;
    uint32_t count;
    double mean;
};

static struct part {
    pthread_mutex_t lock;
    struct entry slots[PART_SLOTS]; /* guarded by lock */
} parts[NPARTS];
static pthread_once_t parts_once = PTHREAD_ONCE_INIT;

static void parts_init(void)
{
    for (int i = 0; i < NPARTS; i++)
        pthread_mutex_init(&parts[i].lock, NULL);
}

int dagger__cost_bucket(size_t bytes)
{
    if (bytes == 0)
        return 0;
    int bits = 64 - __builtin_clzll((unsigned long long)bytes); /* 1..64 */
    return 1 + (bits - 1) / 2;
}

size_t dagger__cost_bytes(const dagger_value_t *v, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].kind == DAGGER_KIND_CHUNK && v[i].u.c)
            total += dagger_chunk_size(v[i].u.c);
        else if (v[i].kind == DAGGER_KIND_STR || v[i].kind == DAGGER_KIND_BLOB)
            total += v[i].len;
    }
    return total;
}

static uint64_t hash(const void *fn, int kind, int bucket)
{
    uint64_t h = (uint64_t)(uintptr_t)fn * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)(kind * 131 + bucket) * 0xC2B2AE3D27D4EB4Full;
    return h ^ (h >> 29);
}

/* The part of the key, locked. */
static struct part *lock_part(uint64_t h)
{
    pthread_once(&parts_once, parts_init);
    struct part *p = &parts[(h >> 40) % NPARTS];
    pthread_mutex_lock(&p->lock);
    return p;
}

/* The entry of the key in its part, or a free slot for it (NULL: part full). Caller holds the
 * part's lock. */
static struct entry *find(struct part *p, uint64_t h, const void *fn, int kind, int bucket)
{
    uint32_t i = (uint32_t)(h % PART_SLOTS);
    for (int probe = 0; probe < PART_SLOTS; probe++, i = (i + 1) % PART_SLOTS) {
        struct entry *e = &p->slots[i];
        if (!e->fn || (e->fn == fn && e->kind == kind && e->bucket == bucket))
            return e;
    }
    return NULL;
}

void dagger__cost_record(const void *fn, int kind, size_t bytes, double seconds)
{
    if (!fn || !(seconds >= 0.0) || !isfinite(seconds))
        return;
    int bucket = dagger__cost_bucket(bytes);
    uint64_t h = hash(fn, kind, bucket);
    struct part *p = lock_part(h);
    struct entry *e = find(p, h, fn, kind, bucket);
    if (e && !e->fn) {
        e->fn = fn;
        e->kind = kind;
        e->bucket = bucket;
        e->count = 0;
    }
    if (e) {
        if (e->count == 0 || (e->count < DAGGER__COST_WARM && seconds < e->mean)) {
            e->mean = seconds;
        } else if (e->count >= DAGGER__COST_WARM) {
            double x = seconds;
            if (x > e->mean * DAGGER__COST_CLAMP)
                x = e->mean * DAGGER__COST_CLAMP;
            if (x < e->mean / DAGGER__COST_CLAMP)
                x = e->mean / DAGGER__COST_CLAMP;
            e->mean += DAGGER__COST_ALPHA * (x - e->mean);
        }
        if (e->count < UINT32_MAX)
            e->count++;
    }
    pthread_mutex_unlock(&p->lock);
}

int dagger__cost_expected(const void *fn, int kind, size_t bytes, double *out)
{
    int bucket = dagger__cost_bucket(bytes), n = 0;
    uint64_t h = hash(fn, kind, bucket);
    struct part *p = lock_part(h);
    struct entry *e = find(p, h, fn, kind, bucket);
    if (e && e->fn && e->count) {
        *out = e->mean;
        n = e->count > INT32_MAX ? INT32_MAX : (int)e->count;
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

void dagger__cost_reset(void)
{
    pthread_once(&parts_once, parts_init);
    for (int i = 0; i < NPARTS; i++) {
        pthread_mutex_lock(&parts[i].lock);
        memset(parts[i].slots, 0, sizeof parts[i].slots);
        pthread_mutex_unlock(&parts[i].lock);
    }
}

double dagger__cost_estimate(const struct dagger__cost_target *t, double expected, size_t bytes,
                             int local)
{
    int workers = t->nthreads > 0 ? t->nthreads : 1;
    double wait = t->ntasks < workers ? 0.0 : t->backlog / workers;
    double move = 0.0;
    if (!local)
        move = t->latency + (t->bandwidth > 0 ? (double)bytes / t->bandwidth : 0.0);
    return wait + expected + move;
}

int dagger__cost_choose(const struct dagger__cost_target *targets, int n, int local,
                        double expected, size_t bytes)
{
    if (!(expected >= 0.0) || n <= 1)
        return local; /* unknown: stealing corrects a wrong guess more cheaply than a move */
    double here = targets[local].allowed
                      ? dagger__cost_estimate(&targets[local], expected, bytes, 1)
                      : INFINITY;
    int best = -1;
    double best_cost = INFINITY;
    for (int d = 1; d < n; d++) { /* ring order from the next place: ties spread evenly */
        int k = (local + d) % n;
        if (!targets[k].allowed)
            continue;
        double c = dagger__cost_estimate(&targets[k], expected, bytes, 0);
        if (c < best_cost) {
            best_cost = c;
            best = k;
        }
    }
    double margin = fmax(DAGGER__COST_MARGIN_MIN, DAGGER__COST_MARGIN_FRAC * expected);
    if (best >= 0 && (isinf(here) || best_cost + margin < here))
        return best;
    return local;
}

/* A sample within [mean / 4, mean * 4] (one preempted transfer does not swing a link). */
static double clamp(double x, double mean)
{
    if (!(mean > 0))
        return x;
    return x > mean * DAGGER__COST_CLAMP   ? mean * DAGGER__COST_CLAMP
           : x < mean / DAGGER__COST_CLAMP ? mean / DAGGER__COST_CLAMP
                                           : x;
}

void dagger__cost_link_learn(struct dagger__cost_target *t, size_t bytes, double seconds)
{
    if (!(seconds > 0.0) || !isfinite(seconds))
        return;
    if (bytes < 64 * 1024) { /* small: the time is the latency */
        t->latency += DAGGER__COST_ALPHA * (clamp(seconds, t->latency) - t->latency);
        return;
    }
    double s = seconds - t->latency;
    if (s < seconds / 2)
        s = seconds / 2;
    t->bandwidth += DAGGER__COST_ALPHA * (clamp((double)bytes / s, t->bandwidth) - t->bandwidth);
}
