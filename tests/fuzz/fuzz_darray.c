/* tests/fuzz/fuzz_darray.c - libFuzzer harness: dagger_darray_load of a hostile folder (an
 * index.txt and block .npy files) or a hostile whole-array .npy.
 *
 * Byte 0 picks the layout. Whole (even): the rest is the .npy file; a load that succeeds must
 * save back (dagger_darray_save, whole) to a file whose data bytes equal those of the input
 * (both are Fortran order). Blocks (odd): the rest up to the first NUL is index.txt, the bytes
 * after it are every block file (block_0.npy, block_0_0.npy, ...); a load that fails must say
 * why in dagger_last_errmsg, one that succeeds must save back as blocks whose block 0 has the
 * data bytes of its input file. One context serves every input.
 * SPDX-License-Identifier: MIT
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dagger.h"
#include "dagger/darray.h"
#include "dagger/file.h"

static dagger_ctx_t *ctx;
static char dir[256], outdir[300];

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_darray: could not remove %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/dagger-fuzz-darray-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = 2;
    if (!mkdtemp(dir) || dagger_ctx_open(&ctx, &o) != 0)
        abort();
    atexit(remove_dir); /* libFuzzer exits through exit() at the end of a run */
    return 0;
}

static void put(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        abort();
}

/* The data bytes of the .npy at `path` (malloc'ed), their count in *n. */
static char *data_of(const char *path, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    dagger_file_meta_t m;
    char why[512];
    if (fd < 0 || dagger_codec_npy.probe(&dagger_codec_npy, fd, path, &m, why, sizeof why) != 0)
        abort();
    char *p = malloc(m.size + 1);
    if (!p || pread(fd, p, m.size, (off_t)m.offset) != (ssize_t)m.size)
        abort();
    close(fd);
    *n = m.size;
    return p;
}

static void whole(const uint8_t *data, size_t size)
{
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/in.npy", dir);
    snprintf(out, sizeof out, "%s/out.npy", dir);
    put("in.npy", data, size);
    dagger_darray_t *a = NULL;
    int rc = dagger_darray_load(ctx, in, DAGGER_DARRAY_FILE_WHOLE, DAGGER_AUTOBLOCKS, NULL, &a);
    if (rc) {
        if (a || !dagger_last_errmsg()[0])
            abort();
        return;
    }
    if (dagger_darray_save(a, out, DAGGER_DARRAY_FILE_WHOLE) != 0)
        abort();
    size_t n1, n2;
    char *d1 = data_of(in, &n1), *d2 = data_of(out, &n2);
    if (n1 != n2 || memcmp(d1, d2, n1) != 0)
        abort(); /* load then save changed the data */
    free(d1);
    free(d2);
    dagger_darray_release(a);
}

static void blocks(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t ilen = nul ? (size_t)(nul - data) : size;
    put("index.txt", data, ilen);
    const uint8_t *blk = nul ? nul + 1 : data + size;
    size_t blen = (size_t)(data + size - blk);
    static const char *const names[] = {"block_0.npy", "block_0_0.npy", "block_0_0_0.npy",
                                        "block_0_0_0_0.npy"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        put(names[k], blk, blen);
    dagger_darray_t *a = NULL;
    int rc = dagger_darray_load(ctx, dir, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &a);
    if (rc) {
        if (a || !dagger_last_errmsg()[0])
            abort();
        return;
    }
    /* Round trip: saved again as blocks, block 0 holds the data bytes of its input file. */
    int nd = dagger_darray_ndims(a);
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/%s", dir, names[nd - 1]);
    snprintf(out, sizeof out, "%s/out/%s", dir, names[nd - 1]);
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    if (nd < 1 || nd > 4 || dagger_darray_save(a, outdir, DAGGER_DARRAY_FILE_BLOCKS) != 0)
        abort();
    size_t n1, n2;
    char *d1 = data_of(in, &n1), *d2 = data_of(out, &n2);
    if (n1 != n2 || memcmp(d1, d2, n1) != 0)
        abort(); /* load then save changed block 0 */
    free(d1);
    free(d2);
    dagger_darray_release(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        blocks(data + 1, size - 1);
    else
        whole(data + 1, size - 1);
    return 0;
}
