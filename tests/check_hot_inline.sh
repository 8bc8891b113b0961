#!/bin/sh
# tests/check_hot_inline.sh <libdagger.so> <list> - every function the list names (tests/
# hot_inline.txt: the helpers of the task path that LTO inlines) has no body of its own in the
# library: no local or global text symbol of that name, bare or with a suffix of a whole copy
# (.lto_priv.N, .isra.N, .constprop.N, .localalias). A cold part (.cold) or a split-off part
# (.part.N) leaves the hot path inline and passes. Exit 77 (skipped) when the library has no
# symbol table (stripped); exit 1, naming it, when the list names a file or a function that no
# longer exists (the list must follow the code).
# SPDX-License-Identifier: MIT
lib="$1"
list="$2"
root=$(cd "$(dirname "$list")/.." && pwd)
command -v readelf >/dev/null 2>&1 || { echo "readelf not found"; exit 77; }
syms=$(readelf -W --syms "$lib" 2>/dev/null | awk '$4 == "FUNC" && $7 != "UND" {print $8}')
[ -n "$syms" ] || { echo "no symbol table in $lib (stripped?)"; exit 77; }
bad=""
n=0
while read -r file fn; do
    case "$file" in '' | '#'*) continue ;; esac
    [ -f "$root/$file" ] || { echo "the list names $file, which is gone: update $list"; exit 1; }
    grep -q "[^a-z_0-9]$fn(" "$root/$file" || { echo "$file has no function $fn: update $list"; exit 1; }
    n=$((n + 1))
    hit=$(printf '%s\n' "$syms" | grep -E "^$fn(\.(lto_priv|isra|constprop)\.[0-9]+|\.localalias)*(@.*)?\$" | head -n 3)
    [ -n "$hit" ] && bad="$bad
  $fn ($file): $(echo $hit)"
done <"$list"
if [ -n "$bad" ]; then
    echo "functions of the task path out of line in $lib (each a call a task where it was inlined):$bad"
    echo "Mark it always_inline, or shrink what pushed it out, and measure (bench/RESULTS.md)."
    exit 1
fi
echo "$n functions of the task path inlined in $lib"
