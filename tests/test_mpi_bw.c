/* tests/test_mpi_bw.c - the large-transfer path between ranks (issue 9, bandwidth): fresh chunks
 * are zero even where their memory was used before (dagger__calloc no longer writes the bytes
 * itself, libc's calloc does when they are not fresh), a chunk pulled into such a buffer arrives
 * intact in both directions, and DAGGER_MPI_STAGES=1 reports each large pull on stderr.
 *
 * Design: driver mode under tests/mpi_run.sh on 2 ranks; rank 0 runs the cases. The stages case
 * points rank 0's stderr at a temporary file around a pull made by rank 0 (a chunk result of
 * rank 1), then reads the line back.
 * SPDX-License-Identifier: MIT
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dagger/chunk.h"
#include "dagger/mpi.h"
#include "harness.h"
#include "mpi_harness.h"

#define SIZE ((size_t)8 << 20) /* over MPI__HUGE_MIN: a large pull */

static uint8_t byte_at(size_t i) { return (uint8_t)(i * 131u + (i >> 12)); }

/* A chunk of `size` bytes made on the rank that runs it, filled with byte_at. */
static int make(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = (size_t)dagger_arg_i64(a, 0);
    dagger_chunk_t *c;
    if (dagger_chunk_create(dagger_tc_ctx(tc), n, &c))
        return dagger_fail(tc, DAGGER_ENOMEM, "no chunk of %zu bytes", n);
    uint8_t *p = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        p[i] = byte_at(i);
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* The index of the first byte of the argument chunk that differs from byte_at, or -1. */
static int check(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    (void)tc;
    dagger_chunk_t *c = dagger_arg_chunk(a, 0);
    const uint8_t *p = c ? dagger_chunk_data(c) : NULL;
    if (!p)
        return dagger_fail(tc, DAGGER_EINVAL, "no chunk argument");
    int64_t bad = -1;
    for (size_t i = 0; i < dagger_chunk_size(c) && bad < 0; i++)
        if (p[i] != byte_at(i))
            bad = (int64_t)i;
    *out = dagger_i64(bad);
    return 0;
}

/* Is every byte of a fresh chunk zero? (its memory was written and freed just before) */
static int fresh_is_zero(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = (size_t)dagger_arg_i64(a, 0);
    int64_t dirty = 0;
    for (int round = 0; round < 3; round++) {
        dagger_chunk_t *c;
        if (dagger_chunk_create(dagger_tc_ctx(tc), n, &c))
            return dagger_fail(tc, DAGGER_ENOMEM, "no chunk of %zu bytes", n);
        uint8_t *p = dagger_chunk_data(c);
        for (size_t i = 0; i < n; i++)
            dirty += p[i] != 0;
        memset(p, 0xAB, n); /* the next round may get this memory back */
        dagger_chunk_release(c);
    }
    *out = dagger_i64(dirty);
    return 0;
}

TEST(fresh_chunks_are_zero)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    static const int64_t sizes[] = {100, 65536, 1 << 20, 8 << 20, 64 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int rank = 0; rank < 2; rank++) {
            dagger_task_t *t = spawn_on(ctx, rank, fresh_is_zero, "fresh_is_zero",
                                        (dagger_value_t[]){dagger_i64(sizes[k])}, 1);
            int64_t dirty = -1;
            ASSERT_OK(dagger_fetch_i64(t, &dirty));
            ASSERT_EQ(dirty, 0);
            dagger_task_release(t);
        }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(large_chunks_arrive_intact_both_ways)
{
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    for (int round = 0; round < 3; round++) { /* later rounds reuse freed buffers */
        /* made here, pulled by rank 1 */
        dagger_task_t *m = dagger_spawn(ctx, make, (int64_t)SIZE);
        dagger_chunk_t *c;
        ASSERT_OK(dagger_fetch_chunk(m, &c));
        dagger_task_t *k =
            spawn_on(ctx, 1, check, "check", (dagger_value_t[]){dagger_chunkv(c)}, 1);
        int64_t bad = 0;
        ASSERT_OK(dagger_fetch_i64(k, &bad));
        ASSERT_EQ(bad, -1);
        dagger_task_release(k);
        dagger_task_release(m); /* c was borrowed from m */
        /* made on rank 1, pulled here */
        m = spawn_on(ctx, 1, make, "make", (dagger_value_t[]){dagger_i64((int64_t)SIZE)}, 1);
        ASSERT_OK(dagger_fetch_chunk(m, &c));
        ASSERT_EQ(dagger_chunk_size(c), SIZE);
        const uint8_t *p = dagger_chunk_data(c);
        for (size_t i = 0; i < SIZE; i++)
            if (p[i] != byte_at(i))
                fail_msg("round %d: byte %zu differs", round, i);
        dagger_task_release(m);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(stages_report_a_large_pull)
{
    setenv("DAGGER_MPI_STAGES", "1", 1); /* read at open, on every rank */
    dagger_ctx_t *ctx = open_job(1);
    if (!ctx)
        return;
    char path[] = "/tmp/dagger_stagesXXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ASSERT_TRUE(saved >= 0);
    ASSERT_TRUE(dup2(fd, STDERR_FILENO) >= 0);
    dagger_task_t *m =
        spawn_on(ctx, 1, make, "make", (dagger_value_t[]){dagger_i64((int64_t)SIZE)}, 1);
    dagger_chunk_t *c = NULL;
    int rc = dagger_fetch_chunk(m, &c);
    const uint8_t *bytes = rc ? NULL : dagger_chunk_data(c); /* a reference: pulled here */
    bool intact = bytes != NULL;
    for (size_t i = 0; intact && i < SIZE; i++)
        intact = bytes[i] == byte_at(i);
    dagger_task_t *s = spawn_on(ctx, 1, make, "make", (dagger_value_t[]){dagger_i64(1000)}, 1);
    dagger_chunk_t *small = NULL;
    int rc2 = dagger_fetch_chunk(s, &small); /* under MPI__HUGE_MIN: no line */
    const void *small_bytes = rc2 ? NULL : dagger_chunk_data(small);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ASSERT_OK(rc);
    ASSERT_OK(rc2);
    ASSERT_TRUE(intact);
    ASSERT_PTR(small_bytes);
    char text[1024] = {0};
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    unlink(path);
    ASSERT_TRUE(n > 0);
    ASSERT_STR_HAS(text, "dagger: rank 0: pulled 8388608 bytes from rank 1: receive ");
    ASSERT_STR_HAS(text, " MB/s)\n");
    ASSERT_TRUE(strstr(text, "pulled 1000 bytes") == NULL);
    ASSERT_TRUE(strchr(text, '\n') == strrchr(text, '\n')); /* one line: the large pull only */
    dagger_task_release(s); /* small and c were borrowed from s and m */
    dagger_task_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(fresh_chunks_are_zero, large_chunks_arrive_intact_both_ways, stages_report_a_large_pull)
