// Internal interface between kernels/cpu/attention.cpp (validation, work split) and the
// per-ISA paged-attention kernels.
#pragma once

#include <cstdint>

#include "sparrow/core/dtype.h"
#include "sparrow/kernels/ops.h"

namespace sparrow::cpu {

// KV positions per online-softmax step; tiles start at absolute positions 0, 64, 128, ...
constexpr int kAttnKvTile = 64;
// Query rows (of one sequence) per work item.
constexpr int kAttnRowBlock = 16;

struct AttnArgs {
  const void* q = nullptr;  // [T, Hq, D]
  const void* k = nullptr;  // [slots, Hkv, D]
  const void* v = nullptr;
  void* out = nullptr;      // [T, Hq, D]
  DType dt = DType::kBF16;   // of q and out (kBF16 or kF32)
  DType kvt = DType::kBF16;  // of k and v: dt, or kBF16 with dt == kF32
  int64_t Hq = 0, Hkv = 0, D = 0;  // D % 16 == 0
  const ops::AttentionBatch* batch = nullptr;
  float scale = 1.f;
};

// Sequence b, KV heads [g0, g1), this step's query rows [r0, r1) of the sequence (0 = its
// first extend row), for all Hq / Hkv query heads of each KV head.
struct AttnItem {
  int32_t b, g0, g1, r0, r1;
};

void attention_avx512(const AttnArgs& a, const AttnItem* items, int64_t n);
void attention_avx2(const AttnArgs& a, const AttnItem* items, int64_t n);

}  // namespace sparrow::cpu
