#!/bin/sh
# tests/check_symbols.sh - every symbol libdagger exports (global, default visibility, defined)
# is public API: it starts with dagger_ and not with the internal dagger__ prefix. For a shared
# library it reads the dynamic symbol table (what a program can link against), versions stripped.
lib="$1"
table=--syms
case "$lib" in
*.so | *.so.*) table=--dyn-syms ;;
esac
syms=$(readelf -W $table "$lib" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $6 == "DEFAULT" && $7 != "UND" && $7 != "ABS" {sub(/@.*/, "", $8); print $8}' | sort -u)
[ -n "$syms" ] || { echo "no exported symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^dagger_' | grep -v '^__odr_asan' ; printf '%s\n' "$syms" | grep '^dagger__')
if [ -n "$bad" ]; then
    echo "exported symbols outside the public dagger_ namespace:"
    echo "$bad"
    exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) exported symbols, all public dagger_ names"
