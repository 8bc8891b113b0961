/* tests/fuzz/fuzz_npy.c - libFuzzer harness: the .npy codec (probe, decode, encode) on a
 * hostile file.
 *
 * The input is the whole file, held in a memfd. A probe that succeeds must describe a header
 * that ends inside the file and data that fit in it (offset + size <= file size), with a shape
 * whose product times the element size is the size. The data then decode (C order, Fortran
 * order transposed) and round-trip: encoding the decoded data and probing and decoding that
 * file again gives the same type, shape and bytes. A failed probe must leave a message naming
 * the file. The raw codec reads the same file back byte for byte.
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dagger.h"
#include "dagger/file.h"

#define PATH "fuzz.npy"
#define MAX_DATA ((size_t)1 << 22) /* decode no more than this (the file bounds the size) */

static int file_of(const void *p, size_t n)
{
    int fd = memfd_create("fuzz_npy", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (n && write(fd, p, n) != (ssize_t)n)
        abort();
    return fd;
}

static void check_meta(const dagger_file_meta_t *m, size_t file_size)
{
    if (m->ndims < 1 || m->ndims > DAGGER_CHUNK_MAX_DIMS)
        abort();
    size_t count = dagger_elt_size(m->elt);
    if (count == 0)
        abort(); /* a .npy always has an element type */
    for (int d = 0; d < m->ndims; d++)
        count *= m->shape[d]; /* the probe refused an overflow */
    if (count != m->size || m->offset > file_size || file_size - m->offset < m->size)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[512] = "";
    dagger_file_meta_t m;
    int fd = file_of(data, size);
    if (dagger_codec_raw.probe(&dagger_codec_raw, fd, PATH, &m, why, sizeof why) != 0 ||
        m.size != size)
        abort();
    char *raw = malloc(size + 1);
    if (!raw || dagger_codec_raw.decode(&dagger_codec_raw, fd, PATH, &m, raw, why, sizeof why) ||
        memcmp(raw, data, size) != 0)
        abort(); /* the raw codec gives the file back byte for byte */
    free(raw);
    int rc = dagger_codec_npy.probe(&dagger_codec_npy, fd, PATH, &m, why, sizeof why);
    if (rc) {
        if (rc != DAGGER_EINVAL || strncmp(why, PATH ": ", strlen(PATH) + 2) != 0)
            abort(); /* a bad header is EINVAL, with a message naming the file */
        close(fd);
        return 0;
    }
    check_meta(&m, size);
    if (m.size > MAX_DATA) {
        close(fd);
        return 0;
    }
    char *a = malloc(m.size + 1), *b = malloc(m.size + 1);
    if (!a || !b)
        abort();
    if (dagger_codec_npy.decode(&dagger_codec_npy, fd, PATH, &m, a, why, sizeof why) != 0)
        abort(); /* the probe said the data fit in the file */
    close(fd);

    /* Round trip: what decoded writes back as C order and reads again the same. */
    dagger_file_meta_t w = m;
    w.fortran = 0;
    w.offset = 0;
    int fd2 = memfd_create("fuzz_npy2", MFD_CLOEXEC);
    if (fd2 < 0 || dagger_codec_npy.encode(&dagger_codec_npy, fd2, PATH, &w, a, why, sizeof why))
        abort();
    dagger_file_meta_t r;
    if (dagger_codec_npy.probe(&dagger_codec_npy, fd2, PATH, &r, why, sizeof why) != 0)
        abort(); /* the codec cannot read what it wrote */
    if (r.elt != m.elt || r.ndims != m.ndims || r.size != m.size || r.fortran ||
        r.npy_bool != m.npy_bool || memcmp(r.shape, m.shape, sizeof r.shape) != 0 || r.offset % 64)
        abort();
    if (dagger_codec_npy.decode(&dagger_codec_npy, fd2, PATH, &r, b, why, sizeof why) != 0 ||
        memcmp(a, b, m.size) != 0)
        abort();
    close(fd2);
    free(a);
    free(b);
    return 0;
}
