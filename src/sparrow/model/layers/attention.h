// Self-attention with GQA, RoPE and the per-architecture q/k norms, reading and writing
// K/V through the paged pool. Prefill and decode take the same path.
#pragma once

#include <string>
#include <vector>

#include "sparrow/model/config.h"
#include "sparrow/model/layers/step_context.h"
#include "sparrow/model/weight_store.h"

namespace sparrow {

class Attention {
 public:
  Attention(const ModelConfig& c, int64_t layer, WeightStore& w, const std::string& prefix);

  // x [T, H] (normed hidden states) -> out [T, H].
  void forward(const Tensor& x, const StepContext& ctx, const Tensor& out) const;

 private:
  int64_t layer_, heads_, kv_heads_, head_dim_;
  float eps_, scale_;
  QKNorm qk_norm_;
  Tensor wq_, wk_, wv_, wo_;            // HF Linear layout
  Tensor bq_, bk_, bv_, bo_;            // f32, undefined when the architecture has none
  Tensor q_norm_, k_norm_;              // f32
  std::vector<float> inv_freq_;         // [D/2]
};

}  // namespace sparrow
