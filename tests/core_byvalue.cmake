# tests/core_byvalue.cmake - inputs whose results a dependent takes by value (issue 17): the
# dependent holds no reference on such an input, and every other input is still held until the
# dependent completes. Cases are core.* so the core runs (and TSan) see them. Included from
# tests/CMakeLists.txt.
dagger_add_tests(core NAME test_core_byvalue SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_byvalue.c
                 LABELS quick TIMEOUT 60)
target_include_directories(test_core_byvalue PRIVATE ${PROJECT_SOURCE_DIR}/src)
