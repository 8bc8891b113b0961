#!/bin/sh
# tests/mpi_run.sh - run one test case on several ranks: mpi_run.sh NP EXE CASE [: NP2 EXE2 CASE].
# Exit 77 (skipped) only when mpirun is absent. --enable-recovery keeps the survivors running
# when a rank is killed (the lost-rank cases); --oversubscribe puts 4 ranks on 2 cores.
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not found"; exit 77; }
export OMPI_MCA_btl=self,vader
export OMPI_MCA_rmaps_base_oversubscribe=1
np=$1
shift
# With --enable-recovery mpirun exits 0 even when a rank failed: judge by the cases' own output.
out=$(mktemp)
# --timeout ends a hung job (and its ranks) before ctest kills this script and orphans them.
mpirun --allow-run-as-root --oversubscribe --enable-recovery --bind-to none \
    --timeout "${DAGGER_MPI_RUN_TIMEOUT:-80}" -np "$np" "$@" >"$out" 2>&1
rc=$?
cat "$out"
if [ $rc -eq 0 ] && grep -q '^\[ RUN' "$out"; then # a test case (an example ends by its status)
    if grep -q '^\[  FAILED  \]' "$out" || ! grep -q '^\[  PASSED  \]' "$out"; then
        rc=1
    fi
fi
rm -f "$out"
exit $rc
