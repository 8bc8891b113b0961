/* tests/test_api.c - the rough edges a first-time user hits: blobs, element-count datadeps
 * helpers, nested failures keeping their root cause, failures nobody fetched, the trace file
 * and its variables checked at open.
 * SPDX-License-Identifier: MIT
 */
#include <dagger/datadeps.h>
#include <dagger/stream.h>
#include <dagger/trace.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static int make_blob(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const unsigned char bytes[5] = {1, 2, 3, 0, 5};
    *out = dagger_blob_copy(tc, bytes, sizeof bytes);
    return 0;
}

static int make_num(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *out = dagger_i64(7);
    return 0;
}

TEST(fetch_blob_gives_bytes_and_length)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *b = dagger_spawn(ctx, make_blob);
    dagger_task_t *n = dagger_spawn(ctx, make_num);
    const void *p = NULL;
    size_t len = 0;
    ASSERT_OK(dagger_fetch_blob(b, &p, &len));
    ASSERT_EQ(len, 5);
    ASSERT_EQ(((const unsigned char *)p)[4], 5);
    ASSERT_ERR(dagger_fetch_blob(n, &p, &len), DAGGER_ETYPE);
    ASSERT_STR_HAS(dagger_last_errmsg(), "returned a i64, not a blob");
    ASSERT_ERR(dagger_fetch_blob(b, NULL, &len), DAGGER_EINVAL);
    ASSERT_ERR(dagger_fetch_blob(b, &p, NULL), DAGGER_EINVAL);
    dagger_task_release(b);
    dagger_task_release(n);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int fill(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    double *x = dagger_arg_ptr(a, 0);
    int64_t n = dagger_arg_i64(a, 1);
    for (int64_t i = 0; i < n; i++)
        x[i] = (double)(i + 1);
    return 0;
}

static int sum(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const double *x = dagger_arg_ptr(a, 0);
    int64_t n = dagger_arg_i64(a, 1);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    *out = dagger_f64(s);
    return 0;
}

TEST(datadeps_helpers_take_element_counts)
{
    double x[8] = {0};
    dagger_ddarg_t in = dagger_in_n(x, 8);
    ASSERT_EQ(in.bytes, 8 * sizeof(double));
    ASSERT_EQ(in.access, DAGGER_ACCESS_IN);
    dagger_ddarg_t r = dagger_range_n(DAGGER_ACCESS_OUT, x, 2, 3);
    ASSERT_TRUE(r.ptr == &x[2]);
    ASSERT_EQ(r.bytes, 3 * sizeof(double));
    dagger_ddarg_t t = dagger_tile_of(DAGGER_ACCESS_INOUT, x, 2, 2, 4);
    ASSERT_EQ(t.elsize, sizeof(double));
    ASSERT_EQ(dagger_tri_of(DAGGER_ACCESS_IN, DAGGER_SHAPE_LOWER, x, 2, 2).elsize, sizeof(double));

    dagger_ctx_t *ctx = test_ctx(2);
    dagger_datadeps_t *dd;
    ASSERT_OK(dagger_datadeps_begin(ctx, 0, &dd));
    dagger_task_t *w = dagger_datadeps_spawn(dd, fill, dagger_out_n(x, 8), 8);
    dagger_task_t *s = dagger_datadeps_spawn(dd, sum, dagger_in_n(x, 8), 8); /* after fill */
    ASSERT_OK(dagger_datadeps_end(dd));
    double got;
    ASSERT_OK(dagger_fetch_f64(s, &got));
    ASSERT_NEAR(got, 36.0, 0);
    dagger_task_release(w);
    dagger_task_release(s);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int parse(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "'%s' is not a number", dagger_arg_str(a, 0));
}

static int parent(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    dagger_task_t *c = dagger_spawn(dagger_tc_ctx(tc), parse, "12x");
    double v;
    int rc = dagger_fetch_f64(c, &v); /* fails */
    dagger_task_release(c);
    return rc; /* the body gives back the child's code, nothing more */
}

TEST(nested_failure_keeps_the_childs_root_cause)
{
    dagger_ctx_t *ctx = test_ctx(1);
    dagger_task_t *p = dagger_spawn(ctx, parent);
    ASSERT_ERR(dagger_fetch(p, NULL), DAGGER_ETASK);
    const char *m = dagger_task_errmsg(p);
    ASSERT_STR_HAS(m, "'parent': nested fetch (task");
    ASSERT_STR_HAS(m, "'parse') failed: '12x' is not a number");
    dagger_task_release(p);
    ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 0); /* the child's error was fetched */
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int fails(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    return dagger_fail(tc, DAGGER_ETASK, "boom %d", (int)dagger_arg_i64(a, 0));
}

/* Run close with stderr captured into buf. */
static int close_capturing_stderr(dagger_ctx_t *ctx, char *buf, size_t cap)
{
    char path[] = "/tmp/dagger_test_api_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    int rc = dagger_ctx_close(ctx);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

TEST(close_warns_about_failures_nobody_fetched)
{
    unsetenv("DAGGER_QUIET");
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_task_t *a = dagger_spawn(ctx, fails, 1);
    dagger_task_t *b = dagger_spawn(ctx, fails, 2);
    dagger_task_t *c = dagger_spawn(ctx, fails, 3);
    dagger_task_t *d = dagger_spawn(ctx, make_num, c); /* c's failure is inherited by d */
    (void)dagger_wait(a);
    (void)dagger_wait(b);
    (void)dagger_wait(d);
    ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 3); /* a, b and d */
    ASSERT_ERR(dagger_fetch(a, NULL), DAGGER_ETASK);
    ASSERT_EQ(dagger_task_error(b), DAGGER_ETASK);
    ASSERT_EQ(dagger_ctx_unfetched_failures(ctx), 1); /* d */
    dagger_task_release(a);
    dagger_task_release(b);
    dagger_task_release(c);
    dagger_task_release(d);
    char buf[1024];
    ASSERT_OK(close_capturing_stderr(ctx, buf, sizeof buf));
    ASSERT_STR_HAS(buf, "warning: 1 task failed and nobody fetched the error");
    ASSERT_STR_HAS(buf, "DAGGER_QUIET=1");

    setenv("DAGGER_QUIET", "1", 1);
    ctx = test_ctx(1);
    dagger_task_release(dagger_spawn(ctx, fails, 4));
    ASSERT_OK(close_capturing_stderr(ctx, buf, sizeof buf));
    ASSERT_STR_EQ(buf, "");
    unsetenv("DAGGER_QUIET");
}

static void tmp_trace_path(char *buf, size_t cap, const char *ext)
{
    snprintf(buf, cap, "/tmp/dagger_test_api_%d.%s", (int)getpid(), ext);
    unlink(buf);
}

TEST(trace_file_is_written_when_close_is_busy)
{
    char path[256];
    tmp_trace_path(path, sizeof path, "json");
    setenv("DAGGER_TRACE", path, 1);
    dagger_ctx_t *ctx = test_ctx(1);
    unsetenv("DAGGER_TRACE");
    dagger_task_t *t = dagger_spawn(ctx, make_num);
    (void)dagger_wait(t);
    ASSERT_ERR(dagger_ctx_close(ctx), DAGGER_EBUSY);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0); /* written although close refused */
    ASSERT_TRUE(st.st_size > 0);
    dagger_task_release(t);
    ASSERT_OK(dagger_ctx_close(ctx));
    unlink(path);
}

TEST(bad_trace_variables_are_reported_at_open)
{
    dagger_ctx_t *ctx = NULL;
    dagger_opts_t o;
    dagger_opts_init(&o);
    setenv("DAGGER_TRACE", "/tmp/trace.pdf", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "unknown extension 'pdf'");
    ASSERT_STR_HAS(dagger_last_errmsg(), ".json .dot .html .txt or .dtrace");
    setenv("DAGGER_TRACE", "/nonexistent-dir/t.json", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "cannot write in '/nonexistent-dir'");
    ASSERT_STR_HAS(dagger_last_errmsg(), "No such file or directory");
    unsetenv("DAGGER_TRACE");
    setenv("DAGGER_TRACE_LIMIT", "lots", 1);
    ASSERT_ERR(dagger_ctx_open(&ctx, &o), DAGGER_EINVAL);
    ASSERT_STR_HAS(dagger_last_errmsg(), "DAGGER_TRACE_LIMIT='lots' is invalid");
    ASSERT_STR_HAS(dagger_last_errmsg(), "k, m or g suffix");
    setenv("DAGGER_TRACE_LIMIT", "64k", 1);
    ASSERT_OK(dagger_ctx_open(&ctx, &o));
    ASSERT_OK(dagger_ctx_close(ctx));
    unsetenv("DAGGER_TRACE_LIMIT");
    ASSERT_NULL(NULL);
}

static int nop(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out) { return 0; }

/* Many tasks spawned before any runs, then a trace limit: the trace keeps whole tasks (spawn,
 * start and finish), not the first events only, which would all be spawns. */
TEST(trace_limit_keeps_whole_tasks_not_only_spawns)
{
    dagger_ctx_t *ctx = test_ctx(2);
    dagger_trace_opts_t o;
    dagger_trace_opts_init(&o);
    o.max_events = 3000;
    ASSERT_OK(dagger_trace_start_opts(ctx, &o));
    ASSERT_OK(dagger_queue_begin(ctx, DAGGER_QUEUE_BULK | DAGGER_QUEUE_WAITALL));
    for (int i = 0; i < 20000; i++)
        dagger_task_release(dagger_spawn(ctx, nop));
    ASSERT_OK(dagger_queue_end(ctx));
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st;
    ASSERT_OK(dagger_trace_stats(ctx, &st));
    ASSERT_TRUE(st.events <= 3000);
    ASSERT_TRUE(st.dropped > 0);
    ASSERT_TRUE(st.tasks > 10);
    ASSERT_TRUE(st.runs * 10 >= st.tasks * 9); /* nearly every kept task has its run */
    ASSERT_OK(dagger_ctx_close(ctx));
}

static int count_to(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    int64_t *n = dagger_arg_ptr(a, 0);
    if (++*n == 5)
        return dagger_finish_stream(tc, dagger_i64(*n), dagger_i64(*n));
    *out = dagger_i64(*n);
    return 0;
}

static int take(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    *(int64_t *)dagger_arg_ptr(a, 0) += dagger_arg_i64(a, 1);
    return 0;
}

TEST(streaming_edges_appear_in_the_trace)
{
    dagger_ctx_t *ctx = test_ctx(2);
    ASSERT_OK(dagger_trace_start(ctx));
    int64_t n = 0, sum = 0; /* sum: written by the sink only */
    dagger_stream_t *s;
    ASSERT_OK(dagger_stream_begin(ctx, NULL, &s));
    dagger_task_t *src = dagger_spawn(ctx, count_to, (void *)&n);
    dagger_task_t *dst = dagger_spawn(ctx, take, (void *)&sum, src); /* src is a stream */
    ASSERT_OK(dagger_stream_end(s));
    ASSERT_OK(dagger_wait(dst));
    ASSERT_OK(dagger_trace_stop(ctx));
    dagger_trace_stats_t st;
    ASSERT_OK(dagger_trace_stats(ctx, &st));
    ASSERT_EQ(st.edges, 1);
    dagger_task_release(src);
    dagger_task_release(dst);
    ASSERT_OK(dagger_ctx_close(ctx));
}

static char *slurp(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)*len + 1);
    if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
        free(b);
        b = NULL;
    }
    if (b)
        b[*len] = '\0';
    fclose(f);
    return b;
}

/* Many short runs: one shaded bar per worker and pixel, and failures grouped by root cause. */
TEST(html_report_aggregates_big_traces_and_groups_errors)
{
    dagger_ctx_t *ctx = test_ctx(2);
    ASSERT_OK(dagger_trace_start(ctx));
    ASSERT_OK(dagger_sync_begin(ctx));
    for (int i = 0; i < 30000; i++)
        dagger_task_release(dagger_spawn(ctx, nop));
    ASSERT_OK(dagger_sync_end(ctx));
    dagger_task_t *root = dagger_spawn(ctx, fails, 9);
    dagger_task_t *down[5];
    for (int i = 0; i < 5; i++)
        down[i] = dagger_spawn(ctx, make_num, root);
    for (int i = 0; i < 5; i++) {
        ASSERT_ERR(dagger_fetch(down[i], NULL), DAGGER_EUPSTREAM);
        dagger_task_release(down[i]);
    }
    ASSERT_ERR(dagger_fetch(root, NULL), DAGGER_ETASK);
    dagger_task_release(root);
    ASSERT_OK(dagger_trace_stop(ctx));
    char path[256];
    tmp_trace_path(path, sizeof path, "html");
    ASSERT_OK(dagger_trace_write(ctx, path));
    ASSERT_OK(dagger_ctx_close(ctx));
    long len = 0;
    char *h = slurp(path, &len);
    ASSERT_PTR(h);
    ASSERT_STR_HAS(h, "<rect class=\"agg\"");
    ASSERT_STR_HAS(h, "runs narrower than a pixel are drawn as one shaded bar");
    ASSERT_TRUE(len < 4 * 1024 * 1024); /* no longer one element per run */
    ASSERT_STR_HAS(h, "6 failed tasks from 1 root cause");
    ASSERT_STR_HAS(h, "boom 9</td><td>6</td></tr>");
    free(h);
    unlink(path);
}

TEST_LIST(html_report_aggregates_big_traces_and_groups_errors, streaming_edges_appear_in_the_trace,
          trace_limit_keeps_whole_tasks_not_only_spawns, fetch_blob_gives_bytes_and_length,
          datadeps_helpers_take_element_counts, nested_failure_keeps_the_childs_root_cause,
          close_warns_about_failures_nobody_fetched, trace_file_is_written_when_close_is_busy,
          bad_trace_variables_are_reported_at_open)
