/* src/pool/slot.c - slots of threads outside the pool: adoption, thread exit, close.
 *
 * Design: see slot.h. Everything here is the slow path (a thread's first submit to a pool, a
 * switch between pools, a thread's exit, a close) and runs under one process-wide lock, which
 * orders a slot's old owner before its new one (the deque's owner fields pass with it).
 * A thread's exit is seen through a pthread key whose value is the thread's lease.
 * Lock order: the slot lock is a leaf.
 * SPDX-License-Identifier: MIT
 */
#include "pool/slot.h"

#include <pthread.h>

#include "common/alloc.h"

#define SLOT_CAP 4096

DAGGER_TLS struct dagger__slot_lease dagger__slot_tls;

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;
static pthread_key_t slot_key;
static int slot_key_ok; /* written once under slot_once */
static _Atomic uint64_t slot_gen = 1;

/* Under slot_lock: the lease's slot, if any, is left to the workers and to a later owner. */
static void lease_drop(struct dagger__slot_lease *l)
{
    struct dagger__slot *s = atomic_load_explicit(&l->slot, memory_order_relaxed);
    if (s)
        s->owner = NULL;
    atomic_store_explicit(&l->slot, NULL, memory_order_relaxed);
    atomic_store_explicit(&l->gen, 0, memory_order_relaxed);
}

/* The thread exits: its slot, with the jobs it still holds, stays with the pool. */
static void thread_exit(void *arg)
{
    struct dagger__slot_lease *l = arg;
    pthread_mutex_lock(&slot_lock);
    lease_drop(l);
    pthread_mutex_unlock(&slot_lock);
    l->registered = 0; /* a submit from a later destructor registers again (glibc reruns them) */
}

static void key_once(void) { slot_key_ok = pthread_key_create(&slot_key, thread_exit) == 0; }

struct dagger__slot *dagger__slot_acquire(struct dagger__slots *r)
{
    pthread_once(&slot_once, key_once);
    if (!slot_key_ok)
        return NULL; /* no way to learn of the thread's exit: the caller uses the shared queue */
    struct dagger__slot_lease *l = &dagger__slot_tls;
    if (!l->registered) {
        if (pthread_setspecific(slot_key, l) != 0)
            return NULL;
        l->registered = 1;
    }
    pthread_mutex_lock(&slot_lock);
    lease_drop(l);
    struct dagger__slot *s = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (s && s->owner)
        s = s->next;
    if (!s) {
        s = dagger__calloc(1, sizeof *s);
        if (s && dq_init(&s->dq, SLOT_CAP) != 0) {
            dq_destroy(&s->dq);
            dagger__free(s);
            s = NULL;
        }
        if (!s) {
            pthread_mutex_unlock(&slot_lock);
            return NULL;
        }
        s->next = atomic_load_explicit(&r->head, memory_order_relaxed);
        atomic_store_explicit(&r->head, s, memory_order_release); /* workers walk the list */
    }
    s->owner = l;
    atomic_store_explicit(&l->slot, s, memory_order_relaxed);
    atomic_store_explicit(&l->gen, r->gen, memory_order_relaxed);
    pthread_mutex_unlock(&slot_lock);
    return s;
}

void dagger__slots_init(struct dagger__slots *r)
{
    atomic_init(&r->head, NULL);
    r->gen = atomic_fetch_add_explicit(&slot_gen, 1, memory_order_relaxed);
}

void dagger__slots_destroy(struct dagger__slots *r)
{
    pthread_mutex_lock(&slot_lock);
    struct dagger__slot *s = atomic_load_explicit(&r->head, memory_order_relaxed);
    atomic_store_explicit(&r->head, NULL, memory_order_relaxed);
    while (s) {
        struct dagger__slot *next = s->next;
        DAGGER_ASSERT(dq_size(&s->dq) == 0);
        if (s->owner)
            lease_drop(s->owner);
        dq_destroy(&s->dq);
        dagger__free(s);
        s = next;
    }
    pthread_mutex_unlock(&slot_lock);
}
