/* bench/stream/net_peers.c - what dagger's cross-process edges are measured against.
 *
 * memcpy: one thread copies B-byte values from a source buffer into a 4 MiB destination used
 *   as a ring (the bandwidth bound of the shm ring, which makes one such copy per value).
 * socket: the same stream over a plain TCP loopback connection between two processes, done
 *   the way one would by hand: a 4-byte length then the bytes, small values gathered in a
 *   64 KiB buffer, large ones sent with writev; the receiver reads 256 KiB at a time.
 * Prints RESULT|stream_shm|memcpy|bytes=B|... and RESULT|stream_tcp|socket|bytes=B|...
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "net_problem.h"

static void bench_memcpy(size_t bytes, long n)
{
    const size_t ring = 4u << 20;
    unsigned char *src = calloc(1, bytes), *dst = calloc(1, ring);
    size_t off = 0;
    volatile uint64_t sink = 0;
    double t0 = net_now();
    for (long i = 0; i < n; i++) {
        net_put_id(src, (uint64_t)i, bytes);
        if (off + bytes > ring)
            off = 0;
        memcpy(dst + off, src, bytes);
        sink += dst[off];
        off += (bytes + 7) & ~(size_t)7;
    }
    double t1 = net_now();
    (void)sink;
    net_result("stream_shm", "memcpy", bytes, n, t1 - t0);
    free(src);
    free(dst);
}

static int write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t r = writev(fd, iov, cnt);
        if (r < 0)
            return -1;
        while (cnt > 0 && (size_t)r >= iov->iov_len)
            r -= (ssize_t)iov->iov_len, iov++, cnt--;
        if (cnt > 0)
            iov->iov_base = (char *)iov->iov_base + r, iov->iov_len -= (size_t)r;
    }
    return 0;
}

static int sender(int port, size_t bytes, long n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char *src = calloc(1, bytes), buf[65536];
    size_t used = 0;
    for (long i = 0; i < n; i++) {
        uint32_t len = (uint32_t)bytes;
        net_put_id(src, (uint64_t)i, bytes);
        if (bytes + 4 <= sizeof buf / 2) {
            if (used + 4 + bytes > sizeof buf) {
                struct iovec v = {buf, used};
                if (write_all(fd, &v, 1))
                    return 2;
                used = 0;
            }
            memcpy(buf + used, &len, 4);
            memcpy(buf + used + 4, src, bytes);
            used += 4 + bytes;
        } else {
            struct iovec v[2] = {{&len, 4}, {src, bytes}};
            if (write_all(fd, v, 2))
                return 2;
        }
    }
    struct iovec v = {buf, used};
    if (used && write_all(fd, &v, 1))
        return 2;
    close(fd);
    free(src);
    return 0;
}

static void bench_socket(size_t bytes, long n)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("socket peer");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(sender(ntohs(sa.sin_port), bytes, n));
    int fd = accept(lfd, NULL, NULL);
    double t0 = net_now();
    size_t cap = 256 << 10, start = 0, end = 0;
    unsigned char *buf = malloc(cap);
    long got = 0, bad = 0;
    while (got < n) {
        while (got < n && end - start >= 4) {
            uint32_t len;
            memcpy(&len, buf + start, 4);
            if (end - start < 4 + (size_t)len)
                break;
            bad += len != bytes || net_get_id(buf + start + 4, bytes) != (uint64_t)got;
            start += 4 + len;
            got++;
        }
        if (got == n)
            break;
        if (start == end)
            start = end = 0;
        else if (cap - start < 4 + bytes) {
            memmove(buf, buf + start, end - start);
            end -= start;
            start = 0;
        }
        ssize_t r = recv(fd, buf + end, cap - end, 0);
        if (r <= 0) {
            fprintf(stderr, "socket peer: connection ended after %ld values\n", got);
            break;
        }
        end += (size_t)r;
    }
    double t1 = net_now();
    waitpid(pid, NULL, 0);
    close(fd);
    close(lfd);
    free(buf);
    if (got == n && !bad)
        net_result("stream_tcp", "socket", bytes, n, t1 - t0);
}

int main(void)
{
    for (size_t s = 0; s < sizeof net_sizes / sizeof net_sizes[0]; s++)
        if (net_size_wanted(net_sizes[s]))
            bench_memcpy(net_sizes[s], net_count(net_sizes[s], 0));
    for (size_t s = 0; s < sizeof net_sizes / sizeof net_sizes[0]; s++)
        if (net_size_wanted(net_sizes[s]))
            bench_socket(net_sizes[s], net_count(net_sizes[s], 1));
    return 0;
}
