// AVX2 GEMM: the same 16-lane accumulators as the AVX-512 kernel, each held in two ymm
// registers (so smaller register blocks: 2x2, 1x4 for a single row); bf16 is widened to
// fp32 by shifting and multiplied with FMA in vdpbf16ps order.
#include "sparrow/kernels/cpu/simd16.h"

namespace sparrow::cpu {
namespace {
constexpr int kMT = 2;
constexpr int kNT = 2;
constexpr int kNT1 = 4;
}  // namespace
}  // namespace sparrow::cpu

#include "sparrow/kernels/cpu/linear_kernel.inl"

namespace sparrow::cpu {
void linear_avx2(const LinearArgs& a, int64_t n0, int64_t n1) { linear_impl(a, n0, n1); }
}  // namespace sparrow::cpu
