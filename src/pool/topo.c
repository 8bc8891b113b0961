/* src/pool/topo.c - the machine as the process may use it: worker count, pinning, description.
 *
 * Design: the default worker count is the number of CPUs in the affinity mask
 * (sched_getaffinity, so `taskset -c 0` gives 1), lowered to a cgroup CPU quota when one is set
 * (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us), rounded up. DAGGER_BIND=core
 * pins worker i to the i-th core of the allowed set (round robin when there are more workers
 * than cores): with hwloc a core is hwloc's core object, all its hyperthreads; without hwloc
 * each allowed CPU counts as a core. DAGGER_BIND=none (the default) pins nothing, but each
 * worker starts on a CPU of its own, the opening thread's last (dagger__topo_spread),
 * then widens its affinity to the whole allowed set. Left to the kernel, both workers of 2
 * sometimes started on one CPU while the opening thread had the other, and stayed there for
 * milliseconds after that thread slept (taking turns through their yields, each "cache hot"
 * to the balancer): core.fib_cutoff at t=2 read 1.03-1.06 ms instead of 0.53 in 1 process in
 * 8, one worker running every leaf.
 * BLAS: a multithreaded BLAS called from every worker starts its own threads inside each task
 * (nested oversubscription), so dagger_blas_set_threads sets the thread count of the BLAS
 * libraries already loaded in the process, found by name with dlsym (no link dependency);
 * dagger_ctx_open sets them to 1 unless DAGGER_BLAS_THREADS says otherwise. Setting 1 also stops
 * OpenBLAS's idle server threads, which spin for about 0.1 s after the library loads.
 * SPDX-License-Identifier: MIT
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef DAGGER_HAVE_HWLOC
#include <hwloc.h>
#endif

#include "common/common.h"
#include "pool/pool.h"

int dagger__topo_parse_cpu_max(const char *text)
{
    char quota[32];
    long long period = 0;
    if (!text || sscanf(text, "%31s %lld", quota, &period) < 1)
        return -1;
    if (strcmp(quota, "max") == 0)
        return 0;
    char *end;
    long long q = strtoll(quota, &end, 10);
    if (*end || q == -1) /* v1 writes -1 for "no limit" */
        return q == -1 && !*end ? 0 : -1;
    if (period <= 0)
        period = 100000;
    if (q <= 0)
        return -1;
    /* Rounded up without q + period - 1, which overflows for extreme values (fuzz_parse). */
    long long n = q / period + (q % period != 0);
    return n > 1 << 20 ? 1 << 20 : (int)n;
}

static int read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0 ? 0 : -1;
}

/* The cgroup CPU quota of the process in CPUs (rounded up), 0 when there is none. */
static int cgroup_cpus(void)
{
    char buf[512], path[700];
    int best = 0;
    /* cgroup v2: "0::/a/b" in /proc/self/cgroup; the tightest cpu.max of /a/b and its parents
     * (a container's limit often sits above the process's own group). */
    if (read_small("/proc/self/cgroup", buf, sizeof buf) == 0) {
        char *p = strstr(buf, "0::");
        if (p) {
            p += 3;
            p[strcspn(p, "\n")] = '\0';
            for (;;) {
                snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", strcmp(p, "/") ? p : "");
                char v[64];
                int n = read_small(path, v, sizeof v) == 0 ? dagger__topo_parse_cpu_max(v) : 0;
                if (n > 0 && (best == 0 || n < best))
                    best = n;
                char *slash = strrchr(p, '/');
                if (!slash || slash == p)
                    break;
                *slash = '\0';
            }
            if (strcmp(p, "/") != 0) { /* the root of the (namespaced) hierarchy */
                char v[64];
                int n = read_small("/sys/fs/cgroup/cpu.max", v, sizeof v) == 0
                            ? dagger__topo_parse_cpu_max(v)
                            : 0;
                if (n > 0 && (best == 0 || n < best))
                    best = n;
            }
            if (best > 0)
                return best;
        }
    }
    /* cgroup v1 (or a hybrid layout whose v2 tree has no cpu controller). */
    char q[64], per[64];
    static const char *const v1[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
    for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++) {
        char qp[128], pp[128];
        snprintf(qp, sizeof qp, "%s/cpu.cfs_quota_us", v1[i]);
        snprintf(pp, sizeof pp, "%s/cpu.cfs_period_us", v1[i]);
        if (read_small(qp, q, sizeof q) == 0 && read_small(pp, per, sizeof per) == 0) {
            q[strcspn(q, "\n")] = '\0';
            char both[140];
            snprintf(both, sizeof both, "%s %s", q, per);
            int n = dagger__topo_parse_cpu_max(both);
            return n > 0 ? n : 0;
        }
    }
    return 0;
}

int dagger__topo_default_threads(void)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1) {
        long m = sysconf(_SC_NPROCESSORS_ONLN);
        n = m < 1 ? 1 : (int)m;
    }
    int quota = cgroup_cpus();
    if (quota > 0 && quota < n)
        n = quota;
    return n;
}

int dagger__topo_bind_mode(int *mode)
{
    const char *s = getenv("DAGGER_BIND");
    *mode = DAGGER__BIND_NONE;
    if (!s || !*s || strcmp(s, "none") == 0)
        return 0;
    if (strcmp(s, "core") == 0) {
        *mode = DAGGER__BIND_CORE;
        return 0;
    }
    return dagger__set_errmsg(DAGGER_EINVAL,
                              "DAGGER_BIND='%s' is invalid: expected 'none' (the default) or "
                              "'core' (one worker per core of the affinity mask)",
                              s);
}

/* The allowed cores as CPU sets: one set per core, in order. Returns the count (0 on error). */
static int allowed_cores(cpu_set_t **out)
{
    cpu_set_t allowed;
    *out = NULL;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return 0;
    int ncpu = CPU_COUNT(&allowed);
    cpu_set_t *sets = calloc((size_t)(ncpu > 0 ? ncpu : 1), sizeof *sets);
    if (!sets)
        return 0;
    int n = 0;
#ifdef DAGGER_HAVE_HWLOC
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) == 0) {
        if (hwloc_topology_load(topo) == 0) {
            int ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
            for (int c = 0; c < ncores && n < ncpu; c++) {
                hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, c);
                CPU_ZERO(&sets[n]);
                int pu;
                hwloc_bitmap_foreach_begin(pu, core->cpuset)
                {
                    if (pu < CPU_SETSIZE && CPU_ISSET(pu, &allowed))
                        CPU_SET(pu, &sets[n]);
                }
                hwloc_bitmap_foreach_end();
                if (CPU_COUNT(&sets[n]) > 0)
                    n++;
            }
        }
        hwloc_topology_destroy(topo);
    }
#endif
    if (n == 0) /* no hwloc, or it found no core: every allowed CPU is a core */
        for (int c = 0; c < CPU_SETSIZE && n < ncpu; c++)
            if (CPU_ISSET(c, &allowed)) {
                CPU_ZERO(&sets[n]);
                CPU_SET(c, &sets[n]);
                n++;
            }
    *out = sets;
    return n;
}

int dagger__topo_bind(dagger__pool *p, int mode)
{
    if (mode != DAGGER__BIND_CORE)
        return 0;
    cpu_set_t *cores;
    int n = allowed_cores(&cores);
    if (n == 0) {
        free(cores);
        return dagger__set_errmsg(DAGGER_ENOMEM, "DAGGER_BIND=core: cannot read the CPU set");
    }
    int rc = 0;
    for (int i = 0; i < dagger__pool_size(p) && !rc; i++) {
        int e = pthread_setaffinity_np(dagger__pool_thread(p, i), sizeof(cpu_set_t), &cores[i % n]);
        if (e)
            rc = dagger__set_errmsg(DAGGER_EINVAL, "DAGGER_BIND=core: pinning worker %d: %s", i,
                                    strerror(e));
    }
    free(cores);
    return rc;
}

int dagger__topo_spread(int n, int *cpus)
{
    for (int i = 0; i < n; i++)
        cpus[i] = -1;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return 0;
    /* The allowed CPUs in order, counted from the one after the calling thread's: with fewer
     * workers than CPUs none starts beside it. By CPU number, not hwloc's cores: loading the
     * topology took 2.2 ms of every dagger_ctx_open (bench/startup), and Linux numbers one
     * CPU of each core before their second hyperthreads. */
    int list[CPU_SETSIZE], m = 0, here = sched_getcpu(), after = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &allowed)) {
            if (c == here)
                after = m + 1;
            list[m++] = c;
        }
    for (int i = 0; i < n; i++)
        cpus[i] = list[(after + i) % m];
    return 1;
}

int dagger__topo_place_self(int cpu)
{
    cpu_set_t all, one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_getaffinity(0, sizeof all, &all) != 0 || sched_setaffinity(0, sizeof one, &one) != 0)
        return -1;
    int here = sched_getcpu();
    (void)sched_setaffinity(0, sizeof all, &all);
    return here;
}

/* Append the CPUs of `set` as a list of ranges ("0-3,8") to buf. */
static void put_cpus(char *buf, size_t cap, const cpu_set_t *set)
{
    size_t len = strlen(buf);
    int first = 1;
    for (int c = 0; c < CPU_SETSIZE && len < cap; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        int e = c;
        while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
            e++;
        int w = e > c ? snprintf(buf + len, cap - len, "%s%d-%d", first ? "" : ",", c, e)
                      : snprintf(buf + len, cap - len, "%s%d", first ? "" : ",", c);
        len += w > 0 ? (size_t)w : 0;
        first = 0;
        c = e;
    }
}

void dagger__topo_describe(char *buf, size_t cap, int nworkers, int mode)
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        CPU_ZERO(&allowed);
    int packages = 0, cores = 0, pus = 0;
#ifdef DAGGER_HAVE_HWLOC
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) == 0) {
        if (hwloc_topology_load(topo) == 0) {
            packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
            cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
            pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
        }
        hwloc_topology_destroy(topo);
    }
#endif
    if (pus <= 0) {
        long m = sysconf(_SC_NPROCESSORS_ONLN);
        pus = m > 0 ? (int)m : 0;
    }
    int len = snprintf(buf, cap, "%d workers, bind=%s; machine: ", nworkers,
                       mode == DAGGER__BIND_CORE ? "core" : "none");
    if (packages > 0)
        len += snprintf(buf + len, cap > (size_t)len ? cap - (size_t)len : 0,
                        "%d package%s, %d cores, ", packages, packages == 1 ? "" : "s", cores);
    if ((size_t)len < cap)
        snprintf(buf + len, cap - (size_t)len, "%d CPUs; allowed: ", pus);
    put_cpus(buf, cap, &allowed);
    int q = cgroup_cpus();
    len = (int)strlen(buf);
    if (q > 0 && (size_t)len < cap)
        snprintf(buf + len, cap - (size_t)len, "; cgroup quota: %d CPUs", q);
}

int dagger_blas_set_threads(int n)
{
    if (n < 1)
        return dagger__set_errmsg(DAGGER_EINVAL, "dagger_blas_set_threads: n = %d, expected >= 1",
                                  n);
    /* Each library's own setter, taking an int (BLIS takes a dim_t, also fine by value). */
    static const char *const setters[] = {"openblas_set_num_threads", "goto_set_num_threads",
                                          "bli_thread_set_num_threads", "mkl_set_num_threads",
                                          "flexiblas_set_num_threads"};
    int found = 0;
    for (size_t i = 0; i < sizeof setters / sizeof setters[0]; i++) {
        void *sym = dlsym(RTLD_DEFAULT, setters[i]);
        if (!sym)
            continue;
        void (*set)(int);
        memcpy(&set, &sym, sizeof set);
        set(n);
        found++;
        if (i == 0)
            i++; /* goto_set_num_threads is OpenBLAS's old name for the same setter */
    }
    /* OpenBLAS (pthreads build) starts its server threads when it is loaded, and an idle server
     * thread spins on sched_yield for its timeout (about 0.1 s on a 2 GHz core) before it sleeps:
     * one core taken from the workers in the first tenth of a second of every program, where a
     * spawn + fetch from main took 43-45 us instead of 1.3-1.5 on 2 cores (core.round_trip,
     * phase=start). With one thread set they
     * have no use: stop them the way OpenBLAS's own fork handler does. A later call that wants
     * threads again (a count > 1 set) starts them anew (OpenBLAS's lazy re-init). */
    void *stop = n == 1 ? dlsym(RTLD_DEFAULT, "blas_thread_shutdown_") : NULL;
    if (stop) {
        int (*shutdown)(void);
        memcpy(&shutdown, &stop, sizeof shutdown);
        shutdown();
    }
    return found;
}

int dagger__topo_blas_default(void)
{
    const char *s = getenv("DAGGER_BLAS_THREADS");
    if (s && strcmp(s, "keep") == 0)
        return 0;
    long n = 1;
    if (s && *s) {
        char *end;
        n = strtol(s, &end, 10);
        if (*end || n < 1 || n > 4096)
            return dagger__set_errmsg(DAGGER_EINVAL,
                                      "DAGGER_BLAS_THREADS='%s' is invalid: expected 'keep' or a "
                                      "thread count >= 1 (the default is 1)",
                                      s);
    }
    int rc = dagger_blas_set_threads((int)n);
    return rc < 0 ? rc : 0;
}
