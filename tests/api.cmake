# tests/api.cmake - the rough edges of the public API (tests/test_api.c) and compile-time checks
# of dagger.h (tests/check_compile.sh); include()d from tests/CMakeLists.txt.
dagger_add_tests(api SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_api.c LABELS quick TIMEOUT 60)
add_test(NAME api.compile_time_checks
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_compile.sh ${CMAKE_C_COMPILER}
                 ${PROJECT_SOURCE_DIR}/include ${CMAKE_CURRENT_BINARY_DIR}/compile_checks)
set_tests_properties(api.compile_time_checks PROPERTIES LABELS quick TIMEOUT 60)
