# tests/broker.cmake - MQTT and NATS edges against real brokers (label `broker`); included from
# tests/CMakeLists.txt. Each case starts its own mosquitto or nats-server on 127.0.0.1 at a free
# port (tests/broker_proc.h) and skips (77) when the transport is not built or the broker is
# not installed.
set(broker_libs "")
foreach(b MQTT NATS)
  if(DAGGER_HAVE_${b})
    list(APPEND broker_libs PkgConfig::DAGGER_PKG_${b})
  endif()
endforeach()
dagger_add_tests(broker SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_broker.c LABELS broker TIMEOUT 60
                 LIBS ${broker_libs})
target_compile_definitions(test_broker PRIVATE DAGGER_TEST_HAVE_MQTT=${DAGGER_HAVE_MQTT}
                                               DAGGER_TEST_HAVE_NATS=${DAGGER_HAVE_NATS})
dagger_add_tests(broker_abort SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_broker_abort.c LABELS broker
                 TIMEOUT 60 LIBS ${broker_libs})
target_compile_definitions(test_broker_abort PRIVATE DAGGER_TEST_HAVE_MQTT=${DAGGER_HAVE_MQTT}
                                                     DAGGER_TEST_HAVE_NATS=${DAGGER_HAVE_NATS})
