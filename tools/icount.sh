#!/bin/sh
# tools/icount.sh - instructions per task (callgrind) of one or two builds of libdagger.a.
# Usage: sh tools/icount.sh build-bench/src/libdagger.a [other/libdagger.a]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
command -v valgrind >/dev/null || { echo "icount: valgrind is not installed" >&2; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/icount.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
k=0
for lib in "$@"; do
    k=$((k + 1))
    cc -O2 -I"$here/../include" "$here/icount.c" "$lib" -lpthread -lm -ldl -o "$tmp/drv$k"
    for w in empty:100000 chain:50001 fib:8361; do
        name=${w%%:*}
        n=${w#*:}
        ir=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$tmp/drv$k" "$name" 2>&1 |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
        echo "$lib $name $(awk -v a="$ir" -v b="$n" 'BEGIN { printf "%.0f", a / b }') instructions/task"
    done
done
