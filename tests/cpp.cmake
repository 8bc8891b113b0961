# tests/cpp.cmake - include/dagger.hpp compiled as C++17; include()d from tests/CMakeLists.txt.
# Built only when a C++ compiler is found (the library itself needs none).
if(CMAKE_CXX_COMPILER)
  dagger_add_tests(cpp SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cpp.cpp LABELS quick TIMEOUT 60)
  set_target_properties(test_cpp PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON
                                            CXX_EXTENSIONS OFF)
endif()
