/* tests/test_io.c - lazy files, codecs (raw, .npy, user callbacks), tofile, and out-of-core
 * execution under a memory limit (spill, reload, faults).
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#include "dagger/trace.h"

#include "dagger/chunk.h"
#include "dagger/file.h"

/* ---------------------------------------------------------------- helpers */

static char tmpdir[256];

/* A fresh private folder for the case (removed with its files at the end). */
static const char *mkdir_tmp(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/dagger-io-test-XXXXXX", base && *base ? base : "/tmp");
    ASSERT_PTR(mkdtemp(tmpdir));
    return tmpdir;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The number of entries of `dir` (not . and ..). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static dagger_ctx_t *open_ctx(int threads, size_t limit)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    o.mem_limit = limit;
    dagger_ctx_t *ctx = NULL;
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    return ctx;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ASSERT_PTR(f);
    ASSERT_EQ(fwrite(p, 1, n, f), n);
    ASSERT_EQ(fclose(f), 0);
}

/* ---------------------------------------------------------------- bodies */

static int sum_f64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const double *x = dagger_arg_array(a, 0, DAGGER_ELT_F64, &n);
    if (!x)
        return DAGGER_ETYPE;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *out = dagger_f64(s);
    return 0;
}

static int sum_bytes(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const unsigned char *x = dagger_arg_buf(a, 0, &n);
    if (!x && n)
        return DAGGER_ETYPE;
    int64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *out = dagger_i64(s);
    return 0;
}

/* ---------------------------------------------------------------- raw files */

TEST(raw_round_trip_absolute_and_relative)
{
    const char *dir = mkdir_tmp();
    dagger_ctx_t *ctx = open_ctx(2, 0);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create(ctx, 1000, &c));
    unsigned char *p = dagger_chunk_data(c);
    for (int i = 0; i < 1000; i++)
        p[i] = (unsigned char)(i * 7);
    char abs[400];
    snprintf(abs, sizeof abs, "%s/data.bin", dir);
    ASSERT_OK(dagger_file_save(c, abs, NULL));

    dagger_chunk_t *f;
    ASSERT_OK(dagger_file(ctx, abs, NULL, &f));
    ASSERT_EQ(dagger_chunk_size(f), 1000);
    ASSERT_STR_EQ(dagger_file_path(f), abs);
    ASSERT_NULL(dagger_file_path(c));
    ASSERT_EQ(memcmp(dagger_chunk_data(f), p, 1000), 0);

    /* Relative: resolved against the working directory at the call. */
    char old[400];
    ASSERT_PTR(getcwd(old, sizeof old));
    ASSERT_EQ(chdir(dir), 0);
    dagger_chunk_t *g;
    ASSERT_OK(dagger_file_save(c, "rel.bin", &dagger_codec_raw));
    ASSERT_OK(dagger_file(ctx, "rel.bin", NULL, &g));
    ASSERT_EQ(chdir(old), 0);
    char want[400];
    snprintf(want, sizeof want, "%s/rel.bin", dir);
    ASSERT_STR_EQ(dagger_file_path(g), want);
    dagger_task_t *t = dagger_spawn(ctx, sum_bytes, g); /* loaded where the task runs */
    int64_t s = 0, e = 0;
    for (int i = 0; i < 1000; i++)
        e += (unsigned char)(i * 7);
    ASSERT_OK(dagger_fetch_i64(t, &s));
    ASSERT_EQ(s, e);
    dagger_task_release(t);
    dagger_chunk_release(g);
    dagger_chunk_release(f);
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

TEST(missing_file_fails_at_the_call)
{
    dagger_ctx_t *ctx = open_ctx(1, 0);
    dagger_chunk_t *f = (dagger_chunk_t *)&f;
    ASSERT_ERR(dagger_file(ctx, "/nonexistent-dagger-dir/x.npy", NULL, &f), DAGGER_ENOENT);
    ASSERT_NULL(f);
    ASSERT_STR_HAS(dagger_last_errmsg(), "/nonexistent-dagger-dir/x.npy");
    ASSERT_STR_HAS(dagger_last_errmsg(), "No such file or directory");
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(unreadable_file_gives_eacces)
{
    const char *dir = mkdir_tmp();
    char path[400];
    if (geteuid() == 0) { /* root reads anything but a write-only sysfs attribute */
        snprintf(path, sizeof path, "/sys/bus/pci/rescan");
        int fd = open(path, O_RDONLY);
        if (fd >= 0 || errno != EACCES) {
            if (fd >= 0)
                close(fd);
            rm_tree(dir);
            SKIP("running as root without a file root cannot read");
        }
    } else {
        snprintf(path, sizeof path, "%s/secret.bin", dir);
        write_bytes(path, "x", 1);
        ASSERT_EQ(chmod(path, 0), 0);
    }
    dagger_ctx_t *ctx = open_ctx(1, 0);
    dagger_chunk_t *f;
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EACCES);
    ASSERT_STR_HAS(dagger_last_errmsg(), path);
    ASSERT_STR_HAS(dagger_last_errmsg(), "Permission denied");
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

TEST(tofile_to_unwritable_folder_fails_at_fetch)
{
    const char *dir = mkdir_tmp();
    char sub[400], path[500];
    if (geteuid() == 0) {
        snprintf(sub, sizeof sub, "/sys/kernel");
    } else {
        snprintf(sub, sizeof sub, "%s/ro", dir);
        ASSERT_EQ(mkdir(sub, 0500), 0);
    }
    snprintf(path, sizeof path, "%s/out.npy", sub);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0) {
        close(fd);
        unlink(path);
        rm_tree(dir);
        SKIP("%s is writable here", sub);
    }
    dagger_ctx_t *ctx = open_ctx(1, 0);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create(ctx, 64, &c));
    dagger_task_t *t = dagger_tofile(ctx, c, path, NULL);
    dagger_chunk_t *f;
    ASSERT_ERR(dagger_fetch_chunk(t, &f), DAGGER_EACCES);
    ASSERT_STR_HAS(dagger_task_errmsg(t), path);
    dagger_task_release(t);
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

/* ---------------------------------------------------------------- npy */

TEST(npy_round_trip_every_type)
{
    const char *dir = mkdir_tmp();
    dagger_ctx_t *ctx = open_ctx(2, 0);
    const dagger_elt_t elts[] = {DAGGER_ELT_F64, DAGGER_ELT_F32, DAGGER_ELT_I64, DAGGER_ELT_I32,
                                 DAGGER_ELT_U8};
    for (size_t k = 0; k < sizeof elts / sizeof elts[0]; k++) {
        size_t shape[3] = {2, 3, 5};
        int nd = 1 + (int)(k % 3);
        dagger_chunk_t *c;
        ASSERT_OK(dagger_chunk_create_array(ctx, elts[k], nd, shape, &c));
        unsigned char *p = dagger_chunk_data(c);
        for (size_t i = 0; i < dagger_chunk_size(c); i++)
            p[i] = (unsigned char)(i * 13 + k);
        char path[400];
        snprintf(path, sizeof path, "%s/a%zu.npy", dir, k);
        ASSERT_OK(dagger_file_save(c, path, NULL));
        dagger_chunk_t *f;
        ASSERT_OK(dagger_file(ctx, path, NULL, &f));
        ASSERT_EQ(dagger_chunk_elt(f), elts[k]);
        size_t got[4];
        ASSERT_EQ(dagger_chunk_shape(f, got, 4), nd);
        for (int d = 0; d < nd; d++)
            ASSERT_EQ(got[d], shape[d]);
        ASSERT_EQ(dagger_chunk_size(f), dagger_chunk_size(c));
        ASSERT_EQ(memcmp(dagger_chunk_data(f), p, dagger_chunk_size(c)), 0);
        /* The data starts at a multiple of 64, as numpy writes it. */
        struct stat st;
        ASSERT_EQ(stat(path, &st), 0);
        ASSERT_EQ(((size_t)st.st_size - dagger_chunk_size(c)) % 64, 0);
        dagger_chunk_release(f);
        dagger_chunk_release(c);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

/* A hand-made .npy file: version `major`, header dict `dict`, then `n` data bytes. */
static void write_npy(const char *path, int major, const char *dict, const void *data, size_t n)
{
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hlen = total - pre;
    unsigned char *b = calloc(1, total + n);
    ASSERT_PTR(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    for (size_t i = 0; i < pre - 8; i++)
        b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', total - pre - dl - 1);
    b[total - 1] = '\n';
    memcpy(b + total, data, n);
    write_bytes(path, b, total + n);
    free(b);
}

TEST(npy_fortran_order_v2_and_bool)
{
    const char *dir = mkdir_tmp();
    dagger_ctx_t *ctx = open_ctx(1, 0);
    /* A 2x3 f64 array [[0,1,2],[10,11,12]] stored column-major, format 2.0. */
    double fdata[6] = {0, 10, 1, 11, 2, 12};
    char path[400];
    snprintf(path, sizeof path, "%s/f.npy", dir);
    write_npy(path, 2, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", fdata,
              sizeof fdata);
    dagger_chunk_t *f;
    ASSERT_OK(dagger_file(ctx, path, NULL, &f));
    const double *x = dagger_chunk_data(f);
    const double want[6] = {0, 1, 2, 10, 11, 12};
    for (int i = 0; i < 6; i++)
        ASSERT_NEAR(x[i], want[i], 0);
    dagger_chunk_release(f);

    unsigned char bdata[4] = {1, 0, 0, 1};
    snprintf(path, sizeof path, "%s/b.npy", dir);
    write_npy(path, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }", bdata, 4);
    ASSERT_OK(dagger_file(ctx, path, NULL, &f));
    ASSERT_EQ(dagger_chunk_elt(f), DAGGER_ELT_U8);
    ASSERT_EQ(memcmp(dagger_chunk_data(f), bdata, 4), 0);
    dagger_chunk_release(f);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

TEST(npy_bad_header_names_the_field)
{
    const char *dir = mkdir_tmp();
    dagger_ctx_t *ctx = open_ctx(1, 0);
    char path[400];
    dagger_chunk_t *f;
    snprintf(path, sizeof path, "%s/magic.npy", dir);
    write_bytes(path, "PK\003\004 not numpy at all", 22);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), path);
    ASSERT_STR_HAS(dagger_last_errmsg(), "magic");

    double d[2] = {1, 2};
    snprintf(path, sizeof path, "%s/descr.npy", dir);
    write_npy(path, 1, "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", d, 16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), path);
    ASSERT_STR_HAS(dagger_last_errmsg(), "field 'descr'");

    snprintf(path, sizeof path, "%s/shape.npy", dir);
    write_npy(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': [2], }", d, 16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "field 'shape'");

    snprintf(path, sizeof path, "%s/short.npy", dir);
    write_npy(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (9,), }", d, 16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "field 'shape'");

    snprintf(path, sizeof path, "%s/order.npy", dir);
    write_npy(path, 1, "{'descr': '<f8', 'fortran_order': maybe, 'shape': (2,), }", d, 16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "field 'fortran_order'");

    /* A key's name inside another value is not the key (it was: this file read as shape (1,),
     * 8 of its 16 bytes); numpy refuses other keys, and so does dagger. */
    snprintf(path, sizeof path, "%s/decoy.npy", dir);
    write_npy(path, 1,
              "{'note': \"'shape': (1,)\", 'descr': '<f8', 'fortran_order': False, "
              "'shape': (2,), }",
              d, 16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "field 'note': not a .npy header key (want descr, "
                                         "fortran_order, shape)");
    write_npy(path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'shape': (1,)}", d,
              16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "field 'shape': given twice");
    write_npy(path, 1, "{'descr': '<f8', 'fortran_order': Falsehood, 'shape': (2,)}", d, 16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "field 'fortran_order': its value is not followed by");
    write_npy(path, 1, "['descr', '<f8']", d, 16);
    ASSERT_ERR(dagger_file(ctx, path, NULL, &f), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "not a dict");
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

TEST(npy_interoperates_with_numpy)
{
    const char *dir = mkdir_tmp();
    if (test_python_numpy("pass") == 77) {
        rm_tree(dir);
        SKIP("python3 with numpy is not installed (python3-numpy)");
    }
    dagger_ctx_t *ctx = open_ctx(2, 0);
    /* dagger writes, numpy reads. */
    size_t shape[2] = {3, 4};
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 2, shape, &c));
    double *x = dagger_chunk_data(c);
    for (int i = 0; i < 12; i++)
        x[i] = i * 0.5;
    char path[400], script[1500];
    snprintf(path, sizeof path, "%s/from_dagger.npy", dir);
    ASSERT_OK(dagger_file_save(c, path, NULL));
    snprintf(script, sizeof script,
             "import numpy as np; a = np.load('%s'); "
             "assert a.dtype == np.float64 and a.shape == (3, 4), (a.dtype, a.shape); "
             "assert (a == np.arange(12).reshape(3, 4) * 0.5).all(), a",
             path);
    ASSERT_EQ(test_python_numpy(script), 0);

    /* numpy writes (Fortran order, f32, i32, bool, i64), dagger reads. */
    snprintf(script, sizeof script,
             "import numpy as np; d = '%s'; "
             "np.save(d + '/f32.npy', np.asfortranarray(np.arange(6, dtype=np.float32)"
             ".reshape(2, 3))); "
             "np.save(d + '/i32.npy', np.arange(-3, 3, dtype=np.int32)); "
             "np.save(d + '/i64.npy', np.arange(8, dtype=np.int64).reshape(2, 2, 2)); "
             "np.save(d + '/b.npy', np.array([True, False, True]))",
             dir);
    ASSERT_EQ(test_python_numpy(script), 0);
    dagger_chunk_t *f;
    snprintf(path, sizeof path, "%s/f32.npy", dir);
    ASSERT_OK(dagger_file(ctx, path, NULL, &f));
    ASSERT_EQ(dagger_chunk_elt(f), DAGGER_ELT_F32);
    const float *y = dagger_chunk_data(f);
    for (int i = 0; i < 6; i++)
        ASSERT_NEAR(y[i], (float)i, 0);
    dagger_chunk_release(f);
    snprintf(path, sizeof path, "%s/i32.npy", dir);
    ASSERT_OK(dagger_file(ctx, path, NULL, &f));
    const int32_t *z = dagger_chunk_data(f);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(z[i], i - 3);
    dagger_chunk_release(f);
    snprintf(path, sizeof path, "%s/i64.npy", dir);
    ASSERT_OK(dagger_file(ctx, path, NULL, &f));
    size_t s3[4];
    ASSERT_EQ(dagger_chunk_shape(f, s3, 4), 3);
    const int64_t *w = dagger_chunk_data(f);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(w[i], i);
    dagger_chunk_release(f);
    snprintf(path, sizeof path, "%s/b.npy", dir);
    ASSERT_OK(dagger_file(ctx, path, NULL, &f));
    ASSERT_EQ(memcmp(dagger_chunk_data(f), "\1\0\1", 3), 0);
    dagger_chunk_release(f);
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

/* ---------------------------------------------------------------- tofile, user codecs */

/* Seed's make_data: a task makes an array and saves it where it was made. */
static int make_data(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = 100;
    dagger_chunk_t *c;
    int rc = dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F64, 1, &n, &c);
    if (rc)
        return dagger_fail(tc, rc, "no chunk");
    double *x = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)i;
    rc = dagger_file_save(c, dagger_arg_str(a, 0), NULL);
    if (rc) {
        dagger_chunk_release(c);
        return dagger_fail(tc, rc, "%s", dagger_last_errmsg());
    }
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* A task that writes its own blob with dagger_tofile and returns the file it got back. */
static int save_nested(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double x[4] = {1, 2, 3, 4};
    dagger_value_t v = dagger_blob_copy(tc, x, sizeof x);
    dagger_task_t *t = dagger_tofile(dagger_tc_ctx(tc), v, dagger_arg_str(a, 0), NULL);
    dagger_chunk_t *f;
    int rc = dagger_fetch_chunk(t, &f); /* suspends this task, never its thread */
    if (rc == 0)
        *out = dagger_chunk_give(tc, dagger_chunk_retain(f));
    else
        rc = dagger_fail(tc, rc, "%s", dagger_task_errmsg(t));
    dagger_task_release(t);
    return rc;
}

static int iota_blob(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double x[50];
    for (int i = 0; i < 50; i++)
        x[i] = i;
    *out = dagger_blob_copy(tc, x, sizeof x);
    return 0;
}

TEST(tofile_inside_and_outside_tasks)
{
    const char *dir = mkdir_tmp();
    dagger_ctx_t *ctx = open_ctx(1, 0);
    char p1[400], p2[400];
    snprintf(p1, sizeof p1, "%s/made.npy", dir);
    snprintf(p2, sizeof p2, "%s/blob.bin", dir);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    dagger_task_t *m = dagger_spawn_opts(ctx, &o, make_data, p1);
    /* tofile of a task whose result is a chunk: a lazy file of it */
    char p3[400];
    snprintf(p3, sizeof p3, "%s/copy.npy", dir);
    dagger_task_t *t = dagger_tofile(ctx, m, p3, NULL);
    dagger_chunk_t *f;
    ASSERT_OK(dagger_fetch_chunk(t, &f));
    ASSERT_STR_EQ(dagger_file_path(f), p3);
    ASSERT_EQ(dagger_chunk_elt(f), DAGGER_ELT_F64);
    dagger_task_t *s = dagger_spawn(ctx, sum_f64, f);
    double sum;
    ASSERT_OK(dagger_fetch_f64(s, &sum));
    ASSERT_NEAR(sum, 4950.0, 0);
    /* the file the task saved where it ran */
    dagger_chunk_t *g;
    ASSERT_OK(dagger_file(ctx, p1, NULL, &g));
    ASSERT_EQ(memcmp(dagger_chunk_data(g), dagger_chunk_data(f), 800), 0);
    /* a blob result, raw */
    dagger_task_t *b = dagger_spawn(ctx, iota_blob);
    dagger_task_t *u = dagger_tofile(ctx, b, p2, NULL);
    dagger_chunk_t *h;
    ASSERT_OK(dagger_fetch_chunk(u, &h));
    ASSERT_EQ(dagger_chunk_size(h), 400);
    ASSERT_NEAR(((const double *)dagger_chunk_data(h))[49], 49.0, 0);
    /* tofile from inside a task (one worker: the nested fetch must not block it) */
    char p4[400];
    snprintf(p4, sizeof p4, "%s/nested.bin", dir);
    dagger_task_t *n = dagger_spawn_opts(ctx, &o, save_nested, p4);
    dagger_chunk_t *k;
    ASSERT_OK(dagger_fetch_chunk(n, &k));
    ASSERT_STR_EQ(dagger_file_path(k), p4);
    ASSERT_NEAR(((const double *)dagger_chunk_data(k))[3], 4.0, 0);
    dagger_task_release(n);
    dagger_chunk_release(g);
    dagger_task_release(u);
    dagger_task_release(b);
    dagger_task_release(s);
    dagger_task_release(t);
    dagger_task_release(m);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

TEST(tofile_interrupted_leaves_no_file)
{
    const char *dir = mkdir_tmp();
    setenv("DAGGER_FAULT_IO", "tofile", 1);
    dagger_ctx_t *ctx = open_ctx(1, 0);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create(ctx, 1 << 16, &c));
    char path[400];
    snprintf(path, sizeof path, "%s/out.npy", dir);
    dagger_task_t *t = dagger_tofile(ctx, c, path, NULL);
    dagger_chunk_t *f;
    ASSERT_ERR(dagger_fetch_chunk(t, &f), DAGGER_ENOSPC);
    ASSERT_STR_HAS(dagger_task_errmsg(t), path);
    ASSERT_EQ(access(path, F_OK), -1);
    ASSERT_EQ(count_entries(dir), 0); /* no temporary file either */
    /* an existing file keeps its old content when a rewrite is interrupted */
    write_bytes(path, "old", 3);
    ASSERT_ERR(dagger_file_save(c, path, NULL), DAGGER_ENOSPC);
    unsetenv("DAGGER_FAULT_IO");
    ASSERT_EQ(count_entries(dir), 1);
    ASSERT_OK(dagger_file(ctx, path, &dagger_codec_raw, &f));
    ASSERT_EQ(dagger_chunk_size(f), 3);
    dagger_chunk_release(f);
    dagger_task_release(t);
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

/* A user codec: "REV1" then the bytes reversed. */
static int rev_probe(const dagger_codec_t *cd, int fd, const char *path, dagger_file_meta_t *m,
                     char *why, size_t cap)
{
    struct stat st;
    char magic[4];
    if (fstat(fd, &st) || st.st_size < 4 || pread(fd, magic, 4, 0) != 4 ||
        memcmp(magic, "REV1", 4)) {
        snprintf(why, cap, "%s: not a REV1 file", path);
        return DAGGER_EINVAL;
    }
    memset(m, 0, sizeof *m);
    m->size = (size_t)st.st_size - 4;
    m->offset = 4;
    return 0;
}

static int rev_decode(const dagger_codec_t *cd, int fd, const char *path,
                      const dagger_file_meta_t *m, void *dst, char *why, size_t cap)
{
    unsigned char *d = dst;
    if (pread(fd, d, m->size, 4) != (ssize_t)m->size)
        return DAGGER_EIO;
    for (size_t i = 0; i < m->size / 2; i++) {
        unsigned char t = d[i];
        d[i] = d[m->size - 1 - i];
        d[m->size - 1 - i] = t;
    }
    return 0;
}

static int rev_encode(const dagger_codec_t *cd, int fd, const char *path,
                      const dagger_file_meta_t *m, const void *src, char *why, size_t cap)
{
    if (write(fd, "REV1", 4) != 4)
        return DAGGER_EIO;
    const unsigned char *s = src;
    for (size_t i = m->size; i-- > 0;)
        if (write(fd, s + i, 1) != 1)
            return DAGGER_EIO;
    return 0;
}

TEST(user_codec_round_trip)
{
    const dagger_codec_t rev = {"rev", rev_probe, rev_decode, rev_encode, NULL};
    const char *dir = mkdir_tmp();
    dagger_ctx_t *ctx = open_ctx(2, 0);
    dagger_chunk_t *c;
    ASSERT_OK(dagger_chunk_create(ctx, 10, &c));
    memcpy(dagger_chunk_data(c), "abcdefghij", 10);
    char path[400];
    snprintf(path, sizeof path, "%s/x.rev", dir);
    dagger_task_t *t = dagger_tofile(ctx, c, path, &rev);
    dagger_chunk_t *f;
    ASSERT_OK(dagger_fetch_chunk(t, &f));
    char raw[15] = {0};
    FILE *fp = fopen(path, "rb");
    ASSERT_PTR(fp);
    ASSERT_EQ(fread(raw, 1, 14, fp), 14);
    fclose(fp);
    ASSERT_STR_EQ(raw, "REV1jihgfedcba");
    ASSERT_EQ(memcmp(dagger_chunk_data(f), "abcdefghij", 10), 0);
    dagger_chunk_t *g;
    ASSERT_ERR(dagger_file(ctx, path, &dagger_codec_npy, &g), DAGGER_EINVAL);
    dagger_task_release(t);
    dagger_chunk_release(c);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

/* ---------------------------------------------------------------- out-of-core */

#define MiB (1024 * 1024)

/* Block `i` of the working set: n doubles i, i+1, ... (a blob kept as a chunk). */
static int gen_block(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0), n = dagger_arg_i64(a, 1);
    double *x = malloc((size_t)n * sizeof *x);
    if (!x)
        return dagger_fail(tc, DAGGER_ENOMEM, "gen");
    for (int64_t k = 0; k < n; k++)
        x[k] = (double)(i + k);
    *out = dagger_blob_copy(tc, x, (size_t)n * sizeof *x);
    free(x);
    return 0;
}

static int sum_buf_f64(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t len;
    const double *x = dagger_arg_buf(a, 0, &len);
    if (!x)
        return DAGGER_ETYPE;
    double s = 0;
    for (size_t k = 0; k < len / sizeof(double); k++)
        s += x[k];
    *out = dagger_f64(s);
    return 0;
}

static int add_blocks(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t la, lb;
    const double *x = dagger_arg_buf(a, 0, &la);
    const double *y = dagger_arg_buf(a, 1, &lb);
    if (!x || !y)
        return DAGGER_ETYPE;
    double *z = malloc(la);
    if (!z)
        return dagger_fail(tc, DAGGER_ENOMEM, "add");
    for (size_t k = 0; k < la / sizeof(double); k++)
        z[k] = x[k] + y[k];
    *out = dagger_blob_copy(tc, z, la);
    free(z);
    return 0;
}

/* A tree reduction of `nblocks` blocks of `bytes`: the sum of every element. */
static double reduce_tree(dagger_ctx_t *ctx, int nblocks, size_t bytes)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    dagger_task_t *t[256];
    int64_t n = (int64_t)(bytes / sizeof(double));
    for (int i = 0; i < nblocks; i++)
        t[i] = dagger_spawn_opts(ctx, &o, gen_block, (int64_t)i, n);
    for (int i = 0; i < nblocks; i++) /* the whole working set exists at once */
        ASSERT_OK(dagger_wait(t[i]));
    for (int w = nblocks; w > 1; w = (w + 1) / 2) {
        for (int i = 0; i < w / 2; i++) {
            dagger_task_t *s = dagger_spawn_opts(ctx, &o, add_blocks, t[2 * i], t[2 * i + 1]);
            dagger_task_release(t[2 * i]);
            dagger_task_release(t[2 * i + 1]);
            t[i] = s;
        }
        if (w % 2)
            t[w / 2] = t[w - 1];
    }
    dagger_task_t *s = dagger_spawn(ctx, sum_buf_f64, t[0]);
    double r = -1;
    ASSERT_OK(dagger_fetch_f64(s, &r));
    dagger_task_release(s);
    dagger_task_release(t[0]);
    return r;
}

TEST(out_of_core_reduction_matches_in_memory)
{
    const char *dir = mkdir_tmp();
    setenv("DAGGER_SPILL_DIR", dir, 1);
    const int nblocks = 64;
    /* A working set 16x the limit: 16 MiB under 1 MiB (64 MiB under 4 MiB at the full level;
     * that size took 27 s of the TSan suite) */
    const size_t bytes = test_level_full() ? MiB : MiB / 4, limit = 4 * bytes;
    /* sum over blocks i of sum_k (i + k), k < n */
    double n = (double)(bytes / sizeof(double)), want = 0;
    for (int i = 0; i < nblocks; i++)
        want += n * i + n * (n - 1) / 2;
    dagger_ctx_t *ctx = open_ctx(1, limit);
    double got = reduce_tree(ctx, nblocks, bytes);
    dagger_mem_stats_t st;
    ASSERT_OK(dagger_mem_stats(ctx, &st));
    ASSERT_EQ(st.limit, limit);
    ASSERT_TRUE(st.spilled >= (unsigned long long)(nblocks * bytes - limit));
    ASSERT_TRUE(st.reloaded > 0);
    ASSERT_TRUE(st.spills > 0 && st.reloads > 0);
    /* over the limit by one task's inputs (two blocks) and its result at most */
    ASSERT_TRUE(st.peak_resident <= limit + 3 * bytes);
    ASSERT_OK(dagger_ctx_close(ctx));
    ASSERT_NEAR(got, want, 0);
    ASSERT_EQ(count_entries(dir), 0); /* the private spill folder is gone */
    ctx = open_ctx(1, 0);             /* the same reduction in memory */
    ASSERT_NEAR(reduce_tree(ctx, nblocks, bytes), got, 0);
    ASSERT_OK(dagger_mem_stats(ctx, &st));
    ASSERT_EQ(st.spills, 0);
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_SPILL_DIR");
    rm_tree(dir);
}

/* Spills and reloads are trace events: the trace's counters match the memory counters. */
TEST(out_of_core_moves_are_traced)
{
    const char *dir = mkdir_tmp();
    setenv("DAGGER_SPILL_DIR", dir, 1);
    dagger_ctx_t *ctx = open_ctx(1, 2 * MiB);
    ASSERT_OK(dagger_trace_start(ctx));
    double got = reduce_tree(ctx, 16, MiB / 2);
    ASSERT_OK(dagger_trace_stop(ctx));
    double n = (double)(MiB / 2 / sizeof(double)), want = 0;
    for (int i = 0; i < 16; i++)
        want += n * i + n * (n - 1) / 2;
    ASSERT_NEAR(got, want, 0);
    dagger_mem_stats_t ms;
    ASSERT_OK(dagger_mem_stats(ctx, &ms));
    dagger_trace_stats_t ts;
    ASSERT_OK(dagger_trace_stats(ctx, &ts));
    ASSERT_TRUE(ms.spills > 0 && ms.reloads > 0);
    ASSERT_EQ(ts.spills, ms.spills);
    ASSERT_EQ(ts.spilled_bytes, ms.spilled);
    ASSERT_EQ(ts.reloads, ms.reloads);
    ASSERT_EQ(ts.reloaded_bytes, ms.reloaded);
    ASSERT_TRUE(ts.moves >= ts.spills + ts.reloads);
    char sum[4096];
    ASSERT_TRUE(dagger_trace_summary(ctx, sum, sizeof sum) > 0);
    ASSERT_STR_HAS(sum, "data moves");
    ASSERT_STR_HAS(sum, "spills");
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_SPILL_DIR");
    rm_tree(dir);
}

/* Runs `nblocks` gen tasks of `bytes` each under the limit; t[] gets them. */
static void gen_all(dagger_ctx_t *ctx, dagger_task_t **t, int nblocks, size_t bytes)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    for (int i = 0; i < nblocks; i++)
        t[i] = dagger_spawn_opts(ctx, &o, gen_block, (int64_t)i, (int64_t)(bytes / sizeof(double)));
    for (int i = 0; i < nblocks; i++)
        ASSERT_OK(dagger_wait(t[i]));
}

static double block_sum(int i, size_t bytes)
{
    double n = (double)(bytes / sizeof(double));
    return n * i + n * (n - 1) / 2;
}

/* Waits (bounded) until the spill thread brought the resident bytes under the limit. */
static void wait_resident_under(dagger_ctx_t *ctx, size_t limit)
{
    dagger_mem_stats_t st;
    for (int k = 0; k < 500; k++) {
        ASSERT_OK(dagger_mem_stats(ctx, &st));
        if (st.resident <= limit)
            return;
        usleep(10000);
    }
    fail_msg("resident %zu stayed above the limit %zu", st.resident, limit);
}

TEST(out_of_core_disk_full_keeps_data_and_fails_with_enospc)
{
    const char *dir = mkdir_tmp();
    setenv("DAGGER_SPILL_DIR", dir, 1);
    setenv("DAGGER_FAULT_IO", "spill", 1);
    const size_t bytes = 256 * 1024, limit = MiB;
    dagger_ctx_t *ctx = open_ctx(1, limit);
    dagger_task_t *t[8];
    gen_all(ctx, t, 8, bytes); /* 2 MiB under 1 MiB: every spill fails */
    int enospc = 0;
    for (int i = 0; i < 8; i++) {
        dagger_chunk_t *c;
        int rc = dagger_fetch_chunk(t[i], &c);
        if (rc) {
            ASSERT_EQ(rc, DAGGER_ENOSPC);
            ASSERT_STR_HAS(dagger_task_errmsg(t[i]), "disk full");
            enospc++;
        }
    }
    ASSERT_TRUE(enospc > 0);
    dagger_mem_stats_t st;
    ASSERT_OK(dagger_mem_stats(ctx, &st));
    ASSERT_TRUE(st.spill_failures > 0);
    ASSERT_EQ(st.spills, 0);
    /* no data is lost: the blocks that were made still read back right once the disk is back */
    unsetenv("DAGGER_FAULT_IO");
    for (int i = 0; i < 8; i++) {
        dagger_chunk_t *c;
        if (dagger_fetch_chunk(t[i], &c) == 0) {
            dagger_task_t *s = dagger_spawn(ctx, sum_buf_f64, t[i]);
            double v;
            ASSERT_OK(dagger_fetch_f64(s, &v));
            ASSERT_NEAR(v, block_sum(i, bytes), 0);
            dagger_task_release(s);
        }
        dagger_task_release(t[i]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_SPILL_DIR");
    rm_tree(dir);
}

/* Flips a byte in the middle of every spill file under `dir`; returns how many. */
static int corrupt_spills(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    ASSERT_PTR(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            n += corrupt_spills(p);
            continue;
        }
        int fd = open(p, O_RDWR);
        ASSERT_TRUE(fd >= 0);
        unsigned char b;
        off_t at = st.st_size / 2;
        ASSERT_EQ(pread(fd, &b, 1, at), 1);
        b ^= 0x5a;
        ASSERT_EQ(pwrite(fd, &b, 1, at), 1);
        close(fd);
        n++;
    }
    closedir(d);
    return n;
}

TEST(out_of_core_corrupted_spill_fails_with_eio)
{
    const char *dir = mkdir_tmp();
    setenv("DAGGER_SPILL_DIR", dir, 1);
    const size_t bytes = 256 * 1024, limit = MiB;
    dagger_ctx_t *ctx = open_ctx(1, limit);
    dagger_task_t *t[8];
    gen_all(ctx, t, 8, bytes);
    wait_resident_under(ctx, limit);
    ASSERT_TRUE(corrupt_spills(dir) > 0);
    int eio = 0;
    for (int i = 0; i < 8; i++) {
        dagger_task_t *s = dagger_spawn(ctx, sum_buf_f64, t[i]);
        double v;
        int rc = dagger_fetch_f64(s, &v);
        if (rc) { /* never silently wrong data */
            ASSERT_EQ(rc, DAGGER_EIO);
            ASSERT_STR_HAS(dagger_task_errmsg(s), "checksum");
            eio++;
        } else {
            ASSERT_NEAR(v, block_sum(i, bytes), 0);
        }
        dagger_task_release(s);
        dagger_task_release(t[i]);
    }
    ASSERT_TRUE(eio > 0);
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_SPILL_DIR");
    rm_tree(dir);
}

/* Rewrites the header of every spill file under `dir` to claim a zstd payload of 2^40 bytes
 * (cut: cuts the file to 20 bytes instead); returns how many. */
static int forge_spills(const char *dir, bool cut)
{
    int n = 0;
    DIR *d = opendir(dir);
    ASSERT_PTR(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            n += forge_spills(p, cut);
            continue;
        }
        int fd = open(p, O_RDWR);
        ASSERT_TRUE(fd >= 0);
        if (cut) {
            ASSERT_EQ(ftruncate(fd, 20), 0);
            close(fd);
            n++;
            continue;
        }
        uint64_t stored = (uint64_t)1 << 40,
                 flags = 1; /* header: magic, size, stored, sum, flags */
        ASSERT_EQ(pwrite(fd, &stored, 8, 16), 8);
        ASSERT_EQ(pwrite(fd, &flags, 8, 32), 8);
        close(fd);
        n++;
    }
    closedir(d);
    return n;
}

/* tests/fuzz/corpus/spill/crash-huge-stored: the reload of a zstd spill file allocated the
 * stored size its header claims (up to 2^48 bytes) before reading; it is checked against the
 * file's size first, and the reload fails with DAGGER_EIO naming both sizes. */
static void forged_spills_fail_with_eio(bool cut, const char *msg)
{
    const char *dir = mkdir_tmp();
    setenv("DAGGER_SPILL_DIR", dir, 1);
    const size_t bytes = 256 * 1024, limit = MiB;
    dagger_ctx_t *ctx = open_ctx(1, limit);
    dagger_task_t *t[8];
    gen_all(ctx, t, 8, bytes);
    wait_resident_under(ctx, limit);
    ASSERT_TRUE(forge_spills(dir, cut) > 0);
    int eio = 0;
    for (int i = 0; i < 8; i++) {
        dagger_task_t *s = dagger_spawn(ctx, sum_buf_f64, t[i]);
        double v;
        int rc = dagger_fetch_f64(s, &v);
        if (rc) {
            ASSERT_EQ(rc, DAGGER_EIO);
            ASSERT_STR_HAS(dagger_task_errmsg(s), msg);
            eio++;
        } else {
            ASSERT_NEAR(v, block_sum(i, bytes), 0);
        }
        dagger_task_release(s);
        dagger_task_release(t[i]);
    }
    ASSERT_TRUE(eio > 0);
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_SPILL_DIR");
    rm_tree(dir);
}

TEST(out_of_core_spill_with_a_forged_size_fails_with_eio)
{
    forged_spills_fail_with_eio(false, "the spill file's header is corrupted: it stores "
                                       "1099511627776 bytes, the file has");
}

/* tests/fuzz/corpus/spill/crash-truncated-header: a spill file shorter than its header said
 * "the file ends .. early (changed since opened?)" without naming the reload. */
TEST(out_of_core_truncated_spill_fails_with_eio)
{
    forged_spills_fail_with_eio(true, "the spill file is truncated: 20 bytes, its header is 40");
}

TEST(out_of_core_task_larger_than_the_limit_fails_with_enomem)
{
    dagger_ctx_t *ctx = open_ctx(1, MiB);
    dagger_chunk_t *a, *b;
    ASSERT_OK(dagger_chunk_create(ctx, 768 * 1024, &a));
    ASSERT_OK(dagger_chunk_create(ctx, 512 * 1024, &b));
    dagger_task_t *t = dagger_spawn(ctx, add_blocks, a, b);
    double v;
    ASSERT_ERR(dagger_fetch_f64(t, &v), DAGGER_ENOMEM);
    ASSERT_STR_HAS(dagger_task_errmsg(t), "1310720 bytes");
    ASSERT_STR_HAS(dagger_task_errmsg(t), "1048576 bytes");
    dagger_task_release(t);
    dagger_chunk_release(a);
    dagger_chunk_release(b);
    ASSERT_OK(dagger_ctx_close(ctx));
}

TEST(mem_limit_from_the_environment)
{
    setenv("DAGGER_MEM_LIMIT", "3M", 1);
    dagger_ctx_t *ctx = open_ctx(1, 0);
    dagger_mem_stats_t st;
    ASSERT_OK(dagger_mem_stats(ctx, &st));
    ASSERT_EQ(st.limit, 3 * MiB);
    ASSERT_OK(dagger_ctx_close(ctx));
    setenv("DAGGER_MEM_LIMIT", "lots", 1);
    dagger_opts_t o;
    dagger_opts_init(&o);
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_MEM_LIMIT=lots");
    unsetenv("DAGGER_MEM_LIMIT");
}

TEST(spilled_file_chunk_reloads_from_its_file)
{
    /* A file's host copy is dropped under the limit without writing a spill file. */
    const char *dir = mkdir_tmp();
    char path[400];
    snprintf(path, sizeof path, "%s/big.bin", dir);
    unsigned char *buf = malloc(MiB);
    ASSERT_PTR(buf);
    for (size_t i = 0; i < MiB; i++)
        buf[i] = (unsigned char)i;
    write_bytes(path, buf, MiB);
    free(buf);
    dagger_ctx_t *ctx = open_ctx(1, MiB + MiB / 2);
    dagger_chunk_t *f;
    ASSERT_OK(dagger_file(ctx, path, NULL, &f));
    int64_t want = 0;
    for (size_t i = 0; i < MiB; i++)
        want += (unsigned char)i;
    for (int round = 0; round < 3; round++) {
        dagger_task_t *s = dagger_spawn(ctx, sum_bytes, f);
        int64_t v;
        ASSERT_OK(dagger_fetch_i64(s, &v));
        ASSERT_EQ(v, want);
        dagger_task_release(s);
        dagger_task_t *t[4]; /* push it out */
        gen_all(ctx, t, 4, 256 * 1024);
        for (int i = 0; i < 4; i++)
            dagger_task_release(t[i]);
    }
    dagger_mem_stats_t st;
    ASSERT_OK(dagger_mem_stats(ctx, &st));
    ASSERT_EQ(st.spills, 0); /* nothing needed writing: the file is the disk copy */
    dagger_chunk_release(f);
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

/* ---------------------------------------------------------------- tiled Cholesky over chunks */

enum { CH_B = 64 }; /* tile edge */

/* Tile (I, J) of the SPD matrix a_ij = 1 / (1 + |i - j|) + n [i == j]. */
static int chol_gen(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t I = dagger_arg_i64(a, 0), J = dagger_arg_i64(a, 1), n = dagger_arg_i64(a, 2);
    double t[CH_B * CH_B];
    for (int r = 0; r < CH_B; r++)
        for (int c = 0; c < CH_B; c++) {
            int64_t i = I * CH_B + r, j = J * CH_B + c, d = i > j ? i - j : j - i;
            t[r * CH_B + c] = 1.0 / (double)(1 + d) + (i == j ? (double)n : 0.0);
        }
    *out = dagger_blob_copy(tc, t, sizeof t);
    return 0;
}

static int chol_potrf(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const double *x = dagger_arg_buf(a, 0, NULL);
    if (!x)
        return DAGGER_ETYPE;
    double l[CH_B * CH_B];
    memcpy(l, x, sizeof l);
    for (int j = 0; j < CH_B; j++) {
        for (int k = 0; k < j; k++)
            l[j * CH_B + j] -= l[j * CH_B + k] * l[j * CH_B + k];
        l[j * CH_B + j] = sqrt(l[j * CH_B + j]);
        for (int i = j + 1; i < CH_B; i++) {
            for (int k = 0; k < j; k++)
                l[i * CH_B + j] -= l[i * CH_B + k] * l[j * CH_B + k];
            l[i * CH_B + j] /= l[j * CH_B + j];
        }
        for (int i = 0; i < j; i++)
            l[i * CH_B + j] = 0;
    }
    *out = dagger_blob_copy(tc, l, sizeof l);
    return 0;
}

/* B L^-T: solve X L^T = B row by row. */
static int chol_trsm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const double *l = dagger_arg_buf(a, 0, NULL), *b = dagger_arg_buf(a, 1, NULL);
    if (!l || !b)
        return DAGGER_ETYPE;
    double x[CH_B * CH_B];
    for (int r = 0; r < CH_B; r++)
        for (int c = 0; c < CH_B; c++) {
            double v = b[r * CH_B + c];
            for (int k = 0; k < c; k++)
                v -= x[r * CH_B + k] * l[c * CH_B + k];
            x[r * CH_B + c] = v / l[c * CH_B + c];
        }
    *out = dagger_blob_copy(tc, x, sizeof x);
    return 0;
}

/* C - A B^T (syrk when A and B are the same tile). */
static int chol_gemm(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const double *c = dagger_arg_buf(a, 0, NULL), *x = dagger_arg_buf(a, 1, NULL),
                 *y = dagger_arg_buf(a, 2, NULL);
    if (!c || !x || !y)
        return DAGGER_ETYPE;
    double r[CH_B * CH_B];
    for (int i = 0; i < CH_B; i++)
        for (int j = 0; j < CH_B; j++) {
            double v = c[i * CH_B + j];
            for (int k = 0; k < CH_B; k++)
                v -= x[i * CH_B + k] * y[j * CH_B + k];
            r[i * CH_B + j] = v;
        }
    *out = dagger_blob_copy(tc, r, sizeof r);
    return 0;
}

/* The lower tiles of the Cholesky factor of a T x T tiled matrix, written to `l` (T*T tiles). */
static void cholesky(dagger_ctx_t *ctx, int T, double *l)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    dagger_task_t *A[16][16];
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++)
            A[i][j] =
                dagger_spawn_opts(ctx, &o, chol_gen, (int64_t)i, (int64_t)j, (int64_t)(T * CH_B));
    for (int k = 0; k < T; k++) {
        dagger_task_t *t = dagger_spawn_opts(ctx, &o, chol_potrf, A[k][k]);
        dagger_task_release(A[k][k]);
        A[k][k] = t;
        for (int i = k + 1; i < T; i++) {
            t = dagger_spawn_opts(ctx, &o, chol_trsm, A[k][k], A[i][k]);
            dagger_task_release(A[i][k]);
            A[i][k] = t;
        }
        for (int i = k + 1; i < T; i++)
            for (int j = k + 1; j <= i; j++) {
                t = dagger_spawn_opts(ctx, &o, chol_gemm, A[i][j], A[i][k], A[j][k]);
                dagger_task_release(A[i][j]);
                A[i][j] = t;
            }
    }
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++) {
            dagger_chunk_t *c;
            ASSERT_OK(dagger_fetch_chunk(A[i][j], &c));
            dagger_task_t *s = dagger_spawn(ctx, sum_buf_f64, c); /* read it back as a task */
            double v;
            ASSERT_OK(dagger_fetch_f64(s, &v));
            dagger_task_release(s);
            l[i * T + j] = v;
            dagger_task_release(A[i][j]);
        }
}

TEST(out_of_core_tiled_cholesky_matches_in_memory)
{
    const int T = 8; /* 36 tiles of 32 KiB: 1.1 MiB under a 256 KiB limit */
    const size_t limit = 256 * 1024, tile = CH_B * CH_B * sizeof(double);
    double mem[64], ooc[64];
    dagger_ctx_t *ctx = open_ctx(1, 0);
    cholesky(ctx, T, mem);
    ASSERT_OK(dagger_ctx_close(ctx));
    ctx = open_ctx(1, limit);
    cholesky(ctx, T, ooc);
    dagger_mem_stats_t st;
    ASSERT_OK(dagger_mem_stats(ctx, &st));
    ASSERT_OK(dagger_ctx_close(ctx));
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++)
            ASSERT_TRUE(mem[i * T + j] == ooc[i * T + j]); /* bit for bit */
    ASSERT_TRUE(mem[0] > 0);
    ASSERT_TRUE(st.spills > 0 && st.reloads > 0);
    ASSERT_TRUE(st.peak_resident <= limit + 4 * tile);
}

TEST(out_of_core_two_threads_and_zstd)
{
    /* The same factor with two workers racing the spill thread, and spill files compressed with
     * zstd when the build has it (DAGGER_SPILL_ZSTD is ignored otherwise). */
    const int T = 6;
    double mem[64], ooc[64];
    dagger_ctx_t *ctx = open_ctx(2, 0);
    cholesky(ctx, T, mem);
    ASSERT_OK(dagger_ctx_close(ctx));
    setenv("DAGGER_SPILL_ZSTD", "1", 1);
    ctx = open_ctx(2, 128 * 1024);
    cholesky(ctx, T, ooc);
    dagger_mem_stats_t st;
    ASSERT_OK(dagger_mem_stats(ctx, &st));
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_SPILL_ZSTD");
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++)
            ASSERT_TRUE(mem[i * T + j] == ooc[i * T + j]);
    ASSERT_TRUE(st.spills > 0 && st.reloads > 0);
}

TEST(save_a_spilled_chunk)
{
    /* dagger_file_save of a chunk whose only valid copy is a spill file reloads it first. */
    const char *dir = mkdir_tmp();
    const size_t bytes = 256 * 1024, limit = MiB;
    dagger_ctx_t *ctx = open_ctx(1, limit);
    dagger_task_t *t[8];
    gen_all(ctx, t, 8, bytes);
    wait_resident_under(ctx, limit);
    for (int i = 0; i < 8; i++) {
        dagger_chunk_t *c;
        ASSERT_OK(dagger_fetch_chunk(t[i], &c));
        char path[400];
        snprintf(path, sizeof path, "%s/b%d.bin", dir, i);
        ASSERT_OK(dagger_file_save(c, path, NULL));
        dagger_chunk_t *f;
        ASSERT_OK(dagger_file(ctx, path, NULL, &f));
        dagger_task_t *s = dagger_spawn(ctx, sum_buf_f64, f);
        double v;
        ASSERT_OK(dagger_fetch_f64(s, &v));
        ASSERT_NEAR(v, block_sum(i, bytes), 0);
        dagger_task_release(s);
        dagger_chunk_release(f);
        dagger_task_release(t[i]);
    }
    ASSERT_OK(dagger_ctx_close(ctx));
    rm_tree(dir);
}

TEST_LIST(raw_round_trip_absolute_and_relative, missing_file_fails_at_the_call,
          unreadable_file_gives_eacces, tofile_to_unwritable_folder_fails_at_fetch,
          npy_round_trip_every_type, npy_fortran_order_v2_and_bool, npy_bad_header_names_the_field,
          npy_interoperates_with_numpy, tofile_inside_and_outside_tasks,
          tofile_interrupted_leaves_no_file, user_codec_round_trip,
          out_of_core_reduction_matches_in_memory,
          out_of_core_disk_full_keeps_data_and_fails_with_enospc,
          out_of_core_corrupted_spill_fails_with_eio,
          out_of_core_spill_with_a_forged_size_fails_with_eio,
          out_of_core_truncated_spill_fails_with_eio,
          out_of_core_task_larger_than_the_limit_fails_with_enomem, mem_limit_from_the_environment,
          spilled_file_chunk_reloads_from_its_file, out_of_core_tiled_cholesky_matches_in_memory,
          out_of_core_two_threads_and_zstd, save_a_spilled_chunk, out_of_core_moves_are_traced)
