# tests/mpi_spmd.cmake - SPMD mode and collectives under mpirun (label mpi): test_mpi_spmd on 2
# ranks, test_mpi_spmd4 on 4; included from tests/mpi.cmake (which returns without MPI).
dagger_add_tests(mpi_spmd SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_spmd.c LABELS mpi TIMEOUT 90
                 LAUNCHER ${mpi_run} 2 ENV ${mpi_env})
dagger_add_tests(mpi_spmd4 NAME test_mpi_spmd4 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_spmd.c
                 LABELS mpi TIMEOUT 120 LAUNCHER ${mpi_run} 4 ENV ${mpi_env})
target_compile_definitions(test_mpi_spmd4 PRIVATE DAGGER_TEST_SPMD_NP4=1)
target_compile_options(test_mpi_spmd4 PRIVATE -Wno-unused-function)
