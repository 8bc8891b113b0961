# tests/net.cmake - cross-process edges (shm ring, TCP, UDP); included from tests/CMakeLists.txt.
# Cases fork peers and use 127.0.0.1 with ephemeral ports; each is bounded in time.
dagger_add_tests(net SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_net.c LABELS quick TIMEOUT 300)
dagger_add_tests(net_batch SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_net_batch.c LABELS quick TIMEOUT 300)
dagger_add_tests(net_vector SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_net_vector.c LABELS quick TIMEOUT 300)
dagger_add_tests(net_packed SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_net_packed.c LABELS quick TIMEOUT 300)
# Task functions across processes (src/net/fnid.c): build id and offset, names, refusals.
dagger_add_tests(net_fnid SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_fnid.c LABELS quick TIMEOUT 60)
target_include_directories(test_net_fnid PRIVATE ${PROJECT_SOURCE_DIR}/src)
