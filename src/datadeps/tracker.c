/* src/datadeps/tracker.c - the dependency analysis of a datadeps region (no runtime inside).
 *
 * Design: every distinct region (dagger__ddreg_t) is an object found through a hash table.
 * A new object is linked, both ways, to the existing objects it overlaps exactly; the
 * candidates come from an interval treap of bounding intervals. A task that reads an object
 * waits for the last writer of the object and of every object it overlaps; a task that writes
 * also waits for their readers since their last write. Writers reset their own object.
 * Finished tasks that succeeded are dropped from the lists as they are met (a failed task is
 * kept so that its error reaches the tasks after it).
 * Commute accesses: an object also keeps the commute writers since its last write. A commute
 * access waits like a write, except for the commute writers of its own object (the region
 * serialises those at run time); reads and writes wait for them too.
 * Thread safety: not thread-safe; a region is used by one thread or task at a time.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "dagger.h"
#include "datadeps/datadeps_int.h"

struct dd_obj {
    dagger__ddreg_t reg;
    uint32_t writer; /* last task that wrote this region, or DD_NONE */
    uint32_t nread, capread;
    uint32_t *readers; /* tasks that read it since `writer` */
    uint32_t ncomm, capcomm;
    uint32_t *comm; /* commute writers since `writer` */
    uint32_t nover, capover;
    dd_obj_t **over; /* the other objects that share a byte with this one */
    dd_obj_t *l, *r; /* treap children */
    uintptr_t maxhi; /* max reg.hi in this subtree */
    uint32_t prio;
};

void dagger__ddtracker_init(dagger__ddtracker_t *t) { memset(t, 0, sizeof *t); }

static void free_tree(dd_obj_t *o)
{
    while (o) {
        free_tree(o->l);
        dd_obj_t *r = o->r;
        dd_free(o->readers);
        dd_free(o->comm);
        dd_free(o->over);
        dd_free(o);
        o = r;
    }
}

void dagger__ddtracker_deinit(dagger__ddtracker_t *t)
{
    free_tree(t->root);
    dd_free(t->slots);
    dd_free(t->stamp);
    dd_free(t->scratch);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------ hash of regions */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    return h * 0xBF58476D1CE4E5B9ull;
}

static size_t reg_hash(const dagger__ddreg_t *r)
{
    uint64_t h = mix(r->kind, r->base);
    h = mix(h, r->hi);
    h = mix(h, r->len);
    h = mix(h, r->stride);
    h = mix(h, r->cols);
    return (size_t)(h ^ (h >> 31));
}

static dd_obj_t *lookup(const dagger__ddtracker_t *t, const dagger__ddreg_t *r)
{
    if (!t->nslots)
        return NULL;
    size_t mask = t->nslots - 1;
    for (size_t i = reg_hash(r) & mask;; i = (i + 1) & mask) {
        dd_obj_t *o = t->slots[i];
        if (!o)
            return NULL;
        if (dagger__ddreg_equal(&o->reg, r))
            return o;
    }
}

static void slot_put(dd_obj_t **slots, size_t n, dd_obj_t *o)
{
    size_t mask = n - 1;
    size_t i = reg_hash(&o->reg) & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = o;
}

static int hash_reserve(dagger__ddtracker_t *t)
{
    if ((t->nobjs + 1) * 2 <= t->nslots)
        return 0;
    size_t n = t->nslots ? t->nslots * 2 : 64;
    dd_obj_t **s = dd_calloc(n, sizeof *s);
    if (!s)
        return DAGGER_ENOMEM;
    for (size_t i = 0; i < t->nslots; i++)
        if (t->slots[i])
            slot_put(s, n, t->slots[i]);
    dd_free(t->slots);
    t->slots = s;
    t->nslots = n;
    return 0;
}

/* ------------------------------------------------------------------ interval treap */

static void fix(dd_obj_t *o)
{
    uintptr_t m = o->reg.hi;
    if (o->l && o->l->maxhi > m)
        m = o->l->maxhi;
    if (o->r && o->r->maxhi > m)
        m = o->r->maxhi;
    o->maxhi = m;
}

static bool before(const dd_obj_t *a, const dd_obj_t *b)
{
    return a->reg.lo < b->reg.lo || (a->reg.lo == b->reg.lo && (uintptr_t)a < (uintptr_t)b);
}

static dd_obj_t *treap_insert(dd_obj_t *root, dd_obj_t *o)
{
    if (!root) {
        fix(o);
        return o;
    }
    if (before(o, root)) {
        root->l = treap_insert(root->l, o);
        if (root->l->prio > root->prio) {
            dd_obj_t *l = root->l;
            root->l = l->r;
            l->r = root;
            fix(root);
            fix(l);
            return l;
        }
    } else {
        root->r = treap_insert(root->r, o);
        if (root->r->prio > root->prio) {
            dd_obj_t *r = root->r;
            root->r = r->l;
            r->l = root;
            fix(root);
            fix(r);
            return r;
        }
    }
    fix(root);
    return root;
}

/* Collect into t->scratch the objects whose interval meets [lo, hi). */
static int treap_query(dagger__ddtracker_t *t, dd_obj_t *o, uintptr_t lo, uintptr_t hi)
{
    while (o && o->maxhi > lo) {
        if (treap_query(t, o->l, lo, hi))
            return DAGGER_ENOMEM;
        if (o->reg.lo >= hi)
            return 0;
        if (o->reg.hi > lo) {
            if (t->nscratch == t->capscratch) {
                size_t n = t->capscratch ? t->capscratch * 2 : 64;
                dd_obj_t **s = dd_realloc(t->scratch, n * sizeof *s);
                if (!s)
                    return DAGGER_ENOMEM;
                t->scratch = s;
                t->capscratch = n;
            }
            t->scratch[t->nscratch++] = o;
        }
        o = o->r;
    }
    return 0;
}

static int push_over(dd_obj_t *o, dd_obj_t *x)
{
    if (o->nover == o->capover) {
        uint32_t n = o->capover ? o->capover * 2 : 4;
        dd_obj_t **v = dd_realloc(o->over, n * sizeof *v);
        if (!v)
            return DAGGER_ENOMEM;
        o->over = v;
        o->capover = n;
    }
    o->over[o->nover++] = x;
    return 0;
}

static dd_obj_t *find_or_create(dagger__ddtracker_t *t, const dagger__ddreg_t *r)
{
    dd_obj_t *o = lookup(t, r);
    if (o)
        return o;
    if (hash_reserve(t))
        return NULL;
    o = dd_calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->reg = *r;
    o->writer = DD_NONE;
    uint64_t h = mix(t->nobjs, (uintptr_t)o);
    o->prio = (uint32_t)(h >> 32);
    t->nscratch = 0;
    if (treap_query(t, t->root, r->lo, r->hi))
        goto oom;
    size_t n = 0;
    for (size_t i = 0; i < t->nscratch; i++)
        if (dagger__ddreg_overlap(r, &t->scratch[i]->reg))
            t->scratch[n++] = t->scratch[i];
    o->over = dd_malloc((n ? n : 1) * sizeof *o->over);
    if (!o->over)
        goto oom;
    o->capover = (uint32_t)(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        if (push_over(t->scratch[i], o)) {
            for (size_t k = 0; k < i; k++) /* undo the links made so far */
                t->scratch[k]->nover--;
            goto oom;
        }
        o->over[o->nover++] = t->scratch[i];
    }
    t->root = treap_insert(t->root, o);
    slot_put(t->slots, t->nslots, o);
    t->nobjs++;
    return o;
oom:
    dd_free(o->over);
    dd_free(o);
    return NULL;
}

uintptr_t dagger__ddtracker_extent(dagger__ddtracker_t *t, uintptr_t p)
{
    t->nscratch = 0;
    if (treap_query(t, t->root, p, p + 1))
        return 0;
    uintptr_t hi = 0;
    for (size_t i = 0; i < t->nscratch; i++)
        if (t->scratch[i]->reg.hi > hi)
            hi = t->scratch[i]->reg.hi;
    return hi;
}

/* ------------------------------------------------------------------ analysis */

typedef struct collect {
    dagger__ddtracker_t *t;
    uint32_t id;
    uint32_t *deps;
    size_t n, cap;
    bool oom;
} collect_t;

static bool done_ok(dagger__ddtracker_t *t, uint32_t id)
{
    return t->done_ok && t->done_ok(t->ud, id);
}

static void add_dep(collect_t *c, uint32_t d)
{
    if (c->t->stamp[d] == c->id + 1)
        return;
    c->t->stamp[d] = c->id + 1;
    if (c->n == c->cap) {
        size_t n = c->cap ? c->cap * 2 : 16;
        uint32_t *v = dd_realloc(c->deps, n * sizeof *v);
        if (!v) {
            c->oom = true;
            return;
        }
        c->deps = v;
        c->cap = n;
    }
    c->deps[c->n++] = d;
}

enum { M_READ, M_WRITE, M_COMMUTE };

/* Depend on the unfinished tasks of a list, dropping the finished ones. */
static void collect_list(collect_t *c, uint32_t *list, uint32_t *n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < *n; i++) {
        uint32_t r = list[i];
        if (r == c->id)
            continue;
        if (done_ok(c->t, r))
            continue;
        list[k++] = r;
        add_dep(c, r);
    }
    *n = k;
}

/* The dependencies of an access in `mode` to `self` on object `o` (self or an overlap). */
static void collect_obj(collect_t *c, dd_obj_t *o, int mode, const dd_obj_t *self)
{
    dagger__ddtracker_t *t = c->t;
    if (o->writer != DD_NONE && o->writer != c->id) {
        if (done_ok(t, o->writer))
            o->writer = DD_NONE;
        else
            add_dep(c, o->writer);
    }
    if (mode != M_COMMUTE || o != self)
        collect_list(c, o->comm, &o->ncomm);
    if (mode != M_READ)
        collect_list(c, o->readers, &o->nread);
}

/* Append `id` to a task list (dropping finished tasks before growing it). */
static int push_id(dagger__ddtracker_t *t, uint32_t **list, uint32_t *n, uint32_t *cap, uint32_t id)
{
    if (*n && (*list)[*n - 1] == id)
        return 0;
    if (*n == *cap) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < *n; i++)
            if (!done_ok(t, (*list)[i]))
                (*list)[k++] = (*list)[i];
        *n = k;
    }
    if (*n == *cap) {
        uint32_t m = *cap ? *cap * 2 : 4;
        uint32_t *v = dd_realloc(*list, m * sizeof *v);
        if (!v)
            return DAGGER_ENOMEM;
        *list = v;
        *cap = m;
    }
    (*list)[(*n)++] = id;
    return 0;
}

static int acc_mode(const dagger__ddaccess_t *a)
{
    return a->commute ? M_COMMUTE : a->write ? M_WRITE : M_READ;
}

long dagger__ddtracker_add(dagger__ddtracker_t *t, uint32_t id, const dagger__ddaccess_t *acc,
                           size_t nacc, uint32_t **deps, size_t *cap)
{
    if (id >= t->nstamp) {
        size_t n = t->nstamp ? t->nstamp : 256;
        while (n <= id)
            n *= 2;
        uint32_t *s = dd_realloc(t->stamp, n * sizeof *s);
        if (!s)
            return DAGGER_ENOMEM;
        memset(s + t->nstamp, 0, (n - t->nstamp) * sizeof *s);
        t->stamp = s;
        t->nstamp = n;
    }
    dd_obj_t *small[16], **objs = small;
    if (nacc > 16 && !(objs = dd_malloc(nacc * sizeof *objs)))
        return DAGGER_ENOMEM;
    long rc = 0;
    for (size_t i = 0; i < nacc; i++)
        if (!(objs[i] = find_or_create(t, &acc[i].reg))) {
            rc = DAGGER_ENOMEM;
            goto out;
        }
    collect_t c = {t, id, *deps, 0, *cap, false};
    for (size_t i = 0; i < nacc; i++) {
        dd_obj_t *o = objs[i];
        int mode = acc_mode(&acc[i]);
        collect_obj(&c, o, mode, o);
        for (uint32_t k = 0; k < o->nover; k++)
            collect_obj(&c, o->over[k], mode, o);
    }
    *deps = c.deps;
    *cap = c.cap;
    if (c.oom) {
        for (size_t i = 0; i < c.n; i++) /* forget the stamps so a retry collects them */
            t->stamp[c.deps[i]] = 0;
        rc = DAGGER_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nacc; i++)
        if (acc_mode(&acc[i]) == M_WRITE) {
            objs[i]->writer = id;
            objs[i]->nread = 0;
            objs[i]->ncomm = 0;
        }
    for (size_t i = 0; i < nacc; i++) {
        dd_obj_t *o = objs[i];
        int mode = acc_mode(&acc[i]), e = 0;
        if (mode == M_COMMUTE)
            e = push_id(t, &o->comm, &o->ncomm, &o->capcomm, id);
        else if (mode == M_READ && acc[i].read && o->writer != id)
            e = push_id(t, &o->readers, &o->nread, &o->capread, id);
        if (e) {
            rc = DAGGER_ENOMEM;
            goto out;
        }
    }
    t->edges += c.n;
    rc = (long)c.n;
out:
    if (objs != small)
        dd_free(objs);
    return rc;
}
