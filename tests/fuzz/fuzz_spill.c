/* tests/fuzz/fuzz_spill.c - libFuzzer harness: the reload of spill files (the disk space's copy
 * to host), zstd-compressed or not, on corrupted and hostile files.
 *
 * Byte 0 chooses a mode. Mode 0, a round trip: the rest (after a zstd level and a corruption
 * spec of 5 bytes) is spilled through the disk space's copy and read back equal; then one byte
 * of the spill file is xor-ed and the reload must either fail with DAGGER_EIO and a message
 * naming the file, or give back the same bytes: never other data. Mode 1, a hostile file: the
 * rest is a spill file as found on disk, with its magic and checksum sealed by the harness when
 * bit 1 of byte 0 is set (so that the fuzzer reaches the zstd frame); the reload of the size its
 * header claims (capped) must fail with a message or fill exactly that many bytes.
 * SPDX-License-Identifier: MIT
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dagger.h"
#include "io/io.h"
#include "mem/mem.h"

#define HDR 40                     /* magic, size, stored, sum, flags */
#define MAX_SIZE ((size_t)1 << 20) /* the largest reload tried */

static const struct dagger__space_ops *ops;
static dagger_space_t disk = {0, DAGGER_SPACE_DISK, 0};
static dagger_space_t host;
static char dir[256]; /* DAGGER_SPILL_DIR: the spill directory is made inside */

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_spill: could not remove %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/dagger-fuzz-spill-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    setenv("DAGGER_SPILL_DIR", dir, 1);
    atexit(remove_dir); /* libFuzzer exits through exit() at the end of a run */
    dagger__io_register();
    ops = dagger__mem_space_ops(DAGGER_SPACE_DISK);
    host = dagger__mem_host();
    if (!ops)
        abort();
    return 0;
}

static void put(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n))
        abort();
    close(fd);
}

/* Read the record back into a buffer of n bytes; 0, or the error with its message checked. */
static int reload(struct dagger__disk_obj *o, void *dst, size_t n)
{
    int rc = ops->copy(&host, dst, &disk, o, n);
    if (rc) {
        const char *msg = dagger_last_errmsg();
        if (strncmp(msg, "reload from ", 12) != 0 || !strstr(msg, o->spill))
            abort(); /* the message names the spill file */
    }
    return rc;
}

static void round_trip(const uint8_t *data, size_t size)
{
    if (size < 6)
        return;
    char level[4];
    snprintf(level, sizeof level, "%d", data[0] % 6);
    setenv("DAGGER_SPILL_ZSTD", level, 1);
    uint32_t at = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16;
    uint8_t mask = data[4];
    const uint8_t *payload = data + 5;
    size_t n = size - 5;
    struct dagger__disk_obj *o = ops->alloc(&disk, n);
    char *back = malloc(n);
    if (!o || !back || ops->copy(&disk, o, &host, payload, n) != 0)
        abort();
    if (reload(o, back, n) != 0 || memcmp(back, payload, n) != 0)
        abort(); /* the round trip */
    FILE *f = fopen(o->spill, "r+b");
    if (!f || fseek(f, 0, SEEK_END) != 0)
        abort();
    long len = ftell(f);
    if (mask && len > 0) {
        long pos = (long)(at % (uint32_t)len);
        int c;
        if (fseek(f, pos, SEEK_SET) != 0 || (c = fgetc(f)) == EOF || fseek(f, pos, SEEK_SET) != 0 ||
            fputc(c ^ mask, f) == EOF)
            abort();
    }
    fclose(f);
    memset(back, 0, n);
    int rc = reload(o, back, n);
    if (rc == 0 ? memcmp(back, payload, n) != 0 : rc != DAGGER_EIO)
        abort(); /* a corrupted spill file gave other data, or another error than EIO */
    ops->free(&disk, o, n);
    free(back);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)p[i] << (8 * i);
    return x;
}

static void hostile(int seal, const uint8_t *data, size_t size)
{
    uint8_t *file = malloc(size + HDR);
    if (!file)
        abort();
    memcpy(file, data, size);
    if (seal && size >= HDR) {
        memcpy(file, "DAGSPIL1", 8);
        uint64_t stored = le64(file + 16);
        uint64_t sum = dagger__io_checksum(file + HDR, stored < size - HDR ? stored : size - HDR);
        memcpy(file + 24, &sum, 8);
    }
    size_t n = size >= 16 ? (size_t)le64(file + 8) : 16;
    if (n > MAX_SIZE)
        n = 16;
    struct dagger__disk_obj *o = ops->alloc(&disk, n);
    uint8_t *back = malloc(n + 1);
    if (!o || !back || ops->copy(&disk, o, &host, data, 0) != 0)
        abort();
    put(o->spill, file, size);
    back[n] = 0xA5;
    (void)reload(o, back, n);
    if (back[n] != 0xA5)
        abort(); /* wrote past the n bytes asked for */
    ops->free(&disk, o, n);
    free(back);
    free(file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0)
        round_trip(data + 1, size - 1);
    else
        hostile(data[0] & 2, data + 1, size - 1);
    return 0;
}
