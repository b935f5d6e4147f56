#include "sparrow/model/layers/row_parallel.h"

#include "sparrow/kernels/ops.h"

namespace sparrow {

void tree_combine(float* const* blocks, int count, size_t n) {
  for (int width = 1; width < count; width *= 2)
    for (int k = 0; k + width < count; k += 2 * width) {
      float* a = blocks[k];
      const float* b = blocks[k + width];
      for (size_t i = 0; i < n; ++i) a[i] = a[i] + b[i];
    }
}

void row_parallel_linear(const Tensor& x, const Tensor& w, int leaves, const Tensor& y, Arena* ws) {
  SPARROW_CHECK(y.dtype() == DType::kF32 && y.is_contiguous(), "row-parallel output is contiguous fp32");
  if (leaves <= 1)
    ops::linear(x, w, nullptr, y);
  else
    ops::linear_leaves(x, w, leaves, y, ws);
}

}  // namespace sparrow
