# Makefile - the two commands of the README, and the rest, over CMake.
#   make run         install what is missing, build, run the quickstart examples (threads)
#   make test        the full test suite through ctest
#   make bench       benchmarks side by side with the peers (BENCH_FILTER=<substring>,
#                    BENCH_ROUNDS=<k>: every binary in turn k times, each row's best;
#                    BENCH_PIN=0: runs below the CPU count unpinned)
#   make test-asan   the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-tsan   the suite under ThreadSanitizer
#   make fuzz        every libFuzzer harness for FUZZ_TIME seconds (clang; tests/fuzz/)
#   make test-faults the allocation-failure sweep over the examples and chosen tests (ASan)
#   make install PREFIX=/opt/dagger   the library (shared + static), headers, dagger-trace,
#                    dagger.pc and the CMake package, built in build-install/ (Release)
#   DAGGER_NO_INSTALL=1 skips scripts/install-deps in every target
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

FUZZ_TIME ?= 60
PREFIX ?= /usr/local
# The ASan+UBSan build: Debug (assertions, the API-misuse checks) at -O1, as the sanitizer's
# authors advise; at -O0 the suite's cases and the fault sweep ran a fifth longer.
ASAN_CMAKE = -DCMAKE_BUILD_TYPE=Debug -DDAGGER_SANITIZE=address,undefined -DDAGGER_BUILD_BENCH=OFF \
	"-DCMAKE_C_FLAGS_DEBUG=-g -O1" "-DCMAKE_CXX_FLAGS_DEBUG=-g -O1"

.PHONY: all deps run test bench test-asan test-tsan fuzz test-faults install format clean

all: build/.configured
	cmake --build build -j$(JOBS)

deps:
	sh scripts/install-deps --all

build/.configured: CMakeLists.txt
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	@touch $@

run:
	sh scripts/install-deps --run
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build build -j$(JOBS) --target examples_all
	@for e in build/examples/example_*; do echo "== $$e"; "$$e" || exit 1; done

test:
	sh scripts/install-deps --all
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build build -j$(JOBS)
	cd build && ctest -j$(JOBS) --output-on-failure $(CTEST_FLAGS)

test-asan:
	sh scripts/install-deps --all
	cmake -S . -B build-asan $(ASAN_CMAKE) $(CMAKE_FLAGS)
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest -j$(JOBS) --output-on-failure -LE nosan $(CTEST_FLAGS)

test-tsan:
	sh scripts/install-deps --all
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDAGGER_SANITIZE=thread \
	    -DDAGGER_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    ctest -j$(JOBS) --output-on-failure -LE nosan $(CTEST_FLAGS)

fuzz:
	sh scripts/install-deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug \
	    -DDAGGER_SANITIZE=address,undefined -DDAGGER_FUZZ=ON -DDAGGER_BUILD_BENCH=OFF \
	    -DDAGGER_BUILD_EXAMPLES=OFF "-DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link" $(CMAKE_FLAGS)
	cmake --build build-fuzz -j$(JOBS) --target fuzz_all
	FUZZ_TIME=$(FUZZ_TIME) sh scripts/fuzz build-fuzz

test-faults:
	sh scripts/install-deps --all
	cmake -S . -B build-asan $(ASAN_CMAKE) $(CMAKE_FLAGS)
	cmake --build build-asan -j$(JOBS)
	sh scripts/fault-sweep --full build-asan

bench:
	sh scripts/install-deps --bench
	cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DDAGGER_BUILD_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build build-bench -j$(JOBS)
	BENCH_FILTER="$(BENCH_FILTER)" BENCH_ROUNDS="$(BENCH_ROUNDS)" BENCH_PIN="$(BENCH_PIN)" \
	    sh bench/run.sh build-bench

install:
	cmake -S . -B build-install -DCMAKE_BUILD_TYPE=Release -DDAGGER_BUILD_TESTS=OFF \
	    -DDAGGER_BUILD_BENCH=OFF -DDAGGER_BUILD_EXAMPLES=OFF -DDAGGER_INSTALL=ON $(CMAKE_FLAGS)
	cmake --build build-install -j$(JOBS)
	cmake --install build-install --prefix "$(PREFIX)"

format:
	clang-format -i include/*.h include/dagger/*.h src/*/*.[ch] src/*/*/*.[ch] tests/*.[ch] tests/*/*.[ch] examples/*.c

clean:
	rm -rf build build-asan build-tsan build-bench build-fuzz build-install
