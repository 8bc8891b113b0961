# tests/core_accessors.cmake - the argument accessors inline and as calls (issue 17); the second
# source is built with DAGGER_NO_INLINE_ACCESSORS. Included from tests/CMakeLists.txt.
dagger_add_tests(core NAME test_core_accessors
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_accessors.c
                         ${CMAKE_CURRENT_LIST_DIR}/test_core_accessors_calls.c
                 LABELS quick TIMEOUT 60)
