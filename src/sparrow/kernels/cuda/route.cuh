// Softmax top-k routing of one token by one warp: shared by the router kernel
// (elementwise.cu) and the small-batch fused MoE (moe_skinny.cu), so both pick the same
// experts with the same weights bit for bit.
#pragma once

#include <cmath>

#include "sparrow/kernels/cuda/common.cuh"
#include "sparrow/kernels/cuda/kernels.h"

namespace sparrow::cuda::k {

// Lane l holds experts l, l+32, ... Softmax in fp32; k passes of a warp arg-max (ties to
// the lower id); slots in descending weight order. Lane 0 writes ids[0..k) / weights[0..k).
__device__ __forceinline__ void route_token_warp(const void* logits, DType logits_t, int64_t row, int64_t E, int k,
                                                 bool renormalize, int32_t* ids, float* weights) {
  constexpr int kPer = kRouterMaxExperts / 32;
  const int lane = threadIdx.x & 31;
  float v[kPer];
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t e = lane + 32 * j;
    v[j] = e < E ? load_f(logits, logits_t, row * E + e) : -INFINITY;
    mx = fmaxf(mx, v[j]);
  }
  mx = warp_max(mx);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t e = lane + 32 * j;
    v[j] = e < E ? expf(v[j] - mx) : 0.f;
    s += v[j];
  }
  s = warp_sum(s);
#pragma unroll
  for (int j = 0; j < kPer; ++j) v[j] = (lane + 32 * j < E) ? v[j] / s : -1.f;  // -1: never picked
  float top = 0.f;
  for (int slot = 0; slot < k; ++slot) {
    float best = -2.f;
    int best_id = 0x7fffffff;
#pragma unroll
    for (int j = 0; j < kPer; ++j)
      if (v[j] > best) { best = v[j]; best_id = lane + 32 * j; }  // ascending ids: strict '>'
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, best_id, o);
      if (ob > best || (ob == best && oi < best_id)) { best = ob; best_id = oi; }
    }
    if (lane == 0) {
      ids[slot] = best_id;
      weights[slot] = best;
    }
    top += best;
    if ((best_id & 31) == lane) {
#pragma unroll
      for (int j = 0; j < kPer; ++j)
        if (lane + 32 * j == best_id) v[j] = -1.f;
    }
  }
  if (renormalize && lane == 0)
    for (int slot = 0; slot < k; ++slot) weights[slot] /= top;
}

}  // namespace sparrow::cuda::k
