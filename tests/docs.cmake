# tests/docs.cmake - docs that must stay true; include()d from tests/CMakeLists.txt.
#
#   docs.readme_quickstart_verbatim  the first ```c block of README.md is examples/01_spawn_fetch.c
#   docs.errors_md_in_sync           docs/errors.md is regenerated from DAGGER_ERROR_MAP and diffed
# Both need only sh, awk and diff.
add_test(NAME docs.readme_quickstart_verbatim
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_readme.sh ${PROJECT_SOURCE_DIR}/README.md
                 ${PROJECT_SOURCE_DIR}/examples/01_spawn_fetch.c)
add_test(NAME docs.errors_md_in_sync
         COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_errors_doc.sh
                 ${PROJECT_SOURCE_DIR}/tools/gen-errors-doc.sh
                 ${PROJECT_SOURCE_DIR}/include/dagger/errors.h ${PROJECT_SOURCE_DIR}/docs/errors.md)
set_tests_properties(docs.readme_quickstart_verbatim docs.errors_md_in_sync
                     PROPERTIES LABELS "quick;docs" TIMEOUT 30)
