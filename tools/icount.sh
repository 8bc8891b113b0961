#!/bin/sh
# tools/icount.sh - instructions per task (callgrind) of one or two builds of libdagger.a.
# Usage: sh tools/icount.sh build-bench/src/libdagger.a [other/libdagger.a]
# ICOUNT_LIBS: what the static library needs besides libc (default: the optional packages of a
# full build: hwloc, zstd, libsodium, libmosquitto, cnats).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
command -v valgrind >/dev/null || { echo "icount: valgrind is not installed" >&2; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/icount.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
k=0
for lib in "$@"; do
    k=$((k + 1))
    # shellcheck disable=SC2086
    cc -O2 -I"$here/../include" "$here/icount.c" "$lib" \
        ${ICOUNT_LIBS:--lhwloc -lzstd -lsodium -lmosquitto -lnats} -lpthread -lm -ldl -o "$tmp/drv$k"
    # name:small:large:tasks between them (fib(n) runs 2 fib(n+1) - 1 tasks; a nested run 140)
    for w in empty:50000:100000:50000 flat:50000:100000:50000 flat_main:50000:100000:50000 chain:25000:50000:25000 fib:17:18:3194 nested:200:400:28000 groups:200:400:28000 \
        groups_main:200:400:28000 \
        chain3:25000:50000:25000; do
        name=${w%%:*}
        rest=${w#*:}
        a=${rest%%:*}
        rest=${rest#*:}
        b=${rest%%:*}
        n=${rest#*:}
        ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$tmp/drv$k" "$name" "$1" 2>&1 |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
        ia=$(ir "$a")
        ib=$(ir "$b")
        echo "$lib $name $(awk -v a="$ia" -v b="$ib" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / n }') instructions/task"
    done
done
