# tests/mpi_data.cmake - data across ranks under mpirun (label mpi): mutable data on a rank,
# shards per rank and per rank and thread, weighted credits, datadeps regions across ranks.
# Included from tests/CMakeLists.txt; runs on 2 ranks (test_mpi_data) and on 4 (test_mpi_data4)
# through tests/mpi_run.sh. Whole-chunk datadeps accesses in one process come first (no MPI).
dagger_add_tests(datadeps_chunks SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_datadeps_chunks.c
                 LABELS quick)
if(NOT DAGGER_HAVE_MPI)
  return()
endif()
set(mpi_data_run sh ${CMAKE_CURRENT_LIST_DIR}/mpi_run.sh)
set(mpi_data_env DAGGER_PEER_TIMEOUT=5 DAGGER_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1)
dagger_add_tests(mpi_data SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_data.c LABELS mpi
                 TIMEOUT 90 LAUNCHER ${mpi_data_run} 2 ENV ${mpi_data_env})
dagger_add_tests(mpi_data4 NAME test_mpi_data4 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_data.c
                 LABELS mpi TIMEOUT 120 LAUNCHER ${mpi_data_run} 4 ENV ${mpi_data_env})
# A datadeps region across ranks; the Cholesky case needs LAPACKE and CBLAS (tests/datadeps.cmake
# looked them up).
if(DD_BLAS_FOUND)
  dagger_add_tests(mpi_datadeps SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_datadeps.c LABELS mpi
                   TIMEOUT 120 LAUNCHER ${mpi_data_run} 2 ENV ${mpi_data_env}
                   LIBS PkgConfig::DD_LAPACKE PkgConfig::DD_OPENBLAS m)
  dagger_add_tests(mpi_datadeps4 NAME test_mpi_datadeps4
                   SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_datadeps.c LABELS mpi TIMEOUT 150
                   LAUNCHER ${mpi_data_run} 4 ENV ${mpi_data_env}
                   LIBS PkgConfig::DD_LAPACKE PkgConfig::DD_OPENBLAS m)
endif()
# How a datadeps region moves data and orders work across ranks: priorities on another rank,
# copies pulled once per version and rank, errors through the copies (tests/test_mpi_ddmove.c on
# 2 and 4 ranks; it reads the backend's counters, so it sees src/).
dagger_add_tests(mpi_ddmove NAME test_mpi_ddmove SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_ddmove.c
                 LABELS mpi TIMEOUT 90 LAUNCHER ${mpi_data_run} 2 ENV ${mpi_data_env})
dagger_add_tests(mpi_ddmove4 NAME test_mpi_ddmove4
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_ddmove.c LABELS mpi TIMEOUT 120
                 LAUNCHER ${mpi_data_run} 4 ENV ${mpi_data_env})
target_include_directories(test_mpi_ddmove PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_include_directories(test_mpi_ddmove4 PRIVATE ${PROJECT_SOURCE_DIR}/src)
