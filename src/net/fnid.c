/* src/net/fnid.c - task functions across processes: (module build id, offset) and registered
 * names.
 *
 * Design: a function address is located in a loaded module (the program or a shared library)
 * by walking the program headers (dl_iterate_phdr); it travels as the module's GNU build id and
 * the offset from the module's load address. The receiver finds the module with that build id
 * and accepts the offset only inside one of its executable segments, so a bad or stale
 * reference is refused with a message rather than called. Functions of plugins that other
 * ranks load differently travel by the name given to dagger_fn_register.
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"
#include "net/net.h"

/* ---------------------------------------------------------------- registered names */

struct named {
    char *name;
    dagger_fn_t fn;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct named *reg;   /* guarded by reg_lock */
static size_t nreg, capreg; /* guarded by reg_lock */

int dagger_fn_register(const char *name, dagger_fn_t fn)
{
    DAGGER_CHECK(name && *name && fn, DAGGER_EINVAL,
                 "dagger_fn_register: the name must be a non-empty string and fn non-NULL");
    DAGGER_CHECK(strlen(name) < DAGGER__FN_NAME_MAX, DAGGER_EINVAL,
                 "dagger_fn_register: the name '%.32s...' is longer than %d bytes", name,
                 DAGGER__FN_NAME_MAX - 1);
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nreg; i++) {
        if (strcmp(reg[i].name, name) == 0) {
            int same = reg[i].fn == fn;
            pthread_mutex_unlock(&reg_lock);
            DAGGER_CHECK(same, DAGGER_EINVAL,
                         "dagger_fn_register: the name '%s' is already registered for another "
                         "function",
                         name);
            return 0;
        }
    }
    if (nreg == capreg) {
        size_t cap = capreg ? capreg * 2 : 16;
        /* Plain realloc: the registry lives as long as the process, beside any allocator hooks. */
        struct named *r = realloc(reg, cap * sizeof *r);
        if (!r) {
            pthread_mutex_unlock(&reg_lock);
            return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_fn_register: out of memory");
        }
        reg = r;
        capreg = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        pthread_mutex_unlock(&reg_lock);
        return dagger__set_errmsg(DAGGER_ENOMEM, "dagger_fn_register: out of memory");
    }
    reg[nreg++] = (struct named){copy, fn};
    pthread_mutex_unlock(&reg_lock);
    return 0;
}

__attribute__((destructor)) static void reg_free(void)
{
    for (size_t i = 0; i < nreg; i++)
        free(reg[i].name);
    free(reg);
    reg = NULL;
    nreg = capreg = 0;
}

static const char *name_of(dagger_fn_t fn)
{
    const char *n = NULL;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nreg && !n; i++)
        if (reg[i].fn == fn)
            n = reg[i].name;
    pthread_mutex_unlock(&reg_lock);
    return n; /* names are never freed before exit */
}

static dagger_fn_t fn_named(const char *name)
{
    dagger_fn_t fn = NULL;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < nreg && !fn; i++)
        if (strcmp(reg[i].name, name) == 0)
            fn = reg[i].fn;
    pthread_mutex_unlock(&reg_lock);
    return fn;
}

/* ---------------------------------------------------------------- modules */

/* The GNU build id of a module: its NT_GNU_BUILD_ID note. Returns its length (0: none). */
static int build_id_of(const struct dl_phdr_info *info, uint8_t *out)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
        const char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            const char *name = p + sizeof *n;
            const char *desc = name + ((n->n_namesz + 3) & ~3u);
            if (desc + n->n_descsz > end)
                break;
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
                n->n_descsz > 0 && n->n_descsz <= DAGGER__BUILD_ID_MAX) {
                memcpy(out, desc, n->n_descsz);
                return (int)n->n_descsz;
            }
            p = desc + ((n->n_descsz + 3) & ~3u);
        }
    }
    return 0;
}

/* Whether `off` lies in an executable PT_LOAD segment of the module. */
static bool in_exec(const struct dl_phdr_info *info, uintptr_t off)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && off >= ph->p_vaddr &&
            off < ph->p_vaddr + ph->p_memsz)
            return true;
    }
    return false;
}

/* The program and this library, read once: neither is unloaded while this code runs, so their
 * functions (task bodies, and the runtime's own: datadeps copies and relays) are located and
 * references to them resolved without walking every module (dl_iterate_phdr and the notes of
 * each: about 450 instructions per task sent and per task received, callgrind). */
enum { MOD_SEGS = 8 };
struct known_mod {
    bool ok; /* a build id and every executable segment recorded */
    uintptr_t base;
    int idlen, nseg;
    uint8_t id[DAGGER__BUILD_ID_MAX];
    uintptr_t lo[MOD_SEGS], hi[MOD_SEGS]; /* executable segments, offsets from base */
};
static struct {
    pthread_once_t once;
    int n;
    struct known_mod m[2]; /* the program, then this library where it is another module */
} known = {.once = PTHREAD_ONCE_INIT};

static void known_fill(struct known_mod *m, const struct dl_phdr_info *info)
{
    m->base = info->dlpi_addr;
    m->idlen = build_id_of(info, m->id);
    bool all = true;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        if (m->nseg == MOD_SEGS) {
            all = false;
            break;
        }
        m->lo[m->nseg] = ph->p_vaddr;
        m->hi[m->nseg++] = ph->p_vaddr + ph->p_memsz;
    }
    m->ok = all && m->idlen > 0;
}

static int known_cb(struct dl_phdr_info *info, size_t size, void *ud)
{
    (void)size;
    bool *self_seen = ud;
    uintptr_t self = (uintptr_t)&dagger__fn_ref;
    bool has_self = self >= info->dlpi_addr && in_exec(info, self - info->dlpi_addr);
    if (known.n == 0) /* the program is always listed first */
        known_fill(&known.m[known.n++], info);
    else if (has_self)
        known_fill(&known.m[known.n++], info);
    *self_seen |= has_self;
    return *self_seen; /* stop once this library's module was seen */
}

static void known_init(void)
{
    bool self_seen = false;
    dl_iterate_phdr(known_cb, &self_seen);
}

static bool known_exec(const struct known_mod *m, uintptr_t off)
{
    for (int i = 0; m->ok && i < m->nseg; i++)
        if (off >= m->lo[i] && off < m->hi[i])
            return true;
    return false;
}

/* The known module whose code holds `addr`, or NULL. */
static const struct known_mod *known_at(uintptr_t addr)
{
    pthread_once(&known.once, known_init);
    for (int k = 0; k < known.n; k++)
        if (addr >= known.m[k].base && known_exec(&known.m[k], addr - known.m[k].base))
            return &known.m[k];
    return NULL;
}

/* The known module with build id (id, n) whose code holds offset `off`, or NULL. */
static const struct known_mod *known_id(const uint8_t *id, int n, uintptr_t off)
{
    pthread_once(&known.once, known_init);
    for (int k = 0; k < known.n; k++)
        if (known.m[k].idlen == n && memcmp(known.m[k].id, id, (size_t)n) == 0 &&
            known_exec(&known.m[k], off))
            return &known.m[k];
    return NULL;
}

struct find {
    uintptr_t addr;    /* by address: in */
    const uint8_t *id; /* by id: in */
    int idlen;         /* by id: in; by address: out */
    uint8_t idbuf[DAGGER__BUILD_ID_MAX];
    uintptr_t base;   /* out */
    bool found, exec; /* out */
    const char *path; /* out: the module's name, valid while it stays loaded */
};

static int by_addr(struct dl_phdr_info *info, size_t size, void *ud)
{
    struct find *f = ud;
    if (f->addr < info->dlpi_addr || !in_exec(info, f->addr - info->dlpi_addr))
        return 0;
    f->found = f->exec = true;
    f->base = info->dlpi_addr;
    f->idlen = build_id_of(info, f->idbuf);
    f->path = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "the program";
    return 1;
}

static int by_id(struct dl_phdr_info *info, size_t size, void *ud)
{
    struct find *f = ud;
    uint8_t id[DAGGER__BUILD_ID_MAX];
    int n = build_id_of(info, id);
    if (n != f->idlen || memcmp(id, f->id, (size_t)n) != 0)
        return 0;
    f->found = true;
    f->base = info->dlpi_addr;
    f->exec = in_exec(info, f->addr);
    return 1;
}

static void hex(const uint8_t *p, int n, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < cap; i++, k += 2) {
        out[k] = digits[p[i] >> 4];
        out[k + 1] = digits[p[i] & 15];
    }
    out[k < cap ? k : cap - 1] = 0;
}

int dagger__fn_ref(dagger_fn_t fn, struct dagger__fn_ref *out, char *why, size_t cap)
{
    memset(out, 0, sizeof *out);
    const char *name = name_of(fn);
    if (name) {
        snprintf(out->name, sizeof out->name, "%s", name);
        return 0;
    }
    const struct known_mod *m = known_at((uintptr_t)fn);
    if (m) {
        memcpy(out->id, m->id, (size_t)m->idlen);
        out->idlen = m->idlen;
        out->offset = (uint64_t)((uintptr_t)fn - m->base);
        return 0;
    }
    struct find f = {.addr = (uintptr_t)fn};
    dl_iterate_phdr(by_addr, &f);
    if (!f.found) {
        snprintf(why, cap,
                 "the task function at %p lies in no loaded module's code, so it cannot travel "
                 "to another rank",
                 (void *)(uintptr_t)fn);
        return DAGGER_EINVAL;
    }
    if (f.idlen == 0) {
        snprintf(why, cap,
                 "the task function lies in %s, which has no build id (link with "
                 "-Wl,--build-id, or name the function with dagger_fn_register)",
                 f.path);
        return DAGGER_ENOSYS;
    }
    memcpy(out->id, f.idbuf, (size_t)f.idlen);
    out->idlen = f.idlen;
    out->offset = (uint64_t)((uintptr_t)fn - f.base);
    return 0;
}

int dagger__fn_resolve(const struct dagger__fn_ref *ref, dagger_fn_t *out, char *why, size_t cap)
{
    *out = NULL;
    if (ref->name[0]) {
        *out = fn_named(ref->name);
        if (!*out) {
            snprintf(why, cap, "no function is registered as '%s' (dagger_fn_register)", ref->name);
            return DAGGER_EINVAL;
        }
        return 0;
    }
    const struct known_mod *m = known_id(ref->id, ref->idlen, (uintptr_t)ref->offset);
    if (m) {
        *out = (dagger_fn_t)(m->base + (uintptr_t)ref->offset);
        return 0;
    }
    struct find f = {.addr = (uintptr_t)ref->offset, .id = ref->id, .idlen = ref->idlen};
    dl_iterate_phdr(by_id, &f);
    if (f.found && f.exec) {
        *out = (dagger_fn_t)(f.base + (uintptr_t)ref->offset);
        return 0;
    }
    /* Only a refusal spells the id out: with snprintf that cost 1.2 to 1.7 us per task received,
     * on the progress thread (perf of the bench/mpi round trips) */
    char idtext[2 * DAGGER__BUILD_ID_MAX + 1];
    hex(ref->id, ref->idlen, idtext, sizeof idtext);
    if (!f.found) {
        snprintf(why, cap, "no loaded module has build id %s (the task function's module)", idtext);
        return DAGGER_EINVAL;
    }
    snprintf(why, cap, "offset 0x%llx is outside the code of the module with build id %s: refused",
             (unsigned long long)ref->offset, idtext);
    return DAGGER_EINVAL;
}

int dagger__fn_module_id(const void *addr, uint8_t *id)
{
    struct find f = {.addr = (uintptr_t)addr};
    dl_iterate_phdr(by_addr, &f);
    memcpy(id, f.idbuf, (size_t)f.idlen);
    return f.found ? f.idlen : 0;
}

void dagger__fn_id_hex(const uint8_t *id, int n, char *out, size_t cap) { hex(id, n, out, cap); }

const char *dagger__fn_symbol(dagger_fn_t fn)
{
    static __thread dagger_fn_t last_fn;
    static __thread const char *last_name;
    if (fn && fn == last_fn)
        return last_name;
    Dl_info info;
    const char *name =
        dladdr((void *)(uintptr_t)fn, &info) && info.dli_sname ? info.dli_sname : "task";
    if (known_at((uintptr_t)fn)) { /* never unloaded: the name may be kept */
        last_fn = fn;
        last_name = name;
    }
    return name;
}

int dagger__fn_program_id(uint8_t *id)
{
    pthread_once(&known.once, known_init); /* the program is known.m[0] */
    memcpy(id, known.m[0].id, (size_t)known.m[0].idlen);
    return known.m[0].idlen;
}
