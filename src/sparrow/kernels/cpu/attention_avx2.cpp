// AVX2 paged attention: the AVX-512 algorithm on 16-lane vectors made of two ymm.
#include "sparrow/kernels/cpu/simd16.h"
#include "sparrow/kernels/cpu/attention_kernel.inl"

namespace sparrow::cpu {
void attention_avx2(const AttnArgs& a, const AttnItem* items, int64_t n) {
  attention_impl(a, items, n);
}
}  // namespace sparrow::cpu
