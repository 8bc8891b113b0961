# tests/core_xcredit.cmake - close and the task counts with threads outside the pool (issue 17):
# live, ended and helping threads that spawned or hold handles. Cases are core.* so the core runs
# (and TSan) see them. Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(core NAME test_core_xcredit SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_xcredit.c
                 LABELS quick TIMEOUT 60)
