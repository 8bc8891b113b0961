#!/bin/sh
# tests/trace/check_tool.sh - dagger-trace reads the saved .dtrace: its counts match the truth,
# and converting it gives the very files written from the live trace.
# Usage: check_tool.sh GENERATOR OUTDIR DAGGER_TRACE_TOOL
. "$(dirname "$0")/common.sh"
[ -n "$TOOL" ] || fail "no dagger-trace given"
generate
"$TOOL" --stats "$OUT/trace.dtrace" >"$OUT/stats.txt" || fail "dagger-trace --stats failed"
. "$OUT/stats.txt"
eq "$tasks" "$TASKS" "tasks"
eq "$runs" "$RUNS" "runs"
eq "$edges" "$EDGES" "edges"
eq "$failed" "$FAILED" "failed"
eq "$dropped" 0 "dropped"
for ext in json dot html txt; do
    "$TOOL" "$OUT/trace.dtrace" "$OUT/conv.$ext" || fail "dagger-trace -> .$ext failed"
    cmp -s "$OUT/trace.$ext" "$OUT/conv.$ext" || fail "converted .$ext differs from the live one"
done
"$TOOL" "$OUT/trace.dtrace" >"$OUT/summary.txt" || fail "dagger-trace summary failed"
grep -q "Execution Summary" "$OUT/summary.txt" || fail "no summary"
printf 'garbage' >"$OUT/bad.dtrace"
if "$TOOL" "$OUT/bad.dtrace" 2>/dev/null; then fail "a bad file was accepted"; fi
echo "ok: tool counts and conversions match"
