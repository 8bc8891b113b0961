/* bench/io/memcpy.c - the memcpy peer of io.npy_load/io.npy_save: the same bytes copied in
 * memory (an upper bound no file can beat). SPDX-License-Identifier: MIT
 */
#include "problem.h"

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list")) {
            puts("io.npy_load\nio.npy_save");
            return 0;
        }
    for (size_t k = 0; k < IO_NSIZES; k++) {
        size_t n = io_sizes[k];
        char *a = malloc(n), *b = malloc(n);
        if (!a || !b)
            return 1;
        memset(a, 1, n);
        memset(b, 2, n);
        double best = 1e30;
        for (int r = 0; r < io_reps(); r++) {
            double t0 = io_now();
            memcpy(b, a, n);
            double t = io_now() - t0;
            best = t < best ? t : best;
        }
        if (b[n - 1] != 1)
            return 1;
        io_result("io.npy_load", "memcpy", n, (double)n / best / 1e9);
        io_result("io.npy_save", "memcpy", n, (double)n / best / 1e9);
        free(a);
        free(b);
    }
    return 0;
}
