#include "sparrow/kernels/reference/moe_ref.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace sparrow::ref {
namespace {

float at(const Tensor& t, int64_t i) {
  float v;
  convert(static_cast<const char*>(t.data()) + size_t(i) * dtype_size(t.dtype()), t.dtype(), &v, DType::kF32, 1);
  return v;
}
float round_to(DType dt, float v) {
  float r;
  char tmp[4];
  convert(&v, DType::kF32, tmp, dt, 1);
  convert(tmp, dt, &r, DType::kF32, 1);
  return r;
}

}  // namespace

void moe_experts(const Tensor& x, const int32_t* ids, const float* weights, int k, const Tensor& w13,
                 const Tensor& w2, const Tensor& slot_out, int64_t expert0) {
  const int64_t t_n = x.size(0), h = x.size(1), e_n = w13.size(0), inter = w13.size(1) / 2;
  SPARROW_CHECK(w13.size(2) == h && w2.size(0) == e_n && w2.size(1) == h && w2.size(2) == inter,
                "moe_experts: w13 {} / w2 {} vs H {}", w13.shape().str(), w2.shape().str(), h);
  SPARROW_CHECK(slot_out.dtype() == DType::kF32 && slot_out.size(0) == t_n * k && slot_out.size(1) == h,
                "moe_experts: slot_out must be f32 [T*k, H]");
  std::vector<float> act(static_cast<size_t>(inter));
  for (int64_t p = 0; p < t_n * k; ++p) {
    const int64_t t = p / k, e = ids[p] - expert0;
    float* out = slot_out.data_as<float>() + p * h;
    if (e < 0 || e >= e_n) {  // another rank's expert
      std::fill(out, out + h, 0.0f);
      continue;
    }
    for (int64_t i = 0; i < inter; ++i) {
      float g = 0.f, u = 0.f;
      for (int64_t j = 0; j < h; ++j) {
        const float xv = at(x, t * h + j);
        g += xv * at(w13, (e * 2 * inter + i) * h + j);
        u += xv * at(w13, (e * 2 * inter + inter + i) * h + j);
      }
      // The activation is stored in x's dtype between the two GEMMs, as the GPU does.
      g = round_to(x.dtype(), g);
      u = round_to(x.dtype(), u);
      act[size_t(i)] = round_to(x.dtype(), g / (1.0f + std::exp(-g)) * u);
    }
    for (int64_t n = 0; n < h; ++n) {
      float acc = 0.f;
      for (int64_t i = 0; i < inter; ++i) acc += act[size_t(i)] * at(w2, (e * h + n) * inter + i);
      out[n] = acc * weights[p];
    }
  }
}

void moe_combine(const Tensor& slot_out, int k, const Tensor* shared_out, const Tensor* shared_logit,
                 const Tensor& out) {
  const int64_t t_n = out.size(0), h = out.size(1);
  const float* s = slot_out.data_as<float>();
  std::vector<float> row(static_cast<size_t>(h));
  for (int64_t t = 0; t < t_n; ++t) {
    for (int64_t i = 0; i < h; ++i) {
      float acc = s[(t * k) * h + i];
      for (int j = 1; j < k; ++j) acc += s[(t * k + j) * h + i];
      if (shared_out) {
        const float g = 1.0f / (1.0f + std::exp(-shared_logit->data_as<float>()[t]));
        acc += g * shared_out->data_as<float>()[t * h + i];
      }
      row[size_t(i)] = acc;
    }
    convert(row.data(), DType::kF32, out.row_ptr(t), out.dtype(), size_t(h));
  }
}

}  // namespace sparrow::ref
