/* bench/core/starpu.c - the core-runtime rows with StarPU 1.3 (CPU workers only).
 *
 * Tasks carry no data handles: codelets get a pointer in cl_arg and dependencies are declared
 * with starpu_task_declare_deps_array, the closest StarPU form of dagger's task arguments.
 * StarPU costs microseconds per task, so it runs the SMALL sizes of problem.h (the param says
 * which); dagger runs them too, so the rows pair.
 * A StarPU task may submit tasks but may not wait for them, so fib is written in continuation
 * style: task fib(n) submits fib(n-1), fib(n-2) and a sum task that depends on both; every call
 * is still one task, plus one sum task per inner call (ns/task divides by the calls only).
 * fib(n) holds an end dependency released by its sum task, so it terminates only when its value
 * is known; the parent's sum task depends on both children.
 * Tasks that others depend on are created with destroy = 0 and destroyed after the timed
 * region (a task must stay valid until its dependents are declared).
 * The thread count is conf.ncpus (STARPU_NCPU overrides it, as StarPU always does).
 * SPDX-License-Identifier: MIT
 */
#include "problem.h"

#include <starpu.h>

static int threads;
static char param[64];

static void set_param(const char *size_key, long long size)
{
    snprintf(param, sizeof param, "%s=%lld,t=%d", size_key, size, threads);
}

static void submit(struct starpu_task *t)
{
    int rc = starpu_task_submit(t);
    if (rc != 0) {
        fprintf(stderr, "ERROR starpu_task_submit: %d\n", rc);
        exit(1);
    }
}

static struct starpu_task *make_task(struct starpu_codelet *cl, void *arg, int destroy)
{
    struct starpu_task *t = starpu_task_create();
    if (!t) {
        fprintf(stderr, "ERROR starpu_task_create: out of memory\n");
        exit(1);
    }
    t->cl = cl;
    t->cl_arg = arg;
    t->cl_arg_size = 0;
    t->destroy = destroy;
    return t;
}

/* ---------------------------------------------------------------- empty */

static void mark_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    *(unsigned char *)arg = 1;
}
static struct starpu_codelet mark_cl = {
    .where = STARPU_CPU, .cpu_funcs = {mark_cpu}, .nbuffers = 0, .name = "mark"};

struct empty_arg {
    unsigned char *mark;
    long n;
};

static void spawn_marks(unsigned char *mark, long n)
{
    for (long i = 0; i < n; i++)
        submit(make_task(&mark_cl, &mark[i], 1));
}

static void root_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    struct empty_arg *e = arg;
    spawn_marks(e->mark, e->n);
}
static struct starpu_codelet root_cl = {
    .where = STARPU_CPU, .cpu_funcs = {root_cpu}, .nbuffers = 0, .name = "root"};

static void row_empty(long n, int ext)
{
    const char *bench = ext ? "core.empty_ext" : "core.empty";
    if (!core_want(bench))
        return;
    unsigned char *mark = calloc((size_t)n, 1);
    struct empty_arg e = {mark, n};
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS_BIG); r++) {
        memset(mark, 0, (size_t)n);
        double t0 = core_now_ns();
        if (ext)
            spawn_marks(mark, n);
        else
            submit(make_task(&root_cl, &e, 1));
        starpu_task_wait_for_all();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        long s = 0;
        for (long i = 0; i < n; i++)
            s += mark[i];
        core_check_i64(bench, "tasks run", s, n);
    }
    free(mark);
    set_param("n", n);
    core_result(bench, param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- chain */

static void inc_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    (*(int64_t *)arg)++;
}
static struct starpu_codelet inc_cl = {
    .where = STARPU_CPU, .cpu_funcs = {inc_cpu}, .nbuffers = 0, .name = "inc"};

static void row_chain(long n)
{
    if (!core_want("core.chain"))
        return;
    struct starpu_task **t = calloc((size_t)n, sizeof *t);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS_BIG); r++) {
        int64_t x = 0;
        double t0 = core_now_ns();
        for (long i = 0; i < n; i++) {
            t[i] = make_task(&inc_cl, &x, 0);
            if (i)
                starpu_task_declare_deps_array(t[i], 1, &t[i - 1]);
            submit(t[i]);
        }
        starpu_task_wait_for_all();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        for (long i = 0; i < n; i++)
            starpu_task_destroy(t[i]);
        core_check_i64("core.chain", "last value", x, n);
    }
    free(t);
    set_param("n", n);
    core_result("core.chain", param, best / (double)n, "ns/task");
}

/* ---------------------------------------------------------------- fib (continuations) */

struct fib_arg {
    int64_t n;
    int64_t *res;
    int cutoff;
};
struct fib_join {
    int64_t r[2];
    int64_t *res;
    struct starpu_task *parent; /* ends when this join has run (an end dependency) */
};

static void fib_cpu(void *buffers[], void *arg);
static void sum_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    struct fib_join *j = arg;
    *j->res = j->r[0] + j->r[1];
    starpu_task_end_dep_release(j->parent);
}
static struct starpu_codelet fib_cl = {
    .where = STARPU_CPU, .cpu_funcs = {fib_cpu}, .nbuffers = 0, .name = "fib"};
static struct starpu_codelet sum_cl = {
    .where = STARPU_CPU, .cpu_funcs = {sum_cpu}, .nbuffers = 0, .name = "fib_sum"};

static struct starpu_task *fib_make(int64_t n, int64_t *res, int cutoff)
{
    struct fib_arg *a = malloc(sizeof *a);
    if (!a) {
        fprintf(stderr, "ERROR out of memory\n");
        exit(1);
    }
    a->n = n;
    a->res = res;
    a->cutoff = cutoff;
    struct starpu_task *t = make_task(&fib_cl, a, 1);
    t->cl_arg_free = 1; /* StarPU frees the argument after the task */
    return t;
}

static void fib_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    struct fib_arg *a = arg;
    if (a->n < 2 || (a->cutoff && a->n <= CORE_FIB_CUTOFF)) {
        *a->res = core_fib_serial(a->n);
        return;
    }
    struct fib_join *j = malloc(sizeof *j);
    if (!j) {
        fprintf(stderr, "ERROR out of memory\n");
        exit(1);
    }
    j->res = a->res;
    j->parent = starpu_task_get_current();
    starpu_task_end_dep_add(j->parent, 1);
    struct starpu_task *c[2] = {fib_make(a->n - 1, &j->r[0], a->cutoff),
                                fib_make(a->n - 2, &j->r[1], a->cutoff)};
    struct starpu_task *s = make_task(&sum_cl, j, 1);
    s->cl_arg_free = 1;
    starpu_task_declare_deps_array(s, 2, c);
    submit(s);
    submit(c[0]);
    submit(c[1]);
}

static void row_fib(int n, int cutoff)
{
    const char *bench = cutoff ? "core.fib_cutoff" : "core.fib";
    if (!core_want(bench))
        return;
    double best = 1e300;
    int64_t want = core_fib_serial(n);
    for (int r = 0; r < core_reps(CORE_REPS_BIG); r++) {
        int64_t v = -1;
        double t0 = core_now_ns();
        submit(fib_make(n, &v, cutoff));
        starpu_task_wait_for_all();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        core_check_i64(bench, "fib", v, want);
    }
    set_param("n", n);
    if (cutoff)
        core_result(bench, param, best / 1e6, "ms/run");
    else
        core_result(bench, param, best / (double)core_fib_calls(n), "ns/task");
}

/* ---------------------------------------------------------------- nested loops */

struct nested_f {
    int64_t i, a;
};
struct nested_g {
    struct nested_f *f;
    int64_t j, *out;
};
static void nf_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    struct nested_f *f = arg;
    f->a = core_nested_f(f->i);
}
static void ng_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    struct nested_g *g = arg;
    *g->out = core_nested_g(g->f->a, g->j);
}
static struct starpu_codelet nf_cl = {
    .where = STARPU_CPU, .cpu_funcs = {nf_cpu}, .nbuffers = 0, .name = "f"};
static struct starpu_codelet ng_cl = {
    .where = STARPU_CPU, .cpu_funcs = {ng_cpu}, .nbuffers = 0, .name = "g"};

static void row_nested(void)
{
    if (!core_want("core.nested"))
        return;
    struct nested_f fa[CORE_NESTED_OUTER];
    struct nested_g ga[CORE_NESTED_OUTER][CORE_NESTED_INNER];
    int64_t b[CORE_NESTED_OUTER][CORE_NESTED_INNER];
    struct starpu_task *ft[CORE_NESTED_OUTER];
    double best = 1e300;
    int nrep = core_reps(CORE_REPS_NESTED);
    double *runs = malloc((size_t)nrep * sizeof *runs);
    int64_t want = core_nested_expected();
    double warm = core_warm_until();
    for (int r = 0; r < nrep; r++) {
        double t0 = core_now_ns();
        for (int i = 0; i < CORE_NESTED_OUTER; i++) {
            fa[i].i = i;
            ft[i] = make_task(&nf_cl, &fa[i], 0);
            submit(ft[i]);
            for (int j = 0; j < CORE_NESTED_INNER; j++) {
                ga[i][j] = (struct nested_g){&fa[i], j, &b[i][j]};
                struct starpu_task *g = make_task(&ng_cl, &ga[i][j], 1);
                starpu_task_declare_deps_array(g, 1, &ft[i]);
                submit(g);
            }
        }
        starpu_task_wait_for_all();
        double dt = core_now_ns() - t0;
        core_run_keep(t0, dt, warm, &r, &best, runs);
        for (int i = 0; i < CORE_NESTED_OUTER; i++)
            starpu_task_destroy(ft[i]);
        int64_t s = 0;
        for (int i = 0; i < CORE_NESTED_OUTER; i++)
            for (int j = 0; j < CORE_NESTED_INNER; j++)
                s += b[i][j];
        core_check_i64("core.nested", "sum", s, want);
    }
    snprintf(param, sizeof param, "n=%dx%d,t=%d", CORE_NESTED_OUTER, CORE_NESTED_INNER,
             threads);
    core_result("core.nested", param, best / 1e3, "us/run");
    if (runs)
        core_result_median("core.nested", param, runs, nrep, 1e-3, "us/run");
    free(runs);
}

/* ---------------------------------------------------------------- binary tree */

struct tree_arg {
    int64_t *val;
    long i;
};
static void tree_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    struct tree_arg *a = arg;
    a->val[a->i] = a->i == 1 ? 1 : a->val[a->i / 2] + 1;
}
static struct starpu_codelet tree_cl = {
    .where = STARPU_CPU, .cpu_funcs = {tree_cpu}, .nbuffers = 0, .name = "node"};

static void row_tree(int depth)
{
    if (!core_want("core.tree"))
        return;
    long nodes = (1L << depth) - 1;
    int64_t *val = calloc((size_t)nodes + 1, sizeof *val); /* heap order, 1-based */
    struct tree_arg *args = calloc((size_t)nodes + 1, sizeof *args);
    struct starpu_task **t = calloc((size_t)nodes + 1, sizeof *t);
    double best = 1e300;
    for (int r = 0; r < core_reps(CORE_REPS_BIG); r++) {
        memset(val, 0, ((size_t)nodes + 1) * sizeof *val);
        double t0 = core_now_ns();
        for (long i = 1; i <= nodes; i++) {
            args[i] = (struct tree_arg){val, i};
            t[i] = make_task(&tree_cl, &args[i], 0);
            if (i > 1)
                starpu_task_declare_deps_array(t[i], 1, &t[i / 2]);
            submit(t[i]);
        }
        starpu_task_wait_for_all();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        for (long i = 1; i <= nodes; i++)
            starpu_task_destroy(t[i]);
        int64_t s = 0;
        for (long i = 1; i <= nodes; i++)
            s += val[i];
        core_check_i64("core.tree", "sum of depths", s, core_tree_expected(depth));
    }
    free(t);
    free(args);
    free(val);
    set_param("depth", depth);
    core_result("core.tree", param, best / (double)nodes, "ns/task");
}

/* ---------------------------------------------------------------- wavefront */

struct wave_arg {
    int64_t *g;
    int n, i, j;
};
static void wave_cpu(void *buffers[], void *arg)
{
    (void)buffers;
    struct wave_arg *a = arg;
    int64_t *g = a->g;
    int n = a->n, i = a->i, j = a->j;
    int64_t up = i ? g[(size_t)(i - 1) * n + j] : 0;
    int64_t left = j ? g[(size_t)i * n + j - 1] : 0;
    g[(size_t)i * n + j] = core_wave_cell(up, left, i > 0, j > 0);
}
static struct starpu_codelet wave_cl = {
    .where = STARPU_CPU, .cpu_funcs = {wave_cpu}, .nbuffers = 0, .name = "cell"};

static void row_wavefront(int n)
{
    if (!core_want("core.wavefront"))
        return;
    size_t cells = (size_t)n * (size_t)n;
    int64_t *g = calloc(cells, sizeof *g);
    struct wave_arg *args = calloc(cells, sizeof *args);
    struct starpu_task **t = calloc(cells, sizeof *t);
    double best = 1e300;
    int64_t want = core_wave_expected(n);
    for (int r = 0; r < core_reps(CORE_REPS_BIG); r++) {
        double t0 = core_now_ns();
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < n; j++) {
                size_t k = (size_t)i * n + j;
                args[k] = (struct wave_arg){g, n, i, j};
                t[k] = make_task(&wave_cl, &args[k], 0);
                if (i)
                    starpu_task_declare_deps_array(t[k], 1, &t[k - (size_t)n]);
                if (j)
                    starpu_task_declare_deps_array(t[k], 1, &t[k - 1]);
                submit(t[k]);
            }
        }
        starpu_task_wait_for_all();
        double dt = core_now_ns() - t0;
        if (dt < best)
            best = dt;
        for (size_t k = 0; k < cells; k++)
            starpu_task_destroy(t[k]);
        core_check_i64("core.wavefront", "last cell", g[cells - 1], want);
    }
    free(t);
    free(args);
    free(g);
    set_param("n", (long long)cells);
    core_result("core.wavefront", param, best / (double)cells, "ns/task");
}

int main(int argc, char **argv)
{
    int t = core_init(argc, argv, "starpu", "STARPU_NCPU");
    if (t < 0) {
        core_list_rows();
        return 0;
    }
    struct starpu_conf conf;
    starpu_conf_init(&conf);
    if (t > 0)
        conf.ncpus = t;
    conf.ncuda = 0;
    conf.nopencl = 0;
    conf.nmic = 0;
    conf.nmpi_ms = 0;
    int rc = starpu_init(&conf);
    if (rc != 0) {
        fprintf(stderr, "ERROR starpu_init: %d (%s)\n", rc, rc == -ENODEV ? "no worker" : "");
        return 1;
    }
    threads = (int)starpu_cpu_worker_get_count();

    row_empty(CORE_EMPTY_N_SMALL, 0);
    row_empty(CORE_EMPTY_N_SMALL, 1);
    row_chain(CORE_CHAIN_N_SMALL);
    row_fib(CORE_FIB_N_SMALL, 0);
    row_fib(CORE_FIB_CUTOFF_N, 1);
    row_nested();
    row_tree(CORE_TREE_DEPTH_SMALL);
    row_wavefront(CORE_WAVE_N_SMALL);
    starpu_shutdown();
    return core_exit_code();
}
