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
# Across ranks: skipped (77) until the MPI layer lets DAGGER_DARRAY_RANKS name other ranks.
dagger_add_tests(darray_mpi SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_darray_mpi.c LABELS mpi
                 TIMEOUT 60)
# Saving and loading DArrays as .npy files (issue 11, item 3): per-block files with an index,
# one whole-array file by offset; numpy interop when python3-numpy is there (else 77).
dagger_add_tests(darray_io SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_darray_io.c LABELS quick
                 TIMEOUT 60)
