/* bench/io/dagger.c - dagger's .npy load and save (see problem.h), and out-of-core: a tree
 * reduction over 4x the memory limit against the same reduction in memory, with the disk's
 * sequential write and read bandwidth measured by dd on the same folder in the same run.
 * SPDX-License-Identifier: MIT
 */
#include <dagger.h>
#include <dagger/chunk.h>
#include <dagger/file.h>
#include <unistd.h>

#include "problem.h"

static int threads = 1;

static dagger_ctx_t *open_ctx(size_t limit)
{
    dagger_opts_t o;
    dagger_opts_init(&o);
    o.num_threads = threads;
    o.mem_limit = limit;
    dagger_ctx_t *ctx = NULL;
    if (dagger_ctx_open(&ctx, &o) != 0) {
        fprintf(stderr, "ctx_open: %s\n", dagger_last_errmsg());
        exit(1);
    }
    return ctx;
}

static void npy(void)
{
    dagger_ctx_t *ctx = open_ctx(0);
    char path[512];
    snprintf(path, sizeof path, "%s/bench-dagger-%d.npy", io_dir(), (int)getpid());
    for (size_t k = 0; k < IO_NSIZES; k++) {
        size_t n = io_sizes[k] / sizeof(double);
        dagger_chunk_t *c;
        if (dagger_chunk_create_array(ctx, DAGGER_ELT_F64, 1, &n, &c) != 0)
            exit(1);
        double *x = dagger_chunk_data(c);
        for (size_t i = 0; i < n; i++)
            x[i] = (double)i;
        double best_save = 1e30, best_load = 1e30;
        for (int r = 0; r < io_reps(); r++) {
            double t0 = io_now();
            if (dagger_file_save(c, path, NULL) != 0) {
                fprintf(stderr, "save: %s\n", dagger_last_errmsg());
                exit(1);
            }
            double t1 = io_now();
            dagger_chunk_t *f;
            if (dagger_file(ctx, path, NULL, &f) != 0)
                exit(1);
            const double *y = dagger_chunk_data(f); /* loads it here */
            double t2 = io_now();
            if (!y || y[n - 1] != (double)(n - 1))
                exit(1);
            dagger_chunk_release(f);
            best_save = t1 - t0 < best_save ? t1 - t0 : best_save;
            best_load = t2 - t1 < best_load ? t2 - t1 : best_load;
        }
        io_result("io.npy_load", "dagger", io_sizes[k], (double)io_sizes[k] / best_load / 1e9);
        io_result("io.npy_save", "dagger", io_sizes[k], (double)io_sizes[k] / best_save / 1e9);
        dagger_chunk_release(c);
    }
    unlink(path);
    if (dagger_ctx_close(ctx) != 0)
        exit(1);
}

/* ---------------------------------------------------------------- out-of-core */

#define BLOCK (1u << 20)

static int block(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t i = dagger_arg_i64(a, 0);
    double *x = malloc(BLOCK);
    if (!x)
        return dagger_fail(tc, DAGGER_ENOMEM, "block");
    for (size_t k = 0; k < BLOCK / sizeof(double); k++)
        x[k] = (double)i + (double)k;
    *out = dagger_blob_copy(tc, x, BLOCK);
    free(x);
    return 0;
}

static int add(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const double *x = dagger_arg_buf(a, 0, &n), *y = dagger_arg_buf(a, 1, NULL);
    double *z = malloc(n);
    if (!x || !y || !z) {
        free(z);
        return dagger_fail(tc, DAGGER_ENOMEM, "add");
    }
    for (size_t k = 0; k < n / sizeof(double); k++)
        z[k] = x[k] + y[k];
    *out = dagger_blob_copy(tc, z, n);
    free(z);
    return 0;
}

static int total(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    size_t n;
    const double *x = dagger_arg_buf(a, 0, &n);
    double s = 0;
    for (size_t k = 0; x && k < n / sizeof(double); k++)
        s += x[k];
    *out = dagger_f64(s);
    return x ? 0 : DAGGER_ETYPE;
}

/* A tree reduction of `nb` blocks, all made first; returns seconds, the sum in *sum. */
static double reduce(size_t limit, int nb, double *sum, dagger_mem_stats_t *st)
{
    dagger_ctx_t *ctx = open_ctx(limit);
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    dagger_task_t *t[1024];
    double t0 = io_now();
    for (int i = 0; i < nb; i++)
        t[i] = dagger_spawn_opts(ctx, &o, block, (int64_t)i);
    for (int i = 0; i < nb; i++)
        if (dagger_wait(t[i]) != 0)
            exit(1);
    for (int w = nb; w > 1; w /= 2)
        for (int i = 0; i < w / 2; i++) {
            dagger_task_t *s = dagger_spawn_opts(ctx, &o, add, t[2 * i], t[2 * i + 1]);
            dagger_task_release(t[2 * i]);
            dagger_task_release(t[2 * i + 1]);
            t[i] = s;
        }
    dagger_task_t *s = dagger_spawn(ctx, total, t[0]);
    if (dagger_fetch_f64(s, sum) != 0) {
        fprintf(stderr, "reduce: %s\n", dagger_task_errmsg(s));
        exit(1);
    }
    double dt = io_now() - t0;
    if (dagger_mem_stats(ctx, st) != 0)
        exit(1);
    dagger_task_release(s);
    dagger_task_release(t[0]);
    if (dagger_ctx_close(ctx) != 0)
        exit(1);
    return dt;
}

/* dd's bandwidth in GB/s from its last stderr line ("..., 1.2 GB/s"), 0 when it failed. */
static double dd(const char *args)
{
    char cmd[1024], line[512], last[512] = "";
    snprintf(cmd, sizeof cmd, "dd %s 2>&1", args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    while (fgets(line, sizeof line, p))
        strcpy(last, line);
    pclose(p);
    char *comma = strrchr(last, ',');
    double v = 0;
    char unit[16] = "";
    if (!comma || sscanf(comma + 1, "%lf %15s", &v, unit) != 2)
        return 0;
    return unit[0] == 'G' ? v : unit[0] == 'M' ? v / 1e3 : unit[0] == 'k' ? v / 1e6 : v / 1e9;
}

static void ooc(void)
{
    const int nb = 256;                          /* 256 MiB of blocks */
    const size_t limit = (size_t)nb * BLOCK / 4; /* 4x the limit */
    double s_mem, s_ooc;
    dagger_mem_stats_t st_mem, st;
    setenv("DAGGER_SPILL_DIR", io_dir(), 0);
    double t_mem = reduce(0, nb, &s_mem, &st_mem);
    double t_ooc = reduce(limit, nb, &s_ooc, &st);
    if (s_mem != s_ooc) {
        fprintf(stderr, "out-of-core sum %.17g differs from the in-memory %.17g\n", s_ooc, s_mem);
        exit(1);
    }
    char file[512], args[1024];
    snprintf(file, sizeof file, "%s/bench-dd-%d", io_dir(), (int)getpid());
    snprintf(args, sizeof args, "if=/dev/zero of=%s bs=1M count=%llu", file,
             (st.spilled >> 20) + 1);
    double dd_w = dd(args); /* like a spill: no sync, the page cache absorbs it */
    snprintf(args, sizeof args, "if=%s of=/dev/null bs=1M", file);
    double dd_r = dd(args);
    unlink(file);
    char param[64];
    snprintf(param, sizeof param, "ws=%dMiB,limit=%zuMiB,t=%d", nb, limit >> 20, threads);
    printf("RESULT|io.ooc|dagger|%s|%.3f|s\n", param, t_ooc);
    printf("RESULT|io.ooc|in-memory|%s|%.3f|s\n", param, t_mem);
    double traffic = (double)(st.spilled + st.reloaded);
    double extra = t_ooc - t_mem > 1e-6 ? t_ooc - t_mem : 1e-6;
    printf("RESULT|io.ooc_traffic|dagger|%s|%.3f|GB/s\n", param, traffic / extra / 1e9);
    printf("RESULT|io.ooc_traffic|dd|%s|%.3f|GB/s\n", param,
           dd_w > 0 && dd_r > 0 ? 2 / (1 / dd_w + 1 / dd_r) : 0);
    fprintf(stderr,
            "io.ooc: slowdown %.2fx; spilled %llu MiB in %llu spills, reloaded %llu MiB, peak "
            "resident %zu MiB; dd write %.2f GB/s, read %.2f GB/s\n",
            t_ooc / t_mem, st.spilled >> 20, st.spills, st.reloaded >> 20, st.peak_resident >> 20,
            dd_w, dd_r);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--list")) {
            puts("io.npy_load\nio.npy_save\nio.ooc\nio.ooc_traffic");
            return 0;
        }
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else
            only = argv[i];
    }
    if (!only || strstr(only, "npy"))
        npy();
    if (!only || strstr(only, "ooc"))
        ooc();
    return 0;
}
