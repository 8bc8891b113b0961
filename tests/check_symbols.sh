#!/bin/sh
# tests/check_symbols.sh - every symbol libdagger exports (global, default visibility, defined)
# is public API: it starts with dagger_ and not with the internal dagger__ prefix.
lib="$1"
syms=$(readelf -W --syms "$lib" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $6 == "DEFAULT" && $7 != "UND" {print $8}' | sort -u)
[ -n "$syms" ] || { echo "no exported symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^dagger_' | grep -v '^__odr_asan' ; printf '%s\n' "$syms" | grep '^dagger__')
if [ -n "$bad" ]; then
    echo "exported symbols outside the public dagger_ namespace:"
    echo "$bad"
    exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) exported symbols, all public dagger_ names"
