# tests/core_detached.cmake - spawns without a handle (dagger_spawn_detached and its forms): every
# body once, failures at the group's or block's end or in the unfetched count, order, inputs, out
# of memory. Cases are core.* so the core runs (and TSan) see them. Included from
# tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(core NAME test_core_detached
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_detached.c LABELS quick TIMEOUT 60)
