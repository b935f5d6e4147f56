// Qwen3-MoE: per-head q/k RMSNorm, routed experts under mlp.experts.<e>, dense MLP layers
// where mlp_only_layers / decoder_sparse_step say so.
#include "sparrow/model/arch/arch_spec.h"

namespace sparrow {
ArchSpec qwen3_moe_arch() { return ArchSpec{.model_type = "qwen3_moe"}; }
}  // namespace sparrow
