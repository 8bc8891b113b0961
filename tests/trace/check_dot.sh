#!/bin/sh
# tests/trace/check_dot.sh - the DOT graph renders with Graphviz (dot -Tsvg) with one node per
# task and one edge per dependency, and failed tasks are red.
# Usage: check_dot.sh GENERATOR OUTDIR
. "$(dirname "$0")/common.sh"
need dot
generate
D=$OUT/trace.dot
dot -Tsvg "$D" >"$OUT/trace.svg" 2>"$OUT/dot.log" || { cat "$OUT/dot.log" >&2; fail "dot rejected trace.dot"; }
eq "$(grep -c 'class="node"' "$OUT/trace.svg")" "$TASKS" "rendered nodes"
eq "$(grep -c 'class="edge"' "$OUT/trace.svg")" "$EDGES" "rendered edges"
sed -n 's/^  t\([0-9]*\) -> t\([0-9]*\).*/\1 \2/p' "$D" >"$OUT/got_edges.txt"
same_lines "$OUT/expect_edges.txt" "$OUT/got_edges.txt" edges
red=$(grep -c 'fillcolor="#f56565"\|fillcolor="#feb2b2"' "$D" || true)
eq "$red" "$FAILED" "red (failed) nodes"
echo "ok: $TASKS nodes, $EDGES edges, $FAILED failed"
