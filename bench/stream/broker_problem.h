/* bench/stream/broker_problem.h - the broker streaming problem shared by dagger and the peers.
 *
 * A producer thread sends N values of B bytes (8 B, 1 KiB, 64 KiB) through a broker started
 * here (tests/broker_proc.h: mosquitto or nats-server on 127.0.0.1) to a consumer in the main
 * thread, which checks each value's length and index (its first 8 bytes). Figures: values/s
 * and GB/s, consumer side, from the moment both ends are connected (a warm-up message went
 * through) until the last value arrived; the best of BENCH_REPS runs (default 3). MQTT runs at QoS
 * 1 (the edge's default) with at most WINDOW messages unacknowledged on each side; NATS with a
 * consumer queue large enough that nothing is dropped. RESULT|stream_mqtt|<impl>|bytes=B|... and
 * RESULT|stream_nats|... SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_BENCH_BROKER_PROBLEM_H
#define DAGGER_BENCH_BROKER_PROBLEM_H

#include <string.h>

#include "broker_proc.h"
#include "net_problem.h"

static const size_t broker_sizes[] = {8, 1024, 65536};
enum { BROKER_WINDOW = 1000, BROKER_QUEUE = 1000000 };

/* Values per run, about a second each on the development VM; NET_BENCH_SCALE multiplies. */
static inline long broker_count(size_t bytes, enum broker_kind k)
{
    const char *s = getenv("NET_BENCH_SCALE");
    double f = s ? atof(s) : 1.0;
    long n = bytes <= 64 ? 100000 : bytes <= 1024 ? 50000 : 5000;
    if (k == BROKER_NATS)
        n *= 4;
    n = (long)(n * (f > 0 ? f : 1.0));
    return n > 0 ? n : 1;
}

/* Repetitions of each figure (the best is printed): BENCH_REPS, default 3. */
static inline int broker_reps(void)
{
    const char *s = getenv("BENCH_REPS");
    int r = s ? atoi(s) : 3;
    return r > 0 ? r : 1;
}

/* The payload of value i: its index in the first 8 bytes. */
static inline void broker_fill(unsigned char *buf, size_t bytes, long i)
{
    uint64_t x = (uint64_t)i;
    memcpy(buf, &x, bytes < 8 ? bytes : 8);
}

/* 1 when `p` (len bytes) is value i of `bytes` bytes. */
static inline int broker_check(const void *p, size_t len, size_t bytes, long i)
{
    uint64_t x = 0;
    if (len != bytes)
        return 0;
    memcpy(&x, p, bytes < 8 ? bytes : 8);
    return x == (uint64_t)(bytes < 8 ? (uint64_t)i & ((1ull << (8 * bytes)) - 1) : (uint64_t)i);
}

/* Which transports to run: the arguments that are not options (none: every one). */
static inline int broker_wanted(int argc, char **argv, const char *name)
{
    int named = 0, want = 0;
    for (int a = 1; a < argc; a++) {
        if (strncmp(argv[a], "--", 2) == 0) {
            a += strcmp(argv[a], "--threads") == 0; /* run.sh's option; no worker threads here */
            continue;
        }
        named++;
        want |= strcmp(argv[a], name) == 0;
    }
    return named == 0 || want;
}

#endif /* DAGGER_BENCH_BROKER_PROBLEM_H */
