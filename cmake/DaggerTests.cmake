# cmake/DaggerTests.cmake - one test binary per area, one ctest entry per case.
#
# dagger_add_tests(<area> SOURCES a.c ... [LABELS l ...] [TIMEOUT s] [LIBS lib ...]
#                  [LAUNCHER cmd ...] [LIBRARY target] [LOCK name])
# builds test_<area> (or the name given by NAME), runs `--list` after each build and registers
# every case as its own ctest test `<area>.<case>` with the labels, a timeout and
# SKIP_RETURN_CODE 77. LAUNCHER prefixes the command (mpirun -n 2, ...). LIBRARY: the library
# target linked (default dagger_static). LOCK: a ctest RESOURCE_LOCK on every case, so that no
# two tests holding the same lock run at once (a cache directory they share).
find_package(PkgConfig REQUIRED)
pkg_check_modules(CMOCKA QUIET IMPORTED_TARGET cmocka)
if(NOT CMOCKA_FOUND)
  message(FATAL_ERROR "the test suite needs cmocka: apt-get install libcmocka-dev (or run "
                      "scripts/install-deps), or configure with -DDAGGER_BUILD_TESTS=OFF")
endif()

set(DAGGER_DISCOVER_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/DaggerDiscover.cmake)

function(dagger_add_tests area)
  cmake_parse_arguments(T "" "NAME;TIMEOUT;LIBRARY;LOCK" "SOURCES;LABELS;LIBS;LAUNCHER;ENV" ${ARGN})
  if(NOT T_LIBRARY)
    set(T_LIBRARY dagger_static)
  endif()
  if(NOT T_NAME)
    set(T_NAME test_${area})
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS quick)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBRARY} PkgConfig::CMOCKA Threads::Threads ${T_LIBS})
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(${T_NAME} PRIVATE _GNU_SOURCE)
  set(list_file ${CMAKE_CURRENT_BINARY_DIR}/${T_NAME}_tests.cmake)
  string(REPLACE ";" "," labels "${T_LABELS}")
  string(REPLACE ";" "|" launcher "${T_LAUNCHER}")
  string(REPLACE ";" "|" envs "${T_ENV}")
  add_custom_command(TARGET ${T_NAME} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:${T_NAME}> -DAREA=${area}
            -DOUT=${list_file} -DLABELS=${labels} -DTIMEOUT=${T_TIMEOUT}
            "-DLAUNCHER=${launcher}" "-DENVS=${envs}" "-DLOCK=${T_LOCK}" -DLEVEL=${DAGGER_TEST_LEVEL}
            -P ${DAGGER_DISCOVER_SCRIPT}
    BYPRODUCTS ${list_file}
    VERBATIM)
  if(NOT EXISTS ${list_file})
    file(WRITE ${list_file} "")
  endif()
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${list_file})
endfunction()
