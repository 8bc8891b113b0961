/* bench/io/numpy.c - runs the numpy peer (numpy_peer.py beside this file) with python3; prints
 * nothing and exits 0 when python3 has no numpy. SPDX-License-Identifier: MIT
 */
#include "problem.h"

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list")) {
            puts("io.npy_load\nio.npy_save");
            return 0;
        }
    const char *py = "/usr/bin/python3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        py = "python3";
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", py);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_io_numpy: python3 with numpy not found (python3-numpy)\n");
            return 0;
        }
    }
    int n = snprintf(cmd, sizeof cmd, "%s %s ", py, DAGGER_BENCH_IO_NUMPY_PY);
    for (size_t k = 0; k < IO_NSIZES; k++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, k ? ",%zu" : "%zu", io_sizes[k]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " %d %s", io_reps(), io_dir());
    fflush(stdout);
    return system(cmd) == 0 ? 0 : 1;
}
