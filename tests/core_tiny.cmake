# tests/core_tiny.cmake - tiny functions run at their spawn on a thread outside the pool (issue
# 17): values, errors, the way back for a function whose tasks became long, and the spawns never
# run this way. Cases are core.* so the core runs (and TSan) see them. Included from
# tests/CMakeLists.txt.
dagger_add_tests(core NAME test_core_tiny SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_tiny.c
                 LABELS quick TIMEOUT 120)
target_include_directories(test_core_tiny PRIVATE ${PROJECT_SOURCE_DIR}/src)
