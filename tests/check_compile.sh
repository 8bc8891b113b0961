#!/bin/sh
# tests/check_compile.sh - compile-time behaviour of dagger.h:
#   - dagger_spawn with more than 16 task arguments fails with a message naming the limit;
#   - ignoring dagger_wait's result is no warning (it is not DAGGER_NODISCARD).
# Usage: sh tests/check_compile.sh <cc> <include dir> <workdir>
set -eu
cc=$1
inc=$2
work=$3
mkdir -p "$work"
cat >"$work/too_many.c" <<'C'
#include <dagger.h>
static int f(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *o) { return 0; }
dagger_task_t *g(dagger_ctx_t *ctx)
{
    return dagger_spawn(ctx, f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17);
}
C
if $cc -std=c11 -fsyntax-only -I"$inc" "$work/too_many.c" 2>"$work/too_many.err"; then
    echo "17 task arguments compiled; expected a _Static_assert"
    exit 1
fi
grep -q "dagger_spawn takes at most 16 task arguments" "$work/too_many.err" || {
    echo "the error does not name the limit:"
    cat "$work/too_many.err"
    exit 1
}
cat >"$work/sixteen.c" <<'C'
#include <dagger.h>
static int f(dagger_tc_t *tc, const dagger_args_t *a, dagger_value_t *o) { return 0; }
dagger_task_t *g(dagger_ctx_t *ctx, dagger_task_t *t)
{
    dagger_wait(t); /* the result may be ignored */
    return dagger_spawn(ctx, f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
}
C
$cc -std=c11 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-parameter -I"$inc" "$work/sixteen.c"
echo "compile checks passed"
