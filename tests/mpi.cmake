# tests/mpi.cmake - several processes under mpirun (label mpi); included from tests/CMakeLists.txt.
# Each case runs under tests/mpi_run.sh on 2 ranks; test_mpi4 runs the cases that matter on 4.
if(NOT DAGGER_HAVE_MPI)
  return()
endif()
set(mpi_run sh ${CMAKE_CURRENT_LIST_DIR}/mpi_run.sh)
# (mpi_run.sh points the sanitizers at tests/mpi_{lsan,tsan}.supp: Open MPI's libraries only.)
set(mpi_env DAGGER_PEER_TIMEOUT=5 DAGGER_NUM_THREADS=2)
dagger_add_tests(mpi SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi.c LABELS mpi TIMEOUT 90
                 LAUNCHER ${mpi_run} 2 ENV ${mpi_env})
dagger_add_tests(mpi4 NAME test_mpi4 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi.c LABELS mpi
                 TIMEOUT 120 LAUNCHER ${mpi_run} 4 ENV ${mpi_env})
target_compile_definitions(test_mpi4 PRIVATE DAGGER_TEST_MPI_NP4=1)
target_compile_options(test_mpi4 PRIVATE -Wno-unused-function)
target_compile_options(test_mpi PRIVATE -Wno-unused-function) # mismatched_binary_refused: MPMD only
# Two builds that differ in one string (so in build id), for the mismatched-binary case:
# rank 0 runs one, rank 1 the other.
foreach(v a b)
  add_executable(test_mpi_mm_${v} ${CMAKE_CURRENT_LIST_DIR}/test_mpi.c)
  target_link_libraries(test_mpi_mm_${v} PRIVATE dagger MPI::MPI_C PkgConfig::CMOCKA Threads::Threads)
  target_include_directories(test_mpi_mm_${v} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(test_mpi_mm_${v} PRIVATE _GNU_SOURCE DAGGER_TEST_MPI_OTHER="${v}")
  target_compile_options(test_mpi_mm_${v} PRIVATE -Wno-unused-function)
endforeach()
add_test(NAME mpi.mismatched_binary_refused
         COMMAND ${mpi_run} 1 $<TARGET_FILE:test_mpi_mm_a> mismatched_binary_refused
                 : -np 1 $<TARGET_FILE:test_mpi_mm_b> mismatched_binary_refused)
set_tests_properties(mpi.mismatched_binary_refused PROPERTIES LABELS mpi TIMEOUT 60
                     SKIP_RETURN_CODE 77 ENVIRONMENT "${mpi_env};DAGGER_TEST_LEVEL=${DAGGER_TEST_LEVEL}")

include(${CMAKE_CURRENT_LIST_DIR}/mpi_spmd.cmake)

# A datadeps region across 2 ranks in a program linked against the shared library: the
# runtime's own task functions travel as libdagger.so's (build id, offset).
add_executable(test_mpi_shared ${CMAKE_CURRENT_LIST_DIR}/shared_mpi_datadeps.c)
target_link_libraries(test_mpi_shared PRIVATE dagger)
add_test(NAME mpi.shared_library_datadeps_region COMMAND ${mpi_run} 2 $<TARGET_FILE:test_mpi_shared>)
set_tests_properties(mpi.shared_library_datadeps_region PROPERTIES LABELS mpi TIMEOUT 60
                     ENVIRONMENT "${mpi_env}" SKIP_RETURN_CODE 77
                     PASS_REGULAR_EXPRESSION "shared datadeps: ok")

# The ranks example on 2 ranks (it also runs alone, as example.08_ranks).
if(DAGGER_BUILD_EXAMPLES)
  add_test(NAME example.08_ranks_mpi COMMAND ${mpi_run} 2 $<TARGET_FILE:example_08_ranks>)
  set_tests_properties(example.08_ranks_mpi PROPERTIES LABELS "mpi;example" TIMEOUT 60
                       ENVIRONMENT "${mpi_env}"
                       SKIP_RETURN_CODE 77 PASS_REGULAR_EXPRESSION "= 6, computed on rank 1\n[^\n]*on rank 1: open x.bin")
endif()

# The data path (results straight to consumer ranks, payload pieces): tests/test_mpi_net.c on 2
# and 4 ranks; it reads the backend's counters, so it sees src/.
foreach(np 2 4)
  set(name test_mpi_net)
  if(np EQUAL 4)
    set(name test_mpi_net4)
  endif()
  string(REPLACE "test_" "" area ${name})
  dagger_add_tests(${area} NAME ${name} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_net.c
                   LABELS mpi TIMEOUT 120 LAUNCHER ${mpi_run} ${np} ENV ${mpi_env})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
endforeach()
# Early sends (issue 9 item 4): a pinned consumer of results made on other ranks goes to its rank
# at spawn and gets them straight from their producers; tests/test_mpi_direct.c on 2 and 4 ranks
# (it reads the backend's counters, so it sees src/).
foreach(np 2 4)
  set(name test_mpi_direct)
  if(np EQUAL 4)
    set(name test_mpi_direct4)
  endif()
  string(REPLACE "test_" "" area ${name})
  dagger_add_tests(${area} NAME ${name} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_direct.c
                   LABELS mpi TIMEOUT 120 LAUNCHER ${mpi_run} ${np} ENV ${mpi_env})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
endforeach()
# The large-transfer path (issue 9, bandwidth): zeroed fresh chunks, large pulls both ways,
# DAGGER_MPI_STAGES.
dagger_add_tests(mpi_bw SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_bw.c LABELS mpi TIMEOUT 90
                 LAUNCHER ${mpi_run} 2 ENV ${mpi_env})
