#include "sparrow/model/layers/row_parallel.h"

#include <vector>

#include "sparrow/core/thread_pool.h"
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

void row_parallel_linear(const Tensor& x, const Tensor& w, int leaves, Arena& ws, const Tensor& y) {
  SPARROW_CHECK(y.dtype() == DType::kF32 && y.is_contiguous(), "row-parallel output is contiguous fp32");
  if (leaves <= 1) {
    ops::linear(x, w, nullptr, y);
    return;
  }
  const int64_t k = x.size(1), t = x.size(0), n = w.size(0);
  SPARROW_CHECK(k % leaves == 0, "K {} does not split into {} leaves", k, leaves);
  const int64_t kl = k / leaves;
  std::vector<float*> blocks(static_cast<size_t>(leaves));
  std::vector<Tensor> outs;
  for (int l = 0; l < leaves; ++l) {
    outs.push_back(l == 0 ? y : ws.alloc(DType::kF32, {t, n}));
    blocks[size_t(l)] = outs.back().data_as<float>();
  }
  // One dispatch for all leaves: each thread runs whole leaf GEMMs (a GEMM called from inside
  // the pool runs serially), so small decode-sized leaves do not each pay a thread wake-up.
  // Every leaf is the same kernel call whichever thread runs it: the bits do not change.
  auto leaf = [&](int64_t l) {
    ops::linear(x.slice_cols(l * kl, (l + 1) * kl), w.slice_cols(l * kl, (l + 1) * kl), nullptr, outs[size_t(l)]);
  };
  if (leaves >= ThreadPool::global().size()) {
    ThreadPool::global().parallel_for(leaves, [&](int64_t b, int64_t e) {
      for (int64_t l = b; l < e; ++l) leaf(l);
    });
  } else {
    for (int64_t l = 0; l < leaves; ++l) leaf(l);  // fewer leaves than threads: each GEMM goes parallel
  }
  tree_combine(blocks.data(), leaves, size_t(t * n));
}

}  // namespace sparrow
