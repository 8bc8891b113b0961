/* examples/06_streaming.c - a streaming region: random numbers written to a file until one is
 * below 0.01.
 *
 * The generator and the writer are streaming tasks: each runs again and again, the generator's
 * every value goes through a bounded buffer to the writer, and the generator ends the stream
 * with dagger_finish_stream when it draws a number below 0.01 (that last number is written
 * too). The writer then drains the buffer and ends; teardown stops whatever else is left.
 * The generator is seeded, so the output is the same on every run.
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <dagger.h>
#include <dagger/stream.h>

struct gen {
    uint64_t state; /* xorshift64* */
    int64_t count;
};

static double next_uniform(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* Runs once per value: the generator's state is a pointer argument, reused every run. */
static int generate(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    struct gen *g = dagger_arg_ptr(a, 0);
    double x = next_uniform(&g->state);
    g->count++;
    if (x < 0.01) /* the last value, and the task's result: how many were drawn */
        return dagger_finish_stream(tc, dagger_f64(x), dagger_i64(g->count));
    *out = dagger_f64(x);
    return 0;
}

/* Runs once per value of its input stream (argument 1). */
static int write_value(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    FILE *f = dagger_arg_ptr(a, 0);
    if (fprintf(f, "%.6f\n", dagger_arg_f64(a, 1)) < 0)
        return dagger_fail(tc, DAGGER_EIO, "cannot write the value");
    return 0;
}

int main(void)
{
    dagger_ctx_t *ctx;
    if (dagger_ctx_open(&ctx, NULL) != 0) {
        fprintf(stderr, "ctx: %s\n", dagger_last_errmsg());
        return 1;
    }
    FILE *f = tmpfile();
    if (!f)
        return 1;
    struct gen g = {0x2545F4914F6CDD1Dull, 0};

    dagger_stream_opts_t o;
    dagger_stream_opts_init(&o);
    o.buffer = 4;
    dagger_stream_t *s;
    if (dagger_stream_begin(ctx, &o, &s) != 0) {
        fprintf(stderr, "stream: %s\n", dagger_last_errmsg());
        return 1;
    }
    dagger_task_t *x = dagger_spawn(ctx, generate, (void *)&g);      /* a streaming task */
    dagger_task_t *w = dagger_spawn(ctx, write_value, (void *)f, x); /* x is its input stream */
    if (dagger_stream_end(s) != 0) {                                 /* everything starts here */
        fprintf(stderr, "stream: %s\n", dagger_last_errmsg());
        return 1;
    }

    int64_t drawn = 0;
    int rc = dagger_fetch_i64(x, &drawn);
    if (rc == 0)
        rc = dagger_wait(w) == 0 ? dagger_task_error(w) : -1;
    if (rc != 0) {
        fprintf(stderr, "failed: %s\n", dagger_last_errmsg());
        return 1;
    }
    /* The file holds every value drawn, the last one below 0.01. */
    rewind(f);
    double v = 1.0;
    int64_t lines = 0;
    while (fscanf(f, "%lf", &v) == 1)
        lines++;
    fclose(f);
    printf("drew %lld numbers, wrote %lld lines, the last one %.6f\n", (long long)drawn,
           (long long)lines, v);
    dagger_task_release(x);
    dagger_task_release(w);
    if (dagger_ctx_close(ctx) != 0)
        return 1;
    return lines == drawn && v < 0.01 ? 0 : 1;
}
