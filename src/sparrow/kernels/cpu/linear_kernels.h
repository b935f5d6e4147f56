// Internal interface between kernels/cpu/linear.cpp (validation, tiling of N across
// threads) and the per-ISA GEMM kernels.
#pragma once

#include <cstdint>

#include "sparrow/core/dtype.h"

namespace sparrow::cpu {

struct LinearArgs {
  // x [T, K], row stride ldx elements. When x_t == kF32 and w_t == kBF16, x has been
  // packed by linear.cpp into the pair layout (per 32-value chunk c of K: 16 values
  // x[32c+2i+1], then 16 values x[32c+2i]), zero-padded to a multiple of 32 columns.
  const void* x = nullptr;
  const void* w = nullptr;  // [N, K], row stride ldw elements
  const void* bias = nullptr;  // [N] or null
  void* y = nullptr;  // [T, N], row stride ldy elements
  int64_t ldx = 0, ldw = 0, ldy = 0;
  int64_t T = 0, N = 0, K = 0;
  DType x_t = DType::kBF16;  // kBF16 or kF32
  DType w_t = DType::kBF16;  // kBF16 or kF32 (kF32 only with x_t == kF32)
  DType bias_t = DType::kF32;
  DType y_t = DType::kF32;
  // w rows are prefetched one register block ahead, up to (not including) row pf_end (the
  // whole call's N, so a thread's range does not go cold at N-tile or range boundaries).
  int64_t pf_end = 0;
  // Leaves (ops::linear_leaves): K is cut into `leaves` equal blocks of kl columns, each
  // reduced exactly as a call with K = kl would reduce it, and the block sums are combined
  // by the fixed pairwise tree. Block l of an x row starts x_leaf elements after block l-1
  // (kl, or the padded width of a block when x was packed into the pair layout, each block
  // packed on its own); block l of a w row starts at l * kl. leaves == 1: kl == K.
  int leaves = 1;
  int64_t kl = 0, x_leaf = 0;
};

// Largest `leaves` the kernels accept (the pairwise tree is kept on a small stack).
constexpr int kMaxLeaves = 64;

// Pair-layout chunk width for packed fp32 x.
constexpr int64_t kPairChunk = 32;

// Computes y[:, n0:n1] for all T rows. Each y element is
//   hsum16(lanes) + bias   (see docs/numerics.md)
// where lane i of the 16-lane accumulator sums, in increasing k order, the products of
// k = 32c + 2i + 1 then 32c + 2i (w bf16, x bf16 or f32) or k = 16c + i (x, w f32).
// With leaves > 1 (no bias) it is the pairwise tree over l of hsum16(lanes of block l),
// each block's lanes accumulated as above over its own kl columns.
void linear_avx512(const LinearArgs& a, int64_t n0, int64_t n1);
void linear_avx2(const LinearArgs& a, int64_t n0, int64_t n1);

}  // namespace sparrow::cpu
