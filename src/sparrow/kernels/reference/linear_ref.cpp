#include "sparrow/kernels/reference/linear_ref.h"

#include <vector>

namespace sparrow::ref {
namespace {

// The pairwise tree over b[0, n): the first half is the largest power of two below n.
float pairwise(const float* b, int n) {
  if (n == 1) return b[0];
  int m = 1;
  while (2 * m < n) m *= 2;
  return pairwise(b, m) + pairwise(b + m, n - m);
}

}  // namespace

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0);
  for (int64_t t = 0; t < T; ++t) {
    const void* xr = x.row_ptr(t);
    void* yr = y.row_ptr(t);
    for (int64_t n = 0; n < N; ++n) {
      const void* wr = w.row_ptr(n);
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k)
        acc += double(load_as_f32(xr, x.dtype(), size_t(k))) * double(load_as_f32(wr, w.dtype(), size_t(k)));
      if (bias) acc += double(load_as_f32(bias->data(), bias->dtype(), size_t(n)));
      store_from_f32(yr, y.dtype(), size_t(n), float(acc));
    }
  }
}

void linear_leaves(const Tensor& x, const Tensor& w, int leaves, const Tensor& y) {
  const int64_t T = x.size(0), K = x.size(1), N = w.size(0), kl = K / leaves;
  std::vector<float> sums(static_cast<size_t>(leaves));
  for (int64_t t = 0; t < T; ++t) {
    const void* xr = x.row_ptr(t);
    void* yr = y.row_ptr(t);
    for (int64_t n = 0; n < N; ++n) {
      const void* wr = w.row_ptr(n);
      for (int l = 0; l < leaves; ++l) {
        double acc = 0.0;
        for (int64_t k = l * kl; k < (l + 1) * kl; ++k)
          acc += double(load_as_f32(xr, x.dtype(), size_t(k))) * double(load_as_f32(wr, w.dtype(), size_t(k)));
        sums[size_t(l)] = float(acc);
      }
      store_from_f32(yr, y.dtype(), size_t(n), pairwise(sums.data(), leaves));
    }
  }
}

}  // namespace sparrow::ref
