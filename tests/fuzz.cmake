# tests/fuzz.cmake - libFuzzer harnesses (tests/fuzz/), built only with -DDAGGER_FUZZ=ON and clang:
#   make fuzz   (FUZZ_TIME=60 seconds per harness by default; see scripts/fuzz)
# The library and the harnesses are compiled with -fsanitize=fuzzer-no-link (coverage) through
# CMAKE_C_FLAGS, plus ASan+UBSan through DAGGER_SANITIZE; each harness links libFuzzer's main.
option(DAGGER_FUZZ "Build the libFuzzer harnesses (clang only)" OFF)
if(NOT DAGGER_FUZZ)
  return()
endif()
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "DAGGER_FUZZ needs clang (CC=clang): libFuzzer is part of clang")
endif()
set(DAGGER_FUZZ_HARNESSES value frame uri tcp udp shm dtrace npy spill darray parse)
add_custom_target(fuzz_all)
foreach(h IN LISTS DAGGER_FUZZ_HARNESSES)
  add_executable(fuzz_${h} ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_${h}.c)
  target_link_libraries(fuzz_${h} PRIVATE dagger_static) # internal decoders: the static library
  target_include_directories(fuzz_${h} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_definitions(fuzz_${h} PRIVATE _GNU_SOURCE)
  target_link_options(fuzz_${h} PRIVATE -fsanitize=fuzzer)
  add_dependencies(fuzz_all fuzz_${h})
endforeach()
