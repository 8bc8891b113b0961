/* tests/test_net.c - cross-process edges: shm ring, TCP, UDP (issue 4, item 6).
 *
 * Cross-process cases fork(): the child is one end, the parent the other; a pipe tells the
 * parent when the child is ready. Peers are on 127.0.0.1 with ephemeral ports, rings have
 * names unique to the process. Every wait is bounded.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "net_harness.h"
#include "dagger/net.h"

/* 1e6 at every level: it takes well under a second (about 3 s under TSan). */
static long n_values(void) { return 1000000; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void ring_name(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "dagger-test-%d-%s", (int)getpid(), tag);
}

/* Fork a child that runs fn(arg, ready_fd) and _exits with its result. */
static pid_t spawn_child(int (*fn)(void *, int), void *arg, int *ready_rd)
{
    int p[2];
    if (pipe(p) < 0)
        fail_msg("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        alarm(60); /* a stuck child never outlives the case */
        _exit(fn(arg, p[1]));
    }
    close(p[1]);
    *ready_rd = p[0];
    return pid;
}

static void signal_ready(int fd)
{
    char c = 1;
    if (write(fd, &c, 1) != 1)
        _exit(90);
}

static void wait_ready(int fd)
{
    char c;
    ASSERT_EQ(read(fd, &c, 1), 1);
}

/* The child's exit status; a child still running after 70 s (past its own alarm) is killed
 * and the case fails saying so. */
static int child_status(pid_t pid)
{
    int st = 0;
    for (int ms = 0;; ms++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
        if (ms >= 70 * 1000) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            fail_msg("waited 70 s for child %d to exit; killed it", (int)pid);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---------------------------------------------------------------- common producers */

struct prod_args {
    char uri[256];
    long n;
    int blobs;      /* 1: mix in blobs of varying sizes with checkable content */
    int stop_after; /* > 0: push that many, flush, signal, then sleep until killed */
};

static unsigned char pattern_byte(long i, size_t k) { return (unsigned char)(i * 31 + k * 7); }

static size_t blob_size(long i) { return (size_t)((i * 7919) % 70000); }

static int push_values(dagger_edge_t *e, const struct prod_args *a)
{
    static unsigned char buf[70000];
    for (long i = 0; i < a->n; i++) {
        dagger_value_t v;
        if (a->blobs && i % 3 == 1) {
            size_t n = blob_size(i);
            for (size_t k = 0; k < n; k++)
                buf[k] = pattern_byte(i, k);
            v = dagger_blob_borrow(buf, n);
        } else {
            v = dagger_i64(i);
        }
        int rc = dagger_edge_push(e, &v);
        if (rc < 0) {
            fprintf(stderr, "child push %ld: %s: %s\n", i, dagger_err_name(rc),
                    dagger_edge_errmsg(e));
            return 2;
        }
    }
    return 0;
}

static int producer_child(void *arg, int ready)
{
    struct prod_args *a = arg;
    dagger_edge_t *e;
    int rc = dagger_edge_open(&e, a->uri, DAGGER_EDGE_PUSH);
    if (rc < 0) {
        fprintf(stderr, "child open %s: %s\n", a->uri, dagger_edge_errmsg(NULL));
        return 1;
    }
    if (a->stop_after > 0) {
        struct prod_args b = *a;
        b.n = a->stop_after;
        if (push_values(e, &b) || dagger_edge_flush(e, 5000) < 0)
            return 2;
        signal_ready(ready);
        for (;;)
            pause();
    }
    signal_ready(ready);
    if (push_values(e, a))
        return 2;
    return dagger_edge_close(e) < 0 ? 3 : 0;
}

/* Pop a->n values and check them in order, then the end of the stream. */
static void consume_all(dagger_edge_t *e, const struct prod_args *a)
{
    for (long i = 0; i < a->n; i++) {
        dagger_value_t v;
        int rc = dagger_edge_pop(e, &v, 10000);
        if (rc < 0)
            fail_msg("pop %ld: %s: %s", i, dagger_err_name(rc), dagger_edge_errmsg(e));
        if (a->blobs && i % 3 == 1) {
            size_t n = blob_size(i);
            if (v.kind != DAGGER_KIND_BLOB || v.len != n)
                fail_msg("value %ld: kind %d len %u, expected a blob of %zu", i, v.kind, v.len, n);
            const unsigned char *p = v.u.p;
            for (size_t k = 0; k < n; k++)
                if (p[k] != pattern_byte(i, k))
                    fail_msg("value %ld: byte %zu differs", i, k);
        } else if (v.kind != DAGGER_KIND_I64 || v.u.i != i) {
            fail_msg("value %ld: got kind %d value %lld", i, v.kind, (long long)v.u.i);
        }
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(e, &v, 10000), DAGGER_ECLOSED);
    dagger_edge_stats_t st;
    dagger_edge_stats(e, &st);
    ASSERT_EQ(st.values, (uint64_t)a->n);
    ASSERT_EQ(st.drops, 0);
}

/* ---------------------------------------------------------------- URIs and arguments */

TEST(open_rejects_bad_uris)
{
    dagger_edge_t *e = NULL;
    ASSERT_ERR(dagger_edge_open(&e, "nope://x", DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "no transport for scheme 'nope'");
    ASSERT_ERR(dagger_edge_open(&e, "tcp://127.0.0.1:99999", DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "bad port");
    ASSERT_ERR(dagger_edge_open(&e, "tcp://127.0.0.1:1?colour=red", DAGGER_EDGE_POP),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown tcp: parameter 'colour'");
    ASSERT_ERR(dagger_edge_open(&e, "shm:/a?cap=1000", DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "cap=");
    ASSERT_ERR(dagger_edge_open(&e, "shm:/a/b", DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_ERR(dagger_edge_open(&e, "shm:/a", 3), DAGGER_EINVAL);
    ASSERT_ERR(dagger_edge_open(&e, "udp://127.0.0.1:0", DAGGER_EDGE_PUSH), DAGGER_EINVAL);
    ASSERT_ERR(dagger_edge_open(&e, "tcp://127.0.0.1:5?secret=a&secret=b", DAGGER_EDGE_PUSH),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "twice");
    ASSERT_ERR(
        dagger_edge_open(&e, "tcp://127.0.0.1:5?secret_env=DAGGER_NO_SUCH_VAR", DAGGER_EDGE_PUSH),
        DAGGER_EINVAL);
    ASSERT_NULL(e);
    ASSERT_EQ(dagger_edge_close(NULL), 0);
}

/* A producer and a consumer of a fresh 64 KiB ring named after `tag`. */
static void shm_pair(const char *tag, dagger_edge_t **p, dagger_edge_t **c)
{
    char name[64], uri[160];
    ring_name(name, sizeof name, tag);
    snprintf(uri, sizeof uri, "shm:/%s?cap=65536", name);
    OPEN_OK(p, uri, DAGGER_EDGE_PUSH);
    OPEN_OK(c, uri, DAGGER_EDGE_POP);
}

TEST(wrong_end_and_pointer_values_refused)
{
    dagger_edge_t *p, *c;
    shm_pair("ends", &p, &c);
    dagger_value_t v = dagger_ptr(&v);
    ASSERT_ERR(dagger_edge_push(p, &v), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "ptr value cannot cross");
    ASSERT_ERR(dagger_edge_pop(p, &v, 0), DAGGER_EINVAL);
    ASSERT_ERR(dagger_edge_push(c, &v), DAGGER_EINVAL);
    ASSERT_ERR(dagger_edge_pop(c, &v, 0), DAGGER_ETIMEDOUT);
    static char big[40000];
    v = dagger_blob_borrow(big, sizeof big);
    ASSERT_ERR(dagger_edge_push(p, &v), DAGGER_ERANGE); /* > cap/2 */
    v = dagger_i64(5); /* the edge is still usable after refused arguments */
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_ERR(dagger_edge_pop(c, &v, 0), DAGGER_ETIMEDOUT); /* batched until the flush */
    ASSERT_OK(dagger_edge_flush(p, 0));
    ASSERT_OK(dagger_edge_pop(c, &v, 1000));
    ASSERT_EQ(v.u.i, 5);
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_ERR(dagger_edge_pop(c, &v, 1000), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(c));
}

/* ---------------------------------------------------------------- shm ring */

TEST(shm_every_kind_round_trips)
{
    char name[64], uri[160];
    ring_name(name, sizeof name, "kinds");
    snprintf(uri, sizeof uri, "shm:/%s?cap=65536&secret=k1", name);
    dagger_edge_t *p, *c;
    OPEN_OK(&p, uri, DAGGER_EDGE_PUSH);
    OPEN_OK(&c, uri, DAGGER_EDGE_POP);
    ASSERT_STR_HAS(dagger_edge_uri(p), "shm:/");
    ASSERT_TRUE(strstr(dagger_edge_uri(p), "k1") == NULL); /* the secret is not shown */
    dagger_value_t in[] = {dagger_nil(),
                           dagger_bool(true),
                           dagger_i64(-42),
                           dagger_f64(2.5),
                           dagger_str_borrow("hello"),
                           dagger_blob_borrow("", 0),
                           dagger_blob_borrow("abc", 3),
                           dagger_str_borrow("")};
    size_t n = sizeof in / sizeof in[0];
    for (size_t i = 0; i < n; i++)
        ASSERT_OK(dagger_edge_push(p, &in[i]));
    ASSERT_OK(dagger_edge_flush(p, 0)); /* one batch frame holds them all */
    ASSERT_EQ(dagger_edge_poll(c, 0), 1);
    for (size_t i = 0; i < n; i++) {
        dagger_value_t v;
        ASSERT_OK(dagger_edge_pop(c, &v, 1000));
        ASSERT_EQ(v.kind, in[i].kind);
        switch (v.kind) {
        case DAGGER_KIND_BOOL:
            ASSERT_TRUE(v.u.b);
            break;
        case DAGGER_KIND_I64:
            ASSERT_EQ(v.u.i, -42);
            break;
        case DAGGER_KIND_F64:
            ASSERT_NEAR(v.u.f, 2.5, 0);
            break;
        case DAGGER_KIND_STR:
            ASSERT_STR_EQ(v.u.s, in[i].u.s);
            break;
        case DAGGER_KIND_BLOB:
            ASSERT_EQ(v.len, in[i].len);
            ASSERT_TRUE(v.len == 0 || memcmp(v.u.p, in[i].u.p, v.len) == 0);
            break;
        }
    }
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.values, n);
    ASSERT_TRUE(st.bytes >= n * 4 && st.bytes < n * 24); /* 4-byte records, no headers */
    ASSERT_OK(dagger_edge_close(p));
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 1000), DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "closed");
    ASSERT_OK(dagger_edge_close(c));
}

TEST(shm_variable_sizes_wrap_around)
{
    /* Blobs of 0..70000 bytes in a 256 KiB ring: records wrap with and without PAD frames. */
    char name[64];
    ring_name(name, sizeof name, "wrap");
    struct prod_args a = {.n = 3000, .blobs = 1};
    snprintf(a.uri, sizeof a.uri, "shm:/%s?cap=262144", name);
    dagger_edge_t *c;
    OPEN_OK(&c, a.uri, DAGGER_EDGE_POP);
    int ready;
    pid_t pid = spawn_child(producer_child, &a, &ready);
    consume_all(c, &a);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

TEST(shm_cross_process_in_order)
{
    char name[64];
    ring_name(name, sizeof name, "order");
    struct prod_args a = {.n = n_values()};
    snprintf(a.uri, sizeof a.uri, "shm:/%s?secret=s3cret", name);
    int ready;
    /* The producer creates the ring; the consumer attaches once it exists. */
    pid_t pid = spawn_child(producer_child, &a, &ready);
    wait_ready(ready);
    dagger_edge_t *c;
    OPEN_OK(&c, a.uri, DAGGER_EDGE_POP);
    double t0 = now_ms();
    consume_all(c, &a);
    printf("shm: %ld values in %.0f ms\n", a.n, now_ms() - t0);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

TEST(shm_killed_producer_is_epeer)
{
    char name[64];
    ring_name(name, sizeof name, "killp");
    struct prod_args a = {.n = 0, .stop_after = 10};
    snprintf(a.uri, sizeof a.uri, "shm:/%s", name);
    dagger_edge_t *c;
    OPEN_OK(&c, a.uri, DAGGER_EDGE_POP);
    int ready;
    pid_t pid = spawn_child(producer_child, &a, &ready);
    wait_ready(ready);
    kill(pid, SIGKILL);
    double t0 = now_ms();
    dagger_value_t v;
    for (long i = 0; i < 10; i++) { /* what it committed is still delivered */
        ASSERT_OK(dagger_edge_pop(c, &v, 5000));
        ASSERT_EQ(v.u.i, i);
    }
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_EPEER);
    double dt = now_ms() - t0;
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "died");
    ASSERT_TRUE(dt < 2000);
    ASSERT_ERR(dagger_edge_pop(c, &v, 0), DAGGER_EPEER); /* sticky */
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 128 + SIGKILL);
    close(ready);
}

static int consumer_child_idle(void *arg, int ready)
{
    dagger_edge_t *e;
    if (dagger_edge_open(&e, (const char *)arg, DAGGER_EDGE_POP) < 0)
        return 1;
    signal_ready(ready);
    for (;;)
        pause();
}

TEST(shm_killed_consumer_is_epeer)
{
    char name[64], uri[160];
    ring_name(name, sizeof name, "killc");
    snprintf(uri, sizeof uri, "shm:/%s?cap=65536", name);
    dagger_edge_t *p;
    OPEN_OK(&p, uri, DAGGER_EDGE_PUSH);
    int ready;
    pid_t pid = spawn_child(consumer_child_idle, uri, &ready);
    wait_ready(ready);
    kill(pid, SIGKILL);
    double t0 = now_ms();
    int rc = 0;
    for (long i = 0; i < 1000000 && rc == 0; i++) {
        dagger_value_t v = dagger_i64(i);
        rc = dagger_edge_push_timed(p, &v, 10000);
    }
    ASSERT_ERR(rc, DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "consumer");
    ASSERT_TRUE(now_ms() - t0 < 2000);
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_EQ(child_status(pid), 128 + SIGKILL);
    close(ready);
}

TEST(shm_refuses_wrong_secret_second_producer_and_permissions)
{
    char name[64], uri[160];
    ring_name(name, sizeof name, "auth");
    snprintf(uri, sizeof uri, "shm:/%s?secret=right", name);
    dagger_edge_t *p, *x = NULL;
    OPEN_OK(&p, uri, DAGGER_EDGE_PUSH);
    snprintf(uri, sizeof uri, "shm:/%s?secret=wrong", name);
    ASSERT_ERR(dagger_edge_open(&x, uri, DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "wrong secret");
    snprintf(uri, sizeof uri, "shm:/%s", name);
    ASSERT_ERR(dagger_edge_open(&x, uri, DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "requires a secret");
    snprintf(uri, sizeof uri, "shm:/%s?secret=right", name);
    ASSERT_ERR(dagger_edge_open(&x, uri, DAGGER_EDGE_PUSH), DAGGER_EBUSY);
    ASSERT_STR_HAS(dagger_last_errmsg(), "already has a producer");
    ASSERT_OK(dagger_edge_close(p));
    /* The consumer never came: the ring stays for it; remove it by attaching and closing. */
    OPEN_OK(&x, uri, DAGGER_EDGE_POP);
    ASSERT_OK(dagger_edge_close(x));

    char dir[] = "/tmp/dagger-net-XXXXXX", path[200];
    ASSERT_PTR(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/open", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0644);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(fchmod(fd, 0644), 0);
    close(fd);
    snprintf(uri, sizeof uri, "shm:/open?dir=%s", dir);
    ASSERT_ERR(dagger_edge_open(&x, uri, DAGGER_EDGE_POP), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "0600");
    unlink(path);
    rmdir(dir);
}

TEST(shm_corrupt_frame_closes_edge)
{
    char dir[] = "/tmp/dagger-net-XXXXXX", path[200], uri[240];
    ASSERT_PTR(mkdtemp(dir));
    snprintf(uri, sizeof uri, "shm:/ring?dir=%s&cap=65536", dir);
    snprintf(path, sizeof path, "%s/ring", dir);
    dagger_edge_t *p, *c;
    OPEN_OK(&p, uri, DAGGER_EDGE_PUSH);
    OPEN_OK(&c, uri, DAGGER_EDGE_POP);
    dagger_value_t v = dagger_i64(1);
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_OK(dagger_edge_flush(p, 0));
    /* A hostile producer rewrites the second value's length (docs/net.md: data at 4096, a
     * batch frame header of 24 bytes, then records of 4 + 16 bytes for an i64). */
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    unsigned char *m = mmap(NULL, 4096 + 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_TRUE(m != MAP_FAILED);
    uint32_t bad = 0x7ffffff0;
    ASSERT_EQ(m[4096 + 5], 6); /* BATCH */
    size_t second = 4096 + 24 + 20;
    memcpy(m + second, &bad, 4);
    ASSERT_OK(dagger_edge_pop(c, &v, 1000));
    ASSERT_EQ(v.u.i, 1);
    ASSERT_ERR(dagger_edge_pop(c, &v, 1000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "corrupt ring");
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "exceed the limit");
    ASSERT_ERR(dagger_edge_pop(c, &v, 0), DAGGER_EINVAL);
    munmap(m, 4096 + 65536);
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_OK(dagger_edge_close(p));
    unlink(path);
    rmdir(dir);
}

struct thr_args {
    const char *uri;
    long n;
    int rc;
};

static void *thread_producer(void *arg)
{
    struct thr_args *t = arg;
    dagger_edge_t *e;
    t->rc = dagger_edge_open(&e, t->uri, DAGGER_EDGE_PUSH);
    if (t->rc < 0)
        return NULL;
    for (long i = 0; i < t->n && t->rc == 0; i++) {
        dagger_value_t v = dagger_i64(i);
        t->rc = dagger_edge_push(e, &v);
    }
    int rc = dagger_edge_close(e);
    if (!t->rc)
        t->rc = rc;
    return NULL;
}

static void threads_in_order(const char *listen_uri, const char *connect_fmt, long n)
{
    dagger_edge_t *c;
    OPEN_OK(&c, listen_uri, DAGGER_EDGE_POP);
    char uri[256];
    const char *port = strrchr(dagger_edge_uri(c), ':');
    snprintf(uri, sizeof uri, connect_fmt, port ? atoi(port + 1) : 0);
    struct thr_args t = {uri, n, 0};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, thread_producer, &t), 0);
    for (long i = 0; i < n; i++) {
        dagger_value_t v;
        int rc = dagger_edge_pop(c, &v, 10000);
        if (rc < 0)
            fail_msg("pop %ld: %s: %s", i, dagger_err_name(rc), dagger_edge_errmsg(c));
        ASSERT_EQ(v.u.i, i);
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_ECLOSED);
    pthread_join(th, NULL);
    ASSERT_OK(t.rc);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(shm_threads_stress)
{
    char name[64], uri[160];
    ring_name(name, sizeof name, "thr");
    snprintf(uri, sizeof uri, "shm:/%s?cap=65536&spin=50", name);
    threads_in_order(uri, uri, 100000);
}

/* ---------------------------------------------------------------- TCP */

static int listen_port(dagger_edge_t *e)
{
    const char *p = strrchr(dagger_edge_uri(e), ':');
    return p ? atoi(p + 1) : -1;
}

TEST(tcp_cross_process_in_order)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&secret=s3cret", DAGGER_EDGE_POP);
    ASSERT_STR_HAS(dagger_edge_uri(c), "tcp://127.0.0.1:");
    ASSERT_TRUE(listen_port(c) > 0);
    struct prod_args a = {.n = n_values()};
    snprintf(a.uri, sizeof a.uri, "tcp://127.0.0.1:%d?secret=s3cret", listen_port(c));
    int ready;
    pid_t pid = spawn_child(producer_child, &a, &ready);
    double t0 = now_ms();
    consume_all(c, &a);
    printf("tcp: %ld values in %.0f ms\n", a.n, now_ms() - t0);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

/* A listening consumer at `listen_uri`; a forked producer connects with `params` and sends
 * 3000 values with blobs of every size; every value is checked. */
static void tcp_blob_round_trip(const char *listen_uri, const char *params)
{
    dagger_edge_t *c;
    OPEN_OK(&c, listen_uri, DAGGER_EDGE_POP);
    struct prod_args a = {.n = 3000, .blobs = 1};
    snprintf(a.uri, sizeof a.uri, "tcp://127.0.0.1:%d?%s", listen_port(c), params);
    int ready;
    pid_t pid = spawn_child(producer_child, &a, &ready);
    consume_all(c, &a);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

TEST(tcp_blobs_cross_process)
{
    tcp_blob_round_trip("tcp://127.0.0.1:0?role=listen&secret=b", "secret=b&batch=16384");
}

static int consumer_child_verify(void *arg, int ready)
{
    struct prod_args *a = arg;
    dagger_edge_t *e;
    if (dagger_edge_open(&e, a->uri, DAGGER_EDGE_POP) < 0)
        return 1;
    signal_ready(ready);
    dagger_value_t v;
    for (long i = 0; i < a->n; i++)
        if (dagger_edge_pop(e, &v, 10000) < 0 || v.kind != DAGGER_KIND_I64 || v.u.i != i)
            return 2;
    if (dagger_edge_pop(e, &v, 10000) != DAGGER_ECLOSED)
        return 3;
    return dagger_edge_close(e) < 0 ? 4 : 0;
}

TEST(tcp_listening_producer)
{
    /* Roles are independent of direction: here the producer listens, the consumer connects. */
    dagger_edge_t *p;
    OPEN_OK(&p, "tcp://127.0.0.1:0?role=listen&secret=lp&batch=0", DAGGER_EDGE_PUSH);
    struct prod_args a = {.n = 10000};
    snprintf(a.uri, sizeof a.uri, "tcp://127.0.0.1:%d?secret=lp", listen_port(p));
    int ready;
    pid_t pid = spawn_child(consumer_child_verify, &a, &ready);
    ASSERT_EQ(dagger_edge_poll(p, 5000), 1); /* accepts and shakes hands */
    for (long i = 0; i < a.n; i++) {
        dagger_value_t v = dagger_i64(i);
        ASSERT_OK(dagger_edge_push(p, &v));
    }
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

TEST(tcp_threads_stress)
{
    threads_in_order("tcp://127.0.0.1:0?role=listen&secret=t", "tcp://127.0.0.1:%d?secret=t",
                     100000);
}

TEST(tcp_killed_producer_is_epeer)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&secret=k", DAGGER_EDGE_POP);
    struct prod_args a = {.n = 0, .stop_after = 10};
    snprintf(a.uri, sizeof a.uri, "tcp://127.0.0.1:%d?secret=k", listen_port(c));
    int ready;
    pid_t pid = spawn_child(producer_child, &a, &ready);
    dagger_value_t v;
    for (long i = 0; i < 10; i++) {
        ASSERT_OK(dagger_edge_pop(c, &v, 5000));
        ASSERT_EQ(v.u.i, i);
    }
    wait_ready(ready);
    kill(pid, SIGKILL);
    double t0 = now_ms();
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_EPEER);
    ASSERT_TRUE(now_ms() - t0 < 2000);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "went away");
    ASSERT_ERR(dagger_edge_pop(c, &v, 0), DAGGER_EPEER);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 128 + SIGKILL);
    close(ready);
}

static int tcp_consumer_child(void *arg, int ready)
{
    dagger_edge_t *e;
    if (dagger_edge_open(&e, (const char *)arg, DAGGER_EDGE_POP) < 0)
        return 1;
    dagger_value_t v;
    if (dagger_edge_pop(e, &v, 5000) < 0) /* connected and shook hands */
        return 2;
    signal_ready(ready);
    for (;;)
        pause();
}

TEST(tcp_killed_consumer_is_epeer)
{
    dagger_edge_t *p;
    OPEN_OK(&p, "tcp://127.0.0.1:0?role=listen&secret=k", DAGGER_EDGE_PUSH);
    char uri[128];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d?secret=k", listen_port(p));
    int ready;
    pid_t pid = spawn_child(tcp_consumer_child, uri, &ready);
    dagger_value_t v = dagger_i64(0);
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_OK(dagger_edge_flush(p, 5000));
    wait_ready(ready);
    kill(pid, SIGKILL);
    ASSERT_EQ(child_status(pid), 128 + SIGKILL);
    double t0 = now_ms();
    int rc = 0;
    static char blob[65536];
    for (long i = 0; i < 100000 && rc == 0; i++) {
        v = dagger_blob_borrow(blob, sizeof blob);
        rc = dagger_edge_push_timed(p, &v, 10000);
    }
    ASSERT_ERR(rc, DAGGER_EPEER);
    ASSERT_TRUE(now_ms() - t0 < 2000);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "consumer went away");
    ASSERT_EQ(dagger_edge_close(p), 0);
    close(ready);
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        fail_msg("raw connect: %s", strerror(errno));
    return fd;
}

static void put_frame(unsigned char *p, unsigned kind, unsigned flags, uint32_t len, uint64_t seq)
{
    /* docs/net.md: magic "DAGN", version 3, kind, flags, length, count (0), seq (LE) */
    memcpy(p, "DAGN", 4);
    p[4] = 3;
    p[5] = (unsigned char)kind;
    p[6] = (unsigned char)flags;
    p[7] = 0;
    memcpy(p + 8, &len, 4);
    memset(p + 12, 0, 4);
    memcpy(p + 16, &seq, 8);
}

/* A raw connecting producer without a secret: HELLO (protocol 2, role 1 = producer, auth 0,
 * no encryption, not listening, seq 0, a nonce). */
static void raw_hello(int fd)
{
    unsigned char m[24 + 48] = {0};
    put_frame(m, 4, 0, 48, 0);
    m[24] = 2;     /* protocol 2 */
    m[24 + 4] = 1; /* producer */
    ASSERT_EQ(write(fd, m, sizeof m), (ssize_t)sizeof m);
}

TEST(tcp_garbage_frame_rejected)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&secret=g", DAGGER_EDGE_POP);
    int fd = raw_connect(listen_port(c));
    const char junk[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ASSERT_EQ(write(fd, junk, sizeof junk - 1), (ssize_t)sizeof junk - 1);
    dagger_value_t v;
    /* The bad peer is refused and counted; the listener itself stays open for a real one. */
    ASSERT_ERR(dagger_edge_pop(c, &v, 1000), DAGGER_ETIMEDOUT);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "bad frame magic");
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "1 connection rejected");
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.rejected, 1);
    ASSERT_EQ(dagger_edge_poll(c, 0), 0);
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(tcp_bad_lengths_rejected)
{
    /* oversized length */
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&max=1000", DAGGER_EDGE_POP);
    int fd = raw_connect(listen_port(c));
    raw_hello(fd);
    unsigned char f[24];
    put_frame(f, 1, 0, 0xfffffff0u, 0);
    ASSERT_EQ(write(fd, f, 24), 24);
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 5000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "exceeds the edge's limit of 1000");
    close(fd);
    ASSERT_OK(dagger_edge_close(c));

    /* a length too short for the value it announces */
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP);
    fd = raw_connect(listen_port(c));
    raw_hello(fd);
    unsigned char g[24 + 32];
    dagger_value_t i = dagger_i64(7);
    long n = dagger_value_encode(&i, g + 24, 32);
    ASSERT_TRUE(n > 4);
    put_frame(g, 1, 0, 4, 0);
    ASSERT_EQ(write(fd, g, 28), 28);
    ASSERT_ERR(dagger_edge_pop(c, &v, 5000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "malformed or truncated");
    close(fd);
    ASSERT_OK(dagger_edge_close(c));

    /* a frame cut short by the peer */
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP);
    fd = raw_connect(listen_port(c));
    raw_hello(fd);
    put_frame(g, 1, 0, (uint32_t)n, 0);
    ASSERT_EQ(write(fd, g, 24 + (size_t)n - 3), 24 + n - 3);
    shutdown(fd, SHUT_WR);
    ASSERT_ERR(dagger_edge_pop(c, &v, 5000), DAGGER_EPEER);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "inside a frame");
    close(fd);
    ASSERT_OK(dagger_edge_close(c));

    /* a valid frame, then one out of sequence */
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP);
    fd = raw_connect(listen_port(c));
    raw_hello(fd);
    put_frame(g, 1, 0, (uint32_t)n, 0);
    ASSERT_EQ(write(fd, g, 24 + (size_t)n), 24 + n);
    put_frame(g, 1, 0, (uint32_t)n, 5);
    ASSERT_EQ(write(fd, g, 24 + (size_t)n), 24 + n);
    ASSERT_OK(dagger_edge_pop(c, &v, 5000));
    ASSERT_EQ(v.u.i, 7);
    ASSERT_ERR(dagger_edge_pop(c, &v, 5000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "seq 5 where 1 was expected");
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
}

static int wrong_secret_child(void *arg, int ready)
{
    dagger_edge_t *e;
    if (dagger_edge_open(&e, (const char *)arg, DAGGER_EDGE_PUSH) < 0)
        return 1;
    dagger_value_t v = dagger_i64(1);
    int rc = dagger_edge_push(e, &v);
    if (dagger_edge_close(e)) { /* already failed: the push said why */
    }
    /* The listener checks the connecting side's proof first and hangs up on a wrong one. */
    return rc == DAGGER_EPEER ? 0 : 10;
}

TEST(tcp_wrong_secret_rejected)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&secret=right", DAGGER_EDGE_POP);
    char uri[128];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d?secret=wrong", listen_port(c));
    int ready;
    pid_t pid = spawn_child(wrong_secret_child, uri, &ready);
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 3000), DAGGER_ETIMEDOUT);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "authentication failed");
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 0); /* the producer was refused too */
    close(ready);
}

/* One bad client after another, then the real producer (issue 16, item 3). */
struct flood_args {
    int port;
    int nbad;
    char good_uri[160];
    char wrong_uri[160];
};

static int flood_child(void *arg, int ready)
{
    struct flood_args *f = arg;
    int silent[4], nsilent = 0;
    for (int k = 0; k < f->nbad; k++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            return 20;
        unsigned char m[24 + 48 + 24 + 32] = {0};
        switch (k % 6) {
        case 0: /* connect and hang up */
            break;
        case 1: /* garbage */
            memset(m, 'x', sizeof m);
            if (write(fd, m, sizeof m) < 0)
                return 21;
            break;
        case 2: /* a HELLO without a secret */
            put_frame(m, 4, 0, 48, 0);
            m[24] = 2, m[28] = 1;
            if (write(fd, m, 72) < 0)
                return 22;
            break;
        case 3: /* a truncated HELLO */
            put_frame(m, 4, 0, 48, 0);
            if (write(fd, m, 30) < 0)
                return 23;
            break;
        case 4: /* a HELLO with a secret, then a replayed (here: made-up) proof */
            put_frame(m, 4, 0, 48, 0);
            m[24] = 2, m[28] = 1, m[29] = 1;
            put_frame(m + 72, 5, 0, 32, 0);
            memset(m + 96, 0xA5, 32);
            if (write(fd, m, sizeof m) < 0)
                return 24;
            break;
        case 5: /* silent: a slow hello, left open a while (a few only) */
            if (nsilent < 4) {
                silent[nsilent++] = fd;
                continue;
            }
            break;
        }
        close(fd);
    }
    /* A real peer with the wrong secret. */
    dagger_edge_t *e;
    if (dagger_edge_open(&e, f->wrong_uri, DAGGER_EDGE_PUSH) < 0)
        return 25;
    dagger_value_t v = dagger_i64(-1);
    if (dagger_edge_push(e, &v) != DAGGER_EPEER)
        return 26;
    if (dagger_edge_close(e)) {
    }
    signal_ready(ready);
    /* The real producer. */
    if (dagger_edge_open(&e, f->good_uri, DAGGER_EDGE_PUSH) < 0)
        return 27;
    for (int i = 0; i < 10; i++) {
        v = dagger_i64(i);
        if (dagger_edge_push(e, &v) < 0)
            return 28;
    }
    for (int i = 0; i < nsilent; i++)
        close(silent[i]);
    return dagger_edge_close(e) < 0 ? 29 : 0;
}

TEST(tcp_listener_survives_bad_clients)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&secret=flood&handshake_ms=300", DAGGER_EDGE_POP);
    struct flood_args f = {.port = listen_port(c), .nbad = 240};
    snprintf(f.good_uri, sizeof f.good_uri, "tcp://127.0.0.1:%d?secret=flood", f.port);
    snprintf(f.wrong_uri, sizeof f.wrong_uri, "tcp://127.0.0.1:%d?secret=wrong", f.port);
    int ready;
    pid_t pid = spawn_child(flood_child, &f, &ready);
    for (int i = 0; i < 10; i++) {
        dagger_value_t v;
        int rc;
        /* Each pop is bounded; timeouts while bad clients are refused are not failures. */
        for (int tries = 0; (rc = dagger_edge_pop(c, &v, 1000)) == DAGGER_ETIMEDOUT && tries < 30;
             tries++)
            ;
        if (rc < 0)
            fail_msg("pop %d: %s: %s", i, dagger_err_name(rc), dagger_edge_errmsg(c));
        ASSERT_EQ(v.kind, DAGGER_KIND_I64);
        ASSERT_EQ(v.u.i, i);
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 10000), DAGGER_ECLOSED);
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    /* every bad client but the silent ones past the fourth (closed at once: refused too) */
    ASSERT_EQ(st.rejected, (uint64_t)f.nbad + 1);
    ASSERT_EQ(st.values, 10);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

/* A silent client must not make a short pop wait for the whole handshake bound (item 4). */
TEST(tcp_handshake_honours_the_callers_timeout)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&secret=t&handshake_ms=60000", DAGGER_EDGE_POP);
    int fd = raw_connect(listen_port(c));
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 200), DAGGER_ETIMEDOUT);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "handshake");
    ASSERT_ERR(dagger_edge_pop(c, &v, 200), DAGGER_ETIMEDOUT); /* not sticky */
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.rejected, 0);
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
}

/* encrypt=1: the values arrive; a peer that does not encrypt is refused (item 7). */
TEST(tcp_encrypted_round_trip)
{
    tcp_blob_round_trip("tcp://127.0.0.1:0?role=listen&secret=e&encrypt=1",
                        "secret=e&encrypt=1&batch=16384");
    dagger_edge_t *e;
    ASSERT_ERR(dagger_edge_open(&e, "tcp://127.0.0.1:0?role=listen&encrypt=1", DAGGER_EDGE_POP),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "encrypt=1 needs a secret");
}

/* A relay that flips one byte after the handshake: the encrypted consumer refuses the data. */
struct relay_args {
    int port_in;  /* the relay listens here (the producer connects) */
    int port_out; /* the consumer listens here */
};

static int relay_child(void *arg, int ready)
{
    struct relay_args *r = arg;
    int out = raw_connect(r->port_out);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port_in)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1) < 0)
        return 30;
    signal_ready(ready);
    int in = accept(ls, NULL, NULL);
    if (in < 0)
        return 31;
    /* Forward both ways; flip a byte of the producer's stream past the handshake (72 + 96). */
    size_t sent = 0;
    struct pollfd p[2] = {{in, POLLIN, 0}, {out, POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, 10000) <= 0)
            return 0;
        unsigned char buf[65536];
        if (p[0].revents) {
            ssize_t n = read(in, buf, sizeof buf);
            if (n <= 0)
                return 0;
            for (ssize_t i = 0; i < n; i++, sent++)
                if (sent == 72 + 56 + 10)
                    buf[i] ^= 1;
            if (write(out, buf, (size_t)n) != n)
                return 0;
        }
        if (p[1].revents) {
            ssize_t n = read(out, buf, sizeof buf);
            if (n <= 0)
                return 0;
            if (write(in, buf, (size_t)n) != n)
                return 0;
        }
    }
}

TEST(tcp_encrypted_tampering_detected)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen&secret=r&encrypt=1", DAGGER_EDGE_POP);
    dagger_edge_t *tmp;
    OPEN_OK(&tmp, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP);
    struct relay_args r = {.port_in = listen_port(tmp), .port_out = listen_port(c)};
    ASSERT_OK(dagger_edge_close(tmp)); /* a free port for the relay */
    int ready;
    pid_t relay = spawn_child(relay_child, &r, &ready);
    wait_ready(ready);
    struct prod_args a = {.n = 100};
    snprintf(a.uri, sizeof a.uri, "tcp://127.0.0.1:%d?secret=r&encrypt=1", r.port_in);
    int ready2;
    pid_t prod = spawn_child(producer_child, &a, &ready2);
    dagger_value_t v;
    int rc;
    while ((rc = dagger_edge_pop(c, &v, 10000)) == 0)
        ;
    ASSERT_ERR(rc, DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "failed authentication");
    ASSERT_OK(dagger_edge_close(c));
    kill(prod, SIGKILL);
    kill(relay, SIGKILL);
    child_status(prod);
    child_status(relay);
    close(ready);
    close(ready2);
}

/* Beyond loopback without a secret: refused under DAGGER_REQUIRE_SECRET=1 (item 7). */
TEST(tcp_exposed_listener_needs_a_secret)
{
    dagger_edge_t *e;
    setenv("DAGGER_REQUIRE_SECRET", "1", 1);
    ASSERT_ERR(dagger_edge_open(&e, "tcp://0.0.0.0:0?role=listen", DAGGER_EDGE_POP), DAGGER_EACCES);
    ASSERT_STR_HAS(dagger_last_errmsg(), "without a secret");
    OPEN_OK(&e, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP); /* loopback is fine */
    ASSERT_OK(dagger_edge_close(e));
    OPEN_OK(&e, "tcp://0.0.0.0:0?role=listen&secret=x", DAGGER_EDGE_POP);
    ASSERT_OK(dagger_edge_close(e));
    unsetenv("DAGGER_REQUIRE_SECRET");
    OPEN_OK(&e, "tcp://0.0.0.0:0?role=listen", DAGGER_EDGE_POP); /* a warning only */
    ASSERT_OK(dagger_edge_close(e));
}

TEST(tcp_connect_refused_is_clear_error)
{
    /* Find a port nobody listens on. */
    dagger_edge_t *l;
    OPEN_OK(&l, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP);
    int port = listen_port(l);
    ASSERT_OK(dagger_edge_close(l));
    char uri[128];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d?connect_ms=300", port);
    dagger_edge_t *p;
    OPEN_OK(&p, uri, DAGGER_EDGE_PUSH);
    dagger_value_t v = dagger_i64(1);
    double t0 = now_ms();
    ASSERT_ERR(dagger_edge_push(p, &v), DAGGER_EPEER);
    ASSERT_TRUE(now_ms() - t0 < 2000);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "cannot connect");
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "refused");
    dagger_edge_stats_t st;
    dagger_edge_stats(p, &st);
    ASSERT_TRUE(st.reconnects >= 1);
    ASSERT_EQ(dagger_edge_close(p), 0); /* the failure was reported by push */
}

/* ---------------------------------------------------------------- UDP */

static int udp_raw(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_TRUE(fd >= 0);
    return fd;
}

static void udp_send(int fd, int port, const void *buf, size_t n)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(sendto(fd, buf, n, 0, (struct sockaddr *)&sa, sizeof sa), (ssize_t)n);
}

static void udp_send_i64(int fd, int port, unsigned kind, uint64_t seq, int64_t x)
{
    unsigned char m[24 + 32];
    dagger_value_t v = dagger_i64(x);
    long n = kind == 1 ? dagger_value_encode(&v, m + 24, 32) : 0;
    put_frame(m, kind, 0, (uint32_t)n, seq);
    udp_send(fd, port, m, 24 + (size_t)n);
}

TEST(udp_counts_drops)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "udp://127.0.0.1:0", DAGGER_EDGE_POP);
    int port = listen_port(c);
    int fd = udp_raw();
    udp_send_i64(fd, port, 1, 0, 100);
    udp_send_i64(fd, port, 1, 1, 101);
    udp_send_i64(fd, port, 1, 3, 103); /* seq 2 lost */
    udp_send_i64(fd, port, 1, 1, 101); /* a late duplicate: discarded */
    udp_send_i64(fd, port, 1, 4, 104);
    udp_send_i64(fd, port, 2, 6, 0); /* END after 6 values: seq 5 lost too */
    int64_t want[] = {100, 101, 103, 104};
    for (int i = 0; i < 4; i++) {
        dagger_value_t v;
        ASSERT_OK(dagger_edge_pop(c, &v, 2000));
        ASSERT_EQ(v.u.i, want[i]);
    }
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 2000), DAGGER_ECLOSED);
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.values, 4);
    ASSERT_EQ(st.drops, 2);
    ASSERT_EQ(st.rejected, 0);
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(udp_round_trip_with_secret_and_rejects)
{
    dagger_edge_t *c, *p;
    OPEN_OK(&c, "udp://127.0.0.1:0?secret=u", DAGGER_EDGE_POP);
    int port = listen_port(c);
    char uri[128];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d?secret=u", port);
    OPEN_OK(&p, uri, DAGGER_EDGE_PUSH);
    int fd = udp_raw();
    udp_send_i64(fd, port, 1, 0, 666); /* no tag: refused, counted, not delivered */
    udp_send(fd, port, "garbage", 7);
    static unsigned char big[70000];
    dagger_value_t v = dagger_blob_borrow(big, sizeof big);
    ASSERT_ERR(dagger_edge_push(p, &v), DAGGER_ERANGE);
    ASSERT_STR_HAS(dagger_edge_errmsg(p), "datagram limit");
    for (int i = 0; i < 50; i++) {
        v = dagger_i64(i);
        ASSERT_OK(dagger_edge_push(p, &v));
    }
    v = dagger_blob_borrow(big, 60000);
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_OK(dagger_edge_close(p));
    for (int i = 0; i < 50; i++) {
        ASSERT_OK(dagger_edge_pop(c, &v, 2000));
        ASSERT_EQ(v.u.i, i);
    }
    ASSERT_OK(dagger_edge_pop(c, &v, 2000));
    ASSERT_EQ(v.len, 60000);
    ASSERT_ERR(dagger_edge_pop(c, &v, 2000), DAGGER_ECLOSED);
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.rejected, 2);
    ASSERT_EQ(st.drops, 0);
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(udp_strict_and_idle)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "udp://127.0.0.1:0?strict=1", DAGGER_EDGE_POP);
    int fd = udp_raw();
    unsigned char m[24];
    put_frame(m, 1, 0, 1000, 0); /* announces 1000 bytes, carries none */
    udp_send(fd, listen_port(c), m, sizeof m);
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, 2000), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "header announces");
    ASSERT_OK(dagger_edge_close(c));

    OPEN_OK(&c, "udp://127.0.0.1:0?idle_ms=200", DAGGER_EDGE_POP);
    double t0 = now_ms();
    ASSERT_ERR(dagger_edge_pop(c, &v, 5000), DAGGER_EPEER);
    ASSERT_TRUE(now_ms() - t0 < 2000);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "idle_ms");
    ASSERT_OK(dagger_edge_close(c));
    close(fd);
}

/* A socket full of junk: the pop ends at its deadline (or idle_ms) instead of draining it all
 * first, because both are checked on every turn, not only when the socket is empty (item 5). */
static void pop_under_junk(const char *uri, int timeout_ms, int want)
{
    enum { NJUNK = 2000 };
    dagger_edge_t *c;
    OPEN_OK(&c, uri, DAGGER_EDGE_POP);
    int fd = udp_raw();
    for (int i = 0; i < NJUNK; i++)
        udp_send(fd, listen_port(c), "junk", 4);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* past idle_ms=1 */
    dagger_value_t v;
    ASSERT_ERR(dagger_edge_pop(c, &v, timeout_ms), want);
    dagger_edge_stats_t es;
    dagger_edge_stats(c, &es);
    ASSERT_TRUE(es.rejected > 0);
    if (es.rejected >= NJUNK)
        fail_msg("the pop read all %d junk datagrams before it looked at its deadline", NJUNK);
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
}

TEST(udp_junk_cannot_hold_a_pop)
{
    pop_under_junk("udp://127.0.0.1:0", 0, DAGGER_ETIMEDOUT);
    pop_under_junk("udp://127.0.0.1:0?idle_ms=1", -1, DAGGER_EPEER);
}

/* Datagrams recorded from an earlier stream with the same secret are refused (item 6). */
TEST(udp_replay_of_an_earlier_stream_refused)
{
    int rec = udp_raw();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    ASSERT_EQ(bind(rec, (struct sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(getsockname(rec, (struct sockaddr *)&sa, &sl), 0);
    char uri[128];
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d?secret=u", ntohs(sa.sin_port));
    dagger_edge_t *p1;
    OPEN_OK(&p1, uri, DAGGER_EDGE_PUSH);
    for (int i = 0; i < 3; i++) {
        dagger_value_t v = dagger_i64(100 + i);
        ASSERT_OK(dagger_edge_push(p1, &v));
    }
    ASSERT_OK(dagger_edge_close(p1)); /* END, three times */
    static unsigned char recorded[8][256];
    ssize_t lens[8];
    int n = 0;
    while (n < 8 && (lens[n] = recv(rec, recorded[n], 256, MSG_DONTWAIT)) > 0)
        n++;
    ASSERT_EQ(n, 6);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);

    dagger_edge_t *c, *p2;
    OPEN_OK(&c, "udp://127.0.0.1:0?secret=u&skew_ms=0", DAGGER_EDGE_POP);
    int port = listen_port(c);
    for (int i = 0; i < n; i++)
        udp_send(rec, port, recorded[i], (size_t)lens[i]);
    snprintf(uri, sizeof uri, "udp://127.0.0.1:%d?secret=u", port);
    OPEN_OK(&p2, uri, DAGGER_EDGE_PUSH);
    for (int i = 0; i < 2; i++) {
        dagger_value_t v = dagger_i64(7 + i);
        ASSERT_OK(dagger_edge_push(p2, &v));
    }
    /* A replay in the middle of the new stream is refused too. */
    udp_send(rec, port, recorded[0], (size_t)lens[0]);
    ASSERT_OK(dagger_edge_close(p2));
    dagger_value_t v;
    ASSERT_OK(dagger_edge_pop(c, &v, 2000));
    ASSERT_EQ(v.u.i, 7);
    ASSERT_OK(dagger_edge_pop(c, &v, 2000));
    ASSERT_EQ(v.u.i, 8);
    ASSERT_ERR(dagger_edge_pop(c, &v, 2000), DAGGER_ECLOSED);
    ASSERT_STR_HAS(dagger_edge_errmsg(c), "after 2 values");
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.rejected, (uint64_t)n + 1);
    ASSERT_EQ(st.values, 2);
    close(rec);
    ASSERT_OK(dagger_edge_close(c));
}

/* Sequence numbers never wrap: 2^64 - 1 is refused (item 6). */
TEST(udp_sequence_numbers_never_wrap)
{
    dagger_edge_t *c;
    OPEN_OK(&c, "udp://127.0.0.1:0", DAGGER_EDGE_POP);
    int fd = udp_raw();
    udp_send_i64(fd, listen_port(c), 1, UINT64_MAX, 1);
    udp_send_i64(fd, listen_port(c), 1, 0, 2);
    dagger_value_t v;
    ASSERT_OK(dagger_edge_pop(c, &v, 2000));
    ASSERT_EQ(v.u.i, 2);
    dagger_edge_stats_t st;
    dagger_edge_stats(c, &st);
    ASSERT_EQ(st.rejected, 1);
    close(fd);
    ASSERT_OK(dagger_edge_close(c));
}

/* A dir= path longer than the ring's name buffer is refused, never cut short (item 11). */
TEST(shm_overlong_dir_refused)
{
    char uri[400], dir[220];
    memset(dir, 'd', sizeof dir - 1);
    dir[0] = '/';
    dir[sizeof dir - 1] = '\0';
    snprintf(uri, sizeof uri, "shm:/ring?dir=%s", dir);
    dagger_edge_t *e;
    ASSERT_ERR(dagger_edge_open(&e, uri, DAGGER_EDGE_POP), DAGGER_ENAMETOOLONG);
    ASSERT_STR_HAS(dagger_last_errmsg(), "bytes long");
}

/* dagger_edge_poll leaves the value of the last pop valid (item 10). */
static void fill_pattern(unsigned char *b, size_t n, int seed)
{
    for (size_t k = 0; k < n; k++)
        b[k] = (unsigned char)(k * 7 + (size_t)seed);
}

static void check_pattern(const dagger_value_t *v, size_t n, int seed)
{
    ASSERT_EQ(v->kind, DAGGER_KIND_BLOB);
    ASSERT_EQ(v->len, n);
    const unsigned char *p = v->u.p;
    for (size_t k = 0; k < n; k++)
        if (p[k] != (unsigned char)(k * 7 + (size_t)seed))
            fail_msg("byte %zu of the popped value changed after dagger_edge_poll", k);
}

static int poll_producer_child(void *arg, int ready)
{
    dagger_edge_t *e;
    if (dagger_edge_open(&e, (const char *)arg, DAGGER_EDGE_PUSH) < 0)
        return 1;
    static unsigned char a[1000], b[400000];
    fill_pattern(a, sizeof a, 1);
    fill_pattern(b, sizeof b, 2);
    for (int i = 0; i < 3; i++) {
        dagger_value_t v = dagger_i64(i);
        if (dagger_edge_push(e, &v) < 0)
            return 2;
    }
    dagger_value_t v = dagger_blob_borrow(a, sizeof a);
    if (dagger_edge_push(e, &v) < 0)
        return 3;
    v = dagger_blob_borrow(b, sizeof b);
    if (dagger_edge_push(e, &v) < 0)
        return 4;
    signal_ready(ready);
    return dagger_edge_close(e) < 0 ? 5 : 0;
}

TEST(poll_keeps_the_popped_value)
{
    /* shm: the poll must not release the record, or the producer may write over it. */
    char uri[160];
    dagger_edge_t *c, *p;
    shm_pair("pollkeep", &p, &c);
    static unsigned char a[8000];
    fill_pattern(a, sizeof a, 3);
    dagger_value_t v = dagger_blob_borrow(a, sizeof a), got;
    ASSERT_OK(dagger_edge_push(p, &v));
    ASSERT_OK(dagger_edge_flush(p, 1000));
    ASSERT_OK(dagger_edge_pop(c, &got, 1000));
    ASSERT_EQ(dagger_edge_poll(c, 0), 0);
    static unsigned char z[8000];
    memset(z, 0xEE, sizeof z);
    for (int i = 0; i < 20; i++) {
        v = dagger_blob_borrow(z, sizeof z);
        if (dagger_edge_push_timed(p, &v, 0) < 0)
            break;
    }
    check_pattern(&got, sizeof a, 3);
    ASSERT_OK(dagger_edge_close(p));
    ASSERT_OK(dagger_edge_close(c));

    /* tcp: the poll must not move the receive buffer under the borrowed bytes. */
    OPEN_OK(&c, "tcp://127.0.0.1:0?role=listen", DAGGER_EDGE_POP);
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", listen_port(c));
    int ready;
    pid_t pid = spawn_child(poll_producer_child, uri, &ready);
    for (int i = 0; i < 3; i++)
        ASSERT_OK(dagger_edge_pop(c, &got, 10000));
    ASSERT_OK(dagger_edge_pop(c, &got, 10000));
    wait_ready(ready); /* the large blob is on its way */
    ASSERT_TRUE(dagger_edge_poll(c, 5000) >= 0);
    check_pattern(&got, 1000, 1);
    ASSERT_OK(dagger_edge_pop(c, &got, 10000));
    check_pattern(&got, 400000, 2);
    ASSERT_ERR(dagger_edge_pop(c, &got, 10000), DAGGER_ECLOSED);
    ASSERT_OK(dagger_edge_close(c));
    ASSERT_EQ(child_status(pid), 0);
    close(ready);
}

TEST_LIST(open_rejects_bad_uris, wrong_end_and_pointer_values_refused, shm_every_kind_round_trips,
          shm_variable_sizes_wrap_around, shm_cross_process_in_order, shm_killed_producer_is_epeer,
          shm_killed_consumer_is_epeer, shm_refuses_wrong_secret_second_producer_and_permissions,
          shm_corrupt_frame_closes_edge, shm_threads_stress, tcp_cross_process_in_order,
          tcp_blobs_cross_process, tcp_listening_producer, tcp_threads_stress,
          tcp_killed_producer_is_epeer, tcp_killed_consumer_is_epeer, tcp_garbage_frame_rejected,
          tcp_bad_lengths_rejected, tcp_wrong_secret_rejected, tcp_listener_survives_bad_clients,
          tcp_handshake_honours_the_callers_timeout, tcp_encrypted_round_trip,
          tcp_encrypted_tampering_detected, tcp_exposed_listener_needs_a_secret,
          tcp_connect_refused_is_clear_error, udp_counts_drops,
          udp_round_trip_with_secret_and_rejects, udp_strict_and_idle, udp_junk_cannot_hold_a_pop,
          udp_replay_of_an_earlier_stream_refused, udp_sequence_numbers_never_wrap,
          shm_overlong_dir_refused, poll_keeps_the_popped_value)
