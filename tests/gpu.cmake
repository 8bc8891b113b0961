# tests/gpu.cmake - device tests (issue 12), label gpu; include()d from tests/CMakeLists.txt.
#
#   gpu_fake.*    the fake test device: data movement, ordering, eviction, injected failures
#   gpu_copyfail.* a failed copy into a device is never taken for a valid copy (fake device)
#   gpu_scope.*   scope queries and dagger_scope_from_string with devices and ranks
#   gpu_opencl.*  OpenCL on whatever the ICD loader finds; on CI pocl's CPU devices, two of them
#                 with 1 GiB each; the kernel cache stays in the build tree; exit 77 without one.
#                 The cases and example.11_gpu hold the lock pocl-cache: pocl 3.1 aborts
#                 (pocl_llvm_build.cc, `program->data[device_i]`) when the program.bc it found in
#                 the cache does not parse: another process building the same program may replace
#                 that file meanwhile (pocl_write_file removes an old file before it renames the
#                 new one in). Seen once, two cases at once under ctest -j2 in CI's ASan suite.
#   gpu_cuda.*    CUDA kernels; exit 77 without a device (CI compiles them only)
dagger_add_tests(gpu_fake SOURCES test_gpu_fake.c LABELS quick gpu)
target_include_directories(test_gpu_fake PRIVATE ${PROJECT_SOURCE_DIR}/src)
dagger_add_tests(gpu_copyfail SOURCES test_gpu_copyfail.c LABELS quick gpu)
target_include_directories(test_gpu_copyfail PRIVATE ${PROJECT_SOURCE_DIR}/src)
dagger_add_tests(gpu_scope SOURCES test_gpu_scope.c LABELS quick gpu)
target_include_directories(test_gpu_scope PRIVATE ${PROJECT_SOURCE_DIR}/src)

if(DAGGER_HAVE_OPENCL)
  set(DAGGER_POCL_CACHE ${CMAKE_BINARY_DIR}/pocl-cache)
  file(MAKE_DIRECTORY ${DAGGER_POCL_CACHE})
  dagger_add_tests(gpu_opencl SOURCES test_gpu_opencl.c LABELS quick gpu TIMEOUT 300 LOCK pocl-cache
                   ENV "POCL_DEVICES=pthread pthread" POCL_MEMORY_LIMIT=1
                       POCL_CACHE_DIR=${DAGGER_POCL_CACHE} DAGGER_GPU_MEM_LIMIT=48M
                       LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/gpu-lsan.supp)
  target_link_libraries(test_gpu_opencl PRIVATE OpenCL::OpenCL)
  target_compile_definitions(test_gpu_opencl PRIVATE CL_TARGET_OPENCL_VERSION=120)
endif()

if(DAGGER_HAVE_CUDA)
  dagger_add_tests(gpu_cuda SOURCES test_gpu_cuda.c test_gpu_cuda_kernels.cu LABELS gpu)
  target_link_libraries(test_gpu_cuda PRIVATE CUDA::cudart)
endif()
