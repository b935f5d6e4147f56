// Sparse MoE block: router -> top-k experts per token -> grouped expert MLPs -> combine.
//
// Pipeline (the same on every backend and layout): fp32 router logits, fp32 softmax, top-k
// with ties to the lower expert id, optional renormalization -> ids/weights [T, K] in slot
// order -> (token, slot) pairs grouped by expert -> each expert's SwiGLU, its down
// projection in fp32 -> per token, sum over slots in slot order of weight * value, then the
// shared expert (Qwen2-MoE: sigmoid(shared_expert_gate(x)) * mlp(x)) as slot K.
//
// Parallel layout: expert e lives on EP group e / (E / ep), split over that group's MoE-TP
// ranks along the intermediate dimension. The shared expert is split over attention TP.
// `none` backend: every rank routes every token of the world and produces a partial sum
// (its experts, its intermediate slice) that one all-reduce completes; in deterministic
// mode per-slot values are completed instead (summed over the owning MoE-TP ranks, then
// copied to the DP groups that need them), so the slot-order sum is layout-invariant.
// `alltoall`: each rank routes its share of tokens, sends each (token, slot) to the ranks
// owning the expert, gets their partial values back and finishes the sum at home.
//
// On a GPU the experts are stacked per layer (w13 [E, 2I, H], w2 [E, H, I]) and the block
// runs as fused device ops: router GEMM, top-k, grouped expert GEMMs with the routing weight
// in the epilogue, slot-ordered combine with the gated shared expert (ops::moe_experts /
// moe_combine). On several GPU ranks (NCCL) the `none` layout runs: in the default mode the
// local experts' partial sums are all-reduced over the world (forward_fused_ranks); in
// deterministic mode the per-slot values are (forward_device_deterministic), so every
// layout has the single-GPU bits. `alltoall` is CPU-only for now.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sparrow/model/config.h"
#include "sparrow/model/layers/mlp.h"
#include "sparrow/model/layers/step_context.h"
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
  SparseMoe(const ModelConfig& c, WeightStore& w, const std::string& prefix, const MoeNames& names, const RankContext& rank);

  // x [T_dp, H] (normed, AttnTPFull) -> out f32 [T_dp, H], complete.
  void forward(const Tensor& x, const StepContext& ctx, const Tensor& out) const;

 private:
  struct Routed {
    int32_t* ids;
    float* weights;
  };
  Routed route(const Tensor& x, Arena& ws) const;
  // The shared expert on x [t, H] (this DP group's tokens): its output completed over
  // attention TP, f32 [t, H], and its gate's logit, f32 [t, 1] (not yet through the sigmoid).
  struct SharedOut {
    Tensor value, gate_logit;
  };
  SharedOut shared_expert(const Tensor& x, const StepContext& ctx) const;
  // Values of the given (token, slot) pairs — indices token * slots + slot into ids, all of
  // owned experts — unweighted, fp32: rows [pairs, H] grouped by expert, and each row's pair
  // (a pure function of the routing, so every rank of an expert group has the same order).
  struct ExpertRows {
    Tensor values;
    std::vector<int64_t> pair;
  };
  ExpertRows expert_rows(const Tensor& x, const int32_t* ids, int64_t slots, Arena& ws,
                         const std::vector<int64_t>& pairs) const;
  // The same, each written to values row `pair`.
  void run_experts(const Tensor& x, const int32_t* ids, int64_t slots, Arena& ws, const Tensor& values,
                   const std::vector<int64_t>& pairs) const;
  void forward_none(const Tensor& x, const StepContext& ctx, const Tensor& out, const float* shared) const;
  void forward_alltoall(const Tensor& x, const StepContext& ctx, const Tensor& out, const float* shared) const;
  // out[t] = sum_s weights[t, s] * value(t, s) (slot order) + shared[t], where value(t, s)
  // is the row slot[t * K + s] points to.
  void combine(const float* const* slot, const float* weights, int64_t tokens, const float* shared, float* out) const;
  // combine over contiguous values [tokens * K, H].
  void combine(const Tensor& values, const float* weights, int64_t tokens, const float* shared, float* out) const;
  void forward_fused(const Tensor& x, const StepContext& ctx, const Tensor& out) const;
  // forward_fused on one of several GPU ranks (the `none` layout, default mode).
  void forward_fused_ranks(const Tensor& x, const StepContext& ctx, const Tensor& out) const;
  // forward_fused with --moe-a2a-backend alltoall on several GPU ranks (either mode).
  void forward_alltoall_device(const Tensor& x, const StepContext& ctx, const Tensor& out) const;
  // forward_fused in deterministic mode, any number of GPU ranks (the `none` layout).
  void forward_device_deterministic(const Tensor& x, const StepContext& ctx, const Tensor& out) const;

  int64_t hidden_, top_k_, num_experts_;
  bool renormalize_;
  int64_t expert0_ = 0, experts_local_ = 0;  // owned experts [expert0_, expert0_ + experts_local_)
  int moe_tp_ = 1, attn_tp_ = 1;
  int expert_leaves_ = 1, shared_leaves_ = 1;
  Tensor router_;                     // [E, H], replicated
  std::vector<Mlp> experts_;          // owned experts, this rank's intermediate slice (host)
  Tensor w13_, w2_;                   // the same, stacked (device): [E_local, 2I, H], [E_local, H, I]
  std::optional<Mlp> shared_;
  Tensor shared_gate_;                // [1, H], replicated
};

}  // namespace sparrow
