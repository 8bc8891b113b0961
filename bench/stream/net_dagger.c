/* bench/stream/net_dagger.c - cross-process streaming through dagger edges (shm ring, TCP).
 *
 * For each transport and size (net_problem.h): fork a producer, consume in this process,
 * print RESULT|stream_shm|dagger|bytes=B|<values/s>|values/s (and GB/s), same for stream_tcp.
 * Values of up to VEC_MAX_BYTES also run as impl "dagger_n": the same stream moved with
 * dagger_edge_push_n / dagger_edge_pop_n, VEC values per call on each side.
 * Usage: bench_streamnet_dagger [shm|tcp]... (DAGGER_BENCH_VEC=0 leaves the vector rows out,
 * =only runs them alone)
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>

#include "dagger.h"
#include "dagger/net.h"
#include "net_problem.h"

#define VEC 256           /* values per dagger_edge_push_n / pop_n call */
#define VEC_MAX_BYTES 256 /* vector rows for values up to this size */

static int producer(const char *uri, size_t bytes, long n, int go_fd, int vec)
{
    dagger_edge_t *e;
    if (dagger_edge_open(&e, uri, DAGGER_EDGE_PUSH) < 0) {
        fprintf(stderr, "producer: %s\n", dagger_edge_errmsg(NULL));
        return 1;
    }
    unsigned char *src = calloc(1, bytes);
    dagger_value_t warm = dagger_nil();
    if (!src || dagger_edge_push(e, &warm) < 0 || dagger_edge_flush(e, 10000) < 0)
        return 2;
    char c;
    if (read(go_fd, &c, 1) != 1)
        return 3;
    if (vec) {
        unsigned char *buf = calloc(VEC, bytes);
        for (long i = 0; buf && i < n;) {
            int k = n - i < VEC ? (int)(n - i) : VEC;
            for (int j = 0; j < k; j++) {
                net_put_id(buf + (size_t)j * bytes, (uint64_t)(i + j), bytes);
            }
            int rc = dagger_edge_push_n(e, buf, bytes, (size_t)k, -1);
            if (rc != k) {
                fprintf(stderr, "producer: push_n = %d: %s\n", rc, dagger_edge_errmsg(e));
                return 4;
            }
            i += k;
        }
        if (!buf)
            return 4;
        free(buf);
        n = 0;
    }
    for (long i = 0; i < n; i++) {
        net_put_id(src, (uint64_t)i, bytes);
        dagger_value_t v = dagger_blob_borrow(src, bytes);
        int rc = dagger_edge_push(e, &v);
        if (rc < 0) {
            fprintf(stderr, "producer: %s\n", dagger_edge_errmsg(e));
            return 4;
        }
    }
    free(src);
    return dagger_edge_close(e) < 0 ? 5 : 0;
}

static int run(const char *bench, const char *cons_uri, const char *prod_fmt, size_t bytes, long n,
               int vec)
{
    dagger_edge_t *c;
    if (dagger_edge_open(&c, cons_uri, DAGGER_EDGE_POP) < 0) {
        fprintf(stderr, "%s: %s\n", bench, dagger_edge_errmsg(NULL));
        return 1;
    }
    char uri[256];
    const char *port = strrchr(dagger_edge_uri(c), ':');
    snprintf(uri, sizeof uri, prod_fmt, port ? atoi(port + 1) : 0);
    int go[2];
    if (pipe(go) < 0)
        return 1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        _exit(producer(uri, bytes, n, go[0], vec));
    }
    close(go[0]);
    dagger_value_t v;
    if (dagger_edge_pop(c, &v, 10000) < 0) { /* the warm-up value: both ends are connected */
        fprintf(stderr, "%s: %s\n", bench, dagger_edge_errmsg(c));
        kill(pid, SIGKILL);
        return 1;
    }
    double t0 = net_now();
    if (write(go[1], "g", 1) != 1)
        return 1;
    long bad = 0;
    unsigned char *buf = vec ? calloc(VEC, bytes) : NULL;
    for (long i = 0; vec && i < n;) {
        int rc = buf ? dagger_edge_pop_n(c, buf, bytes, VEC, 10000) : DAGGER_ENOMEM;
        if (rc < 0) {
            fprintf(stderr, "%s: pop_n at %ld: %s\n", bench, i, dagger_edge_errmsg(c));
            kill(pid, SIGKILL);
            return 1;
        }
        for (int j = 0; j < rc; j++, i++) {
            bad += net_get_id(buf + (size_t)j * bytes, bytes) != (uint64_t)i;
        }
    }
    free(buf);
    for (long i = 0; !vec && i < n; i++) {
        int rc = dagger_edge_pop(c, &v, 10000);
        if (rc < 0) {
            fprintf(stderr, "%s: pop %ld: %s\n", bench, i, dagger_edge_errmsg(c));
            kill(pid, SIGKILL);
            return 1;
        }
        bad += v.len != bytes || net_get_id(v.u.p, bytes) != (uint64_t)i;
    }
    int end = dagger_edge_pop(c, &v, 10000);
    double t1 = net_now();
    int st = 0;
    waitpid(pid, &st, 0);
    close(go[1]);
    dagger_edge_close(c);
    if (bad || end != DAGGER_ECLOSED || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "%s: %ld bad values, end %s, producer status %d\n", bench, bad,
                dagger_err_name(end), st);
        return 1;
    }
    net_result(bench, vec ? "dagger_n" : "dagger", bytes, n, t1 - t0);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    /* Arguments name the transports to run (shm, tcp); bench/run.sh's `--threads N` is not one
     * (an edge has no worker threads), so options are skipped. */
    int named = 0;
    for (int a = 1; a < argc; a++) {
        if (strncmp(argv[a], "--", 2) == 0) {
            a += strcmp(argv[a], "--threads") == 0;
            continue;
        }
        named++;
    }
    for (int t = 0; t < 2; t++) {
        const char *tr = t == 0 ? "shm" : "tcp";
        int want = named == 0;
        for (int a = 1; a < argc; a++)
            want |= strcmp(argv[a], tr) == 0;
        if (!want)
            continue;
        for (size_t s = 0; s < sizeof net_sizes / sizeof net_sizes[0]; s++) {
            size_t bytes = net_sizes[s];
            if (!net_size_wanted(bytes))
                continue;
            long n = net_count(bytes, t);
            const char *ve = getenv("DAGGER_BENCH_VEC");
            int v0 = ve && strcmp(ve, "only") == 0, v1 = !(ve && strcmp(ve, "0") == 0);
            for (int vec = v0; vec <= (bytes <= VEC_MAX_BYTES ? v1 : 0); vec++) {
                if (t == 0) {
                    char uri[128];
                    snprintf(uri, sizeof uri, "shm:/dagger-bench-%d-%zu-%d", (int)getpid(), bytes,
                             vec);
                    rc |= run("stream_shm", uri, uri, bytes, n, vec);
                } else {
                    rc |= run("stream_tcp", "tcp://127.0.0.1:0?role=listen&secret=bench",
                              "tcp://127.0.0.1:%d?secret=bench", bytes, n, vec);
                }
            }
        }
    }
    return rc;
}
