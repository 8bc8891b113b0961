#!/bin/sh
# tests/check_symbols.sh - every global symbol that libdagger defines starts with dagger_.
lib="$1"
bad=$(nm -g --defined-only "$lib" 2>/dev/null | awk 'NF >= 3 && $2 ~ /^[TDBRVWGS]$/ {print $3}' |
      grep -v '^dagger_' | grep -v '^_\(init\|fini\|edata\|end\|_bss_start\)$' || true)
if [ -n "$bad" ]; then
    echo "symbols without the dagger_ prefix:"
    echo "$bad"
    exit 1
fi
echo "all exported symbols start with dagger_"
