// Sparse MoE block: router -> top-k experts per token -> grouped expert MLPs -> combine.
//
// Pipeline (the same on every backend): fp32 router logits, fp32 softmax, top-k with ties to
// the lower expert id, optional renormalization -> ids/weights [T, K] in slot order ->
// tokens grouped by expert -> each expert's SwiGLU over its tokens, output in fp32 scaled
// by the routing weight -> per token, the sum of its K slots in slot order in fp32, then the
// shared expert (Qwen2-MoE: weighted by sigmoid(shared_expert_gate(x))) as slot K.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sparrow/model/config.h"
#include "sparrow/model/layers/mlp.h"
#include "sparrow/model/weight_store.h"

namespace sparrow {

struct MoeNames {
  std::string router = "gate";              // <prefix>.<router>.weight [E, H]
  std::string experts = "experts";          // <prefix>.<experts>.<e>.<proj>.weight
  Mlp::Names expert_proj;                   // gate/up/down projection names
  std::string shared_expert = "shared_expert";
  std::string shared_expert_gate = "shared_expert_gate";
};

class SparseMoe {
 public:
  SparseMoe(const ModelConfig& c, WeightStore& w, const std::string& prefix, const MoeNames& names);

  // x [T, H] -> out [T, H].
  void forward(const Tensor& x, Arena& ws, const Tensor& out) const;

 private:
  int64_t hidden_, top_k_;
  bool renormalize_;
  Tensor router_;                     // [E, H]
  std::vector<Mlp> experts_;
  std::optional<Mlp> shared_;
  Tensor shared_gate_;                // [1, H], compute dtype
};

}  // namespace sparrow
