/* src/io/disk.c - the disk memory space: records of files and spill files, their reads and
 * writes, checksums, optional zstd compression, and the private spill directory.
 *
 * Design: the disk space's ops table is registered at context open (dagger__io_register). Its
 * `copy` goes both ways with the host: disk to host reads a record (its spill file when one was
 * written, its user file through the codec otherwise), host to disk writes the record's spill file.
 * A spill file has a header with the sizes and a checksum of the stored bytes, verified on reload:
 * a corrupted file fails with DAGGER_EIO, never gives wrong data. Spill files are scratch: no
 * fsync. The spill directory is DAGGER_SPILL_DIR/dagger-spill-XXXXXX (default under TMPDIR or
 * /tmp), made at the first spill, removed at close (or when its last spill file goes, if chunks
 * that were spilled outlive the context). SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef DAGGER_HAVE_ZSTD
#include <zstd.h>
#endif

#include "common/alloc.h"
#include "common/common.h"
#include "io/io.h"
#include "mem/mem.h"
#include "mem/mem_int.h"

/* ---------------------------------------------------------------- helpers */

int dagger__io_code(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return DAGGER_ENOENT;
    case EACCES:
    case EPERM:
    case EROFS:
        return DAGGER_EACCES;
    case ENOSPC:
    case EDQUOT:
        return DAGGER_ENOSPC;
    case ENOMEM:
        return DAGGER_ENOMEM;
    default:
        return DAGGER_EIO;
    }
}

bool dagger__io_fault(const char *what)
{
    const char *f = getenv("DAGGER_FAULT_IO");
    return f && strcmp(f, what) == 0;
}

int dagger__io_write_all(int fd, const void *p, size_t n, const char *path, char *why, size_t cap)
{
    const char *b = p;
    size_t left = n;
    if (dagger__io_fault("tofile")) { /* an interrupted write: half of it, then a full disk */
        left = n / 2;
    }
    while (left > 0) {
        ssize_t w = write(fd, b, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            snprintf(why, cap, "write %s: %s", path, strerror(e));
            return dagger__io_code(e);
        }
        b += w;
        left -= (size_t)w;
    }
    if (n > 0 && dagger__io_fault("tofile")) {
        snprintf(why, cap, "write %s: %s (injected)", path, strerror(ENOSPC));
        return DAGGER_ENOSPC;
    }
    return 0;
}

int dagger__io_read_at(int fd, void *p, size_t n, uint64_t off, const char *path, char *why,
                       size_t cap)
{
    char *b = p;
    while (n > 0) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, cap, "read %s: %s", path, strerror(errno));
            return dagger__io_code(errno);
        }
        if (r == 0) {
            snprintf(why, cap, "read %s: the file ends %zu bytes early (changed since opened?)",
                     path, n);
            return DAGGER_EIO;
        }
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

char *dagger__io_abspath(const char *path)
{
    size_t n = strlen(path);
    if (path[0] == '/') {
        char *s = dagger__malloc(n + 1);
        if (s)
            memcpy(s, path, n + 1);
        return s;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        dagger__set_errmsg(dagger__io_code(errno), "cannot resolve %s: getcwd: %s", path,
                           strerror(errno));
        return NULL;
    }
    size_t m = strlen(cwd);
    char *s = dagger__malloc(m + n + 2);
    if (s) {
        memcpy(s, cwd, m);
        s[m] = '/';
        memcpy(s + m + 1, path, n + 1);
    }
    return s;
}

/* A 64-bit checksum of four interleaved multiply-rotate lanes (fast, not cryptographic). */
static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t dagger__io_checksum(const void *p, size_t n)
{
    const uint64_t k1 = 0x9E3779B185EBCA87ull, k2 = 0xC2B2AE3D27D4EB4Full;
    uint64_t h[4] = {k1, k2, k1 ^ n, k2 ^ n};
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int l = 0; l < 4; l++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * l, 8);
            h[l] = rotl(h[l] + w * k2, 31) * k1;
        }
    }
    uint64_t x = rotl(h[0], 1) + rotl(h[1], 7) + rotl(h[2], 12) + rotl(h[3], 18);
    for (; i < n; i++)
        x = (x ^ b[i]) * 0x100000001B3ull;
    x ^= x >> 33;
    x *= k2;
    x ^= x >> 29;
    return x;
}

/* ---------------------------------------------------------------- the spill directory */

static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;
static char spill_dir[PATH_MAX]; /* guarded by dir_lock; "" until the first spill */
static long live_spills;         /* spill files that exist: guarded by dir_lock */
static bool dir_closing;         /* remove the directory when the last spill file goes */
static unsigned long long next_spill;

static void remove_dir_locked(void)
{
    if (spill_dir[0] && live_spills == 0) {
        rmdir(spill_dir);
        spill_dir[0] = '\0';
        dir_closing = false;
    }
}

/* A fresh spill file path (malloc'ed), making the directory first. */
static char *new_spill_path(char *why, size_t cap, int *code)
{
    pthread_mutex_lock(&dir_lock);
    if (!spill_dir[0]) {
        const char *base = getenv("DAGGER_SPILL_DIR");
        if (!base || !*base)
            base = getenv("TMPDIR");
        if (!base || !*base)
            base = "/tmp";
        mkdir(base, 0700); /* DAGGER_SPILL_DIR may name one that does not exist yet */
        snprintf(spill_dir, sizeof spill_dir, "%s/dagger-spill-XXXXXX", base);
        if (!mkdtemp(spill_dir)) {
            int e = errno;
            snprintf(why, cap, "cannot make a spill directory under %s: %s", base, strerror(e));
            spill_dir[0] = '\0';
            pthread_mutex_unlock(&dir_lock);
            *code = dagger__io_code(e);
            return NULL;
        }
    }
    dir_closing = false;
    size_t n = strlen(spill_dir) + 32;
    char *p = dagger__malloc(n);
    if (p) {
        snprintf(p, n, "%s/c%llu.spill", spill_dir, ++next_spill);
        live_spills++;
    } else {
        snprintf(why, cap, "out of memory for a spill path");
        *code = DAGGER_ENOMEM;
    }
    pthread_mutex_unlock(&dir_lock);
    return p;
}

static void drop_spill_path(char *p)
{
    unlink(p);
    dagger__free(p);
    pthread_mutex_lock(&dir_lock);
    live_spills--;
    if (dir_closing)
        remove_dir_locked();
    pthread_mutex_unlock(&dir_lock);
}

static void disk_close(void)
{
    pthread_mutex_lock(&dir_lock);
    dir_closing = true;
    remove_dir_locked();
    pthread_mutex_unlock(&dir_lock);
}

/* ---------------------------------------------------------------- spill files */

#define SPILL_MAGIC "DAGSPIL1"
enum { SPILL_ZSTD = 1 };

struct spill_header {
    char magic[8];
    uint64_t size;   /* bytes in memory */
    uint64_t stored; /* bytes after the header */
    uint64_t sum;    /* checksum of the stored bytes */
    uint64_t flags;  /* SPILL_* */
};

static int zstd_level(void)
{
    const char *s = getenv("DAGGER_SPILL_ZSTD");
    return s ? atoi(s) : 0;
}

static int spill_write(struct dagger__disk_obj *o, const void *src, size_t n, char *why, size_t cap)
{
    int code = 0;
    if (!o->spill && !(o->spill = new_spill_path(why, cap, &code)))
        return code;
    if (dagger__io_fault("spill")) {
        snprintf(why, cap, "spill to %s: %s (injected)", o->spill, strerror(ENOSPC));
        return DAGGER_ENOSPC;
    }
    struct spill_header h;
    memcpy(h.magic, SPILL_MAGIC, 8);
    h.size = n;
    h.stored = n;
    h.flags = 0;
    const void *payload = src;
    void *buf = NULL;
#ifdef DAGGER_HAVE_ZSTD
    int level = zstd_level();
    if (level > 0 && n > 0) {
        size_t bound = ZSTD_compressBound(n);
        buf = dagger__malloc(bound);
        if (buf) {
            size_t z = ZSTD_compress(buf, bound, src, n, level);
            if (!ZSTD_isError(z) && z < n) {
                payload = buf;
                h.stored = z;
                h.flags = SPILL_ZSTD;
            }
        }
    }
#else
    (void)zstd_level;
#endif
    h.sum = dagger__io_checksum(payload, (size_t)h.stored);
    int rc = 0;
    int fd = open(o->spill, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, cap, "spill to %s: %s", o->spill, strerror(errno));
        rc = dagger__io_code(errno);
    } else {
        rc = dagger__io_write_all(fd, &h, sizeof h, o->spill, why, cap);
        if (!rc)
            rc = dagger__io_write_all(fd, payload, (size_t)h.stored, o->spill, why, cap);
        if (close(fd) != 0 && !rc) {
            snprintf(why, cap, "spill to %s: %s", o->spill, strerror(errno));
            rc = dagger__io_code(errno);
        }
    }
    dagger__free(buf);
    if (!rc) {
        o->spilled = true;
        dagger__res_count(true, n);
    }
    return rc;
}

static int spill_read(struct dagger__disk_obj *o, void *dst, size_t n, char *why, size_t cap)
{
    int fd = open(o->spill, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "reload from %s: %s", o->spill, strerror(errno));
        return dagger__io_code(errno);
    }
    struct spill_header h;
    void *buf = NULL;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        snprintf(why, cap, "reload from %s: %s", o->spill, strerror(errno));
        rc = dagger__io_code(errno);
    } else if ((uint64_t)st.st_size < sizeof h) {
        snprintf(why, cap,
                 "reload from %s: the spill file is truncated: %llu bytes, its header is %zu",
                 o->spill, (unsigned long long)st.st_size, sizeof h);
        rc = DAGGER_EIO;
    } else {
        rc = dagger__io_read_at(fd, &h, sizeof h, 0, o->spill, why, cap);
    }
    if (!rc && (memcmp(h.magic, SPILL_MAGIC, 8) != 0 || h.size != n ||
                (h.flags == 0 && h.stored != n) || (h.flags & ~(uint64_t)SPILL_ZSTD))) {
        snprintf(why, cap, "reload from %s: the spill file's header is corrupted", o->spill);
        rc = DAGGER_EIO;
    }
    /* The stored size is checked against the file before anything is allocated for it: a
     * corrupted one would otherwise ask for up to 2^48 bytes (fuzz_spill). */
    if (!rc && h.stored != (uint64_t)st.st_size - sizeof h) {
        snprintf(why, cap,
                 "reload from %s: the spill file's header is corrupted: it stores %llu bytes, "
                 "the file has %llu after the header",
                 o->spill, (unsigned long long)h.stored,
                 (unsigned long long)st.st_size - (unsigned long long)sizeof h);
        rc = DAGGER_EIO;
    }
    if (!rc && h.flags == 0) {
        rc = dagger__io_read_at(fd, dst, n, sizeof h, o->spill, why, cap);
        if (!rc && dagger__io_checksum(dst, n) != h.sum) {
            snprintf(why, cap, "reload from %s: checksum mismatch: the spill file is corrupted",
                     o->spill);
            rc = DAGGER_EIO;
        }
    } else if (!rc) {
#ifdef DAGGER_HAVE_ZSTD
        buf = h.stored < ((uint64_t)1 << 48) ? dagger__malloc((size_t)h.stored) : NULL;
        if (!buf) {
            snprintf(why, cap, "reload from %s: out of memory", o->spill);
            rc = DAGGER_ENOMEM;
        } else {
            rc = dagger__io_read_at(fd, buf, (size_t)h.stored, sizeof h, o->spill, why, cap);
            if (!rc && dagger__io_checksum(buf, (size_t)h.stored) != h.sum) {
                snprintf(why, cap, "reload from %s: checksum mismatch: the spill file is corrupted",
                         o->spill);
                rc = DAGGER_EIO;
            }
            if (!rc) {
                size_t z = ZSTD_decompress(dst, n, buf, (size_t)h.stored);
                if (ZSTD_isError(z) || z != n) {
                    snprintf(why, cap, "reload from %s: zstd: %s", o->spill,
                             ZSTD_isError(z) ? ZSTD_getErrorName(z) : "wrong size");
                    rc = DAGGER_EIO;
                }
            }
        }
#else
        snprintf(why, cap, "reload from %s: compressed with zstd, which this build lacks",
                 o->spill);
        rc = DAGGER_ENOSYS;
#endif
    }
    dagger__free(buf);
    close(fd);
    if (!rc)
        dagger__res_count(false, n);
    return rc;
}

/* ---------------------------------------------------------------- records */

/* A large destination is about to be written whole by the kernel: ask for huge pages, which
 * cuts the page faults of a fresh buffer by 512x where transparent huge pages are "madvise". */
static void huge_hint(void *dst, size_t n)
{
#ifdef MADV_HUGEPAGE
    if (n < ((size_t)4 << 20))
        return;
    uintptr_t a = ((uintptr_t)dst + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)dst + n) & ~(uintptr_t)4095;
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)dst;
    (void)n;
#endif
}

struct dagger__disk_obj *dagger__io_file_obj(const char *path, const dagger_codec_t *codec,
                                             const dagger_file_meta_t *m)
{
    struct dagger__disk_obj *o = dagger__calloc(1, sizeof *o);
    if (!o)
        return NULL;
    size_t n = strlen(path) + 1;
    o->path = dagger__malloc(n);
    if (!o->path) {
        dagger__free(o);
        return NULL;
    }
    memcpy(o->path, path, n);
    o->codec = codec;
    o->meta = *m;
    return o;
}

static int file_read(struct dagger__disk_obj *o, void *dst, size_t n, char *why, size_t cap)
{
    int fd = open(o->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "load %s: %s", o->path, strerror(errno));
        return dagger__io_code(errno);
    }
    int rc;
    if (o->codec && o->codec->decode)
        rc = o->codec->decode(o->codec, fd, o->path, &o->meta, dst, why, cap);
    else
        rc = dagger__io_read_at(fd, dst, n, o->meta.offset, o->path, why, cap);
    close(fd);
    return rc;
}

static void *disk_alloc(const dagger_space_t *s, size_t n)
{
    (void)s;
    (void)n;
    return dagger__calloc(1, sizeof(struct dagger__disk_obj)); /* a record with no file yet */
}

static void disk_free(const dagger_space_t *s, void *p, size_t n)
{
    (void)s;
    (void)n;
    struct dagger__disk_obj *o = p;
    if (o->spill)
        drop_spill_path(o->spill);
    dagger__free(o->path);
    dagger__free(o);
}

static int disk_copy(const dagger_space_t *ds, void *dst, const dagger_space_t *ss, const void *src,
                     size_t n)
{
    char why[512] = "";
    int rc;
    if (ds->kind == DAGGER_SPACE_DISK && ss->kind == DAGGER_SPACE_HOST) {
        rc = spill_write(dst, src, n, why, sizeof why);
    } else if (ds->kind == DAGGER_SPACE_HOST && ss->kind == DAGGER_SPACE_DISK) {
        struct dagger__disk_obj *o = (struct dagger__disk_obj *)src;
        huge_hint(dst, n);
        rc = o->spilled ? spill_read(o, dst, n, why, sizeof why)
             : o->path
                 ? file_read(o, dst, n, why, sizeof why)
                 : (snprintf(why, sizeof why, "a disk copy that was never written"), DAGGER_ESTATE);
    } else {
        return dagger__set_errmsg(DAGGER_ENOSYS, "the disk space copies only to and from host");
    }
    return rc ? dagger__set_errmsg_str(rc, why) : 0;
}

static int disk_copy2d(const dagger_space_t *ds, void *dst, size_t dpitch, const dagger_space_t *ss,
                       const void *src, size_t spitch, size_t width, size_t rows)
{
    return dagger__set_errmsg(DAGGER_ENOSYS, "the disk space has no 2-D copies");
}

void dagger__io_register(void)
{
    static const struct dagger__space_ops ops = {
        "disk", disk_alloc, disk_free, disk_copy, disk_copy2d,
    };
    dagger__mem_register_space(DAGGER_SPACE_DISK, &ops);
    dagger__mem_on_res_close(disk_close);
}
