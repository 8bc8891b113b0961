/* src/darray/io.c - saving and loading a DArray as files: one .npy per block with an index, or
 * one whole-array .npy whose blocks are written and read at their offsets.
 *
 * Design: both layouts store Fortran (column-major) order, DArray's own, so a block's bytes go
 * to and from its file unchanged; in the whole file a block is a set of runs along dimension 0
 * (one per column of the block), each at offset + global index * element size. One task per
 * block does its file or its runs (dagger__da_foreach / dagger__da_build_with). Every file is
 * written through the io area's atomic save (temporary file, fsync, rename); the whole file's
 * codec writes the header, sizes the file, then runs the block tasks on the temporary file.
 * The index of a folder is written last, so a folder with an index is complete.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/common.h"
#include "darray/darray_int.h"
#include "io/io.h"

#define INDEX_NAME "index.txt"
#define INDEX_MAGIC "dagger-darray 1"

static const char *descr_of(dagger_elt_t e)
{
    switch (e) {
    case DAGGER_ELT_F64:
        return "<f8";
    case DAGGER_ELT_F32:
        return "<f4";
    case DAGGER_ELT_I64:
        return "<i8";
    case DAGGER_ELT_I32:
        return "<i4";
    default:
        return "another type";
    }
}

static dagger_elt_t elt_of_descr(const char *s)
{
    static const dagger_elt_t all[4] = {DAGGER_ELT_F64, DAGGER_ELT_F32, DAGGER_ELT_I64,
                                        DAGGER_ELT_I32};
    for (int k = 0; k < 4; k++)
        if (strcmp(s, descr_of(all[k])) == 0)
            return all[k];
    return DAGGER_ELT_RAW;
}

/* "(3, 4)" of n extents into buf. */
static const char *tuple(const size_t *v, int n, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "(");
    for (int d = 0; d < n && (size_t)k < cap; d++)
        k += snprintf(buf + k, cap - (size_t)k, d ? ", %zu" : "%zu", v[d]);
    if ((size_t)k < cap)
        snprintf(buf + k, cap - (size_t)k, n == 1 ? ",)" : ")");
    return buf;
}

/* The file of the block at grid coordinates g in folder `dir`: dir/block_<g0>_<g1>..npy. */
static void coords_path(const char *dir, int nd, const size_t *g, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "%s/block", dir);
    for (int d = 0; d < nd && (size_t)k < cap; d++)
        k += snprintf(buf + k, cap - (size_t)k, "_%zu", g[d]);
    if ((size_t)k < cap)
        snprintf(buf + k, cap - (size_t)k, ".npy");
}

/* The file of block b in folder `dir`. */
static void block_path(const dagger_darray_t *a, const char *dir, size_t b, char *buf, size_t cap)
{
    size_t g[DA_MAXD];
    dagger__da_block_coords(a, b, g);
    coords_path(dir, a->nd, g, buf, cap);
}

/* ---------------------------------------------------------------- runs of a block */

/* Call fn for each column run of block b: `n` bytes at block byte offset `k`, global element
 * index `g` (column-major over the whole array). Stops at the first error. */
typedef int (*run_fn)(void *ud, size_t k, size_t g, size_t n);

static int each_run(const dagger_darray_t *a, size_t b, run_fn fn, void *ud)
{
    dagger_darray_blockinfo_t bi;
    dagger__da_info(a, b, &bi);
    size_t run = bi.shape[0], nrun = run ? bi.count / run : 0;
    size_t gs[DA_MAXD], s = 1, i[DA_MAXD] = {0, 0, 0, 0};
    for (int d = 0; d < DA_MAXD; d++) {
        gs[d] = s;
        s *= a->dims[d];
    }
    for (size_t r = 0; r < nrun; r++) {
        size_t g = 0;
        for (int d = 0; d < DA_MAXD; d++)
            g += (bi.origin[d] + i[d]) * gs[d];
        int rc = fn(ud, r * run * a->esz, g, run * a->esz);
        if (rc)
            return rc;
        for (int d = 1; d < DA_MAXD; d++) {
            if (++i[d] < bi.shape[d])
                break;
            i[d] = 0;
        }
    }
    return 0;
}

typedef struct whole_job {
    int fd;
    const char *path;
    unsigned long long offset; /* of the data in the file */
    const dagger_darray_t *a;  /* its element size */
} whole_job_t;

typedef struct run_ctx {
    whole_job_t *j;
    char *blk;
    char why[512];
} run_ctx_t;

static int write_run(void *ud, size_t k, size_t g, size_t n)
{
    run_ctx_t *r = ud;
    const char *p = r->blk + k;
    unsigned long long off = r->j->offset + (unsigned long long)g * r->j->a->esz;
    while (n > 0) {
        ssize_t w = pwrite(r->j->fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            snprintf(r->why, sizeof r->why, "write %s: %s", r->j->path, strerror(e));
            return dagger__io_code(e);
        }
        p += w;
        n -= (size_t)w;
        off += (unsigned long long)w;
    }
    return 0;
}

static int read_run(void *ud, size_t k, size_t g, size_t n)
{
    run_ctx_t *r = ud;
    return dagger__io_read_at(r->j->fd, r->blk + k, n,
                              r->j->offset + (unsigned long long)g * r->j->a->esz, r->j->path,
                              r->why, sizeof r->why);
}

static int whole_block(dagger_tc_t *tc, dagger_darray_t *a, size_t b, void *ud, run_fn fn)
{
    run_ctx_t r = {ud, a->ptr[b], ""};
    int rc = each_run(a, b, fn, &r);
    return rc ? dagger_fail(tc, rc, "darray block %zu: %s", b, r.why) : 0;
}

static int save_whole_body(dagger_tc_t *tc, dagger_darray_t *a, size_t b, void *ud)
{
    return whole_block(tc, a, b, ud, write_run);
}

static int load_whole_body(dagger_tc_t *tc, dagger_darray_t *a, size_t b, void *ud)
{
    return whole_block(tc, a, b, ud, read_run);
}

/* The whole file's codec: `src` is the job. Header (Fortran order), the file sized, then the
 * block tasks write their runs into the temporary file `fd`. */
static int whole_encode(const dagger_codec_t *cd, int fd, const char *path,
                        const dagger_file_meta_t *m, const void *src, char *why, size_t cap)
{
    (void)cd;
    whole_job_t *j = (whole_job_t *)src;
    dagger_file_meta_t h = *m;
    h.size = 0; /* the header alone */
    int rc = dagger_codec_npy.encode(&dagger_codec_npy, fd, path, &h, NULL, why, cap);
    if (rc)
        return rc;
    off_t off = lseek(fd, 0, SEEK_CUR);
    if (off < 0 || ftruncate(fd, off + (off_t)m->size) != 0) {
        snprintf(why, cap, "size %s: %s", path, strerror(errno));
        return dagger__io_code(errno);
    }
    j->fd = fd;
    j->path = path;
    j->offset = (unsigned long long)off;
    rc = dagger__da_foreach((dagger_darray_t *)j->a, save_whole_body, j, "darray_save");
    if (rc)
        snprintf(why, cap, "%s", dagger_last_errmsg());
    return rc;
}

static const dagger_codec_t whole_codec = {"darray-npy", NULL, NULL, whole_encode, NULL};

/* ---------------------------------------------------------------- save */

static void meta_of(const dagger_darray_t *a, const size_t *shape, size_t count,
                    dagger_file_meta_t *m)
{
    memset(m, 0, sizeof *m);
    m->size = count * a->esz;
    m->elt = a->elt;
    m->ndims = a->nd;
    for (int d = 0; d < a->nd; d++)
        m->shape[d] = shape[d];
    m->fortran = 1;
}

static int save_block_body(dagger_tc_t *tc, dagger_darray_t *a, size_t b, void *ud)
{
    char path[4096];
    block_path(a, ud, b, path, sizeof path);
    dagger_darray_blockinfo_t bi;
    dagger__da_info(a, b, &bi);
    dagger_file_meta_t m;
    meta_of(a, bi.shape, bi.count, &m);
    int rc = dagger__io_save(path, &dagger_codec_npy, &m, a->ptr[b]);
    return rc ? dagger_fail(tc, rc, "%s", dagger_last_errmsg()) : 0;
}

static int save_blocks(dagger_darray_t *a, const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        return dagger__set_errmsg(dagger__io_code(e),
                                  "dagger_darray_save: cannot create the folder %s: %s", dir,
                                  strerror(e));
    }
    int rc = dagger__da_foreach(a, save_block_body, (void *)dir, "darray_save");
    if (rc)
        return rc;
    char text[512], t1[128], t2[128];
    int n =
        snprintf(text, sizeof text, INDEX_MAGIC "\nelt %s\ndims %s\nblocks %s\n", descr_of(a->elt),
                 tuple(a->dims, a->nd, t1, sizeof t1), tuple(a->bs, a->nd, t2, sizeof t2));
    char path[4096];
    snprintf(path, sizeof path, "%s/" INDEX_NAME, dir);
    dagger_file_meta_t m;
    memset(&m, 0, sizeof m);
    m.size = (size_t)n;
    return dagger__io_save(path, &dagger_codec_raw, &m, text);
}

int dagger_darray_save(dagger_darray_t *a, const char *path, dagger_darray_file_t mode)
{
    int rc = dagger__da_check(a, "dagger_darray_save");
    if (rc)
        return rc;
    DAGGER_CHECK(path && *path, DAGGER_EINVAL, "dagger_darray_save: the path is NULL or empty");
    DAGGER_CHECK(mode == DAGGER_DARRAY_FILE_BLOCKS || mode == DAGGER_DARRAY_FILE_WHOLE,
                 DAGGER_EINVAL, "dagger_darray_save: unknown mode %d", (int)mode);
    char *abs = dagger__io_abspath(path);
    DAGGER_CHECK(abs, DAGGER_ENOMEM, "dagger_darray_save: out of memory");
    if (mode == DAGGER_DARRAY_FILE_BLOCKS) {
        rc = save_blocks(a, abs);
    } else {
        whole_job_t j = {.fd = -1, .a = a};
        dagger_file_meta_t m;
        meta_of(a, a->dims, a->len, &m);
        rc = dagger__io_save(abs, &whole_codec, &m, &j);
    }
    dagger__free(abs);
    return rc;
}

/* ---------------------------------------------------------------- load */

/* Parse "(3, 4)" (or "(3,)") into v; returns the count, or -1. */
static int parse_tuple(const char *s, size_t *v)
{
    int n = 0;
    if (*s++ != '(')
        return -1;
    for (;;) {
        while (*s == ' ')
            s++;
        if (*s == ')')
            return n;
        if (!isdigit((unsigned char)*s)) /* strtoull would take "-1" for 2^64 - 1 */
            return -1;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (end == s || errno || n == DA_MAXD)
            return -1;
        v[n++] = (size_t)x;
        s = end;
        while (*s == ' ')
            s++;
        if (*s == ',')
            s++;
        else if (*s != ')')
            return -1;
    }
}

typedef struct index_rec {
    dagger_elt_t elt;
    int nd;
    size_t dims[DA_MAXD], bs[DA_MAXD];
} index_rec_t;

static int read_index(const char *dir, index_rec_t *x)
{
    char path[4096], line[256], descr[16] = "", tup[128];
    snprintf(path, sizeof path, "%s/" INDEX_NAME, dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        return dagger__set_errmsg(dagger__io_code(e), "dagger_darray_load: cannot open %s: %s",
                                  path, strerror(e));
    }
    int ok = 0, nb = -1;
    x->nd = -1;
    if (fgets(line, sizeof line, f) && strncmp(line, INDEX_MAGIC "\n", sizeof INDEX_MAGIC) == 0)
        ok = 1;
    while (ok && fgets(line, sizeof line, f)) {
        if (sscanf(line, "elt %15s", descr) == 1)
            continue;
        if (sscanf(line, "dims %127[^\n]", tup) == 1)
            x->nd = parse_tuple(tup, x->dims);
        else if (sscanf(line, "blocks %127[^\n]", tup) == 1)
            nb = parse_tuple(tup, x->bs);
    }
    fclose(f);
    x->elt = elt_of_descr(descr);
    if (!ok || x->elt == DAGGER_ELT_RAW || x->nd < 1 || nb != x->nd)
        return dagger__set_errmsg(DAGGER_EINVAL,
                                  "dagger_darray_load: %s is not a DArray index (want the lines "
                                  "'" INDEX_MAGIC "', 'elt <f8', 'dims (..)', 'blocks (..)')",
                                  path);
    return 0;
}

/* Every block file the index implies exists and holds at least its block's data bytes, checked
 * before anything is allocated: the index alone must not size the array (a corrupted or hostile
 * "dims (1099511627776,)" asked for 8 TiB, "blocks (1,)" of 10^8 elements for 10^8 tasks;
 * fuzz_darray). Stops at the first file that fails, so the work is bounded by the files there. */
static int check_block_files(const char *dir, const index_rec_t *x, const dagger__da_layout_t *l)
{
    size_t grid[DA_MAXD], g[DA_MAXD] = {0}, es = dagger_elt_size(l->elt);
    for (int d = 0; d < l->nd; d++)
        grid[d] = l->dims[d] ? (l->dims[d] + l->bs[d] - 1) / l->bs[d] : 1;
    char path[4096], t1[128], t2[128];
    for (;;) {
        size_t need = es; /* at most the array's bytes: dagger__da_layout bounds those */
        for (int d = 0; d < l->nd; d++) {
            size_t rest = l->dims[d] - g[d] * l->bs[d];
            need *= rest < l->bs[d] ? rest : l->bs[d];
        }
        coords_path(dir, l->nd, g, path, sizeof path);
        struct stat st;
        if (stat(path, &st) != 0) {
            int e = errno;
            return dagger__set_errmsg(dagger__io_code(e),
                                      "dagger_darray_load: missing block file %s: %s", path,
                                      strerror(e));
        }
        if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size < need)
            return dagger__set_errmsg(
                DAGGER_EINVAL,
                "dagger_darray_load: block file %s has %llu bytes but its block needs %zu data "
                "bytes (the index says dims %s, blocks %s)",
                path, (unsigned long long)st.st_size, need, tuple(x->dims, x->nd, t1, sizeof t1),
                tuple(x->bs, x->nd, t2, sizeof t2));
        int d = 0;
        while (d < l->nd && ++g[d] == grid[d])
            g[d++] = 0;
        if (d == l->nd)
            return 0;
    }
}

typedef struct load_blocks_job {
    const char *dir;
} load_blocks_job_t;

static int load_block_body(dagger_tc_t *tc, dagger_darray_t *a, size_t b, void *ud)
{
    load_blocks_job_t *j = ud;
    char path[4096], why[512] = "", t1[128], t2[128];
    block_path(a, j->dir, b, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return dagger_fail(tc, dagger__io_code(e), "missing block file %s: %s", path, strerror(e));
    }
    dagger_darray_blockinfo_t bi;
    dagger__da_info(a, b, &bi);
    dagger_file_meta_t m;
    int rc = dagger_codec_npy.probe(&dagger_codec_npy, fd, path, &m, why, sizeof why);
    if (rc) {
        rc = dagger_fail(tc, rc, "%s", why);
    } else if (m.elt != a->elt) {
        rc = dagger_fail(tc, DAGGER_EINVAL, "dtype mismatch: %s holds %s, the index says %s", path,
                         m.npy_bool ? "|b1" : descr_of(m.elt), descr_of(a->elt));
    } else {
        bool same = m.ndims == a->nd && (m.fortran || a->nd < 2);
        for (int d = 0; same && d < a->nd; d++)
            same = m.shape[d] == bi.shape[d];
        if (!same)
            rc = dagger_fail(tc, DAGGER_EINVAL,
                             "shape mismatch: %s has shape %s (%s order), block %zu is %s "
                             "(Fortran order)",
                             path, tuple(m.shape, m.ndims, t1, sizeof t1),
                             m.fortran ? "Fortran" : "C", b, tuple(bi.shape, a->nd, t2, sizeof t2));
        else if ((rc = dagger__io_read_at(fd, a->ptr[b], m.size, m.offset, path, why, sizeof why)))
            rc = dagger_fail(tc, rc, "%s", why);
    }
    close(fd);
    return rc;
}

static int load_blocks(dagger_ctx_t *ctx, const char *dir, dagger_dims_t blocks,
                       const dagger_darray_opts_t *opts, dagger_darray_t **out)
{
    index_rec_t x;
    int rc = read_index(dir, &x);
    if (rc)
        return rc;
    dagger_dims_t dims = {x.nd, {0}}, bs = {x.nd, {0}};
    for (int d = 0; d < x.nd; d++) {
        dims.d[d] = x.dims[d];
        bs.d[d] = x.bs[d];
    }
    bool same = blocks.n == 0 || blocks.n == x.nd;
    for (int d = 0; same && blocks.n && d < x.nd; d++)
        same = blocks.d[d] == x.bs[d];
    char t1[128];
    DAGGER_CHECK(same, DAGGER_EINVAL,
                 "dagger_darray_load: %s was saved with blocks %s; pass DAGGER_AUTOBLOCKS or "
                 "those",
                 dir, tuple(x.bs, x.nd, t1, sizeof t1));
    dagger__da_layout_t l;
    if ((rc = dagger__da_layout(ctx, x.elt, bs, dims, opts, &l)))
        return rc;
    if ((rc = check_block_files(dir, &x, &l)))
        return rc;
    load_blocks_job_t j = {dir};
    return dagger__da_build_with(ctx, &l, load_block_body, &j, "darray_load", out);
}

static int load_whole(dagger_ctx_t *ctx, const char *path, dagger_dims_t blocks,
                      const dagger_darray_opts_t *opts, dagger_darray_t **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return dagger__set_errmsg(dagger__io_code(e), "dagger_darray_load: cannot open %s: %s",
                                  path, strerror(e));
    }
    char why[512] = "";
    dagger_file_meta_t m;
    int rc = dagger_codec_npy.probe(&dagger_codec_npy, fd, path, &m, why, sizeof why);
    if (rc) {
        rc = dagger__set_errmsg(rc, "dagger_darray_load: %s", why);
    } else if (elt_of_descr(descr_of(m.elt)) == DAGGER_ELT_RAW || m.npy_bool) {
        rc = dagger__set_errmsg(DAGGER_EINVAL,
                                "dagger_darray_load: dtype mismatch: %s holds %s; a DArray is "
                                "<f8, <f4, <i8 or <i4",
                                path, m.npy_bool ? "|b1" : "|u1");
    } else if (m.ndims > 1 && !m.fortran) {
        rc = dagger__set_errmsg(DAGGER_EINVAL,
                                "dagger_darray_load: %s is C order (fortran_order False); "
                                "save np.asfortranarray(x) to load it as a DArray",
                                path);
    } else {
        dagger_dims_t dims = {m.ndims ? m.ndims : 1, {m.ndims ? m.shape[0] : 1}};
        for (int d = 1; d < m.ndims; d++)
            dims.d[d] = m.shape[d];
        dagger__da_layout_t l;
        if (!(rc = dagger__da_layout(ctx, m.elt, blocks, dims, opts, &l))) {
            whole_job_t j = {.fd = fd, .path = path, .offset = m.offset};
            dagger_darray_t shell; /* the element size, before the array exists */
            memset(&shell, 0, sizeof shell);
            shell.esz = dagger_elt_size(m.elt);
            j.a = &shell;
            rc = dagger__da_build_with(ctx, &l, load_whole_body, &j, "darray_load", out);
        }
    }
    close(fd);
    return rc;
}

int dagger_darray_load(dagger_ctx_t *ctx, const char *path, dagger_darray_file_t mode,
                       dagger_dims_t blocks, const dagger_darray_opts_t *opts,
                       dagger_darray_t **out)
{
    DAGGER_CHECK(out, DAGGER_EINVAL, "dagger_darray_load: out is NULL");
    *out = NULL;
    DAGGER_CHECK(ctx, DAGGER_EINVAL, "dagger_darray_load: ctx is NULL");
    DAGGER_CHECK(path && *path, DAGGER_EINVAL, "dagger_darray_load: the path is NULL or empty");
    DAGGER_CHECK(mode == DAGGER_DARRAY_FILE_BLOCKS || mode == DAGGER_DARRAY_FILE_WHOLE,
                 DAGGER_EINVAL, "dagger_darray_load: unknown mode %d", (int)mode);
    char *abs = dagger__io_abspath(path);
    DAGGER_CHECK(abs, DAGGER_ENOMEM, "dagger_darray_load: out of memory");
    int rc = mode == DAGGER_DARRAY_FILE_BLOCKS ? load_blocks(ctx, abs, blocks, opts, out)
                                               : load_whole(ctx, abs, blocks, opts, out);
    dagger__free(abs);
    return rc;
}
