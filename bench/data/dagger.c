/* bench/data/dagger.c - a chunk argument per task (see problem.h).
 * SPDX-License-Identifier: MIT
 */
#define DATA_CHUNK 1
#include "problem.h"

int main(int argc, char **argv) { return data_main(argc, argv, "dagger"); }
