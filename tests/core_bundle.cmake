# tests/core_bundle.cmake - bundles of spawns (src/core/task.c, "Bundles"): a worker's flat loop of
# detached spawns shared with an idle worker as blocks of arguments. Every body once with its
# arguments, failures at the group's end, no task lost when the spawner waits, alternates or
# nests groups. Cases are core.* so the core runs (and TSan) see them. Included from
# tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(core NAME test_core_bundle SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_bundle.c
                 LABELS quick TIMEOUT 120)
target_include_directories(test_core_bundle PRIVATE ${PROJECT_SOURCE_DIR}/src)
