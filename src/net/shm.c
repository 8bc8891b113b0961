/* src/net/shm.c - the shared-memory ring: one producer process, one consumer process, one host.
 *
 * `shm:/name` maps the POSIX shared-memory object /name (`shm:/name?dir=/some/dir` maps the
 * file /some/dir/name instead); any two processes of the same user that name the same ring
 * are connected, related or not.
 *
 * Why a ring of our own: a value must cost one copy (the producer encodes straight into the
 * ring; the consumer decodes in place and borrows the bytes until its next pop) and must cost
 * no syscall while data flows; both 8-byte and 64 KiB values must fit the same ring. A slot
 * ring (ck_ring) fixes the slot size, a pipe or socket copies twice and traps every time.
 *
 * Design: the file is a 4 KiB header page (metadata) followed by `cap` bytes of data (a power
 * of two). Records are frames (net.h) padded to 8 bytes, stored contiguously: a record that
 * does not fit before the end of the data area is preceded by a PAD frame (or, when fewer
 * than 24 bytes remain, by nothing) and starts again at offset 0. `head` and `tail` count
 * bytes since the ring was created; each lives on its own cache line, and each side keeps a
 * cached copy of the other's index so that it reads the shared line only when the cached one
 * says full (producer) or empty (consumer). A side that must wait spins briefly, then sleeps
 * on a futex word in the shared header (FUTEX_WAIT without the PRIVATE flag works across
 * processes); the other side bumps the word and wakes it only when the waiting flag is set
 * (Dekker: seq_cst store of the index, then seq_cst load of the flag, and the reverse).
 * Batches: a value of up to DAGGER__BATCH_VALUE_MAX bytes becomes a 4-byte record of an open
 * BATCH frame (net.h) written in place, or its bytes alone in a PACKED frame for a run of blobs
 * of one size (shm_push then checks one bound armed per batch, arm); the producer publishes head
 * (and pays the seq_cst store and the wake check) once per batch, when it closes it: its payload
 * reaches `batch` bytes, `linger_us` passed since its first value (checked every 64th value), the
 * consumer sleeps (a relaxed load per push: a sleeping consumer gets each value at once), a larger
 * value or a wrap follows, the ring is full, or at flush, poll and close. The streaming runtime
 * flushes before a producer waits, as for TCP. The consumer reads a batch's values in place and
 * releases the frame after its last one.
 * Liveness: each side holds an OFD lock on one byte of the file (0 init, 1 producer,
 * 2 consumer). The kernel drops it when the process dies, kill -9 included, so a waiter
 * probes the peer's byte (F_OFD_GETLK) every `slice` ms and reports DAGGER_EPEER once the
 * peer is gone and everything it committed has been read. No pid reuse or clock is involved.
 * An end aborted by its owner (a failed task or region) leaves its reason in the header, and
 * the peer's DAGGER_EPEER message quotes it.
 * Authentication: the object is created 0600 (attach refuses anything else or another owner)
 * and, with `secret=`, the header holds SHA-256(salt || secret), checked on attach.
 * Invariants: tail <= head <= tail + cap; head, tail and record starts are multiples of 8; a
 * record never wraps; payload <= max_payload <= cap/2 - 32, so an empty ring always fits one.
 * The consumer treats the data area as untrusted: every header and length is checked.
 * SPDX-License-Identifier: MIT
 */
#include "net/net.h"

#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdalign.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RING_MAGIC 0x474E495252474144ull /* "DAGRRING" */
#define RING_VERSION 1u
#define RING_HDR_BYTES 4096u
#define RING_CAP_MIN (64u * 1024u)
#define RING_CAP_MAX (1ull << 32)
#define RING_CAP_DEFAULT (4u * 1024u * 1024u)
#define LOCK_INIT 0
#define LOCK_PROD 1
#define LOCK_CONS 2

#define SHM_WHY_MAX 200

struct ring_hdr {
    /* Written once under the init lock, then read-only. */
    uint64_t magic;
    uint32_t version;
    uint32_t hdr_bytes;
    uint64_t cap;
    uint32_t max_payload;
    uint32_t auth; /* 1: secret_hash is SHA-256(salt || secret) */
    uint8_t salt[16];
    uint8_t secret_hash[32];

    /* Producer line: written by the producer only. */
    alignas(64) _Atomic uint64_t head; /* bytes published */
    _Atomic uint64_t sent;             /* values published = the next frame's seq */
    _Atomic uint32_t closed;           /* the producer closed the stream */
    _Atomic uint32_t prod_pid;         /* for messages only */
    _Atomic uint32_t prod_gen;         /* producers attached so far */

    /* Consumer line: written by the consumer only. */
    alignas(64) _Atomic uint64_t tail; /* bytes released */
    _Atomic uint64_t recv;             /* values released */
    _Atomic uint32_t cons_closed;
    _Atomic uint32_t cons_pid;
    _Atomic uint32_t cons_gen;

    /* Sleep path of the consumer: it sets cons_waiting and sleeps on data_word. */
    alignas(64) _Atomic uint32_t cons_waiting;
    _Atomic uint32_t data_word;
    /* Wait path of the producer: prod_waiting is 1 while it spins (the consumer publishes its
     * tail at once), 2 while it sleeps on space_word (the consumer also wakes it). */
    alignas(64) _Atomic uint32_t prod_waiting;
    _Atomic uint32_t space_word;

    /* Why an end was aborted (its owner failed), quoted in the peer's DAGGER_EPEER message:
     * the text is written before its length is stored (release), by that end before it drops
     * its lock; an end clears its own when it attaches. Untrusted: the length is clamped. */
    alignas(64) _Atomic uint32_t prod_why_len;
    _Atomic uint32_t cons_why_len;
    char prod_why[SHM_WHY_MAX];
    char cons_why[SHM_WHY_MAX];
};
_Static_assert(sizeof(struct ring_hdr) <= RING_HDR_BYTES, "ring header fits its page");

struct shm_edge {
    struct dagger_edge base;
    int fd;
    struct ring_hdr *h;  /* the mapping; immutable after open */
    unsigned char *data; /* h + RING_HDR_BYTES */
    size_t map_len;
    uint64_t cap, mask;
    uint64_t pos;       /* producer: head to be; consumer: first unread byte */
    uint64_t cached;    /* producer: last tail read; consumer: last head read */
    uint64_t published; /* consumer: last tail stored */
    uint64_t pending;   /* consumer: bytes of the borrowed record */
    uint64_t seq;       /* producer: next seq; consumer: expected seq */
    /* producer: the open batch (its header at bstart, unpublished; pos is 4-aligned in it) */
    int bopen;
    uint32_t bcount, batch; /* values in it; the payload bound (0: no batches) */
    uint32_t bsize;         /* a PACKED batch: the size of its blobs; 0: a BATCH of records */
    /* shm_push's fast path (arm): a blob of fsize bytes is written while pos + fsize <= flim
     * and fleft values remain before the linger clock is due; fsize is UINT32_MAX and flim 0
     * while no packed batch is open. */
    uint32_t fsize, fleft;
    uint64_t flim;
    unsigned char *wfrom; /* where the room armed for dagger_edge_push (net.h: wp) started */
    uint64_t bstart, bseq;
    int64_t linger_ns, bfirst_ns;
    /* consumer: the BATCH frame being read (at ring offset boff) while bc.left > 0 */
    struct dagger__frame bf;
    struct dagger__batch bc;
    const unsigned char *run_from; /* where the armed run (net.h: rp) started; NULL: none */
    uint64_t boff;
    int spin;          /* polls before sleeping */
    int slice_ms;      /* sleep slice between liveness probes */
    char objname[160]; /* shm_open name, or the file path */
    int is_file;
};

/* Shared (not _PRIVATE) futexes: the ring's words are waited on from two processes, which
 * common.h's process-private helpers cannot do. */
static void futex_wait(_Atomic uint32_t *w, uint32_t expect, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, expect, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int ofd_lock(int fd, int byte, int type, int wait)
{
    struct flock fl = {.l_type = (short)type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    int r;
    do
        r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    while (r < 0 && errno == EINTR);
    return r;
}

/* 1 when some open file description holds the lock byte `byte`. */
static int ofd_held(int fd, int byte)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return 1; /* cannot tell: assume alive, the caller's timeout still bounds the wait */
    return fl.l_type != F_UNLCK;
}

static uint64_t align8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* ---------------------------------------------------------------- producer */

/* An aborting end leaves its reason for the peer. */
static void put_why(struct shm_edge *s, char *dst, _Atomic uint32_t *len)
{
    const char *why = s->base.reason[0] ? s->base.reason : s->base.errmsg;
    size_t n = strnlen(why, SHM_WHY_MAX - 1);
    memcpy(dst, why, n);
    atomic_store_explicit(len, (uint32_t)n, memory_order_release);
}

/* The reason the peer left with, copied into buf ("" if none). */
static const char *get_why(const char *src, _Atomic uint32_t *len, char *buf)
{
    uint32_t n = atomic_load_explicit(len, memory_order_acquire);
    if (n > SHM_WHY_MAX - 1)
        n = SHM_WHY_MAX - 1;
    memcpy(buf, src, n);
    buf[n] = '\0';
    return buf;
}

static int peer_cons_gone(struct shm_edge *s)
{
    return atomic_load(&s->h->cons_gen) > 0 && !ofd_held(s->fd, LOCK_CONS);
}

/* Wait until `need` bytes are free after s->pos. */
static int wait_space(struct shm_edge *s, uint64_t need, int64_t deadline)
{
    struct ring_hdr *h = s->h;
    /* 1: the consumer publishes its tail at once; 2: it also wakes us. */
    atomic_store(&h->prod_waiting, 1);
    for (int i = 0; i < s->spin; i++) {
        dagger__cpu_relax();
        s->cached = atomic_load_explicit(&h->tail, memory_order_acquire);
        if (s->cap - (s->pos - s->cached) >= need) {
            atomic_store_explicit(&h->prod_waiting, 0, memory_order_relaxed);
            return 0;
        }
    }
    dagger__edge_count(&s->base.st.waits, 1);
    for (;;) {
        atomic_store(&h->prod_waiting, 2);
        uint32_t w = atomic_load(&h->space_word);
        s->cached = atomic_load(&h->tail);
        if (s->cap - (s->pos - s->cached) >= need)
            break;
        if (atomic_load(&h->cons_closed)) {
            atomic_store(&h->prod_waiting, 0);
            return dagger__edge_fail(&s->base, DAGGER_ECLOSED, "%s: the consumer closed the ring",
                                     s->base.uri);
        }
        if (peer_cons_gone(s)) {
            atomic_store(&h->prod_waiting, 0);
            char why[SHM_WHY_MAX];
            get_why(h->cons_why, &h->cons_why_len, why);
            return dagger__edge_fail(
                &s->base, DAGGER_EPEER, "%s: the consumer (pid %u) went away without closing%s%s",
                s->base.uri, atomic_load(&h->cons_pid), why[0] ? "; the consumer: " : "", why);
        }
        int left = dagger__net_left_ms(deadline);
        if (left == 0) {
            atomic_store(&h->prod_waiting, 0);
            return dagger__edge_note(&s->base, DAGGER_ETIMEDOUT,
                                     "%s: ring full (%llu bytes) until the timeout", s->base.uri,
                                     (unsigned long long)s->cap);
        }
        futex_wait(&h->space_word, w, left < 0 || left > s->slice_ms ? s->slice_ms : left);
    }
    atomic_store(&h->prod_waiting, 0);
    return 0;
}

/* Make head = pos visible, and wake a sleeping consumer. */
static void publish(struct shm_edge *s)
{
    struct ring_hdr *h = s->h;
    atomic_store_explicit(&h->sent, s->seq, memory_order_relaxed);
    atomic_store(&h->head, s->pos);
    /* One wake per sleep: the consumer sets the flag again before it sleeps again. */
    if (atomic_load(&h->cons_waiting) && atomic_exchange(&h->cons_waiting, 0)) {
        atomic_fetch_add(&h->data_word, 1);
        futex_wake(&h->data_word);
    }
}

/* Write the open batch's header, pad it to 8 bytes and publish it. */
static void close_batch(struct shm_edge *s)
{
    if (!s->bopen)
        return;
    uint64_t len = s->pos - s->bstart - DAGGER__FRAME_HDR;
    uint64_t end = s->bstart + align8(DAGGER__FRAME_HDR + len);
    if (end > s->pos) /* never past the end of the ring: it is 8-aligned */
        memset(s->data + (s->pos & s->mask), 0, end - s->pos);
    dagger__frame_put_batch(s->data + (s->bstart & s->mask),
                            s->bsize ? DAGGER__FRAME_PACKED : DAGGER__FRAME_BATCH, (uint32_t)len,
                            s->bcount, s->bseq);
    s->pos = end;
    s->bopen = 0;
    s->fsize = UINT32_MAX;
    s->flim = 0;
    publish(s);
}

/* Let shm_push append blobs to the open packed batch with one bound check each: flim is the
 * tightest of the batch's size bound (strictly below it: reaching it closes the batch), the
 * end of the ring and the free space the cached tail shows (both multiples of 8, so the
 * padding at close fits too); fleft runs to the next 64th value of the batch, where
 * shm_push_any reads the linger clock. */
static void arm(struct shm_edge *s)
{
    if (!s->bopen || !s->bsize) {
        s->fsize = UINT32_MAX;
        s->flim = 0;
        return;
    }
    uint64_t lim = s->bstart + DAGGER__FRAME_HDR + s->batch - 1;
    uint64_t ring = s->bstart + (s->cap - (s->bstart & s->mask)), room = s->cached + s->cap;
    lim = lim < ring ? lim : ring;
    s->flim = lim < room ? lim : room;
    s->fsize = s->bsize;
    s->fleft = 63 - (s->bcount & 63);
}

/* Room for a record of `rec` bytes (8-aligned) at pos, after a PAD to the ring's start when it
 * does not fit before the end. Returns 0 with *offp its offset, or an error. */
static int make_room(struct shm_edge *s, uint64_t rec, int timeout_ms, uint64_t *offp)
{
    struct ring_hdr *h = s->h;
    uint64_t off = s->pos & s->mask, contig = s->cap - off;
    uint64_t need = rec <= contig ? rec : contig + rec;
    if (s->cap - (s->pos - s->cached) < need) {
        s->cached = atomic_load_explicit(&h->tail, memory_order_acquire);
        if (s->cap - (s->pos - s->cached) < need) {
            int rc = wait_space(s, need, dagger__net_deadline(timeout_ms));
            if (rc < 0)
                return rc;
        }
    }
    if (rec > contig) {
        if (contig >= DAGGER__FRAME_HDR)
            dagger__frame_put(s->data + off, DAGGER__FRAME_PAD, 0,
                              (uint32_t)(contig - DAGGER__FRAME_HDR), 0);
        s->pos += contig;
        off = 0;
    }
    *offp = off;
    return 0;
}

/* 1 when a record of `rec` bytes still fits the open batch: its bound, the bytes before the
 * end of the ring, and the free space (the tail is read again only when the cached one says
 * full). */
static int batch_fits(struct shm_edge *s, uint32_t rec)
{
    uint64_t used = s->pos - s->bstart, total = align8(used + rec);
    if (used + rec - DAGGER__FRAME_HDR > s->batch || (s->bstart & s->mask) + total > s->cap)
        return 0;
    if (s->bstart + total - s->cached <= s->cap)
        return 1;
    s->cached = atomic_load_explicit(&s->h->tail, memory_order_acquire);
    return s->bstart + total - s->cached <= s->cap;
}

static int shm_push_any(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms);

/* A small blob appended to the open batch, which it fits (its bytes to a packed batch of its
 * size, a record to a batch of records); anything else takes shm_push_any. */
static __attribute__((noinline)) int shm_push_rec(struct dagger_edge *e, const dagger_value_t *v,
                                                  int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    if (s->bopen && v->kind == DAGGER_KIND_BLOB &&
        (v->len == s->bsize ||
         (!s->bsize && v->len <= DAGGER__BATCH_VALUE_MAX && v->len <= e->max_payload)) &&
        (v->u.p || !v->len) && !atomic_load_explicit(&s->h->cons_closed, memory_order_relaxed)) {
        uint32_t n = v->len, rec = s->bsize ? n : dagger__batch_rec_size(n);
        uint64_t used = s->pos - s->bstart, total = align8(used + rec);
        if (used + rec - DAGGER__FRAME_HDR <= s->batch && (s->bstart & s->mask) + total <= s->cap &&
            s->bstart + total - s->cached <= s->cap) {
            if (s->bsize == 8)
                __builtin_memcpy(s->data + (s->pos & s->mask), v->u.p, 8);
            else if (s->bsize)
                memcpy(s->data + (s->pos & s->mask), v->u.p, n);
            else
                dagger__batch_rec_put_raw(s->data + (s->pos & s->mask), v->u.p, n);
            s->pos += rec;
            s->bcount++;
            s->seq++;
            if (s->pos - s->bstart - DAGGER__FRAME_HDR >= s->batch ||
                atomic_load_explicit(&s->h->cons_waiting, memory_order_relaxed) ||
                (s->linger_ns && (s->bcount & 63) == 0 &&
                 dagger__net_now_ns() - s->bfirst_ns >= s->linger_ns))
                close_batch(s);
            arm(s); /* the fast path resumes after a 64th value */
            dagger__edge_count(&e->st.values, 1);
            dagger__edge_count(&e->st.bytes, rec);
            return 0;
        }
    }
    return shm_push_any(e, v, timeout_ms);
}

/* The fast path: a blob of the open packed batch's size within the armed bounds (arm); the
 * batch is published early only when the consumer sleeps. */
static int push_one(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    uint32_t n = v->len;
    if (n == s->fsize && s->fleft && s->pos + n <= s->flim && v->kind == DAGGER_KIND_BLOB &&
        v->u.p && !atomic_load_explicit(&s->h->cons_closed, memory_order_relaxed)) {
        if (n == 8)
            __builtin_memcpy(s->data + (s->pos & s->mask), v->u.p, 8);
        else
            memcpy(s->data + (s->pos & s->mask), v->u.p, n);
        s->pos += n;
        s->fleft--;
        s->bcount++;
        s->seq++;
        if (atomic_load_explicit(&s->h->cons_waiting, memory_order_relaxed))
            close_batch(s);
        dagger__edge_count(&e->st.values, 1);
        dagger__edge_count(&e->st.bytes, n);
        return 0;
    }
    return shm_push_rec(e, v, timeout_ms);
}

/* What dagger_edge_push wrote into the armed room since the last call (net.h: wp), taken into
 * the open batch; the room disarmed. Every producer call starts with it. */
static void settle_room(struct shm_edge *s)
{
    if (!s->wfrom)
        return;
    uint32_t taken = (uint32_t)((size_t)(s->base.wp - s->wfrom) / s->bsize);
    s->wfrom = NULL;
    s->base.wn = 0;
    s->pos += (uint64_t)taken * s->bsize;
    s->bcount += taken;
    s->fleft -= taken; /* the room never passed it (arm_room) */
    s->seq += taken;
}

/* Arm room for dagger_edge_push in the open packed batch, at the end of a push: the values the
 * fast path of push_one would take (arm: flim, fleft), while the consumer neither sleeps nor
 * closed (wstop: its cons_waiting word, which its close sets too). */
static void arm_room(struct shm_edge *s)
{
    if (s->fsize == UINT32_MAX || s->base.err || s->pos >= s->flim)
        return;
    uint64_t room = (s->flim - s->pos) / s->fsize;
    room = room < s->fleft ? room : s->fleft;
    if (room == 0)
        return;
    s->wfrom = s->base.wp = s->data + (s->pos & s->mask);
    s->base.wsize = s->fsize;
    s->base.wn = (uint32_t)room;
    s->base.wstop = &s->h->cons_waiting;
}

/* A push (dagger_edge_push fills armed room without it): the room settled, the value, room
 * armed again for the packed batch the push leaves open. */
static int shm_push(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    settle_room(s);
    int rc = push_one(e, v, timeout_ms);
    arm_room(s);
    return rc;
}

static int push_any(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms);

/* Any value: push_any, then the fast path armed again for the batch it leaves open. */
__attribute__((noinline)) static int shm_push_any(struct dagger_edge *e, const dagger_value_t *v,
                                                  int timeout_ms)
{
    int rc = push_any(e, v, timeout_ms);
    arm((struct shm_edge *)e);
    return rc;
}

static int push_any(struct dagger_edge *e, const dagger_value_t *v, int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    struct ring_hdr *h = s->h;
    unsigned fl;
    int rc;
    long n;
    if ((n = dagger__edge_payload_size(e, v, &fl, "max")) < 0)
        return (int)n;
    if (atomic_load_explicit(&h->cons_closed, memory_order_relaxed))
        return dagger__edge_fail(e, DAGGER_ECLOSED, "%s: the consumer closed the ring", e->uri);
    uint64_t off;
    if ((uint64_t)n <= DAGGER__BATCH_VALUE_MAX && s->batch) {
        /* Appended to the open batch (opened packed when the value is a blob): its bytes when
         * the batch is packed with its size, else a record. */
        uint32_t rec = dagger__batch_rec_size((uint32_t)n);
        int packable = (fl & DAGGER__FRAME_RAW) && n > 0;
        if (s->bopen && s->bsize && !(packable && (uint32_t)n == s->bsize)) {
            /* A packed batch meets another value: a short one becomes records, else closes. */
            uint64_t grow = (uint64_t)s->bcount * (dagger__batch_rec_size(s->bsize) - s->bsize);
            if (s->bcount <= DAGGER__BATCH_UNPACK_MAX && batch_fits(s, (uint32_t)grow + rec)) {
                dagger__batch_unpack(s->data + (s->bstart & s->mask) + DAGGER__FRAME_HDR, s->bcount,
                                     s->bsize);
                s->pos += grow;
                s->bsize = 0;
            } else {
                close_batch(s);
            }
        }
        if (s->bopen && !batch_fits(s, s->bsize ? (uint32_t)n : rec))
            close_batch(s);
        if (!s->bopen) {
            if ((rc = make_room(s, align8(DAGGER__FRAME_HDR + rec), timeout_ms, &off)) < 0)
                return rc;
            s->bopen = 1;
            s->bstart = s->pos;
            s->bcount = 0;
            s->bsize = packable ? (uint32_t)n : 0;
            s->bseq = s->seq;
            s->bfirst_ns = s->linger_ns ? dagger__net_now_ns() : 0;
            s->pos += DAGGER__FRAME_HDR;
        }
        unsigned char *dst = s->data + (s->pos & s->mask);
        if (s->bsize) {
            memcpy(dst, v->u.p, (size_t)n);
            rec = (uint32_t)n;
        } else if (fl & DAGGER__FRAME_RAW) {
            dagger__batch_rec_put_raw(dst, v->u.p, (uint32_t)n);
        } else {
            dagger__batch_rec_put(dst, v, fl, (uint32_t)n);
        }
        s->pos += rec;
        s->bcount++;
        s->seq++;
        /* The clock is read every 64th value of a batch only (it costs more than a push). */
        if (s->pos - s->bstart - DAGGER__FRAME_HDR >= s->batch ||
            atomic_load_explicit(&h->cons_waiting, memory_order_relaxed) ||
            (s->linger_ns && (s->bcount & 63) == 0 &&
             dagger__net_now_ns() - s->bfirst_ns >= s->linger_ns))
            close_batch(s);
        dagger__edge_count(&e->st.values, 1);
        dagger__edge_count(&e->st.bytes, rec);
        return 0;
    }
    close_batch(s);
    uint64_t rec = align8(DAGGER__FRAME_HDR + (uint64_t)n);
    if ((rc = make_room(s, rec, timeout_ms, &off)) < 0)
        return rc;
    unsigned char *p = s->data + off;
    dagger__frame_put(p, DAGGER__FRAME_DATA, fl, (uint32_t)n, s->seq);
    dagger__frame_value_write(p + DAGGER__FRAME_HDR, v, fl, (size_t)n);
    s->pos += rec;
    s->seq++;
    publish(s);
    dagger__edge_count(&e->st.values, 1);
    dagger__edge_count(&e->st.bytes, rec);
    return 0;
}

/* A vector of `n` blobs of `size` bytes: the records that fit the open batch are written in
 * one run, its bounds and the close conditions of shm_push checked once per run (a sleeping
 * consumer or the linger time then closes it after the run, not after each value); a value
 * that opens a batch, or any value when batches are off, goes through shm_push_any. */
static int shm_push_n(struct dagger_edge *e, const unsigned char *src, uint32_t size, int n,
                      int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    int64_t deadline = -2; /* read the clock only when the slow path may wait */
    int i = 0;
    settle_room(s);
    while (i < n) {
        uint64_t k = 0;
        uint32_t rec = s->bsize ? size : dagger__batch_rec_size(size);
        if (s->bopen && size <= DAGGER__BATCH_VALUE_MAX && (!s->bsize || s->bsize == size) &&
            !atomic_load_explicit(&s->h->cons_closed, memory_order_relaxed)) {
            /* Bytes the batch may still take: its payload bound, the end of the ring, the
             * free space (each bound is a multiple of 8 but the first, which is unpadded). */
            uint64_t used = s->pos - s->bstart, lim = s->batch + DAGGER__FRAME_HDR;
            uint64_t ring = s->cap - (s->bstart & s->mask);
            lim = lim < ring ? lim : ring;
            if (s->cap - (s->bstart - s->cached) < lim) /* the shared line only when short */
                s->cached = atomic_load_explicit(&s->h->tail, memory_order_acquire);
            uint64_t room = s->cap - (s->bstart - s->cached);
            lim = lim < room ? lim : room;
            k = lim > used ? (lim - used) / rec : 0;
            if (k > (uint64_t)(n - i))
                k = (uint64_t)(n - i);
        }
        if (k == 0) { /* open a batch, wait for room, or report the error */
            dagger_value_t v = dagger_blob_borrow(src + (size_t)i * size, size);
            if (deadline == -2)
                deadline = dagger__net_deadline(timeout_ms);
            int rc = shm_push_any(e, &v, i ? dagger__net_left_ms(deadline) : timeout_ms);
            if (rc < 0)
                return i ? i : rc;
            i++;
            continue;
        }
        const unsigned char *p = src + (size_t)i * size;
        if (s->bsize) { /* packed: the run in one copy */
            memcpy(s->data + (s->pos & s->mask), p, (size_t)k * size);
            s->pos += k * size;
        } else {
            for (uint64_t j = 0; j < k; j++, p += size) {
                dagger__batch_rec_put_raw(s->data + (s->pos & s->mask), p, size);
                s->pos += rec;
            }
        }
        uint32_t before = s->bcount;
        s->bcount += (uint32_t)k;
        s->seq += k;
        i += (int)k;
        dagger__edge_count(&e->st.values, k);
        dagger__edge_count(&e->st.bytes, k * rec);
        if (s->pos - s->bstart - DAGGER__FRAME_HDR >= s->batch ||
            atomic_load_explicit(&s->h->cons_waiting, memory_order_relaxed) ||
            (s->linger_ns && (before >> 6) != (s->bcount >> 6) &&
             dagger__net_now_ns() - s->bfirst_ns >= s->linger_ns))
            close_batch(s);
    }
    arm(s);
    arm_room(s);
    return n;
}

static int shm_flush(struct dagger_edge *e, int timeout_ms)
{
    (void)timeout_ms; /* publishing never waits */
    settle_room((struct shm_edge *)e);
    close_batch((struct shm_edge *)e);
    return 0;
}

/* ---------------------------------------------------------------- consumer */

/* Wake the producer when it sleeps on space, once per sleep (it sets 2 again before it sleeps
 * again; 1 still asks for the tail at once). */
static void wake_producer(struct ring_hdr *h)
{
    uint32_t two = 2;
    if (atomic_load(&h->prod_waiting) == 2 &&
        atomic_compare_exchange_strong(&h->prod_waiting, &two, 1)) {
        atomic_fetch_add(&h->space_word, 1);
        futex_wake(&h->space_word);
    }
}

static void release_pending(struct shm_edge *s)
{
    struct ring_hdr *h = s->h;
    if (s->pending) {
        s->pos += s->pending;
        s->pending = 0;
        atomic_store_explicit(&h->recv, s->seq, memory_order_relaxed);
    }
    /* Publish in batches of cap/16, at once when the producer sleeps on space. */
    if (s->pos != s->published &&
        (s->pos - s->published >= s->cap / 16 || atomic_load(&h->prod_waiting))) {
        s->published = s->pos;
        atomic_store(&h->tail, s->pos);
        wake_producer(h);
    }
}

static void publish_all(struct shm_edge *s)
{
    struct ring_hdr *h = s->h;
    if (s->pos != s->published) {
        s->published = s->pos;
        atomic_store(&h->tail, s->pos);
        wake_producer(h);
    }
}

static int load_head(struct shm_edge *s, memory_order mo)
{
    uint64_t hd = atomic_load_explicit(&s->h->head, mo);
    if (hd < s->pos || hd - s->pos > s->cap || (hd & 7))
        return dagger__edge_fail(&s->base, DAGGER_EINVAL,
                                 "%s: corrupt ring: head %llu against tail %llu (cap %llu)",
                                 s->base.uri, (unsigned long long)hd, (unsigned long long)s->pos,
                                 (unsigned long long)s->cap);
    s->cached = hd;
    return 0;
}

/* Wait until head moves past s->pos and the borrowed record, if any (poll keeps it borrowed:
 * only the tail before it is published, so the producer cannot overwrite it). */
static int wait_data(struct shm_edge *s, int64_t deadline)
{
    struct ring_hdr *h = s->h;
    int rc;
    publish_all(s);
    for (int i = 0; i < s->spin; i++) {
        dagger__cpu_relax();
        if ((rc = load_head(s, memory_order_acquire)) < 0)
            return rc;
        if (s->cached != s->pos + s->pending)
            return 0;
    }
    dagger__edge_count(&s->base.st.waits, 1);
    for (;;) {
        atomic_store(&h->cons_waiting, 1);
        uint32_t w = atomic_load(&h->data_word);
        if ((rc = load_head(s, memory_order_seq_cst)) < 0)
            break;
        if (s->cached != s->pos + s->pending)
            break;
        if (atomic_load(&h->closed)) {
            if ((rc = load_head(s, memory_order_seq_cst)) < 0 || s->cached != s->pos + s->pending)
                break;
            rc = dagger__edge_fail(&s->base, DAGGER_ECLOSED,
                                   "%s: the producer closed the ring after %llu values",
                                   s->base.uri, (unsigned long long)s->seq);
            break;
        }
        if (atomic_load(&h->prod_gen) > 0 && !ofd_held(s->fd, LOCK_PROD)) {
            /* Whatever it published before dying is still delivered. */
            if ((rc = load_head(s, memory_order_seq_cst)) < 0 || s->cached != s->pos + s->pending)
                break;
            char why[SHM_WHY_MAX];
            get_why(h->prod_why, &h->prod_why_len, why);
            rc = dagger__edge_fail(&s->base, DAGGER_EPEER,
                                   "%s: the producer (pid %u) died without closing, after %llu "
                                   "values%s%s",
                                   s->base.uri, atomic_load(&h->prod_pid),
                                   (unsigned long long)s->seq, why[0] ? "; the producer: " : "",
                                   why);
            break;
        }
        int left = dagger__net_left_ms(deadline);
        if (left == 0) {
            rc = dagger__edge_note(&s->base, DAGGER_ETIMEDOUT, "%s: no value before the timeout",
                                   s->base.uri);
            break;
        }
        futex_wait(&h->data_word, w, left < 0 || left > s->slice_ms ? s->slice_ms : left);
    }
    atomic_store(&h->cons_waiting, 0);
    return rc;
}

static int corrupt(struct shm_edge *s, const char *what)
{
    return dagger__edge_fail(&s->base, DAGGER_EINVAL, "%s: corrupt ring at byte %llu: %s",
                             s->base.uri, (unsigned long long)s->pos, what);
}

/* The next value of the batch at boff; the frame is released by the pop after its last. */
static __attribute__((noinline)) int pop_batched(struct shm_edge *s, dagger_value_t *out)
{
    char err[160];
    uint32_t at = s->bc.off;
    if (dagger__batch_next(&s->bf, s->data + s->boff + DAGGER__FRAME_HDR, &s->bc,
                           s->base.max_payload, s->seq, out, err, sizeof err) < 0) {
        s->bc.left = 0;
        return corrupt(s, err);
    }
    if (!s->bc.left)
        s->pending = align8(DAGGER__FRAME_HDR + (uint64_t)s->bf.len);
    s->seq++;
    dagger__edge_count(&s->base.st.values, 1);
    dagger__edge_count(&s->base.st.bytes, s->bc.off - at);
    return 0;
}

/* Everything but the next value of a packed batch (shm_pop's fast path). */
static __attribute__((noinline)) int shm_pop_slow(struct dagger_edge *e, dagger_value_t *out,
                                                  int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    int64_t deadline = -2; /* computed only if we wait */
    int rc;
    if (s->bc.left)
        return pop_batched(s, out);
    release_pending(s);
    for (;;) {
        if (s->cached == s->pos) {
            if ((rc = load_head(s, memory_order_acquire)) < 0)
                return rc;
            if (s->cached == s->pos) {
                if (deadline == -2)
                    deadline = dagger__net_deadline(timeout_ms);
                if ((rc = wait_data(s, deadline)) < 0)
                    return rc;
            }
        }
        uint64_t off = s->pos & s->mask, contig = s->cap - off, avail = s->cached - s->pos;
        if (contig < DAGGER__FRAME_HDR) { /* implicit pad */
            if (avail < contig)
                return corrupt(s, "a record starts in the last bytes of the ring");
            s->pos += contig;
            continue;
        }
        if (avail < DAGGER__FRAME_HDR)
            return corrupt(s, "published bytes end inside a frame header");
        struct dagger__frame f;
        char err[160];
        /* One copy of the header: the producer's memory is not trusted to hold still. */
        unsigned char hdr[DAGGER__FRAME_HDR];
        memcpy(hdr, s->data + off, sizeof hdr);
        uint32_t limit = (uint32_t)(contig - DAGGER__FRAME_HDR);
        if (dagger__frame_get(hdr, limit, &f, err, sizeof err) < 0)
            return corrupt(s, err);
        if (f.kind == DAGGER__FRAME_PAD) {
            if (f.len != limit || avail < contig)
                return corrupt(s, "bad padding frame");
            s->pos += contig;
            continue;
        }
        if (dagger__frame_is_batch(f.kind)) {
            /* frame_get bounds a batch by DAGGER__BATCH_MAX, not by the bytes left here. */
            uint64_t brec = align8(DAGGER__FRAME_HDR + (uint64_t)f.len);
            if (DAGGER__FRAME_HDR + (uint64_t)f.len > contig)
                return corrupt(s, "batch frame runs past the end of the ring");
            if (brec > avail)
                return corrupt(s, "batch frame extends past the published bytes");
            if (f.seq != s->seq) {
                dagger__net_fmt(err, sizeof err, "batch sequence %llu where %llu was expected",
                                (unsigned long long)f.seq, (unsigned long long)s->seq);
                return corrupt(s, err);
            }
            s->bf = f;
            if (dagger__batch_begin(&f, e->max_payload, &s->bc, err, sizeof err) < 0)
                return corrupt(s, err);
            s->boff = off;
            return pop_batched(s, out);
        }
        if (f.kind != DAGGER__FRAME_DATA)
            return corrupt(s, "unexpected frame kind");
        if (f.len > e->max_payload)
            return corrupt(s, "frame longer than the ring's max payload");
        uint64_t rec = align8(DAGGER__FRAME_HDR + (uint64_t)f.len);
        if (rec > avail)
            return corrupt(s, "frame extends past the published bytes");
        if (f.seq != s->seq) {
            dagger__net_fmt(err, sizeof err, "sequence %llu where %llu was expected",
                            (unsigned long long)f.seq, (unsigned long long)s->seq);
            return corrupt(s, err);
        }
        if (dagger__frame_value_read(&f, s->data + off + DAGGER__FRAME_HDR, out, err, sizeof err) <
            0)
            return corrupt(s, err);
        s->pending = rec;
        s->seq++;
        dagger__edge_count(&e->st.values, 1);
        dagger__edge_count(&e->st.bytes, rec);
        return 0;
    }
}

/* The next value of a packed batch takes no call and no check but its bounds, which the frame
 * had checked as a whole; anything else takes shm_pop_slow. */
static int pop_one(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    if (dagger__packed_next(e, &s->bf, &s->bc, s->data + s->boff + DAGGER__FRAME_HDR, &s->seq,
                            out)) {
        if (!s->bc.left)
            s->pending = align8(DAGGER__FRAME_HDR + (uint64_t)s->bf.len);
        return 0;
    }
    return shm_pop_slow(e, out, timeout_ms);
}

/* What dagger_edge_pop took from the armed run since the last call (net.h: rp), then the run
 * disarmed: the batch's cursor, the sequence number and, after its last value, the frame's
 * release catch up. */
static void settle(struct shm_edge *s)
{
    if (dagger__run_settle(&s->base, &s->run_from, &s->bc, &s->seq) && !s->bc.left)
        s->pending = align8(DAGGER__FRAME_HDR + (uint64_t)s->bf.len);
}

/* A pop (the wrapper serves an armed run without it): the run settled, one value, the rest of a
 * packed batch armed. */
static int shm_pop(struct dagger_edge *e, dagger_value_t *out, int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    settle(s);
    int rc = pop_one(e, out, timeout_ms);
    if (rc == 0)
        dagger__run_arm(&s->base, &s->run_from, &s->bc, s->data + s->boff + DAGGER__FRAME_HDR);
    return rc;
}

/* The hooks of dagger__batch_pop_n (net.h): where the batch's payload is, its frame released
 * after its last value, a corrupt record, and whether the head already shows more. */
static const unsigned char *batch_payload(struct dagger_edge *e)
{
    struct shm_edge *s = (struct shm_edge *)e;
    return s->data + s->boff + DAGGER__FRAME_HDR;
}

static void batch_released(struct dagger_edge *e)
{
    struct shm_edge *s = (struct shm_edge *)e;
    s->pending = align8(DAGGER__FRAME_HDR + (uint64_t)s->bf.len);
}

static void batch_bad(struct dagger_edge *e, const char *why)
{
    corrupt((struct shm_edge *)e, why);
}

static int more_shown(struct dagger_edge *e)
{
    struct shm_edge *s = (struct shm_edge *)e;
    return s->cached != s->pos + s->pending ||
           (load_head(s, memory_order_acquire) >= 0 && s->cached != s->pos + s->pending);
}

/* A vector of blobs of `size` bytes: a batch's records are copied out in one loop; a new
 * frame is read by pop_one, which waits for the first value only (later ones are taken when
 * the head already shows them). A value of another size or kind ends the vector, held. */
static int shm_pop_n(struct dagger_edge *e, unsigned char *dst, uint32_t size, int n,
                     int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    settle(s);
    return dagger__batch_pop_n(e, &s->bf, &s->bc, &s->seq, dst, size, n, timeout_ms, batch_payload,
                               batch_released, batch_bad, more_shown, pop_one);
}

static int shm_poll(struct dagger_edge *e, int timeout_ms)
{
    struct shm_edge *s = (struct shm_edge *)e;
    int64_t deadline = dagger__net_deadline(timeout_ms);
    int rc;
    if (e->end == DAGGER_EDGE_POP) {
        settle(s);
        if (s->bc.left)
            return 1; /* more values of the batch being read */
        /* The value of the last pop stays valid: its record is released by the next pop. */
        if ((rc = load_head(s, memory_order_acquire)) < 0)
            return rc;
        if (s->cached != s->pos + s->pending)
            return 1;
        rc = wait_data(s, deadline);
        if (rc == DAGGER_ETIMEDOUT)
            return 0;
        return rc < 0 && rc != DAGGER_ECLOSED && rc != DAGGER_EPEER ? rc : 1;
    }
    /* Producer: publish the open batch, then room for a smallest record without wrapping
     * trouble. */
    settle_room(s);
    close_batch(s);
    uint64_t need = align8(DAGGER__FRAME_HDR + 16);
    uint64_t off = s->pos & s->mask;
    if (s->cap - off < need)
        need += s->cap - off;
    s->cached = atomic_load_explicit(&s->h->tail, memory_order_acquire);
    if (s->cap - (s->pos - s->cached) >= need)
        return 1;
    rc = wait_space(s, need, deadline);
    return rc == DAGGER_ETIMEDOUT ? 0 : rc < 0 ? rc : 1;
}

/* ---------------------------------------------------------------- open and close */

static void unmap(struct shm_edge *s)
{
    if (s->h)
        munmap(s->h, s->map_len);
    if (s->fd >= 0)
        close(s->fd);
    dagger__net_free(s);
}

static void remove_object(struct shm_edge *s)
{
    if (s->is_file)
        unlink(s->objname);
    else
        shm_unlink(s->objname);
}

static int shm_close(struct dagger_edge *e)
{
    struct shm_edge *s = (struct shm_edge *)e;
    struct ring_hdr *h = s->h;
    int other;
    ofd_lock(s->fd, LOCK_INIT, F_WRLCK, 1);
    if (e->end == DAGGER_EDGE_PUSH) {
        settle_room(s);
        close_batch(s);  /* what was pushed is delivered, even before an abort */
        if (!e->aborted) /* dagger__edge_abort: the consumer must not see a clean end */
            atomic_store(&h->closed, 1);
        else
            put_why(s, h->prod_why, &h->prod_why_len);
        atomic_fetch_add(&h->data_word, 1);
        futex_wake(&h->data_word);
        ofd_lock(s->fd, LOCK_PROD, F_UNLCK, 0);
        other = LOCK_CONS;
    } else {
        settle(s);
        s->pos += s->pending;
        s->pending = 0;
        /* Mid-batch, the batch stays unreleased: a later consumer reads it from its start. */
        atomic_store(&h->recv, s->bc.left ? s->bf.seq : s->seq);
        publish_all(s);
        if (!e->aborted) { /* the producer then finds the consumer's lock gone: DAGGER_EPEER */
            atomic_store(&h->cons_closed, 1);
            atomic_store(&h->cons_waiting, 1); /* ends the producer's room (net.h: wstop) */
        } else {
            put_why(s, h->cons_why, &h->cons_why_len);
        }
        atomic_fetch_add(&h->space_word, 1);
        futex_wake(&h->space_word);
        ofd_lock(s->fd, LOCK_CONS, F_UNLCK, 0);
        other = LOCK_PROD;
    }
    /* The last one out removes the name, unless values wait for a consumer still to come. */
    int consumer_came = atomic_load(&h->cons_gen) > 0;
    if (!ofd_held(s->fd, other) && (e->end == DAGGER_EDGE_POP || consumer_came))
        remove_object(s);
    ofd_lock(s->fd, LOCK_INIT, F_UNLCK, 0);
    unmap(s);
    return 0;
}

static const char *const shm_keys[] = {"cap",  "max",   "secret",    "secret_env", "dir",
                                       "spin", "batch", "linger_us", "slice_ms",   NULL};

static int shm_open_edge(struct dagger_edge **out, const struct dagger__uri *u, unsigned end,
                         char *err, size_t errcap)
{
    int64_t cap, maxp, spin, slice, batch, linger;
    char secret[256];
    int rc;
    if ((rc = dagger__uri_check_keys(u, shm_keys, err, errcap)) < 0)
        return rc;
    const char *name = u->path[0] == '/' ? u->path + 1 : u->path;
    if (u->host[0] || u->port >= 0 || !*name || strchr(name, '/') || strlen(name) > 100) {
        dagger__net_fmt(err, errcap, "shm: expected shm:/name (1..100 characters, no '/')");
        return DAGGER_EINVAL;
    }
    int have_cap = dagger__uri_get(u, "cap") != NULL;
    if ((rc = dagger__uri_int(u, "cap", RING_CAP_DEFAULT, RING_CAP_MIN, RING_CAP_MAX, &cap, err,
                              errcap)) < 0 ||
        (rc = dagger__uri_int(u, "spin", 2000, 0, 1 << 24, &spin, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "slice_ms", 20, 1, 10000, &slice, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "batch", 4096, 0, DAGGER__BATCH_MAX, &batch, err, errcap)) < 0 ||
        (rc = dagger__uri_int(u, "linger_us", 1000, 0, 10000000, &linger, err, errcap)) < 0)
        return rc;
    if (cap & (cap - 1)) {
        dagger__net_fmt(err, errcap, "shm: cap=%lld is not a power of two", (long long)cap);
        return DAGGER_EINVAL;
    }
    int64_t maxlimit = cap / 2 - 32;
    if (maxlimit > DAGGER__FRAME_MAX_LIMIT)
        maxlimit = DAGGER__FRAME_MAX_LIMIT;
    if ((rc = dagger__uri_int(u, "max", maxlimit, 0, maxlimit, &maxp, err, errcap)) < 0)
        return rc;
    const char *dir = dagger__uri_get(u, "dir");
    /* The path is built into objname: one that does not fit is refused, never cut short (two
     * different rings would then share one file). */
    if (dir && strlen(dir) + 1 + strlen(name) >= sizeof((struct shm_edge *)0)->objname) {
        dagger__net_fmt(err, errcap, "shm: dir=%s/%s is %zu bytes long; at most %zu are allowed",
                        dir, name, strlen(dir) + 1 + strlen(name),
                        sizeof((struct shm_edge *)0)->objname - 1);
        return DAGGER_ENAMETOOLONG;
    }
    int slen = dagger__uri_secret(u, secret, sizeof secret, err, errcap);
    if (slen < 0)
        return slen;

    struct shm_edge *s = dagger__net_calloc(sizeof *s);
    if (!s) {
        dagger__net_fmt(err, errcap, "shm: out of memory");
        return DAGGER_ENOMEM;
    }
    s->fd = -1;
    s->fsize = UINT32_MAX; /* the fast path unarmed (arm) */
    s->spin = (int)spin;
    s->slice_ms = (int)slice;
    s->linger_ns = linger * 1000;
    if (dir) {
        s->is_file = 1;
        dagger__net_fmt(s->objname, sizeof s->objname, "%s/%s", dir, name);
        s->fd = open(s->objname, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    } else {
        dagger__net_fmt(s->objname, sizeof s->objname, "/%s", name);
        s->fd = shm_open(s->objname, O_RDWR | O_CREAT, 0600);
    }
    if (s->fd < 0) {
        dagger__net_fmt(err, errcap, "shm: cannot open %s: %s", s->objname, strerror(errno));
        rc = errno == EACCES || errno == EPERM ? DAGGER_EINVAL : DAGGER_EIO;
        goto fail;
    }
    if (ofd_lock(s->fd, LOCK_INIT, F_WRLCK, 1) < 0) {
        dagger__net_fmt(err, errcap, "shm: cannot lock %s: %s", s->objname, strerror(errno));
        rc = DAGGER_EIO;
        goto fail;
    }
    struct stat st;
    if (fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        dagger__net_fmt(err, errcap, "shm: %s is not a regular file", s->objname);
        rc = DAGGER_EINVAL;
        goto fail;
    }
    if (st.st_uid != geteuid() || (st.st_mode & 077)) {
        dagger__net_fmt(err, errcap,
                        "shm: %s has mode %03o and owner %u; a ring must be 0600 and ours",
                        s->objname, (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid);
        rc = DAGGER_EINVAL;
        goto fail;
    }
    int fresh = st.st_size == 0;
    if (fresh) {
        if (ftruncate(s->fd, (off_t)(RING_HDR_BYTES + (uint64_t)cap)) < 0) {
            dagger__net_fmt(err, errcap, "shm: cannot size %s: %s", s->objname, strerror(errno));
            rc = DAGGER_EIO;
            goto fail;
        }
        st.st_size = (off_t)(RING_HDR_BYTES + (uint64_t)cap);
    } else if ((uint64_t)st.st_size < RING_HDR_BYTES + RING_CAP_MIN ||
               (uint64_t)st.st_size > RING_HDR_BYTES + RING_CAP_MAX) {
        dagger__net_fmt(err, errcap, "shm: %s has %lld bytes, not a dagger ring", s->objname,
                        (long long)st.st_size);
        rc = DAGGER_EINVAL;
        goto fail;
    }
    s->map_len = (size_t)st.st_size;
    void *m = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    if (m == MAP_FAILED) {
        dagger__net_fmt(err, errcap, "shm: cannot map %s: %s", s->objname, strerror(errno));
        rc = DAGGER_EIO;
        goto fail;
    }
    s->h = m;
    struct ring_hdr *h = s->h;
    if (fresh) {
        h->version = RING_VERSION;
        h->hdr_bytes = RING_HDR_BYTES;
        h->cap = (uint64_t)cap;
        h->max_payload = (uint32_t)maxp;
        h->auth = slen > 0;
        if (slen > 0) {
            uint8_t buf[16 + 256];
            if (dagger__random(h->salt, sizeof h->salt) < 0) {
                dagger__net_fmt(err, errcap, "shm: no random bytes for the salt");
                rc = DAGGER_EIO;
                goto fail;
            }
            memcpy(buf, h->salt, 16);
            memcpy(buf + 16, secret, (size_t)slen);
            dagger__sha256(buf, 16 + (size_t)slen, h->secret_hash);
        }
        h->magic = RING_MAGIC;
    } else {
        if (h->magic != RING_MAGIC || h->version != RING_VERSION ||
            h->hdr_bytes != RING_HDR_BYTES) {
            dagger__net_fmt(err, errcap, "shm: %s is not a version-%u dagger ring", s->objname,
                            RING_VERSION);
            rc = DAGGER_EINVAL;
            goto fail;
        }
        if (h->cap < RING_CAP_MIN || h->cap > RING_CAP_MAX || (h->cap & (h->cap - 1)) ||
            RING_HDR_BYTES + h->cap != (uint64_t)st.st_size || h->max_payload > h->cap / 2 - 32) {
            dagger__net_fmt(err, errcap, "shm: %s has a corrupt header", s->objname);
            rc = DAGGER_EINVAL;
            goto fail;
        }
        if (have_cap && h->cap != (uint64_t)cap) {
            dagger__net_fmt(err, errcap, "shm: %s exists with cap=%llu, not %lld", s->objname,
                            (unsigned long long)h->cap, (long long)cap);
            rc = DAGGER_EINVAL;
            goto fail;
        }
        if ((int)h->auth != (slen > 0)) {
            dagger__net_fmt(err, errcap, "shm: %s %s a secret but this end %s", s->objname,
                            h->auth ? "requires" : "has no", slen > 0 ? "gives one" : "does not");
            rc = DAGGER_EINVAL;
            goto fail;
        }
        if (slen > 0) {
            uint8_t buf[16 + 256], hash[32];
            memcpy(buf, h->salt, 16);
            memcpy(buf + 16, secret, (size_t)slen);
            dagger__sha256(buf, 16 + (size_t)slen, hash);
            if (!dagger__ct_equal(hash, h->secret_hash, 32)) {
                dagger__net_fmt(err, errcap, "shm: %s: wrong secret", s->objname);
                rc = DAGGER_EINVAL;
                goto fail;
            }
        }
        /* Nobody attached and nothing pending: a stale ring from an earlier run. */
        if (!ofd_held(s->fd, LOCK_PROD) && !ofd_held(s->fd, LOCK_CONS) &&
            atomic_load(&h->head) == atomic_load(&h->tail)) {
            atomic_store(&h->head, 0);
            atomic_store(&h->tail, 0);
            atomic_store(&h->sent, 0);
            atomic_store(&h->recv, 0);
            atomic_store(&h->closed, 0);
            atomic_store(&h->cons_closed, 0);
            atomic_store(&h->prod_gen, 0);
            atomic_store(&h->cons_gen, 0);
        }
    }
    memset(secret, 0, sizeof secret);
    int mine = end == DAGGER_EDGE_PUSH ? LOCK_PROD : LOCK_CONS;
    if (ofd_lock(s->fd, mine, F_WRLCK, 0) < 0) {
        dagger__net_fmt(err, errcap, "shm: %s already has a %s (pid %u)", s->objname,
                        end == DAGGER_EDGE_PUSH ? "producer" : "consumer",
                        end == DAGGER_EDGE_PUSH ? atomic_load(&h->prod_pid)
                                                : atomic_load(&h->cons_pid));
        rc = DAGGER_EBUSY;
        goto fail;
    }
    if (end == DAGGER_EDGE_PUSH && atomic_load(&h->closed)) {
        ofd_lock(s->fd, mine, F_UNLCK, 0);
        dagger__net_fmt(err, errcap,
                        "shm: %s still holds the unread end of an earlier stream; use another "
                        "name",
                        s->objname);
        rc = DAGGER_EBUSY;
        goto fail;
    }
    s->cap = h->cap;
    s->mask = h->cap - 1;
    s->data = (unsigned char *)m + RING_HDR_BYTES;
    s->base.max_payload = h->max_payload;
    /* A batch takes at most a sixteenth of the ring, so a full one never waits for long. */
    s->batch = (uint32_t)(batch < (int64_t)(s->cap / 16) ? batch : (int64_t)(s->cap / 16));
    if (end == DAGGER_EDGE_PUSH) {
        s->pos = atomic_load(&h->head);
        s->cached = atomic_load(&h->tail);
        s->seq = atomic_load(&h->sent);
        atomic_store(&h->prod_waiting, 0);
        atomic_store(&h->prod_pid, (uint32_t)getpid());
        atomic_store(&h->prod_why_len, 0);
        atomic_fetch_add(&h->prod_gen, 1);
    } else {
        s->pos = s->published = atomic_load(&h->tail);
        s->cached = s->pos;
        s->seq = atomic_load(&h->recv);
        atomic_store(&h->cons_waiting, 0);
        atomic_store(&h->cons_closed, 0);
        atomic_store(&h->cons_pid, (uint32_t)getpid());
        atomic_store(&h->cons_why_len, 0);
        atomic_fetch_add(&h->cons_gen, 1);
    }
    ofd_lock(s->fd, LOCK_INIT, F_UNLCK, 0);
    dagger__net_fmt(s->base.uri, sizeof s->base.uri, "shm:/%s?cap=%llu%s%s", name,
                    (unsigned long long)s->cap, dir ? "&dir=" : "", dir ? dir : "");
    *out = &s->base;
    return 0;
fail:
    memset(secret, 0, sizeof secret);
    unmap(s);
    return rc;
}

const struct dagger__transport_ops dagger__shm_ops = {
    .scheme = "shm",
    .open = shm_open_edge,
    .close = shm_close,
    .push = shm_push,
    .pop = shm_pop,
    .poll = shm_poll,
    .flush = shm_flush,
    .push_n = shm_push_n,
    .pop_n = shm_pop_n,
};
