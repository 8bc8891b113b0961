# tests/trace.cmake - tests of the trace layer (issue 5); include()d from tests/CMakeLists.txt.
#
#   trace_unit.*   the buffers and exporters alone, driven through the dagger__trace_* hooks
#                  (linked from the static library: no context is ever opened)
#   trace.*        end to end: real DAGs spawned through dagger.h
#   trace_script.* the outputs checked by outside tools: jq (JSON), dot (DOT), headless
#                  Chromium (HTML); each script exits 77 (skipped) when its tool is missing.
# Set DAGGER_TRACE_E2E=OFF to build only what needs no runtime.
option(DAGGER_TRACE_E2E "Build the end-to-end trace tests (need the whole runtime)" ON)

set(DAGGER_TRACE_DIR ${CMAKE_CURRENT_LIST_DIR}/trace)
# The trace layer's own objects from the static library, driven through its internal hooks.
function(dagger_trace_standalone target)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}
                             ${PROJECT_SOURCE_DIR}/include)
  target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
  target_link_libraries(${target} PRIVATE dagger_static Threads::Threads m)
endfunction()

dagger_add_tests(trace_unit NAME test_trace_unit SOURCES ${DAGGER_TRACE_DIR}/test_trace_unit.c
                 LABELS quick trace TIMEOUT 120)
dagger_trace_standalone(test_trace_unit)
dagger_add_tests(trace_cursor NAME test_trace_cursor SOURCES ${DAGGER_TRACE_DIR}/test_trace_cursor.c
                 LABELS quick trace TIMEOUT 120)
dagger_trace_standalone(test_trace_cursor)

# Synthetic trace generator: worker threads replay a random DAG through the hooks.
add_executable(trace_gen_synth ${DAGGER_TRACE_DIR}/gen_synth.c)
dagger_trace_standalone(trace_gen_synth)

set(trace_gens synth)
if(DAGGER_TRACE_E2E)
  dagger_add_tests(trace SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_trace.c LABELS quick trace
                   TIMEOUT 180)
  target_compile_definitions(test_trace PRIVATE _GNU_SOURCE)
  add_executable(trace_gen_dag ${DAGGER_TRACE_DIR}/gen_dag.c)
  target_compile_definitions(trace_gen_dag PRIVATE _GNU_SOURCE)
  target_link_libraries(trace_gen_dag PRIVATE dagger Threads::Threads)
  list(APPEND trace_gens dag)
endif()

foreach(gen IN LISTS trace_gens)
  foreach(check json dot html tool)
    set(name trace_script.${check}_${gen})
    add_test(NAME ${name}
             COMMAND sh ${DAGGER_TRACE_DIR}/check_${check}.sh $<TARGET_FILE:trace_gen_${gen}>
                     ${CMAKE_CURRENT_BINARY_DIR}/trace_out/${check}_${gen}
                     $<TARGET_FILE:dagger-trace>)
    set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180
                         LABELS "trace;quick")
  endforeach()
endforeach()
