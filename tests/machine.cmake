# tests/machine.cmake - worker count, binding and topology (src/pool/topo.c); include()d from
# tests/CMakeLists.txt.
dagger_add_tests(machine SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_machine.c LABELS quick TIMEOUT 60)
target_include_directories(test_machine PRIVATE ${PROJECT_SOURCE_DIR}/src)
