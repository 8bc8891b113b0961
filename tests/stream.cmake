# tests/stream.cmake - streaming regions (issue 4): topologies, kinds, ending, errors, allocations.
# Included from tests/CMakeLists.txt; paths are relative to this file.
dagger_add_tests(stream SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_stream.c LABELS quick TIMEOUT 300)
dagger_add_tests(stream_cancel SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_stream_cancel.c
                 LABELS quick TIMEOUT 120)
