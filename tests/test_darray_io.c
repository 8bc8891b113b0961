/* tests/test_darray_io.c - saving and loading DArrays: one .npy per block with an index, and one
 * whole-array Fortran-order .npy read and written by offset; numpy reads and writes the latter.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#include "dagger/darray.h"

static const dagger_elt_t ELTS[4] = {DAGGER_ELT_F64, DAGGER_ELT_F32, DAGGER_ELT_I64,
                                     DAGGER_ELT_I32};

static char dir[256];

/* A fresh folder for the case; removed by cleanup(). */
static const char *fresh_dir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/dagger-daio-XXXXXX", base && *base ? base : "/tmp");
    ASSERT_PTR(mkdtemp(dir));
    return dir;
}

static void cleanup(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Element k of type e holds k * 3 - 7 (exact in every type). */
static void *values(dagger_elt_t e, size_t n)
{
    char *p = malloc(n * dagger_elt_size(e) + 1);
    for (size_t k = 0; k < n; k++) {
        double v = (double)k * 3 - 7;
        if (e == DAGGER_ELT_F64)
            ((double *)p)[k] = v;
        else if (e == DAGGER_ELT_F32)
            ((float *)p)[k] = (float)v;
        else if (e == DAGGER_ELT_I64)
            ((int64_t *)p)[k] = (int64_t)v;
        else
            ((int32_t *)p)[k] = (int32_t)v;
    }
    return p;
}

static void assert_holds(dagger_darray_t *a, dagger_elt_t e, const void *want, size_t n)
{
    ASSERT_EQ((int)dagger_darray_elt(a), (int)e);
    ASSERT_EQ((int)dagger_darray_length(a), (int)n);
    size_t bytes = n * dagger_elt_size(e);
    void *got = malloc(bytes + 1);
    ASSERT_OK(dagger_darray_collect(a, got, bytes, 0));
    ASSERT_EQ(memcmp(got, want, bytes), 0);
    free(got);
}

TEST(round_trip_every_type_both_modes_ragged)
{
    dagger_ctx_t *ctx = test_ctx(3);
    fresh_dir();
    const size_t dims[3] = {7, 5, 3}, bs[3] = {3, 2, 2}; /* ragged in every dimension */
    for (int nd = 1; nd <= 3; nd++)
        for (int t = 0; t < 4; t++) {
            dagger_elt_t e = ELTS[t];
            dagger_dims_t d = {nd, {0}}, b = {nd, {0}};
            size_t n = 1;
            for (int k = 0; k < nd; k++) {
                d.d[k] = dims[k];
                b.d[k] = bs[k];
                n *= dims[k];
            }
            void *src = values(e, n);
            dagger_darray_t *a, *x;
            ASSERT_OK(dagger_darray_distribute(ctx, e, b, d, src, NULL, &a));

            char path[400];
            snprintf(path, sizeof path, "%s/blocks-%d-%d", dir, nd, t);
            ASSERT_OK(dagger_darray_save(a, path, DAGGER_DARRAY_FILE_BLOCKS));
            ASSERT_OK(dagger_darray_load(ctx, path, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS,
                                         NULL, &x));
            assert_holds(x, e, src, n);
            dagger_dims_t xb = dagger_darray_block_dims(x);
            for (int k = 0; k < nd; k++)
                ASSERT_EQ((int)xb.d[k], (int)bs[k]);
            dagger_darray_release(x);
            ASSERT_OK(dagger_darray_load(ctx, path, DAGGER_DARRAY_FILE_BLOCKS, b, NULL, &x));
            dagger_darray_release(x);

            snprintf(path, sizeof path, "%s/whole-%d-%d.npy", dir, nd, t);
            ASSERT_OK(dagger_darray_save(a, path, DAGGER_DARRAY_FILE_WHOLE));
            ASSERT_OK(dagger_darray_load(ctx, path, DAGGER_DARRAY_FILE_WHOLE, b, NULL, &x));
            assert_holds(x, e, src, n);
            dagger_darray_release(x);
            /* Read back with another blocking: blocks are runs at offsets, any blocking works. */
            dagger_dims_t other = {nd, {2, 4, 1}};
            ASSERT_OK(dagger_darray_load(ctx, path, DAGGER_DARRAY_FILE_WHOLE, other, NULL, &x));
            assert_holds(x, e, src, n);
            ASSERT_EQ((int)dagger_darray_block_dims(x).d[0], 2);
            dagger_darray_release(x);
            dagger_darray_release(a);
            free(src);
        }
    /* The folder layout: a file per block named by its grid coordinates, and the index. */
    char p[400];
    snprintf(p, sizeof p, "%s/blocks-2-0/index.txt", dir);
    ASSERT_TRUE(exists(p));
    snprintf(p, sizeof p, "%s/blocks-2-0/block_2_2.npy", dir);
    ASSERT_TRUE(exists(p));
    snprintf(p, sizeof p, "%s/blocks-2-0/block_3_0.npy", dir);
    ASSERT_FALSE(exists(p));
    cleanup();
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(placed_and_empty_arrays)
{
    dagger_ctx_t *ctx = test_ctx(3);
    fresh_dir();
    /* Blocks pinned to threads are saved and loaded by tasks on those threads. */
    dagger_darray_opts_t o;
    dagger_darray_opts_init(&o);
    o.dist = DAGGER_DIST_CYCLICCOL;
    void *src = values(DAGGER_ELT_I64, 9 * 10);
    dagger_darray_t *a, *x;
    ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_I64, DAGGER_BLOCKS(4, 3), DAGGER_DIMS(9, 10),
                                       src, &o, &a));
    char p[400];
    for (int mode = 0; mode < 2; mode++) {
        snprintf(p, sizeof p, "%s/placed-%d", dir, mode);
        ASSERT_OK(dagger_darray_save(a, p, (dagger_darray_file_t)mode));
        ASSERT_OK(
            dagger_darray_load(ctx, p, (dagger_darray_file_t)mode, DAGGER_BLOCKS(4, 3), &o, &x));
        ASSERT_EQ(dagger_darray_block_place(x, 1), 0); /* block (1, 0): column 0 */
        ASSERT_EQ(dagger_darray_block_place(x, 3), 1); /* block (0, 1) */
        assert_holds(x, DAGGER_ELT_I64, src, 90);
        dagger_darray_release(x);
    }
    dagger_darray_release(a);
    free(src);
    /* An empty dimension: one empty block row, files with no data. */
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F32, DAGGER_BLOCKS(2, 2), DAGGER_DIMS(0, 3), NULL, &a));
    for (int mode = 0; mode < 2; mode++) {
        snprintf(p, sizeof p, "%s/empty-%d", dir, mode);
        ASSERT_OK(dagger_darray_save(a, p, (dagger_darray_file_t)mode));
        ASSERT_OK(
            dagger_darray_load(ctx, p, (dagger_darray_file_t)mode, DAGGER_AUTOBLOCKS, NULL, &x));
        ASSERT_EQ((int)dagger_darray_length(x), 0);
        ASSERT_EQ((int)dagger_darray_dims(x).d[1], 3);
        dagger_darray_release(x);
    }
    dagger_darray_release(a);
    cleanup();
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(whole_file_and_block_files_interoperate_with_numpy)
{
    if (test_python_numpy("pass") == 77)
        SKIP("python3 with numpy is not installed (python3-numpy)");
    dagger_ctx_t *ctx = test_ctx(2);
    fresh_dir();
    void *src = values(DAGGER_ELT_F64, 35);
    dagger_darray_t *a, *x;
    ASSERT_OK(dagger_darray_distribute(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 2), DAGGER_DIMS(7, 5),
                                       src, NULL, &a));
    char path[400], blocks[400], script[1500];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    snprintf(blocks, sizeof blocks, "%s/blocks", dir);
    ASSERT_OK(dagger_darray_save(a, path, DAGGER_DARRAY_FILE_WHOLE));
    ASSERT_OK(dagger_darray_save(a, blocks, DAGGER_DARRAY_FILE_BLOCKS));
    /* numpy reads: element (i, j) is column-major index i + 7 j; block (2, 1) is rows 6.., cols
     * 2..3. numpy then writes a Fortran-order i32 matrix and a 1-D f32 vector. */
    snprintf(script, sizeof script,
             "import numpy as np, sys; d = '%s'; a = np.load(d + '/a.npy'); "
             "i, j = np.indices((7, 5)); "
             "sys.exit(1) if a.shape != (7, 5) or not a.flags.f_contiguous else None; "
             "sys.exit(2) if not (a == (i + 7 * j) * 3.0 - 7).all() else None; "
             "b = np.load(d + '/blocks/block_2_1.npy'); "
             "sys.exit(3) if b.shape != (1, 2) or not (b == a[6:, 2:4]).all() else None; "
             "np.save(d + '/m.npy', np.asfortranarray(np.arange(24, dtype='<i4').reshape(4, 6))); "
             "np.save(d + '/v.npy', np.arange(10, dtype='<f4') / 4); "
             "np.save(d + '/c.npy', np.zeros((2, 3)))",
             dir);
    ASSERT_EQ(test_python_numpy(script), 0);

    snprintf(path, sizeof path, "%s/m.npy", dir);
    ASSERT_OK(
        dagger_darray_load(ctx, path, DAGGER_DARRAY_FILE_WHOLE, DAGGER_BLOCKS(3, 4), NULL, &x));
    ASSERT_EQ((int)dagger_darray_elt(x), (int)DAGGER_ELT_I32);
    int32_t m[24];
    ASSERT_OK(dagger_darray_collect(x, m, sizeof m, DAGGER_DARRAY_ROW_MAJOR));
    for (int k = 0; k < 24; k++)
        ASSERT_EQ(m[k], k); /* numpy's C-order values, seen row-major */
    dagger_darray_release(x);
    snprintf(path, sizeof path, "%s/v.npy", dir);
    ASSERT_OK(dagger_darray_load(ctx, path, DAGGER_DARRAY_FILE_WHOLE, DAGGER_AUTOBLOCKS, NULL, &x));
    float v[10];
    ASSERT_OK(dagger_darray_collect(x, v, sizeof v, 0));
    for (int k = 0; k < 10; k++)
        ASSERT_TRUE(v[k] == (float)k / 4);
    dagger_darray_release(x);
    /* numpy's default C order is refused with the way out in the message. */
    snprintf(path, sizeof path, "%s/c.npy", dir);
    ASSERT_ERR(dagger_darray_load(ctx, path, DAGGER_DARRAY_FILE_WHOLE, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "c.npy is C order");
    ASSERT_STR_HAS(dagger_last_errmsg(), "asfortranarray");
    ASSERT_NULL(x);
    dagger_darray_release(a);
    free(src);
    cleanup();
    ASSERT_OK(dagger_ctx_close(ctx));
}

static void save_blocks_of(dagger_ctx_t *ctx, dagger_elt_t e, const char *name)
{
    dagger_darray_t *a;
    ASSERT_OK(dagger_darray_ones(ctx, e, DAGGER_BLOCKS(3, 2), DAGGER_DIMS(7, 5), NULL, &a));
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ASSERT_OK(dagger_darray_save(a, p, DAGGER_DARRAY_FILE_BLOCKS));
    dagger_darray_release(a);
}

TEST(errors_name_the_file_and_the_problem)
{
    dagger_ctx_t *ctx = test_ctx(2);
    fresh_dir();
    save_blocks_of(ctx, DAGGER_ELT_F64, "a");
    save_blocks_of(ctx, DAGGER_ELT_F32, "f32");
    char p[400], q[400];
    dagger_darray_t *x = NULL;

    /* A missing block file. */
    snprintf(p, sizeof p, "%s/a/block_1_1.npy", dir);
    snprintf(q, sizeof q, "%s/a/saved.npy", dir);
    ASSERT_EQ(rename(p, q), 0);
    snprintf(p, sizeof p, "%s/a", dir);
    ASSERT_ERR(dagger_darray_load(ctx, p, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_ENOENT);
    ASSERT_STR_HAS(dagger_last_errmsg(), "missing block file");
    ASSERT_STR_HAS(dagger_last_errmsg(), "/a/block_1_1.npy");
    ASSERT_NULL(x);

    /* A block file of another shape: block (0, 0) is 3 x 2, block (2, 2) is 1 x 1. */
    snprintf(p, sizeof p, "%s/a/block_2_2.npy", dir);
    ASSERT_EQ(rename(q, p), 0);
    snprintf(q, sizeof q, "%s/a/block_1_1.npy", dir);
    {
        char cmd[900];
        snprintf(cmd, sizeof cmd, "cp '%s/a/block_0_0.npy' '%s'", dir, q);
        ASSERT_EQ(system(cmd), 0);
    }
    snprintf(p, sizeof p, "%s/a", dir);
    ASSERT_ERR(dagger_darray_load(ctx, p, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "shape mismatch");
    ASSERT_STR_HAS(dagger_last_errmsg(), "block_2_2.npy has shape (3, 2) (Fortran order)");
    ASSERT_STR_HAS(dagger_last_errmsg(), "block 8 is (1, 1)");

    /* A block file of another dtype. */
    {
        char cmd[900];
        snprintf(cmd, sizeof cmd, "cp '%s/f32/block_2_2.npy' '%s/a/block_2_2.npy'", dir, dir);
        ASSERT_EQ(system(cmd), 0);
    }
    ASSERT_ERR(dagger_darray_load(ctx, p, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "dtype mismatch");
    ASSERT_STR_HAS(dagger_last_errmsg(), "block_2_2.npy holds <f4, the index says <f8");

    /* Another blocking than the saved one, a missing index, a malformed index. */
    ASSERT_ERR(dagger_darray_load(ctx, p, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_BLOCKS(2, 2), NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "was saved with blocks (3, 2)");
    snprintf(q, sizeof q, "%s/nothing", dir);
    ASSERT_ERR(dagger_darray_load(ctx, q, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_ENOENT);
    ASSERT_STR_HAS(dagger_last_errmsg(), "nothing/index.txt");
    snprintf(q, sizeof q, "%s/f32/index.txt", dir);
    FILE *f = fopen(q, "w");
    ASSERT_PTR(f);
    fputs("dagger-darray 1\nelt <c16\n", f);
    fclose(f);
    snprintf(q, sizeof q, "%s/f32", dir);
    ASSERT_ERR(dagger_darray_load(ctx, q, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "f32/index.txt is not a DArray index");

    /* Whole files: missing, and not a .npy. */
    snprintf(q, sizeof q, "%s/none.npy", dir);
    ASSERT_ERR(dagger_darray_load(ctx, q, DAGGER_DARRAY_FILE_WHOLE, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_ENOENT);
    ASSERT_STR_HAS(dagger_last_errmsg(), "none.npy");
    snprintf(q, sizeof q, "%s/f32/index.txt", dir);
    ASSERT_ERR(dagger_darray_load(ctx, q, DAGGER_DARRAY_FILE_WHOLE, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "bad magic number");
    ASSERT_NULL(x);
    cleanup();
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(failed_saves_leave_no_file)
{
    dagger_ctx_t *ctx = test_ctx(2);
    fresh_dir();
    dagger_darray_t *a;
    ASSERT_OK(
        dagger_darray_ones(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(3, 2), DAGGER_DIMS(7, 5), NULL, &a));
    char p[400];
    /* A folder under a missing one. */
    snprintf(p, sizeof p, "%s/no/such/a.npy", dir);
    ASSERT_ERR(dagger_darray_save(a, p, DAGGER_DARRAY_FILE_WHOLE), DAGGER_ENOENT);
    ASSERT_STR_HAS(dagger_last_errmsg(), "no/such/a.npy");
    ASSERT_ERR(dagger_darray_save(a, p, DAGGER_DARRAY_FILE_BLOCKS), DAGGER_ENOENT);
    ASSERT_STR_HAS(dagger_last_errmsg(), "cannot create the folder");
    /* An interrupted write (injected full disk): neither the file nor a temporary stays. */
    setenv("DAGGER_FAULT_IO", "tofile", 1);
    snprintf(p, sizeof p, "%s/w.npy", dir);
    ASSERT_ERR(dagger_darray_save(a, p, DAGGER_DARRAY_FILE_WHOLE), DAGGER_ENOSPC);
    ASSERT_STR_HAS(dagger_last_errmsg(), "w.npy");
    snprintf(p, sizeof p, "%s/b", dir);
    ASSERT_ERR(dagger_darray_save(a, p, DAGGER_DARRAY_FILE_BLOCKS), DAGGER_ENOSPC);
    unsetenv("DAGGER_FAULT_IO");
    char cmd[800];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s/b')\" && test \"$(ls -A '%s')\" = b", dir,
             dir);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_ERR(dagger_darray_save(a, "", DAGGER_DARRAY_FILE_WHOLE), DAGGER_EINVAL);
    ASSERT_ERR(dagger_darray_save(a, p, (dagger_darray_file_t)7), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown mode 7");
    dagger_darray_release(a);
    cleanup();
    ASSERT_OK(dagger_ctx_close(ctx));
}

static void put_text(const char *name, const char *text)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ASSERT_PTR(f);
    fputs(text, f);
    ASSERT_EQ(fclose(f), 0);
}

/* tests/fuzz/corpus/darray/crash-index-*: the index alone sized the array, so a corrupted one
 * asked for 8 TiB in one block or for 10^8 block tasks before a block file was opened. Each
 * block file is checked first: it exists and holds at least its block's data bytes. */
TEST(hostile_index_is_checked_against_the_block_files)
{
    dagger_ctx_t *ctx = test_ctx(2);
    fresh_dir();
    dagger_darray_t *x = NULL;
    put_text("index.txt", "dagger-darray 1\nelt <f8\ndims (1099511627776,)\n"
                          "blocks (1099511627776,)\n");
    put_text("block_0.npy", "");
    ASSERT_ERR(dagger_darray_load(ctx, dir, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "/block_0.npy has 0 bytes but its block needs "
                                         "8796093022208 data bytes (the index says dims "
                                         "(1099511627776,), blocks (1099511627776,))");
    ASSERT_NULL(x);

    /* 10^8 blocks of one element: the first file holds one, the second is missing. */
    dagger_darray_t *one = NULL;
    ASSERT_OK(
        dagger_darray_zeros(ctx, DAGGER_ELT_F64, DAGGER_BLOCKS(1), DAGGER_DIMS(1), NULL, &one));
    char p[400];
    snprintf(p, sizeof p, "%s/block_0.npy", dir);
    ASSERT_OK(dagger_darray_save(one, p, DAGGER_DARRAY_FILE_WHOLE));
    dagger_darray_release(one);
    put_text("index.txt", "dagger-darray 1\nelt <f8\ndims (100000000,)\nblocks (1,)\n");
    ASSERT_ERR(dagger_darray_load(ctx, dir, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_ENOENT);
    ASSERT_STR_HAS(dagger_last_errmsg(), "missing block file");
    ASSERT_STR_HAS(dagger_last_errmsg(), "/block_1.npy");
    ASSERT_NULL(x);

    /* A sign is not an extent (strtoull took "-1" for 2^64 - 1). */
    put_text("index.txt", "dagger-darray 1\nelt <f8\ndims (-1,)\nblocks (1,)\n");
    ASSERT_ERR(dagger_darray_load(ctx, dir, DAGGER_DARRAY_FILE_BLOCKS, DAGGER_AUTOBLOCKS, NULL, &x),
               DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "index.txt is not a DArray index");
    ASSERT_NULL(x);
    cleanup();
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST_LIST(round_trip_every_type_both_modes_ragged, placed_and_empty_arrays,
          whole_file_and_block_files_interoperate_with_numpy, errors_name_the_file_and_the_problem,
          failed_saves_leave_no_file, hostile_index_is_checked_against_the_block_files)
