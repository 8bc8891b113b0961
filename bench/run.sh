#!/bin/sh
# bench/run.sh - run every bench_<capability>_<impl> of a build dir and print dagger/peer ratios.
#
# Usage: sh bench/run.sh <builddir>
#   BENCH_FILTER=substr  run only the binaries whose name contains substr (core, omp, dagger),
#                        or a row <capability>.<row> (core.fib: asks bench_core_* for --list;
#                        core.nested$: that row only, not core.nested_wait too); several
#                        patterns separated by "|" (core.fib$|core.empty$)
#   BENCH_THREADS="1 2"  thread counts to run each binary with (default: 1 2, plus nproc if > 2)
#   BENCH_REPS=n         repetitions per row (each binary has its own default)
#   BENCH_TIMEOUT=s      seconds allowed per binary run (default 600, needs timeout(1))
#   BENCH_ROUNDS=k       run the whole list k times in turn (default 1), so that dagger and each
#                        peer alternate in time; the table keeps each row's best over the rounds.
#                        A virtual machine's speed moves by 2x for minutes at a time: one round
#                        compares rows taken minutes apart
#   BENCH_RECORD=1       append a dated section (machine, command, table) to bench/RESULTS.md
#   BENCH_PIN=0          run t < CPUs unpinned (default: on t of the CPUs the runner may use)
# Before each round and after the last, dagger-bench-capacity (bench/machine, when built) prints
# how much work the CPUs do at once against one CPU: a virtual machine may run two CPUs on one
# core, and t>=2 rows taken then read their t=1 figures whatever the runtime does.
# Each binary prints `RESULT|<bench>|<impl>|<param>|<figure>|<unit>` lines; rows of dagger and
# of a peer with the same bench and param are paired in the ratio table (dagger / peer).
# Exit status: 0, or 1 when a binary failed (crash, wrong result, timeout) or none was found.
# POSIX sh + awk only. SPDX-License-Identifier: MIT
set -u

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: sh bench/run.sh <builddir>   (BENCH_FILTER, BENCH_THREADS, BENCH_RECORD=1)" >&2
    exit 2
fi
builddir=$1
here=$(cd "$(dirname "$0")" && pwd)
filter=${BENCH_FILTER:-}
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
threads_list=${BENCH_THREADS:-}
if [ -z "$threads_list" ]; then
    threads_list="1 2"
    [ "$ncpu" -gt 2 ] 2>/dev/null && threads_list="1 2 $ncpu"
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dagger-bench.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
results=$tmp/results
failures=$tmp/failures
: >"$results"
: >"$failures"

# StarPU: quiet, and its calibration files under the build dir instead of $HOME.
export STARPU_SILENT="${STARPU_SILENT:-1}"
export STARPU_HOME="${STARPU_HOME:-$(cd "$builddir" && pwd)/.starpu}"

# Binaries: executable files named bench_<capability>_<impl> (no dot); the shallowest path wins
# when two build trees inside builddir hold the same name.
find "$builddir" -type f -name 'bench_*_*' ! -name '*.*' -perm -u+x 2>/dev/null |
    awk -F/ '{ print NF "\t" $NF "\t" $0 }' | sort -k1,1n -k2,2 |
    awk -F'\t' '!seen[$2]++ { print $2 "\t" $3 }' | sort >"$tmp/bins"

if [ ! -s "$tmp/bins" ]; then
    echo "run.sh: no bench_* binaries under $builddir (build with DAGGER_BUILD_BENCH=ON)" >&2
    exit 1
fi

if command -v timeout >/dev/null 2>&1; then
    run_timeout="timeout ${BENCH_TIMEOUT:-600}"
    list_timeout="timeout 10"
else
    run_timeout=""
    list_timeout=""
fi

# Whether binary $1 (at $2) matches one of the '|'-separated patterns of the filter: a part of
# its name, or a row name <capability>.<row> (core.fib; core.fib$ for that row only), for which
# the binaries of that capability are asked for their rows (--list); other binaries are never
# started just to be asked.
matches() {
    old_ifs=$IFS
    IFS='|'
    set -f
    for pat in $filter; do
        IFS=$old_ifs
        case "$1" in *"$pat"*) set +f; return 0 ;; esac
        case "$pat" in *.*) ;; *) continue ;; esac
        case "$1" in bench_"${pat%%.*}"_*) ;; *) continue ;; esac
        if $list_timeout "$2" --list 2>/dev/null | grep -F -q -- "${pat%\$}"; then
            set +f
            return 0
        fi
    done
    IFS=$old_ifs
    set +f
    return 1
}

rounds=${BENCH_ROUNDS:-1}
case $rounds in '' | *[!0-9]* | 0)
    echo "run.sh: BENCH_ROUNDS must be a positive integer (got '$rounds')" >&2
    exit 2
    ;;
esac
capbin=$(find "$builddir" -type f -name dagger-bench-capacity -perm -u+x 2>/dev/null | head -n 1)

# A run at t threads, t below the CPUs the runner may use, goes on the first t of them (taskset),
# so that t counts CPUs for every runtime: dagger's t workers share them with the thread that
# waits (main runs tasks at a fetch or a group's end), as oneTBB's t threads (main among them)
# and libgomp's team do. Unpinned, dagger's t=1 rows could use a second CPU: core.chain at t=1
# read 27 ns a task unpinned and 42-51 pinned, main spawning while the worker ran the chain
# (bench/RESULTS.md, 2026-12-06 11:00). BENCH_PIN=0, or no taskset, runs them unpinned.
allowed=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null |
    awk -F, '{ for (i = 1; i <= NF; i++) { n = split($i, r, "-"); hi = n > 1 ? r[2] : r[1]
               for (c = r[1] + 0; c <= hi + 0; c++) printf "%s ", c } }')
nallowed=$(echo $allowed | wc -w)
pinning=1
if [ "${BENCH_PIN:-1}" = 0 ] || ! command -v taskset >/dev/null 2>&1 || [ "$nallowed" -lt 2 ]; then
    pinning=0
fi
# The command prefix that pins a run at $1 threads ("" when it runs unpinned).
pin_cmd() {
    [ "$pinning" = 1 ] && [ "$1" -lt "$nallowed" ] || return 0
    echo "taskset -c $(echo $allowed | awk -v t="$1" '{ for (i = 1; i <= t; i++) printf "%s%s", (i > 1 ? "," : ""), $i }')"
}
: >"$tmp/capacity"
# The capacity now, as "<x> of <n>" in $tmp/capacity, one line per probe.
capacity() {
    [ -n "$capbin" ] || return 0
    c=$("$capbin" 2>/dev/null | awk -F'|' '$1 == "CAPACITY" { print $3 " of " $2 }')
    [ -n "$c" ] || return 0
    echo "$c" >>"$tmp/capacity"
    echo "== machine: the CPUs do $c CPUs' work at once ($1)" >&2
}

nrun=0
round=1
while [ "$round" -le "$rounds" ]; do
capacity "before round $round of $rounds"
while IFS="$(printf '\t')" read -r name path; do
    if [ -n "$filter" ] && ! matches "$name" "$path"; then
        continue
    fi
    for t in $threads_list; do
        nrun=$((nrun + 1))
        out=$tmp/out.$nrun
        err=$tmp/err.$nrun
        start=$(date +%s)
        echo "== $name t=$t" >&2
        pin=$(pin_cmd "$t")
        [ -n "$pin" ] && echo "   ($pin)" >&2
        # shellcheck disable=SC2086
        BENCH_FILTER="$filter" BENCH_THREADS="$t" DAGGER_NUM_THREADS="$t" OMP_NUM_THREADS="$t" \
            STARPU_NCPU="$t" $run_timeout $pin "$path" --threads "$t" >"$out" 2>"$err" </dev/null
        rc=$?
        grep '^RESULT|' "$out" | tee -a "$results"
        if [ $rc -ne 0 ]; then
            case $rc in
            124) why="timed out after ${BENCH_TIMEOUT:-600}s" ;;
            126 | 127) why="cannot execute (exit status $rc)" ;;
            129 | 1[3-9][0-9] | 2[0-9][0-9]) why="killed by signal $((rc - 128))" ;;
            *) why="exit status $rc" ;;
            esac
            echo "FAILED: $name t=$t ($why)" | tee -a "$failures" >&2
            grep -v '^RESULT|' "$out" | tail -n 5 >&2
            tail -n 20 "$err" >&2
        elif grep -q '^ERROR' "$err"; then
            echo "FAILED: $name t=$t (reported an error)" | tee -a "$failures" >&2
            grep '^ERROR' "$err" >&2
        fi
        echo "   ($(($(date +%s) - start)) s)" >&2
    done
done <"$tmp/bins"
round=$((round + 1))
done
capacity "after the last round"

if [ $nrun -eq 0 ]; then
    echo "run.sh: no benchmark matches BENCH_FILTER='$filter'" >&2
    exit 1
fi

# The ratio table, in Markdown. Rows: (bench, param, unit) that dagger and at least one peer have.
awk -F'|' '
function better(u) { return (u ~ /\/s$/ || u ~ /^G?FLOP/ || u ~ /^%/) ? "higher" : "lower" }
function fmt(x) { return sprintf("%.4g", x) }
$1 == "RESULT" && NF >= 6 {
    b = $2; im = $3; p = $4; k = b SUBSEP p SUBSEP $6 # one row per unit: a bench may give two
    if (!(b in bidx)) bidx[b] = ++nb
    if (!(k in unit)) { nk++; keys[nk] = k; kb[k] = b; kp[k] = p; unit[k] = $6 }
    # the best over rounds: each line is already the best of its binary repetitions
    if (!((k, im) in val) || (better($6) == "lower" ? $5 + 0 < val[k, im] + 0 : $5 + 0 > val[k, im] + 0))
        val[k, im] = $5
    if (im != "dagger" && !(im in isp)) { isp[im] = 1; peers[++np] = im }
}
END {
    # Sort rows by the order benches first appeared, then by param (size, then threads).
    for (i = 1; i <= nk; i++) sk[i] = sprintf("%04d|%s|%s", bidx[kb[keys[i]]], kp[keys[i]], unit[keys[i]])
    for (i = 2; i <= nk; i++) {
        x = keys[i]; s = sk[i]
        for (j = i - 1; j >= 1 && sk[j] > s; j--) { keys[j + 1] = keys[j]; sk[j + 1] = sk[j] }
        keys[j + 1] = x; sk[j + 1] = s
    }
    hdr = "| bench | param | unit | better | dagger |"; sep = "|---|---|---|---|---:|"
    for (q = 1; q <= np; q++) {
        hdr = hdr " " peers[q] " | dagger/" peers[q] " |"; sep = sep "---:|---:|"
    }
    rows = 0
    for (i = 1; i <= nk; i++) {
        k = keys[i]
        if (!((k, "dagger") in val)) continue
        any = 0
        for (q = 1; q <= np; q++) if ((k, peers[q]) in val) any = 1
        if (!any) continue
        if (rows++ == 0) {
            print "Ratio = dagger / peer. Times (ns/task, us/run, ms/run): lower is better, a ratio"
            print "below 1 means dagger is faster. Rates (unit ending in /s): higher is better."
            print "libgomp runs tasks inline on one thread, so its t=1 rows are not task costs: the"
            print "t>=2 rows are the fair ones. Each figure is the best of BENCH_REPS runs" (rounds > 1 ? "," : ".")
            if (rounds > 1) print "and of " rounds " rounds that ran every binary in turn (BENCH_ROUNDS)."
            if (pinned != "") print "A run at t threads below " pinned " CPUs ran on t of them (taskset): t counts CPUs for every runtime."
            if (cap != "") print "The CPUs did the work of " cap " CPUs at once (dagger-bench-capacity, before each round and after the last)" (lowcap ? ":" : ".")
            if (lowcap) print "below 90 % of them, the t>=2 rows of such a round ran on shared cores."
            print ""
            print hdr; print sep
        }
        d = val[k, "dagger"]
        line = "| " kb[k] " | " kp[k] " | " unit[k] " | " better(unit[k]) " | " fmt(d) " |"
        for (q = 1; q <= np; q++) {
            if ((k, peers[q]) in val) {
                pv = val[k, peers[q]]
                line = line " " fmt(pv) " | " (pv > 0 ? sprintf("%.2f", d / pv) : "-") " |"
            } else {
                line = line " - | - |"
            }
        }
        print line
    }
    if (rows == 0) print "(no (bench, param) pair has both dagger and a peer: no ratio table)"
}' rounds="$rounds" pinned="$([ "$pinning" = 1 ] && echo "$nallowed")" cap="$(awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $1 } END { if (NR) printf " of %s", $3 }' "$tmp/capacity")" \
    lowcap="$(awk '$1 < 0.9 * $3 { low = 1 } END { print low + 0 }' "$tmp/capacity")" \
    "$results" >"$tmp/table"

echo ""
cat "$tmp/table"
if [ -s "$failures" ]; then
    echo ""
    echo "Failures:"
    cat "$failures"
fi

if [ "${BENCH_RECORD:-0}" = 1 ]; then
    model=$(grep -m 1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/^[^:]*: *//')
    [ -n "$model" ] || model=$(uname -m)
    commit=$(cd "$here" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(cd "$here" && git status --porcelain 2>/dev/null)
    if [ "$commit" != unknown ] && [ -n "$dirty" ]; then
        commit="$commit (with uncommitted changes)"
    fi
    cmd="sh bench/run.sh $builddir"
    [ -n "$filter" ] && cmd="BENCH_FILTER=$filter $cmd"
    [ -n "${BENCH_THREADS:-}" ] && cmd="BENCH_THREADS=\"$BENCH_THREADS\" $cmd"
    [ -n "${BENCH_REPS:-}" ] && cmd="BENCH_REPS=$BENCH_REPS $cmd"
    [ "$rounds" -gt 1 ] && cmd="BENCH_ROUNDS=$rounds $cmd"
    {
        echo ""
        echo "## $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo ""
        echo "- command: \`$cmd\`"
        echo "- machine: $ncpu CPUs (nproc), $model, $(uname -sr)"
        echo "- commit: $commit"
        echo "- threads: $threads_list"
        if [ "$pinning" = 1 ]; then
            echo "- CPUs: a run at t threads below the $nallowed allowed ran on t of them (taskset)"
        else
            echo "- CPUs: every run unpinned (BENCH_PIN=0, no taskset, or one CPU allowed)"
        fi
        [ "$rounds" -gt 1 ] && echo "- rounds: $rounds (every binary in turn; each row's best over them)"
        if [ -s "$tmp/capacity" ]; then
            echo "- the CPUs did the work of this many at once (before each round, after the last):" \
                "$(awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $0 }' "$tmp/capacity")"
        fi
        if [ -s "$failures" ]; then
            echo "- failures:"
            sed 's/^/  - /' "$failures"
        fi
        echo ""
        cat "$tmp/table"
        echo ""
        echo "<details><summary>RESULT lines</summary>"
        echo ""
        echo '```'
        cat "$results"
        echo '```'
        echo ""
        echo "</details>"
    } >>"$here/RESULTS.md"
    echo ""
    echo "recorded in $here/RESULTS.md"
fi

[ -s "$failures" ] && exit 1
exit 0
