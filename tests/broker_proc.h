/* tests/broker_proc.h - start, restart and stop real brokers (mosquitto, nats-server) for tests
 * and benchmarks.
 *
 * Each broker listens on 127.0.0.1 at a free port, with its files (mosquitto's config written
 * here, persistence, log) in a fresh directory under $TMPDIR. It is stopped by PID: by
 * broker_stop, by an atexit handler, and by the kernel (PR_SET_PDEATHSIG) if the process that
 * started it dies, whatever the cause. Every wait is bounded.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_TESTS_BROKER_PROC_H
#define DAGGER_TESTS_BROKER_PROC_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum broker_kind { BROKER_MQTT, BROKER_NATS };

struct broker {
    enum broker_kind kind;
    pid_t pid;
    int port;
    char dir[128];
    char user[64], pass[64]; /* when set, the broker requires these credentials */
    int tls;                 /* listen with TLS: <dir>/cert.pem (self-signed, 127.0.0.1) */
};

#define BROKER_MAX_ 8
static pid_t broker_pids_[BROKER_MAX_];

static void broker_kill_all_(void)
{
    for (int i = 0; i < BROKER_MAX_; i++)
        if (broker_pids_[i] > 0) {
            kill(broker_pids_[i], SIGKILL);
            waitpid(broker_pids_[i], NULL, 0);
            broker_pids_[i] = 0;
        }
}

static void broker_track_(pid_t pid, pid_t old)
{
    static int registered;
    if (!registered++)
        atexit(broker_kill_all_);
    for (int i = 0; i < BROKER_MAX_; i++)
        if (broker_pids_[i] == old) {
            broker_pids_[i] = pid;
            return;
        }
}

/* The broker's program, or NULL when it is not installed (Debian puts both in /usr/sbin). */
static inline const char *broker_program(enum broker_kind k)
{
    static char found[2][256];
    const char *name = k == BROKER_MQTT ? "mosquitto" : "nats-server";
    if (found[k][0])
        return found[k];
    const char *env = getenv("PATH");
    char path[1024];
    snprintf(path, sizeof path, "%s:/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin",
             env ? env : "");
    for (char *save = NULL, *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(found[k], sizeof found[k], "%s/%s", d, name);
        if (access(found[k], X_OK) == 0)
            return found[k];
    }
    found[k][0] = 0;
    return NULL;
}

static inline int broker_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int broker_accepts_(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void broker_sleep_ms_(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Write mosquitto's config (and password file) into b->dir. Returns 0 or -1. */
static int broker_mqtt_config_(struct broker *b, char *conf, size_t cap)
{
    snprintf(conf, cap, "%s/mosquitto.conf", b->dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    struct passwd *pw = getpwuid(getuid());
    fprintf(f, "listener %d 127.0.0.1\n", b->port);
    fprintf(f, "user %s\n", pw ? pw->pw_name : "root");
    fprintf(f, "persistence true\npersistence_location %s/\n", b->dir);
    fprintf(f, "autosave_interval 0\n");
    fprintf(f, "max_queued_messages 0\nmax_queued_bytes 0\n");
    fprintf(f, "log_dest stderr\nlog_type error\nlog_type warning\n");
    if (b->tls)
        fprintf(f, "certfile %s/cert.pem\nkeyfile %s/key.pem\n", b->dir, b->dir);
    if (b->user[0]) {
        fprintf(f, "allow_anonymous false\npassword_file %s/passwd\n", b->dir);
    } else {
        fprintf(f, "allow_anonymous true\n");
    }
    fclose(f);
    if (b->user[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "mosquitto_passwd -c -b '%s/passwd' '%s' '%s' >/dev/null 2>&1",
                 b->dir, b->user, b->pass);
        if (system(cmd) != 0)
            return -1;
        snprintf(cmd, sizeof cmd, "%s/passwd", b->dir);
        chmod(cmd, 0600);
    }
    return 0;
}

/* A self-signed certificate for 127.0.0.1 and localhost in <dir>/cert.pem, key.pem (openssl).
 * Returns 0, 77 when openssl is not installed, -1. */
static inline int broker_make_cert(const char *dir, const char *name)
{
    char cmd[700];
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        return 77;
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout '%s/%s-key.pem' "
             "-out '%s/%s.pem' >/dev/null 2>&1",
             dir, name, dir, name);
    return system(cmd) == 0 ? 0 : -1;
}

/* Start (or restart, on the same port and directory) the broker. Returns 0, 77 when the
 * program is not installed, or -1 (its log is printed). */
static int broker_launch_(struct broker *b)
{
    const char *prog = broker_program(b->kind);
    if (!prog)
        return 77;
    char conf[256], log[256], portarg[16];
    snprintf(log, sizeof log, "%s/broker.log", b->dir);
    snprintf(portarg, sizeof portarg, "%d", b->port);
    if (b->kind == BROKER_MQTT && broker_mqtt_config_(b, conf, sizeof conf) < 0)
        return -1;
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        char cert[200], key[200];
        snprintf(cert, sizeof cert, "%s/cert.pem", b->dir);
        snprintf(key, sizeof key, "%s/key.pem", b->dir);
        if (b->kind == BROKER_MQTT) {
            execl(prog, prog, "-c", conf, (char *)NULL);
        } else if (b->tls) {
            execl(prog, prog, "-a", "127.0.0.1", "-p", portarg, "--tls", "--tlscert", cert,
                  "--tlskey", key, (char *)NULL);
        } else if (b->user[0]) {
            execl(prog, prog, "-a", "127.0.0.1", "-p", portarg, "--user", b->user, "--pass",
                  b->pass, (char *)NULL);
        } else {
            execl(prog, prog, "-a", "127.0.0.1", "-p", portarg, (char *)NULL);
        }
        _exit(127);
    }
    broker_track_(pid, 0);
    b->pid = pid;
    for (int i = 0; i < 500; i++) { /* 5 s */
        if (broker_accepts_(b->port))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            broker_track_(0, pid);
            b->pid = 0;
            break;
        }
        broker_sleep_ms_(10);
    }
    fprintf(stderr, "broker %s on port %d did not start; its log:\n", prog, b->port);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
    return -1;
}

/* Start a broker of `kind` (credentials required when user is not NULL; TLS with `tls`).
 * Returns 0, 77 when its program (or openssl, for TLS) is missing, -1 on failure. */
static inline int broker_start_tls(struct broker *b, enum broker_kind kind, const char *user,
                                   const char *pass, int tls)
{
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->tls = tls;
    if (user) {
        snprintf(b->user, sizeof b->user, "%s", user);
        snprintf(b->pass, sizeof b->pass, "%s", pass ? pass : "");
    }
    if (!broker_program(kind))
        return 77;
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/dagger-broker-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(b->dir))
        return -1;
    if (tls) {
        int rc = broker_make_cert(b->dir, "cert");
        if (rc != 0)
            return rc;
        char from[200], to[200];
        snprintf(from, sizeof from, "%s/cert-key.pem", b->dir);
        snprintf(to, sizeof to, "%s/key.pem", b->dir);
        if (rename(from, to) != 0)
            return -1;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        b->port = broker_free_port();
        if (b->port > 0 && broker_launch_(b) == 0)
            return 0;
    }
    return -1;
}

static inline int broker_start(struct broker *b, enum broker_kind kind, const char *user,
                               const char *pass)
{
    return broker_start_tls(b, kind, user, pass, 0);
}

/* Stop the broker by PID with `sig` (SIGTERM lets mosquitto save its sessions) and reap it
 * (SIGKILL after 5 s). */
static inline void broker_stop(struct broker *b, int sig)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, sig);
    int st, reaped = 0;
    for (int i = 0; i < 500 && !reaped; i++) {
        reaped = waitpid(b->pid, &st, WNOHANG) == b->pid;
        if (!reaped)
            broker_sleep_ms_(10);
    }
    if (!reaped) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &st, 0);
    }
    broker_track_(0, b->pid);
    b->pid = 0;
}

/* Restart on the same port: SIGTERM (mosquitto writes its persistence), then start again. */
static inline int broker_restart(struct broker *b)
{
    broker_stop(b, SIGTERM);
    return broker_launch_(b);
}

/* Stop the broker and remove its directory. */
static inline void broker_destroy(struct broker *b)
{
    broker_stop(b, SIGKILL);
    if (b->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", b->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", b->dir);
        b->dir[0] = 0;
    }
}

#endif /* DAGGER_TESTS_BROKER_PROC_H */
