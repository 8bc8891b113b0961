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
# What a rank learns without asking (remote run times, load beats, lingering round trips):
# tests/test_mpi_learn.c reads the backend's state, so it sees src/.
# Back-pressure on mpi:// edges: tests/test_mpi_credit.c, the same way.
foreach(file learn credit)
  foreach(np 2 4)
    set(name test_mpi_${file})
    if(np EQUAL 4)
      set(name test_mpi_${file}4)
    endif()
    string(REPLACE "test_" "" area ${name})
    dagger_add_tests(${area} NAME ${name} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_mpi_${file}.c
                     LABELS mpi TIMEOUT 120 LAUNCHER ${mpi_place_run} ${np} ENV ${mpi_place_env})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  endforeach()
endforeach()
