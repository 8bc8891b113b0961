/* examples/12_brokers.c - a random stream published through a broker (MQTT, then NATS) and read
 * by a second process.
 *
 * For each broker: this process runs a region generate -> edge sink that publishes random
 * numbers until one is below 0.01; a forked reader runs a region edge source -> sum that
 * subscribes to the same topic (subject) and ends when the producer closes the edge. Both print
 * how many values they moved. The brokers stay on 127.0.0.1: the example starts its own
 * mosquitto and nats-server at a free port (or uses DAGGER_MQTT_PORT / DAGGER_NATS_PORT when
 * set), and exits with 77 (skipped) when neither is installed or this build has no broker
 * transport. docs/net.md describes the URIs and the delivery guarantees.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dagger.h>
#include <dagger/stream.h>

struct gen {
    uint64_t state; /* xorshift64* */
    int64_t count;
};

static int generate(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct gen *g = dagger_arg_ptr(a, 0);
    uint64_t x = g->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g->state = x;
    double u = (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
    g->count++;
    if (u < 0.01) /* the last value */
        return dagger_finish_stream(tc, dagger_f64(u), dagger_i64(g->count));
    *out = dagger_f64(u);
    return 0;
}

static int add_up(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *sum = dagger_arg_ptr(a, 0);
    *sum += dagger_arg_f64(a, 1);
    return 0;
}

/* On an error path: close the context, saying so if that fails too. */
static void close_quietly(dagger_ctx_t *ctx)
{
    if (dagger_ctx_close(ctx) != 0)
        fprintf(stderr, "dagger_ctx_close: %s\n", dagger_last_errmsg());
}

/* The reader process: subscribe, say so through `ready`, then sum what arrives. */
static int reader(const char *uri, int ready)
{
    dagger_edge_t *in;
    if (dagger_edge_open(&in, uri, DAGGER_EDGE_POP) != 0) {
        fprintf(stderr, "reader: %s\n", dagger_edge_errmsg(NULL));
        return 1;
    }
    dagger_ctx_t *ctx = NULL;
    dagger_stream_t *s;
    if (write(ready, "r", 1) != 1 || dagger_ctx_open(&ctx, NULL) != 0) {
        dagger_edge_close(in);
        return 1;
    }
    if (dagger_stream_begin(ctx, NULL, &s) != 0) {
        fprintf(stderr, "reader: %s\n", dagger_last_errmsg());
        dagger_edge_close(in);
        close_quietly(ctx);
        return 1;
    }
    double sum = 0;
    dagger_task_t *src = dagger_stream_spawn_edge_source(s, in); /* consumes `in` */
    dagger_task_t *total = dagger_spawn(ctx, add_up, (void *)&sum, src);
    int rc = dagger_stream_end(s) != 0;
    int64_t n = 0;
    if (!rc && dagger_fetch_i64(src, &n) != 0) {
        fprintf(stderr, "reader: %s\n", dagger_task_errmsg(src));
        rc = 1;
    } else if (!rc && dagger_fetch(total, NULL) != 0) { /* dagger_wait would not report it */
        fprintf(stderr, "reader: %s\n", dagger_task_errmsg(total));
        rc = 1;
    }
    if (!rc)
        printf("  reader: %lld values, mean %.4f\n", (long long)n, n ? sum / n : 0.0);
    dagger_task_release(src);
    dagger_task_release(total);
    return dagger_ctx_close(ctx) != 0 || rc;
}

/* The writer: generate -> edge sink. Returns the number of values published, or -1. */
static int64_t writer(const char *uri)
{
    dagger_edge_t *out;
    if (dagger_edge_open(&out, uri, DAGGER_EDGE_PUSH) != 0) {
        fprintf(stderr, "writer: %s\n", dagger_edge_errmsg(NULL));
        return -1;
    }
    dagger_ctx_t *ctx = NULL;
    dagger_stream_t *s;
    if (dagger_ctx_open(&ctx, NULL) != 0) {
        dagger_edge_close(out);
        return -1;
    }
    if (dagger_stream_begin(ctx, NULL, &s) != 0) {
        dagger_edge_close(out);
        close_quietly(ctx);
        return -1;
    }
    struct gen g = {0x2545F4914F6CDD1Dull, 0};
    dagger_task_t *x = dagger_spawn(ctx, generate, (void *)&g);
    dagger_task_t *sink = dagger_stream_spawn_edge_sink(s, out, x); /* consumes `out` */
    int64_t n = -1;
    if (dagger_stream_end(s) != 0)
        fprintf(stderr, "writer: %s\n", dagger_last_errmsg());
    else if (dagger_fetch_i64(sink, &n) != 0)
        fprintf(stderr, "writer: %s\n", dagger_task_errmsg(sink));
    dagger_task_release(x);
    dagger_task_release(sink);
    return dagger_ctx_close(ctx) != 0 ? -1 : n;
}

/* Start `prog` (mosquitto or nats-server) on 127.0.0.1 at a free port; 0 when not installed.
 * The broker dies with this process (PR_SET_PDEATHSIG) and is stopped by PID at the end. */
static int start_broker(const char *prog, pid_t *pid)
{
    const char *dirs[] = {"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"};
    char path[128] = "";
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && !path[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dirs[i], prog);
        if (access(path, X_OK) != 0)
            path[0] = 0;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (!path[0] || fd < 0 || bind(fd, (struct sockaddr *)&a, len) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return 0;
    close(fd);
    char port[8];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    fflush(NULL);
    if ((*pid = fork()) == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        /* mosquitto 2 without a config file listens on the loopback interface only */
        if (strcmp(prog, "mosquitto") == 0)
            execl(path, prog, "-p", port, (char *)NULL);
        else
            execl(path, prog, "-a", "127.0.0.1", "-p", port, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up to 5 s until it accepts connections */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        int up = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (up)
            return ntohs(a.sin_port);
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    return 0;
}

/* One broker: the writer here, the reader in a child. Returns 0, 77 (skipped) or 1. */
static int through(const char *scheme, const char *prog, const char *env, const char *fmt)
{
    pid_t broker = 0;
    int port = getenv(env) ? atoi(getenv(env)) : start_broker(prog, &broker);
    if (port <= 0) {
        printf("%s: %s is not installed, skipped\n", scheme, prog);
        return 77;
    }
    char uri[160];
    snprintf(uri, sizeof uri, fmt, port);
    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        close(ready[0]);
        int r = reader(uri, ready[1]);
        fflush(NULL); /* _exit does not flush stdio */
        _exit(r);
    }
    close(ready[1]);
    char c;
    int st = 0;
    int64_t n = -1;
    if (read(ready[0], &c, 1) == 1) /* the reader is subscribed: nothing will be missed */
        n = writer(uri);
    waitpid(child, &st, 0);
    printf("  writer: %lld values (%s, a broker on a free port of 127.0.0.1)\n", (long long)n,
           scheme);
    int rc = n > 0 ? 0 : 1;
    if (broker > 0) {
        kill(broker, SIGTERM);
        waitpid(broker, NULL, 0);
    }
    close(ready[0]);
    return rc || !WIFEXITED(st) || WEXITSTATUS(st) ? 1 : 0;
}

int main(void)
{
    /* Which transports this build has: a bad option is refused by a built transport, an unknown
     * scheme by the registry. */
    dagger_edge_t *probe = NULL;
    int prc = dagger_edge_open(&probe, "mqtt://127.0.0.1:1/t?qos=7", DAGGER_EDGE_POP);
    int built_mqtt = prc == DAGGER_EINVAL && !strstr(dagger_last_errmsg(), "no transport");
    if (prc == DAGGER_ENOMEM)
        return 1;
    prc = dagger_edge_open(&probe, "nats://127.0.0.1:1/t?buffer=0", DAGGER_EDGE_POP);
    int built_nats = prc == DAGGER_EINVAL && !strstr(dagger_last_errmsg(), "no transport");
    if (prc == DAGGER_ENOMEM)
        return 1;
    int rc_mqtt = 77, rc_nats = 77;
    printf("MQTT:\n");
    if (built_mqtt)
        rc_mqtt = through("mqtt", "mosquitto", "DAGGER_MQTT_PORT",
                          "mqtt://127.0.0.1:%d/dagger/example/random?qos=1");
    else
        printf("  this build has no MQTT transport\n");
    printf("NATS:\n");
    if (built_nats)
        rc_nats = through("nats", "nats-server", "DAGGER_NATS_PORT",
                          "nats://127.0.0.1:%d/dagger.example.random");
    else
        printf("  this build has no NATS transport\n");
    if (rc_mqtt == 1 || rc_nats == 1)
        return 1;
    return rc_mqtt == 77 && rc_nats == 77 ? 77 : 0;
}
