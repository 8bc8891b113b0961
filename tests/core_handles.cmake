# tests/core_handles.cmake - a task's handles against its completion (issue 17): releases before,
# during and after the end, from several threads, past the waiter word's marks. Cases are core.*
# so the core runs (and TSan) see them. Included from tests/CMakeLists.txt.
dagger_add_tests(core NAME test_core_handles SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_handles.c
                 LABELS quick TIMEOUT 120)
