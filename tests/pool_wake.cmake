# tests/pool_wake.cmake - wake-ups of parked workers under the rationing rule (issue 17): a burst
# reaches every parked worker, spawns from outside the pool after a park run. Cases are pool.*
# so the pool runs (and TSan) see them. Included from tests/CMakeLists.txt.
dagger_add_tests(pool NAME test_pool_wake SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pool_wake.c
                 LABELS quick TIMEOUT 60)
# Lingering workers (dagger__pool_linger): they park once the deadline passes.
dagger_add_tests(pool NAME test_pool_linger SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pool_linger.c
                 LABELS quick TIMEOUT 60)
target_include_directories(test_pool_linger PRIVATE ${PROJECT_SOURCE_DIR}/src)
# The same cases with the pushes' own fence (DAGGER_MEMBARRIER=0: no asymmetric fences), the
# path of a machine whose kernel or container refuses membarrier. Cases are pool_fence.*.
dagger_add_tests(pool_fence NAME test_pool_wake_fence SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pool_wake.c
                 LABELS quick TIMEOUT 60 ENV DAGGER_MEMBARRIER=0)
