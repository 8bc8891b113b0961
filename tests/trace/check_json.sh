#!/bin/sh
# tests/trace/check_json.sh - the Chrome trace JSON parses (jq) and shows exactly one complete
# "task" span per run on the right thread, and every dependency whose ends ran as a bound flow.
# Usage: check_json.sh GENERATOR OUTDIR
. "$(dirname "$0")/common.sh"
need jq
generate
J=$OUT/trace.json
jq empty "$J" || fail "trace.json does not parse"

jq -r '.traceEvents[] | select(.ph == "X" and .cat == "task") | "\(.args.id) \(.tid - 1)"' "$J" \
    >"$OUT/got_runs.txt"
eq "$(wc -l <"$OUT/got_runs.txt")" "$RUNS" "task spans"
same_lines "$OUT/expect_runs.txt" "$OUT/got_runs.txt" runs

# Every span's args.thread agrees with its track, every span has a name and a duration.
bad=$(jq '[.traceEvents[] | select(.ph == "X" and .cat == "task")
           | select((.args.thread + 1) != .tid and .args.thread >= 0 or .dur < 0 or .name == "")]
          | length' "$J")
eq "$bad" 0 "malformed spans"
names=$(jq '[.traceEvents[] | select(.ph == "M" and .name == "thread_name")] | length' "$J")
[ "$names" -ge "$THREADS" ] || fail "only $names thread tracks for $THREADS threads"

# Flows: one "s" and one "f" per id; "s" inside a span of the producer on its track, "f" at
# the start of a span of the consumer on its track.
jq -r '
  [.traceEvents[] | select(.ph == "X" and .cat == "task")] as $sp
  | [.traceEvents[] | select(.cat == "dep")] | group_by(.id)[]
  | (map(select(.ph == "s"))) as $S | (map(select(.ph == "f"))) as $F
  | if ($S | length) != 1 or ($F | length) != 1 then error("flow \(.[0].id): \($S | length) starts, \($F | length) ends") else . end
  | $S[0] as $s | $F[0] as $f
  | ([$sp[] | select(.args.id == $s.args.from and .tid == $s.tid and .ts <= $s.ts and $s.ts <= .ts + .dur)] | length) as $a
  | ([$sp[] | select(.args.id == $f.args.to and .tid == $f.tid and .ts == $f.ts)] | length) as $b
  | if $a < 1 or $b < 1 then error("flow \($s.args.from)->\($s.args.to) is not bound to its spans") else "\($s.args.from) \($s.args.to)" end
' "$J" >"$OUT/got_flows.txt" || fail "flow check failed"
eq "$(wc -l <"$OUT/got_flows.txt")" "$FLOWS" "flows"
same_lines "$OUT/expect_flows.txt" "$OUT/got_flows.txt" flows

eq "$(jq '.otherData.tasks' "$J")" "$TASKS" "otherData.tasks"
eq "$(jq '.otherData.edges' "$J")" "$EDGES" "otherData.edges"
echo "ok: $RUNS spans, $FLOWS flows, $TASKS tasks"
