# tests/harden.cmake - hardening (issue 16): out-of-memory sweeps, misuse, hostile peers.
# Included from tests/CMakeLists.txt. Every case is bounded in time.
dagger_add_tests(harden SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_harden.c LABELS quick TIMEOUT 120)
