/* src/darray/reduce.c - reductions of distributed arrays: over everything or along one
 * dimension, as a tree of per-block tasks.
 *
 * Design: a leaf task per block folds its elements into a partial buffer (one accumulator for a
 * full reduction, one per remaining index for a reduction along a dimension); combining tasks
 * then fold partials pairwise (a binary tree whose edges are task arguments), and a last task
 * per output block converts the root partial into the result. Accumulators are f64 for float
 * arrays (and for norms), i64 for integer arrays, and the element type for a user operator.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "darray/darray_int.h"
#include "dagger/datadeps.h"

enum { ACC_F64, ACC_I64, ACC_RAW };

typedef struct red_job {
    dagger_darray_t *a;
    dagger_darray_op_t op;
    const dagger_darray_redop_t *user;
    int dim;     /* -1: everything */
    bool sq;     /* fold squares (norm) */
    bool mean;   /* divide by the extent of dim at the end */
    int acc;     /* ACC_* */
    size_t asz;  /* bytes per accumulator */
    char **part; /* per block: its partial buffer */
    size_t *npart;
    dagger_darray_t *out; /* reduce_dim: the result */
} red_job_t;

static void acc_init(const red_job_t *j, char *p, size_t n)
{
    for (size_t k = 0; k < n; k++, p += j->asz) {
        if (j->acc == ACC_RAW) {
            memcpy(p, j->user->identity, j->asz);
        } else if (j->acc == ACC_F64) {
            double v = j->op == DAGGER_OP_MUL   ? 1.0
                       : j->op == DAGGER_OP_MIN ? INFINITY
                       : j->op == DAGGER_OP_MAX ? -INFINITY
                                                : 0.0;
            memcpy(p, &v, sizeof v);
        } else {
            int64_t v = j->op == DAGGER_OP_MUL   ? 1
                        : j->op == DAGGER_OP_MIN ? INT64_MAX
                        : j->op == DAGGER_OP_MAX ? INT64_MIN
                                                 : 0;
            memcpy(p, &v, sizeof v);
        }
    }
}

/* One fold step of a built-in operator on accumulators of type T; integers wrap (through U). */
#define FOLD(T, U)                                                                                 \
    do {                                                                                           \
        T *a = (T *)acc, v = *(const T *)x;                                                        \
        if (j->op == DAGGER_OP_MUL)                                                                \
            *a = (T)((U)*a * (U)v);                                                                \
        else if (j->op == DAGGER_OP_MIN)                                                           \
            *a = v < *a ? v : *a;                                                                  \
        else if (j->op == DAGGER_OP_MAX)                                                           \
            *a = v > *a ? v : *a;                                                                  \
        else                                                                                       \
            *a = (T)((U)*a + (U)v);                                                                \
    } while (0)

/* acc (ACC_*) ⊕= x, where x is an accumulator too. */
static void fold_acc(const red_job_t *j, char *acc, const char *x)
{
    if (j->acc == ACC_RAW)
        j->user->combine(acc, x, j->user->ud);
    else if (j->acc == ACC_F64)
        FOLD(double, double);
    else
        FOLD(int64_t, uint64_t);
}

/* An element of type `elt` as a double. */
static double as_f64(const char *e, dagger_elt_t elt)
{
    switch (elt) {
    case DAGGER_ELT_F64:
        return *(const double *)e;
    case DAGGER_ELT_F32:
        return *(const float *)e;
    case DAGGER_ELT_I64:
        return (double)*(const int64_t *)e;
    default:
        return *(const int32_t *)e;
    }
}

/* Element k of a block as an accumulator value in `tmp`. */
static const char *as_acc(const red_job_t *j, const char *blk, size_t k, char *tmp)
{
    const char *e = blk + k * j->a->esz;
    if (j->acc == ACC_RAW)
        return e;
    if (j->acc == ACC_F64) {
        double v = as_f64(e, j->a->elt);
        if (j->sq)
            v *= v;
        memcpy(tmp, &v, sizeof v);
    } else {
        int64_t v = j->a->elt == DAGGER_ELT_I64 ? *(const int64_t *)e : *(const int32_t *)e;
        memcpy(tmp, &v, sizeof v);
    }
    return tmp;
}

/* The fast path of a full reduction with a built-in operator: one tight loop per element type
 * (sums keep four partial accumulators so that the loop vectorises). */
#define FAST_F(T)                                                                                  \
    do {                                                                                           \
        const T *x = (const T *)blk;                                                               \
        double a = *(double *)acc;                                                                 \
        size_t k = 0;                                                                              \
        if (j->op == DAGGER_OP_ADD) {                                                              \
            double s[4] = {0, 0, 0, 0};                                                            \
            if (j->sq)                                                                             \
                for (; k + 4 <= n; k += 4)                                                         \
                    for (int q = 0; q < 4; q++)                                                    \
                        s[q] += (double)x[k + q] * (double)x[k + q];                               \
            else                                                                                   \
                for (; k + 4 <= n; k += 4)                                                         \
                    for (int q = 0; q < 4; q++)                                                    \
                        s[q] += (double)x[k + q];                                                  \
            a += (s[0] + s[1]) + (s[2] + s[3]);                                                    \
        }                                                                                          \
        for (; k < n; k++) {                                                                       \
            double v = (double)x[k];                                                               \
            if (j->sq)                                                                             \
                v *= v;                                                                            \
            a = j->op == DAGGER_OP_MUL   ? a * v                                                   \
                : j->op == DAGGER_OP_MIN ? (v < a ? v : a)                                         \
                : j->op == DAGGER_OP_MAX ? (v > a ? v : a)                                         \
                                         : a + v;                                                  \
        }                                                                                          \
        *(double *)acc = a;                                                                        \
    } while (0)
#define FAST_I(T)                                                                                  \
    do {                                                                                           \
        const T *x = (const T *)blk;                                                               \
        uint64_t a = *(uint64_t *)acc;                                                             \
        for (size_t k = 0; k < n; k++) {                                                           \
            int64_t v = x[k], s = (int64_t)a;                                                      \
            a = j->op == DAGGER_OP_MUL   ? a * (uint64_t)v                                         \
                : j->op == DAGGER_OP_MIN ? (uint64_t)(v < s ? v : s)                               \
                : j->op == DAGGER_OP_MAX ? (uint64_t)(v > s ? v : s)                               \
                                         : a + (uint64_t)v;                                        \
        }                                                                                          \
        *(uint64_t *)acc = a;                                                                      \
    } while (0)

static void leaf_fast(const red_job_t *j, const char *blk, size_t n, char *acc)
{
    switch (j->a->elt) {
    case DAGGER_ELT_F64:
        FAST_F(double);
        break;
    case DAGGER_ELT_F32:
        FAST_F(float);
        break;
    case DAGGER_ELT_I64:
        if (j->acc == ACC_F64)
            FAST_F(int64_t);
        else
            FAST_I(int64_t);
        break;
    default:
        if (j->acc == ACC_F64)
            FAST_F(int32_t);
        else
            FAST_I(int32_t);
        break;
    }
}

static int leaf(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    red_job_t *j = dagger_arg_ptr(args, 0);
    size_t b = (size_t)dagger_arg_i64(args, 1);
    dagger_darray_blockinfo_t bi;
    dagger__da_info(j->a, b, &bi);
    char *p = j->part[b];
    acc_init(j, p, j->npart[b]);
    const char *blk = j->a->ptr[b];
    char tmp[16];
    if (j->dim < 0 && j->acc != ACC_RAW) {
        leaf_fast(j, blk, bi.count, p);
        return 0;
    }
    if (j->dim < 0) {
        for (size_t k = 0; k < bi.count; k++)
            fold_acc(j, p, as_acc(j, blk, k, tmp));
        return 0;
    }
    size_t i[DA_MAXD] = {0, 0, 0, 0}, os[DA_MAXD], s = 1;
    for (int d = 0; d < DA_MAXD; d++) {
        os[d] = d == j->dim ? 0 : s;
        s *= d == j->dim ? 1 : bi.shape[d];
    }
    size_t o = 0;
    for (size_t k = 0; k < bi.count; k++) {
        fold_acc(j, p + o * j->asz, as_acc(j, blk, k, tmp));
        for (int d = 0; d < DA_MAXD; d++) {
            o += os[d];
            if (++i[d] < bi.shape[d])
                break;
            o -= os[d] * i[d];
            i[d] = 0;
        }
    }
    return 0;
}

/* part[x] ⊕= part[y]; the arguments 2 and 3 are the tasks that produced them. */
static int combine(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    red_job_t *j = dagger_arg_ptr(args, 0);
    size_t x = (size_t)dagger_arg_i64(args, 1), y = (size_t)dagger_arg_i64(args, 2);
    for (size_t k = 0; k < j->npart[x]; k++)
        fold_acc(j, j->part[x] + k * j->asz, j->part[y] + k * j->asz);
    return 0;
}

/* Write the root partial of output block `ob` (whose partial lives in block `root`). */
static int finish(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    red_job_t *j = dagger_arg_ptr(args, 0);
    size_t ob = (size_t)dagger_arg_i64(args, 1), root = (size_t)dagger_arg_i64(args, 2);
    dagger_darray_t *r = j->out;
    size_t n = dagger__da_block_count(r, ob);
    const char *p = j->part[root];
    double div = j->mean ? (double)j->a->dims[j->dim] : 1.0;
    for (size_t k = 0; k < n; k++, p += j->asz) {
        char *e = (char *)r->ptr[ob] + k * r->esz;
        if (j->acc == ACC_RAW) {
            memcpy(e, p, r->esz);
            continue;
        }
        double v = j->acc == ACC_F64 ? *(const double *)p : (double)*(const int64_t *)p;
        switch (r->elt) {
        case DAGGER_ELT_F64:
            *(double *)e = v / div;
            break;
        case DAGGER_ELT_F32:
            *(float *)e = (float)(v / div);
            break;
        case DAGGER_ELT_I64:
            *(int64_t *)e = *(const int64_t *)p;
            break;
        default:
            *(int32_t *)e = (int32_t) * (const int64_t *)p;
            break;
        }
    }
    return 0;
}

static dagger_task_t *spawn_on(red_job_t *j, int place, dagger_fn_t fn, const char *name,
                               const dagger_value_t *av, size_t n)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = name;
    dagger_scope_t *s = place >= 0 ? dagger_scope_thread(place) : NULL;
    if (s) /* NULL: the scheduler places it (the options' default scope) */
        o.scope = s;
    dagger_task_t *t = dagger_spawn_impl(j->a->ctx, &o, fn, name, av, n);
    dagger_scope_release(s);
    return t;
}

static int check_op(const dagger_darray_t *a, dagger_darray_op_t op,
                    const dagger_darray_redop_t *user, const char *what)
{
    DAGGER_CHECK(op == DAGGER_OP_ADD || op == DAGGER_OP_MUL || op == DAGGER_OP_MIN ||
                     op == DAGGER_OP_MAX || op == DAGGER_OP_MEAN || op == DAGGER_OP_USER,
                 DAGGER_EINVAL,
                 "%s: operator %d is not a reduction (sum, prod, min, max, mean, "
                 "user)",
                 what, (int)op);
    DAGGER_CHECK(op != DAGGER_OP_USER || (user && user->combine && user->identity), DAGGER_EINVAL,
                 "%s: DAGGER_OP_USER needs a combine function and an identity", what);
    DAGGER_CHECK(a->len > 0 || (op != DAGGER_OP_MIN && op != DAGGER_OP_MAX && op != DAGGER_OP_MEAN),
                 DAGGER_EINVAL, "%s: min, max and mean of an empty array are undefined", what);
    return 0;
}

/* Leaves, trees (one per group of blocks) and the per-group finish; waits for everything.
 * groups: ngroups lists of `glen` block numbers each (row-major: group g at g * glen). */
static int run_tree(red_job_t *j, const size_t *groups, size_t ngroups, size_t glen,
                    bool with_finish)
{
    dagger_darray_t *a = j->a;
    size_t nt = a->nblocks * 2 + ngroups + 1;
    dagger_task_t **ts = dagger__calloc(nt, sizeof *ts), **last;
    size_t n = 0;
    last = dagger__calloc(a->nblocks, sizeof *last); /* the task that last wrote part[b] */
    int rc = 0;
    if (!ts || !last) {
        rc = dagger__set_errmsg(DAGGER_ENOMEM, "darray reduce: out of memory");
        goto out;
    }
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_value_t av[2] = {dagger_ptr(j), dagger_i64((int64_t)b)};
        last[b] = ts[n++] = spawn_on(j, a->place[b], leaf, "darray_reduce_block", av, 2);
    }
    for (size_t g = 0; g < ngroups; g++) {
        const size_t *blk = groups + g * glen;
        for (size_t step = 1; step < glen; step *= 2)
            for (size_t i = 0; i + step < glen; i += 2 * step) {
                size_t x = blk[i], y = blk[i + step];
                dagger_value_t av[5] = {dagger_ptr(j), dagger_i64((int64_t)x),
                                        dagger_i64((int64_t)y), dagger_taskv(last[x]),
                                        dagger_taskv(last[y])};
                last[x] = ts[n++] =
                    spawn_on(j, a->place[x], combine, "darray_reduce_combine", av, 5);
            }
        if (with_finish) {
            dagger_value_t av[4] = {dagger_ptr(j), dagger_i64((int64_t)g),
                                    dagger_i64((int64_t)blk[0]), dagger_taskv(last[blk[0]])};
            ts[n++] = spawn_on(j, j->out->place[g], finish, "darray_reduce_finish", av, 4);
        }
    }
    for (size_t i = 0; i < n; i++) {
        int e = ts[i] ? dagger_fetch(ts[i], NULL) : DAGGER_ENOMEM;
        if (e && !rc)
            rc = ts[i] ? dagger__set_errmsg_str(e, dagger_task_errmsg(ts[i]))
                       : dagger__set_errmsg(e, "darray reduce: out of memory");
    }
out:
    for (size_t i = 0; i < n; i++)
        dagger_task_release(ts[i]);
    dagger__free(ts);
    dagger__free(last);
    return rc;
}

static int job_init(red_job_t *j, dagger_darray_t *a, dagger_darray_op_t op,
                    const dagger_darray_redop_t *user, int dim, bool sq)
{
    memset(j, 0, sizeof *j);
    j->a = a;
    j->op = op == DAGGER_OP_MEAN ? DAGGER_OP_ADD : op;
    j->mean = op == DAGGER_OP_MEAN;
    j->user = user;
    j->dim = dim;
    j->sq = sq;
    bool flt = a->elt == DAGGER_ELT_F64 || a->elt == DAGGER_ELT_F32;
    j->acc = op == DAGGER_OP_USER ? ACC_RAW : (flt || sq) ? ACC_F64 : ACC_I64;
    j->asz = j->acc == ACC_RAW ? a->esz : 8;
    j->part = dagger__calloc(a->nblocks, sizeof *j->part);
    j->npart = dagger__calloc(a->nblocks, sizeof *j->npart);
    DAGGER_CHECK(j->part && j->npart, DAGGER_ENOMEM, "darray reduce: out of memory");
    for (size_t b = 0; b < a->nblocks; b++) {
        size_t o[DA_MAXD], s[DA_MAXD];
        dagger__da_block_box(a, b, o, s);
        size_t m = dim < 0 ? 1 : dagger__da_block_count(a, b) / (s[dim] ? s[dim] : 1);
        if (dim >= 0 && !s[dim]) /* an empty block along dim: partials of the other extents */
            m = 0;
        j->npart[b] = m;
        j->part[b] = dagger__malloc((m ? m : 1) * j->asz);
        DAGGER_CHECK(j->part[b], DAGGER_ENOMEM, "darray reduce: out of memory");
    }
    return 0;
}

static void job_free(red_job_t *j)
{
    for (size_t b = 0; j->part && b < j->a->nblocks; b++)
        dagger__free(j->part[b]);
    dagger__free(j->part);
    dagger__free(j->npart);
}

/* ---------------------------------------------------------------- across ranks */

/* On the block's rank: the partial of a full reduction of one block, as an f64 or i64 value.
 * Arguments: the block, its number, then op, acc (ACC_F64 / ACC_I64), sq and the element type:
 * plain values, so the task can run on any rank. */
static int leaf_remote(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    size_t n = 0;
    const char *blk = dagger_arg_buf(args, 0, &n);
    if (!blk && n)
        return DAGGER_ETYPE; /* dagger_arg_buf failed the task */
    dagger_darray_t shell;
    memset(&shell, 0, sizeof shell);
    shell.elt = (dagger_elt_t)dagger_arg_i64(args, 5);
    shell.esz = dagger_elt_size(shell.elt);
    red_job_t j;
    memset(&j, 0, sizeof j);
    j.a = &shell;
    j.op = (dagger_darray_op_t)dagger_arg_i64(args, 2);
    j.acc = (int)dagger_arg_i64(args, 3);
    j.sq = dagger_arg_bool(args, 4);
    j.asz = 8;
    j.dim = -1;
    if (!shell.esz || n % shell.esz)
        return dagger_fail(tc, DAGGER_EINVAL, "darray reduce block %lld: %zu bytes of %s",
                           (long long)dagger_arg_i64(args, 1), n, "a bad element type");
    char acc[8];
    acc_init(&j, acc, 1);
    leaf_fast(&j, blk, n / shell.esz, acc);
    if (j.acc == ACC_F64) {
        double v;
        memcpy(&v, acc, sizeof v);
        *out = dagger_f64(v);
    } else {
        int64_t v;
        memcpy(&v, acc, sizeof v);
        *out = dagger_i64(v);
    }
    return 0;
}

/* A full reduction of an array over ranks: one leaf task per block where it lives, its partial
 * back as a number, then the same binary tree as run_tree folded here (so the result is the
 * one of a single process, bit for bit). */
static int reduce_ranks(red_job_t *j)
{
    dagger_darray_t *a = j->a;
    DAGGER_CHECK(j->acc != ACC_RAW, DAGGER_ENOSYS,
                 "dagger_darray_reduce: a user operator (DAGGER_OP_USER) over an array with "
                 "blocks on other ranks is not built yet (its functions and ud are pointers)");
    dagger_task_t **ts = dagger__calloc(a->nblocks ? a->nblocks : 1, sizeof *ts);
    DAGGER_CHECK(ts, DAGGER_ENOMEM, "darray reduce: out of memory");
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = "darray_reduce_block";
        dagger_value_t av[6] = {dagger_chunkv(a->blocks[b]), dagger_i64((int64_t)b),
                                dagger_i64(j->op),           dagger_i64(j->acc),
                                dagger_bool(j->sq),          dagger_i64(a->elt)};
        ts[b] = dagger_spawn_impl(a->ctx, &o, leaf_remote, o.name, av, 6);
    }
    int rc = 0;
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_value_t v;
        int e = ts[b] ? dagger_fetch(ts[b], &v) : DAGGER_ENOMEM;
        if (e && !rc)
            rc = ts[b] ? dagger__set_errmsg_str(e, dagger_task_errmsg(ts[b]))
                       : dagger__set_errmsg(e, "darray reduce: out of memory");
        else if (!e && j->acc == ACC_F64)
            memcpy(j->part[b], &v.u.f, 8);
        else if (!e)
            memcpy(j->part[b], &v.u.i, 8);
        dagger_task_release(ts[b]);
    }
    dagger__free(ts);
    for (size_t step = 1; !rc && step < a->nblocks; step *= 2)
        for (size_t i = 0; i + step < a->nblocks; i += 2 * step)
            fold_acc(j, j->part[i], j->part[i + step]);
    return rc;
}

static int reduce_all(dagger_darray_t *a, dagger_darray_op_t op, const dagger_darray_redop_t *user,
                      bool sq, red_job_t *j)
{
    int rc = job_init(j, a, op, user, -1, sq);
    if (!rc && a->ranks)
        return reduce_ranks(j);
    size_t *groups = rc ? NULL : dagger__malloc(a->nblocks * sizeof *groups);
    if (!rc && !groups)
        rc = dagger__set_errmsg(DAGGER_ENOMEM, "darray reduce: out of memory");
    if (!rc) {
        for (size_t b = 0; b < a->nblocks; b++)
            groups[b] = b;
        rc = run_tree(j, groups, 1, a->nblocks, false);
    }
    dagger__free(groups);
    return rc;
}

int dagger_darray_reduce(dagger_darray_t *a, dagger_darray_op_t op,
                         const dagger_darray_redop_t *user, dagger_value_t *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_reduce: out is NULL");
    int rc = dagger__da_check_any(a, "dagger_darray_reduce");
    if (rc || (rc = check_op(a, op, user, "dagger_darray_reduce")))
        return rc;
    red_job_t j;
    rc = reduce_all(a, op, user, false, &j);
    if (!rc) {
        const char *p = j.part[0];
        if (j.acc == ACC_RAW) {
            double v;
            switch (a->elt) {
            case DAGGER_ELT_F64:
                *out = dagger_f64(*(const double *)p);
                break;
            case DAGGER_ELT_F32:
                v = *(const float *)p;
                *out = dagger_f64(v);
                break;
            case DAGGER_ELT_I64:
                *out = dagger_i64(*(const int64_t *)p);
                break;
            default:
                *out = dagger_i64(*(const int32_t *)p);
                break;
            }
        } else if (op == DAGGER_OP_MEAN) {
            double s = j.acc == ACC_F64 ? *(const double *)p : (double)*(const int64_t *)p;
            *out = dagger_f64(s / (double)a->len);
        } else {
            *out =
                j.acc == ACC_F64 ? dagger_f64(*(const double *)p) : dagger_i64(*(const int64_t *)p);
        }
    }
    job_free(&j);
    return rc;
}

int dagger_darray_norm(dagger_darray_t *a, double *out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_norm: out is NULL");
    int rc = dagger__da_check_any(a, "dagger_darray_norm");
    if (rc)
        return rc;
    red_job_t j;
    rc = reduce_all(a, DAGGER_OP_ADD, NULL, true, &j);
    if (!rc)
        *out = sqrt(*(const double *)j.part[0]);
    job_free(&j);
    return rc;
}

int dagger_darray_reduce_dim(dagger_darray_t *a, dagger_darray_op_t op,
                             const dagger_darray_redop_t *user, int dim, dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_reduce_dim: out is NULL");
    *out = NULL;
    int rc = dagger__da_check(a, "dagger_darray_reduce_dim");
    if (rc || (rc = check_op(a, op, user, "dagger_darray_reduce_dim")))
        return rc;
    DAGGER_CHECK(dim >= 0 && dim < a->nd, DAGGER_EINVAL,
                 "dagger_darray_reduce_dim: dimension %d of a %d-D array", dim, a->nd);
    DAGGER_CHECK(a->dims[dim] > 0 ||
                     (op != DAGGER_OP_MIN && op != DAGGER_OP_MAX && op != DAGGER_OP_MEAN),
                 DAGGER_EINVAL, "dagger_darray_reduce_dim: dimension %d is empty", dim);
    bool flt = a->elt == DAGGER_ELT_F64 || a->elt == DAGGER_ELT_F32;
    dagger__da_layout_t l;
    dagger__da_layout_like(a, op == DAGGER_OP_MEAN && !flt ? DAGGER_ELT_F64 : a->elt, &l);
    l.dims[dim] = l.bs[dim] = 1;
    /* Output block g takes the place of the source block with grid index 0 along dim. */
    size_t ng = a->nblocks / a->grid[dim], glen = a->grid[dim];
    size_t *groups = dagger__malloc(a->nblocks * sizeof *groups);
    int *pl = dagger__malloc((ng ? ng : 1) * sizeof *pl);
    red_job_t j;
    memset(&j, 0, sizeof j);
    if (!groups || !pl) {
        rc = dagger__set_errmsg(DAGGER_ENOMEM, "darray reduce: out of memory");
        goto out;
    }
    size_t stride = 1;
    for (int d = 0; d < dim; d++)
        stride *= a->grid[d];
    for (size_t g = 0; g < ng; g++) {
        size_t lo = g % stride, hi = g / stride; /* grid index without dim */
        size_t base = lo + hi * stride * glen;
        for (size_t k = 0; k < glen; k++)
            groups[g * glen + k] = base + k * stride;
        pl[g] = a->place[base];
    }
    l.places = pl;
    l.nplaces = ng;
    dagger_darray_t *res = NULL;
    if ((rc = dagger__da_build(a->ctx, &l, NULL, NULL, &res)))
        goto out;
    rc = job_init(&j, a, op, user, dim, false);
    j.out = res;
    if (!rc)
        rc = run_tree(&j, groups, ng, glen, true);
out:
    job_free(&j);
    dagger__free(groups);
    dagger__free(pl);
    if (rc) {
        dagger_darray_release(j.out);
        return rc;
    }
    *out = j.out;
    return 0;
}

/* ---------------------------------------------------------------- histogram */

typedef struct hist {
    dagger_darray_t *a;
    double lo, hi;
    size_t nbins;
} hist_t;

static void hist_add(void *acc, const void *priv, size_t bytes, void *ud)
{
    uint64_t *x = acc;
    const uint64_t *p = priv;
    for (size_t i = 0; i < bytes / sizeof *x; i++)
        x[i] += p[i];
}

static int hist_block(dagger_tc_t *tc, const dagger_args_t *args, dagger_value_t *out)
{
    uint64_t *bins = dagger_arg_ptr(args, 0);
    const hist_t *h = dagger_arg_ptr(args, 1);
    size_t b = (size_t)dagger_arg_i64(args, 2), n = dagger__da_block_count(h->a, b);
    const char *blk = h->a->ptr[b];
    double scale = (double)h->nbins / (h->hi - h->lo);
    for (size_t k = 0; k < n; k++) {
        const char *e = blk + k * h->a->esz;
        double v = as_f64(e, h->a->elt);
        if (!(v >= h->lo && v < h->hi))
            continue;
        size_t i = (size_t)((v - h->lo) * scale);
        bins[i < h->nbins ? i : h->nbins - 1]++;
    }
    return 0;
}

int dagger_darray_histogram(dagger_darray_t *a, double lo, double hi, size_t nbins,
                            uint64_t *counts)
{
    int rc = dagger__da_check(a, "dagger_darray_histogram");
    if (rc)
        return rc;
    DAGGER_CHECK(nbins > 0 && counts && lo < hi, DAGGER_EINVAL,
                 "dagger_darray_histogram: needs bins, a counts buffer and lo < hi (got %zu bins, "
                 "[%g, %g))",
                 nbins, lo, hi);
    memset(counts, 0, nbins * sizeof *counts);
    hist_t h = {a, lo, hi, nbins};
    dagger_redux_op_t op = {hist_add, NULL, NULL};
    dagger_datadeps_t *dd;
    if ((rc = dagger_datadeps_begin(a->ctx, 0, &dd)))
        return rc;
    for (size_t b = 0; b < a->nblocks; b++) {
        dagger_task_opts_t o;
        dagger_task_opts_init(&o);
        o.name = "darray_histogram";
        dagger_scope_t *s = a->place[b] >= 0 ? dagger_scope_thread(a->place[b]) : NULL;
        if (s) /* NULL: the scheduler places it (the options' default scope) */
            o.scope = s;
        dagger_ddarg_t av[3] = {dagger_redux(counts, nbins * sizeof *counts, &op),
                                dagger_ddval(dagger_ptr(&h)), dagger_ddval(dagger_i64((int64_t)b))};
        dagger_task_release(
            dagger_datadeps_spawn_impl(dd, &o, hist_block, "darray_histogram", av, 3));
        dagger_scope_release(s);
    }
    return dagger_datadeps_end(dd);
}
