# tests/darray.cmake - distributed arrays (issue 10); values checked against plain loops and
# LAPACKE/CBLAS from OpenBLAS. Included from tests/CMakeLists.txt.
find_package(PkgConfig REQUIRED)
pkg_check_modules(DA_LAPACKE REQUIRED IMPORTED_TARGET lapacke)
pkg_check_modules(DA_OPENBLAS REQUIRED IMPORTED_TARGET openblas)
dagger_add_tests(darray SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_darray.c LABELS quick TIMEOUT 120
                 LIBS PkgConfig::DA_LAPACKE PkgConfig::DA_OPENBLAS m)
# Reduction and commute accesses of datadeps regions (issue 10, item 5).
dagger_add_tests(datadeps_modes SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_datadeps_modes.c
                 LABELS quick TIMEOUT 60)
# Across ranks (DAGGER_DARRAY_RANKS): under mpirun on 2 ranks (darray_mpi) and 4 (darray_mpi4).
if(DAGGER_HAVE_MPI)
  set(da_mpi_run sh ${CMAKE_CURRENT_LIST_DIR}/mpi_run.sh)
  set(da_mpi_env DAGGER_PEER_TIMEOUT=5 DAGGER_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1)
  dagger_add_tests(darray_mpi SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_darray_mpi.c LABELS mpi
                   TIMEOUT 90 LAUNCHER ${da_mpi_run} 2 ENV ${da_mpi_env}
                   LIBS PkgConfig::DA_LAPACKE PkgConfig::DA_OPENBLAS m)
  dagger_add_tests(darray_mpi4 NAME test_darray_mpi4
                   SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_darray_mpi.c LABELS mpi TIMEOUT 120
                   LAUNCHER ${da_mpi_run} 4 ENV ${da_mpi_env}
                   LIBS PkgConfig::DA_LAPACKE PkgConfig::DA_OPENBLAS m)
endif()
# Saving and loading DArrays as .npy files (issue 11, item 3): per-block files with an index,
# one whole-array file by offset; numpy interop when python3-numpy is there (else 77).
dagger_add_tests(darray_io SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_darray_io.c LABELS quick
                 TIMEOUT 60)
