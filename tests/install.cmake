# tests/install.cmake - the installed library works for an outside project; include()d from
# tests/CMakeLists.txt. install.consume_three_ways installs this build into a temporary prefix,
# then builds tests/consume by pkg-config, find_package and add_subdirectory, and runs each.
# Not under sanitizers (nosan): an instrumented libdagger.so needs an instrumented program.
add_test(NAME install.consume_three_ways
         COMMAND ${CMAKE_COMMAND} -E env CC=${CMAKE_C_COMPILER}
                 sh ${CMAKE_CURRENT_LIST_DIR}/check_consume.sh ${PROJECT_SOURCE_DIR}
                 ${PROJECT_BINARY_DIR} ${CMAKE_CURRENT_BINARY_DIR}/consume)
set_tests_properties(install.consume_three_ways PROPERTIES LABELS "quick;install;nosan"
                     TIMEOUT 300 RUN_SERIAL TRUE)
