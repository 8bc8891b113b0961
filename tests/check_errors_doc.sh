#!/bin/sh
# tests/check_errors_doc.sh - docs/errors.md is what tools/gen-errors-doc.sh makes of errors.h.
#
# Usage: sh tests/check_errors_doc.sh tools/gen-errors-doc.sh include/dagger/errors.h docs/errors.md
# POSIX sh. SPDX-License-Identifier: MIT
set -u
gen=${1:?usage: check_errors_doc.sh gen.sh errors.h errors.md}
header=${2:?usage: check_errors_doc.sh gen.sh errors.h errors.md}
doc=${3:?usage: check_errors_doc.sh gen.sh errors.h errors.md}
tmp=$(mktemp "${TMPDIR:-/tmp}/dagger-errors.XXXXXX") || exit 1
trap 'rm -f "$tmp"' EXIT
sh "$gen" "$header" > "$tmp" || exit 1
if ! diff -u "$doc" "$tmp"; then
    echo "check_errors_doc: $doc is out of date (diff above); run" \
         "sh tools/gen-errors-doc.sh > docs/errors.md" >&2
    exit 1
fi
echo "check_errors_doc: $doc matches DAGGER_ERROR_MAP"
