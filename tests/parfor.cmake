# tests/parfor.cmake - dagger_parallel_for (issue 17): coverage of every index, splitting, nesting
# inside tasks and leaves, errors and bad arguments. Cases are parfor.*.
# Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(parfor SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_parfor.c LABELS quick TIMEOUT 60)
# dagger::parallel_for of include/dagger.hpp, when a C++ compiler is found (cases parfor_cpp.*).
if(CMAKE_CXX_COMPILER)
  dagger_add_tests(parfor_cpp SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_parfor_cpp.cpp LABELS quick
                   TIMEOUT 60)
  set_target_properties(test_parfor_cpp PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON
                                                   CXX_EXTENSIONS OFF)
endif()
