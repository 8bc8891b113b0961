# tests/trace/common.sh - shared by the trace check scripts: run the generator, compare files.
# Usage (sourced): GEN OUTDIR [TOOL] are $1 $2 $3.
set -eu
GEN=$1
OUT=$2
TOOL=${3:-}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 is not installed"; exit 77; }
}

# Run the generator into a fresh OUTDIR and load the expected counts.
generate() {
    rm -rf "$OUT"
    mkdir -p "$OUT"
    "$GEN" "$OUT" "$@" >"$OUT/gen.log" 2>&1 || { cat "$OUT/gen.log" >&2; fail "generator failed"; }
    . "$OUT/expect.env"
}

# same_lines EXPECTED GOT WHAT: the two files hold the same lines (in any order).
same_lines() {
    sort "$1" >"$1.sorted"
    sort "$2" >"$2.sorted"
    if ! diff "$1.sorted" "$2.sorted" >"$OUT/$3.diff"; then
        head -20 "$OUT/$3.diff" >&2
        fail "$3 differ from the truth (see $OUT/$3.diff)"
    fi
}

eq() {
    [ "$1" -eq "$2" ] || fail "$3: got $1, expected $2"
}
