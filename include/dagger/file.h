/* include/dagger/file.h - lazy files, codecs (raw, NumPy .npy, user callbacks) and out-of-core
 * execution under a memory limit.
 *
 * A file is a chunk whose only valid copy is in the disk memory space: passing it to a task loads
 * it where the task runs, once; dagger_chunk_data loads it on the caller. A spilled chunk is the
 * same thing. docs/io.md explains the model.
 * SPDX-License-Identifier: MIT
 */
#ifndef DAGGER_FILE_H
#define DAGGER_FILE_H

#include "dagger.h"
#include "dagger/chunk.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What a file holds: filled by a codec's probe, given to its decode and encode. */
typedef struct dagger_file_meta {
    size_t size;                         /* bytes of the data in memory */
    dagger_elt_t elt;                    /* DAGGER_ELT_RAW for plain bytes */
    int ndims;                           /* 0 for raw bytes */
    size_t shape[DAGGER_CHUNK_MAX_DIMS]; /* C order (row-major) in memory */
    int fortran;                         /* npy: the file stores Fortran (column-major) order */
    int npy_bool;                        /* npy: u8 elements are stored as bool ('|b1') */
    unsigned long long offset;           /* where the data starts in the file */
} dagger_file_meta_t;

typedef struct dagger_codec dagger_codec_t;
/** A codec: how a file's bytes become a chunk's and back. The callbacks read or write the open
 *  file `fd` (positioned at 0) and return 0 or a negative DAGGER_E* with a reason in `why`.
 *  probe (the size hint) fills `m` from the header; NULL means raw: the size of the file. */
struct dagger_codec {
    const char *name;
    int (*probe)(const dagger_codec_t *cd, int fd, const char *path, dagger_file_meta_t *m,
                 char *why, size_t cap);
    int (*decode)(const dagger_codec_t *cd, int fd, const char *path, const dagger_file_meta_t *m,
                  void *dst, char *why, size_t cap);
    int (*encode)(const dagger_codec_t *cd, int fd, const char *path, const dagger_file_meta_t *m,
                  const void *src, char *why, size_t cap);
    void *ud; /* for the callbacks */
};

/** Raw bytes; NumPy .npy (format 1.0 and 2.0; f64, f32, i64, i32, u8, bool; C and Fortran
 *  order; written as 1.0 unless the header needs 2.0; C order, or Fortran order when the
 *  meta's `fortran` is set: the bytes are then taken as column-major, as DArray blocks are). */
DAGGER_API extern const dagger_codec_t dagger_codec_raw;
DAGGER_API extern const dagger_codec_t dagger_codec_npy;

/** The codec of a path's extension: ".npy" gives npy, anything else raw.
 *  Returns: never NULL. Thread safety: any thread. */
DAGGER_API const dagger_codec_t *dagger_codec_for_path(const char *path);

/** A lazy reference to the existing file `path` (relative paths resolve against the working
 *  directory now), read with `codec` (NULL: from the extension). The header is read now, so the
 *  chunk's size and type are known; the data is loaded when first used.
 *  Returns: 0, DAGGER_ENOENT / DAGGER_EACCES (message with the path and the OS reason),
 *  DAGGER_EINVAL (a malformed header: the message names the file and the field), DAGGER_ENOMEM.
 *  Ownership: +1 on `*out` (dagger_chunk_release). Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_file(dagger_ctx_t *ctx, const char *path,
                                            const dagger_codec_t *codec, dagger_chunk_t **out);

/** Write chunk `c` to `path` with `codec` (NULL: from the extension), atomically: a temporary
 *  file in the same folder, fsync, rename. A failed write leaves nothing under `path`.
 *  Returns: 0, DAGGER_ENOENT, DAGGER_EACCES, DAGGER_ENOSPC, DAGGER_EIO (message with the path).
 *  Ownership: borrows `c`. Thread safety: any thread (inside a task: saves where it runs). */
DAGGER_API DAGGER_NODISCARD int dagger_file_save(dagger_chunk_t *c, const char *path,
                                                 const dagger_codec_t *codec);

/** Dagger.jl's tofile: spawn a task (beside the workers) that writes `v` (a chunk, a blob, or a
 *  task whose result is one) to `path` like dagger_file_save and whose result is a lazy file
 *  chunk of it (dagger_fetch_chunk). Errors reach fetch with the path in the message. In C,
 *  dagger_tofile(ctx, x, path, codec) takes a chunk or task handle directly (DAGGER_V).
 *  Returns: the task (NULL only when out of memory). Ownership: +1 task; `codec` must outlive
 *  the task. Thread safety: any thread, inside tasks too. */
DAGGER_API dagger_task_t *dagger_tofile_value(dagger_ctx_t *ctx, dagger_value_t v, const char *path,
                                              const dagger_codec_t *codec);
#ifndef __cplusplus
#define dagger_tofile(ctx, x, path, codec) dagger_tofile_value((ctx), DAGGER_V(x), (path), (codec))
#endif

/** The path of a file chunk (absolute), or NULL for any other chunk (spilled ones included).
 *  Ownership: borrowed while `c` is held. Thread safety: any thread. */
DAGGER_API const char *dagger_file_path(const dagger_chunk_t *c);

/** Out-of-core counters of the memory limit a context set (all 0 without one). */
typedef struct dagger_mem_stats {
    size_t limit;                       /* bytes of host memory chunks may hold; 0 = no limit */
    size_t resident;                    /* bytes of chunk host copies now */
    size_t peak_resident;               /* the most `resident` has been */
    unsigned long long spilled;         /* bytes written to spill files */
    unsigned long long reloaded;        /* bytes read back from spill files */
    unsigned long long spills, reloads; /* how many of each */
    unsigned long long spill_failures;  /* spills that failed (disk full): the chunk stayed */
} dagger_mem_stats_t;

/** Read the out-of-core counters of `ctx`. Returns: 0, DAGGER_EINVAL (NULL argument).
 *  Thread safety: any thread. */
DAGGER_API DAGGER_NODISCARD int dagger_mem_stats(const dagger_ctx_t *ctx, dagger_mem_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_FILE_H */
