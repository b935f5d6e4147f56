// NCCL error checks: SPARROW_NCCL_CHECK(call) throws sparrow::Error naming the call, NCCL's
// error and its last message (which says which peer or transport failed), and the place.
#pragma once

#include <nccl.h>

// ncclCommSplit (the sub-groups) first appeared in 2.18.
#if NCCL_VERSION_CODE < NCCL_VERSION(2, 18, 0)
#error "Sparrow's NCCL backend needs NCCL >= 2.18 (ncclCommSplit)"
#endif

namespace sparrow::cuda {

[[noreturn]] void throw_nccl_error(ncclResult_t r, const char* expr, const char* file, int line);

}  // namespace sparrow::cuda

#define SPARROW_NCCL_CHECK(expr)                                                    \
  do {                                                                              \
    const ncclResult_t sparrow_nccl_r_ = (expr);                                    \
    if (sparrow_nccl_r_ != ncclSuccess) [[unlikely]]                                \
      ::sparrow::cuda::throw_nccl_error(sparrow_nccl_r_, #expr, __FILE__, __LINE__); \
  } while (0)
