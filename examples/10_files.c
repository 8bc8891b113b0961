/* examples/10_files.c - lazy files: Dagger.jl's File("mydata") / tofile(A, "mydata") and a
 * make_data task that saves its result where it was made, with NumPy .npy files.
 *
 * dagger_tofile writes a value (here the result of a task) atomically and gives back a lazy file
 * chunk; dagger_file refers to an existing file and reads only its header; a task that takes a
 * file chunk gets the data loaded where it runs. The files go to a fresh temporary folder, which
 * is the working directory, so the paths below are relative like the seed's.
 * Exit status: 0 when every sum read back from the files equals the one computed in memory.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <dagger.h>
#include <dagger/chunk.h>
#include <dagger/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 1000

/* A = rand(N): a typed f64 chunk made where the task runs. */
static int make_array(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n = N;
    dagger_chunk_t *c;
    int rc = dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F64, 1, &n, &c);
    if (rc)
        return dagger_fail(tc, rc, "make_array: %s", dagger_last_errmsg());
    double *x = dagger_chunk_data(c);
    unsigned s = (unsigned)dagger_arg_i64(a, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(s = s * 1103515245u + 12345u) / 4294967296.0;
    *out = dagger_chunk_give(tc, c);
    return 0;
}

/* make_data: make the data and save it where it was made; the result is the file. */
static int make_data(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const char *path = dagger_arg_str(a, 0);
    size_t n = N;
    dagger_chunk_t *c, *f;
    int rc = dagger_chunk_create_array(dagger_tc_ctx(tc), DAGGER_ELT_F64, 1, &n, &c);
    if (rc)
        return dagger_fail(tc, rc, "make_data: %s", dagger_last_errmsg());
    double *x = dagger_chunk_data(c);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)i;
    rc = dagger_file_save(c, path, NULL);
    dagger_chunk_release(c);
    if (rc == 0)
        rc = dagger_file(dagger_tc_ctx(tc), path, NULL, &f);
    if (rc)
        return dagger_fail(tc, rc, "make_data: %s", dagger_last_errmsg());
    *out = dagger_chunk_give(tc, f);
    return 0;
}

static int sum(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
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

int main(void)
{
    char dir[] = "/tmp/dagger-example-10-XXXXXX", old[4096];
    if (!mkdtemp(dir) || !getcwd(old, sizeof old) || chdir(dir) != 0)
        return 1;
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0)
        return 1;
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;

    /* f = tofile(A, "mydata.npy"); B = fetch(File("mydata.npy")) */
    dagger_task_t *A = dagger_spawn_opts(ctx, &o, make_array, (int64_t)42);
    dagger_task_t *f = dagger_tofile(ctx, A, "mydata.npy", NULL);
    dagger_chunk_t *fc = NULL, *B = NULL;
    double s_mem = 0, s_file = 0, s_made = 0;
    int rc = dagger_fetch_chunk(f, &fc);
    if (rc == 0)
        rc = dagger_file(ctx, "mydata.npy", NULL, &B);
    if (rc == 0)
        printf("File(\"%s\"): %zu bytes of f64, not loaded yet\n",
               strrchr(dagger_file_path(B), '/') + 1, dagger_chunk_size(B));
    dagger_task_t *sa = dagger_spawn(ctx, sum, A);
    dagger_task_t *sb = dagger_spawn(ctx, sum, B); /* loaded where the task runs */
    /* make_data: saved where it was made */
    dagger_task_t *m = dagger_spawn_opts(ctx, &o, make_data, "made.npy");
    dagger_task_t *sm = dagger_spawn(ctx, sum, m);
    if (rc == 0)
        rc = dagger_fetch_f64(sa, &s_mem);
    if (rc == 0)
        rc = dagger_fetch_f64(sb, &s_file);
    if (rc == 0)
        rc = dagger_fetch_f64(sm, &s_made);
    if (rc)
        fprintf(stderr, "failed: %s\n", dagger_strerror(rc));
    else
        printf("sum in memory %.6f, from mydata.npy %.6f; make_data's file sums to %.0f\n", s_mem,
               s_file, s_made);
    dagger_task_t *all[] = {A, f, sa, sb, m, sm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        dagger_task_release(all[i]);
    dagger_chunk_release(B);
    int crc = dagger_ctx_close(ctx);
    unlink("mydata.npy");
    unlink("made.npy");
    if (chdir(old) != 0 || rmdir(dir) != 0)
        return 1;
    return rc || crc || s_mem != s_file || s_made != (double)N * (N - 1) / 2;
}
