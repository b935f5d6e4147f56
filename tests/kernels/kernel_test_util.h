// Helpers shared by the kernel tests: random tensors, ISA scoping.
#pragma once

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "sparrow/core/tensor.h"
#include "sparrow/kernels/cpu/cpu_features.h"

namespace sparrow::testing {

// Fills a float tensor with uniform values in [lo, hi) (rounded to its dtype).
inline void fill_uniform(const Tensor& t, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) store_from_f32(t.data(), t.dtype(), size_t(i), d(rng));
}

inline std::vector<float> to_f32(const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_as_f32(t.data(), t.dtype(), i);
  return v;
}

// Every ISA level this machine supports, lowest first.
inline std::vector<cpu::Isa> supported_isas() {
  std::vector<cpu::Isa> v;
  for (cpu::Isa i : {cpu::Isa::kReference, cpu::Isa::kAvx2, cpu::Isa::kAvx512})
    if (cpu::isa_supported(i)) v.push_back(i);
  return v;
}

// Optimized ISA levels only (the ones that are not the oracle itself).
inline std::vector<cpu::Isa> optimized_isas() {
  std::vector<cpu::Isa> v;
  for (cpu::Isa i : {cpu::Isa::kAvx2, cpu::Isa::kAvx512})
    if (cpu::isa_supported(i)) v.push_back(i);
  return v;
}

// Sets the active ISA for a scope.
class ScopedIsa {
 public:
  explicit ScopedIsa(cpu::Isa isa) { cpu::set_isa(isa); }
  ~ScopedIsa() { cpu::reset_isa(); }
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;
};

}  // namespace sparrow::testing
