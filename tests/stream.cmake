# tests/stream.cmake - streaming regions (issue 4): topologies, kinds, ending, errors, allocations.
# Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(stream SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_stream.c LABELS quick TIMEOUT 300)
dagger_add_tests(stream_cancel SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_stream_cancel.c
                 LABELS quick TIMEOUT 120)
# Failures across edges: each side's failure reaches the other, with a watchdog against hangs.
if(DAGGER_HAVE_MPI)
  dagger_add_tests(mpi_stream_fail SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_stream_fail.c
                   LABELS mpi TIMEOUT 120 LAUNCHER sh ${CMAKE_CURRENT_LIST_DIR}/mpi_run.sh 2
                   ENV DAGGER_PEER_TIMEOUT=5 DAGGER_NUM_THREADS=2)
endif()
dagger_add_tests(stream_fail SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_stream_fail.c LABELS quick
                 TIMEOUT 120)
