# tests/core_spawn.cmake - spawn's one-pass argument path and its fallbacks, the inline accessors
# and typed fetches (issue 17). Cases are core.* so the core runs (and TSan) see them. Included
# from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(core NAME test_core_spawn SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_spawn.c
                 LABELS quick TIMEOUT 60)
