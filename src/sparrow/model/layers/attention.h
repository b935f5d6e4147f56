// Self-attention with GQA, RoPE and the per-architecture q/k norms, reading and writing
// K/V through the paged pool. Prefill and decode take the same path. On a GPU the q, k and
// v projections are one GEMM over weights stacked at load time, followed by one fused
// norm + RoPE + KV-store kernel (ops::attention_prep). Under attention TP a
// rank holds a slice of the query heads (and of the KV heads, or one replicated KV head when
// there are fewer KV heads than ranks); o_proj is then row-parallel and the
// LayerCommunicator completes its sum.
#pragma once

#include <string>
#include <vector>

#include "sparrow/model/config.h"
#include "sparrow/model/layers/step_context.h"
#include "sparrow/model/weight_store.h"

namespace sparrow {

class Attention {
 public:
  Attention(const ModelConfig& c, int64_t layer, WeightStore& w, const std::string& prefix, const RankContext& rank);

  // x [T, H] (normed hidden states, AttnTPFull) -> out f32 [T, H], complete.
  void forward(const Tensor& x, const StepContext& ctx, const Tensor& out) const;
  int64_t local_kv_heads() const { return kv_heads_; }

 private:
  int64_t layer_, heads_, kv_heads_, head_dim_;  // heads_ / kv_heads_: this rank's
  int64_t q_col0_ = 0, kv_col0_ = 0;             // first column of this rank's q / k in the full projections
  float eps_, scale_;
  QKNorm qk_norm_;
  bool full_qk_ = false;                // projection norm under TP: q/k computed whole, then sliced
  int leaves_ = 1;
  int tp_ = 1;
  Tensor wq_, wk_, wv_, wo_;            // HF Linear layout, this rank's rows (wo: columns); host
  Tensor bq_, bk_, bv_, bo_;            // f32, undefined when the architecture has none
  Tensor wqkv_, bqkv_;                  // device: [q; k; v] rows stacked (and their biases)
  void forward_device(const Tensor& x, const StepContext& ctx, const Tensor& out) const;
  Tensor q_norm_, k_norm_;              // f32
  Tensor inv_freq_;                     // f32 [D/2], on the model's device
};

}  // namespace sparrow
