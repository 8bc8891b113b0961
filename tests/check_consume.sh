#!/bin/sh
# tests/check_consume.sh - build an outside project against dagger three ways and run each:
#   1. pkg-config against `cmake --install <builddir>` into a temporary prefix (shared library)
#   2. find_package(dagger) against that prefix (dagger::dagger and dagger::dagger_static)
#   3. add_subdirectory() of the source tree (library only: no tests, no cmocka, no C++)
# Usage: sh tests/check_consume.sh <srcdir> <builddir> <workdir>
set -eu
src=$1
build=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
cc=${CC:-cc}

step() { echo "== $*"; }

step "install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/dagger.h include/dagger.hpp bin/dagger-trace; do
    [ -e "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done
libdir=$(dirname "$(find "$prefix" -name 'libdagger.so.0' | head -n 1)")
[ -n "$libdir" ] && [ -e "$libdir/libdagger.a" ] || { echo "libdagger.so.0 / .a not installed"; exit 1; }
soname=$(readelf -d "$libdir/libdagger.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libdagger.so.0 ] || { echo "SONAME is '$soname', expected libdagger.so.0"; exit 1; }

step "1. pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs dagger)
pkg-config --static --libs dagger | grep -q -- -lpthread || { echo "dagger.pc lacks Libs.private"; exit 1; }
# shellcheck disable=SC2086
$cc -std=c11 "$src/tests/consume/main.c" $flags -Wl,-rpath,"$libdir" -o "$work/app_pc"
"$work/app_pc"
ldd "$work/app_pc" | grep -q "libdagger.so.0 => $libdir" || { echo "app_pc does not use $libdir"; exit 1; }

step "2. find_package(dagger)"
cmake -S "$src/tests/consume" -B "$work/pkg" -DCONSUME_MODE=package -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" >"$work/pkg.log"
cmake --build "$work/pkg" -j2 >>"$work/pkg.log"
"$work/pkg/app"
"$work/pkg/app_static"

step "3. add_subdirectory(dagger)"
cmake -S "$src/tests/consume" -B "$work/sub" -DCONSUME_MODE=subdir -DDAGGER_SOURCE_DIR="$src" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER=/nonexistent/c++ -DCMAKE_BUILD_TYPE=Release \
    >"$work/sub.log"
cmake --build "$work/sub" -j2 --target app >>"$work/sub.log"
"$work/sub/app"
echo "consume: all three ways built and ran"
