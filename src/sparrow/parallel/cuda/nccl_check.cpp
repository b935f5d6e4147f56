#include "sparrow/parallel/cuda/nccl_check.h"

#include "sparrow/core/error.h"

namespace sparrow::cuda {

void throw_nccl_error(ncclResult_t r, const char* expr, const char* file, int line) {
  // ncclGetLastError ignores its argument (the message is per thread).
  const char* last = ncclGetLastError(nullptr);
  throw Error(fmt::format("{}:{}: NCCL error {} in {}{}{}", file, line, ncclGetErrorString(r), expr,
                          last && *last ? ": " : "", last ? last : ""));
}

}  // namespace sparrow::cuda
