// AVX-512 paged attention (16-lane fp32 vectors; see attention_kernel.inl).
#include "sparrow/kernels/cpu/simd16.h"
#include "sparrow/kernels/cpu/attention_kernel.inl"

namespace sparrow::cpu {
void attention_avx512(const AttnArgs& a, const AttnItem* items, int64_t n) {
  attention_impl(a, items, n);
}
}  // namespace sparrow::cpu
