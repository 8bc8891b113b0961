# tests/semantics.cmake - Dagger.jl semantics (issue 15): dominated waits, queue units, per-task
# stream completion, task and scope queries, user data, checkpoint and restore hooks.
# Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(semantics SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_semantics.c LABELS quick TIMEOUT 60)
