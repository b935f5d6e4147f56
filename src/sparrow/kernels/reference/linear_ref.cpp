#include "sparrow/kernels/reference/linear_ref.h"

namespace sparrow::ref {

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

}  // namespace sparrow::ref
