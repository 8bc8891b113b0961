#!/bin/sh
# tests/mpi_run.sh - run one test case on several ranks: mpi_run.sh NP EXE CASE [: NP2 EXE2 CASE].
# Exit 77 (skipped) only when mpirun is absent. --enable-recovery keeps the survivors running
# when a rank is killed (the lost-rank cases); --oversubscribe puts 4 ranks on 2 cores.
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not found"; exit 77; }
export OMPI_MCA_btl=self,vader
# Keep MPI's plugins loaded to the end, so LeakSanitizer can name (and tests/mpi_lsan.supp skip)
# their allocations instead of reporting frames of an unloaded module.
# MPI's libraries lack frame pointers: unwind malloc stacks slowly so they name the library.
export OMPI_MCA_mca_base_component_disable_dlclose=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
# Sanitizers skip Open MPI's own leaks and locking (only its libraries are listed).
here=$(cd "$(dirname "$0")" && pwd)
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/mpi_lsan.supp:print_suppressions=0"
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}suppressions=$here/mpi_tsan.supp"
export OMPI_MCA_rmaps_base_oversubscribe=1
np=$1
# LeakSanitizer checks the cases of 2 ranks; their 4-rank runs (the same cases, test_*4) skip it.
# Its scan at exit cost each rank about 1.4 s of system time here (page faults), against 0.9 s
# for a whole 2-rank case without it: 4-rank cases were 590 of the 1290 test-seconds of
# `make test-asan`. ASan still reports every memory error of those ranks.
[ "$np" -gt 2 ] 2>/dev/null && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
shift
# A session directory of its own for each job: two jobs that ctest -j starts at the same moment
# raced on the mkdir of the shared /tmp/ompi.<host>.<uid> ("File exists", orte_init failed, the
# case failed before it ran; seen once in a TSan run of mpi4.error_chain_across_ranks).
sess=$(mktemp -d "${TMPDIR:-/tmp}/dagger-mpi.XXXXXX") || exit 1
export OMPI_MCA_orte_tmpdir_base="$sess" PRTE_MCA_prte_tmpdir_base="$sess"
# With --enable-recovery mpirun exits 0 even when a rank failed: judge by the cases' own output.
out=$(mktemp)
# --timeout ends a hung job (and its ranks) before ctest kills this script and orphans them;
# timeout(1) ends mpirun itself, which can wait forever on ranks that died in recovery mode.
limit=${DAGGER_MPI_RUN_TIMEOUT:-80}
tmo=""
command -v timeout >/dev/null 2>&1 && tmo="timeout -k 5 $((limit + 5))"
$tmo mpirun --allow-run-as-root --oversubscribe --enable-recovery --bind-to none \
    --timeout "$limit" -np "$np" "$@" >"$out" 2>&1 &
job=$!
# A failed assertion on the driver (rank 0) can leave its context open, and the serving ranks
# then wait for a driver that has moved on: once a case reports FAILED, the job gets a grace
# period to end by itself, then is stopped, instead of running into --timeout.
grace=${DAGGER_MPI_FAIL_GRACE:-10}
failed_at=""
while kill -0 "$job" 2>/dev/null; do
    if [ -z "$failed_at" ] && grep -q '^\[  FAILED  \]' "$out" 2>/dev/null; then
        failed_at=$(date +%s)
    fi
    if [ -n "$failed_at" ] && [ $(($(date +%s) - failed_at)) -ge "$grace" ]; then
        echo "mpi_run.sh: a case failed; stopping the job after ${grace} s" >>"$out"
        kill "$job" 2>/dev/null
        break
    fi
    sleep 0.2
done
wait "$job"
rc=$?
cat "$out"
# A sanitizer report from any rank fails the run, whatever mpirun says.
if [ $rc -eq 0 ] && grep -qE 'ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$out"; then
    rc=1
fi
if [ $rc -eq 0 ] && grep -q '^\[ RUN' "$out"; then # a test case (an example ends by its status)
    if grep -q '^\[  FAILED  \]' "$out" || ! grep -q '^\[  PASSED  \]' "$out"; then
        rc=1
    fi
fi
rm -f "$out"
rm -rf "$sess"
exit $rc
