# tests/mem_bufcache.cmake - the cache of large host buffers (src/mem/bufcache.c): reuse, zeroing,
# the cap and its variable, a memory limit, the last close, fault injection, threads.
# Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(mem_bufcache NAME test_mem_bufcache
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mem_bufcache.c LABELS quick TIMEOUT 60)
target_include_directories(test_mem_bufcache PRIVATE ${PROJECT_SOURCE_DIR}/src)
