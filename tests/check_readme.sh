#!/bin/sh
# tests/check_readme.sh - the README quickstart is examples/01_spawn_fetch.c, verbatim.
#
# Usage: sh tests/check_readme.sh README.md examples/01_spawn_fetch.c
# Extracts the first ```c block of the README and diffs it with the example, so the code a
# reader copies is the code that ctest builds and runs (example.01_spawn_fetch).
# POSIX sh + awk. SPDX-License-Identifier: MIT
set -u
readme=${1:?usage: check_readme.sh README.md example.c}
example=${2:?usage: check_readme.sh README.md example.c}
tmp=$(mktemp "${TMPDIR:-/tmp}/dagger-readme.XXXXXX") || exit 1
trap 'rm -f "$tmp"' EXIT
awk 'done { next }
     !inblock && /^```c[ \t]*$/ { inblock = 1; found = 1; next }
     inblock && /^```[ \t]*$/ { inblock = 0; done = 1; next }
     inblock { print }
     END { exit found ? 0 : 1 }' "$readme" > "$tmp" || {
    echo "check_readme: no \`\`\`c block in $readme" >&2
    exit 1
}
if ! diff -u "$example" "$tmp"; then
    echo "check_readme: the first \`\`\`c block of $readme differs from $example (diff above);" \
         "copy the example into the README" >&2
    exit 1
fi
echo "check_readme: the quickstart of $readme is $example verbatim"
