# NCCL for the multi-GPU communicator (src/sparrow/parallel/cuda/). Included once CUDA is
# enabled; sets SPARROW_HAVE_NCCL and, when NCCL is found, the imported target sparrow::nccl.
#
# Where it looks, header and library always from the same place so that they match:
#   1. SPARROW_NCCL_ROOT (cache variable, or the environment variable of that name), when
#      given: a folder with include/nccl.h and lib/libnccl.so or lib/libnccl.so.2. The
#      PyTorch wheel's copy is one (no unversioned libnccl.so there):
#        -DSPARROW_NCCL_ROOT=$(python3 -c 'import nvidia.nccl; print(nvidia.nccl.__path__[0])')
#      An explicit root comes first so it can override a toolkit that ships an older NCCL.
#   2. the CUDA toolkit's include and library folders;
#   3. the system's default paths.
# Not found (or older than 2.18, which lacks ncclCommSplit): the backend is left out and
# everything else builds.
set(SPARROW_NCCL_ROOT "$ENV{SPARROW_NCCL_ROOT}" CACHE PATH "Folder with include/nccl.h and lib/libnccl.so[.2]")
set(SPARROW_HAVE_NCCL OFF)

set(_sparrow_nccl_places toolkit system)
if(SPARROW_NCCL_ROOT)
  list(PREPEND _sparrow_nccl_places root)
endif()
foreach(_place IN LISTS _sparrow_nccl_places)
  unset(_sparrow_nccl_inc)
  unset(_sparrow_nccl_lib)
  if(_place STREQUAL "root")
    find_path(_sparrow_nccl_inc nccl.h PATHS "${SPARROW_NCCL_ROOT}/include" NO_DEFAULT_PATH NO_CACHE)
    find_library(_sparrow_nccl_lib NAMES nccl libnccl.so.2
      PATHS "${SPARROW_NCCL_ROOT}/lib" "${SPARROW_NCCL_ROOT}/lib64" NO_DEFAULT_PATH NO_CACHE)
    if(NOT _sparrow_nccl_inc OR NOT _sparrow_nccl_lib)
      message(WARNING "sparrow: SPARROW_NCCL_ROOT=${SPARROW_NCCL_ROOT} has no include/nccl.h with lib/libnccl.so[.2]; looking elsewhere")
    endif()
  elseif(_place STREQUAL "toolkit")
    find_path(_sparrow_nccl_inc nccl.h PATHS ${CUDAToolkit_INCLUDE_DIRS} NO_DEFAULT_PATH NO_CACHE)
    find_library(_sparrow_nccl_lib NAMES nccl libnccl.so.2
      PATHS ${CUDAToolkit_LIBRARY_DIR} "${CUDAToolkit_LIBRARY_ROOT}/lib" "${CUDAToolkit_LIBRARY_ROOT}/lib64"
      NO_DEFAULT_PATH NO_CACHE)
  else()
    find_path(_sparrow_nccl_inc nccl.h NO_CACHE)
    find_library(_sparrow_nccl_lib NAMES nccl libnccl.so.2 NO_CACHE)
  endif()
  if(_sparrow_nccl_inc AND _sparrow_nccl_lib)
    break()
  endif()
endforeach()

if(_sparrow_nccl_inc AND _sparrow_nccl_lib)
  string(REGEX REPLACE "/+$" "" _sparrow_nccl_inc "${_sparrow_nccl_inc}")
  file(STRINGS "${_sparrow_nccl_inc}/nccl.h" _sparrow_nccl_defs REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
  string(REGEX REPLACE ".*NCCL_MAJOR +([0-9]+).*" "\\1" _major "${_sparrow_nccl_defs}")
  string(REGEX REPLACE ".*NCCL_MINOR +([0-9]+).*" "\\1" _minor "${_sparrow_nccl_defs}")
  string(REGEX REPLACE ".*NCCL_PATCH +([0-9]+).*" "\\1" _patch "${_sparrow_nccl_defs}")
  set(SPARROW_NCCL_VERSION "${_major}.${_minor}.${_patch}")
  if(SPARROW_NCCL_VERSION VERSION_LESS 2.18)
    message(STATUS "sparrow: NCCL ${SPARROW_NCCL_VERSION} at ${_sparrow_nccl_inc} is older than 2.18: building without the NCCL backend")
  else()
    add_library(sparrow::nccl SHARED IMPORTED)
    set_target_properties(sparrow::nccl PROPERTIES
      IMPORTED_LOCATION "${_sparrow_nccl_lib}"
      INTERFACE_INCLUDE_DIRECTORIES "${_sparrow_nccl_inc}"
      INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_sparrow_nccl_inc}")
    set(SPARROW_HAVE_NCCL ON)
    message(STATUS "sparrow: NCCL backend ON (NCCL ${SPARROW_NCCL_VERSION}: ${_sparrow_nccl_inc}/nccl.h, ${_sparrow_nccl_lib})")
  endif()
else()
  message(STATUS "sparrow: NCCL not found (set SPARROW_NCCL_ROOT to a folder with include/nccl.h and lib/libnccl.so.2): building without the NCCL backend")
endif()
