# tests/core_record.cmake - the task record's storage (issue 17): arguments and inputs inline or
# on the heap in every split, and the fields of the extension record. Cases are core.* so the
# core runs (and TSan) see them. Included from tests/CMakeLists.txt.
dagger_add_tests(core NAME test_core_record SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_core_record.c
                 LABELS quick TIMEOUT 60)
