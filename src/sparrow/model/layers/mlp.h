// SwiGLU MLP: down(silu(gate(x)) * up(x)). Used for dense layers, every routed expert and
// Qwen2-MoE's shared expert. A rank may hold a slice of the intermediate dimension (tensor
// parallelism): gate/up rows and down columns; its output is then a partial sum.
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
  // Holds intermediate features `part` (all when part is Range::all()).
  Mlp(WeightStore& w, const std::string& prefix, int64_t hidden, int64_t intermediate, const Names& names,
      Range part = Range::all());
  Mlp(WeightStore& w, const std::string& prefix, int64_t hidden, int64_t intermediate)
      : Mlp(w, prefix, hidden, intermediate, Names{}) {}

  // x [T, H] -> y f32 [T, H]: complete if this rank holds every intermediate feature, else a
  // partial sum. `leaves`: deterministic K-blocks of this rank's slice (1: one pass).
  void forward(const Tensor& x, Arena& ws, const Tensor& y, int leaves = 1) const;
  int64_t intermediate() const { return gate_.size(0); }

 private:
  Tensor gate_, up_, down_;  // [I_local, H], [I_local, H], [H, I_local]
};

}  // namespace sparrow
