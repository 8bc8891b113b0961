# tests/parfor.cmake - dagger_parallel_for (issue 17): coverage of every index, splitting, nesting
# inside tasks and leaves, errors and bad arguments. Cases are parfor.*.
# Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(parfor SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_parfor.c LABELS quick TIMEOUT 60)
