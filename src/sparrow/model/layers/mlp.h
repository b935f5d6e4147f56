// SwiGLU MLP: down(silu(gate(x)) * up(x)). Used for dense layers, for every routed expert
// and for Qwen2-MoE's shared expert.
#pragma once

#include <string>

#include "sparrow/core/arena.h"
#include "sparrow/model/weight_store.h"

namespace sparrow {

class Mlp {
 public:
  struct Names {
    std::string gate = "gate_proj", up = "up_proj", down = "down_proj";
  };
  Mlp(WeightStore& w, const std::string& prefix, int64_t hidden, int64_t intermediate, const Names& names);
  Mlp(WeightStore& w, const std::string& prefix, int64_t hidden, int64_t intermediate)
      : Mlp(w, prefix, hidden, intermediate, Names{}) {}

  // x [T, H] -> y [T, H] (y may be f32 for an fp32 combine downstream).
  void forward(const Tensor& x, Arena& ws, const Tensor& y) const;
  int64_t intermediate() const { return gate_.size(0); }

 private:
  Tensor gate_, up_, down_;  // [I, H], [I, H], [H, I]
};

}  // namespace sparrow
