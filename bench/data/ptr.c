/* bench/data/ptr.c - the peer: the same tasks with a plain pointer argument (see problem.h).
 * SPDX-License-Identifier: MIT
 */
#define DATA_CHUNK 0
#include "problem.h"

int main(int argc, char **argv) { return data_main(argc, argv, "ptr"); }
