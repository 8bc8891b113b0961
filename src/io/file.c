/* src/io/file.c - lazy files: dagger_file, dagger_file_save, dagger_tofile, and the out-of-core
 * counters.
 *
 * Design: dagger_file opens the file now (so a missing or unreadable one fails at the call),
 * reads its header through the codec, and makes a chunk whose home copy is a disk record of it
 * (src/io/disk.c); staging that chunk to host decodes the file. Saving writes a temporary file in
 * the same folder, fsyncs it and renames it over the final name, so a failed write never leaves
 * a partial file there. dagger_tofile is a task beside the workers that saves and returns a file
 * chunk.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/common.h"
#include "io/io.h"
#include "mem/mem.h"

int dagger_file(dagger_ctx_t *ctx, const char *path, const dagger_codec_t *codec,
                dagger_chunk_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_file: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_file: the context is NULL");
    DAGGER_CHECK(path && *path, DAGGER_EINVAL, "dagger_file: the path is NULL or empty");
    if (!codec)
        codec = dagger_codec_for_path(path);
    char *abs = dagger__io_abspath(path);
    if (!abs)
        return dagger_last_errmsg()[0]
                   ? DAGGER_ENOMEM
                   : dagger__set_errmsg(DAGGER_ENOMEM, "dagger_file: no memory");
    int fd = open(abs, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int rc = dagger__set_errmsg(dagger__io_code(e), "dagger_file: cannot open %s: %s", abs,
                                    strerror(e));
        dagger__free(abs);
        return rc;
    }
    struct stat st;
    char why[512] = "";
    int rc = 0;
    dagger_file_meta_t m;
    memset(&m, 0, sizeof m);
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        snprintf(why, sizeof why, "%s is a directory", abs);
        rc = DAGGER_EINVAL;
    } else if (codec->probe) {
        rc = codec->probe(codec, fd, abs, &m, why, sizeof why);
    } else {
        m.size = (size_t)st.st_size;
    }
    close(fd);
    if (rc) {
        dagger__free(abs);
        return dagger__set_errmsg(rc, "dagger_file: %s", why);
    }
    struct dagger__disk_obj *o = dagger__io_file_obj(abs, codec, &m);
    dagger__free(abs);
    DAGGER_CHECK(o, DAGGER_ENOMEM, "dagger_file: out of memory for a file record");
    dagger_space_t disk = {0, DAGGER_SPACE_DISK, 0};
    dagger_chunk_t *c;
    rc = dagger__mem_chunk_at(ctx, m.size, &disk, o, &c);
    if (rc) {
        dagger__mem_space_ops(DAGGER_SPACE_DISK)->free(&disk, o, m.size);
        return rc;
    }
    if (m.elt != DAGGER_ELT_RAW && m.ndims > 0 &&
        dagger_chunk_set_type(c, m.elt, m.ndims, m.shape) != 0) {
        dagger_chunk_release(c);
        return DAGGER_EINVAL;
    }
    *out = c;
    return 0;
}

const char *dagger_file_path(const dagger_chunk_t *c)
{
    if (!c || dagger_chunk_home(c).kind != DAGGER_SPACE_DISK)
        return NULL;
    const struct dagger__disk_obj *o = dagger__mem_home_ptr(c);
    return o ? o->path : NULL;
}

/* The folder of `path` (malloc'ed). */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    if (slash == path)
        n = 1;
    char *d = dagger__malloc(n + 1);
    if (d) {
        memcpy(d, slash ? path : ".", n);
        d[n] = '\0';
    }
    return d;
}

int dagger__io_save(const char *path, const dagger_codec_t *codec, const dagger_file_meta_t *m,
                    const void *src)
{
    DAGGER_CHECK(codec->encode, DAGGER_EINVAL, "save %s: codec '%s' has no encode", path,
                 codec->name ? codec->name : "?");
    size_t n = strlen(path);
    char *tmp = dagger__malloc(n + 16);
    char *dir = folder_of(path);
    if (!tmp || !dir) {
        dagger__free(tmp);
        dagger__free(dir);
        return dagger__set_errmsg(DAGGER_ENOMEM, "save %s: out of memory", path);
    }
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    char why[512] = "";
    int rc = 0;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        rc = dagger__set_errmsg(dagger__io_code(e), "save %s: cannot create a file in %s: %s", path,
                                dir, strerror(e));
        goto out;
    }
    fchmod(fd, 0644);
    rc = codec->encode(codec, fd, path, m, src, why, sizeof why);
    if (!rc && fsync(fd) != 0) {
        snprintf(why, sizeof why, "fsync %s: %s", path, strerror(errno));
        rc = dagger__io_code(errno);
    }
    if (close(fd) != 0 && !rc) {
        snprintf(why, sizeof why, "close %s: %s", path, strerror(errno));
        rc = dagger__io_code(errno);
    }
    if (!rc && rename(tmp, path) != 0) {
        snprintf(why, sizeof why, "rename to %s: %s", path, strerror(errno));
        rc = dagger__io_code(errno);
    }
    if (rc) {
        unlink(tmp); /* nothing partial stays behind, under either name */
        rc = dagger__set_errmsg(rc, "save %s: %s", path, why);
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the rename itself reaches the disk */
        fsync(dfd);
        close(dfd);
    }
out:
    dagger__free(tmp);
    dagger__free(dir);
    return rc;
}

int dagger_file_save(dagger_chunk_t *c, const char *path, const dagger_codec_t *codec)
{
    DAGGER_CHECK(c, DAGGER_EINVAL, "dagger_file_save: the chunk is NULL");
    DAGGER_CHECK(path && *path, DAGGER_EINVAL, "dagger_file_save: the path is NULL or empty");
    if (!codec)
        codec = dagger_codec_for_path(path);
    char *abs = dagger__io_abspath(path);
    DAGGER_CHECK(abs, DAGGER_ENOMEM, "dagger_file_save: out of memory");
    dagger_file_meta_t m;
    memset(&m, 0, sizeof m);
    m.size = dagger_chunk_size(c);
    m.elt = dagger_chunk_elt(c);
    m.ndims = dagger_chunk_shape(c, m.shape, DAGGER_CHUNK_MAX_DIMS);
    if (m.elt == DAGGER_ELT_RAW)
        m.ndims = 0;
    /* Held while it is read, so the spill thread leaves its host copy alone. */
    dagger__mem_hold(c);
    dagger_space_t host = dagger__mem_host();
    void *p = NULL;
    int rc = dagger__mem_stage(c, &host, &p);
    if (!rc)
        rc = dagger__io_save(abs, codec, &m, p);
    dagger__mem_unhold(c);
    dagger__free(abs);
    return rc;
}

/* ---------------------------------------------------------------- tofile */

static int tofile_body(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *out)
{
    const char *path = dagger_arg_str(a, 1);
    const dagger_codec_t *codec = dagger_arg_ptr(a, 2);
    const dagger_value_t *v = dagger_arg(a, 0);
    if (!path || !*path)
        return dagger_fail(tc, DAGGER_EINVAL, "tofile: the path is NULL, empty or unresolvable");
    int rc;
    if (v && (v->kind == DAGGER_KIND_BLOB || v->kind == DAGGER_KIND_STR)) {
        dagger_file_meta_t m;
        memset(&m, 0, sizeof m);
        m.size = v->len;
        rc = dagger__io_save(path, codec, &m, v->u.p);
    } else {
        dagger_chunk_t *c = dagger_arg_chunk(a, 0);
        if (!c)
            return DAGGER_ETYPE; /* the task failed with the reason */
        rc = dagger_file_save(c, path, codec);
    }
    if (rc)
        return dagger_fail(tc, rc, "tofile: %s", dagger_last_errmsg());
    dagger_chunk_t *f;
    rc = dagger_file(dagger_tc_ctx(tc), path, codec, &f);
    if (rc)
        return dagger_fail(tc, rc, "tofile: %s", dagger_last_errmsg());
    *out = dagger_chunk_give(tc, f);
    return 0;
}

dagger_task_t *dagger_tofile_value(dagger_ctx_t *ctx, dagger_value_t v, const char *path,
                                   const dagger_codec_t *codec)
{
    dagger_task_opts_t o;
    dagger_task_opts_init(&o);
    o.name = "tofile";
    o.flags = DAGGER_TASK_CHUNK_RESULT;
    o.occupancy = 0.5; /* file I/O waits on the disk: beside the workers, not on one */
    if (!codec)
        codec = dagger_codec_for_path(path);
    char *abs = path && *path ? dagger__io_abspath(path) : NULL;
    dagger_value_t argv[3] = {v, dagger_str(abs ? abs : ""), dagger_ptr(codec)};
    dagger_task_t *t = dagger_spawnv_opts(ctx, &o, tofile_body, argv, 3);
    dagger__free(abs);
    return t;
}

int dagger_mem_stats(const dagger_ctx_t *ctx, dagger_mem_stats_t *out)
{
    DAGGER_CHECK(ctx && out, DAGGER_EINVAL, "dagger_mem_stats: NULL argument");
    dagger__mem_res_stats(ctx, out);
    return 0;
}
