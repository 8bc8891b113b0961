#!/bin/sh
# tests/check_bench_run.sh - bench/run.sh's rounds and capacity note, on fake binaries.
# Usage: sh tests/check_bench_run.sh <bench/run.sh>
# Two fake bench_demo_* binaries report a different figure at each call; with BENCH_ROUNDS=3 the
# runner must call them in turn (dagger, peer, dagger, ...), keep each row's best over the rounds
# (the lowest time, the highest rate), and print the capacity that a fake dagger-bench-capacity
# reports, with the note for shared cores; BENCH_ROUNDS=0 is refused with a message. A run at
# t threads below the CPUs the runner may use goes on t of them (taskset), unless BENCH_PIN=0.
# SPDX-License-Identifier: MIT
set -u
run=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-run-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$tmp/build/demo" "$tmp/build/machine"
fail() {
    echo "check_bench_run: $*" >&2
    exit 1
}
# fake <impl> <first> <second> <rest>: a binary whose figure is <first>, then <second>, then <rest>
fake() {
    cat >"$tmp/build/demo/bench_demo_$1" <<EOS
#!/bin/sh
n=\$(cat "$tmp/count.$1" 2>/dev/null || echo 0)
n=\$((n + 1))
echo \$n >"$tmp/count.$1"
echo "$1" >>"$tmp/order"
sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status >>"$tmp/cpus.$1"
case \$n in 1) v=$2 ;; 2) v=$3 ;; *) v=$4 ;; esac
echo "RESULT|demo.time|$1|n=1,t=\$BENCH_THREADS|\$v|ns/task"
echo "RESULT|demo.rate|$1|n=1,t=\$BENCH_THREADS|\$v|M/s"
EOS
    chmod +x "$tmp/build/demo/bench_demo_$1"
}
fake dagger 30 10 20
fake peer 40 50 45
printf '#!/bin/sh\necho "CAPACITY|2|1.10"\n' >"$tmp/build/machine/dagger-bench-capacity"
chmod +x "$tmp/build/machine/dagger-bench-capacity"

out=$(BENCH_THREADS=1 BENCH_ROUNDS=3 sh "$run" "$tmp/build" 2>"$tmp/err") ||
    fail "run.sh failed: $(cat "$tmp/err")"
order=$(tr '\n' ' ' <"$tmp/order")
[ "$order" = "dagger peer dagger peer dagger peer " ] ||
    fail "the binaries did not run in turn: $order"
echo "$out" | grep -q '^| demo.time | n=1,t=1 | ns/task | lower | 10 | 40 | 0.25 |$' ||
    fail "the time row is not the lowest of the rounds: $(echo "$out" | grep demo.time)"
echo "$out" | grep -q '^| demo.rate | n=1,t=1 | M/s | higher | 30 | 50 | 0.60 |$' ||
    fail "the rate row is not the highest of the rounds: $(echo "$out" | grep demo.rate)"
echo "$out" | grep -q 'of 3 rounds that ran every binary in turn' || fail "no rounds note: $out"
echo "$out" | grep -q 'work of 1.10, 1.10, 1.10, 1.10 of 2 CPUs' ||
    fail "no capacity note (4 probes): $out"
echo "$out" | grep -q 'shared cores' || fail "no shared-cores note at capacity 1.10 of 2: $out"
grep -q 'machine: the CPUs do 1.10 of 2' "$tmp/err" || fail "no capacity line on stderr"

# Pinning: at t=1 each run saw one CPU (when the runner may use two or more and has taskset);
# with BENCH_PIN=0 it saw them all.
all=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
case $all in *[-,]*) several=1 ;; *) several=0 ;; esac
if [ "$several" = 1 ] && command -v taskset >/dev/null 2>&1; then
    while read -r c; do
        case $c in *[-,]*) fail "a run at t=1 was not pinned to one CPU (it saw $c)" ;; esac
    done <"$tmp/cpus.dagger"
    echo "$out" | grep -q 'ran on t of them (taskset)' || fail "no pinning note: $out"
    : >"$tmp/cpus.peer"
    BENCH_PIN=0 BENCH_THREADS=1 sh "$run" "$tmp/build" >/dev/null 2>"$tmp/err" ||
        fail "run.sh BENCH_PIN=0 failed: $(cat "$tmp/err")"
    [ "$(cat "$tmp/cpus.peer")" = "$all" ] ||
        fail "BENCH_PIN=0: the run saw $(cat "$tmp/cpus.peer"), not every CPU ($all)"
fi

if BENCH_ROUNDS=0 sh "$run" "$tmp/build" >/dev/null 2>"$tmp/err"; then
    fail "BENCH_ROUNDS=0 was accepted"
fi
grep -q 'BENCH_ROUNDS must be a positive integer' "$tmp/err" ||
    fail "BENCH_ROUNDS=0: no message naming it: $(cat "$tmp/err")"
echo "check_bench_run: ok"
