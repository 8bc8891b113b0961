# tests/pool_ext.cmake - the deque of a thread outside the pool that opens a sync group (issue 17):
# batch steals, the ending thread's runs, resumptions and dependents it hands to the workers, more
# groups than slots. Cases are pool.* so the pool runs (and TSan) see them. Included from
# tests/CMakeLists.txt.
dagger_add_tests(pool NAME test_pool_ext SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pool_ext.c
                 LABELS quick TIMEOUT 120)
