// AVX-512 (+BF16) GEMM: 4x4 register blocks of 16-lane accumulators (1x8 for a single
// row), vdpbf16ps for bf16 and vfmadd for f32.
#include "sparrow/kernels/cpu/simd16.h"

namespace sparrow::cpu {
namespace {
constexpr int kMT = 4;   // x rows per block
constexpr int kNT = 4;   // w rows per block
constexpr int kNT1 = 8;  // w rows per block when the tile has one x row
}  // namespace
}  // namespace sparrow::cpu

#include "sparrow/kernels/cpu/linear_kernel.inl"

namespace sparrow::cpu {
void linear_avx512(const LinearArgs& a, int64_t n0, int64_t n1) { linear_impl(a, n0, n1); }
}  // namespace sparrow::cpu
