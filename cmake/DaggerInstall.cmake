# cmake/DaggerInstall.cmake - what `cmake --install` (and `make install PREFIX=...`) puts where.
#
#   lib/libdagger.so.0 (+ .so link), lib/libdagger.a, include/dagger.h, include/dagger/*.h,
#   include/dagger.hpp, bin/dagger-trace, lib/pkgconfig/dagger.pc,
#   lib/cmake/dagger/{daggerConfig,daggerConfigVersion,daggerTargets}.cmake
# find_package(dagger) gives dagger::dagger (shared) and dagger::dagger_static.
include(CMakePackageConfigHelpers)

set(DAGGER_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dagger)
install(TARGETS dagger dagger_static EXPORT daggerTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
if(TARGET dagger-trace)
  install(TARGETS dagger-trace RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT daggerTargets NAMESPACE dagger:: DESTINATION ${DAGGER_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/daggerConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/daggerConfig.cmake
                              INSTALL_DESTINATION ${DAGGER_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/daggerConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/daggerConfig.cmake ${PROJECT_BINARY_DIR}/daggerConfigVersion.cmake
        DESTINATION ${DAGGER_CMAKE_DIR})

# pkg-config: the shared library by default; `pkg-config --static` adds Libs.private.
set(DAGGER_PC_LIBS_PRIVATE "-lpthread -lm")
if(DAGGER_HWLOC_FOUND)
  string(APPEND DAGGER_PC_LIBS_PRIVATE " -lhwloc")
endif()
get_property(dagger_pc_private GLOBAL PROPERTY DAGGER_PC_PRIVATE) # sodium, backends
foreach(f IN LISTS dagger_pc_private)
  string(APPEND DAGGER_PC_LIBS_PRIVATE " ${f}")
endforeach()
if(CMAKE_DL_LIBS)
  string(APPEND DAGGER_PC_LIBS_PRIVATE " -l${CMAKE_DL_LIBS}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(DAGGER_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(DAGGER_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(DAGGER_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(DAGGER_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# Relocatable: prefix is found from the .pc file's own place, so `cmake --install --prefix P`
# (and a moved tree) gives a right dagger.pc.
file(RELATIVE_PATH DAGGER_PC_UP /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
string(REGEX REPLACE "/$" "" DAGGER_PC_UP "${DAGGER_PC_UP}")
set(DAGGER_PC_PREFIX "\${pcfiledir}/${DAGGER_PC_UP}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/dagger.pc.in ${PROJECT_BINARY_DIR}/dagger.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/dagger.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
