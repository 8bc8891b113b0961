#!/bin/sh
# tests/check_format.sh - the committed C sources follow .clang-format (STYLE.md 6).
# Peers' benchmark sources (omp.c, tbb.cpp, starpu.c) are left as their authors' style.
cd "$(dirname "$0")/.." || exit 1
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed"; exit 77; }
files=$(git ls-files '*.c' '*.h' '*.cpp' 2>/dev/null | grep -v '^bench/[a-z]*/\(starpu\|tbb\|omp\)\.c')
[ -n "$files" ] || files=$(find include src tests examples tools -name '*.[ch]')
# shellcheck disable=SC2086
clang-format --dry-run -Werror $files
