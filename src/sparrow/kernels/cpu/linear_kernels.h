// Internal interface between kernels/cpu/linear.cpp (validation, tiling of N across
// threads) and the per-ISA GEMM kernels.
#pragma once

#include <cstdint>

#include "sparrow/core/dtype.h"

namespace sparrow::cpu {

struct LinearArgs {
  const void* x = nullptr;  // [T, K], row stride ldx elements
  const void* w = nullptr;  // [N, K], row stride ldw elements
  const void* bias = nullptr;  // [N] or null
  void* y = nullptr;  // [T, N], row stride ldy elements
  int64_t ldx = 0, ldw = 0, ldy = 0;
  int64_t T = 0, N = 0, K = 0;
  DType in_t = DType::kBF16;  // dtype of x and w (kBF16 or kF32)
  DType bias_t = DType::kF32;
  DType y_t = DType::kF32;
};

// Computes y[:, n0:n1] for all T rows. Each y element is
//   hsum16(lanes) + bias   (see docs/numerics.md)
// where lane i of the 16-lane accumulator sums, in increasing k order, the products of
// k = 32c + 2i + 1 then 32c + 2i (bf16) or k = 16c + i (f32).
void linear_avx512(const LinearArgs& a, int64_t n0, int64_t n1);
void linear_avx2(const LinearArgs& a, int64_t n0, int64_t n1);

}  // namespace sparrow::cpu
