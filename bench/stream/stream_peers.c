/* bench/stream/stream_peers.c - the peers of stream_dagger.c: a hand-written pthread pipeline
 * (three threads, mutex + condvar bounded queues) and the raw SPSC ring bound (one producer
 * thread, one consumer thread, one lock-free ring with cached indices).
 * Prints RESULT|stream_pipeline|pthread|stages=3,bytes=8|<values/s>|values/s and
 * RESULT|stream_pipeline|spsc_ring|stages=1,bytes=8|<values/s>|values/s.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "stream_problem.h"

/* ---------------------------------------------------------------- mutex + condvar queues */

struct mq {
    pthread_mutex_t m;
    pthread_cond_t not_empty, not_full;
    int64_t *buf;
    long cap, head, count;
};

static void mq_init(struct mq *q, long cap)
{
    pthread_mutex_init(&q->m, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->buf = malloc((size_t)cap * sizeof *q->buf);
    q->cap = cap;
    q->head = q->count = 0;
}

static void mq_push(struct mq *q, int64_t v)
{
    pthread_mutex_lock(&q->m);
    while (q->count == q->cap)
        pthread_cond_wait(&q->not_full, &q->m);
    q->buf[(q->head + q->count) % q->cap] = v;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->m);
}

static int64_t mq_pop(struct mq *q)
{
    pthread_mutex_lock(&q->m);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->m);
    int64_t v = q->buf[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->m);
    return v;
}

static struct mq q1, q2;
static int64_t total_values, sum_out;

static void *p_source(void *arg)
{
    for (int64_t k = 0; k < total_values; k++)
        mq_push(&q1, k);
    return arg;
}
static void *p_middle(void *arg)
{
    for (int64_t k = 0; k < total_values; k++)
        mq_push(&q2, mq_pop(&q1) + 1);
    return arg;
}
static void *p_sink(void *arg)
{
    int64_t s = 0;
    for (int64_t k = 0; k < total_values; k++)
        s += mq_pop(&q2);
    sum_out = s;
    return arg;
}

static double run_pthread(int64_t n, long cap)
{
    total_values = n;
    mq_init(&q1, cap);
    mq_init(&q2, cap);
    pthread_t t[3];
    double t0 = stream_now();
    pthread_create(&t[0], NULL, p_source, NULL);
    pthread_create(&t[1], NULL, p_middle, NULL);
    pthread_create(&t[2], NULL, p_sink, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    double dt = stream_now() - t0;
    free(q1.buf);
    free(q2.buf);
    if (sum_out != stream_expected(n)) { /* each value k + 1, summed */
        fprintf(stderr, "pthread: wrong sum\n");
        exit(1);
    }
    return (double)n / dt;
}

/* ---------------------------------------------------------------- raw SPSC ring */

struct ring {
    _Alignas(64) _Atomic uint64_t head;
    uint64_t tail_cache;
    _Alignas(64) _Atomic uint64_t tail;
    uint64_t head_cache;
    _Alignas(64) int64_t *slots;
    uint64_t mask;
};
static struct ring R;

static void *r_producer(void *arg)
{
    uint64_t h = 0, cap = R.mask + 1;
    for (int64_t k = 0; k < total_values; k++) {
        while (h - R.tail_cache >= cap)
            R.tail_cache = atomic_load_explicit(&R.tail, memory_order_acquire);
        R.slots[h & R.mask] = k + 1;
        atomic_store_explicit(&R.head, ++h, memory_order_release);
    }
    return arg;
}

static void *r_consumer(void *arg)
{
    uint64_t t = 0;
    int64_t s = 0;
    for (int64_t k = 0; k < total_values; k++) {
        while (t >= R.head_cache)
            R.head_cache = atomic_load_explicit(&R.head, memory_order_acquire);
        s += R.slots[t & R.mask];
        atomic_store_explicit(&R.tail, ++t, memory_order_release);
    }
    sum_out = s;
    return arg;
}

static double run_ring(int64_t n, long cap)
{
    uint64_t c = 1;
    while (c < (uint64_t)cap)
        c <<= 1;
    total_values = n;
    atomic_store(&R.head, 0);
    atomic_store(&R.tail, 0);
    R.tail_cache = R.head_cache = 0;
    R.slots = malloc(c * sizeof *R.slots);
    R.mask = c - 1;
    pthread_t a, b;
    double t0 = stream_now();
    pthread_create(&a, NULL, r_producer, NULL);
    pthread_create(&b, NULL, r_consumer, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    double dt = stream_now() - t0;
    free(R.slots);
    if (sum_out != stream_expected(n)) {
        fprintf(stderr, "ring: wrong sum\n");
        exit(1);
    }
    return (double)n / dt;
}

int main(void)
{
    int64_t n = stream_values();
    long cap = stream_buffer();
    double best_p = 0, best_r = 0;
    for (int rep = 0; rep < 3; rep++) {
        double p = run_pthread(n / 4 > 0 ? n / 4 : 1, cap), r = run_ring(n, cap);
        best_p = p > best_p ? p : best_p;
        best_r = r > best_r ? r : best_r;
    }
    printf("# buffer %ld, %lld values\n", cap, (long long)n);
    printf("RESULT|stream_pipeline|pthread|stages=3,bytes=8|%.0f|values/s\n", best_p);
    printf("RESULT|stream_pipeline|spsc_ring|stages=1,bytes=8|%.0f|values/s\n", best_r);
    return 0;
}
