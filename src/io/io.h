/* src/io/io.h - what the io area shares between its files: disk records, atomic writes, errno
 * mapping and the fault-injection hook.
 *
 * A disk record is the pointer of a copy in the disk space (DAGGER_SPACE_DISK). It has a file
 * part (a user's file read with a codec: the home copy of a dagger_file chunk) and a spill part
 * (a private file in the spill directory written by the spill thread). Reading a record reads
 * the spill part once one was written, the file part otherwise; writing always goes to the spill
 * part, so a user's file is never overwritten by a spill.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_SRC_IO_H
#define DAGGER_SRC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dagger/file.h"

struct dagger__disk_obj {
    char *path;                  /* file part: absolute path, or NULL */
    const dagger_codec_t *codec; /* file part: how it decodes */
    dagger_file_meta_t meta;     /* file part: what it holds */
    char *spill;                 /* spill part: path, or NULL before the first spill */
    bool spilled;                /* the spill part holds the data (written by the spill thread,
                                  * under the chunk's lock, like every read of the record) */
};

/* Register the disk space's ops (at context open; idempotent). */
void dagger__io_register(void);

/* A record for the file `path` (copied). Returns NULL when out of memory. */
struct dagger__disk_obj *dagger__io_file_obj(const char *path, const dagger_codec_t *codec,
                                             const dagger_file_meta_t *m);

/* Map an errno to a dagger code: ENOENT, EACCES (also EPERM, EROFS), ENOSPC (also EDQUOT),
 * otherwise DAGGER_EIO. */
int dagger__io_code(int err);

/* Write `n` bytes at `p` to `fd` (the whole of it, retrying short writes), honouring the
 * injected fault "tofile" (fails half-way with ENOSPC). Returns 0 or a dagger code with the
 * reason, naming `path`, in `why`. */
int dagger__io_write_all(int fd, const void *p, size_t n, const char *path, char *why, size_t cap);
/* Read exactly `n` bytes at offset `off`. Returns 0 or a code (DAGGER_EIO when the file is
 * shorter) with the reason in `why`. */
int dagger__io_read_at(int fd, void *p, size_t n, uint64_t off, const char *path, char *why,
                       size_t cap);

/* Write `src` (described by `m`) to `path` with `codec`, atomically: a temporary file in the
 * same folder, fsync, rename. Returns 0 or a code with a message naming the path (last errmsg). */
int dagger__io_save(const char *path, const dagger_codec_t *codec, const dagger_file_meta_t *m,
                    const void *src);

/* An absolute form of `path` (relative to the working directory now), malloc'ed (dagger__free).
 * Returns NULL when out of memory or the working directory is unreadable (errmsg set). */
char *dagger__io_abspath(const char *path);

/* The checksum of a spill file's stored bytes (64 bits, not cryptographic; the fuzz harness
 * of spill files seals its inputs with it). */
uint64_t dagger__io_checksum(const void *p, size_t n);

/* Fault injection for tests: DAGGER_FAULT_IO=tofile fails every atomic write half-way with
 * ENOSPC, DAGGER_FAULT_IO=spill fails every spill write with ENOSPC. */
bool dagger__io_fault(const char *what);

#endif /* DAGGER_SRC_IO_H */
