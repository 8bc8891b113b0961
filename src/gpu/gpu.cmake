# src/gpu/gpu.cmake - the device backends found by cmake/DaggerGpu.cmake join libdagger's objects.
# Included from src/CMakeLists.txt after dagger_obj exists and before dagger_link_deps is used.
if(DAGGER_HAVE_OPENCL)
  target_sources(dagger_obj PRIVATE ${CMAKE_CURRENT_LIST_DIR}/opencl/opencl.c)
  target_compile_definitions(dagger_obj PRIVATE DAGGER_HAVE_OPENCL=1 CL_TARGET_OPENCL_VERSION=120)
  target_include_directories(dagger_obj PRIVATE ${OpenCL_INCLUDE_DIRS})
  list(APPEND dagger_link_deps $<BUILD_INTERFACE:OpenCL::OpenCL>
       $<INSTALL_INTERFACE:${OpenCL_LIBRARIES}>)
  set_property(GLOBAL APPEND PROPERTY DAGGER_PC_PRIVATE -lOpenCL)
endif()
if(DAGGER_HAVE_CUDA)
  target_sources(dagger_obj PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cuda/cuda.c)
  target_compile_definitions(dagger_obj PRIVATE DAGGER_HAVE_CUDA=1)
  target_include_directories(dagger_obj PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  list(APPEND dagger_link_deps $<BUILD_INTERFACE:CUDA::cudart>
       $<INSTALL_INTERFACE:${CUDA_cudart_LIBRARY}>)
  set_property(GLOBAL APPEND PROPERTY DAGGER_PC_PRIVATE -lcudart)
endif()
dagger_feature(opencl "the OpenCL device backend (tested on pocl)" DAGGER_HAVE_OPENCL
               "OpenCL not found (apt-get install ocl-icd-opencl-dev opencl-headers)")
dagger_feature(cuda "the CUDA device backend" DAGGER_HAVE_CUDA
               "no CUDA compiler and toolkit (or a sanitizer build)")
