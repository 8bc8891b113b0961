# tests/datadeps.cmake - datadeps: the pure analysis, then regions on the runtime (issue 3).
# Included from tests/CMakeLists.txt; paths are relative to this file.
set(DD_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})

# The analysis alone (overlap.c, tracker.c), through its internal interface in the static library.
dagger_add_tests(datadeps_overlap SOURCES ${DD_TEST_DIR}/test_datadeps_overlap.c LABELS quick)
target_include_directories(test_datadeps_overlap PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/src)

# Regions on the runtime; the tiled Cholesky case needs LAPACKE and (C)BLAS from OpenBLAS.
find_package(PkgConfig REQUIRED)
pkg_check_modules(DD_LAPACKE QUIET IMPORTED_TARGET lapacke)
pkg_check_modules(DD_OPENBLAS QUIET IMPORTED_TARGET openblas)
if(DD_LAPACKE_FOUND AND DD_OPENBLAS_FOUND)
  set(DD_BLAS_FOUND ON)
  dagger_add_tests(datadeps SOURCES ${DD_TEST_DIR}/test_datadeps.c LABELS quick TIMEOUT 180
                   LIBS PkgConfig::DD_LAPACKE PkgConfig::DD_OPENBLAS m)
else()
  set(DD_BLAS_FOUND OFF)
endif()
dagger_feature(datadeps-tests "test_datadeps (Cholesky through datadeps)" DD_BLAS_FOUND
               "LAPACKE/OpenBLAS not found (apt-get install liblapacke-dev libopenblas-dev)")
