/* src/trace/api.c - turning tracing on and off, and writing a trace in the format asked for.
 *
 * Design: one recording at a time, keyed by the context that started it. Control calls
 * (start, stop, write, the context hooks) take g_lock; the event hooks never do.
 * Lock order: g_lock only.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/common.h"
#include "trace/trace.h"
#include "trace/trace_int.h"

#define DEFAULT_MAX_EVENTS (8u << 20)
#define MAX_CTX 8

/* The runtime's per-thread error message, when the runtime is linked in (weak: the trace layer
 * is also built alone, into the dagger-trace tool and its unit test). */
extern int dagger__set_errmsg(int code, const char *fmt, ...) __attribute__((weak));
#define ERRMSG(code, ...) (dagger__set_errmsg ? dagger__set_errmsg((code), __VA_ARGS__) : (code))
extern const char *dagger_last_errmsg(void) __attribute__((weak));
/* The machine as the pool sees it (src/pool/topo.c), when the runtime is linked in. */
extern void dagger__topo_describe(char *buf, size_t cap, int nworkers, int mode)
    __attribute__((weak));
extern int dagger__topo_bind_mode(int *mode) __attribute__((weak));

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static void *g_ctx;                    /* guarded by g_lock: owner of the current/last recording */
static uint32_t g_rec_gen;             /* guarded by g_lock: its generation (0 = none) */
static _Atomic uint32_t g_rec_gen_pub; /* a copy for dagger_trace_dropped */
static int64_t g_t0, g_t1;             /* guarded by g_lock; g_t1 = 0 while recording */
static int g_nthreads;                 /* guarded by g_lock */
/* guarded by g_lock: the first snapshot taken after the stop; later ones are copies of it, so
 * writing a stopped trace twice gives the same files even when a worker that saw tracing on
 * just before the stop publishes its last event between the two writes */
static struct dtr_snap g_frozen;
static int g_have_frozen;
static char g_topo[512]; /* guarded by g_lock: the topology line of the recording */
static char *g_env_path; /* guarded by g_lock: DAGGER_TRACE of g_env_ctx */
static void *g_env_ctx;
static struct {
    void *ctx;
    int nthreads;
} g_known[MAX_CTX]; /* guarded by g_lock: contexts open and their thread counts */
/* guarded by g_lock: the other ranks' traces of g_env_ctx (rank 0 of an MPI job), by rank */
static struct dtr_snap **g_ranks;
static int64_t *g_rank_off;
static int g_nranks;

static void ranks_free(void)
{
    for (int r = 0; r < g_nranks; r++)
        if (g_ranks[r]) {
            dagger__trace_snap_free(g_ranks[r]);
            free(g_ranks[r]);
        }
    free(g_ranks);
    free(g_rank_off);
    g_ranks = NULL;
    g_rank_off = NULL;
    g_nranks = 0;
}

/* DAGGER_TRACE_LIMIT, checked at open by dagger__trace_env_check; 0 when unset. */
static uint64_t parse_limit(const char *s)
{
    size_t v = 0;
    if (s && *s && dagger__parse_size(s, &v) != 0)
        v = 0;
    return v;
}

void dagger_trace_opts_init(dagger_trace_opts_t *o) { memset(o, 0, sizeof *o); }

static int known_threads(void *ctx)
{
    for (int i = 0; i < MAX_CTX; i++)
        if (g_known[i].ctx == ctx)
            return g_known[i].nthreads;
    return 0;
}

static void unfreeze(void)
{
    if (g_have_frozen)
        dagger__trace_snap_free(&g_frozen);
    g_have_frozen = 0;
}

static int start_locked(void *ctx, const dagger_trace_opts_t *o)
{
    int on = atomic_load_explicit(&dagger__trace_on, memory_order_relaxed);
    if (on && g_ctx == ctx)
        return 0;
    if (on)
        return ERRMSG(DAGGER_EBUSY, "dagger_trace_start: another context is being traced");
    uint64_t max = o ? o->max_events : 0;
    if (!max)
        max = parse_limit(getenv("DAGGER_TRACE_LIMIT"));
    if (!max)
        max = DEFAULT_MAX_EVENTS;
    unfreeze();
    g_ctx = ctx;
    g_nthreads = known_threads(ctx);
    g_topo[0] = '\0';
    if (dagger__topo_describe && dagger__topo_bind_mode) {
        int mode = 0;
        if (dagger__topo_bind_mode(&mode) != 0)
            mode = 0;
        dagger__topo_describe(g_topo, sizeof g_topo, g_nthreads, mode);
    }
    g_rec_gen = dagger__trace_buf_begin(max);
    atomic_store_explicit(&g_rec_gen_pub, g_rec_gen, memory_order_relaxed);
    g_t0 = dagger__trace_now();
    g_t1 = 0;
    atomic_store_explicit(&dagger__trace_on, (int)g_rec_gen, memory_order_release);
    return 0;
}

int dagger_trace_start_opts(dagger_ctx_t *ctx, const dagger_trace_opts_t *o)
{
    if (!ctx)
        return ERRMSG(DAGGER_EINVAL, "dagger_trace_start: ctx is NULL");
    pthread_mutex_lock(&g_lock);
    int rc = start_locked(ctx, o);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

int dagger_trace_start(dagger_ctx_t *ctx) { return dagger_trace_start_opts(ctx, NULL); }

static void stop_locked(void)
{
    if (atomic_load_explicit(&dagger__trace_on, memory_order_relaxed)) {
        atomic_store_explicit(&dagger__trace_on, 0, memory_order_relaxed);
        g_t1 = dagger__trace_now();
    }
}

int dagger_trace_stop(dagger_ctx_t *ctx)
{
    pthread_mutex_lock(&g_lock);
    int rc = 0;
    if (g_ctx && g_ctx != ctx)
        rc = ERRMSG(DAGGER_ESTATE, "dagger_trace_stop: another context owns the trace");
    else
        stop_locked();
    pthread_mutex_unlock(&g_lock);
    return rc;
}

uint64_t dagger_trace_dropped(dagger_ctx_t *ctx)
{
    uint32_t gen = atomic_load_explicit(&g_rec_gen_pub, memory_order_relaxed);
    (void)ctx;
    return gen ? dagger__trace_buf_dropped(gen) : 0;
}

static int snap_locked(void *ctx, struct dtr_snap *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx)
        return ERRMSG(DAGGER_EINVAL, "dagger_trace: ctx is NULL");
    if (!g_rec_gen || g_ctx != ctx)
        return ERRMSG(DAGGER_ESTATE, "dagger_trace: no trace was recorded for this context");
    if (g_t1 && g_have_frozen)
        return dagger__trace_snap_copy(out, &g_frozen);
    out->t0 = dagger__trace_to_ns(g_t0);
    out->t1 = dagger__trace_to_ns(g_t1 ? g_t1 : dagger__trace_now());
    out->nthreads = g_nthreads;
    if (g_topo[0] && !(out->topo = strdup(g_topo)))
        return DAGGER_ENOMEM;
    int rc = dagger__trace_buf_collect(g_rec_gen, out);
    if (rc) {
        dagger__trace_snap_free(out);
        return rc;
    }
    /* The window holds every event: a thread that saw tracing on just before the stop (or a
     * snapshot's `now`) stamps its event a little after t1, and a stamp taken at a task's end
     * may open the next event from just before the start. */
    for (size_t i = 0; i < out->nev; i++) {
        if (out->ev[i].ts > out->t1)
            out->t1 = out->ev[i].ts;
        if (out->ev[i].ts < out->t0)
            out->t0 = out->ev[i].ts;
    }
    if (g_t1 && dagger__trace_snap_copy(&g_frozen, out) == 0)
        g_have_frozen = 1; /* without memory to keep it, the next snapshot is taken afresh */
    return 0;
}

int dagger__trace_snap_take(void *ctx, struct dtr_snap *out)
{
    pthread_mutex_lock(&g_lock);
    int rc = snap_locked(ctx, out);
    pthread_mutex_unlock(&g_lock);
    return rc;
}

static const char *ext_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

int dagger__trace_write_snap(const struct dtr_snap *s, const char *path)
{
    if (!path)
        return ERRMSG(DAGGER_EINVAL, "dagger_trace_write: path is NULL");
    const char *ext = ext_of(path);
    enum { F_JSON, F_DOT, F_HTML, F_TXT, F_DTRACE } fmt;
    if (!strcasecmp(ext, "json"))
        fmt = F_JSON;
    else if (!strcasecmp(ext, "dot") || !strcasecmp(ext, "gv"))
        fmt = F_DOT;
    else if (!strcasecmp(ext, "html") || !strcasecmp(ext, "htm"))
        fmt = F_HTML;
    else if (!strcasecmp(ext, "txt"))
        fmt = F_TXT;
    else if (!strcasecmp(ext, "dtrace"))
        fmt = F_DTRACE;
    else
        return ERRMSG(DAGGER_EINVAL,
                      "dagger_trace_write: unknown extension of '%s' "
                      "(use .json .dot .html .txt or .dtrace)",
                      path);
    FILE *f = fopen(path, "wb");
    if (!f)
        return ERRMSG(DAGGER_EIO, "dagger_trace_write: cannot open '%s': %s", path,
                      strerror(errno));
    int rc;
    if (fmt == F_DTRACE) {
        rc = dagger__trace_snap_save(s, f);
    } else {
        struct dtr_model m;
        rc = dagger__trace_model_build(&m, s);
        if (!rc) {
            switch (fmt) {
            case F_JSON:
                rc = dagger__trace_export_json(&m, f);
                break;
            case F_DOT:
                rc = dagger__trace_export_dot(&m, f);
                break;
            case F_HTML:
                rc = dagger__trace_export_html(&m, f);
                break;
            default:
                rc = dagger__trace_export_text(&m, f);
                break;
            }
            dagger__trace_model_free(&m);
        }
    }
    int werr = ferror(f) ? errno : 0;
    if (fclose(f) != 0 && !rc) {
        rc = DAGGER_EIO;
        werr = errno;
    }
    if (rc == DAGGER_EIO)
        ERRMSG(rc, "dagger_trace_write: cannot write '%s': %s", path,
               werr ? strerror(werr) : "I/O error");
    return rc;
}

int dagger_trace_write(dagger_ctx_t *ctx, const char *path)
{
    struct dtr_snap s;
    pthread_mutex_lock(&g_lock);
    int rc = snap_locked(ctx, &s);
    pthread_mutex_unlock(&g_lock);
    if (rc)
        return rc;
    rc = dagger__trace_write_snap(&s, path);
    dagger__trace_snap_free(&s);
    return rc;
}

static int with_model(void *ctx, int (*fn)(struct dtr_model *, void *), void *ud)
{
    struct dtr_snap s;
    int rc = dagger__trace_snap_take(ctx, &s);
    if (rc)
        return rc;
    struct dtr_model m;
    rc = dagger__trace_model_build(&m, &s);
    if (!rc) {
        rc = fn(&m, ud);
        dagger__trace_model_free(&m);
    }
    dagger__trace_snap_free(&s);
    return rc;
}

static int text_to(struct dtr_model *m, void *f) { return dagger__trace_export_text(m, f); }
static int stats_to(struct dtr_model *m, void *st)
{
    *(dagger_trace_stats_t *)st = m->stats;
    return 0;
}

int dagger_trace_summary_file(dagger_ctx_t *ctx, FILE *f)
{
    if (!f)
        return ERRMSG(DAGGER_EINVAL, "dagger_trace_summary_file: f is NULL");
    return with_model(ctx, text_to, f);
}

long dagger_trace_summary(dagger_ctx_t *ctx, char *buf, size_t cap)
{
    if (!buf && cap)
        return ERRMSG(DAGGER_EINVAL, "dagger_trace_summary: buf is NULL");
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    if (!f)
        return DAGGER_ENOMEM;
    int rc = with_model(ctx, text_to, f);
    if (fclose(f) != 0 && !rc)
        rc = DAGGER_ENOMEM;
    if (rc) {
        free(mem);
        return rc;
    }
    if (cap) {
        size_t n = len < cap - 1 ? len : cap - 1;
        memcpy(buf, mem, n);
        buf[n] = '\0';
    }
    free(mem);
    return (long)len;
}

int dagger_trace_stats(dagger_ctx_t *ctx, dagger_trace_stats_t *out)
{
    if (!out)
        return ERRMSG(DAGGER_EINVAL, "dagger_trace_stats: out is NULL");
    return with_model(ctx, stats_to, out);
}

static int load_file(const char *in_path, struct dtr_snap *s)
{
    memset(s, 0, sizeof *s);
    if (!in_path)
        return ERRMSG(DAGGER_EINVAL, "dagger_trace: path is NULL");
    FILE *f = fopen(in_path, "rb");
    if (!f)
        return ERRMSG(DAGGER_EIO, "dagger_trace: cannot open '%s'", in_path);
    int rc = dagger__trace_snap_load(s, f);
    fclose(f);
    if (rc == DAGGER_EINVAL)
        ERRMSG(rc, "dagger_trace: '%s' is not a valid .dtrace file: %s", in_path,
               dagger__trace_load_why());
    return rc;
}

int dagger_trace_convert(const char *in_path, const char *out_path)
{
    struct dtr_snap s;
    int rc = load_file(in_path, &s);
    if (!rc)
        rc = dagger__trace_write_snap(&s, out_path);
    dagger__trace_snap_free(&s);
    return rc;
}

int dagger_trace_file_summary(const char *in_path, FILE *f, dagger_trace_stats_t *st)
{
    struct dtr_snap s;
    int rc = load_file(in_path, &s);
    if (!rc) {
        struct dtr_model m;
        rc = dagger__trace_model_build(&m, &s);
        if (!rc) {
            if (f)
                rc = dagger__trace_export_text(&m, f);
            if (st)
                *st = m.stats;
            dagger__trace_model_free(&m);
        }
    }
    dagger__trace_snap_free(&s);
    return rc;
}

/* ---------------------------------------------------------------- context hooks */

/* DAGGER_TRACE_LIMIT: a positive count with an optional k/m/g suffix. */
static int limit_ok(const char *s)
{
    size_t v = 0;
    return *s != '-' && dagger__parse_size(s, &v) == 0 && v > 0;
}

int dagger__trace_env_check(void)
{
    const char *lim = getenv("DAGGER_TRACE_LIMIT");
    if (lim && *lim && !limit_ok(lim))
        return ERRMSG(DAGGER_EINVAL,
                      "DAGGER_TRACE_LIMIT='%s' is invalid: expected a positive event count, "
                      "optionally with a k, m or g suffix (e.g. 1m)",
                      lim);
    const char *path = getenv("DAGGER_TRACE");
    if (!path || !*path)
        return 0;
    static const char *const exts[] = {"json", "dot", "gv", "html", "htm", "txt", "dtrace"};
    const char *ext = ext_of(path);
    int known = 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        known |= strcasecmp(ext, exts[i]) == 0;
    if (!known)
        return ERRMSG(DAGGER_EINVAL,
                      "DAGGER_TRACE='%s': unknown extension '%s' (use .json .dot .html .txt or "
                      ".dtrace)",
                      path, ext);
    /* The file is written at close: say now when its folder cannot take it. */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK) != 0)
        return ERRMSG(DAGGER_EINVAL, "DAGGER_TRACE='%s': cannot write in '%s': %s", path, dir,
                      strerror(errno));
    return 0;
}

void dagger__trace_ctx_busy(struct dagger_ctx *ctx)
{
    pthread_mutex_lock(&g_lock);
    char *path = g_env_ctx == (void *)ctx && g_env_path ? strdup(g_env_path) : NULL;
    struct dtr_snap s;
    int rc = path ? snap_locked(ctx, &s) : 0;
    pthread_mutex_unlock(&g_lock);
    if (!path)
        return;
    if (!rc) {
        rc = dagger__trace_write_snap(&s, path);
        dagger__trace_snap_free(&s);
    }
    if (rc)
        fprintf(stderr, "dagger: DAGGER_TRACE=%s: %s\n", path,
                dagger_last_errmsg ? dagger_last_errmsg() : dagger__trace_err_name(rc));
    free(path);
}

void dagger__trace_ctx_open(struct dagger_ctx *ctx, int nthreads)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_CTX; i++)
        if (!g_known[i].ctx || g_known[i].ctx == ctx) {
            g_known[i].ctx = ctx;
            g_known[i].nthreads = nthreads;
            break;
        }
    const char *path = getenv("DAGGER_TRACE");
    if (path && *path && !g_env_ctx && start_locked(ctx, NULL) == 0) {
        g_env_path = strdup(path);
        g_env_ctx = g_env_path ? ctx : NULL;
    }
    pthread_mutex_unlock(&g_lock);
}

void dagger__trace_ctx_close(struct dagger_ctx *ctx)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_CTX; i++)
        if (g_known[i].ctx == ctx)
            g_known[i].ctx = NULL;
    char *path = NULL;
    if (g_ctx == (void *)ctx)
        stop_locked();
    if (g_env_ctx == (void *)ctx) {
        path = g_env_path;
        g_env_path = NULL;
        g_env_ctx = NULL;
    }
    struct dtr_snap s;
    int rc = path ? snap_locked(ctx, &s) : 0;
    if (path && !rc && g_nranks > 0) { /* rank 0 of a job: one trace of every rank */
        struct dtr_snap merged;
        g_ranks[0] = &s;
        rc = dagger__trace_snap_merge(&merged, g_ranks, g_rank_off, g_nranks);
        g_ranks[0] = NULL;
        dagger__trace_snap_free(&s);
        if (!rc)
            s = merged;
        else
            rc = ERRMSG(rc, "out of memory merging the ranks' traces");
    }
    if (path)
        ranks_free();
    if (g_ctx == (void *)ctx) {
        unfreeze();
        g_ctx = NULL;
        g_rec_gen = 0;
        atomic_store_explicit(&g_rec_gen_pub, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g_lock);
    if (path) {
        if (!rc)
            rc = dagger__trace_write_snap(&s, path);
        if (rc)
            fprintf(stderr, "dagger: DAGGER_TRACE=%s: %s\n", path,
                    dagger_last_errmsg ? dagger_last_errmsg() : dagger__trace_err_name(rc));
        const char *sum = getenv("DAGGER_TRACE_SUMMARY");
        if (!rc && sum && *sum && strcmp(sum, "0") != 0) {
            struct dtr_model m;
            if (dagger__trace_model_build(&m, &s) == 0) {
                dagger__trace_export_text(&m, stderr);
                dagger__trace_model_free(&m);
            }
        }
        dagger__trace_snap_free(&s);
        free(path);
    }
    dagger__trace_buf_trim();
}

/* ---------------------------------------------------------------- one trace for every rank */

int dagger__trace_rank_on(struct dagger_ctx *ctx)
{
    pthread_mutex_lock(&g_lock);
    int on = g_env_ctx == (void *)ctx && g_env_path != NULL;
    pthread_mutex_unlock(&g_lock);
    return on;
}

int dagger__trace_rank_take(struct dagger_ctx *ctx, void **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    pthread_mutex_lock(&g_lock);
    if (g_env_ctx != (void *)ctx || !g_env_path) {
        pthread_mutex_unlock(&g_lock);
        return DAGGER_ESTATE;
    }
    if (g_ctx == (void *)ctx)
        stop_locked();
    struct dtr_snap s;
    int rc = snap_locked(ctx, &s);
    /* Its events go to rank 0's file: this rank writes none. */
    free(g_env_path);
    g_env_path = NULL;
    g_env_ctx = NULL;
    pthread_mutex_unlock(&g_lock);
    if (rc)
        return rc;
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    if (!f) {
        dagger__trace_snap_free(&s);
        return DAGGER_ENOMEM;
    }
    rc = dagger__trace_snap_save(&s, f);
    if (fclose(f) != 0 && !rc)
        rc = DAGGER_ENOMEM;
    dagger__trace_snap_free(&s);
    if (rc) {
        free(p);
        return DAGGER_ENOMEM;
    }
    *buf = p;
    *len = n;
    return 0;
}

int dagger__trace_rank_add(struct dagger_ctx *ctx, int rank, int nranks, const void *buf,
                           size_t len, int64_t offset_ns)
{
    if (rank <= 0 || rank >= nranks)
        return ERRMSG(DAGGER_EINVAL, "the trace of rank %d: out of range 1..%d", rank, nranks - 1);
    FILE *f = fmemopen((void *)(uintptr_t)buf, len, "rb");
    if (!f)
        return DAGGER_ENOMEM;
    struct dtr_snap *s = calloc(1, sizeof *s);
    int rc = s ? dagger__trace_snap_load(s, f) : DAGGER_ENOMEM;
    fclose(f);
    if (rc) {
        free(s);
        return rc == DAGGER_ENOMEM ? rc
                                   : ERRMSG(rc, "the trace of rank %d does not load: %s", rank,
                                            dagger__trace_load_why());
    }
    pthread_mutex_lock(&g_lock);
    if (g_env_ctx != (void *)ctx || !g_env_path) {
        pthread_mutex_unlock(&g_lock);
        dagger__trace_snap_free(s);
        free(s);
        return ERRMSG(DAGGER_ESTATE, "the trace of rank %d: this context writes no trace", rank);
    }
    if (!g_ranks) {
        g_ranks = calloc((size_t)nranks, sizeof *g_ranks);
        g_rank_off = calloc((size_t)nranks, sizeof *g_rank_off);
        if (!g_ranks || !g_rank_off) {
            free(g_ranks);
            free(g_rank_off);
            g_ranks = NULL;
            g_rank_off = NULL;
            pthread_mutex_unlock(&g_lock);
            dagger__trace_snap_free(s);
            free(s);
            return DAGGER_ENOMEM;
        }
        g_nranks = nranks;
    }
    if (rank < g_nranks && !g_ranks[rank]) {
        g_ranks[rank] = s;
        g_rank_off[rank] = offset_ns;
        s = NULL;
    }
    pthread_mutex_unlock(&g_lock);
    if (s) {
        dagger__trace_snap_free(s);
        free(s);
    }
    return 0;
}
