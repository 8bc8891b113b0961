# tests/core_wait.cmake - waits of threads outside the pool (issue 17): the thread that ends a
# sync group runs the group's queued tasks. Cases are core.* so the core runs (and TSan) see them.
# Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(core NAME test_core_wait SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_wait.c
                 LABELS quick TIMEOUT 60)
