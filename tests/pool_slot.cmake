# tests/pool_slot.cmake - slots of threads outside the pool (issue 17): spawns from threads that
# end, never wait, or alternate contexts; close while slots hold jobs; random DAGs from several
# threads. Cases are pool.* so the pool runs (and TSan) see them. Included from
# tests/CMakeLists.txt.
dagger_add_tests(pool NAME test_pool_slot SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pool_slot.c
                 LABELS quick TIMEOUT 120)
