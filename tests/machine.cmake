# tests/machine.cmake - worker count, binding and topology (src/pool/topo.c); include()d from
# tests/CMakeLists.txt.
dagger_add_tests(machine SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_machine.c LABELS quick TIMEOUT 60)
target_include_directories(test_machine PRIVATE ${PROJECT_SOURCE_DIR}/src)
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(MACHINE_OPENBLAS QUIET IMPORTED_TARGET openblas)
endif()
if(MACHINE_OPENBLAS_FOUND) # the BLAS thread rule is checked against OpenBLAS when present
  target_compile_definitions(test_machine PRIVATE DAGGER_TEST_OPENBLAS=1)
  target_link_libraries(test_machine PRIVATE PkgConfig::MACHINE_OPENBLAS)
endif()
