/* src/trace/dtrace.c - the .dtrace file: a snapshot of a trace on disk.
 *
 * Layout (little-endian): "DAGTRACE" | u32 version (1) | i32 nthreads | i64 t0 | i64 t1 |
 * u64 dropped | u64 nstr | u64 nev | nstr x (u32 len, bytes) | nev x 32-byte events
 * (i64 ts, u64 id, u64 arg, i32 aux, i16 thread, u8 kind, u8 flags) | optional trailer
 * "TOPO" u32 len bytes (the topology line; readers that stop after the events ignore it).
 * String arguments of events are indices into the string table. Every count and index is
 * checked on load.
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

#define MAGIC "DAGTRACE"
#define VERSION 1
#define MAX_STR_LEN (1u << 20)

/* Why the last load refused its file (for the caller's message). */
static _Thread_local char load_why[160];

const char *dagger__trace_load_why(void) { return load_why; }

#define REFUSE(...) (snprintf(load_why, sizeof load_why, __VA_ARGS__), DAGGER_EINVAL)

static void put_u(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int dagger__trace_snap_save(const struct dtr_snap *s, FILE *f)
{
    unsigned char h[56];
    memcpy(h, MAGIC, 8);
    put_u(h + 8, VERSION, 4);
    put_u(h + 12, (uint32_t)s->nthreads, 4);
    put_u(h + 16, (uint64_t)s->t0, 8);
    put_u(h + 24, (uint64_t)s->t1, 8);
    put_u(h + 32, s->dropped, 8);
    put_u(h + 40, s->nstr, 8);
    put_u(h + 48, s->nev, 8);
    if (fwrite(h, sizeof h, 1, f) != 1)
        return DAGGER_EIO;
    for (size_t i = 0; i < s->nstr; i++) {
        size_t n = strlen(s->str[i]);
        unsigned char l[4];
        put_u(l, n, 4);
        if (fwrite(l, 4, 1, f) != 1 || (n && fwrite(s->str[i], n, 1, f) != 1))
            return DAGGER_EIO;
    }
    unsigned char b[32 * 256];
    size_t k = 0;
    for (size_t i = 0; i < s->nev; i++) {
        const struct dtr_ev *e = &s->ev[i];
        unsigned char *p = b + 32 * k;
        put_u(p, (uint64_t)e->ts, 8);
        put_u(p + 8, e->id, 8);
        put_u(p + 16, e->arg, 8);
        put_u(p + 24, (uint32_t)e->aux, 4);
        put_u(p + 28, (uint16_t)e->thread, 2);
        p[30] = e->kind;
        p[31] = e->flags;
        if (++k == 256 || i + 1 == s->nev) {
            if (fwrite(b, 32, k, f) != k)
                return DAGGER_EIO;
            k = 0;
        }
    }
    if (s->topo) {
        size_t n = strlen(s->topo);
        unsigned char t[8];
        memcpy(t, "TOPO", 4);
        put_u(t + 4, n, 4);
        if (fwrite(t, 8, 1, f) != 1 || (n && fwrite(s->topo, n, 1, f) != 1))
            return DAGGER_EIO;
    }
    return 0;
}

int dagger__trace_snap_load(struct dtr_snap *s, FILE *f)
{
    memset(s, 0, sizeof *s);
    load_why[0] = '\0';
    unsigned char h[56];
    if (fread(h, sizeof h, 1, f) != 1)
        return REFUSE("shorter than the 56-byte header");
    if (memcmp(h, MAGIC, 8) != 0 || get_u(h + 8, 4) != VERSION)
        return REFUSE("not a .dtrace file of version %d", VERSION);
    s->nthreads = (int32_t)(uint32_t)get_u(h + 12, 4);
    s->t0 = (int64_t)get_u(h + 16, 8);
    s->t1 = (int64_t)get_u(h + 24, 8);
    s->dropped = get_u(h + 32, 8);
    uint64_t nstr = get_u(h + 40, 8), nev = get_u(h + 48, 8);
    if (s->nthreads < 0 || s->nthreads > 32767)
        return REFUSE("%d threads", s->nthreads);
    if (nstr > UINT32_MAX - 1 || nev > (1ull << 36))
        return REFUSE("impossible counts (%llu strings, %llu events)", (unsigned long long)nstr,
                      (unsigned long long)nev);
    /* Times are ns of a monotonic clock: within [0, DTR_TS_MAX] (about 146 years), so that no
     * difference or sum of a few of them can overflow in the model and the exporters. */
    if (s->t0 < 0 || s->t1 < s->t0 || s->t1 > DTR_TS_MAX)
        return REFUSE("recording times %lld..%lld out of range", (long long)s->t0,
                      (long long)s->t1);
    int rc = DAGGER_EINVAL;
    /* Grow as the file proves it holds the data, so a forged count cannot make us allocate. */
    for (uint64_t i = 0; i < nstr; i++) {
        unsigned char l[4];
        if (fread(l, 4, 1, f) != 1) {
            rc = REFUSE("truncated in string %llu", (unsigned long long)i);
            goto fail;
        }
        uint32_t n = (uint32_t)get_u(l, 4);
        if (n > MAX_STR_LEN) {
            rc = REFUSE("string %llu is %u bytes long", (unsigned long long)i, n);
            goto fail;
        }
        if ((s->nstr & (s->nstr - 1)) == 0) {
            char **ns = realloc(s->str, (s->nstr ? s->nstr * 2 : 16) * sizeof *ns);
            if (!ns)
                goto oom;
            s->str = ns;
        }
        char *d = malloc(n + 1);
        if (!d)
            goto oom;
        if (n && fread(d, n, 1, f) != 1) {
            free(d);
            rc = REFUSE("truncated in string %llu", (unsigned long long)i);
            goto fail;
        }
        d[n] = '\0';
        s->str[s->nstr++] = d;
    }
    size_t cap = 0;
    for (uint64_t i = 0; i < nev; i++) {
        unsigned char p[32];
        if (fread(p, 32, 1, f) != 1) {
            rc = REFUSE("truncated at event %llu of %llu", (unsigned long long)i,
                        (unsigned long long)nev);
            goto fail;
        }
        if (s->nev == cap) {
            size_t nc = cap ? cap * 2 : 4096;
            struct dtr_ev *ne = realloc(s->ev, nc * sizeof *ne);
            if (!ne)
                goto oom;
            s->ev = ne;
            cap = nc;
        }
        struct dtr_ev *e = &s->ev[s->nev];
        e->ts = (int64_t)get_u(p, 8);
        e->id = get_u(p + 8, 8);
        e->arg = get_u(p + 16, 8);
        e->aux = (int32_t)(uint32_t)get_u(p + 24, 4);
        e->thread = (int16_t)(uint16_t)get_u(p + 28, 2);
        e->kind = p[30];
        e->flags = p[31];
        if (e->kind < DTR_SPAWN || e->kind >= DTR_KIND_END_ || e->thread < -1) {
            rc =
                REFUSE("event %llu: kind %u, thread %d", (unsigned long long)i, e->kind, e->thread);
            goto fail;
        }
        if (e->ts < s->t0 || e->ts > s->t1) {
            rc =
                REFUSE("event %llu: time %lld outside the recording %lld..%lld",
                       (unsigned long long)i, (long long)e->ts, (long long)s->t0, (long long)s->t1);
            goto fail;
        }
        if ((((e->kind == DTR_SPAWN || e->kind == DTR_ERROR) && e->arg != DTR_NOSTR) ||
             (e->flags & DTR_F_STR)) &&
            e->arg >= s->nstr) {
            rc = REFUSE("event %llu: string %llu of %zu", (unsigned long long)i,
                        (unsigned long long)e->arg, s->nstr);
            goto fail;
        }
        s->nev++;
    }
    unsigned char t[8];
    if (fread(t, 8, 1, f) == 1 && memcmp(t, "TOPO", 4) == 0) {
        uint32_t n = (uint32_t)get_u(t + 4, 4);
        if (n > 4096 || !(s->topo = malloc(n + 1)))
            goto fail;
        if (n && fread(s->topo, n, 1, f) != 1)
            goto fail;
        s->topo[n] = '\0';
    }
    /* Sorted already when written; sorting again keeps the invariant for any producer. */
    dagger__trace_snap_sort(s);
    return 0;
oom:
    rc = DAGGER_ENOMEM;
    snprintf(load_why, sizeof load_why, "out of memory");
fail:
    dagger__trace_snap_free(s);
    return rc;
}
