#!/bin/sh
# scripts/gpu-check.sh - the GPU checks for a machine with an NVIDIA GPU (under 5 minutes).
#
# Usage: sh scripts/gpu-check.sh [builddir]     (default: build-gpu)
# Builds with CUDA for sm_90 (DAGGER_WITH_CUDA=ON: fails without nvcc), runs `ctest -L gpu`
# (the CUDA cases run here instead of exiting 77; the OpenCL cases run on whatever OpenCL device
# the ICD loader finds, pocl if nothing else) and the bench/gpu binaries, and prints their
# RESULT lines; paste them into bench/RESULTS.md. CUDA_ARCH=75 or the like overrides sm_90.
# Without an NVIDIA GPU (nvidia-smi lists none) the CUDA cases exit 77 and are reported as
# skipped, and the CUDA benchmarks print "skipped": only the OpenCL and fake-device parts run.
# With a GPU, a skipped CUDA case fails the check. The last RESULT line counts the CUDA cases
# that ran.
# Exit status: 0 when the build, the tests and the benchmarks all succeeded.
# POSIX sh. SPDX-License-Identifier: MIT
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-gpu}
arch=${CUDA_ARCH:-90}
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
[ -x /usr/local/cuda/bin/nvcc ] && PATH=/usr/local/cuda/bin:$PATH
export PATH
status=0

echo "== gpu-check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDAGGER_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DDAGGER_BUILD_EXAMPLES=ON >"$build.cmake.log" 2>&1 ||
    { tail -20 "$build.cmake.log"; exit 1; }
grep "dagger devices" "$build.cmake.log"
cmake --build "$build" -j "$jobs" >"$build.build.log" 2>&1 || { tail -30 "$build.build.log"; exit 1; }

# A CUDA case exits 77 (skipped) without a device: fine here only when no NVIDIA GPU is
# present; on a GPU machine a skipped CUDA case means the driver or the build is broken.
gpu=0
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU' && gpu=1

echo "== ctest -L gpu"
(cd "$build" && timeout 240 ctest -L gpu -j 4 --output-on-failure) >"$build/gpu-ctest.log" 2>&1 ||
    status=1
grep -E 'tests passed|\*\*\*|Skipped|Not Run' "$build/gpu-ctest.log"
ncuda=$(grep -c 'Test *#[0-9]*: gpu_cuda\.' "$build/gpu-ctest.log")
nskip=$(grep -c 'Test *#[0-9]*: gpu_cuda\..*Skipped' "$build/gpu-ctest.log")
if [ "$nskip" -gt 0 ] && [ "$gpu" = 1 ]; then
    echo "gpu-check: an NVIDIA GPU is present but $nskip CUDA case(s) skipped" >&2
    status=1
elif [ "$nskip" -gt 0 ]; then
    echo "gpu-check: no NVIDIA GPU: the $nskip CUDA cases were skipped (built only)"
fi

echo "== bench/gpu"
: >"$build/gpu-results.txt"
for b in "$build"/bench/gpu/bench_gpu_*; do
    [ -x "$b" ] || continue
    timeout 60 "$b" >"$build/gpu-bench.out" 2>&1 || { echo "gpu-check: $b failed" >&2; status=1; }
    grep -v '^RESULT|' "$build/gpu-bench.out"
    grep '^RESULT|' "$build/gpu-bench.out" >>"$build/gpu-results.txt"
done
echo "RESULT|gpu.check|ctest -L gpu|cuda cases run on a GPU|$((ncuda - nskip))|of $ncuda" \
    >>"$build/gpu-results.txt"
cat "$build/gpu-results.txt"
echo "== gpu-check: status $status (RESULT lines in $build/gpu-results.txt)"
exit $status
