/* bench/machine/capacity.c - how much work the machine's CPUs do at once, against one CPU.
 *
 * A virtual machine's CPUs are not always cores of their own: the host may run two of them on
 * one core (siblings, or time-shared) for minutes at a time, and then a t=2 row runs at its t=1
 * figure whatever the runtime does. bench/run.sh runs this before each round and after the last,
 * so that a table says whether its t>=2 rows had the cores they name.
 * It times a fixed piece of integer work (a recursive Fibonacci: calls, branches and adds, which
 * two CPUs sharing a core's pipelines slow each other down on, where a latency-bound chain of
 * multiplies would not) on one thread, then on N threads started together
 * (N: the argument, else the CPUs online), each its own copy; the capacity is
 * N * (one thread's time) / (the slowest of N threads' time), best of 5 tries each: N on a
 * machine whose CPUs are cores, about 1 where they all share one.
 * Output: CAPACITY|<N>|<capacity> (and the two times on stderr). No dagger: plain pthreads.
 * SPDX-License-Identifier: MIT
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define FIB_N 34 /* about 10-25 ms on one core */
#define TRIES 5
#define MAX_THREADS 1024

static pthread_barrier_t start;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* No memory traffic, the same work on every core; noinline keeps the recursion a recursion. */
static __attribute__((noinline)) uint64_t fib(uint64_t n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static volatile uint64_t fib_n = FIB_N; /* read at run time: no fib(34) folded at build time */

struct arg {
    double secs;
    uint64_t sink;
};

static void *run(void *p)
{
    struct arg *a = p;
    pthread_barrier_wait(&start);
    double t0 = now_s();
    a->sink = fib(fib_n);
    a->secs = now_s() - t0;
    return NULL;
}

/* The slowest of n threads' times, best of TRIES; 0 when a thread could not start. */
static double timed(int n)
{
    double best = 0;
    struct arg *a = calloc((size_t)n, sizeof *a);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    if (!a || !t) {
        free(a);
        free(t);
        return 0;
    }
    for (int r = 0; r < TRIES; r++) {
        pthread_barrier_init(&start, NULL, (unsigned)n);
        int made = 0;
        for (; made < n; made++)
            if (pthread_create(&t[made], NULL, run, &a[made]) != 0)
                break;
        if (made < n) { /* the barrier never fills: end the process, its threads with it */
            fprintf(stderr, "capacity: cannot start %d threads\n", n);
            exit(1);
        }
        double worst = 0;
        for (int i = 0; i < n; i++) {
            pthread_join(t[i], NULL);
            if (a[i].secs > worst)
                worst = a[i].secs;
        }
        pthread_barrier_destroy(&start);
        if (r == 0 || worst < best)
            best = worst;
    }
    free(a);
    free(t);
    return best;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "capacity: threads must be 1..%d (got '%s')\n", MAX_THREADS,
                argc > 1 ? argv[1] : "?");
        return 2;
    }
    double one = timed(1), all = timed((int)n);
    if (one <= 0 || all <= 0) {
        fprintf(stderr, "capacity: out of memory\n");
        return 1;
    }
    fprintf(stderr, "capacity: one thread %.1f ms, %ld threads %.1f ms\n", one * 1e3, n, all * 1e3);
    printf("CAPACITY|%ld|%.2f\n", n, (double)n * one / all);
    return 0;
}
