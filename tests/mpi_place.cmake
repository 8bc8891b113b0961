# tests/mpi_place.cmake - the cost model and stealing across ranks (label mpi), on 2 and 4
# ranks under tests/mpi_run.sh; included from tests/CMakeLists.txt.
if(NOT DAGGER_HAVE_MPI)
  return()
endif()
set(mpi_place_run sh ${CMAKE_CURRENT_LIST_DIR}/mpi_run.sh)
set(mpi_place_env DAGGER_PEER_TIMEOUT=5 DAGGER_NUM_THREADS=2)
dagger_add_tests(mpi_place SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_place.c LABELS mpi
                 TIMEOUT 90 LAUNCHER ${mpi_place_run} 2 ENV ${mpi_place_env})
dagger_add_tests(mpi_place4 NAME test_mpi_place4 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_place.c
                 LABELS mpi TIMEOUT 120 LAUNCHER ${mpi_place_run} 4 ENV ${mpi_place_env})
